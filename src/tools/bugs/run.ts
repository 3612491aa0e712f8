// Running a catalogue entry: its scenario with its knob (or, --fixed, without
// it) over seeds 1..budget with the default hunting strategy, `jobs` seeds at a
// time on a piscina pool (the `mmsim stress` task module: every seed boots its
// own machine on its own thread, and a seed that hangs its thread is cut off
// by a timeout). The hunt stops at the first failing seed (the smallest one:
// seeds above it are not started, those below it are finished); a clean run
// (--fixed) runs every seed.

import { Piscina } from 'piscina';
import { loadScenario, resolveScenario, type Scenario } from '../../engine/scenario.ts';
import { seedOptions, type Family } from '../stress/strategy.ts';
import type { StressTask, TaskResult, TaskBadInput, TaskOptions } from '../stress/stress.ts';
import { CampaignError, stressPoolOptions } from '../stress/stress.ts';
import type { BugEntry } from './catalogue.ts';


export interface HuntOptions {
  /** seeds 1..seeds (default: the entry's budget, or 20) */
  seeds?: number;
  seedBase?: number;
  /** run without the knob (the fixed kernel) */
  fixed?: boolean;
  jobs?: number;
  /** a seed running longer than this fails as 'timeout' (default 10 min, as in mmsim stress) */
  taskTimeoutMs?: number;
  /** called after every finished seed */
  onSeed?: (t: TaskResult) => void;
}

export interface HuntOutcome {
  entry: BugEntry;
  scenario: Scenario;
  scenarioFile: string;
  fixed: boolean;
  /** seeds finished */
  seedsRun: number;
  /** seeds that failed (with the knob: at most the ones in flight with the first; fixed: every false positive) */
  failures: TaskResult[];
  /** the first failing seed (the smallest), and the wall time until it was known */
  first?: TaskResult;
  firstAfterMs?: number;
  /** 1-based: how many seeds (in seed order) it took to the first catch */
  seedsToFirst?: number;
  wallMs: number;
  /** the family of every seed run */
  families: Record<string, Family | undefined>;
}

/** The run options of an entry (the knob unless fixed, its arch and lazy contract) before the strategy's draw. */
export function entryOptions(e: BugEntry, fixed: boolean): TaskOptions {
  const o: TaskOptions = { knobs: fixed || !e.knob ? [] : [e.knob] };
  if (e.run?.arch) o.arch = e.run.arch;
  if (e.run?.lazyContract) o.lazyContract = e.run.lazyContract;
  if (e.run?.lazySeries) o.lazySeries = e.run.lazySeries;
  if (e.run?.cpus) o.cpus = e.run.cpus;
  if (e.run?.preempt) o.preempt = e.run.preempt;
  return o;
}

export async function huntEntry(e: BugEntry, o: HuntOptions = {}): Promise<HuntOutcome> {
  if (!e.scenario) throw new CampaignError(`${e.id}: no scenario (status ${e.status}${e.why ? `: ${e.why}` : ''})`);
  const fixed = o.fixed ?? false;
  const seeds = o.seeds ?? e.budget ?? 20;
  const base = o.seedBase ?? 1;
  const jobs = o.jobs ?? 2;
  const timeout = o.taskTimeoutMs ?? 600_000;
  const scenarioFile = await resolveScenario(e.scenario);
  const scenario = await loadScenario(scenarioFile);
  const user = entryOptions(e, fixed);
  // the scenario's own knobs stay (like --knob); fixed drops only the entry's
  const knobs = [...new Set([...scenario.knobs, ...(user.knobs ?? [])])].filter((k) => !(fixed && k === e.knob));
  const pool = new Piscina<StressTask, TaskResult | TaskBadInput>({
    ...stressPoolOptions([scenarioFile]), minThreads: 0, maxThreads: jobs, concurrentTasksPerWorker: 1, idleTimeout: 10_000,
  });
  pool.on('error', () => {});
  const t0 = performance.now();
  const failures: TaskResult[] = [];
  const families: Record<string, Family | undefined> = {};
  let seedsRun = 0;
  let stopAbove = Infinity;
  let bad: string | undefined;
  const runOne = async (seed: number): Promise<void> => {
    const { options, family } = seedOptions(seed, scenario, { ...user, knobs });
    families[seed] = family;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeout);
    let t: TaskResult | TaskBadInput;
    try {
      t = await pool.run({ scenarioFile, seed, options }, { signal: ac.signal });
    } catch (err) {
      const aborted = ac.signal.aborted;
      t = {
        scenario: scenario.name, seed, ok: false, exit: aborted ? 1 : 3, kind: aborted ? 'timeout' : 'crash',
        message: aborted ? `seed did not finish within ${timeout / 1000} s` : String(err), wallMs: performance.now() - t0,
        ops: 0, shootdowns: 0, p50Ns: 0, p99Ns: 0, cpus: options.cpus ?? scenario.machine.cpus, threads: options.threads ?? 1,
        exec: null, mode: options.mode ?? 'free', knobs: options.knobs ?? [],
      };
    } finally {
      clearTimeout(timer);
    }
    if ('badInput' in t) {
      bad ??= t.badInput;
      stopAbove = -1;
      return;
    }
    t.family = family;
    seedsRun++;
    o.onSeed?.(t);
    if (!t.ok) {
      failures.push(t);
      if (!fixed && seed < stopAbove) stopAbove = seed;
    }
  };
  try {
    await new Promise<void>((finish) => {
      let next = base;
      let running = 0;
      const pump = (): void => {
        while (running < jobs && next < base + seeds && next < stopAbove) {
          const seed = next++;
          running++;
          void runOne(seed).finally(() => {
            running--;
            pump();
          });
        }
        if (running === 0) finish();
      };
      pump();
    });
  } finally {
    await pool.destroy();
  }
  if (bad !== undefined) throw new CampaignError(bad);
  const wallMs = performance.now() - t0;
  failures.sort((a, b) => a.seed - b.seed);
  const first = failures[0];
  // seeds run in order and none above the first failure is started: the hunt's end is when the first catch was known
  const firstAfterMs = first && !fixed ? wallMs : undefined;
  return {
    entry: e, scenario, scenarioFile, fixed, seedsRun, failures, first, firstAfterMs,
    seedsToFirst: first ? first.seed - base + 1 : undefined, wallMs, families,
  };
}
