// arm64 TLB-flush model (arch/arm64/include/asm/tlbflush.h, asm/pgtable.h:
// __flush_tlb_range, queue_pte_barriers, emit_pte_barriers): no IPIs. A range flush is DSB ISHST (publish the
// page-table stores to every walker), then one TLBI by VA+ASID, Inner Shareable,
// per page (the whole ASID from MAX_DVM_OPS pages on), then DSB ISH, which
// completes only when every CPU has purged: cpu.broadcast_invalidate() is the
// TLBI sequence and its return is the DSB ISH.
//
// Lazy MMU mode defers the barriers (DSB ISHST; ISB) that __set_pte_complete
// emits after storing a *valid kernel* PTE (arch/arm64/include/asm/pgtable.h:
// pte_valid_not_user -> queue_pte_barriers: in lazy mode only TIF_LAZY_MMU_PENDING
// is set, and arch_leave/arch_flush_lazy_mmu_mode emit them). User PTE stores get
// no barrier in or out of lazy mode: the DSB ISHST at the start of the TLBI
// sequence orders them (flush_tlb_*), so lazy mode changes nothing for them and
// they go to memory at once here. For valid kernel PTEs stored inside a section
// we model the deferred visibility: the store waits in this CPU's store buffer
// (cpu.arch), which ptep_get on this CPU forwards from, and which a DSB drains:
// the deferred one at leave/flush, the DSB ISHST of a TLB flush, the DSB ISH of a
// context switch.

import { type Cpu, type Host, current } from '../../hw/cpu.ts';
import {
  mmWord, MM_CPUMASK, MM_CTX_ID, CPUMASK_WORDS, ST_FLUSH_SINGLE, ST_FLUSH_RANGE, ST_FLUSH_FULL, ST_BATCHED,
  ST_BATCH_FLUSHES, ST_SWITCH_FLUSH, CC_IS_LAZY, PAGE_SHIFT, PAGE_SIZE, KERNEL_ASID,
} from '../../hw/layout.ts';
import { walk_kernel } from '../../hw/walker.ts';
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../../hw/pte.ts';
import { EV } from '../../hw/trace.ts';
import { knobs } from '../../inject/knobs.ts';
import { is_lazy_mmu_mode_active } from '../../mm/lazy_mmu.ts';
import type { Arch } from '../arch.ts';
import { native, initHostCommon } from '../generic.ts';
import { sb_drain } from '../../hw/store_buffer.ts';

/** __flush_tlb_range: from this many pages (PTRS_PER_PTE with 4K pages) on, invalidate the whole ASID. */
export const MAX_DVM_OPS = 512;
export const TLB_FLUSH_ALL = -1;

/** Per-CPU arm64 state (cpu.arch). */
export class Arm64Cpu {
  /** PTE stores not yet visible to other CPUs' walkers: ptep -> value (this CPU reads them back) */
  readonly sb = new Map<number, number>();
  /**
   * arm64.lazy_no_dsb: the barrier the last section deferred was dropped, so
   * nothing orders its stores before the TLBI that follows: they become
   * visible only with the DSB ISH that completes it (or a context switch).
   */
  unordered = false;
}

export function arm64_state(cpu: Cpu): Arm64Cpu {
  const a = cpu.arch;
  if (a instanceof Arm64Cpu) return a;
  const s = new Arm64Cpu();
  cpu.arch = s;
  return s;
}

function drain(cpu: Cpu, a: Arm64Cpu): void {
  const I = cpu.I;
  for (const [ptep, v] of a.sb) Atomics.store(I, ptep, v);
  a.sb.clear();
}

/** DSB ISHST: every PTE store of this CPU is visible to every walker before anything after it. */
export function dsb_ishst(cpu: Cpu): void {
  if (cpu.sbN !== 0) sb_drain(cpu); // every earlier store completes, the lockless words' too
  const a = arm64_state(cpu);
  if (a.sb.size === 0 || a.unordered) return;
  drain(cpu, a);
}

/** DSB ISH: full completion barrier (after a TLBI, at a context switch). */
export function dsb_ish(cpu: Cpu): void {
  if (cpu.sbN !== 0) sb_drain(cpu); // a full completion barrier: the store buffer drains too
  const a = arm64_state(cpu);
  if (a.sb.size !== 0) drain(cpu, a);
  a.unordered = false;
}

