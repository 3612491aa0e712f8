// Locks in shared memory: spinlock, rwsem (mmap_lock), seqcount.
//
// Every lock is a word followed by a waiter count. Acquisition spins a little
// (with Atomics.pause, servicing IPIs like a CPU spinning with interrupts on),
// then blocks through Host.block, which sleeps on the host's own futex word;
// a release that sees waiters wakes the hosts blocked on that word. Pure
// spinning starves on 2 cores with dozens of threads; this does not.

import { current } from './cpu.ts';
import { sb_acquire, sb_drain, sb_load, sb_store, smp_wmb } from './store_buffer.ts';
import { ST_LOCK_CONTENDED } from './layout.ts';
import { EV } from './trace.ts';
import { lock_acquire, lock_release } from './lockdep.ts';

const SPINS = 64;

/** A spinlock word holds 0 when free, else the holder's CPU id + 1: that CPU, or -1 when free. */
export const spinlock_holder = (value: number): number => (value > 0 ? value - 1 : -1);

/**
 * spin_lock; spin_lock_nested(lock, subclass) is spin_lock with a lockdep
 * subclass (include/linux/spinlock.h): the subclass only tells lockdep
 * (src/hw/lockdep.ts) that this nesting of two locks of one class is ordered.
 */
export function spin_lock(idx: number, subclass = 0): void {
  if (current.sbN !== 0) sb_acquire(current); // acquire: a locked RMW on x86, acquire-only on arm64 (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  cpu.hotHint = 1; // the next scheduling point holds the lock: a window opens (det.ts hot preemption)
  if (Atomics.compareExchange(I, idx, 0, cpu.id + 1) === 0) {
    cpu.spinDepth++;
    lock_acquire(cpu, idx, subclass, false);
    return;
  }
  I[cpu.st + ST_LOCK_CONTENDED]++;
  cpu.ring.log(EV.LOCK_WAIT, idx, 0);
  const ready = (): boolean => Atomics.load(I, idx) === 0;
  for (let spin = 0; ; spin++) {
    if (Atomics.load(I, idx) === 0 && Atomics.compareExchange(I, idx, 0, cpu.id + 1) === 0) {
      cpu.spinDepth++;
      cpu.ring.log(EV.LOCK_ACQUIRED, idx, 0);
      lock_acquire(cpu, idx, subclass, false);
      return;
    }
    if (cpu.irqOff === 0) cpu.host.pollIpis();
    if (spin < SPINS && cpu.host.sched === null) Atomics.pause();
    else cpu.host.block(idx, ready);
  }
}

export const spin_lock_nested = (idx: number, subclass: number): void => spin_lock(idx, subclass);

export function spin_trylock(idx: number): boolean {
  if (current.sbN !== 0) sb_acquire(current); // acquire: a locked RMW on x86, acquire-only on arm64 (src/hw/store_buffer.ts)
  const cpu = current;
  cpu.sched_point();
  if (Atomics.compareExchange(cpu.I, idx, 0, cpu.id + 1) !== 0) return false;
  cpu.spinDepth++;
  lock_acquire(cpu, idx, 0, true);
  return true;
}

