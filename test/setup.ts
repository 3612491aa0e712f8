// Ties every run a test starts to the test: runScenario takes the running test's
// AbortSignal by default (src/engine/machine.ts runDefaults), and vitest aborts
// it when the test times out (or the run is cancelled), so the run stops and its
// host threads are terminated instead of overlapping the next test.
import { beforeEach, afterEach } from 'vitest';
import { runDefaults } from '../src/engine/machine.ts';

beforeEach((ctx) => {
  runDefaults.signal = ctx.signal;
});
afterEach(() => {
  runDefaults.signal = undefined;
});
