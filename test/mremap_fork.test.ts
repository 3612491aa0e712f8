import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP, get_extent, PAGETABLE_MOVE, NORMAL_PMD } from '../src/mm/mremap.ts';
import { do_fork, do_exit_mm } from '../src/mm/fork.ts';
import { task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { vma_list } from '../src/mm/vma.ts';
import { page_ref, page_mapcount, free_frames } from '../src/mm/page_alloc.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { pte_pfn, pte_write } from '../src/hw/pte.ts';
import { audit } from '../src/oracles/audit.ts';
import { PMD_SIZE } from '../src/hw/layout.ts';
import { EINVAL, EFAULT, ENOMEM } from '../src/mm/errno.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup() {
  const m = testMachine({ cpus: 2 });
  const { mm, tasks } = m.process([0, 1]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const pte = (mmx: number, va: number) => k(() => Atomics.load(m.V.I, pte_offset(pmd_offset(pud_offset(pgd_offset(mmx, va), va), va), va)));
  const rd = (va: number, cpu = 0) => k(() => (m.cpus[cpu].read(va) ? m.cpus[cpu].value : 'SEGV'), cpu);
  return { m, mm, tasks, k, pte, rd };
}

describe('mremap', () => {
  it('moves a populated range: contents follow, the old range is gone, pages are not copied', () => {
    const { m, mm, k, pte, rd } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 8 * P, RW, ANON | MAP_FIXED));
    k(() => { for (let p = 0; p < 8; p++) m.cpus[0].write(a + p * P, 100 + p); });
    rd(a + 3 * P, 1); // CPU 1 caches a translation of the old range
    const pfn3 = pte_pfn(pte(mm, a + 3 * P));
    const b = 0x2000_0000;
    expect(k(() => do_mremap(mm, a, 8 * P, 8 * P, MREMAP_MAYMOVE | MREMAP_FIXED, b))).toBe(b);
    expect(pte_pfn(pte(mm, b + 3 * P))).toBe(pfn3);
    expect([...Array(8).keys()].map((p) => rd(b + p * P, 1))).toEqual([100, 101, 102, 103, 104, 105, 106, 107]);
    expect(rd(a + 3 * P, 1)).toBe('SEGV'); // its stale entry was flushed before the PTLs were dropped
    expect(vma_list(m.V, mm).map((v) => [v.start, v.end])).toEqual([[b, b + 8 * P]]);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('moves across a page-table boundary in PMD-sized extents', () => {
    const v = { start: 0, end: 0, pgoff: 0, flags: 0, file: -1, anon: -1 };
    const pmc = (o: number, e: number, n: number) => PAGETABLE_MOVE(0, v, v, o, n, e - o);
    expect(get_extent(NORMAL_PMD, pmc(0x1ff000, 0x400000, 0x5000))).toBe(0x1000); // up to old's PMD boundary
    expect(get_extent(NORMAL_PMD, pmc(0x200000, 0x400000, 0x1ff000 + PMD_SIZE))).toBe(0x1000); // up to new's
    expect(get_extent(NORMAL_PMD, pmc(0x200000, 0x800000, 0x400000))).toBe(PMD_SIZE); // a whole table on both sides
    const { m, mm, k, rd } = setup();
    const a = k(() => do_mmap(mm, PMD_SIZE - 2 * P, 4 * P, RW, ANON | MAP_FIXED));
    k(() => { for (let p = 0; p < 4; p++) m.cpus[0].write(a + p * P, p + 1); });
    const b = 0x3000_0000 + 3 * P;
    expect(k(() => do_mremap(mm, a, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, b))).toBe(b);
    expect([0, 1, 2, 3].map((p) => rd(b + p * P))).toEqual([1, 2, 3, 4]);
    expect(audit(m.V).ok).toBe(true);
  });

  it('shrinks, expands in place, moves when it must, and keeps the old VMA with DONTUNMAP', () => {
    const { m, mm, k, rd } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 4 * P, RW, ANON | MAP_FIXED));
    k(() => m.cpus[0].write(a, 7));
    expect(k(() => do_mremap(mm, a, 4 * P, 2 * P, 0))).toBe(a);
    expect(vma_list(m.V, mm).map((v) => v.end - v.start)).toEqual([2 * P]);
    expect(k(() => do_mremap(mm, a, 2 * P, 6 * P, 0))).toBe(a); // the gap above is free
    k(() => do_mmap(mm, a + 6 * P, P, RW, ANON | MAP_FIXED)); // now it is not
    expect(k(() => do_mremap(mm, a, 6 * P, 8 * P, 0))).toBe(-ENOMEM);
    const moved = k(() => do_mremap(mm, a, 6 * P, 8 * P, MREMAP_MAYMOVE));
    expect(moved).not.toBe(a);
    expect(rd(moved)).toBe(7);
    const d = k(() => do_mremap(mm, moved, 8 * P, 8 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP));
    expect(rd(d)).toBe(7);
    expect(rd(moved)).toBe(0); // still mapped, empty: faults in a fresh page
    expect(audit(m.V).ok).toBe(true);
  });

  it('rejects bad arguments with the kernel errnos', () => {
    const { mm, k } = setup();
    const a = k(() => do_mmap(mm, 0x1000_0000, 4 * P, RW, ANON | MAP_FIXED));
    expect(k(() => do_mremap(mm, a, P, P, 8))).toBe(-EINVAL); // unknown flag
    expect(k(() => do_mremap(mm, a + 1, P, P, 0))).toBe(-EINVAL);
    expect(k(() => do_mremap(mm, a, P, P, MREMAP_FIXED, 0x2000_0000))).toBe(-EINVAL); // FIXED without MAYMOVE
    expect(k(() => do_mremap(mm, a, P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP))).toBe(-EINVAL);
    expect(k(() => do_mremap(mm, a, P, 0, 0))).toBe(-EINVAL);
    expect(k(() => do_mremap(mm, a, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, a + P))).toBe(-EINVAL); // overlap
    expect(k(() => do_mremap(mm, 0x5000_0000, P, P, 0))).toBe(-EFAULT); // nothing mapped
    expect(k(() => do_mremap(mm, a, 8 * P, 9 * P, MREMAP_MAYMOVE))).toBe(-EFAULT); // grows from a range past the VMA
    expect(k(() => do_mremap(mm, a, 8 * P, 8 * P, MREMAP_MAYMOVE))).toBe(a); // same size maps nothing new: no check (Linux 6.18)
  });
});