// ---- PTE accessors ---------------------------------------------------------------

/** The value this CPU sees: its own pending store, else memory. */
function pte_read(cpu: Cpu, ptep: number): number {
  const a = cpu.arch as Arm64Cpu;
  if (a instanceof Arm64Cpu && a.sb.size !== 0) {
    const v = a.sb.get(ptep);
    if (v !== undefined) return v;
  }
  return Atomics.load(cpu.I, ptep);
}

/**
 * queue_pte_barriers: only a valid kernel entry (pte_valid_not_user) stored inside
 * a lazy section has its barrier deferred; hold it in the store buffer.
 */
function buffered(cpu: Cpu, pte: number): Arm64Cpu | null {
  if ((pte & _PAGE_PRESENT) === 0 || (pte & _PAGE_USER) !== 0) return null;
  if (!is_lazy_mmu_mode_active()) return null;
  return arm64_state(cpu);
}

function buffer_store(cpu: Cpu, a: Arm64Cpu, ptep: number, v: number): void {
  a.sb.set(ptep, v);
  cpu.stat(ST_BATCHED);
}

/** A store outside a section: straight to memory (it supersedes a pending store to the same entry). */
function store_now(cpu: Cpu, ptep: number, v: number): void {
  const a = cpu.arch;
  if (a instanceof Arm64Cpu && a.sb.size !== 0) a.sb.delete(ptep);
  Atomics.store(cpu.I, ptep, v);
}

function ptep_get(ptep: number): number {
  const cpu = current;
  cpu.sched_point();
  return pte_read(cpu, ptep);
}

function set_pte_at(_mm: number, _addr: number, ptep: number, pte: number): void {
  const cpu = current;
  cpu.sched_point();
  const a = buffered(cpu, pte);
  if (a) buffer_store(cpu, a, ptep, pte);
  else store_now(cpu, ptep, pte);
}

function ptep_get_and_clear(_mm: number, _addr: number, ptep: number): number {
  const cpu = current;
  cpu.sched_point();
  const p = cpu.arch;
  if (p instanceof Arm64Cpu && p.sb.size !== 0 && p.sb.has(ptep)) {
    const old = p.sb.get(ptep)!;
    store_now(cpu, ptep, 0);
    return old;
  }
  return Atomics.exchange(cpu.I, ptep, 0); // xchg: keeps the access/dirty bits the walker set
}

function ptep_set_wrprotect(_mm: number, _addr: number, ptep: number): void {
  const cpu = current;
  cpu.sched_point();
  const v = pte_read(cpu, ptep) & ~_PAGE_RW;
  const a = buffered(cpu, v);
  if (a) buffer_store(cpu, a, ptep, v);
  else {
    const p = cpu.arch;
    if (p instanceof Arm64Cpu && p.sb.size !== 0 && p.sb.has(ptep)) store_now(cpu, ptep, p.sb.get(ptep)! & ~_PAGE_RW);
    else Atomics.and(cpu.I, ptep, ~_PAGE_RW);
  }
}

function ptep_set_access_flags(_mm: number, _addr: number, ptep: number, pte: number): void {
  set_pte_at(_mm, _addr, ptep, pte);
}

function ptep_modify_prot_start(mm: number, addr: number, ptep: number): number {
  return ptep_get_and_clear(mm, addr, ptep);
}

function ptep_modify_prot_commit(mm: number, addr: number, ptep: number, _old: number, pte: number): void {
  set_pte_at(mm, addr, ptep, pte);
}

/** Clear, then flush: the flush's DSB ISHST publishes the clear before the TLBI (break-before-make). */
function ptep_clear_flush(mm: number, addr: number, ptep: number): number {
  const old = ptep_get_and_clear(mm, addr, ptep);
  if (old & _PAGE_PRESENT) flush_tlb_mm_range(mm, addr, addr + PAGE_SIZE, PAGE_SHIFT, false);
  return old;
}

function pte_memory_stale(ptep: number): boolean {
  const a = current.arch;
  return a instanceof Arm64Cpu && a.sb.size !== 0 && a.sb.has(ptep);
}

// ---- TLB maintenance ---------------------------------------------------------------

function mm_cpumask_empty(cpu: Cpu, mm: number): boolean {
  const base = mmWord(cpu.V.L, mm, MM_CPUMASK);
  for (let w = 0; w < CPUMASK_WORDS; w++) if (Atomics.load(cpu.I, base + w) !== 0) return false;
  return true;
}

