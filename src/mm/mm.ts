// mm_struct life cycle (kernel/fork.c's mm_alloc, mm/mmap.c's exit_mmap) and tasks.

import { current } from '../hw/cpu.ts';
import {
  type Views, mmWord, taskWord, MM_IN_USE, MM_USERS, MM_PGD, MM_ASID, MM_CTX_ID, MM_NVMAS, MM_TLB_GEN, MM_CPUMASK,
  MM_RSS, MM_PT_PAGES, MM_FLUSH_PENDING, MM_LOCK, MM_LOCK_WAITERS, MM_LOCK_WWAIT, MM_LOCK_OWNER, MM_WORDS, CPUMASK_WORDS,
  H_NEXT_MM, H_NEXT_TASK, H_NEXT_CTX, T_IN_USE, T_MM, T_CPU, T_LAZY_ENABLE, T_LAZY_PAUSE, T_PROC, TASK_SIZE, PAGE_SIZE,
  UNMAP_LOG_ENTRIES, UNMAP_LOG_F64, unmapLogF,
} from '../hw/layout.ts';
import { alloc_pt_page, free_pt_page } from './page_alloc.ts';
import { vma_count, vma_list, vma_remove } from './vma.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { unmap_page_range, free_pgtables } from './memory.ts';
import { mmap_write_lock, mmap_write_unlock } from './mmap.ts';
import { vma_unlink_file } from './rmap.ts';

/** A new, empty address space with its PGD. Returns the mm id or -1. */
export function mm_alloc(): number {
  const cpu = current;
  const { I, L } = cpu.V;
  for (let tries = 0; tries < L.shape.maxMms; tries++) {
    const mm = Atomics.add(I, L.header + H_NEXT_MM, 1) % L.shape.maxMms;
    if (Atomics.compareExchange(I, mmWord(L, mm, MM_IN_USE), 0, 1) !== 0) continue;
    for (let w = 1; w < MM_WORDS; w++) if (w !== MM_TLB_GEN) Atomics.store(I, mmWord(L, mm, w), 0);
    // the content oracle's discard log of a previous mm in this slot (its exit zapped everything) is not ours
    cpu.V.F.fill(0, unmapLogF(L, mm, 0, 0), unmapLogF(L, mm, 0, 0) + UNMAP_LOG_ENTRIES * UNMAP_LOG_F64);
    const pgd = alloc_pt_page(mm, 4);
    if (pgd === 0) {
      Atomics.store(I, mmWord(L, mm, MM_IN_USE), 0);
      return -1;
    }
    Atomics.store(I, mmWord(L, mm, MM_PGD), pgd);
    Atomics.store(I, mmWord(L, mm, MM_USERS), 0); // each task takes a reference
    Atomics.store(I, mmWord(L, mm, MM_ASID), mm);
    Atomics.store(I, mmWord(L, mm, MM_CTX_ID), Atomics.add(I, L.header + H_NEXT_CTX, 1) + 1);
    return mm;
  }
  return -1;
}

/** Tear down a whole address space: unmap everything through one full-mm gather, then free the PGD. */
export function exit_mmap(mm: number): void {
  const cpu = current;
  const V = cpu.V;
  const { I, L } = V;
  mmap_write_lock(mm);
  const vmas = vma_list(V, mm);
  const tlb = new mmu_gather();
  tlb_gather_mmu(tlb, mm, true);
  if (vmas.length > 0) {
    cpu.host.hooks.discard(mm, 0, TASK_SIZE, false);
    for (const v of vmas) unmap_page_range(tlb, mm, v.start, v.end);
  }
  for (const v of vmas) vma_unlink_file(mm, v); // before the tables go (unlink_file_vma in free_pgtables)
  free_pgtables(tlb, mm, 0, TASK_SIZE + PAGE_SIZE, 0, TASK_SIZE + PAGE_SIZE);
  tlb_finish_mmu(tlb); // flushes every CPU in mm_cpumask, lazy ones included
  vma_remove(V, mm, 0, vma_count(V, mm));
  mmap_write_unlock(mm);
  free_pt_page(I[mmWord(L, mm, MM_PGD)]);
  Atomics.store(I, mmWord(L, mm, MM_PGD), 0);
  for (let w = 0; w < CPUMASK_WORDS; w++) Atomics.store(I, mmWord(L, mm, MM_CPUMASK + w), 0);
  Atomics.store(I, mmWord(L, mm, MM_IN_USE), 0);
}

export function mm_stats(V: Views, mm: number): { rss: number; ptPages: number; vmas: number; tlbGen: number; flushPending: number } {
  const { I, L } = V;
  return {
    rss: I[mmWord(L, mm, MM_RSS)],
    ptPages: I[mmWord(L, mm, MM_PT_PAGES)],
    vmas: I[mmWord(L, mm, MM_NVMAS)],
    tlbGen: I[mmWord(L, mm, MM_TLB_GEN)],
    flushPending: I[mmWord(L, mm, MM_FLUSH_PENDING)],
  };
}

export function mm_in_use(V: Views, mm: number): boolean {
  return Atomics.load(V.I, mmWord(V.L, mm, MM_IN_USE)) !== 0;
}

/**
 * The mmap_lock's state for a hang report. The writer is a task (ownerTask, -1 outside one) and
 * the CPU it is on now (ownerCpu): the task's T_CPU word, which follows it across migrations.
 */
export function mmap_lock_state(V: Views, mm: number): { value: number; waiters: number; writersWaiting: number; ownerTask: number; ownerCpu: number } {
  const { I, L } = V;
  const w = I[mmWord(L, mm, MM_LOCK_OWNER)];
  const ownerTask = w > 0 ? w - 1 : -1;
  return {
    value: I[mmWord(L, mm, MM_LOCK)], waiters: I[mmWord(L, mm, MM_LOCK_WAITERS)],
    writersWaiting: I[mmWord(L, mm, MM_LOCK_WWAIT)], ownerTask,
    ownerCpu: ownerTask >= 0 ? I[taskWord(L, ownerTask, T_CPU)] : w < 0 ? -w - 1 : -1,
  };
}

/** A task (thread) of mm, pinned to cpu. Slots of exited tasks (task_free) are reused. */
export function task_create(V: Views, mm: number, cpu: number, proc: number): number {
  const { I, L } = V;
  let t = -1;
  for (let tries = 0; tries < L.shape.maxTasks; tries++) {
    const c = Atomics.add(I, L.header + H_NEXT_TASK, 1) % L.shape.maxTasks;
    if (Atomics.compareExchange(I, taskWord(L, c, T_IN_USE), 0, 1) === 0) {
      t = c;
      break;
    }
  }
  if (t < 0) throw new Error(`too many tasks (max ${L.shape.maxTasks})`);
  I[taskWord(L, t, T_MM)] = mm;
  I[taskWord(L, t, T_CPU)] = cpu;
  I[taskWord(L, t, T_LAZY_ENABLE)] = 0;
  I[taskWord(L, t, T_LAZY_PAUSE)] = 0;
  I[taskWord(L, t, T_PROC)] = proc;
  if (mm >= 0) Atomics.add(I, mmWord(L, mm, MM_USERS), 1);
  return t;
}

/** An exited task's slot, once no CPU runs it any more. */
export function task_free(V: Views, t: number): void {
  Atomics.store(V.I, taskWord(V.L, t, T_IN_USE), 0);
}

export function task_mm(V: Views, t: number): number {
  return V.I[taskWord(V.L, t, T_MM)];
}
