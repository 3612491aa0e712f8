// mm/huge_memory.c (reduced): transparent huge pages at PMD level for private
// anonymous memory, and PUD leaves of a DAX-like device, so that zap, split,
// mprotect, mremap (HPAGE_PMD / HPAGE_PUD moves of mm/mremap.c move_pgt_entry) and fork
// (copy_huge_pmd, called from mm/memory.c copy_page_range) meet huge entries.
//
// A huge PMD maps a 2 MiB compound page (512 contiguous data frames; the folio's
// refcount and entire mapcount live on the head, src/mm/page_alloc.ts). A PTE
// table is deposited with every anonymous huge PMD (pgtable_trans_huge_deposit,
// a list on the PMD table's frame), so a split never allocates. Locks: a huge
// PMD is changed under its PMD table's split lock (pmd_lockptr); a PUD leaf under
// mm->page_table_lock (pud_lockptr). A huge PMD being split is left invalid but
// still a leaf (_PAGE_PSE without _PAGE_PRESENT) between its invalidation and
// the installation of the PTE table, so a concurrent fault or zap that meets it
// takes the lock and waits, as pmd_trans_huge() makes the kernel do.
//
// PUD leaves: Linux has no anonymous PUD THP; its PUD leaves that mremap moves
// (move_huge_pud) are DAX device mappings. A region with thp: 'pud' maps such a
// device: one 1 GiB compound page allocated at boot, whose "file" (a shmem file
// object with FILE_DEV_PFN set) holds its reference; a fault installs a PUD leaf
// where the aligned 1 GiB lies in the VMA, otherwise a PTE for the 4 KiB piece;
// a split just clears the PUD (the rest refaults in PTEs), as for DAX.

import { current, VM_FAULT_OK } from '../hw/cpu.ts';
import { spin_lock, spin_lock_nested, spin_unlock } from '../hw/locks.ts';
import { SINGLE_DEPTH_NESTING } from '../hw/lockdep.ts';
import {
  type Views, frameWord, tableEntry, mmWord, fileWord, PTRS_PER_TABLE, PAGE_SIZE, PMD_SIZE, PUD_SIZE, PMD_SHIFT, PUD_SHIFT,
  MM_RSS, MM_PT_LOCK, MM_PT_PAGES, FM_FLAGS, FM_OWNER, FM_PMD_HUGE_PTE, FILE_DEV_PFN, FILE_SIZE_PAGES, PG_ANON, HPAGE_PMD_ORDER,
  HPAGE_PUD_ORDER, ST_THP_FAULT, ST_THP_SPLIT, ST_MOVE_HUGE_PMD, ST_MOVE_HUGE_PUD,
} from '../hw/layout.ts';
import {
  pfn_pte, pte_pfn, pte_flags, mk_table_entry, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE,
} from '../hw/pte.ts';
import { knobs } from '../inject/knobs.ts';
import { arch, pmd_lockptr, set_pte_at } from './pgtable.ts';
import {
  alloc_compound_page, alloc_pt_page, free_pt_page, get_page, put_page, page_mapcount_inc, page_ref, compound_head,
  folio_ref_add, folio_entire_mapcount, folio_entire_mapcount_add,
} from './page_alloc.ts';
import { type mmu_gather, __tlb_remove_page, tlb_flush_pmd_range, tlb_flush_pud_range, tlb_flush_mmu } from './mmu_gather.ts';
import type { Vma } from './vma.ts';
import { type vm_fault, vmf_anon_prepare, vm_page_prot } from './memory.ts';
import { shmem_file_setup } from './shmem.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYWRITE, VM_HUGEPAGE } from './vm_flags.ts';
import { ENOMEM, EAGAIN } from './errno.ts';

export const HPAGE_PMD_NR = 2 ** HPAGE_PMD_ORDER;
export const HPAGE_PUD_NR = 2 ** HPAGE_PUD_ORDER;
/** A fault path that is not for this level: continue at the next (VM_FAULT_FALLBACK). */
export const VM_FAULT_FALLBACK = -1;

/** pmd_trans_huge: a huge leaf, present, or invalid while it is being split. */
export const pmd_trans_huge = (pmdval: number): boolean => (pmdval & _PAGE_PSE) !== 0;
/** pud_trans_huge: a PUD leaf (present or invalid while it changes). */
export const pud_trans_huge = (pudval: number): boolean => (pudval & _PAGE_PSE) !== 0;
const leaf_present = (v: number): boolean => (v & (_PAGE_PRESENT | _PAGE_PSE)) === (_PAGE_PRESENT | _PAGE_PSE);

/** Hooks other parts of the kernel fill in. */
export const thp_hooks = {
  /** folio_maybe_dma_pinned (fork's anon-exclusive/pin model, when there is one): copy_huge_pmd splits such a page */
  folio_maybe_dma_pinned: (_head: number): boolean => false,
};

/** has_transparent_hugepage() */
export function has_transparent_hugepage(): boolean {
  return arch.has_transparent_hugepage !== false;
}

// ---- entry accessors ------------------------------------------------------------

