// s390 TLB model as Linux 6.18 has it (arch/s390/mm/pgtable.c, asm/pgtable.h,
// asm/tlbflush.h, asm/tlb.h, asm/mmu_context.h), with Alexander Gordeev's
// range-aware lazy MMU series on top (RFC <cover.1774420056.git.agordeev@linux.ibm.com>,
// v2 <cover.1776264097.git.agordeev@linux.ibm.com>, ... v6; the backend by version is
// src/arch/s390/lazy_mmu.ts, mirroring arch/s390/mm/lazy_mmu.c; docs/lazy-mmu-series.md).
// Every primitive is compared with the kernel in docs/fidelity.md.
//
// No IPIs. A PTE is invalidated by IPTE: the instruction sets the entry invalid
// in memory (our encoding: _PAGE_PRESENT cleared) and purges the translations
// built from it, on every CPU (global: a machine-wide quiesce, serialised) or
// only here (IPTE_LOCAL); it completes only when the purge is done:
// cpu.broadcast_invalidate(). IDTE purges a whole address space (by ASCE).
//
//  - set_pte_at (set_ptes): a plain store. Over a valid entry of an attached mm
//    that is the caller's bug; the s390 rule oracle (src/oracles/s390_rule.ts),
//    through which every store here goes, reports it.
//  - ptep_xchg_direct (ptep_clear_flush, ptep_set_access_flags): ptep_flush_direct
//    (IPTE, local when mm_cpumask is this CPU only), then store.
//  - ptep_xchg_lazy (ptep_get_and_clear, ptep_set_wrprotect; ptep_modify_prot_start
//    is ptep_flush_lazy alone): cpu_attach_mask this CPU only: set the invalid bit
//    and mm->context.flush_mm; otherwise a global IPTE. Then store.
//  - flush_tlb_mm / flush_tlb_range / tlb_flush: __tlb_flush_mm_lazy, an IDTE
//    (always global, resetting mm_cpumask to cpu_attach_mask) only if flush_mm is
//    set (a lazy exchange, or pte_free_tlb); flush_tlb_page: nothing. A CPU that
//    switches the mm in runs __tlb_flush_mm_lazy too (finish_arch_post_lock_switch).
//  - pages are freed at __tlb_remove_page (MMU_GATHER_NO_GATHER), in
//    src/mm/mmu_gather.ts: the clear must have been done by then.
//  - Gordeev's batch (src/arch/s390/lazy_mmu.ts, by series version): with a
//    range (arch_enter_lazy_mmu_mode_with_ptes) a per-CPU ipte_range caches one
//    value per PTE slot of the range; accessors on a PTE inside the range read
//    and write the cache (memory keeps the old value, no IPTE); leave invalidates
//    each run of slots whose memory entry is valid with one IPTE-range (<= 256
//    entries, through __ptep_ipte_range as ptep_flush_direct would), then stores
//    the cached values (through s390_pte_store). A plain lazy_mmu_mode_enable() is
//    the "no range" state: every update is immediate.
//    A cached clear is not an invalidation: a page zap_pte_range hands to
//    __tlb_remove_page inside such a section is freed while still mapped.

import { type Cpu, type Host, current } from '../../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../../hw/locks.ts';
import {
  mmWord, MM_CPUMASK, MM_CTX_ID, CPUMASK_WORDS, PAGE_SIZE, CC_IS_LAZY,
  MM_S390_ATTACH_MASK, MM_S390_FLUSH_MM, MM_S390_FLUSH_COUNT, MM_S390_CTX_LOCK, MM_S390_FC_WAITERS, CC_ONLINE, cpuCtl,
  H_QUIESCE_LOCK, KERNEL_ASID, ST_QUIESCE, ST_LOCAL_CLEAR, ST_FLUSH_FULL, ST_SWITCH_FLUSH, ST_IPTE, ST_IPTE_RANGE, ST_IDTE,
} from '../../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { EV } from '../../hw/trace.ts';
import { knobs } from '../../inject/knobs.ts';
import {
  IpteBatch, PTE_POISON, lazy_mmu_ptep_get, lazy_mmu_set_pte, lazy_mmu_ptep_get_and_clear, lazy_mmu_ptep_set_wrprotect,
  lazy_mmu_ptep_set_access_flags, lazy_mmu_before_clear_flush, lazy_mmu_after_clear_flush, lazy_mmu_pte_memory_stale, lazy_mmu_pte_kasan_poisoned,
  arch_enter_lazy_mmu_mode, arch_enter_lazy_mmu_mode_with_ptes, arch_leave_lazy_mmu_mode, arch_flush_lazy_mmu_mode,
  lazy_mmu_tlb_remove_page,
} from './lazy_mmu.ts';
import type { Arch } from '../arch.ts';
import { native, initHostCommon, flush_tlb_kernel_range_broadcast } from '../generic.ts';
import { s390_pte_store } from '../../oracles/s390_rule.ts';

