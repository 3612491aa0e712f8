// `mmsim stress`: many seeds in parallel (see src/tools/stress/stress.ts).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ARCH_NAMES } from '../arch/index.ts';
import { runCampaign, parseShard, type TaskOptions } from '../tools/stress/stress.ts';
import { int, prob, knob, lazySeries } from './args.ts';
import { mergeResults, formatMerge } from '../tools/stress/merge.ts';

function shard(v: string): string {
  try {
    parseShard(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

/** --arch: one TLB-flush model, a comma-separated list, or 'all' */
function arches(v: string): string[] {
  const list = v === 'all' ? [...ARCH_NAMES] : v.split(',').map((x) => x.trim());
  for (const a of list) {
    if (!(ARCH_NAMES as readonly string[]).includes(a)) throw new InvalidArgumentError(`unknown arch '${a}'; one or more of ${ARCH_NAMES.join(', ')} (comma-separated), or all`);
  }
  if (new Set(list).size !== list.length) throw new InvalidArgumentError(`an arch is given twice in '${v}'`);
  return list;
}

export function registerStress(program: Command): void {
  const stress = program
    .command('stress')
    .description('run many seeds of scenarios in parallel: JSON lines, repro files for failures, a table (exit 0 all clean, 1 a seed failed, 2 bad input)')
    .argument('<scenario...>', "scenario files (.ts or .json) or names from the library (mmsim list); 'all': every library scenario")
    .option('--seeds <n>', 'seeds per scenario', int('--seeds', 1, 1e9), 100)
    .option('--seed-base <n>', 'first seed: the campaign runs seeds base .. base+n-1', int('--seed-base', 0, 2 ** 31 - 1), 1)
    .option('--jobs <j>', 'seeds run in parallel (default: available cores)', int('--jobs', 1, 1024))
    .option('--shard <i/n>', 'run only shard i of n (0-based): the seeds base+k with k mod n = i', shard)
    .option('--out <file>', "JSON lines, one per seed ('-': stdout, the table then goes to stderr)", 'stress-results.jsonl')
    .option('--repro-dir <dir>', 'where repro-<scenario>-<seed>.json files of failing seeds go', '.')
    .option('--no-progress', 'no progress bar (there is none either when stderr is not a terminal)')
    .option('--task-timeout <ms>', 'a seed running longer than this fails as a timeout (default 10 min + --duration)', int('--task-timeout', 100, 1e10))
    .option('--cpus <n>', 'simulated CPUs (1-256)', int('--cpus', 1, 256))
    .option('--arch <arch>', `TLB-flush model, or several (comma-separated, or 'all': ${ARCH_NAMES.join(', ')}): every scenario runs on each, rows named <scenario>@<arch>`, arches)
    .option('--ops <n>', 'operations per CPU', int('--ops', 1, 1e12))
    .option('--duration <ms>', 'run each seed for this long instead of a fixed number of operations', int('--duration', 1, 1e9))
    .option('--threads <t>', 'host threads per seed (default 1: inline, every CPU on the task thread; deterministic: one per CPU)', int('--threads', 1, 256))
    .option('--delay <p>', 'probability of a random delay at each scheduling point (widens race windows)', prob)
    .option('--tlb <entries>', 'TLB entries per CPU (power of two)', int('--tlb', 1, 65536))
    .option('--knob <name>', 'turn on a bug-injection knob (repeatable)', knob, [] as string[])
    .addOption(new Option('--mode <mode>', 'free: CPUs race on the OS scheduler; deterministic: one at a time, a seeded scheduler picks').choices(['free', 'deterministic']))
    .option('--preemptions <d>', 'deterministic mode: PCT preemption bound (default 3)', int('--preemptions', 1, 64))
    .option('--hot-preempt <p>', 'deterministic mode: probability of a preemption right after a hot event (PTE write, free, flush, unlock, TLB fill; default 0)', prob)
    .option('--overtime <k>', 'deterministic mode: a CPU that has done its operations keeps running while another has not, up to k times its budget (default 1)', int('--overtime', 1, 64))
    .addOption(new Option('--lazy-contract <c>', 'reading of the range-aware lazy_mmu_mode_enable_with_ptes(): strict or hint').choices(['strict', 'hint']))
    .option('--lazy-series <v>', 'version of Gordeev\'s lazy MMU series (mmsim list-series; default latest)', lazySeries)
    .addOption(new Option('--preempt <model>', 'preemption inside kernel code: none, full (default) or rt (PREEMPT_RT: spinlocks sleep)').choices(['none', 'full', 'rt']))
    .option('--irq <n>', 'device interrupts at 1 in N scheduling points of kernel code, 0 none (default: the scenario\'s machine.irq); the handler maps, uses and unmaps a linear-map page (DEBUG_PAGEALLOC)', int('--irq', 0, 1 << 20))
    .option('--migrate-threads', 'a preempted task may also move to a CPU another host thread carries (the default, in both modes: one thread per CPU, or hosted: to another thread\'s CPUs as well as its own; docs/concurrency.md)')
    .option('--no-migrate-threads', 'a preempted task moves only among its own thread\'s CPUs (free mode\'s default until the ninth session, deterministic mode\'s until 2026-12-06)')
    .option('--hang-timeout <ms>', 'declare a hang after this long without progress (up to 4x longer when the host is loaded: its load average per core)', int('--hang-timeout', 100, 1e9))
    .action(async (scenarios: string[], opts) => {
      if (opts.tlb !== undefined && opts.tlb & (opts.tlb - 1)) throw new InvalidArgumentError('--tlb must be a power of two');
      const run: TaskOptions = {
        cpus: opts.cpus, arch: opts.arch?.length === 1 ? opts.arch[0] : undefined, ops: opts.ops, durationMs: opts.duration, threads: opts.threads, delay: opts.delay,
        tlbEntries: opts.tlb, knobs: opts.knob.length ? opts.knob : undefined, hangTimeoutMs: opts.hangTimeout,
        mode: opts.mode, preemptions: opts.preemptions, hotPreempt: opts.hotPreempt, overtime: opts.overtime, lazyContract: opts.lazyContract, lazySeries: opts.lazySeries, preempt: opts.preempt, irq: opts.irq, migrateThreads: opts.migrateThreads,
      };
      // Ctrl-C: stop, abandon the running seeds, still print the table of the finished ones
      const stop = new AbortController();
      const onSigint = (): void => stop.abort();
      process.once('SIGINT', onSigint);
      try {
        const sum = await runCampaign({
          scenarios, arches: opts.arch?.length > 1 ? opts.arch : undefined, seeds: opts.seeds, seedBase: opts.seedBase, jobs: opts.jobs, shard: opts.shard, out: opts.out,
          reproDir: opts.reproDir, progress: opts.progress, run, taskTimeoutMs: opts.taskTimeout, signal: stop.signal,
        });
        process.exitCode = sum.exitCode;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });

  // the stress options (--seeds, --out, --repro-dir, ...) are stress's only before 'merge'; after it, merge's
  // (commander hands a subcommand its arguments in order only when every parent has positional options;
  // the program has no options of its own but --help, so this changes nothing else)
  program.enablePositionalOptions();
  stress.enablePositionalOptions();
  stress
    .command('merge')
    .description("merge the JSON lines of a campaign's shards (--shard i/n --out ...): the campaign's table and failing seeds (exit 0 all clean, 1 a seed failed, 2 bad input)")
    .argument('<files...>', 'JSON-lines files written by mmsim stress --out')
    .option('--seeds <n>', "the campaign's --seeds: every seed must be in the files", int('--seeds', 1, 1e9))
    .option('--seed-base <n>', "the campaign's --seed-base (with --seeds)", int('--seed-base', 0, 2 ** 31 - 1))
    .option('--repro-dir <dir>', 'where the repro files are now, if not where the shards wrote them (default: there, else next to each file)')
    .option('--out <file>', 'also write the merged JSON lines, sorted by seed')
    .action((files: string[], opts) => {
      const m = mergeResults({ files, seeds: opts.seeds, seedBase: opts.seedBase, reproDir: opts.reproDir, out: opts.out });
      console.log(formatMerge(m));
      process.exitCode = m.exitCode;
    });
}
