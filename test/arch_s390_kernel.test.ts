// s390 primitives as the kernel has them (Linux 6.18), one test each, with the
// source named: arch/s390/include/asm/pgtable.h (set_ptes, ptep_get_and_clear,
// ptep_get_and_clear_full, ptep_set_access_flags), arch/s390/mm/pgtable.c
// (ptep_flush_direct, ptep_flush_lazy, ptep_modify_prot_start),
// arch/s390/include/asm/tlbflush.h (__tlb_flush_mm, __tlb_flush_mm_lazy,
// flush_tlb_mm, flush_tlb_range, flush_tlb_page), arch/s390/include/asm/tlb.h
// (__tlb_remove_page_size, pte_free_tlb), arch/s390/include/asm/mmu_context.h
// (switch_mm_irqs_off, finish_arch_post_lock_switch); and the s390 rule oracle
// (src/oracles/s390_rule.ts).
import { describe, it, expect } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';
import {
  statWord, mmWord, frameWord, ST_QUIESCE, ST_LOCAL_CLEAR, ST_BCAST_SENT, PAGE_SIZE, MM_CPUMASK, MM_S390_ATTACH_MASK, MM_S390_FLUSH_MM,
  FM_REF,
} from '../src/hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_DIRTY, pte_pfn } from '../src/hw/pte.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import {
  pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get_and_clear, ptep_get_and_clear_full, set_pte_at, ptep_clear_flush,
  ptep_set_access_flags, ptep_modify_prot_start, ptep_modify_prot_commit, flush_tlb_range, flush_tlb_page,
} from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu, tlb_remove_table } from '../src/mm/mmu_gather.ts';
import { alloc_pt_page } from '../src/mm/page_alloc.ts';
import { unmap_page_range } from '../src/mm/memory.ts';
import { mm_alloc, task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { do_fork } from '../src/mm/fork.ts';
import { S390_RULE_KIND } from '../src/oracles/s390_rule.ts';

const stat = (m: TestMachine, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];
const quiesces = (m: TestMachine): number => m.cpus.reduce((s, c) => s + stat(m, c.id, ST_QUIESCE), 0);
const pteOf = (m: TestMachine, mm: number, va: number): number =>
  m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va));
const mem = (m: TestMachine, ptep: number): number => Atomics.load(m.V.I, ptep);
const cached = (m: TestMachine, c: number, mm: number, va: number): boolean =>
  m.cpus[c].tlb.lookup(m.cpus[c].asidOf(mm), Math.floor(va / PAGE_SIZE)) >= 0;
const maskWord = (m: TestMachine, mm: number, field: number): number => Atomics.load(m.V.I, mmWord(m.V.L, mm, field));
const kinds = (m: TestMachine): string[] => [...new Set(m.violations.map((v) => v.kind))];
const page = (va: number, p: number): number => va + p * PAGE_SIZE;
const VA = 0x40000000;

/** A process on CPUs 0 and 1; CPU 1 touches `pages` pages (its TLB holds them). */
function setup(pages: number, o: { knobs?: string[]; cpus?: number } = {}) {
  const m = testMachine({ cpus: o.cpus ?? 3, arch: 's390', knobs: o.knobs });
  const { mm, tasks } = m.process([0, 1]);
  expect(m.on(0, () => do_mmap(mm, VA, 64 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))).toBe(VA);
  m.on(1, (cpu) => {
    for (let p = 0; p < pages; p++) expect(cpu.write(page(VA, p), p + 1)).toBe(true);
  });
  return { m, mm, tasks, ptep0: pteOf(m, mm, VA) };
}

/** CPU c switches to a task of a fresh mm: it leaves mm's cpu_attach_mask, stays in its mm_cpumask. */
function detach(m: TestMachine, c: number): number {
  const other = m.on(c, () => mm_alloc());
  const t = task_create(m.V, other, c, 0);
  m.on(c, (cpu) => context_switch(cpu, t));
  return other;
}

