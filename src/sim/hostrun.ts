// One host thread's run loop: it carries one or more simulated CPUs, runs their
// tasks one operation at a time (switching CPUs at operation boundaries), and
// when its CPUs are done keeps servicing IPIs until every host is done. Used by
// the CPU worker (workers/cpu.ts) and by the inline mode on the main thread.

import { Host, Cpu, set_current, type Hooks } from '../hw/cpu.ts';
import { type Views, type Layout, makeViews, H_DONE, H_RUNNING, H_STOP, ST_OPS } from '../hw/layout.ts';
import { getArch } from '../arch/index.ts';
import { IPI_TYPES } from '../arch/arch.ts';
import { set_arch } from '../mm/pgtable.ts';
import { handle_mm_fault } from '../mm/memory.ts';
import { context_switch } from '../mm/mmu_context.ts';
import { setKnobs } from './knobs.ts';
import { makeViolationSink, makeDiscardHook, kickAll, ContentOracle, type ViolationRecord } from './oracles.ts';
import { TaskRunner, type TaskPlan } from './program.ts';

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
  tasks: TaskPlan[];
}

export interface HostResult {
  hostId: number;
  violations: ViolationRecord[];
  latencies: number[];
  syscallErrors: number;
  lastSyscallError: string;
  readsChecked: number;
  readsExcused: number;
}

/** Everything a thread needs to run kernel code on a machine (also used at boot and by tests). */
export function makeHost(V: Views, hostId: number, archName: string, violations: ViolationRecord[], stopOnViolation: boolean): Host {
  const arch = getArch(archName);
  set_arch(arch);
  const hooks: Hooks = {
    fault: handle_mm_fault,
    ipi: new Array(IPI_TYPES),
    violation: makeViolationSink(V, violations, stopOnViolation),
    discard: makeDiscardHook(V),
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
  const violations: ViolationRecord[] = [];
  const host = makeHost(V, plan.hostId, plan.arch, violations, plan.stopOnViolation);
  const cpus: Cpu[] = [];
  const oracles: ContentOracle[] = [];
  const tasks: TaskRunner[][] = [];
  for (const id of plan.cpus) {
    const c = new Cpu(host, id, plan.tlbEntries, plan.seed);
    c.delay = { p: plan.delay, maxSpins: plan.delaySpins };
    host.cpus.push(c);
    cpus.push(c);
    oracles.push(new ContentOracle(V, host, id));
    tasks.push(plan.tasks.filter((t) => t.cpu === id).map((t) => new TaskRunner(t)));
  }
  const n = cpus.length;
  const done = new Uint8Array(n);
  const ops = new Float64Array(n);
  const rr = new Int32Array(n);
  let left = n;
  const totalCpus = L.shape.cpus;
  const finish = (i: number): void => {
    done[i] = 1;
    left--;
    set_current(cpus[i]);
    context_switch(cpus[i], -1); // idle: lazy TLB
    if (Atomics.add(I, L.header + H_DONE, 1) + 1 === totalCpus) kickAll(V);
  };
  for (let i = 0; i < n; i++) if (tasks[i].length === 0) finish(i);
  const stop = L.header + H_STOP;
  let i = 0;
  while (left > 0 && Atomics.load(I, stop) === 0) {
    if (done[i]) {
      i = (i + 1) % n;
      continue;
    }
    const cpu = cpus[i];
    set_current(cpu);
    const ts = tasks[i];
    const t = ts[rr[i]++ % ts.length];
    context_switch(cpu, t.plan.id);
    const k = t.step(cpu, oracles[i]);
    ops[i] += k;
    I[cpu.st + ST_OPS] += k;
    if (ops[i] >= plan.opsPerCpu) finish(i);
    host.pollIpis();
    if (n > 1) i = (i + 1) % n;
  }
  // Leave the op loop, but keep answering IPIs until every host has left it:
  // another host may be waiting for our acknowledgement right now.
  for (let j = 0; j < n; j++) if (!done[j]) {
    set_current(cpus[j]);
    context_switch(cpus[j], -1);
  }
  if (Atomics.sub(I, L.header + H_RUNNING, 1) - 1 === 0) kickAll(V);
  const allOut = (): boolean => Atomics.load(I, L.header + H_RUNNING) <= 0;
  while (!allOut()) {
    host.pollIpis();
    host.block(-1, allOut);
  }
  const latencies: number[] = [];
  for (const c of cpus) for (let k = 0; k < c.nlat; k++) latencies.push(c.lat[k]);
  return {
    hostId: plan.hostId,
    violations,
    latencies,
    syscallErrors: tasks.flat().reduce((a, t) => a + t.syscallErrors, 0),
    lastSyscallError: tasks.flat().map((t) => t.lastError).filter(Boolean).pop() ?? '',
    readsChecked: oracles.reduce((a, o) => a + o.readsChecked, 0),
    readsExcused: oracles.reduce((a, o) => a + o.excused, 0),
  };
}