/** Replace a huge leaf (the arch purges at the change where it does so; see Arch.pmdp_huge_xchg). */
function pmdp_huge_xchg(mm: number, addr: number, pmdp: number, size: number, val: number): number {
  if (arch.pmdp_huge_xchg) return arch.pmdp_huge_xchg(mm, addr, pmdp, size, val);
  current.sched_point();
  return Atomics.exchange(current.I, pmdp, val);
}
/** pmdp_huge_get_and_clear */
export function pmdp_huge_get_and_clear(mm: number, addr: number, pmdp: number): number {
  return pmdp_huge_xchg(mm, addr, pmdp, PMD_SIZE, 0);
}
export function pudp_huge_get_and_clear(mm: number, addr: number, pudp: number): number {
  return pmdp_huge_xchg(mm, addr, pudp, PUD_SIZE, 0);
}
/** set_pmd_at / set_pud_at: into an empty or invalid entry (never over a valid one). */
function set_huge_at(pmdp: number, val: number): void {
  current.sched_point();
  Atomics.store(current.I, pmdp, val);
}
/** flush_pmd_tlb_range: the huge stride, so x86 sends one range and each TLB drops every 4 KiB piece in it. */
export function flush_pmd_tlb_range(mm: number, start: number, end: number): void {
  arch.flush_tlb_mm_range(mm, start, end, PMD_SHIFT, false);
}
export function flush_pud_tlb_range(mm: number, start: number, end: number): void {
  arch.flush_tlb_mm_range(mm, start, end, PUD_SHIFT, false);
}
/** pud_lock: mm->page_table_lock */
export function pud_lockptr(mm: number): number {
  return mmWord(current.V.L, mm, MM_PT_LOCK);
}

const tableOf = (pmdp: number): number => Math.floor((pmdp - current.V.L.tableMem) / PTRS_PER_TABLE);

/** pgtable_trans_huge_deposit: keep a PTE table with the huge PMD, for its split (PMD lock held). */
export function pgtable_trans_huge_deposit(pmdp: number, pgtable: number): void {
  const { I, L } = current.V;
  const list = frameWord(L, tableOf(pmdp), FM_PMD_HUGE_PTE);
  Atomics.store(I, frameWord(L, pgtable, FM_PMD_HUGE_PTE), Atomics.load(I, list));
  Atomics.store(I, list, pgtable);
}
/** mm_inc_nr_ptes / mm_dec_nr_ptes: a deposited table counts as the mm's page table */
function mm_nr_ptes_add(mm: number, n: number): void {
  Atomics.add(current.I, mmWord(current.V.L, mm, MM_PT_PAGES), n);
}
/** pgtable_trans_huge_withdraw: one deposited table of pmdp's PMD table, or 0 (PMD lock held). */
export function pgtable_trans_huge_withdraw(pmdp: number): number {
  const { I, L } = current.V;
  const list = frameWord(L, tableOf(pmdp), FM_PMD_HUGE_PTE);
  const t = Atomics.load(I, list);
  if (t === 0) return 0;
  Atomics.store(I, list, Atomics.load(I, frameWord(L, t, FM_PMD_HUGE_PTE)));
  Atomics.store(I, frameWord(L, t, FM_PMD_HUGE_PTE), 0);
  return t;
}
/** The deposited tables of a PMD table (for the audit). */
export function deposited_tables(I: Int32Array, L: Views['L'], pmdTable: number): number[] {
  const out: number[] = [];
  for (let t = I[frameWord(L, pmdTable, FM_PMD_HUGE_PTE)]; t !== 0 && out.length <= L.shape.tableFrames; t = I[frameWord(L, t, FM_PMD_HUGE_PTE)]) out.push(t);
  return out;
}

function add_rss(mm: number, n: number): void {
  Atomics.add(current.I, mmWord(current.V.L, mm, MM_RSS), n);
}

function no_huge_deposit(mm: number, addr: number): void {
  const cpu = current;
  cpu.host.hooks.violation({
    kind: 'thp', cpu: cpu.id, va: addr,
    message: `cpu ${cpu.id}: the huge PMD of mm ${mm} at 0x${addr.toString(16)} has no deposited page table to split into`,
  });
}

// ---- faults -----------------------------------------------------------------------

/**
 * thp_vma_allowable_order + thp_vma_suitable_order: may a huge PMD map [haddr,
 * haddr + 2 MiB) of this VMA? The THP mode is "madvise": only VMAs given
 * MADV_HUGEPAGE (VM_HUGEPAGE, src/mm/madvise.ts) get huge pages.
 */
export function thp_vma_suitable(vma: Vma, haddr: number): boolean {
  return has_transparent_hugepage() && (vma.flags & VM_HUGEPAGE) !== 0 && vma.file < 0 && (vma.flags & VM_SHARED) === 0 &&
    haddr >= vma.start && haddr + PMD_SIZE <= vma.end;
}

/**
 * The PMD level of handle_mm_fault (pmdp is allocated): a fault on an empty PMD
 * of a THP VMA tries a huge page; a fault on a huge PMD is handled here
 * (access bits, write protection). Returns a VM_FAULT_* code, or
 * VM_FAULT_FALLBACK to carry on with PTEs.
 */
