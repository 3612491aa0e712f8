// mm/mmap.c and mm/vma.c's munmap: mmap (anonymous private and shared, fixed
// and not), munmap through an mmu_gather with the mmap_lock downgraded while
// the page tables are torn down, get_unmapped_area (top-down).

import { current } from '../hw/cpu.ts';
import { up_read } from '../hw/locks.ts';
import { PAGE_SIZE, TASK_SIZE, MMAP_MIN_ADDR } from '../hw/layout.ts';
import { lockOf, mmap_write_lock, mmap_write_unlock, mmap_write_downgrade } from './mmap_lock.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { knobs } from '../inject/knobs.ts';
import { type Vma, vma_count, vma_read, find_vma, find_vma_intersection, vma_insert, vma_remove, split_vma, vma_merge_neighbours } from './vma.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { unmap_page_range, free_pgtables } from './memory.ts';
import { shmem_file_setup, file_get, file_put } from './shmem.ts';
import { vma_unlink_file } from './rmap.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE, VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED, VM_NOHUGEPAGE, VM_NORESERVE } from './vm_flags.ts';
import { EACCES, EBADF, EEXIST, EINVAL, ENOMEM } from './errno.ts';

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_GROWSDOWN = 0x0100;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_STACK = 0x20000;
/** struct file f_mode bits a mapping checks */
export const FMODE_READ = 1;
export const FMODE_WRITE = 2;

/** Where top-down mmap starts (below the stack gap), as on x86-64 without ASLR. */
export const MMAP_BASE = 0x7ffff7fff000;

export const PAGE_ALIGN = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
const aligned = (n: number): boolean => n % PAGE_SIZE === 0;

// the mmap_lock lives in src/mm/mmap_lock.ts (with mm_lock_seq and the per-VMA locks); callers import it from here too
export { lockOf, ownerOf, mmap_write_lock, mmap_write_unlock } from './mmap_lock.ts';

export function calc_vm_flags(prot: number, flags: number): number {
  let f = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  if (prot & PROT_READ) f |= VM_READ;
  if (prot & PROT_WRITE) f |= VM_WRITE;
  if (prot & PROT_EXEC) f |= VM_EXEC;
  // calc_vm_flag_bits: MAP_GROWSDOWN, MAP_LOCKED, MAP_STACK (VM_NOHUGEPAGE with THP)
  if (flags & MAP_GROWSDOWN) f |= VM_GROWSDOWN;
  if (flags & MAP_LOCKED) f |= VM_LOCKED;
  if (flags & MAP_STACK) f |= VM_NOHUGEPAGE;
  if (flags & MAP_SHARED) f |= VM_SHARED | VM_MAYSHARE;
  else if (flags & MAP_NORESERVE) f |= VM_NORESERVE; // overcommit heuristic mode: honoured
  // accountable_mapping: private writable memory is charged unless MAP_NORESERVE
  if ((f & (VM_NORESERVE | VM_SHARED | VM_WRITE)) === VM_WRITE) f |= VM_ACCOUNT;
  return f;
}

/** Top-down search for a free range of len bytes below MMAP_BASE (or at hint if free). */
export function get_unmapped_area(mm: number, hint: number, len: number): number {
  const V = current.V;
  if (hint && aligned(hint) && hint >= MMAP_MIN_ADDR && hint + len <= TASK_SIZE) {
    if (!find_vma_intersection(V, mm, hint, hint + len)) return hint;
  }
  const n = vma_count(V, mm);
  let top = MMAP_BASE;
  for (let s = n - 1; s >= -1; s--) {
    // the gap between this VMA's end (or the bottom) and the lowest start seen so far
    const lo = s >= 0 ? vma_read(V, mm, s).end : MMAP_MIN_ADDR;
    if (lo < top && top - lo >= len) return top - len;
    if (s >= 0) top = Math.min(top, vma_read(V, mm, s).start);
  }
  return -ENOMEM;
}

