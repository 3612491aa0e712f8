// One host thread's run loop: it carries one or more simulated CPUs, runs their
// tasks one operation at a time (switching CPUs at operation boundaries), and
// when its CPUs are done keeps servicing IPIs until every host is done. Used by
// the CPU worker (workers/cpu.ts) and by the inline mode on the main thread.

import { Host, Cpu, set_current, type Hooks } from '../hw/cpu.ts';
import { type Layout, type Views, makeViews, H_DONE, H_RUNNING, H_STOP, H_STARTED, ST_OPS, DET_STEP } from '../hw/layout.ts';
import { getArch } from '../arch/index.ts';
import { IPI_TYPES } from '../arch/arch.ts';
import { set_arch } from '../mm/pgtable.ts';
import { do_user_addr_fault } from '../mm/memory.ts';
import { context_switch } from '../mm/mmu_context.ts';
import { FreeMigrator } from './migrate.ts';
import { task_free } from '../mm/mm.ts';
import { setKnobs } from '../inject/knobs.ts';
import { makePromiseHook, makeStaleUseCheck, CHANGE } from '../oracles/stale_tlb.ts';
import { makeViolationSink, makeDiscardHook, kickAll, ContentOracle, type ViolationRecord } from '../oracles/oracles.ts';
import { makeForkHook, makeCopyPageHook } from '../oracles/cow.ts';
import { TaskRunner, type TaskPlan } from './program.ts';
import { EV } from '../hw/trace.ts';
import { DetScheduler } from './det.ts';
import { set_lazy_contract, set_lazy_series, LAZY_SERIES_LATEST, type LazyContract, type LazySeries } from '../mm/lazy_mmu.ts';
import { set_preempt_model, type PreemptModel } from '../hw/preempt.ts';
import { set_store_order } from '../hw/store_buffer.ts';
import { set_irq_odds } from '../hw/irq.ts';
import { do_kern_addr_fault, set_debug_pagealloc } from '../mm/vmalloc.ts';

export interface HostPlan {
  sab: SharedArrayBuffer;
  layout: Layout;
  hostId: number;
  cpus: number[];
  arch: string;
  knobs: string[];
  tlbEntries: number;
  seed: number;
  delay: number;
  delaySpins: number;
  opsPerCpu: number; // Infinity-like large number when a duration is set
  stopOnViolation: boolean;
  /** when tracing: event timestamps are microseconds since this absolute time (ms) */
  traceEpochMs?: number;
  /** deterministic mode: one CPU per host, a token decides who runs (src/engine/det.ts) */
  deterministic?: boolean;
  lazyContract?: LazyContract;
  /** deterministic mode: hot preemption probability (src/engine/det.ts) */
  hotPreempt?: number;
  /** deterministic mode: a CPU past its budget keeps going, up to this many times it, while another CPU has not finished */
  overtime?: number;
  lazySeries?: LazySeries;
  /** preemption inside kernel code (src/hw/preempt.ts) */
  preempt?: PreemptModel;
  /** device interrupts (src/hw/irq.ts): 1 in irq scheduling points, 0 off; on means DEBUG_PAGEALLOC too (src/mm/vmalloc.ts) */
  irq?: number;
  /** migration between threads (src/engine/migrate.ts, det.ts): off unless true */
  migrateThreads?: boolean;
  tasks: TaskPlan[];
}

/** What a run counts besides its statistics words: per host thread, and summed for the whole run. */
export interface RunCounts {
  syscallErrors: number;
  lastSyscallError: string;
  /** content oracle: reads checked, and those excused by a concurrent unmap */
  readsChecked: number;
  readsExcused: number;
  /** COW oracle (scenarios with fork, pins or /proc/pid/mem writes): reads whose provenance was checked, and those it could not judge */
  cowChecked: number;
  cowUnjudged: number;
}

export interface HostResult extends RunCounts {
  hostId: number;
  violations: ViolationRecord[];
  latencies: number[];
}

/** Everything a thread needs to run kernel code on a machine (also used at boot and by tests). */
/** Every discard (munmap, mremap, madvise, truncation, exit) is also a change with a promise point for the stale-TLB oracle. */
function withPromise(discard: Hooks['discard'], promise: NonNullable<Hooks['promise']>): Hooks['discard'] {
  return (mm, start, end, done) => {
    discard(mm, start, end, done);
    promise(mm, start, end, done, CHANGE.unmap);
  };
}

export function makeHost(V: Views, hostId: number, archName: string, violations: ViolationRecord[], stopOnViolation: boolean): Host {
  const arch = getArch(archName);
  set_arch(arch);
  set_store_order(arch.store_order ?? 'tso'); // issue #11: arm64 may reorder stores with stores
  const promise = makePromiseHook(V);
  const hooks: Hooks = {
    fault: do_user_addr_fault,
    kernel_fault: do_kern_addr_fault,
    ipi: new Array(IPI_TYPES),
    violation: makeViolationSink(V, violations, stopOnViolation),
    discard: withPromise(makeDiscardHook(V), promise),
    promise,
    stale_use: makeStaleUseCheck(V),
    forked: makeForkHook(V),
    copy_page: makeCopyPageHook(V),
  };
  const host = new Host(V, hostId, hooks);
  arch.initHost(host);
  return host;
}

