// mm/vma_exec.c: relocate_vma_down, exec's move of the temporary argument and
// environment stack down by `shift` once the final stack top is known
// (formerly shift_arg_pages in fs/exec.c). The one caller of
// move_page_tables with for_stack: source and destination lie inside one
// VMA expanded to cover both, may overlap, and realignment may align down
// inside the VMA (mm/mremap.c can_align_down).

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE, TASK_SIZE, VMA_START, VMA_END, VMA_PGOFF } from '../hw/layout.ts';
import { vma_read, vma_lookup, vma_set_field, vma_count } from './vma.ts';
import { PAGETABLE_MOVE, move_page_tables } from './mremap.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { free_pgtables } from './memory.ts';
import { EFAULT, ENOMEM } from './errno.ts';

/**
 * relocate_vma_down: move the VMA starting at `start` down by shift bytes,
 * page tables and all. Called with the mmap_lock held for write. 0 or -errno.
 */
export function relocate_vma_down(mm: number, start: number, shift: number): number {
  const V = current.V;
  const slot = vma_lookup(V, mm, start);
  if (slot < 0 || shift % PAGE_SIZE !== 0 || shift <= 0) return -EFAULT;
  const vma = vma_read(V, mm, slot);
  const old_start = vma.start;
  const old_end = vma.end;
  const length = old_end - old_start;
  const new_start = old_start - shift;
  const new_end = old_end - shift;
  if (new_start < 0) return -EFAULT;
  // nothing may lie between where we go and where we are
  if (slot > 0 && vma_read(V, mm, slot - 1).end > new_start) return -EFAULT;
  // cover [new_start, old_end) for the move
  vma_set_field(V, mm, slot, VMA_START, new_start);
  const expanded = vma_read(V, mm, slot);
  const pmc = PAGETABLE_MOVE(mm, expanded, expanded, old_start, new_start, length);
  pmc.for_stack = true;
  if (move_page_tables(pmc) !== length) return -ENOMEM;
  // free the tables of what is no longer needed: from new_end if the ranges
  // overlap, else the whole old range (not the space between them)
  const next = slot + 1 < vma_count(V, mm) ? vma_read(V, mm, slot + 1).start : TASK_SIZE + PAGE_SIZE;
  const tlb = new mmu_gather();
  tlb_gather_mmu(tlb, mm);
  const from = new_end > old_start ? new_end : old_start;
  free_pgtables(tlb, mm, from, old_end, from, next);
  tlb_finish_mmu(tlb);
  // shrink to the new range; the page offset stays (the pages keep their index)
  vma_set_field(V, mm, slot, VMA_END, new_end);
  vma_set_field(V, mm, slot, VMA_PGOFF, vma.pgoff);
  return 0;
}
