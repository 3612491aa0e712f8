// The mm side of a context switch (kernel/sched/core.c context_switch):
// a user task switches the address space in, a kernel thread or the idle
// task borrows the previous one lazily (enter_lazy_tlb).

import type { Cpu } from '../hw/cpu.ts';
import { CC_CUR_TASK, ST_CTX_SWITCH } from '../hw/layout.ts';
import { EV } from '../hw/trace.ts';
import { sb_drain } from '../hw/store_buffer.ts';
import { register_context_switch } from '../hw/preempt.ts';
import { arch } from './pgtable.ts';
import { task_mm } from './mm.ts';

export function context_switch(cpu: Cpu, next: number): void {
  if (next === cpu.curTask) return;
  // __schedule(): rq_lock() then smp_mb__after_spinlock(): a full barrier before the switch
  if (cpu.sbN !== 0) sb_drain(cpu);
  const prevMm = cpu.loadedMm;
  const nextMm = next >= 0 ? task_mm(cpu.V, next) : -1;
  cpu.prevTask = cpu.curTask;
  cpu.curTask = next;
  Atomics.store(cpu.I, cpu.ctl + CC_CUR_TASK, next);
  cpu.stat(ST_CTX_SWITCH);
  cpu.local_irq_disable();
  if (nextMm < 0) arch.enter_lazy_tlb(cpu);
  else arch.switch_mm_irqs_off(cpu, prevMm, nextMm);
  cpu.local_irq_enable();
  if (prevMm !== nextMm) cpu.ring.log(EV.CTX_SWITCH, prevMm, nextMm);
}

register_context_switch(context_switch); // preemption inside kernel code (src/hw/preempt.ts)
