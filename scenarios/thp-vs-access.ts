import { defineScenario } from '../src/engine/scenario.ts';

// Transparent huge pages under fire: readers and writers on every CPU over a
// MADV_HUGEPAGE region (2 MiB faults), while one thread munmaps and re-mmaps
// random pieces (whole huge PMDs are zapped as one entry, partly covered ones
// are split first), another drops pieces with MADV_DONTNEED and mprotects
// pieces read-only and back (whole PMDs change in place, parts split).
export default defineScenario({
  name: 'thp-vs-access',
  description: 'accesses on all CPUs vs munmap/mmap, MADV_DONTNEED and mprotect of a THP region: huge PMD zaps, splits and protection changes',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'buf', pages: 2048, thp: true }],
    threads: [
      { name: 'worker', cpus: 'all', program: [{ op: 'access', region: 'buf', mode: 'rw', count: 4 }] },
      {
        name: 'unmapper', cpus: 0,
        program: [
          // a random piece, or now and then all of it (so split ranges fault in huge again)
          {
            op: 'choose', weights: [4, 1], steps: [
              { op: 'munmap', region: 'buf', at: 'random', pages: [1, 1100], save: 'hole' },
              { op: 'munmap', region: 'buf', at: 0, pages: 2048, save: 'hole' },
            ],
          },
          { op: 'repeat', times: 4, steps: [{ op: 'yield' }] },
          { op: 'mmap', region: 'buf', at: 'hole' },
        ],
      },
      {
        name: 'changer', cpus: 1,
        program: [{
          op: 'choose', weights: [1, 2],
          steps: [
            { op: 'madvise', region: 'buf', at: 'random', pages: [1, 600], advice: 'dontneed' },
            {
              op: 'repeat', times: 1, steps: [
                { op: 'mprotect', region: 'buf', at: 'random', pages: [1, 600], prot: 'r', save: 'ro' },
                { op: 'mprotect', region: 'buf', at: 'ro', pages: 1, prot: 'rw' },
              ],
            },
          ],
        }],
      },
    ],
  }],
});
