// mm/mremap.c: mremap(2) as Linux 6.18 has it, under the kernel's names.
//
// The syscall builds a vma_remap_struct, checks the parameters before taking
// the mmap_lock (check_mremap_params) and the VMA after (check_prep_vma), then
// dispatches: remap_move for MREMAP_FIXED moves that keep the size (they may
// span several VMAs and gaps, 6.17+), mremap_to for other FIXED/DONTUNMAP
// calls, mremap_at for shrink, no-op and expand (in place, else a move).
//
// A move is move_vma: copy_vma makes (or merges into) the destination VMA and
// decides need_rmap_locks; move_page_tables walks the range with
// pagetable_move_control (built by PAGETABLE_MOVE) and get_extent, first
// realigning both addresses down to a PMD boundary where that is safe
// (try_realign_addr / can_realign_addr / can_align_down, with the for_stack
// exception of relocate_vma_down), and moves whole PMD tables (NORMAL_PUD),
// whole PTE tables (NORMAL_PMD), huge leaves (HPAGE_PMD / HPAGE_PUD) through
// move_pgt_entry, else PTEs one by one with move_ptes in the order of
// mm/mremap.c move_ptes(): old PTL, new PTL nested, lazy MMU section with the seed's fast range,
// clear old / set new, leave, flush the old range while both PTLs are held,
// unlock new, unlock old. If not everything moved, the moved part is moved
// back with the rmap locks held and the destination is unmapped instead.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock, up_read } from '../hw/locks.ts';
import {
  mmWord, MM_PT_LOCK, PAGE_SIZE, PMD_SIZE, PUD_SIZE, TASK_SIZE, VMA_END, VMA_FLAGS, VMA_ANON, VMA_ANON_FORKED, ST_MOVE_PTE, ST_MOVE_PMD, ST_MOVE_PUD, ST_REALIGN,
} from '../hw/layout.ts';
import { pte_none, pte_present, _PAGE_PRESENT, _PAGE_PSE } from '../hw/pte.ts';
import { SYS, EV } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { knobs } from '../inject/knobs.ts';
import { take_rmap_locks, drop_rmap_locks } from './rmap.ts';
import {
  arch, pgd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset_map_lock, pte_offset, pte_lockptr, pmd_lockptr, ptep_lockptr, ptep_get,
  ptep_get_and_clear, set_pte_at, flush_tlb_range, pud_offset, pmd_offset,
} from './pgtable.ts';
import { lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { move_huge_pmd, move_huge_pud, split_huge_pmd } from './huge_memory.ts';
import {
  type Vma, find_vma, find_vma_intersection, vma_lookup, vma_read, vma_insert, vma_count, vma_set_field, vma_merge_neighbours, vma_rec,
} from './vma.ts';
import { file_get } from './shmem.ts';
import { vma_start_write } from './mmap_lock.ts';
import { PAGE_ALIGN, do_vmi_munmap, get_unmapped_area, mmap_write_lock, mmap_write_unlock, lockOf } from './mmap.ts';
import { VM_MAYSHARE, VM_SHARED, VM_DONTEXPAND, VM_UFFD_MISSING, VM_SEALED, VM_LOCKED } from './vm_flags.ts';
import { EINVAL, ENOMEM, EFAULT, EPERM } from './errno.ts';

export const MREMAP_MAYMOVE = 1;
export const MREMAP_FIXED = 2;
export const MREMAP_DONTUNMAP = 4;

/** Headroom kept below the map-count limit: a move can split the source into three and add one. */
const MAP_COUNT_HEADROOM = 3;

// ---- pagetable_move_control ---------------------------------------------------

/** struct pagetable_move_control (Lorenzo Stoakes, 2025) */
export interface pagetable_move_control {
  mm: number;
  old: Vma; // source VMA
  new: Vma; // destination VMA (the same VMA for the stack case)
  old_addr: number; // may be realigned down, advances as the loop goes
  old_end: number; // never realigned
  new_addr: number;
  len_in: number; // the caller's length, before realignment
  need_rmap_locks: boolean;
  for_stack: boolean;
  /** only with the knob mremap.flush_after_unlock: a flush of the old range is owed at the end */
  need_flush?: boolean;
}

/** PAGETABLE_MOVE(name, old_vma, new_vma, old_addr, new_addr, len): the one constructor */
export function PAGETABLE_MOVE(mm: number, old: Vma, nw: Vma, old_addr: number, new_addr: number, len: number): pagetable_move_control {
  return { mm, old, new: nw, old_addr, old_end: old_addr + len, new_addr, len_in: len, need_rmap_locks: false, for_stack: false };
}

/** The kinds of entry move_pgt_entry moves (enum pgt_entry). */
export const NORMAL_PMD = 0;
export const HPAGE_PMD = 1;
export const NORMAL_PUD = 2;
export const HPAGE_PUD = 3;
export type pgt_entry = typeof NORMAL_PMD | typeof HPAGE_PMD | typeof NORMAL_PUD | typeof HPAGE_PUD;

const pmc_done = (pmc: pagetable_move_control): boolean => pmc.old_addr >= pmc.old_end;
function pmc_next(pmc: pagetable_move_control, extent: number): void {
  pmc.old_addr += extent;
  pmc.new_addr += extent;
}
/** Bytes moved, from the caller's original start (a realigned start does not count). */
function pmc_progress(pmc: pagetable_move_control): number {
  const orig_old_addr = pmc.old_end - pmc.len_in;
  return pmc.old_addr < orig_old_addr ? 0 : pmc.old_addr - orig_old_addr;
}

/**
 * get_extent: how far one step may go: to the next boundary of the entry's
 * size from old_addr, cut to what is left and to the next boundary from
 * new_addr, so an extent never crosses a table on either side.
 */
export function get_extent(entry: pgt_entry, pmc: pagetable_move_control): number {
  const size = entry === NORMAL_PMD || entry === HPAGE_PMD ? PMD_SIZE : PUD_SIZE;
  const old_addr = pmc.old_addr;
  const new_addr = pmc.new_addr;
  let next = (Math.floor(old_addr / size) + 1) * size;
  let extent = next - old_addr;
  if (extent > pmc.old_end - old_addr) extent = pmc.old_end - old_addr;
  next = (Math.floor(new_addr / size) + 1) * size;
  if (extent > next - new_addr) extent = next - new_addr;
  return extent;
}

/**
 * can_align_down: may addr be replaced by addr & ~(size - 1) for this VMA?
 * Only at the VMA's start (else part of the same VMA that is not moving would
 * be dragged along), except for the stack, which may align inside its expanded
 * VMA; and never onto another VMA.
 */
export function can_align_down(pmc: pagetable_move_control, vma: Vma, addr: number, size: number): boolean {
  const masked = Math.floor(addr / size) * size;
  if (knobs['mremap.realign_unchecked']) return true; // BUG (injected)
  if (!pmc.for_stack && vma.start !== addr) return false;
  if (pmc.for_stack && masked >= vma.start) return true;
  return !find_vma_intersection(current.V, pmc.mm, masked, vma.start);
}

/** can_realign_addr: worthwhile (the range reaches the next boundary), needed, mutually aligned, and safe on both sides. */
export function can_realign_addr(pmc: pagetable_move_control, size: number): boolean {
  const old_align = pmc.old_addr % size;
  const new_align = pmc.new_addr % size;
  const old_align_next = size - old_align;
  if (pmc.len_in < old_align_next) return false;
  if (old_align === 0) return false;
  if (old_align !== new_align) return false;
  return can_align_down(pmc, pmc.old, pmc.old_addr, size) && can_align_down(pmc, pmc.new, pmc.new_addr, size);
}

/**
 * try_realign_addr: align both addresses down to the table boundary; old_end
 * stays, so the first extent covers the empty space below the real start too
 * and can move the whole PTE table (PMD level only, as in the kernel).
 */
export function try_realign_addr(pmc: pagetable_move_control, size: number): void {
  if (!can_realign_addr(pmc, size)) return;
  pmc.old_addr = Math.floor(pmc.old_addr / size) * size;
  pmc.new_addr = Math.floor(pmc.new_addr / size) * size;
  current.stat(ST_REALIGN);
}

// ---- finding and allocating entries ---------------------------------------------

const present = (v: number): boolean => (v & _PAGE_PRESENT) !== 0;
const leaf = (v: number): boolean => (v & _PAGE_PSE) !== 0;

/** The PUD entry for addr, or -1 if its PGD entry or the PUD entry itself is empty. */
function get_old_pud(mm: number, addr: number): number {
  const I = current.I;
  const pgdp = pgd_offset(mm, addr);
  if (!present(Atomics.load(I, pgdp))) return -1;
  const pudp = pud_offset(pgdp, addr);
  return present(Atomics.load(I, pudp)) ? pudp : -1;
}

/** The PMD entry for addr, or -1 if there is no PMD table or the entry is empty. */
function get_old_pmd(mm: number, addr: number): number {
  const pudp = get_old_pud(mm, addr);
  if (pudp < 0 || leaf(Atomics.load(current.I, pudp))) return -1;
  const pmdp = pmd_offset(pudp, addr);
  return present(Atomics.load(current.I, pmdp)) ? pmdp : -1;
}

function alloc_new_pud(mm: number, addr: number): number {
  return pud_alloc(mm, pgd_offset(mm, addr), addr);
}

function alloc_new_pmd(mm: number, addr: number): number {
  const pudp = alloc_new_pud(mm, addr);
  if (pudp < 0) return -1;
  return pmd_alloc(mm, pudp, addr);
}

// ---- the entry movers -----------------------------------------------------------

/**
 * move_normal_pmd: move a whole PTE table. Under the old PMD lock and the new
 * one nested: re-read the old entry (give up if it is no longer a table),
 * clear it, install the same table in the new PMD, flush the old PMD's range,
 * unlock. The table keeps its own split PTL: a walker that took it through the
 * old PMD now holds the lock of entries that translate the new addresses
 * (the race fixed by commit 97113eb39fa7), which is why the caller holds the rmap locks.
 */
function move_normal_pmd(pmc: pagetable_move_control, old_pmd: number, new_pmd: number): boolean {
  const I = current.I;
  if (!arch.supports_page_table_move) return false;
  if (Atomics.load(I, new_pmd) !== 0) return false; // the kernel WARNs: alloc_new_pmd gave an empty slot
  const old_ptl = pmd_lockptr(old_pmd);
  const new_ptl = pmd_lockptr(new_pmd);
  spin_lock(old_ptl);
  if (new_ptl !== old_ptl) spin_lock(new_ptl);
  const pmd = Atomics.load(I, old_pmd);
  let moved = false;
  if (present(pmd) && !leaf(pmd)) { // else: raced with a collapse
    Atomics.store(I, old_pmd, 0); // pmd_clear
    Atomics.store(I, new_pmd, pmd); // pmd_populate
    if (!knobs['mremap.normal_pmd_no_flush']) flush_tlb_range(pmc.mm, pmc.old_addr, pmc.old_addr + PMD_SIZE); // (the knob: BUG, injected)
    current.stat(ST_MOVE_PMD);
    moved = true;
  }
  if (new_ptl !== old_ptl) spin_unlock(new_ptl);
  spin_unlock(old_ptl);
  return moved;
}

/** move_normal_pud: move a whole PMD table, under the mm's page_table_lock (pud_lock). */
function move_normal_pud(pmc: pagetable_move_control, old_pud: number, new_pud: number): boolean {
  const I = current.I;
  if (!arch.supports_page_table_move) return false;
  if (Atomics.load(I, new_pud) !== 0) return false;
  const lock = mmWord(current.V.L, pmc.mm, MM_PT_LOCK); // old and new PUD locks are the same lock
  spin_lock(lock);
  const pud = Atomics.load(I, old_pud);
  let moved = false;
  if (present(pud) && !leaf(pud)) {
    Atomics.store(I, old_pud, 0);
    Atomics.store(I, new_pud, pud);
    flush_tlb_range(pmc.mm, pmc.old_addr, pmc.old_addr + PUD_SIZE);
    current.stat(ST_MOVE_PUD);
    moved = true;
  }
  spin_unlock(lock);
  return moved;
}

/** should_take_rmap_locks: whole-table moves always (since 97113eb39fa7); huge leaves when need_rmap_locks says so. */
function should_take_rmap_locks(pmc: pagetable_move_control, entry: pgt_entry): boolean {
  if (entry === NORMAL_PMD || entry === NORMAL_PUD) return !knobs['mremap.normal_pmd_no_rmap_locks']; // BUG (injected) when the knob is set
  return pmc.need_rmap_locks;
}

/** move_pgt_entry: move one PMD or PUD entry, with the rmap locks if needed. Returns whether it moved. */
export function move_pgt_entry(pmc: pagetable_move_control, entry: pgt_entry, old_entry: number, new_entry: number): boolean {
  const rmap = should_take_rmap_locks(pmc, entry);
  if (rmap) take_rmap_locks(pmc.old);
  let moved: boolean;
  switch (entry) {
    case NORMAL_PMD: moved = move_normal_pmd(pmc, old_entry, new_entry); break;
    case NORMAL_PUD: moved = move_normal_pud(pmc, old_entry, new_entry); break;
    case HPAGE_PMD: moved = move_huge_pmd(pmc.mm, pmc.old, pmc.old_addr, pmc.new_addr, old_entry, new_entry); break;
    case HPAGE_PUD: moved = move_huge_pud(pmc.mm, pmc.old, pmc.old_addr, pmc.new_addr, old_entry, new_entry); break;
  }
  if (rmap) drop_rmap_locks(pmc.old);
  return moved;
}

/**
 * move_ptes: move the PTEs of [old_addr, old_addr + extent) to new_addr.
 * Returns false if the old table vanished (the caller retries, like -EAGAIN).
 */
export function move_ptes(pmc: pagetable_move_control, extent: number, old_pmd: number, new_pmd: number): boolean {
  const mm = pmc.mm;
  const old_addr = pmc.old_addr;
  const new_addr = pmc.new_addr;
  if (pmc.need_rmap_locks) take_rmap_locks(pmc.old);
  const old_pte0 = pte_offset_map_lock(old_pmd, old_addr);
  if (old_pte0 < 0) {
    if (pmc.need_rmap_locks) drop_rmap_locks(pmc.old);
    return false;
  }
  const old_ptl = ptep_lockptr(old_pte0);
  const new_pte0 = pte_offset(new_pmd, new_addr);
  const new_ptl = pte_lockptr(Atomics.load(current.I, new_pmd));
  if (new_ptl !== old_ptl) spin_lock(new_ptl);
  let force_flush = false;
  let moved = 0;
  // the seed: the old range is the one passed (RFC 1/2; docs/kernel-rules.md#lazy-mmu-range)
  lazy_mmu_mode_enable_with_ptes(mm, old_addr, old_addr + extent, old_pte0);
  for (let i = 0; i < extent / PAGE_SIZE; i++) {
    const op = old_pte0 + i;
    if (pte_none(ptep_get(op))) continue;
    const pte = ptep_get_and_clear(mm, old_addr + i * PAGE_SIZE, op);
    if (pte_present(pte)) force_flush = true;
    set_pte_at(mm, new_addr + i * PAGE_SIZE, new_pte0 + i, pte);
    moved++;
  }
  lazy_mmu_mode_disable();
  current.stat(ST_MOVE_PTE, moved);
  // Flush before either PTL is dropped (the fix for CVE-2018-18281: commit
  // eb66ae030829 "mremap: properly flush TLB before releasing the page").
  // BUG (injected) with the knob: as before 4.19, only note that a flush is
  // needed; move_page_tables flushes the whole old range at its end, long
  // after the PTLs were dropped.
  if (force_flush && knobs['mremap.flush_after_unlock']) pmc.need_flush = true;
  else if (force_flush) flush_tlb_range(mm, old_addr, old_addr + extent);
  if (new_ptl !== old_ptl) spin_unlock(new_ptl);
  spin_unlock(old_ptl);
  if (pmc.need_rmap_locks) drop_rmap_locks(pmc.old);
  return true;
}

/** move_page_tables: returns the number of bytes moved (less than len_in if a table could not be allocated). */
export function move_page_tables(pmc: pagetable_move_control): number {
  const cpu = current;
  const I = cpu.I;
  if (pmc.old_end - pmc.old_addr === 0) return 0;
  // (hugetlb VMAs would go to move_hugetlb_page_tables: not modelled)
  try_realign_addr(pmc, PMD_SIZE);
  // flush_cache_range: only virtually indexed caches; none of the modelled arches
  const traced = pmc.old_addr;
  cpu.ring.log(EV.MOVE_PGTABLES, traced, pmc.new_addr); // (mmu_notifier_invalidate_range_start, event "unmap")
  for (let extent = 0; !pmc_done(pmc); pmc_next(pmc, extent)) {
    cpu.sched_point(); // cond_resched()
    extent = get_extent(NORMAL_PUD, pmc);
    const old_pud = get_old_pud(pmc.mm, pmc.old_addr);
    if (old_pud < 0) continue;
    const new_pud = alloc_new_pud(pmc.mm, pmc.new_addr);
    if (new_pud < 0) break;
    if (leaf(Atomics.load(I, old_pud))) {
      if (extent === PUD_SIZE) {
        move_pgt_entry(pmc, HPAGE_PUD, old_pud, new_pud);
        continue;
      }
    } else if (arch.supports_page_table_move && extent === PUD_SIZE) {
      if (move_pgt_entry(pmc, NORMAL_PUD, old_pud, new_pud)) continue;
    }
    extent = get_extent(NORMAL_PMD, pmc);
    const old_pmd = get_old_pmd(pmc.mm, pmc.old_addr);
    if (old_pmd < 0) continue;
    const new_pmd = alloc_new_pmd(pmc.mm, pmc.new_addr);
    if (new_pmd < 0) break;
    let ok = true;
    for (;;) { // again:
      const v = Atomics.load(I, old_pmd);
      if (present(v) && leaf(v)) {
        if (extent === PMD_SIZE && move_pgt_entry(pmc, HPAGE_PMD, old_pmd, new_pmd)) break;
        split_huge_pmd(pmc.old, old_pmd, pmc.old_addr);
      } else if (arch.supports_page_table_move && extent === PMD_SIZE) {
        if (move_pgt_entry(pmc, NORMAL_PMD, old_pmd, new_pmd)) break;
      }
      if (!present(Atomics.load(I, old_pmd))) break;
      if (!__pte_alloc(pmc.mm, new_pmd)) {
        ok = false;
        break;
      }
      if (move_ptes(pmc, extent, old_pmd, new_pmd)) break;
    }
    if (!ok) break;
  }
  if (pmc.need_flush) flush_tlb_range(pmc.mm, pmc.old_end - pmc.len_in, pmc.old_end); // the knob's late flush
  const progress = pmc_progress(pmc);
  cpu.ring.log(EV.MOVE_PGTABLES_END, traced, progress); // (mmu_notifier_invalidate_range_end)
  return progress;
}

// ---- the VMA side -----------------------------------------------------------------

type remap_type = 'invalid' | 'no_resize' | 'shrink' | 'expand';

/** struct vma_remap_struct: the state of one mremap call. */
export interface vma_remap_struct {
  mm: number;
  addr: number;
  old_len: number;
  new_len: number;
  flags: number;
  new_addr: number;
  placeAt: number; // simulator only: where to put a move the kernel placed (strace replay)
  vma: Vma | null;
  delta: number;
  remap_type: remap_type;
  mmap_locked: boolean;
}

const vrm_implies_new_addr = (vrm: vma_remap_struct): boolean => (vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) !== 0;
const vrm_move_only = (vrm: vma_remap_struct): boolean => (vrm.flags & MREMAP_FIXED) !== 0 && vrm.old_len === vrm.new_len;
const vrm_overlaps = (vrm: vma_remap_struct): boolean =>
  vrm.new_addr < vrm.addr + vrm.old_len && vrm.addr < vrm.new_addr + vrm.new_len;

function vrm_set_delta(vrm: vma_remap_struct): void {
  if (vrm.old_len === vrm.new_len) {
    vrm.remap_type = 'no_resize';
    vrm.delta = 0;
  } else if (vrm.old_len > vrm.new_len) {
    vrm.remap_type = 'shrink';
    vrm.delta = vrm.old_len - vrm.new_len;
  } else {
    vrm.remap_type = 'expand';
    vrm.delta = vrm.new_len - vrm.old_len;
  }
}

/** check_mremap_params: everything that can be checked before taking the mmap_lock (mm/mremap.c). */
function check_mremap_params(vrm: vma_remap_struct): number {
  const flags = vrm.flags;
  if (flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) return -EINVAL;
  if (vrm.addr % PAGE_SIZE !== 0) return -EINVAL;
  if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) && !(flags & MREMAP_MAYMOVE)) return -EINVAL;
  if (vrm.new_len === 0) return -EINVAL; // also what a length that overflows rounds to
  // (the kernel checks new_addr against TASK_SIZE whatever the flags; strace prints new_addr only with FIXED)
  if (vrm.new_len > TASK_SIZE || vrm.new_addr > TASK_SIZE - vrm.new_len) return -EINVAL;
  if (!vrm_implies_new_addr(vrm)) return 0;
  if (vrm.new_addr % PAGE_SIZE !== 0) return -EINVAL;
  if (flags & MREMAP_DONTUNMAP && vrm.old_len !== vrm.new_len) return -EINVAL;
  // the target must not overlap the source, also where new_addr is only
  // DONTUNMAP's hint (mm/mremap.c check_mremap_params: vrm_overlaps under
  // vrm_implies_new_addr; Linux 6.18 answers EINVAL, found by difftest)
  if (vrm_overlaps(vrm)) return -EINVAL;
  return 0;
}

