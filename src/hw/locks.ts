// Locks in shared memory: spinlock, rwsem (mmap_lock), seqcount.
//
// Every lock is a word followed by a waiter count. Acquisition spins a little
// (with Atomics.pause, servicing IPIs like a CPU spinning with interrupts on),
// then blocks through Host.block, which sleeps on the host's own futex word;
// a release that sees waiters wakes the hosts blocked on that word. Pure
// spinning starves on 2 cores with dozens of threads; this does not.

import { current } from './cpu.ts';
import { ST_LOCK_CONTENDED } from './layout.ts';
import { EV } from './trace.ts';

const SPINS = 64;

/** A spinlock word holds 0 when free, else the holder's CPU id + 1: that CPU, or -1 when free. */
export const spinlock_holder = (value: number): number => (value > 0 ? value - 1 : -1);

export function spin_lock(idx: number): void {
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  if (Atomics.compareExchange(I, idx, 0, cpu.id + 1) === 0) return;
  I[cpu.st + ST_LOCK_CONTENDED]++;
  cpu.ring.log(EV.LOCK_WAIT, idx, 0);
  const ready = (): boolean => Atomics.load(I, idx) === 0;
  for (let spin = 0; ; spin++) {
    if (Atomics.load(I, idx) === 0 && Atomics.compareExchange(I, idx, 0, cpu.id + 1) === 0) {
      cpu.ring.log(EV.LOCK_ACQUIRED, idx, 0);
      return;
    }
    if (cpu.irqOff === 0) cpu.host.pollIpis();
    if (spin < SPINS && cpu.host.sched === null) Atomics.pause();
    else cpu.host.block(idx, ready);
  }
}

export function spin_trylock(idx: number): boolean {
  const cpu = current;
  cpu.sched_point();
  return Atomics.compareExchange(cpu.I, idx, 0, cpu.id + 1) === 0;
}

export function spin_unlock(idx: number): void {
  const cpu = current;
  const I = cpu.I;
  const owner = Atomics.exchange(I, idx, 0);
  if (owner !== cpu.id + 1) {
    cpu.host.hooks.violation({
      kind: 'lock-misuse', cpu: cpu.id,
      message: `cpu ${cpu.id} released spinlock word ${idx} held by ${owner === 0 ? 'nobody' : `cpu ${spinlock_holder(owner)}`}`,
    });
  }
  if (Atomics.load(I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.sched_point();
}

export function spin_is_locked_by_me(idx: number): boolean {
  return Atomics.load(current.I, idx) === current.id + 1;
}

// ---- rwsem: word = reader count, or RWSEM_WRITER; word+1 = waiters; word+2 = writers waiting
export const RWSEM_WRITER = -1;

export function down_read(idx: number): void {
  const cpu = current;
  const I = cpu.I;
  cpu.sched_point();
  const ready = (): boolean => Atomics.load(I, idx) >= 0 && Atomics.load(I, idx + 2) === 0;
  for (let spin = 0; ; spin++) {
    const v = Atomics.load(I, idx);
    // Readers hold back while a writer waits, so a writer cannot starve.
    if (v >= 0 && Atomics.load(I, idx + 2) === 0 && Atomics.compareExchange(I, idx, v, v + 1) === v) {
      if (spin > 0) cpu.ring.log(EV.LOCK_ACQUIRED, idx, 1);
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
    if (Atomics.compareExchange(I, idx, v, v + 1) === v) return true;
  }
}

export function up_read(idx: number): void {
  const cpu = current;
  const left = Atomics.sub(cpu.I, idx, 1) - 1;
  if (left < 0) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: up_read on rwsem word ${idx} not held for read` });
  }
  if (left === 0 && Atomics.load(cpu.I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.sched_point();
}

export function down_write(idx: number, ownerIdx = -1): void {
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
  if (ownerIdx >= 0) Atomics.store(I, ownerIdx, cpu.id + 1);
}

export function up_write(idx: number, ownerIdx = -1): void {
  const cpu = current;
  const I = cpu.I;
  if (ownerIdx >= 0) Atomics.store(I, ownerIdx, 0);
  const v = Atomics.exchange(I, idx, 0);
  if (v !== RWSEM_WRITER) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: up_write on rwsem word ${idx} not held for write (value ${v})` });
  }
  if (Atomics.load(I, idx + 1) > 0) cpu.host.wakeWaiters(idx);
  cpu.sched_point();
}

/** Turn a held write lock into a read lock without letting a writer in between. */
export function downgrade_write(idx: number, ownerIdx = -1): void {
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
export function raw_write_seqcount_begin(idx: number): void {
  Atomics.add(current.I, idx, 1);
}
export function raw_write_seqcount_end(idx: number): void {
  Atomics.add(current.I, idx, 1);
}
/** Returns an even sequence, waiting out a writer. */
export function raw_read_seqcount_begin(idx: number): number {
  const I = current.I;
  for (;;) {
    const s = Atomics.load(I, idx);
    if ((s & 1) === 0) return s;
    Atomics.pause();
  }
}
export function read_seqcount_retry(idx: number, start: number): boolean {
  return Atomics.load(current.I, idx) !== start;
}
/** raw_read_seqcount: the sequence as it is now, odd while a writer is inside (the caller decides; no waiting). */
export function raw_read_seqcount(idx: number): number {
  return Atomics.load(current.I, idx);
}
/** spin_is_contended: somebody waits for this lock. */
export function spin_is_contended(idx: number): boolean {
  return Atomics.load(current.I, idx + 1) > 0;
}
