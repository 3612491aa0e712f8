// sparc64 (arch/sparc/mm/tlb.c, tsb.c, asm/tlbflush_64.h, kernel/smp_64.c;
// what other CPUs see: docs/kernel-rules.md#tlb-observers).
//
// PTE stores are immediate. Changing a PTE that was valid queues its virtual
// address through tlb_batch_add_one(): outside lazy MMU mode the TSB entry and
// the TLBs are flushed at once (a global single-page flush); inside, the address
// goes into the per-CPU tlb_batch of TLB_BATCH_NR = 192, flushed when full, when
// an address of another mm arrives, and at leave. The simulated TLB stands for
// TSB + TLB. Flushing a batch of one entry is a global page flush (here a
// hardware broadcast); of several, a cross-call smp_flush_tlb_pending to the CPUs
// of mm_cpumask (acknowledged IPIs) while this CPU flushes its own entries.
// flush_tlb_mm/range/page are empty on sparc64: the batch does the work.

import { type Cpu, type Host, current } from '../../hw/cpu.ts';
import {
  cpuCtl, mmWord, fIndex, CC_INFO_MM, CC_INFO_START_F, CC_INFO_END_F, MM_CPUMASK, CPUMASK_WORDS,
  ST_BATCHED, ST_BATCH_FLUSHES, ST_FLUSH_SINGLE, ST_FLUSH_RANGE, ST_FLUSH_FULL, ST_LOCAL_CLEAR, PAGE_SHIFT, PAGE_SIZE,
} from '../../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { EV } from '../../hw/trace.ts';
import { lazy_mmu_preempt_disable, lazy_mmu_preempt_enable } from '../../hw/preempt.ts';
import { knobs } from '../../inject/knobs.ts';
import { is_lazy_mmu_mode_active } from '../../mm/lazy_mmu.ts';
import { type Arch, IPI_FLUSH_TLB_PENDING } from '../arch.ts';
import { x86, TLB_FLUSH_ALL } from '../x86/index.ts';
import { mm_cpumask_cpus } from '../generic.ts';

export const TLB_BATCH_NR = 192;

/** Per-CPU batch (cpu.arch): struct tlb_batch. */
export class tlb_batch {
  mm = -1;
  tlb_nr = 0;
  readonly vaddrs = new Float64Array(TLB_BATCH_NR);
}

export function sparc_batch(cpu: Cpu): tlb_batch {
  let tb = cpu.arch as tlb_batch | undefined;
  if (tb === undefined) {
    tb = new tlb_batch();
    cpu.arch = tb;
  }
  return tb;
}

/**
 * mm_cpumask is this CPU alone (or empty: no CPU ever ran the mm, as at boot and
 * teardown where the other CPUs' threads do not exist): no other TLB can hold
 * its translations. The mask only grows on sparc64 while the context lives.
 */
export function mm_is_local(cpu: Cpu, mm: number): boolean {
  const base = mmWord(cpu.V.L, mm, MM_CPUMASK);
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    const mine = w === cpu.id >> 5 ? 1 << (cpu.id & 31) : 0;
    if ((Atomics.load(cpu.I, base + w) & ~mine) !== 0) return false;
  }
  return true;
}

/**
 * global_flush_tlb_page: one page of mm out of every TSB/TLB, modelled as a
 * hardware broadcast demap (the kernel's smp_flush_tlb_page cross-calls the
 * mask); only the local TLB when the mm is local (as smp_flush_tlb_page does).
 */
export function global_flush_tlb_page(cpu: Cpu, mm: number, vaddr: number): void {
  const vpn = Math.floor(vaddr / PAGE_SIZE);
  const asid = cpu.asidOf(mm);
  if (mm_is_local(cpu, mm)) {
    cpu.tlb.flushOne(asid, vpn);
    cpu.stat(ST_LOCAL_CLEAR);
  } else {
    cpu.broadcast_invalidate(asid, vpn, vpn + 1);
  }
  cpu.ring.log(EV.FLUSH_LOCAL, vaddr, 1);
}

const targets = new Int32Array(256);

/**
 * Cross-call to every other CPU of mm's mm_cpumask, asking it to purge
 * [start, end) of mm (end = TLB_FLUSH_ALL: the whole context), and wait for
 * every acknowledgement. The request is in the sender's CC_INFO words.
 * mm_cpumask on sparc64 only grows while the context lives, so a CPU that has
 * run the mm and switched away (its ASID-tagged entries still cached) is asked too.
 */
function xcall_mm_cpumask(cpu: Cpu, mm: number, start: number, end: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  let n = 0;
  const inMask = mm_cpumask_cpus(I, mmWord(L, mm, MM_CPUMASK), targets);
  for (let k = 0; k < inMask; k++) if (targets[k] !== cpu.id) targets[n++] = targets[k];
  if (n === 0) return;
  Atomics.store(I, cpu.ctl + CC_INFO_MM, mm);
  cpu.V.F[fIndex(cpu.ctl + CC_INFO_START_F)] = start;
  cpu.V.F[fIndex(cpu.ctl + CC_INFO_END_F)] = end;
  cpu.shootdown(mm, targets, n, IPI_FLUSH_TLB_PENDING);
}

