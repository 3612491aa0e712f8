// The one seam between generic mm code and an architecture: how a PTE update is
// carried out, how TLBs are invalidated, how an mm is switched in and out, and
// the lazy MMU hooks. Generic code (src/mm) calls only this interface; each
// architecture lives in src/arch/<arch>/ and starts from the native accessors
// in src/arch/generic.ts.

import type { Cpu, Host } from '../hw/cpu.ts';

export interface Arch {
  readonly name: string;
  /** one line for the README table and the summary: what this arch defers in a lazy MMU section */
  readonly defers: string;
  /** how TLB entries of other CPUs are invalidated */
  readonly invalidation: string;
  /**
   * arch_supports_page_table_move: mremap may move whole PTE tables (NORMAL_PMD)
   * and PMD tables (NORMAL_PUD): CONFIG_HAVE_MOVE_PMD/PUD on x86 (Xen PV too)
   * and arm64; powerpc book3s64 only with the radix MMU; not sparc64 or s390.
   */
  readonly supports_page_table_move: boolean;
  /**
   * The order in which a CPU's buffered stores reach other CPUs (src/hw/store_buffer.ts):
   * 'tso' (absent) for x86, s390, sparc64; 'weak' for arm64, whose stores to different
   * words may become visible in any order unless a barrier or a release orders them.
   */
  readonly store_order?: 'tso' | 'weak';
  /** register IPI handlers, per-CPU arch state, etc. on a host (every thread that runs CPUs) */
  initHost(host: Host): void;

  // PTE accessors (include/linux/pgtable.h); ptep is an entry's word index.
  // Every PTE read or write of generic code goes through these.
  ptep_get(ptep: number): number;
  set_pte_at(mm: number, addr: number, ptep: number, pte: number): void;
  ptep_get_and_clear(mm: number, addr: number, ptep: number): number;
  /**
   * ptep_get_and_clear_full: `full` is set when the whole mm is being torn down
   * (exit_mmap, no user left). Absent: ptep_get_and_clear (include/linux/pgtable.h).
   */
  ptep_get_and_clear_full?(mm: number, addr: number, ptep: number, full: boolean): number;
  ptep_set_wrprotect(mm: number, addr: number, ptep: number): void;
  /** make an entry more permissive (young, dirty, writable) without a flush; x86: a plain store */
  ptep_set_access_flags(mm: number, addr: number, ptep: number, pte: number): void;
  ptep_modify_prot_start(mm: number, addr: number, ptep: number): number;
  ptep_modify_prot_commit(mm: number, addr: number, ptep: number, old: number, pte: number): void;
  /** clear the entry and make sure no CPU can use it any more before returning */
  ptep_clear_flush(mm: number, addr: number, ptep: number): number;
  /** the value in memory differs from what ptep_get returns (an update is queued or cached): the direct-dereference hazard */
  pte_memory_stale(ptep: number): boolean;
  /** the entry's KASAN shadow is poisoned (s390 with Gordeev's series v3+: the range of a lazy MMU section): a direct access is reported */
  pte_kasan_poisoned?(ptep: number): boolean;

  // TLB maintenance (asm/tlbflush.h)
  flush_tlb_mm_range(mm: number, start: number, end: number, strideShift: number, freedTables: boolean): void;
  flush_tlb_mm(mm: number): void;
  /** flush_tlb_page; absent: flush_tlb_mm_range of the one page. s390: a no-op. */
  flush_tlb_page?(mm: number, addr: number): void;
  /** the arch part of pte_free_tlb/pmd_free_tlb/pud_free_tlb (s390: mm->context.flush_mm = 1) */
  pte_free_tlb?(mm: number): void;
  /**
   * CONFIG_MMU_GATHER_NO_GATHER (s390): __tlb_remove_page frees the page at once
   * (arch/s390/include/asm/tlb.h __tlb_remove_page_size: "s390 doesn't delay rmap
   * removal"), trusting that ptep_get_and_clear already invalidated it.
   */
  readonly mmu_gather_no_gather?: boolean;
  /**
   * With mmu_gather_no_gather: the lazy MMU backend may take a page
   * __tlb_remove_page would free at once, to free it after its batch is applied
   * (true: taken). Only the suggested fix of docs/findings/s390-lazy-zap-uaf.md
   * (--lazy-series v6-fixed) takes any.
   */
  tlb_remove_page_lazy?(pfn: number, va: number): boolean;
  /**
   * CONFIG_MMU_GATHER_RCU_TABLE_FREE: page tables an mmu_gather unhooks are freed
   * only after a grace period (mm/mmu_gather.c tlb_remove_table), so a lockless
   * walker with interrupts off (GUP-fast) never reads a freed table. Without it
   * (x86 bare metal) the flush IPI, which waits for interrupts on, gives the same.
   */
  readonly rcu_table_free?: boolean;
  /** flush one page on this CPU only (spurious-fault fix-up) */
  flush_tlb_local_page(cpu: Cpu, va: number): void;

