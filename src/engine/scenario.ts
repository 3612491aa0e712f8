// Scenarios: a typed description of a machine, processes, threads with their
// CPU placement and programs, and bug knobs. Written in TypeScript with
// defineScenario() or as JSON of the same shape; validated with zod, and every
// error names the file and the path of the bad field.

import { z } from 'zod';
import { readFile } from 'node:fs/promises';
import { resolve, extname, join, dirname } from 'node:path';
import { readdir } from 'node:fs/promises';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { KNOB_NAMES } from '../inject/knobs.ts';
import { ARCH_NAMES } from '../arch/index.ts';

const pages = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])])
  .describe('a page count, or [min, max] for a random count');
/** page index within the region, 'random', or the name of a range saved by an earlier step */
const at = z.union([z.number().int().nonnegative(), z.string().min(1)]).default('random');
const prot = z.enum(['none', 'r', 'rw', 'rwx', 'rx']);
/** pages of a 1 GiB PUD leaf (a thp: 'pud' region) */
const PUD_PAGES = 262144;

export type Step =
  | { op: 'access'; region: string; mode: 'read' | 'write' | 'rw'; at: number | string; count: number }
  | { op: 'munmap'; region: string; at: number | string; pages: number | [number, number]; save?: string }
  | { op: 'mmap'; region: string; at: number | string; pages?: number | [number, number] }
  | { op: 'mprotect'; region: string; at: number | string; pages: number | [number, number]; prot: z.infer<typeof prot>; save?: string }
  | { op: 'choose'; weights: number[]; steps: Step[] }
  | { op: 'repeat'; times: number; steps: Step[] }
  | { op: 'madvise'; region: string; at: number | string; pages: number | [number, number]; advice: 'dontneed' }
  | { op: 'mremap'; region: string; to: string }
  | { op: 'fork'; child: Step[]; childOps: number }
  | { op: 'lazy-nest'; region: string; pages: number; order: 'plain-outer' | 'range-outer' }
  | { op: 'pin'; region: string; at: number | string; access: 'write' | 'read'; hold: number; save?: string }
  | { op: 'procmem-write'; region: string; at: number | string }
  | { op: 'exit' }
  | { op: 'vmalloc'; pages: number | [number, number]; hold: number }
  | { op: 'yield' }
  | { op: 'stop' }
  | { op: 'truncate'; file: string; pages: number | [number, number] }
  | { op: 'punch'; file: string; at: number | 'random' | [number, number]; pages: number | [number, number] }
  | { op: 'reclaim'; file: string; at: number | 'random' | [number, number]; pages: number | [number, number] };

/** a file size in pages (0 allowed), or [min, max] */
const size = z.union([z.number().int().nonnegative(), z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])])
  .describe('a size in pages, or [min, max] for a random size');
/** page offset into the file, 'random', or [min, max] for a random offset in that range */
const fileAt = z.union([
  z.number().int().nonnegative(), z.literal('random'), z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
]).default('random');

