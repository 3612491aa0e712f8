// The generic lazy MMU mode API (include/linux/pgtable.h after Kevin Brodsky's
// nesting series, v6 <20251215150323.2218608-1-kevin.brodsky@arm.com>): per-task
// enable and pause counts; only the
// outermost enable enters the arch mode; a nested disable flushes; the outermost
// disable leaves; everything is a no-op in interrupt context; while paused,
// enable/disable only keep balance and do nothing.
//
// And the seed's proposal, lazy_mmu_mode_enable_fast_pte_range(mm, addr, end,
// ptep) (<896b3d93-8e60-42e2-b8bb-d3d4e8c99927-agordeev@linux.ibm.com>;
// docs/kernel-rules.md#lazy-mmu-range), under either reading discussed on the list:
//  - hint (Gordeev, 13 Apr 2026): updates inside the range may be batched, those
//    outside behave as under plain enable; a range passed to a nested enable is
//    ignored;
//  - strict (Hildenbrand's first wording, Brodsky): no PTE outside the range may
//    be updated inside the section: the checker reports every such update.
// Both readings require the range to lie in one PTE table belonging to mm.

import { current } from '../hw/cpu.ts';
import { taskWord, T_LAZY_ENABLE, T_LAZY_PAUSE } from '../hw/layout.ts';
import { arch } from './pgtable.ts';
import { EV } from '../hw/trace.ts';
import type { Cpu } from '../hw/cpu.ts';
import { frameWord, FM_OWNER, PAGE_SIZE, PAGE_SHIFT, PMD_SIZE, PTRS_PER_TABLE, ST_LAZY_SECTIONS } from '../hw/layout.ts';
import { pgtIndex } from '../hw/walker.ts';

export const LAZY_MMU_MAX = 255;

export type LazyContract = 'strict' | 'hint';
export let lazy_contract: LazyContract = 'hint';
export function set_lazy_contract(c: LazyContract): void {
  lazy_contract = c;
}

/** The range in force on a CPU: set by the outermost fast-range enable, cleared when the mode is left. */
export interface LazyRange {
  mm: number;
  start: number;
  end: number;
  ptep: number; // entry of start
  nptes: number;
}

function enter(): void {
  // issue #11: preemptible between the enable_count update and the arch hook when the caller
  // is (no PTL under PREEMPT_RT, kernel tables): the Xen PV window of 291b3abed657
  current.sched_point();
  current.ring.log(EV.LAZY_ENTER, current.curTask, 0);
  current.stat(ST_LAZY_SECTIONS);
  arch.arch_enter_lazy_mmu_mode();
}
function leave(): void {
  arch.arch_leave_lazy_mmu_mode();
  current.lazyRange = null;
  current.ring.log(EV.LAZY_LEAVE, current.curTask, 0);
}

function counts(): { en: number; pa: number } | null {
  const cpu = current;
  if (cpu.in_interrupt() || cpu.curTask < 0) return null;
  return { en: taskWord(cpu.V.L, cpu.curTask, T_LAZY_ENABLE), pa: taskWord(cpu.V.L, cpu.curTask, T_LAZY_PAUSE) };
}

function warn(msg: string): void {
  const cpu = current;
  cpu.host.hooks.violation({ kind: 'lazy-mmu-contract', cpu: cpu.id, message: `cpu ${cpu.id} task ${cpu.curTask}: ${msg}` });
}

export function lazy_mmu_mode_enable(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  if (I[c.pa] > 0) return;
  const en = I[c.en];
  if (en >= LAZY_MMU_MAX) warn('lazy_mmu_mode_enable: enable_count overflow');
  I[c.en] = en + 1;
  if (en === 0) enter();
}

/**
 * The seed's range-aware enable: enters a section whose updates inside
 * [addr, end) of mm may be batched. The range must lie in one PTE table of mm
 * and ptep must be the entry of addr (checked: a violation is reported). When
 * the mode is already enabled the range is ignored (a nested plain enable).
 */
