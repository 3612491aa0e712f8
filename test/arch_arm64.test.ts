import { describe, it, expect } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type RunResult } from '../src/engine/machine.ts';
import {
  statWord, ST_FLUSH_SINGLE, ST_FLUSH_RANGE, ST_FLUSH_FULL, ST_BCAST_SENT, ST_BCAST_RECV, ST_IPI_SENT, ST_BATCHED,
  ST_BATCH_FLUSHES, PAGE_SIZE,
} from '../src/hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../src/hw/pte.ts';
import { walk, WALK_NOT_PRESENT } from '../src/hw/walker.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get, ptep_get_and_clear, set_pte_at, pte_deref } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { arm64, flush_tlb_mm_range, dsb_ishst, MAX_DVM_OPS } from '../src/arch/arm64/index.ts';

const stat = (m: TestMachine, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];
const pteOf = (m: TestMachine, mm: number, va: number): number =>
  m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va));
const mem = (m: TestMachine, ptep: number): number => Atomics.load(m.V.I, ptep);

/** Two CPUs running one process; CPU 1 has touched `pages` pages (PTEs present, TLB entries filled). */
function setup(pages: number, knobs: string[] = []) {
  const m = testMachine({ cpus: 2, arch: 'arm64', knobs });
  const { mm, tasks } = m.process([0, 1]);
  const va = m.on(0, () => do_mmap(mm, 0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  m.on(1, (cpu) => {
    for (let p = 0; p < pages; p++) expect(cpu.write(va + p * PAGE_SIZE, p + 1)).toBe(true);
  });
  return { m, mm, va, tasks };
}

/** CPU 1's hardware walker, with its TLB out of the way: does it find a present entry for va? */
const remoteWalkFinds = (m: TestMachine, mm: number, va: number): boolean =>
  m.on(1, (cpu) => {
    cpu.tlb.flushAll();
    return walk(cpu, mm, va, Math.floor(va / PAGE_SIZE), false) !== WALK_NOT_PRESENT;
  });

// A valid kernel entry (pte_valid_not_user): the only kind whose barriers lazy
// MMU mode defers (arch/arm64/include/asm/pgtable.h __set_pte_complete ->
// queue_pte_barriers). We store one into a user table here; only its value matters.
const kernelPte = (e: number): number => e & ~_PAGE_USER;

describe('arm64: lazy MMU mode defers the barriers of valid kernel PTE stores only (queue_pte_barriers)', () => {
  it('a user PTE store inside a section goes to memory at once: no barrier of its own to defer (__set_pte_complete)', () => {
    const { m, mm, va } = setup(2);
    const ptep = pteOf(m, mm, va);
    const old = mem(m, ptep);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      expect(ptep_get_and_clear(mm, va, ptep)).toBe(old);
      expect(mem(m, ptep)).toBe(0);
      expect(arm64.pte_memory_stale(ptep)).toBe(false);
      set_pte_at(mm, va, ptep, old & ~_PAGE_RW);
      expect(mem(m, ptep)).toBe(old & ~_PAGE_RW);
      lazy_mmu_mode_disable();
    });
    expect(stat(m, 0, ST_BATCHED)).toBe(0);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
    expect(m.violations).toEqual([]);
  });

  it('a valid kernel PTE stored inside a section is seen by this CPU at once, in memory only after leave', () => {
    const { m, mm, va } = setup(2);
    const ptep = pteOf(m, mm, va);
    const old = mem(m, ptep);
    const k = kernelPte(old & ~_PAGE_RW);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      set_pte_at(mm, va, ptep, k);
      expect(ptep_get(ptep)).toBe(k); // forwarded from this CPU's store buffer
      expect(arm64.pte_memory_stale(ptep)).toBe(true);
    });
    expect(mem(m, ptep)).toBe(old); // not published
    expect(stat(m, 0, ST_BATCHED)).toBe(1);
    m.on(0, () => lazy_mmu_mode_disable()); // leave: emit_pte_barriers
    expect(mem(m, ptep)).toBe(k);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1);
    expect(m.on(0, () => arm64.pte_memory_stale(ptep))).toBe(false);
    expect(m.violations).toEqual([]);
  });

  it('outside a section a store goes to memory at once', () => {
    const { m, mm, va } = setup(1);
    const ptep = pteOf(m, mm, va);
    m.on(0, () => ptep_get_and_clear(mm, va, ptep));
    expect(mem(m, ptep)).toBe(0);
    expect(stat(m, 0, ST_BATCHED)).toBe(0);
    expect(remoteWalkFinds(m, mm, va)).toBe(false);
  });

  it('the DSB ISHST a TLB flush starts with, and the DSB ISH of a context switch, publish pending kernel-PTE stores', () => {
    const { m, mm, va } = setup(2);
    const p0 = pteOf(m, mm, va);
    const p1 = pteOf(m, mm, va + PAGE_SIZE);
    const old0 = mem(m, p0);
    const old1 = mem(m, p1);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      set_pte_at(mm, va, p0, kernelPte(old0));
      flush_tlb_mm_range(mm, va, va + PAGE_SIZE, 12, false); // still inside the section
    });
    expect(mem(m, p0)).toBe(kernelPte(old0));
    m.on(0, () => set_pte_at(mm, va + PAGE_SIZE, p1, kernelPte(old1)));
    expect(mem(m, p1)).toBe(old1);
    m.on(0, (cpu) => context_switch(cpu, -1)); // switch to idle: DSB ISH
    expect(mem(m, p1)).toBe(kernelPte(old1));
  });

  it('a direct dereference of an entry with a pending store is the lazy-mmu-contract hazard', () => {
    const { m, mm, va } = setup(1);
    const ptep = pteOf(m, mm, va);
    const old = mem(m, ptep);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      pte_deref(ptep); // nothing pending yet: fine
      set_pte_at(mm, va, ptep, kernelPte(old));
      pte_deref(ptep);
      lazy_mmu_mode_disable();
    });
    expect(m.violations.map((v) => v.kind)).toEqual(['lazy-mmu-contract']);
  });
});

