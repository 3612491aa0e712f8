// Kernel PTE stores (init_mm) inside lazy MMU sections, per arch (issue #11,
// docs/concurrency.md "Kernel page tables"): what each arch defers for a kernel
// PTE, as its kernel code does, and when the deferred work becomes visible.
//  - Xen PV: set_pte is xen_set_pte -> xen_batched_set_pte, queued in XEN_LAZY_MMU
//    whatever the mm; ptep_get_and_clear is native (trapped and emulated): at once;
//    in interrupt context xen_get_lazy_mode() is NONE: at once.
//  - powerpc hash: hpte_need_flush batches kernel addresses too (get_kernel_vsid);
//    flush_tlb_kernel_range is empty; the linear map is never batched.
//  - sparc64: maybe_tlb_batch_add skips init_mm: nothing batched, the stale
//    entries wait for flush_tlb_kernel_range.
//  - s390: with the series the vmalloc sections cache init_mm's PTEs in the
//    ipte_range (one global IPTE-range at leave); mainline: a global IPTE at once.
// Inline machines: every CPU on the test's thread, no workers to terminate.
import { describe, it, expect, afterEach } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { setKnobs } from '../src/inject/knobs.ts';
import { set_irq_odds, irq_next } from '../src/hw/irq.ts';
import { KERNEL_ASID, PAGE_SIZE, statWord, ST_BATCHED, ST_IRQS, ST_IRQ_IN_LAZY, ST_IRQ_KERNEL_MAPS } from '../src/hw/layout.ts';
import { pfn_pte } from '../src/hw/pte.ts';
import {
  vmalloc, vfree, purge_vmap_area_lazy, kernel_pte_lookup, kernel_page_tables_init, set_debug_pagealloc, PAGE_KERNEL,
} from '../src/mm/vmalloc.ts';
import { set_pte_kernel, ptep_get_and_clear_kernel } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable, set_lazy_series, LAZY_SERIES_LATEST } from '../src/mm/lazy_mmu.ts';
import { alloc_page } from '../src/mm/page_alloc.ts';
import type { XenPvCpu } from '../src/arch/x86-xenpv/index.ts';
import type { ppc64_tlb_batch } from '../src/arch/powerpc-hash/index.ts';
import type { tlb_batch } from '../src/arch/sparc64/index.ts';

const T = 30_000;

afterEach(() => {
  set_irq_odds(0);
  set_debug_pagealloc(false);
  set_lazy_series(LAZY_SERIES_LATEST);
  setKnobs([]);
});

const kinds = (m: TestMachine): string[] => m.violations.map((v) => v.kind);
const initMm = (m: TestMachine): number => m.V.L.initMm;
/** does CPU c hold a (global) TLB entry of va */
const cached = (m: TestMachine, c: number, va: number): boolean => m.on(c, (cpu) => cpu.tlb.lookup(KERNEL_ASID, Math.floor(va / PAGE_SIZE)) >= 0);

/**
 * A vmalloc'd page whose PTE has just been cleared by vfree, and the address of the
 * next page of the same area (still none): PTE tables of init_mm exist for both.
 * Returns the cleared area's address, its PTE and a fresh page to map there.
 */
function freshKernelSlot(m: TestMachine): { addr: number; ptep: number; pfn: number } {
  const addr = m.on(0, () => vmalloc(1));
  m.on(0, () => vfree(addr));
  m.on(0, () => purge_vmap_area_lazy()); // the address may be mapped again
  const ptep = kernel_pte_lookup(m.V, addr);
  expect(Atomics.load(m.V.I, ptep)).toBe(0);
  const pfn = m.on(0, () => alloc_page(false));
  expect(pfn).toBeGreaterThan(0);
  return { addr, ptep, pfn };
}

/** CPU 0: enter a section on init_mm (the vmalloc call sites' range-aware entry) and store the PTE of addr. */
function storeInSection(m: TestMachine, addr: number, ptep: number, pte: number): void {
  m.on(0, () => {
    lazy_mmu_mode_enable_with_ptes(initMm(m), addr, addr + PAGE_SIZE, ptep);
    set_pte_kernel(initMm(m), addr, ptep, pte);
  });
}

/** CPU 0 enters a lazy section over the page (vunmap_pte_range's range) and clears its kernel PTE, leaving the section open. */
function clearInSection(m: TestMachine, addr: number, ptep: number): void {
  m.on(0, () => {
    lazy_mmu_mode_enable_with_ptes(initMm(m), addr, addr + PAGE_SIZE, ptep);
    ptep_get_and_clear_kernel(initMm(m), addr, ptep);
  });
}

