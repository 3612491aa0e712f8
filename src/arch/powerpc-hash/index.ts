// powerpc book3s64 with the hash MMU (arch/powerpc/mm/book3s64/hash_tlb.c,
// asm/book3s/64/tlbflush-hash.h; preemption off in a section since commit b9ef323ea168
// "powerpc/64s: Disable preemption in hash lazy mmu mode"; docs/kernel-rules.md#tlb-observers).
//
// Linux PTEs are ordinary memory: every accessor stores at once. The simulated
// TLB stands for HPTE + TLB. Invalidation is tied to PTE changes, not to
// flush_tlb_range: when an accessor changes or clears a PTE that was present
// (one that may have a hash entry, _PAGE_HASHPTE), hpte_need_flush() either
// invalidates that page at once on every CPU (flush_hash_page: tlbie, a
// hardware broadcast, no IPIs), or, inside a lazy MMU section, appends it to the
// per-CPU ppc64_tlb_batch, flushed as one flush_hash_range when full, when an
// entry of another mm arrives, and at leave/flush. Meanwhile every CPU may keep
// translating through the old HPTE/TLB entry, although memory has the new PTE.
// Radix (where the hooks do nothing) is not modelled.

import { type Cpu, current } from '../../hw/cpu.ts';
import { mmWord, MM_CPUMASK, CPUMASK_WORDS, ST_BATCHED, ST_BATCH_FLUSHES, ST_LOCAL_CLEAR, PAGE_SHIFT, PAGE_SIZE, PAGE_OFFSET, KERNEL_ASID } from '../../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../../hw/pte.ts';
import { EV } from '../../hw/trace.ts';
import { lazy_mmu_preempt_disable, lazy_mmu_preempt_enable } from '../../hw/preempt.ts';
import { knobs } from '../../inject/knobs.ts';
import { sb_drain } from '../../hw/store_buffer.ts';
import { is_lazy_mmu_mode_active } from '../../mm/lazy_mmu.ts';
import type { Arch } from '../arch.ts';
import { x86, TLB_FLUSH_ALL } from '../x86/index.ts';

export const PPC64_TLB_BATCH_NR = 192;

/** Per-CPU batch (cpu.arch). The kernel keeps (vpn, real PTE) pairs; the page number is enough here. */
export class ppc64_tlb_batch {
  index = 0;
  mm = -1;
  readonly vpn = new Float64Array(PPC64_TLB_BATCH_NR);
}

export function ppc64_batch(cpu: Cpu): ppc64_tlb_batch {
  let b = cpu.arch as ppc64_tlb_batch | undefined;
  if (b === undefined) {
    b = new ppc64_tlb_batch();
    cpu.arch = b;
  }
  return b;
}

/**
 * The kernel's `local` test (__flush_tlb_pending, hpte_need_flush): mm_cpumask
 * is this CPU alone, so tlbiel (this CPU only) suffices. mm_cpumask here only
 * grows (x86's switch_mm joins it; nothing on hash trims it), a superset of the
 * CPUs that may hold translations. An empty mask (no CPU ever ran the mm: boot,
 * teardown, where the other CPUs' threads do not exist) counts as local too.
 */
export function mm_is_local(cpu: Cpu, mm: number): boolean {
  // init_mm is never thread-local: start_secondary (arch/powerpc/kernel/smp.c) puts
  // every CPU in mm_cpumask(&init_mm) and counts it in inc_mm_active_cpus(&init_mm),
  // so mm_is_thread_local(&init_mm) is false and a kernel HPTE goes with tlbie
  if (mm === cpu.V.L.initMm) return false;
  const base = mmWord(cpu.V.L, mm, MM_CPUMASK);
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    const mine = w === cpu.id >> 5 ? 1 << (cpu.id & 31) : 0;
    if ((Atomics.load(cpu.I, base + w) & ~mine) !== 0) return false;
  }
  return true;
}

/** tlbie over [v0, v1) of mm (v1 = -1: the whole ASID) on every CPU, or tlbiel on this one when the mm is local. */
function tlbie(cpu: Cpu, mm: number, v0: number, v1: number): void {
  if (cpu.sbN !== 0) sb_drain(cpu); // the ptesync before the invalidation orders every earlier store
  // kernel addresses: get_kernel_vsid, i.e. the global entries (KERNEL_ASID) of every CPU
  const asid = mm === cpu.V.L.initMm ? KERNEL_ASID : cpu.asidOf(mm);
  if (mm_is_local(cpu, mm)) {
    if (v1 < 0) cpu.tlb.flushAsid(asid);
    else cpu.tlb.flushRange(asid, v0, v1);
    cpu.stat(ST_LOCAL_CLEAR);
    return;
  }
  const t0 = cpu.now();
  cpu.broadcast_invalidate(asid, v0, v1); // returns when every CPU has purged (tlbie; eieio; tlbsync; ptesync)
  cpu.recordLatency(cpu.now() - t0);
}

