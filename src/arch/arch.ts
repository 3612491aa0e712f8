// The one seam between generic mm code and an architecture: how a PTE update is
// carried out, how TLBs are invalidated, how an mm is switched in and out, and
// the lazy MMU hooks. Generic code (src/mm) calls only this interface.

import type { Cpu, Host } from '../hw/cpu.ts';

export interface Arch {
  readonly name: string;
  /** register IPI handlers etc. on a host (every thread that runs CPUs) */
  initHost(host: Host): void;

  // PTE updates (the pgtable.h accessors dispatch here)
  set_pte(ptep: number, pte: number): void;
  ptep_get(ptep: number): number;
  ptep_get_and_clear(mm: number, addr: number, ptep: number): number;

  // TLB invalidation (asm/tlbflush.h)
  flush_tlb_mm_range(mm: number, start: number, end: number, strideShift: number, freedTables: boolean): void;
  flush_tlb_mm(mm: number): void;
  /** flush one page on this CPU only (spurious-fault fix-up) */
  flush_tlb_local_page(cpu: Cpu, va: number): void;

  // mm switching (asm/mmu_context.h)
  switch_mm_irqs_off(cpu: Cpu, prev: number, next: number): void;
  enter_lazy_tlb(cpu: Cpu): void;
  /** the mm is going away: drop this CPU's use of it */
  leave_mm(cpu: Cpu, mm: number): void;

  // lazy MMU mode hooks
  arch_enter_lazy_mmu_mode(): void;
  arch_leave_lazy_mmu_mode(): void;
  arch_flush_lazy_mmu_mode(): void;
}

/** IPI handler types (the CC_INFO_TYPE word of the sender). */
export const IPI_FLUSH_TLB = 0;
export const IPI_TYPES = 1;
