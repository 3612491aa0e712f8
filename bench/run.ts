// mmsim benchmark: the simulator's hot paths against raw baselines measured in
// the same run (the figures are ratios, so they survive a noisy machine).
//
//   node bench/run.ts [--quick] [--out FILE]
//
// 1. TLB-hit access: cpu.read(va) on pages already in the TLB, vs a bare
//    direct-mapped lookup (tag compare + load) in private typed arrays.
// 2. Page walk: walk(cpu, mm, va, vpn, false), vs a bare 4-level walk over four
//    Int32Arrays with Atomics.load.
// 4. mremap of a populated 1 GiB region PTE-, PMD- and PUD-aligned (mremap_test.c's
//    perf cases): the speed-up of whole-table moves over PTE moves.
// 3. Shootdown latency with K targets: the munmap-vs-access scenario on K+1
//    CPUs (one worker per CPU, the goal's; and K=4, 16, 64 also hosted on 2 threads), vs a bare
//    "Atomics ping" from the main thread to K worker threads and back.
//
// 4. fork of a populated anonymous region (256 MiB; 64 MiB with --quick): time
//    per do_fork (dup_mmap: copy_pte_range over every PTE, COW write-protect,
//    one parent flush) and PTEs copied per second, vs a bare loop doing the same
//    per-entry work (load, reference and mapcount increments, write-protect the
//    source, store the child's entry) on plain shared Int32Arrays.
//
// 5. Scale (issue #15): 256 CPUs hosted on 2 threads (munmap-vs-access): start-up
//    time, RSS per simulated CPU, shootdown-to-all p50, ops/s against the same
//    scenario at 2 CPUs; one worker per CPU (capped: --rss-workers, default 64)
//    for RSS per CPU and start-up.
// 6. Deterministic mode ops/s as a fraction of free mode (same scenario, CPUs, ops).
// 7. Campaign throughput: `mmsim stress munmap-vs-access` seeds/s (its defaults
//    but --seeds, see CAMPAIGN_SEEDS).
// 8. The anchor: bench/anchor/munmap_vs_access.c, compiled with the system cc,
//    does what munmap-vs-access does on this machine's kernel for the same time
//    and thread count; mmsim's slowdown factor = native ops/s / mmsim ops/s.
//    Skipped (and said so) when there is no C compiler.
//
// Every ratio reads "how many times slower the simulator is than the baseline":
// baseline/sim for rates, sim/baseline for latencies. The goals of issue #15 are
// printed as a second table (measured, target, met) and kept in the JSON.

import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  statWord, PAGE_SIZE, WORD_SHIFT, WORDS_PER_PAGE, ST_TLB_MISSES, ST_WALKS, ST_FORK_PTES,
} from '../src/hw/layout.ts';
import type { Cpu } from '../src/hw/cpu.ts';
import { walk, pgtIndex } from '../src/hw/walker.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { inlineMachine } from '../src/engine/inline.ts';
import { runScenario, type RunResult } from '../src/engine/machine.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import type { ViolationRecord } from '../src/oracles/oracles.ts';
import { do_fork } from '../src/mm/fork.ts';
import { exit_mmap } from '../src/mm/mm.ts';
import { run_mremap_selftest } from '../src/tools/selftest/mremap_test.ts';

// ---- options --------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    'rss-workers': { type: 'string' },
    'child-run': { type: 'string' },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (args.help) {
  console.log('usage: node bench/run.ts [--quick] [--out FILE] [--rss-workers N] [--only LIST]\n  --quick          small iteration counts (smoke test)\n  --out FILE       where to write the JSON (default bench/results/latest.json)\n  --rss-workers N  CPUs of the one-worker-per-CPU start-up/RSS run (default 64, --quick 16; 256 takes minutes and ~5 GB)\n  --only LIST      comma-separated sections: access,walk,fork,shootdown,mremap,scale,det,campaign,anchor');
  process.exit(0);
}
const quick = args.quick === true;
const SECTIONS = ['access', 'walk', 'fork', 'shootdown', 'mremap', 'scale', 'det', 'campaign', 'anchor'];
const only = args.only === undefined ? SECTIONS : args.only.split(',');
for (const o of only) {
  if (!SECTIONS.includes(o)) {
    console.error(`bench: --only: unknown section '${o}' (${SECTIONS.join(', ')})`);
    process.exit(2);
  }
}
const rssWorkers = args['rss-workers'] !== undefined ? Number(args['rss-workers']) : quick ? 16 : 64;
if (!Number.isInteger(rssWorkers) || rssWorkers < 2 || rssWorkers > 256) {
  console.error('bench: --rss-workers: an integer in 2..256');
  process.exit(2);
}
const outFile = args.out !== undefined ? resolve(args.out) : resolve(here, 'results', 'latest.json');

const CFG = quick
  ? { accessIters: 300_000, walkIters: 100_000, trials: 3, pingRounds: 40, pingWarmup: 5, ops: [1_000, 300, 120, 0], hostedOps: 500, minSamples: 10, attempts: 3 }
  : { accessIters: 3_000_000, walkIters: 800_000, trials: 5, pingRounds: 200, pingWarmup: 20, ops: [5_000, 1_000, 600, 200], hostedOps: 2_000, minSamples: 30, attempts: 3 };
// Shootdown runs are sized in ops per CPU (a minimum: every CPU keeps running
// until all have done that many). CPU 0 issues the shootdowns, about one per 4
// ops, and each waits for K oversubscribed threads, so the K=16 and K=64 runs
// dominate the total time.
const KS = [1, 4, 16, 64];
const QUICK_BUDGET_MS = 10_000;
const started = performance.now();
const PAGES = 32; // touched pages: all fit the 64-entry TLB

// ---- results --------------------------------------------------------------------

