// s390 lazy MMU backend of Alexander Gordeev's series "s390/mm: Batch PTE
// updates in lazy MMU mode", by version (--lazy-series; docs/lazy-mmu-series.md):
//  - v1/v2: arch/s390/mm/ipte_batch.c (RFC <a00e58e3293ead1881e0c5a5fb471edd23ea76aa.1774420057.git.agordeev@linux.ibm.com>,
//    v2 5/6 <924c91e711e8b16470eb2af7e31d0b6ffcf2940c.1776264097.git.agordeev@linux.ibm.com>)
//  - v3-v6: arch/s390/mm/lazy_mmu.c (v5 2/4 <227ed305e14b04b97be34716426e369860efc99c.1783945507.git.agordeev@linux.ibm.com>)
//  - seed: the model mmsim had before the versions were read (as v1, plus
//    ptep_set_access_flags cached and ptep_clear_flush re-poisoning its slot)
//  - none: mainline s390 has no lazy MMU backend: nothing is intercepted.
//
// Per CPU, a struct ipte_range: the range given to the outermost range-aware
// enable (mm, base_addr, base_end, base_pte), the lowest and highest slot
// written (start_pte, end_pte) and a cache of PTRS_PER_PTE values, each
// PTE_POISON when the slot holds nothing. Inside the range set_pte, ptep_get,
// ptep_get_and_clear(_full), ptep_modify_prot_start/commit, ptep_set_wrprotect
// and ptep_test_and_clear_young work on the cache: memory keeps the old
// (possibly valid) entry and no IPTE is issued. ptep_clear_flush and
// ptep_set_access_flags are NOT intercepted by any posted version (they go to
// ptep_xchg_direct on memory and leave a cached value in place, which leave then
// writes back). leave_ipte_range walks [start_pte, end_pte): each maximal run of
// cached slots is split into sub-runs whose memory entries are all valid or all
// invalid (count_contiguous); a valid sub-run gets one IPTE with the
// "additional entries" field (IPTE-range: local when mm_cpumask is this CPU only
// and the TLB-local-clearing facility is there, else global: a quiesce); then
// the cached values are stored and re-poisoned.
//
// When is the cache consulted? v1/v2 (ipte_batch.c lazy_mmu_mode()): while the
// task's lazy MMU mode is active (is_lazy_mmu_mode_active(): not in interrupt
// context, not paused) and a range is set. v3+ (lazy_mmu.c): while the per-CPU
// lowcore lazy_mmu_count is non-zero and the PTE is in the range: no task or
// interrupt check (an interrupt on this CPU would hit the cache too).

import { type Cpu, current } from '../../hw/cpu.ts';
import { PTRS_PER_TABLE, PAGE_SIZE, ST_BATCHED, ST_BATCH_FLUSHES, mmWord, MM_S390_FLUSH_COUNT } from '../../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { knobs } from '../../inject/knobs.ts';
import { is_lazy_mmu_mode_active, lazy_series, series_has_lazy_mmu_c, series_zap_free_fixed } from '../../mm/lazy_mmu.ts';
import { put_page } from '../../mm/page_alloc.ts';
import { lazy_mmu_preempt_disable, lazy_mmu_preempt_enable } from '../../hw/preempt.ts';
import { S390Cpu, s390_state, __ptep_ipte_range, IPTE_RANGE_MAX, mm_cpumask_only_here, flush_count_dec } from './index.ts';
import { s390_pte_store } from '../../oracles/s390_rule.ts';

/**
 * "Not cached": every bit set, i.e. _PAGE_PSE in a last-level entry and pfn
 * MAX_PFN, which no PTE of this machine can be. The kernel used 0 in v1/v2 (an
 * empty s390 PTE is _PAGE_INVALID, never 0) and _PAGE_LARGE (0x800) from v3;
 * mmsim's empty PTE is 0, so its poison must be another value no PTE takes.
 */
export const PTE_POISON = -1;

/** struct ipte_range (v3+; struct ipte_batch in v1/v2), one per CPU. */
export class IpteBatch {
  /** a range is in force (range->mm != NULL; false: no section, or a plain enable) */
  active = false;
  /** v3+: lowcore->lazy_mmu_count (incremented by every arch enter, range or not) */
  count = 0;
  mm = -1;
  addr = 0;
  end = 0;
  /** base_pte: the entry of addr */
  ptep = 0;
  nptes = 0;
  /** start_pte/end_pte as slot indexes: lowest and highest written slot */
  lo = PTRS_PER_TABLE;
  hi = -1;
  readonly cache = new Int32Array(PTRS_PER_TABLE).fill(PTE_POISON);
  /** v6-fixed only: pages __tlb_remove_page handed over (pfn, va pairs), freed after the IPTE-range */
  readonly pendingFree: number[] = [];
}

