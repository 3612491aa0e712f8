// mmu_gather (mm/mmu_gather.c, include/asm-generic/tlb.h: tlb_gather_mmu,
// tlb_flush_mmu, tlb_finish_mmu; docs/kernel-rules.md#flush-rules T3): the
// order unhook -> flush TLBs -> free, for pages and page-table pages alike.

import { current } from '../hw/cpu.ts';
import { mmWord, MM_FLUSH_PENDING, PAGE_SHIFT } from '../hw/layout.ts';
import { knobs } from '../inject/knobs.ts';
import { arch } from './pgtable.ts';
import { put_page, free_pt_page } from './page_alloc.ts';

/** Pages a gather holds before it must flush (the kernel's batches hold ~10k; small here to exercise the forced flush). */
export const MMU_GATHER_BATCH = 512;

export class mmu_gather {
  mm = -1;
  fullmm = false;
  start = Infinity;
  end = 0;
  freed_tables = false;
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
}

export function tlb_flush_pte_range(tlb: mmu_gather, addr: number, size: number): void {
  if (addr < tlb.start) tlb.start = addr;
  if (addr + size > tlb.end) tlb.end = addr + size;
}

/** Queue a page whose PTE was cleared; true when the batch is full and the caller must flush. */
export function __tlb_remove_page(tlb: mmu_gather, pfn: number, va: number): boolean {
  tlb.pages[tlb.npages] = pfn;
  tlb.vas[tlb.npages] = va;
  tlb.npages++;
  return tlb.npages === MMU_GATHER_BATCH;
}

/** Queue a page-table page that was unhooked; freed only after the flush. */
export function tlb_remove_table(tlb: mmu_gather, pfn: number, addr: number, size: number): void {
  tlb.tables.push(pfn);
  tlb.freed_tables = true;
  tlb_flush_pte_range(tlb, addr, size);
}

export function tlb_flush_mmu_tlbonly(tlb: mmu_gather): void {
  if (!(tlb.end > tlb.start || tlb.freed_tables)) return;
  if (!knobs['munmap.skip_flush']) {
    if (tlb.fullmm) arch.flush_tlb_mm_range(tlb.mm, 0, -1, PAGE_SHIFT, true);
    else arch.flush_tlb_mm_range(tlb.mm, tlb.start, tlb.end, PAGE_SHIFT, tlb.freed_tables);
  }
  __tlb_reset_range(tlb);
}

function tlb_flush_mmu_free(tlb: mmu_gather): void {
  for (let i = 0; i < tlb.npages; i++) put_page(tlb.pages[i], tlb.vas[i]);
  if (knobs['munmap.double_put']) for (let i = 0; i < tlb.npages; i++) put_page(tlb.pages[i], tlb.vas[i]); // BUG (injected)
  tlb.npages = 0;
  for (const t of tlb.tables) free_pt_page(t);
  tlb.tables.length = 0;
}

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
