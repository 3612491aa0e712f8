import { describe, it, expect } from 'vitest';
import { soak } from '../src/tools/soak/soak.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario } from '../src/engine/machine.ts';

describe('soak (npm run soak)', () => {
  it('a few seconds of the mixed workload: clean, memory sampled, nothing leaked', async () => {
    const lines: string[] = [];
    const r = await soak(0.05, 8, 1, (s) => lines.push(s));
    expect(r.violationKinds, lines.join('\n')).toEqual([]);
    expect(r.hang).toBeUndefined();
    expect(r.crash).toBeUndefined();
    expect(r.ops).toBeGreaterThan(0);
    expect(r.samples.length).toBeGreaterThanOrEqual(1);
    expect(r.leakedFrames).toBe(0);
    expect(r.leakedTables).toBe(0);
    expect(r.auditProblems).toEqual([]);
    expect(r.exit).toBe(r.violations ? 1 : 0);
  }, 90_000);

  it('soak-mix, the exact schedule on which a child\'s write to the shared file page looked like stale content to its parent: clean', async () => {
    // Until the content oracle knew shared words (src/oracles/oracles.ts), this deterministic run
    // (the same as `mmsim run soak-mix --cpus 8 --seed 1 --ops 1000 --mode deterministic
    // --hot-preempt 0.3`) reported "cpu 7 read this CPU's older tag 0x7c4009e ... (stale content)":
    // cpu 7 had written 0x7c4009e in a forked child (mm 31) to the MAP_SHARED file page its parent
    // (mm 0) then read.
    const s = await loadScenario('scenarios/soak-mix.ts');
    const r = await runScenario(s, { cpus: 8, seed: 1, ops: 1000, mode: 'deterministic', hotPreempt: 0.3 });
    expect(r.violations.map((v) => v.message)).toEqual([]);
    expect(r.readsChecked).toBeGreaterThan(1000);
  }, 90_000);
});
