// Repro files: everything needed to run a failing seed again. A deterministic
// run replays exactly (same interleaving, same result, same trace); a free-mode
// repro re-runs the same seed and options, which usually but not always fails
// the same way.

import { readFile, writeFile } from 'node:fs/promises';
import { parseScenario, ScenarioError, type Scenario } from '../../engine/scenario.ts';
import { runVerdict, type RunOptions, type RunResult } from '../../engine/machine.ts';

export const REPRO_VERSION = 1;

export interface Repro {
  version: number;
  /** the parsed scenario itself, so the repro does not depend on the file staying the same */
  scenario: Scenario;
  /** where it came from, for people */
  scenarioFile?: string;
  options: RunOptions & { mode?: 'free' | 'deterministic'; preemptions?: number };
  /** deterministic mode: the scheduler's decisions (which CPU ran after each handoff) */
  schedule?: number[];
  violation: { kind: string; message: string } | null;
  /** mmsim version and date, for people */
  made: { by: string; at: string };
}

export function reproFileName(scenario: string, seed: number): string {
  return `repro-${scenario}-${seed}.json`;
}

export function makeRepro(s: Scenario, options: Repro['options'], r: RunResult, scenarioFile?: string, schedule?: number[]): Repro {
  const v = runVerdict(r);
  return {
    version: REPRO_VERSION, scenario: s, scenarioFile, options, schedule,
    violation: v.kind !== null ? { kind: v.kind, message: v.message ?? '' } : null,
    made: { by: 'mmsim 0.1.0', at: new Date().toISOString() },
  };
}

export async function writeRepro(path: string, repro: Repro): Promise<void> {
  await writeFile(path, JSON.stringify(repro, null, 2) + '\n');
}

export async function readRepro(path: string): Promise<Repro> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ScenarioError(code === 'ENOENT' ? `${path}: no such repro file` : `${path}: not a repro file: ${(e as Error).message}`);
  }
  const r = raw as Partial<Repro>;
  if (typeof r !== 'object' || r === null || r.version !== REPRO_VERSION || typeof r.options !== 'object') {
    throw new ScenarioError(`${path}: not a version-${REPRO_VERSION} mmsim repro file`);
  }
  return { ...(r as Repro), scenario: parseScenario(r.scenario, `${path}: scenario`) };
}
