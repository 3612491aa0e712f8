// Fuzzing the edges with fast-check: scenario objects and JSON files, strace
// lines, CLI arguments and repro files. Every malformed input must end in the
// error type the CLI turns into exit 2 (ScenarioError, StraceParseError, a
// commander error), with one line naming the file and line or field: never
// another exception, a stack trace, or a hang. At least 1,000 cases per
// target, in-process; the CLI itself is spawned for a few cases only.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { parseScenario, loadScenario, ScenarioError } from '../src/engine/scenario.ts';
import { replayStrace, StraceParseError } from '../src/tools/strace/strace_replay.ts';
import { readRepro, REPRO_VERSION } from '../src/tools/repro/repro.ts';
import { main } from '../src/cli/main.ts';
import forkVsMremap from '../scenarios/fork-vs-mremap.ts';
import mremapVsTruncate from '../scenarios/mremap-vs-truncate.ts';

const RUNS = 1000;
const SEED = 20261206; // fixed: a failure names its counterexample and replays
let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mmsim-fuzz-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One line, no stack trace. */
const oneLine = (m: string): boolean => !/[\n\r]/.test(m.trimEnd()) && !/\n\s+at /.test(m);

/** Each text written to `file` is either read by `load` or refused with one ScenarioError line starting with the file; most are refused. */
async function fuzzFile(file: string, text: fc.Arbitrary<string>, load: (f: string) => Promise<unknown>): Promise<void> {
  let rejected = 0;
  await fc.assert(fc.asyncProperty(text, async (t) => {
    writeFileSync(file, t);
    try {
      await load(file);
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      const m = (e as Error).message;
      expect(oneLine(m), m).toBe(true);
      expect(m.startsWith(`${file}: `)).toBe(true);
      rejected++;
    }
  }), { numRuns: RUNS, seed: SEED });
  expect(rejected).toBeGreaterThan(RUNS / 2);
}

// ---- arbitraries ----------------------------------------------------------------

const bases = [forkVsMremap, mremapVsTruncate].map((s) => JSON.parse(JSON.stringify(s)) as Record<string, unknown>);
const weird = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.constantFrom(-1, 0, 1, 2 ** 31, 1e12, 2 ** 53, 0.5, NaN, Infinity, -Infinity, '', 'x', 'a\nb', null, [], {}, true, 'rest', 'all', [1, 2], [[1]], 'random', 'pmd'),
);
type Path = (string | number)[];
function paths(o: unknown, pre: Path = []): Path[] {
  if (o === null || typeof o !== 'object') return [];
  const out: Path[] = [];
  for (const k of Object.keys(o)) {
    const p = [...pre, Array.isArray(o) ? Number(k) : k];
    out.push(p, ...paths((o as Record<string, unknown>)[k], p));
  }
  return out;
}
function mutate(o: unknown, muts: [number, unknown, boolean][]): unknown {
  const s = structuredClone(o) as Record<string | number, unknown>;
  for (const [pi, v, del] of muts) {
    const ps = paths(s);
    if (!ps.length) break;
    const p = ps[pi % ps.length];
    let x = s as Record<string | number, unknown>;
    for (let i = 0; i < p.length - 1; i++) x = x[p[i]] as Record<string | number, unknown>;
    if (del) delete x[p.at(-1)!];
    else x[p.at(-1)!] = v;
  }
  return s;
}
const mutation = fc.array(fc.tuple(fc.nat(), weird, fc.boolean()), { minLength: 1, maxLength: 3 });
/** A scenario-like object: a library scenario with up to three fields replaced or deleted, or anything at all. */
const scenarioLike = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.nat(bases.length - 1), mutation).map(([b, m]) => mutate(bases[b], m)) },
  { weight: 1, arbitrary: fc.anything() },
);

