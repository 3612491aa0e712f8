import { defineScenario } from '../src/engine/scenario.ts';

// Issue #5: other CPUs fault and access the old and new ranges while one
// thread moves them back and forth. 'a' and 'b' are PMD-aligned, so a move
// between them takes whole PTE tables (NORMAL_PMD, where the arch can); 'c'
// is only page-aligned, so a move to or from it goes PTE by PTE through
// move_ptes. Accessors touch all three (a range that is not mapped at the
// moment raises SIGSEGV, as in Linux), and zap pages with MADV_DONTNEED so the
// next access faults again, racing with the moves for the mmap_lock and the
// page-table locks.
export default defineScenario({
  name: 'mremap-vs-fault',
  description: 'one thread moves a region between PMD-aligned and page-aligned places while the others fault and access the old and new ranges',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: [{
    name: 'app',
    regions: [
      { name: 'a', pages: 1024, align: 'pmd' },
      { name: 'b', pages: 1024, align: 'pmd' },
      { name: 'c', pages: 1024, align: 'page' },
    ],
    threads: [
      {
        name: 'accessor', cpus: 'rest',
        program: [{ op: 'choose', weights: [4, 4, 4, 1, 1, 1], steps: [
          { op: 'access', region: 'a', mode: 'rw', count: 4 },
          { op: 'access', region: 'b', mode: 'rw', count: 4 },
          { op: 'access', region: 'c', mode: 'rw', count: 4 },
          { op: 'madvise', region: 'a', pages: [1, 16], advice: 'dontneed' },
          { op: 'madvise', region: 'b', pages: [1, 16], advice: 'dontneed' },
          { op: 'madvise', region: 'c', pages: [1, 16], advice: 'dontneed' },
        ] }],
      },
      {
        name: 'mover', cpus: 0,
        program: [
          { op: 'access', region: 'a', mode: 'write', count: 32 },
          { op: 'repeat', times: 4, steps: [
            { op: 'mremap', region: 'a', to: 'b' },
            { op: 'access', region: 'b', mode: 'rw', count: 16 },
            { op: 'mremap', region: 'b', to: 'a' },
            { op: 'access', region: 'a', mode: 'rw', count: 16 },
          ] },
          { op: 'mremap', region: 'a', to: 'c' },
          { op: 'access', region: 'c', mode: 'rw', count: 16 },
          { op: 'mremap', region: 'c', to: 'a' },
        ],
      },
    ],
  }],
});