interface Row {
  name: string;
  sim: number;
  raw: number;
  unit: string;
  ratio: number;
}
const rows: Row[] = [];
/** issue #15's goals: what was measured against the target */
interface Goal {
  goal: string;
  measured: number;
  target: number;
  unit: string;
  /** 'min': measured >= target is met; 'max': measured <= target */
  kind: 'min' | 'max';
  note: string;
}
const goals: Goal[] = [];
const details: Record<string, unknown> = {};
let sink = 0; // keeps the JIT from discarding the loops

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
}
function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** Run sim and baseline trials interleaved (so both see the same noise); return median rates. */
function interleaved(trials: number, sim: () => number, raw: () => number): { sim: number; raw: number; simTrials: number[]; rawTrials: number[] } {
  sim();
  raw(); // warm-up (JIT)
  const s: number[] = [];
  const r: number[] = [];
  for (let t = 0; t < trials; t++) {
    if (t & 1) {
      r.push(raw());
      s.push(sim());
    } else {
      s.push(sim());
      r.push(raw());
    }
  }
  return { sim: median(s), raw: median(r), simTrials: s, rawTrials: r };
}

// ---- an inline machine: one CPU on this thread --------------------------------------

function benchMachine(): { cpu: Cpu; mm: number; vas: Float64Array; vpns: Float64Array; violations: ViolationRecord[] } {
  const m = inlineMachine({ cpus: 1 });
  const { violations } = m;
  const cpu = m.cpus[0];
  const { mm } = m.process([0]);
  const base = do_mmap(mm, 0, PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (base < 0) throw new Error(`bench: do_mmap failed (${base})`);
  const vas = new Float64Array(PAGES);
  const vpns = new Float64Array(PAGES);
  for (let i = 0; i < PAGES; i++) {
    // a different word of each page, so the data loads are not all to word 0
    vas[i] = base + i * PAGE_SIZE + ((i & (WORDS_PER_PAGE - 1)) << WORD_SHIFT);
    vpns[i] = Math.floor(vas[i] / PAGE_SIZE);
    if (!cpu.write(vas[i], i + 1)) throw new Error(`bench: write to 0x${vas[i].toString(16)} failed`);
  }
  for (let i = 0; i < PAGES; i++) {
    if (!cpu.read(vas[i]) || cpu.value !== i + 1) throw new Error(`bench: read back of page ${i} failed`);
  }
  return { cpu, mm, vas, vpns, violations };
}

// ---- 1. TLB-hit access ---------------------------------------------------------------

function benchAccess(m: ReturnType<typeof benchMachine>): void {
  const { cpu, vas } = m;
  const n = CFG.accessIters;
  if ('publishStats' in cpu) cpu.publishStats();
  const missesBefore = cpu.I[statWord(cpu.V.L, cpu.id, ST_TLB_MISSES)];

  const sim = (): number => {
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      cpu.read(vas[i & (PAGES - 1)]);
      sum += cpu.value;
    }
    const dt = performance.now() - t0;
    sink += sum;
    return n / (dt / 1000);
  };

  // Baseline: the same direct-mapped 64-entry TLB shape (vpn tag as f64, asid
  // tag, valid flag, pfn), filled for the same pages, then tag compare + load
  // of the data word from a private Int32Array.
  const ENTRIES = 64;
  const mask = ENTRIES - 1;
  const asid = 1;
  const tVpn = new Float64Array(ENTRIES).fill(-1);
  const tAsid = new Int32Array(ENTRIES).fill(-1);
  const tFlags = new Int32Array(ENTRIES);
  const tPfn = new Int32Array(ENTRIES);
  const data = new Int32Array(PAGES * WORDS_PER_PAGE);
  for (let i = 0; i < PAGES; i++) {
    const vpn = Math.floor(vas[i] / PAGE_SIZE);
    const s = (vpn ^ (asid * 0x9e37)) & mask;
    tVpn[s] = vpn;
    tAsid[s] = asid;
    tFlags[s] = 4;
    tPfn[s] = i;
    data[i * WORDS_PER_PAGE + ((vas[i] >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1))] = i + 1;
  }
  let rawMisses = 0;
  const raw = (): number => {
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const va = vas[i & (PAGES - 1)];
      const vpn = Math.floor(va / PAGE_SIZE);
      const s = (vpn ^ (asid * 0x9e37)) & mask;
      if (tVpn[s] === vpn && tAsid[s] === asid && (tFlags[s] & 4) !== 0) {
        sum += data[tPfn[s] * WORDS_PER_PAGE + ((va >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1))];
      } else {
        rawMisses++;
      }
    }
    const dt = performance.now() - t0;
    sink += sum;
    return n / (dt / 1000);
  };

  const r = interleaved(CFG.trials, sim, raw);
  if ('publishStats' in cpu) cpu.publishStats(); // the access path counts in private fields until an operation boundary
  const misses = cpu.I[statWord(cpu.V.L, cpu.id, ST_TLB_MISSES)] - missesBefore;
  if (misses !== 0) log(`warning: ${misses} TLB misses during the TLB-hit benchmark`);
  if (rawMisses !== 0) log(`warning: ${rawMisses} misses in the baseline TLB`);
  rows.push({ name: 'TLB-hit access (cpu.read)', sim: r.sim, raw: r.raw, unit: 'ops/s', ratio: r.raw / r.sim });
  goals.push({ goal: 'TLB-hit access, % of the bare lookup rate', measured: (100 * r.sim) / r.raw, target: 50, unit: '%', kind: 'min', note: 'UAF generation and stale-TLB checks on every hit' });
  details.access = { iterations: n, trials: CFG.trials, simTrials: r.simTrials, rawTrials: r.rawTrials, simTlbMisses: misses };
}

// ---- 2. page walk ---------------------------------------------------------------------

