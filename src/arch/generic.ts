// Native PTE accessors: every update goes straight to memory with one Atomics
// operation. Architectures spread this object and override what they defer.

import { type Cpu, current } from '../hw/cpu.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../hw/pte.ts';
import { PAGE_SHIFT, PAGE_SIZE, CPUMASK_WORDS, ST_IPI_RECV } from '../hw/layout.ts';
import { type Arch, IPI_TLB_REMOVE_TABLE_SYNC } from './arch.ts';
import type { Host } from '../hw/cpu.ts';

/**
 * IPI handlers every arch has (initHost calls this): tlb_remove_table_smp_sync
 * does nothing, its delivery is the point. It stands for an RCU grace period
 * (call_rcu in the kernel, no interrupt), so it is not counted as an IPI.
 */
export function initHostCommon(host: Host): void {
  host.hooks.ipi[IPI_TLB_REMOVE_TABLE_SYNC] = (cpu) => {
    cpu.I[cpu.st + ST_IPI_RECV]--;
  };
}

export const native = {
  ptep_get(ptep: number): number {
    current.sched_point();
    return Atomics.load(current.I, ptep);
  },
  set_pte_at(_mm: number, _addr: number, ptep: number, pte: number): void {
    current.sched_point();
    current.hotHint = 1; // the next scheduling point follows a PTE write (det.ts hot preemption)
    Atomics.store(current.I, ptep, pte);
  },
  ptep_get_and_clear(_mm: number, _addr: number, ptep: number): number {
    current.sched_point();
    current.hotHint = 1; // the next scheduling point follows a PTE write (det.ts hot preemption)
    return Atomics.exchange(current.I, ptep, 0);
  },
  ptep_set_wrprotect(_mm: number, _addr: number, ptep: number): void {
    current.sched_point();
    current.hotHint = 1; // the next scheduling point follows a PTE write (det.ts hot preemption)
    Atomics.and(current.I, ptep, ~_PAGE_RW);
  },
  ptep_set_access_flags(_mm: number, _addr: number, ptep: number, pte: number): void {
    current.sched_point();
    Atomics.store(current.I, ptep, pte);
  },
  ptep_modify_prot_start(_mm: number, _addr: number, ptep: number): number {
    current.sched_point();
    current.hotHint = 1; // the next scheduling point follows a PTE write (det.ts hot preemption)
    return Atomics.exchange(current.I, ptep, 0);
  },
  ptep_modify_prot_commit(_mm: number, _addr: number, ptep: number, _old: number, pte: number): void {
    current.sched_point();
    Atomics.store(current.I, ptep, pte);
  },
  pte_memory_stale(_ptep: number): boolean {
    return false;
  },
  /** drop one page from this CPU's TLB only (the spurious-fault fix-up) */
  flush_tlb_local_page(cpu: Cpu, va: number): void {
    cpu.tlb.flushOne(cpu.asid, Math.floor(va / PAGE_SIZE));
  },
  /** the mm is going away: a CPU that still has it loaded switches to init_mm */
  leave_mm(cpu: Cpu, mm: number): void {
    if (cpu.loadedMm === mm) cpu.setLoaded(-1, false);
  },
} satisfies Partial<Arch>;

/** The CPUs in an mm_cpumask, into `out`; returns how many. */
export function mm_cpumask_cpus(I: Int32Array, maskBase: number, out: Int32Array): number {
  let n = 0;
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    let bits = Atomics.load(I, maskBase + w);
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits);
      bits &= ~(1 << b);
      out[n++] = w * 32 + b;
    }
  }
  return n;
}

/** ptep_clear_flush for arches whose flush_tlb_mm_range does the invalidation (x86, arm64). */
export function clear_then_flush(arch: Arch, mm: number, addr: number, ptep: number): number {
  const old = arch.ptep_get_and_clear(mm, addr, ptep);
  if (old & _PAGE_PRESENT) arch.flush_tlb_mm_range(mm, addr, addr + PAGE_SIZE, PAGE_SHIFT, false);
  return old;
}
