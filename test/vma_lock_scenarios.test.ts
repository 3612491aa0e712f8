// Per-VMA locks in whole runs (issue #11): faults under a VMA lock race mremap
// and fork (the summary's counter), a deterministic trace shows one inside
// another CPU's mremap, and knob fork.no_vma_write_lock (the bug fb49c455323f
// fixed) is caught by the content oracle in fork-vs-vma-faults, which runs
// clean without it.
import { expectClean } from './helpers.ts';
import { describe, it, expect } from 'vitest';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type TraceEvent } from '../src/engine/machine.ts';
import { summary } from '../src/report/summary.ts';
import { SYS } from '../src/hw/trace.ts';

const mremapVsFault = await loadScenario('scenarios/mremap-vs-fault.ts');
const forkVsVmaFaults = await loadScenario('scenarios/fork-vs-vma-faults.ts');

/** [cpu, start ts, end ts] of every mremap syscall in the trace */
function mremapSpans(events: TraceEvent[]): [number, number, number][] {
  const open = new Map<number, number>();
  const out: [number, number, number][] = [];
  for (const e of events) {
    if (e.type === 'SYSCALL' && e.a === SYS.mremap) open.set(e.cpu, e.ts);
    if (e.type === 'SYSCALL_END' && e.a === SYS.mremap && open.has(e.cpu)) {
      out.push([e.cpu, open.get(e.cpu)!, e.ts]);
      open.delete(e.cpu);
    }
  }
  return out;
}

describe('per-VMA-lock faults race mremap and fork', () => {
  it('deterministic mremap-vs-fault: a fault under a VMA lock inside another CPU\'s mremap, in the trace and the counter, replayed exactly', async () => {
    const o = { mode: 'deterministic' as const, cpus: 4, ops: 800, seed: 1, trace: true, hangTimeoutMs: 60000 };
    const r = await runScenario(mremapVsFault, o);
    expectClean(r);
    expect(r.stats.vmaLockFaults).toBeGreaterThan(0);
    expect(r.stats.vmaLockRaced, summary(r)).toBeGreaterThan(0);
    expect(r.stats.vmaLockAborts).toBeGreaterThan(0); // faults on the moving VMA fall back and wait
    const events = r.trace!.events;
    const spans = mremapSpans(events);
    expect(spans.length).toBeGreaterThan(0);
    const inside = events.filter((e) => e.type === 'VMA_LOCKED' && spans.some(([c, t0, t1]) => c !== e.cpu && e.ts > t0 && e.ts < t1));
    expect(inside.length, `VMA_LOCKED events: ${events.filter((e) => e.type === 'VMA_LOCKED').length}, mremap spans: ${spans.length}`).toBeGreaterThan(0);
    // the same seed gives the same interleaving, counters and trace
    const again = await runScenario(mremapVsFault, o);
    expect(again.deterministic).toEqual(r.deterministic);
    expect(again.stats).toEqual(r.stats);
    expect(again.trace!.events.filter((e) => e.type === 'VMA_LOCKED')).toEqual(events.filter((e) => e.type === 'VMA_LOCKED'));
  }, 120_000);

  it('fork-vs-vma-faults: sibling faults under VMA locks while fork holds the mmap_lock for write (VMAs fork has not reached, or locked before it)', async () => {
    let raced = 0;
    for (let seed = 1; seed <= 3 && raced === 0; seed++) {
      const r = await runScenario(forkVsVmaFaults, { threads: 3, seed, hangTimeoutMs: 60000 });
      expectClean(r);
      expect(r.stats.vmaLockFaults).toBeGreaterThan(0);
      raced += r.stats.vmaLockRaced;
    }
    expect(raced).toBeGreaterThan(0);
  }, 180_000);
});

describe('fork.no_vma_write_lock (fb49c455323f)', () => {
  it('is caught by the content oracle (a sibling\'s write lost to the parent) in fork-vs-vma-faults, which is clean without it', async () => {
    let caught = 0;
    const seen: string[] = [];
    for (let seed = 1; seed <= 12 && caught === 0; seed++) {
      const r = await runScenario(forkVsVmaFaults, { threads: 3, seed, knobs: ['fork.no_vma_write_lock'], hangTimeoutMs: 60000 });
      expect(r.hang).toBeUndefined();
      const kinds = r.violations.map((v) => v.kind);
      seen.push(`seed ${seed}: ${kinds.join(', ') || 'clean'} (raced ${r.stats.vmaLockRaced})`);
      if (kinds.some((k) => k === 'content' || k === 'cow')) caught++;
    }
    expect(caught, seen.join('; ')).toBeGreaterThan(0);
    for (let seed = 1; seed <= 2; seed++) expectClean(await runScenario(forkVsVmaFaults, { threads: 3, seed, hangTimeoutMs: 60000 }));
  }, 300_000);
});
