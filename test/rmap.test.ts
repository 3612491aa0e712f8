import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED } from '../src/mm/mremap.ts';
import { do_fork, do_exit_mm } from '../src/mm/fork.ts';
import { task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { shmem_file_setup, file_put, find_get_page, lock_page, unlock_page, i_size_pages } from '../src/mm/shmem.ts';
import { i_mmap_records } from '../src/mm/rmap.ts';
import { do_ftruncate, shmem_punch_hole } from '../src/mm/truncate.ts';
import { reclaim_file_range, reclaim_file_page } from '../src/mm/vmscan.ts';
import { page_ref, page_mapcount, put_page, free_frames } from '../src/mm/page_alloc.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { pte_pfn } from '../src/hw/pte.ts';
import { frameWord, statWord, FM_GEN, ST_TRUNCATED, ST_RMAP_UNMAP } from '../src/hw/layout.ts';
import { audit } from '../src/oracles/audit.ts';
import { ARCH_NAMES } from '../src/arch/index.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;

/** Three processes: A on CPU 1, B on CPU 2, T (maps nothing; truncates, reclaims) on CPU 0; one 16-page file. */
function setup(arch = 'x86') {
  const m = testMachine({ cpus: 3, arch });
  const T = m.process([0]).mm;
  const A = m.process([1]).mm;
  const B = m.process([2]).mm;
  const k = <R>(fn: () => R, cpu = 0): R => m.on(cpu, fn);
  const f = k(() => shmem_file_setup(16));
  const pte = (mm: number, va: number) => k(() => Atomics.load(m.V.I, pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va)));
  const rd = (cpu: number, va: number): number | 'SIGBUS' => k(() => (m.cpus[cpu].read(va) ? m.cpus[cpu].value : 'SIGBUS'), cpu);
  const wr = (cpu: number, va: number, v: number) => k(() => expect(m.cpus[cpu].write(va, v)).toBe(true), cpu);
  const recs = () => i_mmap_records(m.V, f).map((r) => [r.mm, r.start, r.end, r.pgoff]);
  const stat = (field: number) => [0, 1, 2].reduce((a, c) => a + m.V.I[statWord(m.V.L, c, field)], 0);
  return { m, T, A, B, k, f, pte, rd, wr, recs, stat };
}

describe('i_mmap: the file rmap', () => {
  it('follows mmap, split, mremap, fork, exit and munmap, in pgoff order with ties in insertion order', () => {
    const { m, A, B, k, f, recs } = setup();
    const a = 0x1000_0000;
    const b = 0x2000_0000;
    const c = 0x3000_0000;
    expect(k(() => do_mmap(A, a, 8 * P, RW, MAP_SHARED | MAP_FIXED, f, 0), 1)).toBe(a);
    expect(k(() => do_mmap(B, b, 4 * P, RW, MAP_PRIVATE | MAP_FIXED, f, 4), 2)).toBe(b);
    expect(k(() => do_mmap(A, c, 4 * P, RW, MAP_SHARED | MAP_FIXED, f, 0), 1)).toBe(c);
    expect(recs()).toEqual([[A, a, a + 8 * P, 0], [A, c, c + 4 * P, 0], [B, b, b + 4 * P, 4]]);
    // a hole in the middle: the lower part is adjusted (removed and inserted again, so it
    // goes after the other pgoff-0 record, as vma_prepare/vma_complete do), the upper part linked
    expect(k(() => do_munmap(A, a + 2 * P, P), 1)).toBe(0);
    expect(recs()).toEqual([[A, c, c + 4 * P, 0], [A, a, a + 2 * P, 0], [A, a + 3 * P, a + 8 * P, 3], [B, b, b + 4 * P, 4]]);
    // mremap: the new VMA (same pgoff) goes after the source, then the source goes
    const d = 0x4000_0000;
    expect(k(() => do_mremap(A, c, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, d), 1)).toBe(d);
    expect(recs()).toEqual([[A, a, a + 2 * P, 0], [A, d, d + 4 * P, 0], [A, a + 3 * P, a + 8 * P, 3], [B, b, b + 4 * P, 4]]);
    // growing in place extends the record
    expect(k(() => do_mremap(A, d, 4 * P, 6 * P, 0), 1)).toBe(d);
    expect(recs()).toContainEqual([A, d, d + 6 * P, 0]);
    // fork: each child VMA is linked right after its parent's (vma_interval_tree_insert_after);
    // the child's exit unlinks them
    const C = k(() => do_fork(A), 1);
    expect(C).toBeGreaterThanOrEqual(0);
    expect(recs().map((r) => [r[0], r[1]])).toEqual([[A, a], [C, a], [A, d], [C, d], [A, a + 3 * P], [C, a + 3 * P], [B, b]]);
    expect(audit(m.V).problems).toEqual([]);
    const ct = task_create(m.V, C, 1, 3);
    k(() => context_switch(m.cpus[1], ct), 1);
    k(() => do_exit_mm(C), 1);
    expect(recs().some((r) => r[0] === C)).toBe(false);
    k(() => { do_munmap(A, a, 8 * P); do_munmap(A, d, 6 * P); }, 1);
    k(() => do_munmap(B, b, 4 * P), 2);
    expect(recs()).toEqual([]);
    k(() => file_put(f));
    const r = audit(m.V);
    expect(r.problems).toEqual([]);
    expect(r.usedData).toBe(0);
    expect(m.violations).toEqual([]);
  });
});