/**
 * The cross-call handler (IPI_FLUSH_TLB_PENDING), on the target in interrupt
 * context. The kernel's xcall_flush_tlb_pending gets the sender's vaddr list;
 * the per-CPU request area (CC_INFO, src/hw/layout.ts) has no room for 192
 * addresses, so the sender passes the lowest and highest address and the target
 * purges that whole range of the mm's context: every batched page is in it
 * (pages in between that were not batched are purged too, which is harmless).
 */
export function xcall_flush_tlb_pending(target: Cpu, sender: number): void {
  const I = target.I;
  const F = target.V.F;
  const info = cpuCtl(target.V.L, sender, 0);
  const mm = I[info + CC_INFO_MM]; // a plain load, as the handler's of the sender's request (ordered by the IPI itself)
  const asid = target.asidOf(mm);
  const start = F[fIndex(info + CC_INFO_START_F)];
  const end = F[fIndex(info + CC_INFO_END_F)];
  if (end === TLB_FLUSH_ALL) {
    target.tlb.flushAsid(asid);
    target.stat(ST_FLUSH_FULL);
    target.ring.log(EV.FLUSH_LOCAL, 0, -1);
  } else {
    const v0 = Math.floor(start / PAGE_SIZE);
    const v1 = Math.ceil(end / PAGE_SIZE);
    target.tlb.flushRange(asid, v0, v1);
    target.stat(ST_FLUSH_RANGE);
    target.ring.log(EV.FLUSH_LOCAL, start, v1 - v0);
  }
}

/** smp_flush_tlb_pending: the batch's pages out of this CPU's TLB, and by cross-call out of the others'. */
function smp_flush_tlb_pending(cpu: Cpu, mm: number, nr: number, vaddrs: Float64Array): void {
  const asid = cpu.asidOf(mm);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < nr; i++) {
    const va = vaddrs[i];
    cpu.tlb.flushOne(asid, Math.floor(va / PAGE_SIZE)); // __flush_tlb_pending: the local demaps
    if (va < lo) lo = va;
    if (va > hi) hi = va;
  }
  cpu.stat(ST_FLUSH_SINGLE, nr);
  xcall_mm_cpumask(cpu, mm, lo, hi + PAGE_SIZE);
}

/** flush_tlb_pending: flush this CPU's batch (TSB entries, then TLBs), if it holds anything. */
export function flush_tlb_pending(cpu: Cpu): void {
  const tb = cpu.arch as tlb_batch | undefined;
  if (tb === undefined || tb.tlb_nr === 0) return;
  const nr = tb.tlb_nr;
  if (nr === 1) global_flush_tlb_page(cpu, tb.mm, tb.vaddrs[0]);
  else smp_flush_tlb_pending(cpu, tb.mm, nr, tb.vaddrs);
  tb.tlb_nr = 0;
  cpu.stat(ST_BATCH_FLUSHES);
}

/**
 * tlb_batch_add_one: vaddr's valid PTE in mm has changed. Outside lazy MMU mode
 * flush at once; inside, batch (flushing first if the batch holds another mm,
 * and after if it is full).
 */
export function tlb_batch_add_one(mm: number, vaddr: number): void {
  const cpu = current;
  if (!is_lazy_mmu_mode_active()) {
    global_flush_tlb_page(cpu, mm, vaddr); // flush_tsb_user_page + global_flush_tlb_page
    return;
  }
  const tb = sparc_batch(cpu);
  if (tb.tlb_nr !== 0 && tb.mm !== mm) flush_tlb_pending(cpu);
  if (tb.tlb_nr === 0) tb.mm = mm;
  tb.vaddrs[tb.tlb_nr++] = vaddr;
  cpu.stat(ST_BATCHED);
  if (tb.tlb_nr >= TLB_BATCH_NR) flush_tlb_pending(cpu);
}

/** maybe_tlb_batch_add: only a PTE that was valid can be cached in a TSB or TLB. */
function maybe_tlb_batch_add(mm: number, vaddr: number, orig: number): void {
  if (orig & _PAGE_PRESENT) tlb_batch_add_one(mm, vaddr);
}

