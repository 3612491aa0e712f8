import { describe, it, expect } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';
import { statWord, ST_BATCHED, ST_BATCH_FLUSHES, ST_BCAST_SENT, ST_IPI_SENT, ST_LOCAL_CLEAR } from '../src/hw/layout.ts';
import { pte_present } from '../src/hw/pte.ts';
import { arch, pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get_and_clear, ptep_clear_flush } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { PPC64_TLB_BATCH_NR } from '../src/arch/powerpc-hash/index.ts';

// powerpc hash: Linux PTEs change in memory at once; the HPTE/TLB invalidation
// (here: the simulated TLBs) is done at each change by tlbie, or batched in the
// per-CPU ppc64_tlb_batch inside a lazy MMU section and flushed at leave.

const ARCH = 'powerpc-hash';
const stat = (m: TestMachine, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];

/** A process on `on` (default CPUs 0 and 1) with `pages` pages written by the last of them (its TLB caches them). */
function setup(pages = 4, knobs: string[] = [], cpus = 2, on = [0, 1]) {
  const m = testMachine({ cpus, arch: ARCH, knobs, tlb: 512 });
  const { mm } = m.process(on);
  const va = m.on(0, () => do_mmap(mm, 0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  const w = on[on.length - 1];
  m.on(w, (cpu) => {
    for (let p = 0; p < pages; p++) expect(cpu.write(va + p * 4096, p + 1)).toBe(true);
  });
  const ptep = (p: number) => m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va) + p);
  const mem = (p: number) => Atomics.load(m.V.I, ptep(p));
  /** does cpu c's TLB still translate page p? */
  const cached = (c: number, p: number) => m.cpus[c].tlb.lookup(m.cpus[c].asid, Math.floor(va / 4096) + p) >= 0;
  return { m, mm, va, ptep, mem, cached, w };
}

describe('powerpc-hash: hpte_need_flush and the ppc64_tlb_batch', () => {
  it('outside a section a PTE clear invalidates that page on every CPU at once (one tlbie broadcast)', () => {
    const { m, mm, va, ptep, mem, cached } = setup(4);
    expect(cached(1, 2)).toBe(true);
    m.on(0, () => ptep_get_and_clear(mm, va + 2 * 4096, ptep(2)));
    expect(mem(2)).toBe(0);
    expect(cached(1, 2)).toBe(false);
    expect(cached(1, 1) && cached(1, 3)).toBe(true); // only that page
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1);
    expect(stat(m, 0, ST_BATCHED)).toBe(0);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(0);
  });

  it('inside a section memory changes at once but a remote TLB entry survives until leave (one flush_hash_range)', () => {
    const { m, mm, va, ptep, mem, cached } = setup(4);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      for (const p of [0, 1, 3]) ptep_get_and_clear(mm, va + p * 4096, ptep(p));
    });
    expect([0, 1, 3].map(mem)).toEqual([0, 0, 0]); // Linux PTEs: immediate
    expect([0, 1, 3].every((p) => cached(1, p))).toBe(true); // HPTE/TLB: still translating
    expect(stat(m, 0, ST_BATCHED)).toBe(3);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(0);
    expect(m.on(0, () => arch.pte_memory_stale(ptep(0)))).toBe(false);
    m.on(0, () => lazy_mmu_mode_disable());
    expect([0, 1, 3].some((p) => cached(1, p))).toBe(false);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1); // one broadcast for the batch
    expect(m.violations).toEqual([]);
  });

  it(`the batch is flushed when full (${PPC64_TLB_BATCH_NR}) and when an entry of another mm arrives`, () => {
    const n = PPC64_TLB_BATCH_NR + 2;
    const { m, mm, va, ptep } = setup(n, [], 3);
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
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1); // full after 192
    m.on(0, () => ptep_get_and_clear(other.mm, vb, ptepB));
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(2); // mm changed: the 2 pending entries of mm went first
    m.on(0, () => lazy_mmu_mode_disable());
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(3);
    expect(stat(m, 0, ST_BATCHED)).toBe(n + 1);
  });

  it('flush_tlb_mm_range and flush_tlb_mm invalidate nothing (hash__tlb_flush: the pending batch only; hash__flush_tlb_mm/range: empty)', () => {
    const { m, mm, va, cached } = setup(4);
    m.on(0, () => arch.flush_tlb_mm_range(mm, va, va + 4 * 4096, 12, false));
    m.on(0, () => arch.flush_tlb_mm_range(mm, va, va + 4096, 12, true));
    m.on(0, () => arch.flush_tlb_mm(mm));
    expect([0, 1, 2, 3].every((p) => cached(1, p))).toBe(true);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(0);
  });

  it('ptep_clear_flush invalidates at once even inside a section', () => {
    const { m, mm, va, ptep, cached } = setup(2);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_clear_flush(mm, va, ptep(0));
      expect(cached(1, 0)).toBe(false);
      lazy_mmu_mode_disable();
    });
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1);
  });

  it('an mm that ran on this CPU only is invalidated locally (tlbiel), without a broadcast', () => {
    const { m, mm, va, ptep, cached } = setup(2, [], 2, [0]);
    expect(cached(0, 0)).toBe(true);
    m.on(0, () => ptep_get_and_clear(mm, va, ptep(0)));
    expect(cached(0, 0)).toBe(false);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(0);
    expect(stat(m, 0, ST_LOCAL_CLEAR)).toBe(1);
  });

  it('munmap and mprotect: no remote translation survives the syscall', () => {
    const { m, mm, va, cached } = setup(8);
    expect(m.on(0, () => do_mprotect(mm, va, 4 * 4096, PROT_READ))).toBe(0);
    m.on(1, (cpu) => expect(cpu.write(va, 9)).toBe(false)); // read-only now, TLB included
    expect(m.on(0, () => do_munmap(mm, va + 4 * 4096, 4 * 4096))).toBe(0);
    expect([4, 5, 6, 7].some((p) => cached(1, p))).toBe(false);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(2); // one per lazy section
    expect(m.violations).toEqual([]);
  });

  it('powerpc.leave_without_flush: leave drops the batch, the remote entry survives', () => {
    const { m, mm, va, ptep, mem, cached } = setup(2, ['powerpc.leave_without_flush']);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
      lazy_mmu_mode_disable();
    });
    expect(pte_present(mem(0))).toBe(false);
    expect(cached(1, 0)).toBe(true);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
  });
});