  // mm switching (asm/mmu_context.h)
  switch_mm_irqs_off(cpu: Cpu, prev: number, next: number): void;
  enter_lazy_tlb(cpu: Cpu): void;
  leave_mm(cpu: Cpu, mm: number): void;

  // lazy MMU mode hooks (called by src/mm/lazy_mmu.ts only)
  arch_enter_lazy_mmu_mode(): void;
  /** the seed's range entry: only the outermost enable, only when it carries a range */
  arch_enter_lazy_mmu_mode_fast_pte_range(mm: number, addr: number, end: number, ptep: number): void;
  arch_leave_lazy_mmu_mode(): void;
  arch_flush_lazy_mmu_mode(): void;

  // Huge leaves (transparent huge pages at PMD level, DAX-like PUD leaves; src/mm/huge_memory.ts)
  /**
   * Replace the huge leaf at pmdp (a PMD or PUD entry mapping [addr, addr + size))
   * by `val`, returning the old entry: pmdp_huge_get_and_clear, pmdp_invalidate,
   * pmdp_set_wrprotect, pudp_huge_get_and_clear... Arches that invalidate at the
   * change (s390 IDTE, powerpc hash, sparc64) purge every translation of the old
   * leaf here; without this hook it is a plain exchange and the caller's
   * flush_pmd_tlb_range (flush_tlb_mm_range with the huge stride) invalidates.
   */
  pmdp_huge_xchg?(mm: number, addr: number, pmdp: number, size: number, val: number): number;
  /** has_transparent_hugepage(): false where the MMU has no huge leaves for us (Xen PV: no PSE) */
  readonly has_transparent_hugepage?: boolean;

  // Kernel page tables (init_mm; src/mm/vmalloc.ts)
  /**
   * flush_tlb_kernel_range: every CPU drops its global entries of [start, end)
   * and the call returns when they have. Absent: x86's on_each_cpu IPI
   * (src/arch/generic.ts flush_tlb_kernel_range_ipi).
   */
  flush_tlb_kernel_range?(start: number, end: number): void;
  /**
   * set_pte_at(&init_mm, addr, ...) / ptep_get_and_clear(&init_mm, addr, ...) of a
   * kernel PTE. Absent: a plain store / exchange (x86 native; sparc64, whose
   * maybe_tlb_batch_add skips init_mm). Arches that defer kernel PTE work in a
   * lazy section say how: arm64 (the barrier), Xen PV (set_pte's multicall),
   * powerpc hash (hpte_need_flush's batch), s390 (the series' ipte_range).
   */
  set_pte_kernel?(ptep: number, pte: number, addr: number): void;
  ptep_get_and_clear_kernel?(ptep: number, addr: number): number;
  /**
   * A kernel translation fault the arch treats as spurious: it retries the
   * access (arm64 is_spurious_el1_translation_fault: an AT S1E1R that now
   * succeeds). Absent: every such fault is an oops.
   */
  is_spurious_kernel_fault?(cpu: Cpu, va: number, write: boolean): boolean;
  /**
   * How DEBUG_PAGEALLOC's __kernel_map_pages flushes: 'local' (x86: __flush_tlb_all
   * on this CPU only, for mapping and unmapping), or absent: arm64's
   * set_memory_valid (flush_tlb_kernel_range when invalidating only).
   */
  readonly kernel_map_pages_flush?: 'local';
}

/** IPI handler types (the CC_INFO_TYPE word of the sender). */
export const IPI_FLUSH_TLB = 0;
export const IPI_FLUSH_TLB_PENDING = 1; // sparc64 smp_flush_tlb_pending: a list of vaddrs
export const IPI_TLB_REMOVE_TABLE_SYNC = 2; // mm/mmu_gather.c tlb_remove_table_smp_sync: "simply deliver the interrupt"
export const IPI_FLUSH_TLB_KERNEL = 3; // x86 flush_tlb_kernel_range: on_each_cpu(do_kernel_range_flush)
export const IPI_TYPES = 4;
