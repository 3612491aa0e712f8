// Generic page-table helpers (include/linux/pgtable.h, mm/memory.c's *_alloc).
// A "pointer" to an entry is its word index in the machine's Int32Array.
// Kernel code never touches the typed arrays for entries directly: it goes
// through these helpers, which dispatch PTE updates to the architecture.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import {
  frameWord, mmWord, tableEntry, FM_PTL, MM_PGD, MM_PT_LOCK, MM_PT_PAGES, PTRS_PER_TABLE,
  PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT, PAGE_SHIFT, ST_PTE_UPDATES, ST_LAZY_UPDATES,
  PAGE_SIZE,
} from '../hw/layout.ts';
import { pte_pfn, mk_table_entry, _PAGE_PRESENT, _PAGE_PSE } from '../hw/pte.ts';
import { pgtIndex } from '../hw/walker.ts';
import type { Arch } from '../arch/arch.ts';
import { alloc_pt_page, free_pt_page } from './page_alloc.ts';
import { is_lazy_mmu_mode_active, check_update_in_range } from './lazy_mmu.ts';

/** The architecture this thread's kernel runs on (set once per thread). */
export let arch: Arch = undefined as unknown as Arch;
export function set_arch(a: Arch): void {
  arch = a;
}

export const pgd_offset = (mm: number, addr: number): number => {
  const L = current.V.L;
  return tableEntry(L, current.I[mmWord(L, mm, MM_PGD)], pgtIndex(addr, PGDIR_SHIFT));
};
/** Entry for addr in the table the entry at `parentp` points to. */
function child(parentp: number, addr: number, shift: number): number {
  const e = Atomics.load(current.I, parentp);
  return tableEntry(current.V.L, pte_pfn(e), pgtIndex(addr, shift));
}
export const pud_offset = (pgdp: number, addr: number): number => child(pgdp, addr, PUD_SHIFT);
export const pmd_offset = (pudp: number, addr: number): number => child(pudp, addr, PMD_SHIFT);
export const pte_offset = (pmdp: number, addr: number): number => child(pmdp, addr, PAGE_SHIFT);

export const entry_present = (e: number): boolean => (e & _PAGE_PRESENT) !== 0;
export const entry_leaf = (e: number): boolean => (e & _PAGE_PSE) !== 0;

export function pgd_val(p: number): number {
  current.sched_point();
  return Atomics.load(current.I, p);
}
export const pud_val = pgd_val;
export const pmd_val = pgd_val;

/** Populate an empty upper-level entry with a new table (pud_alloc/pmd_alloc/__pte_alloc). Returns false on OOM. */
function table_alloc(mm: number, parentp: number, level: number, lockIdx: number): boolean {
  const cpu = current;
  const I = cpu.I;
  if (Atomics.load(I, parentp) !== 0) return true;
  const pfn = alloc_pt_page(mm, level);
  if (pfn === 0) return false;
  spin_lock(lockIdx);
  if (Atomics.load(I, parentp) === 0) {
    // the table is zeroed before it becomes reachable (smp_wmb in the kernel)
    Atomics.store(I, parentp, mk_table_entry(pfn));
    Atomics.add(I, mmWord(cpu.V.L, mm, MM_PT_PAGES), 1);
    spin_unlock(lockIdx);
  } else {
    spin_unlock(lockIdx);
    free_pt_page(pfn); // someone else populated it first
  }
  return true;
}

