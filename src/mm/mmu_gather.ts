// mmu_gather (mm/mmu_gather.c, include/asm-generic/tlb.h: tlb_gather_mmu,
// tlb_flush_mmu, tlb_finish_mmu; docs/kernel-rules.md#flush-rules T3): the
// order unhook -> flush TLBs -> free, for pages and page-table pages alike.
//
// Two arch variations, as the kernel has them:
//  - MMU_GATHER_NO_GATHER (s390, arch.mmu_gather_no_gather): __tlb_remove_page
//    frees the page at once (arch/s390/include/asm/tlb.h __tlb_remove_page_size
//    and __tlb_remove_folio_pages: "s390 doesn't delay rmap removal"): the arch
//    promises ptep_get_and_clear already invalidated the entry (IPTE, or the
//    invalid bit with the mm attached to this CPU only). THE FREE-AT-ONCE PATH IS
//    __tlb_remove_page BELOW; a lazy MMU backend that caches a clear instead of
//    doing it breaks that promise, and the page is freed while still mapped.
//  - MMU_GATHER_RCU_TABLE_FREE (arch.rcu_table_free): unhooked page tables are
//    freed only after a grace period (tlb_remove_table -> call_rcu); here the
//    freeing CPU waits until every CPU that had interrupts off has turned them on
//    (tlb_remove_table_sync: what a sched-RCU grace period guarantees GUP-fast,
//    which walks with interrupts off; mm/gup.c).

import { current } from '../hw/cpu.ts';
import { mmWord, cpuCtl, ST_IPI_SENT, MM_FLUSH_PENDING, PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT, PGDIR_SHIFT, CC_IRQS_OFF, CC_ONLINE } from '../hw/layout.ts';
import { knobs } from '../inject/knobs.ts';
import { arch } from './pgtable.ts';
import { IPI_TLB_REMOVE_TABLE_SYNC } from '../arch/arch.ts';
import { put_page, free_pt_page } from './page_alloc.ts';

/** Pages a gather holds before it must flush (the kernel's batches hold ~10k; small here to exercise the forced flush). */
export const MMU_GATHER_BATCH = 512;

export class mmu_gather {
  mm = -1;
  fullmm = false;
  start = Infinity;
  end = 0;
  freed_tables = false;
  /** which levels had entries cleared (include/asm-generic/tlb.h): they set the flush stride */
  cleared_ptes = false;
  cleared_pmds = false;
  cleared_puds = false;
  cleared_p4ds = false;
  npages = 0;
  readonly pages = new Int32Array(MMU_GATHER_BATCH);
  readonly vas = new Float64Array(MMU_GATHER_BATCH);
  tables: number[] = [];
}

export function tlb_gather_mmu(tlb: mmu_gather, mm: number, fullmm = false): void {
  tlb.mm = mm;
  tlb.fullmm = fullmm;
  __tlb_reset_range(tlb);
  Atomics.add(current.I, mmWord(current.V.L, mm, MM_FLUSH_PENDING), 1);
}

function __tlb_reset_range(tlb: mmu_gather): void {
  tlb.start = Infinity;
  tlb.end = 0;
  tlb.freed_tables = false;
  tlb.cleared_ptes = tlb.cleared_pmds = tlb.cleared_puds = tlb.cleared_p4ds = false;
}

function __tlb_adjust_range(tlb: mmu_gather, addr: number, size: number): void {
  if (addr < tlb.start) tlb.start = addr;
  if (addr + size > tlb.end) tlb.end = addr + size;
}

export function tlb_flush_pte_range(tlb: mmu_gather, addr: number, size: number): void {
  __tlb_adjust_range(tlb, addr, size);
  tlb.cleared_ptes = true;
}
/** a huge PMD leaf cleared (tlb_remove_pmd_tlb_entry), or a PTE table freed (pte_free_tlb) */
export function tlb_flush_pmd_range(tlb: mmu_gather, addr: number, size: number): void {
  __tlb_adjust_range(tlb, addr, size);
  tlb.cleared_pmds = true;
}
/** a huge PUD leaf cleared, or a PMD table freed */
export function tlb_flush_pud_range(tlb: mmu_gather, addr: number, size: number): void {
  __tlb_adjust_range(tlb, addr, size);
  tlb.cleared_puds = true;
}

/**
 * tlb_get_unmap_shift (include/asm-generic/tlb.h): the smallest level cleared
 * sets the stride of the flush: PAGE_SHIFT if any PTE, else PMD_SHIFT (a zap
 * of huge PMDs only), else PUD_SHIFT ...
 */
export function tlb_get_unmap_shift(tlb: mmu_gather): number {
  if (tlb.cleared_ptes) return PAGE_SHIFT;
  if (tlb.cleared_pmds) return PMD_SHIFT;
  if (tlb.cleared_puds) return PUD_SHIFT;
  if (tlb.cleared_p4ds) return PGDIR_SHIFT; // P4D folded into the PGD here
  return PAGE_SHIFT;
}

/**
 * Queue a page whose PTE was cleared; true when the batch is full and the caller
 * must flush. MMU_GATHER_NO_GATHER (s390): free it now and never ask for a flush.
 */
