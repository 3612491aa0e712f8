// Pool threads start from sources stripped once on the main thread (issue #15,
// src/engine/prestrip.ts): the map covers every module a stress task loads, and
// a pool thread is served from the map, not from Node's TypeScript stripper.
import { describe, it, expect } from 'vitest';
import { Piscina } from 'piscina';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { dropComments, packSources, prestrippedPool, prestrippedWorker, strippedGraph, PRESTRIPPED_PROLOGUE } from '../src/engine/prestrip.ts';
import { stressPoolOptions } from '../src/tools/stress/stress.ts';
import { resolveScenario } from '../src/engine/scenario.ts';

const u = (p: string): string => new URL(`../${p}`, import.meta.url).href;

describe('prestripped pool threads', () => {
  it('the stress pool map holds the task module, its dynamic imports, the CPU worker and the scenario files', async () => {
    const scenario = await resolveScenario('munmap-vs-access');
    const { workerData } = stressPoolOptions([scenario]);
    const keys = Object.keys(workerData.stripped);
    for (const p of ['workers/stress.ts', 'src/engine/scenario.ts', 'src/engine/machine.ts', 'src/tools/repro/repro.ts',
      'workers/cpu.ts', 'src/hw/cpu.ts', 'src/mm/memory.ts']) expect(keys).toContain(u(p));
    expect(keys).toContain(pathToFileURL(scenario).href);
    // stripped, not raw: no type annotation survives, line count unchanged
    const raw = strippedGraph(new URL(u('src/hw/cpu.ts')))[u('src/hw/cpu.ts')];
    expect(raw).not.toMatch(/\breadonly tlb: Tlb/);
  });

  it('a pool thread loads its task from the map', async () => {
    const entry = new URL(u('test/fixtures/prestrip/task.ts'));
    const opts = prestrippedPool(entry);
    expect(Object.keys(opts.workerData.stripped)).toContain(entry.href);
    const pool = new Piscina({ ...opts, minThreads: 1, maxThreads: 1 });
    try {
      expect(await pool.run(null)).toBe('node'); // the map holds what the stripper makes of the file
      await pool.destroy();
      opts.workerData.stripped[entry.href] = "export default function task() { return 'map'; }";
      const pool2 = new Piscina({ ...opts, minThreads: 1, maxThreads: 1 });
      try {
        expect(await pool2.run(null)).toBe('map');
      } finally {
        await pool2.destroy();
      }
    } finally {
      await pool.destroy();
    }
  }, 30_000);

  it('a JSON scenario file is not handed to the stripper (it is read, not imported)', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const f = join(mkdtempSync(join(tmpdir(), 'mmsim-prestrip-')), 's.json');
    writeFileSync(f, '{ "name": "j", "machine": { "cpus": 2 } }');
    const { workerData } = stressPoolOptions([f]);
    expect(Object.keys(workerData.stripped)).not.toContain(pathToFileURL(f).href);
    // and a module the stripper rejects is left to the thread's own loader, not a crash here
    const bad = join(mkdtempSync(join(tmpdir(), 'mmsim-prestrip-')), 'bad.ts');
    writeFileSync(bad, '{ "a": 1 }');
    expect(strippedGraph(pathToFileURL(bad))).toEqual({});
  });

  it('a host thread decodes each module it loads from the one shared buffer of packed sources', async () => {
    const entry = new URL(u('test/fixtures/prestrip/entry.ts'));
    const dep = new URL(u('test/fixtures/prestrip/task.ts'));
    const opts = prestrippedWorker(entry);
    expect(opts.workerData.sources.bytes).toBeInstanceOf(SharedArrayBuffer);
    expect(Object.keys(opts.workerData.sources.index).sort()).toEqual([entry.href, dep.href].sort());
    // served from the buffer, not from the file: a replaced module (multi-byte UTF-8 in it) is what runs
    const graph = strippedGraph(entry);
    graph[dep.href] = "export default function task() { return 'packed \u00b5s \u2014 \u{1f600}'; }";
    const w = new Worker(PRESTRIPPED_PROLOGUE, { eval: true, workerData: { entry: entry.href, sources: packSources(graph) } });
    try {
      const got = await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
      expect(got).toBe('packed \u00b5s \u2014 \u{1f600}');
    } finally {
      await w.terminate();
    }
  }, 30_000);

  it('the served sources have no comments, and the same behaviour, lines and columns', async () => {
    const { readFileSync, mkdtempSync, writeFileSync } = await import('node:fs');
    const { stripTypeScriptTypes } = await import('node:module');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const url = new URL(u('test/fixtures/prestrip/comments.ts'));
    const raw = readFileSync(url, 'utf8');
    const full = stripTypeScriptTypes(raw, { mode: 'strip' });
    const served = strippedGraph(url)[url.href];
    const stripped = stripTypeScriptTypes(raw, { mode: 'strip', sourceUrl: url.href }); // (the stripper appends the sourceURL line)
    expect(served).toBe(dropComments(stripped));
    expect(served).not.toMatch(/JSDoc|multi-line|but this is|a regex of/);
    expect(served).toMatch(/\/\/# sourceURL=file:/); // the stripper's magic comment stays
    const lines = (t: string): number => t.split(/\r\n|[\n\r\u2028\u2029]/).length;
    expect(lines(served)).toBe(lines(stripped));
    expect(lines(full)).toBe(lines(raw));
    const dir = mkdtempSync(join(tmpdir(), 'mmsim-prestrip-'));
    const run = async (name: string, src: string): Promise<unknown> => {
      writeFileSync(join(dir, name), src.replace(/\/\/# sourceURL=.*/, ''));
      return ((await import(pathToFileURL(join(dir, name)).href)) as { probe(): unknown }).probe();
    };
    const a = await run('full.mjs', full);
    expect(await run('served.mjs', served)).toEqual(a);
    expect(a).toMatchObject({ joined: 3, division: 1, tpl: expect.stringContaining('/* nor this */ 3 nested // x'), lines: ['17:15', '17:89', '21:16'] }); // the three where() calls of comments.ts, as in the file
    // what acorn does not parse is left alone
    expect(dropComments('let x = ; // broken')).toBe('let x = ; // broken');
  });
});
