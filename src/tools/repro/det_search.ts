// Turning a free-mode find into an exact deterministic repro: run the same
// scenario, knobs, CPUs, TLB size and operation budget in deterministic mode
// with hot preemption and the swarm's overtime (a CPU past its budget keeps
// running while another has not, as the free run's CPUs did), on seeds derived from the failing one, until a run
// fails with the same kind. The deterministic repro then replays the exact
// interleaving (its schedule is recorded). Not every free-mode race has a
// deterministic twin within a few tries (the deterministic scheduler preempts
// only at scheduling points): the free repro stays valid either way.

import { runScenario } from '../../engine/machine.ts';
import { makeRepro, type Repro } from './repro.ts';
import { DET_OVERTIME } from '../stress/strategy.ts';

/** the seeds tried for free-mode seed s: near it, and deterministic per s */
export function detSeedsNear(seed: number, tries: number): number[] {
  return [...Array(tries).keys()].map((k) => (seed * 7919 + k) % 2147483647);
}

export async function searchDetRepro(free: Repro, o: { tries?: number; hotPreempt?: number[] } = {}): Promise<Repro | null> {
  const want = free.violation?.kind;
  if (!want || free.options.mode === 'deterministic') return null;
  const tries = o.tries ?? 4;
  const hot = o.hotPreempt ?? [0.3, 0.1, 0.5];
  const seed = free.options.seed ?? free.scenario.run.seed;
  // migrateThreads is left to the default (on): a free-mode file records what its run had (off
  // in files written before the ninth session), which says nothing about the deterministic search
  const { threads: _t, delay: _d, durationMs: _du, migrateThreads: _m, ...rest } = free.options;
  let i = 0;
  for (const s of detSeedsNear(seed, tries)) {
    const options = { ...rest, mode: 'deterministic' as const, seed: s, hotPreempt: hot[i++ % hot.length], overtime: DET_OVERTIME, hangTimeoutMs: 30000 };
    const r = await runScenario(free.scenario, options);
    const kind = r.violations[0]?.kind ?? (r.hang ? 'hang' : r.crash ? 'crash' : null);
    if (kind === want) return makeRepro(free.scenario, options, r, free.scenarioFile, r.deterministic?.schedule);
  }
  return null;
}