describe('arm64 flush_tlb_mm_range: broadcast TLBI, no IPIs', () => {
  it('one TLBI per page in one broadcast, exactly the range dropped from the remote TLB', () => {
    const { m, mm, va } = setup(8);
    m.on(0, () => flush_tlb_mm_range(mm, va + 2 * PAGE_SIZE, va + 5 * PAGE_SIZE, 12, false));
    const t = m.cpus[1].tlb;
    const vpn = Math.floor(va / PAGE_SIZE);
    expect([...Array(8).keys()].map((p) => t.lookup(m.cpus[1].asid, vpn + p) >= 0)).toEqual([true, true, false, false, false, true, true, true]);
    expect(stat(m, 0, ST_FLUSH_SINGLE)).toBe(3);
    expect(stat(m, 0, ST_FLUSH_RANGE)).toBe(1);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(1);
    expect(stat(m, 1, ST_BCAST_RECV)).toBe(1);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(0);
  });

  it(`from MAX_DVM_OPS = ${MAX_DVM_OPS} pages on, the whole ASID`, () => {
    const { m, mm, va } = setup(4);
    m.on(0, () => flush_tlb_mm_range(mm, 0x40000000, 0x40000000 + (MAX_DVM_OPS - 1) * PAGE_SIZE, 12, false));
    expect(stat(m, 0, ST_FLUSH_SINGLE)).toBe(MAX_DVM_OPS - 1);
    expect(m.cpus[1].tlb.countValid(m.cpus[1].asid)).toBe(4); // other pages: untouched
    m.on(0, () => flush_tlb_mm_range(mm, 0x40000000, 0x40000000 + MAX_DVM_OPS * PAGE_SIZE, 12, false));
    expect(stat(m, 0, ST_FLUSH_FULL)).toBe(1);
    expect(stat(m, 0, ST_FLUSH_SINGLE)).toBe(MAX_DVM_OPS - 1);
    expect(m.cpus[1].tlb.countValid(m.cpus[1].asid)).toBe(0);
    expect(stat(m, 0, ST_BCAST_SENT)).toBe(2);
    void va;
  });

  it('mprotect to read-only: the remote writable TLB entry is gone when the syscall returns', () => {
    const { m, mm, va } = setup(4);
    m.on(0, () => expect(do_mprotect(mm, va, 4 * PAGE_SIZE, PROT_READ)).toBe(0));
    expect(mem(m, pteOf(m, mm, va)) & _PAGE_RW).toBe(0);
    expect(stat(m, 0, ST_BATCHED)).toBe(0); // user PTEs: no barrier deferred, the stores went to memory at once
    m.on(1, (cpu) => {
      expect(cpu.read(va)).toBe(true);
      expect(cpu.write(va, 9)).toBe(false); // SIGSEGV: no stale writable translation
    });
    expect(m.violations).toEqual([]);
  });
});