export function runHost(plan: HostPlan): HostResult {
  const V = makeViews(plan.sab, plan.layout);
  const I = V.I;
  const L = V.L;
  setKnobs(plan.knobs);
  set_lazy_contract(plan.lazyContract ?? 'hint');
  set_lazy_series(plan.lazySeries ?? LAZY_SERIES_LATEST);
  set_preempt_model(plan.preempt ?? 'none');
  set_irq_odds(plan.irq ?? 0);
  set_debug_pagealloc((plan.irq ?? 0) > 0);
  const violations: ViolationRecord[] = [];
  const host = makeHost(V, plan.hostId, plan.arch, violations, plan.stopOnViolation);
  const cpus: Cpu[] = [];
  const oracles: ContentOracle[] = [];
  const tasks: TaskRunner[][] = [];
  for (const id of plan.cpus) {
    const c = new Cpu(host, id, plan.tlbEntries, plan.seed);
    c.delay = { p: plan.delay, maxSpins: plan.delaySpins };
    c.logAccesses = plan.traceEpochMs !== undefined; // a traced run keeps every read and write in the ring
    if (plan.deterministic) {
      const stepIdx = L.det + DET_STEP;
      c.ring.clock = () => I[stepIdx]; // the deterministic clock: scheduling points so far
      c.now = c.ring.clock;
    } else if (plan.traceEpochMs !== undefined) {
      const epoch = plan.traceEpochMs - performance.timeOrigin;
      c.ring.clock = () => (performance.now() - epoch) * 1000;
    }
    host.cpus.push(c);
    cpus.push(c);
    oracles.push(new ContentOracle(V, host, id));
    const list: TaskRunner[] = [];
    const add = (p: TaskPlan): void => {
      const t = new TaskRunner(p);
      t.spawn = add; // a forked child runs on its parent's CPU
      list.push(t);
    };
    plan.tasks.filter((t) => t.cpu === id).forEach(add);
    tasks.push(list);
  }
  const n = cpus.length;
  const reached = new Uint8Array(n); // reached its op budget
  const ops = new Float64Array(n);
  const rr = new Int32Array(n);
  const totalCpus = L.shape.cpus;
  const doneWord = L.header + H_DONE;
  // --ops N is a minimum: a CPU that has done N keeps running its tasks until
  // every CPU has, so that the run stays concurrent to its end (otherwise fast
  // CPUs would go idle while slow ones still unmap, and nothing would race).
  const reach = (i: number): void => {
    reached[i] = 1;
    if (Atomics.add(I, doneWord, 1) + 1 === totalCpus) kickAll(V);
  };
  const idle: number[] = [];
  for (let i = 0; i < n; i++) if (tasks[i].length === 0) {
    reach(i);
    idle.push(i);
  }
  const active = [...Array(n).keys()].filter((i) => tasks[i].length > 0);
  if (plan.deterministic) return runDeterministic(plan, V, host, cpus[0], tasks[0], oracles[0], violations);
  // two threads or more, unless --no-migrate-threads: a preempted task may move to a CPU
  // another thread carries (src/engine/migrate.ts; docs/concurrency.md); hosted, it may also
  // move among its own thread's CPUs (preempt.ts)
  if (L.shape.hosts > 1 && L.migrate >= 0 && plan.migrateThreads === true) host.migrator = new FreeMigrator(V, host);
  // Start barrier: no CPU runs before every host has booted, so that the
  // first shootdowns already see every CPU (worker start-up takes seconds at 64+).
  if (Atomics.add(I, L.header + H_STARTED, 1) + 1 === L.shape.hosts) kickAll(V);
  const allStarted = (): boolean => Atomics.load(I, L.header + H_STARTED) >= L.shape.hosts || Atomics.load(I, L.header + H_STOP) !== 0;
  while (!allStarted()) host.block(-1, allStarted);
  const stop = L.header + H_STOP;
  let k = 0;
  while (active.length > 0 && Atomics.load(I, stop) === 0 && Atomics.load(I, doneWord) < totalCpus) {
    const i = active[k];
    const cpu = cpus[i];
    set_current(cpu);
    const ts = tasks[i];
    // round robin over a list that forks append to and exits remove from: a
    // cursor, not a counter (rr % length would keep picking a forker whose every
    // step grows the list, and starve its children)
    const idx = rr[i] % ts.length;
    const t = ts[idx];
    rr[i] = idx + 1;
    context_switch(cpu, t.plan.id);
    cpu.ring.log(EV.OP, t.plan.id, ops[i]);
    const c = t.step(cpu, oracles[i]);
    ops[i] += c;
    I[cpu.st + ST_OPS] += c;
    cpu.publishStats();
    if (t.exited) {
      reap(cpu, ts, t);
      rr[i] = idx; // the next task slid into its place
    }
    if (!reached[i] && ops[i] >= plan.opsPerCpu) reach(i);
    host.pollIpis();
    if (host.migrator !== null) host.migrator.poll(cpu, true); // user mode: a preempted task of another thread's CPU may move to one of ours
    if (++k === active.length) k = 0;
  }
  // Leave the op loop, but keep answering IPIs until every host has left it:
  // another host may be waiting for our acknowledgement right now.
  for (let j = 0; j < n; j++) {
    set_current(cpus[j]);
    for (const t of tasks[j]) t.release(); // pins a task still holds
    context_switch(cpus[j], -1); // idle: lazy TLB
  }
  if (Atomics.sub(I, L.header + H_RUNNING, 1) - 1 === 0) kickAll(V);
  const allOut = (): boolean => Atomics.load(I, L.header + H_RUNNING) <= 0;
  while (!allOut()) {
    host.pollIpis();
    host.block(-1, allOut);
  }
  return result(plan, cpus, tasks.flat(), oracles, violations);
}