const step: z.ZodType<Step> = z.lazy(() =>
  z.discriminatedUnion('op', [
    z.object({
      op: z.literal('access'), region: z.string(), mode: z.enum(['read', 'write', 'rw']).default('rw'), at,
      count: z.number().int().positive().default(1),
    }).strict(),
    z.object({ op: z.literal('munmap'), region: z.string(), at, pages, save: z.string().optional() }).strict(),
    z.object({ op: z.literal('mmap'), region: z.string(), at, pages: pages.optional() }).strict(),
    z.object({ op: z.literal('mprotect'), region: z.string(), at, pages, prot, save: z.string().optional() }).strict(),
    z.object({ op: z.literal('choose'), weights: z.array(z.number().nonnegative()).min(1), steps: z.array(step).min(1) }).strict()
      .refine((c) => c.weights.length === c.steps.length, { message: 'weights and steps must have the same length' }),
    z.object({ op: z.literal('repeat'), times: z.number().int().positive(), steps: z.array(step).min(1) }).strict(),
    z.object({ op: z.literal('madvise'), region: z.string(), at, pages, advice: z.literal('dontneed').default('dontneed') }).strict(),
    z.object({ op: z.literal('mremap'), region: z.string(), to: z.string() }).strict(),
    z.object({ op: z.literal('fork'), child: z.array(step).min(1), childOps: z.number().int().positive().default(20) }).strict(),
    z.object({
      op: z.literal('lazy-nest'), region: z.string(), pages: z.number().int().positive().default(8),
      order: z.enum(['plain-outer', 'range-outer']),
    }).strict(),
    z.object({
      op: z.literal('pin'), region: z.string(), at,
      access: z.enum(['write', 'read']).default('write')
        .describe('write: pin_user_pages_fast(FOLL_PIN | FOLL_WRITE) and DMA-style writes through the pin; read: get_user_pages_fast (a FOLL_GET reference, as vmsplice takes) and reads through it'),
      hold: z.number().int().nonnegative().default(4).describe('following operations of this task during which the pin is held (one access through it each), then it is released'),
      save: z.string().optional(),
    }).strict(),
    z.object({ op: z.literal('procmem-write'), region: z.string(), at }).strict()
      .describe('a write of one word through /proc/self/mem: GUP with FOLL_FORCE | FOLL_WRITE, which may write to a read-only private mapping'),
    z.object({ op: z.literal('exit') }).strict().describe('the forked child exits now (only in a fork\'s child program)'),
    z.object({
      op: z.literal('vmalloc'), pages: z.union([z.number().int().min(1).max(7), z.tuple([z.number().int().min(1).max(7), z.number().int().min(1).max(7)])]).default(2),
      hold: z.number().int().nonnegative().default(2),
    }).strict().describe('vmalloc an area (1-7 pages), write and read every page through the kernel mapping, keep it for `hold` more vmalloc steps, then vfree it (src/mm/vmalloc.ts)'),
    z.object({ op: z.literal('yield') }).strict(),
    z.object({ op: z.literal('stop') }).strict().describe('the thread is done: it idles from here on (its CPU still takes IPIs)'),
    z.object({ op: z.literal('truncate'), file: z.string(), pages: size }).strict()
      .describe('ftruncate the file to this many pages (shrinking unmaps the rest from every mapping and drops it)'),
    z.object({ op: z.literal('punch'), file: z.string(), at: fileAt, pages }).strict()
      .describe('fallocate(PUNCH_HOLE | KEEP_SIZE) of pages at a page offset of the file'),
    z.object({ op: z.literal('reclaim'), file: z.string(), at: fileAt, pages }).strict()
      .describe('reclaim the cached pages of this range of the file through the rmap (try_to_unmap, then free)'),
  ]) as z.ZodType<Step>,
);

const cpuSel = z.union([
  z.literal('all'),
  z.literal('rest').describe('every CPU not named explicitly by another thread of the scenario'),
  z.number().int().nonnegative(),
  z.array(z.number().int().nonnegative()).min(1),
]);

