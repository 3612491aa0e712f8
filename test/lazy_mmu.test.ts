import { describe, it, expect, beforeEach } from 'vitest';
import { testMachine, type TestMachine } from './helpers.ts';
import { x86 } from '../src/arch/x86/index.ts';
import { set_arch } from '../src/mm/pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable, lazy_mmu_mode_pause, lazy_mmu_mode_resume, is_lazy_mmu_mode_active } from '../src/mm/lazy_mmu.ts';
import { taskWord, T_LAZY_ENABLE, T_LAZY_PAUSE } from '../src/hw/layout.ts';
import { context_switch } from '../src/mm/mmu_context.ts';

// The generic API of include/linux/pgtable.h (lazy_mmu_mode_enable/disable/pause/resume,
// as the nesting series' KUnit test <20251215150323.2218608-15-kevin.brodsky@arm.com>
// exercises it), step by step: counts after each call,
// whether the mode is active, and which arch hooks ran.
let calls: string[] = [];
const recording = {
  ...x86,
  arch_enter_lazy_mmu_mode: () => void calls.push('enter'),
  arch_leave_lazy_mmu_mode: () => void calls.push('leave'),
  arch_flush_lazy_mmu_mode: () => void calls.push('flush'),
};

let m: TestMachine;
let task: number;
const state = () => {
  const I = m.V.I;
  return `${I[taskWord(m.V.L, task, T_LAZY_ENABLE)]}/${I[taskWord(m.V.L, task, T_LAZY_PAUSE)]}`;
};
function step(fn: () => void): [string, boolean, string[]] {
  calls = [];
  m.on(0, fn);
  return [state(), m.on(0, () => is_lazy_mmu_mode_active()), calls];
}

describe('lazy MMU mode generic API (include/linux/pgtable.h, nesting series)', () => {
  beforeEach(() => {
    m = testMachine({ cpus: 1 });
    set_arch(recording);
    task = m.process([0]).tasks[0];
  });

  it('nests: only the outermost enable enters, a nested disable flushes, the outermost leaves', () => {
    expect(step(() => {})).toEqual(['0/0', false, []]);
    expect(step(lazy_mmu_mode_enable)).toEqual(['1/0', true, ['enter']]);
    expect(step(lazy_mmu_mode_enable)).toEqual(['2/0', true, []]);
    expect(step(lazy_mmu_mode_disable)).toEqual(['1/0', true, ['flush']]);
    expect(step(lazy_mmu_mode_disable)).toEqual(['0/0', false, ['leave']]);
  });

  it('pause leaves entirely, calls while paused are ignored, resume re-enters', () => {
    expect(step(lazy_mmu_mode_enable)).toEqual(['1/0', true, ['enter']]);
    expect(step(lazy_mmu_mode_pause)).toEqual(['1/1', false, ['leave']]);
    expect(step(lazy_mmu_mode_enable)).toEqual(['1/1', false, []]);
    expect(step(lazy_mmu_mode_disable)).toEqual(['1/1', false, []]);
    expect(step(lazy_mmu_mode_resume)).toEqual(['1/0', true, ['enter']]);
  });

  it('pause, pause, resume: leave once, nothing on the inner pair', () => {
    step(lazy_mmu_mode_enable);
    expect(step(() => { lazy_mmu_mode_pause(); lazy_mmu_mode_pause(); lazy_mmu_mode_resume(); })).toEqual(['1/1', false, ['leave']]);
    expect(step(lazy_mmu_mode_resume)).toEqual(['1/0', true, ['enter']]);
  });

  it('pause with enable_count 0 only counts', () => {
    expect(step(lazy_mmu_mode_pause)).toEqual(['0/1', false, []]);
    expect(step(lazy_mmu_mode_resume)).toEqual(['0/0', false, []]);
  });

  it('does nothing in interrupt context, and reports inactive there even inside a section', () => {
    step(lazy_mmu_mode_enable);
    const irq = (fn: () => void) => () => {
      m.cpus[0].inIrq++;
      fn();
      m.cpus[0].inIrq--;
    };
    expect(step(irq(lazy_mmu_mode_enable))).toEqual(['1/0', true, []]);
    expect(step(irq(lazy_mmu_mode_disable))).toEqual(['1/0', true, []]);
    expect(step(irq(lazy_mmu_mode_pause))).toEqual(['1/0', true, []]);
    let active = true;
    step(irq(() => (active = is_lazy_mmu_mode_active())));
    expect(active).toBe(false);
    // a bottom-half-disabled region counts as interrupt context too
    m.cpus[0].bhOff = 1;
    expect(step(lazy_mmu_mode_disable)).toEqual(['1/0', false, []]);
  });

  it('state belongs to the task: it survives a context switch', () => {
    step(lazy_mmu_mode_enable);
    m.on(0, (cpu) => context_switch(cpu, -1));
    expect(m.on(0, () => is_lazy_mmu_mode_active())).toBe(false); // idle has no lazy state
    m.on(0, (cpu) => context_switch(cpu, task));
    expect(step(() => {})).toEqual(['1/0', true, []]);
  });

  it('an unbalanced disable is reported, not silently accepted', () => {
    step(lazy_mmu_mode_disable);
    expect(m.violations.map((v) => v.kind)).toEqual(['lazy-mmu-contract']);
  });
});