export function lazy_mmu_mode_enable_fast_pte_range(mm: number, addr: number, end: number, ptep: number): void {
  const c = counts();
  if (!c) return;
  const cpu = current;
  const I = cpu.I;
  if (I[c.pa] > 0) return;
  check_range(mm, addr, end, ptep);
  const en = I[c.en];
  if (en >= LAZY_MMU_MAX) warn('lazy_mmu_mode_enable_fast_pte_range: enable_count overflow');
  I[c.en] = en + 1;
  if (en === 0) {
    cpu.sched_point(); // issue #11: preemptible here, as in enter()
    cpu.lazyRange = { mm, start: addr, end, ptep, nptes: (end - addr) / PAGE_SIZE };
    cpu.ring.log(EV.LAZY_ENTER, cpu.curTask, 1);
    cpu.ring.log(EV.LAZY_RANGE, addr, end);
    cpu.stat(ST_LAZY_SECTIONS);
    arch.arch_enter_lazy_mmu_mode_fast_pte_range(mm, addr, end, ptep);
  } else {
    cpu.ring.log(EV.LAZY_RANGE_IGNORED, addr, end);
  }
}

function check_range(mm: number, addr: number, end: number, ptep: number): void {
  const L = current.V.L;
  const problems: string[] = [];
  if (end <= addr || addr % PAGE_SIZE !== 0 || end % PAGE_SIZE !== 0) problems.push(`bad range 0x${addr.toString(16)}-0x${end.toString(16)}`);
  else if (Math.floor(addr / PMD_SIZE) !== Math.floor((end - 1) / PMD_SIZE)) {
    problems.push(`range 0x${addr.toString(16)}-0x${end.toString(16)} crosses a page-table (PMD) boundary`);
  }
  const table = Math.floor((ptep - L.tableMem) / PTRS_PER_TABLE);
  if (table <= 0 || table >= L.shape.tableFrames || Atomics.load(current.I, frameWord(L, table, FM_OWNER)) !== mm + 1) {
    problems.push(`ptep is not in a page table of mm ${mm}`);
  } else if ((ptep - L.tableMem) % PTRS_PER_TABLE !== pgtIndex(addr, PAGE_SHIFT)) {
    problems.push(`ptep is not the entry of 0x${addr.toString(16)}`);
  }
  for (const p of problems) warn(`lazy_mmu_mode_enable_fast_pte_range: ${p}`);
}

/** Strict contract: an update outside the range in force is a violation (hint: allowed, takes the normal path). */
export function check_update_in_range(cpu: Cpu, ptep: number): void {
  const r = cpu.lazyRange;
  if (r === null || lazy_contract !== 'strict') return;
  if (ptep >= r.ptep && ptep < r.ptep + r.nptes) return;
  const L = cpu.V.L;
  const owner = Atomics.load(cpu.I, frameWord(L, Math.floor((ptep - L.tableMem) / PTRS_PER_TABLE), FM_OWNER)) - 1;
  cpu.host.hooks.violation({
    kind: 'lazy-mmu-contract', cpu: cpu.id,
    message: `cpu ${cpu.id} task ${cpu.curTask}: PTE update outside the range 0x${r.start.toString(16)}-0x${r.end.toString(16)} of mm ${r.mm} ` +
      `inside a fast_pte_range section (strict contract): the entry is in ${owner === r.mm ? 'another table of the same mm' : `a table of mm ${owner}`}`,
  });
}

/** The range in force on this CPU, or null (none, or a plain section). */
export function lazy_mmu_range(): LazyRange | null {
  return current.lazyRange;
}

export function lazy_mmu_mode_disable(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  if (I[c.pa] > 0) return;
  const en = I[c.en];
  if (en === 0) {
    warn('lazy_mmu_mode_disable without a matching enable');
    return;
  }
  I[c.en] = en - 1;
  if (en - 1 === 0) leave();
  else arch.arch_flush_lazy_mmu_mode();
}

export function lazy_mmu_mode_pause(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  const pa = I[c.pa];
  if (pa >= LAZY_MMU_MAX) warn('lazy_mmu_mode_pause: pause_count overflow');
  I[c.pa] = pa + 1;
  if (pa === 0 && I[c.en] > 0) leave(); // the range is lost: resume enters without it (docs/kernel-rules.md#lazy-mmu-range)
}

export function lazy_mmu_mode_resume(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  const pa = I[c.pa];
  if (pa === 0) {
    warn('lazy_mmu_mode_resume without a matching pause');
    return;
  }
  I[c.pa] = pa - 1;
  if (pa - 1 === 0 && I[c.en] > 0) enter();
}

export function is_lazy_mmu_mode_active(): boolean {
  const c = counts();
  if (!c) return false;
  return current.I[c.en] > 0 && current.I[c.pa] === 0;
}
