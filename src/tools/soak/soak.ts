// npm run soak -- --minutes N [--cpus C] [--seed S] [--json FILE]
//
// One machine runs the soak workload (scenarios/soak-mix.ts: faults, mremap, fork,
// munmap/mmap, madvise, truncation and hole punches on every CPU, 64 by default)
// for N minutes. Every minute the host process's resident memory and its
// ArrayBuffer/SharedArrayBuffer memory (the machine's shared memory) are sampled.
// At the end the run's audits say whether anything leaked: the live audit
// (refcounts, mapcounts) and, after every mm exits, the frames and page-table
// frames still allocated (must be 0). Exit 0: clean and nothing leaked; 1: a
// violation, a hang or a leak; 2: bad arguments; 3: a crash.

import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadScenario } from '../../engine/scenario.ts';
import { runScenario } from '../../engine/machine.ts';
import { exitCode, summary } from '../../report/summary.ts';

export interface SoakSample {
  minute: number;
  rssMiB: number;
  arrayBuffersMiB: number;
}
export interface SoakResult {
  minutes: number;
  cpus: number;
  seed: number;
  samples: SoakSample[];
  ops: number;
  syscalls: number;
  forkPtes: number;
  violations: number;
  /** the kinds of the violations (content, uaf-stale-tlb, ...) */
  violationKinds: string[];
  leakedFrames: number;
  leakedTables: number;
  auditProblems: string[];
  hang?: string;
  crash?: string;
  exit: number;
}

const USAGE = 'usage: npm run soak -- --minutes N [--cpus C] [--seed S] [--json FILE]';

function bad(msg: string): never {
  console.error(`mmsim soak: ${msg}\n${USAGE}`);
  process.exit(2);
}

export async function soak(minutes: number, cpus: number, seed: number, log: (s: string) => void = console.log): Promise<SoakResult> {
  const s = await loadScenario(fileURLToPath(new URL('../../../scenarios/soak-mix.ts', import.meta.url)));
  const mib = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
  const samples: SoakSample[] = [];
  const sample = (minute: number): void => {
    const m = process.memoryUsage();
    samples.push({ minute, rssMiB: mib(m.rss), arrayBuffersMiB: mib(m.arrayBuffers) });
    log(`  minute ${String(minute).padStart(3)}: RSS ${mib(m.rss)} MiB, ArrayBuffers (the machine's shared memory) ${mib(m.arrayBuffers)} MiB`);
  };
  const everyMs = Math.min(60_000, minutes * 60_000);
  let minute = 0;
  const timer = setInterval(() => sample(Math.round((++minute * everyMs) / 60_000 * 100) / 100), everyMs);
  log(`mmsim soak: ${s.name} on ${cpus} CPUs, seed ${seed}, ${minutes} minute(s)`);
  const t0 = performance.now();
  const r = await runScenario(s, { cpus, seed, durationMs: minutes * 60_000, hangTimeoutMs: 120_000 }).finally(() => clearInterval(timer));
  if (samples.length === 0) sample(Math.round((performance.now() - t0) / 600) / 100); // a run that stopped before the first tick (a violation) is sampled once at its end
  const after = r.teardownAudit;
  const out: SoakResult = {
    minutes, cpus, seed, samples,
    ops: r.stats.ops, syscalls: r.stats.syscalls, forkPtes: r.stats.forkPtes,
    violations: r.violations.length, violationKinds: [...new Set(r.violations.map((v) => v.kind))],
    leakedFrames: after.usedData, leakedTables: after.usedTables,
    auditProblems: [...r.audit.problems, ...after.problems],
    hang: r.hang, crash: r.crash, exit: exitCode(r),
  };
  log(summary(r));
  log(`soak: ${out.ops.toLocaleString('en-US')} operations (${out.syscalls.toLocaleString('en-US')} syscalls) in ${minutes} min; ` +
    `RSS first ${samples[0]?.rssMiB ?? '-'} MiB, last ${samples.at(-1)?.rssMiB ?? '-'} MiB; ` +
    `leaked after every mm exited: ${out.leakedFrames} frames, ${out.leakedTables} page-table frames; violations ${out.violations}`);
  return out;
}

export async function main(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({ args: argv, options: { minutes: { type: 'string' }, cpus: { type: 'string' }, seed: { type: 'string' }, json: { type: 'string' }, help: { type: 'boolean' } } }).values;
  } catch (e) {
    bad(e instanceof Error ? e.message : String(e));
  }
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (flag: string, v: string | undefined, dflt: number, int: boolean, max: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > max || (int && !Number.isInteger(n))) bad(`--${flag} ${v}: expected a ${int ? 'whole ' : ''}number in (0, ${max}]`);
    return n;
  };
  if (a.minutes === undefined) bad('--minutes is required');
  const minutes = num('minutes', a.minutes, 10, false, 10_000);
  const cpus = num('cpus', a.cpus, 64, true, 256);
  const seed = num('seed', a.seed, 1, true, 2 ** 31);
  const r = await soak(minutes, cpus, seed);
  if (a.json) writeFileSync(a.json, JSON.stringify(r, null, 2) + '\n');
  return r.exit !== 0 ? r.exit : r.leakedFrames + r.leakedTables > 0 ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
