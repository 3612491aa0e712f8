import { describe, it, expect, afterEach } from 'vitest';
import { testMachine } from './helpers.ts';
import { ARCH_NAMES } from '../src/arch/index.ts';
import { setKnobs } from '../src/inject/knobs.ts';
import {
  is_lazy_mmu_mode_active, lazy_mmu_mode_enable, lazy_mmu_mode_disable, lazy_mmu_mode_pause, lazy_mmu_mode_resume,
  set_lazy_series, LAZY_SERIES, LAZY_SERIES_LATEST, type LazySeries,
} from '../src/mm/lazy_mmu.ts';

// The kernel's own test of the generic lazy MMU API, mm/tests/lazy_mmu_mode_kunit.c
// (Kevin Brodsky's nesting series, merged for 7.0; torvalds/linux
// 42d3b66d4cdb), ported case for case: the suite "lazy_mmu_mode" has one case,
// lazy_mmu_mode_active, and two helpers. KUNIT_EXPECT_* records a failure and
// carries on, as KUnit does; the case passes when nothing was recorded.

interface Kunit {
  failures: string[];
  /** where in the case we are (the C file's comments), for the failure messages */
  at: string;
}
function KUNIT_EXPECT_TRUE(test: Kunit, cond: boolean, what: string): void {
  if (!cond) test.failures.push(`${test.at}: expected ${what} to be true`);
}
function KUNIT_EXPECT_FALSE(test: Kunit, cond: boolean, what: string): void {
  if (cond) test.failures.push(`${test.at}: expected ${what} to be false`);
}

function expect_not_active(test: Kunit): void {
  KUNIT_EXPECT_FALSE(test, is_lazy_mmu_mode_active(), 'is_lazy_mmu_mode_active()');
}
function expect_active(test: Kunit): void {
  KUNIT_EXPECT_TRUE(test, is_lazy_mmu_mode_active(), 'is_lazy_mmu_mode_active()');
}

/** static void lazy_mmu_mode_active(struct kunit *test) */
function lazy_mmu_mode_active(test: Kunit): void {
  test.at = 'start';
  expect_not_active(test);

  test.at = 'enable';
  lazy_mmu_mode_enable();
  expect_active(test);

  {
    /* Nested section */
    test.at = 'nested enable';
    lazy_mmu_mode_enable();
    expect_active(test);

    test.at = 'nested disable';
    lazy_mmu_mode_disable();
    expect_active(test);
  }

  {
    /* Paused section */
    test.at = 'pause';
    lazy_mmu_mode_pause();
    expect_not_active(test);

    {
      /* No effect (paused) */
      test.at = 'enable while paused';
      lazy_mmu_mode_enable();
      expect_not_active(test);

      test.at = 'disable while paused';
      lazy_mmu_mode_disable();
      expect_not_active(test);

      test.at = 'nested pause';
      lazy_mmu_mode_pause();
      expect_not_active(test);

      test.at = 'nested resume';
      lazy_mmu_mode_resume();
      expect_not_active(test);
    }

    test.at = 'resume';
    lazy_mmu_mode_resume();
    expect_active(test);
  }

  test.at = 'disable';
  lazy_mmu_mode_disable();
  expect_not_active(test);
}

/** kunit_test_suite(lazy_mmu_mode_test_suite): run the case in a task of a fresh machine; its failures. */
function run_case(arch: string, knobs: string[] = []): string[] {
  const m = testMachine({ cpus: 1, arch, knobs });
  m.process([0]);
  const test: Kunit = { failures: [], at: '' };
  m.on(0, () => lazy_mmu_mode_active(test));
  // contract violations the API reported along the way count as failures too (a WARN in the kernel)
  for (const v of m.violations) test.failures.push(`${v.kind}: ${v.message}`);
  return test.failures;
}

afterEach(() => {
  setKnobs([]);
  set_lazy_series(LAZY_SERIES_LATEST);
});

describe('mm/tests/lazy_mmu_mode_kunit.c, suite lazy_mmu_mode', () => {
  it.each(ARCH_NAMES)('lazy_mmu_mode_active passes on %s', (arch) => {
    expect(run_case(arch)).toEqual([]);
  });

  it.each(Object.keys(LAZY_SERIES) as LazySeries[])('lazy_mmu_mode_active passes on s390 under --lazy-series %s', (v) => {
    set_lazy_series(v);
    expect(run_case('s390')).toEqual([]);
  });

  it('fails with lazy_mmu.nested_disable_leaves: the nested disable leaves the mode, the outer disable is unbalanced', () => {
    const failures = run_case('x86', ['lazy_mmu.nested_disable_leaves']);
    expect(failures[0]).toBe('nested disable: expected is_lazy_mmu_mode_active() to be true');
    expect(failures.some((f) => f.includes('lazy_mmu_mode_disable without a matching enable'))).toBe(true);
  });

  it('fails with the knob on every arch (the break is in the generic code)', () => {
    for (const arch of ARCH_NAMES) expect(run_case(arch, ['lazy_mmu.nested_disable_leaves']).length).toBeGreaterThan(0);
  });
});
