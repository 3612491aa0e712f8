import { describe, it, expect } from 'vitest';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type RunOptions } from '../src/engine/machine.ts';
import { makeRepro, writeRepro, readRepro, type Repro } from '../src/tools/repro/repro.ts';
import { replay, shrink } from '../src/tools/repro/shrink.ts';

const s = await loadScenario('scenarios/munmap-vs-access.ts');
const det = (o: RunOptions = {}): RunOptions => ({ mode: 'deterministic', cpus: 4, ops: 1500, ...o });
const strip = (r: Awaited<ReturnType<typeof runScenario>>) => r.trace!.events.map((e) => [e.cpu, e.seq, e.ts, e.type, e.a, e.b]);

/** The first seed (from 1) whose deterministic run catches munmap.free_before_flush (searched once). */
let found: Promise<{ seed: number; repro: Repro }> | undefined;
const failingSeed = (): Promise<{ seed: number; repro: Repro }> => (found ??= search());
async function search(): Promise<{ seed: number; repro: Repro }> {
  for (let seed = 1; seed <= 60; seed++) {
    const o = det({ ops: 3000, seed, knobs: ['munmap.free_before_flush'] });
    const r = await runScenario(s, o);
    if (r.violations.length) return { seed, repro: makeRepro(s, o, r, 'scenarios/munmap-vs-access.ts', r.deterministic!.schedule) };
  }
  throw new Error('no failing seed among 1..60');
}

