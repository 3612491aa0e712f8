// Device interrupts (issue #11 item 2).
//
// Besides the TLB-flush IPIs (Cpu.handleIpis), a CPU takes device interrupts:
// at an instruction boundary of kernel code (Cpu.sched_point) with interrupts
// on, it enters hard-interrupt context and runs the registered handler, as the
// kernel's generic_handle_irq path does (arch/arm64/kernel/entry-common.c
// el1_interrupt -> irq_enter_rcu ... irq_exit_rcu; arch/x86/kernel/irq.c
// common_interrupt). In interrupt context in_interrupt() is true, so the
// generic lazy MMU layer is inactive there (include/linux/pgtable.h after
// Brodsky's series: lazy_mmu_mode_enable/disable bail out and
// is_lazy_mmu_mode_active() returns false; arm64 had the same since b81c688426a9
// "arm64/mm: Disable barrier batching in interrupt contexts"), the task cannot
// be preempted (src/hw/preempt.ts preemptible) and interrupts stay off until
// the handler returns (no nesting, as with the kernel's hard-irq handlers).
//
// When: with probability 1/irqOdds at each scheduling point of a CPU running a
// task with interrupts on, drawn from the CPU's own rng, so a deterministic run
// (whose scheduler fixes the order of every scheduling point) delivers the same
// interrupts at the same points and replays exactly. A scenario turns the
// source on with machine.irq (src/engine/scenario.ts); tests force the next
// one with irq_next(). The handler is registered by the kernel
// (src/mm/vmalloc.ts) to keep this floor free of mm imports.
//
// Interrupt entry serialises like the IPI entry: the store buffer drains.

import { type Cpu, current, set_current } from './cpu.ts';
import { ST_IRQS, ST_IRQ_IN_LAZY, taskWord, T_LAZY_ENABLE } from './layout.ts';
import { sb_drain } from './store_buffer.ts';
import { EV } from './trace.ts';

/** 0: no interrupt source; else an interrupt arrives at 1 in irqOdds scheduling points */
export let irqOdds = 0;
export function set_irq_odds(n: number): void {
  irqOdds = n > 0 ? Math.floor(n) : 0;
}

let handler: ((cpu: Cpu) => void) | null = null;
/** The device interrupt handler (src/mm/vmalloc.ts debug_pagealloc_irq). */
export function register_irq_handler(fn: (cpu: Cpu) => void): void {
  handler = fn;
}

let forced = 0;
/** Tests: the next `n` scheduling points of a CPU with interrupts on take an interrupt. */
export function irq_next(n = 1): void {
  forced = n;
}

/** Called from Cpu.sched_point when an interrupt source is on and interrupts are enabled. */
export function maybe_irq(cpu: Cpu): void {
  if (cpu.inIrq !== 0 || cpu.curTask < 0 || handler === null) return;
  if (forced > 0) forced--;
  else if (cpu.rng.u32() % irqOdds !== 0) return;
  do_IRQ(cpu);
}

/** Hard-interrupt entry, the handler, exit. */
export function do_IRQ(cpu: Cpu): void {
  if (handler === null) return;
  const prev = current;
  set_current(cpu);
  if (cpu.sbN !== 0) sb_drain(cpu);
  cpu.inIrq++;
  cpu.irqOff++;
  cpu.stat(ST_IRQS);
  if (cpu.curTask >= 0 && cpu.I[taskWord(cpu.V.L, cpu.curTask, T_LAZY_ENABLE)] > 0) cpu.stat(ST_IRQ_IN_LAZY);
  cpu.ring.log(EV.IRQ, cpu.curTask, 0);
  handler(cpu);
  cpu.ring.log(EV.IRQ_DONE, cpu.curTask, 0);
  cpu.irqOff--;
  cpu.inIrq--;
  set_current(prev);
}
