// Issue #11: a preempted task may resume on another CPU (src/hw/preempt.ts migrate_swap).
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { set_preempt_model, preempt_next, migrate_next } from '../src/hw/preempt.ts';
import { spin_lock, spin_unlock } from '../src/hw/locks.ts';
import { readRing } from '../src/hw/trace.ts';
import { statWord, cpuCtl, taskWord, ST_MIGRATIONS, ST_PREEMPTIONS, CC_LOADED_MM, CC_IS_LAZY, T_CPU, dataWord } from '../src/hw/layout.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_disable } from '../src/mm/lazy_mmu.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { xen_cpu, XEN_LAZY_NONE, XEN_LAZY_MMU } from '../src/arch/x86-xenpv/index.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';

type M = ReturnType<typeof testMachine>;
const stat = (m: M, cpu: number, f: number): number => m.V.I[statWord(m.V.L, cpu, f)];
const loaded = (m: M, cpu: number): number => m.V.I[cpuCtl(m.V.L, cpu, CC_LOADED_MM)];

describe('migration of a preempted task', () => {
  it('the task resumes on the other CPU: the CPUs trade ids, TLBs and per-CPU words; the old CPU keeps the mm lazily', () => {
    set_preempt_model('full');
    const m = testMachine({ cpus: 2 });
    const a = m.process([0]);
    const b = m.process([1]);
    const [o0, o1] = m.cpus;
    const tlb0 = o0.tlb;
    const tlb1 = o1.tlb;
    preempt_next(1);
    migrate_next(1);
    m.on(0, (cpu) => cpu.sched_point()); // task a.tasks[0], in kernel code, preempted
    expect(stat(m, 0, ST_PREEMPTIONS) + stat(m, 1, ST_PREEMPTIONS)).toBe(1);
    expect(stat(m, 1, ST_MIGRATIONS)).toBe(1); // counted on the CPU it resumed on
    // migrate_swap moved b's task (in user mode) to CPU 0: counted there, and CPU 0's track says
    // so, which is where a trace closes the spans a's task left open (src/report/trace_export.ts)
    expect(stat(m, 0, ST_MIGRATIONS)).toBe(1);
    const moves = [0, 1].map((c) => readRing(m.V, c).filter((e) => e.type === 'MIGRATE').map((e) => [e.a, e.b]));
    expect(moves).toEqual([[[b.tasks[0], 1]], [[a.tasks[0], 0]]]);
    expect([o0.id, o1.id]).toEqual([1, 0]);
    expect(o0.tlb).toBe(tlb1);
    expect(o1.tlb).toBe(tlb0);
    expect(o0.curTask).toBe(a.tasks[0]);
    expect(m.V.I[taskWord(m.V.L, a.tasks[0], T_CPU)]).toBe(1);
    expect(m.V.I[taskWord(m.V.L, b.tasks[0], T_CPU)]).toBe(0);
    // CPU 1 switched to a's mm (switch_mm); CPU 0 went idle and keeps a's mm as lazy TLB
    expect(loaded(m, 1)).toBe(a.mm);
    expect(loaded(m, 0)).toBe(a.mm);
    expect(m.V.I[cpuCtl(m.V.L, 0, CC_IS_LAZY)]).toBe(1);
    expect(m.violations).toEqual([]);
  });

  it('PREEMPT_RT: a task holding a spinlock_t is preempted but not migrated (rt_spin_lock: migrate_disable)', () => {
    set_preempt_model('rt');
    const m = testMachine({ cpus: 2 });
    m.process([0]);
    m.process([1]);
    const LOCK = dataWord(m.V.L, 10, 0);
    m.on(0, (cpu) => {
      spin_lock(LOCK);
      preempt_next(1);
      migrate_next(1);
      cpu.sched_point();
      spin_unlock(LOCK);
    });
    expect(stat(m, 0, ST_PREEMPTIONS)).toBe(1);
    expect(stat(m, 0, ST_MIGRATIONS) + stat(m, 1, ST_MIGRATIONS)).toBe(0);
    expect(m.cpus[0].id).toBe(0);
  });

  it('per-CPU TLB state: the old CPU keeps the task\'s translation; a munmap after the move skips it (lazy) and it flushes at switch-in (tlb_gen)', () => {
    set_preempt_model('full');
    const m = testMachine({ cpus: 2 });
    const a = m.process([0]);
    m.process([1]);
    const va = m.on(0, () => do_mmap(a.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => expect(cpu.write(va, 5)).toBe(true)); // CPU 0 caches va
    const oldTlb = m.cpus[0].tlb;
    const asid = m.cpus[0].asid;
    expect(oldTlb.countValid(asid)).toBe(1);
    preempt_next(1);
    migrate_next(1);
    m.on(0, (cpu) => cpu.sched_point()); // the task moves to CPU 1
    const phys0 = m.cpus[1]; // the object that now carries CPU 0
    expect(phys0.id).toBe(0);
    expect(phys0.tlb).toBe(oldTlb);
    expect(m.on(0, () => do_munmap(a.mm, va, 4096))).toBe(0); // on CPU 1
    // CPU 0 is lazy in a's mm: no IPI (should_flush_tlb skips it), the entry stays for now
    expect(oldTlb.countValid(asid)).toBe(1);
    // CPU 0 switches back to a's mm: the tlb_gen check flushes before any use
    m.on(0, (cpu) => context_switch(cpu, -1)); // the task leaves CPU 1 ...
    m.on(1, (cpu) => context_switch(cpu, a.tasks[0])); // ... and runs on CPU 0 again
    expect(oldTlb.countValid(asid)).toBe(0);
    expect(m.violations).toEqual([]);
  });

  it('Xen PV: a section preempted after arch_enter moves to the other CPU: the old CPU issues the queue and leaves lazy mode, the new one enters it at switch-in', () => {
    set_preempt_model('rt');
    const m = testMachine({ cpus: 2, arch: 'x86-xenpv' });
    m.process([0]);
    m.process([1]);
    const [o0, o1] = m.cpus;
    m.on(0, (cpu) => {
      cpu.preemptOff++; // no preemption at the enter's own point
      lazy_mmu_mode_enable();
      cpu.preemptOff--;
      expect(xen_cpu(cpu).xen_lazy_mode).toBe(XEN_LAZY_MMU);
      preempt_next(1);
      migrate_next(1);
      cpu.sched_point();
      expect(cpu.id).toBe(1);
      expect(xen_cpu(cpu).xen_lazy_mode).toBe(XEN_LAZY_MMU); // CPU 1, entered at switch-in (TIF_LAZY_MMU_UPDATES)
      expect(xen_cpu(o1).xen_lazy_mode).toBe(XEN_LAZY_NONE); // CPU 0 left at switch-out
      lazy_mmu_mode_disable();
      expect(xen_cpu(cpu).xen_lazy_mode).toBe(XEN_LAZY_NONE);
    });
    expect(o0.id).toBe(1);
    expect(m.violations).toEqual([]);
  });

  it('no migration in deterministic mode or with one CPU per host thread (no CPU on the thread to take the task)', () => {
    set_preempt_model('full');
    const m = testMachine({ cpus: 1 });
    m.process([0]);
    preempt_next(1);
    migrate_next(1);
    m.on(0, (cpu) => cpu.sched_point());
    expect(stat(m, 0, ST_PREEMPTIONS)).toBe(1);
    expect(stat(m, 0, ST_MIGRATIONS)).toBe(0);
  });
});

describe('a run with migrations replays exactly', () => {
  it('cow-vmsplice inline (one host thread), cow.reuse_by_mapcount, seed 2: the same migrations, the same violation, twice', async () => {
    const sc = await loadScenario('scenarios/cow-vmsplice.ts');
    const o = { threads: 1, seed: 2, knobs: ['cow.reuse_by_mapcount'], preempt: 'full' as const, hangTimeoutMs: 60000 };
    const a = await runScenario(sc, o);
    const b = await runScenario(sc, o);
    expect(a.stats.migrations).toBeGreaterThan(0);
    expect(a.violations.length).toBeGreaterThan(0);
    expect(b.stats).toEqual(a.stats);
    expect(b.violations.map((v) => v.message)).toEqual(a.violations.map((v) => v.message));
  }, 120000);
});