/** A vmalloc'd page written by CPU 0 and read by CPU 1 (CPU 1 caches its global entry). */
function sharedKernelPage(m: TestMachine): { addr: number; ptep: number } {
  const addr = m.on(0, () => vmalloc(1));
  expect(m.on(0, (cpu) => cpu.kwrite(addr, 42))).toBe(true);
  expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(true);
  expect(cached(m, 1, addr)).toBe(true);
  return { addr, ptep: kernel_pte_lookup(m.V, addr) };
}

describe('Xen PV: kernel set_pte goes through the multicall queue (xen_batched_set_pte)', () => {
  it('a kernel PTE stored in a lazy section stays in the queue: memory (every walker) keeps the old entry until leave', () => {
    const m = testMachine({ arch: 'x86-xenpv', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep, pfn } = freshKernelSlot(m);
    storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL));
    expect(Atomics.load(m.V.I, ptep)).toBe(0); // queued, not issued
    expect(m.on(0, (cpu) => (cpu.arch as XenPvCpu).n)).toBe(1);
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(false); // CPU 1's walk finds nothing
    expect(kinds(m)).toEqual(['kernel-paging-request']);
    expect(m.violations[0].message).toMatch(/not valid in memory/);
    m.violations.length = 0;
    m.on(0, () => lazy_mmu_mode_disable()); // xen_leave_lazy_mmu: xen_mc_flush
    expect(Atomics.load(m.V.I, ptep)).toBe(pfn_pte(pfn, PAGE_KERNEL));
    expect(m.on(1, (cpu) => cpu.kwrite(addr, 9))).toBe(true);
    expect(m.on(0, (cpu) => cpu.kread(addr) && cpu.value)).toBe(9);
    expect(m.violations).toEqual([]);
  }, T);

  it('vmalloc queues its PTEs and issues them at the leave: the caller uses the area at once, clean', () => {
    const m = testMachine({ arch: 'x86-xenpv', cpus: 2 });
    m.process([0, 1]);
    const before = m.V.I[statWord(m.V.L, 0, ST_BATCHED)];
    const addr = m.on(0, () => vmalloc(3));
    expect(m.V.I[statWord(m.V.L, 0, ST_BATCHED)] - before).toBe(3);
    expect(m.on(0, (cpu) => (cpu.arch as XenPvCpu).n)).toBe(0);
    expect(m.on(0, (cpu) => cpu.kwrite(addr + 2 * PAGE_SIZE, 1))).toBe(true);
    expect(m.violations).toEqual([]);
  }, T);

  it('xenpv.leave_without_flush now drops kernel PTEs too: the new area is not mapped, kernel paging request', () => {
    const m = testMachine({ arch: 'x86-xenpv', cpus: 2, knobs: ['xenpv.leave_without_flush'] });
    m.process([0, 1]);
    const addr = m.on(0, () => vmalloc(1));
    expect(m.on(0, (cpu) => cpu.kwrite(addr, 1))).toBe(false);
    expect(kinds(m)).toEqual(['kernel-paging-request']);
  }, T);

  it('the kernel clear (vunmap_pte_range) is native_ptep_get_and_clear, not queued: memory is cleared at once', () => {
    const m = testMachine({ arch: 'x86-xenpv', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep } = sharedKernelPage(m);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_get_and_clear_kernel(initMm(m), addr, ptep);
    });
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    expect(m.on(0, (cpu) => (cpu.arch as XenPvCpu).n)).toBe(0);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(m.violations).toEqual([]);
  }, T);

  for (const knobs of [[], ['lazy_mmu.active_in_irq']]) {
    it(`an interrupt handler's linear-map PTE inside the task's section is stored at once (xen_get_lazy_mode is NONE in interrupt context)${knobs.length ? ', with lazy_mmu.active_in_irq too' : ''}: clean`, () => {
      const m = testMachine({ arch: 'x86-xenpv', cpus: 2, knobs });
      m.process([0, 1]);
      m.on(0, () => kernel_page_tables_init());
      set_debug_pagealloc(true);
      set_irq_odds(1 << 20);
      const { addr, ptep, pfn } = freshKernelSlot(m);
      storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL)); // the task has a queued kernel PTE
      m.on(0, (cpu) => {
        irq_next(1);
        cpu.sched_point(); // the handler maps, uses and unmaps its page here
      });
      expect(m.V.I[statWord(m.V.L, 0, ST_IRQS)]).toBe(1);
      expect(m.V.I[statWord(m.V.L, 0, ST_IRQ_IN_LAZY)]).toBe(1);
      expect(m.V.I[statWord(m.V.L, 0, ST_IRQ_KERNEL_MAPS)]).toBe(2);
      expect(m.on(0, (cpu) => (cpu.arch as XenPvCpu).n)).toBe(1); // only the task's store waits
      m.on(0, () => lazy_mmu_mode_disable());
      expect(Atomics.load(m.V.I, ptep)).toBe(pfn_pte(pfn, PAGE_KERNEL));
      expect(m.violations).toEqual([]);
    }, T);
  }
});