// strace lines: calls the replay knows, with well-formed and malformed arguments and results
// (huge values are rarer than small ones: a touch of terabytes is legal, but each replay of one costs a second)
const num = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -5, max: 1 << 20 }).map(String) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 1 << 24 }).map((n) => '0x' + n.toString(16)) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 1n << 48n }).map((b) => '0x' + b.toString(16)) },
  { weight: 2, arbitrary: fc.constantFrom('NULL', '-1', '0', '4096', '0x7f0000000000', '1e5', '', ' ', '0x', '099', '18446744073709551615', '0xffffffffffffffff') },
);
const flag = fc.constantFrom(
  'PROT_READ|PROT_WRITE', 'PROT_NONE', 'MAP_PRIVATE|MAP_ANONYMOUS', 'MAP_SHARED|MAP_FIXED', 'MAP_FIXED_NOREPLACE|MAP_PRIVATE|MAP_ANONYMOUS',
  'MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE', 'MREMAP_MAYMOVE', 'MREMAP_MAYMOVE|MREMAP_FIXED', 'MREMAP_DONTUNMAP', 'MADV_DONTNEED', 'MADV_POPULATE_WRITE',
  'MADV_DONTFORK', 'BOGUS', '21<<MAP_HUGE_SHIFT', '3<<FOO', 'O_RDWR|O_CREAT', 'O_PATH', 'flags=CLONE_VM|CLONE_THREAD', 'flags=CLONE_VM',
  'child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD', 'AT_FDCWD', 'MFD_CLOEXEC', 'F_DUPFD_CLOEXEC', 'CLOSE_RANGE_CLOEXEC',
);
const arg = fc.oneof(num, num, num, flag, fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s)), fc.string({ maxLength: 8 }),
  fc.constantFrom('{...}', '[1, 2]', '3</tmp/x>', '"/etc/passwd"', '{si_signo=SIGSEGV}'));
const names = ['mmap', 'munmap', 'mprotect', 'mremap', 'brk', 'madvise', 'touch', 'fork', 'vfork', 'clone', 'clone3', 'execve', 'openat',
  'open', 'creat', 'close', 'dup', 'dup2', 'dup3', 'memfd_create', 'exit_group', 'exit', 'unlink', 'unlinkat', 'fcntl', 'close_range', 'read', '???', 'x'];
