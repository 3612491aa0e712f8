import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { set_preempt_model, preempt_next, preemptible } from '../src/hw/preempt.ts';
import { spin_lock, spin_unlock } from '../src/hw/locks.ts';
import { statWord, ST_PREEMPTIONS, ST_PREEMPT_IN_LAZY, ST_CTX_SWITCH, dataWord } from '../src/hw/layout.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { xen_cpu, XEN_LAZY_NONE } from '../src/arch/x86-xenpv/index.ts';

const stat = (m: ReturnType<typeof testMachine>, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];
describe('where a task may be preempted', () => {
  it('not under a spinlock (CONFIG_PREEMPT), but under PREEMPT_RT yes; never with irqs off or in an interrupt', () => {
    const m = testMachine({ cpus: 1 });
    m.process([0]);
    const LOCK = dataWord(m.V.L, 10, 0);
    for (const model of ['full', 'rt'] as const) {
      set_preempt_model(model);
      m.on(0, (cpu) => {
        expect(preemptible(cpu)).toBe(true);
        spin_lock(LOCK);
        expect(preemptible(cpu)).toBe(model === 'rt');
        spin_unlock(LOCK);
        cpu.local_irq_disable();
        expect(preemptible(cpu)).toBe(false);
        cpu.local_irq_enable();
      });
    }
  });

  it('a preemption switches the task out and back in (two context switches); the task resumes on its CPU', () => {
    set_preempt_model('full');
    const m = testMachine({ cpus: 1 });
    const { tasks } = m.process([0]);
    const before = stat(m, 0, ST_CTX_SWITCH);
    preempt_next(1);
    m.on(0, (cpu) => cpu.sched_point());
    expect(stat(m, 0, ST_PREEMPTIONS)).toBe(1);
    expect(stat(m, 0, ST_CTX_SWITCH)).toBe(before + 2);
    expect(m.cpus[0].curTask).toBe(tasks[0]);
  });
});

