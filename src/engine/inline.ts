// Building a machine's shared memory, and an inline machine (every CPU on the
// calling thread) for unit tests and benchmarks, where kernel paths are driven
// step by step and IPIs between its CPUs are serviced by the sender's wait loop.

import {
  type Views, type MachineShape, computeLayout, makeViews, cpuCtl, hostWord, cpuHostWord, CC_LOADED_MM, HB_WAITING_ON,
  H_MAGIC, H_RUNNING, MAGIC,
} from '../hw/layout.ts';
import { Cpu, set_current, type Host } from '../hw/cpu.ts';
import { init_page_alloc } from '../mm/page_alloc.ts';
import { mm_alloc, task_create } from '../mm/mm.ts';
import { context_switch } from '../mm/mmu_context.ts';
import { makeHost } from './hostrun.ts';
import { setKnobs } from '../inject/knobs.ts';
import type { ViolationRecord } from '../oracles/oracles.ts';

/** Lay out and initialise a machine's memory: CPUs assigned to hosts, frames on the free lists. */
export function createMachine(shape: MachineShape, hostOf: (cpu: number) => number): Views {
  const L = computeLayout(shape);
  const V = makeViews(new SharedArrayBuffer(L.bytes), L);
  const I = V.I;
  I[L.header + H_MAGIC] = MAGIC;
  I[L.header + H_RUNNING] = shape.hosts;
  for (let c = 0; c < shape.cpus; c++) {
    I[cpuHostWord(L, c)] = hostOf(c);
    I[cpuCtl(L, c, CC_LOADED_MM)] = -1;
  }
  for (let h = 0; h < shape.hosts; h++) I[hostWord(L, h, HB_WAITING_ON)] = -1;
  init_page_alloc(V);
  return V;
}

export interface InlineMachine {
  V: Views;
  host: Host;
  cpus: Cpu[];
  violations: ViolationRecord[];
  /** run fn as CPU c (the kernel's `current`) */
  on<T>(c: number, fn: (cpu: Cpu) => T): T;
  /** a new process with one task on each listed CPU; switches those CPUs to it */
  process(cpus: number[]): { mm: number; tasks: number[] };
}

export interface InlineOptions {
  cpus?: number;
  tlb?: number;
  dataFrames?: number;
  tableFrames?: number;
  knobs?: string[];
  arch?: string;
  /** shadow memory for the COW oracle (src/oracles/cow.ts) */
  cowShadow?: boolean;
}

export function inlineMachine(o: InlineOptions = {}): InlineMachine {
  const ncpus = o.cpus ?? 2;
  setKnobs(o.knobs ?? []);
  const V = createMachine({
    cpus: ncpus, hosts: 1, dataFrames: o.dataFrames ?? 4096, tableFrames: o.tableFrames ?? 512,
    maxMms: 16, maxVmas: 256, maxTasks: 256, maxFiles: 64, eventRing: 64, cowShadow: o.cowShadow,
  }, () => 0);
  const violations: ViolationRecord[] = [];
  const host = makeHost(V, 0, o.arch ?? 'x86', violations, false);
  const cpus: Cpu[] = [];
  for (let c = 0; c < ncpus; c++) {
    const cpu = new Cpu(host, c, o.tlb ?? 64, 1);
    host.cpus.push(cpu);
    cpus.push(cpu);
  }
  set_current(cpus[0]);
  const m: InlineMachine = {
    V, host, cpus, violations,
    on(c, fn) {
      set_current(cpus[c]);
      return fn(cpus[c]);
    },
    process(onCpus) {
      const mm = m.on(onCpus[0] ?? 0, () => mm_alloc());
      if (mm < 0) throw new Error('mm_alloc failed');
      const tasks = onCpus.map((c) => {
        const t = task_create(V, mm, c, 0);
        m.on(c, (cpu) => context_switch(cpu, t));
        return t;
      });
      return { mm, tasks };
    },
  };
  return m;
}
