// The main thread's side of a run: create the shared memory, boot the kernel
// (processes, their regions, their tasks), start the host threads (one worker
// per CPU by default, or --threads T), watch them (hang watchdog, crashes),
// then audit and summarise.

import { Worker } from 'node:worker_threads';
import { availableParallelism, loadavg } from 'node:os';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import {
  type Views, cpuCtl, hostWord, statWord, mmWord, eventF,
  CC_LOADED_MM, CC_IS_LAZY, MB_SENDERS, mboxHdr, mboxSlot, CC_ONLINE, CC_ACK, CC_IPI_PENDING, CC_IRQS_OFF, HB_WAITING_ON, H_STOP, H_DONE, H_VIOLATIONS,
  H_STARTED, STAT_WORDS, STAT_NAMES, ST_OPS, ST_SYSCALLS, ST_IPI_RECV, MM_CPUMASK, CPUMASK_WORDS, PAGE_SIZE, PMD_SIZE, PUD_SIZE, MM_LOCK, mmOfWord, type StatName,
} from '../hw/layout.ts';
import { Cpu, set_current, VM_FAULT_OK } from '../hw/cpu.ts';
import { spinlock_holder } from '../hw/locks.ts';
import { readRing, type EventRecord } from '../hw/trace.ts';
import { createMachine } from './inline.ts';
import { mm_alloc, task_create, exit_mmap, mm_in_use, mmap_lock_state } from '../mm/mm.ts';
import { kernel_page_tables_init, vmalloc_teardown, set_debug_pagealloc } from '../mm/vmalloc.ts';
import { set_irq_odds } from '../hw/irq.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_FIXED_NOREPLACE, PROT_NONE, PROT_WRITE } from '../mm/mmap.ts';
import { faultin_page } from '../mm/memory.ts';
import { dax_device_create } from '../mm/huge_memory.ts';
import { do_madvise_advice, MADV_HUGEPAGE } from '../mm/madvise.ts';
import { shmem_file_setup, file_put } from '../mm/shmem.ts';
import { setKnobs } from '../inject/knobs.ts';
import { type Scenario, placeThreads, ScenarioError, usesCowOracle } from './scenario.ts';
import { makeHost, runHost, type HostPlan, type HostResult, type RunCounts } from './hostrun.ts';
import { initDet, detDecisions, detStep, detDeadlocked } from './det.ts';
import { detBudget, freeBudget } from './budget.ts';
import { prestrippedWorker, PRESTRIPPED_PROLOGUE } from './prestrip.ts';
import { set_lazy_contract, set_lazy_series, resolve_lazy_series, LAZY_SERIES_LATEST, type LazySeries } from '../mm/lazy_mmu.ts';
import { set_preempt_model, type PreemptModel } from '../hw/preempt.ts';
import { protBits, type TaskPlan, type RegionInfo, type FileInfo } from './program.ts';
import { audit, type AuditReport } from '../oracles/audit.ts';
import { requestStop, type ViolationRecord } from '../oracles/oracles.ts';
import type { CpuWorkerApi } from './hostrun.ts';
import { ERRNO_NAMES } from '../mm/errno.ts';

/** scheduling points per operation, roughly (PCT draws its change points below ops x cpus x this) */
export const STEPS_PER_OP = 6;

export interface RunOptions {
  cpus?: number;
  arch?: string;
  seed?: number;
  ops?: number;
  durationMs?: number;
  threads?: number; // host threads; 1 = inline on the main thread
  delay?: number;
  tlbEntries?: number;
  knobs?: string[];
  keepGoing?: boolean;
  hangTimeoutMs?: number;
  /** 'free' (default): CPUs race on the OS scheduler; 'deterministic': one CPU at a time, a seeded scheduler picks */
  mode?: 'free' | 'deterministic';
  /** deterministic mode: PCT preemption bound d (default 3) */
  preemptions?: number;
  /** deterministic mode: probability of a preemption after a hot event (a PTE write, a free, a flush, a lock, a reference change, a TLB fill; src/engine/det.ts); default 0 */
  hotPreempt?: number;
  /**
   * deterministic mode: a CPU that has done its operations keeps running its
   * program while another CPU has not, up to this many times its budget
   * (default 1: it stops at its budget). Free mode always keeps going
   * (hostrun.ts); the cap is what keeps a deterministic run finite.
   */
  overtime?: number;
  /** the reading of the range-aware lazy MMU enable in force (default hint) */
  lazyContract?: 'strict' | 'hint';
  /** the version of Gordeev's range-aware lazy MMU series in force (default the latest modelled; 'none': mainline) */
  lazySeries?: LazySeries;
  /** preemption inside kernel code: none, full (CONFIG_PREEMPT, the default) or rt (PREEMPT_RT: spinlocks sleep) */
  preempt?: PreemptModel;
  /** device interrupts at 1 in N scheduling points (src/hw/irq.ts); 0 off; default: the scenario's machine.irq */
  irq?: number;
  /**
   * a preempted task may also move to a CPU another host thread carries (src/engine/migrate.ts,
   * src/engine/det.ts). Default: on in both modes (DEFAULT_MIGRATE_THREADS); false keeps each
   * task on its own thread's CPUs, fewer interleavings than the kernel (docs/concurrency.md "Limits").
   */
  migrateThreads?: boolean;
  /** keep a long event history with timestamps, returned as RunResult.trace */
  trace?: boolean;
  /** events kept per CPU when tracing (power of two) */
  traceEvents?: number;
  /** write a V8 CPU profile of every host thread into this directory (host-<n>.cpuprofile) */
  cpuProfDir?: string;
  /**
   * Abort the run: its host threads are told to stop and terminated, and
   * runScenario rejects with the signal's reason. Default: runDefaults.signal
   * (the test setup sets it to the running test's, so a test that times out
   * takes its run with it). An inline run (threads 1) checks it only before it starts.
   */
  signal?: AbortSignal;
}