export function huge_pmd_fault(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number, write: boolean): number {
  const cpu = current;
  cpu.sched_point();
  const v = Atomics.load(cpu.I, pmdp);
  if (v === 0) {
    const haddr = Math.floor(addr / PMD_SIZE) * PMD_SIZE;
    if (!thp_vma_suitable(vma, haddr)) return VM_FAULT_FALLBACK;
    return do_huge_pmd_anonymous_page(mm, vmf, vma, pmdp, haddr);
  }
  if (!pmd_trans_huge(v)) return VM_FAULT_FALLBACK;
  return huge_pmd_leaf_fault(mm, vma, pmdp, addr, write);
}

/**
 * do_huge_pmd_anonymous_page: a zeroed 2 MiB page and its deposit table are
 * allocated first; under the PMD lock, if the PMD is still empty, the huge PMD
 * is installed. Read faults allocate too (no huge zero page). Falls back to
 * PTEs when no 2 MiB of contiguous memory is free.
 */
export function do_huge_pmd_anonymous_page(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, haddr: number): number {
  const cpu = current;
  const ret = vmf_anon_prepare(vmf); // VM_FAULT_RETRY under the VMA lock if the mmap_lock is not to be had
  if (ret) return ret;
  const page = alloc_compound_page(HPAGE_PMD_ORDER, true);
  if (page === 0) return VM_FAULT_FALLBACK;
  const pgtable = alloc_pt_page(mm, 1);
  if (pgtable === 0) {
    put_page(page);
    return VM_FAULT_FALLBACK;
  }
  let entry = pfn_pte(page, vm_page_prot(vma) | _PAGE_PSE | _PAGE_ACCESSED);
  if (vma.flags & VM_WRITE) entry |= _PAGE_RW | _PAGE_DIRTY;
  const lock = pmd_lockptr(pmdp);
  spin_lock(lock);
  if (Atomics.load(cpu.I, pmdp) !== 0) {
    // someone else populated it (a huge page or a PTE table): retry the access
    spin_unlock(lock);
    put_page(page);
    free_pt_page(pgtable);
    return VM_FAULT_OK;
  }
  folio_entire_mapcount_add(page, 1); // folio_add_new_anon_rmap(RMAP_LEVEL_PMD)
  pgtable_trans_huge_deposit(pmdp, pgtable);
  mm_nr_ptes_add(mm, 1);
  set_huge_at(pmdp, entry);
  add_rss(mm, HPAGE_PMD_NR);
  spin_unlock(lock);
  cpu.stat(ST_THP_FAULT);
  return VM_FAULT_OK;
}

/** A fault on a huge PMD: huge_pmd_set_accessed, or do_huge_pmd_wp_page for a write to a read-only one. */
function huge_pmd_leaf_fault(mm: number, vma: Vma, pmdp: number, addr: number, write: boolean): number {
  const cpu = current;
  const lock = pmd_lockptr(pmdp);
  spin_lock(lock);
  const v = Atomics.load(cpu.I, pmdp);
  if (!leaf_present(v)) {
    // split, zapped or moved meanwhile (we waited for whoever held the lock): retry
    spin_unlock(lock);
    return VM_FAULT_OK;
  }
  const haddr = Math.floor(addr / PMD_SIZE) * PMD_SIZE;
  if (write && (v & _PAGE_RW) === 0) return do_huge_pmd_wp_page(mm, vma, pmdp, lock, haddr, addr, v);
  const want = v | _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
  if (want !== v) pmdp_huge_xchg(mm, haddr, pmdp, PMD_SIZE, want);
  arch.flush_tlb_local_page(cpu, addr); // our stale piece, if that is why we faulted
  spin_unlock(lock);
  return VM_FAULT_OK;
}

/**
 * do_huge_pmd_wp_page (PMD lock held; dropped here): an exclusively owned huge
 * page (refcount 1, one PMD) is reused in place; otherwise the PMD is split and
 * the fault retried, so that do_wp_page copies just the 4 KiB page written.
 */
function do_huge_pmd_wp_page(mm: number, vma: Vma, pmdp: number, lock: number, haddr: number, addr: number, v: number): number {
  const cpu = current;
  const V = cpu.V;
  const head = pte_pfn(v);
  if ((vma.flags & VM_SHARED) !== 0 || (page_ref(V, head) === 1 && folio_entire_mapcount(V, head) === 1)) {
    pmdp_huge_xchg(mm, haddr, pmdp, PMD_SIZE, v | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED);
    arch.flush_tlb_local_page(cpu, addr);
    spin_unlock(lock);
    return VM_FAULT_OK;
  }
  __split_huge_pmd_locked(mm, pmdp, haddr, v);
  spin_unlock(lock);
  return VM_FAULT_OK; // VM_FAULT_FALLBACK: the retried access meets the PTE
}

// ---- split -------------------------------------------------------------------------

/** the stale-TLB oracle's change kinds (src/oracles/stale_tlb.ts CHANGE) */
const CHANGE_THP_SPLIT = 3;
const CHANGE_PUD_SPLIT = 7;

