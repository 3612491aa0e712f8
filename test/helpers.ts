// Unit tests drive an inline machine: every CPU on the test's own thread.
export { inlineMachine as testMachine, type InlineMachine as TestMachine } from '../src/engine/inline.ts';

import { expect } from 'vitest';
import type { RunResult } from '../src/engine/machine.ts';
import { summary } from '../src/report/summary.ts';

/** A run that finished with no violation, no hang or crash, and clean audits (and, if asked, no failed syscall). */
export function expectClean(r: RunResult, o: { noSyscallErrors?: boolean } = {}): void {
  const why = summary(r);
  expect(r.hang, why).toBeUndefined();
  expect(r.crash, why).toBeUndefined();
  expect(r.violations.map((v) => v.message), why).toEqual([]);
  expect(r.audit.problems, why).toEqual([]);
  expect(r.teardownAudit.problems, why).toEqual([]);
  if (o.noSyscallErrors) expect(r.syscallErrors, why).toBe(0);
}
