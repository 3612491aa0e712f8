// mm/gup.c: get_user_pages and pin_user_pages, fast and slow.
//
//  - GUP-fast (gup_fast): no locks, interrupts off (an x86 shootdown, and so a
//    page-table free, waits for it: docs/kernel-rules.md#flush-rules T5), reads the entries from memory as a
//    hardware walker does, grabs the page and re-reads the PTE; with FOLL_PIN it
//    samples mm->write_protect_seq before and re-checks it after (commit 57efa1fe5957): an
//    odd or changed sequence means fork is write-protecting: undo and take the
//    slow path. Knob gup.fast_no_seqcount drops that check (the race that commit fixed).
//  - FOLL_PIN adds GUP_PIN_COUNTING_BIAS to the refcount (the kernel's scheme
//    for order-0 pages): page_maybe_dma_pinned() is "refcount >= bias", which
//    fork reads to copy such pages eagerly (mm/memory.c copy_present_ptes).
//  - The slow path (__get_user_pages): under the mmap_lock (read), follow the
//    PTE under its PTL; if it is absent or does not allow the access, fault
//    (with write intent for FOLL_WRITE; FOLL_FORCE lets a write break COW on a
//    read-only private mapping, as /proc/pid/mem does) and retry. A forced write
//    accepts a read-only entry only if it is dirty and anon-exclusive, i.e. our
//    private copy (can_follow_write_pte). Knob gup.dirty_cow restores the pre-4.8.3
//    shortcut instead: after a COW fault, drop FOLL_WRITE and retry (CVE-2016-5195, fixed by commit 19be0eaffa3a).
//
// Pins here are write pins (FOLL_PIN | FOLL_WRITE): read-only pins would need the
// "unshare" fault of anon-exclusive GUP, which is not modelled; read references
// are FOLL_GET, as vmsplice takes them (the reference of CVE-2020-29374).

import { current } from '../hw/cpu.ts';
import { down_read, up_read, raw_read_seqcount, read_seqcount_retry, spin_lock, spin_unlock } from '../hw/locks.ts';
import {
  type Views, mmWord, frameWord, tableEntry, dataWord, MM_PGD, MM_WP_SEQ, FM_REF, FM_FLAGS, PG_ANON,
  PG_ANON_EXCLUSIVE, PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT, PGDIR_SHIFT, WORD_SHIFT, WORDS_PER_PAGE, ST_GUP_FAST_FALLBACK,
  PAGE_SIZE, PTRS_PER_TABLE,
} from '../hw/layout.ts';
import {
  pte_present, pte_write, pte_dirty, pte_pfn, _PAGE_PRESENT, _PAGE_PSE, _PAGE_USER, _PAGE_SPECIAL,
} from '../hw/pte.ts';
import { pgtIndex } from '../hw/walker.ts';
import { VM_FAULT_SIGSEGV, VM_FAULT_OOM } from '../hw/cpu.ts';
import { knobs } from '../inject/knobs.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset_map_lock, pte_unmap_unlock, ptep_lockptr, ptep_get, pmd_lockptr } from './pgtable.ts';
import { put_page, zero_pfn, page_ref, compound_head } from './page_alloc.ts';
import { __faultin_page, VM_FAULT_WRITE, is_cow_mapping } from './memory.ts';
import { type Vma, vma_lookup, vma_read } from './vma.ts';
import { lockOf } from './mmap.ts';
import { VM_SHARED, VM_WRITE, VM_MAYWRITE, VM_READ, VM_EXEC } from './vm_flags.ts';
import { EFAULT, ENOMEM, EAGAIN } from './errno.ts';

export const FOLL_WRITE = 0x01;
export const FOLL_GET = 0x04;
export const FOLL_FORCE = 0x10;
export const FOLL_PIN = 0x40000;
/** what one FOLL_PIN adds to the refcount (include/linux/mm.h) */
export const GUP_PIN_COUNTING_BIAS = 1024;

/**
 * page_maybe_dma_pinned: the folio's refcount carries at least one pin (or 1024
 * plain references: a false positive, as in the kernel). A compound page keeps
 * its count, and so its pins, on the head.
 */