function benchWalk(m: ReturnType<typeof benchMachine>): void {
  const { cpu, mm, vas, vpns } = m;
  const n = CFG.walkIters;
  if ('publishStats' in cpu) cpu.publishStats();
  const walksBefore = cpu.I[statWord(cpu.V.L, cpu.id, ST_WALKS)];
  let failed = 0;

  const sim = (): number => {
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const j = i & (PAGES - 1);
      const s = walk(cpu, mm, vas[j], vpns[j], false);
      if (s < 0) failed++;
      sum += s;
    }
    const dt = performance.now() - t0;
    sink += sum;
    return n / (dt / 1000);
  };

  // Baseline: four 512-entry tables in shared memory; each non-leaf entry
  // names the next table (pfn field, x86 PTE layout), the leaf names a frame.
  const PFN_SHIFT = 10;
  const PRESENT = 1;
  const tables: Int32Array[] = [];
  for (let l = 0; l < 4; l++) tables.push(new Int32Array(new SharedArrayBuffer(512 * 4)));
  const SHIFTS = [39, 30, 21, 12];
  // the level divisors computed once, as the simulator's walk has them (2 ** shift per level was a Math.pow call)
  const SIZES = new Float64Array(SHIFTS.map((x) => 2 ** x));
  for (let i = 0; i < PAGES; i++) {
    for (let l = 0; l < 3; l++) tables[l][pgtIndex(vas[i], SHIFTS[l])] = ((l + 1) << PFN_SHIFT) | PRESENT;
    tables[3][pgtIndex(vas[i], 12)] = ((100 + i) << PFN_SHIFT) | PRESENT;
  }
  let rawFailed = 0;
  const raw = (): number => {
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const va = vas[i & (PAGES - 1)];
      let table = 0;
      let pfn = -1;
      for (let level = 0; level < 4; level++) {
        const shift = SHIFTS[level];
        const idx = shift <= 23 ? (va >>> shift) & 511 : Math.floor(va / SIZES[level]) & 511;
        const e = Atomics.load(tables[table], idx);
        if ((e & PRESENT) === 0) break;
        if (level === 3) pfn = e >>> PFN_SHIFT;
        else table = e >>> PFN_SHIFT;
      }
      if (pfn < 0) rawFailed++;
      sum += pfn;
    }
    const dt = performance.now() - t0;
    sink += sum;
    return n / (dt / 1000);
  };

  const r = interleaved(CFG.trials, sim, raw);
  if ('publishStats' in cpu) cpu.publishStats();
  const walks = cpu.I[statWord(cpu.V.L, cpu.id, ST_WALKS)] - walksBefore;
  if (failed !== 0) log(`warning: ${failed} simulated walks failed`);
  if (rawFailed !== 0) log(`warning: ${rawFailed} baseline walks failed`);
  if (m.violations.length) log(`warning: ${m.violations.length} violations during the walk benchmark: ${m.violations[0].message}`);
  rows.push({ name: 'page walk (walk)', sim: r.sim, raw: r.raw, unit: 'ops/s', ratio: r.raw / r.sim });
  goals.push({ goal: 'page walk, % of the bare 4-level walk', measured: (100 * r.sim) / r.raw, target: 50, unit: '%', kind: 'min', note: 'walk-freed-table and free-frame checks, TLB_FILL event' });
  details.walk = { iterations: n, trials: CFG.trials, simTrials: r.simTrials, rawTrials: r.rawTrials, simWalksCounted: walks, failed };
}

// ---- 3. shootdown latency -------------------------------------------------------------

// A target thread: waits on its own slot; on a new round, acknowledges by
// decrementing the ack counter (the last one wakes the sender). A negative
// round value means stop.
const PING_WORKER = `
const { workerData } = require('node:worker_threads');
const I = new Int32Array(workerData.sab);
const slot = workerData.slot;
const ACK = workerData.ack;
let seen = 0;
for (;;) {
  Atomics.wait(I, slot, seen);
  const v = Atomics.load(I, slot);
  if (v < 0) break;
  if (v === seen) continue;
  seen = v;
  if (Atomics.sub(I, ACK, 1) === 1) Atomics.notify(I, ACK);
}
`;

const LINE = 16; // words per 64-byte line: one line per slot, no false sharing

