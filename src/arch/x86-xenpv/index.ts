// x86-64 Xen PV guest (arch/x86/xen/mmu_pv.c, multicalls.c, enlighten_pv.c),
// (xen_enter_lazy_mmu, xen_leave_lazy_mmu, xen_mc_flush; docs/kernel-rules.md#tlb-observers):
// the hardware, the TLBs, the IPI
// shootdown (flush_tlb_mm_range) and switch_mm are x86's, but the guest's page
// tables are read-only to it and every PTE store is a hypercall (mmu_update).
//
// In lazy MMU mode (the per-CPU xen_lazy_mode is XEN_LAZY_MMU) PTE stores are not
// issued: they are queued in the per-CPU multicall buffer and issued together,
// as one hypercall, when the buffer is full, at arch_leave_lazy_mmu_mode and at
// arch_flush_lazy_mmu_mode. Until then the page tables in memory hold the old
// values: every walker, the local CPU's included, sees them, and so does
// ptep_get() (the read hazard, reported as a lazy-mmu-contract violation).

import { type Cpu, current } from '../../hw/cpu.ts';
import { ST_BATCHED, ST_BATCH_FLUSHES, PAGE_SHIFT } from '../../hw/layout.ts';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { knobs } from '../../inject/knobs.ts';
import { is_lazy_mmu_mode_active } from '../../mm/lazy_mmu.ts';
import type { Arch } from '../arch.ts';
import { clear_then_flush } from '../generic.ts';
import {
  x86, TLB_FLUSH_ALL, flush_tlb_mm_range as x86_flush_tlb_mm_range, switch_mm_irqs_off as x86_switch_mm_irqs_off, enter_lazy_tlb as x86_enter_lazy_tlb,
} from '../x86/index.ts';

/** enum xen_lazy_mode (per CPU). XEN_LAZY_CPU (the context switch's own batching) is not modelled. */
export const XEN_LAZY_NONE = 0;
export const XEN_LAZY_MMU = 1;

/**
 * MC_BATCH of arch/x86/xen/multicalls.c: the per-CPU multicall buffer has 32
 * entries and MC_BATCH * 16 bytes of argument space. Consecutive PTE updates
 * are folded into one mmu_update multicall (xen_extend_mmu_update) whose
 * arguments are 16-byte struct mmu_update records, so the argument space, and
 * with it the buffer, is full after 32 PTE updates: one hypercall per 32 updates.
 */
export const XEN_MC_BATCH = 32;

/** mmu_update commands: a plain store, or one that keeps the accessed/dirty bits the hardware set meanwhile. */
export const MMU_NORMAL_PT_UPDATE = 0;
export const MMU_PT_UPDATE_PRESERVE_AD = 1;

/** Per-CPU Xen state, in cpu.arch: xen_lazy_mode and the multicall buffer (mc_buffer). */
export class XenPvCpu {
  xen_lazy_mode = XEN_LAZY_NONE;
  /** queued mmu_update entries */
  n = 0;
  readonly ptep = new Int32Array(XEN_MC_BATCH);
  readonly val = new Int32Array(XEN_MC_BATCH);
  readonly cmd = new Uint8Array(XEN_MC_BATCH);
}

/** cpu.arch, created on first use (initHost runs before the host's CPUs exist). */
export function xen_cpu(cpu: Cpu): XenPvCpu {
  let s = cpu.arch as XenPvCpu | undefined;
  if (s === undefined) {
    s = new XenPvCpu();
    cpu.arch = s;
  }
  return s;
}

/**
 * xen_get_lazy_mode: the per-CPU mode, NONE in interrupt context. With the
 * generic hooks balanced this is exactly is_lazy_mmu_mode_active(); it is the
 * per-CPU mode, not the task state, that decides whether a store is queued.
 */
function xen_get_lazy_mode(cpu: Cpu, s: XenPvCpu): number {
  return cpu.in_interrupt() ? XEN_LAZY_NONE : s.xen_lazy_mode;
}

function bug(cpu: Cpu, message: string): void {
  cpu.host.hooks.violation({ kind: 'lazy-mmu-contract', cpu: cpu.id, message: `cpu ${cpu.id} task ${cpu.curTask}: ${message}` });
}

