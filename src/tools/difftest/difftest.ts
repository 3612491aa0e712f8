// `npm run difftest`: random call sequences run on this machine's kernel and
// replayed on mmsim; every difference in a call's result or in the final maps
// is reported, and a failing sequence is shrunk to a minimal one.
//
// The executor prints what it ran in strace's format, so the replay is the
// `mmsim strace` replay itself (src/tools/strace/strace_replay.ts): the same
// parser, the same pid/fork/exit handling, the same placement rule (a mapping
// the kernel placed goes where the kernel put it), and a shrunk sequence is a
// trace file anyone can replay with `mmsim strace FILE --maps`.

import { release } from 'node:os';
import { replayStrace, type ReplayResult } from '../strace/strace_replay.ts';
import { type Op, generate, countCalls, ARENA, WINDOW_LEN, HEAP_LEN } from './gen.ts';
import { type HostRun, Executor } from './host.ts';

export interface DiffOptions {
  sequences: number;
  calls: number;
  seed: number;
  arch?: string;
  /** run only this sequence of the seed (as reported by an earlier run) */
  only?: number;
  /** shrink at most this many failing sequences (0: none) */
  shrink?: number;
  /** called after each batch: sequences done so far */
  progress?: (done: number) => void;
}

export interface SeqDifference {
  seq: number;
  /** the differing calls and maps, one line each */
  lines: string[];
  /** the shrunk sequence, if shrunk: its trace as the kernel ran it, and what differed */
  minimal?: { calls: number; trace: string; lines: string[] };
}

export interface DiffReport {
  sequences: number;
  callsPerSequence: number;
  seed: number;
  arch: string;
  /** the host kernel's release (uname -r) */
  kernel: string;
  /** calls compared (the replay's count: every recorded call) */
  calls: number;
  differingCalls: number;
  /** processes whose final maps were compared */
  processes: number;
  differingMaps: number;
  failing: SeqDifference[];
  /** results on the kernel by call: 'mremap' -> { ok: n, EFAULT: n, ... } (what the run exercised) */
  results: Record<string, Record<string, number>>;
  wallMs: number;
}

/** Count the kernel's results in a trace by call and outcome. */
function tally(trace: string, into: Record<string, Record<string, number>>): void {
  for (const line of trace.split('\n')) {
    const m = /^\d+ (\w+)\(.*\) = (-1 (E[A-Z]+)|\S+)/.exec(line);
    if (!m) continue;
    const t = (into[m[1]] ??= {});
    const k = m[3] ?? 'ok';
    t[k] = (t[k] ?? 0) + 1;
  }
}

const hex = (n: number): string => n.toString(16).padStart(8, '0');

/** A maps line reduced to what the simulator models: range, permissions, offset, name (no device or inode), clipped to [lo, hi). */
function normalize(lines: string[], lo: number, hi: number): string[] {
  const out: string[] = [];
  for (const l of lines) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+([0-9a-f]+)\s+\S+\s+\d+\s*(.*)$/.exec(l);
    if (!m) continue;
    let s = Number(BigInt('0x' + m[1]));
    let e = Number(BigInt('0x' + m[2]));
    if (e <= lo || s >= hi) continue;
    s = Math.max(s, lo);
    e = Math.min(e, hi);
    out.push(`${hex(s)}-${hex(e)} ${m[3]} ${m[4]} ${m[5].trim()}`.trimEnd());
  }
  return out;
}

/** The maps compared: the arena window and the heap window. */
function windows(lines: string[], brk0: number): string[] {
  return [...normalize(lines, ARENA, ARENA + WINDOW_LEN), ...normalize(lines, brk0, brk0 + HEAP_LEN)];
}