export function pud_alloc(mm: number, pgdp: number, addr: number): number {
  if (!table_alloc(mm, pgdp, 3, mmWord(current.V.L, mm, MM_PT_LOCK))) return -1;
  return pud_offset(pgdp, addr);
}
export function pmd_alloc(mm: number, pudp: number, addr: number): number {
  if (!table_alloc(mm, pudp, 2, mmWord(current.V.L, mm, MM_PT_LOCK))) return -1;
  return pmd_offset(pudp, addr);
}
/** The split lock of the table page that holds the entry at `entryp` (ptlock_ptr(virt_to_ptdesc(entryp))). */
function table_lockptr(entryp: number): number {
  const L = current.V.L;
  const pfn = Math.floor((entryp - L.tableMem) / PTRS_PER_TABLE);
  return frameWord(L, pfn, FM_PTL);
}
/** pmd_lock: the split lock of the PMD table page holding pmdp. */
export function pmd_lockptr(pmdp: number): number {
  return table_lockptr(pmdp);
}
/**
 * ptep_lockptr (include/linux/mm.h; added by "mm/hugetlb: fix hugetlb vs.
 * core-mm PT locking", D. Hildenbrand, 2024): the split PTL of the PTE
 * table page holding ptep. Callers of pte_offset_map_lock take the lock it
 * took from here (the kernel hands it back through a spinlock_t ** argument).
 */
export function ptep_lockptr(ptep: number): number {
  return table_lockptr(ptep);
}
export function __pte_alloc(mm: number, pmdp: number): boolean {
  return table_alloc(mm, pmdp, 1, pmd_lockptr(pmdp));
}

/** The split PTL of the PTE table a PMD entry points to. */
export function pte_lockptr(pmdval: number): number {
  return frameWord(current.V.L, pte_pfn(pmdval), FM_PTL);
}

/**
 * pte_offset_map_lock: lock the PTE table under pmdp and return the entry
 * pointer for addr, or -1 if the PMD no longer points to a PTE table (it was
 * freed or changed before we got the lock: the caller retries or gives up).
 * The lock taken is ptep_lockptr(the entry returned): no state is handed
 * back on the side (one host thread may carry several CPUs).
 */
export function pte_offset_map_lock(pmdp: number, addr: number): number {
  const I = current.I;
  const pmdval = Atomics.load(I, pmdp);
  if ((pmdval & _PAGE_PRESENT) === 0 || (pmdval & _PAGE_PSE) !== 0) return -1;
  const lock = pte_lockptr(pmdval);
  spin_lock(lock);
  if (Atomics.load(I, pmdp) !== pmdval) {
    spin_unlock(lock);
    return -1;
  }
  return tableEntry(current.V.L, pte_pfn(pmdval), pgtIndex(addr, PAGE_SHIFT));
}
export function pte_unmap_unlock(lock: number): void {
  spin_unlock(lock);
}

// PTE accessors: all dispatch to the arch (lazy MMU backends intercept them).
// Updates are counted, and checked against the lazy MMU contract in force.
function updating(ptep: number): void {
  const cpu = current;
  cpu.stat(ST_PTE_UPDATES);
  if (is_lazy_mmu_mode_active()) {
    cpu.stat(ST_LAZY_UPDATES);
    check_update_in_range(cpu, ptep);
  }
}
export const ptep_get = (ptep: number): number => arch.ptep_get(ptep);
export function set_pte_at(mm: number, addr: number, ptep: number, pte: number): void {
  updating(ptep);
  arch.set_pte_at(mm, addr, ptep, pte);
}
/**
 * set_pte_at(&init_mm, ...) of a kernel PTE (vmalloc, the linear map): the
 * arch's kernel accessor (arm64: __set_pte_complete's barrier, deferred inside a
 * lazy section), else a plain store (x86 native_set_pte).
 */
