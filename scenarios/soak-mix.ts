import { defineScenario } from '../src/engine/scenario.ts';

// The soak workload (npm run soak): every kind of mm operation at once on 64 CPUs.
// Two processes share a file; on every CPU a thread of one of them picks at random
// among faults (reads and writes of private, anonymous and shared-file memory),
// mremap back and forth, fork (children touch, maybe fork again, exit), munmap and
// mmap again of part of a region, madvise(DONTNEED), and, in the second process,
// truncation and hole punches of the shared file.
const access = (region: string) => ({ op: 'access' as const, region, mode: 'rw' as const, count: 2 });
export default defineScenario({
  name: 'soak-mix',
  description: 'soak: faults, mremap, fork, munmap/mmap, madvise and truncation mixed on every CPU (64 by default)',
  machine: { cpus: 64, arch: 'x86', tlbEntries: 64, memoryMiB: 256 },
  run: { opsPerCpu: 1000, seed: 1 },
  files: [{ name: 'f', pages: 64 }],
  processes: ['a', 'b'].map((name) => ({
    name,
    regions: [
      { name: 'anon', pages: 64, populate: true },
      { name: 'shared', pages: 64, file: 'f', shared: true },
      { name: 'src', pages: 32, populate: true },
      { name: 'dst', pages: 32 },
    ],
    threads: [{
      name: 'mix', cpus: 'all' as const,
      program: [
        { op: 'choose' as const, weights: [8, 2, 2, 1, 1, 1, 2], steps: [
          access('anon'),
          access('shared'),
          { op: 'repeat' as const, times: 1, steps: [{ op: 'mremap' as const, region: 'src', to: 'dst' }, access('dst'), { op: 'mremap' as const, region: 'dst', to: 'src' }] },
          { op: 'fork' as const, childOps: 6, child: [
            access('anon'),
            { op: 'choose' as const, weights: [4, 1, 1], steps: [access('shared'), { op: 'fork' as const, childOps: 3, child: [access('anon')] }, { op: 'exit' as const }] },
          ] },
          { op: 'repeat' as const, times: 1, steps: [{ op: 'munmap' as const, region: 'anon', at: 'random', pages: [1, 8] as [number, number], save: 'hole' }, { op: 'mmap' as const, region: 'anon', at: 'hole' }] },
          { op: 'madvise' as const, region: 'anon', at: 'random', pages: [1, 16] as [number, number], advice: 'dontneed' as const },
          name === 'b'
            ? { op: 'choose' as const, weights: [3, 1], steps: [
              { op: 'punch' as const, file: 'f', at: 0, pages: 4 },
              { op: 'repeat' as const, times: 1, steps: [{ op: 'truncate' as const, file: 'f', pages: [32, 63] as [number, number] }, { op: 'truncate' as const, file: 'f', pages: 64 }] },
            ] }
            : access('src'),
        ] },
      ],
    }],
  })),
});
