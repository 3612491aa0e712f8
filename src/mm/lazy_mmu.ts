// The generic lazy MMU mode API (include/linux/pgtable.h after Kevin Brodsky's
// nesting series, merged for 7.0, <20251215150323.2218608-1-kevin.brodsky@arm.com>): per-task enable and pause
// counts; only the outermost enable enters the arch mode; a nested disable
// flushes; the outermost disable leaves; everything is a no-op in interrupt
// context; while paused, enable/disable only keep balance and do nothing.
//
// And Alexander Gordeev's range-aware enable, in every version posted
// (docs/lazy-mmu-series.md has the versions, message-ids and what each changes),
// chosen per run with --lazy-series (set_lazy_series):
//  - v1  RFC, 25 Mar 2026 <cover.1774420056.git.agordeev@linux.ibm.com>:
//        lazy_mmu_mode_enable_pte(mm, addr, end, ptep); s390 arch/s390/mm/ipte_batch.c
//  - seed: the name proposed on the list on 13 Apr 2026 (the thread in
//        /work/shared/seeds), lazy_mmu_mode_enable_fast_pte_range(); never posted
//        as a version; kept as mmsim modelled it before the series was read
//  - v2  15 Apr 2026 <cover.1776264097.git.agordeev@linux.ibm.com>:
//        lazy_mmu_mode_enable_for_pte_range(), "speedup hint" semantics
//  - v3  16 Jun 2026 <cover.1781611976...>, v4 18 Jun <cover.1781789772...>,
//    v5  13 Jul <cover.1783945507...>, v6 15 Jul 2026 <cover.1784121418...>:
//        lazy_mmu_mode_enable_with_ptes(); s390 arch/s390/mm/lazy_mmu.c with a
//        lowcore lazy_mmu_count; KASAN direct-PTE-access sanitizer; PTE_POISON
//  - none: mainline without the series: the call sites call lazy_mmu_mode_enable().
// Every posted version has the same generic semantics (v6 kernel-doc):
// "Enters a new lazy MMU mode section; if the mode was not already enabled,
// enables it and calls arch_enter_lazy_mmu_mode_with_ptes()" -- a range passed
// to a nested enable is ignored; "PTEs that fall within the specified range
// might observe update speedups. The PTEs must belong to the specified address
// space and be in the same PMD. There are no requirements on the order or range
// completeness of PTE updates." Two readings of the range are offered
// (--lazy-contract):
//  - hint (Gordeev, 13 Apr 2026; the posted kernel-doc): updates inside the range
//    may be batched, those outside behave as under plain enable;
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
import { knobs } from '../inject/knobs.ts';

export const LAZY_MMU_MAX = 255;

export type LazyContract = 'strict' | 'hint';
export let lazy_contract: LazyContract = 'hint';
export function set_lazy_contract(c: LazyContract): void {
  lazy_contract = c;
}

// ---- the series versions ------------------------------------------------------------

export type LazySeries = 'none' | 'v1' | 'seed' | 'v2' | 'v3' | 'v4' | 'v5' | 'v6' | 'v6-fixed';
/** the newest version whose text could be read (v7 and v8 were posted, see docs/lazy-mmu-series.md) */
export const LAZY_SERIES_LATEST: LazySeries = 'v6';

export interface LazySeriesInfo {
  /** posting date, or '' */
  date: string;
  /** message-id of the cover letter (lore.kernel.org/r/<id>), or '' */
  cover: string;
  /** the generic entry point the call sites use */
  api: string;
  /** the s390 backend file */
  s390: string;
  /** what changed against the previous version, in one line */
  changes: string;
}

/** The call sites every posted version converts (identical diffstat in v1 and v6: 7 files). */
export const SERIES_CALL_SITES = [
  'mm/memory.c zap_pte_range', 'mm/memory.c copy_pte_range', 'mm/memory.c remap_pte_range', 'mm/memory.c apply_to_pte_range',
  'mm/mprotect.c change_pte_range', 'mm/mremap.c move_ptes',
  'mm/madvise.c madvise_cold_or_pageout_pte_range (x2)', 'mm/madvise.c madvise_free_pte_range (x2)',
  'fs/proc/task_mmu.c pagemap_scan_pmd_entry', 'mm/vmalloc.c vmap_pte_range, vunmap_pte_range, vmap_pages_pte_range (init_mm)',
] as const;
/** The call sites mmsim has (the others are not modelled: no MADV_COLD/PAGEOUT/FREE, pagemap_scan, remap_pfn_range, apply_to_page_range, vmalloc). */
export const MMSIM_CALL_SITES = [
  'zap_pte_range (src/mm/memory.ts)', 'copy_pte_range (src/mm/fork.ts)', 'change_pte_range (src/mm/mprotect.ts)', 'move_ptes (src/mm/mremap.ts)',
] as const;

