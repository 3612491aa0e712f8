import { defineScenario } from '../src/engine/scenario.ts';

// Many processes forking and exiting at once (issue #6): two parents with a
// thread on every CPU; every thread forks now and then, children touch their
// copies, some fork grandchildren, all exit. mm_alloc/exit_mmap churn, fork's
// parent flushes to 64 CPUs, COW faults on both sides, context switches between
// a dozen mms per CPU, and the last exit of each mm tearing it down through an
// mmu_gather while other CPUs still have it loaded lazily.
export default defineScenario({
  name: 'fork-storm',
  description: 'many processes forking and exiting on every CPU (64 by default): fork, COW and exit_mmap churn',
  machine: { cpus: 64, arch: 'x86', tlbEntries: 64, memoryMiB: 128 },
  run: { opsPerCpu: 300, seed: 1 },
  processes: ['a', 'b'].map((name) => ({
    name,
    regions: [{ name: 'data', pages: 16, populate: true }, { name: 'more', pages: 8 }],
    threads: [{
      name: 'worker', cpus: 'all' as const,
      program: [
        { op: 'access' as const, region: 'data', mode: 'rw' as const, count: 2 },
        { op: 'access' as const, region: 'more', mode: 'rw' as const, count: 2 },
        { op: 'repeat' as const, times: 3, steps: [{ op: 'access' as const, region: 'data', mode: 'rw' as const, count: 2 }] },
        {
          op: 'fork' as const, childOps: 6, child: [
            { op: 'access' as const, region: 'data', mode: 'rw' as const, count: 2 },
            { op: 'choose' as const, weights: [4, 1, 1], steps: [
              { op: 'access' as const, region: 'more', mode: 'rw' as const, count: 2 },
              { op: 'fork' as const, childOps: 3, child: [{ op: 'access' as const, region: 'data', mode: 'rw' as const, count: 2 }] },
              { op: 'exit' as const },
            ] },
          ],
        },
      ],
    }],
  })),
});