describe('arm64.lazy_no_dsb: the barrier the section deferred is dropped', () => {
  it('leave does not publish, nor does the DSB ISHST of the flush: only the DSB ISH that completes the TLBI', () => {
    const { m, mm, va } = setup(1, ['arm64.lazy_no_dsb']);
    const ptep = pteOf(m, mm, va);
    const old = mem(m, ptep);
    const k = kernelPte(old & ~_PAGE_RW);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      set_pte_at(mm, va, ptep, k);
      lazy_mmu_mode_disable();
    });
    expect(mem(m, ptep)).toBe(old); // a remote walker keeps finding the old (writable) entry
    m.on(0, (cpu) => dsb_ishst(cpu));
    expect(mem(m, ptep)).toBe(old); // not ordered before the TLBI that follows
    m.on(0, () => flush_tlb_mm_range(mm, va, va + PAGE_SIZE, 12, false));
    expect(mem(m, ptep)).toBe(k); // published by the DSB ISH, after the TLBI: a walk in between refills the old entry
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
  });
});

// Scenario runs: real worker threads, one per CPU, racing for real.
const munmap = await loadScenario('scenarios/munmap-vs-access.ts');
const kinds = (r: RunResult): string[] => [...new Set(r.violations.map((v) => v.kind))];
const race = (knobs: string[]): Promise<RunResult> =>
  runScenario(munmap, { arch: 'arm64', cpus: 4, threads: 4, ops: 5000, delay: 0.05, seed: 1, knobs, hangTimeoutMs: 20000, keepGoing: true });

describe('arm64 on munmap-vs-access', () => {
  it('8 CPUs run clean, with hardware broadcasts and no IPIs', async () => {
    const r = await runScenario(munmap, { arch: 'arm64', cpus: 8, ops: 1000, seed: 1, hangTimeoutMs: 20000 });
    expect(r.violations).toEqual([]);
    expect(r.audit.problems).toEqual([]);
    expect(r.teardownAudit.problems).toEqual([]);
    expect(r.stats.ipiSent).toBe(0);
    expect(r.stats.broadcastsSent).toBeGreaterThan(0);
    expect(r.stats.batched).toBe(0); // munmap stores only user PTEs: nothing deferred
  }, 30000);

  it('munmap.free_before_flush: the use-after-free oracle fires', async () => {
    const r = await race(['munmap.free_before_flush']);
    expect(kinds(r)).toContain('uaf-stale-tlb');
  }, 30000);

  it('arm64.lazy_no_dsb has nothing to act on in munmap-vs-access: user PTE stores carry no deferred barrier', async () => {
    const r = await race(['arm64.lazy_no_dsb']);
    expect(r.violations).toEqual([]);
    expect(r.stats.batched).toBe(0);
  }, 30000);
});