/** The map-count limit (sysctl_max_map_count in the kernel): our VMA table's size. */
const max_map_count = (): number => current.V.L.shape.maxVmas;

/**
 * vrm_will_map_new: will the call map a new range of address space (an
 * expansion, or a move to new_addr because of FIXED or DONTUNMAP)?
 */
const vrm_will_map_new = (vrm: vma_remap_struct): boolean => vrm.remap_type === 'expand' || vrm_implies_new_addr(vrm);

/**
 * check_prep_vma: the checks that need the VMA (under the mmap_lock).
 * mm/mremap.c check_prep_vma (Linux 6.17+, Lorenzo Stoakes' vrm rework):
 * after the seal check it returns 0 unless vrm_will_map_new, and only then
 * runs remap_is_valid (the old_len-past-the-VMA EFAULT and the rest). So a
 * shrink or a same-size call without FIXED/DONTUNMAP succeeds even when
 * old_len (or, for a shrink, new_len) reaches past the VMA's end: shrink_vma
 * just unmaps [addr + new_len, addr + old_len), whatever is there. Checked on
 * Linux 6.18: test/fixtures/mremap-past-vma-end.
 */
function check_prep_vma(vrm: vma_remap_struct): number {
  const vma = vrm.vma;
  if (!vma) return -EFAULT;
  if (vma.flags & VM_SEALED) return -EPERM;
  vrm_set_delta(vrm);
  if (!vrm_will_map_new(vrm)) return 0;
  return remap_is_valid(vrm);
}

