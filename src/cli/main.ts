// The mmsim command line.

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadScenario, resolveScenario, ScenarioError, SCENARIO_DIR } from '../engine/scenario.ts';
import { int, prob, knob, lazySeries } from './args.ts';
import { runScenario, resolveRunOptions, withScenarioKnobs, type RunOptions } from '../engine/machine.ts';
import { summary, exitCode } from '../report/summary.ts';
import { KNOBS } from '../inject/knobs.ts';
import { ARCH_NAMES } from '../arch/index.ts';
import { LAZY_SERIES, LAZY_SERIES_LATEST, SERIES_CALL_SITES, MMSIM_CALL_SITES } from '../mm/lazy_mmu.ts';
import { toChromeTrace } from '../report/trace_export.ts';
import { htmlReport } from '../report/html_report.ts';
import { registerStress } from './stress.ts';
import { registerSelftest } from './selftest.ts';
import { makeRepro, readRepro, reproFileName, writeRepro, type Repro } from '../tools/repro/repro.ts';
import { replay as replayRepro, shrink } from '../tools/repro/shrink.ts';
import { registerReplay } from './strace.ts';
import { registerBugs } from './bugs.ts';
import { registerDifftest } from './difftest.ts';

function describeSize(r: Repro): string {
  const o = r.options;
  const ro = resolveRunOptions(r.scenario, o);
  return `${ro.cpus} CPUs, ${o.ops ?? r.scenario.run.opsPerCpu} ops/CPU${ro.deterministic ? `, d=${ro.preemptions}` : ''}`;
}

