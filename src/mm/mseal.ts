// mm/mseal.c: mseal(2) seals the VMAs of a range (VM_SEALED): mremap, munmap
// and mprotect of them then fail with EPERM. Only mremap checks it so far.

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE, VMA_FLAGS } from '../hw/layout.ts';
import { VM_SEALED } from '../hw/pte.ts';
import { vma_read, vma_lookup, vma_count, split_vma, vma_set_field, find_vma } from './vma.ts';
import { EINVAL, ENOMEM, mmap_write_lock, mmap_write_unlock } from './mmap.ts';

/** mseal(start, len, 0): 0, -EINVAL (flags, alignment), -ENOMEM (a hole in the range). */
export function do_mseal(mm: number, start: number, len: number, flags = 0): number {
  const V = current.V;
  if (flags !== 0 || start % PAGE_SIZE) return -EINVAL;
  len = Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
  if (len === 0) return 0;
  const end = start + len;
  mmap_write_lock(mm);
  try {
    for (let a = start; a < end;) {
      const s = vma_lookup(V, mm, a);
      if (s < 0) return -ENOMEM;
      a = vma_read(V, mm, s).end;
    }
    if (!split_vma(V, mm, vma_lookup(V, mm, start), start)) return -ENOMEM;
    if (!split_vma(V, mm, vma_lookup(V, mm, end - 1), end)) return -ENOMEM;
    for (let s = find_vma(V, mm, start); s >= 0 && s < vma_count(V, mm); s++) {
      const v = vma_read(V, mm, s);
      if (v.start >= end) break;
      vma_set_field(V, mm, s, VMA_FLAGS, v.flags | VM_SEALED);
    }
    return 0;
  } finally {
    mmap_write_unlock(mm);
  }
}