export function page_maybe_dma_pinned(V: Views, pfn: number): boolean {
  return page_ref(V, pfn) >= GUP_PIN_COUNTING_BIAS;
}

const refs = (flags: number): number => (flags & FOLL_PIN ? GUP_PIN_COUNTING_BIAS : 1);

/** try_grab_folio: a reference (or a pin) on a page that is not being freed; the zero page is not counted. */
function try_grab_page(V: Views, pfn: number, flags: number): boolean {
  if (pfn === zero_pfn(V)) return true;
  const r = frameWord(V.L, compound_head(V, pfn), FM_REF);
  for (;;) {
    const v = Atomics.load(V.I, r);
    if (v <= 0) return false; // freed under us (GUP-fast holds no lock that prevents it)
    if (Atomics.compareExchange(V.I, r, v, v + refs(flags)) === v) return true;
  }
}

/** Drop what try_grab_page took. */
export function gup_put_page(pfn: number, flags: number): void {
  if (flags & FOLL_PIN) unpin_user_page(pfn);
  else if (pfn !== zero_pfn(current.V)) put_page(pfn);
}

/** unpin_user_page: drop one pin; the page (its folio) is freed if that was its last reference. */
export function unpin_user_page(pfn: number): void {
  const cpu = current;
  if (pfn === zero_pfn(cpu.V)) return;
  const head = compound_head(cpu.V, pfn);
  const left = Atomics.sub(cpu.I, frameWord(cpu.V.L, head, FM_REF), GUP_PIN_COUNTING_BIAS - 1) - (GUP_PIN_COUNTING_BIAS - 1);
  if (left < 1) {
    cpu.host.hooks.violation({ kind: 'refcount-underflow', cpu: cpu.id, pfn, message: `cpu ${cpu.id}: unpin of pfn ${pfn} took its refcount to ${left - 1}` });
    return;
  }
  put_page(head); // the last unit: frees it (a compound page whole) if nothing else holds it
}

// ---- GUP-fast ---------------------------------------------------------------------

/**
 * The lockless walk with interrupts off (gup_fast_pgd_range .. gup_fast_pte_range):
 * the grabbed page, or 0 (take the slow path). It looks only at what the kernel
 * can see, the entries: a table unhooked meanwhile cannot be freed while
 * interrupts are off here (MMU_GATHER_RCU_TABLE_FREE's grace period, or the x86
 * flush IPI; src/mm/mmu_gather.ts), so reading it is safe, and after taking the
 * page the PMD and the PTE are read again: if either changed, undo.
 */
function gup_fast_pte(mm: number, va: number, flags: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  let table = Atomics.load(I, mmWord(L, mm, MM_PGD));
  let pmdp = -1;
  let pmd = 0;
  for (const shift of [PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT]) {
    cpu.hw_point();
    const p = tableEntry(L, table, pgtIndex(va, shift));
    const e = Atomics.load(I, p);
    // INTEGRATION (THP): a huge PMD leaf would be gup_fast_pmd_leaf; the slow path handles it meanwhile
    if ((e & _PAGE_PRESENT) === 0 || (e & _PAGE_PSE) !== 0) return 0;
    if (shift === PMD_SHIFT) {
      pmdp = p;
      pmd = e;
    }
    table = pte_pfn(e);
  }
  const ptep = tableEntry(L, table, pgtIndex(va, PAGE_SHIFT));
  cpu.hw_point();
  const pte = Atomics.load(I, ptep); // ptep_get_lockless: memory, as a walker sees it
  if (!pte_present(pte) || (pte & _PAGE_USER) === 0 || (pte & _PAGE_SPECIAL) !== 0) return 0;
  if (flags & FOLL_WRITE && !pte_write(pte)) return 0;
  const pfn = pte_pfn(pte);
  if (pfn === zero_pfn(cpu.V)) return 0;
  if (!try_grab_page(cpu.V, pfn, flags)) return 0;
  cpu.hw_point();
  // gup_fast_pte_range: pmd_val(pmd) != pmd_val(*pmdp) || pte_val(pte) != pte_val(ptep_get(ptep))
  if (Atomics.load(I, pmdp) !== pmd || Atomics.load(I, ptep) !== pte) { // changed while we grabbed: undo
    gup_put_page(pfn, flags);
    return 0;
  }
  return pfn;
}

