import { defineScenario } from '../src/engine/scenario.ts';

// A 1 GiB PUD leaf on the move: a DAX-like device region (thp: 'pud', one 1 GiB
// page) is mremapped back and forth between two 1 GiB-aligned places (each move
// is one HPAGE_PUD entry, flushed before the lock drops) while siblings access
// both; now and then a piece is dropped with MADV_DONTNEED, which clears the
// leaf (the rest refaults in PTEs, then the move is PTE by PTE).
export default defineScenario({
  name: 'thp-pud-mremap',
  description: 'mremap moves a 1 GiB PUD leaf (a DAX-like device) back and forth (HPAGE_PUD) while siblings access both places',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 1100, tableFrames: 2048 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'app',
    regions: [
      { name: 'dev', pages: 262144, thp: 'pud', shared: true },
      { name: 'dst', pages: 262144, align: 'pud', prot: 'none' },
    ],
    threads: [
      {
        name: 'accessor', cpus: 'rest',
        program: [{ op: 'choose', weights: [1, 1], steps: [
          { op: 'access', region: 'dev', mode: 'rw', count: 4 },
          { op: 'access', region: 'dst', mode: 'rw', count: 4 },
        ] }],
      },
      {
        name: 'mover', cpus: 0,
        program: [
          { op: 'access', region: 'dev', mode: 'write', count: 16 },
          { op: 'mremap', region: 'dev', to: 'dst' },
          { op: 'access', region: 'dst', mode: 'rw', count: 16 },
          { op: 'mremap', region: 'dst', to: 'dev' },
          { op: 'choose', weights: [9, 1], steps: [
            { op: 'yield' },
            { op: 'madvise', region: 'dev', at: 'random', pages: [1, 16], advice: 'dontneed' },
          ] },
        ],
      },
    ],
  }],
});
