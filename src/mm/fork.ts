// kernel/fork.c + mm/memory.c (first part): dup_mmap, copy_page_range,
// copy_pte_range and copy_present_ptes, per spec 4.1-4.5: the parent's
// mmap_lock held for write, the child's PTL taken first and the parent's
// nested, one lazy MMU section per table with the *source* range as the fast
// range (the seed's case 1: the child's updates fall outside it), COW
// write-protection of parent and child entries without per-PTE flushes, and one
// flush of the whole parent mm after copying, before the lock is released.
//
// Not yet (issue #6): anon-exclusive and possibly-pinned pages copied eagerly,
// write_protect_seq, huge PMDs, non-present entries, the COW oracle.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import { mmWord, MM_RSS, MM_USERS, PAGE_SIZE, PMD_SIZE } from '../hw/layout.ts';
import { pte_none, pte_present, pte_write, pte_pfn, pte_wrprotect, pte_mkclean, pte_mkold, _PAGE_PRESENT, _PAGE_PSE, VM_SHARED, VM_MAYWRITE } from '../hw/pte.ts';
import { EV, SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import {
  arch, pgd_offset, pud_offset, pmd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset_map_lock, pte_offset, pte_lockptr,
  ptl, ptep_get, ptep_set_wrprotect, set_pte_at,
} from './pgtable.ts';
import { lazy_mmu_mode_enable_fast_pte_range, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { get_page, page_mapcount_inc, zero_pfn } from './page_alloc.ts';
import { addr_end } from './memory.ts';
import { type Vma, vma_list, vma_insert, vma_count } from './vma.ts';
import { file_get } from './shmem.ts';
import { mm_alloc, exit_mmap } from './mm.ts';
import { ENOMEM, mmap_write_lock, mmap_write_unlock } from './mmap.ts';

const is_cow_mapping = (flags: number): boolean => (flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;

/** copy_pte_range: one PTE table's worth of [addr, end). */
function copy_pte_range(dst_mm: number, src_mm: number, vma: Vma, dst_pmd: number, src_pmd: number, addr: number, end: number): number {
  const cpu = current;
  const V = cpu.V;
  const dst0 = pte_offset_map_lock(dst_pmd, addr); // the child's PTL first
  if (dst0 < 0) return -ENOMEM;
  const dst_ptl = ptl.value;
  const srcPmdVal = Atomics.load(cpu.I, src_pmd);
  if ((srcPmdVal & _PAGE_PRESENT) === 0 || srcPmdVal & _PAGE_PSE) {
    spin_unlock(dst_ptl);
    return 0;
  }
  const src0 = pte_offset(src_pmd, addr);
  const src_ptl = pte_lockptr(srcPmdVal);
  spin_lock(src_ptl); // the parent's, nested
  const zero = zero_pfn(V);
  const cow = is_cow_mapping(vma.flags);
  let rss = 0;
  lazy_mmu_mode_enable_fast_pte_range(src_mm, addr, end, src0); // the source range (spec 2.4)
  for (let i = 0, a = addr; a < end; i++, a += PAGE_SIZE) {
    let pte = ptep_get(src0 + i);
    if (pte_none(pte) || !pte_present(pte)) continue;
    const pfn = pte_pfn(pte);
    if (pfn !== zero) {
      get_page(pfn);
      page_mapcount_inc(pfn);
      rss++;
    }
    // copy_present_ptes: COW mappings write-protect both sides (no flush here)
    if (cow && pte_write(pte)) {
      ptep_set_wrprotect(src_mm, a, src0 + i);
      pte = pte_wrprotect(pte);
    }
    if (vma.flags & VM_SHARED) pte = pte_mkclean(pte);
    set_pte_at(dst_mm, a, dst0 + i, pte_mkold(pte)); // outside the fast range: the child's table
  }
  lazy_mmu_mode_disable();
  spin_unlock(src_ptl);
  Atomics.add(cpu.I, mmWord(V.L, dst_mm, MM_RSS), rss);
  spin_unlock(dst_ptl);
  return 0;
}

/** copy_page_range: copy the parent's entries of one VMA into the child. */
export function copy_page_range(dst_mm: number, src_mm: number, vma: Vma): number {
  const I = current.I;
  for (let addr = vma.start; addr < vma.end;) {
    const next = addr_end(addr, vma.end, PMD_SIZE);
    const pgdp = pgd_offset(src_mm, addr);
    if (Atomics.load(I, pgdp) & _PAGE_PRESENT) {
      const pudp = pud_offset(pgdp, addr);
      if (Atomics.load(I, pudp) & _PAGE_PRESENT) {
        const src_pmd = pmd_offset(pudp, addr);
        const v = Atomics.load(I, src_pmd);
        if (v & _PAGE_PRESENT && !(v & _PAGE_PSE)) {
          const dpud = pud_alloc(dst_mm, pgd_offset(dst_mm, addr), addr);
          const dpmd = dpud < 0 ? -1 : pmd_alloc(dst_mm, dpud, addr);
          if (dpmd < 0 || !__pte_alloc(dst_mm, dpmd)) return -ENOMEM;
          const r = copy_pte_range(dst_mm, src_mm, vma, dpmd, src_pmd, addr, next);
          if (r < 0) return r;
        }
      }
    }
    addr = next;
  }
  return 0;
}

/** dup_mmap: a copy of oldmm's address space. Returns the new mm or -errno. */
export function dup_mmap(oldmm: number): number {
  const cpu = current;
  const V = cpu.V;
  mmap_write_lock(oldmm);
  try {
    const mm = mm_alloc();
    if (mm < 0) return -ENOMEM;
    for (const v of vma_list(V, oldmm)) {
      // anon_vma_fork: the child's VMA chains to the parent's anon_vma (not singular)
      if (!vma_insert(V, mm, vma_count(V, mm), v.anon >= 0 ? { ...v, forked: true } : v)) return -ENOMEM;
      if (v.file >= 0) file_get(v.file);
      const r = copy_page_range(mm, oldmm, v);
      if (r < 0) return r;
    }
    // Parent entries were write-protected without flushes: flush the whole
    // parent once, before the lock that COW faults need is released (spec 4.5).
    arch.flush_tlb_mm(oldmm);
    return mm;
  } finally {
    mmap_write_unlock(oldmm);
  }
}

/** fork(2) of the calling task's address space: the child's mm or -errno. */
export function do_fork(mm: number): number {
  return syscall(SYS.fork, mm, () => dup_mmap(mm));
}

/** A task of mm exits: the last user tears the address space down. */
export function do_exit_mm(mm: number): void {
  const cpu = current;
  cpu.ring.log(EV.SYSCALL, SYS.exit, mm);
  if (Atomics.sub(cpu.I, mmWord(cpu.V.L, mm, MM_USERS), 1) - 1 === 0) {
    exit_mmap(mm);
    arch.leave_mm(cpu, mm);
  }
  cpu.ring.log(EV.SYSCALL_END, SYS.exit, 0);
}
