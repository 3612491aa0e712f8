// Chrome trace-event JSON (opens in ui.perfetto.dev): one track per simulated CPU.
import type { RunResult } from './machine.ts';

/** The Chrome trace-event object for a traced run (RunResult.trace must be set). */
export function toChromeTrace(r: RunResult): { traceEvents: object[]; displayTimeUnit: string; metadata: object } {
  void r;
  throw new Error('toChromeTrace: not implemented yet');
}
