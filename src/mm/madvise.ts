// mm/madvise.c (first part): MADV_DONTNEED zaps the PTEs of a range under the
// mmap_lock held for read, through an mmu_gather (unhook -> flush -> free); the
// VMAs stay, and the next touch faults in zero-filled memory.

import { current, VM_FAULT_SIGSEGV, VM_FAULT_OOM } from '../hw/cpu.ts';
import { down_read, up_read } from '../hw/locks.ts';
import { PAGE_SIZE, TASK_SIZE } from '../hw/layout.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { type Vma, find_vma, vma_read, vma_count, split_vma, vma_set_field, vma_merge_neighbours } from './vma.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { unmap_page_range, faultin_page } from './memory.ts';
import { PAGE_ALIGN, lockOf, mmap_write_lock, mmap_write_unlock } from './mmap.ts';
import { VMA_FLAGS } from '../hw/layout.ts';
import { VM_SHARED, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_DONTCOPY, VM_DONTDUMP, VM_RAND_READ, VM_SEQ_READ, VM_WIPEONFORK, VM_READ, VM_WRITE } from './vm_flags.ts';
import { EINVAL, ENOMEM, EACCES, EFAULT } from './errno.ts';

export const MADV_DONTNEED = 4;

export function do_madvise(mm: number, start: number, len: number, advice: number): number {
  return syscall(SYS.madvise, start, () => __do_madvise(mm, start, len, advice));
}

function __do_madvise(mm: number, start: number, len: number, advice: number): number {
  const V = current.V;
  if (start % PAGE_SIZE !== 0 || advice !== MADV_DONTNEED) return -EINVAL;
  len = PAGE_ALIGN(len);
  const end = start + len;
  if (end < start || end > TASK_SIZE) return -EINVAL;
  if (len === 0) return 0;
  down_read(lockOf(mm));
  try {
    let s = find_vma(V, mm, start);
    let addr = start;
    let unmapped = false;
    const tlb = new mmu_gather();
    tlb_gather_mmu(tlb, mm);
    current.host.hooks.discard(mm, start, end, false);
    while (s >= 0 && s < vma_count(V, mm) && addr < end) {
      const v = vma_read(V, mm, s);
      if (v.start >= end) break;
      if (v.start > addr) unmapped = true;
      const a = Math.max(addr, v.start);
      const b = Math.min(end, v.end);
      unmap_page_range(tlb, mm, a, b);
      addr = b;
      s++;
    }
    tlb_finish_mmu(tlb);
    current.host.hooks.discard(mm, start, end, true);
    // the kernel processes what is mapped and reports the holes
    return unmapped || addr < end ? -ENOMEM : 0;
  } finally {
    up_read(lockOf(mm));
  }
}

// ---- the other advices (madvise_vma_behavior), for strace replay ----------------

export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_FREE = 8;
export const MADV_REMOVE = 9;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
export const MADV_MERGEABLE = 12;
export const MADV_UNMERGEABLE = 13;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_DONTDUMP = 16;
export const MADV_DODUMP = 17;
export const MADV_WIPEONFORK = 18;
export const MADV_KEEPONFORK = 19;
export const MADV_COLD = 20;
export const MADV_PAGEOUT = 21;
export const MADV_POPULATE_READ = 22;
export const MADV_POPULATE_WRITE = 23;
export const MADV_DONTNEED_LOCKED = 24;
export const MADV_COLLAPSE = 25;