describe('ftruncate through the rmap (no mmap_lock)', () => {
  it('unmaps every mapping in every mm, private COW copies too, flushes those mms\' TLBs and frees the pages', () => {
    const { m, T, A, B, k, f, pte, rd, wr, stat } = setup();
    const free0 = free_frames(m.V).data;
    const a = k(() => do_mmap(A, 0, 8 * P, RW, MAP_SHARED, f, 0), 1);
    const b = k(() => do_mmap(B, 0, 8 * P, RW, MAP_PRIVATE, f, 0), 2);
    for (let p = 0; p < 8; p++) wr(1, a + p * P, 100 + p);
    for (let p = 0; p < 8; p++) expect(rd(2, b + p * P)).toBe(100 + p); // B maps the cache pages read-only, its TLB caches them
    wr(2, b + 6 * P, 66); // a private COW copy
    const pfn0 = pte_pfn(pte(A, a));
    expect([page_ref(m.V, pfn0), page_mapcount(m.V, pfn0)]).toEqual([3, 2]); // cache + A + B
    const pfn5 = pte_pfn(pte(A, a + 5 * P));
    const gen5 = m.V.I[frameWord(m.V.L, pfn5, FM_GEN)];
    expect(audit(m.V).problems).toEqual([]);
    // CPU 0 runs T, which maps nothing of it
    expect(k(() => do_ftruncate(f, 2), 0)).toBe(0);
    expect(i_size_pages(f)).toBe(2);
    expect(m.V.I[frameWord(m.V.L, pfn5, FM_GEN)]).not.toBe(gen5); // freed
    expect(stat(ST_TRUNCATED)).toBe(6);
    expect(stat(ST_RMAP_UNMAP)).toBe(6 + 6); // A's 6 PTEs, B's 5 cache PTEs and its COW copy
    // no stale entry survives anywhere: beyond EOF is SIGBUS (a stale entry would be a UAF report)
    expect(rd(1, a + 5 * P)).toBe('SIGBUS');
    expect(rd(2, b + 5 * P)).toBe('SIGBUS');
    expect(rd(2, b + 6 * P)).toBe('SIGBUS'); // the COW copy went too
    expect([rd(1, a + P), rd(2, b + P)]).toEqual([101, 101]); // below EOF nothing changed
    expect(audit(m.V).problems).toEqual([]);
    // re-extended: fresh zero pages
    expect(k(() => do_ftruncate(f, 8), 0)).toBe(0);
    expect([rd(1, a + 5 * P), rd(2, b + 6 * P)]).toEqual([0, 0]);
    expect(audit(m.V).problems).toEqual([]);
    k(() => do_munmap(A, a, 8 * P), 1);
    k(() => do_munmap(B, b, 8 * P), 2);
    k(() => file_put(f));
    expect(free_frames(m.V).data).toBe(free0);
    expect(T).toBeGreaterThanOrEqual(0);
    expect(m.violations).toEqual([]);
  });

  it('a hole punch drops the cache pages of the range from every mapping but keeps private COW copies and the size', () => {
    const { m, A, B, k, f, rd, wr } = setup();
    const a = k(() => do_mmap(A, 0, 4 * P, RW, MAP_SHARED, f, 0), 1);
    const b = k(() => do_mmap(B, 0, 4 * P, RW, MAP_PRIVATE, f, 0), 2);
    for (let p = 0; p < 4; p++) wr(1, a + p * P, 10 + p);
    for (let p = 0; p < 4; p++) rd(2, b + p * P);
    wr(2, b + P, 77); // COW copy of page 1
    expect(k(() => shmem_punch_hole(f, 1, 2), 0)).toBe(0);
    expect(i_size_pages(f)).toBe(16);
    expect([rd(1, a), rd(1, a + P), rd(1, a + 2 * P), rd(1, a + 3 * P)]).toEqual([10, 0, 0, 13]);
    expect([rd(2, b), rd(2, b + P), rd(2, b + 2 * P), rd(2, b + 3 * P)]).toEqual([10, 77, 0, 13]);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });

  it('flushes the TLBs of an mm that is not the caller\'s on every arch', () => {
    for (const arch of ARCH_NAMES) {
      const { m, A, B, k, f, rd, wr } = setup(arch);
      const a = k(() => do_mmap(A, 0, 4 * P, RW, MAP_SHARED, f, 0), 1);
      const b = k(() => do_mmap(B, 0, 4 * P, RW, MAP_SHARED, f, 0), 2);
      for (let p = 0; p < 4; p++) wr(1, a + p * P, 1 + p);
      for (let p = 0; p < 4; p++) expect(rd(2, b + p * P)).toBe(1 + p);
      k(() => do_ftruncate(f, 1), 0);
      expect([rd(1, a + 2 * P), rd(2, b + 3 * P)], arch).toEqual(['SIGBUS', 'SIGBUS']);
      // and reclaim, which flushes one address with ptep_clear_flush
      expect(k(() => reclaim_file_range(f, 0, 1), 0), arch).toBe(1);
      expect([rd(1, a), rd(2, b)], arch).toEqual([1, 1]);
      expect(m.violations, arch).toEqual([]);
      expect(audit(m.V).problems, arch).toEqual([]);
    }
  });
});