/** remap_is_valid: may the VMA be moved or resized to new_len at addr? (only for calls that map new space) */
function remap_is_valid(vrm: vma_remap_struct): number {
  const vma = vrm.vma!;
  // old_len 0 duplicates a shared mapping; a private one cannot be (the kernel warns once)
  if (vrm.old_len === 0 && !(vma.flags & (VM_SHARED | VM_MAYSHARE))) return -EINVAL;
  if (vrm.flags & MREMAP_DONTUNMAP && vma.flags & VM_DONTEXPAND) return -EINVAL;
  // the part being unmapped by a shrink may cross VMA ends; the rest may not
  const old_len = vrm.remap_type === 'shrink' ? vrm.new_len : vrm.old_len;
  if (old_len > vma.end - vrm.addr) return -EFAULT;
  if (vrm.new_len <= vrm.old_len) return 0;
  // growing: file offsets must not overflow, and some mappings cannot grow
  const pgoff = vma.pgoff + (vrm.addr - vma.start) / PAGE_SIZE;
  if (pgoff + vrm.new_len / PAGE_SIZE > Number.MAX_SAFE_INTEGER / PAGE_SIZE) return -EINVAL;
  if (vma.flags & VM_DONTEXPAND) return -EFAULT;
  return 0;
}

/** copy_vma: a VMA for [addr, addr + len) with vma's properties, merged into neighbours where possible. */
function copy_vma(mm: number, vma: Vma, addr: number, len: number, pgoff: number): { nv: Vma; need_rmap_locks: boolean } | null {
  const V = current.V;
  // an anonymous VMA that never faulted takes the new address's offset (better merges)
  if (vma.file < 0 && vma.anon < 0) pgoff = addr / PAGE_SIZE;
  const nv: Vma = { ...vma, start: addr, end: addr + len, pgoff };
  let at = find_vma(V, mm, addr);
  if (at < 0) at = vma_count(V, mm);
  if (!vma_insert(V, mm, at, nv)) return null;
  if (nv.file >= 0) file_get(nv.file);
  const merged = vma_read(V, mm, vma_merge_neighbours(V, mm, at));
  if (merged.start !== nv.start || merged.end !== nv.end) {
    // Merged into a neighbour: a walker visiting VMAs in pgoff order could
    // see the destination before the source and miss a moving PTE (mm/vma.c
    // copy_vma(); commit 38a76013ad80 "mm: avoid taking rmap locks in move_ptes()").
    return { nv: merged, need_rmap_locks: merged.pgoff <= vma.pgoff };
  }
  return { nv: merged, need_rmap_locks: false };
}

