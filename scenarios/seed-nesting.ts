import { defineScenario } from '../src/engine/scenario.ts';

// The seed's case 3 (Gordeev, <896b3d93-8e60-42e2-b8bb-d3d4e8c99927-agordeev@linux.ibm.com>):
// nested sections with interleaved plain and
// range enables. With a plain enable outermost, the inner range is ignored
// (LAZY_RANGE_IGNORED in the trace: no batching at all); with the range
// outermost, an inner plain section updates PTEs outside the range believing
// them lazily handled: the strict contract reports it, the hint contract sends
// them down the normal path. The trace shows which range is in force.
export default defineScenario({
  name: 'seed-nesting',
  description: "the seed's case 3: nested plain and range lazy MMU sections, in both orders, while siblings access the range",
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'r', pages: 16 }],
    threads: [
      { name: 'accessor', cpus: 'rest', program: [{ op: 'access', region: 'r', mode: 'rw', count: 2 }] },
      {
        name: 'nester', cpus: 0,
        program: [
          { op: 'access', region: 'r', mode: 'write', count: 16 },
          { op: 'lazy-nest', region: 'r', pages: 16, order: 'plain-outer' },
          { op: 'lazy-nest', region: 'r', pages: 16, order: 'range-outer' },
        ],
      },
    ],
  }],
});
