// mm/mseal.c: mseal(2) seals the VMAs of a range (VM_SEALED): mremap, munmap
// and mprotect of them then fail with EPERM. Only mremap checks it so far.

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE } from '../hw/layout.ts';
import { vma_modify_flags } from './vma.ts';
import { mmap_write_lock, mmap_write_unlock } from './mmap.ts';
import { VM_SEALED } from './vm_flags.ts';
import { EINVAL, ENOMEM } from './errno.ts';

/** mseal(start, len, 0): 0, -EINVAL (flags, alignment), -ENOMEM (a hole in the range). */
export function do_mseal(mm: number, start: number, len: number, flags = 0): number {
  const V = current.V;
  if (flags !== 0 || start % PAGE_SIZE) return -EINVAL;
  len = Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
  if (len === 0) return 0;
  const end = start + len;
  mmap_write_lock(mm);
  try {
    const r = vma_modify_flags(V, mm, start, end, VM_SEALED);
    return r === -EINVAL ? -ENOMEM : r; // mseal says ENOMEM for a hole
  } finally {
    mmap_write_unlock(mm);
  }
}