export function __tlb_remove_page(tlb: mmu_gather, pfn: number, va: number): boolean {
  if (arch.mmu_gather_no_gather) {
    // the suggested fix of docs/findings/s390-lazy-zap-uaf.md (--lazy-series v6-fixed):
    // a page whose clear may still be cached in the lazy MMU batch is freed by the batch
    if (arch.tlb_remove_page_lazy?.(pfn, va)) return false;
    put_page(pfn, va); // free_folio_and_swap_cache
    return false;
  }
  tlb.pages[tlb.npages] = pfn;
  tlb.vas[tlb.npages] = va;
  tlb.npages++;
  return tlb.npages === MMU_GATHER_BATCH;
}

/**
 * Queue a page-table page that was unhooked (pte_free_tlb, pmd_free_tlb,
 * pud_free_tlb: `level` is the level of the entry that pointed to it); freed
 * only after the flush.
 */
export function tlb_remove_table(tlb: mmu_gather, pfn: number, addr: number, size: number, level: 'pmd' | 'pud' | 'p4d' = 'pmd'): void {
  arch.pte_free_tlb?.(tlb.mm);
  tlb.tables.push(pfn);
  tlb.freed_tables = true;
  __tlb_adjust_range(tlb, addr, size);
  if (level === 'pmd') tlb.cleared_pmds = true;
  else if (level === 'pud') tlb.cleared_puds = true;
  else tlb.cleared_p4ds = true;
}

export function tlb_flush_mmu_tlbonly(tlb: mmu_gather): void {
  if (!(tlb.end > tlb.start || tlb.freed_tables)) return;
  if (!knobs['munmap.skip_flush']) {
    // tlb_flush (arch/x86/include/asm/tlb.h; arm64 likewise): the stride from tlb_get_unmap_shift
    const stride = tlb_get_unmap_shift(tlb);
    if (tlb.fullmm) arch.flush_tlb_mm_range(tlb.mm, 0, -1, stride, tlb.freed_tables);
    else arch.flush_tlb_mm_range(tlb.mm, tlb.start, tlb.end, stride, tlb.freed_tables);
  }
  __tlb_reset_range(tlb);
}

function tlb_flush_mmu_free(tlb: mmu_gather): void {
  for (let i = 0; i < tlb.npages; i++) put_page(tlb.pages[i], tlb.vas[i]);
  if (knobs['munmap.double_put']) for (let i = 0; i < tlb.npages; i++) put_page(tlb.pages[i], tlb.vas[i]); // BUG (injected)
  tlb.npages = 0;
  if (tlb.tables.length > 0 && arch.rcu_table_free) tlb_remove_table_sync();
  for (const t of tlb.tables) free_pt_page(t);
  tlb.tables.length = 0;
}

/**
 * The grace period of MMU_GATHER_RCU_TABLE_FREE, at its shortest: wait until
 * every other CPU that has interrupts off now has turned them on once. A walker
 * that could still hold a pointer into an unhooked table (GUP-fast) disabled
 * interrupts before it read the entry pointing to it; a sched-RCU grace period
 * (call_rcu in tlb_remove_table) ends no sooner than that.
 */
export function tlb_remove_table_sync(): void {
  const cpu = current;
  const I = cpu.I;
  const L = cpu.V.L;
  // tlb_remove_table_sync_one's IPI (smp_call_function, wait), sent only to the
  // CPUs that have interrupts off now: the others have nothing in flight, and
  // would answer at once. A target answers when it turns interrupts on.
  let n = 0;
  for (let t = 0; t < L.shape.cpus; t++) {
    if (t === cpu.id || Atomics.load(I, cpuCtl(L, t, CC_ONLINE)) === 0) continue;
    if (Atomics.load(I, cpuCtl(L, t, CC_IRQS_OFF)) !== 0) syncTargets[n++] = t;
  }
  if (n === 0) return;
  cpu.send_ipis_and_wait(syncTargets, n, IPI_TLB_REMOVE_TABLE_SYNC);
  cpu.I[cpu.st + ST_IPI_SENT] -= n; // a grace period, not an interrupt, in the kernel (call_rcu): not counted as IPIs
}
const syncTargets = new Int32Array(256);

export function tlb_flush_mmu(tlb: mmu_gather): void {
  if (knobs['munmap.free_before_flush']) {
    // BUG (injected): the pages go back to the allocator while other CPUs may
    // still hold TLB entries for them.
    tlb_flush_mmu_free(tlb);
    tlb_flush_mmu_tlbonly(tlb);
    return;
  }
  tlb_flush_mmu_tlbonly(tlb);
  tlb_flush_mmu_free(tlb);
}

export function tlb_finish_mmu(tlb: mmu_gather): void {
  const I = current.I;
  const pending = mmWord(current.V.L, tlb.mm, MM_FLUSH_PENDING);
  // Another gather on this mm at the same time may have skipped entries we
  // cleared (or the reverse): flush everything (mm_tlb_flush_nested).
  if (Atomics.load(I, pending) > 1) {
    tlb.fullmm = true;
    __tlb_reset_range(tlb);
    tlb.freed_tables = true;
  }
  tlb_flush_mmu(tlb);
  Atomics.sub(I, pending, 1);
}