/** move_vma: copy_vma, move the page tables (or move them back on failure), unmap the source. Returns the new address or -errno. */
function move_vma(vrm: vma_remap_struct): number {
  const cpu = current;
  const V = cpu.V;
  const mm = vrm.mm;
  const vma = vrm.vma!;
  // prep_move_vma: a move can split the source into three and add one
  if (vma_count(V, mm) >= max_map_count() - MAP_COUNT_HEADROOM) return -ENOMEM;
  const old_addr = vrm.addr;
  const old_len = vrm.old_len;
  const new_addr = vrm.new_addr;
  const new_len = vrm.new_len;
  // vma_start_write(vma): per-VMA-lock faults on the source wait (fall back to the
  // mmap_lock, which we hold for write) from here on; faults on every other VMA
  // of the mm go on. copy_vma write-locks the new VMA (vma_link) or the one it merges into.
  vma_start_write(mm, vma_rec(V, mm, vma_lookup(V, mm, old_addr)));
  const new_pgoff = vma.pgoff + (old_addr - vma.start) / PAGE_SIZE;
  const copied = copy_vma(mm, vma, new_addr, new_len, new_pgoff);
  if (!copied) return -ENOMEM;
  // From the first moved PTE until the flush, one page is reachable through a
  // stale old-VA entry and through its new VA at once (docs/kernel-rules.md#mremap-visibility): a write
  // through either shows through the other. The content model must expect
  // neither range to keep a CPU's last write there until the move is over.
  const discard = cpu.host.hooks.discard;
  discard(mm, old_addr, old_addr + old_len, false);
  discard(mm, new_addr, new_addr + new_len, false);
  const src = vma_read(V, mm, vma_lookup(V, mm, old_addr)); // the source may have merged with the destination
  const pmc = PAGETABLE_MOVE(mm, src, copied.nv, old_addr, new_addr, old_len);
  pmc.need_rmap_locks = copied.need_rmap_locks;
  const moved = move_page_tables(pmc);
  let err = 0;
  let unmap_addr = old_addr;
  let unmap_len = old_len;
  if (moved < old_len) {
    // Out of page-table memory: move back what moved (the tables are still
    // there, so this succeeds), with the rmap locks (the reverse direction
    // breaks the pgoff-order argument), then unmap the destination instead.
    const back = PAGETABLE_MOVE(mm, copied.nv, src, new_addr, old_addr, moved);
    back.need_rmap_locks = true;
    move_page_tables(back);
    err = -ENOMEM;
    unmap_addr = new_addr;
    unmap_len = new_len;
  }
  if (!err && vrm.flags & MREMAP_DONTUNMAP) {
    // dontunmap_complete: the old VMA stays, empty; its locked pages moved
    // away (VM_LOCKED cleared; VM_ACCOUNT kept since "mm/mremap: correctly
    // account old mapping after MREMAP_DONTUNMAP remap", stable); and if the
    // whole VMA moved, unlink_anon_vmas: it has no anon_vma any more, so it
    // merges again like a fresh one (found by difftest: a later brk merged
    // with it on Linux 6.18).
    const s = vma_lookup(V, mm, old_addr);
    if (s >= 0) {
      const ov = vma_read(V, mm, s);
      vma_set_field(V, mm, s, VMA_FLAGS, ov.flags & ~VM_LOCKED);
      if (ov.start === old_addr && ov.end === old_addr + old_len && copied.nv.start !== ov.start) {
        vma_set_field(V, mm, s, VMA_ANON, -1);
        vma_set_field(V, mm, s, VMA_ANON_FORKED, 0);
      }
    }
  } else if (unmap_len > 0) {
    // unmap_source_vma: the contents moved, so this finds no PTEs and frees the old tables
    const r = do_vmi_munmap(mm, unmap_addr, unmap_addr + unmap_len, false);
    if (r < 0 && !err) err = r;
  }
  discard(mm, new_addr, new_addr + new_len, true);
  discard(mm, old_addr, old_addr + old_len, true);
  return err || new_addr;
}

