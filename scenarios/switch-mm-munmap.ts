import { defineScenario } from '../src/engine/scenario.ts';

// Two processes share every CPU: each CPU alternates between a thread of A and
// a thread of B, so switch_mm runs all the time. While a CPU runs B, A's
// shootdowns skip it (A is not loaded there), and its TLB keeps A's entries
// (they are ASID-tagged). Only the generation check at switch-in makes them go.
// Knob x86.switch_mm_no_gen_check removes it: the UAF oracle fires.
export default defineScenario({
  name: 'switch-mm-munmap',
  description: 'two processes time-share every CPU while each munmaps and re-mmaps its region (switch_mm generation check)',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 256, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1 },
  processes: ['a', 'b'].map((name) => ({
    name,
    regions: [{ name: 'buf', pages: 32 }],
    threads: [
      { name: 'worker', cpus: 'all' as const, program: [{ op: 'access' as const, region: 'buf', mode: 'rw' as const, count: 4 }] },
      {
        name: 'unmapper',
        cpus: name === 'a' ? 0 : 1,
        program: [
          { op: 'munmap' as const, region: 'buf', at: 'random', pages: [1, 4] as [number, number], save: 'hole' },
          { op: 'mmap' as const, region: 'buf', at: 'hole' },
        ],
      },
    ],
  })),
});