/** mmap: returns the address or -errno. */
export function do_mmap(mm: number, addr: number, len: number, prot: number, flags: number, file = -1, pgoff = 0, fmode = FMODE_READ | FMODE_WRITE): number {
  return syscall(SYS.mmap, addr, () => __do_mmap(mm, addr, len, prot, flags, file, pgoff, fmode));
}


/**
 * file >= 0 with MAP_ANONYMOUS clear maps that file (a shmem/page-cache object
 * made by shmem_file_setup) at page offset pgoff, shared or private; the VMA
 * takes its own reference on the file. `fmode` is the open file's FMODE_READ /
 * FMODE_WRITE: a shared mapping of a file not open for writing gets neither
 * VM_SHARED nor VM_MAYWRITE (and PROT_WRITE is refused), as in the kernel.
 */
function __do_mmap(mm: number, addr: number, len: number, prot: number, flags: number, mapFile: number, mapPgoff: number, fmode: number): number {
  const V = current.V;
  // The order of the checks is do_mmap's (mm/mmap.c, Linux 6.18): the fd
  // (ksys_mmap_pgoff), the length, __get_unmapped_area's range (ENOMEM)
  // then alignment (EINVAL), MAP_FIXED_NOREPLACE's EEXIST, and only then the
  // mapping type and the file's access mode. (difftest found EINVAL given
  // for a bad type where Linux answers EEXIST.)
  if (!(flags & MAP_ANONYMOUS) && mapFile < 0) return -EBADF;
  if (len <= 0) return -EINVAL;
  len = PAGE_ALIGN(len);
  if (len > TASK_SIZE) return -ENOMEM;
  const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
  if (fixed && addr + len > TASK_SIZE) return -ENOMEM;
  if (fixed && (!aligned(addr) || addr < MMAP_MIN_ADDR)) return -EINVAL;
  const typeCheck = (): number => {
    if ((flags & MAP_TYPE) === MAP_SHARED_VALIDATE) flags = (flags & ~MAP_TYPE) | MAP_SHARED;
    if ((flags & (MAP_SHARED | MAP_PRIVATE)) === 0 || (flags & MAP_SHARED && flags & MAP_PRIVATE)) return -EINVAL;
    if (!(flags & MAP_ANONYMOUS)) {
      if (!(fmode & FMODE_READ)) return -EACCES;
      if (flags & MAP_SHARED && prot & PROT_WRITE && !(fmode & FMODE_WRITE)) return -EACCES;
    }
    return 0;
  };
  mmap_write_lock(mm);
  try {
    if (fixed) {
      if (flags & MAP_FIXED_NOREPLACE) {
        if (find_vma_intersection(V, mm, addr, addr + len)) return -EEXIST;
        const t = typeCheck();
        if (t) return t;
      } else {
        const t = typeCheck();
        if (t) return t;
        const r = do_vmi_munmap(mm, addr, addr + len, false);
        if (r < 0) return r;
      }
    } else {
      addr = get_unmapped_area(mm, addr, len);
      if (addr < 0) return addr;
      const t = typeCheck();
      if (t) return t;
    }
    let vmFlags = calc_vm_flags(prot, flags);
    if (!(flags & MAP_ANONYMOUS) && flags & MAP_SHARED && !(fmode & FMODE_WRITE)) vmFlags &= ~(VM_MAYWRITE | VM_SHARED);
    let file = -1;
    let pgoff = addr / PAGE_SIZE;
    if (!(flags & MAP_ANONYMOUS)) {
      file = mapFile;
      pgoff = mapPgoff;
      file_get(file);
    } else if (flags & MAP_SHARED) {
      file = shmem_file_setup(len / PAGE_SIZE);
      if (file < 0) return -ENOMEM;
      pgoff = 0;
    }
    const vma: Vma = { start: addr, end: addr + len, pgoff, flags: vmFlags, file, anon: -1 };
    let slot = find_vma(V, mm, addr);
    if (slot < 0) slot = vma_count(V, mm);
    if (!vma_insert(V, mm, slot, vma)) {
      if (file >= 0) file_put(file);
      return -ENOMEM;
    }
    // file VMAs merge too: same file, contiguous pgoff (each MAP_SHARED|MAP_ANONYMOUS has a file of its own)
    vma_merge_neighbours(V, mm, slot);
    return addr;
  } finally {
    mmap_write_unlock(mm);
  }
}