/** vrm_set_new_addr: where the move goes: the fixed address, or one get_unmapped_area finds. */
function vrm_set_new_addr(vrm: vma_remap_struct): number {
  if (vrm.flags & MREMAP_FIXED) return 0; // the target was unmapped already
  // where the kernel put it (replay), else DONTUNMAP's new_addr hint, else anywhere
  const hint = vrm.placeAt ? vrm.placeAt : vrm_implies_new_addr(vrm) ? vrm.new_addr : 0;
  const res = get_unmapped_area(vrm.mm, hint, vrm.new_len);
  if (res < 0) return res;
  vrm.new_addr = res;
  return 0;
}

/** shrink_vma: unmap the tail [addr + new_len, addr + old_len); with drop_lock the munmap may downgrade and release the lock. */
function shrink_vma(vrm: vma_remap_struct, drop_lock: boolean): number {
  const start = vrm.addr + vrm.new_len;
  const r = do_vmi_munmap(vrm.mm, start, start + vrm.delta, drop_lock);
  if (r === 1) {
    up_read(lockOf(vrm.mm)); // munmap downgraded the lock
    vrm.mmap_locked = false;
    return 0;
  }
  return r;
}

/** mremap_to: FIXED or DONTUNMAP: unmap the target (FIXED), shrink the source if asked, then move. */
function mremap_to(vrm: vma_remap_struct): number {
  const V = current.V;
  const mm = vrm.mm;
  if (vrm.flags & MREMAP_FIXED) {
    const r = do_vmi_munmap(mm, vrm.new_addr, vrm.new_addr + vrm.new_len, false);
    vrm.vma = null;
    if (r < 0) return r;
    const s = vma_lookup(V, mm, vrm.addr);
    if (s < 0) return -EFAULT;
    vrm.vma = vma_read(V, mm, s);
  }
  if (vrm.remap_type === 'shrink') {
    const r = shrink_vma(vrm, false);
    if (r < 0) return r;
    vrm.old_len = vrm.new_len;
    const s = vma_lookup(V, mm, vrm.addr);
    if (s < 0) return -EFAULT;
    vrm.vma = vma_read(V, mm, s);
  }
  const r = vrm_set_new_addr(vrm);
  if (r < 0) return r;
  return move_vma(vrm);
}

