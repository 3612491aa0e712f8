// `mmsim stress merge <files.jsonl...>`: the shards of one campaign (`mmsim stress
// --shard i/n --out shard-i.jsonl`, run by a CI matrix, a Kubernetes indexed job or
// GNU parallel) put back together: the campaign's table and failure list from the
// shards' JSON lines, and the campaign's exit code (0 every seed clean, 1 a seed failed).
//
// It reads only the JSON lines (the SeedResult records of stress.ts) and computes
// the table the way runCampaign does: per scenario the seeds, failures by kind,
// simulated ops/s (sum of ops over the sum of the seeds' run time), the median of
// the seeds' p50 and p99 shootdown latency and the worst p99; the campaign's own
// wall time is not in the lines, so the footer gives the sum of the seeds' run time.
// Failing seeds are listed by seed (what a --jobs 1 campaign prints), each with its
// repro file, looked for where the shard wrote it, then in --repro-dir, then next
// to the JSON-lines file it came from (a batch engine's volume copied elsewhere).
//
// Bad input is one line and exit 2: an unreadable file, a line that is not a seed
// result (file:line), a seed present twice (a shard given twice, or shards of
// different --shard n), one scenario run with different options in different files
// (not one campaign), and with --seeds: a seed of the campaign missing.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CampaignError, formatTable, type CampaignSummary, type ScenarioSummary, type SeedResult } from './stress.ts';

export interface MergeOptions {
  /** JSON-lines files written by `mmsim stress --out` (one per shard) */
  files: string[];
  /** the campaign's --seeds and --seed-base: when given, every seed must be present */
  seeds?: number;
  seedBase?: number;
  /** where the repro files are now (when not at the path the shard wrote) */
  reproDir?: string;
  /** also write the merged JSON lines here, sorted by seed */
  out?: string;
}

export interface MergeSummary extends CampaignSummary {
  files: string[];
  /** per scenario, seeds missing between its smallest and largest seed (or from the --seeds range) */
  gaps: { scenario: string; missing: number; examples: number[] }[];
}

interface Located {
  r: SeedResult;
  where: string;
}

const FIELDS: [keyof SeedResult, string][] = [
  ['scenario', 'string'], ['seed', 'number'], ['ok', 'boolean'], ['exit', 'number'], ['wallMs', 'number'], ['ops', 'number'],
  ['shootdowns', 'number'], ['p50Ns', 'number'], ['p99Ns', 'number'], ['cpus', 'number'], ['threads', 'number'], ['mode', 'string'],
];

