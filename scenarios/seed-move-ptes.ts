import { defineScenario } from '../src/engine/scenario.ts';

// The seed's case 2 (Gordeev, <896b3d93-8e60-42e2-b8bb-d3d4e8c99927-agordeev@linux.ibm.com>):
// move_ptes() passes the *old* range as the fast
// range and stores the new range's entries in the same section, in the same mm,
// which is attached to this CPU and to the CPUs of sibling threads. Even the
// refined strict contract ("no update outside the range in this mm") is
// violated; under hint the new-range stores take the normal path.
export default defineScenario({
  name: 'seed-move-ptes',
  description: "the seed's case 2: mremap moves a region back and forth (move_ptes) while siblings access both ranges",
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'a', pages: 32 }, { name: 'b', pages: 32 }],
    threads: [
      {
        name: 'accessor', cpus: 'rest',
        program: [{ op: 'choose', weights: [1, 1], steps: [
          { op: 'access', region: 'a', mode: 'rw', count: 4 },
          { op: 'access', region: 'b', mode: 'rw', count: 4 },
        ] }],
      },
      {
        name: 'mover', cpus: 0,
        program: [
          { op: 'access', region: 'a', mode: 'write', count: 16 },
          { op: 'mremap', region: 'a', to: 'b' },
          { op: 'access', region: 'b', mode: 'rw', count: 16 },
          { op: 'mremap', region: 'b', to: 'a' },
        ],
      },
    ],
  }],
});
