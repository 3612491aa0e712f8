// Issue #11: where a preempted task may move to another CPU, per-CPU state must not be carried
// across the move. Three places did (found by reading the code for values read before a
// preemption point and used after it, eighth session):
// - s390's lazy MMU leave gave preemption back before applying its cached entries, so a task in
//   an init_mm section could move mid-apply (src/arch/s390/lazy_mmu.ts leave_ipte_range);
// - the stale-TLB oracle matched the end of a page-table change to its start by CPU, so a task
//   that moved between the two never completed its promise, and the oracle stopped judging
//   that range for the life of the mm (src/oracles/stale_tlb.ts makePromiseHook);
// - the range of a lazy MMU section (what the strict contract checks a task's updates against)
//   moved with the CPU, not the task (src/hw/preempt.ts migrate_swap, cpu_state_save).
// And one report field (ninth session): the mmap_lock's owner word kept the CPU that took the
// lock, so a hang report named the wrong CPU once the writer had moved (src/hw/locks.ts down_write).
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { set_preempt_model, preempt_next, migrate_next, preemptible, cpu_state_save, cpu_state_load } from '../src/hw/preempt.ts';
import { statWord, promiseWord, PR_ENTRIES, ST_MIGRATIONS } from '../src/hw/layout.ts';
import { s390_state } from '../src/arch/s390/index.ts';
import { vmalloc, vfree } from '../src/mm/vmalloc.ts';
import { mmap_write_lock, mmap_write_unlock } from '../src/mm/mmap_lock.ts';
import { mmap_lock_state } from '../src/mm/mm.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';

/** Full preemption, two CPUs, a process on each; the one on CPU 0 is returned. */
function twoCpus(arch?: string): { m: ReturnType<typeof testMachine>; a: ReturnType<ReturnType<typeof testMachine>['process']> } {
  set_preempt_model('full');
  const m = testMachine({ cpus: 2, arch });
  const a = m.process([0]);
  m.process([1]);
  return { m, a };
}

describe('no per-CPU state crosses a migration', () => {
  it('s390: the leave of an init_mm lazy section applies its cached entries with preemption off (put_cpu_var at its end)', () => {
    const { m } = twoCpus('s390');
    const during: boolean[] = [];
    m.on(0, (cpu) => {
      // every scheduling point of the apply: a leave is under way when its batch is no longer
      // active but still holds a range of cached slots
      const orig = cpu.sched_point.bind(cpu);
      cpu.sched_point = () => {
        const b = s390_state(cpu).batch;
        if (!b.active && b.mm >= 0 && b.hi >= b.lo) during.push(preemptible(cpu));
        orig();
      };
      try {
        preempt_next(1_000);
        migrate_next(1_000);
        const addr = vmalloc(4); // vmap_pages_range: a range section on init_mm, no PTL
        expect(addr).toBeGreaterThan(0);
        vfree(addr);
      } finally {
        delete (cpu as { sched_point?: unknown }).sched_point;
      }
    });
    expect(during.length).toBeGreaterThan(0);
    expect(during.every((p) => !p)).toBe(true);
    expect(m.violations).toEqual([]);
  });

  it('a munmap whose task moves to the other CPU midway completes its stale-TLB promise', () => {
    const { m, a } = twoCpus();
    const va = m.on(0, () => do_mmap(a.mm, 0, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => {
      for (let p = 0; p < 16; p++) expect(cpu.write(va + p * 4096, p)).toBe(true);
    });
    const moves = (): number => m.V.I[statWord(m.V.L, 0, ST_MIGRATIONS)] + m.V.I[statWord(m.V.L, 1, ST_MIGRATIONS)];
    const before = moves();
    preempt_next(1_000); // every preemptible point of the munmap preempts, and moves the task
    migrate_next(1_000);
    expect(m.on(0, () => do_munmap(a.mm, va, 16 * 4096))).toBe(0);
    preempt_next(0);
    migrate_next(0);
    expect(moves() - before).toBeGreaterThan(1); // it moved, and more than once
    const inflight = [];
    for (let e = 0; e < PR_ENTRIES; e++) if (Atomics.load(m.V.I, promiseWord(m.V.L, a.mm, e)) === 1) inflight.push(e);
    expect(inflight).toEqual([]); // PR_INFLIGHT: begun and never done
    expect(m.violations).toEqual([]);
  });

  it('the range of a lazy MMU section stays with its task: within a thread and between threads', () => {
    const { m, a } = twoCpus();
    const range = { mm: a.mm, start: 0x10000, end: 0x20000, ptep: 1234, nptes: 16 };
    const [o0, o1] = m.cpus;
    m.on(0, (cpu) => {
      cpu.lazyRange = { ...range };
      preempt_next(1);
      migrate_next(1);
      cpu.sched_point(); // the task moves to CPU 1, inside its section
      expect(cpu.id).toBe(1);
      expect(cpu.lazyRange).toEqual(range);
      cpu.lazyRange = null;
    });
    expect(o1.id).toBe(0); // the other task now runs on CPU 0: no section of its own
    expect(o1.lazyRange).toBeNull();
    // between threads: the state that crosses does not carry it either
    o0.lazyRange = { ...range };
    const saved = cpu_state_save(o0);
    o1.lazyRange = null;
    cpu_state_load(o1, o0.id, saved, {});
    expect(o1.lazyRange).toBeNull();
    expect(m.violations).toEqual([]);
  });

  it('the mmap_lock names the task that holds it, and the CPU that task is on now (a hang report)', () => {
    const { m, a } = twoCpus();
    const held = m.on(0, (cpu) => {
      const task = cpu.curTask;
      mmap_write_lock(a.mm);
      preempt_next(1);
      migrate_next(1);
      cpu.sched_point(); // the writer moves to CPU 1 with the lock held (a sleeping lock may be held across it)
      expect(cpu.id).toBe(1);
      const st = mmap_lock_state(m.V, a.mm);
      mmap_write_unlock(a.mm);
      return { task, st };
    });
    expect(held.st.ownerTask).toBe(held.task);
    expect(held.st.ownerCpu).toBe(1); // before, the word kept the CPU that took the lock: 0
    expect(m.violations).toEqual([]);
  });
});
