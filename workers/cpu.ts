// Thread entry point of a CPU worker: hosts one or more simulated CPUs.
// Comlink carries the control plane only (start a run, return its result);
// everything on the data path goes through the shared memory.
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { runHost, type HostPlan, type HostResult } from '../src/sim/hostrun.ts';

export interface CpuWorkerApi {
  run(plan: HostPlan): HostResult;
}

const api: CpuWorkerApi = {
  run(plan) {
    return runHost(plan);
  },
};

Comlink.expose(api, nodeEndpoint(parentPort!));