/** Defaults for every run that names none in its options: the test setup (test/setup.ts) sets the running test's signal. */
export const runDefaults: { signal?: AbortSignal } = {};

export interface TraceEvent extends EventRecord {
  cpu: number;
}

export interface RunResult extends RunCounts {
  scenario: string;
  arch: string;
  cpus: number;
  threads: number;
  mode: 'inline' | 'worker-per-cpu' | 'hosted' | 'deterministic';
  seed: number;
  knobs: string[];
  lazyContract: 'strict' | 'hint';
  lazySeries: LazySeries;
  /** from the start barrier (every host booted) to the end of the run */
  wallMs: number;
  /** starting the host threads */
  bootMs: number;
  /** booting the simulated machine before that: shared memory, processes, regions, tasks (main thread) */
  setupMs: number;
  /** deterministic mode: PCT depth, scheduling points passed, and the handoffs [step, cpu, step, cpu, ...] */
  deterministic?: { preemptions: number; hotPreempt: number; overtime: number; steps: number; schedule: number[] };
  stats: Record<StatName, number>;
  perCpuOps: number[];
  latencyNs: { samples: number; p50: number; p99: number; max: number };
  /** shootdown latencies (ns), sorted; a uniform sample of at most 20000 */
  latencySamplesNs: number[];
  /** with RunOptions.trace: every CPU's retained events, ordered by time */
  trace?: { events: TraceEvent[]; dropped: number };
  violations: ViolationRecord[];
  violationCount: number;
  audit: AuditReport;
  teardownAudit: AuditReport;
  hang?: string;
  crash?: string;
}

/**
 * One worker thread per CPU while CPUs <= host cores; above that, hosted on as
 * many threads as there are cores (one busy thread per CPU made a shootdown take
 * milliseconds once CPUs outnumber cores; hosted ones stay at microseconds).
 * Deterministic mode always takes one thread per CPU.
 */
export function defaultThreads(cpus: number, deterministic = false): number {
  const cores = availableParallelism();
  return deterministic || cpus <= cores ? cpus : cores;
}

interface Booted {
  V: Views;
  /** the files' own references (the scenario's open files), dropped at teardown */
  files: number[];
  tasks: TaskPlan[];
  hosts: number;
  hostOf: number[];
}

type RegionSpec = Scenario['processes'][number]['regions'][number];

/**
 * mmap a scenario region: anonymous or a file's pages, at an address aligned
 * to exactly `align` (aligned to it and not to twice it, as mremap_test.c
 * places its sources): map len + 2 * align, keep the aligned piece, unmap the rest.
 */
function map_region(mm: number, r: RegionSpec, files: Map<string, number>, where: string): number {
  const len = r.pages * PAGE_SIZE;
  const align = r.align === undefined ? 0 : r.align === 'page' ? PAGE_SIZE : r.align === 'pmd' ? PMD_SIZE : r.align === 'pud' ? PUD_SIZE : r.align;
  if (align % PAGE_SIZE !== 0) throw new ScenarioError(`${where}.align: ${align} is not a multiple of the page size`);
  const file = r.file !== undefined ? files.get(r.file)! : -1;
  const flags = (file >= 0 ? 0 : MAP_ANONYMOUS) | (r.shared ? MAP_SHARED : MAP_PRIVATE);
  const fail = (e: number): never => {
    throw new ScenarioError(`${where}: mmap of ${r.pages} pages failed (${ERRNO_NAMES[-e] ?? e})`);
  };
  if (align === 0) {
    const base = do_mmap(mm, 0, len, protBits(r.prot), flags, file, r.offset);
    return base < 0 ? fail(base) : base;
  }
  const span = len + 2 * align;
  const probe = do_mmap(mm, 0, span, PROT_NONE, MAP_ANONYMOUS | MAP_PRIVATE);
  if (probe < 0) fail(probe);
  let base = Math.ceil(probe / align) * align;
  if ((base / align) % 2 === 0) base += align; // exactly `align`, not 2 * align
  do_munmap(mm, probe, span);
  const got = do_mmap(mm, base, len, protBits(r.prot), flags | MAP_FIXED_NOREPLACE, file, r.offset);
  return got < 0 ? fail(got) : got;
}

