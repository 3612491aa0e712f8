// The race behind a violation, chosen by causality rather than by a time window:
// the fill of the stale entry on the CPU that used it, the change on another CPU
// (its syscall, the zap or page-table change, the free of the frame, the flush
// or its absence, the promise point), and the stale use, however far apart in
// time. The HTML report and the text summary draw it as one column per CPU.

import type { TraceEvent } from '../engine/machine.ts';
import { SYS_NAMES, CHANGE_LABELS } from '../hw/trace.ts';
import type { ViolationInfo } from '../hw/cpu.ts';

const PAGE = 4096;
const samePage = (a: number, b: number): boolean => Math.floor(a / PAGE) === Math.floor(b / PAGE);
const hex = (x: number): string => (x < 0 ? String(x) : '0x' + x.toString(16));

/**
 * Violation kinds that are not a stale use of a translation after a page-table change: a lock-order
 * report (lockdep), an architecture rule broken by one store (s390-*), the lazy MMU contract, a page
 * freed while still mapped (free-mapped: a refcount bug, found at the free), a kernel access that
 * found no translation for a mapping the kernel made (kernel-paging-request: a missing barrier, no
 * TLB entry to draw), the end-of-run audit. The report shows what the oracle said instead of a race
 * table.
 */
export const FINDING_KINDS = /^(lockdep|s390-|lazy-mmu-contract|free-mapped|kernel-paging-request|audit)/;

export type RaceRole = 'fill' | 'syscall' | 'change' | 'zap' | 'free' | 'flush' | 'flush-late' | 'promise' | 'syscall-end' | 'use' | 'no-flush';

export interface RaceRow {
  cpu: number;
  /** event time as in the trace (microseconds, or scheduler steps); NaN for notes */
  ts: number;
  seq: number;
  role: RaceRole;
  text: string;
}

export interface Race {
  cpus: number[];
  rows: RaceRow[];
}

/** The violation a race is drawn for: what the oracle reported (src/hw/cpu.ts). */
export type RaceViolation = ViolationInfo;

function describe(e: TraceEvent): string {
  switch (e.type) {
    case 'TLB_FILL':
      return `TLB fill ${hex(e.a)} -> pfn ${e.b}`;
    case 'SYSCALL':
      return `${SYS_NAMES[e.a] ?? `syscall ${e.a}`}(${hex(e.b)}) begins`;
    case 'SYSCALL_END':
      return `${SYS_NAMES[e.a] ?? `syscall ${e.a}`} returns ${e.b}`;
    case 'ZAP':
      return `zap ${hex(e.a)}-${hex(e.b)} (PTEs cleared)`;
    case 'CHANGE_BEGIN':
      return `${CHANGE_LABELS[changeKind(e)] ?? changeKind(e)} of ${hex(e.a)}-${hex(changeEnd(e))}: page tables change`;
    case 'PROMISE':
      return `${CHANGE_LABELS[e.b] ?? e.b} of ${hex(e.a)}: promise point`;
    case 'FREE_PAGE':
      return `free pfn ${e.a}${e.b >= 0 ? ` (was at ${hex(e.b)})` : ''}`;
    case 'IPI_SEND':
      return `flush: IPIs to ${e.b} CPU${e.b === 1 ? '' : 's'} (mm ${e.a})`;
    case 'SHOOTDOWN_DONE':
      return `flush: shootdown acked`;
    case 'FLUSH_LOCAL':
      return e.b < 0 ? 'local TLB flush: full' : `local TLB flush ${hex(e.a)} +${e.b} page${e.b === 1 ? '' : 's'}`;
    case 'IPI_HANDLE':
      return `flush IPI from cpu ${e.a} handled`;
    default:
      return e.type.toLowerCase();
  }
}

/** CHANGE_BEGIN events carry b = end + kind (end is page-aligned, kind < 4096) */
const changeKind = (e: TraceEvent): number => e.b % PAGE;
const changeEnd = (e: TraceEvent): number => e.b - (e.b % PAGE);

const FLUSHES = new Set(['IPI_SEND', 'SHOOTDOWN_DONE', 'FLUSH_LOCAL']);

/**
 * Choose the race's events. `byCpu`: each CPU's events, oldest first (a trace,
 * or the event rings snapshotted when the violation fired). `useTs`: when the
 * violation fired, if known (else the VIOLATION event or the last event of the
 * violating CPU stands for it).
 */