/** IPTE-range (facility 13) invalidates at most this many entries of one page table per instruction. */
export const IPTE_RANGE_MAX = 256;
/** The machine-wide quiesce every global IPTE/IDTE takes: a spinlock (its waiter count follows). */
export const QUIESCE_LOCK_WORD = H_QUIESCE_LOCK;

export { IpteBatch, PTE_POISON };

/** Per-CPU s390 state (cpu.arch). */
export class S390Cpu {
  readonly batch = new IpteBatch();
}

export function s390_state(cpu: Cpu): S390Cpu {
  const a = cpu.arch;
  if (a instanceof S390Cpu) return a;
  const s = new S390Cpu();
  cpu.arch = s;
  return s;
}

// ---- attachment and the invalidation instructions -----------------------------------
//
// Two masks per mm, as in the kernel (arch/s390/include/asm/mmu_context.h,
// asm/tlbflush.h): mm->context.cpu_attach_mask, the CPUs that have the mm's ASCE
// loaded now (set at switch_mm_irqs_off, cleared when the CPU switches to another
// mm), and mm_cpumask, the CPUs whose TLBs may hold its translations (set by
// finish_arch_post_lock_switch, reset to cpu_attach_mask by every __tlb_flush_mm).
// ptep_flush_direct looks at mm_cpumask, ptep_flush_lazy at cpu_attach_mask.

function mask_is_only(cpu: Cpu, base: number): boolean {
  const I = cpu.I;
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    const bits = Atomics.load(I, base + w);
    const mine = w === cpu.id >> 5 ? 1 << (cpu.id & 31) : 0;
    if (bits !== mine) return false;
  }
  return true;
}

/**
 * init_mm's two masks hold every CPU: pcpu_prepare_secondary (arch/s390/kernel/smp.c)
 * sets each CPU in init_mm.context.cpu_attach_mask and in mm_cpumask(&init_mm)
 * (the kernel ASCE is always loaded). So a kernel PTE change is a global IPTE
 * unless the machine has one CPU. The model keeps init_mm's mask words empty
 * (its s390 rule oracle skips init_mm), hence this test by index.
 */
function init_mm_only_here(cpu: Cpu): boolean {
  return cpu.V.L.shape.cpus === 1;
}

/** cpumask_equal(mm_cpumask(mm), cpumask_of(this cpu)): ptep_flush_direct may use a local IPTE. */
export function mm_cpumask_only_here(cpu: Cpu, mm: number): boolean {
  if (mm === cpu.V.L.initMm) return init_mm_only_here(cpu);
  return mask_is_only(cpu, mmWord(cpu.V.L, mm, MM_CPUMASK));
}

/** cpumask_equal(&mm->context.cpu_attach_mask, cpumask_of(this cpu)): ptep_flush_lazy may defer. */
export function attach_mask_only_here(cpu: Cpu, mm: number): boolean {
  if (mm === cpu.V.L.initMm) return init_mm_only_here(cpu);
  return mask_is_only(cpu, mmWord(cpu.V.L, mm, MM_S390_ATTACH_MASK));
}

/** The TLB tag of mm's translations: the kernel ASCE's (global entries, KERNEL_ASID) for init_mm. */
function asce_of(cpu: Cpu, mm: number): number {
  return mm === cpu.V.L.initMm ? KERNEL_ASID : cpu.asidOf(mm);
}

/**
 * atomic_dec(&mm->context.flush_count): a CPU waiting in
 * finish_arch_post_lock_switch for it to reach zero is woken (the simulator's
 * schedulers need the kick; the kernel's waiter spins).
 */
export function flush_count_dec(cpu: Cpu, mm: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  if (Atomics.sub(I, mmWord(L, mm, MM_S390_FLUSH_COUNT), 1) - 1 !== 0) return;
  if (Atomics.load(I, mmWord(L, mm, MM_S390_FC_WAITERS)) === 0) return;
  for (let t = 0; t < L.shape.cpus; t++) if (t !== cpu.id && Atomics.load(I, cpuCtl(L, t, CC_ONLINE)) !== 0) cpu.host.kick(t);
}

