import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { statWord, ST_FLUSH_RANGE, ST_FLUSH_SINGLE, ST_FLUSH_FULL, ST_LAZY_TLB_SKIPPED, ST_IPI_RECV, ST_IPI_SENT, ST_SWITCH_FLUSH, mmWord, MM_CPUMASK } from '../src/hw/layout.ts';
import { flush_tlb_mm_range, TLB_SINGLE_PAGE_FLUSH_CEILING } from '../src/arch/x86/index.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { task_create } from '../src/mm/mm.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';

const stat = (m: ReturnType<typeof testMachine>, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];

describe('x86 flush_tlb_mm_range', () => {
  it(`flushes up to ${TLB_SINGLE_PAGE_FLUSH_CEILING} pages one by one on every CPU running the mm, more as a full flush`, () => {
    const m = testMachine({ cpus: 3 });
    const { mm } = m.process([0, 1]);
    m.on(0, () => flush_tlb_mm_range(mm, 0x100000, 0x100000 + 33 * 4096, 12, false));
    expect(stat(m, 1, ST_IPI_RECV)).toBe(1);
    expect(stat(m, 1, ST_FLUSH_RANGE)).toBe(1);
    expect(stat(m, 1, ST_FLUSH_SINGLE)).toBe(33);
    expect(stat(m, 0, ST_FLUSH_SINGLE)).toBe(33); // the local CPU too
    expect(stat(m, 2, ST_IPI_RECV)).toBe(0); // never ran the mm
    m.on(0, () => flush_tlb_mm_range(mm, 0x100000, 0x100000 + 34 * 4096, 12, false));
    expect(stat(m, 1, ST_FLUSH_FULL)).toBe(1);
    expect(stat(m, 1, ST_FLUSH_SINGLE)).toBe(33);
  });

  it('drops exactly the flushed translations from a remote TLB', () => {
    const m = testMachine({ cpus: 2 });
    const { mm } = m.process([0, 1]);
    const va = m.on(0, () => do_mmap(mm, 0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(1, (cpu) => {
      for (let p = 0; p < 8; p++) cpu.write(va + p * 4096, p + 1);
      expect(cpu.tlb.countValid(cpu.asid)).toBe(8);
    });
    m.on(0, () => flush_tlb_mm_range(mm, va + 2 * 4096, va + 5 * 4096, 12, false));
    const t = m.cpus[1].tlb;
    const vpn = Math.floor(va / 4096);
    expect([...Array(8).keys()].map((p) => t.lookup(m.cpus[1].asid, vpn + p) >= 0)).toEqual([true, true, false, false, false, true, true, true]);
  });

  it('skips lazy-TLB CPUs, unless page tables are being freed', () => {
    const m = testMachine({ cpus: 3 });
    const { mm } = m.process([0, 1, 2]);
    m.on(2, (cpu) => context_switch(cpu, -1)); // CPU 2 goes idle: borrows the mm lazily
    expect(m.cpus[2].loadedMm).toBe(mm);
    m.on(0, () => flush_tlb_mm_range(mm, 0x100000, 0x101000, 12, false));
    expect(stat(m, 2, ST_IPI_RECV)).toBe(0);
    expect(stat(m, 0, ST_LAZY_TLB_SKIPPED)).toBe(1);
    expect(stat(m, 0, ST_IPI_SENT)).toBe(1);
    m.on(0, () => flush_tlb_mm_range(mm, 0x100000, 0x101000, 12, true));
    expect(stat(m, 2, ST_IPI_RECV)).toBe(1);
    expect(m.cpus[2].loadedMm).toBe(-1); // a lazy CPU told to flush switches to init_mm
  });

  it('a CPU that ran another mm during a flush catches up through the generation check at switch-in', () => {
    const m = testMachine({ cpus: 2 });
    const a = m.process([0, 1]);
    const va = m.on(0, () => do_mmap(a.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(1, (cpu) => cpu.write(va, 7));
    const asidA = m.cpus[1].asid;
    const b = m.process([]);
    const tb = task_create(m.V, b.mm, 1, 1);
    m.on(1, (cpu) => context_switch(cpu, tb)); // CPU 1 now runs B; A's entry stays (ASID-tagged)
    expect(m.cpus[1].tlb.countValid(asidA)).toBe(1);
    expect(m.V.I[mmWord(m.V.L, a.mm, MM_CPUMASK)] & 2).toBe(2); // still in A's mask
    m.on(0, () => flush_tlb_mm_range(a.mm, va, va + 4096, 12, false));
    expect(stat(m, 1, ST_IPI_RECV)).toBe(0); // A is not loaded there: no IPI
    expect(m.cpus[1].tlb.countValid(asidA)).toBe(1);
    m.on(1, (cpu) => context_switch(cpu, a.tasks[1]));
    expect(stat(m, 1, ST_SWITCH_FLUSH)).toBeGreaterThanOrEqual(1);
    expect(m.cpus[1].tlb.countValid(asidA)).toBe(0);
  });

  it('with x86.switch_mm_no_gen_check the stale entry survives the switch back (the knob the scenario catches)', () => {
    const m = testMachine({ cpus: 2, knobs: ['x86.switch_mm_no_gen_check'] });
    const a = m.process([0, 1]);
    const va = m.on(0, () => do_mmap(a.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(1, (cpu) => cpu.write(va, 7));
    const b = m.process([]);
    const tb = task_create(m.V, b.mm, 1, 1);
    m.on(1, (cpu) => context_switch(cpu, tb));
    m.on(0, () => flush_tlb_mm_range(a.mm, va, va + 4096, 12, false));
    m.on(1, (cpu) => context_switch(cpu, a.tasks[1]));
    expect(m.cpus[1].tlb.countValid(m.cpus[1].asid)).toBe(1);
  });
});