export const LAZY_SERIES: Record<LazySeries, LazySeriesInfo> = {
  none: {
    date: '', cover: '', api: 'lazy_mmu_mode_enable()', s390: '(none: s390 has no lazy MMU backend in mainline)',
    changes: 'mainline 7.0 without the series: every s390 PTE change is its own IPTE (or a lazy exchange purged by IDTE)',
  },
  v1: {
    date: '2026-03-25', cover: 'cover.1774420056.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_pte()', s390: 'arch/s390/mm/ipte_batch.c',
    changes: 'RFC: per-CPU ipte_batch caches set_pte/ptep_get/get_and_clear(_full)/modify_prot/set_wrprotect/test_and_clear_young of the range while is_lazy_mmu_mode_active(); leave does one IPTE-range per run of valid entries; CONFIG_IPTE_BATCH; PTE_POISON 0',
  },
  seed: {
    date: '2026-04-13', cover: '', api: 'lazy_mmu_mode_enable_fast_pte_range()', s390: '(the model mmsim had of the proposal)',
    changes: 'a name proposed in the v1 thread (never posted); mmsim\'s earlier model: as v1, but ptep_set_access_flags is cached too and ptep_clear_flush re-poisons its slot',
  },
  v2: {
    date: '2026-04-15', cover: 'cover.1776264097.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_for_pte_range()', s390: 'arch/s390/mm/ipte_batch.c',
    changes: 'renamed; semantics clarified as a speedup hint (PTEs outside the range are updated as under plain enable); sashiko findings fixed; prerequisite patches 2-4 added',
  },
  v3: {
    date: '2026-06-16', cover: 'cover.1781611976.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_with_ptes()', s390: 'arch/s390/mm/lazy_mmu.c',
    changes: 'renamed (Hildenbrand); KASAN direct-PTE-access sanitizer; CONFIG_IPTE_BATCH dropped; PTE_POISON 0x800 (_PAGE_LARGE); per-CPU caches allocated at CPU hot-plug; lowcore lazy_mmu_count checked before any cache look-up (intercepts by CPU, not by task)',
  },
  v4: {
    date: '2026-06-18', cover: 'cover.1781789772.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_with_ptes()', s390: 'arch/s390/mm/lazy_mmu.c',
    changes: 'prerequisites landed in -next and dropped from the series; no functional change',
  },
  v5: {
    date: '2026-07-13', cover: 'cover.1783945507.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_with_ptes()', s390: 'arch/s390/mm/lazy_mmu.c',
    changes: 'sashiko\'s exit_mmap IPTE-storm finding judged harmless; "direct-pte-access" KASAN bug type; zap_pte_range still batches its clears',
  },
  v6: {
    date: '2026-07-15', cover: 'cover.1784121418.git.agordeev@linux.ibm.com', api: 'lazy_mmu_mode_enable_with_ptes()', s390: 'arch/s390/mm/lazy_mmu.c',
    changes: 'not applied to secure (protected-virtualization) guests; kasan helpers exported; no change to what is batched or when it is flushed',
  },
  'v6-fixed': {
    date: '', cover: '', api: 'lazy_mmu_mode_enable_with_ptes()', s390: 'arch/s390/mm/lazy_mmu.c + the fix in docs/findings/s390-lazy-zap-uaf.md',
    changes: 'not posted: v6 with mmsim\'s suggested fix for the zap use-after-free (docs/findings/s390-lazy-zap-uaf.md): while the ipte_range holds cached entries, s390\'s __tlb_remove_page hands the page to the range, which frees it after its IPTE-range at leave/flush',
  },
};

