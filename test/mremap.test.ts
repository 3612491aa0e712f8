// mremap internals beyond mremap_test.c: whole-table moves and what other CPUs
// see, need_rmap_locks, duplicating a shared mapping, moving back on failure,
// and relocate_vma_down (exec's stack move).
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mseal } from '../src/mm/mseal.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_FIXED, PROT_READ, PROT_WRITE, mmap_write_lock, mmap_write_unlock } from '../src/mm/mmap.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP } from '../src/mm/mremap.ts';
import { relocate_vma_down } from '../src/mm/vma_exec.ts';
import { vma_list } from '../src/mm/vma.ts';
import { audit } from '../src/oracles/audit.ts';
import { PMD_SIZE, statWord, ST_MOVE_PMD, ST_MOVE_PTE, ST_REALIGN } from '../src/hw/layout.ts';
import { EINVAL, ENOMEM, EPERM } from '../src/mm/errno.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup(o: { arch?: string; tableFrames?: number } = {}) {
  const m = testMachine({ cpus: 2, arch: o.arch, tableFrames: o.tableFrames, dataFrames: 8192 });
  const { mm } = m.process([0, 1]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const rd = (va: number, cpu = 0) => k(() => (m.cpus[cpu].read(va) ? m.cpus[cpu].value : 'SEGV'), cpu);
  const wr = (va: number, v: number, cpu = 0) => k(() => m.cpus[cpu].write(va, v), cpu);
  const stat = (f: number) => m.V.I[statWord(m.V.L, 0, f)];
  return { m, mm, k, rd, wr, stat };
}

describe('mremap: whole-table moves', () => {
  it('moves a PMD-aligned range as PTE tables (NORMAL_PMD) and flushes the old range on every CPU before the locks drop', () => {
    const { m, mm, k, rd, wr, stat } = setup();
    const a = 64 * PMD_SIZE;
    k(() => do_mmap(mm, a, 2 * PMD_SIZE, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 1024; p += 97) wr(a + p * P, p + 1);
    expect(rd(a + 97 * P, 1)).toBe(98); // CPU 1 caches the old translation
    const b = 96 * PMD_SIZE;
    expect(k(() => do_mremap(mm, a, 2 * PMD_SIZE, 2 * PMD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b))).toBe(b);
    expect([stat(ST_MOVE_PMD), stat(ST_MOVE_PTE)]).toEqual([2, 0]);
    expect(rd(a + 97 * P, 1)).toBe('SEGV');
    for (let p = 0; p < 1024; p += 97) expect(rd(b + p * P, 1)).toBe(p + 1);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('falls back to PTE moves on arches without page-table moves (s390, sparc64, powerpc hash)', () => {
    for (const arch of ['s390', 'sparc64', 'powerpc-hash']) {
      const { m, mm, k, rd, wr, stat } = setup({ arch });
      const a = 64 * PMD_SIZE;
      k(() => do_mmap(mm, a, PMD_SIZE, RW, ANON | MAP_FIXED));
      wr(a + 5 * P, 55);
      const b = 96 * PMD_SIZE;
      expect(k(() => do_mremap(mm, a, PMD_SIZE, PMD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b))).toBe(b);
      expect([stat(ST_MOVE_PMD), stat(ST_MOVE_PTE)]).toEqual([0, 1]);
      expect(rd(b + 5 * P, 1)).toBe(55);
      expect(audit(m.V).ok).toBe(true);
    }
  });
});

describe('mremap: VMAs', () => {
  it('duplicates a shared mapping when old_size is 0, and refuses to for a private one', () => {
    const { m, mm, k, rd, wr } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
    wr(a + P, 42);
    const d = k(() => do_mremap(mm, a, 0, 4 * P, MREMAP_MAYMOVE));
    expect(d).toBeGreaterThan(0);
    expect(d).not.toBe(a);
    expect(rd(d + P)).toBe(42); // the same page cache pages
    wr(d + 2 * P, 7);
    expect(rd(a + 2 * P)).toBe(7);
    const pr = k(() => do_mmap(mm, 0x2000_0000, 4 * P, RW, ANON | MAP_FIXED));
    expect(k(() => do_mremap(mm, pr, 0, 4 * P, MREMAP_MAYMOVE))).toBe(-EINVAL);
    expect(audit(m.V).ok).toBe(true);
  });

  it('leaves the old VMA unsplit and empty with DONTUNMAP of part of it', () => {
    const { m, mm, k, rd, wr } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 8 * P, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 8; p++) wr(a + p * P, p + 1);
    const t = 0x3000_0000;
    expect(k(() => do_mremap(mm, a + 2 * P, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, t))).toBe(t);
    expect(vma_list(m.V, mm).map((v) => [v.start - a, v.end - a])).toEqual([[0, 8 * P], [t - a, t - a + 2 * P]]);
    expect([rd(t), rd(t + P), rd(a + 2 * P), rd(a + 4 * P)]).toEqual([3, 4, 0, 5]);
    expect(audit(m.V).ok).toBe(true);
  });

  it('moves back what it moved and unmaps the destination when page tables run out (ENOMEM)', () => {
    const { m, mm, k, rd, wr, stat } = setup({ tableFrames: 16 });
    const a = 8 * PMD_SIZE;
    k(() => do_mmap(mm, a, 6 * PMD_SIZE, RW, ANON | MAP_FIXED));
    for (let i = 0; i < 6; i++) wr(a + i * PMD_SIZE + P, i + 1); // one PTE table per 2 MiB
    // a destination offset by one page cannot take whole tables: each extent needs new tables
    const b = 0x40_0000_0000 + P;
    const r = k(() => do_mremap(mm, a, 6 * PMD_SIZE, 6 * PMD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b));
    expect(r).toBe(-ENOMEM);
    expect(stat(ST_MOVE_PTE)).toBeGreaterThanOrEqual(2); // some moved there, and back
    for (let i = 0; i < 6; i++) expect(rd(a + i * PMD_SIZE + P)).toBe(i + 1);
    expect(vma_list(m.V, mm).map((v) => v.start)).toEqual([a]);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });
});

describe('mremap: sealed VMAs', () => {
  it('refuses to move, grow or shrink a sealed VMA (EPERM), and leaves its neighbours alone', () => {
    const { m, mm, k } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 4 * P, RW, ANON | MAP_FIXED));
    expect(k(() => do_mseal(mm, a + P, P))).toBe(0);
    expect(k(() => do_mremap(mm, a + P, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, 0x2000_0000))).toBe(-EPERM);
    expect(k(() => do_mremap(mm, a + P, P, 2 * P, MREMAP_MAYMOVE))).toBe(-EPERM);
    expect(k(() => do_mremap(mm, a + 2 * P, 2 * P, P, 0))).toBe(a + 2 * P); // the unsealed part shrinks
    expect(vma_list(m.V, mm).map((v) => (v.end - v.start) / P)).toEqual([1, 1, 1]);
  });
});

