// An inline machine for unit tests: every CPU on the test's own thread, so
// kernel paths run step by step; IPIs to other CPUs of the machine are
// serviced by the sender's wait loop (they share the host).
import { computeLayout, makeViews, cpuCtl, hostWord, CC_HOST, CC_LOADED_MM, HB_WAITING_ON, H_RUNNING, type Views } from '../src/hw/layout.ts';
import { Cpu, set_current, type Host } from '../src/hw/cpu.ts';
import { init_page_alloc } from '../src/mm/page_alloc.ts';
import { mm_alloc, task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { makeHost } from '../src/sim/hostrun.ts';
import { setKnobs } from '../src/sim/knobs.ts';
import type { ViolationRecord } from '../src/sim/oracles.ts';

export interface TestMachine {
  V: Views;
  host: Host;
  cpus: Cpu[];
  violations: ViolationRecord[];
  /** run fn as CPU c (the kernel's `current`) */
  on<T>(c: number, fn: (cpu: Cpu) => T): T;
  /** a new process with one task on each listed CPU; switches those CPUs to it */
  process(cpus: number[]): { mm: number; tasks: number[] };
}

export function testMachine(o: { cpus?: number; tlb?: number; dataFrames?: number; tableFrames?: number; knobs?: string[] } = {}): TestMachine {
  const cpus = o.cpus ?? 2;
  setKnobs(o.knobs ?? []);
  const L = computeLayout({
    cpus, hosts: 1, dataFrames: o.dataFrames ?? 4096, tableFrames: o.tableFrames ?? 512,
    maxMms: 16, maxVmas: 256, maxTasks: 256, maxFiles: 64, eventRing: 64,
  });
  const V = makeViews(new SharedArrayBuffer(L.bytes), L);
  for (let c = 0; c < cpus; c++) {
    V.I[cpuCtl(L, c, CC_HOST)] = 0;
    V.I[cpuCtl(L, c, CC_LOADED_MM)] = -1;
  }
  V.I[hostWord(L, 0, HB_WAITING_ON)] = -1;
  V.I[L.header + H_RUNNING] = 1;
  init_page_alloc(V);
  const violations: ViolationRecord[] = [];
  const host = makeHost(V, 0, 'x86', violations, false);
  const list: Cpu[] = [];
  for (let c = 0; c < cpus; c++) {
    const cpu = new Cpu(host, c, o.tlb ?? 64, 1);
    host.cpus.push(cpu);
    list.push(cpu);
  }
  set_current(list[0]);
  const m: TestMachine = {
    V, host, cpus: list, violations,
    on(c, fn) {
      set_current(list[c]);
      return fn(list[c]);
    },
    process(onCpus) {
      const mm = m.on(onCpus[0] ?? 0, () => mm_alloc());
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
