import { defineScenario } from '../src/engine/scenario.ts';

// Threads of one process on every CPU keep reading and writing a region while
// a second thread on CPU 0 munmaps random pieces of it and maps them again.
// Every munmap zaps PTEs under the PTL, flushes the TLBs of every CPU that runs
// the mm (acknowledged IPIs on x86) and only then frees the pages.
// Knob munmap.free_before_flush frees them first: the UAF oracle fires.
export default defineScenario({
  name: 'munmap-vs-access',
  description: 'readers/writers on all CPUs vs munmap + re-mmap of random parts of their region',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: [
    {
      name: 'app',
      regions: [{ name: 'buf', pages: 64 }],
      threads: [
        { name: 'worker', cpus: 'all', program: [{ op: 'access', region: 'buf', mode: 'rw' }] },
        {
          name: 'unmapper',
          cpus: 0,
          program: [
            { op: 'munmap', region: 'buf', at: 'random', pages: [1, 8], save: 'hole' },
            { op: 'repeat', times: 4, steps: [{ op: 'yield' }] },
            { op: 'mmap', region: 'buf', at: 'hole' },
          ],
        },
      ],
    },
  ],
});
