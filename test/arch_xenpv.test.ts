import { describe, it, expect } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';
import { statWord, ST_BATCHED, ST_BATCH_FLUSHES, ST_IPI_SENT, taskWord, T_LAZY_ENABLE } from '../src/hw/layout.ts';
import { walk, WALK_NOT_PRESENT } from '../src/hw/walker.ts';
import { _PAGE_RW, pte_present } from '../src/hw/pte.ts';
import { arch, pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get, ptep_get_and_clear, set_pte_at, ptep_set_wrprotect, pte_deref } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { XEN_MC_BATCH, XEN_LAZY_MMU, XEN_LAZY_NONE, xen_cpu } from '../src/arch/x86-xenpv/index.ts';

// x86 Xen PV: PTE stores inside a lazy MMU section are queued in the per-CPU
// multicall buffer; memory (and so every walker, the local one included, and
// ptep_get) keeps the old values until the multicall is issued.

const ARCH = 'x86-xenpv';
const stat = (m: TestMachine, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];

/** A process on CPUs 0 and 1 with `pages` pages that CPU 1 has written (PTEs present, CPU 1's TLB filled). */
function setup(pages = 4, knobs: string[] = []) {
  const m = testMachine({ cpus: 2, arch: ARCH, knobs, tlb: 256 });
  const { mm, tasks } = m.process([0, 1]);
  const va = m.on(0, () => do_mmap(mm, 0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  m.on(1, (cpu) => {
    for (let p = 0; p < pages; p++) expect(cpu.write(va + p * 4096, p + 1)).toBe(true);
  });
  const ptep = (p: number) => m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va) + p);
  const mem = (p: number) => Atomics.load(m.V.I, ptep(p));
  /** a fresh hardware walk of page p on cpu c (its TLB emptied first): the translation memory gives */
  const walks = (c: number, p: number) => {
    const cpu = m.cpus[c];
    cpu.tlb.flushAll();
    return walk(cpu, mm, va + p * 4096, Math.floor(va / 4096) + p, false) >= 0;
  };
  return { m, mm, tasks, va, ptep, mem, walks };
}