describe('s390 PTE stores (arch/s390/include/asm/pgtable.h set_ptes)', () => {
  it('set_pte_at is a plain store: no IPTE into an empty slot, and none over a valid entry either', () => {
    const { m, mm, ptep0 } = setup(2);
    const e = mem(m, ptep0);
    m.on(0, () => set_pte_at(mm, page(VA, 5), ptep0 + 5, e & ~_PAGE_RW));
    expect(quiesces(m)).toBe(0);
    expect(m.violations).toEqual([]);
    // over a valid entry of an attached mm: the caller's bug, which the kernel does not mask
    m.on(0, () => set_pte_at(mm, VA, ptep0, e & ~_PAGE_RW));
    expect(quiesces(m)).toBe(0);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(0);
    expect(mem(m, ptep0)).toBe(e & ~_PAGE_RW);
    expect(cached(m, 1, mm, VA)).toBe(true); // CPU 1 keeps its (writable) translation
    // ... and the s390 rule oracle names it
    expect(kinds(m)).toEqual([S390_RULE_KIND]);
    expect(m.violations[0].message).toMatch(/set_ptes changed a valid PTE of mm \d+ attached to cpu 0,1/);
    expect(m.violations[0].message).toMatch(/set_pte_at \(mm\/pgtable\.ts/);
  });

  it('the rule allows changes of software bits (56-63) only, and any store into an invalid entry', () => {
    const { m, mm, ptep0 } = setup(2);
    const e = mem(m, ptep0);
    m.on(0, () => set_pte_at(mm, VA, ptep0, e ^ _PAGE_DIRTY));
    expect(m.violations).toEqual([]);
  });

  it('ptep_get_and_clear_full with full set (exit_mmap) is a plain store: no IPTE, no report', () => {
    const { m, mm, ptep0 } = setup(2);
    const e = mem(m, ptep0);
    expect(m.on(0, () => ptep_get_and_clear_full(mm, VA, ptep0, true))).toBe(e);
    expect(mem(m, ptep0)).toBe(0);
    expect(quiesces(m)).toBe(0);
    expect(m.violations).toEqual([]);
    // not full: ptep_xchg_lazy, a global IPTE with CPU 1 attached
    m.on(0, () => ptep_get_and_clear_full(mm, page(VA, 1), ptep0 + 1, false));
    expect(quiesces(m)).toBe(1);
    expect(cached(m, 1, mm, page(VA, 1))).toBe(false);
  });

  it('ptep_set_access_flags does nothing when the entry is the same (pte_same), else ptep_xchg_direct', () => {
    const { m, mm, ptep0 } = setup(2);
    const e = mem(m, ptep0);
    m.on(0, () => ptep_set_access_flags(mm, VA, ptep0, e));
    expect(quiesces(m)).toBe(0);
    m.on(0, () => ptep_set_access_flags(mm, VA, ptep0, e & ~_PAGE_RW));
    expect(quiesces(m)).toBe(1);
    expect(cached(m, 1, mm, VA)).toBe(false);
    expect(m.violations).toEqual([]);
  });

  it('ptep_modify_prot_start is ptep_flush_lazy: memory keeps the entry with the invalid bit until commit (arch/s390/mm/pgtable.c)', () => {
    const { m, mm, ptep0 } = setup(2);
    const e = mem(m, ptep0);
    const old = m.on(0, () => ptep_modify_prot_start(mm, VA, ptep0));
    expect(old).toBe(e);
    expect(mem(m, ptep0)).toBe(e & ~_PAGE_PRESENT);
    expect(quiesces(m)).toBe(1); // CPU 1 attached: global IPTE
    m.on(0, () => ptep_modify_prot_commit(mm, VA, ptep0, old, e & ~_PAGE_RW));
    expect(mem(m, ptep0)).toBe(e & ~_PAGE_RW);
    expect(m.violations).toEqual([]);
  });
});

describe('s390 masks and flushes (asm/tlbflush.h, arch/s390/mm/pgtable.c, asm/mmu_context.h)', () => {
  it('switching away leaves cpu_attach_mask but not mm_cpumask', () => {
    const { m, mm } = setup(1);
    expect(maskWord(m, mm, MM_S390_ATTACH_MASK)).toBe(0b11);
    expect(maskWord(m, mm, MM_CPUMASK)).toBe(0b11);
    detach(m, 1);
    expect(maskWord(m, mm, MM_S390_ATTACH_MASK)).toBe(0b01);
    expect(maskWord(m, mm, MM_CPUMASK)).toBe(0b11);
    expect(cached(m, 1, mm, VA)).toBe(true); // its TLB keeps the mm's translations (tagged by ASCE)
  });

  it('ptep_flush_lazy tests cpu_attach_mask: attached here only, the invalid bit and flush_mm, no IPTE', () => {
    const { m, mm, ptep0 } = setup(2);
    detach(m, 1);
    m.on(0, () => ptep_get_and_clear(mm, VA, ptep0));
    expect(mem(m, ptep0) & _PAGE_PRESENT).toBe(0);
    expect(quiesces(m)).toBe(0);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(1);
    expect(cached(m, 1, mm, VA)).toBe(true); // owed to flush_mm
    expect(m.violations).toEqual([]); // the kernel's stated exception to the rule
  });

  it('ptep_flush_direct tests mm_cpumask: a detached CPU still in it makes the IPTE global', () => {
    const { m, mm, ptep0 } = setup(2);
    detach(m, 1);
    m.on(0, () => ptep_clear_flush(mm, VA, ptep0));
    expect(quiesces(m)).toBe(1);
    expect(stat(m, 0, ST_LOCAL_CLEAR)).toBe(0);
    expect(cached(m, 1, mm, VA)).toBe(false);
  });

  it('flush_tlb_range is __tlb_flush_mm_lazy: nothing without flush_mm; with it a global IDTE that resets mm_cpumask to cpu_attach_mask; then IPTEs go local', () => {
    const { m, mm, ptep0 } = setup(3);
    detach(m, 1);
    m.on(0, () => flush_tlb_range(mm, VA, page(VA, 1)));
    expect(quiesces(m)).toBe(0);
    m.on(0, () => ptep_get_and_clear(mm, VA, ptep0)); // lazy: flush_mm
    m.on(0, () => flush_tlb_range(mm, VA, page(VA, 1)));
    expect(quiesces(m)).toBe(1); // always global, even with only this CPU attached
    expect(stat(m, 0, ST_LOCAL_CLEAR)).toBe(0);
    expect(cached(m, 1, mm, VA)).toBe(false);
    expect(maskWord(m, mm, MM_CPUMASK)).toBe(0b01);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(0);
    m.on(0, () => ptep_clear_flush(mm, page(VA, 1), ptep0 + 1));
    expect(stat(m, 0, ST_LOCAL_CLEAR)).toBe(1);
    expect(quiesces(m)).toBe(1);
  });

  it('flush_tlb_page is a no-op, flush_mm or not', () => {
    const { m, mm, ptep0 } = setup(2);
    detach(m, 1);
    m.on(0, () => ptep_get_and_clear(mm, VA, ptep0));
    m.on(0, () => flush_tlb_page(mm, VA));
    expect(quiesces(m)).toBe(0);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(1);
  });

  it('fork: flush_tlb_mm is __tlb_flush_mm_lazy, no IDTE when no lazy exchange was left to purge', () => {
    const { m, mm } = setup(2);
    // CPU 1 is attached: dup_mmap's ptep_set_wrprotect are global IPTEs, flush_mm stays 0
    const before = quiesces(m);
    const child = m.on(0, () => do_fork(mm));
    expect(child).toBeGreaterThanOrEqual(0);
    const ipte = quiesces(m) - before;
    expect(ipte).toBeGreaterThan(0);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(0);
    // alone on the mm (CPU 1 detached) the write-protects are lazy and the fork ends with one IDTE
    const m2 = setup(2);
    detach(m2.m, 1);
    m2.m.on(0, () => do_fork(m2.mm));
    expect(quiesces(m2.m)).toBe(1);
    expect(maskWord(m2.m, m2.mm, MM_S390_FLUSH_MM)).toBe(0);
    expect(m.violations).toEqual([]);
    expect(m2.m.violations).toEqual([]);
  });

  it('switching the mm back in runs __tlb_flush_mm_lazy (finish_arch_post_lock_switch): the owed purge happens there', () => {
    const { m, mm, tasks, ptep0 } = setup(2);
    detach(m, 1);
    m.on(0, () => ptep_get_and_clear(mm, VA, ptep0));
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(1);
    m.on(1, (cpu) => context_switch(cpu, tasks[1]));
    expect(stat(m, 1, ST_QUIESCE)).toBe(1);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(0);
    expect(cached(m, 1, mm, VA)).toBe(false);
    expect(maskWord(m, mm, MM_S390_ATTACH_MASK)).toBe(0b11);
  });
});

describe('s390 mmu_gather (arch/s390/include/asm/tlb.h)', () => {
  it('__tlb_remove_page frees the page at once ("s390 doesn\'t delay rmap removal"); in a plain section the IPTE was done first', () => {
    const { m, mm, ptep0 } = setup(4);
    const pfn = pte_pfn(mem(m, ptep0));
    const tlb = new mmu_gather();
    m.on(0, () => {
      lazy_mmu_mode_enable(); // zap's range enable nests: a plain section, no batch
      tlb_gather_mmu(tlb, mm);
      unmap_page_range(tlb, mm, VA, page(VA, 4));
    });
    // before tlb_finish_mmu: freed, and no CPU translates it any more
    expect(Atomics.load(m.V.I, frameWord(m.V.L, pfn, FM_REF))).toBe(0);
    expect(mem(m, ptep0)).toBe(0);
    expect(cached(m, 1, mm, VA)).toBe(false);
    expect(tlb.npages).toBe(0);
    m.on(0, () => {
      tlb_finish_mmu(tlb);
      lazy_mmu_mode_disable();
    });
    expect(m.violations).toEqual([]);
  });

  it('pte_free_tlb sets flush_mm: tlb_finish_mmu after freeing tables is one global IDTE; a gather that freed none, none', () => {
    const { m, mm } = setup(2);
    detach(m, 1);
    const tlb = new mmu_gather();
    m.on(0, () => {
      tlb_gather_mmu(tlb, mm);
      tlb_finish_mmu(tlb);
    });
    expect(quiesces(m)).toBe(0);
    const t2 = new mmu_gather();
    m.on(0, () => {
      tlb_gather_mmu(t2, mm);
      const pt = alloc_pt_page(mm, 1); // an unhooked PTE table
      tlb_remove_table(t2, pt, VA, PAGE_SIZE);
      expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(1);
      tlb_finish_mmu(t2);
    });
    expect(quiesces(m)).toBe(1);
    expect(maskWord(m, mm, MM_S390_FLUSH_MM)).toBe(0);
    expect(m.violations).toEqual([]);
  });
});

describe('the s390 rule oracle', () => {
  const cow = loadScenario('scenarios/cow-vs-readers.ts');
  const fork = loadScenario('scenarios/fork-vs-writers.ts');

  it('s390.wrprotect_no_ipte (ptep_set_wrprotect by a plain store) is reported at the first fork, naming ptep_set_wrprotect and copy_pte_range', () => {
    const { m, mm } = setup(2, { knobs: ['s390.wrprotect_no_ipte'] });
    m.on(0, () => do_fork(mm));
    expect(kinds(m)).toContain(S390_RULE_KIND);
    const v = m.violations.find((x) => x.kind === S390_RULE_KIND)!;
    expect(v.message).toMatch(/ptep_set_wrprotect \(s390\.wrprotect_no_ipte\)/);
    expect(v.message).toMatch(/copy_p\w+_range/);
  });

  it('fork-vs-writers: the knob is caught, and the same run is clean without it', async () => {
    const o = { arch: 's390', seed: 1, mode: 'deterministic' as const, ops: 150, hangTimeoutMs: 20000 };
    const bad = await runScenario(await fork, { ...o, knobs: ['s390.wrprotect_no_ipte'] });
    expect(bad.violations.some((v) => v.kind === S390_RULE_KIND)).toBe(true);
    const good = await runScenario(await fork, o);
    expect(good.violations).toEqual([]);
  }, 120000);

  it('cow.install_before_flush is caught on s390 (set_ptes over the valid old entry in wp_page_copy); clean without it', async () => {
    for (const seed of [1]) {
      const bad = await runScenario(await cow, { arch: 's390', seed, mode: 'deterministic', ops: 200, delay: 0, knobs: ['cow.install_before_flush'], hangTimeoutMs: 20000 });
      const v = bad.violations.find((x) => x.kind === S390_RULE_KIND);
      expect(v?.message).toMatch(/set_ptes .*wp_page_copy/);
      const good = await runScenario(await cow, { arch: 's390', seed, mode: 'deterministic', ops: 200, delay: 0, hangTimeoutMs: 20000 });
      expect(good.violations).toEqual([]);
    }
  }, 120000);
});