async function rawPing(k: number, rounds: number, warmup: number): Promise<{ p50: number; p99: number; max: number; samples: number }> {
  const sab = new SharedArrayBuffer((k + 1) * LINE * 4);
  const I = new Int32Array(sab);
  const ACK = 0;
  const slotOf = (i: number): number => (i + 1) * LINE;
  const workers: Worker[] = [];
  try {
    const online: Promise<void>[] = [];
    for (let i = 0; i < k; i++) {
      const w = new Worker(PING_WORKER, { eval: true, workerData: { sab, slot: slotOf(i), ack: ACK } });
      online.push(new Promise((res, rej) => {
        w.once('online', () => res());
        w.once('error', rej);
      }));
      workers.push(w);
    }
    await Promise.all(online);
    const lat: number[] = [];
    for (let r = 1; r <= warmup + rounds; r++) {
      Atomics.store(I, ACK, k);
      const t0 = performance.now();
      for (let i = 0; i < k; i++) {
        Atomics.store(I, slotOf(i), r);
        Atomics.notify(I, slotOf(i), 1);
      }
      // like the simulator's sender: spin briefly, then sleep on the counter
      for (let spin = 0; ; spin++) {
        const left = Atomics.load(I, ACK);
        if (left === 0) break;
        if (spin < 32) Atomics.pause();
        else if (Atomics.wait(I, ACK, left, 1000) === 'timed-out' && performance.now() - t0 > 30_000) {
          throw new Error(`raw ping to ${k} threads: ${left} did not answer within 30 s`);
        }
      }
      const ns = (performance.now() - t0) * 1e6;
      if (r > warmup) lat.push(ns);
    }
    return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: Math.max(...lat), samples: lat.length };
  } finally {
    for (let i = 0; i < k; i++) {
      Atomics.store(I, slotOf(i), -1);
      Atomics.notify(I, slotOf(i));
    }
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

interface SimShootdown {
  p50: number;
  p99: number;
  max: number;
  samples: number;
  shootdowns: number;
  /** IPIs sent per shootdown: the fan-out actually measured (targets that finished or have not started are lazy/idle and skipped) */
  avgTargets: number;
  lazySkipped: number;
  wallMs: number;
  mode: string;
  threads: number;
  attempts: number;
  problems: string[];
}

async function simShootdownOnce(k: number, ops: number, threads: number | undefined, attempts: number): Promise<SimShootdown> {
  const s = await loadScenario(resolve(here, '..', 'scenarios', 'munmap-vs-access.ts'));
  const o: { cpus: number; ops: number; seed: number; threads?: number } = { cpus: k + 1, ops, seed: 1 };
  if (threads !== undefined) o.threads = threads;
  const r: RunResult = await runScenario(s, o);
  const problems: string[] = [];
  if (r.hang) problems.push(`hang: ${r.hang}`);
  if (r.crash) problems.push(`crash: ${r.crash}`);
  if (r.violationCount) problems.push(`${r.violationCount} violations${r.violations[0] ? `: ${r.violations[0].message}` : ''}`);
  if (!r.audit.ok) problems.push(`audit: ${r.audit.problems.join('; ')}`);
  if (!r.teardownAudit.ok) problems.push(`teardown audit: ${r.teardownAudit.problems.join('; ')}`);
  const none = r.latencyNs.samples === 0;
  if (none) problems.push('no shootdown latency samples');
  return {
    p50: none ? NaN : r.latencyNs.p50, p99: none ? NaN : r.latencyNs.p99, max: none ? NaN : r.latencyNs.max,
    samples: r.latencyNs.samples, shootdowns: r.stats.shootdowns,
    avgTargets: r.stats.shootdowns ? r.stats.ipiSent / r.stats.shootdowns : 0, lazySkipped: r.stats.lazyTlbSkipped,
    wallMs: r.wallMs, mode: r.mode, threads: r.threads, attempts, problems,
  };
}

/**
 * The run is sized in ops per CPU and the host threads start unsynchronised, so
 * a short run can end before (or without) any shootdown that meets an active
 * target. Retry a run that produced too few samples (cheap for small K) and
 * keep the one with the most.
 */
async function simShootdown(k: number, ops: number, threads: number | undefined, minSamples: number, maxAttempts: number): Promise<SimShootdown> {
  let best: SimShootdown | undefined;
  for (let a = 1; a <= maxAttempts; a++) {
    const r = await simShootdownOnce(k, ops, threads, a);
    if (best === undefined || r.samples > best.samples) best = { ...r, attempts: a };
    else best.attempts = a;
    if (r.samples >= minSamples || r.problems.some((p) => !p.startsWith('no shootdown'))) break;
  }
  return best!;
}

const notes = new Map<string, string>();

async function benchShootdowns(): Promise<void> {
  const sd: Record<string, unknown> = {};
  details.shootdown = sd;
  const raws = new Map<number, Awaited<ReturnType<typeof rawPing>>>();
  const us = (ns: number): number => ns / 1000;
  const push = (label: string, sim: SimShootdown, raw: Awaited<ReturnType<typeof rawPing>>): void => {
    const note = `${sim.samples} samples, ${sim.avgTargets.toFixed(1)} targets/shootdown`;
    rows.push({ name: `${label} p50`, sim: us(sim.p50), raw: us(raw.p50), unit: 'µs', ratio: sim.p50 / raw.p50 });
    notes.set(`${label} p50`, note);
    rows.push({ name: `${label} p99`, sim: us(sim.p99), raw: us(raw.p99), unit: 'µs', ratio: sim.p99 / raw.p99 });
  };
  const ks = quick ? KS.filter((k) => k < 64) : KS;
  const skipped = details.skipped as string[];
  if (quick) skipped.push('shootdown K=64 with a worker per CPU: booting 65 workers alone takes ~10 s (full run only)');
  // --quick must stay well under 20 s even on a loaded machine: past this budget, skip the rest
  const overBudget = (what: string): boolean => {
    if (!quick || performance.now() - started < QUICK_BUDGET_MS) return false;
    skipped.push(`${what}: quick-mode time budget (${QUICK_BUDGET_MS / 1000} s) used up`);
    log(`  skipping ${what}: quick-mode time budget used up`);
    return true;
  };
  for (const k of ks) {
    if (overBudget(`shootdown K=${k}`)) continue;
    const i = KS.indexOf(k);
    const t0 = performance.now();
    const raw = await rawPing(k, CFG.pingRounds, CFG.pingWarmup);
    raws.set(k, raw);
    const t1 = performance.now();
    // one worker thread per CPU, as the goal has it: left to the default, a run of more CPUs than
    // cores is hosted on as many threads as cores, and until the eleventh session K = 4, 16 and 64
    // were measured hosted on 2 threads here while this table called them one worker per CPU
    const sim = await simShootdown(k, CFG.ops[i], k + 1, CFG.minSamples, k <= 4 ? CFG.attempts : 1);
    for (const p of sim.problems) log(`warning: shootdown K=${k}: ${p}`);
    push(`shootdown K=${k}`, sim, raw);
    if (k <= 16) {
      goals.push({ goal: `shootdown K=${k} p50 / raw ping p50`, measured: sim.p50 / raw.p50, target: 1.5, unit: 'x', kind: 'max', note: `${(sim.p50 / 1000).toFixed(0)} µs vs ${(raw.p50 / 1000).toFixed(0)} µs` });
      goals.push({ goal: `shootdown K=${k} p99 / raw ping p99`, measured: sim.p99 / raw.p99, target: 3, unit: 'x', kind: 'max', note: `${(sim.p99 / 1000).toFixed(0)} µs vs ${(raw.p99 / 1000).toFixed(0)} µs` });
    }
    sd[`K${k}`] = { opsPerCpu: CFG.ops[i], sim, raw };
    log(`  shootdown K=${k}: raw ${((t1 - t0) / 1000).toFixed(1)} s, sim ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  }
  // the same K hosted on 2 threads (the default where CPUs outnumber cores: every run of 3 CPUs or
  // more here), against the same ping to K threads; no goal, the goal is one worker per CPU
  for (const k of [4, 16, 64]) {
    if (overBudget(`shootdown K=${k} hosted`)) return;
    const t0 = performance.now();
    let raw = raws.get(k);
    if (raw === undefined) {
      raw = await rawPing(k, CFG.pingRounds, CFG.pingWarmup);
      raws.set(k, raw);
      sd[`K${k}`] = { raw };
    }
    const sim = await simShootdown(k, CFG.hostedOps, 2, CFG.minSamples, CFG.attempts);
    for (const p of sim.problems) log(`warning: shootdown K=${k} hosted: ${p}`);
    push(`shootdown K=${k} hosted(2 thr)`, sim, raw);
    sd[`K${k}hosted2`] = { opsPerCpu: CFG.hostedOps, sim, raw: `same as K${k}: Atomics ping to ${k} threads` };
    log(`  shootdown K=${k} hosted: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}

// ---- 4. fork of a populated region ------------------------------------------------------

function benchFork(): void {
  const mib = quick ? 64 : 256;
  const pages = (mib << 20) / PAGE_SIZE;
  const trials = quick ? 3 : 5;
  const m = inlineMachine({ cpus: 1, dataFrames: pages + 4096, tableFrames: 2 * (pages / 512) + 256 });
  const cpu = m.cpus[0];
  const { mm } = m.process([0]);
  const base = do_mmap(mm, 0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (base < 0) throw new Error(`bench: do_mmap of ${mib} MiB failed (${base})`);
  // populate, and after each fork make the parent's pages writable again (the
  // child is gone: each write fault reuses its page), so every trial copies and
  // write-protects every entry
  const dirty = (): void => {
    for (let i = 0; i < pages; i++) if (!cpu.write(base + i * PAGE_SIZE, i + 1)) throw new Error('bench: populate failed');
  };
  dirty();
  const copiedBefore = cpu.I[statWord(cpu.V.L, 0, ST_FORK_PTES)];
  const sim = (): number => {
    const t0 = performance.now();
    const child = do_fork(mm);
    const dt = performance.now() - t0;
    if (child < 0) throw new Error(`bench: fork failed (${child})`);
    exit_mmap(child);
    dirty();
    return dt;
  };
  // Baseline: the per-PTE work of copy_present_ptes on bare shared arrays
  const src = new Int32Array(new SharedArrayBuffer(pages * 4));
  const dst = new Int32Array(new SharedArrayBuffer(pages * 4));
  const ref = new Int32Array(new SharedArrayBuffer(pages * 4));
  const map = new Int32Array(new SharedArrayBuffer(pages * 4));
  const RW = 2;
  const ACCESSED = 32;
  const raw = (): number => {
    for (let i = 0; i < pages; i++) src[i] = ((i + 1) << 10) | 0x67; // present, RW, user, young, dirty
    const t0 = performance.now();
    for (let i = 0; i < pages; i++) {
      const e = Atomics.load(src, i);
      if ((e & 1) === 0) continue;
      const pfn = (e >>> 10) - 1;
      Atomics.add(ref, pfn, 1);
      Atomics.add(map, pfn, 1);
      Atomics.and(src, i, ~RW);
      Atomics.store(dst, i, e & ~(RW | ACCESSED));
    }
    const dt = performance.now() - t0;
    sink += dst[pages >> 1];
    return dt;
  };
  const r = interleaved(trials, sim, raw);
  const copied = cpu.I[statWord(cpu.V.L, 0, ST_FORK_PTES)] - copiedBefore;
  const expected = pages * (trials + 1);
  if (copied !== expected) log(`warning: fork copied ${copied} PTEs, expected ${expected}`);
  if (m.violations.length) log(`warning: fork bench: ${m.violations[0].message}`);
  const label = `fork of ${mib} MiB populated anon`;
  rows.push({ name: `${label}, per fork`, sim: r.sim, raw: r.raw, unit: 'ms', ratio: r.sim / r.raw });
  rows.push({ name: `${label}, PTEs copied`, sim: pages / (r.sim / 1000), raw: pages / (r.raw / 1000), unit: 'PTEs/s', ratio: r.sim / r.raw });
  notes.set(`${label}, per fork`, `${pages} PTEs, ${pages / 512} PTE tables, one parent flush`);
  details.fork = { mib, pages, trials, simTrialsMs: r.simTrials, rawTrialsMs: r.rawTrials, ptesCopied: copied };
}

// ---- mremap of 1 GiB (mremap_test.c's perf cases) ------------------------------------

/**
 * The wall time of the one mremap call moving a populated 1 GiB region
 * PTE-aligned (262144 PTEs moved), PMD-aligned (512 PTE tables) and
 * PUD-aligned (one PMD table), on x86. The baseline of the PMD and PUD rows is
 * the PTE-aligned time of the same trial, so their ratio is the speed-up the
 * whole-table moves give (the kernel's commits claim ~20x for PMD moves).
 */
function benchMremap(): void {
  const trials = quick ? 1 : 3;
  const t: Record<string, number[]> = { pte: [], pmd: [], pud: [] };
  for (let i = 0; i < trials; i++) {
    const rs = run_mremap_selftest({ arch: 'x86', thresholdMb: 0, perf: true, filter: '1GB', seed: i + 1 });
    for (const r of rs) {
      if (r.result !== 'pass' || r.ns === undefined) throw new Error(`mremap bench: ${r.name}: ${r.result} ${r.message ?? ''}`);
      const kind = r.name.includes('PTE-aligned, Destination PTE') ? 'pte' : r.name.includes('PMD-aligned, Destination PMD') ? 'pmd' : 'pud';
      t[kind].push(r.ns / 1e6);
    }
  }
  const pte = median(t.pte);
  rows.push({ name: 'mremap 1 GiB PTE-aligned', sim: pte, raw: pte, unit: 'ms', ratio: 1 });
  rows.push({ name: 'mremap 1 GiB PMD-aligned', sim: median(t.pmd), raw: pte, unit: 'ms', ratio: pte / median(t.pmd) });
  rows.push({ name: 'mremap 1 GiB PUD-aligned', sim: median(t.pud), raw: pte, unit: 'ms', ratio: pte / median(t.pud) });
  notes.set('mremap 1 GiB PTE-aligned', '262144 PTEs moved one by one');
  notes.set('mremap 1 GiB PMD-aligned', 'raw = PTE-aligned time; ratio = speed-up (512 NORMAL_PMD moves)');
  notes.set('mremap 1 GiB PUD-aligned', 'raw = PTE-aligned time; ratio = speed-up (1 NORMAL_PUD move)');
  details.mremap = { trialsMs: t };
}

// ---- 5. scale: 256 CPUs hosted, one worker per CPU ------------------------------------

const MiB = 1 << 20;

/** A run of munmap-vs-access with the process's peak RSS sampled every 20 ms. */
async function scenarioRun(o: { cpus: number; threads?: number; ops?: number; durationMs?: number; mode?: 'free' | 'deterministic'; seed?: number }): Promise<{ r: RunResult; rss0: number; peak: number; opsPerSec: number }> {
  const s = await loadScenario(resolve(here, '..', 'scenarios', 'munmap-vs-access.ts'));
  const rss0 = process.memoryUsage.rss();
  let peak = rss0;
  const iv = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  try {
    const r = await runScenario(s, { seed: 1, ...o });
    peak = Math.max(peak, process.memoryUsage.rss());
    const problems = [r.hang && `hang: ${r.hang.split('\n')[0]}`, r.crash && `crash: ${r.crash.split('\n')[0]}`, r.violationCount && `${r.violationCount} violations`].filter(Boolean);
    for (const p of problems) log(`warning: munmap-vs-access ${JSON.stringify(o)}: ${p}`);
    return { r, rss0, peak, opsPerSec: r.stats.ops / (r.wallMs / 1000) };
  } finally {
    clearInterval(iv);
  }
}

interface ChildRun {
  setupMs: number;
  bootMs: number;
  wallMs: number;
  rss0: number;
  peak: number;
  opsPerSec: number;
  ops: number;
  latencyNs: RunResult['latencyNs'];
  targets: number;
}

/**
 * A scenarioRun in a fresh process (this file with --child-run), so that its RSS
 * is the simulator's alone and not what the benchmarks before it left behind.
 */
function childRun(o: Parameters<typeof scenarioRun>[0]): ChildRun {
  const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child-run', JSON.stringify(o)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (p.status !== 0) throw new Error(`bench: child run ${JSON.stringify(o)} failed (${p.status}): ${p.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  if (p.stderr.trim()) log(p.stderr.trim());
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as ChildRun;
}

async function childMain(json: string): Promise<void> {
  const x = await scenarioRun(JSON.parse(json) as Parameters<typeof scenarioRun>[0]);
  const out: ChildRun = {
    setupMs: x.r.setupMs ?? 0, bootMs: x.r.bootMs, wallMs: x.r.wallMs, rss0: x.rss0, peak: x.peak, opsPerSec: x.opsPerSec, ops: x.r.stats.ops,
    latencyNs: x.r.latencyNs, targets: x.r.stats.shootdowns ? x.r.stats.ipiSent / x.r.stats.shootdowns : 0,
  };
  console.log(JSON.stringify(out));
}

async function benchScale(): Promise<void> {
  const d: Record<string, unknown> = {};
  details.scale = d;
  // 256 CPUs on 2 host threads, at the scenario's own 3,000 ops per CPU (~1.5 s here). Until the
  // eighth session this run had 150 ops per CPU: ~70 shootdowns, most of them while the two
  // threads were still compiling (JIT warm-up), whose p50 was 4x the steady state's
  // (docs/performance.md). Each run in its own process (RSS).
  const hostedOps = quick ? 40 : 3000;
  const h = childRun({ cpus: 256, threads: 2, ops: hostedOps });
  const startup = h.setupMs + h.bootMs;
  rows.push({ name: 'shootdown 256 CPUs hosted(2 thr) p50', sim: h.latencyNs.p50 / 1000, raw: NaN, unit: 'µs', ratio: NaN });
  notes.set('shootdown 256 CPUs hosted(2 thr) p50', `${h.latencyNs.samples} samples, ${h.targets.toFixed(1)} targets/shootdown`);
  goals.push({ goal: '256 CPUs hosted on 2 threads: shootdown p50', measured: h.latencyNs.p50 / 1000, target: 50, unit: 'µs', kind: 'max', note: `${h.targets.toFixed(0)} targets/shootdown, p99 ${(h.latencyNs.p99 / 1000).toFixed(0)} µs` });
  goals.push({ goal: '256 CPUs hosted: start-up (boot + threads ready)', measured: startup / 1000, target: 2, unit: 's', kind: 'max', note: `machine boot ${(h.setupMs / 1000).toFixed(2)} s + host threads ${(h.bootMs / 1000).toFixed(2)} s` });
  goals.push({ goal: '256 CPUs hosted: RSS per simulated CPU', measured: h.peak / MiB / 256, target: 10, unit: 'MiB', kind: 'max', note: `peak RSS of the run's process ${(h.peak / MiB).toFixed(0)} MiB / 256 (${((h.peak - h.rss0) / MiB / 256).toFixed(2)} MiB/CPU above its ${(h.rss0 / MiB).toFixed(0)} MiB before the run)` });
  // the same scenario at 2 CPUs (one worker each: the same 2 host threads)
  const two = childRun({ cpus: 2, ops: quick ? 2000 : 10_000 });
  rows.push({ name: 'munmap-vs-access 256 CPUs hosted, ops/s', sim: h.opsPerSec, raw: two.opsPerSec, unit: 'ops/s', ratio: two.opsPerSec / h.opsPerSec });
  notes.set('munmap-vs-access 256 CPUs hosted, ops/s', 'raw = the same scenario at 2 CPUs (2 workers)');
  goals.push({ goal: 'munmap-vs-access ops/s, 256 hosted / 2 CPUs', measured: (100 * h.opsPerSec) / two.opsPerSec, target: 50, unit: '%', kind: 'min', note: `${fmt(h.opsPerSec)} vs ${fmt(two.opsPerSec)} ops/s` });
  d.hosted256 = { opsPerCpu: hostedOps, ...h, rssPeakMiB: h.peak / MiB, rssBeforeMiB: h.rss0 / MiB };
  d.cpus2 = two;
  // one worker per CPU, capped: start-up and RSS per CPU
  const n = rssWorkers;
  const w = childRun({ cpus: n, threads: n, ops: quick ? 20 : 50 });
  goals.push({ goal: `${n} CPUs one worker each: RSS per simulated CPU`, measured: w.peak / MiB / n, target: 10, unit: 'MiB', kind: 'max', note: `peak RSS ${(w.peak / MiB).toFixed(0)} MiB / ${n}, ${((w.peak - w.rss0) / MiB / n).toFixed(1)} MiB/CPU above the process before the run${n < 256 ? ` (capped at ${n} workers: --rss-workers)` : ''}` });
  goals.push({ goal: `${n} CPUs one worker each: start-up`, measured: (w.setupMs + w.bootMs) / 1000, target: NaN, unit: 's', kind: 'max', note: `machine boot ${(w.setupMs / 1000).toFixed(2)} s + ${n} host threads ${(w.bootMs / 1000).toFixed(2)} s` });
  d.workers = { cpus: n, ...w, rssPeakMiB: w.peak / MiB, rssBeforeMiB: w.rss0 / MiB };
  // the floor beside it: the same number of Node workers that do nothing, in a fresh process
  // (their RSS peaks while they start and settles ~20 s later; the peak is what compares)
  const idle = idleWorkersRss(n);
  rows.push({ name: `RSS per CPU, ${n} CPUs one worker each`, sim: (w.peak - w.rss0) / MiB / n, raw: idle.peakPerWorkerMiB, unit: 'MiB', ratio: (w.peak - w.rss0) / MiB / n / idle.peakPerWorkerMiB });
  notes.set(`RSS per CPU, ${n} CPUs one worker each`, `raw = an idle Node worker (${n} at once, peak while they start); above the process before the run`);
  d.idleWorkers = idle;
}

/**
 * RSS per Node worker thread that does nothing: `n` of them started at once in a fresh process,
 * each waiting for a message, the process's RSS above its own before they started, sampled
 * every 20 ms. The floor of RSS per CPU with one worker per CPU (docs/performance.md).
 */
function idleWorkersRss(n: number): { workers: number; peakPerWorkerMiB: number; readyMs: number } {
  const script = `
    const { Worker } = require('node:worker_threads');
    const rss0 = process.memoryUsage.rss();
    let peak = rss0;
    const iv = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
    const t0 = Date.now();
    const ws = [];
    let ready = 0;
    for (let i = 0; i < ${n}; i++) {
      const w = new Worker("require('node:worker_threads').parentPort.postMessage(1); require('node:worker_threads').parentPort.once('message', () => process.exit(0));", { eval: true });
      w.once('message', () => {
        if (++ready < ${n}) return;
        setTimeout(() => {
          peak = Math.max(peak, process.memoryUsage.rss());
          clearInterval(iv);
          console.log(JSON.stringify({ workers: ${n}, peakPerWorkerMiB: (peak - rss0) / 1048576 / ${n}, readyMs: Date.now() - t0 }));
          for (const x of ws) x.postMessage(0);
        }, 200);
      });
      ws.push(w);
    }`;
  const p = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (p.status !== 0) throw new Error(`bench: idle workers (${n}) failed (${p.status}): ${p.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as { workers: number; peakPerWorkerMiB: number; readyMs: number };
}

// ---- 6. deterministic mode against free mode ---------------------------------------------

async function benchDet(): Promise<void> {
  // the scenario's 4 CPUs: free mode hosts them on 2 threads (more CPUs than cores), deterministic on 4
  const ops = quick ? 300 : 1000;
  const free: number[] = [];
  const det: number[] = [];
  for (let t = 0; t < (quick ? 1 : 3); t++) {
    free.push((await scenarioRun({ cpus: 4, ops, seed: t + 1 })).opsPerSec);
    det.push((await scenarioRun({ cpus: 4, ops, mode: 'deterministic', seed: t + 1 })).opsPerSec);
  }
  const f = median(free);
  const dd = median(det);
  rows.push({ name: 'munmap-vs-access deterministic, ops/s', sim: dd, raw: f, unit: 'ops/s', ratio: f / dd });
  notes.set('munmap-vs-access deterministic, ops/s', `raw = free mode, same 4 CPUs and ${ops} ops/CPU`);
  goals.push({ goal: 'deterministic ops/s, % of free mode', measured: (100 * dd) / f, target: 20, unit: '%', kind: 'min', note: `${fmt(dd)} vs ${fmt(f)} ops/s (4 CPUs, median of ${free.length})` });
  details.det = { opsPerCpu: ops, freeOpsPerSec: free, detOpsPerSec: det };
}

// ---- 7. campaign throughput ---------------------------------------------------------------

const CAMPAIGN_SEEDS = quick ? 4 : 16;

function benchCampaign(): void {
  const dir = mkdtempSync(join(os.tmpdir(), 'mmsim-bench-'));
  try {
    const t0 = performance.now();
    const p = spawnSync(process.execPath, [resolve(here, '..', 'bin', 'mmsim.ts'), 'stress', 'munmap-vs-access', '--seeds', String(CAMPAIGN_SEEDS),
      '--out', join(dir, 'out.jsonl'), '--repro-dir', dir, '--no-progress'], { encoding: 'utf8' });
    const wall = (performance.now() - t0) / 1000;
    const text = `${p.stdout}\n${p.stderr}`;
    const m = /\(([\d.]+) seeds\/s on (\d+) jobs/.exec(text);
    const runs = /(\d+) of \d+ runs in ([\d.]+) s/.exec(text);
    if (p.status !== 0 || !m || !runs) {
      log(`warning: campaign: exit ${p.status}: ${text.trim().split('\n').slice(-3).join(' | ')}`);
      return;
    }
    const rate = Number(runs[1]) / Number(runs[2]); // the campaign's own wall time (its table rounds seeds/s to 0.1)
    rows.push({ name: 'campaign: stress munmap-vs-access', sim: rate, raw: NaN, unit: 'seeds/s', ratio: NaN });
    notes.set('campaign: stress munmap-vs-access', `${CAMPAIGN_SEEDS} seeds, defaults otherwise (hunting swarm, ${m[2]} jobs); ${wall.toFixed(1)} s with process start`);
    goals.push({ goal: 'campaign: stress munmap-vs-access', measured: rate, target: NaN, unit: 'seeds/s', kind: 'min', note: `${CAMPAIGN_SEEDS} seeds on ${m[2]} jobs; measured, no target` });
    details.campaign = { seeds: CAMPAIGN_SEEDS, jobs: Number(m[2]), seedsPerSec: rate, wallSeconds: wall };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- 8. the anchor: the same work on this machine's kernel -----------------------------------

async function benchAnchor(): Promise<void> {
  const src = resolve(here, 'anchor', 'munmap_vs_access.c');
  const dir = mkdtempSync(join(os.tmpdir(), 'mmsim-anchor-'));
  const bin = join(dir, 'munmap_vs_access');
  const skipped = details.skipped as string[];
  try {
    const cc = process.env.CC ?? 'cc';
    try {
      execFileSync(cc, ['-O2', '-pthread', '-o', bin, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      const why = `anchor: no C compiler (${cc}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}); the slowdown factor is not measured`;
      skipped.push(why);
      log(`  SKIPPED ${why}`);
      return;
    }
    const threads = 2;
    const seconds = quick ? 1 : 2;
    const nat: number[] = [];
    const sim: number[] = [];
    for (let t = 0; t < (quick ? 1 : 3); t++) {
      const out = JSON.parse(execFileSync(bin, [String(threads), String(seconds)], { encoding: 'utf8' })) as { ops_per_sec: number };
      nat.push(out.ops_per_sec);
      sim.push((await scenarioRun({ cpus: threads, durationMs: seconds * 1000, seed: t + 1 })).opsPerSec);
    }
    const n = median(nat);
    const m = median(sim);
    rows.push({ name: `munmap-vs-access ${threads} CPUs vs native (anchor)`, sim: m, raw: n, unit: 'ops/s', ratio: n / m });
    notes.set(`munmap-vs-access ${threads} CPUs vs native (anchor)`, `raw = bench/anchor/munmap_vs_access.c, ${threads} threads, ${seconds} s, this kernel`);
    goals.push({ goal: `anchor: mmsim slowdown vs native (${threads} threads)`, measured: n / m, target: NaN, unit: 'x', kind: 'max', note: `${fmt(m)} vs ${fmt(n)} ops/s; QEMU TCG ~5-10x, gem5 ~1000s x` });
    details.anchor = { threads, seconds, nativeOpsPerSec: nat, mmsimOpsPerSec: sim };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- main ---------------------------------------------------------------------------------

function fmt(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1e9) return `${(x / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function printTable(): void {
  const head = ['benchmark', 'sim', 'raw', 'unit', 'ratio', 'note'];
  const body = rows.map((r) => [r.name, fmt(r.sim), fmt(r.raw), r.unit, Number.isFinite(r.ratio) ? `${r.ratio.toFixed(1)}x` : 'n/a', notes.get(r.name) ?? '']);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
  const line = (cells: string[]): string => cells.map((s, c) => (c === 0 || c >= 3 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b).trimEnd());
  console.log('ratio = how many times slower the simulator is (raw/sim for rates, sim/raw for latencies)');
  console.log('raw shootdown = Atomics ping from the main thread to K worker threads and back; K=n is one worker per CPU (the goal);');
  console.log('hosted(2 thr) is compared with the same ping to K threads although IPIs between CPUs of one host thread need no thread wake-up');
  if (!goals.length) return;
  console.log('');
  const gh = ['goal (issue #15)', 'measured', 'target', 'met', 'note'];
  const gb = goals.map((g) => [g.goal, `${fmt(g.measured)} ${g.unit}`, Number.isFinite(g.target) ? `${g.kind === 'min' ? '>=' : '<='} ${g.target} ${g.unit}` : '-',
    !Number.isFinite(g.target) ? '-' : (g.kind === 'min' ? g.measured >= g.target : g.measured <= g.target) ? 'yes' : 'NO', g.note]);
  const gw = gh.map((h, c) => Math.max(h.length, ...gb.map((b) => b[c].length)));
  const gl = (cells: string[]): string => cells.map((x, c) => (c === 1 || c === 2 ? x.padStart(gw[c]) : x.padEnd(gw[c]))).join('  ').trimEnd();
  console.log(gl(gh));
  console.log(gw.map((w) => '-'.repeat(w)).join('  '));
  for (const b of gb) console.log(gl(b));
}

async function main(): Promise<void> {
  const start = started;
  log(`mmsim bench${quick ? ' (quick)' : ''}: node ${process.version}, ${os.cpus().length} cores`);
  const load = os.loadavg();
  log(`  load average ${load.map((x) => x.toFixed(2)).join(' ')}`);
  details.skipped = [];
  const m = benchMachine();
  const timed = async (name: string, f: () => void | Promise<void>): Promise<void> => {
    if (!only.includes(name)) return;
    const t0 = performance.now();
    await f();
    log(`  ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  };
  await timed('access', () => benchAccess(m));
  await timed('walk', () => benchWalk(m));
  await timed('fork', benchFork);
  await timed('shootdown', benchShootdowns);
  await timed('mremap', benchMremap);
  await timed('scale', benchScale);
  await timed('det', benchDet);
  await timed('campaign', benchCampaign);
  await timed('anchor', benchAnchor);
  const totalS = (performance.now() - start) / 1000;
  printTable();
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    quick,
    machine: { model: os.cpus()[0]?.model ?? '?', memGiB: os.totalmem() / 2 ** 30, kernel: os.release(), loadAvgStart: load, loadAvgEnd: os.loadavg() },
    totalSeconds: totalS,
    results: rows,
    goals,
    details,
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(json, null, 2)}\n`);
  log(`total ${totalS.toFixed(1)} s; wrote ${outFile}${sink === 42 ? ' ' : ''}`);
}

if (args['child-run'] !== undefined) await childMain(args['child-run']);
else await main();
