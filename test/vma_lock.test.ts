// Per-VMA locks (issue #11, src/mm/mmap_lock.ts) on an inline machine, step by
// step: mm_lock_seq and vm_lock_seq, vm_refcnt, lock_vma_under_rcu's refusals,
// faults that complete under a VMA lock while another CPU holds the mmap_lock
// for write (an inline machine would hang if they waited for it), the
// VM_FAULT_RETRY of an anon_vma that cannot be prepared, and records that stay
// put while the index moves.
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import {
  mmap_write_lock, mmap_write_unlock, mmap_write_downgrade, mmap_read_unlock, vma_start_write, vma_is_write_locked,
  lock_vma_under_rcu, vma_end_read, VMA_LOCK_OFFSET,
} from '../src/mm/mmap_lock.ts';
import { vma_lookup, vma_rec, vma_count, split_vma } from '../src/mm/vma.ts';
import { vmf_anon_prepare, FAULT_FLAG_VMA_LOCK, VM_FAULT_RETRY } from '../src/mm/memory.ts';
import { mmWord, vmaWord, vmaF, statWord, MM_LOCK_SEQ, VMA_REFCNT_W, VMA_LOCK_SEQ_W, VMA_ANON, ST_VMA_LOCK_SUCCESS, ST_VMA_LOCK_RACED, ST_VMA_LOCK_ABORT } from '../src/hw/layout.ts';
import { audit } from '../src/oracles/audit.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup() {
  const m = testMachine({ cpus: 2 });
  const { mm } = m.process([0, 1]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const I = m.V.I;
  const L = m.V.L;
  const recAt = (va: number): number => vma_rec(m.V, mm, vma_lookup(m.V, mm, va));
  const refcnt = (rec: number): number => I[vmaWord(L, mm, rec, VMA_REFCNT_W)];
  const stat = (cpu: number, f: number): number => I[statWord(L, cpu, f)];
  // two VMAs with a gap between them (different protections would do too)
  const a = k(() => do_mmap(mm, 0x40000000, 4 * P, RW, ANON | MAP_FIXED));
  const b = k(() => do_mmap(mm, 0x40100000, 4 * P, RW, ANON | MAP_FIXED));
  return { m, mm, k, I, L, a, b, recAt, refcnt, stat };
}

describe('per-VMA locks: the sequence scheme', () => {
  it('mm_lock_seq is odd exactly while the mmap_lock is held for write; vma_start_write takes its value', () => {
    const { mm, k, I, L, a, recAt } = setup();
    const seq = () => I[mmWord(L, mm, MM_LOCK_SEQ)];
    const s0 = seq();
    expect(s0 & 1).toBe(0);
    k(() => mmap_write_lock(mm));
    expect(seq()).toBe(s0 + 1);
    const rec = recAt(a);
    expect(k(() => vma_is_write_locked(mm, rec))).toBe(false);
    k(() => vma_start_write(mm, rec));
    expect(I[vmaWord(L, mm, rec, VMA_LOCK_SEQ_W)]).toBe(s0 + 1);
    expect(k(() => vma_is_write_locked(mm, rec))).toBe(true);
    k(() => mmap_write_unlock(mm)); // vma_end_write_all: every VMA write lock goes with it
    expect(seq()).toBe(s0 + 2);
    expect(k(() => vma_is_write_locked(mm, rec))).toBe(false);
    // downgrade ends the write locks too
    k(() => mmap_write_lock(mm));
    k(() => vma_start_write(mm, rec));
    k(() => mmap_write_downgrade(mm));
    expect(k(() => vma_is_write_locked(mm, rec))).toBe(false);
    expect(k(() => lock_vma_under_rcu(mm, a), 1)).toBe(rec);
    k(() => vma_end_read(mm, rec), 1);
    k(() => mmap_read_unlock(mm));
  });

  it('lock_vma_under_rcu: a reference per reader; refused on a write-locked VMA, an address in no VMA, a detached record', () => {
    const { m, mm, k, a, b, recAt, refcnt, stat } = setup();
    const ra = recAt(a);
    expect(refcnt(ra)).toBe(1); // attached
    expect(k(() => lock_vma_under_rcu(mm, a + P), 1)).toBe(ra);
    expect(refcnt(ra)).toBe(2);
    k(() => vma_end_read(mm, ra), 1);
    expect(refcnt(ra)).toBe(1);
    // CPU 0 write-locks VMA a under the mmap_lock: CPU 1 cannot have it, but can have b
    k(() => mmap_write_lock(mm));
    k(() => vma_start_write(mm, ra));
    const aborts = stat(1, ST_VMA_LOCK_ABORT);
    expect(k(() => lock_vma_under_rcu(mm, a), 1)).toBe(-1);
    expect(stat(1, ST_VMA_LOCK_ABORT)).toBe(aborts + 1);
    const rb = recAt(b);
    expect(k(() => lock_vma_under_rcu(mm, b), 1)).toBe(rb);
    k(() => vma_end_read(mm, rb), 1);
    k(() => mmap_write_unlock(mm));
    expect(k(() => lock_vma_under_rcu(mm, a + 0x80000), 1)).toBe(-1); // the gap
    // munmap detaches: the record's count is 0 and nobody can lock it
    expect(k(() => do_munmap(mm, a, 4 * P))).toBe(0);
    expect(refcnt(ra)).toBe(0);
    expect(k(() => lock_vma_under_rcu(mm, a), 1)).toBe(-1);
    expect(m.violations).toEqual([]);
  });

  it('a writer excludes readers with VMA_LOCK_OFFSET, and vma_start_write on a VMA nobody reads returns at once', () => {
    const { mm, k, a, recAt, refcnt } = setup();
    const ra = recAt(a);
    k(() => mmap_write_lock(mm));
    k(() => vma_start_write(mm, ra)); // no reader: the offset comes and goes
    expect(refcnt(ra)).toBe(1);
    expect(refcnt(ra) & VMA_LOCK_OFFSET).toBe(0);
    k(() => mmap_write_unlock(mm));
  });
});