describe('x86-xenpv: the multicall queue', () => {
  it('inside a section memory keeps the old PTEs (remote and local walks see them); leave issues one hypercall', () => {
    const { m, mm, va, ptep, mem, walks } = setup(4);
    const before = [0, 1, 2, 3].map(mem);
    expect(before.every(pte_present)).toBe(true);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      for (let p = 0; p < 4; p++) expect(ptep_get_and_clear(mm, va + p * 4096, ptep(p))).toBe(before[p]);
    });
    expect([0, 1, 2, 3].map(mem)).toEqual(before); // nothing written yet
    expect(walks(1, 2)).toBe(true); // a remote walker translates through the old entry
    expect(walks(0, 2)).toBe(true); // and so does the local one
    expect(m.on(0, () => arch.pte_memory_stale(ptep(2)))).toBe(true);
    expect(stat(m, 0, ST_BATCHED)).toBe(4);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
    m.on(0, () => lazy_mmu_mode_disable());
    expect([0, 1, 2, 3].map(mem)).toEqual([0, 0, 0, 0]);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1); // one multicall for the four updates
    m.cpus[1].tlb.flushAll();
    expect(walk(m.cpus[1], mm, va, Math.floor(va / 4096), false)).toBe(WALK_NOT_PRESENT);
    expect(m.on(0, () => arch.pte_memory_stale(ptep(2)))).toBe(false);
    expect(m.violations).toEqual([]);
  });

  it('outside a section every store is issued at once', () => {
    const { m, mm, va, ptep, mem } = setup(2);
    m.on(0, () => ptep_get_and_clear(mm, va, ptep(0)));
    expect(mem(0)).toBe(0);
    expect(stat(m, 0, ST_BATCHED)).toBe(0);
  });

  it(`the buffer is issued when full (${XEN_MC_BATCH} updates per hypercall)`, () => {
    const n = XEN_MC_BATCH + 8;
    const { m, mm, va, ptep, mem } = setup(n);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      for (let p = 0; p < n; p++) ptep_set_wrprotect(mm, va + p * 4096, ptep(p));
    });
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1); // the 33rd update found the buffer full and issued it
    expect(mem(0) & _PAGE_RW).toBe(0);
    expect(mem(XEN_MC_BATCH - 1) & _PAGE_RW).toBe(0);
    expect(mem(XEN_MC_BATCH) & _PAGE_RW).toBe(_PAGE_RW); // still queued
    m.on(0, () => lazy_mmu_mode_disable());
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(2);
    expect(mem(n - 1) & _PAGE_RW).toBe(0);
    expect(stat(m, 0, ST_BATCHED)).toBe(n);
  });

  it('ptep_get of a queued entry returns the old value and reports the read hazard; so does a direct dereference', () => {
    const { m, mm, va, ptep } = setup(1);
    const old = m.on(0, () => ptep_get(ptep(0)));
    m.on(0, () => {
      lazy_mmu_mode_enable();
      set_pte_at(mm, va, ptep(0), old & ~_PAGE_RW);
      expect(ptep_get(ptep(0))).toBe(old); // not the value just written
    });
    expect(m.violations.map((v) => v.kind)).toEqual(['lazy-mmu-contract']);
    expect(m.violations[0].message).toMatch(/read of a PTE whose update is still queued: memory holds the old value/);
    m.on(0, () => pte_deref(ptep(0)));
    expect(m.violations.at(-1)?.message).toMatch(/direct dereference/);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(m.on(0, () => ptep_get(ptep(0)))).toBe(old & ~_PAGE_RW);
    expect(m.violations.length).toBe(2);
  });

  it('a nested disable issues the queue (arch_flush_lazy_mmu_mode) and stays in the mode', () => {
    const { m, mm, va, ptep, mem } = setup(2);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
      lazy_mmu_mode_disable(); // nested: flush
    });
    expect(mem(0)).toBe(0);
    expect(xen_cpu(m.cpus[0]).xen_lazy_mode).toBe(XEN_LAZY_MMU);
    m.on(0, () => ptep_get_and_clear(mm, va + 4096, ptep(1)));
    expect(pte_present(mem(1))).toBe(true);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(mem(1)).toBe(0);
    expect(xen_cpu(m.cpus[0]).xen_lazy_mode).toBe(XEN_LAZY_NONE);
    expect(m.violations).toEqual([]);
  });

  it('context switch: switch-out issues the queue and leaves, switch-in re-enters for a task in a section', () => {
    const { m, mm, tasks, va, ptep, mem } = setup(2);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
    });
    expect(pte_present(mem(0))).toBe(true);
    m.on(0, (cpu) => context_switch(cpu, -1)); // to idle
    expect(mem(0)).toBe(0);
    expect(xen_cpu(m.cpus[0]).xen_lazy_mode).toBe(XEN_LAZY_NONE); // idle's stores are not queued
    m.on(0, (cpu) => context_switch(cpu, tasks[0]));
    expect(xen_cpu(m.cpus[0]).xen_lazy_mode).toBe(XEN_LAZY_MMU);
    m.on(0, () => ptep_get_and_clear(mm, va + 4096, ptep(1)));
    expect(pte_present(mem(1))).toBe(true); // queued again
    m.on(0, () => lazy_mmu_mode_disable());
    expect(mem(1)).toBe(0);
    expect(m.violations).toEqual([]);
  });

  it('Xen PV regression of commit 291b3abed657 (knob xenpv.ctxsw_task_lazy_state): preempted between the enable_count increment and arch_enter: Xen enters at switch-in, then the task enters again: BUG', () => {
    const { m, tasks } = setup(1, ['xenpv.ctxsw_task_lazy_state']);
    const en = taskWord(m.V.L, tasks[0], T_LAZY_ENABLE);
    m.on(0, (cpu) => {
      m.V.I[en] = 1; // lazy_mmu_mode_enable() has counted...
      context_switch(cpu, -1); // ...and is preempted before arch_enter_lazy_mmu_mode()
      context_switch(cpu, tasks[0]); // switch-in sees the task "active": enters for it
      arch.arch_enter_lazy_mmu_mode(); // the task resumes and enters
    });
    expect(m.violations.map((v) => v.message)).toEqual([expect.stringMatching(/BUG: Xen enter_lazy\(XEN_LAZY_MMU\) while the per-CPU lazy mode is already MMU/)]);
  });

  it('mprotect read-only: remote writable TLB entries are gone when it returns (queued updates issued at leave, then the IPI flush)', () => {
    const { m, mm, va } = setup(4);
    expect(m.on(0, () => do_mprotect(mm, va, 4 * 4096, PROT_READ))).toBe(0);
    expect(stat(m, 0, ST_BATCHED)).toBe(4);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(1);
    expect(stat(m, 0, ST_IPI_SENT)).toBeGreaterThan(0);
    m.on(1, (cpu) => expect(cpu.write(va + 4096, 9)).toBe(false)); // SIGSEGV: the PTE and the TLB are read-only
    expect(m.violations).toEqual([]);
  });

  it('xenpv.leave_without_flush: leave drops the queue, memory keeps the old PTEs for good', () => {
    const { m, mm, va, ptep, mem, walks } = setup(2, ['xenpv.leave_without_flush']);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear(mm, va, ptep(0));
      lazy_mmu_mode_disable();
    });
    expect(pte_present(mem(0))).toBe(true);
    expect(walks(1, 0)).toBe(true);
    expect(stat(m, 0, ST_BATCH_FLUSHES)).toBe(0);
  });
});

