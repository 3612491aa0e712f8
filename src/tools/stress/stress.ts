// Stress campaigns: many seeds of one or more scenarios, run in parallel on a
// piscina pool (each task boots its own machine), one JSON line per seed, repro
// files for the failing ones, a progress bar and a final table per scenario.
// --shard i/n takes every n-th seed so that any batch engine (a CI matrix, a
// Kubernetes indexed job, GNU parallel) can fan a campaign out over machines:
// the shards of one campaign are disjoint and together run every seed once.

import { Piscina } from 'piscina';
import cliProgress from 'cli-progress';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { prestrippedPool } from '../../engine/prestrip.ts';
import { loadScenario, resolveScenario, placeThreads, ScenarioError, SCENARIO_DIR, type Scenario } from '../../engine/scenario.ts';
import { KNOB_NAMES } from '../../inject/knobs.ts';
import { makeRepro, reproFileName, writeRepro, type Repro } from '../repro/repro.ts';
import { resolveRunOptions, DEFAULT_MIGRATE_THREADS, withScenarioKnobs, type RunOptions, type RunResult } from '../../engine/machine.ts';
import { huntsByDefault, seedOptions, describeSwarm, type Family } from './strategy.ts';

/** Bad input to a campaign (a ScenarioError, so that the CLI exits 2 with one line). */
export class CampaignError extends ScenarioError {}

/** What a stress task gets: RunOptions are plain data (no functions), the seed is per task. */
export type TaskOptions = Omit<RunOptions, 'seed' | 'trace' | 'traceEvents'>;

export interface StressTask {
  scenarioFile: string;
  seed: number;
  options: TaskOptions;
}

/** One seed's outcome: a compact record, written as one JSON line. */
export interface SeedResult {
  scenario: string;
  seed: number;
  ok: boolean;
  /** what `mmsim run` would exit with: 0 clean, 1 violation/audit/hang, 3 crash */
  exit: number;
  /** first problem: an oracle's kind (uaf-stale-tlb, content, ...), 'audit', 'hang', 'crash' or 'timeout' */
  kind: string | null;
  message: string | null;
  wallMs: number;
  ops: number;
  shootdowns: number;
  /** shootdown latency of this seed, ns */
  p50Ns: number;
  p99Ns: number;
  cpus: number;
  /** host threads carrying the CPUs, and what that makes: inline, hosted, worker-per-cpu */
  threads: number;
  exec: RunResult['mode'] | null;
  /** scheduling mode: free (OS scheduler) or deterministic */
  mode: 'free' | 'deterministic';
  /** the hunting swarm's family this seed drew (src/tools/stress/strategy.ts); absent when the user chose the mode */
  family?: Family;
  knobs: string[];
  /** the repro file written for a failing seed (the task returns the Repro itself; the campaign writes it) */
  repro?: string;
}

export interface TaskResult extends Omit<SeedResult, 'repro'> {
  repro?: Repro;
}

/** A task reports bad input (say, a thread pinned to a CPU the machine lacks) instead of a result. */
export interface TaskBadInput {
  badInput: string;
}

export interface Shard {
  index: number;
  count: number;
}

