// Native PTE accessors: every update goes straight to memory with one Atomics
// operation. Architectures spread this object and override what they defer.

import { type Cpu, current } from '../hw/cpu.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../hw/pte.ts';
import {
  PAGE_SHIFT, PAGE_SIZE, CPUMASK_WORDS, ST_IPI_RECV, KERNEL_ASID, CC_INFO_START_F, CC_INFO_END_F, cpuCtl, fIndex,
} from '../hw/layout.ts';
import { type Arch, IPI_TLB_REMOVE_TABLE_SYNC, IPI_FLUSH_TLB_KERNEL } from './arch.ts';
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
  host.hooks.ipi[IPI_FLUSH_TLB_KERNEL] = do_kernel_range_flush;
}

/** do_kernel_range_flush (arch/x86/mm/tlb.c), on the target: drop this CPU's global entries of the sender's range. */
function do_kernel_range_flush(cpu: Cpu, sender: number): void {
  const F = cpu.V.F;
  const info = cpuCtl(cpu.V.L, sender, 0);
  const start = F[fIndex(info + CC_INFO_START_F)];
  const end = F[fIndex(info + CC_INFO_END_F)];
  cpu.tlb.flushRange(KERNEL_ASID, Math.floor(start / PAGE_SIZE), Math.ceil(end / PAGE_SIZE));
}

const kernelTargets = new Int32Array(256);
/**
 * flush_tlb_kernel_range, x86 (arch/x86/mm/tlb.c): on_each_cpu(do_kernel_range_flush
 * or do_flush_tlb_all): this CPU, then an IPI to every other online CPU, lazy
 * ones included (kernel mappings are global), and wait for all of them.
 */
export function flush_tlb_kernel_range_ipi(start: number, end: number): void {
  const cpu = current;
  const { F, L } = cpu.V;
  F[fIndex(cpu.ctl + CC_INFO_START_F)] = start;
  F[fIndex(cpu.ctl + CC_INFO_END_F)] = end;
  do_kernel_range_flush(cpu, cpu.id);
  let n = 0;
  for (let t = 0; t < L.shape.cpus; t++) if (t !== cpu.id && cpu.exists(t)) kernelTargets[n++] = t;
  if (n > 0) cpu.shootdown(-1, kernelTargets, n, IPI_FLUSH_TLB_KERNEL);
}

/**
 * flush_tlb_kernel_range by a broadcast invalidation (powerpc tlbie, s390
 * __tlb_flush_global): every CPU purges at its next instruction boundary,
 * whatever its interrupt state.
 */
export function flush_tlb_kernel_range_broadcast(start: number, end: number): void {
  current.broadcast_invalidate(KERNEL_ASID, Math.floor(start / PAGE_SIZE), Math.ceil(end / PAGE_SIZE));
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