export function set_pte_kernel(mm: number, addr: number, ptep: number, pte: number): void {
  updating(ptep);
  if (arch.set_pte_kernel) arch.set_pte_kernel(ptep, pte, addr);
  else {
    const cpu = current;
    cpu.sched_point();
    cpu.hotHint = 1;
    Atomics.store(cpu.I, ptep, pte);
  }
  void mm;
  void addr;
}
/** ptep_get_and_clear(&init_mm, ...) (vunmap_pte_range): the arch's kernel accessor, else an exchange. */
export function ptep_get_and_clear_kernel(mm: number, addr: number, ptep: number): number {
  updating(ptep);
  if (arch.ptep_get_and_clear_kernel) return arch.ptep_get_and_clear_kernel(ptep, addr);
  const cpu = current;
  cpu.sched_point();
  cpu.hotHint = 1;
  void mm;
  void addr;
  return Atomics.exchange(cpu.I, ptep, 0);
}
export function ptep_get_and_clear(mm: number, addr: number, ptep: number): number {
  updating(ptep);
  return arch.ptep_get_and_clear(mm, addr, ptep);
}
/** ptep_get_and_clear_full: `full` while exit_mmap tears the whole mm down (tlb->fullmm). */
export function ptep_get_and_clear_full(mm: number, addr: number, ptep: number, full: boolean): number {
  updating(ptep);
  return arch.ptep_get_and_clear_full ? arch.ptep_get_and_clear_full(mm, addr, ptep, full) : arch.ptep_get_and_clear(mm, addr, ptep);
}
export function ptep_set_wrprotect(mm: number, addr: number, ptep: number): void {
  updating(ptep);
  arch.ptep_set_wrprotect(mm, addr, ptep);
}
export function ptep_set_access_flags(mm: number, addr: number, ptep: number, pte: number): void {
  updating(ptep);
  arch.ptep_set_access_flags(mm, addr, ptep, pte);
}
export function ptep_modify_prot_start(mm: number, addr: number, ptep: number): number {
  updating(ptep);
  return arch.ptep_modify_prot_start(mm, addr, ptep);
}
export function ptep_modify_prot_commit(mm: number, addr: number, ptep: number, old: number, pte: number): void {
  arch.ptep_modify_prot_commit(mm, addr, ptep, old, pte);
}
/** ptep_clear_flush: clear the entry and flush it from every TLB before returning. */
export function ptep_clear_flush(mm: number, addr: number, ptep: number): number {
  updating(ptep);
  return arch.ptep_clear_flush(mm, addr, ptep);
}
/**
 * A direct dereference of a PTE pointer (what kernel code must not do inside a
 * lazy MMU section): reads memory, bypassing queued or cached updates. Reported
 * when memory is stale for that entry (docs/kernel-rules.md#direct-deref).
 */
export function pte_deref(ptep: number): number {
  const cpu = current;
  if (arch.pte_kasan_poisoned?.(ptep)) {
    // s390, Gordeev's series v3+ (patch "s390/mm: Lazy MMU mode sanitizer"): the
    // range's PTEs are KASAN-poisoned from enter to leave; any access other than
    // set_pte/ptep_get (and the unsanitised ptep_get_lockless) is a report
    cpu.host.hooks.violation({
      kind: 'lazy-mmu-contract', cpu: cpu.id,
      message: `cpu ${cpu.id}: KASAN: direct-pte-access of a PTE in the range of a lazy MMU section on ${arch.name} (the series' sanitizer, v3+)`,
    });
  } else if (is_lazy_mmu_mode_active() && arch.pte_memory_stale(ptep)) {
    cpu.host.hooks.violation({
      kind: 'lazy-mmu-contract', cpu: cpu.id,
      message: `cpu ${cpu.id}: direct dereference of a PTE inside a lazy MMU section on ${arch.name}: memory still holds the old value (docs/kernel-rules.md#direct-deref)`,
    });
  }
  return Atomics.load(cpu.I, ptep);
}

export function flush_tlb_range(mm: number, start: number, end: number): void {
  arch.flush_tlb_mm_range(mm, start, end, PAGE_SHIFT, false);
}
export function flush_tlb_page(mm: number, addr: number): void {
  if (arch.flush_tlb_page) arch.flush_tlb_page(mm, addr);
  else arch.flush_tlb_mm_range(mm, addr, addr + PAGE_SIZE, PAGE_SHIFT, false);
}
