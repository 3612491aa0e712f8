import { describe, it, expect } from 'vitest';
import { Tlb, TLB_W, TLB_D } from '../src/hw/tlb.ts';
import { pfn_pte, pte_pfn, pte_present, pte_write, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE } from '../src/hw/pte.ts';
import { pgtIndex, walk, WALK_NOT_PRESENT, WALK_PROT } from '../src/hw/walker.ts';
import { frameWord, FM_FLAGS, PUD_SHIFT, PMD_SHIFT, PGDIR_SHIFT } from '../src/hw/layout.ts';
import { testMachine } from './helpers.ts';
import { PG_FREE } from '../src/hw/layout.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';

describe('PTE encoding', () => {
  it('round-trips pfn and flags in one int32, including pfns that set the sign bit', () => {
    for (const pfn of [1, 4095, 1 << 20, (1 << 22) - 1]) {
      const e = pfn_pte(pfn, _PAGE_PRESENT | _PAGE_RW);
      expect(pte_pfn(e)).toBe(pfn);
      expect(pte_present(e)).toBe(true);
      expect(pte_write(e)).toBe(true);
      expect(e | 0).toBe(e);
    }
  });
  it('indexes every level of a 48-bit address, including bits above 32', () => {
    const va = 0x7ffff7ff0000;
    expect(pgtIndex(va, PGDIR_SHIFT)).toBe(255);
    expect(pgtIndex(va, PUD_SHIFT)).toBe(511);
    expect(pgtIndex(va, PMD_SHIFT)).toBe(447);
    expect(pgtIndex(va, 12)).toBe(496);
  });
});

describe('TLB', () => {
  it('hits only for the same ASID and page, and each flush drops what it should', () => {
    const t = new Tlb(64);
    const s = t.fill(3, 100, 77, TLB_W | TLB_D, 5);
    expect(t.lookup(3, 100)).toBe(s);
    expect(t.lookup(4, 100)).toBe(-1);
    expect(t.gen[s]).toBe(5);
    t.flushOne(4, 100);
    expect(t.lookup(3, 100)).toBe(s);
    t.flushOne(3, 100);
    expect(t.lookup(3, 100)).toBe(-1);
    for (let v = 0; v < 10; v++) t.fill(1, v, v, 0, 0);
    t.fill(2, 20, 1, 0, 0);
    t.flushRange(1, 2, 5);
    expect([0, 1, 2, 3, 4, 5].map((v) => t.lookup(1, v) >= 0)).toEqual([true, true, false, false, false, true]);
    t.flushRange(1, 0, 1000); // wider than the TLB: scans
    expect(t.countValid(1)).toBe(0);
    expect(t.countValid(2)).toBe(1);
    t.flushAsid(2);
    expect(t.countValid()).toBe(0);
  });
});

describe('page walker', () => {
  it('faults on a missing entry, fills the TLB after the fault, and sets accessed/dirty with compareExchange', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const va = m.on(0, () => do_mmap(mm, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => {
      expect(walk(cpu, mm, va, Math.floor(va / 4096), false)).toBe(WALK_NOT_PRESENT);
      expect(cpu.write(va, 1234)).toBe(true);
      const ptep = pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va);
      const e = Atomics.load(cpu.I, ptep);
      expect(e & (_PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_RW | _PAGE_USER)).toBe(_PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_RW | _PAGE_USER);
      // clear A/D; a read walk sets A only, a write walk sets D too
      Atomics.store(cpu.I, ptep, e & ~(_PAGE_ACCESSED | _PAGE_DIRTY));
      cpu.tlb.flushAll();
      expect(walk(cpu, mm, va, Math.floor(va / 4096), false)).toBeGreaterThanOrEqual(0);
      expect(Atomics.load(cpu.I, ptep) & (_PAGE_ACCESSED | _PAGE_DIRTY)).toBe(_PAGE_ACCESSED);
      expect(walk(cpu, mm, va, Math.floor(va / 4096), true)).toBeGreaterThanOrEqual(0);
      expect(Atomics.load(cpu.I, ptep) & _PAGE_DIRTY).toBe(_PAGE_DIRTY);
      // write-protect: a write walk reports a protection fault
      Atomics.store(cpu.I, ptep, Atomics.load(cpu.I, ptep) & ~_PAGE_RW);
      expect(walk(cpu, mm, va, Math.floor(va / 4096), true)).toBe(WALK_PROT);
      expect(cpu.read(va)).toBe(true);
      expect(cpu.value).toBe(1234);
    });
    expect(m.violations).toEqual([]);
  });

  it('translates through a huge PMD leaf to the right 4 KiB piece', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const va = m.on(0, () => do_mmap(mm, 0x40000000, 2 * 1024 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | 0x10));
    m.on(0, (cpu) => {
      expect(cpu.write(va, 1)).toBe(true); // builds the tables down to the PMD
      const pmdp = pmd_offset(pud_offset(pgd_offset(mm, va), va), va);
      const head = m.V.L.dataStart + 512; // an aligned run of data frames
      Atomics.store(cpu.I, pmdp, pfn_pte(head, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_PSE));
      for (let p = head; p < head + 512; p++) Atomics.store(cpu.I, frameWord(m.V.L, p, FM_FLAGS), 0); // allocated
      cpu.tlb.flushAll();
      const s = walk(cpu, mm, va + 5 * 4096, Math.floor(va / 4096) + 5, false);
      expect(cpu.tlb.pfn[s]).toBe(head + 5);
    });
  });

  it('reports a walk that reaches a freed page table', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const va = m.on(0, () => do_mmap(mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => {
      cpu.write(va, 1);
      const pmdp = pmd_offset(pud_offset(pgd_offset(mm, va), va), va);
      const table = pte_pfn(Atomics.load(cpu.I, pmdp));
      Atomics.store(cpu.I, frameWord(m.V.L, table, FM_FLAGS), PG_FREE); // as if freed while still hooked
      cpu.tlb.flushAll();
      walk(cpu, mm, va, Math.floor(va / 4096), false);
    });
    expect(m.violations.map((v) => v.kind)).toEqual(['walk-freed-table']);
  });
});

describe('statistics table', () => {
  it('every ST_* index names exactly one STAT_NAMES entry, and every entry has one', async () => {
    const layout = await import('../src/hw/layout.ts');
    const st = Object.entries(layout).filter(([k]) => k.startsWith('ST_')) as [string, number][];
    expect(st.length).toBe(layout.STAT_NAMES.length);
    const indices = st.map(([, v]) => v).sort((a, b) => a - b);
    expect(indices).toEqual([...layout.STAT_NAMES.keys()]);
    expect(layout.STAT_NAMES.length).toBeLessThanOrEqual(layout.STAT_WORDS);
    // the run result's names are the table's (ST_OPS counts 'ops', ST_IPI_RECV 'ipiReceived')
    expect(layout.STAT_NAMES[layout.ST_OPS]).toBe('ops');
    expect(layout.STAT_NAMES[layout.ST_IPI_RECV]).toBe('ipiReceived');
    expect(layout.STAT_NAMES[layout.ST_TRUNCATED]).toBe('truncatedPages');
  });
});
