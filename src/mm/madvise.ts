// mm/madvise.c (first part): MADV_DONTNEED zaps the PTEs of a range under the
// mmap_lock held for read, through an mmu_gather (unhook -> flush -> free); the
// VMAs stay, and the next touch faults in zero-filled memory.

import { current } from '../hw/cpu.ts';
import { down_read, up_read } from '../hw/locks.ts';
import { PAGE_SIZE, TASK_SIZE } from '../hw/layout.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { find_vma, vma_read, vma_count } from './vma.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { unmap_page_range } from './memory.ts';
import { EINVAL, ENOMEM, PAGE_ALIGN, lockOf } from './mmap.ts';

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