function batch_of(cpu: Cpu): IpteBatch | null {
  const a = cpu.arch;
  return a instanceof S390Cpu ? a.batch : null;
}

/** this_ipte_range (v3+) / get_ipte_batch (v1/v2): the slot of ptep in the range in force, or -1 (normal path). */
function this_ipte_range(cpu: Cpu, ptep: number): number {
  const b = batch_of(cpu);
  if (b === null || lazy_series === 'none') return -1;
  if (series_has_lazy_mmu_c()) {
    if (b.count === 0) return -1; // is_lazy_mmu_active(): the lowcore count
  } else if (!is_lazy_mmu_mode_active()) {
    return -1; // ipte_batch.c lazy_mmu_mode(): the task's mode
  }
  if (!b.active) return -1;
  const i = ptep - b.ptep;
  return i >= 0 && i < b.nptes ? i : -1;
}

/** __ipte_range_ptep_get: the cached value, or memory when the slot is poisoned. */
function cached(cpu: Cpu, b: IpteBatch, i: number): number {
  const v = b.cache[i];
  return v !== PTE_POISON ? v : Atomics.load(cpu.I, b.ptep + i);
}

/** __ipte_range_set_pte */
function cache_set(cpu: Cpu, b: IpteBatch, i: number, v: number): void {
  if (v === PTE_POISON) throw new Error('s390: a PTE value equal to the ipte_range poison');
  b.cache[i] = v;
  if (i < b.lo) b.lo = i;
  if (i > b.hi) b.hi = i;
  cpu.stat(ST_BATCHED);
}

// ---- the intercepts (asm/pgtable.h: "if (!lazy_mmu_X(...)) normal path") ----------------

/** __lazy_mmu_ptep_get: the value ptep_get sees, or PTE_POISON when not intercepted. */
export function lazy_mmu_ptep_get(ptep: number): number {
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  return i < 0 ? PTE_POISON : cached(cpu, batch_of(cpu)!, i);
}

/** __lazy_mmu_set_pte: true when the value went into the cache. */
export function lazy_mmu_set_pte(ptep: number, pte: number): boolean {
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  if (i < 0) return false;
  cpu.sched_point();
  cache_set(cpu, batch_of(cpu)!, i, pte);
  return true;
}

/** __lazy_mmu_ptep_get_and_clear (also _full: the cache is consulted before the full flag): old value, or PTE_POISON. */
export function lazy_mmu_ptep_get_and_clear(ptep: number): number {
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  if (i < 0) return PTE_POISON;
  cpu.sched_point();
  const b = batch_of(cpu)!;
  const old = cached(cpu, b, i);
  cache_set(cpu, b, i, 0);
  return old;
}

/** __lazy_mmu_ptep_set_wrprotect: true when handled in the cache. */
export function lazy_mmu_ptep_set_wrprotect(ptep: number): boolean {
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  if (i < 0) return false;
  cpu.sched_point();
  const b = batch_of(cpu)!;
  const v = cached(cpu, b, i);
  if (v & _PAGE_RW) cache_set(cpu, b, i, v & ~_PAGE_RW);
  return true;
}

/**
 * ptep_set_access_flags: intercepted only by the seed's model (posted versions
 * leave it to ptep_xchg_direct on memory: s390 pgtable.h, unchanged by the series).
 */
export function lazy_mmu_ptep_set_access_flags(ptep: number, pte: number): boolean {
  return lazy_series === 'seed' ? lazy_mmu_set_pte(ptep, pte) : false;
}

/**
 * ptep_clear_flush is never intercepted (ptep_xchg_direct on memory). The seed's
 * model then re-poisons the slot; the posted versions leave the cached value,
 * which leave_ipte_range stores back over the cleared entry (v5 lazy_mmu.c).
 * Seed: returns the value ptep_get would have returned before the clear;
 * otherwise PTE_POISON (the caller gets memory's old value, as from ptep_xchg_direct).
 */
