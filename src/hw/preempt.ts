// Preemption inside kernel code (issue #11).
//
// A task running kernel code may be preempted wherever the kernel allows it:
// not with interrupts off, not in interrupt or softirq context, not under a
// spinlock (spin_lock() disables preemption, include/linux/spinlock_api_smp.h
// __raw_spin_lock) and not inside a section whose arch hook disabled preemption
// (powerpc hash arch_enter_lazy_mmu_mode(), commit b9ef323ea168; sparc64 the same
// since 2025). Under PREEMPT_RT (`--preempt rt`) spinlock_t is a sleeping lock
// (kernel/locking/spinlock_rt.c: rt_spin_lock() only disables migration), so a
// task holding the PTL, e.g. inside a lazy MMU section, can be preempted too.
//
// A preemption here is the CPU switching to another task and later back
// (kernel/sched/core.c preempt_schedule_irq / __schedule): the context switch
// out (to a kernel thread: lazy TLB, the arch's switch hooks, the store buffer
// drained), then the switch back in. Every per-CPU state a switch touches (the
// Xen PV lazy mode, cpu_tlbstate, store buffers) sees it.
//
// Migration: a preempted task may resume on another CPU, unless it disabled
// migration (PREEMPT_RT: holding a spinlock_t). The scheduler chooses it at the preemption (from the CPU's own rng, so a run replays exactly) when
// another CPU carried by the same host thread can take the task: the model
// swaps the two CPUs' tasks (kernel/sched/core.c migrate_swap(): both tasks
// change CPU; the other one was between operations, i.e. in user mode). See
// migrate_swap() below for what moves and what stays, and docs/concurrency.md
// for the execution modes where no such CPU exists.
//
// When: at a scheduling point (Cpu.sched_point) of a preemptible CPU, with
// probability 1/PREEMPT_ODDS drawn from the CPU's own rng, so deterministic
// runs replay exactly; tests force the next one with preempt_next().

import { type Cpu, set_current } from './cpu.ts';
import { ST_PREEMPTIONS, ST_PREEMPT_IN_LAZY, ST_MIGRATIONS, taskWord, T_LAZY_ENABLE, T_CPU } from './layout.ts';
import { lockdep_swap_cpus } from './lockdep.ts';

export type PreemptModel = 'none' | 'full' | 'rt';
export const PREEMPT_MODELS: readonly PreemptModel[] = ['none', 'full', 'rt'];
/** 0 none, 1 full (CONFIG_PREEMPT), 2 rt (CONFIG_PREEMPT_RT) */
export let preemptLevel = 0;
export function set_preempt_model(m: PreemptModel): void {
  preemptLevel = PREEMPT_MODELS.indexOf(m);
}
export const PREEMPT_ODDS = 256;

/** The context switch, registered by the kernel (src/mm/mmu_context.ts) to keep this floor free of mm imports. */
let switcher: ((cpu: Cpu, next: number) => void) | null = null;
export function register_context_switch(fn: (cpu: Cpu, next: number) => void): void {
  switcher = fn;
}

let forced = 0;
/** Tests: the next `n` preemptible scheduling points preempt. */
export function preempt_next(n = 1): void {
  forced = n;
}

/** preemptible(): preempt_count() == 0 && !irqs_disabled(), as the kernel has it under the model in force. */
export function preemptible(cpu: Cpu): boolean {
  if (cpu.curTask < 0 || cpu.irqOff !== 0 || cpu.inIrq !== 0 || cpu.bhOff !== 0 || cpu.preemptOff !== 0) return false;
  if (preemptLevel === 1 && cpu.spinDepth !== 0) return false; // a spinlock disables preemption (not under RT)
  return true;
}

/** Called from Cpu.sched_point when preemption is modelled. */
export function maybe_preempt(cpu: Cpu): void {
  if (!preemptible(cpu)) return;
  if (forced > 0) forced--;
  else if (cpu.rng.u32() % PREEMPT_ODDS !== 0) return;
  preempt_schedule(cpu);
}

/** Migrations: 1 in MIGRATE_ODDS preemptions resumes the task on another CPU when one can take it. */
export const MIGRATE_ODDS = 2;
let forcedMigrations = 0;
/** Tests: the next `n` preemptions migrate (when a CPU can take the task). */
export function migrate_next(n = 1): void {
  forcedMigrations = n;
}