const EXIT_BAD_INPUT = 2;
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('mmsim')
    .description('SMP simulator of Linux memory management: page tables, TLBs and shootdowns under real concurrency')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

  program
    .command('run')
    .description('run a scenario and print a summary (exit 0 clean, 1 violation or hang, 2 bad input, 3 crash)')
    .argument('<scenario>', 'a scenario file (.ts or .json) or a name from the library (mmsim list)')
    .option('--cpus <n>', 'simulated CPUs (1-256)', int('--cpus', 1, 256))
    .addOption(new Option('--arch <arch>', 'TLB-flush model').choices(ARCH_NAMES))
    .option('--seed <n>', 'random seed', int('--seed', 0, 2 ** 31 - 1))
    .option('--ops <n>', 'operations per CPU', int('--ops', 1, 1e12))
    .option('--duration <ms>', 'run for this long instead of a fixed number of operations', int('--duration', 1, 1e9))
    .option('--threads <t>', 'host threads carrying the CPUs (1 = inline on the main thread; default one per CPU)', int('--threads', 1, 256))
    .addOption(new Option('--mode <mode>', 'free: CPUs race on the OS scheduler; deterministic: one at a time, a seeded scheduler picks').choices(['free', 'deterministic']))
    .option('--preemptions <d>', 'deterministic mode: PCT preemption bound (default 3)', int('--preemptions', 1, 64))
    .option('--hot-preempt <p>', 'deterministic mode: probability of a preemption right after a hot event (PTE write, free, flush, unlock, TLB fill; default 0)', prob)
    .option('--overtime <k>', 'deterministic mode: a CPU that has done its operations keeps running while another has not, up to k times its budget (default 1)', int('--overtime', 1, 64))
    .addOption(new Option('--lazy-contract <c>', 'reading of the range-aware lazy_mmu_mode_enable_with_ptes(): strict (no update outside the range) or hint').choices(['strict', 'hint']))
    .option('--lazy-series <v>', `version of Gordeev's range-aware lazy MMU series: ${Object.keys(LAZY_SERIES).join(', ')} or latest (= ${LAZY_SERIES_LATEST}, the default); mmsim list-series`, lazySeries)
    .addOption(new Option('--preempt <model>', 'preemption inside kernel code: none, full (default) or rt (PREEMPT_RT: spinlocks sleep)').choices(['none', 'full', 'rt']))
    .option('--irq <n>', 'device interrupts at 1 in N scheduling points of kernel code, 0 none (default: the scenario\'s machine.irq); the handler maps, uses and unmaps a linear-map page (DEBUG_PAGEALLOC)', int('--irq', 0, 1 << 20))
    .option('--migrate-threads', 'a preempted task may also move to a CPU another host thread carries (the default, in both modes: one thread per CPU, or hosted: to another thread\'s CPUs as well as its own; docs/concurrency.md)')
    .option('--no-migrate-threads', 'a preempted task moves only among its own thread\'s CPUs (free mode\'s default until the ninth session, deterministic mode\'s until 2026-12-06)')
    .option('--delay <p>', 'probability of a random delay at each scheduling point (widens race windows)', prob)
    .option('--tlb <entries>', 'TLB entries per CPU (power of two)', int('--tlb', 1, 65536))
    .option('--knob <name>', 'turn on a bug-injection knob (repeatable)', knob, [] as string[])
    .option('--keep-going', 'do not stop at the first violation')
    .option('--hang-timeout <ms>', 'declare a hang after this long without progress (up to 4x longer when the host is loaded: its load average per core)', int('--hang-timeout', 100, 1e9))
    .option('--json <file>', 'also write the result as JSON')
    .option('--cpu-prof <dir>', 'write a V8 CPU profile per host thread (host-<n>.cpuprofile; open in Chrome DevTools)')
    .option('--repro-dir <dir>', 'where a failing run writes its repro file', '.')
    .option('--no-repro', 'do not write a repro file on failure')
    .option('--trace <file>', 'write a Chrome trace-event JSON of the run (open it in ui.perfetto.dev)')
    .option('--report <file>', 'write a self-contained HTML report of the run')
    .option('--trace-accesses', 'keep every read and write in the trace (default: per-CPU rate counters, and single accesses only just before a violation)')
    .action(async (arg: string, opts) => {
      const file = await resolveScenario(arg);
      const s = await loadScenario(file);
      if (opts.tlb !== undefined && opts.tlb & (opts.tlb - 1)) throw new InvalidArgumentError('--tlb must be a power of two');
      const asked: RunOptions = {
        cpus: opts.cpus, arch: opts.arch, seed: opts.seed, ops: opts.ops, durationMs: opts.duration,
        threads: opts.threads, delay: opts.delay, tlbEntries: opts.tlb, mode: opts.mode, preemptions: opts.preemptions, hotPreempt: opts.hotPreempt, overtime: opts.overtime,
        lazyContract: opts.lazyContract, lazySeries: opts.lazySeries,
        preempt: opts.preempt, irq: opts.irq, migrateThreads: opts.migrateThreads,
        knobs: withScenarioKnobs(s, opts.knob),
        keepGoing: opts.keepGoing, hangTimeoutMs: opts.hangTimeout, cpuProfDir: opts.cpuProf,
      };
      // the repro records the CPUs and the seed even when they came from the scenario
      const resolved = resolveRunOptions(s, asked);
      const options: RunOptions = { ...asked, cpus: resolved.cpus, seed: resolved.seed };
      const r = await runScenario(s, { ...options, trace: Boolean(opts.trace || opts.report) });
      console.log(summary(r));
      if (exitCode(r) !== 0 && opts.repro) {
        const path = join(opts.reproDir, reproFileName(s.name, r.seed));
        await writeRepro(path, makeRepro(s, { ...options, mode: r.deterministic ? 'deterministic' : 'free' }, r, file, r.deterministic?.schedule));
        console.log(`  repro         ${path} (mmsim repro ${path}; mmsim shrink ${path})`);
      }
      if (opts.json) await writeFile(opts.json, JSON.stringify({ ...r, trace: undefined }, null, 2));
      if (opts.trace) await writeFile(opts.trace, JSON.stringify(toChromeTrace(r, { accesses: opts.traceAccesses ? 'all' : 'counters' })));
      if (opts.report) await writeFile(opts.report, htmlReport(r));
      process.exitCode = exitCode(r);
    });

  program
    .command('repro')
    .alias('replay-run')
    .description('re-run a repro file; deterministic repros replay the exact interleaving (exit 1 when the failure reproduces)')
    .argument('<repro>', 'a repro-<scenario>-<seed>.json file')
    .option('--trace <file>', 'write a Chrome trace-event JSON of the replay')
    .option('--report <file>', 'write an HTML report of the replay')
    .action(async (path: string, opts) => {
      const repro = await readRepro(path);
      const out = await replayRepro({ ...repro, options: { ...repro.options, trace: Boolean(opts.trace || opts.report) } });
      console.log(summary(out.result));
      const want = repro.violation ? `[${repro.violation.kind}]` : 'a clean run';
      console.log(`  replay        ${out.reproduced ? 'reproduced' : 'did NOT reproduce'} ${want}` +
        (out.samePath === undefined ? ' (free mode: same seed and options, not an exact interleaving)' : out.samePath ? `, exactly (${repro.schedule!.length / 2} handoffs identical)` : `, but the interleaving diverged at handoff ${out.divergedAt}`));
      if (opts.trace) await writeFile(opts.trace, JSON.stringify(toChromeTrace(out.result)));
      if (opts.report) await writeFile(opts.report, htmlReport(out.result));
      process.exitCode = exitCode(out.result);
    });

  program
    .command('shrink')
    .description('find a smaller run (CPUs, operations, preemptions) that still fails the same way; writes <repro>.min.json')
    .argument('<repro>', 'a repro file')
    .option('--tries <n>', 'free-mode repros: runs per candidate', int('--tries', 1, 100), 3)
    .option('--out <file>', 'where to write the smaller repro')
    .action(async (path: string, opts) => {
      const repro = await readRepro(path);
      const before = describeSize(repro);
      const { repro: min, steps } = await shrink(repro, { tries: opts.tries, log: (st) => console.log(`  ${st.failed ? 'still fails' : 'passes    '}  ${st.tried}`) });
      const out = opts.out ?? path.replace(/\.json$/, '') + '.min.json';
      await writeRepro(out, min);
      console.log(`shrunk ${before} -> ${describeSize(min)} in ${steps.length} runs; wrote ${out}`);
    });

  registerStress(program);
  registerReplay(program);
  registerDifftest(program);
  registerSelftest(program);
  registerBugs(program);

  program
    .command('list')
    .description('list the scenario library')
    .action(async () => {
      const files = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.ts') || f.endsWith('.json')).sort();
      for (const f of files) {
        const s = await loadScenario(join(SCENARIO_DIR, f));
        console.log(`${s.name.padEnd(28)} ${s.description}`);
      }
    });

  program
    .command('list-series')
    .description("list the versions of Gordeev's range-aware lazy MMU series that --lazy-series can pick, and what each changes")
    .action(() => {
      for (const [name, v] of Object.entries(LAZY_SERIES)) {
        const tag = name === LAZY_SERIES_LATEST ? `${name} (latest, default)` : name;
        console.log(`${tag.padEnd(22)} ${v.date.padEnd(10)} ${v.api}${v.cover ? `  <${v.cover}>` : ''}`);
        console.log(`${''.padEnd(22)} s390: ${v.s390}`);
        console.log(`${''.padEnd(22)} ${v.changes}`);
      }
      console.log(`\ncall sites of every posted version: ${SERIES_CALL_SITES.join('; ')}`);
      console.log(`modelled in mmsim: ${MMSIM_CALL_SITES.join('; ')}`);
      console.log('v7 and v8 (15 patches, 7 Oct 2026, <cover.1791365932.git.agordeev@linux.ibm.com>) were posted but their text was not available: docs/lazy-mmu-series.md');
    });

  program
    .command('knobs')
    .description('list the bug-injection knobs')
    .action(() => {
      for (const [name, k] of Object.entries(KNOBS)) console.log(`${name.padEnd(36)} ${k.what}\n${''.padEnd(36)} (${k.where}; ${k.source})`);
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return EXIT_BAD_INPUT; // commander already printed the one-line error
    }
    if (e instanceof ScenarioError || e instanceof InvalidArgumentError) {
      process.stderr.write(`mmsim: ${e.message}\n`);
      return EXIT_BAD_INPUT;
    }
    throw e;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