/** Boot: lay out memory, create processes, their regions and tasks (on the main thread, as CPU 0 at boot). */
export function boot(s: Scenario, cpus: number, hosts: number, arch: string, tlbEntries: number, eventRing = 64, deterministic = false): Booted {
  const dataFrames = s.machine.memoryMiB * 256;
  const shape = {
    cpus, hosts, dataFrames,
    tableFrames: s.machine.tableFrames ?? Math.max(1024, dataFrames >> 3),
    maxMms: 64, maxVmas: 1024, maxTasks: 4096, maxFiles: 1024, eventRing, deterministic,
    cowShadow: usesCowOracle(s), tlbEntries,
  };
  if (shape.cowShadow) shape.maxMms = Math.max(64, Math.min(512, 4 * cpus)); // forked children on every CPU
  const hostOf = [...Array(cpus).keys()].map((c) => Math.floor((c * hosts) / cpus));
  const V = createMachine(shape, (c) => hostOf[c]);
  const { I, L } = V;
  const bootViolations: ViolationRecord[] = [];
  const host = makeHost(V, 0, arch, bootViolations, false);
  const cpu0 = new Cpu(host, 0, tlbEntries, 0);
  set_current(cpu0);
  kernel_page_tables_init(); // init_mm: the linear map's tables (src/mm/vmalloc.ts)
  const placement = placeThreads(s, cpus);
  const tasks: TaskPlan[] = [];
  const files = new Map<string, number>();
  const fileInfos: FileInfo[] = [];
  for (const [fi, f] of s.files.entries()) {
    const id = shmem_file_setup(f.pages);
    if (id < 0) throw new ScenarioError(`files.${fi}: cannot create file '${f.name}'`);
    files.set(f.name, id);
    fileInfos.push({ name: f.name, id, pages: f.pages });
  }
  s.processes.forEach((p, pi) => {
    const mm = mm_alloc();
    if (mm < 0) throw new ScenarioError(`processes.${pi}: cannot create an mm`);
    const regions: RegionInfo[] = p.regions.map((r, ri) => {
      const where = `processes.${pi}.regions.${ri}`;
      const thp = r.thp === true || r.thp === 'pmd';
      let rr = thp && r.align === undefined ? { ...r, align: 'pmd' as const } : r; // thp_get_unmapped_area places THP regions 2 MiB-aligned
      if (r.thp === 'pud') {
        // a DAX-like device of one 1 GiB page (src/mm/huge_memory.ts), mapped at a 1 GiB boundary
        const dev = dax_device_create();
        if (dev < 0) throw new ScenarioError(`${where}.thp: cannot allocate 1 GiB of contiguous memory for the 'pud' device (machine.memoryMiB ${s.machine.memoryMiB}: give it more than 1024, e.g. 1100)`);
        const name = `\0dax:${where}`;
        files.set(name, dev); // the mapping takes its own reference; ours goes with the others below
        rr = { ...r, file: name, align: 'pud' };
      }
      const base = map_region(mm, rr, files, where);
      if (thp && do_madvise_advice(mm, base, r.pages * PAGE_SIZE, MADV_HUGEPAGE) < 0) throw new ScenarioError(`${where}.thp: madvise(MADV_HUGEPAGE) failed`);
      if (r.populate) {
        for (let va = base; va < base + r.pages * PAGE_SIZE; va += PAGE_SIZE) {
          if (faultin_page(mm, va, (protBits(r.prot) & PROT_WRITE) !== 0) !== VM_FAULT_OK) throw new ScenarioError(`${where}: populate: fault at 0x${va.toString(16)} failed (out of memory? raise machine.memoryMiB)`);
        }
      }
      const share = !r.shared ? undefined
        : r.file !== undefined && r.thp !== 'pud' ? { key: `f${files.get(r.file)}`, at: r.offset * PAGE_SIZE }
          : { key: `p${pi}r${ri}`, at: 0 };
      return { name: r.name, base, pages: r.pages, shared: r.shared, share, prot: r.prot, thp };
    });
    p.threads.forEach((t, ti) => {
      for (const c of placement[pi][ti]) {
        const id = task_create(V, mm, c, pi);
        tasks.push({ id, cpu: c, mm, proc: p.name, thread: t.name, program: t.program, regions, files: fileInfos });
      }
    });
  });
  // The files keep their own reference (an open file: truncate and reclaim steps
  // use it even when no mapping is left); teardown drops it.
  if (bootViolations.length) throw new Error(`boot: ${bootViolations[0].message}`);
  // boot work is not part of the run's figures
  I.fill(0, L.stats, L.stats + cpus * STAT_WORDS);
  V.F.fill(0, eventF(L, 0, 0), eventF(L, cpus, 0));
  return { V, files: [...files.values()], tasks, hosts, hostOf };
}

/** Every retained event of every CPU, in time order (ties: CPU, then sequence). */
function collectTrace(V: Views, cpus: number): { events: TraceEvent[]; dropped: number } {
  const events: TraceEvent[] = [];
  let dropped = 0;
  for (let c = 0; c < cpus; c++) {
    const evs = readRing(V, c);
    if (evs.length) dropped += evs[0].seq - 1; // older events were overwritten
    for (const e of evs) events.push({ ...e, cpu: c });
  }
  events.sort((x, y) => x.ts - y.ts || x.cpu - y.cpu || x.seq - y.seq);
  return { events, dropped };
}

