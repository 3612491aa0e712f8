// mmsim replay: the strace reader, brk(2), and replays of real captures made on
// this machine (test/fixtures/strace/: mmprog.c and its capture, python3, ls,
// node), hand-written logs for each rule, and the CLI's exit codes.

import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { writeFile, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStrace, parseFlags, MAP_FLAGS, StraceParseError, ArgError, type StraceCall } from '../src/tools/strace/strace_parse.ts';
import { replayStrace, replayExitCode, type ReplayResult } from '../src/tools/strace/strace_replay.ts';
import { testMachine } from './helpers.ts';
import { sys_brk, brk_init, mm_brk } from '../src/mm/brk.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED } from '../src/mm/mmap.ts';
import { vma_list } from '../src/mm/vma.ts';
import { show_map_vma } from '../src/tools/strace/procmaps.ts';

const FIX = new URL('./fixtures/strace/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIX), 'utf8');
const replay = (text: string, name = 'test.trace'): ReplayResult => replayStrace(text, name);
const lines = (...l: string[]): string => l.join('\n') + '\n';

const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 60000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

describe('strace reader', () => {
  it('reads pid prefixes in both forms, lines without one, timestamps and durations', () => {
    const log = parseStrace(lines(
      '100 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000',
      '[pid   101] 12:00:01.123456 munmap(0x7f0000000000, 8192) = 0 <0.000010>',
      'brk(NULL)                               = 0x555555559000',
      '1700000000.000001 mprotect(0x7f0000000000, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)',
    ));
    const c = log.events as StraceCall[];
    expect(c.map((e) => [e.pid, e.name])).toEqual([[100, 'mmap'], [101, 'munmap'], [0, 'brk'], [0, 'mprotect']]);
    expect(c[0].args).toEqual(['NULL', '8192', 'PROT_READ|PROT_WRITE', 'MAP_PRIVATE|MAP_ANONYMOUS', '-1', '0']);
    expect(c[0].ret).toMatchObject({ value: 0x7f0000000000 });
    expect(c[1].ret).toMatchObject({ value: 0 });
    expect(c[3].ret).toMatchObject({ value: -1, errno: 'ENOMEM' });
  });

  it('joins <unfinished ...> with <... resumed>, keeping the start line and the result line', () => {
    const log = parseStrace(lines(
      '7 wait4(8,  <unfinished ...>',
      '8 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>',
      '8 <... mmap resumed>)                   = 0x7f0000001000',
      '7 <... wait4 resumed>NULL, 0, NULL) = 8',
    ));
    const [w, m] = log.events as StraceCall[];
    expect(w).toMatchObject({ name: 'wait4', line: 1, endLine: 4, args: ['8', 'NULL', '0', 'NULL'], ret: { value: 8 } });
    expect(m).toMatchObject({ name: 'mmap', line: 2, endLine: 3, ret: { value: 0x7f0000001000 } });
    expect(m.args).toHaveLength(6);
  });

  it('reads signals and exits, and strings with parentheses and "=" inside', () => {
    const log = parseStrace(lines(
      '5 write(1, "a) = 5 (x", 9) = 9',
      '5 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---',
      '5 +++ killed by SIGSEGV (core dumped) +++',
      '6 exit_group(0) = ?',
      '6 +++ exited with 0 +++',
    ));
    expect(log.events.map((e) => e.kind)).toEqual(['call', 'signal', 'exit', 'call', 'exit']);
    expect(log.events[0]).toMatchObject({ name: 'write', ret: { value: 9 } });
    expect(log.events[1]).toMatchObject({ sig: 'SIGSEGV', info: { si_code: 'SEGV_MAPERR', si_addr: '0x10' } });
    expect(log.events[2]).toMatchObject({ how: 'killed', sig: 'SIGSEGV' });
    expect(log.events[3]).toMatchObject({ name: 'exit_group', ret: { value: null } });
    expect(log.events[4]).toMatchObject({ how: 'exited', code: 0 });
  });

  it('decodes symbolic flags, and names an unknown one', () => {
    expect(parseFlags('MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE', MAP_FLAGS)).toBe(0x100022);
    expect(parseFlags('MAP_PRIVATE|0x40', MAP_FLAGS)).toBe(0x42);
    expect(() => parseFlags('MAP_PRIVATE|MAP_BOGUS', MAP_FLAGS)).toThrow(ArgError);
    expect(() => parseFlags('MAP_PRIVATE|MAP_BOGUS', MAP_FLAGS)).toThrow(/MAP_BOGUS/);
  });

  it('names the first unreadable line', () => {
    const bad = (text: string): StraceParseError => {
      try {
        parseStrace(text, 'x.trace');
      } catch (e) {
        return e as StraceParseError;
      }
      throw new Error('no error');
    };
    expect(bad(lines('1 brk(NULL) = 0x1000', 'this is not strace')).line).toBe(2);
    expect(bad(lines('1 brk(NULL) = 0x1000', '1 brk(NULL) = 0x1000', '1 mmap(NULL, 4096')).message).toMatch(/^x\.trace:3: no result/);
    expect(bad(lines('1 <... mmap resumed>) = 0')).message).toMatch(/x\.trace:1: 'mmap' resumed, but pid 1 has no unfinished mmap call/);
  });
});

describe('brk(2)', () => {
  it('grows and shrinks the heap VMA, returns the old break when refused, brk(0) is the break', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const B = 0x555555559000;
    m.on(0, () => {
      brk_init(m.V, mm, B);
      expect(sys_brk(mm, 0)).toBe(B);
      expect(sys_brk(mm, B + 0x21000)).toBe(B + 0x21000);
      expect(sys_brk(mm, B + 0x42000)).toBe(B + 0x42000);
      expect(vma_list(m.V, mm).map((v) => [v.start, v.end])).toEqual([[B, B + 0x42000]]); // grown in place, one VMA
      expect(sys_brk(mm, B + 0x30010)).toBe(B + 0x30010); // unaligned: the VMA ends at the page above
      expect(vma_list(m.V, mm).map((v) => [v.start, v.end])).toEqual([[B, B + 0x31000]]);
      expect(sys_brk(mm, B - 0x1000)).toBe(B + 0x30010); // below start_brk: refused
      // a mapping two pages above: growing to within a page of it is refused
      expect(do_mmap(mm, B + 0x33000, 0x1000, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)).toBe(B + 0x33000);
      expect(sys_brk(mm, B + 0x32000)).toBe(B + 0x32000);
      expect(sys_brk(mm, B + 0x33000)).toBe(B + 0x32000);
      expect(mm_brk(m.V, mm)).toBe(B + 0x32000);
      expect(show_map_vma(vma_list(m.V, mm)[0], { name: '[heap]' })).toBe(
        '555555559000-55555558b000 rw-p 00000000 00:00 0                          [heap]');
    });
  });
});