/**
 * TLBI ..IS for [v0, v1) of the mm's ASID (v1 = -1: the whole ASID), completed
 * by DSB ISH. Every CPU purges, whatever it runs: arm64 does not look at
 * mm_cpumask. One exception, a simulator necessity: an mm no CPU ever switched
 * to (at boot and at teardown, where the other CPUs' threads do not exist) can
 * have no translations in any other TLB, so only the local one is purged.
 */
function tlbi_is(cpu: Cpu, mm: number, v0: number, v1: number): void {
  const asid = cpu.asidOf(mm);
  if (mm_cpumask_empty(cpu, mm)) {
    if (v1 < 0) cpu.tlb.flushAsid(asid);
    else cpu.tlb.flushRange(asid, v0, v1);
    return;
  }
  const t0 = cpu.now();
  cpu.broadcast_invalidate(asid, v0, v1);
  cpu.recordLatency(cpu.now() - t0);
}

/** flush_tlb_mm: DSB ISHST; TLBI ASIDE1IS; DSB ISH. */
function flush_tlb_mm(mm: number): void {
  const cpu = current;
  dsb_ishst(cpu);
  tlbi_is(cpu, mm, 0, -1);
  dsb_ish(cpu);
  cpu.stat(ST_FLUSH_FULL);
  cpu.ring.log(EV.FLUSH_LOCAL, 0, -1);
}

/**
 * __flush_tlb_range: DSB ISHST; one TLBI VALE1IS/VAE1IS per stride (the
 * non-last-level form when tables were freed: it also drops walk caches, which
 * this machine does not model); DSB ISH. From MAX_DVM_OPS strides on: flush_tlb_mm.
 * The per-page TLBIs go out as one broadcast covering the same pages; ST_FLUSH_SINGLE
 * counts the TLBIs it stands for.
 */
export function flush_tlb_mm_range(mm: number, start: number, end: number, strideShift: number, freedTables: boolean): void {
  const cpu = current;
  const stride = 2 ** strideShift;
  const strides = end === TLB_FLUSH_ALL ? Infinity : Math.ceil((end - start) / stride);
  if (strides >= MAX_DVM_OPS) {
    flush_tlb_mm(mm);
    return;
  }
  if (strides <= 0) return;
  dsb_ishst(cpu);
  tlbi_is(cpu, mm, Math.floor(start / PAGE_SIZE), Math.ceil(end / PAGE_SIZE));
  dsb_ish(cpu);
  cpu.stat(ST_FLUSH_SINGLE, strides);
  cpu.stat(ST_FLUSH_RANGE);
  cpu.ring.log(EV.FLUSH_LOCAL, start, strides);
  void freedTables;
}

// ---- mm switching ------------------------------------------------------------------

function switch_mm_irqs_off(cpu: Cpu, _prev: number, next: number): void {
  dsb_ish(cpu); // __switch_to: pending page-table stores cannot leak across a switch
  const I = cpu.I;
  const L = cpu.V.L;
  const wasLazy = I[cpu.ctl + CC_IS_LAZY] !== 0;
  if (next === cpu.loadedMm && !wasLazy) return;
  if (next < 0) {
    cpu.setLoaded(-1, false);
    return;
  }
  // arm64 does not need mm_cpumask to flush; we keep it as "CPUs that ever ran
  // the mm" (set before the first walk) for the never-ran shortcut in tlbi_is.
  Atomics.or(I, mmWord(L, next, MM_CPUMASK) + (cpu.id >> 5), 1 << (cpu.id & 31));
  cpu.setLoaded(next, false);
  const ctx = Atomics.load(I, mmWord(L, next, MM_CTX_ID));
  if (cpu.ctxId[cpu.asid] !== ctx) {
    // The ASID was last used here by another (now dead) mm: a new ASID
    // generation (check_and_switch_context) flushes the local TLB.
    cpu.tlb.flushAsid(cpu.asid);
    cpu.ctxId[cpu.asid] = ctx;
    cpu.stat(ST_SWITCH_FLUSH);
  }
}

function enter_lazy_tlb(cpu: Cpu): void {
  dsb_ish(cpu);
  if (cpu.loadedMm >= 0) Atomics.store(cpu.I, cpu.ctl + CC_IS_LAZY, 1);
}