export function spin_unlock(idx: number): void {
  if (current.sbN !== 0) sb_drain(current); // locked RMW / release order (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  lock_release(cpu, idx);
  const owner = Atomics.exchange(I, idx, 0);
  if (owner === cpu.id + 1) cpu.spinDepth--;
  if (owner !== cpu.id + 1) {
    cpu.host.hooks.violation({
      kind: 'lock-misuse', cpu: cpu.id,
      message: `cpu ${cpu.id} released spinlock word ${idx} held by ${owner === 0 ? 'nobody' : `cpu ${spinlock_holder(owner)}`}`,
    });
  }
  if (Atomics.load(I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.hotHint = 1;
  cpu.sched_point();
}

export function spin_is_locked_by_me(idx: number): boolean {
  return Atomics.load(current.I, idx) === current.id + 1;
}

// ---- rwsem: word = reader count, or RWSEM_WRITER; word+1 = waiters; word+2 = writers waiting
export const RWSEM_WRITER = -1;

export function down_read(idx: number, subclass = 0): void {
  if (current.sbN !== 0) sb_acquire(current); // acquire: a locked RMW on x86, acquire-only on arm64 (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  const ready = (): boolean => Atomics.load(I, idx) >= 0 && Atomics.load(I, idx + 2) === 0;
  for (let spin = 0; ; spin++) {
    const v = Atomics.load(I, idx);
    // Readers hold back while a writer waits, so a writer cannot starve.
    if (v >= 0 && Atomics.load(I, idx + 2) === 0 && Atomics.compareExchange(I, idx, v, v + 1) === v) {
      if (spin > 0) cpu.ring.log(EV.LOCK_ACQUIRED, idx, 1);
      lock_acquire(cpu, idx, subclass, false);
      return;
    }
    if (spin === 0) {
      I[cpu.st + ST_LOCK_CONTENDED]++;
      cpu.ring.log(EV.LOCK_WAIT, idx, 1);
    }
    if (cpu.irqOff === 0) cpu.host.pollIpis();
    if (spin < SPINS && cpu.host.sched === null) Atomics.pause();
    else cpu.host.block(idx, ready);
  }
}

/**
 * down_read_trylock: a read lock if it can be had at once. Like the kernel's
 * (kernel/locking/rwsem.c, RWSEM_READ_FAILED_MASK), it fails while a writer
 * holds the lock or waits for it.
 */
export function down_read_trylock(idx: number): boolean {
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  for (;;) {
    const v = Atomics.load(I, idx);
    if (v < 0 || Atomics.load(I, idx + 2) !== 0) return false;
    if (Atomics.compareExchange(I, idx, v, v + 1) === v) {
      lock_acquire(cpu, idx, 0, true);
      return true;
    }
  }
}

export function up_read(idx: number): void {
  if (current.sbN !== 0) sb_drain(current); // locked RMW / release order (src/hw/store_buffer.ts)
  const cpu = current;
  lock_release(cpu, idx);
  const left = Atomics.sub(cpu.I, idx, 1) - 1;
  if (left < 0) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: up_read on rwsem word ${idx} not held for read` });
  }
  if (left === 0 && Atomics.load(cpu.I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.hotHint = 1;
  cpu.sched_point();
}

export function down_write(idx: number, ownerIdx = -1, subclass = 0): void {
  if (current.sbN !== 0) sb_acquire(current); // acquire: a locked RMW on x86, acquire-only on arm64 (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  if (Atomics.compareExchange(I, idx, 0, RWSEM_WRITER) !== 0) {
    I[cpu.st + ST_LOCK_CONTENDED]++;
    cpu.ring.log(EV.LOCK_WAIT, idx, 2);
    Atomics.add(I, idx + 2, 1);
    const ready = (): boolean => Atomics.load(I, idx) === 0;
    for (let spin = 0; ; spin++) {
      if (Atomics.load(I, idx) === 0 && Atomics.compareExchange(I, idx, 0, RWSEM_WRITER) === 0) break;
      if (cpu.irqOff === 0) cpu.host.pollIpis();
      if (spin < SPINS && cpu.host.sched === null) Atomics.pause();
      else cpu.host.block(idx, ready);
    }
    Atomics.sub(I, idx + 2, 1);
    cpu.ring.log(EV.LOCK_ACQUIRED, idx, 2);
  }
  // rwsem_set_owner: the task, not the CPU (a writer preempted under the lock may move)
  if (ownerIdx >= 0) Atomics.store(I, ownerIdx, cpu.curTask >= 0 ? cpu.curTask + 1 : -(cpu.id + 1));
  lock_acquire(cpu, idx, subclass, false);
}

/** down_write_nested (include/linux/rwsem.h): down_write with a lockdep subclass. */
export const down_write_nested = (idx: number, subclass: number, ownerIdx = -1): void => down_write(idx, ownerIdx, subclass);

export function up_write(idx: number, ownerIdx = -1): void {
  if (current.sbN !== 0) sb_drain(current); // locked RMW / release order (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  if (ownerIdx >= 0) Atomics.store(I, ownerIdx, 0);
  lock_release(cpu, idx);
  const v = Atomics.exchange(I, idx, 0);
  if (v !== RWSEM_WRITER) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: up_write on rwsem word ${idx} not held for write (value ${v})` });
  }
  if (Atomics.load(I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.hotHint = 1;
  cpu.sched_point();
}

/** Turn a held write lock into a read lock without letting a writer in between. */
export function downgrade_write(idx: number, ownerIdx = -1): void {
  if (current.sbN !== 0) sb_drain(current); // locked RMW / release order (src/hw/store_buffer.ts)
  const cpu = current;
  const I = cpu.I;
  if (ownerIdx >= 0) Atomics.store(I, ownerIdx, 0);
  if (Atomics.compareExchange(I, idx, RWSEM_WRITER, 1) !== RWSEM_WRITER) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: downgrade_write on rwsem word ${idx} not held for write` });
  }
  if (Atomics.load(I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
}

export function rwsem_is_write_locked(I: Int32Array, idx: number): boolean {
  return Atomics.load(I, idx) === RWSEM_WRITER;
}

// ---- seqcount ----------------------------------------------------------------
// The writer side is a plain increment under the writer's own lock (include/linux/seqlock.h
// do_raw_write_seqcount_begin: s->sequence++ then smp_wmb()): it goes through the store
// buffer, so a reader on another CPU can see the old sequence after the writer's later
// loads; whatever orders the writer's later loads (the PTL it takes next) is what counts.
export function raw_write_seqcount_begin(idx: number): void {
  const cpu = current;
  sb_store(cpu, idx, sb_load(cpu, idx) + 1);
  smp_wmb(cpu); // do_raw_write_seqcount_begin: the increment before the section's stores (arm64: drains)
}
export function raw_write_seqcount_end(idx: number): void {
  const cpu = current;
  smp_wmb(cpu); // do_raw_write_seqcount_end: the section's stores before the increment
  sb_store(cpu, idx, sb_load(cpu, idx) + 1);
}
/** Returns an even sequence, waiting out a writer. */
export function raw_read_seqcount_begin(idx: number): number {
  for (;;) {
    const s = sb_load(current, idx);
    if ((s & 1) === 0) return s;
    Atomics.pause();
  }
}
export function read_seqcount_retry(idx: number, start: number): boolean {
  return sb_load(current, idx) !== start;
}
/** raw_read_seqcount: the sequence as it is now, odd while a writer is inside (the caller decides; no waiting). */
export function raw_read_seqcount(idx: number): number {
  return sb_load(current, idx); // our own buffered increment, if any (store-to-load forwarding)
}
/** spin_is_contended: somebody waits for this lock. */
export function spin_is_contended(idx: number): boolean {
  return Atomics.load(current.I, idx + 1) > 0;
}
