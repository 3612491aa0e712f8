import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_madvise, MADV_DONTNEED } from '../src/mm/madvise.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { hugepage_madvise, pmd_trans_huge } from '../src/mm/huge_memory.ts';
import { page_ref, page_mapcount, free_frames, folio_entire_mapcount } from '../src/mm/page_alloc.ts';
import { pte_pfn, pte_write, _PAGE_PRESENT } from '../src/hw/pte.ts';
import { audit } from '../src/sim/audit.ts';
import { PMD_SIZE, statWord, ST_THP_FAULT, ST_THP_SPLIT } from '../src/hw/layout.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup(o: { cpus?: number; arch?: string; knobs?: string[] } = {}) {
  const m = testMachine({ cpus: o.cpus ?? 2, arch: o.arch, knobs: o.knobs, dataFrames: 8192, tableFrames: 512 });
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
    expect(k(() => hugepage_madvise(mm, a, a + huge * PMD_SIZE))).toBe(0);
    return a;
  };
  return { m, mm, tasks, k, pmdp, pmd, pte, rd, wr, stat, thp };
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
});
