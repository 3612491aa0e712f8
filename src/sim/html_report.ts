// A self-contained HTML report of a run.
import type { RunResult } from './machine.ts';

export function htmlReport(r: RunResult): string {
  void r;
  throw new Error('htmlReport: not implemented yet');
}