describe('reclaim of file pages through the rmap', () => {
  it('unmaps the page from every mapping, frees the frame and keeps the contents', () => {
    const { m, A, B, k, f, pte, rd, wr, stat } = setup();
    const a = k(() => do_mmap(A, 0, 4 * P, RW, MAP_SHARED, f, 0), 1);
    const b = k(() => do_mmap(B, 0, 4 * P, RW, MAP_SHARED, f, 0), 2);
    for (let p = 0; p < 4; p++) wr(1, a + p * P, 50 + p);
    for (let p = 0; p < 4; p++) rd(2, b + p * P);
    const old = pte_pfn(pte(A, a + 3 * P));
    const gen = m.V.I[frameWord(m.V.L, old, FM_GEN)];
    expect(k(() => reclaim_file_page(f, 3), 0)).toBe(true);
    expect(m.V.I[frameWord(m.V.L, old, FM_GEN)]).not.toBe(gen);
    expect(pte(A, a + 3 * P)).toBe(0);
    expect(pte(B, b + 3 * P)).toBe(0);
    expect(stat(ST_RMAP_UNMAP)).toBe(2);
    expect([rd(1, a + 3 * P), rd(2, b + 3 * P)]).toEqual([53, 53]); // faulted back in from the copy
    expect(pte_pfn(pte(A, a + 3 * P))).not.toBe(old);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });

  it('leaves a locked page, and a page someone else holds a reference to', () => {
    const { m, A, k, f, rd, wr } = setup();
    const a = k(() => do_mmap(A, 0, 2 * P, RW, MAP_SHARED, f, 0), 1);
    wr(1, a, 5);
    wr(1, a + P, 6);
    const pfn = k(() => find_get_page(f, 0), 1); // a reference of our own
    k(() => lock_page(pfn), 1);
    expect(k(() => reclaim_file_page(f, 0), 0)).toBe(false); // trylock fails
    k(() => unlock_page(pfn), 1);
    expect(k(() => reclaim_file_page(f, 0), 0)).toBe(false); // unmapped, but our reference pins it
    k(() => put_page(pfn), 1);
    expect(rd(1, a)).toBe(5);
    expect(k(() => reclaim_file_range(f, 0, 16), 0)).toBe(2);
    expect([rd(1, a), rd(1, a + P)]).toEqual([5, 6]);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });
});
