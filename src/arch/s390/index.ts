// s390 TLB model (arch/s390/mm/pgtable.c, asm/tlbflush.h) with Alexander
// Gordeev's range-aware lazy MMU series (RFC <cover.1774420056.git.agordeev@linux.ibm.com>,
// v2 <cover.1776264097.git.agordeev@linux.ibm.com>; docs/kernel-rules.md#tlb-observers and
// #lazy-mmu-range).
//
// No IPIs. A PTE is invalidated by IPTE: the instruction sets the entry invalid
// in memory (our encoding: _PAGE_PRESENT cleared) and purges the translations
// built from it, on every CPU (global: a machine-wide quiesce, serialised) or
// only here (local clearing, when the mm is attached to this CPU only); it
// completes only when the purge is done: cpu.broadcast_invalidate(). IDTE purges
// a whole address space (by ASCE). A valid entry is never overwritten in place:
// invalidate first, then store (ptep_xchg_direct).
//
//  - ptep_xchg_direct (ptep_clear_flush, ptep_set_access_flags, set_pte_at over a
//    valid entry): IPTE, then store.
//  - ptep_xchg_lazy (ptep_get_and_clear, ptep_set_wrprotect, ptep_modify_prot_start):
//    mm attached here only: set the invalid bit in memory, mark flush_mm and let
//    the next flush_tlb_mm_range purge; otherwise a global IPTE at once. Then store.
//  - flush_tlb_mm_range: does work only if flush_mm was marked, or tables were
//    freed: IDTE for the whole ASID (local or global).
//  - Gordeev's batch (src/arch/s390/lazy_mmu.ts, by series version): with a
//    range (arch_enter_lazy_mmu_mode_with_ptes) a per-CPU ipte_range caches one
//    value per PTE slot of the range; accessors on a PTE inside the range read
//    and write the cache (memory keeps the old value, no IPTE); leave invalidates
//    each run of slots whose memory entry is valid with one IPTE-range (<= 256
//    entries), then stores the cached values. A plain lazy_mmu_mode_enable() is
//    the "no range" state: every update is immediate.

import { type Cpu, type Host, current } from '../../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../../hw/locks.ts';
import {
  mmWord, MM_CPUMASK, MM_CTX_ID, CPUMASK_WORDS, PAGE_SIZE, CC_IS_LAZY,
  H_QUIESCE_LOCK, ST_QUIESCE, ST_LOCAL_CLEAR, ST_FLUSH_FULL, ST_SWITCH_FLUSH, ST_IPTE, ST_IPTE_RANGE, ST_IDTE,
} from '../../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { EV } from '../../hw/trace.ts';
import {
  IpteBatch, PTE_POISON, lazy_mmu_ptep_get, lazy_mmu_set_pte, lazy_mmu_ptep_get_and_clear, lazy_mmu_ptep_set_wrprotect,
  lazy_mmu_ptep_set_access_flags, lazy_mmu_before_clear_flush, lazy_mmu_after_clear_flush, lazy_mmu_pte_memory_stale, lazy_mmu_pte_kasan_poisoned,
  arch_enter_lazy_mmu_mode, arch_enter_lazy_mmu_mode_with_ptes, arch_leave_lazy_mmu_mode, arch_flush_lazy_mmu_mode,
} from './lazy_mmu.ts';
import type { Arch } from '../arch.ts';
import { native } from '../generic.ts';

/** IPTE-range (facility 13) invalidates at most this many entries of one page table per instruction. */
export const IPTE_RANGE_MAX = 256;
/** The machine-wide quiesce every global IPTE/IDTE takes: a spinlock (its waiter count follows). */
export const QUIESCE_LOCK_WORD = H_QUIESCE_LOCK;

export { IpteBatch, PTE_POISON };

/** Per-CPU s390 state (cpu.arch). */
export class S390Cpu {
  readonly batch = new IpteBatch();
  /** mm->context.flush_mm, as marked by this CPU's lazy exchanges (the purge is owed by this CPU's next flush) */
  readonly flushMm: Uint8Array;
  constructor(maxMms: number) {
    this.flushMm = new Uint8Array(maxMms);
  }
}

export function s390_state(cpu: Cpu): S390Cpu {
  const a = cpu.arch;
  if (a instanceof S390Cpu) return a;
  const s = new S390Cpu(cpu.V.L.shape.maxMms);
  cpu.arch = s;
  return s;
}