/** Replay one host run on mmsim and list every difference. */
export function compareRun(run: HostRun, arch = 'x86'): { lines: string[]; calls: number; differingCalls: number; processes: number; differingMaps: number } {
  const res = { lines: [] as string[], calls: 0, differingCalls: 0, processes: 0, differingMaps: 0 };
  if (run.crashed) {
    res.lines.push(`host: ${run.crashed}`);
    return res;
  }
  let r: ReplayResult;
  try {
    r = replayStrace(run.trace, `sequence-${run.seq}.trace`, { arch, maps: true });
  } catch (err) {
    res.lines.push(`mmsim failed: ${(err as Error).message}`);
    return res;
  }
  res.calls = r.calls;
  res.differingCalls = r.differing;
  for (const d of r.differences) {
    res.lines.push(`line ${d.line}: ${d.call.replace(/\s+=\s+.*$/, '')}: Linux ${d.recorded}, mmsim ${d.simulated}${d.note ? ` (${d.note})` : ''}`);
  }
  if (!r.audit.ok) for (const p of r.audit.problems) res.lines.push(`mmsim audit: ${p}`);
  for (const [pid, real] of run.maps) {
    res.processes++;
    const sim = r.mms.find((m) => m.pids[0] === pid);
    const want = windows(real, run.brk0);
    const got = sim ? windows(sim.maps, run.brk0) : [];
    if (want.join('\n') === got.join('\n')) continue;
    res.differingMaps++;
    const only = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
    res.lines.push(`maps of pid ${pid}: Linux has [${only(want, got).join('; ')}], mmsim has [${only(got, want).join('; ')}]`);
  }
  return res;
}

/**
 * What kind of difference a line is, without its addresses and pids: the
 * call and both results, or 'maps', or the failure. Shrinking keeps a
 * sequence only while its first difference is still of the same kind.
 */
export function signature(line: string): string {
  const m = /^line \d+: \d+ (\w+)\(.*\): Linux (.*?), mmsim (.*?)( \(.*\))?$/.exec(line);
  if (m) return `${m[1]}: Linux ${m[2]}, mmsim ${m[3]}`.replace(/0x[0-9a-f]+/g, 'ADDR');
  if (line.startsWith('maps of pid')) return 'maps';
  return line.replace(/0x[0-9a-f]+/g, 'ADDR').replace(/\d+/g, 'N');
}

/** Run `ops` on the kernel and mmsim: the differences (empty: they agree). */
function check(ex: Executor, ops: Op[], arch: string): { lines: string[]; trace: string } {
  const [run] = ex.run([{ seq: 0, ops }]);
  return { lines: compareRun(run, arch).lines, trace: run.trace };
}

/**
 * Shrink a failing sequence (ddmin over the calls, a fork's child calls
 * included): remove chunks, halving their size, while the sequence's first
 * difference is still of the same kind (signature); then try removing single
 * child calls. At most `budget` runs.
 */
export function shrink(ex: Executor, ops: Op[], arch: string, budget = 600): { ops: Op[]; lines: string[]; trace: string } {
  let best = ops;
  let last = check(ex, ops, arch);
  if (last.lines.length === 0) return { ops, ...last };
  let tries = 0;
  const kind = signature(last.lines[0]);
  const attempt = (cand: Op[]): boolean => {
    if (tries++ >= budget) return false;
    const r = check(ex, cand, arch);
    if (r.lines.length === 0 || signature(r.lines[0]) !== kind) return false;
    best = cand;
    last = r;
    return true;
  };
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1; chunk >>= 1) {
    let progress = true;
    while (progress && tries < budget) {
      progress = false;
      for (let i = 0; i < best.length && tries < budget; i += chunk) {
        const cand = [...best.slice(0, i), ...best.slice(i + chunk)];
        if (cand.length > 0 && attempt(cand)) {
          progress = true;
          i -= chunk;
        }
      }
    }
  }
  for (let i = 0; i < best.length && tries < budget; i++) {
    const o = best[i];
    if (o.k !== 'fork') continue;
    for (let j = 0; j < o.child.length && tries < budget; j++) {
      const child = [...o.child.slice(0, j), ...o.child.slice(j + 1)];
      const cand = [...best.slice(0, i), { k: 'fork' as const, child }, ...best.slice(i + 1)];
      if (attempt(cand)) j--;
    }
  }
  return { ops: best, ...last };
}