describe('powerpc hash: hpte_need_flush batches kernel addresses too', () => {
  it('a kernel clear in a lazy section: memory is cleared, the invalidation waits in ppc64_tlb_batch; CPU 1 translates until leave', () => {
    const m = testMachine({ arch: 'powerpc-hash', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep } = sharedKernelPage(m);
    clearInSection(m, addr, ptep);
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    const batch = m.on(0, (cpu) => cpu.arch as ppc64_tlb_batch);
    expect(batch.index).toBe(1);
    expect(batch.mm).toBe(initMm(m));
    expect(cached(m, 1, addr)).toBe(true); // the old HPTE/TLB entry still translates
    expect(m.on(1, (cpu) => cpu.kread(addr) && cpu.value)).toBe(42);
    m.on(0, () => lazy_mmu_mode_disable()); // __flush_tlb_pending: tlbie (init_mm is never thread-local)
    expect(batch.index).toBe(0);
    expect(cached(m, 1, addr)).toBe(false);
    expect(m.violations).toEqual([]);
  }, T);

  it('outside a section the kernel clear is a tlbie at once', () => {
    const m = testMachine({ arch: 'powerpc-hash', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep } = sharedKernelPage(m);
    m.on(0, () => ptep_get_and_clear_kernel(initMm(m), addr, ptep));
    expect(cached(m, 1, addr)).toBe(false);
  }, T);

  it('vfree: the stale entry is gone when vunmap_pte_range leaves (no UAF after vfree, unlike x86); the purge flushes nothing', () => {
    const m = testMachine({ arch: 'powerpc-hash', cpus: 2 });
    m.process([0, 1]);
    const { addr } = sharedKernelPage(m);
    m.on(0, () => vfree(addr));
    expect(cached(m, 1, addr)).toBe(false);
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(false);
    expect(kinds(m)).toEqual(['kernel-paging-request']); // a use after vfree: an oops, never a stale translation
  }, T);

  it('a store over a none entry (vmap) needs no invalidation: nothing batched', () => {
    const m = testMachine({ arch: 'powerpc-hash', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep, pfn } = freshKernelSlot(m);
    storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL));
    expect(Atomics.load(m.V.I, ptep)).toBe(pfn_pte(pfn, PAGE_KERNEL)); // Linux PTEs are plain memory on hash
    expect(m.on(0, (cpu) => (cpu.arch as ppc64_tlb_batch | undefined)?.index ?? 0)).toBe(0);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(true);
    expect(m.violations).toEqual([]);
  }, T);

  it('lazy_mmu.active_in_irq: the handler\'s linear-map unmap is kernel_unmap_linear_page, a tlbie at once, never batched: clean', () => {
    const m = testMachine({ arch: 'powerpc-hash', cpus: 2, knobs: ['lazy_mmu.active_in_irq'] });
    m.process([0, 1]);
    m.on(0, () => kernel_page_tables_init());
    set_debug_pagealloc(true);
    set_irq_odds(1 << 20);
    m.on(0, (cpu) => {
      lazy_mmu_mode_enable();
      irq_next(1);
      cpu.sched_point();
      expect((cpu.arch as ppc64_tlb_batch | undefined)?.index ?? 0).toBe(0);
      lazy_mmu_mode_disable();
    });
    expect(m.V.I[statWord(m.V.L, 0, ST_IRQ_KERNEL_MAPS)]).toBe(2);
    expect(m.violations).toEqual([]);
  }, T);
});

describe('sparc64: maybe_tlb_batch_add skips init_mm (flush_tlb_kernel_range does the work)', () => {
  it('a kernel clear in a lazy section: memory cleared at once, nothing batched, CPU 1 keeps its entry after leave until flush_tlb_kernel_range', () => {
    const m = testMachine({ arch: 'sparc64', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep } = sharedKernelPage(m);
    clearInSection(m, addr, ptep);
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    expect(m.on(0, (cpu) => (cpu.arch as tlb_batch | undefined)?.tlb_nr ?? 0)).toBe(0);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(cached(m, 1, addr)).toBe(true); // the leave flushed nothing of init_mm
    m.on(0, () => purge_vmap_area_lazy()); // nothing lazily freed yet: no flush
    expect(cached(m, 1, addr)).toBe(true);
    m.on(0, () => vfree(addr)); // the slot goes on the purge list (its PTE is already none)
    m.on(0, () => purge_vmap_area_lazy()); // flush_tlb_kernel_range: the cross-call
    expect(cached(m, 1, addr)).toBe(false);
    expect(m.violations).toEqual([]);
  }, T);

  it('a kernel store in a lazy section reaches memory at once (no queue): CPU 1 can use it before the leave', () => {
    const m = testMachine({ arch: 'sparc64', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep, pfn } = freshKernelSlot(m);
    storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL));
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(true);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(m.violations).toEqual([]);
  }, T);
});

describe('s390: the series\' ipte_range caches init_mm PTEs of the vmalloc sections (v6 lazy_mmu.c enter_ipte_range)', () => {
  it('v6: a kernel store is cached (memory and walkers see the old none entry) until leave', () => {
    const m = testMachine({ arch: 's390', cpus: 2 });
    m.process([0, 1]);
    set_lazy_series('v6');
    const { addr, ptep, pfn } = freshKernelSlot(m);
    storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL));
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(false);
    expect(kinds(m)).toEqual(['kernel-paging-request']);
    m.violations.length = 0;
    m.on(0, () => lazy_mmu_mode_disable()); // leave_ipte_range: set_pte_range stores it (no IPTE: memory was invalid)
    expect(Atomics.load(m.V.I, ptep)).toBe(pfn_pte(pfn, PAGE_KERNEL));
    expect(m.on(1, (cpu) => cpu.kread(addr))).toBe(true);
    expect(m.violations).toEqual([]);
  }, T);

  it('v6: a kernel clear is cached, CPU 1 translates through the valid entry until the leave\'s global IPTE-range', () => {
    const m = testMachine({ arch: 's390', cpus: 2 });
    m.process([0, 1]);
    set_lazy_series('v6');
    const { addr, ptep } = sharedKernelPage(m);
    const old = Atomics.load(m.V.I, ptep);
    m.on(0, () => {
      lazy_mmu_mode_enable_with_ptes(initMm(m), addr, addr + PAGE_SIZE, ptep);
      expect(ptep_get_and_clear_kernel(initMm(m), addr, ptep)).toBe(old);
    });
    expect(Atomics.load(m.V.I, ptep)).toBe(old);
    expect(cached(m, 1, addr)).toBe(true);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    expect(cached(m, 1, addr)).toBe(false); // IPTE_GLOBAL: mm_cpumask(&init_mm) is every CPU
    expect(m.violations).toEqual([]);
  }, T);

  it('mainline (no series): the kernel clear is ptep_xchg_lazy, a global IPTE at once (init_mm is attached everywhere)', () => {
    const m = testMachine({ arch: 's390', cpus: 2 });
    m.process([0, 1]);
    set_lazy_series('none');
    const { addr, ptep } = sharedKernelPage(m);
    clearInSection(m, addr, ptep);
    expect(Atomics.load(m.V.I, ptep)).toBe(0);
    expect(cached(m, 1, addr)).toBe(false);
    m.on(0, () => lazy_mmu_mode_disable());
    expect(m.violations).toEqual([]);
  }, T);

  it('v6: the section runs with preemption off (get_cpu_var in enter_ipte_range, put_cpu_var at leave): a vmalloc section has no PTL to do it', () => {
    const m = testMachine({ arch: 's390', cpus: 2 });
    m.process([0, 1]);
    const { addr, ptep, pfn } = freshKernelSlot(m);
    for (const series of ['v6', 'none'] as const) {
      set_lazy_series(series);
      const off0 = m.on(0, (cpu) => cpu.preemptOff);
      storeInSection(m, addr, ptep, pfn_pte(pfn, PAGE_KERNEL));
      expect(m.on(0, (cpu) => cpu.preemptOff) - off0).toBe(series === 'v6' ? 1 : 0); // mainline s390 has no backend
      m.on(0, () => lazy_mmu_mode_disable());
      expect(m.on(0, (cpu) => cpu.preemptOff)).toBe(off0);
      m.on(0, () => ptep_get_and_clear_kernel(initMm(m), addr, ptep));
    }
    expect(m.violations).toEqual([]);
  }, T);

  for (const series of ['v6', 'none'] as const) {
    it(`${series}: vmalloc, use from both CPUs, vfree: clean, and no stale entry survives vfree`, () => {
      const m = testMachine({ arch: 's390', cpus: 2 });
      m.process([0, 1]);
      set_lazy_series(series);
      const { addr } = sharedKernelPage(m);
      m.on(0, () => vfree(addr));
      expect(cached(m, 1, addr)).toBe(false);
      expect(m.violations).toEqual([]);
    }, T);
  }
});