/**
 * __split_huge_pmd_locked (PMD lock held, v the present huge entry), in the
 * kernel's order: invalidate the huge PMD (pmdp_invalidate: it stays a leaf,
 * not present) and flush the huge range from every TLB; withdraw the deposited
 * table and fill it with 512 PTEs for the subpages (same protection, young and
 * dirty bits); the folio gains a reference per PTE beyond the PMD's, each
 * subpage a mapcount, the entire mapcount drops; then install the table.
 */
function __split_huge_pmd_locked(mm: number, pmdp: number, haddr: number, v: number): void {
  const cpu = current;
  const L = cpu.V.L;
  const head = pte_pfn(v);
  const old = pmdp_huge_xchg(mm, haddr, pmdp, PMD_SIZE, v & ~_PAGE_PRESENT);
  // BUG (injected) when on: pmdp_invalidate without its flush: CPUs keep the huge translation after the PTE table is installed
  if (!knobs['thp.split_no_flush']) flush_pmd_tlb_range(mm, haddr, haddr + PMD_SIZE);
  const pgtable = pgtable_trans_huge_withdraw(pmdp);
  if (pgtable === 0) {
    no_huge_deposit(mm, haddr);
    set_huge_at(pmdp, old);
    return;
  }
  const flags = pte_flags(old) & ~_PAGE_PSE;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    page_mapcount_inc(head + i);
    set_pte_at(mm, haddr + i * PAGE_SIZE, tableEntry(L, pgtable, i), pfn_pte(head + i, flags));
  }
  // BUG (injected) when on: the 511 references of the new PTEs are not taken
  if (!knobs['thp.split_no_ref']) folio_ref_add(head, HPAGE_PMD_NR - 1);
  folio_entire_mapcount_add(head, -1); // folio_remove_rmap_pmd, after the PTEs took their mapcounts
  set_huge_at(pmdp, mk_table_entry(pgtable)); // pmd_populate: the PTEs are in memory before the table is reachable
  cpu.stat(ST_THP_SPLIT);
}

/** __split_huge_pmd: split the huge PMD at pmdp (for addr) if it is still one. */
export function __split_huge_pmd(mm: number, pmdp: number, addr: number): void {
  const lock = pmd_lockptr(pmdp);
  const haddr = Math.floor(addr / PMD_SIZE) * PMD_SIZE;
  const promise = current.host.hooks.promise; // stale-TLB oracle hook: promise point = PMD lock dropped
  spin_lock(lock);
  const v = Atomics.load(current.I, pmdp);
  const split = leaf_present(v);
  if (split) {
    promise?.(mm, haddr, haddr + PMD_SIZE, false, CHANGE_THP_SPLIT);
    __split_huge_pmd_locked(mm, pmdp, haddr, v);
  }
  spin_unlock(lock);
  if (split) promise?.(mm, haddr, haddr + PMD_SIZE, true, CHANGE_THP_SPLIT);
}

/** The mm a page-table entry belongs to (its table frame's owner): vma->vm_mm, which our Vma does not carry. */
function entry_mm(entryp: number): number {
  const { I, L } = current.V;
  return Atomics.load(I, frameWord(L, tableOf(entryp), FM_OWNER)) - 1;
}

/** split_huge_pmd(vma, pmd, addr): for callers that meet a huge PMD they cannot handle whole (mremap's partial extents). */
export function split_huge_pmd(_vma: Vma, pmdp: number, addr: number): void {
  if (pmd_trans_huge(Atomics.load(current.I, pmdp))) __split_huge_pmd(entry_mm(pmdp), pmdp, addr);
}

/**
 * __split_huge_pud for a DAX-like PUD leaf: clear it and flush the 1 GiB range
 * (the VMA refaults PTEs from the device memory); the leaf's reference goes
 * after the flush. Returns false if the PUD was no longer a leaf.
 */
export function __split_huge_pud(mm: number, pudp: number, addr: number): boolean {
  const cpu = current;
  const lock = pud_lockptr(mm);
  spin_lock(lock);
  const v = Atomics.load(cpu.I, pudp);
  if (!leaf_present(v)) {
    spin_unlock(lock);
    return false;
  }
  const haddr = Math.floor(addr / PUD_SIZE) * PUD_SIZE;
  cpu.host.hooks.promise?.(mm, haddr, haddr + PUD_SIZE, false, CHANGE_PUD_SPLIT); // stale-TLB oracle hook
  const old = pudp_huge_get_and_clear(mm, haddr, pudp);
  flush_pud_tlb_range(mm, haddr, haddr + PUD_SIZE);
  const head = compound_head(cpu.V, pte_pfn(old));
  folio_entire_mapcount_add(head, -1);
  add_rss(mm, -HPAGE_PUD_NR);
  spin_unlock(lock);
  cpu.host.hooks.promise?.(mm, haddr, haddr + PUD_SIZE, true, CHANGE_PUD_SPLIT);
  put_page(head, haddr);
  return true;
}

