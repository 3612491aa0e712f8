import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { computeLayout, makeViews, hostWord, cpuHostWord, HB_WAITING_ON } from '../src/hw/layout.ts';

// More threads than cores, so that lock holders get descheduled by the OS: the
// spin-then-block path has to work, not just the fast path.
describe('locks across worker threads', () => {
  it('spinlock gives mutual exclusion and rwsem never lets a reader see a half-written pair', async () => {
    const n = 6;
    const L = computeLayout({ cpus: n, hosts: n, dataFrames: 16, tableFrames: 16, maxMms: 1, maxVmas: 1, maxTasks: 1, maxFiles: 1, eventRing: 4 });
    const V = makeViews(new SharedArrayBuffer(L.bytes + 4096), L);
    for (let c = 0; c < n; c++) {
      V.I[cpuHostWord(L, c)] = c;
      V.I[hostWord(L, c, HB_WAITING_ON)] = -1;
    }
    const base = L.bytes / 4; // scratch words past the machine
    const spin = base, rw = base + 16, counter = base + 32, pair = base + 48;
    const iters = 3000;
    const workers = [...Array(n).keys()].map((c) => new Worker(new URL('./fixtures/lock_worker.ts', import.meta.url), {
      workerData: { sab: V.sab, layout: L, host: c, cpu: c, iters, spin, rw, counter, pair },
    }));
    try {
      const results = await Promise.race([
        Promise.all(workers.map((w) => new Promise<{ torn: number; violations: number }>((res, rej) => {
          w.once('message', res);
          w.once('error', rej);
        }))),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('lock test hung')), 45_000)),
      ]);
      expect(V.I[counter]).toBe(n * iters);
      expect(results.map((r) => r.torn)).toEqual(Array(n).fill(0));
      expect(results.map((r) => r.violations)).toEqual(Array(n).fill(0));
      expect(V.I[spin]).toBe(0);
      expect(V.I[rw]).toBe(0);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });
});