// Xen PV, mprotect: change_pte_range() runs its lazy MMU section under the PTL.
describe('a preemption inside a lazy MMU section (x86-xenpv mprotect)', () => {
  function run(model: 'full' | 'rt') {
    set_preempt_model(model);
    const m = testMachine({ cpus: 2, arch: 'x86-xenpv', tlb: 256 });
    const { mm } = m.process([0, 1]);
    const va = m.on(0, () => do_mmap(mm, 0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => {
      for (let p = 0; p < 8; p++) cpu.write(va + p * 4096, p);
    });
    preempt_next(1000); // every preemptible scheduling point of the mprotect preempts
    expect(m.on(0, () => do_mprotect(mm, va, 8 * 4096, PROT_READ))).toBe(0);
    preempt_next(0);
    return { m, va };
  }
  it('PREEMPT_RT: the PTL sleeps, the section is preempted (the multicall queue is issued at switch-out, the mode re-entered at switch-in), no BUG', () => {
    const { m, va } = run('rt');
    // the task may have migrated outside the section (issue #11): count on both CPUs
    expect(stat(m, 0, ST_PREEMPT_IN_LAZY) + stat(m, 1, ST_PREEMPT_IN_LAZY)).toBeGreaterThan(0);
    expect(m.violations).toEqual([]);
    for (const c of m.cpus) expect(xen_cpu(c).xen_lazy_mode).toBe(XEN_LAZY_NONE);
    m.on(1, (cpu) => expect(cpu.write(va, 1)).toBe(false)); // read-only everywhere after mprotect returned
  });
  it('CONFIG_PREEMPT: the PTL disables preemption: never inside the section', () => {
    const { m } = run('full');
    expect(stat(m, 0, ST_PREEMPTIONS) + stat(m, 1, ST_PREEMPTIONS)).toBeGreaterThan(0);
    expect(stat(m, 0, ST_PREEMPT_IN_LAZY) + stat(m, 1, ST_PREEMPT_IN_LAZY)).toBe(0);
    expect(m.violations).toEqual([]);
  });
});

// Issue #11 case 6.14e: lazy_mmu_mode_enable() counts, then calls arch_enter_lazy_mmu_mode();
// a preemption in between (possible with no spinlock held: PREEMPT_RT, or kernel page
// tables) switches the task out with Xen not yet lazy and back in.
describe('Xen PV May 2026 regression (291b3abed657), through the real lazy_mmu_mode_enable()', () => {
  function run(knobs: string[]) {
    set_preempt_model('rt');
    const m = testMachine({ cpus: 1, arch: 'x86-xenpv', knobs });
    m.process([0]);
    preempt_next(1); // the first scheduling point: between the count and the arch hook
    m.on(0, () => {
      lazy_mmu_mode_enable();
      lazy_mmu_mode_disable();
    });
    expect(stat(m, 0, ST_PREEMPT_IN_LAZY)).toBe(1);
    return m;
  }
  it('with xenpv.ctxsw_task_lazy_state (switch-in reads the task state): Xen BUG, already in lazy mode', () => {
    const m = run(['xenpv.ctxsw_task_lazy_state']);
    expect(m.violations.map((v) => v.message)).toContainEqual(expect.stringMatching(/BUG: Xen enter_lazy\(XEN_LAZY_MMU\) while the per-CPU lazy mode is already MMU/));
  });
  it('with the TIF_LAZY_MMU_UPDATES flag saved at switch-out (the fix): clean', () => {
    const m = run([]);
    expect(m.violations).toEqual([]);
  });
});

// Issue #11 case 6.14a: per-CPU batches across a context switch cannot happen on powerpc hash
// or sparc64, because their arch enter disables preemption (b9ef323ea168; sparc64 2025).
describe('lazy MMU sections with per-CPU batches are not preemptible, even under PREEMPT_RT', () => {
  for (const archName of ['powerpc-hash', 'sparc64', 'x86-xenpv'] as const) {
    it(`${archName}: ${archName === 'x86-xenpv' ? 'preemptible (Xen saves the mode at switch-out)' : 'not preemptible inside, preemptible after leave'}`, () => {
      set_preempt_model('rt');
      const m = testMachine({ cpus: 1, arch: archName });
      m.process([0]);
      m.on(0, (cpu) => {
        lazy_mmu_mode_enable();
        expect(preemptible(cpu)).toBe(archName === 'x86-xenpv');
        lazy_mmu_mode_disable();
        expect(preemptible(cpu)).toBe(true);
      });
    });
  }
});

describe('s390 under PREEMPT_RT: no task is preempted with mm->context.flush_count raised', () => {
  it('mremap-vs-fault, deterministic, --preempt rt: no deadlock; sections preempted only before the arch enter (v3+ enter_ipte_range takes get_cpu_var); the series\' use-after-free still shows, the fixed series is clean', async () => {
    const { loadScenario } = await import('../src/engine/scenario.ts');
    const { runScenario } = await import('../src/engine/machine.ts');
    const s = await loadScenario('scenarios/mremap-vs-fault.ts');
    const opts = { arch: 's390', preempt: 'rt' as const, mode: 'deterministic' as const, seed: 1, hangTimeoutMs: 60_000 };
    // the leave of a range section IPTEs under flush_count (set_pte_range); preempted there, the task was
    // switched back in through finish_arch_post_lock_switch, which waited for that same count for ever
    const fixed = await runScenario(s, { ...opts, lazySeries: 'v6-fixed' });
    expect(fixed.hang).toBeUndefined();
    expect(fixed.violations).toEqual([]);
    // v3+ arch/s390/mm/lazy_mmu.c: get_cpu_var(ipte_range) at enter, put_cpu_var at leave: the
    // section is not preemptible even under PREEMPT_RT; only the window between the enable_count
    // update and arch_enter_lazy_mmu_mode() is (the model preempted whole sections before)
    expect(fixed.stats.preemptInLazy).toBeGreaterThan(0);
    expect(fixed.stats.preemptInLazy).toBeLessThan(100);
    // the series as posted: the first of seeds 1-10 whose schedule meets it (1 in 8 on 6 Dec 2026; a
    // change of the scheduler's choices, e.g. migrations between threads, moves which seed that is)
    let found: string[] = [];
    for (let seed = 1; seed <= 10 && found.length === 0; seed++) {
      const v6 = await runScenario(s, { ...opts, seed, lazySeries: 'v6' });
      expect(v6.hang).toBeUndefined();
      found = v6.violations.map((v) => v.kind);
    }
    expect(found).toContain('pte-maps-free-frame');
  }, 180_000);
});
