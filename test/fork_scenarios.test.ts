// fork and COW under contention (issue #6), on real worker threads: the three
// fork scenarios clean at 8 and 64 CPUs under the x86, arm64 and s390 flush
// models (64 CPUs hosted on 2 threads), and every fork/COW/GUP knob caught by an
// oracle in its scenario, which runs clean without it.
import { expectClean as expectCleanRun } from './helpers.ts';
import { describe, it, expect } from 'vitest';
import { loadScenario, type Scenario } from '../src/engine/scenario.ts';
import { runScenario, type RunOptions, type RunResult } from '../src/engine/machine.ts';

const lib: Record<string, Scenario> = {};
for (const n of ['fork-vs-writers', 'fork-storm', 'fork-vs-mremap', 'cow-vs-readers', 'cow-vmsplice', 'dirty-cow', 'fork-vs-pin']) {
  lib[n] = await loadScenario(`scenarios/${n}.ts`);
}

const expectClean = (r: RunResult): void => expectCleanRun(r, { noSyscallErrors: true });

describe('fork scenarios run clean', () => {
  for (const arch of ['x86', 'arm64', 's390']) {
    for (const name of ['fork-vs-writers', 'fork-storm', 'fork-vs-mremap']) {
      it(`${name} at 8 and 64 CPUs on ${arch}`, async () => {
        for (const [cpus, ops] of [[8, 400], [64, 150]] as const) {
          // s390 frees pages at __tlb_remove_page (arch/s390/include/asm/tlb.h) while every posted
          // version's batch in zap_pte_range still holds the clear (docs/findings/s390-lazy-zap-uaf.md;
          // 1/5 seeds of fork-vs-mremap, test/verdict.test.ts): the fork checks run with the fix, clean
          const lazySeries = arch === 's390' && name === 'fork-vs-mremap' ? 'v6-fixed' as const : undefined;
          const r = await runScenario(lib[name], { cpus, arch, ops, seed: 3, hangTimeoutMs: 60000, lazySeries });
          expectClean(r);
          expect(r.stats.forkPtes).toBeGreaterThan(0);
          expect(r.stats.cowCopies).toBeGreaterThan(0);
          expect(r.cowChecked).toBeGreaterThan(100);
          expect(r.readsChecked).toBeGreaterThan(100);
        }
      }, 120_000);
    }
  }
});

interface KnobCase {
  knob: string;
  scenario: string;
  opts: RunOptions;
  /** the oracles that may catch it (whichever meets the bug first) */
  kinds: string[];
}

// Each needs real concurrency inside one kernel operation, so CPUs that must
// race run on different host threads; the scenarios inject delays at
// scheduling points where the window is a few instructions wide.
const CASES: KnobCase[] = [
  { knob: 'fork.no_parent_flush', scenario: 'fork-vs-writers', opts: { cpus: 4, threads: 4, ops: 2000 }, kinds: ['cow', 'stale-tlb'] },
  { knob: 'fork.flush_after_unlock', scenario: 'fork-vs-writers', opts: { cpus: 4, threads: 4, ops: 2000 }, kinds: ['cow', 'content', 'stale-tlb'] },
  { knob: 'cow.install_before_flush', scenario: 'cow-vs-readers', opts: { threads: 4 }, kinds: ['cow', 'uaf-stale-tlb', 'content'] },
  { knob: 'cow.reuse_by_mapcount', scenario: 'cow-vmsplice', opts: {}, kinds: ['cow'] },
  { knob: 'gup.dirty_cow', scenario: 'dirty-cow', opts: {}, kinds: ['cow'] },
  { knob: 'gup.fast_no_seqcount', scenario: 'fork-vs-pin', opts: {}, kinds: ['cow', 'content'] },
];

describe('fork, COW and GUP knobs are caught', () => {
  for (const c of CASES) {
    it(`${c.knob}: caught in ${c.scenario}, which is clean without it`, async () => {
      // caught on at least 2 of up to 24 seeds: the windows are narrow; on a quiet machine most
      // seeds catch it (the loop stops at the second), but under heavy load (vitest --maxWorkers=3
      // beside other worker-heavy files) 1 of 8 was seen, so the margin is wide, not the budget tight
      let caught = 0;
      const seen: string[] = [];
      for (let seed = 1; seed <= 24 && caught < 2; seed++) {
        const r = await runScenario(lib[c.scenario], { ...c.opts, seed, knobs: [c.knob], hangTimeoutMs: 30000 });
        expect(r.hang).toBeUndefined();
        const k = r.violations.map((v) => v.kind);
        seen.push(`seed ${seed}: ${k.join(', ') || 'clean'}`);
        if (k.some((x) => c.kinds.includes(x))) caught++;
      }
      expect(caught, seen.join('; ')).toBe(2);
      for (let seed = 1; seed <= 2; seed++) {
        const ops = c.opts.ops ?? lib[c.scenario].run.opsPerCpu;
        expectClean(await runScenario(lib[c.scenario], { ...c.opts, seed, ops: Math.min(ops, 2000), hangTimeoutMs: 30000 }));
      }
    }, 400_000);
  }
});

describe('the parent flush across flush models', () => {
  it('fork.no_parent_flush is caught on arm64 and harmless on s390 (leaving the batched section already ran IPTE-range on every CPU)', async () => {
    const opts = { cpus: 4, threads: 4, ops: 2000, knobs: ['fork.no_parent_flush'], hangTimeoutMs: 30000 };
    let caught = 0;
    for (let seed = 1; seed <= 4 && caught === 0; seed++) {
      const r = await runScenario(lib['fork-vs-writers'], { ...opts, arch: 'arm64', seed });
      if (r.violations.some((v) => v.kind === 'cow' || v.kind === 'stale-tlb')) caught++; // the stale-TLB oracle may meet the missing flush first
    }
    expect(caught).toBe(1);
    expectClean(await runScenario(lib['fork-vs-writers'], { ...opts, arch: 's390', seed: 1 }));
  }, 120_000);
});