export const scenarioSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash, underscore'),
  description: z.string().min(1),
  machine: z.object({
    cpus: z.number().int().min(1).max(256).default(4),
    arch: z.string().refine((a) => ARCH_NAMES.includes(a), { message: `one of: ${ARCH_NAMES.join(', ')}` }).default('x86'),
    tlbEntries: z.number().int().min(1).max(1 << 16).refine((n) => (n & (n - 1)) === 0, { message: 'a power of two' }).default(64),
    memoryMiB: z.number().int().min(1).max(16384).default(64),
    tableFrames: z.number().int().min(16).optional(),
    irq: z.number().int().min(0).max(1 << 20).default(0)
      .describe('device interrupts: one at 1 in N scheduling points of kernel code with interrupts on (0: none); the handler allocates, maps (DEBUG_PAGEALLOC, which is then on), uses and frees a page (src/mm/vmalloc.ts)'),
  }).strict().default({ cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64, irq: 0 }),
  run: z.object({
    opsPerCpu: z.number().int().positive().default(20000),
    durationMs: z.number().int().positive().optional(),
    seed: z.number().int().nonnegative().default(1),
    delay: z.number().min(0).max(1).default(0),
    delaySpins: z.number().int().positive().default(2000),
  }).strict().default({ opsPerCpu: 20000, seed: 1, delay: 0, delaySpins: 2000 }),
  knobs: z.array(z.string().refine((k) => (KNOB_NAMES as string[]).includes(k), { message: `a bug knob (mmsim knobs lists them)` })).default([]),
  files: z.array(z.object({
    name: z.string().min(1),
    pages: z.number().int().positive(),
  }).strict()).default([]).describe('page-cache files (shmem objects) that regions of any process may map'),
  processes: z.array(z.object({
    name: z.string().min(1),
    regions: z.array(z.object({
      name: z.string().min(1),
      pages: z.number().int().positive(),
      shared: z.boolean().default(false),
      prot: prot.default('rw'),
      file: z.string().min(1).optional().describe('map this file of `files` (MAP_SHARED if shared, else MAP_PRIVATE) instead of anonymous memory'),
      offset: z.number().int().nonnegative().default(0).describe('page offset into the file'),
      align: z.union([z.enum(['page', 'pmd', 'pud']), z.number().int().positive()]).optional()
        .describe('place the region at an address aligned to exactly a page, a PMD (2 MiB), a PUD (1 GiB) or this many bytes (aligned to it, not to twice it); default: where mmap puts it'),
      populate: z.boolean().default(false).describe('fault every page in (written once) at boot'),
      thp: z.union([z.boolean(), z.enum(['pmd', 'pud'])]).default(false)
        .describe("true or 'pmd': anonymous transparent huge pages at PMD level (MADV_HUGEPAGE, placed 2 MiB-aligned); 'pud': a DAX-like device of one 1 GiB page mapped shared, faulted in as a PUD leaf"),
    }).strict()).default([]),
    threads: z.array(z.object({
      name: z.string().min(1),
      cpus: cpuSel,
      program: z.array(step).min(1),
    }).strict()).min(1),
  }).strict()).min(1),
}).strict();

export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Scenario = z.output<typeof scenarioSchema>;

/** Declare a scenario in TypeScript (type-checked; validated again when loaded). */
export function defineScenario(s: ScenarioInput): ScenarioInput {
  return s;
}

/** Control characters (a newline in a name or a key) shown escaped, so a message stays one line. */
export const oneLine = (s: string): string =>
  s.replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));

/** Bad input: one line naming the file and the field (the CLI prints it and exits 2). */
export class ScenarioError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(oneLine(message), options);
  }
}

/** The first three problems on one line (the CLI's contract), and how many more there are. */
export function formatIssues(where: string, err: z.ZodError): string {
  const at = (i: z.core.$ZodIssue): string => (i.path.length ? i.path.map(String).join('.') : '(root)');
  const shown = err.issues.slice(0, 3).map((i) => `${where}: ${at(i)}: ${i.message}`).join('; ');
  return err.issues.length > 3 ? `${shown}; and ${err.issues.length - 3} more` : shown;
}

export function parseScenario(input: unknown, where = 'scenario'): Scenario {
  const r = scenarioSchema.safeParse(input);
  if (!r.success) throw new ScenarioError(formatIssues(where, r.error));
  const s = r.data;
  // cross-field checks: regions referenced by steps must exist in the process
  const files = new Set(s.files.map((f) => f.name));
  s.processes.forEach((p, pi) => {
    p.regions.forEach((r, ri) => {
      if (r.file !== undefined && !files.has(r.file)) throw new ScenarioError(`${where}: processes.${pi}.regions.${ri}.file: no file '${r.file}' in files`);
      const here = `${where}: processes.${pi}.regions.${ri}`;
      if (r.thp === 'pud') {
        if (r.file !== undefined || !r.shared) throw new ScenarioError(`${here}.thp: 'pud' maps a DAX-like device, which is always a shared mapping of its own memory: give shared: true and no file`);
        if (r.pages !== PUD_PAGES) throw new ScenarioError(`${here}.pages: a 'pud' region is one 1 GiB device: ${PUD_PAGES} pages`);
      } else if (r.thp && (r.file !== undefined || r.shared)) {
        throw new ScenarioError(`${here}.thp: transparent huge pages are modelled for private anonymous regions only`);
      }
    });
    const names = new Set(p.regions.map((r) => r.name));
    const check = (steps: Step[], path: string, inChild = false): void => {
      steps.forEach((st, i) => {
        const here = `${path}.${i}`;
        if (st.op === 'exit' && !inChild) throw new ScenarioError(`${where}: ${here}.op: 'exit' is only allowed in a fork's child program`);
        if ('file' in st && !files.has(st.file)) {
          throw new ScenarioError(`${where}: ${here}.file: no file '${st.file}' in files`);
        }
        if ('region' in st && !names.has(st.region)) {
          throw new ScenarioError(`${where}: ${here}.region: no region '${st.region}' in process '${p.name}'`);
        }
        if (st.op === 'mremap' && !names.has(st.to)) {
          throw new ScenarioError(`${where}: ${here}.to: no region '${st.to}' in process '${p.name}'`);
        }
        if (st.op === 'choose' || st.op === 'repeat') check(st.steps, `${here}.steps`, inChild);
        if (st.op === 'fork') check(st.child, `${here}.child`, true);
      });
    };
    p.threads.forEach((t, ti) => check(t.program, `processes.${pi}.threads.${ti}.program`));
  });
  return s;
}

