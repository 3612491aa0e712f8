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

import * as v8 from 'node:v8';
import { type Cpu, set_current } from './cpu.ts';
import { EventRing, EV } from './trace.ts';
import { ST_PREEMPTIONS, ST_PREEMPT_IN_LAZY, ST_MIGRATIONS, ST_THREAD_MIGRATIONS, taskWord, T_LAZY_ENABLE, T_CPU, cpuCtl, statWord } from './layout.ts';
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
  const from = cpu.id;
  if (cpu.host.sched === null) {
    const m = cpu.host.migrator;
    const own = cpu.host.cpus.length;
    // with migration between threads (the default), a CPU of another thread as often as there are such CPUs: a thread
    // carrying 128 of 256 CPUs sends about half its moves to the other thread's CPUs
    if (m !== null && (own === 1 || cpu.rng.u32() % (cpu.V.L.shape.cpus - 1) >= own - 1)) {
      if (may_migrate(cpu) && m.migrate(cpu, task)) {
        // free mode: the two threads traded CPUs (src/engine/migrate.ts)
        cpu.I[taskWord(cpu.V.L, task, T_CPU)] = cpu.id;
        cpu.stat(ST_MIGRATIONS);
        cpu.stat(ST_THREAD_MIGRATIONS);
      }
    } else if (own > 1) {
      const other = migration_target(cpu);
      if (other !== null) migrate_swap(cpu, other, task);
    }
  } else if (cpu.host.sched.migrate !== undefined && may_migrate(cpu) && cpu.host.sched.migrate(cpu, task)) {
    // deterministic mode: the scheduler moved the task to a CPU another thread carried (src/engine/det.ts)
    cpu.I[taskWord(cpu.V.L, task, T_CPU)] = cpu.id;
    cpu.stat(ST_MIGRATIONS);
    cpu.stat(ST_THREAD_MIGRATIONS);
  }
  if (cpu.id !== from) cpu.ring.log(EV.MIGRATE, task, from);
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
  if (cs.length < 2) return null;
  if (!may_migrate(cpu)) return null;
  const start = cpu.rng.u32() % cs.length;
  for (let k = 0; k < cs.length; k++) {
    const o = cs[(start + k) % cs.length];
    if (o !== cpu && can_trade_task(o)) return o;
  }
  return null;
}

/**
 * A CPU of this thread, between operations, whose task (or idle) may trade places with a
 * preempted one: not in an interrupt handler of this thread's stack, with interrupts,
 * softirqs and preemption on and no spinlock held (migration_target; src/engine/migrate.ts
 * FreeMigrator.poll at an operation boundary).
 */
export function can_trade_task(o: Cpu): boolean {
  return o.inIrq === 0 && o.irqOff === 0 && o.bhOff === 0 && o.preemptOff === 0 && o.spinDepth === 0;
}

/** This preemption may move the task (1 in MIGRATE_ODDS, or forced by a test) and the task has not disabled migration. */
function may_migrate(cpu: Cpu): boolean {
  // PREEMPT_RT: a task holding a spinlock_t (an rt_mutex) is preemptible but pinned to its
  // CPU: rt_spin_lock() calls migrate_disable() (kernel/locking/spinlock_rt.c)
  if (cpu.spinDepth !== 0) return false;
  if (forcedMigrations > 0) {
    forcedMigrations--;
    return true;
  }
  return cpu.rng.u32() % MIGRATE_ODDS === 0;
}

/** The context switch to idle on `cpu`, and back to `task` (the partner's half of a cross-thread migration, src/engine/det.ts). */
export function switch_out(cpu: Cpu): void {
  if (switcher !== null && cpu.curTask >= 0) switcher(cpu, -1);
}
export function switch_in(cpu: Cpu, task: number): void {
  if (switcher !== null) switcher(cpu, task);
}

type MutableCpu = { -readonly [K in keyof Cpu]: Cpu[K] };

