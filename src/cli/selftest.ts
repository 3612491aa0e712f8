// `mmsim selftest mremap`: tools/testing/selftests/mm/mremap_test.c run as a
// user program on a simulated machine (src/tools/selftest/mremap_test.ts).

import { Argument, Option, type Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { ARCH_NAMES } from '../arch/index.ts';
import { run_mremap_selftest, format_selftest } from '../tools/selftest/mremap_test.ts';
import { int, knob } from './args.ts';
import { setKnobs } from '../inject/knobs.ts';

export function registerSelftest(program: Command): void {
  program
    .command('selftest')
    .description('run a kernel selftest on a simulated machine, TAP output like kselftest (exit 0 all pass, 1 a failure)')
    .addArgument(new Argument('<test>', 'the selftest: mremap (mremap_test.c)').choices(['mremap']))
    .option('-t, --threshold <mb>', 'MiB of each region to fill and verify; 0 = everything (and the 1 GiB perf cases)', int('--threshold', 0, 4096), 4)
    .option('-p, --pattern-seed <n>', 'seed of the byte pattern', int('--pattern-seed', 0, 2 ** 31 - 1), 1)
    .addOption(new Option('--arch <arch>', 'TLB-flush model').choices(ARCH_NAMES).default('x86'))
    .option('--perf', 'also run the three 1 GiB perf cases (default when the threshold is 0 or at least 1024)')
    .option('--filter <text>', 'only the cases whose name contains this')
    .option('--knob <name>', 'turn on a bug-injection knob (repeatable)', knob, [] as string[])
    .option('--json <file>', 'also write the results as JSON')
    .action(async (_test: string, o: { threshold: number; patternSeed: number; arch: string; perf?: boolean; filter?: string; knob: string[]; json?: string }) => {
      const results = run_mremap_selftest({
        thresholdMb: o.threshold, seed: o.patternSeed, arch: o.arch, perf: o.perf, filter: o.filter, knobs: o.knob,
      });
      setKnobs([]);
      console.log(format_selftest(results));
      if (o.json) await writeFile(o.json, JSON.stringify({ test: 'mremap', arch: o.arch, threshold: o.threshold, results }, null, 2));
      process.exitCode = results.some((r) => r.result === 'fail') ? 1 : 0;
    });
}
