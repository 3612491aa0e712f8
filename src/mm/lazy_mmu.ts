// The generic lazy MMU mode API (include/linux/pgtable.h after Kevin Brodsky's
// nesting series), per spec 1.2: per-task enable and pause counts; only the
// outermost enable enters the arch mode; a nested disable flushes; the outermost
// disable leaves; everything is a no-op in interrupt context; while paused,
// enable/disable only keep balance and do nothing.

import { current } from '../hw/cpu.ts';
import { taskWord, T_LAZY_ENABLE, T_LAZY_PAUSE } from '../hw/layout.ts';
import { arch } from './pgtable.ts';
import { EV } from '../hw/trace.ts';

export const LAZY_MMU_MAX = 255;

function enter(): void {
  current.ring.log(EV.LAZY_ENTER, current.curTask, 0);
  arch.arch_enter_lazy_mmu_mode();
}
function leave(): void {
  arch.arch_leave_lazy_mmu_mode();
  current.ring.log(EV.LAZY_LEAVE, current.curTask, 0);
}

function counts(): { en: number; pa: number } | null {
  const cpu = current;
  if (cpu.in_interrupt() || cpu.curTask < 0) return null;
  return { en: taskWord(cpu.V.L, cpu.curTask, T_LAZY_ENABLE), pa: taskWord(cpu.V.L, cpu.curTask, T_LAZY_PAUSE) };
}

function warn(msg: string): void {
  const cpu = current;
  cpu.host.hooks.violation({ kind: 'lazy-mmu-contract', cpu: cpu.id, message: `cpu ${cpu.id} task ${cpu.curTask}: ${msg}` });
}

export function lazy_mmu_mode_enable(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  if (I[c.pa] > 0) return;
  const en = I[c.en];
  if (en >= LAZY_MMU_MAX) warn('lazy_mmu_mode_enable: enable_count overflow');
  I[c.en] = en + 1;
  if (en === 0) enter();
}

export function lazy_mmu_mode_disable(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  if (I[c.pa] > 0) return;
  const en = I[c.en];
  if (en === 0) {
    warn('lazy_mmu_mode_disable without a matching enable');
    return;
  }
  I[c.en] = en - 1;
  if (en - 1 === 0) leave();
  else arch.arch_flush_lazy_mmu_mode();
}

export function lazy_mmu_mode_pause(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  const pa = I[c.pa];
  if (pa >= LAZY_MMU_MAX) warn('lazy_mmu_mode_pause: pause_count overflow');
  I[c.pa] = pa + 1;
  if (pa === 0 && I[c.en] > 0) leave();
}

export function lazy_mmu_mode_resume(): void {
  const c = counts();
  if (!c) return;
  const I = current.I;
  const pa = I[c.pa];
  if (pa === 0) {
    warn('lazy_mmu_mode_resume without a matching pause');
    return;
  }
  I[c.pa] = pa - 1;
  if (pa - 1 === 0 && I[c.en] > 0) enter();
}

export function is_lazy_mmu_mode_active(): boolean {
  const c = counts();
  if (!c) return false;
  return current.I[c.en] > 0 && current.I[c.pa] === 0;
}