/** gup_fast: the grabbed page, or 0 when the slow path must do it. */
export function gup_fast(mm: number, va: number, flags: number): number {
  const cpu = current;
  const seqIdx = mmWord(cpu.V.L, mm, MM_WP_SEQ);
  // BUG (injected; fixed by commit 57efa1fe5957 "mm/gup: prevent gup_fast from racing
  // with COW during fork"): no write_protect_seq check, so a pin can land
  // between fork's "maybe pinned?" and its write-protection of the same entry
  const checkSeq = (flags & FOLL_PIN) !== 0 && !knobs['gup.fast_no_seqcount'];
  let seq = 0;
  if (checkSeq) {
    seq = raw_read_seqcount(seqIdx);
    if (seq & 1) return 0; // fork is copying this mm
  }
  cpu.local_irq_disable();
  let pfn = gup_fast_pte(mm, va, flags);
  cpu.local_irq_enable();
  if (pfn !== 0 && checkSeq && read_seqcount_retry(seqIdx, seq)) {
    gup_put_page(pfn, flags);
    pfn = 0;
  }
  return pfn;
}

// ---- the slow path ----------------------------------------------------------------

/** can_follow_write_pte: may a FOLL_WRITE access use this (read-only) entry? */
function can_follow_write_pte(V: Views, pte: number, vma: Vma, flags: number): boolean {
  if (pte_write(pte)) return true;
  if (!(flags & FOLL_FORCE)) return false;
  if (vma.flags & VM_SHARED || !(vma.flags & VM_MAYWRITE) || vma.flags & VM_WRITE) return false;
  const pfn = pte_pfn(pte);
  if (pfn === zero_pfn(V)) return false;
  const fl = Atomics.load(V.I, frameWord(V.L, pfn, FM_FLAGS));
  // our private copy: anon, exclusive, and dirtied by the COW that made it
  return (fl & PG_ANON) !== 0 && (fl & PG_ANON_EXCLUSIVE) !== 0 && pte_dirty(pte);
}

/** follow_page_pte: the grabbed page, 0 if a fault is needed, or -errno. */
function follow_page_pte(mm: number, vma: Vma, va: number, flags: number): number {
  const cpu = current;
  const V = cpu.V;
  const I = cpu.I;
  const pgdp = pgd_offset(mm, va);
  if ((Atomics.load(I, pgdp) & _PAGE_PRESENT) === 0) return 0;
  const pudp = pud_offset(pgdp, va);
  const pud = Atomics.load(I, pudp);
  if (pud & _PAGE_PSE) return -EFAULT; // a PUD leaf (a DAX-like device): GUP of it is not modelled
  if ((pud & _PAGE_PRESENT) === 0) return 0;
  const pmdp = pmd_offset(pudp, va);
  const pmd = Atomics.load(I, pmdp);
  if (pmd & _PAGE_PSE) return follow_huge_pmd(pmdp, va, flags);
  if ((pmd & _PAGE_PRESENT) === 0) return 0;
  const ptep = pte_offset_map_lock(pmdp, va);
  if (ptep < 0) return 0;
  const lock = ptep_lockptr(ptep);
  const pte = ptep_get(ptep);
  let pfn = 0;
  if (pte_present(pte) && (pte & _PAGE_USER) !== 0 && (!(flags & FOLL_WRITE) || can_follow_write_pte(V, pte, vma, flags))) {
    pfn = pte_pfn(pte);
    if (!try_grab_page(V, pfn, flags)) pfn = 0;
  }
  pte_unmap_unlock(lock);
  return pfn;
}

/**
 * follow_huge_pmd: the subpage of a huge PMD leaf, grabbed under the PMD lock;
 * 0 if a fault is needed (not present, being split, or a write to a read-only
 * leaf: the THP write fault splits and copies).
 */
