// mm/mmap.c's brk(2): the program break and its heap VMA. mm->start_brk and
// mm->brk live in the mm's shared words. A growing break extends the VMA just
// below the old break when it can merge (do_brk_flags expands it), else it adds
// an anonymous VMA; a shrinking break unmaps the tail. brk returns the new break
// on success and the old one on failure, so brk(0) asks for the current break.

import { current } from '../hw/cpu.ts';
import { up_read } from '../hw/locks.ts';
import { type Views, mmWord, fIndex, MM_START_BRK_F, MM_BRK_F, PAGE_SIZE, TASK_SIZE, VMA_END } from '../hw/layout.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { type Vma, find_vma, find_vma_intersection, vma_read, vma_count, vma_insert, vma_set_field, can_merge } from './vma.ts';
import {
  PAGE_ALIGN, PROT_READ, PROT_WRITE, MAP_PRIVATE, calc_vm_flags, do_vmi_munmap, mmap_write_lock, mmap_write_unlock, lockOf,
} from './mmap.ts';

export function mm_start_brk(V: Views, mm: number): number {
  return V.F[fIndex(mmWord(V.L, mm, MM_START_BRK_F))];
}
export function mm_brk(V: Views, mm: number): number {
  return V.F[fIndex(mmWord(V.L, mm, MM_BRK_F))];
}
function set_brk(V: Views, mm: number, brk: number): void {
  V.F[fIndex(mmWord(V.L, mm, MM_BRK_F))] = brk;
}

/**
 * What exec's ELF loader does (set_brk, with brk randomisation): the break
 * starts at `start` with no heap VMA yet. A replay calls it with the first
 * brk(NULL) result of a process.
 */
export function brk_init(V: Views, mm: number, start: number): void {
  V.F[fIndex(mmWord(V.L, mm, MM_START_BRK_F))] = start;
  set_brk(V, mm, start);
}

/** dup_mm copies the whole mm_struct: a forked child has its parent's break. */
export function brk_dup(V: Views, oldmm: number, mm: number): void {
  V.F[fIndex(mmWord(V.L, mm, MM_START_BRK_F))] = mm_start_brk(V, oldmm);
  set_brk(V, mm, mm_brk(V, oldmm));
}

/** vma_is_initial_heap: the VMA /proc/PID/maps names [heap]. */
export function vma_is_initial_heap(V: Views, mm: number, v: { start: number; end: number }): boolean {
  const start = mm_start_brk(V, mm);
  return start !== 0 && v.start <= mm_brk(V, mm) && v.end >= start;
}

/**
 * do_brk_flags: map [addr, addr + len) as heap. The VMA ending at addr (the
 * heap so far, found by the caller above start_brk) is expanded if a new VMA
 * could merge into it; otherwise a new anonymous VMA is inserted. The next VMA
 * is never merged (brk keeps a page free above the new break). Returns 0 or -ENOMEM.
 */
function do_brk_flags(mm: number, brkvma: number, addr: number, len: number): number {
  const V = current.V;
  const flags = calc_vm_flags(PROT_READ | PROT_WRITE, MAP_PRIVATE); // VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT
  const nv: Vma = { start: addr, end: addr + len, pgoff: addr / PAGE_SIZE, flags, file: -1, anon: -1 };
  if (brkvma >= 0) {
    const prev = vma_read(V, mm, brkvma);
    if (prev.end === addr && can_merge(prev, nv)) {
      vma_set_field(V, mm, brkvma, VMA_END, addr + len);
      return 0;
    }
  }
  let slot = find_vma(V, mm, addr);
  if (slot < 0) slot = vma_count(V, mm);
  return vma_insert(V, mm, slot, nv) ? 0 : -12;
}

/** brk(2): the new break, or the unchanged one when the request is refused. */
export function sys_brk(mm: number, brk: number): number {
  return syscall(SYS.brk, brk, () => __sys_brk(mm, brk));
}

function __sys_brk(mm: number, brk: number): number {
  const V = current.V;
  mmap_write_lock(mm);
  let locked = true;
  const origbrk = mm_brk(V, mm);
  try {
    const min_brk = mm_start_brk(V, mm);
    if (brk < min_brk || brk > TASK_SIZE) return origbrk;
    const newbrk = PAGE_ALIGN(brk);
    const oldbrk = PAGE_ALIGN(origbrk);
    if (oldbrk === newbrk) {
      set_brk(V, mm, brk);
      return brk;
    }
    if (brk <= origbrk) {
      // shrink: only if a VMA is left in [newbrk, oldbrk) (mm/mmap.c brk:
      // vma_find from newbrk below oldbrk, else "goto out" with the old break;
      // found by difftest: after munmap of the heap, Linux 6.18 refuses)
      if (!find_vma_intersection(V, mm, newbrk, oldbrk)) return origbrk;
      // unmap [newbrk, oldbrk); munmap downgrades the lock
      set_brk(V, mm, brk);
      const r = do_vmi_munmap(mm, newbrk, oldbrk, true);
      if (r < 0) {
        set_brk(V, mm, origbrk);
        return origbrk;
      }
      if (r === 1) {
        up_read(lockOf(mm));
        locked = false;
      }
      return brk;
    }
    // grow: a page must stay free between the new break and the next mapping
    const next = find_vma(V, mm, oldbrk);
    if (next >= 0 && newbrk + PAGE_SIZE > vma_read(V, mm, next).start) return origbrk;
    // the VMA just below oldbrk, if it is above start_brk (vma_prev_limit)
    let brkvma = next >= 0 ? next - 1 : vma_count(V, mm) - 1;
    if (brkvma >= 0 && vma_read(V, mm, brkvma).end <= min_brk) brkvma = -1;
    if (do_brk_flags(mm, brkvma, oldbrk, newbrk - oldbrk) < 0) return origbrk;
    set_brk(V, mm, brk);
    return brk;
  } finally {
    if (locked) mmap_write_unlock(mm);
  }
}