/** vma_expandable: the gap above the VMA can take delta more bytes. */
function vrm_can_expand_in_place(vrm: vma_remap_struct): boolean {
  const vma = vrm.vma!;
  if (vrm.addr + vrm.old_len !== vma.end) return false;
  const end = vma.end + vrm.delta;
  if (end > TASK_SIZE) return false;
  return !find_vma_intersection(current.V, vrm.mm, vma.end, end);
}

/** expand_vma_in_place: extend the VMA (vma_merge_extend: merging with the next one if it can). */
function expand_vma_in_place(vrm: vma_remap_struct): number {
  const V = current.V;
  const s = vma_lookup(V, vrm.mm, vrm.addr);
  vma_set_field(V, vrm.mm, s, VMA_END, vrm.vma!.end + vrm.delta);
  vma_merge_neighbours(V, vrm.mm, s);
  return 0;
}

/** mremap_at: no FIXED, no DONTUNMAP: no-op, shrink in place, expand in place or move. */
function mremap_at(vrm: vma_remap_struct): number {
  switch (vrm.remap_type) {
    case 'invalid':
      return -EINVAL;
    case 'no_resize':
      return vrm.addr;
    case 'shrink': {
      const r = shrink_vma(vrm, true);
      return r < 0 ? r : vrm.addr;
    }
    case 'expand': {
      if (vrm_can_expand_in_place(vrm)) {
        const r = expand_vma_in_place(vrm);
        return r < 0 ? r : vrm.addr;
      }
      if (!(vrm.flags & MREMAP_MAYMOVE)) return -ENOMEM;
      const r = vrm_set_new_addr(vrm);
      if (r < 0) return r;
      return move_vma(vrm);
    }
  }
}

