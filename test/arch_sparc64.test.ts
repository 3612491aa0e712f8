import { describe, it, expect } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';
import { statWord, ST_BATCHED, ST_BATCH_FLUSHES, ST_BCAST_SENT, ST_IPI_SENT, ST_IPI_RECV, ST_SHOOTDOWNS, ST_LOCAL_CLEAR } from '../src/hw/layout.ts';
import { pte_present } from '../src/hw/pte.ts';
import { arch, pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get_and_clear, ptep_clear_flush } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { TLB_BATCH_NR } from '../src/arch/sparc64/index.ts';

// sparc64: PTE stores are immediate; tlb_batch_add_one flushes a changed valid
// PTE's TSB/TLB entries at once outside lazy MMU mode, and batches its vaddr in
// the per-CPU tlb_batch inside (flushed at leave: one entry by a global page
// flush, several by a cross-call smp_flush_tlb_pending to mm_cpumask).

const ARCH = 'sparc64';
const stat = (m: TestMachine, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];

/** A 3-CPU machine, a process on `on` (default 0 and 1) with `pages` pages written by the last of them. */
function setup(pages = 4, knobs: string[] = [], on = [0, 1]) {
  const m = testMachine({ cpus: 3, arch: ARCH, knobs, tlb: 512 });
  const { mm } = m.process(on);
  const va = m.on(0, () => do_mmap(mm, 0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  m.on(on[on.length - 1], (cpu) => {
    for (let p = 0; p < pages; p++) expect(cpu.write(va + p * 4096, p + 1)).toBe(true);
  });
  const ptep = (p: number) => m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va) + p);
  const mem = (p: number) => Atomics.load(m.V.I, ptep(p));
  const cached = (c: number, p: number) => m.cpus[c].tlb.lookup(m.cpus[c].asid, Math.floor(va / 4096) + p) >= 0;
  return { m, mm, va, ptep, mem, cached };
}

describe('sparc64: tlb_batch_add_one and the tlb_batch', () => {
  it('outside a section a PTE clear flushes that page everywhere at once (global page flush)', () => {
    const { m, mm, va, ptep, mem, cached } = setup(4);
    m.on(0, () => ptep_get_and_clear(mm, va + 4096, ptep(1)));
    expect(mem(1)).toBe(0);
    expect(cached(1, 1)).toBe(false);
    expect(cached(1, 0) && cached(1, 2)).toBe(true);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1);
    expect(stat(m, 0, ST_BATCHED)).toBe(0);
  });

  it('inside a section the remote entries survive until leave; several entries go by one cross-call to mm_cpumask', () => {
    const { m, mm, va, ptep, mem, cached } = setup(6);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      for (const p of [1, 4]) ptep_get_and_clear(mm, va + p * 4096, ptep(p));
    });
    expect([1, 4].map(mem)).toEqual([0, 0]);
    expect(cached(1, 1) && cached(1, 4)).toBe(true);
    expect(stat(m, 0, ST_BATCHED)).toBe(2);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(cached(1, 1) || cached(1, 4)).toBe(false);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1);
    expect(stat(m, 0, ST_SHOOTDOWNS)).toBe(1);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(1); // CPU 1 only: CPU 2 never ran the mm, it is not in mm_cpumask
    expect(stat(m, 2, ST_IPI_RECV)).toBe(0);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(0);
    // The cross-call passes lowest..highest vaddr (no room for the list in CC_INFO):
    // the unbatched pages in between lose their translations too, the others keep them.
    expect([0, 2, 3, 5].map((p) => cached(1, p))).toEqual([true, false, false, true]);
    expect(m.violations).toEqual([]);
  });

  it('a batch of one entry is flushed by a global page flush, not a cross-call', () => {
    const { m, mm, va, ptep, cached } = setup(2);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
      lazy_mmu_mode_disable();
    });
    expect(cached(1, 0)).toBe(false);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(0);
  });

  it(`the batch is flushed when full (${TLB_BATCH_NR}) and when another mm's vaddr arrives`, () => {
    const n = TLB_BATCH_NR + 2;
    const { m, mm, va, ptep } = setup(n);
    const other = m.process([2]);
    const vb = m.on(2, (cpu) => {
      const v = do_mmap(other.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
      expect(cpu.write(v, 1)).toBe(true);
      return v;
    });
    const ptepB = m.on(2, () => pte_offset(pmd_offset(pud_offset(pgd_offset(other.mm, vb), vb), vb), vb));
    m.on(0, () => {
      lazy_mmu_mode_enable();
      for (let p = 0; p < n; p++) ptep_get_and_clear(mm, va + p * 4096, ptep(p));
    });
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1);
    m.on(0, () => ptep_get_and_clear(other.mm, vb, ptepB));
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(2);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(3);
    expect(stat(m, 0, ST_BATCHED)).toBe(n + 1);
    expect(m.violations).toEqual([]);
  });

  it('flush_tlb_mm_range and flush_tlb_mm invalidate nothing (asm/tlbflush_64.h: empty; tlb_flush = flush_tlb_pending)', () => {
    const { m, mm, va, cached } = setup(4);
    m.on(0, () => arch.flush_tlb_mm_range(mm, va, va + 4 * 4096, 12, false));
    m.on(0, () => arch.flush_tlb_mm_range(mm, va, va + 4096, 12, true));
    m.on(0, () => arch.flush_tlb_mm(mm));
    expect([0, 1, 2, 3].every((p) => cached(1, p))).toBe(true);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(0);
  });

  it('ptep_clear_flush invalidates at once even inside a section', () => {
    const { m, mm, va, ptep, cached } = setup(2);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_clear_flush(mm, va, ptep(0));
      expect(cached(1, 0)).toBe(false);
      lazy_mmu_mode_disable();
    });
  });

  it('an mm that ran on this CPU only is flushed locally', () => {
    const { m, mm, va, ptep, cached } = setup(2, [], [0]);
    m.on(0, () => ptep_get_and_clear(mm, va, ptep(0)));
    expect(cached(0, 0)).toBe(false);
    expect(stat(m, 0, ST_BCAST_SENT) + stat(m, 0, ST_IPI_SENT)).toBe(0);
    expect(stat(m, 0, ST_LOCAL_CLEAR)).toBe(1);
  });

  it('munmap and mprotect: no remote translation survives the syscall', () => {
    const { m, mm, va, cached } = setup(8);
    expect(m.on(0, () => do_mprotect(mm, va, 4 * 4096, PROT_READ))).toBe(0);
    m.on(1, (cpu) => expect(cpu.write(va, 9)).toBe(false));
    expect(m.on(0, () => do_munmap(mm, va + 4 * 4096, 4 * 4096))).toBe(0);
    expect([4, 5, 6, 7].some((p) => cached(1, p))).toBe(false);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(2);
    expect(m.violations).toEqual([]);
  });

  it('sparc64.leave_without_flush: leave drops the batch, the remote entries survive', () => {
    const { m, mm, va, ptep, mem, cached } = setup(2, ['sparc64.leave_without_flush']);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
      ptep_get_and_clear(mm, va + 4096, ptep(1));
      lazy_mmu_mode_disable();
    });
    expect(pte_present(mem(0))).toBe(false);
    expect(cached(1, 0) && cached(1, 1)).toBe(true);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
  });
});