function follow_huge_pmd(pmdp: number, va: number, flags: number): number {
  const cpu = current;
  const lock = pmd_lockptr(pmdp);
  spin_lock(lock);
  const pmd = Atomics.load(cpu.I, pmdp);
  let pfn = 0;
  if ((pmd & (_PAGE_PRESENT | _PAGE_PSE)) === (_PAGE_PRESENT | _PAGE_PSE) && (pmd & _PAGE_USER) !== 0 && (!(flags & FOLL_WRITE) || pte_write(pmd))) {
    pfn = pte_pfn(pmd) + (Math.floor(va / PAGE_SIZE) % PTRS_PER_TABLE);
    if (!try_grab_page(cpu.V, pfn, flags)) pfn = 0;
  }
  spin_unlock(lock);
  return pfn;
}

/** check_vma_flags: may GUP touch this VMA this way at all? */
function check_vma_flags(vma: Vma, flags: number): boolean {
  if (flags & FOLL_WRITE) return (vma.flags & VM_WRITE) !== 0 || ((flags & FOLL_FORCE) !== 0 && is_cow_mapping(vma.flags));
  return (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0 || (flags & FOLL_FORCE) !== 0;
}

/** __get_user_pages for one page, the mmap_lock held: the grabbed page or -errno. */
export function __get_user_pages(mm: number, va: number, gup_flags: number): number {
  const cpu = current;
  const V = cpu.V;
  let flags = gup_flags;
  const dirtyCow = knobs['gup.dirty_cow'];
  for (let tries = 0; tries < 1000; tries++) {
    cpu.sched_point(); // cond_resched()
    const slot = vma_lookup(V, mm, va);
    if (slot < 0) return -EFAULT;
    const vma = vma_read(V, mm, slot);
    if (!check_vma_flags(vma, flags)) return -EFAULT;
    const page = follow_page_pte(mm, vma, va, flags);
    if (page !== 0) return page;
    const r = __faultin_page(mm, va, (flags & FOLL_WRITE) !== 0, (flags & FOLL_FORCE) !== 0);
    if (r & VM_FAULT_SIGSEGV) return -EFAULT;
    if (r & VM_FAULT_OOM) return -ENOMEM;
    // BUG (injected, CVE-2016-5195, fixed by commit 19be0eaffa3a): the fault broke COW on a read-only
    // mapping, so call the write done and retry without write intent; if the copy
    // is zapped meanwhile, the retry maps and returns the page-cache page
    if (dirtyCow && r & VM_FAULT_WRITE && !(vma.flags & VM_WRITE)) flags &= ~FOLL_WRITE;
  }
  return -EAGAIN;
}

/** get_user_pages / pin_user_pages for one page: takes the mmap_lock (read). */
export function get_user_pages(mm: number, va: number, flags: number): number {
  down_read(lockOf(mm));
  const r = __get_user_pages(mm, va, flags);
  up_read(lockOf(mm));
  return r;
}

/**
 * get_user_pages_fast / pin_user_pages_fast (FOLL_PIN) for one page: GUP-fast,
 * else the slow path. The page (pin it with FOLL_PIN | FOLL_WRITE; release
 * with unpin_user_page, or put_page for FOLL_GET), or -errno.
 */
export function get_user_pages_fast(mm: number, va: number, flags: number): number {
  const pfn = gup_fast(mm, va, flags);
  if (pfn !== 0) return pfn;
  current.stat(ST_GUP_FAST_FALLBACK);
  return get_user_pages(mm, va, flags);
}

/**
 * access_remote_vm, a write of one word (what a write to /proc/pid/mem does):
 * GUP with FOLL_FORCE | FOLL_WRITE under the mmap_lock, store, drop the page.
 * Returns the frame written, or -errno.
 */
export function access_remote_vm_write(mm: number, va: number, value: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  down_read(lockOf(mm));
  const pfn = __get_user_pages(mm, va, FOLL_GET | FOLL_WRITE | FOLL_FORCE);
  if (pfn > 0) {
    Atomics.store(I, dataWord(L, pfn, (va >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1)), value); // copy_to_user_page
    put_page(pfn);
  }
  up_read(lockOf(mm));
  return pfn;
}