// ---- attachment and the invalidation instructions -----------------------------------

/**
 * The mm is attached to (has run on) this CPU only: local clearing suffices.
 * mm_cpumask here is every CPU that switched to the mm since it was created
 * (cleared when it exits), a superset of the CPUs whose TLBs may hold its
 * translations. An empty mask (no CPU ever ran it: boot, teardown) counts too:
 * no other TLB can hold anything of it.
 */
export function attached_only_here(cpu: Cpu, mm: number): boolean {
  const base = mmWord(cpu.V.L, mm, MM_CPUMASK);
  const I = cpu.I;
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    const bits = Atomics.load(I, base + w);
    const mine = w === cpu.id >> 5 ? 1 << (cpu.id & 31) : 0;
    if ((bits & ~mine) !== 0) return false;
  }
  return true;
}

function mm_cpumask_empty(cpu: Cpu, mm: number): boolean {
  const base = mmWord(cpu.V.L, mm, MM_CPUMASK);
  for (let w = 0; w < CPUMASK_WORDS; w++) if (Atomics.load(cpu.I, base + w) !== 0) return false;
  return true;
}

/** A global invalidation: serialised machine-wide, completes when every CPU has purged. */
function global_purge(cpu: Cpu, mm: number, v0: number, v1: number, invalidate: () => void): void {
  const q = cpu.V.L.header + QUIESCE_LOCK_WORD;
  spin_lock(q);
  invalidate();
  const t0 = cpu.now();
  cpu.broadcast_invalidate(cpu.asidOf(mm), v0, v1);
  cpu.recordLatency(cpu.now() - t0);
  spin_unlock(q);
  cpu.stat(ST_QUIESCE);
}

/**
 * IPTE (n = 1) or IPTE-range (n <= 256 entries of one table from ptep, mapping
 * addr on): set the entries invalid in memory and purge their translations,
 * globally or (mm attached here only) locally. Returns the first entry's value
 * just before it was invalidated.
 */
export function __ptep_ipte_range(cpu: Cpu, mm: number, addr: number, ptep: number, n: number): number {
  const I = cpu.I;
  const v0 = Math.floor(addr / PAGE_SIZE);
  let old = 0;
  const invalidate = (): void => {
    old = Atomics.and(I, ptep, ~_PAGE_PRESENT);
    for (let k = 1; k < n; k++) Atomics.and(I, ptep + k, ~_PAGE_PRESENT);
  };
  if (attached_only_here(cpu, mm)) {
    invalidate();
    cpu.tlb.flushRange(cpu.asidOf(mm), v0, v0 + n);
    cpu.stat(ST_LOCAL_CLEAR);
    // A CPU that attached since the check may have walked the entries first. The
    // kernel closes this window with mm->context.flush_count, which switch_mm
    // waits out before attaching; without that word, purge globally after all.
    if (!attached_only_here(cpu, mm)) global_purge(cpu, mm, v0, v0 + n, () => {});
  } else {
    global_purge(cpu, mm, v0, v0 + n, invalidate);
  }
  cpu.stat(n === 1 ? ST_IPTE : ST_IPTE_RANGE);
  cpu.ring.log(EV.FLUSH_LOCAL, addr, n);
  return old;
}

export function __ptep_ipte(cpu: Cpu, mm: number, addr: number, ptep: number): number {
  return __ptep_ipte_range(cpu, mm, addr, ptep, 1);
}

/** __tlb_flush_mm: IDTE by ASCE, local or global; nothing if no CPU ever ran the mm. */
function __tlb_flush_mm(cpu: Cpu, mm: number): void {
  if (mm_cpumask_empty(cpu, mm)) return;
  const asid = cpu.asidOf(mm);
  if (attached_only_here(cpu, mm)) {
    cpu.tlb.flushAsid(asid);
    cpu.stat(ST_LOCAL_CLEAR);
    if (!attached_only_here(cpu, mm)) global_purge(cpu, mm, 0, -1, () => {}); // attached meanwhile (see __ptep_ipte_range)
  } else {
    global_purge(cpu, mm, 0, -1, () => {});
  }
  cpu.stat(ST_FLUSH_FULL);
  cpu.stat(ST_IDTE);
  cpu.ring.log(EV.FLUSH_LOCAL, 0, -1);
}