export const sparc64: Arch = {
  ...x86, // the native accessors, x86's switch_mm (mask join, ASID reuse check) and local page flush
  name: 'sparc64',
  supports_page_table_move: false,
  rcu_table_free: true, // select MMU_GATHER_RCU_TABLE_FREE (arch Kconfig)
  defers: 'TSB/TLB invalidations of changed PTEs (PTE stores are immediate): queued in a per-CPU 192-address tlb_batch, flushed when full, on another mm, at leave and at flush',
  invalidation: 'at each PTE change a global single-page flush (broadcast), or per batch one cross-call smp_flush_tlb_pending to mm_cpumask (acknowledged IPIs); flush_tlb_mm_range only flushes a pending batch, plus one cross-call when page tables are freed or the whole mm is flushed',
  initHost(host: Host): void {
    x86.initHost(host);
    host.hooks.ipi[IPI_FLUSH_TLB_PENDING] = xcall_flush_tlb_pending;
  },

  // __set_pte_at: store, then maybe_tlb_batch_add(orig). The generic helpers
  // (ptep_get_and_clear, ptep_set_wrprotect, ptep_modify_prot_start,
  // ptep_set_access_flags) all end in set_pte_at on sparc64.
  set_pte_at(mm, addr, ptep, pte) {
    const cpu = current;
    cpu.sched_point();
    maybe_tlb_batch_add(mm, addr, Atomics.exchange(cpu.I, ptep, pte));
  },
  ptep_get_and_clear(mm, addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.exchange(cpu.I, ptep, 0);
    maybe_tlb_batch_add(mm, addr, old);
    return old;
  },
  ptep_set_wrprotect(mm, addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.and(cpu.I, ptep, ~_PAGE_RW);
    if (old & _PAGE_RW) maybe_tlb_batch_add(mm, addr, old); // already read-only: nothing changed
  },
  /** The generic version: a store only when something changes, which goes through set_pte_at (so invalidates). */
  ptep_set_access_flags(mm, addr, ptep, pte) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.exchange(cpu.I, ptep, pte);
    if (old !== pte) maybe_tlb_batch_add(mm, addr, old);
  },
  ptep_modify_prot_start(mm, addr, ptep) {
    return sparc64.ptep_get_and_clear(mm, addr, ptep);
  },
  // ptep_modify_prot_commit: native (the start cleared the entry: nothing to invalidate).

  /**
   * Clear and flush: the kernel's flush_tlb_page is empty on sparc64, and outside
   * lazy mode tlb_batch_add_one has already flushed the page. Inside a section
   * the page would only be batched, so the pending batch is flushed here too:
   * no CPU can use the entry on return, whatever the mode.
   */
  ptep_clear_flush(mm, addr, ptep) {
    const old = sparc64.ptep_get_and_clear(mm, addr, ptep);
    flush_tlb_pending(current);
    return old;
  },

  /**
   * asm/tlbflush_64.h: flush_tlb_mm/range/page are empty; the mmu_gather's
   * tlb_flush is flush_tlb_pending. Every changed PTE was flushed at once or by
   * the batch. Freed page tables wait for the RCU grace period of
   * MMU_GATHER_RCU_TABLE_FREE in src/mm/mmu_gather.ts, as in the kernel.
   */
  flush_tlb_mm_range(_mm, _start, _end, _strideShift, _freedTables) {
    flush_tlb_pending(current);
  },
  flush_tlb_mm(mm) {
    sparc64.flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, false);
  },

  // Enter disables preemption in the kernel (2025 fix): modelled (src/hw/preempt.ts).
  arch_enter_lazy_mmu_mode() {
    lazy_mmu_preempt_disable(current); // issue #11: src/hw/preempt.ts
  },
  arch_enter_lazy_mmu_mode_fast_pte_range() {
    lazy_mmu_preempt_disable(current);
  },
  arch_leave_lazy_mmu_mode() {
    const cpu = current;
    lazy_mmu_preempt_enable(cpu); // issue #11: preempt_enable() (no rescheduling point modelled here)
    const tb = cpu.arch as tlb_batch | undefined;
    if (tb === undefined || tb.tlb_nr === 0) return;
    if (knobs['sparc64.leave_without_flush']) tb.tlb_nr = 0; // BUG (injected): the batch is dropped, never flushed
    else flush_tlb_pending(cpu);
  },
  arch_flush_lazy_mmu_mode() {
    flush_tlb_pending(current);
  },
  /** set_pmd_at's maybe_tlb_batch_add with the huge page shift: outside lazy mode the TSB and TLBs lose the whole huge range at once */
  pmdp_huge_xchg(mm, addr, pmdp, size, val) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.exchange(cpu.I, pmdp, val);
    if (old & _PAGE_PRESENT) {
      const v0 = Math.floor(addr / PAGE_SIZE);
      const asid = cpu.asidOf(mm);
      if (mm_is_local(cpu, mm)) {
        cpu.tlb.flushRange(asid, v0, v0 + size / PAGE_SIZE);
        cpu.stat(ST_LOCAL_CLEAR);
      } else {
        cpu.broadcast_invalidate(asid, v0, v0 + size / PAGE_SIZE);
      }
      cpu.ring.log(EV.FLUSH_LOCAL, addr, size / PAGE_SIZE);
    }
    return old;
  },
};
