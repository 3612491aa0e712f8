#!/usr/bin/env node
// mmsim under Node >= 24 (bin/mmsim.js, the package's bin entry, starts this file with the pinned Node).
import module from 'node:module';

// V8's on-disk compile cache (workers/cpu.ts says why): before the CLI's module graph is imported
module.enableCompileCache?.();
const { main } = await import('../src/cli/main.ts');

// process.exitCode, not process.exit(): exit() skips 'beforeExit', where clinic doctor,
// bubbleprof and heapprofiler write their data. Every command releases its threads and
// timers, so the loop empties and the process ends right after the command.
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