/** ptep_xchg_direct: invalidate a valid entry (IPTE) before storing the new value. */
function ptep_xchg_direct(cpu: Cpu, mm: number, addr: number, ptep: number, mk: (old: number) => number): number {
  cpu.sched_point();
  let old = Atomics.load(cpu.I, ptep);
  if (old & _PAGE_PRESENT) old = __ptep_ipte(cpu, mm, addr, ptep);
  Atomics.store(cpu.I, ptep, mk(old));
  return old;
}

/** ptep_xchg_lazy: attached here only: invalid bit now, purge at the next flush; else a global IPTE now. */
function ptep_xchg_lazy(cpu: Cpu, mm: number, addr: number, ptep: number, mk: (old: number) => number): number {
  cpu.sched_point();
  const I = cpu.I;
  let old = Atomics.load(I, ptep);
  if (old & _PAGE_PRESENT) {
    if (attached_only_here(cpu, mm)) {
      old = Atomics.and(I, ptep, ~_PAGE_PRESENT);
      s390_state(cpu).flushMm[mm] = 1;
    } else {
      old = __ptep_ipte(cpu, mm, addr, ptep);
    }
  }
  Atomics.store(I, ptep, mk(old));
  return old;
}

const ZERO = (): number => 0;
const WRPROTECT = (old: number): number => old & ~_PAGE_RW;

// ---- PTE accessors -------------------------------------------------------------------
// Each asks the lazy MMU backend first (src/arch/s390/lazy_mmu.ts), as the
// series' asm/pgtable.h wrappers do: "if (!lazy_mmu_X(...)) normal path".

function ptep_get(ptep: number): number {
  const cpu = current;
  cpu.sched_point();
  const v = lazy_mmu_ptep_get(ptep);
  return v !== PTE_POISON ? v : Atomics.load(cpu.I, ptep);
}

function set_pte_at(mm: number, addr: number, ptep: number, pte: number): void {
  if (lazy_mmu_set_pte(ptep, pte)) return;
  ptep_xchg_direct(current, mm, addr, ptep, () => pte); // a plain store into an invalid slot
}

function ptep_get_and_clear(mm: number, addr: number, ptep: number): number {
  const old = lazy_mmu_ptep_get_and_clear(ptep);
  if (old !== PTE_POISON) return old;
  return ptep_xchg_lazy(current, mm, addr, ptep, ZERO);
}

function ptep_set_wrprotect(mm: number, addr: number, ptep: number): void {
  if (lazy_mmu_ptep_set_wrprotect(ptep)) return;
  const cpu = current;
  cpu.sched_point();
  if ((Atomics.load(cpu.I, ptep) & _PAGE_RW) === 0) return;
  ptep_xchg_lazy(cpu, mm, addr, ptep, WRPROTECT);
}

/** ptep_xchg_direct (the series leaves it alone; only the seed's model cached it) */
function ptep_set_access_flags(mm: number, addr: number, ptep: number, pte: number): void {
  if (lazy_mmu_ptep_set_access_flags(ptep, pte)) return;
  ptep_xchg_direct(current, mm, addr, ptep, () => pte);
}

/** a lazy exchange to zero, as ptep_get_and_clear */
function ptep_modify_prot_start(mm: number, addr: number, ptep: number): number {
  return ptep_get_and_clear(mm, addr, ptep);
}

/** start left the entry invalid: the same store as set_pte (an IPTE first should it be valid again) */
function ptep_modify_prot_commit(mm: number, addr: number, ptep: number, _old: number, pte: number): void {
  set_pte_at(mm, addr, ptep, pte);
}

/** Never deferred: the entry is gone from memory and every TLB on return, batch or not. */
function ptep_clear_flush(mm: number, addr: number, ptep: number): number {
  const seen = lazy_mmu_before_clear_flush(ptep);
  const old = ptep_xchg_direct(current, mm, addr, ptep, ZERO);
  lazy_mmu_after_clear_flush(ptep);
  return seen !== PTE_POISON ? seen : old;
}

function pte_memory_stale(ptep: number): boolean {
  return lazy_mmu_pte_memory_stale(ptep);
}

// ---- TLB maintenance and mm switching ----------------------------------------------

/** __tlb_flush_mm_lazy: only a lazy exchange (flush_mm) or freed tables leave anything to purge. */
function flush_tlb_mm_range(mm: number, _start: number, _end: number, _strideShift: number, freedTables: boolean): void {
  const cpu = current;
  const a = s390_state(cpu);
  if (a.flushMm[mm] === 0 && !freedTables) return;
  a.flushMm[mm] = 0;
  __tlb_flush_mm(cpu, mm);
}