export function lazy_mmu_before_clear_flush(ptep: number): number {
  if (lazy_series !== 'seed') return PTE_POISON; // posted versions: ptep_xchg_direct returns what memory held
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  return i < 0 ? PTE_POISON : cached(cpu, batch_of(cpu)!, i);
}
export function lazy_mmu_after_clear_flush(ptep: number): void {
  if (lazy_series !== 'seed') return;
  const cpu = current;
  const i = this_ipte_range(cpu, ptep);
  if (i >= 0) batch_of(cpu)!.cache[i] = PTE_POISON;
}

/** The memory value differs from what ptep_get returns (a cached slot): the direct-dereference hazard. */
export function lazy_mmu_pte_memory_stale(ptep: number): boolean {
  const b = batch_of(current);
  if (b === null || !b.active) return false;
  const i = ptep - b.ptep;
  return i >= 0 && i < b.nptes && b.cache[i] !== PTE_POISON;
}

/**
 * v3+ "s390/mm: Lazy MMU mode sanitizer": enter_ipte_range poisons the KASAN
 * shadow of the whole range (kasan_poison_pte), leave unpoisons it; the cache
 * accessors unpoison around their own reads and stores. The shadow is global in
 * the kernel; here only this CPU's range is seen (other CPUs' batches live in
 * other host threads).
 */
export function lazy_mmu_pte_kasan_poisoned(ptep: number): boolean {
  if (!series_has_lazy_mmu_c()) return false;
  const b = batch_of(current);
  if (b === null || !b.active) return false;
  const i = ptep - b.ptep;
  return i >= 0 && i < b.nptes;
}

/**
 * The suggested fix (docs/findings/s390-lazy-zap-uaf.md; --lazy-series v6-fixed,
 * the one place series_zap_free_fixed is consulted). s390's __tlb_remove_page
 * frees at once (asm/tlb.h: "s390 doesn't delay rmap removal"), trusting that
 * ptep_get_and_clear has done the IPTE. Inside a range with cached entries the
 * clear has not been done: memory keeps the valid entry and TLBs keep their
 * translations until leave_ipte_range. The fix hands such a page to the range,
 * which frees it after its IPTE-range (one per run, as before: the batching is
 * kept). Posted versions free at once.
 */
export function lazy_mmu_tlb_remove_page(pfn: number, va: number): boolean {
  if (!series_zap_free_fixed()) return false;
  const b = batch_of(current);
  if (b === null || !b.active || b.hi < b.lo) return false;
  b.pendingFree.push(pfn, va);
  return true;
}

function free_pending(b: IpteBatch): void {
  const p = b.pendingFree;
  for (let k = 0; k < p.length; k += 2) put_page(p[k], p[k + 1]);
  p.length = 0;
}

// ---- apply (leave_ipte_range, set_pte_range, invalidate_pte_range) ---------------------

/** set_pte_range over cached slots [i, j): IPTE-range each sub-run of valid memory entries, then store. */
function set_pte_range(cpu: Cpu, b: IpteBatch, i: number, j: number): void {
  const I = cpu.I;
  const c = b.cache;
  cpu.sched_point();
  for (let k = i; k < j;) {
    // count_contiguous: entries whose memory invalid bit equals the first one's
    const valid = (Atomics.load(I, b.ptep + k) & _PAGE_PRESENT) !== 0;
    let e = k + 1;
    while (e < j && e - k < IPTE_RANGE_MAX && ((Atomics.load(I, b.ptep + e) & _PAGE_PRESENT) !== 0) === valid) e++;
    if (valid) {
      // as ptep_flush_direct: under mm->context.flush_count, IPTE local when
      // mm_cpumask is this CPU only, global otherwise (arch/s390/mm/pgtable.c)
      // (with preemption off, as every flush_count section of arch/s390 runs: src/arch/s390/index.ts)
      cpu.preemptOff++;
      Atomics.add(I, mmWord(cpu.V.L, b.mm, MM_S390_FLUSH_COUNT), 1);
      __ptep_ipte_range(cpu, b.mm, b.addr + k * PAGE_SIZE, b.ptep + k, e - k, mm_cpumask_only_here(cpu, b.mm));
      flush_count_dec(cpu, b.mm);
      cpu.preemptOff--;
    }
    for (let q = k; q < e; q++) {
      // every s390 PTE store goes through the rule oracle (src/oracles/s390_rule.ts)
      s390_pte_store(cpu, b.mm, b.ptep + q, c[q], 'set_pte_range (leave_ipte_range)');
      c[q] = PTE_POISON;
    }
    k = e;
  }
}