describe('relocate_vma_down (exec stack move, for_stack)', () => {
  it('shifts an overlapping stack down by 3 pages: contents follow, the VMA is the new range', () => {
    const { m, mm, k, rd, wr } = setup();
    const top = 0x7fff_0000_0000;
    const s = k(() => do_mmap(mm, top - 16 * P, 16 * P, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 16; p++) wr(s + p * P, 500 + p);
    k(() => { mmap_write_lock(mm); try { expect(relocate_vma_down(mm, s, 3 * P)).toBe(0); } finally { mmap_write_unlock(mm); } });
    expect(vma_list(m.V, mm).map((v) => [v.start, v.end])).toEqual([[s - 3 * P, top - 3 * P]]);
    for (let p = 0; p < 16; p++) expect(rd(s - 3 * P + p * P, 1)).toBe(500 + p);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('realigns down inside the expanded VMA (the for_stack exception) and moves whole tables when the shift keeps PMD offsets', () => {
    const { m, mm, k, rd, wr, stat } = setup();
    const s0 = 0x7ff0_0000_0000 + 5 * P; // not PMD-aligned
    const s = k(() => do_mmap(mm, s0, PMD_SIZE, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 512; p += 31) wr(s + p * P, p + 9);
    k(() => { mmap_write_lock(mm); try { expect(relocate_vma_down(mm, s, 8 * PMD_SIZE)).toBe(0); } finally { mmap_write_unlock(mm); } });
    expect(stat(ST_REALIGN)).toBe(1);
    expect(stat(ST_MOVE_PMD)).toBeGreaterThanOrEqual(1);
    const ns = s - 8 * PMD_SIZE;
    for (let p = 0; p < 512; p += 31) expect(rd(ns + p * P, 1)).toBe(p + 9);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });
});
