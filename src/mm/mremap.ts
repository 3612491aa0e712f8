// mm/mremap.c (first part): the syscall's parameter checks, shrink, expand in
// place, and the move through move_vma -> move_page_tables -> move_ptes, with
// pagetable_move_control built by one constructor (PAGETABLE_MOVE) as in Lorenzo
// Stoakes's refactor. move_ptes keeps the order of spec 3.11: lock old PTL, lock
// new PTL nested, lazy MMU section with the old range as the fast range, clear
// old, set new, leave the section, flush the old range while both PTLs are still
// held, unlock new, unlock old.
//
// Not yet (issue #5): PMD/PUD realignment and whole-table moves (get_extent
// here only splits at PMD boundaries; move_pgt_entry moves PTEs only), huge
// pages, file mappings and rmap locks, multi-VMA moves, relocate_vma_down.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock, up_read } from '../hw/locks.ts';
import { PAGE_SIZE, PMD_SIZE, TASK_SIZE, VMA_END } from '../hw/layout.ts';
import { pte_none, pte_present, _PAGE_PRESENT, _PAGE_PSE } from '../hw/pte.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { knobs } from '../sim/knobs.ts';
import { take_rmap_locks, drop_rmap_locks } from './rmap.ts';
import {
  pgd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset_map_lock, pte_offset, pte_lockptr, ptl, ptep_get,
  ptep_get_and_clear, set_pte_at, flush_tlb_range, pud_offset, pmd_offset,
} from './pgtable.ts';
import { lazy_mmu_mode_enable_fast_pte_range, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { addr_end } from './memory.ts';
import { type Vma, find_vma, vma_lookup, vma_read, vma_insert, vma_count, vma_set_field, vma_merge_neighbours, split_vma } from './vma.ts';
import { file_get } from './shmem.ts';
import { PAGE_ALIGN, EINVAL, ENOMEM, EFAULT, do_vmi_munmap, get_unmapped_area, mmap_write_lock, mmap_write_unlock, lockOf } from './mmap.ts';

export const MREMAP_MAYMOVE = 1;
export const MREMAP_FIXED = 2;
export const MREMAP_DONTUNMAP = 4;

/** struct pagetable_move_control */
export interface pagetable_move_control {
  mm: number;
  old: Vma;
  new: Vma;
  old_addr: number;
  old_end: number;
  new_addr: number;
  len_in: number;
  need_rmap_locks: boolean;
  for_stack: boolean;
}

/** PAGETABLE_MOVE(name, old_vma, new_vma, old_addr, new_addr, len): the one constructor */
export function PAGETABLE_MOVE(mm: number, old: Vma, nw: Vma, old_addr: number, new_addr: number, len: number): pagetable_move_control {
  return { mm, old, new: nw, old_addr, old_end: old_addr + len, new_addr, len_in: len, need_rmap_locks: false, for_stack: false };
}

/** get_extent: how much to move in one step: up to the next PMD boundary of either address. */
export function get_extent(old_addr: number, old_end: number, new_addr: number): number {
  const next = addr_end(old_addr, old_end, PMD_SIZE);
  let extent = next - old_addr;
  const nnext = (Math.floor(new_addr / PMD_SIZE) + 1) * PMD_SIZE;
  if (nnext - new_addr < extent) extent = nnext - new_addr;
  return extent;
}

/** The PMD entry for addr, or -1 if there is none (no table above it). */
function get_old_pmd(mm: number, addr: number): number {
  const I = current.I;
  const pgdp = pgd_offset(mm, addr);
  if ((Atomics.load(I, pgdp) & _PAGE_PRESENT) === 0) return -1;
  const pudp = pud_offset(pgdp, addr);
  if ((Atomics.load(I, pudp) & _PAGE_PRESENT) === 0) return -1;
  return pmd_offset(pudp, addr);
}

function alloc_new_pmd(mm: number, addr: number): number {
  const pudp = pud_alloc(mm, pgd_offset(mm, addr), addr);
  if (pudp < 0) return -1;
  return pmd_alloc(mm, pudp, addr);
}

/**
 * move_ptes: move the PTEs of [old_addr, old_addr + extent) to new_addr.
 * Returns false if the old table vanished (the caller retries, like -EAGAIN).
 */
export function move_ptes(pmc: pagetable_move_control, extent: number, old_pmd: number, new_pmd: number, old_addr: number, new_addr: number): boolean {
  const mm = pmc.mm;
  if (pmc.need_rmap_locks) take_rmap_locks(pmc.old);
  const old_pte0 = pte_offset_map_lock(old_pmd, old_addr);
  if (old_pte0 < 0) {
    if (pmc.need_rmap_locks) drop_rmap_locks(pmc.old);
    return false;
  }
  const old_ptl = ptl.value;
  const new_pte0 = pte_offset(new_pmd, new_addr);
  const new_ptl = pte_lockptr(Atomics.load(current.I, new_pmd));
  if (new_ptl !== old_ptl) spin_lock(new_ptl);
  let force_flush = false;
  // the seed: the old range is the one passed (spec 2.4)
  lazy_mmu_mode_enable_fast_pte_range(mm, old_addr, old_addr + extent, old_pte0);
  for (let i = 0; i < extent / PAGE_SIZE; i++) {
    const op = old_pte0 + i;
    if (pte_none(ptep_get(op))) continue;
    const pte = ptep_get_and_clear(mm, old_addr + i * PAGE_SIZE, op);
    if (pte_present(pte)) force_flush = true;
    set_pte_at(mm, new_addr + i * PAGE_SIZE, new_pte0 + i, pte);
  }
  lazy_mmu_mode_disable();
  // Flush before either PTL is dropped (the fix for CVE-2018-18281, spec 6.1).
  const late = knobs['mremap.flush_after_unlock'];
  if (force_flush && !late) flush_tlb_range(mm, old_addr, old_addr + extent);
  if (new_ptl !== old_ptl) spin_unlock(new_ptl);
  spin_unlock(old_ptl);
  if (force_flush && late) flush_tlb_range(mm, old_addr, old_addr + extent); // BUG (injected): after both unlocks
  if (pmc.need_rmap_locks) drop_rmap_locks(pmc.old);
  return true;
}

/** move_page_tables: returns the number of bytes moved (less than len_in on failure). */
export function move_page_tables(pmc: pagetable_move_control): number {
  const I = current.I;
  let old_addr = pmc.old_addr;
  let new_addr = pmc.new_addr;
  const old_end = pmc.old_end;
  while (old_addr < old_end) {
    const extent = get_extent(old_addr, old_end, new_addr);
    const old_pmd = get_old_pmd(pmc.mm, old_addr);
    if (old_pmd >= 0 && (Atomics.load(I, old_pmd) & _PAGE_PRESENT) !== 0 && (Atomics.load(I, old_pmd) & _PAGE_PSE) === 0) {
      const new_pmd = alloc_new_pmd(pmc.mm, new_addr);
      if (new_pmd < 0 || !__pte_alloc(pmc.mm, new_pmd)) break;
      if (!move_ptes(pmc, extent, old_pmd, new_pmd, old_addr, new_addr)) continue; // table vanished: retry
    }
    old_addr += extent;
    new_addr += extent;
  }
  return old_addr - pmc.old_addr;
}

/**
 * move_vma: make a VMA for the new range (copy_vma), move the page tables, then
 * unmap the old range (unless MREMAP_DONTUNMAP). Returns the new address or -errno.
 */
function move_vma(mm: number, old_addr: number, old_len: number, new_len: number, new_addr: number, dontunmap: boolean): number {
  const V = current.V;
  if (vma_count(V, mm) + 3 > V.L.shape.maxVmas) return -ENOMEM;
  const slot = vma_lookup(V, mm, old_addr);
  const vma = vma_read(V, mm, slot);
  // copy_vma: the new VMA keeps the file offset (and, for anonymous memory, the anon_vma)
  const nv: Vma = { ...vma, start: new_addr, end: new_addr + new_len, pgoff: vma.pgoff + (old_addr - vma.start) / PAGE_SIZE };
  let at = find_vma(V, mm, new_addr);
  if (at < 0) at = vma_count(V, mm);
  if (!vma_insert(V, mm, at, nv)) return -ENOMEM;
  if (nv.file >= 0) file_get(nv.file);
  // From the first moved PTE until the flush, one page is reachable through a
  // stale old-VA entry and through its new VA at once (spec 3.12): a write
  // through either shows through the other. The content model must expect
  // neither range to keep a CPU's last write there until the move is over.
  const discard = current.host.hooks.discard;
  discard(mm, old_addr, old_addr + old_len, false);
  discard(mm, new_addr, new_addr + new_len, false);
  const pmc = PAGETABLE_MOVE(mm, vma, nv, old_addr, new_addr, old_len);
  const moved = move_page_tables(pmc);
  if (moved < old_len) {
    // out of page-table memory: move back what moved, drop the new VMA
    move_page_tables(PAGETABLE_MOVE(mm, nv, vma, new_addr, old_addr, moved));
    do_vmi_munmap(mm, new_addr, new_addr + new_len, false);
    discard(mm, new_addr, new_addr + new_len, true);
    discard(mm, old_addr, old_addr + old_len, true);
    return -ENOMEM;
  }
  if (!dontunmap) {
    // the contents moved: unmapping the old range finds no PTEs, frees its tables
    const r = do_vmi_munmap(mm, old_addr, old_addr + old_len, false);
    if (r < 0) return r;
  }
  discard(mm, new_addr, new_addr + new_len, true);
  discard(mm, old_addr, old_addr + old_len, true);
  const ns = vma_lookup(V, mm, new_addr);
  if (ns >= 0 && nv.file < 0) vma_merge_neighbours(V, mm, ns);
  return new_addr;
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
  if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) return -EINVAL;
  if (addr % PAGE_SIZE !== 0) return -EINVAL;
  if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) && !(flags & MREMAP_MAYMOVE)) return -EINVAL;
  if (flags & MREMAP_DONTUNMAP && old_len !== new_len) return -EINVAL;
  old_len = PAGE_ALIGN(old_len);
  new_len = PAGE_ALIGN(new_len);
  if (new_len === 0) return -EINVAL;
  if (flags & MREMAP_FIXED) {
    if (new_addr % PAGE_SIZE !== 0 || new_addr + new_len > TASK_SIZE) return -EINVAL;
    if (new_addr < addr + old_len && addr < new_addr + new_len) return -EINVAL; // overlap
  }
  mmap_write_lock(mm);
  let locked = true;
  try {
    const slot = vma_lookup(V, mm, addr);
    if (slot < 0) return -EFAULT;
    const vma = vma_read(V, mm, slot);
    if (old_len === 0) return -EINVAL; // duplicating a shared mapping: not yet
    if (addr + old_len > vma.end) return -EFAULT;
    if (flags & MREMAP_FIXED) {
      const r = do_vmi_munmap(mm, new_addr, new_addr + new_len, false);
      if (r < 0) return r;
      if (new_len < old_len) {
        const r2 = do_vmi_munmap(mm, addr + new_len, addr + old_len, false);
        if (r2 < 0) return r2;
        old_len = new_len;
      }
      return split_and_move(mm, addr, old_len, new_len, new_addr, (flags & MREMAP_DONTUNMAP) !== 0);
    }
    if (new_len <= old_len && !(flags & MREMAP_DONTUNMAP)) {
      if (new_len < old_len) {
        const r = do_vmi_munmap(mm, addr + new_len, addr + old_len, true);
        if (r === 1) {
          up_read(lockOf(mm)); // munmap downgraded the lock
          locked = false;
          return addr;
        }
        if (r < 0) return r;
      }
      return addr;
    }
    if (!(flags & MREMAP_DONTUNMAP) && addr + old_len === vma.end) {
      // expand in place if the gap above is free
      const next = find_vma(V, mm, vma.end);
      const limit = next >= 0 ? vma_read(V, mm, next).start : TASK_SIZE;
      if (addr + new_len <= limit) {
        vma_set_field(V, mm, slot, VMA_END, addr + new_len);
        if (vma.file < 0) vma_merge_neighbours(V, mm, slot);
        return addr;
      }
    }
    if (!(flags & MREMAP_MAYMOVE)) return -ENOMEM;
    const to = get_unmapped_area(mm, placeAt, new_len);
    if (to < 0) return to;
    return split_and_move(mm, addr, old_len, new_len, to, (flags & MREMAP_DONTUNMAP) !== 0);
  } finally {
    if (locked) mmap_write_unlock(mm);
  }
}

/** Split the source VMA so the moved range is a VMA of its own, then move it. */
function split_and_move(mm: number, addr: number, old_len: number, new_len: number, new_addr: number, dontunmap: boolean): number {
  const V = current.V;
  const s = vma_lookup(V, mm, addr);
  if (s < 0) return -EFAULT;
  if (!split_vma(V, mm, s, addr)) return -ENOMEM;
  const s2 = vma_lookup(V, mm, addr);
  if (!split_vma(V, mm, s2, addr + old_len)) return -ENOMEM;
  return move_vma(mm, addr, old_len, new_len, new_addr, dontunmap);
}