/** A global invalidation: serialised machine-wide, completes when every CPU has purged. */
function global_purge(cpu: Cpu, mm: number, v0: number, v1: number, invalidate: () => void): void {
  const q = cpu.V.L.header + QUIESCE_LOCK_WORD;
  spin_lock(q);
  invalidate();
  const t0 = cpu.now();
  cpu.broadcast_invalidate(asce_of(cpu, mm), v0, v1);
  cpu.recordLatency(cpu.now() - t0);
  spin_unlock(q);
  cpu.stat(ST_QUIESCE);
}

/**
 * IPTE (n = 1) or IPTE-range (n <= 256 entries of one table from ptep, mapping
 * addr on): set the entries invalid in memory and purge their translations,
 * locally (IPTE_LOCAL: only this CPU's TLB) or globally. Returns the first
 * entry's value just before it was invalidated. The caller chose the scope
 * (ptep_flush_direct: local when mm_cpumask is this CPU only).
 */
export function __ptep_ipte_range(cpu: Cpu, mm: number, addr: number, ptep: number, n: number, local: boolean): number {
  const I = cpu.I;
  const v0 = Math.floor(addr / PAGE_SIZE);
  let old = 0;
  const invalidate = (): void => {
    old = Atomics.and(I, ptep, ~_PAGE_PRESENT);
    for (let k = 1; k < n; k++) Atomics.and(I, ptep + k, ~_PAGE_PRESENT);
  };
  if (local) {
    invalidate();
    cpu.tlb.flushRange(asce_of(cpu, mm), v0, v0 + n);
    cpu.stat(ST_LOCAL_CLEAR);
  } else {
    global_purge(cpu, mm, v0, v0 + n, invalidate);
  }
  cpu.stat(n === 1 ? ST_IPTE : ST_IPTE_RANGE);
  cpu.ring.log(EV.FLUSH_LOCAL, addr, n);
  return old;
}

/**
 * ptep_flush_direct (arch/s390/mm/pgtable.c): an invalid entry needs nothing;
 * else, with mm->context.flush_count raised (a CPU switching the mm in waits for
 * it to drop before it joins mm_cpumask), IPTE: local when mm_cpumask is this CPU
 * only, global otherwise. Returns the old value.
 */
export function ptep_flush_direct(cpu: Cpu, mm: number, addr: number, ptep: number): number {
  const I = cpu.I;
  const old = Atomics.load(I, ptep);
  if ((old & _PAGE_PRESENT) === 0) return old;
  const fc = mmWord(cpu.V.L, mm, MM_S390_FLUSH_COUNT);
  Atomics.add(I, fc, 1);
  const r = __ptep_ipte_range(cpu, mm, addr, ptep, 1, mm_cpumask_only_here(cpu, mm));
  flush_count_dec(cpu, mm);
  return r;
}

/**
 * ptep_flush_lazy (arch/s390/mm/pgtable.c): with cpu_attach_mask this CPU only,
 * set the invalid bit by a plain store and mark mm->context.flush_mm (the purge
 * is owed to the next __tlb_flush_mm_lazy, by whichever CPU runs it); otherwise a
 * global IPTE now. Returns the old value.
 */
export function ptep_flush_lazy(cpu: Cpu, mm: number, addr: number, ptep: number): number {
  const I = cpu.I;
  const old = Atomics.load(I, ptep);
  if ((old & _PAGE_PRESENT) === 0) return old;
  const L = cpu.V.L;
  const fc = mmWord(L, mm, MM_S390_FLUSH_COUNT);
  Atomics.add(I, fc, 1);
  let r: number;
  if (attach_mask_only_here(cpu, mm)) {
    r = s390_pte_store(cpu, mm, ptep, old & ~_PAGE_PRESENT, 'ptep_flush_lazy', 'lazy-invalidate');
    Atomics.store(I, mmWord(L, mm, MM_S390_FLUSH_MM), 1);
  } else {
    r = __ptep_ipte_range(cpu, mm, addr, ptep, 1, false);
  }
  flush_count_dec(cpu, mm);
  return r;
}

