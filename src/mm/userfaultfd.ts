// fs/userfaultfd.c, the part mremap cares about: UFFDIO_REGISTER marks the
// VMAs of a range as userfaultfd-armed (VM_UFFD_MISSING). Fault delivery to a
// user handler is not modelled; what is, is that an armed VMA may not be one of
// several moved by one mremap (spec 3.17).

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE, VMA_FLAGS } from '../hw/layout.ts';
import { VM_UFFD_MISSING } from '../hw/pte.ts';
import { find_vma, vma_read, vma_lookup, vma_count, split_vma, vma_set_field } from './vma.ts';
import { EINVAL, ENOMEM, mmap_write_lock, mmap_write_unlock } from './mmap.ts';

/** UFFDIO_REGISTER: 0, or -EINVAL if part of the range is unmapped or misaligned. */
export function userfaultfd_register(mm: number, start: number, len: number, mode = VM_UFFD_MISSING): number {
  const V = current.V;
  if (start % PAGE_SIZE || len % PAGE_SIZE || len <= 0) return -EINVAL;
  const end = start + len;
  mmap_write_lock(mm);
  try {
    // the whole range must be mapped
    for (let a = start; a < end;) {
      const s = vma_lookup(V, mm, a);
      if (s < 0) return -EINVAL;
      a = vma_read(V, mm, s).end;
    }
    if (!split_vma(V, mm, vma_lookup(V, mm, start), start)) return -ENOMEM;
    const last = vma_lookup(V, mm, end - 1);
    if (!split_vma(V, mm, last, end)) return -ENOMEM;
    for (let s = find_vma(V, mm, start); s >= 0 && s < vma_count(V, mm); s++) {
      const v = vma_read(V, mm, s);
      if (v.start >= end) break;
      vma_set_field(V, mm, s, VMA_FLAGS, v.flags | mode);
      if (v.end >= end) break;
    }
    return 0;
  } finally {
    mmap_write_unlock(mm);
  }
}
