import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { current } from '../src/hw/cpu.ts';
import { IPI_FLUSH_TLB } from '../src/arch/arch.ts';
import { flush_tlb_mm_range } from '../src/arch/x86/index.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable, is_lazy_mmu_mode_active, lazy_mmu_mode_pause, lazy_mmu_mode_resume } from '../src/mm/lazy_mmu.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset, ptep_get, ptep_set_wrprotect } from '../src/mm/pgtable.ts';
import { _PAGE_RW } from '../src/hw/pte.ts';
import { taskWord, T_LAZY_ENABLE, statWord, ST_LAZY_SECTIONS } from '../src/hw/layout.ts';

// "mm: bail out of lazy_mmu_mode_* in interrupt context" (nesting series,
// <20251215150323.2218608-1-kevin.brodsky@arm.com>): lazy MMU mode is not active in interrupt context,
// even when the interrupted task is inside a section, and calls made there
// have no effect.
describe('interrupts and lazy MMU sections', () => {
  it('an IPI handled while the task is inside a section runs with the mode inactive, and its enable has no effect', () => {
    const m = testMachine({ cpus: 2 });
    const { mm, tasks } = m.process([0, 1]);
    const seen: { cpu: number; active: boolean; count: number }[] = [];
    const real = m.host.hooks.ipi[IPI_FLUSH_TLB];
    m.host.hooks.ipi[IPI_FLUSH_TLB] = (target, sender) => {
      const before = m.V.I[taskWord(m.V.L, tasks[1], T_LAZY_ENABLE)];
      lazy_mmu_mode_enable(); // an interrupt handler trying to batch: no effect
      seen.push({ cpu: current.id, active: is_lazy_mmu_mode_active(), count: m.V.I[taskWord(m.V.L, tasks[1], T_LAZY_ENABLE)] - before });
      lazy_mmu_mode_disable();
      real(target, sender);
    };
    m.on(1, () => lazy_mmu_mode_enable()); // CPU 1's task opens a section...
    expect(m.on(1, () => is_lazy_mmu_mode_active())).toBe(true);
    m.on(0, () => flush_tlb_mm_range(mm, 0x100000, 0x101000, 12, false)); // ...and takes a flush IPI inside it
    expect(seen).toEqual([{ cpu: 1, active: false, count: 0 }]);
    expect(m.on(1, () => is_lazy_mmu_mode_active())).toBe(true); // the task's section is intact
    m.on(1, () => lazy_mmu_mode_disable());
    expect(m.V.I[statWord(m.V.L, 1, ST_LAZY_SECTIONS)]).toBe(1); // only the task's own section
    expect(m.violations).toEqual([]);
  });
});

describe('pause/resume around code that must see real PTEs (lazy_mmu_mode_pause/resume)', () => {
  it('on x86-xenpv, pause issues the queued updates so a read in between sees them; resume defers again', () => {
    const m = testMachine({ cpus: 1, arch: 'x86-xenpv' });
    const { mm } = m.process([0]);
    const va = m.on(0, () => do_mmap(mm, 0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => { cpu.write(va, 1); cpu.write(va + 4096, 2); });
    const ptep = m.on(0, () => pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va));
    const mem = (i: number) => Atomics.load(m.V.I, ptep + i);
    m.on(0, () => {
      lazy_mmu_mode_enable();
      ptep_set_wrprotect(mm, va, ptep); // queued in the multicall buffer
      expect(mem(0) & _PAGE_RW).toBe(_PAGE_RW); // memory still has the old value
      lazy_mmu_mode_pause(); // code that needs real PTEs (KASAN shadow population in the kernel)
      expect(mem(0) & _PAGE_RW).toBe(0); // the queue was issued
      expect(ptep_get(ptep) & _PAGE_RW).toBe(0); // and a read now sees the update, no hazard
      ptep_set_wrprotect(mm, va + 4096, ptep + 1); // while paused: immediate
      expect(mem(1) & _PAGE_RW).toBe(0);
      lazy_mmu_mode_resume();
      expect(is_lazy_mmu_mode_active()).toBe(true);
      lazy_mmu_mode_disable();
    });
    expect(m.violations).toEqual([]);
  });
});
