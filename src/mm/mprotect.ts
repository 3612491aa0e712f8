// mm/mprotect.c: mprotect(2) with VMA split/merge and change_protection, whose
// TLB flush goes through an mmu_gather after the PTLs are dropped but before
// the mmap_lock is released.

import { current } from '../hw/cpu.ts';
import { frameWord, FM_FLAGS, PG_ANON, PAGE_SIZE, PMD_SIZE, TASK_SIZE } from '../hw/layout.ts';
import {
  pte_present, pte_pfn, _PAGE_RW, _PAGE_USER,
} from '../hw/pte.ts';
import { SYS } from '../hw/trace.ts';
import { knobs } from '../inject/knobs.ts';

/** the stale-TLB oracle's change kinds (src/oracles/stale_tlb.ts CHANGE) */
const CHANGE_MPROTECT = 2;
import { syscall } from './syscall.ts';
import { find_vma, vma_read, vma_count, split_vma, vma_merge_neighbours, vma_set_field } from './vma.ts';
import { VMA_FLAGS } from '../hw/layout.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu, tlb_flush_pte_range } from './mmu_gather.ts';
import { pgd_offset, pte_offset_map_lock, pte_unmap_unlock, ptep_lockptr, ptep_get, ptep_modify_prot_start, ptep_modify_prot_commit } from './pgtable.ts';
import { lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { page_ref, page_mapcount, zero_pfn } from './page_alloc.ts';
import { addr_end } from './memory.ts';
import { PROT_READ, PROT_WRITE, PROT_EXEC, PAGE_ALIGN, mmap_write_lock, mmap_write_unlock } from './mmap.ts';
import { pud_offset, pmd_offset } from './pgtable.ts';
import { _PAGE_PRESENT, _PAGE_PSE } from '../hw/pte.ts';
import { change_huge_pmd_range, change_huge_pud_range } from './huge_memory.ts';
import { PUD_SIZE } from '../hw/layout.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_ACCOUNT, VM_NORESERVE } from './vm_flags.ts';
import { EINVAL, ENOMEM, EACCES } from './errno.ts';

function change_pte_range(tlb: mmu_gather, mm: number, vmFlags: number, pmdp: number, addr: number, end: number): void {
  const cpu = current;
  const V = cpu.V;
  const ptep0 = pte_offset_map_lock(pmdp, addr);
  if (ptep0 < 0) return;
  const lock = ptep_lockptr(ptep0);
  const access = (vmFlags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0;
  lazy_mmu_mode_enable_with_ptes(mm, addr, end, ptep0);
  for (let a = addr, ptep = ptep0; a < end; a += PAGE_SIZE, ptep++) {
    const e = ptep_get(ptep);
    if (!pte_present(e)) continue;
    const old = ptep_modify_prot_start(mm, a, ptep);
    let n = old & ~(_PAGE_RW | _PAGE_USER);
    if (access) n |= _PAGE_USER;
    if (vmFlags & VM_WRITE) {
      // Shared mappings become writable; private ones only where the page is
      // exclusively ours (can_change_pte_writable), else the write faults and COWs.
      const pfn = pte_pfn(old);
      if (vmFlags & VM_SHARED) n |= _PAGE_RW;
      else if (pfn !== zero_pfn(V) && (Atomics.load(V.I, frameWord(V.L, pfn, FM_FLAGS)) & PG_ANON) !== 0 &&
        page_ref(V, pfn) === 1 && page_mapcount(V, pfn) === 1) n |= _PAGE_RW;
    }
    ptep_modify_prot_commit(mm, a, ptep, old, n);
    // BUG (injected) when on: the changed PTE is not added to the gather's flush range
    if (n !== old && !knobs['mprotect.skip_flush']) tlb_flush_pte_range(tlb, a, PAGE_SIZE);
  }
  lazy_mmu_mode_disable();
  pte_unmap_unlock(lock);
}

export function change_protection(tlb: mmu_gather, mm: number, vmFlags: number, start: number, end: number): void {
  const I = current.I;
  for (let addr = start; addr < end;) {
    const next = addr_end(addr, end, PMD_SIZE);
    const pgdp = pgd_offset(mm, addr);
    if (Atomics.load(I, pgdp) & _PAGE_PRESENT) {
      const pudp = pud_offset(pgdp, addr);
      // a PUD leaf: changed whole or split (src/mm/huge_memory.ts); either way this PUD is done
      if (Atomics.load(I, pudp) & _PAGE_PSE && change_huge_pud_range(tlb, mm, vmFlags, pudp, addr, addr_end(addr, end, PUD_SIZE))) {
        addr = addr_end(addr, end, PUD_SIZE);
        continue;
      }
      if (Atomics.load(I, pudp) & _PAGE_PRESENT && !(Atomics.load(I, pudp) & _PAGE_PSE)) {
        const pmdp = pmd_offset(pudp, addr);
        // a huge PMD: changed in place when covered whole, else split and its PTEs changed below
        if (Atomics.load(I, pmdp) & _PAGE_PSE && change_huge_pmd_range(tlb, mm, vmFlags, pmdp, addr, next)) {
          addr = next;
          continue;
        }
        const pmd = Atomics.load(I, pmdp);
        if (pmd & _PAGE_PRESENT && !(pmd & _PAGE_PSE)) change_pte_range(tlb, mm, vmFlags, pmdp, addr, next);
      }
    }
    addr = next;
  }
}

/**
 * mprotect_fixup's accounting: private memory that becomes writable for the
 * first time is charged (VM_ACCOUNT), unless it is MAP_NORESERVE; an anonymous
 * VMA that never had a page (no anon_vma) gives its charge back when it stops
 * being writable. VM_ACCOUNT takes part in merging, so this decides which VMAs
 * merge afterwards.
 */
export function mprotect_account(v: { flags: number; file: number; anon: number }, newFlags: number): number {
  if (newFlags & VM_WRITE) {
    if (!(v.flags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE))) newFlags |= VM_ACCOUNT;
  } else if (v.flags & VM_ACCOUNT && v.file < 0 && v.anon < 0) {
    newFlags &= ~VM_ACCOUNT;
  }
  return newFlags;
}

/** mprotect(2): 0 or -errno. */
export function do_mprotect(mm: number, start: number, len: number, prot: number): number {
  return syscall(SYS.mprotect, start, () => {
    // stale-TLB oracle hook: the change and its promise point, once the syscall's
    // work (tlb_finish_mmu, mmap_write_unlock) is done (src/oracles/stale_tlb.ts)
    const promise = current.host.hooks.promise;
    const end = start + PAGE_ALIGN(len);
    promise?.(mm, start, end, false, CHANGE_MPROTECT);
    const r = __do_mprotect(mm, start, len, prot);
    promise?.(mm, start, end, true, CHANGE_MPROTECT);
    return r;
  });
}

function __do_mprotect(mm: number, start: number, len: number, prot: number): number {
  const V = current.V;
  if (start % PAGE_SIZE !== 0) return -EINVAL;
  if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) return -EINVAL;
  if (len === 0) return 0;
  len = PAGE_ALIGN(len);
  const end = start + len;
  if (end <= start || end > TASK_SIZE) return -ENOMEM;
  const want = (prot & PROT_READ ? VM_READ : 0) | (prot & PROT_WRITE ? VM_WRITE : 0) | (prot & PROT_EXEC ? VM_EXEC : 0);
  mmap_write_lock(mm);
  const tlb = new mmu_gather();
  tlb_gather_mmu(tlb, mm);
  try {
    let s = find_vma(V, mm, start);
    if (s < 0 || vma_read(V, mm, s).start > start) return -ENOMEM;
    let addr = start;
    while (addr < end) {
      if (s >= vma_count(V, mm)) return -ENOMEM;
      let v = vma_read(V, mm, s);
      if (v.start > addr) return -ENOMEM; // a hole
      let newFlags = (v.flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | want;
      if ((want & VM_READ && !(v.flags & VM_MAYREAD)) || (want & VM_WRITE && !(v.flags & VM_MAYWRITE)) ||
        (want & VM_EXEC && !(v.flags & VM_MAYEXEC))) return -EACCES;
      const segEnd = Math.min(end, v.end);
      if (newFlags !== v.flags) {
        // mprotect_fixup: split, change, merge
        newFlags = mprotect_account(v, newFlags);
        if (v.start < addr) {
          if (!split_vma(V, mm, s, addr)) return -ENOMEM;
          s++;
        }
        v = vma_read(V, mm, s);
        if (v.end > segEnd && !split_vma(V, mm, s, segEnd)) return -ENOMEM;
        vma_set_field(V, mm, s, VMA_FLAGS, newFlags);
        change_protection(tlb, mm, newFlags, addr, segEnd);
        s = vma_merge_neighbours(V, mm, s);
      }
      addr = segEnd;
      // by address: a merge with the next VMA may have swallowed the start of the rest
      s = find_vma(V, mm, addr);
      if (s < 0 && addr < end) return -ENOMEM;
    }
    return 0;
  } finally {
    tlb_finish_mmu(tlb);
    mmap_write_unlock(mm);
  }
}
