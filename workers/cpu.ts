// Thread entry point of a CPU worker: hosts one or more simulated CPUs.
// Comlink carries the control plane only (start a run, return its result);
// everything on the data path goes through the shared memory.
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { runHost, type CpuWorkerApi } from '../src/engine/hostrun.ts';

const api: CpuWorkerApi = {
  run(plan) {
    return runHost(plan);
  },
};

Comlink.expose(api, nodeEndpoint(parentPort!));
