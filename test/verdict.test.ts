// Issue #10 item 4, the verdict on Gordeev's range-aware lazy MMU series on s390
// (docs/findings/s390-lazy-zap-uaf.md). s390 frees zapped pages at
// __tlb_remove_page (arch/s390/include/asm/tlb.h __tlb_remove_page_size:
// "s390 doesn't delay rmap removal", MMU_GATHER_NO_GATHER), trusting that
// ptep_get_and_clear has done the IPTE. Every posted version (v1..v6) batches
// zap_pte_range: the clear is cached, memory keeps the valid entry and other
// CPUs' TLBs their translations until lazy_mmu_mode_disable, and the page is
// freed before that. Deterministic mode: the same seeds give the same
// interleavings on any machine load.
import { describe, it, expect } from 'vitest';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type RunOptions } from '../src/engine/machine.ts';
import type { LazySeries } from '../src/mm/lazy_mmu.ts';
import { readRepro } from '../src/tools/repro/repro.ts';
import { replay } from '../src/tools/repro/shrink.ts';

const s = await loadScenario('scenarios/munmap-vs-access.ts');
const SEEDS = [1, 2, 3];
const det = (seed: number, lazySeries: LazySeries): RunOptions =>
  ({ mode: 'deterministic', arch: 's390', cpus: 4, ops: 600, seed, hotPreempt: 0.5, lazySeries });
// a page freed while memory or a TLB still maps it
const UAF = ['uaf-stale-tlb', 'pte-maps-free-frame'];

describe('verdict: s390 zap_pte_range batch frees pages still mapped', () => {
  it('v6 (the latest posted) and v1: every seed reports a page freed while still mapped', async () => {
    for (const v of ['v6', 'v1'] as LazySeries[]) {
      for (const seed of SEEDS) {
        const r = await runScenario(s, det(seed, v));
        expect(r.violations.length, `${v} seed ${seed}`).toBeGreaterThan(0);
        expect(r.violations.every((x) => UAF.includes(x.kind)), `${v} seed ${seed}: ${r.violations.map((x) => x.kind)}`).toBe(true);
      }
    }
  }, 120_000);

  it('the same seeds are clean without the series (none) and with the suggested fix (v6-fixed), which still batches', async () => {
    for (const v of ['none', 'v6-fixed'] as LazySeries[]) {
      for (const seed of SEEDS) {
        const r = await runScenario(s, det(seed, v));
        expect(r.violations.map((x) => x.message), `${v} seed ${seed}`).toEqual([]);
        if (v === 'v6-fixed') expect(r.stats.ipteRange, `seed ${seed}: the fix keeps the IPTE-range batching`).toBeGreaterThan(0);
        else expect(r.stats.batched).toBe(0);
      }
    }
  }, 120_000);

  it('docs/findings/s390-lazy-zap-uaf.repro.json replays the use-after-free exactly; the same run under v6-fixed is clean', async () => {
    const repro = await readRepro('docs/findings/s390-lazy-zap-uaf.repro.json');
    expect(repro.options.lazySeries).toBe('v6');
    const out = await replay(repro);
    expect(out.reproduced).toBe(true);
    expect(out.samePath).toBe(true);
    expect(out.result.violations[0].kind).toBe('uaf-stale-tlb');
    const fixed = await runScenario(repro.scenario, { ...repro.options, lazySeries: 'v6-fixed' });
    expect(fixed.violations).toEqual([]);
  }, 120_000);
});
