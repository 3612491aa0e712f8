// npm run bench:hunt: every caught catalogue entry with the default hunting
// strategy. Per entry: the seeds and wall seconds to the first catch (seeds
// from 1, two at a time, stopping at the first failing seed), and the clean
// rate over the same seeds without the knob. JSON in
// bench/results/hunt-<date>.json, a table on stdout. Entries that hunt in the
// same scenario with the same options share one clean run.
//
//   node bench/hunt.ts [--seeds N] [--jobs J] [--only id,id] [--no-clean]
//
// Goal on the 2-core machine (issue #14): every expressible entry caught within
// 20 seeds, median time to first catch <= 5 s, 0 false positives.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism, loadavg } from 'node:os';
import { caughtEntries, findBug, type BugEntry } from '../src/tools/bugs/catalogue.ts';
import { huntEntry, entryOptions, type HuntOutcome } from '../src/tools/bugs/run.ts';
import { reproFileName, writeRepro } from '../src/tools/repro/repro.ts';

interface Row {
  id: string;
  knob: string;
  scenario: string;
  arch: string;
  budget: number;
  caught: boolean;
  seedsToFirst: number | null;
  secondsToFirst: number | null;
  kind: string | null;
  family: string | null;
  cleanSeeds: number;
  falsePositives: number;
  cleanSeconds: number;
  /** the clean run was another entry's (same scenario, options and seeds) */
  cleanShared: boolean;
  falseKinds: string[];
  falseRuns: { seed: number; kind: string | null; family: string | null; message: string | null; repro: string | null }[];
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seedsArg = arg('--seeds');
const jobs = Number(arg('--jobs') ?? 2);
const only = arg('--only')?.split(',');
const noClean = process.argv.includes('--no-clean');
const entries: BugEntry[] = only ? only.map((id) => {
  const b = findBug(id);
  if (!b) {
    process.stderr.write(`bench:hunt: --only: unknown bug '${id}'\n`);
    process.exit(2);
  }
  return b;
}) : caughtEntries();

const rows: Row[] = [];
/** repro files of the false positives (a false positive is a finding: it must replay) */
const fpDir = join(import.meta.dirname, 'results', `hunt-false-positives-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const cleanRuns = new Map<string, HuntOutcome>();
const t0 = performance.now();
for (const e of entries) {
  const seeds = seedsArg ? Number(seedsArg) : (e.budget ?? 20);
  const hit = await huntEntry(e, { seeds, jobs });
  // without the knob, entries that hunt in the same scenario with the same options run the same seeds: once
  const key = JSON.stringify([e.scenario, entryOptions(e, true), seeds]);
  let clean = noClean ? null : (cleanRuns.get(key) ?? null);
  const shared = clean !== null;
  if (!noClean && !clean) cleanRuns.set(key, (clean = await huntEntry(e, { seeds, jobs, fixed: true })));
  const row: Row = {
    id: e.id, knob: e.knob ?? '', scenario: e.scenario ?? '', arch: e.run?.arch ?? 'x86', budget: seeds,
    caught: Boolean(hit.first), seedsToFirst: hit.seedsToFirst ?? null,
    secondsToFirst: hit.firstAfterMs !== undefined ? Math.round(hit.firstAfterMs / 100) / 10 : null,
    kind: hit.first?.kind ?? null, family: hit.first?.family ?? null,
    cleanSeeds: clean?.seedsRun ?? 0, falsePositives: clean?.failures.length ?? 0,
    cleanSeconds: clean ? Math.round(clean.wallMs / 100) / 10 : 0, cleanShared: shared,
    falseKinds: clean?.failures.map((f) => `seed ${f.seed} ${f.kind}`) ?? [],
    // a false positive is a finding: keep what it said and a repro file to replay it
    falseRuns: await Promise.all((shared ? [] : clean?.failures ?? []).map(async (f) => {
      let repro: string | null = null;
      if (f.repro) {
        mkdirSync(fpDir, { recursive: true });
        repro = join(fpDir, reproFileName(f.scenario, f.seed).replace(/\.json$/, `-${e.run?.arch ?? 'x86'}.json`));
        await writeRepro(repro, f.repro);
      }
      return { seed: f.seed, kind: f.kind, family: f.family ?? null, message: f.message, repro };
    })),
  };
  rows.push(row);
  process.stderr.write(`${row.id}: ${row.caught ? `caught at seed ${row.seedsToFirst} in ${row.secondsToFirst} s (${row.family}, ${row.kind})` : `NOT caught in ${seeds} seeds`}`
    + `${clean ? `; without the knob ${row.cleanSeeds - row.falsePositives}/${row.cleanSeeds} clean in ${row.cleanSeconds} s${shared ? ' (shared)' : ''}` : ''}\n`);
}

const caught = rows.filter((r) => r.caught);
const times = caught.map((r) => r.secondsToFirst!).sort((a, b) => a - b);
const median = times.length ? times[Math.floor((times.length - 1) / 2)] : null;
const summary = {
  date: new Date().toISOString(), cores: availableParallelism(), loadavg: loadavg().map((x) => Math.round(x * 10) / 10), jobs,
  entries: rows.length, caught: caught.length, medianSecondsToFirst: median,
  maxSeedsToFirst: caught.reduce((m, r) => Math.max(m, r.seedsToFirst!), 0),
  falsePositives: rows.reduce((a, r) => a + r.falsePositives, 0), wallSeconds: Math.round((performance.now() - t0) / 1000),
  rows,
};
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `hunt-${summary.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');

const head = ['entry', 'knob', 'scenario', 'seeds to catch', 's to catch', 'found by', 'clean without knob'];
const table = rows.map((r) => [
  r.id, r.knob, r.scenario + (r.arch !== 'x86' ? ` (${r.arch})` : ''),
  r.caught ? `${r.seedsToFirst}/${r.budget}` : `- /${r.budget}`, r.caught ? String(r.secondsToFirst) : '-',
  r.family ? `${r.family}: ${r.kind}` : '-', noClean ? '-' : `${r.cleanSeeds - r.falsePositives}/${r.cleanSeeds}`,
]);
const w = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
const line = (t: string[]): string => '| ' + t.map((c, i) => c.padEnd(w[i])).join(' | ') + ' |';
console.log(line(head));
console.log('|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|');
for (const t of table) console.log(line(t));
console.log(`\n${caught.length}/${rows.length} caught; median ${median ?? '-'} s to the first catch; at most ${summary.maxSeedsToFirst} seeds; ${summary.falsePositives} false positives; load average ${summary.loadavg.join(' ')} on ${summary.cores} cores; ${summary.wallSeconds} s`);
for (const r of rows) for (const f of r.falseRuns) {
  console.log(`false positive: ${r.id} seed ${f.seed} (${f.family}): ${f.kind}: ${(f.message ?? '').split('\n')[0]}${f.repro ? `\n  replay: mmsim repro ${f.repro}` : ''}`);
}
console.log(`results: ${file}`);