/** split_huge_pud(vma, pud, addr) */
export function split_huge_pud(_vma: Vma, pudp: number, addr: number): void {
  if (pud_trans_huge(Atomics.load(current.I, pudp))) __split_huge_pud(entry_mm(pudp), pudp, addr);
}

// ---- zap ----------------------------------------------------------------------------

/**
 * zap_huge_pmd: clear a whole huge PMD into the mmu_gather (its range joins the
 * gather's flush; the page is queued and freed only after the flush); the
 * deposited table is freed at once (no walker ever saw it). False if the PMD is
 * not a huge leaf (any more).
 */
export function zap_huge_pmd(tlb: mmu_gather, mm: number, pmdp: number, haddr: number): boolean {
  const cpu = current;
  const lock = pmd_lockptr(pmdp);
  spin_lock(lock);
  if (!pmd_trans_huge(Atomics.load(cpu.I, pmdp))) {
    spin_unlock(lock);
    return false;
  }
  const orig = pmdp_huge_get_and_clear(mm, haddr, pmdp);
  tlb_flush_pmd_range(tlb, haddr, PMD_SIZE); // tlb_remove_pmd_tlb_entry
  const pgtable = pgtable_trans_huge_withdraw(pmdp); // zap_deposited_table
  if (pgtable !== 0) {
    free_pt_page(pgtable);
    mm_nr_ptes_add(mm, -1);
  } else no_huge_deposit(mm, haddr);
  let force = false;
  if (orig & _PAGE_PRESENT) {
    const head = pte_pfn(orig);
    folio_entire_mapcount_add(head, -1); // folio_remove_rmap_pmd
    add_rss(mm, -HPAGE_PMD_NR);
    // BUG (injected) when on: freed before the flush, while other TLBs hold pieces of it
    if (knobs['thp.free_before_flush']) put_page(head, haddr);
    else force = __tlb_remove_page(tlb, head, haddr); // tlb_remove_page_size(HPAGE_PMD_SIZE)
  }
  spin_unlock(lock);
  if (force) tlb_flush_mmu(tlb);
  return true;
}

/**
 * zap_pmd_range's huge case for [addr, next) within one PMD: a whole huge PMD
 * is zapped as one entry, a part of one is split first. Returns true when the
 * range was handled here, false when the caller must zap PTEs (after a split,
 * or the PMD is a table by now).
 */
export function zap_huge_pmd_range(tlb: mmu_gather, mm: number, pmdp: number, addr: number, next: number): boolean {
  const haddr = Math.floor(addr / PMD_SIZE) * PMD_SIZE;
  if (addr === haddr && next - addr === PMD_SIZE) {
    if (zap_huge_pmd(tlb, mm, pmdp, haddr)) return true;
  } else {
    __split_huge_pmd(mm, pmdp, addr);
  }
  return false;
}

/** zap_huge_pud: a whole PUD leaf into the gather. */
export function zap_huge_pud(tlb: mmu_gather, mm: number, pudp: number, haddr: number): boolean {
  const cpu = current;
  const lock = pud_lockptr(mm);
  spin_lock(lock);
  if (!pud_trans_huge(Atomics.load(cpu.I, pudp))) {
    spin_unlock(lock);
    return false;
  }
  const orig = pudp_huge_get_and_clear(mm, haddr, pudp);
  tlb_flush_pud_range(tlb, haddr, PUD_SIZE); // tlb_remove_pud_tlb_entry
  let force = false;
  if (orig & _PAGE_PRESENT) {
    const head = compound_head(cpu.V, pte_pfn(orig));
    folio_entire_mapcount_add(head, -1);
    add_rss(mm, -HPAGE_PUD_NR);
    force = __tlb_remove_page(tlb, head, haddr);
  }
  spin_unlock(lock);
  if (force) tlb_flush_mmu(tlb);
  return true;
}

/**
 * zap_pud_range's huge case for [addr, next) within one PUD: zap a whole leaf,
 * split (clear) a partly covered one. True when handled (the caller goes on at
 * next), false if the PUD is no longer a leaf (the caller walks its PMD table).
 */
export function zap_huge_pud_range(tlb: mmu_gather, mm: number, pudp: number, addr: number, next: number): boolean {
  const haddr = Math.floor(addr / PUD_SIZE) * PUD_SIZE;
  if (addr === haddr && next - addr === PUD_SIZE) return zap_huge_pud(tlb, mm, pudp, haddr);
  return __split_huge_pud(mm, pudp, addr);
}

// ---- mprotect -------------------------------------------------------------------------

/** The new huge entry for mprotect: as change_pte_range, writable only where the page is exclusively ours. */
function huge_modify(V: Views, old: number, vmFlags: number): number {
  let n = old & ~(_PAGE_RW | _PAGE_USER);
  if (vmFlags & (VM_READ | VM_WRITE | VM_EXEC)) n |= _PAGE_USER;
  if (vmFlags & VM_WRITE) {
    const head = compound_head(V, pte_pfn(old));
    if (vmFlags & VM_SHARED) n |= _PAGE_RW;
    else if ((Atomics.load(V.I, frameWord(V.L, head, FM_FLAGS)) & PG_ANON) !== 0 && page_ref(V, head) === 1 &&
      folio_entire_mapcount(V, head) === 1) n |= _PAGE_RW;
  }
  return n;
}