/** How an advice changes a VMA's flags (madvise_vma_behavior), or -errno; undefined: not a flag advice. */
function madvise_new_flags(advice: number, v: Vma): number | undefined {
  const f = v.flags;
  switch (advice) {
    case MADV_NORMAL: return f & ~(VM_RAND_READ | VM_SEQ_READ);
    case MADV_SEQUENTIAL: return (f & ~VM_RAND_READ) | VM_SEQ_READ;
    case MADV_RANDOM: return (f & ~VM_SEQ_READ) | VM_RAND_READ;
    case MADV_DONTFORK: return f | VM_DONTCOPY;
    case MADV_DOFORK: return f & ~VM_DONTCOPY;
    case MADV_WIPEONFORK: return v.file >= 0 || f & VM_SHARED ? -EINVAL : f | VM_WIPEONFORK;
    case MADV_KEEPONFORK: return f & ~VM_WIPEONFORK;
    case MADV_DONTDUMP: return f | VM_DONTDUMP;
    case MADV_DODUMP: return f & ~VM_DONTDUMP;
    case MADV_HUGEPAGE: return (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE; // hugepage_madvise
    case MADV_NOHUGEPAGE: return (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
    default: return undefined;
  }
}

const MADV_VALID = new Set([
  MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MADV_DONTFORK,
  MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP,
  MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
  MADV_DONTNEED_LOCKED, MADV_COLLAPSE,
]);

/**
 * madvise_walk_vmas: visit the mapped pieces of [start, end) in order. A hole
 * makes the result -ENOMEM but the walk goes on; no VMA at all from some point
 * on is -ENOMEM at once; a visitor's error stops the walk.
 */
function madvise_walk_vmas(mm: number, start: number, end: number, visit: (slot: number, a: number, b: number) => number): number {
  const V = current.V;
  let addr = start;
  let unmapped = 0;
  for (;;) {
    const s = find_vma(V, mm, addr);
    if (s < 0) return -ENOMEM;
    const v = vma_read(V, mm, s);
    if (addr < v.start) {
      unmapped = -ENOMEM;
      addr = v.start;
      if (addr >= end) break;
    }
    const b = Math.min(end, v.end);
    const err = visit(s, addr, b);
    if (err < 0) return err;
    addr = b;
    if (addr >= end) break;
  }
  return unmapped;
}

/**
 * madvise(2) with any advice: MADV_DONTNEED (and _LOCKED) through do_madvise;
 * MADV_FREE zaps like DONTNEED (freeing lazily-freed pages at once is allowed)
 * but only on private anonymous VMAs; the flag advices split and merge VMAs
 * like mprotect; the rest (WILLNEED, COLD, PAGEOUT, POPULATE_*, COLLAPSE,
 * MERGEABLE, REMOVE) only walk the range here: their errors for holes are the
 * kernel's, their effect on pages is not modelled.
 */
export function do_madvise_advice(mm: number, start: number, len: number, advice: number): number {
  if (!MADV_VALID.has(advice)) return syscall(SYS.madvise, start, () => -EINVAL);
  if (advice === MADV_DONTNEED || advice === MADV_DONTNEED_LOCKED) return do_madvise(mm, start, len, MADV_DONTNEED);
  return syscall(SYS.madvise, start, () => __do_madvise_advice(mm, start, len, advice));
}

function __do_madvise_advice(mm: number, start: number, len: number, advice: number): number {
  const V = current.V;
  if (start % PAGE_SIZE !== 0) return -EINVAL;
  const alen = PAGE_ALIGN(len);
  if (len && !alen) return -EINVAL;
  const end = start + alen;
  if (end < start || end > TASK_SIZE) return -EINVAL;
  if (end === start) return 0;
  const isFlagAdvice = madvise_new_flags(advice, { start, end, pgoff: 0, flags: 0, file: -1, anon: -1 }) !== undefined;
  if (isFlagAdvice) {
    // madvise_update_vma: the mmap_lock for write; split, change, merge per VMA
    mmap_write_lock(mm);
    try {
      return madvise_walk_vmas(mm, start, end, (slot, a, b) => {
        const v = vma_read(V, mm, slot);
        const nf = madvise_new_flags(advice, v)!;
        if (nf < 0) return nf;
        if (nf === v.flags) return 0;
        let s = slot;
        if (v.start < a) {
          if (!split_vma(V, mm, s, a)) return -ENOMEM;
          s++;
        }
        if (vma_read(V, mm, s).end > b && !split_vma(V, mm, s, b)) return -ENOMEM;
        vma_set_field(V, mm, s, VMA_FLAGS, nf);
        vma_merge_neighbours(V, mm, s);
        return 0;
      });
    } finally {
      mmap_write_unlock(mm);
    }
  }
  down_read(lockOf(mm));
  try {
    if (advice === MADV_FREE) {
      const tlb = new mmu_gather();
      tlb_gather_mmu(tlb, mm);
      current.host.hooks.discard(mm, start, end, false);
      const r = madvise_walk_vmas(mm, start, end, (slot, a, b) => {
        const v = vma_read(V, mm, slot);
        if (v.file >= 0 || v.flags & VM_SHARED) return -EINVAL;
        unmap_page_range(tlb, mm, a, b);
        return 0;
      });
      tlb_finish_mmu(tlb);
      current.host.hooks.discard(mm, start, end, true);
      return r;
    }
    if (advice === MADV_POPULATE_READ || advice === MADV_POPULATE_WRITE) {
      // madvise_populate -> faultin_page_range (FOLL_MADV_POPULATE): page by
      // page from start, a hole is -ENOMEM and a VMA without the access
      // (check_vma_flags) is -EINVAL, whichever comes first (not a walk that
      // goes on past holes); each page is faulted in as a read or write would
      // (so a private VMA gets its anon_vma, which decides later merges); a
      // fault beyond a file's end (SIGBUS) is -EFAULT. Found by difftest
      // against Linux 6.18.
      const write = advice === MADV_POPULATE_WRITE;
      const need = write ? VM_WRITE : VM_READ;
      for (let addr = start; addr < end;) {
        const s = find_vma(V, mm, addr);
        const v = s < 0 ? undefined : vma_read(V, mm, s);
        if (!v || v.start > addr) return -ENOMEM;
        if (!(v.flags & need)) return -EINVAL;
        const to = Math.min(end, v.end);
        for (; addr < to; addr += PAGE_SIZE) {
          const r = faultin_page(mm, addr, write);
          if (r & VM_FAULT_OOM) return -ENOMEM;
          if (r & VM_FAULT_SIGSEGV) return -EFAULT;
        }
      }
      return 0;
    }
    if (advice === MADV_REMOVE) {
      return madvise_walk_vmas(mm, start, end, (slot) => {
        const v = vma_read(V, mm, slot);
        if (v.file < 0) return -EINVAL;
        return v.flags & VM_SHARED ? 0 : -EACCES;
      });
    }
    return madvise_walk_vmas(mm, start, end, () => 0);
  } finally {
    up_read(lockOf(mm));
  }
}