describe('fork', () => {
  it('shares pages copy-on-write: refcounts, mapcounts, write-protection, COW on either side, exit of either first', () => {
    for (const exitFirst of ['child', 'parent'] as const) {
      const { m, mm, tasks, k, pte, rd } = setup();
      const before = free_frames(m.V).data;
      const a = k(() => do_mmap(mm, 0x1000_0000, 2 * P, RW, ANON | MAP_FIXED));
      k(() => { m.cpus[0].write(a, 1); m.cpus[0].write(a + P, 2); });
      rd(a, 1);
      const child = k(() => do_fork(mm));
      expect(child).toBeGreaterThanOrEqual(0);
      const pfn = pte_pfn(pte(mm, a));
      expect([page_ref(m.V, pfn), page_mapcount(m.V, pfn)]).toEqual([2, 2]);
      expect(pte_write(pte(mm, a))).toBe(false);
      expect(pte_write(pte(child, a))).toBe(false);
      expect(audit(m.V).ok).toBe(true);
      // the child runs on CPU 1
      const ct = task_create(m.V, child, 1, 1);
      k(() => context_switch(m.cpus[1], ct), 1);
      expect(rd(a, 1)).toBe(1);
      k(() => m.cpus[1].write(a, 11), 1); // COW in the child
      expect(pte_pfn(pte(child, a))).not.toBe(pfn);
      expect(rd(a, 0)).toBe(1); // the parent still sees its value
      k(() => m.cpus[0].write(a + P, 22)); // COW in the parent
      k(() => context_switch(m.cpus[1], ct), 1);
      expect(rd(a + P, 1)).toBe(2); // the child still sees the pre-fork value
      expect(audit(m.V).ok).toBe(true);
      if (exitFirst === 'child') {
        k(() => { do_exit_mm(child); context_switch(m.cpus[1], tasks[1]); }, 1);
        expect(audit(m.V).ok).toBe(true);
        k(() => m.cpus[0].write(a, 5)); // the last mapping: reused, not copied
        expect(pte_pfn(pte(mm, a))).toBe(pfn);
      } else {
        k(() => do_munmap(mm, a, 2 * P));
        expect(audit(m.V).ok).toBe(true);
        k(() => do_exit_mm(child), 1);
      }
      k(() => do_munmap(mm, a, 2 * P));
      expect(free_frames(m.V).data).toBe(before);
      expect(m.violations).toEqual([]);
    }
  });
});