/**
 * __tlb_flush_mm (asm/tlbflush.h): under flush_count, reset mm_cpumask to
 * cpu_attach_mask, then IDTE by ASCE: always global (the kernel prefers a
 * per-mm flush on every CPU to a local one).
 */
export function __tlb_flush_mm(cpu: Cpu, mm: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  const fc = mmWord(L, mm, MM_S390_FLUSH_COUNT);
  s390_preempt_disable(cpu);
  Atomics.add(I, fc, 1);
  const mask = mmWord(L, mm, MM_CPUMASK);
  const attach = mmWord(L, mm, MM_S390_ATTACH_MASK);
  for (let w = 0; w < CPUMASK_WORDS; w++) Atomics.store(I, mask + w, Atomics.load(I, attach + w));
  global_purge(cpu, mm, 0, -1, () => {});
  flush_count_dec(cpu, mm);
  s390_preempt_enable(cpu);
  cpu.stat(ST_FLUSH_FULL);
  cpu.stat(ST_IDTE);
  cpu.ring.log(EV.FLUSH_LOCAL, 0, -1);
}

/** __tlb_flush_mm_lazy (asm/tlbflush.h): under mm->context.lock, IDTE only if flush_mm was set. */
export function __tlb_flush_mm_lazy(cpu: Cpu, mm: number): void {
  const L = cpu.V.L;
  const lock = mmWord(L, mm, MM_S390_CTX_LOCK);
  spin_lock(lock);
  const f = mmWord(L, mm, MM_S390_FLUSH_MM);
  if (Atomics.load(cpu.I, f) !== 0) {
    Atomics.store(cpu.I, f, 0);
    __tlb_flush_mm(cpu, mm);
  }
  spin_unlock(lock);
}

// preempt_disable() / preempt_enable() around every flush_count section, as
// arch/s390/mm/pgtable.c has them in ptep_xchg_direct, ptep_xchg_lazy,
// ptep_modify_prot_start and pmdp_xchg_direct, and asm/tlbflush.h in __tlb_flush_mm:
// a task must not be preempted with mm->context.flush_count raised, or a task that
// switches the mm in on the same CPU spins in finish_arch_post_lock_switch (with
// preemption off) for ever. It matters under PREEMPT_RT, where the PTL those paths
// hold no longer disables preemption (without it, mremap-vs-fault --arch s390
// --preempt rt hung on every seed).
function s390_preempt_disable(cpu: Cpu): void {
  cpu.preemptOff++;
}
function s390_preempt_enable(cpu: Cpu): void {
  cpu.preemptOff--;
}

/** ptep_xchg_direct: ptep_flush_direct, then store the new value (ptep_xchg_commit); preemption off. */
function ptep_xchg_direct(cpu: Cpu, mm: number, addr: number, ptep: number, mk: (old: number) => number, prim: string): number {
  cpu.sched_point();
  s390_preempt_disable(cpu);
  const old = ptep_flush_direct(cpu, mm, addr, ptep);
  s390_pte_store(cpu, mm, ptep, mk(old), prim);
  s390_preempt_enable(cpu);
  return old;
}