const result = fc.oneof(
  num.map((n) => ` = ${n}`),
  fc.constantFrom(' = -1 EINVAL (Invalid argument)', ' = -1 ENOMEM (Cannot allocate memory)', ' = ?', ' <unfinished ...>', ' = -1 EFOO',
    ' = 0x', '', ' = 0 <0.000012>', ' = -1 EFAULT (Bad address)', ' = ? <unavailable>'),
);
const pid = fc.oneof(fc.constant(''), fc.integer({ min: 1, max: 40 }).map((p) => `${p} `), fc.integer({ min: 1, max: 40 }).map((p) => `[pid ${p}] `));
const call = fc.tuple(pid, fc.constantFrom(...names), fc.array(arg, { maxLength: 7 }), result).map(([p, n, a, r]) => `${p}${n}(${a.join(', ')})${r}`);
const otherLine = fc.oneof(
  fc.tuple(pid, fc.constantFrom('mmap', 'mremap', 'brk', 'clone', 'touch'), fc.string({ maxLength: 12 })).map(([p, n, s]) => `${p}<... ${n} resumed>${s}) = 0`),
  pid.map((p) => `${p}+++ exited with 0 +++`), pid.map((p) => `${p}+++ killed by SIGKILL +++`), pid.map((p) => `${p}+++ superseded by execve +++`),
  fc.tuple(pid, num, fc.constantFrom('SEGV_MAPERR', 'SEGV_ACCERR', 'BUS_ADRERR', '')).map(([p, a, c]) => `${p}--- SIGSEGV {si_signo=SIGSEGV, si_code=${c}, si_addr=${a}} ---`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
);
const straceText = fc.array(fc.oneof({ weight: 4, arbitrary: call }, { weight: 1, arbitrary: otherLine }), { maxLength: 10 }).map((l) => l.join('\n') + '\n');

// CLI arguments: every case carries at least one bad element, so no command ever starts running
const commands = ['run', 'repro', 'shrink', 'stress', 'strace', 'replay', 'difftest', 'selftest', 'list', 'knobs'];
const goodOpts = fc.constantFrom(
  ['--cpus', '4'], ['--seed', '7'], ['--ops', '100'], ['--arch', 'arm64'], ['--mode', 'deterministic'], ['--tlb', '64'], ['--delay', '0.1'],
  ['--knob', 'munmap.free_before_flush'], ['--threads', '1'], ['--keep-going'], ['--sequences', '3'], ['--calls', '10'], ['--maps'], ['--verbose'],
  ['--seeds', '5'], ['--jobs', '1'], ['--preemptions', '2'],
);
const badOpts = fc.oneof(
  fc.tuple(fc.constantFrom('--cpus', '--seed', '--ops', '--tlb', '--threads', '--preemptions', '--sequences', '--calls', '--seeds', '--jobs', '--duration', '--hang-timeout', '--only', '--shrink', '--tries', '--threshold'),
    fc.oneof(fc.constantFrom('0', '-1', 'x', '', '1e3', '99999999999999', '4.5', '0x10', ' ', 'NaN'), fc.string({ maxLength: 6 }).filter((s) => !/^\d+$/.test(s)))).map(([f, v]) => [f, v]),
  fc.tuple(fc.constantFrom('--arch', '--mode', '--lazy-contract'), fc.string({ maxLength: 8 })).filter(([, v]) => !['x86', 'arm64', 's390', 'sparc64', 'powerpc-hash', 'x86-xenpv', 'free', 'deterministic', 'strict', 'hint'].includes(v)).map(([f, v]) => [f, v]),
  fc.constantFrom(['--delay', '2'], ['--delay', 'x'], ['--knob', 'no.such.knob'], ['--bogus'], ['--cpus'], ['-z'], ['--shard', '3/2'], ['--shard', 'x']),
  fc.string({ minLength: 3, maxLength: 10 }).map((s) => [`--${s.replace(/[^a-z]/g, 'q')}x`]),
);
const argv = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...commands), fc.array(goodOpts, { maxLength: 3 }), badOpts, fc.nat())
    .map(([c, good, bad, at]) => { const opts: string[] = good.flat(); opts.splice(at % (opts.length + 1), 0, ...bad); return [c, ...opts]; }) },
  // a file that does not exist, as the positional argument of the commands that read one
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('run', 'repro', 'shrink', 'strace'), fc.string({ minLength: 1, maxLength: 12 }))
    .map(([c, s]) => [c, `/nonexistent-mmsim/${s.replace(/\//g, '_')}.json`]) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !commands.includes(s) && !s.startsWith('-') && s !== 'help').map((s) => [s]) },
);

// ---- the targets --------------------------------------------------------------------

