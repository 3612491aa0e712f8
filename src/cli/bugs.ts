// `mmsim bugs list` and `mmsim bugs run ID [--fixed]`: the bug catalogue
// (src/tools/bugs/catalogue.ts) and a hunt for one entry with the default
// strategy (src/tools/bugs/run.ts).

import { type Command } from 'commander';
import { CampaignError } from '../tools/stress/stress.ts';
import { writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CATALOGUE, findBug, type BugEntry } from '../tools/bugs/catalogue.ts';
import { huntEntry, type HuntOutcome } from '../tools/bugs/run.ts';
import { readRepro, reproFileName, writeRepro } from '../tools/repro/repro.ts';
import { replay } from '../tools/repro/shrink.ts';
import { searchDetRepro } from '../tools/repro/det_search.ts';
import { toChromeTrace } from '../report/trace_export.ts';
import { htmlReport } from '../report/html_report.ts';
import { int } from './args.ts';
import type { ViolationRecord } from '../oracles/oracles.ts';

function wrap(text: string, width: number, indent: string): string {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out.map((l, i) => (i ? indent + l : l)).join('\n');
}

export function formatEntry(b: BugEntry): string {
  const ind = '    ';
  const lines = [
    `${b.id}${b.aliases.length ? ` (${b.aliases.join(', ')})` : ''}  [${b.status}${b.status === 'caught' ? ` within ${b.budget} seeds` : ''}]`,
    `${ind}${b.title}`,
    `${ind}versions: ${wrap(b.versions, 100, ind + '          ')}`,
    `${ind}path:     ${wrap(b.path, 100, ind + '          ')}`,
    `${ind}race:     ${wrap(b.race, 100, ind + '          ')}`,
  ];
  if (b.scenario || b.knob) lines.push(`${ind}hunt:     ${b.scenario ? `scenario ${b.scenario}` : 'no scenario'}${b.knob ? `, knob ${b.knob}` : ''}${b.run?.arch ? `, --arch ${b.run.arch}` : ''}${b.run?.lazyContract ? `, --lazy-contract ${b.run.lazyContract}` : ''}${b.run?.lazySeries ? `, --lazy-series ${b.run.lazySeries}` : ''}${b.oracle ? `; oracle ${b.oracle}` : ''}`);
  if (b.why) lines.push(`${ind}why:      ${wrap(b.why, 100, ind + '          ')}`);
  if (b.measured) lines.push(`${ind}measured: ${wrap(b.measured, 100, ind + '          ')}`);
  lines.push(`${ind}source:   ${wrap(b.source, 100, ind + '          ')}`);
  return lines.join('\n');
}

/** The violation's two columns: the recent events of the detecting CPU and of the other CPU involved. */
export function raceColumns(v: ViolationRecord, width = 58): string {
  const cpus = Object.keys(v.events).map(Number);
  if (cpus.length === 0) return '';
  const cols = cpus.slice(0, 2).map((c) => [`cpu ${c}${c === v.cpu ? ' (violation)' : ''}`, ...v.events[c]]);
  const rows = Math.max(...cols.map((c) => c.length));
  const out: string[] = [];
  for (let i = 0; i < rows; i++) {
    const a = (cols[0][i] ?? '').slice(0, width).padEnd(width);
    const b = cols[1] ? (cols[1][i] ?? '').slice(0, width) : '';
    out.push(`  ${a} | ${b}`.trimEnd());
    if (i === 0) out.push(`  ${''.padEnd(width, '-')}-+-${''.padEnd(cols[1] ? width : 0, '-')}`);
  }
  return out.join('\n');
}

const cell = (t: string): string => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The catalogue as the markdown table of docs/catalogue.md (test/catalogue.test.ts keeps the page equal to it). */
export function catalogueMarkdown(): string {
  const head = ['id', 'versions', 'path', 'the race', 'scenario', 'knob', 'oracle', 'status'];
  const rows = CATALOGUE.map((b) => [
    `${b.id}${b.aliases.filter((a) => a !== b.knob).length ? ` (${b.aliases.filter((a) => a !== b.knob).join(', ')})` : ''}`,
    b.versions, b.path, b.race, b.scenario ? `${b.scenario}${b.run?.arch ? ` (${b.run.arch}${b.run.lazySeries ? `, --lazy-series ${b.run.lazySeries}` : ''})` : ''}` : '-', b.knob ?? '-', b.oracle ?? '-',
    b.status === 'caught' ? `caught within ${b.budget} seeds${b.measured ? ` (measured: ${b.measured})` : ''}` : `${b.status}: ${b.why}`,
  ].map(cell));
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
}

function lookup(id: string): BugEntry {
  const b = findBug(id);
  if (!b) throw new CampaignError(`unknown bug '${id}' (mmsim bugs list shows the catalogue: a CVE, a 12-digit fix commit or a knob name)`);
  return b;
}