function apply(I: Int32Array, ptep: number, val: number, cmd: number): void {
  if (cmd === MMU_NORMAL_PT_UPDATE) {
    Atomics.store(I, ptep, val);
    return;
  }
  // MMU_PT_UPDATE_PRESERVE_AD: the hypervisor keeps the A/D bits a walker set
  // in the entry after the guest read it.
  for (;;) {
    const cur = Atomics.load(I, ptep);
    const nv = cur & _PAGE_PRESENT ? val | (cur & (_PAGE_ACCESSED | _PAGE_DIRTY)) : val;
    if (Atomics.compareExchange(I, ptep, cur, nv) === cur) return;
  }
}

/**
 * xen_mc_flush: issue the queued updates as one multicall. The hypervisor
 * applies them in order; other CPUs may observe the progress (hw_point: delays,
 * no interrupts inside the hypercall).
 */
export function xen_mc_flush(cpu: Cpu, s: XenPvCpu): void {
  const n = s.n;
  if (n === 0) return;
  const I = cpu.I;
  for (let i = 0; i < n; i++) {
    cpu.hw_point();
    apply(I, s.ptep[i], s.val[i], s.cmd[i]);
  }
  s.n = 0;
  cpu.stat(ST_BATCH_FLUSHES); // one hypercall
}

/** __xen_mc_entry + xen_extend_mmu_update: a full buffer is issued before the new entry goes in. */
function xen_queue(cpu: Cpu, s: XenPvCpu, ptep: number, val: number, cmd: number): void {
  if (s.n === XEN_MC_BATCH) xen_mc_flush(cpu, s);
  const i = s.n++;
  s.ptep[i] = ptep;
  s.val[i] = val;
  s.cmd[i] = cmd;
  cpu.stat(ST_BATCHED);
}

/** Index of the last queued update of ptep, or -1. */
function queued(s: XenPvCpu, ptep: number): number {
  for (let i = s.n - 1; i >= 0; i--) if (s.ptep[i] === ptep) return i;
  return -1;
}

/** A read of an entry whose update is still in the buffer: it returns what memory holds, the old value. */
function read_queued(cpu: Cpu, ptep: number, v: number): number {
  const s = cpu.arch as XenPvCpu | undefined;
  if (s !== undefined && s.n > 0) {
    const i = queued(s, ptep);
    if (i >= 0) {
      bug(cpu, `read of a PTE whose update is still queued: memory holds the old value ` +
        `(ptep ${ptep}: memory 0x${(v >>> 0).toString(16)}, queued 0x${(s.val[i] >>> 0).toString(16)}; Xen PV multicall not issued yet)`);
    }
  }
  return v;
}

/** In lazy MMU mode on this CPU: the per-CPU state, else null (the store is issued at once). */
function lazy(cpu: Cpu): XenPvCpu | null {
  const s = cpu.arch as XenPvCpu | undefined;
  if (s === undefined || xen_get_lazy_mode(cpu, s) !== XEN_LAZY_MMU) return null;
  return s;
}

export function arch_enter_lazy_mmu_mode(): void {
  const cpu = current;
  const s = xen_cpu(cpu);
  // enter_lazy(): entering while the per-CPU mode is not NONE is a BUG in Xen.
  if (s.xen_lazy_mode !== XEN_LAZY_NONE) bug(cpu, 'BUG: Xen enter_lazy(XEN_LAZY_MMU) while the per-CPU lazy mode is already MMU');
  s.xen_lazy_mode = XEN_LAZY_MMU;
}

export function arch_leave_lazy_mmu_mode(): void {
  const cpu = current;
  const s = xen_cpu(cpu);
  if (s.xen_lazy_mode !== XEN_LAZY_MMU) bug(cpu, 'BUG: Xen leave_lazy(XEN_LAZY_MMU) while the per-CPU lazy mode is not MMU');
  if (knobs['xenpv.leave_without_flush']) s.n = 0; // BUG (injected): the queued updates are dropped, never issued
  else xen_mc_flush(cpu, s);
  s.xen_lazy_mode = XEN_LAZY_NONE;
}

/** xen_flush_lazy_mmu: leave then re-enter, when in the mode. */
export function arch_flush_lazy_mmu_mode(): void {
  const s = xen_cpu(current);
  if (s.xen_lazy_mode === XEN_LAZY_MMU) {
    arch_leave_lazy_mmu_mode();
    arch_enter_lazy_mmu_mode();
  }
}

/**
 * xen_start_context_switch: a CPU in lazy MMU mode leaves it (issuing the
 * queue) before switching. Our context_switch has already made `next` current
 * when the arch hook runs, which does not matter: only the per-CPU mode is read.
 */
