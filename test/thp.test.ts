import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_madvise, do_madvise_advice, MADV_DONTNEED, MADV_HUGEPAGE } from '../src/mm/madvise.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import {
  pmd_trans_huge, pud_trans_huge, move_huge_pmd, move_huge_pud, copy_huge_pmd, split_huge_pmd, thp_hooks,
  dax_device_create, HPAGE_PUD_NR, pgtable_trans_huge_withdraw, pgtable_trans_huge_deposit,
} from '../src/mm/huge_memory.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED } from '../src/mm/mremap.ts';
import { pud_alloc, pmd_alloc, arch } from '../src/mm/pgtable.ts';
import { mm_alloc, task_create, exit_mmap } from '../src/mm/mm.ts';
import { do_exit_mm } from '../src/mm/fork.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { vma_insert, vma_count, vma_lookup, vma_read } from '../src/mm/vma.ts';
import { file_put } from '../src/mm/shmem.ts';
import { MAP_SHARED, mmap_write_lock, mmap_write_unlock } from '../src/mm/mmap.ts';
import { page_ref, page_mapcount, free_frames, folio_entire_mapcount } from '../src/mm/page_alloc.ts';
import { pte_pfn, pte_write, _PAGE_PRESENT } from '../src/hw/pte.ts';
import { audit } from '../src/oracles/audit.ts';
import { loadScenario, parseScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';
import { summary } from '../src/report/summary.ts';
import { PMD_SIZE, PUD_SIZE, statWord, ST_THP_FAULT, ST_THP_SPLIT, ST_MOVE_HUGE_PMD, ST_MOVE_HUGE_PUD } from '../src/hw/layout.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup(o: { cpus?: number; arch?: string; knobs?: string[]; dataFrames?: number } = {}) {
  const m = testMachine({ cpus: o.cpus ?? 2, arch: o.arch, knobs: o.knobs, dataFrames: o.dataFrames ?? 8192, tableFrames: 512 });
  const { mm, tasks } = m.process([...Array(o.cpus ?? 2).keys()]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const I = m.V.I;
  const pmdp = (mmx: number, va: number) => k(() => pmd_offset(pud_offset(pgd_offset(mmx, va), va), va));
  const pmd = (mmx: number, va: number) => Atomics.load(I, pmdp(mmx, va));
  const pte = (mmx: number, va: number) => k(() => Atomics.load(I, pte_offset(pmdp(mmx, va), va)));
  const rd = (va: number, cpu = 0) => k(() => (m.cpus[cpu].read(va) ? m.cpus[cpu].value : 'SEGV'), cpu);
  const wr = (va: number, v: number, cpu = 0) => k(() => m.cpus[cpu].write(va, v), cpu);
  const stat = (f: number) => m.cpus.reduce((a, _c, i) => a + I[statWord(m.V.L, i, f)], 0);
  /** a THP region of `huge` 2 MiB pieces at a 2 MiB-aligned address */
  const thp = (huge: number, at = 0x4000_0000) => {
    const a = k(() => do_mmap(mm, at, huge * PMD_SIZE, RW, ANON | MAP_FIXED));
    expect(k(() => do_madvise_advice(mm, a, huge * PMD_SIZE, MADV_HUGEPAGE))).toBe(0);
    return a;
  };
  const pudp = (mmx: number, va: number) => k(() => pud_offset(pgd_offset(mmx, va), va));
  return { m, mm, tasks, k, pmdp, pmd, pte, rd, wr, stat, thp, pudp };
}

describe('transparent huge pages at PMD level', () => {
  it('a fault installs one huge PMD; contents go through it; munmap frees the compound page after the flush', () => {
    const { m, mm, k, pmd, rd, wr, stat, thp } = setup();
    const free0 = free_frames(m.V).data;
    const a = thp(1);
    wr(a + 5 * P, 55);
    const e = pmd(mm, a);
    expect(pmd_trans_huge(e) && (e & _PAGE_PRESENT) !== 0).toBe(true);
    expect(stat(ST_THP_FAULT)).toBe(1);
    const head = pte_pfn(e);
    expect(head % 512).toBe(0);
    expect([page_ref(m.V, head), folio_entire_mapcount(m.V, head)]).toEqual([1, 1]);
    expect(free_frames(m.V).data).toBe(free0 - 512);
    wr(a + 511 * P + 3 * 512, 77, 1);
    expect(rd(a + 5 * P, 1)).toBe(55);
    expect(rd(a + 511 * P + 3 * 512)).toBe(77);
    expect(rd(a + 100 * P)).toBe(0);
    expect(stat(ST_THP_FAULT)).toBe(1); // one fault for the whole 2 MiB
    expect(audit(m.V).ok).toBe(true);
    k(() => do_munmap(mm, a, PMD_SIZE));
    expect(pmd(mm, a)).toBe(0);
    expect(rd(a + 5 * P, 1)).toBe('SEGV'); // its cached piece was flushed
    expect(free_frames(m.V).data).toBe(free0);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('the audit knows the deposited page tables: one per huge PMD', () => {
    const { m, mm, k, pmdp, wr, thp } = setup();
    const a = thp(1);
    wr(a, 1);
    const t = k(() => pgtable_trans_huge_withdraw(pmdp(mm, a)));
    expect(t).toBeGreaterThan(0);
    const p = audit(m.V).problems.join('\n');
    expect(p).toMatch(/has 1 huge PMD\(s\) but 0 deposited page table\(s\)/);
    expect(p).toMatch(new RegExp(`page-table pfn ${t} is allocated but no table or file references it`));
    k(() => pgtable_trans_huge_deposit(pmdp(mm, a), t));
    expect(audit(m.V).ok).toBe(true);
  });

  it('split keeps contents and refcounts: partial munmap, mprotect and MADV_DONTNEED of a huge PMD split it', () => {
    for (const op of ['munmap', 'mprotect', 'dontneed'] as const) {
      const { m, mm, k, pmd, pte, rd, wr, stat, thp } = setup();
      const free0 = free_frames(m.V).data;
      const a = thp(1);
      for (let p = 0; p < 512; p += 37) wr(a + p * P, 1000 + p);
      const head = pte_pfn(pmd(mm, a));
      rd(a + 40 * P, 1); // cpu 1 caches a piece
      const r = op === 'munmap' ? k(() => do_munmap(mm, a + 37 * P, 2 * P))
        : op === 'mprotect' ? k(() => do_mprotect(mm, a + 37 * P, 2 * P, PROT_READ))
          : k(() => do_madvise(mm, a + 37 * P, 2 * P, MADV_DONTNEED));
      expect(r, op).toBe(0);
      expect(stat(ST_THP_SPLIT), op).toBe(1);
      expect(pmd_trans_huge(pmd(mm, a)), op).toBe(false);
      expect(pte_pfn(pte(mm, a + 74 * P)), op).toBe(head + 74);
      const gone = op !== 'mprotect';
      expect(rd(a + 37 * P, 1), op).toBe(op === 'munmap' ? 'SEGV' : op === 'dontneed' ? 0 : 1037);
      for (let p = 0; p < 512; p += 37) if (p !== 37) expect(rd(a + p * P, p % 2), `${op} page ${p}`).toBe(1000 + p);
      // the folio: one reference per PTE still mapping it; each subpage its own mapcount
      expect(page_ref(m.V, head), op).toBe(gone ? 510 : 512);
      expect(folio_entire_mapcount(m.V, head), op).toBe(0);
      expect([page_mapcount(m.V, head + 38), page_mapcount(m.V, head + 39)], op).toEqual(gone ? [0, 1] : [1, 1]);
      if (op === 'mprotect') {
        expect(pte_write(pte(mm, a + 37 * P))).toBe(false);
        expect(pte_write(pte(mm, a + 39 * P))).toBe(true);
        expect(k(() => m.cpus[1].write(a + 37 * P, 1), 1)).toBe(false); // SIGSEGV
      }
      expect(audit(m.V).problems, op).toEqual([]);
      k(() => do_munmap(mm, a, PMD_SIZE));
      expect(free_frames(m.V).data, op).toBe(free0); // the last PTE's reference freed the whole compound page
      expect(audit(m.V).ok, op).toBe(true);
      expect(m.violations, op).toEqual([]);
    }
  });

  it('mprotect of a whole huge PMD changes it in place; a write fault to a shared huge page splits it and copies 4 KiB', () => {
    const { m, mm, k, pmd, rd, wr, stat, thp } = setup();
    const a = thp(2);
    wr(a, 1);
    wr(a + PMD_SIZE, 2);
    rd(a + 3 * P, 1);
    expect(k(() => do_mprotect(mm, a, PMD_SIZE, PROT_READ))).toBe(0);
    expect(stat(ST_THP_SPLIT)).toBe(0);
    expect(pmd_trans_huge(pmd(mm, a)) && !pte_write(pmd(mm, a))).toBe(true);
    expect(k(() => m.cpus[1].write(a + 3 * P, 9), 1)).toBe(false); // its writable piece was flushed
    expect(k(() => do_mprotect(mm, a, PMD_SIZE, RW))).toBe(0);
    expect(pte_write(pmd(mm, a))).toBe(true); // exclusively ours: writable again
    wr(a + 3 * P, 9, 1);
    expect(rd(a + 3 * P)).toBe(9);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('move_huge_pmd moves one entry (and its deposit), contents follow, the old range is flushed before the locks drop', () => {
    for (const [to, what] of [[0x8000_0000, 'another PMD table'], [0x4000_0000 + 2 * PMD_SIZE, 'the same PMD table']] as const) {
      const { m, mm, k, pmd, pmdp, rd, wr, stat, thp } = setup();
      const a = thp(1);
      const b = thp(1, to);
      wr(a + 5 * P, 55);
      wr(a + 400 * P, 44);
      expect(rd(a + 5 * P, 1)).toBe(55); // cpu 1 caches a piece of the old range
      const head = pte_pfn(pmd(mm, a));
      const vma = vma_read(m.V, mm, vma_lookup(m.V, mm, a));
      const moved = k(() => {
        mmap_write_lock(mm);
        const newp = pmd_alloc(mm, pud_alloc(mm, pgd_offset(mm, b), b), b);
        const r = move_huge_pmd(mm, vma, a, b, pmdp(mm, a), newp);
        mmap_write_unlock(mm);
        return r;
      });
      expect(moved, what).toBe(true);
      expect(stat(ST_MOVE_HUGE_PMD)).toBe(1);
      expect(pmd(mm, a), what).toBe(0);
      expect(pte_pfn(pmd(mm, b)), what).toBe(head);
      expect([rd(b + 5 * P, 1), rd(b + 400 * P)], what).toEqual([55, 44]);
      expect(rd(a + 5 * P, 1), what).toBe(0); // the stale piece was flushed: the old VMA faults in a new page
      expect(audit(m.V).problems, what).toEqual([]); // the deposit went with the entry
      // nothing is moved onto an established PMD, and a moved-away entry cannot move again
      expect(k(() => move_huge_pmd(mm, vma, a, b, pmdp(mm, a), pmdp(mm, b))), what).toBe(false);
      k(() => do_munmap(mm, a, PMD_SIZE));
      k(() => do_munmap(mm, b, PMD_SIZE));
      expect(audit(m.V).ok).toBe(true);
      expect(m.violations).toEqual([]);
    }
  });

  it('split_huge_pmd splits for a partial extent; the PTEs keep the pages', () => {
    const { m, mm, k, pmd, pmdp, pte, rd, wr, stat, thp } = setup();
    const a = thp(1);
    wr(a + 9 * P, 99);
    const head = pte_pfn(pmd(mm, a));
    const vma = vma_read(m.V, mm, vma_lookup(m.V, mm, a));
    k(() => split_huge_pmd(vma, pmdp(mm, a), a + 9 * P));
    expect(stat(ST_THP_SPLIT)).toBe(1);
    expect(pte_pfn(pte(mm, a + 9 * P))).toBe(head + 9);
    expect(rd(a + 9 * P, 1)).toBe(99);
    expect(audit(m.V).ok).toBe(true);
  });

  it('copy_huge_pmd shares the huge page copy-on-write; writes split and copy 4 KiB on either side', () => {
    const { m, mm, tasks, k, pmd, pmdp, pte, rd, wr, stat, thp } = setup();
    const a = thp(1);
    wr(a + 1 * P, 11);
    wr(a + 2 * P, 22);
    const head = pte_pfn(pmd(mm, a));
    const vma = vma_read(m.V, mm, vma_lookup(m.V, mm, a));
    // dup_mmap's part for this VMA: the child mm, its VMA, copy_huge_pmd, then the parent flush
    const child = k(() => mm_alloc());
    k(() => {
      mmap_write_lock(mm);
      vma_insert(m.V, child, vma_count(m.V, child), vma);
      const dpmd = pmd_alloc(child, pud_alloc(child, pgd_offset(child, a), a), a);
      expect(copy_huge_pmd(child, mm, dpmd, pmdp(mm, a), a, vma)).toBe(0);
      arch.flush_tlb_mm(mm);
      mmap_write_unlock(mm);
    });
    expect(pte_pfn(pmd(child, a))).toBe(head);
    expect([page_ref(m.V, head), folio_entire_mapcount(m.V, head)]).toEqual([2, 2]);
    expect([pte_write(pmd(mm, a)), pte_write(pmd(child, a))]).toEqual([false, false]);
    expect(audit(m.V).problems).toEqual([]);
    const ct = task_create(m.V, child, 1, 1);
    k(() => context_switch(m.cpus[1], ct), 1);
    expect(rd(a + 1 * P, 1)).toBe(11);
    wr(a + 1 * P, 111, 1); // the child writes: its PMD splits, one 4 KiB page is copied
    expect(stat(ST_THP_SPLIT)).toBe(1);
    expect(pmd_trans_huge(pmd(mm, a))).toBe(true); // the parent's is still huge
    expect(pte_pfn(pte(child, a + 1 * P))).not.toBe(head + 1);
    expect(pte_pfn(pte(child, a + 2 * P))).toBe(head + 2);
    expect(rd(a + 1 * P, 0)).toBe(11);
    wr(a + 2 * P, 222, 0); // the parent writes: the page is still shared, so the parent splits and copies too
    expect(stat(ST_THP_SPLIT)).toBe(2);
    expect(rd(a + 2 * P, 1)).toBe(22);
    expect(audit(m.V).problems).toEqual([]);
    k(() => { do_exit_mm(child); context_switch(m.cpus[1], tasks[1]); }, 1);
    expect(page_ref(m.V, head)).toBe(511); // the parent's PTEs, less its copied page
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });

  it('an exclusively owned write-protected huge PMD is reused on a write fault; a maybe-pinned one is split by copy_huge_pmd', () => {
    const { m, mm, k, pmd, pmdp, wr, stat, thp } = setup();
    const a = thp(1);
    wr(a, 1);
    const head = pte_pfn(pmd(mm, a));
    const vma = vma_read(m.V, mm, vma_lookup(m.V, mm, a));
    const child = k(() => mm_alloc());
    thp_hooks.folio_maybe_dma_pinned = (h) => h === head;
    try {
      const r = k(() => {
        vma_insert(m.V, child, 0, vma);
        const dpmd = pmd_alloc(child, pud_alloc(child, pgd_offset(child, a), a), a);
        return copy_huge_pmd(child, mm, dpmd, pmdp(mm, a), a, vma);
      });
      expect(r).toBe(-11); // -EAGAIN: the caller copies PTEs
    } finally {
      thp_hooks.folio_maybe_dma_pinned = () => false;
    }
    expect(stat(ST_THP_SPLIT)).toBe(1);
    expect(pmd(child, a)).toBe(0);
    expect(page_ref(m.V, head)).toBe(512);
    k(() => exit_mmap(child));
    // reuse: shared with a child that exits at once; the parent's write then finds the page its own again
    const b = thp(1, 0x8000_0000);
    wr(b, 1);
    const hb = pte_pfn(pmd(mm, b));
    const vb = vma_read(m.V, mm, vma_lookup(m.V, mm, b));
    const c2 = k(() => mm_alloc());
    k(() => {
      vma_insert(m.V, c2, 0, vb);
      const dpmd = pmd_alloc(c2, pud_alloc(c2, pgd_offset(c2, b), b), b);
      expect(copy_huge_pmd(c2, mm, dpmd, pmdp(mm, b), b, vb)).toBe(0);
      arch.flush_tlb_mm(mm);
    });
    expect(pte_write(pmd(mm, b))).toBe(false);
    k(() => exit_mmap(c2)); // the child had no task
    wr(b + P, 2);
    expect(stat(ST_THP_SPLIT)).toBe(1); // only the pinned one's
    expect(pte_pfn(pmd(mm, b))).toBe(hb);
    expect(pte_write(pmd(mm, b))).toBe(true);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });

  it('thp.split_no_ref: a split that forgets the new PTEs\' references is caught by the audit, then by the allocator', () => {
    const { m, mm, k, wr, thp } = setup({ knobs: ['thp.split_no_ref'] });
    const a = thp(1);
    wr(a, 1);
    expect(k(() => do_mprotect(mm, a + P, P, PROT_READ))).toBe(0); // splits, keeps every page mapped
    const r = audit(m.V);
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(/refcount 1 but 512 references exist/);
    expect(m.violations).toEqual([]);
    k(() => do_munmap(mm, a + 2 * P, P)); // the one reference goes: the whole 2 MiB is freed under 511 PTEs
    expect(m.violations.map((v) => v.kind)).toContain('free-mapped');
    expect(audit(m.V).problems.join('\n')).toMatch(/is free but still referenced/);
  });
});

describe('mremap through move_page_tables', () => {
  it('moves huge PMDs whole (HPAGE_PMD) when both sides are aligned, splits them when not; contents follow', () => {
    for (const shift of [0, 5 * P]) {
      const { m, mm, k, pmd, rd, wr, stat, thp } = setup();
      const a = thp(2);
      for (let p = 0; p < 1024; p += 101) wr(a + p * P, 500 + p);
      expect(rd(a + 101 * P, 1)).toBe(601);
      const heads = [pte_pfn(pmd(mm, a)), pte_pfn(pmd(mm, a + PMD_SIZE))];
      const b = 0x8000_0000 + shift;
      expect(k(() => do_mremap(mm, a, 2 * PMD_SIZE, 2 * PMD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b)), `shift ${shift}`).toBe(b);
      if (shift === 0) {
        expect(stat(ST_MOVE_HUGE_PMD)).toBe(2);
        expect([pte_pfn(pmd(mm, b)), pte_pfn(pmd(mm, b + PMD_SIZE))]).toEqual(heads);
        expect(stat(ST_THP_SPLIT)).toBe(0);
      } else {
        expect(stat(ST_MOVE_HUGE_PMD)).toBe(0);
        expect(stat(ST_THP_SPLIT)).toBe(2);
      }
      for (let p = 0; p < 1024; p += 101) expect(rd(b + p * P, p % 2), `shift ${shift} page ${p}`).toBe(500 + p);
      expect(rd(a + 101 * P, 1)).toBe('SEGV');
      expect(audit(m.V).problems, `shift ${shift}`).toEqual([]);
      k(() => do_munmap(mm, b, 2 * PMD_SIZE));
      expect(audit(m.V).ok).toBe(true);
      expect(m.violations).toEqual([]);
    }
  });

  it('moves the 1 GiB PUD leaf whole (HPAGE_PUD)', () => {
    const { m, mm, k, pudp, rd, wr, stat } = setup({ dataFrames: HPAGE_PUD_NR + 8192 });
    const dev = k(() => dax_device_create());
    const a = PUD_SIZE;
    expect(k(() => do_mmap(mm, a, PUD_SIZE, RW, MAP_SHARED | MAP_FIXED, dev, 0))).toBe(a);
    k(() => file_put(dev));
    wr(a + 3 * P, 33);
    wr(a + 400 * PMD_SIZE, 70, 1);
    const b = 3 * PUD_SIZE;
    expect(k(() => do_mremap(mm, a, PUD_SIZE, PUD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, b))).toBe(b);
    expect(stat(ST_MOVE_HUGE_PUD)).toBe(1);
    expect(pud_trans_huge(Atomics.load(m.V.I, pudp(mm, b)))).toBe(true);
    expect([rd(b + 3 * P, 1), rd(b + 400 * PMD_SIZE)]).toEqual([33, 70]);
    expect(rd(a + 400 * PMD_SIZE, 1)).toBe('SEGV');
    expect(stat(ST_THP_FAULT)).toBe(1); // moved, not refaulted
    k(() => do_munmap(mm, b, PUD_SIZE));
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });
});

describe('PUD leaves (a DAX-like device of one 1 GiB page)', () => {
  const big = () => setup({ dataFrames: HPAGE_PUD_NR + 8192 });

  it('a fault installs a PUD leaf; move_huge_pud moves it and flushes the old range; zap and partial unmap', () => {
    const { m, mm, k, pudp, pte, rd, wr, stat } = big();
    const free0 = free_frames(m.V).data;
    const dev = k(() => dax_device_create());
    expect(dev).toBeGreaterThanOrEqual(0);
    const a = PUD_SIZE;
    const b = 2 * PUD_SIZE;
    expect(k(() => do_mmap(mm, a, PUD_SIZE, RW, MAP_SHARED | MAP_FIXED, dev, 0))).toBe(a);
    expect(k(() => do_mmap(mm, b, PUD_SIZE, RW, MAP_SHARED | MAP_FIXED, dev, 0))).toBe(b);
    k(() => file_put(dev)); // the VMAs hold it now
    wr(a + 5 * P, 55);
    wr(a + 300 * PMD_SIZE + 7 * P, 77, 1);
    const e = Atomics.load(m.V.I, pudp(mm, a));
    expect(pud_trans_huge(e) && (e & _PAGE_PRESENT) !== 0).toBe(true);
    expect(stat(ST_THP_FAULT)).toBe(1);
    const head = pte_pfn(e);
    expect([page_ref(m.V, head), folio_entire_mapcount(m.V, head)]).toEqual([2, 1]); // the device's and the leaf's
    expect(rd(a + 300 * PMD_SIZE + 7 * P)).toBe(77);
    expect(audit(m.V).problems).toEqual([]);
    // the move, as mremap's HPAGE_PUD case does it
    const vma = vma_read(m.V, mm, vma_lookup(m.V, mm, a));
    expect(k(() => {
      mmap_write_lock(mm);
      const r = move_huge_pud(mm, vma, a, b, pudp(mm, a), pud_alloc(mm, pgd_offset(mm, b), b));
      mmap_write_unlock(mm);
      return r;
    })).toBe(true);
    expect(stat(ST_MOVE_HUGE_PUD)).toBe(1);
    expect(Atomics.load(m.V.I, pudp(mm, a))).toBe(0);
    expect([rd(b + 5 * P, 1), rd(b + 300 * PMD_SIZE + 7 * P)]).toEqual([55, 77]);
    k(() => do_munmap(mm, a, PUD_SIZE)); // nothing left to zap there: no flush of its own
    expect(rd(a + 5 * P, 1)).toBe('SEGV'); // so it was the move that flushed cpu 1's piece
    expect(audit(m.V).problems).toEqual([]);
    // a partial munmap splits (clears) the leaf; the rest refaults in PTEs from the device memory
    k(() => do_munmap(mm, b + PUD_SIZE - PMD_SIZE, PMD_SIZE));
    expect(Atomics.load(m.V.I, pudp(mm, b)) & 0x80).toBe(0);
    expect(rd(b + 5 * P, 1)).toBe(55);
    expect(pte_pfn(pte(mm, b + 5 * P))).toBe(head + 5);
    expect(audit(m.V).problems).toEqual([]);
    k(() => do_munmap(mm, b, PUD_SIZE));
    expect(free_frames(m.V).data).toBe(free0); // the last VMA took the device and its memory with it
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('mprotect of a whole PUD leaf changes it in place; of a part, clears it', () => {
    const { m, mm, k, pudp, rd, wr } = big();
    const dev = k(() => dax_device_create());
    const a = PUD_SIZE;
    expect(k(() => do_mmap(mm, a, PUD_SIZE, RW, MAP_SHARED | MAP_FIXED, dev, 0))).toBe(a);
    k(() => file_put(dev));
    wr(a, 5);
    rd(a + P, 1);
    expect(k(() => do_mprotect(mm, a, PUD_SIZE, PROT_READ))).toBe(0);
    expect(pud_trans_huge(Atomics.load(m.V.I, pudp(mm, a))) && !pte_write(Atomics.load(m.V.I, pudp(mm, a)))).toBe(true);
    expect(k(() => m.cpus[1].write(a + P, 1), 1)).toBe(false);
    expect(k(() => do_mprotect(mm, a, PMD_SIZE, RW))).toBe(0);
    expect(Atomics.load(m.V.I, pudp(mm, a)) & 0x80).toBe(0);
    wr(a + P, 6, 1);
    expect([rd(a), rd(a + P)]).toEqual([5, 6]);
    expect(audit(m.V).problems).toEqual([]);
    k(() => do_munmap(mm, a, PUD_SIZE));
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });
});

describe('THP region fields', () => {
  const scen = (region: Record<string, unknown>, memoryMiB = 64) => ({
    name: 'x', description: 'x', machine: { cpus: 1, memoryMiB },
    processes: [{ name: 'p', regions: [{ name: 'r', pages: 512, ...region }], threads: [{ name: 't', cpus: 0, program: [{ op: 'yield' }] }] }],
  });
  it('rejects what is not modelled, naming the field', () => {
    expect(() => parseScenario(scen({ thp: true, shared: true }), 'f.json')).toThrow(/f\.json: processes\.0\.regions\.0\.thp: .*private anonymous/);
    expect(() => parseScenario(scen({ thp: 'pud', pages: HPAGE_PUD_NR }), 'f.json')).toThrow(/regions\.0\.thp: 'pud' .*shared: true/);
    expect(() => parseScenario(scen({ thp: 'pud', shared: true }), 'f.json')).toThrow(/regions\.0\.pages: a 'pud' region is one 1 GiB device: 262144 pages/);
    expect(() => parseScenario(scen({ thp: 'huge' }), 'f.json')).toThrow(/regions\.0\.thp/);
  });
  it('a \'pud\' region on a machine without 1 GiB to spare is refused at boot, naming memoryMiB', async () => {
    const s = parseScenario(scen({ thp: 'pud', shared: true, pages: HPAGE_PUD_NR }, 512));
    await expect(runScenario(s, { threads: 1, ops: 1 })).rejects.toThrow(/processes\.0\.regions\.0\.thp: cannot allocate 1 GiB .*memoryMiB 512/);
  });
  it('boots a \'pud\' region and runs accessors on it, clean (x86, s390)', async () => {
    const s = parseScenario({
      ...scen({ thp: 'pud', shared: true, pages: HPAGE_PUD_NR }, 1100),
      machine: { cpus: 2, memoryMiB: 1100, tableFrames: 2048 },
      processes: [{
        name: 'p', regions: [{ name: 'dev', pages: HPAGE_PUD_NR, thp: 'pud', shared: true }],
        threads: [{ name: 't', cpus: 'all', program: [{ op: 'access', region: 'dev', mode: 'rw', count: 4 }, { op: 'madvise', region: 'dev', at: 'random', pages: [1, 8], advice: 'dontneed' }] }],
      }],
    });
    for (const arch of ['x86', 's390']) {
      const r = await runScenario(s, { arch, threads: 1, ops: 300 });
      expect(r.violations, summary(r)).toEqual([]);
      expect(r.audit.ok && r.teardownAudit.ok, summary(r)).toBe(true);
      expect(r.stats.thpFaults).toBeGreaterThan(0);
    }
  }, 120_000);
});

describe('THP scenarios on worker threads', () => {
  it('thp-vs-access runs clean on x86 and arm64, with huge faults and splits; on s390 only v1\'s zap batch is reported', async () => {
    const s = await loadScenario('scenarios/thp-vs-access.ts');
    for (const arch of ['x86', 'arm64', 's390']) {
      const r = await runScenario(s, { arch, cpus: 4, threads: 4, ops: 1500, seed: 5, hangTimeoutMs: 30000 });
      if (arch === 's390') {
        // s390 frees pages at __tlb_remove_page (arch/s390/include/asm/tlb.h) while v1's
        // fast range in zap_pte_range still holds the clear: docs/fidelity.md. Mostly a walk
        // meets the freed frame (pte-maps-free-frame) or a TLB entry its new generation; now
        // and then the frame is reused and written first, and the reader meets the new owner's
        // data (content: once in a full test run on 2026-12-06; 0 of 15 re-runs each before and after
        // the mailboxes of src/hw/cpu.ts, 28 of 30 pte-maps-free-frame alone)
        expect(r.violations.every((v) => ['pte-maps-free-frame', 'uaf-stale-tlb', 'content'].includes(v.kind)), `${arch}: ${summary(r)}`).toBe(true);
      } else {
        expect(r.violations, `${arch}: ${summary(r)}`).toEqual([]);
        expect(r.audit.ok && r.teardownAudit.ok, `${arch}: ${summary(r)}`).toBe(true);
      }
      expect(r.hang).toBeUndefined();
      expect(r.stats.thpFaults, arch).toBeGreaterThan(0);
      expect(r.stats.thpSplits, arch).toBeGreaterThan(0);
    }
  }, 240_000);

  it('thp-mremap runs clean on x86 and s390, moving huge PMDs whole and splitting them for misaligned moves', async () => {
    const s = await loadScenario('scenarios/thp-mremap.ts');
    for (const arch of ['x86', 's390']) {
      // s390 on the series with its suggested fix: the series as posted (v6) frees zapped pages before the
      // IPTE-range, the known true positive of docs/findings/s390-lazy-zap-uaf.md, which this run met in
      // 1 of 2 clean-clone suite runs (6 Dec 2026)
      const lazySeries = arch === 's390' ? 'v6-fixed' as const : undefined;
      const r = await runScenario(s, { arch, cpus: 4, threads: 4, ops: 800, seed: 2, hangTimeoutMs: 30000, lazySeries });
      expect(r.violations, `${arch}: ${summary(r)}`).toEqual([]);
      expect(r.audit.ok && r.teardownAudit.ok, `${arch}: ${summary(r)}`).toBe(true);
      expect(r.stats.movedHugePmds, arch).toBeGreaterThan(0);
      expect(r.stats.thpSplits, arch).toBeGreaterThan(0);
    }
  }, 240_000);

  it('thp-pud-mremap runs clean on x86, arm64 and s390, moving the 1 GiB PUD leaf whole', async () => {
    const s = await loadScenario('scenarios/thp-pud-mremap.ts');
    for (const arch of ['x86', 'arm64', 's390']) {
      const lazySeries = arch === 's390' ? 'v6-fixed' as const : undefined; // as above
      const r = await runScenario(s, { arch, cpus: 4, threads: 4, ops: 600, seed: 3, hangTimeoutMs: 30000, lazySeries });
      expect(r.violations, `${arch}: ${summary(r)}`).toEqual([]);
      expect(r.audit.ok && r.teardownAudit.ok, `${arch}: ${summary(r)}`).toBe(true);
      expect(r.stats.movedHugePuds, arch).toBeGreaterThan(0);
    }
  }, 240_000);

  // whole huge PMDs zapped (munmap of the whole region) under accessors on the other CPUs
  const zapWhole = parseScenario({
    name: 'thp-zap-whole', description: 'whole huge PMDs zapped under accessors',
    machine: { cpus: 4, tlbEntries: 256, memoryMiB: 64 },
    processes: [{
      name: 'app', regions: [{ name: 'buf', pages: 1024, thp: true }],
      threads: [
        { name: 'worker', cpus: 'rest', program: [{ op: 'access', region: 'buf', mode: 'rw', count: 4 }] },
        {
          name: 'unmapper', cpus: 0, program: [
            { op: 'munmap', region: 'buf', at: 0, pages: 1024, save: 'hole' },
            { op: 'mmap', region: 'buf', at: 'hole' },
            { op: 'repeat', times: 8, steps: [{ op: 'yield' }] },
          ],
        },
      ],
    }],
  });

  // deterministic with hot preemption (the swarm's det-hot family), so that neither the catch nor the
  // THP faults the clean run must make depend on the machine's load: free-running (threads 4, delay
  // 0.05) a clean run on a loaded machine once made no THP fault at all (issue #16: load-independent tests)
  it('thp.free_before_flush (the huge page freed before the gather\'s flush) is caught by the UAF oracle; without it the run is clean', async () => {
    const det = { cpus: 4, mode: 'deterministic' as const, hotPreempt: 0.1, overtime: 4, ops: 2000, hangTimeoutMs: 30000 };
    const clean = await runScenario(zapWhole, { ...det, seed: 1 });
    expect(clean.violations, summary(clean)).toEqual([]);
    expect(clean.audit.ok && clean.teardownAudit.ok).toBe(true);
    expect(clean.stats.thpFaults).toBeGreaterThan(0);
    const kinds: string[] = [];
    for (let seed = 1; seed <= 3 && !kinds.includes('uaf-stale-tlb'); seed++) {
      const r = await runScenario(zapWhole, { ...det, seed, knobs: ['thp.free_before_flush'], keepGoing: true });
      kinds.push(...r.violations.map((v) => v.kind));
    }
    expect(kinds).toContain('uaf-stale-tlb');
  }, 240_000);
});