function flush_tlb_mm(mm: number): void {
  const cpu = current;
  s390_state(cpu).flushMm[mm] = 0;
  __tlb_flush_mm(cpu, mm);
}

function switch_mm_irqs_off(cpu: Cpu, _prev: number, next: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  const wasLazy = I[cpu.ctl + CC_IS_LAZY] !== 0;
  if (next === cpu.loadedMm && !wasLazy) return;
  if (next < 0) {
    cpu.setLoaded(-1, false);
    return;
  }
  // attach before the ASCE is loaded: from now on IPTEs of this mm are global
  Atomics.or(I, mmWord(L, next, MM_CPUMASK) + (cpu.id >> 5), 1 << (cpu.id & 31));
  cpu.setLoaded(next, false);
  const ctx = Atomics.load(I, mmWord(L, next, MM_CTX_ID));
  if (cpu.ctxId[cpu.asid] !== ctx) {
    // the ASID (our stand-in for the ASCE) last belonged to a dead mm here
    cpu.tlb.flushAsid(cpu.asid);
    cpu.ctxId[cpu.asid] = ctx;
    cpu.stat(ST_SWITCH_FLUSH);
  }
}

/**
 * pmdp_xchg_direct / pudp_xchg_direct: a valid huge leaf is invalidated by
 * IDTE of the segment (region-third) table entry, which purges every
 * translation built from it, the whole huge range, globally (quiesce) or
 * locally when the mm is attached here only; then the new value is stored.
 */
function pmdp_huge_xchg(mm: number, addr: number, pmdp: number, size: number, val: number): number {
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  let old = Atomics.load(I, pmdp);
  if (old & _PAGE_PRESENT) {
    const v0 = Math.floor(addr / PAGE_SIZE);
    const v1 = v0 + size / PAGE_SIZE;
    const invalidate = (): void => {
      old = Atomics.and(I, pmdp, ~_PAGE_PRESENT);
    };
    if (attached_only_here(cpu, mm)) {
      invalidate();
      cpu.tlb.flushRange(cpu.asidOf(mm), v0, v1);
      cpu.stat(ST_LOCAL_CLEAR);
      if (!attached_only_here(cpu, mm)) global_purge(cpu, mm, v0, v1, () => {}); // attached meanwhile (see __ptep_ipte_range)
    } else {
      global_purge(cpu, mm, v0, v1, invalidate);
    }
    cpu.stat(ST_IDTE);
    cpu.ring.log(EV.FLUSH_LOCAL, addr, size / PAGE_SIZE);
  }
  Atomics.store(I, pmdp, val);
  return old;
}

export const s390: Arch = {
  name: 's390',
  supports_page_table_move: false,
  defers: 'with a fast range only: every update of a PTE in the range (cached per CPU, memory keeps the old valid entry) and its IPTE, done at leave as one IPTE-range per run of valid entries; plain sections and PTEs outside the range: nothing',
  invalidation: 'IPTE per PTE when it changes (global with a machine-wide quiesce, local when the mm is attached here only), IPTE-range at leave; flush_tlb_* purges by ASCE (IDTE) only after a lazy exchange (flush_mm) or freed tables; no IPIs',
  initHost(host: Host): void {
    void host; // no IPI handlers: invalidation is by hardware broadcast
  },
  ptep_get,
  set_pte_at,
  ptep_get_and_clear,
  ptep_set_wrprotect,
  ptep_set_access_flags,
  ptep_modify_prot_start,
  ptep_modify_prot_commit,
  ptep_clear_flush,
  pte_memory_stale,
  pte_kasan_poisoned: lazy_mmu_pte_kasan_poisoned,
  flush_tlb_mm_range,
  flush_tlb_mm,
  flush_tlb_local_page: native.flush_tlb_local_page,
  switch_mm_irqs_off,
  enter_lazy_tlb(cpu) {
    if (cpu.loadedMm >= 0) Atomics.store(cpu.I, cpu.ctl + CC_IS_LAZY, 1);
  },
  leave_mm: native.leave_mm,
  arch_enter_lazy_mmu_mode, // the "no range" state: nothing is batched
  arch_enter_lazy_mmu_mode_fast_pte_range: arch_enter_lazy_mmu_mode_with_ptes,
  arch_leave_lazy_mmu_mode,
  arch_flush_lazy_mmu_mode,
  pmdp_huge_xchg,
};
