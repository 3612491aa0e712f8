import { defineConfig } from 'vitest/config';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks', // tests start worker threads; keep each file in its own process
    // V8 flags for the fork (worker threads reject V8 flags: ERR_WORKER_INVALID_EXEC_ARGV; NODE_OPTIONS
    // takes only a few). --no-memory-protection-keys: V8's ThreadIsolation (PKU-protected JIT pages)
    // aborts with `Check failed: jit_page.has_value()` when many threads instantiate WebAssembly
    // (each host thread loads Node's TypeScript stripper) on CPUs with PKU; docs/robustness.md.
    // --report-on-fatalerror: if V8 dies anyway, a diagnostic report is left in the directory below.
    execArgv: ['--no-memory-protection-keys', '--report-on-fatalerror', `--report-directory=${join(tmpdir(), 'mmsim-fatal-reports')}`],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
  },
});
