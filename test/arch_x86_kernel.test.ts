// x86 details as arch/x86/mm/tlb.c flush_tlb_func (Linux 6.18) and
// include/asm-generic/tlb.h tlb_get_unmap_shift have them.
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import {
  statWord, mmWord, cpuCtl, fIndex, ST_FLUSH_SKIPPED, ST_FLUSH_FULL, MM_CPUMASK, MM_TLB_GEN, CC_INFO_MM, CC_INFO_GEN, CC_INFO_STRIDE,
  CC_INFO_START_F, CC_INFO_END_F, PAGE_SIZE, PAGE_SHIFT, PMD_SHIFT, PMD_SIZE,
} from '../src/hw/layout.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { mmu_gather, tlb_gather_mmu, tlb_flush_pte_range, tlb_flush_pmd_range, tlb_remove_table, tlb_get_unmap_shift } from '../src/mm/mmu_gather.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { flush_tlb_func } from '../src/arch/x86/index.ts';

const VA = 0x40000000;

function setup() {
  const m = testMachine({ cpus: 2, arch: 'x86' });
  const { mm } = m.process([0, 1]);
  expect(m.on(0, () => do_mmap(mm, VA, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))).toBe(VA);
  m.on(1, (cpu) => expect(cpu.write(VA, 1)).toBe(true));
  return { m, mm };
}

/** CPU 0's flush_tlb_info as flush_tlb_mm_range writes it. */
function request(m: ReturnType<typeof setup>['m'], mm: number, gen: number, start: number, end: number): void {
  const { I, F, L } = m.V;
  const info = cpuCtl(L, 0, 0);
  Atomics.store(I, info + CC_INFO_MM, mm);
  Atomics.store(I, info + CC_INFO_GEN, gen);
  Atomics.store(I, info + CC_INFO_STRIDE, PAGE_SHIFT);
  F[fIndex(info + CC_INFO_START_F)] = start;
  F[fIndex(info + CC_INFO_END_F)] = end;
}

describe('x86 flush_tlb_func (arch/x86/mm/tlb.c)', () => {
  it('a CPU on init_mm still in the target mm_cpumask leaves it: the f->mm != loaded_mm trim comes before the init_mm return', () => {
    const { m, mm } = setup();
    m.on(1, (cpu) => context_switch(cpu, -1)); // idle: lazy, still loaded
    m.on(1, (cpu) => cpu.setLoaded(-1, false)); // then init_mm (its bit stays in the mask: trimmed by flushes)
    const mask = (): number => Atomics.load(m.V.I, mmWord(m.V.L, mm, MM_CPUMASK));
    expect(mask() & 0b10).toBe(0b10);
    request(m, mm, Atomics.load(m.V.I, mmWord(m.V.L, mm, MM_TLB_GEN)) + 1, VA, VA + PAGE_SIZE);
    m.on(1, (cpu) => flush_tlb_func(cpu, 0));
    expect(mask() & 0b10).toBe(0);
  });

  it('f->new_tlb_gen <= local_tlb_gen: return at once, even though mm\'s tlb_gen moved on (no full flush)', () => {
    const { m, mm } = setup();
    const cpu1 = m.cpus[1];
    const local = cpu1.ctxGen[cpu1.asid];
    Atomics.add(m.V.I, mmWord(m.V.L, mm, MM_TLB_GEN), 2); // other flushes are under way
    request(m, mm, local, VA, VA + PAGE_SIZE); // an old request: this CPU has caught up with it
    const skipped0 = m.V.I[statWord(m.V.L, 1, ST_FLUSH_SKIPPED)];
    m.on(1, (cpu) => flush_tlb_func(cpu, 0));
    expect(m.V.I[statWord(m.V.L, 1, ST_FLUSH_SKIPPED)]).toBe(skipped0 + 1);
    expect(m.V.I[statWord(m.V.L, 1, ST_FLUSH_FULL)]).toBe(0);
    expect(cpu1.tlb.lookup(cpu1.asid, VA / PAGE_SIZE)).toBeGreaterThanOrEqual(0); // nothing purged
    expect(cpu1.ctxGen[cpu1.asid]).toBe(local);
  });
});

describe('tlb_get_unmap_shift (include/asm-generic/tlb.h)', () => {
  it('PAGE_SHIFT when a PTE was cleared, PMD_SHIFT for a zap of huge PMDs only or of freed PTE tables only', () => {
    const { m, mm } = setup();
    m.on(0, () => {
      const a = new mmu_gather();
      tlb_gather_mmu(a, mm);
      tlb_flush_pmd_range(a, VA, PMD_SIZE);
      expect(tlb_get_unmap_shift(a)).toBe(PMD_SHIFT);
      tlb_flush_pte_range(a, VA, PAGE_SIZE);
      expect(tlb_get_unmap_shift(a)).toBe(PAGE_SHIFT);
      const b = new mmu_gather();
      tlb_gather_mmu(b, mm);
      tlb_remove_table(b, 0, VA, PAGE_SIZE); // pte_free_tlb -> tlb_flush_pmd_range (nothing is freed: b is not flushed)
      expect(tlb_get_unmap_shift(b)).toBe(PMD_SHIFT);
      b.tables.length = 0;
    });
  });
});
