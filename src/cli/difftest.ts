// `mmsim difftest` (npm run difftest): random call sequences on this machine's kernel against mmsim (src/tools/difftest/).
import { Option, type Command } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCH_NAMES } from '../arch/index.ts';
import { Executor, HostError, findCompiler, compilerCandidates } from '../tools/difftest/host.ts';
import { difftest, diffSummary } from '../tools/difftest/difftest.ts';
import { int } from './args.ts';

export function registerDifftest(program: Command): void {
  program
    .command('difftest')
    .description("run random mmap/munmap/mprotect/mremap/madvise/brk/fork/touch sequences on this machine's kernel and on mmsim, and report every difference in a result or in the final maps (exit 0 none, 1 differences, 2 bad input or no C compiler)")
    .option('--sequences <n>', 'sequences to run', int('--sequences', 1, 1e6), 200)
    .option('--calls <n>', 'calls per sequence (a fork\'s child calls count)', int('--calls', 1, 100000), 150)
    .option('--seed <n>', 'seed of the generator: the same seed gives the same calls', int('--seed', 0, 2 ** 31 - 1), 1)
    .option('--only <n>', 'run only sequence n of the seed (as a failing run names it)', int('--only', 0, 1e9))
    .addOption(new Option('--arch <arch>', 'TLB-flush model of the replay').choices(ARCH_NAMES))
    .option('--shrink <n>', 'shrink at most this many failing sequences to a minimal one', int('--shrink', 0, 1e6), 3)
    .option('--out <dir>', 'write each shrunk sequence there as a trace (replay it with mmsim strace FILE --maps)')
    .option('--json <file>', 'also write the report as JSON')
    .option('--verbose', 'list every failing sequence and what the run exercised')
    .action(async (opts) => {
      const cc = findCompiler();
      if (!cc) {
        process.stderr.write(`mmsim: difftest: no C compiler found (tried ${compilerCandidates().join(', ')}); set CC to one\n`);
        process.exitCode = 2;
        return;
      }
      let ex: Executor;
      try {
        ex = new Executor(cc);
      } catch (e) {
        if (!(e instanceof HostError)) throw e;
        process.stderr.write(`mmsim: difftest: ${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      try {
        const tty = process.stderr.isTTY;
        const r = difftest(ex, {
          sequences: opts.sequences, calls: opts.calls, seed: opts.seed, arch: opts.arch, shrink: opts.shrink, only: opts.only,
          progress: tty ? (n) => process.stderr.write(`\r${n}/${opts.sequences} sequences`) : undefined,
        });
        if (tty) process.stderr.write('\r\x1b[K');
        console.log(diffSummary(r, opts.verbose));
        if (opts.out) {
          await mkdir(opts.out, { recursive: true });
          for (const f of r.failing) {
            if (!f.minimal) continue;
            const file = join(opts.out, `difftest-seed${r.seed}-seq${f.seq}.trace`);
            await writeFile(file, f.minimal.trace);
            console.log(`  wrote ${file}`);
          }
        }
        if (opts.json) await writeFile(opts.json, JSON.stringify(r, null, 2));
        process.exitCode = r.failing.length ? 1 : 0;
      } catch (e) {
        if (!(e instanceof HostError)) throw e;
        process.stderr.write(`mmsim: difftest: ${e.message}\n`);
        process.exitCode = 3;
      } finally {
        ex.close();
      }
    });
}
