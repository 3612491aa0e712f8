import { defineScenario } from '../src/engine/scenario.ts';

// Readers and writers on every CPU while one thread drops random pieces of the
// region with madvise(MADV_DONTNEED) (mmap_lock held for read, so faults run
// concurrently with the zap) and another mprotects pieces read-only and back.
export default defineScenario({
  name: 'madvise-vs-access',
  description: 'accesses on all CPUs vs MADV_DONTNEED (zap under the read lock) and mprotect of random pieces',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'buf', pages: 64 }],
    threads: [
      { name: 'worker', cpus: 'all', program: [{ op: 'access', region: 'buf', mode: 'rw', count: 2 }] },
      { name: 'dropper', cpus: 0, program: [{ op: 'madvise', region: 'buf', at: 'random', pages: [1, 16], advice: 'dontneed' }] },
      {
        name: 'protector', cpus: 1,
        program: [
          { op: 'mprotect', region: 'buf', at: 'random', pages: [1, 8], prot: 'r', save: 'ro' },
          { op: 'mprotect', region: 'buf', at: 'ro', pages: 1, prot: 'rw' },
        ],
      },
    ],
  }],
});