describe('fuzzing the edges (fast-check, 1,000 cases each)', () => {
  it('scenario objects: parseScenario accepts or throws one ScenarioError line naming the field', () => {
    let rejected = 0;
    fc.assert(fc.property(scenarioLike, (input) => {
      try {
        parseScenario(input, 'fuzz.json');
      } catch (e) {
        expect(e).toBeInstanceOf(ScenarioError);
        const m = (e as Error).message;
        expect(oneLine(m), m).toBe(true);
        expect(m).toMatch(/^fuzz\.json: (\(root\)|[\w.]+): /);
        rejected++;
      }
    }), { numRuns: RUNS, seed: SEED });
    expect(rejected).toBeGreaterThan(RUNS / 2); // the fuzzer reaches the error paths
  });

  it('scenario JSON files: loadScenario accepts or throws one ScenarioError line starting with the file', async () => {
    const file = join(dir, 'fuzz-scenario.json');
    const text = fc.oneof(
      scenarioLike.map((o) => JSON.stringify(o) ?? 'undefined'),
      fc.tuple(fc.nat(bases.length - 1), fc.nat()).map(([b, n]) => { const t = JSON.stringify(bases[b]); return t.slice(0, n % t.length); }), // truncated
      fc.string({ maxLength: 60 }),
      fc.string({ unit: 'binary', maxLength: 60 }),
    );
    await fuzzFile(file, text, loadScenario);
  });

  it('strace lines: replayStrace replays or throws one StraceParseError line naming file:line', () => {
    let replayed = 0;
    fc.assert(fc.property(straceText, (t) => {
      try {
        replayStrace(t, 'fuzz.trace');
        replayed++;
      } catch (e) {
        expect(e).toBeInstanceOf(StraceParseError);
        const m = (e as Error).message;
        expect(oneLine(m), m).toBe(true);
        expect(m).toMatch(/^fuzz\.trace:\d+: /);
      }
    }), { numRuns: RUNS, seed: SEED });
    expect(replayed).toBeGreaterThan(RUNS / 20); // and it gets past the parser often enough to run the replay
  });

  it('CLI arguments: every malformed command line exits 2 with one line on stderr', async () => {
    const out = { err: '', out: '' };
    const ew = process.stderr.write.bind(process.stderr);
    const ow = process.stdout.write.bind(process.stdout);
    process.stderr.write = ((s: string | Uint8Array) => { out.err += String(s); return true; }) as typeof process.stderr.write;
    process.stdout.write = ((s: string | Uint8Array) => { out.out += String(s); return true; }) as typeof process.stdout.write;
    try {
      await fc.assert(fc.asyncProperty(argv, async (args) => {
        out.err = out.out = '';
        process.exitCode = undefined;
        let code: number;
        try {
          code = await main(args);
        } catch (e) {
          throw new Error(`main(${JSON.stringify(args)}) threw ${(e as Error).stack}`);
        }
        expect({ args, code }).toEqual({ args, code: 2 });
        expect(oneLine(out.err) && out.err.endsWith('\n'), `${JSON.stringify(args)}: ${out.err}`).toBe(true);
      }), { numRuns: RUNS, seed: SEED });
    } finally {
      process.stderr.write = ew;
      process.stdout.write = ow;
      process.exitCode = undefined;
    }
  }, 60_000);

  it('repro files: readRepro accepts or throws one ScenarioError line starting with the file', async () => {
    const file = join(dir, 'fuzz-repro.json');
    const good = {
      version: REPRO_VERSION, scenario: bases[0], scenarioFile: 'scenarios/fork-vs-mremap.ts',
      options: { cpus: 4, seed: 3, ops: 200, mode: 'deterministic', preemptions: 3, knobs: ['munmap.free_before_flush'] },
      schedule: [0, 1, 5, 2], violation: { kind: 'uaf-stale-tlb', message: 'x' }, made: { by: 'mmsim 0.1.0', at: '2026-12-06T00:00:00Z' },
    };
    const text = fc.oneof(
      { weight: 4, arbitrary: mutation.map((m) => JSON.stringify(mutate(good, m)) ?? '') },
      { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 40 }), fc.json(), fc.nat(400).map((n) => JSON.stringify(good).slice(0, n))) },
    );
    await fuzzFile(file, text, readRepro);
  });
});

describe('the CLI on malformed input (spawned)', () => {
  const cli = (args: string[]): Promise<{ code: number; stderr: string }> =>
    new Promise((res) => {
      execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 30_000 }, (err, _stdout, stderr) =>
        res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr }));
    });

  it('a bad scenario file, a bad trace, a bad repro, a bad flag: exit 2 and one line naming the file and line or field', async () => {
    const sc = join(dir, 'bad-scenario.json');
    writeFileSync(sc, JSON.stringify({ ...bases[0], machine: { cpus: 'many\nlines' }, bogus: 1 }));
    const tr = join(dir, 'bad.trace');
    writeFileSync(tr, '1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x10000\n1 mprotect(0x10000, 4096, PROT_BOGUS) = 0\n');
    const rp = join(dir, 'bad-repro.json');
    writeFileSync(rp, JSON.stringify({ version: REPRO_VERSION, scenario: bases[0], options: { cpus: 0 }, violation: null }));
    const cases: [string[], RegExp][] = [
      [['run', sc], /bad-scenario\.json: machine\.cpus: .*bad-scenario\.json: \(root\): Unrecognized key/],
      [['strace', tr], /bad\.trace:2: mprotect: unknown flag 'PROT_BOGUS'/],
      [['repro', rp], /bad-repro\.json: options\.cpus: /],
      [['difftest', '--calls', 'many'], /--calls must be a whole number, got 'many'/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args))); // side by side: four Node start-ups
    for (const [i, [args, want]] of cases.entries()) {
      const r = results[i];
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(want);
    }
  }, 120_000);
});
