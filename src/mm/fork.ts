// mm/mmap.c dup_mmap (kernel/fork.c before "mm: move dup_mmap() to mm") and
// mm/memory.c copy_page_range, copy_pte_range, copy_present_ptes, copy_present_page:
//
//  - the parent's mmap_lock held for write (and the child's, nested) for the
//    whole copy; VMAs duplicated in address order, file VMAs under the file's
//    i_mmap_rwsem; the child VMA shares the parent's anon_vma (simplified
//    anon_vma_fork: one anon_vma per family, so an rmap walk of a shared page
//    finds every process that maps it);
//  - page tables copied only where the child could not fault them back
//    (vma_needs_copy: the VMA has an anon_vma);
//  - for COW mappings the parent's write_protect_seq is held for writing around
//    the copy (GUP-fast checks it: commit 57efa1fe5957);
//  - copy_pte_range: the child's PTL first, the parent's nested, one lazy MMU
//    section per table with the *source* range as the fast range (the seed's
//    case 1: the child's updates fall outside it), a progress counter that
//    breaks out every 32 units when either PTL is contended;
//  - copy_present_ptes: a reference and a mapcount per shared page; an anon
//    page stops being anon-exclusive, unless it may be DMA-pinned: then the
//    child gets its own copy now (copy_present_page, with a page preallocated
//    outside the locks: the -EAGAIN retry) and the parent keeps the pinned page
//    writable and exclusive; COW mappings write-protect parent and child entries
//    without per-PTE flushes;
//  - one flush of the whole parent mm after copying and before the parent's
//    mmap_lock is released (docs/kernel-rules.md#fork-parent-flush); knobs
//    fork.no_parent_flush and fork.flush_after_unlock break exactly that (constructed);
//  - every parent VMA write-locked (vma_start_write) before it is copied, so no
//    per-VMA-lock fault of a sibling thread runs on it until the parent's
//    mmap_lock is released, after the flush (commit fb49c455323f, 6.5); knob
//    fork.no_vma_write_lock drops that.
//
// Huge PMDs and PUDs are copied as huge (copy_huge_pmd / copy_huge_pud of
// src/mm/huge_memory.ts); a possibly-pinned THP is split there and its PTEs copied
// here, the pinned subpages eagerly (thp_hooks.folio_maybe_dma_pinned is ours).