/** ptep_xchg_lazy: ptep_flush_lazy, then store the new value; preemption off. */
function ptep_xchg_lazy(cpu: Cpu, mm: number, addr: number, ptep: number, mk: (old: number) => number, prim: string): number {
  cpu.sched_point();
  s390_preempt_disable(cpu);
  const old = ptep_flush_lazy(cpu, mm, addr, ptep);
  s390_pte_store(cpu, mm, ptep, mk(old), prim);
  s390_preempt_enable(cpu);
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

/**
 * set_ptes (arch/s390/include/asm/pgtable.h): a plain store, no IPTE. Storing
 * over a valid entry of an attached mm is the caller's bug (the rule at the top
 * of asm/tlb.h); the s390 rule oracle reports it.
 */
function set_pte_at(mm: number, _addr: number, ptep: number, pte: number): void {
  if (lazy_mmu_set_pte(ptep, pte)) return;
  const cpu = current;
  cpu.sched_point();
  s390_pte_store(cpu, mm, ptep, pte, 'set_ptes');
}

/** ptep_get_and_clear: ptep_xchg_lazy(mm, addr, ptep, __pte(_PAGE_INVALID)). */
function ptep_get_and_clear(mm: number, addr: number, ptep: number): number {
  const old = lazy_mmu_ptep_get_and_clear(ptep);
  if (old !== PTE_POISON) return old;
  return ptep_xchg_lazy(current, mm, addr, ptep, ZERO, 'ptep_get_and_clear (ptep_xchg_lazy)');
}

/**
 * ptep_get_and_clear_full: the lazy MMU cache first (the series consults it
 * before the full flag); with full set (exit_mmap: no user is left) read the
 * entry and store _PAGE_INVALID plainly; else ptep_get_and_clear.
 */
function ptep_get_and_clear_full(mm: number, addr: number, ptep: number, full: boolean): number {
  if (!full) return ptep_get_and_clear(mm, addr, ptep);
  const old = lazy_mmu_ptep_get_and_clear(ptep);
  if (old !== PTE_POISON) return old;
  const cpu = current;
  cpu.sched_point();
  return s390_pte_store(cpu, mm, ptep, 0, 'ptep_get_and_clear_full', 'fullmm');
}

/** ptep_set_wrprotect: if the entry is writable, ptep_xchg_lazy to its write-protected value. */
function ptep_set_wrprotect(mm: number, addr: number, ptep: number): void {
  const cpu = current;
  if (knobs['s390.wrprotect_no_ipte']) {
    // BUG (injected): the write-protected value is stored over the valid entry
    // in memory without IPTE (and past any batch), as on x86 where the flush
    // that follows is enough; other CPUs keep writable translations
    cpu.sched_point();
    const v = Atomics.load(cpu.I, ptep);
    if (v & _PAGE_RW) s390_pte_store(cpu, mm, ptep, v & ~_PAGE_RW, 'ptep_set_wrprotect (s390.wrprotect_no_ipte)');
    return;
  }
  if (lazy_mmu_ptep_set_wrprotect(ptep)) return;
  cpu.sched_point();
  const pte = Atomics.load(cpu.I, ptep);
  if ((pte & _PAGE_RW) === 0) return;
  ptep_xchg_lazy(cpu, mm, addr, ptep, WRPROTECT, 'ptep_set_wrprotect (ptep_xchg_lazy)');
}

/**
 * ptep_set_access_flags: nothing if the entry is the same; else ptep_xchg_direct
 * (the path of a machine without the RDP facility; with RDP the kernel may reset
 * the protection in place by RDP, which also purges). No posted version of the
 * series intercepts it; only the seed's model cached it.
 */
function ptep_set_access_flags(mm: number, addr: number, ptep: number, pte: number): void {
  if (lazy_mmu_ptep_set_access_flags(ptep, pte)) return;
  const cpu = current;
  cpu.sched_point();
  if (Atomics.load(cpu.I, ptep) === pte) return;
  ptep_xchg_direct(cpu, mm, addr, ptep, () => pte, 'ptep_set_access_flags (ptep_xchg_direct)');
}

/**
 * ptep_modify_prot_start (arch/s390/mm/pgtable.c): ptep_flush_lazy and return the
 * old value; memory keeps the entry with its invalid bit set until commit. Inside
 * a lazy range the series caches a clear instead.
 */
function ptep_modify_prot_start(mm: number, addr: number, ptep: number): number {
  const old = lazy_mmu_ptep_get_and_clear(ptep);
  if (old !== PTE_POISON) return old;
  const cpu = current;
  cpu.sched_point();
  // the kernel keeps preemption off from here to ptep_modify_prot_commit; the model only across
  // the flush_count section (a little more preemption than the kernel allows, never less)
  s390_preempt_disable(cpu);
  const prev = ptep_flush_lazy(cpu, mm, addr, ptep);
  s390_preempt_enable(cpu);
  return prev;
}

/** ptep_modify_prot_commit: a plain store (start left the entry invalid); the cache inside a range. */
function ptep_modify_prot_commit(mm: number, _addr: number, ptep: number, _old: number, pte: number): void {
  if (lazy_mmu_set_pte(ptep, pte)) return;
  const cpu = current;
  cpu.sched_point();
  s390_pte_store(cpu, mm, ptep, pte, 'ptep_modify_prot_commit');
}

/** ptep_clear_flush: ptep_xchg_direct to _PAGE_INVALID; never deferred, batch or not. */
function ptep_clear_flush(mm: number, addr: number, ptep: number): number {
  const seen = lazy_mmu_before_clear_flush(ptep);
  const old = ptep_xchg_direct(current, mm, addr, ptep, ZERO, 'ptep_clear_flush (ptep_xchg_direct)');
  lazy_mmu_after_clear_flush(ptep);
  return seen !== PTE_POISON ? seen : old;
}

function pte_memory_stale(ptep: number): boolean {
  return lazy_mmu_pte_memory_stale(ptep);
}

// ---- TLB maintenance and mm switching ----------------------------------------------

/**
 * tlb_flush (asm/tlb.h) and flush_tlb_range (asm/tlbflush.h) are both
 * __tlb_flush_mm_lazy: an IDTE only when flush_mm was set (by ptep_flush_lazy or
 * pte_free_tlb); range, stride and freed_tables are not looked at.
 */
function flush_tlb_mm_range(mm: number, _start: number, _end: number, _strideShift: number, _freedTables: boolean): void {
  __tlb_flush_mm_lazy(current, mm);
}

/** flush_tlb_mm: __tlb_flush_mm_lazy as well. */
function flush_tlb_mm(mm: number): void {
  __tlb_flush_mm_lazy(current, mm);
}

/** pte_free_tlb / pmd_free_tlb / pud_free_tlb (asm/tlb.h): mm->context.flush_mm = 1. */
function pte_free_tlb(mm: number): void {
  Atomics.store(current.I, mmWord(current.V.L, mm, MM_S390_FLUSH_MM), 1);
}

function set_cpu(I: Int32Array, base: number, id: number): void {
  Atomics.or(I, base + (id >> 5), 1 << (id & 31));
}
function clear_cpu(I: Int32Array, base: number, id: number): void {
  Atomics.and(I, base + (id >> 5), ~(1 << (id & 31)));
}

/**
 * switch_mm_irqs_off (asm/mmu_context.h): join next's cpu_attach_mask, leave
 * prev's (prev != next), load the ASCE; then finish_arch_post_lock_switch: wait
 * until next's flush_count is zero, join mm_cpumask, __tlb_flush_mm_lazy(next).
 * Done on every switch to a user task, the same mm again included.
 */
function switch_mm_irqs_off(cpu: Cpu, prev: number, next: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  if (prev >= 0 && prev !== next) clear_cpu(I, mmWord(L, prev, MM_S390_ATTACH_MASK), cpu.id);
  if (next < 0) {
    cpu.setLoaded(-1, false);
    return;
  }
  set_cpu(I, mmWord(L, next, MM_S390_ATTACH_MASK), cpu.id);
  // finish_arch_post_lock_switch
  const fc = mmWord(L, next, MM_S390_FLUSH_COUNT);
  if (Atomics.load(I, fc) !== 0) {
    const waiters = mmWord(L, next, MM_S390_FC_WAITERS);
    Atomics.add(I, waiters, 1);
    for (let spin = 0; Atomics.load(I, fc) !== 0; spin++) {
      if (cpu.irqOff === 0) cpu.host.pollIpis();
      if (spin < 32 && cpu.host.sched === null) Atomics.pause();
      else cpu.host.block(-1, () => Atomics.load(I, fc) === 0);
    }
    Atomics.sub(I, waiters, 1);
  }
  set_cpu(I, mmWord(L, next, MM_CPUMASK), cpu.id);
  __tlb_flush_mm_lazy(cpu, next);
  cpu.setLoaded(next, false); // the user ASCE goes into CR7 last
  const ctx = Atomics.load(I, mmWord(L, next, MM_CTX_ID));
  if (cpu.ctxId[cpu.asid] !== ctx) {
    // the ASID (our stand-in for the ASCE) last belonged to a dead mm here
    cpu.tlb.flushAsid(cpu.asid);
    cpu.ctxId[cpu.asid] = ctx;
    cpu.stat(ST_SWITCH_FLUSH);
  }
}

/** The mm is gone: this CPU switches away from it (it leaves cpu_attach_mask). */
function leave_mm(cpu: Cpu, mm: number): void {
  clear_cpu(cpu.I, mmWord(cpu.V.L, mm, MM_S390_ATTACH_MASK), cpu.id);
  native.leave_mm(cpu, mm);
}

/**
 * pmdp_xchg_direct / pudp_xchg_direct: a valid huge leaf is invalidated by
 * IDTE of the segment (region-third) table entry, which purges every
 * translation built from it, the whole huge range, globally (quiesce) or
 * locally when mm_cpumask is this CPU only (pmdp_flush_direct); then the new
 * value is stored. Every huge-leaf exchange takes this direct path, also those
 * the kernel makes lazily (pmdp_huge_get_and_clear, pmdp_set_wrprotect use
 * pmdp_xchg_lazy): see docs/fidelity.md.
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
    const fc = mmWord(cpu.V.L, mm, MM_S390_FLUSH_COUNT);
    s390_preempt_disable(cpu);
    Atomics.add(I, fc, 1);
    if (mm_cpumask_only_here(cpu, mm)) {
      invalidate();
      cpu.tlb.flushRange(cpu.asidOf(mm), v0, v1);
      cpu.stat(ST_LOCAL_CLEAR);
    } else {
      global_purge(cpu, mm, v0, v1, invalidate);
    }
    flush_count_dec(cpu, mm);
    s390_preempt_enable(cpu);
    cpu.stat(ST_IDTE);
    cpu.ring.log(EV.FLUSH_LOCAL, addr, size / PAGE_SIZE);
  }
  s390_pte_store(cpu, mm, pmdp, val, 'pmdp_xchg_direct');
  return old;
}

export const s390: Arch = {
  name: 's390',
  flush_tlb_kernel_range: flush_tlb_kernel_range_broadcast, // __tlb_flush_kernel -> __tlb_flush_global (CSP/IDTE: every CPU)
  supports_page_table_move: false,
  defers: 'with a fast range only: every update of a PTE in the range (cached per CPU, memory keeps the old valid entry) and its IPTE, done at leave as one IPTE-range per run of valid entries; plain sections and PTEs outside the range: nothing',
  invalidation: 'IPTE per PTE when it changes (global with a machine-wide quiesce, local when the mm is attached here only), IPTE-range at leave; flush_tlb_* purges by ASCE (IDTE) only after a lazy exchange (flush_mm) or freed tables; no IPIs',
  initHost(host: Host): void {
    initHostCommon(host); // invalidation is by hardware broadcast; the only IPI is tlb_remove_table_sync's
  },
  ptep_get,
  set_pte_at,
  ptep_get_and_clear,
  ptep_get_and_clear_full,
  ptep_set_wrprotect,
  ptep_set_access_flags,
  ptep_modify_prot_start,
  ptep_modify_prot_commit,
  ptep_clear_flush,
  pte_memory_stale,
  pte_kasan_poisoned: lazy_mmu_pte_kasan_poisoned,
  flush_tlb_mm_range,
  flush_tlb_mm,
  flush_tlb_page() {
    // #define flush_tlb_page(vma, addr) do { } while (0): every change already purged or left to flush_mm
  },
  pte_free_tlb,
  mmu_gather_no_gather: true,
  tlb_remove_page_lazy: lazy_mmu_tlb_remove_page,
  rcu_table_free: true,
  flush_tlb_local_page: native.flush_tlb_local_page,
  switch_mm_irqs_off,
  enter_lazy_tlb(cpu) {
    // s390 has no enter_lazy_tlb of its own: the borrowed mm stays attached (cpu_attach_mask keeps this CPU)
    if (cpu.loadedMm >= 0) Atomics.store(cpu.I, cpu.ctl + CC_IS_LAZY, 1);
  },
  leave_mm,
  arch_enter_lazy_mmu_mode, // the "no range" state: nothing is batched
  arch_enter_lazy_mmu_mode_fast_pte_range: arch_enter_lazy_mmu_mode_with_ptes,
  arch_leave_lazy_mmu_mode,
  arch_flush_lazy_mmu_mode,
  pmdp_huge_xchg,
  /**
   * set_pte_at(&init_mm, ...) / ptep_get_and_clear(&init_mm, ...): the same s390
   * primitives as for a user mm, with init_mm. Mainline: set_ptes is a plain store
   * (vmap: over none entries), ptep_get_and_clear is ptep_xchg_lazy, i.e. a global
   * IPTE (init_mm is attached everywhere). With the series (v1-v6 convert the
   * vmalloc call sites to the range-aware entry with &init_mm; v6
   * arch/s390/mm/lazy_mmu.c enter_ipte_range refuses only mm_is_protected(mm)),
   * both go to the ipte_range cache inside the section and leave applies them:
   * stores, and one global IPTE-range per run of valid entries.
   */
  set_pte_kernel(ptep, pte, addr) {
    set_pte_at(current.V.L.initMm, addr, ptep, pte);
  },
  ptep_get_and_clear_kernel(ptep, addr) {
    return ptep_get_and_clear(current.V.L.initMm, addr, ptep);
  },
};