describe('replay of captures made on this machine', () => {
  it('mmprog with touch lines: every call matches; 2 pre-existing mappings and the initial break inferred', () => {
    const r = replay(fixture('mmprog-touch.trace'), 'mmprog-touch.trace');
    expect(r.differences).toEqual([]);
    expect(r.differing).toBe(0);
    expect(r.calls).toBe(r.matched);
    expect(r.calls).toBeGreaterThan(70);
    expect(r.inferences.map((i) => i.what)).toEqual(['initial break', 'mapping', 'mapping']);
    expect(r.processes).toBe(2);
    expect(r.audit).toEqual({ ok: true, problems: [] });
    expect(replayExitCode(r)).toBe(0);
    // each touch line ran and matched
    expect(parseStrace(fixture('mmprog-touch.trace')).events.filter((e) => e.kind === 'call' && e.name === 'touch')).toHaveLength(15);
  });

  it('mmprog raw capture (the markers are ignored writes) and stock programs: python3 (a thread), ls, node (7 threads) match', () => {
    for (const f of ['mmprog.trace', 'python3.trace', 'ls.trace', 'node.trace']) {
      const r = replay(fixture(f), f);
      expect({ f, d: r.differences }).toEqual({ f, d: [] });
      expect(r.audit.ok).toBe(true);
      expect(r.calls).toBeGreaterThan(30);
    }
  });

  /** real /proc/PID/maps against --maps: every VMA the trace made must be printed exactly as the kernel did */
  function compareMaps(sim: string[], real: string[]): { simOnly: string[]; realOnly: string[] } {
    // the kernel prints a file's resolved path: the captures opened /lib/x86_64-linux-gnu/libc.so.6 through a symlink
    const norm = (l: string): string => l.replace(/\s+/g, ' ').trim().replace(/ \/usr\/lib\//, ' /lib/').replace(/\.so(\.\d+)+$/, '.so')
      .replace(/^(\S+ \S+ \S+) \S+ \S+/, '$1'); // dev and inode are made up
    const range = (l: string): [number, number] => l.split(' ')[0].split('-').map((x) => parseInt(x, 16)) as [number, number];
    const ours = sim.filter((l) => !l.endsWith('[inferred]')).map(norm);
    const theirs = real.map(norm).filter((l) => {
      const [a, b] = range(l);
      return ours.some((o) => {
        const [x, y] = range(o);
        return a < y && x < b;
      });
    });
    return { simOnly: ours.filter((l) => !theirs.includes(l)), realOnly: theirs.filter((l) => !ours.includes(l)) };
  }

  it('python3 forking 40 children that realloc (python3-fork40.py; 81 processes, libpython mapped by ~200 VMAs at once): every call matches', () => {
    // Before the i_mmap record count was sized from the capture, this failed at line 10251 with
    // "simulator limit: file 108 is mapped by more than 128 VMAs", exit 3.
    const text = gunzipSync(readFileSync(new URL('python3-fork40.trace.gz', FIX))).toString('utf8');
    const r = replay(text, 'python3-fork40.trace');
    expect(r.processes).toBe(81);
    expect(r.differences).toEqual([]);
    expect(r.audit.ok).toBe(true);
    expect(replayExitCode(r)).toBe(0);
  });

  it('python3: --maps at the point the program read its own /proc/self/maps equals it', () => {
    const text = fixture('python3.trace').split('\n');
    const at = text.findIndex((l) => l.includes('"/proc/self/maps"'));
    const r = replay(text.slice(0, at + 1).join('\n'), 'python3.trace');
    expect(r.differing).toBe(0);
    expect(r.mms).toHaveLength(1);
    const real = fixture('python3.maps').split('\n').filter(Boolean);
    const { simOnly, realOnly } = compareMaps(r.mms[0].maps, real);
    expect({ simOnly, realOnly }).toEqual({ simOnly: [], realOnly: [] });
    expect(r.mms[0].maps.length).toBeGreaterThan(30);
    expect(r.mms[0].maps.some((l) => l.endsWith('[heap]'))).toBe(true);
  });

  it('mmprog: --maps equals the real maps of both processes', () => {
    const r = replay(fixture('mmprog-touch.trace'));
    for (const pid of [17144, 17145]) {
      const mine = r.mms.find((m) => m.pids[0] === pid)!;
      const real = fixture(`mmprog.${pid}.maps`).split('\n').filter(Boolean);
      const { simOnly, realOnly } = compareMaps(mine.maps, real);
      expect({ pid, simOnly, realOnly }).toEqual({ pid, simOnly: [], realOnly: [] });
      expect(mine.maps.length).toBeGreaterThan(20);
    }
    const parent = r.mms.find((m) => m.pids[0] === 17144)!;
    expect(parent.pids).toEqual([17144, 17146]); // the thread shared it
    expect(parent.maps.filter((l) => l.includes('/tmp/mmprog-') && l.endsWith('(deleted)'))).toHaveLength(3);
  });
});

describe('replay rules (hand-written logs)', () => {
  const A = '0x7f0000000000';
  const mmap = (pid: number, at: string, len = 8192, res = at): string =>
    `${pid} mmap(NULL, ${len}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = ${res}`;

  it('the kernel-chosen address is where the mapping goes; a recorded address the simulator has taken is a difference', () => {
    const ok = replay(lines(mmap(1, A), `1 mprotect(${A}, 8192, PROT_READ) = 0`));
    expect(ok.differing).toBe(0);
    expect(ok.inferred).toBe(0);
    const clash = replay(lines(mmap(1, A), mmap(1, '0x7f0000001000')));
    expect(clash.differences).toHaveLength(1);
    expect(clash.differences[0]).toMatchObject({ line: 2, note: 'the recorded range is not free in the simulator' });
  });

  it('a range the trace never mapped is inferred; a range it mapped and unmapped is not patched up', () => {
    const r = replay(lines(`1 mprotect(0x555555554000, 4096, PROT_READ) = 0`, `1 madvise(0x7ffff7fc0000, 8192, MADV_DONTNEED) = 0`));
    expect(r.differing).toBe(0);
    expect(r.inferences.map((i) => [i.start, i.end, i.perms])).toEqual([[0x555555554000, 0x555555555000, 'r--'], [0x7ffff7fc0000, 0x7ffff7fc2000, 'rw-']]);
    const gone = replay(lines(mmap(1, A), `1 munmap(${A}, 8192) = 0`, `1 mprotect(${A}, 4096, PROT_READ) = 0`));
    expect(gone.inferred).toBe(0);
    expect(gone.differences).toMatchObject([{ line: 3, recorded: '0', simulated: '-1 ENOMEM' }]);
  });

  it('a thread (CLONE_VM) shares the mm; fork copies it', () => {
    const thread = replay(lines(
      mmap(1, A),
      '1 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, exit_signal=0, stack=0x7f0000100000} => {parent_tid=[2]}, 88) = 2',
      `2 munmap(${A}, 8192) = 0`,
      `1 mprotect(${A}, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)`,
    ));
    expect(thread.differences).toEqual([]);
    expect(thread.processes).toBe(1);
    const fork = replay(lines(
      mmap(1, A),
      '1 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000a10) = 2',
      `2 munmap(${A}, 8192) = 0`,
      `1 mprotect(${A}, 4096, PROT_READ) = 0`,
      `2 mprotect(${A}, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)`,
      '2 exit_group(0) = ?',
      '2 +++ exited with 0 +++',
    ));
    expect(fork.differences).toEqual([]);
    expect(fork.processes).toBe(2);
    expect(fork.mms.map((m) => [m.pids, m.end])).toEqual([[[2], 'exited with 0 at line 7'], [[1], 'alive at the end of the trace']]);
  });

  it('vfork shares the mm until the child execs; the child of an unfinished clone runs before the parent resumes', () => {
    const r = replay(lines(
      mmap(1, A),
      '1 vfork( <unfinished ...>',
      `2 munmap(${A}, 4096) = 0`,
      '2 execve("/bin/true", ["true"], 0x7ffd0 /* 1 var */) = 0',
      '2 brk(NULL) = 0x555555559000',
      '1 <... vfork resumed>) = 2',
      `1 mprotect(${A}, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)`,
      '1 mprotect(0x7f0000001000, 4096, PROT_READ) = 0',
    ));
    expect(r.differences).toEqual([]);
    expect(r.inferences.map((i) => i.what)).toEqual(['initial break']);
  });

  it('a SIGSEGV fault address is checked against the simulated mappings', () => {
    const r = replay(lines(mmap(1, A), `1 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=${A}} ---`,
      '1 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x1000} ---'));
    expect(r.differences).toMatchObject([{ line: 2, recorded: `SEGV_MAPERR at ${A}` }]);
    expect(r.calls).toBe(3);
  });

  it('touch writes every page through the CPU: a read-only page is a write fault', () => {
    const r = replay(lines(mmap(1, A), `1 touch(${A}, 8192) = 0`, `1 mprotect(${A}, 8192, PROT_READ) = 0`, `1 touch(${A}, 1) = 0`,
      `1 touch(${A}, 1) = -1 EFAULT (Bad address)`));
    expect(r.differences).toMatchObject([{ line: 4, simulated: '-1 EFAULT' }]);
    expect(r.matched).toBe(4);
  });

  it('where the kernel moved a mapping the simulator could grow in place, a page above it is inferred', () => {
    const r = replay(lines(mmap(1, A, 8192), `1 mremap(${A}, 8192, 16384, MREMAP_MAYMOVE) = 0x7f0000100000`));
    expect(r.differing).toBe(0);
    expect(r.inferences).toMatchObject([{ what: 'mapping', start: 0x7f0000002000, end: 0x7f0000003000, perms: '---' }]);
  });

  it('file mappings: one page cache per path, shared between processes; read-only fds refuse shared writable maps', () => {
    const r = replay(lines(
      '1 openat(AT_FDCWD, "/tmp/f", O_RDONLY) = 3',
      '1 mmap(NULL, 8192, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000',
      '1 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_SHARED, 3, 0) = -1 EACCES (Permission denied)',
      '1 mprotect(0x7f0000000000, 8192, PROT_READ|PROT_WRITE) = -1 EACCES (Permission denied)',
      '1 mmap(0x7f0000002000, 8192, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, 0x2000) = 0x7f0000002000',
      '1 close(3) = 0',
      '1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0) = -1 EBADF (Bad file descriptor)',
      '1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0x10) = -1 EINVAL (Invalid argument)',
    ));
    expect(r.differences).toEqual([]);
    expect(r.mms[0].maps.map((l) => l.replace(/00:00 \d+ +/, '00:00 INO '))).toEqual([
      '7f0000000000-7f0000002000 r--s 00000000 00:00 INO /tmp/f',
      '7f0000002000-7f0000004000 r--p 00002000 00:00 INO /tmp/f',
    ]);
  });
});

describe('replay: strace -y', () => {
  it('an fd decorated with its path (strace -y) names the mapping by that resolved path, open or not in the log', () => {
    const r = replay(lines(
      '1 openat(AT_FDCWD, "/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY|O_CLOEXEC) = 3</usr/lib/x86_64-linux-gnu/libc.so.6>',
      '1 mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_DENYWRITE, 3</usr/lib/x86_64-linux-gnu/libc.so.6>, 0) = 0x7f0000000000',
      '1 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 9</usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache>, 0) = 0x7f0000010000',
    ));
    expect(r.differences).toEqual([]);
    expect(r.inferred).toBe(0);
    expect(r.mms[0].maps.map((l) => l.split(/ +/).slice(-1)[0])).toEqual([
      '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache',
    ]);
  });
});

describe('mmsim replay (CLI)', () => {
  it('replays the capture: exit 0, the counts, and --maps in /proc/PID/maps format', async () => {
    const r = await cli(['strace', 'test/fixtures/strace/mmprog-touch.trace', '--maps']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/calls +run \d+, matched \d+, differing 0/);
    expect(r.stdout).toMatch(/inferred +3 \(2 pre-existing mappings, 1 initial break\)/);
    expect(r.stdout).toMatch(/^# pid 17144 \(with 17146\): exited with 0 at line \d+$/m);
    expect(r.stdout).toMatch(/^[0-9a-f]{12}-[0-9a-f]{12} rw-p 00000000 00:00 0 {26}\[heap\]$/m);
    expect(r.stdout).toMatch(/^[0-9a-f]{12}-[0-9a-f]{12} rw-p 00000000 00:00 0 $/m);
  });

  it('a deliberately wrong result is reported with its line number, exit 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mmsim-replay-'));
    const text = fixture('mmprog-touch.trace').split('\n');
    const n = text.findIndex((l) => /munmap\(0x[0-9a-f]+001, 4096\) += -1 EINVAL/.test(l));
    expect(n).toBeGreaterThan(0);
    text[n] = text[n].replace(/= -1 EINVAL.*$/, '= 0');
    const f = join(dir, 'wrong.trace');
    await writeFile(f, text.join('\n'));
    const r = await cli(['strace', f, '--json', join(dir, 'r.json')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/differing 1\b/);
    expect(r.stdout).toContain(`difference at line ${n + 1}: `);
    expect(r.stdout).toMatch(/recorded +0\n +simulator -1 EINVAL/);
    const json = JSON.parse(await readFile(join(dir, 'r.json'), 'utf8')) as ReplayResult;
    expect(json.differences).toMatchObject([{ line: n + 1, recorded: '0', simulated: '-1 EINVAL' }]);
  });

  it('unreadable input exits 2 naming the line: garbage, an unknown flag, a missing file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mmsim-replay-'));
    const text = fixture('mmprog-touch.trace').split('\n');
    const garbage = [...text.slice(0, 9), 'this is not strace output', ...text.slice(9)];
    await writeFile(join(dir, 'g.trace'), garbage.join('\n'));
    const g = await cli(['strace', join(dir, 'g.trace')]);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/g\.trace:10: not a line of strace output: this is not strace output/);
    expect(g.stdout).toBe('');
    const flag = [...text];
    const i = flag.findIndex((l) => l.includes('MAP_PRIVATE|MAP_ANONYMOUS'));
    flag[i] = flag[i].replace('MAP_PRIVATE|MAP_ANONYMOUS', 'MAP_PRIVATE|MAP_BOGUS');
    await writeFile(join(dir, 'f.trace'), flag.join('\n'));
    const f = await cli(['strace', join(dir, 'f.trace')]);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(new RegExp(`f\\.trace:${i + 1}: mmap: unknown flag 'MAP_BOGUS'`));
    const missing = await cli(['replay', join(dir, 'nope.trace')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.trace: cannot read: ENOENT/);
  });
});