/**
 * change_huge_pmd: a whole huge PMD changes protection in place, under the PMD
 * lock: invalidate (pmdp_invalidate_ad), store the new entry, and add the range
 * to mprotect's gather, which flushes before the mmap_lock is dropped.
 */
function change_huge_pmd(tlb: mmu_gather, mm: number, vmFlags: number, pmdp: number, haddr: number): boolean {
  const cpu = current;
  const lock = pmd_lockptr(pmdp);
  spin_lock(lock);
  const v = Atomics.load(cpu.I, pmdp);
  if (!leaf_present(v)) {
    spin_unlock(lock);
    return false;
  }
  if (huge_modify(cpu.V, v, vmFlags) !== v) {
    const old = pmdp_huge_xchg(mm, haddr, pmdp, PMD_SIZE, v & ~_PAGE_PRESENT);
    set_huge_at(pmdp, huge_modify(cpu.V, old, vmFlags));
    tlb_flush_pmd_range(tlb, haddr, PMD_SIZE); // tlb_flush_pmd_range
  }
  spin_unlock(lock);
  return true;
}

/**
 * change_pmd_range's huge case for [addr, next) within one PMD: a whole huge
 * PMD is changed in place (change_huge_pmd), a part of one is split first.
 * True when handled; false: the caller changes PTEs.
 */
export function change_huge_pmd_range(tlb: mmu_gather, mm: number, vmFlags: number, pmdp: number, addr: number, next: number): boolean {
  const haddr = Math.floor(addr / PMD_SIZE) * PMD_SIZE;
  if (addr === haddr && next - addr === PMD_SIZE) return change_huge_pmd(tlb, mm, vmFlags, pmdp, haddr);
  __split_huge_pmd(mm, pmdp, addr);
  return false;
}

/**
 * change_pud_range's huge case for [addr, next) within one PUD: a whole leaf
 * changes in place (change_huge_pud), a part of one is split (cleared; its
 * pages refault with the new protection). True when handled; false: the PUD
 * is not a leaf (any more).
 */
export function change_huge_pud_range(tlb: mmu_gather, mm: number, vmFlags: number, pudp: number, addr: number, next: number): boolean {
  const cpu = current;
  const haddr = Math.floor(addr / PUD_SIZE) * PUD_SIZE;
  if (!(addr === haddr && next - addr === PUD_SIZE)) return __split_huge_pud(mm, pudp, addr);
  const lock = pud_lockptr(mm);
  spin_lock(lock);
  const v = Atomics.load(cpu.I, pudp);
  if (!leaf_present(v)) {
    spin_unlock(lock);
    return false;
  }
  if (huge_modify(cpu.V, v, vmFlags) !== v) {
    const old = pmdp_huge_xchg(mm, haddr, pudp, PUD_SIZE, v & ~_PAGE_PRESENT);
    set_huge_at(pudp, huge_modify(cpu.V, old, vmFlags));
    tlb_flush_pud_range(tlb, haddr, PUD_SIZE);
  }
  spin_unlock(lock);
  return true;
}

// ---- mremap: HPAGE_PMD and HPAGE_PUD moves (move_huge_pmd; mm/mremap.c move_huge_pud) -------

/**
 * move_huge_pmd: move the huge PMD at old_pmd (mapping old_addr) to the empty
 * new_pmd (new_addr), in the kernel's order: take the old PMD lock and check it
 * is still a huge leaf, take the new PMD lock nested if it differs, get and
 * clear the old entry, move the deposited table if the PMD tables differ, set
 * the new entry, flush the old huge range if the old entry was present, unlock
 * new, unlock old. False (nothing moved: the caller splits or falls back) if an
 * address is not huge-aligned, the new PMD is not empty, or the old entry is no
 * longer a huge leaf. Counts ST_MOVE_HUGE_PMD.
 */
export function move_huge_pmd(mm: number, _vma: Vma, old_addr: number, new_addr: number, old_pmd: number, new_pmd: number): boolean {
  const cpu = current;
  const I = cpu.I;
  if (old_addr % PMD_SIZE !== 0 || new_addr % PMD_SIZE !== 0) return false;
  cpu.sched_point();
  if (Atomics.load(I, new_pmd) !== 0) return false; // the destination PMD must not be established
  const old_ptl = pmd_lockptr(old_pmd);
  spin_lock(old_ptl);
  if (!leaf_present(Atomics.load(I, old_pmd))) {
    spin_unlock(old_ptl);
    return false;
  }
  const new_ptl = pmd_lockptr(new_pmd);
  if (new_ptl !== old_ptl) spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING); // mm/huge_memory.c move_huge_pmd
  const pmd = pmdp_huge_get_and_clear(mm, old_addr, old_pmd);
  const force_flush = (pmd & _PAGE_PRESENT) !== 0;
  if (tableOf(old_pmd) !== tableOf(new_pmd)) {
    // pmd_move_must_withdraw: the deposit belongs with the PMD table
    const pgtable = pgtable_trans_huge_withdraw(old_pmd);
    if (pgtable !== 0) pgtable_trans_huge_deposit(new_pmd, pgtable);
    else no_huge_deposit(mm, old_addr);
  }
  set_huge_at(new_pmd, pmd);
  if (force_flush) flush_pmd_tlb_range(mm, old_addr, old_addr + PMD_SIZE);
  if (new_ptl !== old_ptl) spin_unlock(new_ptl);
  spin_unlock(old_ptl);
  cpu.stat(ST_MOVE_HUGE_PMD);
  return true;
}

