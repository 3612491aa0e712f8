// fs/userfaultfd.c, the part mremap cares about: UFFDIO_REGISTER marks the
// VMAs of a range as userfaultfd-armed (VM_UFFD_MISSING). Fault delivery to a
// user handler is not modelled; what is, is that an armed VMA may not be one of
// several moved by one mremap (v6.17, "mm/mremap: permit mremap() move of multiple VMAs",
// <8f41e72b0543953d277e96d5e67a52f287cdbac3.1752232673.git.lorenzo.stoakes@oracle.com>).

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE } from '../hw/layout.ts';
import { vma_modify_flags } from './vma.ts';
import { mmap_write_lock, mmap_write_unlock } from './mmap.ts';
import { VM_UFFD_MISSING } from './vm_flags.ts';
import { EINVAL } from './errno.ts';

/** UFFDIO_REGISTER: 0, or -EINVAL if part of the range is unmapped or misaligned. */
export function userfaultfd_register(mm: number, start: number, len: number, mode = VM_UFFD_MISSING): number {
  const V = current.V;
  if (start % PAGE_SIZE || len % PAGE_SIZE || len <= 0) return -EINVAL;
  const end = start + len;
  mmap_write_lock(mm);
  try {
    return vma_modify_flags(V, mm, start, end, mode);
  } finally {
    mmap_write_unlock(mm);
  }
}
