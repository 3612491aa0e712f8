// Repro files: everything needed to run a failing seed again. A deterministic
// run replays exactly (same interleaving, same result, same trace); a free-mode
// repro re-runs the same seed and options, which usually but not always fails
// the same way.

import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { parseScenario, ScenarioError, formatIssues, type Scenario } from '../../engine/scenario.ts';
import { ARCH_NAMES } from '../../arch/index.ts';
import { KNOB_NAMES } from '../../inject/knobs.ts';
import { resolve_lazy_series } from '../../mm/lazy_mmu.ts';
import { PREEMPT_MODELS, type PreemptModel } from '../../hw/preempt.ts';
import { runVerdict, DEFAULT_MIGRATE_THREADS, type RunOptions, type RunResult } from '../../engine/machine.ts';

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
    // migrateThreads is written resolved: its default changed (on in deterministic mode since
    // 2026-12-06, in free mode since the ninth session), and a file must replay the same way
    // whatever the default becomes
    version: REPRO_VERSION, scenario: s, scenarioFile,
    options: { ...options, migrateThreads: options.migrateThreads ?? DEFAULT_MIGRATE_THREADS }, schedule,
    violation: v.kind !== null ? { kind: v.kind, message: v.message ?? '' } : null,
    made: { by: 'mmsim 0.1.0', at: new Date().toISOString() },
  };
}

export async function writeRepro(path: string, repro: Repro): Promise<void> {
  await writeFile(path, JSON.stringify(repro, null, 2) + '\n');
}

const pow2 = (max: number) => z.number().int().min(1).max(max).refine((n) => (n & (n - 1)) === 0, { message: 'a power of two' });

/** What a repro file's run options may be: the ranges of the run/stress flags they come from. */
const optionsSchema = z.object({
  cpus: z.number().int().min(1).max(256),
  arch: z.string().refine((a) => ARCH_NAMES.includes(a), { message: `one of: ${ARCH_NAMES.join(', ')}` }),
  seed: z.number().int().min(0).max(2 ** 31 - 1),
  ops: z.number().int().min(1).max(1e12),
  durationMs: z.number().int().min(1).max(1e9),
  threads: z.number().int().min(1).max(256),
  delay: z.number().min(0).max(1),
  tlbEntries: pow2(65536),
  knobs: z.array(z.string().refine((k) => (KNOB_NAMES as string[]).includes(k), { message: 'a bug knob (mmsim knobs lists them)' })),
  keepGoing: z.boolean(),
  hangTimeoutMs: z.number().int().min(100).max(1e9),
  mode: z.enum(['free', 'deterministic']),
  preemptions: z.number().int().min(1).max(64),
  lazyContract: z.enum(['strict', 'hint']),
  lazySeries: z.string().refine((v) => resolve_lazy_series(v) !== null, { message: 'a version of the lazy MMU series (mmsim list-series)' }),
  hotPreempt: z.number().min(0).max(1),
  overtime: z.number().int().min(1).max(64),
  preempt: z.enum(PREEMPT_MODELS as [PreemptModel, ...PreemptModel[]]),
  irq: z.number().int().min(0).max(1 << 20),
  migrateThreads: z.boolean(),
  trace: z.boolean(),
  traceEvents: pow2(1 << 24),
  cpuProfDir: z.string(),
}).partial().strict();

const reproSchema = z.object({
  version: z.literal(REPRO_VERSION),
  scenario: z.unknown(),
  scenarioFile: z.string().optional(),
  options: optionsSchema,
  schedule: z.array(z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1)).optional(), // (step, cpu) pairs of the deterministic scheduler
  violation: z.object({ kind: z.string(), message: z.string() }).nullable(),
  made: z.object({ by: z.string(), at: z.string() }).optional(),
}).strict();

export async function readRepro(path: string): Promise<Repro> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ScenarioError(code === 'ENOENT' ? `${path}: no such repro file` : `${path}: not a repro file: ${(e as Error).message}`);
  }
  const r = raw as Partial<Repro>;
  if (typeof r !== 'object' || r === null || Array.isArray(r) || r.version !== REPRO_VERSION) {
    throw new ScenarioError(`${path}: not a version-${REPRO_VERSION} mmsim repro file`);
  }
  const v = reproSchema.safeParse(r);
  if (!v.success) throw new ScenarioError(formatIssues(path, v.error));
  const rr = r as Repro;
  // a file without migrateThreads predates its default (on in deterministic mode since
  // 2026-12-06): it was written when migration between threads was off unless asked for
  return { ...rr, options: { ...rr.options, migrateThreads: rr.options.migrateThreads ?? false }, scenario: parseScenario(r.scenario, `${path}: scenario`) };
}
