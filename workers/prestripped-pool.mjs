// Piscina task module for pools made by prestrippedPool() (src/engine/prestrip.ts):
// serves the sources the main thread stripped once (workerData.stripped) to this
// thread's module loader, then hands piscina the default export of the real task
// module (workerData.entry, a .ts file). Plain JavaScript on purpose: a pool
// thread that never loads a .ts file through Node never instantiates Node's
// TypeScript stripper (~11 MiB resident per thread, docs/performance.md).
import { registerHooks } from 'node:module';
import { workerData } from 'node:worker_threads';

const stripped = workerData.stripped;
registerHooks({
  load(url, context, nextLoad) {
    const source = stripped[url];
    return source === undefined ? nextLoad(url, context) : { format: 'module', source, shortCircuit: true };
  },
});
const task = await import(workerData.entry);
export default task.default;