function xen_start_context_switch(cpu: Cpu): void {
  const s = cpu.arch as XenPvCpu | undefined;
  if (s !== undefined && s.xen_lazy_mode === XEN_LAZY_MMU) {
    arch_leave_lazy_mmu_mode();
    if (cpu.prevTask >= 0) tifLazyMmuUpdates.add(cpu.prevTask); // set_ti_thread_flag(prev, TIF_LAZY_MMU_UPDATES)
  }
}
/** TIF_LAZY_MMU_UPDATES of each task (a task never changes host thread, so a per-thread set is enough). */
const tifLazyMmuUpdates = new Set<number>();

/**
 * xen_end_context_switch: re-enter lazy MMU mode if the incoming task is in a
 * section. As after commit 291b3abed657, this reads the generic task state
 * (is_lazy_mmu_mode_active() of the task now current), which is what opens the
 * window reported against that commit ("x86/xen: Tolerate nested XEN_LAZY_MMU
 * entering/leaving", Juergen Gross, May 2026): a task preempted between its enable_count increment and
 * its arch_enter_lazy_mmu_mode() is entered here, then enters again: the BUG.
 */
function xen_end_context_switch(): void {
  // issue #11: the default is the fix proposed for that report, going back to Xen's own
  // per-task flag (arch/x86/xen/enlighten_pv.c before 291b3abed657:
  // test_and_clear_ti_thread_flag(next, TIF_LAZY_MMU_UPDATES)), which is set only when the
  // CPU really was in XEN_LAZY_MMU at switch-out; the knob restores 291b3abed657.
  if (knobs['xenpv.ctxsw_task_lazy_state']) {
    if (is_lazy_mmu_mode_active()) arch_enter_lazy_mmu_mode();
  } else if (tifLazyMmuUpdates.delete(current.curTask)) arch_enter_lazy_mmu_mode();
}