/**
 * vma_multi_allowed: may this VMA be one of several moved by one call?
 * Not if userfaultfd is armed on it (the notification would need the lock
 * dropped); file mappings with their own get_unmapped_area other than
 * shmem/hugetlb are excluded too, and the only files here are shmem.
 */
const vma_multi_allowed = (vma: Vma): boolean => (vma.flags & VM_UFFD_MISSING) === 0;

/**
 * remap_move: a FIXED move that keeps the size. The range may cover several
 * VMAs and gaps (6.17+); each VMA moves to the same offset in the target, so
 * gaps are preserved. No leading gap. A VMA that may not take part in a
 * multi-VMA move fails the call with EFAULT; VMAs already moved stay moved.
 */
function remap_move(vrm: vma_remap_struct): number {
  const V = current.V;
  const mm = vrm.mm;
  const start = vrm.addr;
  const end = vrm.addr + vrm.old_len;
  let target_addr = vrm.new_addr;
  let res = -EFAULT;
  let last_end = 0;
  let seen_vma = false;
  for (let cursor = start; cursor < end;) {
    const s = find_vma(V, mm, cursor);
    if (s < 0) break;
    const vma = vma_read(V, mm, s);
    if (vma.start >= end) break;
    if (!seen_vma && start < vma.start) return -EFAULT; // no gap permitted at the start
    const addr = Math.max(vma.start, start);
    const len = Math.min(end, vma.end) - addr;
    const offset = seen_vma ? vma.start - last_end : 0;
    last_end = vma.end;
    vrm.vma = vma;
    vrm.addr = addr;
    vrm.new_addr = target_addr + offset;
    vrm.old_len = vrm.new_len = len;
    if (!vma_multi_allowed(vma)) {
      if (seen_vma) return -EFAULT; // not the first VMA
      if (vma.end < end) return -EFAULT; // the first, but there is more
    }
    let r = check_prep_vma(vrm);
    if (r === 0) r = mremap_to(vrm);
    if (r < 0) return r;
    if (!seen_vma) res = r;
    seen_vma = true;
    target_addr = r + len;
    cursor = addr + len;
  }
  return res;
}