export let lazy_series: LazySeries = LAZY_SERIES_LATEST;
export function set_lazy_series(v: LazySeries): void {
  lazy_series = v;
}
/** A --lazy-series argument: a version name or 'latest'; null if unknown. */
export function resolve_lazy_series(name: string): LazySeries | null {
  if (name === 'latest') return LAZY_SERIES_LATEST;
  return Object.hasOwn(LAZY_SERIES, name) ? (name as LazySeries) : null;
}
/** v3 and later: arch/s390/mm/lazy_mmu.c (lowcore count, KASAN sanitizer) */
export function series_has_lazy_mmu_c(v: LazySeries = lazy_series): boolean {
  return v === 'v3' || v === 'v4' || v === 'v5' || v === 'v6' || v === 'v6-fixed';
}
/**
 * The suggested fix of docs/findings/s390-lazy-zap-uaf.md ('v6-fixed'): s390's
 * __tlb_remove_page defers the free of a page to the lazy MMU batch while the
 * batch holds cached entries (src/arch/s390/lazy_mmu.ts lazy_mmu_tlb_remove_page,
 * the one place this is consulted).
 */
export function series_zap_free_fixed(v: LazySeries = lazy_series): boolean {
  return v === 'v6-fixed';
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
 * The range-aware enable of every version (the seed's fast_pte_range, v1's
 * enable_pte, v2's for_pte_range, v3+'s with_ptes): enters a section whose
 * updates inside [addr, end) of mm may be batched. The range must lie in one PTE
 * table of mm and ptep must be the entry of addr (checked: a violation is
 * reported). When the mode is already enabled the range is ignored (a nested
 * plain enable).
 */
function enable_range(api: string, mm: number, addr: number, end: number, ptep: number): void {
  const c = counts();
  if (!c) return;
  const cpu = current;
  const I = cpu.I;
  if (I[c.pa] > 0) return;
  check_range(api, mm, addr, end, ptep);
  const en = I[c.en];
  if (en >= LAZY_MMU_MAX) warn(`${api}: enable_count overflow`);
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

/** The seed's proposal (13 Apr 2026). */
export function lazy_mmu_mode_enable_fast_pte_range(mm: number, addr: number, end: number, ptep: number): void {
  enable_range('lazy_mmu_mode_enable_fast_pte_range', mm, addr, end, ptep);
}
/** v1 (RFC, 25 Mar 2026). */
export function lazy_mmu_mode_enable_pte(mm: number, addr: number, end: number, ptep: number): void {
  enable_range('lazy_mmu_mode_enable_pte', mm, addr, end, ptep);
}
/** v2 (15 Apr 2026). */
export function lazy_mmu_mode_enable_for_pte_range(mm: number, addr: number, end: number, ptep: number): void {
  enable_range('lazy_mmu_mode_enable_for_pte_range', mm, addr, end, ptep);
}

/**
 * The entry the series' call sites use (zap_pte_range, copy_pte_range,
 * change_pte_range, move_ptes): lazy_mmu_mode_enable_with_ptes() as in v3-v6,
 * or, under --lazy-series, the entry point of the version in force (v1
 * lazy_mmu_mode_enable_pte, v2 lazy_mmu_mode_enable_for_pte_range, the seed's
 * fast_pte_range) or mainline's plain lazy_mmu_mode_enable() ('none').
 */
export function lazy_mmu_mode_enable_with_ptes(mm: number, addr: number, end: number, ptep: number): void {
  if (lazy_series === 'none') {
    lazy_mmu_mode_enable();
    return;
  }
  enable_range(LAZY_SERIES[lazy_series].api.replace('()', ''), mm, addr, end, ptep);
}

function check_range(api: string, mm: number, addr: number, end: number, ptep: number): void {
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
  for (const p of problems) warn(`${api}: ${p}`);
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
      `inside a range-aware lazy MMU section (strict contract): the entry is in ${owner === r.mm ? 'another table of the same mm' : `a table of mm ${owner}`}`,
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
  // BUG (injected, the pre-7.0 behaviour Brodsky's nesting series fixed): any
  // disable leaves the mode, a nested one included, stripping the outer section
  const left = knobs['lazy_mmu.nested_disable_leaves'] ? 0 : en - 1;
  I[c.en] = left;
  if (left === 0) leave();
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
  const cpu = current;
  if (knobs['lazy_mmu.active_in_irq'] && cpu.in_interrupt() && cpu.curTask >= 0) {
    // BUG (injected, before b81c688426a9): in interrupt context the interrupted task's section counts
    const L = cpu.V.L;
    return cpu.I[taskWord(L, cpu.curTask, T_LAZY_ENABLE)] > 0 && cpu.I[taskWord(L, cpu.curTask, T_LAZY_PAUSE)] === 0;
  }
  const c = counts();
  if (!c) return false;
  return current.I[c.en] > 0 && current.I[c.pa] === 0;
}
