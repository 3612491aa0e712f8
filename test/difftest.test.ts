// Differential testing against this machine's kernel (src/tools/difftest): a
// short run must agree call for call and map for map; a difference is found,
// named and shrunk. Without a C compiler the runs are skipped, visibly.
import { describe, it, expect, afterAll } from 'vitest';
import { release } from 'node:os';
import { Executor, findCompiler, compilerCandidates, parseHostOutput } from '../src/tools/difftest/host.ts';
import { difftest, compareRun, shrink } from '../src/tools/difftest/difftest.ts';
import { generate, countCalls, ARENA, type Op } from '../src/tools/difftest/gen.ts';

const cc = findCompiler();
if (!cc) console.warn(`difftest.test.ts: no C compiler found (tried ${compilerCandidates().join(', ')}): the runs against the kernel are SKIPPED`);
const onLinux = process.platform === 'linux';
if (!onLinux) console.warn('difftest.test.ts: not Linux: the runs against the kernel are SKIPPED');
let ex: Executor | undefined;
const executor = (): Executor => (ex ??= new Executor(cc!));
afterAll(() => ex?.close());

const [major, minor] = release().split('.').map(Number);
const guardRegions = major > 6 || (major === 6 && minor >= 13); // MADV_GUARD_INSTALL: Linux 6.13
// mmsim models Linux 6.18: an older kernel answers some calls differently (e.g. before 6.17 a
// shrinking mremap past the VMA's end is EFAULT), so the agreement run needs 6.18 or later
const modelled = major > 6 || (major === 6 && minor >= 18);
if (onLinux && !modelled) console.warn(`difftest.test.ts: this kernel is ${release()}, mmsim models 6.18: the agreement run is SKIPPED`);

describe('difftest generator', () => {
  it('is deterministic per (seed, sequence) and counts a fork\'s child calls', () => {
    const a = generate(7, 3, 150);
    expect(generate(7, 3, 150)).toEqual(a);
    expect(generate(7, 4, 150)).not.toEqual(a);
    expect(countCalls(a)).toBe(150);
    const kinds = new Set(Array.from({ length: 50 }, (_, i) => generate(1, i, 150)).flat().map((o) => o.k));
    expect([...kinds].sort()).toEqual(['brk', 'fork', 'madvise', 'mmap', 'mprotect', 'mremap', 'munmap', 'touch']);
  });

  it('reads the executor output: traces, maps per pid, a crashed sequence', () => {
    const runs = parseHostOutput('#SEQ 4\n10 brk(NULL) = 0x1000\n#MAPS 10\n00400000-00401000 r--p 00000000 00:00 0\n#ENDMAPS\n#ENDSEQ\n#CRASH 5 139\n#ENDSEQ\n');
    expect(runs.map((r) => [r.seq, r.brk0, r.maps.get(10)?.length ?? -1, r.crashed ?? ''])).toEqual([
      [4, 0x1000, 1, ''], [5, 0, -1, "the sequence's process ended with wait status 139"],
    ]);
    expect(compareRun(runs[1]).lines).toEqual(["host: the sequence's process ended with wait status 139"]);
  });
});

describe.skipIf(!cc || !onLinux)('difftest against the kernel', () => {
  it.skipIf(!modelled)('20 sequences of 150 calls: no difference in any result or final map', () => {
    const r = difftest(executor(), { sequences: 20, calls: 150, seed: 1, shrink: 1 });
    expect(r.failing.map((f) => `${f.seq}: ${f.lines[0]}`)).toEqual([]);
    expect(r.calls).toBeGreaterThan(20 * 150); // every call, the evictions and the +++ lines too
    expect(r.processes).toBeGreaterThanOrEqual(20);
    // the run exercised successes and failures of the calls under test
    for (const call of ['mmap', 'munmap', 'mprotect', 'mremap', 'madvise', 'touch']) expect(r.results[call]?.ok ?? 0).toBeGreaterThan(0);
    expect(r.results.mremap.EFAULT + r.results.mremap.EINVAL).toBeGreaterThan(0);
  }, 120_000);

  it('reports a wrong recorded result and a wrong final map', () => {
    const [run] = executor().run([{ seq: 0, ops: generate(1, 0, 40) }]);
    expect(compareRun(run).lines).toEqual([]);
    // a result the simulator does not give
    const i = run.trace.indexOf(' munmap(');
    expect(i).toBeGreaterThan(0);
    const bad = { ...run, trace: run.trace.replace(/( munmap\([^)]*\)) = 0/, '$1 = -1 EINVAL (Invalid argument)') };
    expect(compareRun(bad).lines.join('\n')).toMatch(/munmap\(.*\): Linux -1 EINVAL \(Invalid argument\), mmsim 0/);
    // a mapping the kernel has and the simulator does not
    const pid = [...run.maps.keys()][0];
    const extra = `${(ARENA + 0x3f00000).toString(16)}-${(ARENA + 0x3f01000).toString(16)} rw-p 00000000 00:00 0`;
    const maps = new Map(run.maps);
    maps.set(pid, [...run.maps.get(pid)!, extra]);
    expect(compareRun({ ...run, maps }).lines).toEqual([`maps of pid ${pid}: Linux has [${extra.replace(' 00:00 0', '')}], mmsim has []`]);
  }, 60_000);

  it.skipIf(!guardRegions)('shrinks a failing sequence to the calls that matter (MADV_GUARD_INSTALL, which mmsim does not model)', () => {
    const ops: Op[] = [...generate(3, 0, 30)];
    const a = { heap: false, v: ARENA + 0x3e00000 };
    ops.splice(10, 0, { k: 'mmap', addr: a, len: 8 * 4096, prot: 3, flags: 0x12, file: false, off: 0 }); // MAP_PRIVATE|MAP_FIXED
    ops.splice(20, 0, { k: 'madvise', addr: { ...a, v: a.v + 4096 }, len: 4096, advice: 102 });
    const s = shrink(executor(), ops, 'x86', 400);
    expect(s.lines[0]).toMatch(/madvise\(0x[0-9a-f]+, 4096, 0x66\): Linux 0, mmsim -1 EINVAL/);
    expect(s.ops.map((o) => o.k)).toEqual(['mmap', 'madvise']);
  }, 120_000);
});