function parseLine(text: string, where: string): SeedResult {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CampaignError(`${where}: not JSON (${(e as Error).message}); expected a line of mmsim stress --out`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CampaignError(`${where}: not a seed result (expected a JSON object of mmsim stress --out)`);
  const o = v as Record<string, unknown>;
  for (const [k, t] of FIELDS) {
    if (typeof o[k] !== t) throw new CampaignError(`${where}: not a seed result ('${k}' should be a ${t}, is ${JSON.stringify(o[k])})`);
  }
  if (!Number.isInteger(o.seed)) throw new CampaignError(`${where}: seed ${String(o.seed)} is not a whole number`);
  if (!Array.isArray(o.knobs)) throw new CampaignError(`${where}: not a seed result ('knobs' should be a list)`);
  return o as unknown as SeedResult;
}

/** What must be equal across the lines of one scenario for them to be one campaign. */
function signature(r: SeedResult): string {
  return `cpus ${r.cpus}, threads ${r.threads}, mode ${r.mode}, knobs [${[...r.knobs].sort().join(', ')}]`;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Where a failing seed's repro file is now: as written, in reproDir, next to its JSON-lines file. */
function findRepro(path: string, reproDir: string | undefined, file: string): string {
  const candidates = [path, ...(reproDir ? [join(reproDir, basename(path))] : []), join(dirname(file), basename(path))];
  return candidates.find((c) => existsSync(c)) ?? path;
}

/** The re-run line of a failure without a repro file: what the line tells (the other run flags are the campaign's). */
function rerunFromLine(r: SeedResult): string {
  // `<scenario>@<arch>`: a row of a campaign over several arches
  const [name, arch] = r.scenario.split('@');
  const a = ['mmsim', 'run', name, ...(arch ? ['--arch', arch] : []), '--seed', String(r.seed), '--cpus', String(r.cpus), '--threads', String(r.threads)];
  if (r.mode === 'deterministic') a.push('--mode', 'deterministic');
  for (const k of r.knobs) a.push('--knob', k);
  return `${a.join(' ')} (plus the campaign's other run flags)`;
}

export function mergeResults(o: MergeOptions): MergeSummary {
  if (o.files.length === 0) throw new CampaignError('no JSON-lines file given');
  const seen = new Map<string, string>();
  const order: string[] = [];
  const byScenario = new Map<string, Located[]>();
  const sig = new Map<string, { s: string; where: string }>();
  for (const file of o.files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new CampaignError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].trim() === '') continue;
      const where = `${file}:${i + 1}`;
      const r = parseLine(lines[i], where);
      const key = `${r.scenario}\u0000${r.seed}`;
      const before = seen.get(key);
      if (before) throw new CampaignError(`${where}: ${r.scenario} seed ${r.seed} is also in ${before} (a shard given twice, or shards of different --shard n?)`);
      seen.set(key, where);
      const s = signature(r);
      const first = sig.get(r.scenario);
      if (!first) sig.set(r.scenario, { s, where });
      else if (first.s !== s) throw new CampaignError(`${where}: ${r.scenario} ran with ${s}, but with ${first.s} at ${first.where}: not one campaign`);
      if (!byScenario.has(r.scenario)) {
        byScenario.set(r.scenario, []);
        order.push(r.scenario);
      }
      byScenario.get(r.scenario)!.push({ r: { ...r }, where: file });
    }
  }
  if (order.length === 0) throw new CampaignError(`no seed results in ${o.files.join(', ')} (empty files)`);
  const gaps: MergeSummary['gaps'] = [];
  for (const name of order) {
    const seeds = byScenario.get(name)!.map((x) => x.r.seed);
    const lo = o.seeds !== undefined ? (o.seedBase ?? 1) : Math.min(...seeds);
    const hi = o.seeds !== undefined ? lo + o.seeds - 1 : Math.max(...seeds);
    const have = new Set(seeds);
    const missing: number[] = [];
    let count = 0;
    for (let s = lo; s <= hi; s++) {
      if (have.has(s)) continue;
      count++;
      if (missing.length < 5) missing.push(s);
    }
    if (count) gaps.push({ scenario: name, missing: count, examples: missing });
    if (o.seeds !== undefined) {
      const outside = seeds.find((s) => s < lo || s > hi);
      if (outside !== undefined) throw new CampaignError(`${seen.get(`${name}\u0000${outside}`)}: ${name} seed ${outside} is outside --seed-base ${lo} --seeds ${o.seeds}`);
    }
  }
  if (o.seeds !== undefined && gaps.length) {
    const g = gaps[0];
    throw new CampaignError(`${g.scenario}: ${g.missing} of the campaign's ${o.seeds} seeds missing (seed ${g.examples.join(', ')}${g.missing > g.examples.length ? ', ...' : ''}): a shard's file left out or a shard that did not finish`);
  }

  // ---- the campaign's aggregates, as runCampaign's record() computes them
  const fails: { r: SeedResult; si: number }[] = [];
  const reproFiles: string[] = [];
  const scenarios: ScenarioSummary[] = order.map((name, si) => {
    const rows = byScenario.get(name)!.sort((a, b) => a.r.seed - b.r.seed);
    let ops = 0;
    let wallMs = 0;
    let failed = 0;
    const kinds: Record<string, number> = {};
    const p50: number[] = [];
    const p99: number[] = [];
    let first: SeedResult | undefined;
    for (const { r, where } of rows) {
      ops += r.ops;
      wallMs += r.exec ? r.wallMs : 0;
      if (r.exec && r.shootdowns > 0) {
        p50.push(r.p50Ns);
        p99.push(r.p99Ns);
      }
      if (!r.ok) {
        failed++;
        const kind = r.kind ?? 'violation';
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        if (r.repro) {
          r.repro = findRepro(r.repro, o.reproDir, where);
          reproFiles.push(r.repro);
        }
        first ??= r;
        fails.push({ r, si });
      }
    }
    return {
      scenario: name, file: name, seeds: rows.length, failed, kinds,
      opsPerSec: wallMs > 0 ? ops / (wallMs / 1000) : 0,
      p50Ns: median(p50), p99Ns: median(p99), worstP99Ns: p99.reduce((m, x) => Math.max(m, x), 0),
      firstFailure: first, rerun: first && !first.repro ? rerunFromLine(first) : undefined,
    };
  });
  // by seed, then in scenario order: the order a --jobs 1 campaign finishes them
  const failures = fails.sort((a, b) => a.r.seed - b.r.seed || a.si - b.si).map((f) => f.r);
  const runs = scenarios.reduce((n, s) => n + s.seeds, 0);
  const failed = failures.length;
  const wallMs = scenarios.reduce((n, s) => n + byScenario.get(s.scenario)!.reduce((m, x) => m + x.r.wallMs, 0), 0);
  if (o.out) {
    const all = order.flatMap((n) => byScenario.get(n)!.map((x) => x.r)).sort((a, b) => a.seed - b.seed || order.indexOf(a.scenario) - order.indexOf(b.scenario));
    writeFileSync(o.out, all.map((r) => JSON.stringify(r) + '\n').join(''));
  }
  const allSeeds = [...seen.keys()].map((k) => Number(k.split('\u0000')[1]));
  return {
    planned: o.seeds !== undefined ? o.seeds * order.length : runs, runs, failed, interrupted: false, wallMs,
    seedsPerSec: 0, jobs: 0, shard: null, seedBase: o.seedBase ?? Math.min(...allSeeds), seeds: o.seeds ?? runs,
    out: o.out ? resolve(o.out) : '', reproDir: o.reproDir ? resolve(o.reproDir) : '', scenarios, failures, reproFiles,
    exitCode: failed > 0 ? 1 : 0, files: o.files, gaps,
  };
}