import { current } from '../hw/cpu.ts';
import { spin_lock_nested, spin_unlock, spin_is_contended, raw_write_seqcount_begin, raw_write_seqcount_end } from '../hw/locks.ts';
import {
  mmWord, frameWord, MM_RSS, MM_USERS, MM_WP_SEQ, FM_FLAGS, PG_ANON, PG_ANON_EXCLUSIVE, PG_HEAD, PG_TAIL, PAGE_SIZE, PMD_SIZE, PUD_SIZE, PGDIR_SIZE, TASK_SIZE,
  ST_FORK_PTES, H_NEXT_ANON,
} from '../hw/layout.ts';
import {
  pte_none, pte_present, pte_write, pte_pfn, pfn_pte, pte_wrprotect, pte_mkclean, pte_mkold, _PAGE_PRESENT, _PAGE_PSE, _PAGE_SPECIAL, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_RW,
} from '../hw/pte.ts';
import { EV, SYS } from '../hw/trace.ts';
import { knobs } from '../inject/knobs.ts';
import { syscall } from './syscall.ts';
import {
  arch, pgd_offset, pud_offset, pmd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset_map_lock, pte_offset, pte_lockptr,
  ptep_lockptr, ptep_get, ptep_set_wrprotect, set_pte_at,
} from './pgtable.ts';
import { lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { alloc_page, get_page, put_page, page_mapcount_inc, zero_pfn } from './page_alloc.ts';
import { addr_end, is_cow_mapping, vm_page_prot, copy_user_highpage, SetPageAnonExclusive, ClearPageAnonExclusive } from './memory.ts';
import { page_maybe_dma_pinned } from './gup.ts';
import { copy_huge_pmd, copy_huge_pud, pmd_trans_huge, pud_trans_huge, thp_hooks } from './huge_memory.ts';
import { type Vma, vma_read, vma_rec, vma_insert, vma_count } from './vma.ts';
import { vma_start_write } from './mmap_lock.ts';
import { file_get } from './shmem.ts';
import { i_mmap_lock_write, i_mmap_unlock_write, __vma_link_file_after } from './rmap.ts';
import { mm_alloc, exit_mmap } from './mm.ts';
import { mmap_write_lock, mmap_write_lock_nested, mmap_write_unlock } from './mmap.ts';
import { SINGLE_DEPTH_NESTING } from '../hw/lockdep.ts';
import { VM_SHARED, VM_WRITE, VM_DONTCOPY, VM_WIPEONFORK } from './vm_flags.ts';
import { ENOMEM, EAGAIN } from './errno.ts';


// folio_maybe_dma_pinned for copy_huge_pmd: the pin counting of src/mm/gup.ts
thp_hooks.folio_maybe_dma_pinned = (head: number): boolean => page_maybe_dma_pinned(current.V, head);

/** vma_needs_copy (mm/memory.c): only a VMA with an anon_vma may hold pages the child could not fault back in. */
export function vma_needs_copy(vma: Vma): boolean {
  return vma.anon >= 0;
}

/** State of one copy_page_range: the page preallocated for an eager copy, and the child's new RSS. */
interface CopyState {
  prealloc: number;
  rss: number;
}

/**
 * copy_present_page: the child gets a private copy of a possibly-pinned anon
 * page now, mapped with the VMA's protection (writable and dirty if it may
 * write); the parent's entry is left untouched, writable and exclusive.
 */
function copy_present_page(dst_mm: number, vma: Vma, dst_ptep: number, addr: number, pfn: number, st: CopyState): number {
  if (st.prealloc === 0) return -EAGAIN;
  const npfn = st.prealloc;
  st.prealloc = 0;
  copy_user_highpage(npfn, pfn);
  SetPageAnonExclusive(npfn);
  page_mapcount_inc(npfn); // folio_add_new_anon_rmap
  st.rss++;
  let entry = pfn_pte(npfn, vm_page_prot(vma) | _PAGE_ACCESSED);
  if (vma.flags & VM_WRITE) entry |= _PAGE_RW | _PAGE_DIRTY;
  set_pte_at(dst_mm, addr, dst_ptep, entry);
  current.stat(ST_FORK_PTES);
  return 0;
}

/** copy_present_ptes for one entry (no large folios here): 0, or -EAGAIN when an eager copy needs a page. */
function copy_present_pte(dst_mm: number, src_mm: number, vma: Vma, dst_ptep: number, src_ptep: number, addr: number, pte: number, st: CopyState): number {
  const cpu = current;
  const V = cpu.V;
  const pfn = pte_pfn(pte);
  if (pfn !== zero_pfn(V) && (pte & _PAGE_SPECIAL) === 0) { // vm_normal_page
    const flags = Atomics.load(V.I, frameWord(V.L, pfn, FM_FLAGS));
    if (flags & PG_ANON) {
      // folio_try_dup_anon_rmap: fails for an exclusive page that may be pinned. The
      // pages of a THP carry no anon-exclusive flag here: one of a possibly-pinned
      // folio counts as exclusive (an eager copy is never wrong, only dearer)
      const exclusive = (flags & (PG_ANON_EXCLUSIVE | PG_HEAD | PG_TAIL)) !== 0;
      if (exclusive && page_maybe_dma_pinned(V, pfn)) {
        return copy_present_page(dst_mm, vma, dst_ptep, addr, pfn, st);
      }
      get_page(pfn);
      ClearPageAnonExclusive(pfn); // shared with the child from now on
      page_mapcount_inc(pfn);
    } else {
      get_page(pfn); // folio_dup_file_rmap
      page_mapcount_inc(pfn);
    }
    st.rss++;
  }
  // COW mappings write-protect both sides, without a flush here (docs/kernel-rules.md#fork-parent-flush)
  if (is_cow_mapping(vma.flags) && pte_write(pte)) {
    ptep_set_wrprotect(src_mm, addr, src_ptep);
    pte = pte_wrprotect(pte);
  }
  if (vma.flags & VM_SHARED) pte = pte_mkclean(pte);
  set_pte_at(dst_mm, addr, dst_ptep, pte_mkold(pte)); // outside the fast range: the child's table
  cpu.stat(ST_FORK_PTES);
  return 0;
}

/**
 * copy_pte_range: copy [addr, end) of one PTE table. Returns the address it
 * stopped at (end, or earlier when it broke out for a contended lock or to
 * preallocate a page: the caller calls again from there), or -errno.
 */
function copy_pte_range(dst_mm: number, src_mm: number, vma: Vma, dst_pmd: number, src_pmd: number, addr: number, end: number, st: CopyState): number {
  const cpu = current;
  const dst0 = pte_offset_map_lock(dst_pmd, addr); // the child's PTL first
  if (dst0 < 0) return -ENOMEM;
  const dst_ptl = ptep_lockptr(dst0);
  const srcPmdVal = Atomics.load(cpu.I, src_pmd);
  if ((srcPmdVal & _PAGE_PRESENT) === 0 || srcPmdVal & _PAGE_PSE) {
    spin_unlock(dst_ptl);
    return end;
  }
  const src0 = pte_offset(src_pmd, addr);
  const src_ptl = pte_lockptr(srcPmdVal);
  spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING); // the parent's, nested (mm/memory.c copy_pte_range)
  const rss0 = st.rss;
  let progress = 0;
  let again = false;
  let a = addr;
  lazy_mmu_mode_enable_with_ptes(src_mm, addr, end, src0); // the source range (RFC 1/2; docs/kernel-rules.md#lazy-mmu-range)
  for (let i = 0; a < end; i++, a += PAGE_SIZE) {
    if (progress >= 32) {
      progress = 0;
      if (spin_is_contended(src_ptl) || spin_is_contended(dst_ptl)) break;
    }
    const pte = ptep_get(src0 + i);
    if (pte_none(pte)) {
      progress++;
      continue;
    }
    if (!pte_present(pte)) { // copy_nonpresent_pte: no swap or migration entries in this machine
      progress += 8;
      continue;
    }
    if (copy_present_pte(dst_mm, src_mm, vma, dst0 + i, src0 + i, a, pte, st) === -EAGAIN) {
      again = true;
      break;
    }
    progress += 8;
  }
  lazy_mmu_mode_disable();
  spin_unlock(src_ptl);
  Atomics.add(cpu.I, mmWord(cpu.V.L, dst_mm, MM_RSS), st.rss - rss0);
  spin_unlock(dst_ptl);
  if (again) {
    // allocate outside the locks, then retry from the entry that needs it
    st.prealloc = alloc_page(true);
    if (st.prealloc === 0) return -ENOMEM;
  } else if (st.prealloc !== 0) {
    // an unused preallocated page is not kept for a later address (memory policy)
    put_page(st.prealloc);
    st.prealloc = 0;
  }
  return a;
}

