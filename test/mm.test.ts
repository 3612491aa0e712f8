import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import {
  do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_FIXED, MAP_FIXED_NOREPLACE, PROT_READ, PROT_WRITE, PROT_NONE, MMAP_BASE,
} from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_madvise, MADV_DONTNEED } from '../src/mm/madvise.ts';
import { vma_list } from '../src/mm/vma.ts';
import { free_frames, zero_pfn } from '../src/mm/page_alloc.ts';
import { exit_mmap, mm_stats } from '../src/mm/mm.ts';
import { audit } from '../src/oracles/audit.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { pte_pfn, pte_write } from '../src/hw/pte.ts';
import { VM_READ, VM_WRITE } from '../src/mm/vm_flags.ts';
import { EINVAL, ENOMEM, EEXIST } from '../src/mm/errno.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function setup(cpus = 2) {
  const m = testMachine({ cpus });
  const { mm } = m.process([...Array(cpus).keys()]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const vmas = () => vma_list(m.V, mm).map((v) => [v.start, v.end, v.flags & (VM_READ | VM_WRITE)]);
  const ptep = (va: number) => k(() => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va));
  return { m, mm, k, vmas, ptep };
}

describe('mmap / munmap / mprotect VMA layout', () => {
  it('places mappings top-down and merges adjacent anonymous ones, as Linux does', () => {
    const { mm, k, vmas } = setup();
    const a = k(() => do_mmap(mm, 0, 4 * P, RW, ANON));
    const b = k(() => do_mmap(mm, 0, 2 * P, RW, ANON));
    expect(a).toBe(MMAP_BASE - 4 * P);
    expect(b).toBe(a - 2 * P);
    expect(vmas()).toEqual([[b, a + 4 * P, VM_READ | VM_WRITE]]);
    const c = k(() => do_mmap(mm, 0, P, PROT_READ, ANON)); // different protection: no merge
    expect(vmas()).toHaveLength(2);
    expect(c).toBe(b - P);
  });

  it('splits on munmap and mprotect, and merges back when protections match again', () => {
    const { mm, k, vmas } = setup();
    const a = k(() => do_mmap(mm, 0, 8 * P, RW, ANON));
    expect(k(() => do_munmap(mm, a + 2 * P, 2 * P))).toBe(0);
    expect(vmas()).toEqual([[a, a + 2 * P, 3], [a + 4 * P, a + 8 * P, 3]]);
    expect(k(() => do_mprotect(mm, a + 5 * P, P, PROT_READ))).toBe(0);
    expect(vmas()).toEqual([[a, a + 2 * P, 3], [a + 4 * P, a + 5 * P, 3], [a + 5 * P, a + 6 * P, 1], [a + 6 * P, a + 8 * P, 3]]);
    expect(k(() => do_mprotect(mm, a + 5 * P, P, RW))).toBe(0);
    expect(vmas()).toEqual([[a, a + 2 * P, 3], [a + 4 * P, a + 8 * P, 3]]);
    expect(k(() => do_mprotect(mm, a, 8 * P, PROT_READ))).toBe(-ENOMEM); // spans a hole
  });

  it('MAP_FIXED replaces, MAP_FIXED_NOREPLACE refuses, and bad arguments give the kernel errnos', () => {
    const { mm, k, vmas } = setup();
    const a = k(() => do_mmap(mm, 0, 4 * P, RW, ANON));
    expect(k(() => do_mmap(mm, a + P, P, PROT_READ, ANON | MAP_FIXED))).toBe(a + P);
    expect(vmas()).toHaveLength(3);
    expect(k(() => do_mmap(mm, a, P, RW, ANON | MAP_FIXED_NOREPLACE))).toBe(-EEXIST);
    expect(k(() => do_mmap(mm, a + 1, P, RW, ANON | MAP_FIXED))).toBe(-EINVAL);
    expect(k(() => do_mmap(mm, 0, 0, RW, ANON))).toBe(-EINVAL);
    expect(k(() => do_mmap(mm, 0, P, RW, MAP_ANONYMOUS))).toBe(-EINVAL);
    expect(k(() => do_munmap(mm, a + 1, P))).toBe(-EINVAL);
    expect(k(() => do_munmap(mm, a, 0))).toBe(-EINVAL);
    expect(k(() => do_munmap(mm, 0x1000_0000, P))).toBe(0); // nothing there: fine
  });
});

