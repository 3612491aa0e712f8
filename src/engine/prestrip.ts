// Host threads that start from TypeScript stripped once.
//
// Node runs .ts files by stripping their types with a WebAssembly build of a
// TypeScript parser (amaro), instantiated in every thread that loads a .ts
// module. Measured on the 2-core machine of docs/performance.md: an empty worker
// thread is ~12 MiB resident, ~23 MiB once it has instantiated the stripper
// (and 8.6 GiB of virtual reservations), ~28 MiB once it has loaded the CPU
// worker's module graph. So the main thread strips every module of that graph
// once (module.stripTypeScriptTypes, the same stripper, whitespace in place of
// the types so line numbers stay), and each host thread starts from a small
// JavaScript prologue that registers a synchronous load hook serving those
// sources as plain ES modules: the thread never instantiates the stripper. A
// module the walk did not find (a scenario file imported at run time) still
// loads the ordinary way. Nothing is written to disk and there is no build
// step: a changed source is stripped again by the next process.

import { parse } from 'acorn';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workerData } from 'node:worker_threads';

/** file: URL -> stripped source, for each module of a graph (this process strips each file once) */
const cache = new Map<string, string>();
// a thread started by prestrippedPool() below received the sources it may need (the CPU worker's
// graph among them, for runs that start host threads of their own): seed the cache, so that
// strippedGraph() in that thread never calls the stripper either
{
  const given = (workerData as { stripped?: unknown } | null | undefined)?.stripped;
  if (given && typeof given === 'object') for (const [u, src] of Object.entries(given)) if (typeof src === 'string') cache.set(u, src);
}
/**
 * Stripping the ~50 modules of the CPU worker takes a few hundred ms on this
 * machine; later processes read the result from a cache directory keyed by the
 * hash of the source and the Node version (a changed file has another key).
 */
const DISK = join(tmpdir(), 'mmsim-stripped', process.version);

/**
 * `src` (an ES module) without its comments, every line terminator kept: a
 * stack trace names the same line and column as in the file. A third of the CPU
 * worker's stripped source is comments (710,296 -> 466,049 characters), and
 * every host thread keeps its modules' source as long as it runs. Measured, 32
 * threads started one after another that load the graph: 17.9 -> 17.45 MiB
 * resident each (3 runs each), a worker's heap after a full GC 7.38 -> 7.14 MB. The comments
 * are found by a parser (acorn), not a pattern: `//` and `/*` inside strings,
 * template literals and regular expressions are not comments. A comment
 * followed by code on the same line leaves as many spaces as it took on that
 * line, so the code's column stays and no two tokens are joined. Magic comments
 * (`//# sourceURL=`, which the stripper appends) stay. Source acorn does not
 * parse is returned unchanged (Node's loader reports its errors as it would).
 */
export function dropComments(src: string): string {
  const spans: [number, number][] = [];
  try {
    parse(src, {
      ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true,
      onComment: (_block, text, start, end) => {
        if (!/^[#@]\s*source(?:URL|MappingURL)=/.test(text)) spans.push([start, end]);
      },
    });
  } catch {
    return src;
  }
  const out: string[] = [];
  const nextEnd = /[\n\r\u2028\u2029]/g;
  let at = 0;
  for (const [start, end] of spans) {
    const inner = src.slice(start, end);
    const ends = inner.match(/\r\n|[\n\r\u2028\u2029]/g) ?? [];
    nextEnd.lastIndex = end;
    const rest = src.slice(end, nextEnd.exec(src)?.index ?? src.length); // the comment's last line, after it
    if (/\S/.test(rest)) {
      // code follows: the comment's part of its last line becomes spaces, so the code keeps its column
      let last = inner.length;
      for (const c of ['\n', '\r', '\u2028', '\u2029']) last = Math.min(last, inner.length - 1 - inner.lastIndexOf(c));
      out.push(src.slice(at, start), ends.join(''), ' '.repeat(last));
    } else {
      // nothing follows on its line: the blanks before it go too (whitespace between tokens, never inside one)
      let k = start;
      while (k > at && (src[k - 1] === ' ' || src[k - 1] === '\t')) k--;
      out.push(src.slice(at, k), ends.join(''));
    }
    at = end;
  }
  out.push(src.slice(at));
  return out.join('');
}

function strip(text: string, url: string): string {
  // (the format's version is in the key: a cache written before comments were dropped is not read)
  const key = createHash('sha256').update('nocomments-1\0').update(url).update('\0').update(text).digest('hex').slice(0, 32);
  const file = join(DISK, `${key}.js`);
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // not cached yet
  }
  // the API is marked experimental and says so on stderr at its first call: not the user's concern here
  const emit = process.emitWarning;
  process.emitWarning = ((w: string | Error, ...rest: unknown[]) => {
    const t = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    if (t === 'ExperimentalWarning' && String(w).includes('stripTypeScriptTypes')) return;
    (emit as (...a: unknown[]) => void).call(process, w, ...rest);
  }) as typeof process.emitWarning;
  let src: string;
  try {
    src = dropComments(stripTypeScriptTypes(text, { mode: 'strip', sourceUrl: url }));
  } finally {
    process.emitWarning = emit;
  }
  try {
    mkdirSync(DISK, { recursive: true });
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, src);
    renameSync(tmp, file); // whole or not at all, whoever races us
  } catch {
    // a read-only or full temporary directory: strip again next time
  }
  return src;
}

