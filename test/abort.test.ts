import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, runDefaults } from '../src/engine/machine.ts';

/** Threads of this process named like a CPU host thread (Worker name -> thread name, Linux). */
function hostThreads(): number {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${t}/comm`, 'utf8').startsWith('mmsim-host')) n++;
    } catch { /* the thread ended while we looked */ }
  }
  return n;
}
const settled = async (check: () => boolean, ms: number): Promise<boolean> => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (check()) return true;
  return check();
};

const s = await loadScenario('scenarios/munmap-vs-access.ts');

describe('a run is tied to whoever started it', () => {
  it('aborting the signal stops the run, rejects with the reason and terminates every host thread', async () => {
    const ac = new AbortController();
    const run = runScenario(s, { cpus: 2, threads: 2, ops: 10_000_000, seed: 1, hangTimeoutMs: 120_000, signal: ac.signal });
    // wait until the host threads exist, then abort
    expect(await settled(() => hostThreads() === 2, 45_000)).toBe(true);
    ac.abort(new Error('the test gave up'));
    await expect(run).rejects.toThrow('the test gave up');
    expect(await settled(() => hostThreads() === 0, 10_000)).toBe(true);
  }, 90_000);

  it('a signal already aborted starts nothing', async () => {
    await expect(runScenario(s, { cpus: 2, threads: 2, ops: 10, signal: AbortSignal.abort(new Error('too late')) })).rejects.toThrow('too late');
    expect(hostThreads()).toBe(0);
  });

  it('the test setup hands the running test\'s signal to every run (a vitest timeout aborts it)', ({ signal }) => {
    expect(runDefaults.signal).toBe(signal);
  });
});
