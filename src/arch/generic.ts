// Native PTE accessors: every update goes straight to memory with one Atomics
// operation. Architectures spread this object and override what they defer.

import { current } from '../hw/cpu.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../hw/pte.ts';
import { PAGE_SHIFT } from '../hw/layout.ts';
import type { Arch } from './arch.ts';

export const native = {
  ptep_get(ptep: number): number {
    current.sched_point();
    return Atomics.load(current.I, ptep);
  },
  set_pte_at(_mm: number, _addr: number, ptep: number, pte: number): void {
    current.sched_point();
    Atomics.store(current.I, ptep, pte);
  },
  ptep_get_and_clear(_mm: number, _addr: number, ptep: number): number {
    current.sched_point();
    return Atomics.exchange(current.I, ptep, 0);
  },
  ptep_set_wrprotect(_mm: number, _addr: number, ptep: number): void {
    current.sched_point();
    Atomics.and(current.I, ptep, ~_PAGE_RW);
  },
  ptep_set_access_flags(_mm: number, _addr: number, ptep: number, pte: number): void {
    current.sched_point();
    Atomics.store(current.I, ptep, pte);
  },
  ptep_modify_prot_start(_mm: number, _addr: number, ptep: number): number {
    current.sched_point();
    return Atomics.exchange(current.I, ptep, 0);
  },
  ptep_modify_prot_commit(_mm: number, _addr: number, ptep: number, _old: number, pte: number): void {
    current.sched_point();
    Atomics.store(current.I, ptep, pte);
  },
  pte_memory_stale(_ptep: number): boolean {
    return false;
  },
} satisfies Partial<Arch>;

/** ptep_clear_flush for arches whose flush_tlb_mm_range does the invalidation (x86, arm64). */
export function clear_then_flush(arch: Arch, mm: number, addr: number, ptep: number): number {
  const old = arch.ptep_get_and_clear(mm, addr, ptep);
  if (old & _PAGE_PRESENT) arch.flush_tlb_mm_range(mm, addr, addr + 4096, PAGE_SHIFT, false);
  return old;
}
