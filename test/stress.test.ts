import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PATTERN } from '../src/tools/stress/strategy.ts';
import { runCampaign, parseShard, shardSeeds, CampaignError, type CampaignOptions, type SeedResult } from '../src/tools/stress/stress.ts';
import { readRepro } from '../src/tools/repro/repro.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mmsim-stress-'));
});

/** Host threads of this process: piscina workers show up as MessagePorts. */
const threadHandles = (): number => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort' || r === 'Worker').length;

async function campaign(name: string, o: Omit<CampaignOptions, 'out' | 'reproDir' | 'progress' | 'print'>) {
  const out = join(dir, `${name}.jsonl`);
  const reproDir = join(dir, `${name}-repros`);
  const printed: string[] = [];
  const before = threadHandles();
  const sum = await runCampaign({ ...o, out, reproDir, progress: false, print: (t) => printed.push(t) });
  expect(threadHandles()).toBe(before); // the pool is gone
  const lines = (await readFile(out, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SeedResult);
  return { sum, lines, printed: printed.join('\n'), reproDir };
}

const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    execFile(process.execPath, ['bin/mmsim.ts', ...args], { timeout: 30000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });

describe('mmsim stress', () => {
  it('200 seeds of munmap-vs-access (2 CPUs, 200 ops, inline): no failure, 200 JSON lines, a table', async () => {
    const { sum, lines, printed } = await campaign('clean', {
      scenarios: ['scenarios/munmap-vs-access.ts'], seeds: 200, jobs: 2, run: { cpus: 2, ops: 200, threads: 1 },
    });
    expect(sum.failed).toBe(0);
    expect(sum.runs).toBe(200);
    expect(sum.exitCode).toBe(0);
    expect(lines).toHaveLength(200);
    expect(new Set(lines.map((l) => l.seed))).toEqual(new Set(Array.from({ length: 200 }, (_, i) => i + 1)));
    for (const l of lines) {
      expect(l).toMatchObject({ scenario: 'munmap-vs-access', ok: true, exit: 0, kind: null, cpus: 2, threads: 1, exec: 'inline', mode: 'free' });
      expect(l.ops).toBeGreaterThanOrEqual(400);
    }
    expect(printed).toMatch(/^munmap-vs-access +200 +0 /m);
    expect(printed).toMatch(/200 of 200 runs in [\d.]+ s \([\d.]+ seeds\/s on 2 jobs\); no failure/);
    console.log(`200 seeds: ${sum.seedsPerSec.toFixed(1)} seeds/s`);
  }, 40_000);

  it('munmap.free_before_flush on 2 host threads: failing seeds, with repro files that readRepro() accepts', async () => {
    const { sum, lines, printed, reproDir } = await campaign('knob', {
      scenarios: ['munmap-vs-access'], seeds: 6, jobs: 2,
      run: { cpus: 4, ops: 3000, threads: 2, delay: 0.05, knobs: ['munmap.free_before_flush'] },
    });
    expect(lines).toHaveLength(6);
    expect(sum.failed).toBeGreaterThanOrEqual(1); // fires on ~5 of 6 seeds
    expect(sum.exitCode).toBe(1);
    const bad = lines.filter((l) => !l.ok);
    expect(bad).toHaveLength(sum.failed);
    expect((await readdir(reproDir)).sort()).toEqual(bad.map((l) => `repro-munmap-vs-access-${l.seed}.json`).sort());
    // The knob frees the page before the shootdown; the first oracle to see the freed
    // frame reports it. Usually a stale TLB entry is used (uaf-stale-tlb); on two host
    // threads a walker may also read the PTE just before the munmap clears it and find
    // the frame already free when it fills its TLB (pte-maps-free-frame, src/hw/walker.ts).
    // Both are this bug; without the knob neither fires (the clean test above).
    const caught = ['uaf-stale-tlb', 'pte-maps-free-frame'];
    for (const l of bad) {
      expect(caught).toContain(l.kind);
      expect(l.exec).toBe('hosted');
      expect(existsSync(l.repro!)).toBe(true);
      const r = await readRepro(l.repro!);
      expect(r.scenario.name).toBe('munmap-vs-access');
      expect(r.options).toMatchObject({ seed: l.seed, mode: 'free', cpus: 4, ops: 3000, threads: 2, knobs: ['munmap.free_before_flush'] });
      expect(r.violation?.kind).toBe(l.kind);
    }
    const kinds = sum.scenarios[0].kinds as Record<string, number>;
    expect(Object.keys(kinds).every((k) => caught.includes(k))).toBe(true);
    expect(Object.values(kinds).reduce((a, b) => a + b, 0)).toBe(sum.failed);
    expect(printed).toMatch(/(uaf-stale-tlb|pte-maps-free-frame) \d/);
    const first = sum.scenarios[0].firstFailure!;
    expect(printed).toContain(`first failure of munmap-vs-access: mmsim repro ${first.repro}; mmsim shrink ${first.repro}`);
    expect(sum.scenarios[0].rerun).toBe(`mmsim run munmap-vs-access --seed ${first.seed} --cpus 4 --ops 3000 --threads 2 --delay 0.05 --knob munmap.free_before_flush`);
  }, 40_000);

  it('--shard i/n runs exactly the seeds base+k with k mod n = i; the shards partition the campaign', async () => {
    const all: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { lines, sum } = await campaign(`shard${i}`, {
        scenarios: ['munmap-vs-access'], seeds: 10, seedBase: 100, shard: `${i}/3`, jobs: 2, run: { cpus: 2, ops: 100, threads: 1 },
      });
      const seeds = lines.map((l) => l.seed).sort((a, b) => a - b);
      expect(seeds).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter((k) => k % 3 === i).map((k) => 100 + k));
      expect(sum.planned).toBe(seeds.length);
      all.push(...seeds);
    }
    expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, k) => 100 + k));
    expect([...shardSeeds(3, 1, parseShard('5/8'))]).toEqual([]);
    expect(() => parseShard('3/2')).toThrow(CampaignError);
  }, 30_000);

  it('no scheduling option: every seed draws a family of the hunting swarm, recorded in its line and in its repro', async () => {
    const { lines, sum } = await campaign('swarm', {
      scenarios: ['munmap-vs-access'], seeds: 4, jobs: 2, run: { cpus: 2, ops: 300, knobs: ['munmap.free_before_flush'] },
    });
    const bySeed = new Map(lines.map((l) => [l.seed, l]));
    // seeds 1..4 take the first four families of the cycle
    expect([1, 2, 3, 4].map((k) => bySeed.get(k)!.family)).toEqual(PATTERN.slice(0, 4));
    expect(bySeed.get(1)!.mode).toBe('deterministic');
    expect(bySeed.get(2)!.mode).toBe('free');
    expect(bySeed.get(2)!.threads).toBe(2);
    for (const l of lines.filter((x) => !x.ok)) {
      const r = await readRepro(l.repro!);
      // the repro carries the drawn configuration: mode, threads, delay or hot preemption
      expect(r.options.mode).toBe(l.mode);
      if (l.mode === 'deterministic') expect(r.options.hotPreempt).toBeGreaterThan(0);
      else expect(r.options.threads).toBe(l.threads);
    }
    expect(sum.runs).toBe(4);
  }, 240_000);

  it('a crashed task and a task over --task-timeout are failed seeds, not a stuck campaign', async () => {
    // inline, the injected crash throws out of the task: piscina rejects it
    const c = await campaign('crash', { scenarios: ['munmap-vs-access'], seeds: 2, jobs: 2, run: { cpus: 2, ops: 2000, threads: 1, knobs: ['sim.crash_cpu_worker'] } });
    expect(c.lines.map((l) => [l.kind, l.exit])).toEqual([['crash', 3], ['crash', 3]]);
    expect(c.lines[0].message).toMatch(/injected crash/);
    expect((await readRepro(c.lines[0].repro!)).violation?.kind).toBe('crash');
    // inline, a leaked mmap_lock spins forever (no watchdog on the task's own thread): the timeout terminates it
    const h = await campaign('timeout', {
      scenarios: ['munmap-vs-access'], seeds: 2, jobs: 2, taskTimeoutMs: 1500, run: { cpus: 2, ops: 2000, threads: 1, knobs: ['munmap.leak_mmap_lock'] },
    });
    expect(h.lines.map((l) => l.kind)).toEqual(['timeout', 'timeout']);
    expect(h.sum.exitCode).toBe(1);
  }, 30_000);

  it('CLI: bad input exits 2 with one line; failures exit 1', async () => {
    const bad: [string[], RegExp][] = [
      [['--shard', '3/2'], /--shard 3\/2: i must be less than n/],
      [['--shard', 'x'], /--shard must be i\/n/],
      [['--seeds', 'many'], /--seeds must be a whole number, got 'many'/],
      [['--jobs', '0'], /--jobs must be between 1 and 1024/],
    ];
    for (const [args, msg] of bad) {
      const r = await run(['stress', 'munmap-vs-access', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
    const missing = await run(['stress', 'scenarios/nope.ts', '--out', join(dir, 'nope.jsonl')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^mmsim: scenarios\/nope\.ts: no such scenario file\n$/);
    const pinned = await run(['stress', 'switch-mm-munmap', '--cpus', '1', '--out', join(dir, 'pinned.jsonl')]);
    expect(pinned.code, pinned.stderr).toBe(2);
    expect(pinned.stderr.trim().split('\n')).toHaveLength(1);
    // --out -: JSON lines on stdout, the table on stderr
    const f = await run(['stress', 'munmap-vs-access', '--seeds', '2', '--jobs', '1', '--cpus', '2', '--ops', '2000', '--knob', 'sim.crash_cpu_worker', '--out', '-', '--repro-dir', join(dir, 'cli-repros')]);
    expect(f.code).toBe(1);
    expect(f.stdout.trim().split('\n').map((l) => (JSON.parse(l) as SeedResult).kind)).toEqual(['crash', 'crash']);
    expect(f.stderr).toMatch(/munmap-vs-access +2 +2 .*crash 2/);
  }, 40_000);
});