export const x86xenpv: Arch = {
  ...x86,
  name: 'x86-xenpv',
  supports_page_table_move: true,
  rcu_table_free: true, // select MMU_GATHER_RCU_TABLE_FREE (arch Kconfig)
  defers: 'PTE stores (set_pte_at, clears, protection changes; kernel set_pte too) queued in a per-CPU 32-entry multicall buffer, issued as one hypercall when full, at leave and at flush: memory keeps the old PTEs meanwhile',
  invalidation: 'as x86: IPIs to the CPUs of mm_cpumask running the mm; the queued updates are issued before any TLB flush (a Xen flush is a multicall queued behind them)',
  ptep_get(ptep) {
    const cpu = current;
    cpu.sched_point();
    return read_queued(cpu, ptep, Atomics.load(cpu.I, ptep));
  },
  set_pte_at(_mm, _addr, ptep, pte) {
    const cpu = current;
    cpu.sched_point();
    const s = lazy(cpu);
    if (s !== null) xen_queue(cpu, s, ptep, pte, MMU_NORMAL_PT_UPDATE);
    else Atomics.store(cpu.I, ptep, pte);
  },
  /**
   * In lazy mode: return the current (memory) value and queue the clear, the
   * generic "read, then pte_clear()" form, pte_clear being a queued store on Xen
   * PV. Choices and consequences: the entry stays present, and usable by every
   * walker, until the multicall is issued; accessed/dirty bits a walker sets
   * meanwhile are not in the returned value (a plain clear is not PRESERVE_AD).
   * Outside lazy mode: an atomic exchange. (Unverified: on a real Xen PV guest
   * x86's ptep_get_and_clear may be a native xchg on the read-only table that
   * the hypervisor traps and emulates, i.e. never batched; queueing is the
   * pessimistic model, the old entry staying usable until the issue.)
   */
  ptep_get_and_clear(_mm, _addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const s = lazy(cpu);
    if (s === null) return Atomics.exchange(cpu.I, ptep, 0);
    const v = read_queued(cpu, ptep, Atomics.load(cpu.I, ptep));
    xen_queue(cpu, s, ptep, 0, MMU_NORMAL_PT_UPDATE);
    return v;
  },
  ptep_set_wrprotect(_mm, _addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const s = lazy(cpu);
    if (s === null) {
      Atomics.and(cpu.I, ptep, ~_PAGE_RW);
      return;
    }
    const v = read_queued(cpu, ptep, Atomics.load(cpu.I, ptep));
    xen_queue(cpu, s, ptep, v & ~_PAGE_RW, MMU_PT_UPDATE_PRESERVE_AD);
  },
  ptep_set_access_flags(_mm, _addr, ptep, pte) {
    const cpu = current;
    cpu.sched_point();
    const s = lazy(cpu);
    if (s !== null) xen_queue(cpu, s, ptep, pte, MMU_NORMAL_PT_UPDATE);
    else Atomics.store(cpu.I, ptep, pte);
  },
  /**
   * xen_ptep_modify_prot_start only reads the entry (no clear): the commit is an
   * MMU_PT_UPDATE_PRESERVE_AD update, so A/D bits set in between are kept.
   */
  ptep_modify_prot_start(_mm, _addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    return read_queued(cpu, ptep, Atomics.load(cpu.I, ptep));
  },
  ptep_modify_prot_commit(_mm, _addr, ptep, _old, pte) {
    const cpu = current;
    cpu.sched_point();
    const s = lazy(cpu);
    if (s !== null) xen_queue(cpu, s, ptep, pte, MMU_PT_UPDATE_PRESERVE_AD);
    else apply(cpu.I, ptep, pte, MMU_PT_UPDATE_PRESERVE_AD);
  },
  ptep_clear_flush(mm, addr, ptep) {
    return clear_then_flush(x86xenpv, mm, addr, ptep);
  },
  pte_memory_stale(ptep) {
    const s = current.arch as XenPvCpu | undefined;
    return s !== undefined && s.n > 0 && queued(s, ptep) >= 0;
  },

  /**
   * x86's IPI shootdown, after issuing this CPU's queued updates: on Xen PV the
   * flush is itself a multicall (MMUEXT_TLB_FLUSH_MULTI / INVLPG_MULTI) queued
   * behind the pending updates, so a flush never overtakes them; a flush that
   * ran first would let walkers refill from the old entries. (Generic code
   * flushes after leaving lazy mode, where the queue is already empty.)
   */
  flush_tlb_mm_range(mm, start, end, strideShift, freedTables) {
    const s = current.arch as XenPvCpu | undefined;
    if (s !== undefined && s.n > 0) xen_mc_flush(current, s);
    x86_flush_tlb_mm_range(mm, start, end, strideShift, freedTables);
  },
  flush_tlb_mm(mm) {
    x86xenpv.flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, false);
  },

  switch_mm_irqs_off(cpu, prev, next) {
    xen_start_context_switch(cpu);
    x86_switch_mm_irqs_off(cpu, prev, next);
    xen_end_context_switch();
  },
  enter_lazy_tlb(cpu) {
    xen_start_context_switch(cpu);
    x86_enter_lazy_tlb(cpu);
    xen_end_context_switch();
  },

  /**
   * set_pte_at(&init_mm, ...) (vmap_pages_pte_range): set_pte is a paravirt op,
   * xen_set_pte -> __xen_set_pte -> xen_batched_set_pte (arch/x86/xen/mmu_pv.c),
   * which queues the update whenever xen_get_lazy_mode() is XEN_LAZY_MMU, without
   * looking at the mm: a kernel PTE stored in a lazy section is queued like a
   * user one and reaches memory (and the walkers) at leave, at a flush, when the
   * buffer is full or at a context switch. In interrupt context xen_get_lazy_mode()
   * is XEN_LAZY_NONE: a handler's store is one mmu_update hypercall at once.
   */
  set_pte_kernel(ptep, pte) {
    x86xenpv.set_pte_at(-1, 0, ptep, pte);
  },
  /**
   * ptep_get_and_clear(&init_mm, ...) (vunmap_pte_range): x86's
   * ptep_get_and_clear is native_ptep_get_and_clear (arch/x86/include/asm/pgtable.h),
   * not a paravirt op: an xchg on the read-only page table, which Xen traps and
   * emulates at once. Never queued, so modelled as the exchange it is (the user
   * path above queues its clears: the pessimistic choice written there).
   */
  ptep_get_and_clear_kernel(ptep) {
    const cpu = current;
    cpu.sched_point();
    cpu.hotHint = 1;
    return Atomics.exchange(cpu.I, ptep, 0);
  },

  arch_enter_lazy_mmu_mode,
  /** Xen batches every update of the section: the range is not used. */
  arch_enter_lazy_mmu_mode_fast_pte_range() {
    arch_enter_lazy_mmu_mode();
  },
  arch_leave_lazy_mmu_mode,
  arch_flush_lazy_mmu_mode,
  /** a PV guest has no PSE: no transparent huge pages, no PUD leaves (faults fall back to PTEs) */
  has_transparent_hugepage: false,
};
