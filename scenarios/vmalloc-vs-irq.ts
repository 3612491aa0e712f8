import { defineScenario } from '../src/engine/scenario.ts';

// Kernel page tables (init_mm) under load, with device interrupts (issue #11).
// Threads on every CPU vmalloc areas, write and read them through the kernel
// mapping, keep two, vfree the oldest (vmap_pages_pte_range / vunmap_pte_range in
// lazy MMU sections; the lazy purge's flush_tlb_kernel_range before an address
// is reused), fork children on vmap'd kernel stacks, and touch a user region
// that CPU 0 keeps unmapping (zap_pte_range's lazy sections under the PTL).
// Device interrupts arrive at 1 in 48 scheduling points; the handler allocates a
// page, DEBUG_PAGEALLOC maps it in the linear map, the handler writes and reads
// it and frees it (__kernel_map_pages in interrupt context), often while the
// interrupted task is inside a lazy MMU section.
// Knobs: arm64.lazy_no_dsb (the vmalloc'd page is used before the DSB that
// publishes its PTE: kernel paging request), lazy_mmu.active_in_irq (the
// handler's barrier is deferred to the interrupted section's end: the same).
export default defineScenario({
  name: 'vmalloc-vs-irq',
  description: 'vmalloc/vfree, forks on vmap\'d stacks and munmap on every CPU, with device interrupts that map and unmap linear-map pages (DEBUG_PAGEALLOC)',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64, irq: 48 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [
    {
      name: 'app',
      regions: [{ name: 'buf', pages: 64 }],
      threads: [
        {
          name: 'worker', cpus: 'all', program: [
            { op: 'vmalloc', pages: [1, 7], hold: 2 },
            { op: 'access', region: 'buf', mode: 'rw', count: 4 },
            { op: 'choose', weights: [6, 1], steps: [
              { op: 'access', region: 'buf', mode: 'rw', count: 2 },
              { op: 'fork', childOps: 4, child: [{ op: 'access', region: 'buf', mode: 'rw', count: 2 }, { op: 'vmalloc', pages: 2, hold: 1 }] },
            ] },
          ],
        },
        {
          name: 'unmapper', cpus: 0, program: [
            { op: 'munmap', region: 'buf', at: 'random', pages: [4, 16], save: 'hole' },
            { op: 'mmap', region: 'buf', at: 'hole' },
            { op: 'access', region: 'buf', mode: 'rw', count: 4 },
          ],
        },
      ],
    },
  ],
});