/**
 * v3+ lazy_mmu.c: enter_ipte_norange and enter_ipte_range take the per-CPU range
 * with get_cpu_var() and leave_ipte_range gives it back with put_cpu_var() (and
 * asserts lockdep_assert_preemption_disabled()): preemption is off for the whole
 * section. v1/v2 ipte_batch.c the same for range sections: enter_ipte_batch()
 * takes &get_cpu_var(ipte_range), leave_ipte_batch() ends with put_cpu_var(); their
 * plain enter defers nothing and takes nothing. It matters for the sections without
 * a PTL (vmap_pages_pte_range, vunmap_pte_range on init_mm): another task entering on
 * this CPU would take over the range holding the first one's cached entries.
 */
function series_preempt_disable(cpu: Cpu, range: boolean): void {
  if (series_has_lazy_mmu_c() || (range && lazy_series !== 'none')) lazy_mmu_preempt_disable(cpu);
}

/**
 * The leave applies the cached entries and only then gives the per-CPU range back
 * (put_cpu_var at its end, v3+ lazy_mmu.c leave_ipte_range; v1/v2 leave_ipte_batch): the
 * apply runs with preemption off. Until the eighth session the model re-enabled preemption
 * first, so a task in an init_mm section (vmalloc, a fork's stack) could be preempted inside
 * set_pte_range's scheduling point and move to another thread's CPU mid-apply, leaving
 * entries in the cache of the CPU it left for the next section there to store: a window the
 * kernel does not have (found by reading, not by a failing run).
 */
function leave_ipte_range(cpu: Cpu, b: IpteBatch): void {
  if (b.count > 0) b.count--;
  if (!b.active) {
    lazy_mmu_preempt_enable(cpu); // put_cpu_var (a no-op unless the enter disabled it)
    return; // enter_ipte_norange: nothing deferred
  }
  b.active = false;
  if (b.hi >= b.lo) {
    // BUG (injected) when on: the cache is dropped, memory keeps the old valid entries
    if (!knobs['s390.leave_without_apply']) {
      const c = b.cache;
      for (let i = b.lo; i <= b.hi;) {
        if (c[i] === PTE_POISON) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j <= b.hi && c[j] !== PTE_POISON) j++;
        set_pte_range(cpu, b, i, j);
        i = j;
      }
    }
    b.cache.fill(PTE_POISON, b.lo, b.hi + 1);
    cpu.stat(ST_BATCH_FLUSHES);
  }
  free_pending(b); // v6-fixed: the pages whose clears were just applied
  b.lo = PTRS_PER_TABLE;
  b.hi = -1;
  b.mm = -1;
  lazy_mmu_preempt_enable(cpu); // put_cpu_var, at the end of the leave
}

function enter_ipte_range(cpu: Cpu, mm: number, addr: number, end: number, ptep: number): void {
  const b = s390_state(cpu).batch;
  series_preempt_disable(cpu, true); // get_cpu_var(ipte_range)
  b.count++;
  if (lazy_series === 'none') return;
  b.active = true;
  b.mm = mm;
  b.addr = addr;
  b.end = end;
  b.ptep = ptep;
  b.nptes = Math.max(0, Math.min(PTRS_PER_TABLE, Math.floor((end - addr) / PAGE_SIZE)));
  b.lo = PTRS_PER_TABLE;
  b.hi = -1;
}

// ---- the arch hooks ----------------------------------------------------------------

/** enter_ipte_norange: a plain enable only counts (v3+ lowcore count) */
export function arch_enter_lazy_mmu_mode(): void {
  series_preempt_disable(current, false); // v3+ enter_ipte_norange: get_cpu_var(ipte_range)
  s390_state(current).batch.count++;
}

/** arch_enter_lazy_mmu_mode_pte (v1) / _with_ptes (v3+): the outermost range-aware enable. */
export function arch_enter_lazy_mmu_mode_with_ptes(mm: number, addr: number, end: number, ptep: number): void {
  enter_ipte_range(current, mm, addr, end, ptep);
}

export function arch_leave_lazy_mmu_mode(): void {
  const cpu = current;
  const b = batch_of(cpu);
  if (b !== null) leave_ipte_range(cpu, b);
}

/** flush_lazy_mmu_mode (a nested disable): leave, then enter again with the same range. */
export function arch_flush_lazy_mmu_mode(): void {
  const cpu = current;
  const b = batch_of(cpu);
  if (b === null || !b.active) return;
  const { mm, addr, end, ptep } = b;
  leave_ipte_range(cpu, b);
  enter_ipte_range(cpu, mm, addr, end, ptep);
}