/** The whole run: generate, run on the kernel in batches, replay, compare, shrink the failures. */
export function difftest(ex: Executor, o: DiffOptions): DiffReport {
  const t0 = performance.now();
  const arch = o.arch ?? 'x86';
  const rep: DiffReport = {
    sequences: o.only !== undefined ? 1 : o.sequences, callsPerSequence: o.calls, seed: o.seed, arch, kernel: release(), calls: 0, differingCalls: 0, processes: 0,
    differingMaps: 0, failing: [], results: {}, wallMs: 0,
  };
  const BATCH = 50;
  const all = new Map<number, Op[]>();
  const first = o.only ?? 0;
  const total = o.only !== undefined ? 1 : o.sequences;
  for (let start = first; start < first + total; start += BATCH) {
    const seqs: { seq: number; ops: Op[] }[] = [];
    for (let i = start; i < Math.min(first + total, start + BATCH); i++) {
      const ops = generate(o.seed, i, o.calls);
      all.set(i, ops);
      seqs.push({ seq: i, ops });
    }
    for (const run of ex.run(seqs)) {
      tally(run.trace, rep.results);
      const c = compareRun(run, arch);
      rep.calls += c.calls;
      rep.differingCalls += c.differingCalls;
      rep.processes += c.processes;
      rep.differingMaps += c.differingMaps;
      if (c.lines.length) rep.failing.push({ seq: run.seq, lines: c.lines });
    }
    o.progress?.(Math.min(total, start - first + BATCH));
  }
  const toShrink = o.shrink ?? 3;
  for (const f of rep.failing.slice(0, toShrink)) {
    const s = shrink(ex, all.get(f.seq)!, arch);
    f.minimal = { calls: countCalls(s.ops), trace: s.trace, lines: s.lines };
  }
  rep.wallMs = performance.now() - t0;
  return rep;
}

export function diffSummary(r: DiffReport, verbose = false): string {
  const out: string[] = [];
  out.push(`mmsim difftest: ${r.sequences} sequences of ${r.callsPerSequence} calls (seed ${r.seed}), Linux ${r.kernel} vs mmsim (${r.arch}), ${(r.wallMs / 1000).toFixed(1)} s`);
  const [major, minor] = r.kernel.split('.').map(Number);
  if (major < 6 || (major === 6 && minor < 18)) out.push(`  note: mmsim models Linux 6.18; this kernel is older, so some differences are expected (e.g. mremap past a VMA's end before 6.17)`);
  out.push(`  calls compared: ${r.calls}, differing: ${r.differingCalls}`);
  out.push(`  final maps compared: ${r.processes} processes, differing: ${r.differingMaps}`);
  out.push(`  sequences with a difference: ${r.failing.length} of ${r.sequences}`);
  if (verbose) {
    out.push('  results on the kernel (what the run exercised):');
    for (const [call, t] of Object.entries(r.results).sort()) {
      out.push(`    ${call.padEnd(14)} ${Object.entries(t).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    }
  }
  for (const f of r.failing.slice(0, verbose ? r.failing.length : 5)) {
    out.push(`  sequence ${f.seq} (--seed ${r.seed}): ${f.lines.length} difference(s), first: ${f.lines[0]}`);
    if (f.minimal) {
      out.push(`    shrunk to ${f.minimal.calls} call(s):`);
      for (const l of f.minimal.trace.trimEnd().split('\n')) out.push(`      ${l}`);
      out.push('    differences:');
      for (const l of f.minimal.lines) out.push(`      ${l}`);
    }
  }
  if (!verbose && r.failing.length > 5) out.push(`  ... ${r.failing.length - 5} more (--verbose lists them all)`);
  return out.join('\n');
}
