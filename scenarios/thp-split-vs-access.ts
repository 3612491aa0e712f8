import { defineScenario } from '../src/engine/scenario.ts';

// THP splits under fire: readers and writers on every CPU over two huge pages
// (a TLB large enough to keep each CPU's pieces of them), while one thread
// mprotects pieces read-only and back and drops pieces with MADV_DONTNEED: a
// partly covered huge PMD is split first (__split_huge_pmd), and the split
// must leave no CPU holding the huge translation once the PMD lock is dropped.
// Now and then all of it is dropped, so the range faults in huge again. Made
// for the stale-TLB oracle (thp.split_no_flush).
export default defineScenario({
  name: 'thp-split-vs-access',
  description: 'accesses on all CPUs vs partial mprotect and MADV_DONTNEED of two huge pages: THP splits, then whole-range drops so they refault huge',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 2048, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'buf', pages: 1024, thp: true }],
    threads: [
      { name: 'worker', cpus: 'all', program: [{ op: 'access', region: 'buf', mode: 'rw', count: 4 }] },
      {
        name: 'changer', cpus: 1,
        program: [{
          op: 'choose', weights: [2, 2, 1],
          steps: [
            {
              op: 'repeat', times: 1, steps: [
                { op: 'mprotect', region: 'buf', at: 'random', pages: [1, 64], prot: 'r', save: 'ro' },
                { op: 'repeat', times: 8, steps: [{ op: 'yield' }] },
                { op: 'mprotect', region: 'buf', at: 'ro', pages: 1, prot: 'rw' },
              ],
            },
            { op: 'madvise', region: 'buf', at: 'random', pages: [1, 64], advice: 'dontneed' },
            { op: 'madvise', region: 'buf', at: 0, pages: 1024, advice: 'dontneed' },
          ],
        }],
      },
    ],
  }],
});