describe('deterministic mode', () => {
  it('same seed and scenario: the same interleaving, result and trace, bit for bit', async () => {
    const a = await runScenario(s, det({ seed: 5, trace: true }));
    const b = await runScenario(s, det({ seed: 5, trace: true }));
    expect(a.mode).toBe('deterministic');
    expect(a.deterministic!.schedule.length).toBeGreaterThan(10);
    expect(b.deterministic).toEqual(a.deterministic);
    expect(b.stats).toEqual(a.stats);
    expect(b.perCpuOps).toEqual(a.perCpuOps);
    expect(strip(b)).toEqual(strip(a));
    expect(a.violations).toEqual([]);
    // and a different seed takes a different path
    const c = await runScenario(s, det({ seed: 6 }));
    expect(c.deterministic!.schedule).not.toEqual(a.deterministic!.schedule);
  });

  it('refuses what would let time steer it', async () => {
    await expect(runScenario(s, det({ threads: 2 }))).rejects.toThrow(/one thread per CPU/);
    await expect(runScenario(s, det({ delay: 0.1 }))).rejects.toThrow(/no --delay/);
  });

  it('a duration becomes an operation budget, and the scenario\'s own delay is dropped (issue #14 item 2)', async () => {
    const timed = { ...s, run: { ...s.run, durationMs: 100, delay: 0.2 } };
    const r = await runScenario(timed, { mode: 'deterministic', cpus: 2, ops: undefined, seed: 3 });
    expect(r.mode).toBe('deterministic');
    // 100 ms -> durationToOps(100) operations per CPU (a CPU stops at its budget in this mode; a step may count several)
    const { durationToOps } = await import('../src/engine/budget.ts');
    const n = durationToOps(100);
    for (const ops of r.perCpuOps) {
      expect(ops).toBeGreaterThanOrEqual(n);
      expect(ops).toBeLessThan(n * 1.5);
    }
    expect(r.stats.delays).toBe(0);
    const again = await runScenario(timed, { mode: 'deterministic', cpus: 2, seed: 3 });
    expect(again.deterministic!.schedule).toEqual(r.deterministic!.schedule);
  });

  it('hot preemption: the schedule is a function of the seed, and it preempts more than plain PCT', async () => {
    const a = await runScenario(s, det({ seed: 4, ops: 500, hotPreempt: 0.2 }));
    const b = await runScenario(s, det({ seed: 4, ops: 500, hotPreempt: 0.2 }));
    const plain = await runScenario(s, det({ seed: 4, ops: 500 }));
    expect(b.deterministic!.schedule).toEqual(a.deterministic!.schedule);
    expect(a.deterministic!.hotPreempt).toBe(0.2);
    expect(a.deterministic!.schedule.length).toBeGreaterThan(plain.deterministic!.schedule.length);
    expect(a.violations).toEqual([]);
  });

  it('overtime: a CPU past its budget keeps running while another has not, never past k times it, and the run still replays', async () => {
    const o = det({ seed: 3, ops: 300, hotPreempt: 0.3, overtime: 4 });
    const a = await runScenario(s, o);
    const b = await runScenario(s, o);
    expect(b.deterministic).toEqual(a.deterministic);
    expect(b.perCpuOps).toEqual(a.perCpuOps);
    expect(a.deterministic!.overtime).toBe(4);
    // the accessors' cheap operations outrun the munmapper's: they go on past 300 while it has not finished
    expect(Math.max(...a.perCpuOps)).toBeGreaterThan(300);
    expect(Math.max(...a.perCpuOps)).toBeLessThanOrEqual(4 * 300);
    expect(Math.min(...a.perCpuOps)).toBeGreaterThanOrEqual(300);
    expect(a.violations).toEqual([]);
    // without it (the default, and every repro written before it existed) each CPU's program stops at its
    // budget. Migration between threads is on by default in deterministic mode, and then a task's
    // operations are counted on the CPUs it ran on: the total is exact, the split is not
    const pinned = await runScenario(s, det({ seed: 3, ops: 300, hotPreempt: 0.3, migrateThreads: false }));
    expect(pinned.stats.migrations).toBe(0);
    expect(pinned.perCpuOps).toEqual([300, 300, 300, 300]);
    const moving = await runScenario(s, det({ seed: 3, ops: 300, hotPreempt: 0.3 }));
    expect(moving.stats.migrations).toBeGreaterThan(0);
    expect(moving.perCpuOps.reduce((x, y) => x + y, 0)).toBe(4 * 300);
  });

  it('a repro file replays its violation 10 times out of 10, on the same path', async () => {
    const { repro } = await failingSeed();
    const dir = await mkdtemp(join(tmpdir(), 'mmsim-det-'));
    const file = join(dir, 'repro.json');
    await writeRepro(file, repro);
    const back = await readRepro(file);
    expect(back.violation?.kind).toBe('uaf-stale-tlb');
    for (let i = 0; i < 10; i++) {
      const out = await replay(back);
      expect(out.reproduced).toBe(true);
      expect(out.samePath).toBe(true);
      expect(out.result.violations[0].message).toBe(repro.violation!.message);
    }
    expect(JSON.parse(await readFile(file, 'utf8')).schedule.length).toBe(repro.schedule!.length);
  }, 300_000); // the seed search, then 10 replays (with per-VMA locks the first failing seed is 6)

  it('shrink makes a failing repro smaller and it still fails', async () => {
    const { repro } = await failingSeed();
    const { repro: min } = await shrink(repro);
    const size = (r: Repro) => (r.options.cpus ?? 4) * (r.options.ops ?? 0) * (r.options.preemptions ?? 3);
    expect(size(min)).toBeLessThan(size(repro));
    const out = await replay(min);
    expect(out.reproduced).toBe(true);
    expect(out.samePath).toBe(true);
  }, 300_000);

  it('a deadlock is reported at once, naming the lock', async () => {
    const r = await runScenario(s, det({ seed: 1, knobs: ['munmap.leak_mmap_lock'], hangTimeoutMs: 600_000 }));
    // the scheduler's verdict, not the watchdog's ("no CPU made progress"), which a 10-minute timeout keeps out of reach
    expect(r.hang).toMatch(/deadlock: every CPU that has not finished is blocked/);
    expect(r.hang).toMatch(/mmap_lock/);
  });
});