export function chooseRace(byCpu: Record<number, TraceEvent[]>, v: RaceViolation, useTs?: number): Race {
  const c0 = v.cpu;
  const mine = byCpu[c0] ?? [];
  let use: TraceEvent | undefined = [...mine].reverse().find((e) => e.type === 'VIOLATION' && (useTs === undefined || e.ts <= useTs + 1e-9));
  if (!use && useTs !== undefined) use = [...mine].reverse().find((e) => e.ts <= useTs);
  use ??= mine[mine.length - 1];
  const uTs = useTs ?? use?.ts ?? Infinity;
  const uSeq = use?.seq ?? Infinity;
  const rows: RaceRow[] = [];
  const row = (e: TraceEvent, role: RaceRole, text = describe(e)): void => {
    rows.push({ cpu: e.cpu, ts: e.ts, seq: e.seq, role, text });
  };
  // the fill of the entry that was used: the last fill of the page (of the frame, if known) before the use
  const before = mine.filter((e) => e.seq < uSeq);
  const fill = [...before].reverse().find((e) => e.type === 'TLB_FILL' && v.va !== undefined && samePage(e.a, v.va) && (v.pfn === undefined || e.b === v.pfn));
  if (fill) row(fill, 'fill', `${describe(fill)} (the entry used)`);
  // the frame: the oracle's, else the one the used entry was filled with (a content violation names none)
  const pfn = v.pfn ?? fill?.b;
  const concerns = (e: TraceEvent): boolean =>
    (e.type === 'FREE_PAGE' && pfn !== undefined && e.a === pfn) ||
    (e.type === 'ZAP' && v.va !== undefined && v.va >= e.a && v.va < e.b) ||
    (e.type === 'CHANGE_BEGIN' && v.va !== undefined && e.a <= v.va && v.va < changeEnd(e));
  // the other side's events lie between the fill and the use, unless the entry was filled from a
  // page table that was already wrong (a lost PTE update: the walker read the old PTE after the frame
  // was freed): then the last change of the page or frame before the use, however early
  // (then only the CPU whose change was the most recent: the page may have been changed many times)
  const lastKeyTs = (c: number, lo: number): number => {
    let t = -Infinity;
    for (const e of byCpu[c] ?? []) if (e.ts >= lo && e.ts <= uTs && e.ts > t && concerns(e)) t = e.ts;
    return t;
  };
  const touching = (lo: number): number[] => {
    const last = Object.keys(byCpu).map(Number).filter((c) => c !== c0).map((c) => ({ c, t: lastKeyTs(c, lo) })).filter((x) => x.t > -Infinity);
    if (lo === -Infinity) last.sort((a, b) => b.t - a.t).splice(1);
    return last.map((x) => x.c);
  };
  const filled = fill?.ts ?? -Infinity;
  const near = touching(filled);
  const early = near.length === 0 ? touching(-Infinity) : [];
  const from = early.length > 0 ? -Infinity : filled;
  // the other side: the CPUs the oracle named, and every other CPU that touched the page or frame
  // (the oracle may name a CPU that only wrote the reused frame, not the one that freed it)
  const named = (v.cpus ?? []).filter((c) => c !== c0);
  let others = named;
  if (!named.some((c) => lastKeyTs(c, from) > -Infinity)) {
    others = [...named, ...(early.length > 0 ? early : near).filter((c) => !named.includes(c))];
  }
  // a flush that can have removed the entry: a local flush covering the page, or a flush IPI from the other side
  const covers = (e: TraceEvent): boolean =>
    e.type === 'FLUSH_LOCAL' ? e.b < 0 || v.va === undefined || (v.va >= e.a && v.va < e.a + e.b * PAGE) : e.type === 'IPI_HANDLE' ? others.includes(e.a) : e.type === 'IPI_SEND' || e.type === 'SHOOTDOWN_DONE';
  // the using CPU may have made the change itself (its own mprotect, say): then its own change events count
  // too; so do they when another task changed the page on the using CPU after the fill (a migrated munmap)
  const selfKeys = mine.some((e) => (fill === undefined || e.seq > fill.seq) && e.seq < uSeq && concerns(e));
  const sides = others.length ? (selfKeys ? [...others, c0] : others) : [c0];
  for (const c of sides) {
    const evs = byCpu[c] ?? [];
    const inRace = evs.filter((e) => e.ts >= from && e.ts <= uTs && (c !== c0 || ((fill === undefined || e.seq > fill.seq) && e.seq < uSeq)));
    const keys = inRace.filter(concerns);
    // the last change (and what follows it) matters most: keep the keys from the last syscall that has one
    const lastKey = keys[keys.length - 1];
    if (!lastKey) continue;
    const sys = [...inRace].reverse().find((e) => e.type === 'SYSCALL' && e.seq <= lastKey.seq);
    // no syscall (a fault's change): from the first key, or, looking back past the fill, the last one only
    const lo = sys ? sys.seq : from === -Infinity ? lastKey.seq : keys[0].seq;
    const chosenKeys = keys.filter((e) => e.seq >= lo);
    if (sys) row(sys, 'syscall');
    for (const e of chosenKeys) row(e, e.type === 'FREE_PAGE' ? 'free' : e.type === 'ZAP' ? 'zap' : 'change');
    const afterFirst = inRace.filter((e) => e.seq > chosenKeys[0].seq);
    const flushes = afterFirst.filter((e) => FLUSHES.has(e.type) && covers(e));
    for (const e of flushes.slice(0, 2)) row(e, 'flush');
    if (flushes.length > 2) row(flushes[flushes.length - 1], 'flush');
    const promise = afterFirst.find((e) => e.type === 'PROMISE');
    if (promise) row(promise, 'promise');
    const end = afterFirst.find((e) => e.type === 'SYSCALL_END');
    if (end && sys) row(end, 'syscall-end');
    // the first flush after the use: the one that came too late
    const late = evs.find((e) => e.ts > uTs && FLUSHES.has(e.type) && covers(e));
    if (late) row(late, 'flush-late', `${describe(late)} (after the use: too late)`);
  }
  // flushes that reached the using CPU after the change began (earlier ones cannot have removed the entry) and before the use
  const changeTs = Math.min(...rows.filter((x) => x.role === 'syscall' || x.role === 'change' || x.role === 'zap' || x.role === 'free').map((x) => x.ts));
  const flushedHere = before.filter((e) => e.ts >= Math.max(from, Number.isFinite(changeTs) ? changeTs : from) && (e.type === 'FLUSH_LOCAL' || e.type === 'IPI_HANDLE') && covers(e) && (!fill || e.seq > fill.seq));
  for (const e of flushedHere.slice(-3)) row(e, 'flush');
  if (use) rows.push({ cpu: c0, ts: use.ts, seq: use.seq, role: 'use', text: `[${v.kind}] stale use: ${v.message}` });
  if (flushedHere.length === 0 && fill && use) {
    rows.push({ cpu: c0, ts: use.ts, seq: use.seq - 0.5, role: 'no-flush', text: `no TLB flush reached cpu ${c0} between the change and the use` });
  }
  // order by time, then by per-CPU sequence; no duplicates
  const seen = new Set<string>();
  const out = rows.filter((r) => {
    const k = `${r.cpu}:${r.seq}:${r.role}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  out.sort((a, b) => a.ts - b.ts || (a.cpu === b.cpu ? a.seq - b.seq : a.cpu - b.cpu));
  // the use goes last among events at the same time on its CPU
  return { cpus: [c0, ...others.filter((c) => out.some((r) => r.cpu === c))], rows: out };
}

/** A relative time label: t − the use. */
function rel(ts: number, tu: number, steps: boolean): string {
  const d = ts - tu;
  if (d === 0) return '0';
  const a = Math.abs(d);
  const s = steps ? `${a} steps` : a >= 1000 ? `${(a / 1000).toFixed(2)} ms` : `${a.toFixed(1)} us`;
  return (d > 0 ? '+' : '−') + s;
}

/** Gaps between consecutive rows worth a line of their own. */
function gapText(dt: number, steps: boolean): string {
  return steps ? `… ${dt} steps later …` : `… ${dt >= 1000 ? `${(dt / 1000).toFixed(2)} ms` : `${dt.toFixed(1)} us`} later …`;
}

/** The race as plain text, one column per CPU (for the summary). */
export function raceText(r: Race, steps: boolean, width = 58): string[] {
  const use = r.rows.find((x) => x.role === 'use');
  const tu = use?.ts ?? 0;
  const out: string[] = [];
  const pad = (s: string, n: number): string => (s.length > n ? s.slice(0, n - 1) + '…' : s.padEnd(n));
  out.push(`${pad('t − use', 12)}${r.cpus.map((c, i) => pad(`CPU ${c}${i === 0 ? ' (stale use)' : ''}`, width)).join(' ')}`.trimEnd());
  let prev: number | undefined;
  for (const x of r.rows) {
    if (prev !== undefined && x.ts - prev > (steps ? 50 : 20)) out.push(`${pad('', 12)}${gapText(x.ts - prev, steps)}`);
    prev = x.ts;
    const cells = r.cpus.map((c) => pad(c === x.cpu ? (x.role === 'use' ? '>> ' : x.role === 'no-flush' ? '!! ' : '') + x.text : '', width));
    out.push(`${pad(Number.isNaN(x.ts) ? '' : rel(x.ts, tu, steps), 12)}${cells.join(' ')}`.trimEnd());
  }
  return out;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The race as an HTML table, one column per CPU (for the report). */
export function raceHtml(r: Race, steps: boolean): string {
  const use = r.rows.find((x) => x.role === 'use');
  const tu = use?.ts ?? 0;
  const body: string[] = [];
  let prev: number | undefined;
  for (const x of r.rows) {
    if (prev !== undefined && x.ts - prev > (steps ? 50 : 20)) {
      body.push(`<tr class="gap"><td></td><td colspan="${r.cpus.length}">${esc(gapText(x.ts - prev, steps))}</td></tr>`);
    }
    prev = x.ts;
    const cls = `race-${x.role}`;
    body.push(`<tr class="${cls}"><td class="num">${esc(rel(x.ts, tu, steps))}</td>${r.cpus.map((c) => `<td>${c === x.cpu ? `<span class="role">${esc(x.role)}</span> ${esc(x.text)}` : ''}</td>`).join('')}</tr>`);
  }
  return `<table class="race"><thead><tr><th class="num">t − use</th>${r.cpus.map((c, i) => `<th>CPU ${c}${i === 0 ? ' (stale use)' : ''}</th>`).join('')}</tr></thead><tbody>
${body.join('\n')}
</tbody></table>`;
}
