// mm/mmap_lock.c and include/linux/mmap_lock.h as Linux 6.18 has them: the
// mmap_lock with its mm_lock_seq sequence, and the per-VMA locks.
//
//  - mmap_write_lock takes the rwsem and makes mm->mm_lock_seq odd
//    (mm_lock_seqcount_begin); mmap_write_unlock and mmap_write_downgrade first
//    make it even again (vma_end_write_all), which releases every VMA write
//    lock taken meanwhile at once.
//  - A VMA is write-locked while vma->vm_lock_seq equals the mm's (odd)
//    mm_lock_seq. vma_start_write (under the mmap_lock held for write) waits for
//    the VMA's readers to leave: it adds VMA_LOCK_OFFSET to vma->vm_refcnt, which
//    stops new readers, waits on mm->vma_writer_wait until only the writer and
//    the attachment remain (__vma_enter_locked), stores vm_lock_seq, and takes
//    the offset back (__vma_exit_locked).
//  - vm_refcnt is 0 for a detached VMA and 1 for an attached one, plus one per
//    reader. vma_start_read: give up at once if vm_lock_seq equals mm_lock_seq;
//    take a reference unless the count is 0 (detached: -EAGAIN, look again) or
//    a writer's offset is in it (fail); then check vm_lock_seq against
//    mm_lock_seq once more (a writer that got in between: drop it, fail).
//  - lock_vma_under_rcu: find the VMA without the mmap_lock (mas_walk under RCU;
//    here src/mm/vma.ts mas_walk), vma_start_read it, retry on -EAGAIN, and check
//    the address is still inside it. NULL sends the fault to the mmap_lock.
//
// All functions take (mm, rec): rec is the VMA's record (struct vm_area_struct),
// which stays put while the VMA lives; slots in address order move.
//
// Scheduling points sit where the kernel's lockless steps can interleave with a
// writer: before the walk, between finding the VMA and locking it, between the
// reference and the second sequence check, and at every release.

import { current } from '../hw/cpu.ts';
import { down_write, up_write, downgrade_write, down_read, up_read, down_read_trylock } from '../hw/locks.ts';
import {
  mmWord, vmaWord, MM_LOCK, MM_LOCK_OWNER, MM_LOCK_SEQ, MM_VMA_WRITER_WAIT, MM_VMA_WRITER_WAITERS, VMA_REFCNT_W, VMA_LOCK_SEQ_W,
  VMA_START, VMA_END, vmaF, ST_VMA_LOCK_ABORT,
} from '../hw/layout.ts';
import { EV } from '../hw/trace.ts';
import { mas_walk } from './vma.ts';

/** include/linux/mm_types.h (6.18): a writer's bias in vm_refcnt; readers may not push it past VMA_REF_LIMIT */
export const VMA_LOCK_OFFSET = 0x40000000;
export const VMA_REF_LIMIT = VMA_LOCK_OFFSET - 1;
/** vma_start_read's ERR_PTR(-EAGAIN): the VMA was detached after the walk found it */
const EAGAIN_VMA = -2;
/** how many times lock_vma_under_rcu looks again after -EAGAIN before giving up (the kernel loops; a bound keeps a bug from spinning forever) */
const MAX_MISS_RETRIES = 1000;

export const lockOf = (mm: number): number => mmWord(current.V.L, mm, MM_LOCK);
export const ownerOf = (mm: number): number => mmWord(current.V.L, mm, MM_LOCK_OWNER);
const seqOf = (mm: number): number => mmWord(current.V.L, mm, MM_LOCK_SEQ);
const refcnt = (mm: number, rec: number): number => vmaWord(current.V.L, mm, rec, VMA_REFCNT_W);
const lockSeq = (mm: number, rec: number): number => vmaWord(current.V.L, mm, rec, VMA_LOCK_SEQ_W);

// ---- the mmap_lock ------------------------------------------------------------------

/** mm_lock_seqcount_begin: the sequence goes odd (do_raw_write_seqcount_begin) */
function mm_lock_seqcount_begin(mm: number): void {
  Atomics.add(current.I, seqOf(mm), 1);
}
/** mm_lock_seqcount_end: even again (do_raw_write_seqcount_end, release) */
function mm_lock_seqcount_end(mm: number): void {
  Atomics.add(current.I, seqOf(mm), 1);
}

export function mmap_write_lock(mm: number): void {
  down_write(lockOf(mm), ownerOf(mm));
  mm_lock_seqcount_begin(mm);
}

/** vma_end_write_all: every VMA write-locked under this mmap_lock hold is unlocked at once */
export function vma_end_write_all(mm: number): void {
  mm_lock_seqcount_end(mm);
}

export function mmap_write_unlock(mm: number): void {
  vma_end_write_all(mm);
  up_write(lockOf(mm), ownerOf(mm));
}

export function mmap_write_downgrade(mm: number): void {
  vma_end_write_all(mm);
  downgrade_write(lockOf(mm), ownerOf(mm));
}