/** Does the scenario use fork, pins or /proc/pid/mem writes (and so the COW oracle's shadow memory)? */
export function usesCowOracle(s: Scenario): boolean {
  const uses = (steps: Step[]): boolean => steps.some((st) =>
    st.op === 'fork' || st.op === 'pin' || st.op === 'procmem-write' ||
    ((st.op === 'choose' || st.op === 'repeat') && uses(st.steps)));
  return s.processes.some((p) => p.threads.some((t) => uses(t.program)));
}

/** Load a scenario from a .ts/.js module (default export) or a .json file. */
export async function loadScenario(file: string): Promise<Scenario> {
  const path = resolve(file);
  let raw: unknown;
  try {
    if (extname(path) === '.json') {
      const text = await readFile(path, 'utf8');
      try {
        raw = JSON.parse(text);
      } catch (e) {
        throw new ScenarioError(`${file}: not valid JSON: ${(e as Error).message}`);
      }
    } else {
      const mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
      if (mod.default === undefined) throw new ScenarioError(`${file}: has no default export (export default defineScenario({...}))`);
      raw = mod.default;
    }
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ERR_MODULE_NOT_FOUND') throw new ScenarioError(`${file}: no such scenario file`);
    throw new ScenarioError(`${file}: cannot load: ${(e as Error).message}`);
  }
  return parseScenario(raw, file);
}

/** Resolve thread placements to CPU lists. */
export function placeThreads(s: Scenario, cpus: number): number[][][] {
  const named = new Set<number>();
  for (const p of s.processes) for (const t of p.threads) {
    if (typeof t.cpus === 'number') named.add(t.cpus);
    else if (Array.isArray(t.cpus)) t.cpus.forEach((c) => named.add(c));
  }
  return s.processes.map((p, pi) => p.threads.map((t, ti) => {
    let list: number[];
    if (t.cpus === 'all') list = [...Array(cpus).keys()];
    else if (t.cpus === 'rest') list = [...Array(cpus).keys()].filter((c) => !named.has(c));
    else list = typeof t.cpus === 'number' ? [t.cpus] : t.cpus;
    for (const c of list) {
      if (c >= cpus) throw new ScenarioError(`processes.${pi}.threads.${ti}.cpus: cpu ${c} does not exist on a ${cpus}-CPU machine`);
    }
    if (list.length === 0) throw new ScenarioError(`processes.${pi}.threads.${ti}.cpus: 'rest' leaves no CPU on a ${cpus}-CPU machine`);
    return list;
  }));
}

/** The scenario library shipped with mmsim. */
export const SCENARIO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scenarios');

/** Resolve a scenario argument: a path, or a name from the library. */
export async function resolveScenario(arg: string): Promise<string> {
  if (arg.includes('/') || arg.endsWith('.ts') || arg.endsWith('.json')) return arg;
  const files = await readdir(SCENARIO_DIR).catch(() => [] as string[]);
  const hit = files.find((f) => f === `${arg}.ts` || f === `${arg}.json`);
  return hit ? join(SCENARIO_DIR, hit) : arg;
}
