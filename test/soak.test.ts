import { describe, it, expect } from 'vitest';
import { soak } from '../src/tools/soak/soak.ts';

describe('soak (npm run soak)', () => {
  it('a few seconds of the mixed workload: clean, memory sampled, nothing leaked', async () => {
    const lines: string[] = [];
    const r = await soak(0.05, 8, 1, (s) => lines.push(s));
    expect(r.violations, lines.join('\n')).toBe(0);
    expect(r.hang).toBeUndefined();
    expect(r.crash).toBeUndefined();
    expect(r.ops).toBeGreaterThan(0);
    expect(r.samples.length).toBeGreaterThanOrEqual(1);
    expect(r.leakedFrames).toBe(0);
    expect(r.leakedTables).toBe(0);
    expect(r.auditProblems).toEqual([]);
    expect(r.exit).toBe(0);
  }, 90_000);
});