/**
 * Unmap [start, end) with the mmap_lock held for write. With `downgrade` the
 * lock is downgraded to read before the page tables are torn down (munmap(2)
 * does this); returns 1 in that case so the caller releases a read lock.
 */
export function do_vmi_munmap(mm: number, start: number, end: number, downgrade: boolean): number {
  const cpu = current;
  const V = cpu.V;
  let s = find_vma(V, mm, start);
  if (s < 0 || vma_read(V, mm, s).start >= end) return 0;
  const first = vma_read(V, mm, s);
  // splitting in the middle adds a VMA
  if (first.start < start && first.end > end && vma_count(V, mm) >= V.L.shape.maxVmas) return -ENOMEM;
  if (first.start < start) {
    if (!split_vma(V, mm, s, start)) return -ENOMEM;
    s++;
  }
  let e = s;
  while (e < vma_count(V, mm) && vma_read(V, mm, e).start < end) e++;
  const lastSlot = e - 1;
  if (vma_read(V, mm, lastSlot).end > end) {
    if (!split_vma(V, mm, lastSlot, end)) return -ENOMEM;
  }
  const detached: Vma[] = [];
  for (let i = s; i < e; i++) detached.push(vma_read(V, mm, i));
  const floor = s > 0 ? vma_read(V, mm, s - 1).end : 0;
  const ceiling = e < vma_count(V, mm) ? vma_read(V, mm, e).start : TASK_SIZE + PAGE_SIZE;
  cpu.host.hooks.discard(mm, start, end, false);
  vma_remove(V, mm, s, e, false); // detached: no fault can find them now
  if (downgrade) mmap_write_downgrade(mm); // vma_end_write_all: the remaining VMAs are unlocked too
  unmap_region(mm, detached, floor, ceiling);
  for (const v of detached) if (v.file >= 0) file_put(v.file);
  cpu.host.hooks.discard(mm, start, end, true);
  return downgrade ? 1 : 0;
}

/** unmap_region: zap the detached VMAs and free their page tables, through one gather. */
export function unmap_region(mm: number, vmas: Vma[], floor: number, ceiling: number): void {
  const tlb = new mmu_gather();
  tlb_gather_mmu(tlb, mm);
  for (const v of vmas) unmap_page_range(tlb, mm, v.start, v.end);
  // unlink_file_vma before the tables go: an rmap walker (truncation, reclaim)
  // still holding i_mmap for read may be walking them until then
  for (const v of vmas) vma_unlink_file(mm, v);
  free_pgtables(tlb, mm, vmas[0].start, vmas[vmas.length - 1].end, floor, ceiling);
  tlb_finish_mmu(tlb);
}

/** munmap(2): 0 or -errno. */
export function do_munmap(mm: number, start: number, len: number): number {
  return syscall(SYS.munmap, start, () => __do_munmap(mm, start, len));
}

function __do_munmap(mm: number, start: number, len: number): number {
  if (!aligned(start) || start > TASK_SIZE || len <= 0) return -EINVAL;
  len = PAGE_ALIGN(len);
  if (start + len > TASK_SIZE) return -EINVAL;
  mmap_write_lock(mm);
  const r = do_vmi_munmap(mm, start, start + len, true);
  if (knobs['munmap.leak_mmap_lock']) return r < 0 ? r : 0; // BUG (injected): the lock stays held
  if (r === 1) up_read(lockOf(mm));
  else mmap_write_unlock(mm);
  return r < 0 ? r : 0;
}
