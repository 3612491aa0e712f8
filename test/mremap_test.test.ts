// Every case of tools/testing/selftests/mm/mremap_test.c, run
// as a user program on the simulated machine (src/tools/selftest/mremap_test.ts).
import { describe, it, expect } from 'vitest';
import { run_mremap_selftest, REGION_TESTS, EXPAND_TESTS, MISC_TESTS } from '../src/tools/selftest/mremap_test.ts';

const byName = (rs: ReturnType<typeof run_mremap_selftest>) => Object.fromEntries(rs.map((r) => [r.name, r]));

describe('mremap_test.c on the simulated machine', () => {
  for (const arch of ['x86', 'arm64', 's390']) {
    it(`every region, expand and misc case passes on ${arch} (the three expected failures fail as the C test expects)`, () => {
      const rs = run_mremap_selftest({ arch, seed: 7 });
      expect(rs.length).toBe(REGION_TESTS.length + EXPAND_TESTS.length + MISC_TESTS.length);
      const r = byName(rs);
      for (const t of REGION_TESTS) expect(r[t.name].result, `${t.name}: ${r[t.name].message ?? ''}`).toBe(t.expect_failure ? 'xfail' : 'pass');
      for (const [name] of [...EXPAND_TESTS, ...MISC_TESTS]) expect(r[name].result, `${name}: ${r[name].message ?? ''}`).toBe('pass');
      // the expected failures fail for the reasons the C test names
      expect(r['mremap - Source and Destination Regions Overlapping'].message).toMatch(/EINVAL/);
      expect(r['mremap - Destination Address Misaligned (1KB-aligned)'].message).toMatch(/mremap failed: EINVAL/);
      expect(r['mremap - Source Address Misaligned (1KB-aligned)'].message).toMatch(/source mapping failed \(EINVAL\)/);
    }, 60_000);
  }

  it('moves whole tables where the arch can: realigned 1 MiB-aligned moves take a PTE table, PMD-aligned ones only tables (x86), PTEs on s390', () => {
    const x86 = byName(run_mremap_selftest({ arch: 'x86', filter: 'MB mremap' }));
    expect(x86['2MB mremap - Source 1MB-aligned, Destination 1MB-aligned'].moved).toEqual({ ptes: 256, pmds: 1, puds: 0, realigned: 1 });
    expect(x86['4MB mremap - Source PMD-aligned, Destination PMD-aligned'].moved).toEqual({ ptes: 0, pmds: 2, puds: 0, realigned: 0 });
    expect(x86['4MB mremap - Source PMD-aligned, Destination PTE-aligned'].moved).toEqual({ ptes: 1024, pmds: 0, puds: 0, realigned: 0 });
    const s390 = byName(run_mremap_selftest({ arch: 's390', filter: 'MB mremap' }));
    expect(s390['4MB mremap - Source PMD-aligned, Destination PMD-aligned'].moved).toEqual({ ptes: 1024, pmds: 0, puds: 0, realigned: 0 });
  }, 60_000);

  it('the 1 GiB perf cases move exactly 262144 PTEs, 512 PTE tables and 1 PMD table, contents verified', () => {
    const r = byName(run_mremap_selftest({ arch: 'x86', thresholdMb: 0, perf: true, filter: '1GB' }));
    expect(r['1GB mremap - Source PTE-aligned, Destination PTE-aligned'].moved).toEqual({ ptes: 262144, pmds: 0, puds: 0, realigned: 0 });
    expect(r['1GB mremap - Source PMD-aligned, Destination PMD-aligned'].moved).toEqual({ ptes: 0, pmds: 512, puds: 0, realigned: 0 });
    expect(r['1GB mremap - Source PUD-aligned, Destination PUD-aligned'].moved).toEqual({ ptes: 0, pmds: 0, puds: 1, realigned: 0 });
    for (const x of Object.values(r)) expect(x.result).toBe('pass');
  }, 120_000);

  it('catches realignment onto mappings that are not moving (knob mremap.realign_unchecked)', () => {
    const r = byName(run_mremap_selftest({ arch: 'x86', knobs: ['mremap.realign_unchecked'], filter: 'mremap move' }));
    expect(r['mremap mremap move within range'].result).toBe('fail');
    expect(r['mremap mremap move within range'].message).toMatch(/corrupted by an unrelated mremap/);
  }, 60_000);
});