export const mmap_read_lock = (mm: number): void => down_read(lockOf(mm));
export const mmap_read_unlock = (mm: number): void => up_read(lockOf(mm));
export const mmap_read_trylock = (mm: number): boolean => down_read_trylock(lockOf(mm));

/** Is the mmap_lock held for write right now (by anyone)? mm_lock_seq is odd exactly then. */
export function mmap_lock_is_write_locked(mm: number): boolean {
  return (Atomics.load(current.I, seqOf(mm)) & 1) !== 0;
}

// ---- per-VMA locks: writers -----------------------------------------------------------

/** refcount_add_not_zero on vm_refcnt */
function refcount_add_not_zero(at: number, n: number): boolean {
  const I = current.I;
  for (;;) {
    const old = Atomics.load(I, at);
    if (old === 0) return false;
    if (Atomics.compareExchange(I, at, old, old + n) === old) return true;
  }
}

/**
 * __vma_enter_locked: stop new readers (VMA_LOCK_OFFSET) and wait on
 * mm->vma_writer_wait until the count is the writer plus the attachment (or,
 * detaching, the writer alone). False if the VMA is detached.
 */
function __vma_enter_locked(mm: number, rec: number, detaching: boolean): boolean {
  const cpu = current;
  const I = cpu.I;
  const at = refcnt(mm, rec);
  const tgt = VMA_LOCK_OFFSET + (detaching ? 0 : 1);
  if (!refcount_add_not_zero(at, VMA_LOCK_OFFSET)) return false;
  // rcuwait_wait_event(&mm->vma_writer_wait, refcount == tgt, TASK_UNINTERRUPTIBLE)
  const ready = (): boolean => Atomics.load(I, at) === tgt;
  const wait = mmWord(cpu.V.L, mm, MM_VMA_WRITER_WAIT);
  if (ready()) return true;
  cpu.ring.log(EV.LOCK_WAIT, wait, 3); // a span, ended by LOCK_ACQUIRED
  for (let spin = 0; !ready(); spin++) {
    if (cpu.irqOff === 0) cpu.host.pollIpis();
    if (spin < 64 && cpu.host.sched === null) Atomics.pause();
    else cpu.host.block(wait, ready);
  }
  cpu.ring.log(EV.LOCK_ACQUIRED, wait, 3);
  return true;
}

/** __vma_exit_locked: take the writer's offset back; true if that left the VMA detached */
function __vma_exit_locked(mm: number, rec: number): boolean {
  return Atomics.sub(current.I, refcnt(mm, rec), VMA_LOCK_OFFSET) - VMA_LOCK_OFFSET === 0;
}

/** __vma_start_write (mm/mmap_lock.c): exclude readers, then mark the VMA locked by this mmap_lock hold */
function __vma_start_write(mm: number, rec: number, mm_lock_seq: number): void {
  const cpu = current;
  const locked = __vma_enter_locked(mm, rec, false);
  // WRITE_ONCE(vma->vm_lock_seq, mm_lock_seq): readers' lockless first check may race with it
  Atomics.store(cpu.I, lockSeq(mm, rec), mm_lock_seq);
  if (locked && __vma_exit_locked(mm, rec)) {
    cpu.host.hooks.violation({ kind: 'lock-misuse', cpu: cpu.id, message: `cpu ${cpu.id}: __vma_start_write left VMA record ${rec} of mm ${mm} detached` });
  }
}

/**
 * vma_start_write (include/linux/mmap_lock.h): write-lock the VMA (record rec of
 * mm) for the rest of this mmap_lock write hold. Already locked: nothing to do
 * (__is_vma_write_locked). A VMA not yet attached just takes the sequence.
 *
 * The caller holds the mmap_lock for write (mmap_assert_write_locked). When it
 * does not (unit tests that build VMAs by hand), this does nothing: locking
 * with an even sequence would mark the VMA locked until the next write hold.
 */
export function vma_start_write(mm: number, rec: number): void {
  const cpu = current;
  const I = cpu.I;
  const seq = Atomics.load(I, seqOf(mm));
  if ((seq & 1) === 0) return;
  if (Atomics.load(I, lockSeq(mm, rec)) === seq) return;
  const F = cpu.V.F;
  cpu.ring.log(EV.VMA_WRITE_LOCK, F[vmaF(cpu.V.L, mm, rec, VMA_START)], F[vmaF(cpu.V.L, mm, rec, VMA_END)]);
  __vma_start_write(mm, rec, seq);
  cpu.sched_point();
}

/** vma_assert_write_locked, as a predicate */
export function vma_is_write_locked(mm: number, rec: number): boolean {
  const I = current.I;
  const seq = Atomics.load(I, seqOf(mm));
  return (seq & 1) !== 0 && Atomics.load(I, lockSeq(mm, rec)) === seq;
}

/** A new record: never write-locked (vma_lock_init: vm_lock_seq = UINT_MAX), detached (vm_refcnt 0). */
export function vma_lock_init(mm: number, rec: number): void {
  const I = current.I;
  Atomics.store(I, lockSeq(mm, rec), -1);
  Atomics.store(I, refcnt(mm, rec), 0);
}