/**
 * The preempted task `ta` of `a` (already switched out) and the task of `b` trade CPUs: from
 * here the object `a` (the stack of the preempted task) runs on b's CPU, and the object
 * `b` (whose task was in user mode) on a's. What belongs to a CPU trades places: its id
 * and per-CPU words (cpu_tlbstate, IPI mailbox, statistics, event ring), its TLB and the
 * per-ASID generations it has caught up with, the arch's per-CPU state (lazy MMU
 * batches, Xen's lazy mode, s390's ipte_range) and its store buffer (empty: the switch
 * drained it). Neither CPU has preemption disabled (a is preemptible, b is chosen so),
 * so no arch lazy enter's preempt_disable() is in force on either. What belongs to a
 * task stays with the object: its current task, the locks it holds (lockdep's held
 * locks trade places with the ids, to stay with the task), its preempt and irq counts
 * (both zero here), its rng, and the range of its lazy MMU section (the strict
 * contract's lazyRange: until the eighth session it moved with the CPU, so a task that
 * later resumed on that CPU was checked against another task's range).
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
  // not lazyRange: the range of the section in force belongs to the task, as its lazy MMU
  // enable count does (task words): the strict contract checks the task's own updates against it
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
  // b's task (or idle, -1) now runs on a's old CPU: say so on that CPU's track, so a trace
  // shows where the preempted task left it (src/report/trace_export.ts closes its open spans
  // there). Free mode only (no deterministic run calls this), so no schedule changes.
  if (tb >= 0) b.stat(ST_MIGRATIONS);
  b.ring.log(EV.MIGRATE, tb, a.id);
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

// ---- migration between host threads (deterministic mode) ---------------------------
//
// A task's kernel stack is a JavaScript stack: it cannot leave its thread. When the task
// moves to a CPU another thread carries, the two threads trade CPUs instead, as
// migrate_swap() above does within one thread: each thread's Cpu object (its task's
// stack) takes the other CPU's identity. What is thread-local and belongs to the CPU
// (the TLB, per-ASID generations, arch state, store buffer, event ring position) goes
// through shared memory as a structured clone; what lives in shared
// memory (per-CPU words, mailbox, statistics, events) follows the id.

/** One CPU's thread-local state, serialized (the sending half of a cross-thread migration). */
export function cpu_state_save(c: Cpu): Uint8Array {
  c.publishStats(); // the access path's private counters belong to the CPU being left
  const t = c.tlb;
  const arch = c.arch as object | undefined;
  return v8.serialize({
    tlb: { vpn: t.vpn, asid: t.asid, pfn: t.pfn, flags: t.flags, gen: t.gen, va: t.va, stamp: t.stamp, chk: t.chk },
    ctxGen: c.ctxGen, ctxId: c.ctxId,
    arch: arch === undefined ? null : { cls: arch.constructor.name, data: arch },
    loadedMm: c.loadedMm, asid: c.asid, prevTask: c.prevTask, // not lazyRange: the task's (migrate_swap)
    sbIdx: c.sbIdx, sbVal: c.sbVal, sbN: c.sbN, ringPos: c.ring.pos,
  });
}

/** Copy a structured clone into an object of the class it was cloned from (typed arrays and Maps in place). */
function assign_into(target: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const k of Object.keys(src)) {
    const v = src[k];
    const cur = target[k];
    if (ArrayBuffer.isView(cur) && ArrayBuffer.isView(v)) (cur as unknown as Int32Array).set(v as unknown as Int32Array);
    else if (cur instanceof Map && v instanceof Map) {
      cur.clear();
      for (const [x, y] of v) cur.set(x, y);
    } else if (cur !== null && typeof cur === 'object' && !Array.isArray(cur) && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      assign_into(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
}

/**
 * The receiving half: `c` becomes CPU `id` with the state `bytes` saved by the thread that
 * carried it. `classes`: the arch modules' per-CPU state classes by name (src/engine/det.ts).
 */
export function cpu_state_load(c: Cpu, id: number, bytes: Uint8Array, classes: Record<string, new () => object>): void {
  const s = v8.deserialize(bytes) as {
    tlb: Record<string, ArrayLike<number>>; ctxGen: Int32Array; ctxId: Int32Array;
    arch: { cls: string; data: Record<string, unknown> } | null;
    loadedMm: number; asid: number; prevTask: number;
    sbIdx: Int32Array; sbVal: Int32Array; sbN: number; ringPos: number;
  };
  const C = c as MutableCpu;
  const L = c.V.L;
  C.id = id;
  C.ctl = cpuCtl(L, id, 0);
  c.host.ipiScan = true; // CPU id's words may hold requests its last thread had not taken
  C.st = statWord(L, id, 0);
  const ring = new EventRing(c.V, id);
  ring.pos = s.ringPos;
  ring.clock = c.ring.clock;
  C.ring = ring;
  const t = c.tlb as unknown as Record<string, { set(a: ArrayLike<number>): void }>;
  for (const k of Object.keys(s.tlb)) t[k].set(s.tlb[k]);
  c.ctxGen.set(s.ctxGen);
  c.ctxId.set(s.ctxId);
  if (s.arch === null) C.arch = undefined;
  else {
    const K = classes[s.arch.cls];
    if (K === undefined) throw new Error(`migration: no class ${s.arch.cls} for the arch's per-CPU state (src/engine/det.ts ARCH_CPU_STATE)`);
    const o = new K();
    assign_into(o as Record<string, unknown>, s.arch.data);
    C.arch = o;
  }
  C.loadedMm = s.loadedMm;
  C.asid = s.asid;
  C.prevTask = s.prevTask;
  c.sbIdx.set(s.sbIdx);
  c.sbVal.set(s.sbVal);
  C.sbN = s.sbN;
}
