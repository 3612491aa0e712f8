// Ties every run a test starts to the test: runScenario takes the running test's
// AbortSignal by default (src/engine/machine.ts runDefaults), and vitest aborts
// it when the test times out (or the run is cancelled), so the run stops and its
// host threads are terminated instead of overlapping the next test.
import { beforeEach, afterEach } from 'vitest';
import { runDefaults } from '../src/engine/machine.ts';
import { set_preempt_model, preempt_next, migrate_next } from '../src/hw/preempt.ts';

beforeEach((ctx) => {
  runDefaults.signal = ctx.signal;
});
afterEach(() => {
  runDefaults.signal = undefined;
  // the preemption model and the forced preemptions and migrations a test asked for are
  // module state of this file's process: the next test starts without them
  set_preempt_model('none');
  preempt_next(0);
  migrate_next(0);
});
