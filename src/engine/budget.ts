// How long a run lasts, per scheduling mode.
//
// Free mode: --ops N per CPU, or --duration ms of wall time (a scenario's
// run.durationMs when no --ops is given). Deterministic mode must not depend on
// time, so a duration becomes an operation budget there: DET_OPS_PER_MS
// operations per CPU per millisecond asked for (the order of what a
// deterministic run does in a millisecond on one core: every handoff is a
// futex wake of another thread), at least DET_MIN_OPS. A scenario's own
// run.delay (spins that widen windows in free mode) is dropped there too: the
// scheduler decides the interleaving, and time must not steer it. An explicit
// --delay with --mode deterministic is still refused (machine.ts checkRunOptions).
import type { Scenario } from './scenario.ts';
import type { RunOptions } from './machine.ts';

/** deterministic mode: operations per CPU per millisecond of a --duration */
export const DET_OPS_PER_MS = 2;
export const DET_MIN_OPS = 100;

export interface Budget {
  delay: number;
  /** wall-clock limit (free mode only) */
  durationMs: number | undefined;
  /** operations per CPU (MAX_SAFE_INTEGER when a duration limits the run) */
  ops: number;
}

export function freeBudget(s: Scenario, o: RunOptions): Budget {
  const durationMs = o.durationMs ?? (o.ops === undefined ? s.run.durationMs : undefined);
  return {
    delay: o.delay ?? s.run.delay,
    durationMs,
    ops: durationMs !== undefined ? Number.MAX_SAFE_INTEGER : (o.ops ?? s.run.opsPerCpu),
  };
}

/** The operation budget a duration stands for in deterministic mode. */
export function durationToOps(durationMs: number): number {
  return Math.max(DET_MIN_OPS, Math.round(durationMs * DET_OPS_PER_MS));
}

export function detBudget(s: Scenario, o: RunOptions): Budget {
  const durationMs = o.durationMs ?? (o.ops === undefined ? s.run.durationMs : undefined);
  // an explicit --delay stays (machine.ts refuses it with a clear line); the scenario's own is dropped
  return { delay: o.delay ?? 0, durationMs: undefined, ops: durationMs !== undefined ? durationToOps(durationMs) : (o.ops ?? s.run.opsPerCpu) };
}