export interface CampaignOptions {
  /** scenario files or library names, resolved like `mmsim run`; 'all': every scenario of the library */
  scenarios: string[];
  /**
   * run every scenario on each of these TLB-flush models (a campaign over arches); with more than one, each
   * row, result line and repro file is named `<scenario>@<arch>`. Default: the run options' arch (or the scenario's)
   */
  arches?: string[];
  seeds: number;
  /** first seed (default 1): the campaign runs seeds seedBase + 0 .. seeds-1 */
  seedBase?: number;
  /** parallel tasks (piscina threads); default: the host's available parallelism */
  jobs?: number;
  /** 'i/n' or {index, count}: seed k (counted from seedBase) runs on shard k mod n */
  shard?: string | Shard;
  /** JSON-lines output file; '-' for stdout (no progress bar, the table goes to stderr). Default stress-results.jsonl */
  out?: string;
  /** directory for repro-<scenario>-<seed>.json (default: cwd; created if missing) */
  reproDir?: string;
  /** a progress bar on stderr when it is a TTY (default true) */
  progress?: boolean;
  /** passed to every run; a stress task defaults to threads: 1 (inline) */
  run?: TaskOptions;
  /** default true: with no scheduling option (mode, threads, delay, preemptions, hotPreempt) each seed draws its
   * configuration from the hunting swarm (src/tools/stress/strategy.ts); false: inline, as before */
  hunt?: boolean;
  /** abort a seed that runs longer than this (ms): it counts as kind 'timeout'. Default 10 min + --duration */
  taskTimeoutMs?: number;
  /** stops the campaign (Ctrl-C): running seeds are abandoned, the table covers the seeds that finished */
  signal?: AbortSignal;
  /** where the header and the final table go (default: stdout; stderr when out is '-') */
  print?: (text: string) => void;
}

export interface ScenarioSummary {
  scenario: string;
  file: string;
  seeds: number;
  failed: number;
  /** failure kind -> seeds */
  kinds: Record<string, number>;
  /** simulated operations per second of one run (sum of ops / sum of run wall time) */
  opsPerSec: number;
  /** shootdown latency over the seeds, ns: median of the seeds' p50, median and worst of their p99 */
  p50Ns: number;
  p99Ns: number;
  worstP99Ns: number;
  /** the first failing seed (in completion order), and as a `mmsim run` command line */
  firstFailure?: SeedResult;
  rerun?: string;
}

export interface CampaignSummary {
  planned: number;
  runs: number;
  failed: number;
  interrupted: boolean;
  wallMs: number;
  seedsPerSec: number;
  jobs: number;
  shard: Shard | null;
  seedBase: number;
  seeds: number;
  out: string;
  reproDir: string;
  scenarios: ScenarioSummary[];
  /** failing seeds, in completion order (at most 1000 kept) */
  failures: SeedResult[];
  reproFiles: string[];
  /** 0 every seed clean, 1 a seed failed, 130 interrupted without failures */
  exitCode: number;
}

const WORKER_URL = new URL('../../../workers/stress.ts', import.meta.url);
// a seed run with host threads of its own (deterministic mode, --threads N) starts CPU workers from inside the pool thread
const CPU_WORKER_URL = new URL('../../../workers/cpu.ts', import.meta.url);

/**
 * Piscina options of a stress pool: the threads run workers/stress.ts, its module
 * graph, the CPU worker's and the scenario files' stripped once on this thread
 * (src/engine/prestrip.ts), so that no pool thread instantiates Node's
 * TypeScript stripper (issue #15).
 */
export function stressPoolOptions(scenarioFiles: string[]): { filename: string; workerData: { entry: string; stripped: Record<string, string> } } {
  // only TypeScript modules: a .json scenario is read, not imported, and a .js one needs no stripping
  const ts = [...new Set(scenarioFiles)].filter((f) => f.endsWith('.ts')).map((f) => pathToFileURL(f));
  return prestrippedPool(WORKER_URL, [CPU_WORKER_URL, ...ts]);
}
const DEFAULT_TASK_TIMEOUT_MS = 10 * 60_000;
const MAX_FAILURES_KEPT = 1000;
const MAX_FAILURES_LOGGED = 20;

/** 'i/n' with 0 <= i < n. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new CampaignError(`--shard must be i/n (0-based shard i of n, e.g. 0/4), got '${text}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > 1e6) throw new CampaignError(`--shard ${text}: n must be between 1 and 1000000`);
  if (index >= count) throw new CampaignError(`--shard ${text}: i must be less than n (shards are numbered 0 to ${count - 1})`);
  return { index, count };
}

/** The seeds of a shard: seedBase + k for k in 0..seeds-1 with k mod n = i. */
export function* shardSeeds(seeds: number, seedBase: number, shard: Shard | null): Generator<number> {
  const step = shard ? shard.count : 1;
  for (let k = shard ? shard.index : 0; k < seeds; k += step) yield seedBase + k;
}