// static imports and re-exports of relative .ts modules, and dynamic imports of a literal one, in
// stripped source (type-only imports are gone)
const IMPORT_RE = /(?:^|[;\s(,=])(?:import|export)\s*(?:\(\s*|[\w*{}\s,$]*?\sfrom\s*)?['"](\.{1,2}\/[^'"]+\.ts)['"]/g;

/** Every relative .ts module reachable from `entry` by static imports, stripped: file: URL -> source. */
export function strippedGraph(entry: URL): Record<string, string> {
  const out: Record<string, string> = {};
  const todo = [entry.href];
  while (todo.length) {
    const url = todo.pop()!;
    if (url in out) continue;
    let src = cache.get(url);
    if (src === undefined) {
      let text: string;
      try {
        text = readFileSync(fileURLToPath(url), 'utf8');
      } catch {
        continue; // not a file here: the thread's loader reports it as it would have
      }
      try {
        src = strip(text, url);
      } catch {
        continue; // not TypeScript the stripper accepts: the thread's loader reports it as it would have
      }
      cache.set(url, src);
    }
    out[url] = src;
    for (const m of src.matchAll(IMPORT_RE)) todo.push(new URL(m[1], url).href);
  }
  return out;
}

/**
 * A graph's sources packed once, UTF-8, into shared memory, and where each
 * module's bytes are: the threads of a run all read the same bytes. Before,
 * every thread received the whole map as strings in its workerData, a
 * structured clone per thread (~0.7 MB of source, 56 modules for
 * workers/cpu.ts): measured, 64 threads that receive the map without loading
 * anything are 12.6 MiB resident each against 11.3 MiB for an idle worker.
 */
export interface PackedSources {
  bytes: SharedArrayBuffer;
  /** file: URL -> [byte offset, byte length] in `bytes` */
  index: Record<string, [number, number]>;
}

/** Pack a map of sources (file: URL -> source) into one SharedArrayBuffer. */
export function packSources(sources: Record<string, string>): PackedSources {
  let size = 0;
  for (const src of Object.values(sources)) size += Buffer.byteLength(src, 'utf8');
  const bytes = new SharedArrayBuffer(size);
  const view = Buffer.from(bytes);
  const index: Record<string, [number, number]> = {};
  let at = 0;
  for (const [url, src] of Object.entries(sources)) {
    const n = view.write(src, at, 'utf8');
    index[url] = [at, n];
    at += n;
  }
  return { bytes, index };
}

/**
 * The JavaScript a host thread starts with (a Worker with eval: true; it is a
 * CommonJS script): register a load hook that decodes a module of
 * workerData.sources (packSources()) when the loader asks for it, then import
 * workerData.entry. Only the modules the thread loads are ever decoded, each
 * once (the loader caches the module), into the string V8 keeps as the
 * module's source anyway.
 */
export const PRESTRIPPED_PROLOGUE = `
const { registerHooks } = require('node:module');
const { workerData } = require('node:worker_threads');
const { bytes, index } = workerData.sources;
registerHooks({
  load(url, context, nextLoad) {
    const at = Object.hasOwn(index, url) ? index[url] : undefined;
    if (at === undefined) return nextLoad(url, context);
    return { format: 'module', source: Buffer.from(bytes, at[0], at[1]).toString('utf8'), shortCircuit: true };
  },
});
import(workerData.entry).catch((e) => { process.nextTick(() => { throw e; }); });
`;

/** Worker options for a thread that runs `entry` (a .ts module) from stripped sources; pass to new Worker(PRESTRIPPED_PROLOGUE, ...). */
export function prestrippedWorker(entry: URL): { eval: true; workerData: { entry: string; sources: PackedSources } } {
  return { eval: true, workerData: { entry: entry.href, sources: packSources(strippedGraph(entry)) } };
}

/** The piscina entry of prestrippedPool(): plain JavaScript, so the pool thread never needs the stripper to start. */
const POOL_ENTRY = new URL('../../workers/prestripped-pool.mjs', import.meta.url);

/**
 * Piscina options for a pool whose threads run the task module `entry` (.ts) from
 * sources stripped once here. `also` are modules the tasks import at run time
 * (the CPU worker of a run with host threads of its own, the scenario files of a
 * campaign): their graphs travel too, so that a pool thread loads no .ts file
 * through Node's stripper (a module missing from the map still loads the
 * ordinary way).
 */
export function prestrippedPool(entry: URL, also: URL[] = []): { filename: string; workerData: { entry: string; stripped: Record<string, string> } } {
  const stripped: Record<string, string> = {};
  for (const u of [entry, ...also]) Object.assign(stripped, strippedGraph(u));
  return { filename: fileURLToPath(POOL_ENTRY), workerData: { entry: entry.href, stripped } };
}