const munmap = await loadScenario('scenarios/munmap-vs-access.ts');
const kinds = (r: { violations: { kind: string }[] }) => [...new Set(r.violations.map((v) => v.kind))];
// keepGoing: every oracle that fires is recorded (the first to meet a freed frame may be the content oracle)
const knobRun = { arch: ARCH, cpus: 4, threads: 4, ops: 5000, delay: 0.05, seed: 1, hangTimeoutMs: 20000, keepGoing: true };

describe('sparc64: scenarios', () => {
  it('munmap-vs-access runs clean on 8 CPUs', async () => {
    const r = await runScenario(munmap, { arch: ARCH, cpus: 8, ops: 1000, seed: 1, hangTimeoutMs: 20000 });
    expect(r.violations).toEqual([]);
    expect(r.audit.problems).toEqual([]);
    expect(r.teardownAudit.problems).toEqual([]);
    expect(r.stats.batched).toBeGreaterThan(0);
    expect(r.stats.shootdowns).toBeGreaterThan(0);
  });

  it('munmap.free_before_flush is NOT a use after free on sparc64: the pages were flushed at leave, before the gather frees them', async () => {
    // As on powerpc hash: the gather's flush (flush_tlb_pending) finds nothing
    // pending; only a page-table free ahead of its cross-call could be caught.
    const r = await runScenario(munmap, { ...knobRun, knobs: ['munmap.free_before_flush'] });
    expect(kinds(r).filter((k) => k !== 'walk-freed-table')).toEqual([]);
    expect(r.stats.batchFlushes).toBeGreaterThan(0);
  });

  it('sparc64.leave_without_flush is caught by the use-after-free oracle; the same run without it is clean', async () => {
    const bad = await runScenario(munmap, { ...knobRun, knobs: ['sparc64.leave_without_flush'] });
    expect(kinds(bad)).toContain('uaf-stale-tlb');
    const good = await runScenario(munmap, knobRun);
    expect(good.violations).toEqual([]);
    expect(good.audit.ok && good.teardownAudit.ok).toBe(true);
  });
});