export function shardSize(seeds: number, shard: Shard | null): number {
  if (!shard) return seeds;
  return shard.index >= seeds ? 0 : Math.ceil((seeds - shard.index) / shard.count);
}

/** The `mmsim run` command line that re-runs one seed with the campaign's options. */
export function rerunCommand(file: string, seed: number, o: TaskOptions): string {
  const a = ['mmsim', 'run', file, '--seed', String(seed)];
  const add = (flag: string, v: unknown): void => {
    if (v !== undefined) a.push(flag, String(v));
  };
  add('--cpus', o.cpus);
  add('--arch', o.arch);
  add('--ops', o.ops);
  add('--duration', o.durationMs);
  add('--threads', o.threads);
  add('--delay', o.delay);
  add('--tlb', o.tlbEntries);
  for (const k of o.knobs ?? []) a.push('--knob', k);
  add('--hang-timeout', o.hangTimeoutMs);
  if (o.mode && o.mode !== 'free') add('--mode', o.mode);
  add('--preemptions', o.preemptions);
  add('--hot-preempt', o.hotPreempt);
  if ((o.overtime ?? 1) > 1) add('--overtime', o.overtime);
  add('--lazy-contract', o.lazyContract);
  add('--lazy-series', o.lazySeries);
  add('--preempt', o.preempt);
  add('--irq', o.irq);
  // named only where it differs from the default
  if (o.migrateThreads !== undefined && o.migrateThreads !== DEFAULT_MIGRATE_THREADS) a.push(o.migrateThreads ? '--migrate-threads' : '--no-migrate-threads');
  return a.join(' ');
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
export function fmtLatency(ns: number): string {
  if (ns <= 0) return '-';
  if (ns < 10_000) return `${(ns / 1000).toFixed(1)} us`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(0)} us`;
  return `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 1)} ms`;
}

/** The final table, one row per scenario, then the failing seeds. */
export function formatTable(sum: CampaignSummary): string {
  const head = ['scenario', 'seeds', 'failed', 'ops/s', 'p50', 'p99', 'worst p99', 'failures'];
  const rows = sum.scenarios.map((s) => [
    s.scenario, fmtInt(s.seeds), fmtInt(s.failed), s.seeds ? fmtInt(s.opsPerSec) : '-',
    fmtLatency(s.p50Ns), fmtLatency(s.p99Ns), fmtLatency(s.worstP99Ns),
    Object.entries(s.kinds).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ') || '-',
  ]);
  if (sum.scenarios.length > 1) {
    rows.push(['total', fmtInt(sum.runs), fmtInt(sum.failed), '', '', '', '', '']);
  }
  const right = new Set([1, 2, 3, 4, 5, 6]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === r.length - 1 ? c : right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [line(head), ...rows.map(line)];
  out.push('');
  const shard = sum.shard ? `, shard ${sum.shard.index}/${sum.shard.count}` : '';
  out.push(`${fmtInt(sum.runs)} of ${fmtInt(sum.planned)} runs${sum.interrupted ? ' (INTERRUPTED)' : ''} in ${(sum.wallMs / 1000).toFixed(1)} s`
    + ` (${sum.seedsPerSec.toFixed(1)} seeds/s on ${sum.jobs} jobs${shard}); ${sum.failed ? `${fmtInt(sum.failed)} FAILED` : 'no failure'}`);
  out.push(`ops/s: one run's simulated operations per second; p50/p99: shootdown latency, median over the seeds; worst p99: the slowest seed's`);
  out.push(`results: ${sum.out === '-' ? 'stdout' : sum.out}`);
  if (sum.failures.length) {
    out.push('', `failing seeds${sum.failed > sum.failures.length || sum.failures.length > 20 ? ' (first 20; every one is in the results)' : ''}:`);
    for (const f of sum.failures.slice(0, 20)) {
      const msg = (f.message ?? '').split('\n')[0];
      out.push(`  ${f.scenario} seed ${f.seed}: [${f.kind}] ${msg.length > 200 ? msg.slice(0, 197) + '...' : msg}`);
      if (f.repro) out.push(`    repro ${f.repro}`);
    }
    for (const s of sum.scenarios) {
      if (!s.firstFailure) continue;
      out.push(s.firstFailure.repro
        ? `  first failure of ${s.scenario}: mmsim repro ${s.firstFailure.repro}; mmsim shrink ${s.firstFailure.repro}`
        : `  first failure of ${s.scenario}: ${s.rerun}`);
    }
  }
  return out.join('\n');
}

interface Plan {
  /** as given on the command line (for the re-run line) */
  arg: string;
  /** the row's name: the scenario's, or `<scenario>@<arch>` in a campaign over several arches */
  label: string;
  file: string;
  scenario: Scenario;
  options: TaskOptions;
}

function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** A Repro for a seed whose task never returned (crashed thread, timeout): the scenario and options, no run result. */
function reproWithoutResult(p: Plan, seed: number, kind: string, message: string): Repro {
  const stub = { violations: [], crash: message, audit: { ok: true, problems: [] }, teardownAudit: { ok: true, problems: [] } } as unknown as RunResult;
  const r = makeRepro(p.scenario, { ...p.options, seed, mode: p.options.mode ?? 'free' }, stub, p.file);
  return { ...r, violation: { kind, message } };
}

function failedResult(p: Plan, seed: number, kind: string, message: string, wallMs: number): TaskResult {
  const r = resolveRunOptions(p.scenario, p.options);
  return {
    scenario: p.label, seed, ok: false, exit: kind === 'crash' ? 3 : 1, kind, message, wallMs: Math.round(wallMs * 10) / 10,
    ops: 0, shootdowns: 0, p50Ns: 0, p99Ns: 0, cpus: r.cpus, threads: r.threads,
    exec: null, mode: r.deterministic ? 'deterministic' : 'free', knobs: r.knobs, repro: reproWithoutResult(p, seed, kind, message),
  };
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A campaign after validation: what runs, where results go. */
interface Campaign {
  o: CampaignOptions;
  seedBase: number;
  jobs: number;
  shard: Shard | null;
  run: TaskOptions;
  /** the swarm draws each seed's scheduling */
  hunt: boolean;
  plans: Plan[];
  outName: string;
  toStdout: boolean;
  reproDir: string;
  taskTimeoutMs: number;
  /** the results file (1: stdout) */
  fd: number;
  print: (text: string) => void;
  planned: number;
}

/** Validate everything before starting a thread (bad input is exit 2, one line), load the scenarios, open the outputs. */
async function prepareCampaign(o: CampaignOptions): Promise<Campaign> {
  if (o.scenarios.length === 0) throw new CampaignError('no scenario given');
  if (!Number.isInteger(o.seeds) || o.seeds < 1) throw new CampaignError(`--seeds must be a whole number >= 1, got ${o.seeds}`);
  const seedBase = o.seedBase ?? 1;
  if (!Number.isInteger(seedBase) || seedBase < 0 || seedBase + o.seeds - 1 > 2 ** 31 - 1) {
    throw new CampaignError(`--seed-base ${seedBase} with --seeds ${o.seeds}: seeds must stay within 0..2147483647`);
  }
  const jobs = o.jobs ?? availableParallelism();
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 1024) throw new CampaignError(`--jobs must be between 1 and 1024, got ${jobs}`);
  const shard = o.shard === undefined ? null : typeof o.shard === 'string' ? parseShard(o.shard) : parseShard(`${o.shard.index}/${o.shard.count}`);
  // no scheduling option: the hunting swarm draws one per seed; else inline (1 host thread) per seed unless
  // asked otherwise; deterministic runs take one thread per CPU
  const hunt = (o.hunt ?? true) && huntsByDefault(clean(o.run ?? {}));
  const run: TaskOptions = hunt ? clean({ ...(o.run ?? {}) }) : clean({ ...(o.run ?? {}), threads: o.run?.threads ?? (o.run?.mode === 'deterministic' ? undefined : 1) });
  for (const k of run.knobs ?? []) {
    if (!(KNOB_NAMES as string[]).includes(k)) throw new CampaignError(`unknown bug knob '${k}' (mmsim knobs lists them)`);
  }
  const plans = await planScenarios(o.scenarios, run, o.arches);
  const outName = o.out ?? 'stress-results.jsonl';
  const toStdout = outName === '-';
  const reproDir = resolve(o.reproDir ?? '.');
  const taskTimeoutMs = o.taskTimeoutMs ?? DEFAULT_TASK_TIMEOUT_MS + (run.durationMs ?? 0);
  if (!(taskTimeoutMs > 0)) throw new CampaignError(`--task-timeout must be positive, got ${taskTimeoutMs}`);
  let fd = 1;
  if (!toStdout) {
    try {
      fd = openSync(outName, 'w');
    } catch (e) {
      throw new CampaignError(`--out ${outName}: cannot write: ${errorMessage(e)}`);
    }
  }
  try {
    mkdirSync(reproDir, { recursive: true });
  } catch (e) {
    if (!toStdout) closeSync(fd);
    throw new CampaignError(`--repro-dir ${reproDir}: ${errorMessage(e)}`);
  }
  const print = o.print ?? ((t: string) => (toStdout ? process.stderr : process.stdout).write(t + '\n'));
  const planned = shardSize(o.seeds, shard) * plans.length;
  return { o, seedBase, jobs, shard, run, hunt, plans, outName, toStdout, reproDir, taskTimeoutMs, fd, print, planned };
}

/** Load every scenario ('all': the library), check its threads fit the CPUs, and give it the campaign's options (per arch). */
async function planScenarios(args: string[], run: TaskOptions, arches?: string[]): Promise<Plan[]> {
  const plans: Plan[] = [];
  const expanded: string[] = [];
  for (const arg of args) {
    if (arg === 'all') {
      const lib = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.ts') || f.endsWith('.json')).sort();
      expanded.push(...lib.map((f) => join(SCENARIO_DIR, f)));
    } else expanded.push(arg);
  }
  const each = arches && arches.length > 0 ? arches : [run.arch];
  for (const arg of expanded) {
    const file = await resolveScenario(arg);
    const scenario = await loadScenario(file);
    for (const arch of each) {
      const label = each.length > 1 ? `${scenario.name}@${arch}` : scenario.name;
      if (plans.some((p) => p.label === label)) throw new CampaignError(`${arg}: a second scenario named '${scenario.name}' (repro files are named after the scenario)`);
      const opts = clean({ ...run, arch });
      try {
        placeThreads(scenario, resolveRunOptions(scenario, opts).cpus);
      } catch (e) {
        throw new CampaignError(`${file}: ${errorMessage(e)}`);
      }
      // like `mmsim run --knob`: the scenario's own knobs plus the ones asked for
      const knobs = withScenarioKnobs(scenario, run.knobs);
      plans.push({ arg, label, file: resolve(file), scenario, options: clean({ ...opts, knobs }) });
    }
  }
  return plans;
}

function campaignHeader(c: Campaign): string {
  const { o, seedBase, shard, jobs, run, hunt, plans, planned } = c;
  const last = seedBase + o.seeds - 1;
  return `mmsim stress: ${plans.map((p) => p.label).join(', ')} x seeds ${seedBase}..${last}`
    + `${shard ? `, shard ${shard.index}/${shard.count}` : ''}: ${fmtInt(planned)} runs on ${jobs} job${jobs > 1 ? 's' : ''}`
    + `, ${hunt ? describeSwarm() : run.mode === 'deterministic' ? `deterministic${run.preemptions ? ` (${run.preemptions} preemptions)` : ''}`
      : run.threads === 1 ? 'inline (1 host thread per run)' : `${run.threads} host threads per run`}`
    + `${run.knobs?.length ? `, bug knobs: ${run.knobs.join(', ')}` : ''}`;
}

/** One scenario's running totals. */
interface Aggregate {
  p: Plan;
  seeds: number;
  failed: number;
  kinds: Record<string, number>;
  ops: number;
  wallMs: number;
  p50: number[];
  p99: number[];
  rerun: string | undefined;
  first: SeedResult | undefined;
}

/** A campaign while it runs: totals, failures, the progress bar. */
interface Progress {
  agg: Aggregate[];
  failures: SeedResult[];
  reproFiles: string[];
  done: number;
  failed: number;
  failLogged: number;
  badInput: string | undefined;
  interrupted: boolean;
  t0: number;
  multi: cliProgress.MultiBar | null;
  bar: cliProgress.SingleBar | undefined;
  /** every pool thread seen running a seed: all have exited when the campaign returns */
  threads: Set<Worker>;
}

function startProgress(c: Campaign): Progress {
  const useBar = (c.o.progress ?? true) && !c.toStdout && Boolean(process.stderr.isTTY) && c.planned > 0;
  const multi = useBar
    ? new cliProgress.MultiBar({
      stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: Math.max(10, c.jobs * 4), fps: 5,
      format: 'stress [{bar}] {value}/{total} seeds | {failed} failed | {rate} seeds/s | ETA {eta_formatted}',
    }, cliProgress.Presets.legacy)
    : null;
  return {
    agg: c.plans.map((p) => ({ p, seeds: 0, failed: 0, kinds: {}, ops: 0, wallMs: 0, p50: [], p99: [], rerun: undefined, first: undefined })),
    failures: [], reproFiles: [], done: 0, failed: 0, failLogged: 0, badInput: undefined, interrupted: false, threads: new Set(),
    t0: performance.now(), multi, bar: multi?.create(c.planned, 0, { failed: 0, rate: '0.0' }),
  };
}

/** A failing seed: count its kind, write its repro file, log it above the bar. */
async function recordFailure(c: Campaign, g: Progress, a: Aggregate, t: TaskResult, line: SeedResult): Promise<void> {
  g.failed++;
  a.failed++;
  const kind = t.kind ?? 'violation';
  a.kinds[kind] = (a.kinds[kind] ?? 0) + 1;
  // the first failure and its rerun command are taken together, before the await below: taken on
  // either side of it, two failures finishing together (2 jobs) could give the first failure of one
  // seed and the rerun command of the other (seen in a suite run: seed 1 and seed 2)
  if (a.first === undefined) {
    a.first = line;
    a.rerun = rerunCommand(a.p.arg, t.seed, t.repro?.options ?? a.p.options);
  }
  if (t.repro) {
    const path = join(c.reproDir, reproFileName(t.scenario, t.seed));
    try {
      await writeRepro(path, t.repro);
      line.repro = path;
      g.reproFiles.push(path);
    } catch (e) {
      line.repro = undefined;
      g.multi?.log(`mmsim stress: cannot write ${path}: ${errorMessage(e)}\n`);
    }
  }
  if (g.failures.length < MAX_FAILURES_KEPT) g.failures.push(line);
  // above the bar: the first failures, then only the first of each new kind (the rest are in the results)
  if (g.multi && (g.failLogged < MAX_FAILURES_LOGGED || a.kinds[kind] === 1)) {
    g.multi.log(`FAIL ${t.scenario} seed ${t.seed}: [${kind}] ${(t.message ?? '').split('\n')[0].slice(0, 160)}\n`);
    if (++g.failLogged === MAX_FAILURES_LOGGED) g.multi.log(`(further failures are listed only when of a new kind; all are in ${c.outName})\n`);
  }
}

/** One seed's result: into its scenario's totals and the results file. */
async function recordSeed(c: Campaign, g: Progress, ai: number, t: TaskResult): Promise<void> {
  const a = g.agg[ai];
  const { repro: _repro, ...rest } = t;
  const line: SeedResult = rest;
  a.seeds++;
  a.ops += t.ops;
  a.wallMs += t.exec ? t.wallMs : 0;
  if (t.exec && t.shootdowns > 0) {
    a.p50.push(t.p50Ns);
    a.p99.push(t.p99Ns);
  }
  if (!t.ok) await recordFailure(c, g, a, t, line);
  writeSync(c.fd, JSON.stringify(line) + '\n');
  g.done++;
  const secs = (performance.now() - g.t0) / 1000;
  g.bar?.update(g.done, { failed: g.failed, rate: (g.done / Math.max(secs, 1e-3)).toFixed(1) });
}

/** Run one seed on the pool, with its timeout; a task that throws or times out becomes a failed seed. */
async function runSeed(c: Campaign, g: Progress, pool: Piscina<StressTask, TaskResult | TaskBadInput>, inflight: Map<AbortController, () => void>, ai: number, seed: number): Promise<void> {
  const p0 = c.plans[ai];
  const drawn = c.hunt ? seedOptions(seed, p0.scenario, p0.options) : { options: p0.options, family: undefined };
  const p: Plan = { ...p0, options: drawn.options };
  const ac = new AbortController();
  const noteThreads = (): void => {
    for (const w of pool.threads) g.threads.add(w);
  };
  inflight.set(ac, noteThreads);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    noteThreads(); // piscina drops the thread from pool.threads as it terminates it
    ac.abort();
  }, c.taskTimeoutMs);
  const started = performance.now();
  let t: TaskResult | TaskBadInput | undefined;
  try {
    t = await pool.run({ scenarioFile: p.file, seed, options: p.options }, { signal: ac.signal });
  } catch (e) {
    if (timedOut) {
      t = failedResult(p, seed, 'timeout', `seed did not finish within ${c.taskTimeoutMs / 1000} s (--task-timeout; inline runs have no hang watchdog, so a hang shows up as this); its thread was terminated`, performance.now() - started);
    } else if (!g.interrupted) {
      t = failedResult(p, seed, 'crash', `stress task failed: ${errorMessage(e)}`, performance.now() - started);
    }
  } finally {
    clearTimeout(timer);
    inflight.delete(ac);
  }
  if (t === undefined) return; // abandoned by an interrupt
  if ('badInput' in t) {
    g.badInput ??= t.badInput;
    return;
  }
  if (drawn.family) t.family = drawn.family;
  t.scenario = p0.label; // `<scenario>@<arch>` in a campaign over arches: its line, its repro file
  await recordSeed(c, g, ai, t);
}

/**
 * Every seed of every scenario on a piscina pool, keeping exactly `jobs` tasks
 * in flight: the queue stays short (a task's timeout measures its run, not its
 * wait) and a million seeds are never all materialised.
 */
async function runSeeds(c: Campaign, g: Progress): Promise<void> {
  const { o, jobs } = c;
  // minThreads 0: a thread terminated by a task's timeout is not replaced by one that starts only to be
  // destroyed when the campaign ends (such a thread's ports outlived runCampaign by up to 2 s)
  const pool = new Piscina<StressTask, TaskResult | TaskBadInput>({
    ...stressPoolOptions(c.plans.map((p) => p.file)), minThreads: 0, maxThreads: jobs, concurrentTasksPerWorker: 1, idleTimeout: 60_000,
  });
  // a worker that dies between tasks: its next task is rejected (a 'crash' seed); nothing else to do
  pool.on('error', () => {});
  const inflight = new Map<AbortController, () => void>();
  const onAbort = (): void => {
    g.interrupted = true;
    for (const [ac, noteThreads] of inflight) {
      noteThreads();
      ac.abort();
    }
  };
  if (o.signal?.aborted) g.interrupted = true;
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const work = (function* (): Generator<[number, number]> {
    for (const seed of shardSeeds(o.seeds, c.seedBase, c.shard)) for (let ai = 0; ai < c.plans.length; ai++) yield [ai, seed];
  })();
  try {
    await new Promise<void>((finish) => {
      let running = 0;
      const pump = (): void => {
        while (!g.interrupted && g.badInput === undefined && running < jobs) {
          const n = work.next();
          if (n.done) break;
          running++;
          void runSeed(c, g, pool, inflight, n.value[0], n.value[1]).finally(() => {
            running--;
            pump();
          });
        }
        if (running === 0) finish();
      };
      pump();
    });
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    g.bar?.update(g.done, { failed: g.failed, rate: (g.done / Math.max((performance.now() - g.t0) / 1000, 1e-3)).toFixed(1) });
    g.multi?.stop();
    if (!c.toStdout) closeSync(c.fd);
    for (const w of pool.threads) g.threads.add(w);
    await pool.destroy();
    await threadsGone(g.threads);
  }
}

/**
 * Wait until every thread the pool ran has exited. pool.destroy() resolves before a thread that an
 * abort (a timeout, Ctrl-C) terminated has finished exiting; on a loaded machine such threads were
 * still alive when runCampaign returned (seen: 2 of them, load average ~50). Bounded: a thread that
 * never exits is left to the process's exit, with a line saying so.
 */
async function threadsGone(threads: Set<Worker>): Promise<void> {
  const alive = [...threads].filter((w) => w.threadId !== -1);
  if (alive.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const exited = Promise.all(alive.map((w) => new Promise<void>((res) => {
    if (w.threadId === -1) res();
    else w.once('exit', () => res());
  })));
  const late = await Promise.race([exited.then(() => false), new Promise<boolean>((res) => {
    timer = setTimeout(() => res(true), 30_000);
  })]);
  clearTimeout(timer);
  if (late) process.stderr.write(`mmsim stress: ${alive.filter((w) => w.threadId !== -1).length} pool threads still exiting 30 s after the campaign ended\n`);
}

function summarise(c: Campaign, g: Progress): CampaignSummary {
  const wallMs = performance.now() - g.t0;
  const scenarios: ScenarioSummary[] = g.agg.map((a) => ({
    scenario: a.p.label, file: a.p.file, seeds: a.seeds, failed: a.failed, kinds: a.kinds,
    opsPerSec: a.wallMs > 0 ? a.ops / (a.wallMs / 1000) : 0,
    p50Ns: median(a.p50), p99Ns: median(a.p99), worstP99Ns: a.p99.reduce((m, x) => Math.max(m, x), 0),
    firstFailure: a.first, rerun: a.rerun,
  }));
  return {
    planned: c.planned, runs: g.done, failed: g.failed, interrupted: g.interrupted, wallMs, seedsPerSec: g.done / Math.max(wallMs / 1000, 1e-3),
    jobs: c.jobs, shard: c.shard, seedBase: c.seedBase, seeds: c.o.seeds,
    out: c.toStdout ? '-' : resolve(c.outName), reproDir: c.reproDir, scenarios, failures: g.failures, reproFiles: g.reproFiles,
    exitCode: g.failed > 0 ? 1 : g.interrupted ? 130 : 0,
  };
}

export async function runCampaign(o: CampaignOptions): Promise<CampaignSummary> {
  const c = await prepareCampaign(o);
  c.print(campaignHeader(c));
  const g = startProgress(c);
  await runSeeds(c, g);
  if (g.badInput !== undefined) throw new CampaignError(g.badInput);
  const sum = summarise(c, g);
  c.print(formatTable(sum));
  return sum;
}