/** vma_mark_attached: refcount_set_release(&vma->vm_refcnt, 1) */
export function vma_mark_attached(mm: number, rec: number): void {
  Atomics.store(current.I, refcnt(mm, rec), 1);
}

/**
 * vma_mark_detached (mm/mmap_lock.c): drop the attachment; a reader that took a
 * reference before it saw the write lock still holds one: wait for it to go.
 */
export function vma_mark_detached(mm: number, rec: number): void {
  const I = current.I;
  if (Atomics.sub(I, refcnt(mm, rec), 1) - 1 !== 0) {
    if (__vma_enter_locked(mm, rec, true)) __vma_exit_locked(mm, rec);
  }
}

/** Is the record free for reuse (detached, no transient reader)? For the allocator in src/mm/vma.ts. */
export function vma_rec_free(mm: number, rec: number): boolean {
  return Atomics.load(current.I, refcnt(mm, rec)) === 0;
}

// ---- per-VMA locks: readers -----------------------------------------------------------

/** vma_refcount_put: drop a reader's reference; the last one before a waiting writer wakes it */
function vma_refcount_put(mm: number, rec: number): void {
  const cpu = current;
  const I = cpu.I;
  const left = Atomics.sub(I, refcnt(mm, rec), 1) - 1;
  // is_vma_writer_only(oldcnt - 1): a writer's offset and at most the attachment
  if (left !== 0 && (left & VMA_LOCK_OFFSET) !== 0 && left <= VMA_LOCK_OFFSET + 1) {
    const wait = mmWord(cpu.V.L, mm, MM_VMA_WRITER_WAIT);
    if (Atomics.load(I, mmWord(cpu.V.L, mm, MM_VMA_WRITER_WAITERS)) > 0) cpu.host.wakeWaiters(wait); // rcuwait_wake_up
  }
}

/**
 * vma_start_read (mm/mmap_lock.c, 6.18): rec read-locked, -1 (NULL: write-locked,
 * or a writer is excluding readers), or EAGAIN_VMA (detached after the walk).
 */
function vma_start_read(mm: number, rec: number): number {
  const cpu = current;
  const I = cpu.I;
  const seqAt = seqOf(mm);
  // the lockless pessimistic check: READ_ONCE(vm_lock_seq) == READ_ONCE(mm_lock_seq.sequence)
  if (Atomics.load(I, lockSeq(mm, rec)) === Atomics.load(I, seqAt)) return -1;
  // __refcount_inc_not_zero_limited_acquire(&vm_refcnt, &oldcnt, VMA_REF_LIMIT)
  const at = refcnt(mm, rec);
  for (;;) {
    const old = Atomics.load(I, at);
    if (old === 0) return EAGAIN_VMA;
    if (old + 1 > VMA_REF_LIMIT) return -1;
    if (Atomics.compareExchange(I, at, old, old + 1) === old) break;
  }
  cpu.sched_point();
  // (vma->vm_mm != mm cannot happen: every mm has its own records)
  // the second check, against raw_read_seqcount(&mm->mm_lock_seq) (acquire)
  if (Atomics.load(I, lockSeq(mm, rec)) === Atomics.load(I, seqAt)) {
    vma_refcount_put(mm, rec);
    return -1;
  }
  return rec;
}

/** vma_end_read: release a read lock taken by lock_vma_under_rcu */
export function vma_end_read(mm: number, rec: number): void {
  vma_refcount_put(mm, rec);
  current.sched_point();
}

/**
 * lock_vma_under_rcu (mm/mmap_lock.c): the VMA containing address, read-locked,
 * found without the mmap_lock; -1 (NULL) if there is none, it is being
 * modified (write-locked), or it no longer contains the address.
 * Counts VMA_LOCK_ABORT (ST_VMA_LOCK_ABORT) on failure, as the kernel does.
 */
export function lock_vma_under_rcu(mm: number, address: number): number {
  const cpu = current;
  const V = cpu.V;
  cpu.sched_point();
  for (let miss = 0; miss < MAX_MISS_RETRIES; miss++) {
    // rcu_read_lock(); vma = mas_walk(&mas)
    const found = mas_walk(V, mm, address);
    if (found < 0) break;
    cpu.sched_point(); // the walk's result is already stale here: a writer may slip in
    const rec = vma_start_read(mm, found);
    if (rec === EAGAIN_VMA) continue; // VMA_LOCK_MISS: the area was replaced with another one: walk again
    if (rec < 0) break; // failed to lock the VMA
    // the VMA we locked may have been changed before we locked it: check it is the right one
    if (address < V.F[vmaF(V.L, mm, rec, VMA_START)] || address >= V.F[vmaF(V.L, mm, rec, VMA_END)]) {
      vma_end_read(mm, rec);
      break;
    }
    cpu.ring.log(EV.VMA_LOCKED, address, V.F[vmaF(V.L, mm, rec, VMA_START)]);
    return rec;
  }
  cpu.stat(ST_VMA_LOCK_ABORT); // count_vm_vma_lock_event(VMA_LOCK_ABORT)
  cpu.ring.log(EV.VMA_LOCK_ABORT, address, 0);
  return -1;
}
