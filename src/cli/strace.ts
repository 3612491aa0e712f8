// `mmsim strace FILE` (alias `replay`): run an strace capture on the simulated kernel (src/tools/strace/strace_replay.ts).
import { Option, type Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { ARCH_NAMES } from '../arch/index.ts';
import { replayStrace, replaySummary, replayExitCode, StraceParseError, ReplayError } from '../tools/strace/strace_replay.ts';
import { int } from './args.ts';

export function registerReplay(program: Command): void {
  program
    .command('strace')
    .alias('replay')
    .description('replay an strace capture (strace -f -o FILE) on the simulated kernel and compare every result (exit 0 all match, 1 a difference, 2 unreadable input, 3 the simulator failed)')
    .argument('<file>', 'strace output; touch(ADDR, LEN) = 0 lines write every page of a range')
    .option('--maps', "print each process's final VMAs in /proc/PID/maps format")
    .addOption(new Option('--arch <arch>', 'TLB-flush model').choices(ARCH_NAMES))
    .option('--tlb <entries>', 'TLB entries of the CPU (power of two)', int('--tlb', 1, 65536))
    .option('--json <file>', 'also write the result as JSON')
    .option('--verbose', 'list every inference and note')
    .action(async (path: string, opts) => {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (e) {
        process.stderr.write(`mmsim: ${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      let r;
      try {
        r = replayStrace(text, path, { arch: opts.arch, tlb: opts.tlb });
      } catch (e) {
        if (e instanceof StraceParseError) {
          process.stderr.write(`mmsim: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        if (e instanceof ReplayError) {
          process.stderr.write(`mmsim: ${e.message}\n${opts.verbose ? `${(e.cause as Error)?.stack ?? ''}\n` : ''}`);
          process.exitCode = 3;
          return;
        }
        throw e;
      }
      console.log(replaySummary(r, { maps: opts.maps, verbose: opts.verbose }));
      if (opts.json) await writeFile(opts.json, JSON.stringify(r, null, 2));
      process.exitCode = replayExitCode(r);
    });
}
