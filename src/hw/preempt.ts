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
// Xen PV lazy mode, cpu_tlbstate, store buffers) sees it. The task resumes on
// the same CPU: migration is not modelled (see docs/concurrency.md).
//
// When: at a scheduling point (Cpu.sched_point) of a preemptible CPU, with
// probability 1/PREEMPT_ODDS drawn from the CPU's own rng, so deterministic
// runs replay exactly; tests force the next one with preempt_next().

import type { Cpu } from './cpu.ts';
import { ST_PREEMPTIONS, ST_PREEMPT_IN_LAZY, taskWord, T_LAZY_ENABLE } from './layout.ts';

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

/** Switch out to a kernel thread and back in (the preempted task resumes where it was). */
export function preempt_schedule(cpu: Cpu): void {
  if (switcher === null) return;
  const task = cpu.curTask;
  cpu.stat(ST_PREEMPTIONS);
  if (cpu.I[taskWord(cpu.V.L, task, T_LAZY_ENABLE)] > 0) cpu.stat(ST_PREEMPT_IN_LAZY);
  cpu.preemptOff++; // __schedule runs with preemption off
  switcher(cpu, -1);
  switcher(cpu, task);
  cpu.preemptOff--;
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