const munmap = await loadScenario('scenarios/munmap-vs-access.ts');
const kinds = (r: { violations: { kind: string }[] }) => [...new Set(r.violations.map((v) => v.kind))];

describe('x86-xenpv: scenarios', () => {
  it('munmap-vs-access runs clean on 8 CPUs', async () => {
    const r = await runScenario(munmap, { arch: ARCH, cpus: 8, ops: 1000, seed: 1, hangTimeoutMs: 20000 });
    expect(r.violations).toEqual([]);
    expect(r.audit.problems).toEqual([]);
    expect(r.teardownAudit.problems).toEqual([]);
    expect(r.stats.batched).toBeGreaterThan(0);
    expect(r.stats.batchFlushes).toBeGreaterThan(0);
    expect(r.stats.shootdowns).toBeGreaterThan(0);
  });

  it('munmap.free_before_flush is caught by the use-after-free oracle (the IPI flush comes after the free)', async () => {
    const r = await runScenario(munmap, { arch: ARCH, cpus: 4, threads: 4, ops: 5000, delay: 0.05, seed: 1, knobs: ['munmap.free_before_flush'], hangTimeoutMs: 20000, keepGoing: true });
    expect(kinds(r)).toContain('uaf-stale-tlb');
  });

  it('xenpv.leave_without_flush is caught: the refcount/mapcount audit always, at run time the allocator, walker, content or UAF oracle first', async () => {
    const opts = { arch: ARCH, cpus: 4, threads: 4, ops: 5000, delay: 0.05, seed: 1, hangTimeoutMs: 20000 };
    const bad = await runScenario(munmap, { ...opts, knobs: ['xenpv.leave_without_flush'] });
    expect(bad.violations.length).toBeGreaterThan(0);
    for (const k of kinds(bad)) expect(['free-mapped', 'double-free', 'refcount-underflow', 'pte-maps-free-frame', 'content', 'uaf-stale-tlb', 'free-nonempty-table', 'walk-freed-table']).toContain(k);
    expect(bad.audit.ok).toBe(false);
    expect(bad.audit.problems.join('\n')).toMatch(/mapcount \d+ but \d+ PTEs map it|is free but still referenced/);
    const good = await runScenario(munmap, opts);
    expect(good.violations).toEqual([]);
    expect(good.audit.ok && good.teardownAudit.ok).toBe(true);
  });
});