/** The campaign's table (formatTable of stress.ts) with a footer saying what was merged. */
export function formatMerge(m: MergeSummary): string {
  const lines = formatTable(m).split('\n');
  const foot = lines.findIndex((l) => /^[\d,]+ of [\d,]+ runs/.test(l));
  if (foot >= 0) {
    lines[foot] = `${m.runs.toLocaleString('en-US')} runs merged from ${m.files.length} file${m.files.length === 1 ? '' : 's'}`
      + ` (the seeds ran for ${(m.wallMs / 1000).toFixed(1)} s in all); ${m.failed ? `${m.failed.toLocaleString('en-US')} FAILED` : 'no failure'}`;
  }
  const res = lines.findIndex((l) => l.startsWith('results: '));
  if (res >= 0) lines[res] = `results: ${m.files.join(', ')}${m.out ? ` (merged: ${m.out})` : ''}`;
  for (const [i, g] of m.gaps.entries()) {
    lines.splice(res >= 0 ? res + 1 + i : lines.length, 0,
      `WARNING: ${g.scenario}: ${g.missing} seed${g.missing === 1 ? '' : 's'} missing between its first and last (seed ${g.examples.join(', ')}${g.missing > g.examples.length ? ', ...' : ''}): a shard's file left out? (--seeds N makes this an error)`);
  }
  return lines.join('\n');
}