/**
 * move_huge_pud: the same for a PUD leaf (both PUDs under mm->page_table_lock):
 * get and clear old, set new, flush the old 1 GiB range if the old entry was
 * present, unlock. Counts ST_MOVE_HUGE_PUD.
 */
export function move_huge_pud(mm: number, _vma: Vma, old_addr: number, new_addr: number, old_pud: number, new_pud: number): boolean {
  const cpu = current;
  const I = cpu.I;
  if (old_addr % PUD_SIZE !== 0 || new_addr % PUD_SIZE !== 0) return false;
  cpu.sched_point();
  if (Atomics.load(I, new_pud) !== 0) return false;
  const lock = pud_lockptr(mm);
  spin_lock(lock);
  if (!leaf_present(Atomics.load(I, old_pud))) {
    spin_unlock(lock);
    return false;
  }
  const pud = pudp_huge_get_and_clear(mm, old_addr, old_pud);
  set_huge_at(new_pud, pud);
  if (pud & _PAGE_PRESENT) flush_pud_tlb_range(mm, old_addr, old_addr + PUD_SIZE);
  spin_unlock(lock);
  cpu.stat(ST_MOVE_HUGE_PUD);
  return true;
}

// ---- fork: copy_huge_pmd / copy_huge_pud (mm/huge_memory.c) ---------------------------------

const is_cow_mapping = (flags: number): boolean => (flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;

/**
 * copy_huge_pmd: share the parent's huge page with the child. A deposit table
 * for the child is allocated first; then the child's PMD lock, the parent's
 * nested; if the parent's PMD is no longer a huge leaf: -EAGAIN (the caller
 * copies PTEs). The folio gains a reference and an entire mapcount; both
 * entries become read-only (COW; no flush here: dup_mmap flushes the parent),
 * the child's old. A page that may be DMA-pinned (thp_hooks) is not shared: the
 * parent's PMD is split and -EAGAIN returned, so copy_pte_range handles its
 * pages one by one (copying pinned ones), as the kernel does. 0 on success,
 * -ENOMEM if no deposit table could be allocated.
 */
export function copy_huge_pmd(dst_mm: number, src_mm: number, dst_pmd: number, src_pmd: number, addr: number, vma: Vma): number {
  const cpu = current;
  const I = cpu.I;
  const pgtable = alloc_pt_page(dst_mm, 1);
  if (pgtable === 0) return -ENOMEM;
  const dst_ptl = pmd_lockptr(dst_pmd);
  spin_lock(dst_ptl);
  const src_ptl = pmd_lockptr(src_pmd);
  spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING); // mm/huge_memory.c copy_huge_pmd
  let pmd = Atomics.load(I, src_pmd);
  if (!leaf_present(pmd)) {
    spin_unlock(src_ptl);
    spin_unlock(dst_ptl);
    free_pt_page(pgtable);
    return -EAGAIN;
  }
  const head = pte_pfn(pmd);
  get_page(head);
  if (thp_hooks.folio_maybe_dma_pinned(head)) {
    // folio_try_dup_anon_rmap_pmd failed: split, and let the PTE copy deal with it
    put_page(head);
    spin_unlock(src_ptl);
    spin_unlock(dst_ptl);
    free_pt_page(pgtable);
    __split_huge_pmd(src_mm, src_pmd, addr);
    return -EAGAIN;
  }
  folio_entire_mapcount_add(head, 1);
  add_rss(dst_mm, HPAGE_PMD_NR);
  pgtable_trans_huge_deposit(dst_pmd, pgtable);
  mm_nr_ptes_add(dst_mm, 1);
  if (is_cow_mapping(vma.flags) && pmd & _PAGE_RW) {
    pmd = pmdp_huge_xchg(src_mm, addr, src_pmd, PMD_SIZE, pmd & ~_PAGE_RW) & ~_PAGE_RW; // pmdp_set_wrprotect
  }
  set_huge_at(dst_pmd, pmd & ~_PAGE_ACCESSED);
  spin_unlock(src_ptl);
  spin_unlock(dst_ptl);
  return 0;
}