// ---- lazy MMU hooks ----------------------------------------------------------------

function arch_leave_lazy_mmu_mode(): void {
  const cpu = current;
  const a = arm64_state(cpu);
  if (a.sb.size === 0) return; // no barrier pending
  if (knobs['arm64.lazy_no_dsb']) {
    // BUG (injected): the deferred barrier is dropped. The section's stores stay
    // in the store buffer, unordered with respect to the TLBI that follows.
    a.unordered = true;
    return;
  }
  dsb_ishst(cpu); // emit_pte_barriers
  cpu.stat(ST_BATCH_FLUSHES);
}

// ---- kernel page tables (init_mm) ---------------------------------------------------

/**
 * flush_tlb_kernel_range (arch/arm64/include/asm/tlbflush.h): DSB ISHST; TLBI
 * VAALE1IS per page (all ASIDs: kernel entries are global; TLBI VMALLE1IS from
 * MAX_DVM_OPS pages on, flush_tlb_all); DSB ISH; ISB. A broadcast: no IPIs.
 */
function flush_tlb_kernel_range(start: number, end: number): void {
  const cpu = current;
  dsb_ishst(cpu);
  const t0 = cpu.now();
  cpu.broadcast_invalidate(KERNEL_ASID, Math.floor(start / PAGE_SIZE), Math.ceil(end / PAGE_SIZE));
  cpu.recordLatency(cpu.now() - t0);
  dsb_ish(cpu);
  cpu.stat(ST_FLUSH_RANGE);
  cpu.ring.log(EV.FLUSH_LOCAL, start, Math.ceil((end - start) / PAGE_SIZE));
}

/**
 * is_spurious_el1_translation_fault (arch/arm64/mm/fault.c): for a translation
 * fault taken from EL1, AT S1E1R the address (with interrupts off) and, if the
 * walk now succeeds, call the fault spurious: the access is retried. The AT is a
 * walk of the tables in memory: this CPU's own PTE store still waiting for its
 * DSB (the pending store of queue_pte_barriers, held in Arm64Cpu.sb) is not
 * visible to it, as it was not to the access. Written for the case of a mapping
 * made by another CPU (commit 42f91093b043 "arm64: mm: Ignore spurious
 * translation faults taken from the kernel").
 */
function is_spurious_kernel_fault(cpu: Cpu, va: number, _write: boolean): boolean {
  return walk_kernel(cpu, va, Math.floor(va / PAGE_SIZE), false) >= 0;
}

export const arm64: Arch = {
  name: 'arm64',
  store_order: 'weak', // issue #11: stores to different words may pass each other (src/hw/store_buffer.ts)
  supports_page_table_move: true,
  rcu_table_free: true, // select MMU_GATHER_RCU_TABLE_FREE (arch Kconfig)
  defers: 'the DSB ISHST; ISB after a valid kernel PTE store (queue_pte_barriers): such stores wait in a per-CPU store buffer (read back locally) until leave, a TLB flush or a context switch; user PTE stores: nothing (they have no barrier of their own)',
  invalidation: 'broadcast TLBI by VA+ASID (the whole ASID from 512 pages) between DSB ISHST and DSB ISH: no IPIs, every CPU purges at its next instruction boundary',
  initHost(host: Host): void {
    initHostCommon(host); // invalidation is by hardware broadcast; the only IPI is tlb_remove_table_sync's
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
  flush_tlb_mm_range,
  flush_tlb_mm,
  flush_tlb_local_page: native.flush_tlb_local_page,
  switch_mm_irqs_off,
  enter_lazy_tlb,
  leave_mm: native.leave_mm,
  arch_enter_lazy_mmu_mode() {},
  arch_enter_lazy_mmu_mode_fast_pte_range() {}, // no range-specific behaviour on arm64
  arch_leave_lazy_mmu_mode,
  arch_flush_lazy_mmu_mode: arch_leave_lazy_mmu_mode, // emit the pending barrier, stay in the mode
  flush_tlb_kernel_range,
  set_pte_kernel: (ptep: number, pte: number) => set_pte_at(-1, 0, ptep, pte), // __set_pte_complete: queue_pte_barriers for a valid kernel PTE
  ptep_get_and_clear_kernel: (ptep: number) => ptep_get_and_clear(-1, 0, ptep),
  is_spurious_kernel_fault,
};
