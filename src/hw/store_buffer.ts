// Per-CPU store buffers for the kernel's lockless shared words.
//
// Every simulated word is otherwise sequentially consistent (Atomics). Real
// CPUs are not: on x86 (TSO) a CPU's store sits in its store buffer while its
// later loads already read memory, so another CPU can see the load before the
// store; the CPU itself sees its own store at once (store-to-load
// forwarding). Stores leave the buffer in program order on x86; arm64 may also
// reorder them with each other unless a barrier orders them ("weak" below).
//
// Only the sites the kernel writes with plain stores or WRITE_ONCE on words
// other CPUs read without a lock go through here (sb_store / sb_load); every
// such site names its kernel source. Lock-protected data, page-table entries
// and user-space accesses stay sequentially consistent, and the TLB-hit access
// path does not look at the buffer at all.
//
// The buffer drains (every entry reaches memory, in order):
//  - smp_mb() and the locked read-modify-writes that imply it (callers use sb_drain);
//  - lock acquire and release (src/hw/locks.ts: x86 takes a lock with a LOCK-prefixed
//    instruction; a release is a plain store that must not pass the earlier ones, so it
//    drains them: the release becomes visible no earlier than it could in hardware);
//  - interrupt entry (Cpu.handleIpis) and context switch (src/mm/mmu_context.ts: the
//    rq lock and smp_mb__after_spinlock() in kernel/sched/core.c __schedule);
//  - on its own: at each scheduling point of its CPU, the oldest entry drains with
//    probability 1/4 (the CPU's own rng, so a deterministic run replays exactly).
//    A store can therefore stay buffered across any number of scheduling points of
//    other CPUs: hardware bounds that time, the architecture does not, so this
//    allows at least every interleaving the hardware does.

import type { Cpu } from './cpu.ts';
import { ST_SB_STORES, ST_SB_PASSED, ST_SB_FORWARDED, ST_SMP_MB } from './layout.ts';

/** Entries per CPU; a store into a full buffer first drains the oldest. */
export const SB_ENTRIES = 8;

/** 'tso': entries drain in program order (x86, s390, sparc64 TSO); 'weak': any order (arm64, powerpc) unless fenced. */
export type StoreOrder = 'tso' | 'weak';
let order: StoreOrder = 'tso';
/** Chosen per run by the arch (src/arch/arch.ts users call this at host set-up); tests set it directly. */
export function set_store_order(o: StoreOrder): void {
  order = o;
}
/** The order in force on this thread's CPUs. */
export function store_order(): StoreOrder {
  return order;
}
/**
 * Lock acquire: on x86 (TSO) a LOCK-prefixed RMW, a full barrier: the buffer drains. On
 * arm64 an acquire (LDAXR/CASA in queued_spin_lock, atomic_long_add_return_acquire in
 * down_read) orders only what comes after it: earlier plain stores may still be in the
 * buffer after it (Documentation/memory-barriers.txt, "ACQUIRE operations"), and drain at
 * the release (STLR: every earlier access is observed first) or a barrier.
 */
export function sb_acquire(cpu: Cpu): void {
  if (order === 'tso') sb_drain(cpu);
}
/** false: stores go straight to memory (the model before store buffers; used by tests to compare). */
let enabled = true;
export function set_store_buffers(on: boolean): void {
  enabled = on;
}

/** A plain/WRITE_ONCE store of a lockless shared word: buffered. */
export function sb_store(cpu: Cpu, idx: number, value: number): void {
  if (!enabled) {
    Atomics.store(cpu.I, idx, value);
    return;
  }
  // a store to a word already buffered replaces nothing: both reach memory in turn
  if (cpu.sbN === SB_ENTRIES) drain_one(cpu, 0);
  cpu.sbIdx[cpu.sbN] = idx;
  cpu.sbVal[cpu.sbN] = value;
  cpu.sbN++;
  cpu.I[cpu.st + ST_SB_STORES]++;
}

/** A READ_ONCE/plain load by cpu: its own newest buffered store to idx, else memory. */
export function sb_load(cpu: Cpu, idx: number): number {
  for (let k = cpu.sbN - 1; k >= 0; k--) {
    if (cpu.sbIdx[k] === idx) {
      cpu.I[cpu.st + ST_SB_FORWARDED]++;
      return cpu.sbVal[k];
    }
  }
  if (cpu.sbN !== 0) cpu.I[cpu.st + ST_SB_PASSED]++; // this load passes a buffered store
  return Atomics.load(cpu.I, idx);
}

/** Every buffered store reaches memory, oldest first (smp_mb and the events listed above). */
export function sb_drain(cpu: Cpu): void {
  const I = cpu.I;
  for (let k = 0; k < cpu.sbN; k++) Atomics.store(I, cpu.sbIdx[k], cpu.sbVal[k]);
  cpu.sbN = 0;
}

/** smp_mb(): a full barrier (on x86 a LOCK-prefixed no-op, arch/x86/include/asm/barrier.h). */
export function smp_mb(cpu: Cpu): void {
  if (cpu.sbN !== 0) {
    cpu.I[cpu.st + ST_SMP_MB]++;
    sb_drain(cpu);
  }
}

/** smp_wmb() / smp_store_release ordering of earlier stores: on TSO a compiler barrier; under 'weak' the earlier stores drain. */
export function smp_wmb(cpu: Cpu): void {
  if (order === 'weak' && cpu.sbN !== 0) sb_drain(cpu);
}

function drain_one(cpu: Cpu, k: number): void {
  Atomics.store(cpu.I, cpu.sbIdx[k], cpu.sbVal[k]);
  for (let j = k + 1; j < cpu.sbN; j++) {
    cpu.sbIdx[j - 1] = cpu.sbIdx[j];
    cpu.sbVal[j - 1] = cpu.sbVal[j];
  }
  cpu.sbN--;
}

/**
 * At a scheduling point of cpu with a non-empty buffer: maybe one entry drains (the oldest
 * under TSO; under weak any entry, except that stores to one word stay in program order:
 * coherence, which every architecture keeps).
 */
export function sb_tick(cpu: Cpu): void {
  if ((cpu.rng.u32() & 3) !== 0) return;
  if (order === 'tso') {
    drain_one(cpu, 0);
    return;
  }
  let k = cpu.rng.u32() % cpu.sbN;
  for (let j = 0; j < k; j++) {
    if (cpu.sbIdx[j] === cpu.sbIdx[k]) {
      k = j; // an older store to the same word goes first
      break;
    }
  }
  drain_one(cpu, k);
}