const munmap = await loadScenario('scenarios/munmap-vs-access.ts');
const kinds = (r: { violations: { kind: string }[] }) => [...new Set(r.violations.map((v) => v.kind))];
// keepGoing: every oracle that fires is recorded (the first to meet a freed frame may be the content oracle)
const knobRun = { arch: ARCH, cpus: 4, threads: 4, ops: 5000, delay: 0.05, seed: 1, hangTimeoutMs: 20000, keepGoing: true };

describe('powerpc-hash: scenarios', () => {
  it('munmap-vs-access runs clean on 8 CPUs', async () => {
    const r = await runScenario(munmap, { arch: ARCH, cpus: 8, ops: 1000, seed: 1, hangTimeoutMs: 20000 });
    expect(r.violations).toEqual([]);
    expect(r.audit.problems).toEqual([]);
    expect(r.teardownAudit.problems).toEqual([]);
    expect(r.stats.batched).toBeGreaterThan(0);
    expect(r.stats.broadcastsSent).toBeGreaterThan(0);
    expect(r.stats.ipiSent).toBe(0);
  });

  it('munmap.free_before_flush is NOT a use after free on hash: the pages were invalidated at leave, before the gather frees them', async () => {
    // tlb_flush_mmu frees the pages before flush_tlb_mm_range, but on hash that
    // flush has nothing left to do: zap_pte_range left lazy mode (flushing the
    // batch: every CPU purged) before dropping the PTL. Only a page-table free
    // ahead of its grace-period broadcast could still be caught (walk-freed-table).
    const r = await runScenario(munmap, { ...knobRun, knobs: ['munmap.free_before_flush'] });
    expect(kinds(r).filter((k) => k !== 'walk-freed-table')).toEqual([]);
    expect(r.stats.batchFlushes).toBeGreaterThan(0);
  });

  it('powerpc.leave_without_flush is caught by the use-after-free oracle; the same run without it is clean', async () => {
    const bad = await runScenario(munmap, { ...knobRun, knobs: ['powerpc.leave_without_flush'] });
    expect(kinds(bad)).toContain('uaf-stale-tlb');
    const good = await runScenario(munmap, knobRun);
    expect(good.violations).toEqual([]);
    expect(good.audit.ok && good.teardownAudit.ok).toBe(true);
  });
});
