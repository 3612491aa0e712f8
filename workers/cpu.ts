// Thread entry point of a CPU worker: hosts one or more simulated CPUs.
// Comlink carries the control plane only (start a run, return its result);
// everything on the data path goes through the shared memory.
//
// A run starts one such thread per host, and each compiles the whole kernel's
// module graph again: ~2 s of CPU per thread on this 2-core machine under load,
// more than most deterministic seeds take to run. V8's on-disk compile cache
// (module.enableCompileCache, Node >= 22.1; it revalidates every entry against
// the source's hash) cuts that to a few tens of milliseconds, so it is enabled
// before the graph is imported (NODE_DISABLE_COMPILE_CACHE=1 turns it off).
import module from 'node:module';
import { parentPort } from 'node:worker_threads';

module.enableCompileCache?.();
const [Comlink, { default: nodeEndpoint }, { runHost }] = await Promise.all([
  import('comlink'),
  import('comlink/dist/esm/node-adapter.mjs'),
  import('../src/engine/hostrun.ts'),
]);

const api: import('../src/engine/hostrun.ts').CpuWorkerApi = {
  run(plan) {
    return runHost(plan);
  },
};

Comlink.expose(api, nodeEndpoint(parentPort!));