function sample(sorted: Float64Array, n: number): number[] {
  if (sorted.length <= n) return Array.from(sorted);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(sorted[Math.floor((i * sorted.length) / n)]);
  return out;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** Who holds an mmap_lock, as the hang reports say it. */
function mmapLockHolders(st: { value: number; ownerTask: number; ownerCpu: number }): string {
  if (st.value >= 0) return `${st.value} readers`;
  return st.ownerTask >= 0 ? `write-held by task ${st.ownerTask} on cpu ${st.ownerCpu}` : `write-held by cpu ${st.ownerCpu}`;
}

/** A description of who holds what and who waits, for a hang report. */
export function describeHang(V: Views): string {
  const { I, L } = V;
  const lines: string[] = [];
  for (let mm = 0; mm < L.shape.maxMms; mm++) {
    if (!mm_in_use(V, mm)) continue;
    const st = mmap_lock_state(V, mm);
    if (st.value !== 0 || st.waiters) {
      lines.push(`mm ${mm} mmap_lock: ${mmapLockHolders(st)}, ${st.waiters} waiting (${st.writersWaiting} writers)`);
    }
  }
  for (let h = 0; h < L.shape.hosts; h++) {
    const w = I[hostWord(L, h, HB_WAITING_ON)];
    if (w >= 0) {
      const holder = I[w];
      const mm = mmOfWord(L, w, MM_LOCK);
      const mmLock = mm >= 0 ? ` (mmap_lock of mm ${mm})` : '';
      lines.push(`host ${h} blocked on lock word ${w}${mmLock}, value ${holder}${holder > 0 && !mmLock ? ` (held by cpu ${spinlock_holder(holder)})` : ''}`);
    }
  }
  for (let c = 0; c < L.shape.cpus; c++) {
    const ack = I[cpuCtl(L, c, CC_ACK)];
    if (ack > 0) lines.push(`cpu ${c} waits for ${ack} IPI acknowledgements`);
    const pend = I[cpuCtl(L, c, CC_IPI_PENDING)];
    if (pend > 0) lines.push(`cpu ${c} has IPIs pending (irqs off depth ${I[cpuCtl(L, c, CC_IRQS_OFF)]})`);
  }
  // requests still in a thread's mailbox (src/hw/cpu.ts Host.postIpis): its thread has not looked since
  if (L.mbox >= 0) {
    for (let h = 0; h < L.shape.hosts; h++) {
      for (let w = 0; w < CPUMASK_WORDS; w++) {
        for (let bits = I[mboxHdr(L, h) + MB_SENDERS + w]; bits !== 0; bits &= bits - 1) {
          const sender = w * 32 + 31 - Math.clz32(bits & -bits);
          const targets: number[] = [];
          for (let tw = 0; tw < L.mboxMaskWords; tw++) {
            for (let tb = I[mboxSlot(L, h, sender) + tw]; tb !== 0; tb &= tb - 1) targets.push(tw * 32 + 31 - Math.clz32(tb & -tb));
          }
          lines.push(`host ${h}'s mailbox holds cpu ${sender}'s IPI for cpus ${targets.join(',')} (not taken by its thread yet)`);
        }
      }
    }
  }
  return lines.length ? lines.join('\n') : 'no lock held and no IPI outstanding: a host stopped making progress';
}

/** RunOptions with every default filled in from the scenario and this host (no side effects, no checks). */
export interface ResolvedRunOptions {
  cpus: number;
  arch: string;
  seed: number;
  knobs: string[];
  threads: number;
  tlbEntries: number;
  delay: number;
  /** undefined: a fixed number of operations */
  durationMs: number | undefined;
  /** operations per CPU (unbounded with durationMs) */
  ops: number;
  deterministic: boolean;
  lazyContract: 'strict' | 'hint';
  /** the version of Gordeev's range-aware lazy MMU series (mmsim list-series) */
  lazySeries: LazySeries;
  preempt: PreemptModel;
  /** device interrupts: 1 in irq scheduling points, 0 none (the scenario's machine.irq unless asked) */
  irq: number;
  migrateThreads: boolean;
  preemptions: number;
  /** deterministic mode: hot preemption probability (0: plain PCT) */
  hotPreempt: number;
  /** deterministic mode: a done CPU keeps going up to this many times its budget while another CPU has not finished */
  overtime: number;
  traceEvents: number;
  hangTimeoutMs: number;
}

/**
 * Whether a run migrates preempted tasks between host threads when RunOptions.migrateThreads
 * is not given: on, in both modes. Deterministic mode since 2026-12-06; free mode since the ninth
 * session (before, a free-mode task moved only among its own thread's CPUs: fewer interleavings
 * than the kernel allows, docs/concurrency.md, Limits). The one place of this default: repro
 * files and re-run commands are written against it (a file records the value it ran with).
 */
export const DEFAULT_MIGRATE_THREADS = true;

/** The one place a run's options get their defaults (runScenario, the CLI, stress campaigns, shrink). */
export function resolveRunOptions(s: Scenario, o: RunOptions = {}): ResolvedRunOptions {
  const cpus = o.cpus ?? s.machine.cpus;
  const deterministic = (o.mode ?? 'free') === 'deterministic';
  // deterministic mode: a duration becomes an operation budget and the scenario's own delay is dropped (src/engine/budget.ts)
  const budget = deterministic ? detBudget(s, o) : freeBudget(s, o);
  return {
    cpus,
    arch: o.arch ?? s.machine.arch,
    seed: o.seed ?? s.run.seed,
    knobs: o.knobs ?? s.knobs,
    threads: Math.min(o.threads ?? defaultThreads(cpus, o.mode === 'deterministic'), cpus),
    tlbEntries: o.tlbEntries ?? s.machine.tlbEntries,
    delay: budget.delay,
    durationMs: budget.durationMs,
    ops: budget.ops,
    deterministic,
    lazyContract: o.lazyContract ?? 'hint',
    lazySeries: o.lazySeries ?? LAZY_SERIES_LATEST, preempt: o.preempt ?? 'full',
    irq: o.irq ?? s.machine.irq,
    migrateThreads: o.migrateThreads ?? DEFAULT_MIGRATE_THREADS,
    preemptions: o.preemptions ?? 3,
    hotPreempt: o.hotPreempt ?? 0,
    overtime: o.overtime ?? 1,
    traceEvents: o.trace ? (o.traceEvents ?? 1 << 15) : 64,
    hangTimeoutMs: o.hangTimeoutMs ?? 30000,
  };
}

/** The scenario's own knobs plus the ones asked for (`--knob`); undefined when none is asked for. */
export function withScenarioKnobs(s: Scenario, extra: string[] | undefined): string[] | undefined {
  return extra?.length ? [...new Set([...s.knobs, ...extra])] : undefined;
}

function checkRunOptions(r: ResolvedRunOptions): void {
  if (r.deterministic && r.threads !== r.cpus) {
    throw new ScenarioError(`deterministic mode needs one thread per CPU (--threads ${r.threads} < --cpus ${r.cpus})`);
  }
  if (r.deterministic && r.delay > 0) {
    throw new ScenarioError('deterministic mode takes no --delay (time must not steer it; --hot-preempt widens race windows there)');
  }
  if (r.traceEvents & (r.traceEvents - 1)) throw new ScenarioError('traceEvents must be a power of two');
}

/** What became of a run. */
export interface Verdict {
  status: 'clean' | 'violation' | 'audit' | 'hang' | 'crash';
  /** what `mmsim run` exits with: 0 clean, 1 violation, audit failure or hang, 3 crash */
  exit: 0 | 1 | 3;
  /** the summary's result line */
  label: 'clean' | 'VIOLATION' | 'HUNG' | 'CRASHED';
  /** the first problem: an oracle's kind (uaf-stale-tlb, content, ...), 'violation', 'audit', 'hang' or 'crash'; null when clean */
  kind: string | null;
  message: string | null;
}

/** The one place a run's verdict is decided (summary, exit code, repro files, shrink, stress seeds). */
export function runVerdict(r: Pick<RunResult, 'crash' | 'hang' | 'violations' | 'violationCount' | 'audit' | 'teardownAudit'>): Verdict {
  if (r.crash) return { status: 'crash', exit: 3, label: 'CRASHED', kind: 'crash', message: r.crash };
  if (r.hang) return { status: 'hang', exit: 1, label: 'HUNG', kind: 'hang', message: r.hang };
  const v = r.violations[0];
  if (v) return { status: 'violation', exit: 1, label: 'VIOLATION', kind: v.kind, message: v.message };
  if (r.violationCount > 0) return { status: 'violation', exit: 1, label: 'VIOLATION', kind: 'violation', message: `${r.violationCount} violations` };
  if (!r.audit.ok) return { status: 'audit', exit: 1, label: 'VIOLATION', kind: 'audit', message: r.audit.problems[0] };
  if (!r.teardownAudit.ok) return { status: 'audit', exit: 1, label: 'VIOLATION', kind: 'audit', message: r.teardownAudit.problems.at(-1) ?? '' };
  return { status: 'clean', exit: 0, label: 'clean', kind: null, message: null };
}

interface Supervised {
  results: HostResult[];
  hang?: string;
  crash?: string;
  /** performance.now() when every host had passed the start barrier (0: never seen) */
  startedAt: number;
}

/** Progress of the whole machine: operations, syscalls and IPIs received by every CPU, and finished hosts. */
/**
 * How many times longer than --hang-timeout to wait before calling a run hung: the host's 1-minute
 * load average per core, between 1 and 4. A host thread that is runnable but not running for
 * seconds is the OS's doing, not the simulated kernel's; a real hang (a lost wake-up, a deadlock)
 * is still reported, at most 4 times later on a loaded machine. Deterministic deadlocks are found
 * exactly, without a timeout.
 */
function loadFactor(): number {
  return Math.min(4, Math.max(1, loadavg()[0] / availableParallelism()));
}

function progress(V: Views, cpus: number): number {
  const { I, L } = V;
  let p = 0;
  for (let c = 0; c < cpus; c++) p += I[statWord(L, c, ST_OPS)] + I[statWord(L, c, ST_SYSCALLS)] + I[statWord(L, c, ST_IPI_RECV)];
  return p + I[L.header + H_DONE];
}

/**
 * A run that starts this many host threads or more caps each thread's V8 young
 * generation at WIDE_RUN_YOUNG_MB. Left alone, V8 grows a worker's young
 * generation to 8 MB while it loads the CPU worker's graph (~3.6 MB of it
 * resident) and further while it runs. Measured with munmap-vs-access, one
 * worker per CPU, peak RSS per CPU above the process before the run: 64 CPUs
 * 23.9-26.7 -> 20.3-20.8 MiB (3 runs each, alternated), ops/s within the noise
 * (1.9/2.8/4.3 M against 1.7/3.3/5.2 M at load average ~30); 4 CPUs 27.7-30.4 ->
 * 21.1-24.3 MiB, but 3 of 4 runs slower by 10-50% (the workers allocate: 191
 * scavenges in the run before, 530 with the cap). So only wide runs, whose
 * threads outnumber the cores many times over and whose memory is what runs
 * out (256 workers x ~3.5 MiB), take the cap.
 */
const WIDE_RUN_HOSTS = 32;
const WIDE_RUN_YOUNG_MB = 2;

/**
 * Start one worker per host thread, run the plans, and watch them: a crash or
 * an exit of a worker, a deadlock (deterministic mode) or no progress for
 * hangTimeoutMs ends the run. --duration is armed at the start barrier.
 */
async function superviseWorkers(V: Views, r: ResolvedRunOptions, hosts: number, plan: (h: number) => HostPlan, cpuProfDir: string | undefined, signal: AbortSignal | undefined): Promise<Supervised> {
  const { I, L } = V;
  let startedAt = 0;
  const workers: Worker[] = [];
  const url = new URL('../../workers/cpu.ts', import.meta.url);
  // every host thread starts from sources stripped once (src/engine/prestrip.ts), not its own TypeScript stripper
  const start = prestrippedWorker(url);
  let failed: (why: string) => void = () => {};
  const failure = new Promise<string>((res) => (failed = res));
  for (let h = 0; h < hosts; h++) {
    const execArgv = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=host-${h}.cpuprofile`] : undefined;
    const w = new Worker(PRESTRIPPED_PROLOGUE, {
      ...start, name: `mmsim-host-${h}`, stdout: false, stderr: false, execArgv,
      ...(hosts >= WIDE_RUN_HOSTS ? { resourceLimits: { maxYoungGenerationSizeMb: WIDE_RUN_YOUNG_MB } } : {}),
      // under `npm run profile` (MMSIM_PROFILER set) clinic's preloads come in NODE_OPTIONS, which a
      // worker would run too, each thread writing the same data file: the CPU threads start without them
      ...(process.env.MMSIM_PROFILER ? { env: { ...process.env, NODE_OPTIONS: '' } } : {}),
    });
    w.on('error', (e) => failed(`host thread ${h} crashed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`));
    w.on('exit', (code) => {
      if (code !== 0) failed(`host thread ${h} exited with code ${code}`);
    });
    workers.push(w);
  }
  const remotes = workers.map((w) => Comlink.wrap<CpuWorkerApi>(nodeEndpoint(w)));
  let durationArmed = false;
  // watchdog: progress = ops + heartbeats of blocked hosts that still service IPIs
  const hangMs = r.hangTimeoutMs;
  let last = -1;
  let lastChange = performance.now();
  let watchdog: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((res) => {
    watchdog = setInterval(() => {
      if (!startedAt && Atomics.load(I, L.header + H_STARTED) >= hosts) startedAt = performance.now();
      if (r.deterministic && detDeadlocked(V)) {
        res(`deadlock: every CPU that has not finished is blocked (deterministic scheduler, step ${detStep(V)})\n${describeHang(V)}`);
        return;
      }
      if (startedAt && r.durationMs !== undefined && !durationArmed) {
        durationArmed = true; // --duration counts from the start barrier, not from worker boot
        setTimeout(() => requestStop(V), r.durationMs).unref();
      }
      const p = progress(V, r.cpus);
      // every CPU has finished its program: what is left is the hosts handing their results back (a crash
      // there is the worker's 'error'/'exit'), not a hang. Seen: 256 worker threads at load average ~100
      // all done, their results still in transit after 60 s, reported as a hang.
      const allDone = Atomics.load(I, L.header + H_DONE) >= r.cpus;
      if (p !== last || !startedAt || allDone) {
        last = p;
        lastChange = performance.now();
      } else if (performance.now() - lastChange > hangMs * loadFactor()) {
        const f = loadFactor(); // the factor the comparison just used (the load average changes slowly)
        res(`no CPU made progress for ${(hangMs * f / 1000).toFixed(0)} s${f > 1 ? ` (--hang-timeout ${(hangMs / 1000).toFixed(0)} s x ${f.toFixed(1)}, the host's load average per core)` : ''}\n${describeHang(V)}`);
      }
    }, 50);
  });
  const all = Promise.all(remotes.map((rm, h) => rm.run(plan(h))));
  let onAbort = (): void => {};
  const aborted = new Promise<true>((res) => {
    onAbort = () => res(true);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  const outcome = await Promise.race([
    aborted.then(() => ({ aborted: true as const })),
    all.then((res) => ({ r: res }), (e: unknown) => ({ crash: `a host thread crashed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` })),
    failure.then((why) => ({ crash: why })),
    hung.then((why) => ({ hang: why })),
  ]);
  clearInterval(watchdog);
  signal?.removeEventListener('abort', onAbort);
  const out: Supervised = { results: [], startedAt };
  if ('r' in outcome) out.results = outcome.r;
  else if ('crash' in outcome) out.crash = outcome.crash;
  else if ('hang' in outcome) out.hang = outcome.hang;
  Atomics.store(I, L.header + H_STOP, 1);
  for (const rm of remotes) rm[Comlink.releaseProxy]();
  await Promise.all(workers.map((w) => w.terminate()));
  if ('aborted' in outcome) throw signal?.reason ?? new Error('run aborted');
  out.startedAt = startedAt;
  return out;
}

/** The run's figures: every CPU's counters summed, ops per CPU, shootdown latencies and the host threads' tallies. */
function runStatistics(V: Views, cpus: number, results: HostResult[]): Pick<RunResult,
  'stats' | 'perCpuOps' | 'latencyNs' | 'latencySamplesNs' | 'syscallErrors' | 'lastSyscallError' | 'readsChecked' | 'readsExcused' | 'cowChecked' | 'cowUnjudged'> {
  const { I, L } = V;
  const stats = Object.fromEntries(STAT_NAMES.map((n) => [n, 0])) as Record<StatName, number>;
  const perCpuOps: number[] = [];
  for (let c = 0; c < cpus; c++) {
    STAT_NAMES.forEach((n, i) => (stats[n] += I[statWord(L, c, i)]));
    perCpuOps.push(I[statWord(L, c, ST_OPS)]);
  }
  const lat = Float64Array.from(results.flatMap((r) => r.latencies)).sort();
  return {
    stats, perCpuOps,
    latencyNs: { samples: lat.length, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: lat.length ? lat[lat.length - 1] : 0 },
    latencySamplesNs: sample(lat, 20000),
    syscallErrors: results.reduce((a, r) => a + r.syscallErrors, 0),
    lastSyscallError: results.map((r) => r.lastSyscallError).filter(Boolean).pop() ?? '',
    readsChecked: results.reduce((a, r) => a + r.readsChecked, 0),
    readsExcused: results.reduce((a, r) => a + r.readsExcused, 0),
    cowChecked: results.reduce((a, r) => a + r.cowChecked, 0),
    cowUnjudged: results.reduce((a, r) => a + r.cowUnjudged, 0),
  };
}

/**
 * Quiescent: audit the live state, then tear every mm down and audit again
 * (leaks). Skipped when the run did not finish (its state is mid-operation).
 */
/** The mmap_locks still held after every CPU finished its program (a leaked lock), as a hang report, or undefined. */
function leakedLocks(V: Views): string | undefined {
  const lines: string[] = [];
  for (let mm = 0; mm < V.L.shape.maxMms; mm++) {
    if (!mm_in_use(V, mm)) continue;
    const st = mmap_lock_state(V, mm);
    if (st.value !== 0) lines.push(`mm ${mm} mmap_lock: ${mmapLockHolders(st)} after every CPU finished (a leaked lock)`);
  }
  return lines.length ? `every CPU finished, but a lock is still held: nobody will release it\n${lines.join('\n')}` : undefined;
}

function finalAudit(V: Views, r: ResolvedRunOptions, finished: boolean, violations: ViolationRecord[], files: number[]): { audit: AuditReport; teardownAudit: AuditReport } {
  if (!finished) {
    const skipped: AuditReport = { ok: true, problems: ['skipped: the run did not finish'], usedData: 0, usedTables: 0, freeData: 0, freeTables: 0, mappedPages: 0 };
    return { audit: skipped, teardownAudit: skipped };
  }
  const live = audit(V);
  return { audit: live, teardownAudit: teardownAndAudit(V, r.arch, r.tlbEntries, violations, files) };
}

export async function runScenario(s: Scenario, o: RunOptions = {}): Promise<RunResult> {
  const r = resolveRunOptions(s, o);
  const { cpus, arch, seed, knobs, threads, tlbEntries, delay, ops, deterministic, lazyContract, preemptions } = r;
  const lazySeries = resolve_lazy_series(r.lazySeries);
  if (lazySeries === null) throw new ScenarioError(`lazySeries: unknown version '${r.lazySeries}' (mmsim list-series)`);
  set_lazy_series(lazySeries);
  setKnobs(knobs);
  set_lazy_contract(lazyContract);
  set_preempt_model(r.preempt);
  checkRunOptions(r);
  const signal = o.signal ?? runDefaults.signal;
  signal?.throwIfAborted();
  const tSetup = performance.now();
  const { V, files, tasks, hosts, hostOf } = boot(s, cpus, threads, arch, tlbEntries, r.traceEvents, deterministic);
  if (deterministic) initDet(V, { seed, preemptions, expectedSteps: ops * cpus * STEPS_PER_OP });
  const traceEpochMs = o.trace ? performance.timeOrigin + performance.now() : undefined;
  const { I, L } = V;
  const plan = (h: number): HostPlan => ({
    sab: V.sab, layout: L, hostId: h, cpus: [...Array(cpus).keys()].filter((c) => hostOf[c] === h), arch, knobs,
    tlbEntries, seed, delay, delaySpins: s.run.delaySpins, opsPerCpu: ops, stopOnViolation: !o.keepGoing,
    tasks: tasks.filter((t) => hostOf[t.cpu] === h), traceEpochMs, deterministic, lazyContract, lazySeries, hotPreempt: r.hotPreempt, overtime: r.overtime, preempt: r.preempt,
    irq: r.irq, migrateThreads: r.migrateThreads,
  });
  const t0 = performance.now();
  const setupMs = t0 - tSetup;
  const run: Supervised = threads === 1 ? { results: [runHost(plan(0))], startedAt: 0 } : await superviseWorkers(V, r, hosts, plan, o.cpuProfDir, signal);
  const { results, crash, startedAt } = run;
  set_irq_odds(0); // the inline run set it on this thread: the teardown and later runs take no interrupts
  set_debug_pagealloc(false);
  // Every CPU finished but a lock is still held: nobody will release it, and the teardown below
  // (exit_mmap on this thread) would wait for it for ever. Seen: munmap.leak_mmap_lock in
  // deterministic mode, where the leak came on a CPU's last operation; the run then slept.
  const hang = run.hang ?? (crash ? undefined : leakedLocks(V));
  const end = performance.now();
  const violations = results.flatMap((h) => h.violations);
  const figures = runStatistics(V, cpus, results);
  // The trace first: the teardown below runs kernel code as CPU 0 and would log over its ring.
  const trace = o.trace ? collectTrace(V, cpus) : undefined;
  const audits = finalAudit(V, r, !hang && !crash, violations, files);
  return {
    scenario: s.name, arch, cpus, threads,
    mode: deterministic ? 'deterministic' : threads === 1 ? 'inline' : threads === cpus ? 'worker-per-cpu' : 'hosted',
    seed, knobs, lazyContract, lazySeries, wallMs: end - (startedAt || t0), bootMs: startedAt ? startedAt - t0 : 0, setupMs, stats: figures.stats, perCpuOps: figures.perCpuOps,
    deterministic: deterministic ? { preemptions, hotPreempt: r.hotPreempt, overtime: r.overtime, steps: detStep(V), schedule: detDecisions(V) } : undefined,
    latencyNs: figures.latencyNs, latencySamplesNs: figures.latencySamplesNs,
    trace,
    violations, violationCount: Atomics.load(I, L.header + H_VIOLATIONS), audit: audits.audit, teardownAudit: audits.teardownAudit, hang, crash,
    syscallErrors: figures.syscallErrors, lastSyscallError: figures.lastSyscallError,
    readsChecked: figures.readsChecked, readsExcused: figures.readsExcused,
    cowChecked: figures.cowChecked, cowUnjudged: figures.cowUnjudged,
  };
}

/** After the CPUs are gone: forget their TLB state, exit every mm, and check that every frame came back. */
function teardownAndAudit(V: Views, arch: string, tlbEntries: number, violations: ViolationRecord[], files: number[]): AuditReport {
  const { I, L } = V;
  for (let c = 0; c < L.shape.cpus; c++) {
    I[cpuCtl(L, c, CC_LOADED_MM)] = -1;
    I[cpuCtl(L, c, CC_IS_LAZY)] = 0;
    I[cpuCtl(L, c, CC_ONLINE)] = 0; // their threads are gone
  }
  for (let mm = 0; mm < L.shape.maxMms; mm++) for (let w = 0; w < CPUMASK_WORDS; w++) I[mmWord(L, mm, MM_CPUMASK + w)] = 0;
  I[L.header + H_STOP] = 0;
  const host = makeHost(V, 0, arch, violations, false);
  set_current(new Cpu(host, 0, tlbEntries, 0));
  for (let mm = 0; mm < L.shape.maxMms; mm++) if (mm_in_use(V, mm)) exit_mmap(mm);
  for (const f of files) file_put(f); // the files' own references (boot)
  vmalloc_teardown(); // kernel stacks and vmalloc areas still allocated, then init_mm's tables
  const r = audit(V);
  if (r.usedData > 0 || r.usedTables > 0) {
    r.ok = false;
    r.problems.push(`after every mm exited, ${r.usedData} data frames and ${r.usedTables} page-table frames are still allocated (leaked)`);
  }
  return r;
}