async function reportCatch(h: HuntOutcome, outDir: string): Promise<void> {
  const f = h.first!;
  console.log(`CAUGHT at seed ${f.seed} (${h.seedsToFirst} seed${h.seedsToFirst === 1 ? '' : 's'}, ${(h.wallMs / 1000).toFixed(1)} s; family ${f.family ?? f.mode}, ${f.mode}, ${f.threads} host thread${f.threads === 1 ? '' : 's'})`);
  console.log(`  [${f.kind}] ${(f.message ?? '').split('\n')[0]}`);
  if (!f.repro) return;
  await mkdir(outDir, { recursive: true });
  const reproPath = join(outDir, reproFileName(h.scenario.name, f.seed));
  await writeRepro(reproPath, f.repro);
  console.log(`  repro   ${reproPath} (mmsim repro ${reproPath})`);
  if (f.kind === 'hang' || f.kind === 'timeout' || f.kind === 'crash') return; // a traced re-run would hang again
  // a free-mode find: look for a deterministic twin (same configuration, seeds near it), which replays exactly
  let repro = await readRepro(reproPath);
  if (!repro.schedule) {
    const det = await searchDetRepro(repro);
    if (det) {
      const detPath = reproPath.replace(/\.json$/, '.det.json');
      await writeRepro(detPath, det);
      console.log(`  exact   ${detPath} (deterministic seed ${det.options.seed}, hot preemption ${det.options.hotPreempt}: replays the same interleaving)`);
      repro = det;
    } else console.log('  (no deterministic twin within 4 seeds: the free-mode repro re-runs the same seed and options)');
  }
  // re-run with the trace on: exact in deterministic mode, the same seed and options in free mode
  for (let attempt = 0; attempt < (repro.schedule ? 1 : 3); attempt++) {
    const out = await replay({ ...repro, options: { ...repro.options, trace: true, hangTimeoutMs: 30000 } });
    if (!out.reproduced || !out.result.violations.length) continue;
    const v = out.result.violations[0];
    console.log(`\nthe race (the recent events of the CPUs involved, oldest first):\n${raceColumns(v)}`);
    const tracePath = join(outDir, `trace-${h.scenario.name}-${f.seed}.json`);
    const reportPath = join(outDir, `report-${h.scenario.name}-${f.seed}.html`);
    await writeFile(tracePath, JSON.stringify(toChromeTrace(out.result)));
    await writeFile(reportPath, htmlReport(out.result));
    console.log(`\n  trace   ${tracePath} (ui.perfetto.dev)\n  report  ${reportPath}${out.samePath ? ' (exact replay of the recorded schedule)' : ''}`);
    return;
  }
  console.log('  (the traced re-run of this free-mode seed did not fail again: no trace; the repro file re-runs it)');
}

export function registerBugs(program: Command): void {
  const bugs = program.command('bugs').description('the catalogue of races mmsim hunts (list) and a hunt for one of them (run)');
  bugs
    .command('list')
    .description('print the catalogue: id, kernel versions, path, the race, scenario, knob, oracle, status')
    .option('--json', 'as JSON')
    .option('--markdown', 'as the markdown table of docs/catalogue.md')
    .option('--status <s>', 'only entries with this status (caught, not-expressible, pending, tooling)')
    .action((opts) => {
      const rows = CATALOGUE.filter((b) => !opts.status || b.status === opts.status);
      if (opts.json) {
        console.log(JSON.stringify(rows, null, 2));
        return;
      }
      if (opts.markdown) {
        process.stdout.write(catalogueMarkdown());
        return;
      }
      for (const b of rows) console.log(formatEntry(b) + '\n');
      const n = (s: string): number => CATALOGUE.filter((b) => b.status === s).length;
      console.log(`${CATALOGUE.length} entries: ${n('caught')} caught, ${n('not-expressible')} not expressible yet, ${n('pending')} pending, ${n('tooling')} tooling`);
    });
  bugs
    .command('run')
    .description('hunt one entry with the default strategy: the violation, the race and a trace (exit 1 caught, 0 not caught); --fixed: the same seeds without the knob (exit 0 clean, 1 a false positive)')
    .argument('<id>', 'a CVE, a fix commit (12 hex digits or more) or a knob name')
    .option('--fixed', 'run the fixed kernel (no knob) over the same seeds')
    .option('--seeds <n>', 'seeds 1..n (default: the entry\'s budget)', int('--seeds', 1, 1e6))
    .option('--jobs <j>', 'seeds in parallel', int('--jobs', 1, 64), 2)
    .option('--out-dir <dir>', 'where the repro, trace and report go', '.')
    .action(async (id: string, opts) => {
      const b = lookup(id);
      if (b.status !== 'caught' || !b.scenario) {
        console.log(formatEntry(b));
        throw new CampaignError(`${b.id} cannot be run: ${b.status}${b.why ? ` (${b.why})` : ''}`);
      }
      const seeds = opts.seeds ?? b.budget ?? 20;
      console.log(`mmsim bugs run ${b.id}${opts.fixed ? ' --fixed' : ''}: ${b.scenario}${opts.fixed ? ' without' : ' with'} knob ${b.knob}${b.run?.arch ? ` (--arch ${b.run.arch}${b.run.lazySeries ? ` --lazy-series ${b.run.lazySeries}` : ''})` : ''}, seeds 1..${seeds}, hunting swarm, ${opts.jobs} jobs`);
      const h = await huntEntry(b, {
        seeds, fixed: Boolean(opts.fixed), jobs: opts.jobs,
        onSeed: (t) => process.stderr.write(`  seed ${t.seed}: ${t.ok ? 'clean' : `[${t.kind}]`} (${t.family ?? t.mode})\n`),
      });
      if (opts.fixed) {
        if (h.failures.length === 0) {
          console.log(`clean: ${h.seedsRun} seeds without ${b.knob}, no failure (${(h.wallMs / 1000).toFixed(1)} s)`);
          process.exitCode = 0;
        } else {
          console.log(`FALSE POSITIVE: ${h.failures.length} of ${h.seedsRun} seeds failed without the knob`);
          for (const f of h.failures.slice(0, 5)) console.log(`  seed ${f.seed}: [${f.kind}] ${(f.message ?? '').split('\n')[0]}`);
          await reportCatch(h, resolve(opts.outDir));
          process.exitCode = 1;
        }
        return;
      }
      if (!h.first) {
        console.log(`not caught in ${h.seedsRun} seeds (${(h.wallMs / 1000).toFixed(1)} s)`);
        process.exitCode = 0;
        return;
      }
      await reportCatch(h, resolve(opts.outDir));
      process.exitCode = 1;
    });
}