function result(plan: HostPlan, cpus: Cpu[], tasks: TaskRunner[], oracles: ContentOracle[], violations: ViolationRecord[]): HostResult {
  for (const c of cpus) c.publishStats(); // what the last operations and the IPI service since counted
  const latencies: number[] = [];
  for (const c of cpus) for (let k = 0; k < c.nlat; k++) latencies.push(c.lat[k]);
  return {
    hostId: plan.hostId,
    violations,
    latencies,
    syscallErrors: tasks.reduce((a, t) => a + t.syscallErrors, 0),
    lastSyscallError: tasks.map((t) => t.lastError).filter(Boolean).pop() ?? '',
    readsChecked: oracles.reduce((a, o) => a + o.readsChecked, 0),
    readsExcused: oracles.reduce((a, o) => a + o.excused, 0),
    cowChecked: oracles.reduce((a, o) => a + o.cow.checked, 0),
    cowUnjudged: oracles.reduce((a, o) => a + o.cow.unjudged, 0),
  };
}

/**
 * Deterministic mode: this host carries exactly one CPU, which runs only while
 * it holds the token. By default it stops at exactly its op budget, then only
 * takes IPIs until every CPU is done. With plan.overtime k > 1 it keeps running
 * its program past the budget while another CPU has not reached its own, as
 * free mode does (a CPU of cheap operations would otherwise go idle early, and
 * the slow CPU's later operations would race with nobody: fork-vs-writers'
 * writers finished their 2,000 accesses before the forker's fourth fork), but
 * never beyond k times the budget: the CPU holding the token may be the only
 * one PCT lets run, so "until all are done" alone could never end. Only the
 * token holder reads or writes the count, so the run stays a function of the seed.
 */
function runDeterministic(plan: HostPlan, V: Views, host: Host, cpu: Cpu, tasks: TaskRunner[], oracle: ContentOracle, violations: ViolationRecord[]): HostResult {
  const I = V.I;
  const L = V.L;
  const sched = new DetScheduler(V, host, plan.hotPreempt ?? 0, plan.seed, plan.migrateThreads === true);
  host.sched = sched;
  set_current(cpu);
  Atomics.add(I, L.header + H_STARTED, 1);
  sched.start(cpu);
  const stop = L.header + H_STOP;
  const doneWord = L.header + H_DONE; // CPUs that reached their budget (or have nothing left to run)
  const totalCpus = L.shape.cpus;
  const cap = plan.opsPerCpu * Math.max(1, plan.overtime ?? 1);
  let reached = false;
  const reach = (): void => {
    if (!reached) Atomics.add(I, doneWord, 1);
    reached = true;
  };
  let ops = 0;
  let k = 0;
  while (tasks.length > 0 && Atomics.load(I, stop) === 0) {
    if (ops >= plan.opsPerCpu) {
      reach();
      if (ops >= cap || Atomics.load(I, doneWord) >= totalCpus) break;
    }
    const t = tasks[k];
    context_switch(cpu, t.plan.id);
    cpu.ring.log(EV.OP, t.plan.id, ops);
    const c = t.step(cpu, oracle);
    ops += c;
    I[cpu.st + ST_OPS] += c;
    cpu.publishStats();
    if (t.exited) reap(cpu, tasks, t);
    else k++;
    cpu.sched_point(); // the operation boundary is a scheduling point too
    if (k >= tasks.length) k = 0;
  }
  for (const t of tasks) t.release(); // pins a task still holds
  context_switch(cpu, -1);
  reach();
  sched.done(cpu);
  return result(plan, [cpu], tasks, [oracle], violations);
}

/** An exited task leaves its CPU's run list; the CPU switches away from its dead mm. */
function reap(cpu: Cpu, list: TaskRunner[], t: TaskRunner): void {
  list.splice(list.indexOf(t), 1);
  context_switch(cpu, -1);
  task_free(cpu.V, t.plan.id); // no CPU runs it now: the slot may be reused
}

/** The control-plane API a CPU worker thread (workers/cpu.ts) exposes through Comlink. */
export interface CpuWorkerApi {
  run(plan: HostPlan): HostResult;
}