/**
 * mremap(2): the new address or -errno. `placeAt` is not part of the syscall:
 * when the kernel would choose where to move (MAYMOVE without FIXED), it is
 * tried first as the hint of get_unmapped_area (strace replay puts the mapping
 * where the real kernel did).
 */
export function do_mremap(mm: number, addr: number, old_len: number, new_len: number, flags: number, new_addr = 0, placeAt = 0): number {
  return syscall(SYS.mremap, addr, () => __do_mremap(mm, addr, old_len, new_len, flags, new_addr, placeAt));
}

function __do_mremap(mm: number, addr: number, old_len: number, new_len: number, flags: number, new_addr: number, placeAt: number): number {
  const V = current.V;
  const vrm: vma_remap_struct = {
    mm, addr, old_len: PAGE_ALIGN(old_len), new_len: PAGE_ALIGN(new_len), flags, new_addr, placeAt,
    vma: null, delta: 0, remap_type: 'invalid', mmap_locked: false,
  };
  const err = check_mremap_params(vrm);
  if (err) return err;
  mmap_write_lock(mm);
  vrm.mmap_locked = true;
  try {
    if (vrm_implies_new_addr(vrm) && vma_count(V, mm) + 2 >= max_map_count() - MAP_COUNT_HEADROOM) return -ENOMEM;
    if (vrm_move_only(vrm)) return remap_move(vrm);
    const s = vma_lookup(V, mm, vrm.addr);
    vrm.vma = s >= 0 ? vma_read(V, mm, s) : null;
    const r = check_prep_vma(vrm);
    if (r) return r;
    return vrm_implies_new_addr(vrm) ? mremap_to(vrm) : mremap_at(vrm);
  } finally {
    if (vrm.mmap_locked) mmap_write_unlock(mm);
  }
}
