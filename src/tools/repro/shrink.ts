// Replaying and shrinking repro files.
//
// A deterministic repro replays exactly: same interleaving (checked handoff by
// handoff against the recorded schedule), same violation. Shrinking looks for
// a smaller run that still fails the same way: fewer CPUs, fewer operations,
// fewer preemptions, each candidate re-run with the same seed. A free-mode
// repro is re-run up to `tries` times per candidate, since it is not exact.

import { runScenario, runVerdict, resolveRunOptions, type RunResult } from '../../engine/machine.ts';
import { makeRepro, type Repro } from './repro.ts';

export interface ReplayOutcome {
  result: RunResult;
  reproduced: boolean;
  /** deterministic repros: did the run take exactly the recorded handoffs? */
  samePath?: boolean;
  /** first handoff index where the paths differ */
  divergedAt?: number;
}

function failureKind(r: RunResult): string | null {
  return runVerdict(r).kind;
}

export async function replay(repro: Repro): Promise<ReplayOutcome> {
  const result = await runScenario(repro.scenario, repro.options);
  const kind = failureKind(result);
  const reproduced = repro.violation ? kind === repro.violation.kind : kind === null;
  if (!repro.schedule || !result.deterministic) return { result, reproduced };
  const a = repro.schedule;
  const b = result.deterministic.schedule;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const samePath = i === a.length && i === b.length;
  return { result, reproduced, samePath, divergedAt: samePath ? undefined : Math.floor(i / 2) };
}

export interface ShrinkStep {
  tried: string;
  failed: boolean;
}

export async function shrink(repro: Repro, o: { tries?: number; log?: (s: ShrinkStep) => void } = {}): Promise<{ repro: Repro; steps: ShrinkStep[] }> {
  const want = repro.violation?.kind;
  if (!want) throw new Error('this repro records no failure: nothing to shrink');
  const deterministic = repro.options.mode === 'deterministic';
  const tries = deterministic ? 1 : (o.tries ?? 3);
  const steps: ShrinkStep[] = [];
  let best = repro;
  let bestResult: RunResult | undefined;
  const attempt = async (opts: Repro['options'], what: string): Promise<boolean> => {
    for (let t = 0; t < tries; t++) {
      const r = await runScenario(best.scenario, { ...opts, hangTimeoutMs: opts.hangTimeoutMs ?? 10000 });
      if (failureKind(r) === want) {
        bestResult = r;
        best = makeRepro(best.scenario, opts, r, best.scenarioFile, r.deterministic?.schedule);
        const s = { tried: what, failed: true };
        steps.push(s);
        o.log?.(s);
        return true;
      }
    }
    const s = { tried: what, failed: false };
    steps.push(s);
    o.log?.(s);
    return false;
  };
  const cur = () => best.options;
  const cpus0 = resolveRunOptions(best.scenario, cur()).cpus;
  // 1. the run stops at the violation: no CPU needed more operations than it did by then
  if (bestResult === undefined) {
    const first = await runScenario(best.scenario, best.options);
    if (failureKind(first) !== want) throw new Error(`the repro does not fail with '${want}' any more (got ${failureKind(first) ?? 'a clean run'})`);
    bestResult = first;
    const used = Math.max(1, ...first.perCpuOps);
    if (used < (cur().ops ?? best.scenario.run.opsPerCpu)) await attempt({ ...cur(), ops: used }, `ops ${used} (as many as the failing run used)`);
  }
  // 2. fewer CPUs: halve, then step down
  for (let c = Math.floor(cpus0 / 2); c >= 2; c = Math.floor(c / 2)) {
    if (!(await attempt({ ...cur(), cpus: c, threads: deterministic || (cur().threads ?? c) >= c ? c : cur().threads }, `cpus ${c}`))) break;
  }
  for (let c = (cur().cpus ?? cpus0) - 1; c >= 2; c--) {
    if (!(await attempt({ ...cur(), cpus: c, threads: deterministic ? c : undefined }, `cpus ${c}`))) break;
  }
  // 3. fewer operations: bisect
  let hi = cur().ops ?? best.scenario.run.opsPerCpu;
  let lo = 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (await attempt({ ...cur(), ops: mid }, `ops ${mid}`)) hi = mid;
    else lo = mid + 1;
  }
  // 4. fewer preemptions
  if (deterministic) {
    for (let d = resolveRunOptions(best.scenario, cur()).preemptions - 1; d >= 1; d--) {
      if (!(await attempt({ ...cur(), preemptions: d }, `preemptions ${d}`))) break;
    }
  }
  return { repro: best, steps };
}

