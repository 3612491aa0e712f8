// The host side of difftest: find a C compiler, build executor.c into a
// temporary directory, run sequences of calls on this machine's kernel and
// split its output into one strace-format trace and the final maps per
// sequence.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Op, opsText, ARENA, WINDOW_LEN } from './gen.ts';

const SOURCE = fileURLToPath(new URL('./executor.c', import.meta.url));

/** The compilers tried, in order: $CC, cc, gcc, clang. */
export function compilerCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  return [...(env.CC ? [env.CC] : []), 'cc', 'gcc', 'clang'];
}

function onPath(cmd: string, env: NodeJS.ProcessEnv): string | undefined {
  if (cmd.includes('/')) return existsSync(cmd) ? cmd : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

/** The first C compiler found, or undefined. */
export function findCompiler(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const c of compilerCandidates(env)) {
    const p = onPath(c, env);
    if (p) return p;
  }
  return undefined;
}

export class HostError extends Error {}

export interface HostRun {
  seq: number;
  /** the calls and their results, in strace's format */
  trace: string;
  /** the first break of the sequence's process */
  brk0: number;
  /** /proc/PID/maps lines at the end of each process of the sequence, by pid */
  maps: Map<number, string[]>;
  /** the sequence's process died (it should not: faults are caught) */
  crashed?: string;
}

export class Executor {
  readonly dir: string;
  readonly bin: string;
  readonly compiler: string;

  constructor(compiler: string) {
    this.compiler = compiler;
    this.dir = mkdtempSync(join(tmpdir(), 'mmsim-difftest-'));
    this.bin = join(this.dir, 'executor');
    const r = spawnSync(compiler, ['-O1', '-o', this.bin, SOURCE], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      this.close();
      throw new HostError(`${compiler} could not build ${SOURCE}: ${(r.error?.message ?? r.stderr).trim().split('\n')[0]}`);
    }
  }

  /** Run sequences (index -> calls) on the host kernel. */
  run(seqs: { seq: number; ops: Op[] }[]): HostRun[] {
    const input = seqs.map(({ seq, ops }) => `S ${seq}\n${opsText(ops)}E\n`).join('');
    const r = spawnSync(this.bin, ['0x' + ARENA.toString(16), '0x' + WINDOW_LEN.toString(16)], {
      input, encoding: 'utf8', maxBuffer: 1 << 30,
    });
    if (r.error || r.status !== 0) throw new HostError(`the executor failed: ${(r.error?.message ?? r.stderr ?? `status ${r.status}`).trim()}`);
    return parseHostOutput(r.stdout);
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Split the executor's output: `#SEQ n`, trace lines, `#MAPS pid` ... `#ENDMAPS` blocks, `#ENDSEQ`. */
export function parseHostOutput(out: string): HostRun[] {
  const runs: HostRun[] = [];
  let cur: HostRun | undefined;
  let trace: string[] = [];
  let mapsOf: string[] | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('#SEQ ')) {
      cur = { seq: Number(line.slice(5)), trace: '', brk0: 0, maps: new Map() };
      trace = [];
      continue;
    }
    if (line.startsWith('#CRASH ')) {
      const [, n, st] = line.split(' ');
      if (!cur || cur.seq !== Number(n)) {
        cur = { seq: Number(n), trace: '', brk0: 0, maps: new Map() };
        trace = [];
      }
      cur.crashed = `the sequence's process ended with wait status ${st}`;
      continue;
    }
    if (!cur) continue;
    if (line.startsWith('#MAPS ')) {
      mapsOf = [];
      cur.maps.set(Number(line.slice(6)), mapsOf);
      continue;
    }
    if (line === '#ENDMAPS') {
      mapsOf = undefined;
      continue;
    }
    if (line === '#ENDSEQ') {
      cur.trace = trace.join('\n') + '\n';
      const m = /brk\(NULL\) = (0x[0-9a-f]+)/.exec(cur.trace);
      cur.brk0 = m ? Number(BigInt(m[1])) : 0;
      runs.push(cur);
      cur = undefined;
      continue;
    }
    if (mapsOf) mapsOf.push(line);
    else if (line) trace.push(line);
  }
  return runs;
}