describe('faults and unmapping', () => {
  it('maps the zero page on a read fault and a private copy on the first write', () => {
    const { m, k, mm, ptep } = setup();
    const a = k(() => do_mmap(mm, 0, P, RW, ANON));
    k(() => {
      expect(m.cpus[0].read(a)).toBe(true);
      expect(m.cpus[0].value).toBe(0);
    });
    expect(pte_pfn(Atomics.load(m.V.I, ptep(a)))).toBe(zero_pfn(m.V));
    expect(pte_write(Atomics.load(m.V.I, ptep(a)))).toBe(false);
    k(() => m.cpus[1].write(a + 8, 99), 1);
    const e = Atomics.load(m.V.I, ptep(a));
    expect(pte_pfn(e)).not.toBe(zero_pfn(m.V));
    expect(pte_write(e)).toBe(true);
    k(() => m.cpus[0].read(a + 8)); // CPU 0's zero-page entry was flushed by the COW
    expect(m.cpus[0].value).toBe(99);
    expect(m.violations).toEqual([]);
  });

  it('munmap returns every page and page table; the audit agrees', () => {
    const { m, k, mm } = setup();
    const before = free_frames(m.V);
    const a = k(() => do_mmap(mm, 0, 600 * P, RW, ANON)); // spans two PTE tables
    k(() => { for (let p = 0; p < 600; p++) m.cpus[0].write(a + p * P, p + 1); });
    expect(mm_stats(m.V, mm).rss).toBe(600);
    expect(audit(m.V).ok).toBe(true);
    expect(k(() => do_munmap(mm, a, 600 * P))).toBe(0);
    expect(free_frames(m.V).data).toBe(before.data);
    // the PUD/PMD tables stay only if something else could use them: here nothing does,
    // but the PGD-level tables are kept until exit, like the kernel's free_pgd_range floor/ceiling
    expect(mm_stats(m.V, mm).rss).toBe(0);
    expect(audit(m.V)).toMatchObject({ ok: true, usedData: 0 });
    k(() => exit_mmap(mm));
    expect(free_frames(m.V)).toEqual({ tables: before.tables + 1, data: before.data }); // + the PGD
    expect(m.violations).toEqual([]);
  });

  it('keeps page tables a neighbouring VMA still uses', () => {
    const { m, k, mm } = setup();
    const a = k(() => do_mmap(mm, 0x4000_0000, 4 * P, RW, ANON | MAP_FIXED));
    k(() => do_mmap(mm, 0x4000_0000 + 8 * P, 4 * P, PROT_READ, ANON | MAP_FIXED));
    k(() => { m.cpus[0].write(a, 1); m.cpus[0].read(a + 8 * P); });
    const pt = mm_stats(m.V, mm).ptPages;
    k(() => do_munmap(mm, a, 4 * P));
    expect(mm_stats(m.V, mm).ptPages).toBe(pt); // the PTE table also maps a+8P
    k(() => do_munmap(mm, a + 8 * P, 4 * P));
    expect(mm_stats(m.V, mm).ptPages).toBe(0); // now every table below the PGD can go
    expect(audit(m.V).ok).toBe(true);
  });

  it('mprotect: PROT_NONE faults, read-only refuses writes, and RW again reuses the same page', () => {
    const { m, k, mm, ptep } = setup();
    const a = k(() => do_mmap(mm, 0, 2 * P, RW, ANON));
    k(() => m.cpus[1].write(a, 5), 1);
    const pfn = pte_pfn(Atomics.load(m.V.I, ptep(a)));
    k(() => do_mprotect(mm, a, 2 * P, PROT_NONE));
    k(() => expect(m.cpus[1].read(a)).toBe(false), 1); // SIGSEGV, although CPU 1 had it in its TLB
    k(() => do_mprotect(mm, a, 2 * P, PROT_READ));
    k(() => { expect(m.cpus[1].read(a)).toBe(true); expect(m.cpus[1].write(a, 6)).toBe(false); }, 1);
    k(() => do_mprotect(mm, a, 2 * P, RW));
    k(() => expect(m.cpus[1].write(a, 6)).toBe(true), 1);
    expect(pte_pfn(Atomics.load(m.V.I, ptep(a)))).toBe(pfn);
    expect(m.violations).toEqual([]);
  });

  it('shared anonymous memory: one page seen through two mappings, freed when the last goes', () => {
    const { m, k, mm } = setup();
    const before = free_frames(m.V).data;
    const a = k(() => do_mmap(mm, 0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS));
    k(() => m.cpus[0].write(a + P, 42));
    k(() => { expect(m.cpus[1].read(a + P)).toBe(true); expect(m.cpus[1].value).toBe(42); }, 1);
    expect(audit(m.V).ok).toBe(true);
    k(() => do_munmap(mm, a, 2 * P)); // split: the file lives on in the other half
    expect(free_frames(m.V).data).toBe(before - 1); // the page is still in the file's cache
    k(() => do_munmap(mm, a + 2 * P, 2 * P));
    expect(free_frames(m.V).data).toBe(before);
    expect(audit(m.V).ok).toBe(true);
  });
});

describe('madvise(MADV_DONTNEED)', () => {
  it('drops the pages of a range, keeps the VMA, and the next touch reads zero; holes give ENOMEM', () => {
    const { m, k, mm, vmas } = setup();
    const before = free_frames(m.V).data;
    const a = k(() => do_mmap(mm, 0x1000_0000, 4 * P, RW, ANON | MAP_FIXED));
    k(() => { for (let p = 0; p < 4; p++) m.cpus[0].write(a + p * P, p + 1); });
    k(() => m.cpus[1].read(a + P), 1); // cached on CPU 1
    expect(k(() => do_madvise(mm, a, 2 * P, MADV_DONTNEED))).toBe(0);
    expect(vmas()).toHaveLength(1);
    expect(free_frames(m.V).data).toBe(before - 2);
    k(() => { expect(m.cpus[1].read(a + P)).toBe(true); expect(m.cpus[1].value).toBe(0); }, 1); // flushed, refaulted
    k(() => { expect(m.cpus[0].read(a + 2 * P)).toBe(true); expect(m.cpus[0].value).toBe(3); });
    expect(k(() => do_madvise(mm, a - 4 * P, 8 * P, MADV_DONTNEED))).toBe(-ENOMEM); // a hole before
    expect(k(() => do_madvise(mm, a + 1, P, MADV_DONTNEED))).toBe(-EINVAL);
    expect(audit(m.V).ok).toBe(true);
    expect(m.violations).toEqual([]);
  });
});