/** copy_huge_pud: share a PUD leaf (COW mappings write-protect both sides). 0, or -EAGAIN if it is no longer a leaf. */
export function copy_huge_pud(dst_mm: number, src_mm: number, dst_pud: number, src_pud: number, addr: number, vma: Vma): number {
  const cpu = current;
  const I = cpu.I;
  const dst_ptl = pud_lockptr(dst_mm);
  spin_lock(dst_ptl);
  const src_ptl = pud_lockptr(src_mm);
  spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING); // mm/huge_memory.c copy_huge_pud
  let pud = Atomics.load(I, src_pud);
  if (!leaf_present(pud)) {
    spin_unlock(src_ptl);
    spin_unlock(dst_ptl);
    return -EAGAIN;
  }
  const head = compound_head(cpu.V, pte_pfn(pud));
  get_page(head);
  folio_entire_mapcount_add(head, 1);
  add_rss(dst_mm, HPAGE_PUD_NR);
  if (is_cow_mapping(vma.flags) && pud & _PAGE_RW) pud = pmdp_huge_xchg(src_mm, addr, src_pud, PUD_SIZE, pud & ~_PAGE_RW) & ~_PAGE_RW;
  set_huge_at(dst_pud, pud & ~_PAGE_ACCESSED);
  spin_unlock(src_ptl);
  spin_unlock(dst_ptl);
  return 0;
}

// ---- PUD leaves of a DAX-like device ------------------------------------------------------

/**
 * A DAX-like device of one 1 GiB page: a shmem file object whose "page cache"
 * is that compound page (shmem_get_page hands out its pieces). The file holds
 * one reference, dropped with its last user. Returns the file id or -ENOMEM.
 */
export function dax_device_create(): number {
  const { I, L } = current.V;
  const head = alloc_compound_page(HPAGE_PUD_ORDER, false);
  if (head === 0) return -ENOMEM;
  const f = shmem_file_setup(HPAGE_PUD_NR);
  if (f < 0) {
    put_page(head);
    return -ENOMEM;
  }
  Atomics.store(I, fileWord(L, f, FILE_DEV_PFN), head);
  return f;
}

/** The device memory (head pfn) behind a file, or 0 for an ordinary shmem file. */
export function dax_device_pfn(V: Views, f: number): number {
  return f >= 0 ? Atomics.load(V.I, fileWord(V.L, f, FILE_DEV_PFN)) : 0;
}

/** May a PUD leaf map [haddr, haddr + 1 GiB) of this VMA (a device mapping whose offset there is 1 GiB-aligned)? */
export function pud_vma_suitable(vma: Vma, haddr: number): boolean {
  if (!has_transparent_hugepage() || vma.file < 0 || haddr < vma.start || haddr + PUD_SIZE > vma.end) return false;
  const V = current.V;
  if (dax_device_pfn(V, vma.file) === 0) return false;
  const pgoff = vma.pgoff + (haddr - vma.start) / PAGE_SIZE;
  return pgoff % HPAGE_PUD_NR === 0 && pgoff + HPAGE_PUD_NR <= Atomics.load(V.I, fileWord(V.L, vma.file, FILE_SIZE_PAGES));
}

/**
 * The PUD level of handle_mm_fault (pudp allocated): an empty PUD of a device
 * mapping gets a PUD leaf (create_huge_pud -> dev_dax_huge_fault); a fault on a
 * PUD leaf fixes its access bits (huge_pud_set_accessed) or, for a write to a
 * read-only leaf of a writable shared mapping, makes it writable. Returns a
 * VM_FAULT_* code, or VM_FAULT_FALLBACK to carry on at the PMD level.
 */
export function huge_pud_fault(mm: number, vma: Vma, pudp: number, addr: number, write: boolean): number {
  const cpu = current;
  cpu.sched_point();
  const v = Atomics.load(cpu.I, pudp);
  const haddr = Math.floor(addr / PUD_SIZE) * PUD_SIZE;
  const lock = pud_lockptr(mm);
  if (v === 0) {
    if (!pud_vma_suitable(vma, haddr)) return VM_FAULT_FALLBACK;
    const head = dax_device_pfn(cpu.V, vma.file) + vma.pgoff + (haddr - vma.start) / PAGE_SIZE;
    let entry = pfn_pte(head, vm_page_prot(vma) | _PAGE_PSE | _PAGE_ACCESSED);
    if (vma.flags & VM_WRITE && vma.flags & VM_SHARED) entry |= _PAGE_RW | (write ? _PAGE_DIRTY : 0);
    spin_lock(lock);
    if (Atomics.load(cpu.I, pudp) === 0) {
      get_page(head);
      folio_entire_mapcount_add(head, 1); // folio_add_file_rmap_pud
      add_rss(mm, HPAGE_PUD_NR);
      set_huge_at(pudp, entry);
      cpu.stat(ST_THP_FAULT);
    }
    spin_unlock(lock);
    return VM_FAULT_OK;
  }
  if (!pud_trans_huge(v)) return VM_FAULT_FALLBACK;
  spin_lock(lock);
  const cur = Atomics.load(cpu.I, pudp);
  if (leaf_present(cur)) {
    let want = cur | _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
    if (write && (cur & _PAGE_RW) === 0 && vma.flags & VM_WRITE && vma.flags & VM_SHARED) want |= _PAGE_RW;
    if (want !== cur) pmdp_huge_xchg(mm, haddr, pudp, PUD_SIZE, want);
    arch.flush_tlb_local_page(cpu, addr);
  }
  spin_unlock(lock);
  return VM_FAULT_OK;
}