/** copy_page_range: copy the parent's entries of one VMA into the child (mm/memory.c). */
export function copy_page_range(dst_mm: number, src_mm: number, vma: Vma): number {
  if (!vma_needs_copy(vma)) return 0;
  const I = current.I;
  const cow = is_cow_mapping(vma.flags);
  const seq = mmWord(current.V.L, src_mm, MM_WP_SEQ);
  if (cow) raw_write_seqcount_begin(seq); // GUP-fast pins back off until the end (commit 57efa1fe5957)
  const st: CopyState = { prealloc: 0, rss: 0 };
  let ret = 0;
  for (let addr = vma.start; addr < vma.end && ret === 0;) {
    const pgdp = pgd_offset(src_mm, addr);
    if ((Atomics.load(I, pgdp) & _PAGE_PRESENT) === 0) {
      addr = addr_end(addr, vma.end, PGDIR_SIZE);
      continue;
    }
    const pudp = pud_offset(pgdp, addr);
    const pudv = Atomics.load(I, pudp);
    if (pud_trans_huge(pudv)) {
      // a PUD leaf is copied as one (copy_huge_pud); -EAGAIN: no longer a leaf, copy below it
      const dpud = pud_alloc(dst_mm, pgd_offset(dst_mm, addr), addr);
      const r = dpud < 0 ? -ENOMEM : copy_huge_pud(dst_mm, src_mm, dpud, pudp, addr, vma);
      if (r === -ENOMEM) ret = r;
      if (r !== -EAGAIN) {
        addr = addr_end(addr, vma.end, PUD_SIZE);
        continue;
      }
    }
    if ((Atomics.load(I, pudp) & _PAGE_PRESENT) === 0) {
      addr = addr_end(addr, vma.end, PUD_SIZE);
      continue;
    }
    const next = addr_end(addr, vma.end, PMD_SIZE);
    const src_pmd = pmd_offset(pudp, addr);
    const v = Atomics.load(I, src_pmd);
    if (v & _PAGE_PRESENT || pmd_trans_huge(v)) {
      const dpud = pud_alloc(dst_mm, pgd_offset(dst_mm, addr), addr);
      const dpmd = dpud < 0 ? -1 : pmd_alloc(dst_mm, dpud, addr);
      let pte = true;
      if (dpmd < 0) ret = -ENOMEM;
      else if (pmd_trans_huge(v)) {
        // a huge PMD is copied as huge (copy_huge_pmd); -EAGAIN: it was split
        // (a possibly-pinned THP): copy its PTEs below
        const r = copy_huge_pmd(dst_mm, src_mm, dpmd, src_pmd, addr, vma);
        if (r === -ENOMEM) ret = r;
        pte = r === -EAGAIN && (Atomics.load(I, src_pmd) & (_PAGE_PRESENT | _PAGE_PSE)) === _PAGE_PRESENT;
      }
      if (ret === 0 && pte) {
        if (!__pte_alloc(dst_mm, dpmd)) ret = -ENOMEM;
        for (let a = addr; a < next && ret === 0;) {
          const r = copy_pte_range(dst_mm, src_mm, vma, dpmd, src_pmd, a, next, st);
          if (r < 0) ret = r;
          else a = r;
        }
      }
    }
    addr = next;
  }
  if (st.prealloc !== 0) put_page(st.prealloc);
  if (cow) raw_write_seqcount_end(seq);
  return ret;
}

