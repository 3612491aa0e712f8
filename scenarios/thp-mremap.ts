import { defineScenario } from '../src/engine/scenario.ts';

// mremap of transparent huge pages: a THP region moves back and forth between
// two 2 MiB-aligned places (whole huge PMDs move as one entry, HPAGE_PMD,
// flushed before the PMD locks drop) and a third, page-offset one (extents
// smaller than a PMD: the huge PMDs are split and their PTEs moved), while
// sibling threads read and write all three ranges.
export default defineScenario({
  name: 'thp-mremap',
  description: 'mremap moves a THP region between two 2 MiB-aligned places (HPAGE_PMD moves) and a misaligned one (splits) while siblings access all three',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'app',
    regions: [
      { name: 'a', pages: 1024, thp: true },
      { name: 'b', pages: 1024, thp: true },
      { name: 'c', pages: 1024, thp: true, align: 0x201000 },
    ],
    threads: [
      {
        name: 'accessor', cpus: 'rest',
        program: [{ op: 'choose', weights: [1, 1, 1], steps: [
          { op: 'access', region: 'a', mode: 'rw', count: 4 },
          { op: 'access', region: 'b', mode: 'rw', count: 4 },
          { op: 'access', region: 'c', mode: 'rw', count: 4 },
        ] }],
      },
      {
        name: 'mover', cpus: 0,
        program: [
          { op: 'access', region: 'a', mode: 'write', count: 16 },
          { op: 'mremap', region: 'a', to: 'b' },
          { op: 'access', region: 'b', mode: 'rw', count: 16 },
          { op: 'choose', weights: [3, 1], steps: [
            { op: 'mremap', region: 'b', to: 'a' },
            { op: 'repeat', times: 1, steps: [{ op: 'mremap', region: 'b', to: 'c' }, { op: 'mremap', region: 'c', to: 'a' }] },
          ] },
        ],
      },
    ],
  }],
});