/** Switch out to a kernel thread and back in: on this CPU, or (migration) on another one. */
export function preempt_schedule(cpu: Cpu): void {
  if (switcher === null) return;
  const task = cpu.curTask;
  cpu.stat(ST_PREEMPTIONS);
  if (cpu.I[taskWord(cpu.V.L, task, T_LAZY_ENABLE)] > 0) cpu.stat(ST_PREEMPT_IN_LAZY);
  cpu.preemptOff++; // __schedule runs with preemption off
  switcher(cpu, -1);
  const other = migration_target(cpu);
  if (other !== null) migrate_swap(cpu, other, task);
  switcher(cpu, task); // `cpu` is now the CPU the task resumes on
  cpu.preemptOff--;
}

/**
 * A CPU that can take the preempted task: carried by the same host thread (the only
 * place the task's kernel stack, a JavaScript stack, can continue), and between
 * operations (its own task in user mode or idle: not in an interrupt handler of
 * this thread's stack). None in deterministic mode or with a thread per CPU.
 */
function migration_target(cpu: Cpu): Cpu | null {
  const cs = cpu.host.cpus;
  if (cs.length < 2 || cpu.host.sched !== null) return null;
  // PREEMPT_RT: a task holding a spinlock_t (an rt_mutex) is preemptible but pinned to its
  // CPU: rt_spin_lock() calls migrate_disable() (kernel/locking/spinlock_rt.c)
  if (cpu.spinDepth !== 0) return null;
  if (forcedMigrations > 0) forcedMigrations--;
  else if (cpu.rng.u32() % MIGRATE_ODDS !== 0) return null;
  const start = cpu.rng.u32() % cs.length;
  for (let k = 0; k < cs.length; k++) {
    const o = cs[(start + k) % cs.length];
    if (o === cpu || o.inIrq !== 0 || o.irqOff !== 0 || o.bhOff !== 0 || o.preemptOff !== 0 || o.spinDepth !== 0) continue;
    return o;
  }
  return null;
}

type MutableCpu = { -readonly [K in keyof Cpu]: Cpu[K] };

/**
 * The preempted task `ta` of `a` (already switched out) and the task of `b` trade CPUs: from
 * here the object `a` (the stack of the preempted task) runs on b's CPU, and the object
 * `b` (whose task was in user mode) on a's. What belongs to a CPU trades places: its id
 * and per-CPU words (cpu_tlbstate, IPI mailbox, statistics, event ring), its TLB and the
 * per-ASID generations it has caught up with, the arch's per-CPU state (lazy MMU
 * batches, Xen's lazy mode, s390's ipte_range), the lazy range in force on it and its
 * store buffer (empty: the switch drained it). Neither CPU has preemption disabled (a
 * is preemptible, b is chosen so), so no arch lazy enter's preempt_disable() is in
 * force on either. What belongs to a task stays with the object: its current task,
 * the locks it holds (lockdep's held locks trade places with the ids, to stay with the
 * task), its preempt and irq counts (both zero here), its rng.
 */
export function migrate_swap(a: Cpu, b: Cpu, ta: number): void {
  const A = a as MutableCpu;
  const B = b as MutableCpu;
  const tb = b.curTask;
  // b's task leaves b's CPU first (a context switch there, to idle)
  if (tb >= 0 && switcher !== null) {
    set_current(b);
    switcher(b, -1);
    set_current(a);
  }
  lockdep_swap_cpus(a.id, b.id);
  const swap = <K extends keyof MutableCpu>(k: K): void => {
    const t = A[k];
    A[k] = B[k];
    B[k] = t;
  };
  swap('id');
  swap('ctl');
  swap('st');
  swap('ring');
  swap('tlb');
  swap('ctxGen');
  swap('ctxId');
  swap('arch');
  swap('lazyRange');
  swap('loadedMm');
  swap('asid');
  swap('prevTask');
  swap('sbIdx');
  swap('sbVal');
  swap('sbN');
  swap('lat');
  swap('nlat');
  const L = a.V.L;
  if (ta >= 0) a.I[taskWord(L, ta, T_CPU)] = a.id;
  if (tb >= 0) a.I[taskWord(L, tb, T_CPU)] = b.id;
  a.stat(ST_MIGRATIONS);
}

/**
 * The preempt_disable() of an arch whose lazy MMU enter disables preemption (powerpc hash
 * b9ef323ea168 "powerpc/64s: Disable preemption in hash lazy mmu mode"; sparc64 the same,
 * 2025), and the preempt_enable() of its leave. Idempotent per CPU, so an unbalanced
 * enter/leave (a knob) cannot leave preemption off for good.
 */
const lazyOff = new Set<Cpu>();
export function lazy_mmu_preempt_disable(cpu: Cpu): void {
  if (lazyOff.has(cpu)) return;
  lazyOff.add(cpu);
  cpu.preemptOff++;
}
export function lazy_mmu_preempt_enable(cpu: Cpu): void {
  if (!lazyOff.delete(cpu)) return;
  cpu.preemptOff--;
}