/** dup_mmap: a copy of oldmm's address space. Returns the new mm or -errno. */
export function dup_mmap(oldmm: number): number {
  const cpu = current;
  const V = cpu.V;
  mmap_write_lock(oldmm);
  const mm = mm_alloc();
  if (mm < 0) {
    mmap_write_unlock(oldmm);
    return -ENOMEM;
  }
  mmap_write_lock_nested(mm, SINGLE_DEPTH_NESTING); // nobody can see the child yet (kernel/fork.c dup_mmap)
  const promise = cpu.host.hooks.promise; // stale-TLB oracle hook: the parent's write-protect, promised before its mmap_lock is released
  promise?.(oldmm, 0, TASK_SIZE, false, 5);
  let err = 0;
  const noVmaLock = knobs['fork.no_vma_write_lock'];
  for (let s = 0; s < vma_count(V, oldmm); s++) {
    // for_each_vma(vmi, mpnt) { vma_start_write(mpnt); ... }: no per-VMA-lock fault on
    // the parent VMA from here until the parent's mmap_lock is released (fb49c455323f).
    // BUG (injected, before fb49c455323f): a sibling's fault takes the VMA lock while
    // its PTEs are being write-protected and COW-breaks pages other CPUs still cache
    // as writable (the parent's flush comes only at the end)
    if (!noVmaLock) vma_start_write(oldmm, vma_rec(V, oldmm, s));
    const v = vma_read(V, oldmm, s);
    // kernel/fork.c dup_mmap: a VM_DONTCOPY VMA (MADV_DONTFORK) is not
    // copied at all; a VM_WIPEONFORK one is copied without its pages and
    // with no anon_vma (the child faults in zeroes). Found by difftest.
    if (v.flags & VM_DONTCOPY) continue;
    const wipe = (v.flags & VM_WIPEONFORK) !== 0;
    // anon_vma_fork, simplified: the child chains to the family's anon_vma (not singular: `forked`)
    // (a fresh forkTag: the child's own anon_vma, chained to the family's; see Vma.forkTag)
    const child: Vma = wipe ? { ...v, anon: -1, forked: false, forkTag: 0 }
      : v.anon >= 0 ? { ...v, forked: true, forkTag: Atomics.add(V.I, V.L.header + H_NEXT_ANON, 1) + 1 } : { ...v };
    if (v.file >= 0) i_mmap_lock_write(v.file); // rmap walkers see the child right after the parent
    const ok = vma_insert(V, mm, vma_count(V, mm), child, false);
    if (ok && v.file >= 0) {
      __vma_link_file_after(mm, child, oldmm, v); // vma_interval_tree_insert_after
      file_get(v.file);
    }
    if (v.file >= 0) i_mmap_unlock_write(v.file);
    if (!ok) {
      err = -ENOMEM;
      break;
    }
    if (!wipe) err = copy_page_range(mm, oldmm, v);
    if (err < 0) break;
  }
  mmap_write_unlock(mm);
  // Parent entries were write-protected without flushes: flush the whole
  // parent once, before the lock that COW faults need is released (docs/kernel-rules.md#fork-parent-flush).
  const late = knobs['fork.flush_after_unlock']; // BUG (injected, docs/kernel-rules.md#fork-parent-flush): after the unlock instead
  if (!late && !knobs['fork.no_parent_flush']) arch.flush_tlb_mm(oldmm); // BUG (injected, same section): not at all
  if (err < 0) {
    exit_mmap(mm); // the partial child: only what was copied is there to undo
  } else {
    cpu.host.hooks.forked?.(oldmm, mm); // fork is complete: the COW oracle's epoch
  }
  promise?.(oldmm, 0, TASK_SIZE, true, 5);
  mmap_write_unlock(oldmm);
  if (late) arch.flush_tlb_mm(oldmm);
  return err < 0 ? err : mm;
}

/** fork(2) of the calling task's address space: the child's mm or -errno. */
export function do_fork(mm: number): number {
  return syscall(SYS.fork, mm, () => dup_mmap(mm));
}

/** A task of mm exits: the last user tears the address space down (exit_mmap). */
export function do_exit_mm(mm: number): void {
  const cpu = current;
  cpu.ring.log(EV.SYSCALL, SYS.exit, mm);
  if (Atomics.sub(cpu.I, mmWord(cpu.V.L, mm, MM_USERS), 1) - 1 === 0) {
    exit_mmap(mm);
    arch.leave_mm(cpu, mm);
  }
  cpu.ring.log(EV.SYSCALL_END, SYS.exit, 0);
}
