import { defineScenario } from '../src/engine/scenario.ts';

// The seed's case 1 (Gordeev, <896b3d93-8e60-42e2-b8bb-d3d4e8c99927-agordeev@linux.ibm.com>):
// copy_pte_range() opens one lazy MMU section per
// table with the *parent's* range as the fast range, and writes the child's
// table inside it. The child mm is not attached to any CPU. Under
// --lazy-contract strict every child store is an update outside the range: the
// contract checker reports it. Under hint it runs clean on every arch.
export default defineScenario({
  name: 'seed-copy-pte-range',
  description: "the seed's case 1: fork (copy_pte_range) while the parent's threads write; strict contract trips on the child's updates",
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'parent',
    regions: [{ name: 'heap', pages: 48 }],
    threads: [
      { name: 'writer', cpus: 'rest', program: [{ op: 'access', region: 'heap', mode: 'rw', count: 4 }] },
      {
        name: 'forker',
        cpus: 0,
        program: [
          { op: 'access', region: 'heap', mode: 'write', count: 8 },
          { op: 'fork', childOps: 12, child: [{ op: 'access', region: 'heap', mode: 'rw', count: 2 }] },
        ],
      },
    ],
  }],
});