describe('per-VMA locks: faults', () => {
  it('a fault completes under the VMA lock while another CPU holds the mmap_lock for write (counted as raced)', () => {
    const { m, mm, k, b, stat } = setup();
    expect(m.on(1, (cpu) => cpu.write(b, 1))).toBe(true); // VMA b gets its anon_vma (see the next test)
    k(() => mmap_write_lock(mm)); // CPU 0, as mremap or fork would: it does not write-lock VMA b
    const faults = stat(1, ST_VMA_LOCK_SUCCESS);
    // the mmap_lock fallback would wait for CPU 0 forever on this one thread
    expect(m.on(1, (cpu) => cpu.write(b + P + 8, 0x1234))).toBe(true);
    expect(m.on(1, (cpu) => cpu.read(b + P + 8) && cpu.value)).toBe(0x1234);
    expect(stat(1, ST_VMA_LOCK_SUCCESS)).toBe(faults + 1);
    expect(stat(1, ST_VMA_LOCK_RACED)).toBe(1);
    k(() => mmap_write_unlock(mm));
    expect(m.violations).toEqual([]);
    expect(audit(m.V).problems).toEqual([]);
  });

  it('preparing an anon_vma under the VMA lock needs a read trylock of the mmap_lock: VM_FAULT_RETRY, the VMA lock dropped', () => {
    const { mm, k, I, L, a, recAt, refcnt } = setup();
    const ra = recAt(a);
    expect(m_anon(I, L, mm, ra)).toBe(-1); // never written: no anon_vma yet
    k(() => mmap_write_lock(mm));
    expect(k(() => lock_vma_under_rcu(mm, a), 1)).toBe(ra);
    expect(k(() => vmf_anon_prepare({ mm, rec: ra, flags: FAULT_FLAG_VMA_LOCK }), 1)).toBe(VM_FAULT_RETRY);
    expect(refcnt(ra)).toBe(1); // vma_end_read done by vmf_anon_prepare
    k(() => mmap_write_unlock(mm));
    // with the mmap_lock free, the trylock succeeds and the fault goes on under the VMA lock
    expect(k(() => lock_vma_under_rcu(mm, a), 1)).toBe(ra);
    expect(k(() => vmf_anon_prepare({ mm, rec: ra, flags: FAULT_FLAG_VMA_LOCK }), 1)).toBe(0);
    expect(m_anon(I, L, mm, ra)).toBeGreaterThanOrEqual(0);
    k(() => vma_end_read(mm, ra), 1);
  });

  it('a VMA\'s record stays put while VMAs are inserted below it and split beside it; the reader releases the right one', () => {
    const { m, mm, k, a, b, recAt, refcnt } = setup();
    const rb = recAt(b);
    expect(k(() => lock_vma_under_rcu(mm, b), 1)).toBe(rb);
    const n = vma_count(m.V, mm);
    k(() => do_mmap(mm, 0x30000000, P, RW, ANON | MAP_FIXED)); // a new first VMA: every slot moves up
    k(() => { mmap_write_lock(mm); split_vma(m.V, mm, vma_lookup(m.V, mm, a), a + P); mmap_write_unlock(mm); });
    expect(vma_count(m.V, mm)).toBe(n + 2);
    expect(recAt(b)).toBe(rb);
    expect(refcnt(rb)).toBe(2);
    k(() => vma_end_read(mm, rb), 1);
    expect(refcnt(rb)).toBe(1);
    expect(m.violations).toEqual([]);
  });
});

function m_anon(I: Int32Array, L: Parameters<typeof vmaF>[0], mm: number, rec: number): number {
  void I;
  return new Float64Array(I.buffer)[vmaF(L, mm, rec, VMA_ANON)];
}