/** flush_hash_page: invalidate one page's HPTE and TLB entries on every CPU. */
export function flush_hash_page(cpu: Cpu, mm: number, vpn: number): void {
  tlbie(cpu, mm, vpn, vpn + 1);
  cpu.ring.log(EV.FLUSH_LOCAL, vpn * PAGE_SIZE, 1);
}

/**
 * flush_hash_range: the batch's pages, as one broadcast. One broadcast request
 * carries one contiguous range here, so it covers lowest..highest page of the
 * batch: pages in between that were not batched lose their translations too
 * (harmless, they refill by a walk).
 */
function flush_hash_range(cpu: Cpu, b: ppc64_tlb_batch): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < b.index; i++) {
    const v = b.vpn[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  tlbie(cpu, b.mm, lo, hi + 1);
  cpu.ring.log(EV.FLUSH_LOCAL, lo * PAGE_SIZE, b.index);
}

/** __flush_tlb_pending: one flush_hash_page for a single entry, else one flush_hash_range. */
export function __flush_tlb_pending(cpu: Cpu, b: ppc64_tlb_batch): void {
  if (b.index === 1) flush_hash_page(cpu, b.mm, b.vpn[0]);
  else flush_hash_range(cpu, b);
  b.index = 0;
  cpu.stat(ST_BATCH_FLUSHES);
}

/** flush_tlb_pending: flush this CPU's batch if it holds anything. */
export function flush_tlb_pending(cpu: Cpu): void {
  const b = cpu.arch as ppc64_tlb_batch | undefined;
  if (b !== undefined && b.index !== 0) __flush_tlb_pending(cpu, b);
}

/**
 * hpte_need_flush: the PTE of addr in mm was present (may have a hash entry)
 * and has changed. Outside lazy MMU mode (after Brodsky's series the batch's
 * `active` is is_lazy_mmu_mode_active()) invalidate at once; inside, batch.
 */
export function hpte_need_flush(mm: number, addr: number): void {
  const cpu = current;
  const vpn = Math.floor(addr / PAGE_SIZE);
  if (!is_lazy_mmu_mode_active()) {
    flush_hash_page(cpu, mm, vpn);
    return;
  }
  const b = ppc64_batch(cpu);
  // A batch holds one mm (and one page/segment size: only 4 KiB pages here).
  if (b.index !== 0 && b.mm !== mm) __flush_tlb_pending(cpu, b);
  if (b.index === 0) b.mm = mm;
  b.vpn[b.index++] = vpn;
  cpu.stat(ST_BATCHED);
  if (b.index >= PPC64_TLB_BATCH_NR) __flush_tlb_pending(cpu, b);
}

/**
 * A kernel PTE store over an entry that was present (set_pte_at / ptep_get_and_clear
 * on &init_mm): hash__pte_update calls hpte_need_flush(&init_mm, addr, ...) for
 * an entry with H_PAGE_HASHPTE, and hpte_need_flush does not look at the mm
 * (arch/powerpc/mm/book3s64/hash_tlb.c: the kernel vsid branch, get_kernel_vsid):
 * inside a lazy section the invalidation goes into the per-CPU batch and is
 * done at leave, outside it is a tlbie at once. Memory has the new entry either
 * way; until the batch is flushed every CPU may still translate through the old
 * HPTE/TLB entry. A none entry never had an HPTE: storing over it needs nothing
 * (vmap_pages_pte_range). The linear map is not in Linux page tables on hash: its
 * HPTEs are bolted and DEBUG_PAGEALLOC's hash__kernel_map_pages inserts them
 * (kernel_map_linear_page) and invalidates them at once with a tlbie
 * (kernel_unmap_linear_page -> mmu_hash_ops.hpte_invalidate, not local), never
 * through hpte_need_flush: never batched.
 */
function kernel_pte_changed(old: number, addr: number): void {
  if ((old & _PAGE_PRESENT) === 0) return;
  const cpu = current;
  const mm = cpu.V.L.initMm;
  if (addr >= PAGE_OFFSET) flush_hash_page(cpu, mm, Math.floor(addr / PAGE_SIZE));
  else hpte_need_flush(mm, addr);
}

export const powerpchash: Arch = {
  ...x86, // the native accessors, x86's switch_mm (ASID reuse check) and local page flush
  name: 'powerpc-hash',
  kernel_map_pages_flush: undefined, // hash__kernel_map_pages: the HPTE invalidation is a tlbie (broadcast)
  /**
   * hash__flush_tlb_kernel_range is empty (asm/book3s/64/tlbflush-hash.h): on hash
   * the kernel HPTEs were invalidated when their PTEs changed (kernel_pte_changed),
   * so the purge's and DEBUG_PAGEALLOC's flushes do nothing.
   */
  flush_tlb_kernel_range() {},
  set_pte_kernel(ptep, pte, addr) {
    const cpu = current;
    cpu.sched_point();
    cpu.hotHint = 1;
    kernel_pte_changed(Atomics.exchange(cpu.I, ptep, pte), addr);
  },
  ptep_get_and_clear_kernel(ptep, addr) {
    const cpu = current;
    cpu.sched_point();
    cpu.hotHint = 1;
    const old = Atomics.exchange(cpu.I, ptep, 0);
    kernel_pte_changed(old, addr);
    return old;
  },
  store_order: 'weak', // issue #11: Power may reorder stores to different words (src/hw/store_buffer.ts)
  supports_page_table_move: false,
  rcu_table_free: true, // select MMU_GATHER_RCU_TABLE_FREE (arch Kconfig)
  defers: 'HPTE/TLB invalidations of changed PTEs (PTE stores are immediate): queued in a per-CPU 192-entry ppc64_tlb_batch, flushed when full, on another mm, at leave and at flush',
  invalidation: 'tlbie hardware broadcast at each PTE change (flush_hash_page), or one per batch (flush_hash_range); no IPIs; flush_tlb_mm_range only flushes a pending batch, plus one broadcast when page tables are freed or the whole mm is flushed',
  // Every store goes to memory at once; a present old entry needs its hash entry gone.
  set_pte_at(mm, addr, ptep, pte) {
    const cpu = current;
    cpu.sched_point();
    // set_pte_at must not replace a valid PTE (the kernel warns): if it ever does, invalidate the old one
    const old = Atomics.exchange(cpu.I, ptep, pte);
    if (old & _PAGE_PRESENT) hpte_need_flush(mm, addr);
  },
  ptep_get_and_clear(mm, addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.exchange(cpu.I, ptep, 0);
    if (old & _PAGE_PRESENT) hpte_need_flush(mm, addr);
    return old;
  },
  ptep_set_wrprotect(mm, addr, ptep) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.and(cpu.I, ptep, ~_PAGE_RW);
    if (old & _PAGE_PRESENT && old & _PAGE_RW) hpte_need_flush(mm, addr); // already read-only: nothing changed
  },
  // ptep_set_access_flags: native. It only adds rights (young, dirty, writable):
  // a stale HPTE with fewer rights faults and is updated then, no flush needed.
  ptep_modify_prot_start(mm, addr, ptep) {
    return powerpchash.ptep_get_and_clear(mm, addr, ptep);
  },
  // ptep_modify_prot_commit: native (the entry was cleared by the start: nothing to invalidate).

  /**
   * Clear and make sure no CPU can use the entry on return: hpte_need_flush,
   * then flush_tlb_page, which on hash flushes this CPU's pending batch: outside
   * lazy mode the tlbie has already been done, inside it the batch (this entry
   * included) is flushed now.
   */
  ptep_clear_flush(mm, addr, ptep) {
    const old = powerpchash.ptep_get_and_clear(mm, addr, ptep);
    flush_tlb_pending(current);
    return old;
  },

  /**
   * hash__tlb_flush (arch/powerpc/mm/book3s64/hash_tlb.c) only flushes a pending
   * batch: the leaf invalidations were done at each PTE change, or by the batch.
   * hash__flush_tlb_mm and hash__flush_tlb_range are empty
   * (asm/book3s/64/tlbflush-hash.h). Freed page tables wait for the RCU grace
   * period of MMU_GATHER_RCU_TABLE_FREE in src/mm/mmu_gather.ts, as in the kernel.
   */
  flush_tlb_mm_range(_mm, _start, _end, _strideShift, _freedTables) {
    flush_tlb_pending(current);
  },
  flush_tlb_mm(mm) {
    powerpchash.flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, false);
  },

  // Enter disables preemption in the kernel (b9ef323ea168): modelled (src/hw/preempt.ts).
  arch_enter_lazy_mmu_mode() {
    lazy_mmu_preempt_disable(current); // issue #11: src/hw/preempt.ts
  },
  arch_enter_lazy_mmu_mode_fast_pte_range() {
    lazy_mmu_preempt_disable(current);
  },
  arch_leave_lazy_mmu_mode() {
    const cpu = current;
    lazy_mmu_preempt_enable(cpu); // issue #11: preempt_enable() (no rescheduling point modelled here)
    const b = cpu.arch as ppc64_tlb_batch | undefined;
    if (b === undefined || b.index === 0) return;
    if (knobs['powerpc.leave_without_flush']) b.index = 0; // BUG (injected): the batch is dropped, never flushed
    else __flush_tlb_pending(cpu, b);
  },
  arch_flush_lazy_mmu_mode() {
    flush_tlb_pending(current);
  },
  /** hash__pmdp_huge_get_and_clear and friends: the hash entries of the whole huge range go at once (flush_hash_table_pmd_range) */
  pmdp_huge_xchg(mm, addr, pmdp, size, val) {
    const cpu = current;
    cpu.sched_point();
    const old = Atomics.exchange(cpu.I, pmdp, val);
    if (old & _PAGE_PRESENT) {
      const v0 = Math.floor(addr / PAGE_SIZE);
      tlbie(cpu, mm, v0, v0 + size / PAGE_SIZE);
      cpu.ring.log(EV.FLUSH_LOCAL, addr, size / PAGE_SIZE);
    }
    return old;
  },
};
