// Chrome trace-event JSON (opens in ui.perfetto.dev): one track per simulated CPU.
//
// The event rings hold begin/end pairs (EV_SPANS); here they become complete
// ('X') slices, nested per CPU with a stack: an IPI handled while a lock is
// awaited, a fault inside a syscall. The rings drop their oldest events, so an
// end whose begin was overwritten becomes a slice from the start of that CPU's
// window, and a begin still open when the run stopped lasts to the end of the
// trace; both say so in their args ("truncated"). A task preempted inside a span
// and resumed on another CPU (a migration, src/hw/preempt.ts) leaves the span's
// begin on one track and its end on the other: both halves show as truncated.
//
// Memory accesses (READ, WRITE, and OP, the start of each program step) are most
// of the events and say little one by one: by default they become per-CPU rate
// counters (a stalled CPU shows as a dip), and reads and writes are kept as
// instants only in the millisecond before a violation, where each one matters.
// TLB fills stay instants (which CPU cached which va -> pfn, and when, is what a
// stale-TLB race is about).
//
// Time: ts is microseconds since the run started, kept at nanosecond resolution
// (integer ns internally, so nested slices never overlap by a rounding error).
// In deterministic mode the ring clock is the scheduler's step count: 1 step is
// shown as 1 us.

import type { RunResult, TraceEvent } from '../engine/machine.ts';
import { EV_SPANS, EV_NAMES, SYS_NAMES, CHANGE_LABELS } from '../hw/trace.ts';
import { ERRNO_NAMES } from '../mm/errno.ts';
import { PAGE_SIZE } from '../hw/layout.ts';

export const PID_CPUS = 1;
export const PID_COUNTERS = 2;
/** the trace thread id of a simulated CPU (tid 0 is special in some viewers) */
export const tidOf = (cpu: number): number => cpu + 1;

export const hex = (x: number): string => (x < 0 ? String(x) : '0x' + x.toString(16));
const HIGH_VOLUME = new Set(['READ', 'WRITE', 'OP']);
const LOCK_KIND = ['spin_lock', 'down_read', 'down_write'];

export interface Span {
  cpu: number;
  startNs: number;
  endNs: number;
  name: string;
  cat: string;
  /** begin event type (SYSCALL, FAULT, IPI_SEND, IPI_HANDLE, LOCK_WAIT, LAZY_ENTER) */
  kind: string;
  args: Record<string, string | number | boolean>;
  /** nesting depth on its CPU (0 = outermost) */
  depth: number;
  /** why the span is not a clean begin/end pair, if it is not */
  truncated?: string;
}

export interface CpuWindow {
  cpu: number;
  /** timed events, oldest first (sequence order) */
  events: TraceEvent[];
  firstNs: number;
  lastNs: number;
  /** events of this CPU before its retained window (overwritten in the ring) */
  dropped: number;
  /** events without a timestamp, left out (see untimed below) */
  untimed: number;
}

export interface ViolationMark {
  index: number;
  kind: string;
  message: string;
  cpu: number;
  cpus: number[];
  /** when it fired, if the trace locates it */
  tsNs?: number;
  /** how tsNs was found */
  located: string;
  /** it fired between these two times (the violating CPU's events around it) */
  loNs?: number;
  hiNs?: number;
}

export interface TraceModel {
  deterministic: boolean;
  /** time unit of ts: 'us' or 'steps' */
  unit: string;
  cpus: CpuWindow[];
  spans: Span[];
  startNs: number;
  endNs: number;
  violations: ViolationMark[];
}

const toNs = (ts: number): number => Math.round(ts * 1000);
const later_ = (ns: number, steps: boolean): string =>
  steps ? `${ns / 1000} steps` : ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1000).toFixed(1)} us`;
const fromNs = (ns: number): number => ns / 1000;

function errnoOr(v: number, asAddr: boolean): string | number {
  if (v < 0) return `-${ERRNO_NAMES[-v] ?? -v}`;
  return asAddr && v >= 4096 ? hex(v) : v;
}

/** A kernel developer's name for a single (non-span) event. */
export function instantName(e: { type: string; a: number; b: number }): string {
  const { a, b } = e;
  switch (e.type) {
    case 'READ':
      return `read ${hex(a)}`;
    case 'WRITE':
      return `write ${hex(a)}`;
    case 'TLB_FILL':
      return `TLB fill ${hex(a)} -> pfn ${b}`;
    case 'SEGV':
      return `SIGSEGV ${hex(a)}`;
    case 'FLUSH_LOCAL':
      return b < 0 ? 'local flush: full' : `local flush ${hex(a)} +${b} page${b === 1 ? '' : 's'}`;
    case 'FREE_PAGE':
      return `free pfn ${a}${b >= 0 ? ` (was at ${hex(b)})` : ''}`;
    case 'FREE_TABLE':
      return `free page table pfn ${a}`;
    case 'ZAP':
      return `zap ${hex(a)}-${hex(b)}`;
    case 'CTX_SWITCH':
      return b < 0 ? `idle: lazy TLB (keeps mm ${a})` : `switch_mm ${a < 0 ? 'init_mm' : `mm ${a}`} -> mm ${b}`;
    case 'OP':
      return `task ${a} op ${b}`;
    case 'LAZY_TLB':
      return 'enter_lazy_tlb';
    case 'LAZY_RANGE':
      return `lazy MMU range ${hex(a)}-${hex(b)}`;
    case 'LAZY_RANGE_IGNORED':
      return `nested lazy MMU range ignored ${hex(a)}-${hex(b)}`;
    case 'VIOLATION':
      return 'VIOLATION';
    case 'CHANGE_BEGIN':
      return `${CHANGE_LABELS[b % 4096] ?? b % 4096} ${hex(a)}-${hex(b - (b % 4096))}: page tables change`;
    case 'PROMISE':
      return `${CHANGE_LABELS[b] ?? b} ${hex(a)}: promise point`;
    case 'VMAP':
      return `vmap ${hex(a)} +${b} page${b === 1 ? '' : 's'}`;
    case 'VUNMAP':
      return `vunmap ${hex(a)} +${b} page${b === 1 ? '' : 's'}`;
    case 'KERNEL_MAP':
      return `__kernel_map_pages ${hex(a)} ${b ? 'valid' : 'invalid'}`;
    case 'FLUSH_KERNEL':
      return `flush_tlb_kernel_range ${hex(a)}-${hex(b)}`;
    default:
      return `${e.type} ${hex(a)} ${b}`;
  }
}

function instantCat(type: string): string {
  switch (type) {
    case 'READ':
    case 'WRITE':
    case 'OP':
      return 'access';
    case 'TLB_FILL':
      return 'tlb_fill';
    case 'FLUSH_LOCAL':
    case 'FLUSH_KERNEL':
      return 'tlb';
    case 'VMAP':
    case 'VUNMAP':
    case 'KERNEL_MAP':
      return 'mm';
    case 'SEGV':
      return 'fault';
    case 'FREE_PAGE':
    case 'FREE_TABLE':
    case 'ZAP':
      return 'mm';
    case 'CTX_SWITCH':
    case 'LAZY_TLB':
      return 'sched';
    case 'LAZY_RANGE':
    case 'LAZY_RANGE_IGNORED':
      return 'lazy_mmu';
    default:
      return 'other';
  }
}

function instantArgs(e: TraceEvent): Record<string, string | number> {
  switch (e.type) {
    case 'READ':
    case 'WRITE':
      return { va: hex(e.a), value: e.b, seq: e.seq };
    case 'TLB_FILL':
      return { va: hex(e.a), pfn: e.b, seq: e.seq };
    case 'FREE_PAGE':
      return { pfn: e.a, was_at: hex(e.b), seq: e.seq };
    case 'ZAP':
      return { start: hex(e.a), end: hex(e.b), pages: Math.round((e.b - e.a) / PAGE_SIZE), seq: e.seq };
    case 'FLUSH_LOCAL':
      return e.b < 0 ? { full: 1, seq: e.seq } : { start: hex(e.a), pages: e.b, seq: e.seq };
    case 'CTX_SWITCH':
      return { prev_mm: e.a, next_mm: e.b, seq: e.seq };
    case 'OP':
      return { task: e.a, ops_before: e.b, seq: e.seq };
    case 'LAZY_RANGE':
    case 'LAZY_RANGE_IGNORED':
      return { start: hex(e.a), end: hex(e.b), seq: e.seq };
    default:
      return { a: hex(e.a), b: e.b, seq: e.seq };
  }
}

/** A short name for any event, begin/end ones included. */
function instantOrSpanName(e: TraceEvent): string {
  switch (e.type) {
    case 'SYSCALL':
      return `${SYS_NAMES[e.a] ?? e.a}(${hex(e.b)})`;
    case 'SYSCALL_END':
      return `${SYS_NAMES[e.a] ?? e.a} returns`;
    case 'FAULT':
      return `page fault ${hex(e.a)}`;
    case 'IPI_SEND':
      return `shootdown -> ${e.b} cpus`;
    case 'IPI_HANDLE':
      return `IPI from cpu ${e.a}`;
    case 'IRQ':
      return `interrupt (task ${e.a})`;
    default:
      return e.type.includes('_') && !(e.type in INSTANT_TYPES) ? e.type.toLowerCase() : instantName(e);
  }
}
const INSTANT_TYPES = {
  READ: 1, WRITE: 1, TLB_FILL: 1, SEGV: 1, FLUSH_LOCAL: 1, FREE_PAGE: 1, FREE_TABLE: 1, ZAP: 1, CTX_SWITCH: 1, OP: 1, LAZY_TLB: 1,
  LAZY_RANGE: 1, LAZY_RANGE_IGNORED: 1, CHANGE_BEGIN: 1, PROMISE: 1, VMAP: 1, VUNMAP: 1, KERNEL_MAP: 1, FLUSH_KERNEL: 1,
};

const beginOf = new Map<number, number>(EV_SPANS.map(([b, e]) => [e, b]));
const isBegin = new Set<number>(EV_SPANS.map(([b]) => b));
const typeNo = new Map<string, number>(Object.entries(EV_NAMES).map(([k, v]) => [v, Number(k)]));

/** Name, category and args of a span from its begin (and end, if seen) event. */
function spanInfo(begin: TraceEvent, end: TraceEvent | null, deterministic: boolean, beginLost: boolean): Pick<Span, 'name' | 'cat' | 'args'> {
  const { a, b } = begin;
  switch (begin.type) {
    case 'SYSCALL':
      return {
        name: SYS_NAMES[a] ?? `syscall ${a}`, cat: 'syscall',
        args: { ...(beginLost ? {} : { addr: hex(b) }), ...(end ? { ret: errnoOr(end.b, SYS_NAMES[a] === 'mmap') } : {}) },
      };
    case 'FAULT':
      return {
        name: `page fault ${hex(a)}${beginLost ? '' : b ? ' W' : ' R'}`, cat: 'fault',
        args: {
          address: hex(a), ...(beginLost ? {} : { write: b !== 0 }),
          ...(end ? { result: ['VM_FAULT_OK', 'VM_FAULT_SIGSEGV', 'VM_FAULT_OOM'][end.b] ?? end.b } : {}),
        },
      };
    case 'IPI_SEND':
      return {
        name: `flush_tlb_mm_range -> ${beginLost ? '? cpus' : `${b} cpu${b === 1 ? '' : 's'}`}`, cat: 'shootdown',
        args: {
          mm: a, ...(beginLost ? {} : { targets: b }),
          ...(end ? (deterministic ? { latency_steps: end.b } : { latency_us: Math.round(end.b) / 1000 }) : {}),
        },
      };
    case 'IPI_HANDLE':
      return { name: `IPI from cpu ${a}`, cat: 'ipi', args: { sender: a, ...(beginLost ? {} : { mm: b }) } };
    case 'LOCK_WAIT':
      return { name: `${LOCK_KIND[b] ?? 'lock'} wait, lock word ${a}`, cat: 'lock', args: { lock_word: a, kind: LOCK_KIND[b] ?? b } };
    case 'LAZY_ENTER':
      return { name: 'lazy_mmu_mode', cat: 'lazy_mmu', args: { task: a } };
    case 'MOVE_PGTABLES':
      return {
        name: 'move_page_tables', cat: 'mremap',
        args: { ...(beginLost ? {} : { old_addr: hex(a), new_addr: hex(b) }), ...(end ? { bytes_moved: end.b } : {}) },
      };
    default:
      return { name: begin.type, cat: 'other', args: {} };
  }
}

/** Where the first string of a ViolationRecord's event list says the CPU was (its last '#seq'). */
function lastSeq(lines: string[] | undefined): number | undefined {
  if (!lines || lines.length === 0) return undefined;
  const m = /^#(\d+)/.exec(lines[lines.length - 1]);
  return m ? Number(m[1]) : undefined;
}

/**
 * Everything both exporters need from RunResult.trace: per-CPU windows, paired
 * spans, and where each violation fired. Null when the run was not traced.
 */
export function buildTraceModel(r: RunResult): TraceModel | null {
  if (!r.trace) return null;
  const deterministic = String(r.mode) === 'deterministic';
  const perCpu: TraceEvent[][] = Array.from({ length: r.cpus }, () => []);
  for (const e of r.trace.events) if (e.cpu >= 0 && e.cpu < r.cpus) perCpu[e.cpu].push(e);
  const cpus: CpuWindow[] = [];
  const spans: Span[] = [];
  let startNs = Infinity;
  let endNs = -Infinity;
  for (let c = 0; c < r.cpus; c++) {
    const all = perCpu[c].sort((x, y) => x.seq - y.seq);
    // Events logged with no clock (ts 0) in a timed run come from the main thread's
    // CPU 0 after the run (teardown's exit_mmap): not part of the run's timeline.
    const events = deterministic ? all : all.filter((e) => e.ts > 0);
    const firstNs = events.length ? toNs(events[0].ts) : 0;
    const lastNs = events.length ? toNs(events[events.length - 1].ts) : 0;
    if (events.length) {
      startNs = Math.min(startNs, firstNs);
      endNs = Math.max(endNs, lastNs);
    }
    cpus.push({ cpu: c, events, firstNs, lastNs, dropped: events.length ? events[0].seq - 1 : 0, untimed: all.length - events.length });
  }
  if (startNs === Infinity) startNs = endNs = 0;

  for (const w of cpus) {
    const stack: { e: TraceEvent; ns: number }[] = [];
    const close = (begin: TraceEvent, bNs: number, end: TraceEvent | null, eNs: number, depth: number, truncated?: string, beginLost = false): void => {
      const info = spanInfo(begin, end, deterministic, beginLost);
      spans.push({ cpu: w.cpu, startNs: bNs, endNs: Math.max(bNs, eNs), ...info, kind: begin.type, depth, ...(truncated ? { truncated } : {}) });
    };
    let lastNs = w.firstNs;
    // the last MIGRATE on this CPU: a task arrived here (its spans begun elsewhere end here)
    let arrived: { ns: number; from: number; task: number } | null = null;
    for (const e of w.events) {
      const ns = Math.max(toNs(e.ts), lastNs); // per-CPU clock is monotonic; guard anyway
      lastNs = ns;
      const t = typeNo.get(e.type) ?? -1;
      if (e.type === 'MIGRATE') {
        // The task that ran here has left this CPU (preempted and resumed elsewhere, or moved
        // with migrate_swap): whatever it had open continues on another CPU's track. Closing it
        // here keeps another task's later end of the same kind from being paired with it.
        while (stack.length) {
          const o = stack.pop()!;
          close(o.e, o.ns, null, ns, stack.length, 'its task left this CPU here (migration): continued on another CPU');
        }
        arrived = { ns, from: e.b, task: e.a };
        continue;
      }
      if (isBegin.has(t)) {
        stack.push({ e, ns });
        continue;
      }
      const bt = beginOf.get(t);
      if (bt === undefined) continue;
      const bname = EV_NAMES[bt];
      let k = stack.length - 1;
      while (k >= 0 && !(stack[k].e.type === bname && stack[k].e.a === e.a)) k--;
      if (k >= 0) {
        // anything opened inside it and never closed ends with it
        while (stack.length - 1 > k) {
          const o = stack.pop()!;
          close(o.e, o.ns, null, ns, stack.length, 'end not recorded: closed with its enclosing span');
        }
        const b = stack.pop()!;
        close(b.e, b.ns, e, ns, stack.length);
      } else {
        // its begin is older than this CPU's window: it spans from the window's start;
        // whatever is open began inside it and ends with it
        while (stack.length) {
          const o = stack.pop()!;
          close(o.e, o.ns, null, ns, stack.length + 1, 'end not recorded: closed with its enclosing span');
        }
        // the begin's a is the end's a for every pair; LOCK_ACQUIRED's b is LOCK_WAIT's b too.
        // After a migration here it began on the CPU the task came from: from the arrival.
        const fromNs0 = arrived !== null ? arrived.ns : w.firstNs;
        const synthetic: TraceEvent = { ...e, type: bname, seq: w.events[0].seq, ts: fromNs(fromNs0) };
        const why = arrived !== null
          ? `began on cpu ${arrived.from} before task ${arrived.task} migrated here`
          : w.dropped > 0 ? 'begin overwritten in the event ring (before this CPU\'s window)' : 'begin not recorded';
        close(synthetic, fromNs0, e, ns, 0, why, true);
      }
    }
    while (stack.length) {
      const o = stack.pop()!;
      close(o.e, o.ns, null, Math.max(endNs, o.ns), stack.length, 'still in progress when the trace ended');
    }
  }
  spans.sort((x, y) => x.cpu - y.cpu || x.startNs - y.startNs || y.endNs - x.endNs || x.depth - y.depth);
  // depths from the final intervals (spans made up for lost begins all start at the window's start)
  const open: number[] = [];
  for (let i = 0; i < spans.length; i++) {
    const sp = spans[i];
    if (i === 0 || spans[i - 1].cpu !== sp.cpu) open.length = 0;
    while (open.length && open[open.length - 1] <= sp.startNs && !(open[open.length - 1] === sp.startNs && sp.endNs === sp.startNs)) open.pop();
    sp.depth = open.length;
    open.push(sp.endNs);
  }

  const violations: ViolationMark[] = r.violations.map((v, index) => {
    const base = { index, kind: v.kind, message: v.message, cpu: v.cpu, cpus: (v.cpus ?? []).filter((c) => c !== v.cpu) };
    const w = cpus[v.cpu];
    const seq = lastSeq(v.events?.[v.cpu]);
    if (!w || seq === undefined) return { ...base, located: 'not located: no events recorded with it' };
    const i = w.events.findIndex((e) => e.seq === seq);
    if (i < 0) {
      if (w.untimed > 0 && (w.events.length === 0 || seq < w.events[0].seq)) {
        return { ...base, located: `not in the trace: cpu ${v.cpu}'s oldest events were overwritten after the run (by the teardown's exit_mmap)` };
      }
      const before = w.events.length === 0 || seq < w.events[0].seq;
      return { ...base, located: before ? 'before the retained trace window' : 'not located in the trace' };
    }
    // It fired after this event and before the next one was logged. The next one (for a
    // stale-TLB hit, the access itself) comes only after the oracle has snapshotted the
    // rings, which takes milliseconds, and an injected delay can sit between the
    // translation and the check: if the frame it names was freed inside that interval,
    // the check saw that free, so it fired after it; otherwise the earlier bound is
    // the better guess.
    const here = w.events[i];
    const next = w.events[i + 1];
    const lo = toNs(here.ts);
    const hi = next ? toNs(next.ts) : undefined;
    const window = `between cpu ${v.cpu}'s #${seq} (${instantOrSpanName(here)})` +
      (next ? ` and #${next.seq} (${instantOrSpanName(next)}, logged ${later_(hi! - lo, deterministic)} later)` : ' and the end of its trace');
    let free: TraceEvent | undefined;
    if (v.pfn !== undefined) {
      for (const cw of cpus) {
        for (const e of cw.events) {
          const t = toNs(e.ts);
          if (e.type === 'FREE_PAGE' && e.a === v.pfn && t > lo && (hi === undefined || t < hi) && (!free || t < toNs(free.ts))) free = e;
        }
      }
    }
    if (free) {
      return { ...base, tsNs: toNs(free.ts), loNs: lo, hiNs: hi, located: `just after cpu ${free.cpu} freed pfn ${v.pfn} (#${free.seq}), ${window}` };
    }
    return { ...base, tsNs: lo, loNs: lo, hiNs: hi, located: window };
  });
  return { deterministic, unit: deterministic ? 'steps' : 'us', cpus, spans, startNs, endNs, violations };
}

export interface ChromeTraceOptions {
  /**
   * READ/WRITE/OP events: 'counters' (default): per-CPU rate counters, plus READ/WRITE
   * instants within accessWindowUs before a located violation; 'all': every one as an instant.
   */
  accesses?: 'counters' | 'all';
  /** default 1000 (us, or steps in deterministic mode) */
  accessWindowUs?: number;
}

const NICE_BUCKETS_US = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 1e6];

type ChromeEvent = Record<string, unknown>;

/** The Chrome trace-event object for a traced run (RunResult.trace must be set). */
export function toChromeTrace(r: RunResult, opts: ChromeTraceOptions = {}): { traceEvents: object[]; displayTimeUnit: string; metadata: object } {
  const m = buildTraceModel(r);
  if (!m) throw new Error('toChromeTrace: the run was not traced (RunOptions.trace)');
  const accesses = opts.accesses ?? 'counters';
  const windowNs = (opts.accessWindowUs ?? 1000) * 1000;
  const ev: ChromeEvent[] = [];
  const us = fromNs;

  // metadata: process and one thread per CPU
  ev.push({ ph: 'M', name: 'process_name', pid: PID_CPUS, tid: 0, args: { name: `mmsim ${r.scenario} (${r.arch}, seed ${r.seed})` } });
  ev.push({ ph: 'M', name: 'process_sort_index', pid: PID_CPUS, tid: 0, args: { sort_index: 0 } });
  for (let c = 0; c < r.cpus; c++) {
    ev.push({ ph: 'M', name: 'thread_name', pid: PID_CPUS, tid: tidOf(c), args: { name: `CPU ${c}` } });
    ev.push({ ph: 'M', name: 'thread_sort_index', pid: PID_CPUS, tid: tidOf(c), args: { sort_index: c } });
  }

  // spans, per CPU in begin order (outer before inner at equal begins)
  for (const s of m.spans) {
    const args: Record<string, unknown> = { ...s.args };
    if (s.truncated) args.truncated = s.truncated;
    ev.push({ ph: 'X', name: s.name, cat: s.cat, pid: PID_CPUS, tid: tidOf(s.cpu), ts: us(s.startNs), dur: us(s.endNs - s.startNs), args });
  }

  // where each CPU's window starts
  for (const w of m.cpus) {
    if (!w.events.length) continue;
    ev.push({
      ph: 'i', s: 't', name: w.dropped ? `trace window starts (${w.dropped.toLocaleString('en-US')} older events overwritten)` : 'trace starts',
      cat: 'trace', pid: PID_CPUS, tid: tidOf(w.cpu), ts: us(w.firstNs), args: { dropped: w.dropped, first_seq: w.events[0].seq },
    });
  }

  // instants; accesses near violations only (unless 'all')
  const near = m.violations.filter((v) => v.tsNs !== undefined).map((v) => [v.tsNs! - windowNs, v.tsNs! + windowNs / 10]);
  const isNear = (ns: number): boolean => near.some(([a, b]) => ns >= a && ns <= b);
  let accessInstants = 0;
  for (const w of m.cpus) {
    for (const e of w.events) {
      const t = typeNo.get(e.type) ?? -1;
      if (isBegin.has(t) || beginOf.has(t)) continue;
      const ns = toNs(e.ts);
      if (HIGH_VOLUME.has(e.type) && accesses !== 'all' && (e.type === 'OP' || !isNear(ns))) continue;
      if (HIGH_VOLUME.has(e.type)) accessInstants++;
      ev.push({ ph: 'i', s: 't', name: instantName(e), cat: instantCat(e.type), pid: PID_CPUS, tid: tidOf(w.cpu), ts: us(ns), args: instantArgs(e) });
    }
  }

  // per-CPU rate counters (a separate process, so the CPU tracks stay together)
  let bucketUs = 0;
  if (accesses === 'counters') {
    const longest = Math.max(1, ...m.cpus.map((w) => w.lastNs - w.firstNs)) / 1000;
    bucketUs = NICE_BUCKETS_US.find((b) => longest / b <= 400) ?? 1e6;
    const bNs = bucketUs * 1000;
    const perMs = 1000 / bucketUs;
    ev.push({ ph: 'M', name: 'process_name', pid: PID_COUNTERS, tid: 0, args: { name: `memory accesses per ${m.deterministic ? '1000 steps' : 'ms'}, per CPU (${bucketUs} ${m.unit} buckets)` } });
    ev.push({ ph: 'M', name: 'process_sort_index', pid: PID_COUNTERS, tid: 0, args: { sort_index: 1 } });
    for (const w of m.cpus) {
      if (!w.events.length) continue;
      const n = Math.floor((w.lastNs - w.firstNs) / bNs) + 1;
      const acc = new Float64Array(n);
      const fills = new Float64Array(n);
      for (const e of w.events) {
        const i = Math.floor((toNs(e.ts) - w.firstNs) / bNs);
        if (e.type === 'READ' || e.type === 'WRITE') acc[i]++;
        else if (e.type === 'TLB_FILL') fills[i]++;
      }
      // one counter event with two series: Perfetto shows the tracks 'CPU n accesses/ms', 'CPU n TLB fills/ms'
      const per = m.deterministic ? '1k steps' : 'ms';
      const series = (x: number, y: number): Record<string, number> => ({ [`accesses/${per}`]: x, [`TLB fills/${per}`]: y });
      for (let i = 0; i < n; i++) {
        ev.push({ ph: 'C', name: `CPU ${w.cpu}`, pid: PID_COUNTERS, tid: 0, ts: us(w.firstNs + i * bNs), args: series(acc[i] * perMs, fills[i] * perMs) });
      }
      ev.push({ ph: 'C', name: `CPU ${w.cpu}`, pid: PID_COUNTERS, tid: 0, ts: us(w.firstNs + n * bNs), args: series(0, 0) });
    }
  }

  // violations: global markers with the message, and one on the CPU's own track
  for (const v of m.violations) {
    const src = r.violations[v.index];
    const ts = us(v.tsNs ?? m.endNs);
    const args = {
      kind: v.kind, message: v.message, cpu: v.cpu, cpus: src.cpus ?? [], located: v.located,
      ...(src.va !== undefined ? { va: hex(src.va) } : {}), ...(src.pfn !== undefined ? { pfn: src.pfn } : {}),
    };
    ev.push({ ph: 'i', s: 'g', name: `[${v.kind}] ${v.message}`, cat: 'violation', pid: PID_CPUS, tid: tidOf(v.cpu), ts, args });
    ev.push({ ph: 'i', s: 't', name: `VIOLATION [${v.kind}]`, cat: 'violation', pid: PID_CPUS, tid: tidOf(v.cpu), ts, args });
    for (const c of v.cpus) {
      ev.push({ ph: 'i', s: 't', name: `involved in violation [${v.kind}] on cpu ${v.cpu}`, cat: 'violation', pid: PID_CPUS, tid: tidOf(c), ts, args });
    }
  }

  return {
    traceEvents: ev,
    displayTimeUnit: 'ns',
    metadata: {
      generator: 'mmsim',
      scenario: r.scenario, arch: r.arch, cpus: r.cpus, seed: r.seed, mode: r.mode, threads: r.threads, knobs: r.knobs,
      wallMs: Math.round(r.wallMs), timeUnit: m.deterministic ? 'scheduler steps (shown as us)' : 'us since the run started',
      eventsDropped: r.trace!.dropped,
      eventsDroppedPerCpu: m.cpus.map((w) => w.dropped),
      untimedEventsLeftOut: m.cpus.reduce((a, w) => a + w.untimed, 0),
      accesses: accesses === 'all' ? 'every READ/WRITE/OP as an instant (cat access)'
        : `per-CPU counters in ${bucketUs} ${m.unit} buckets; ${accessInstants} instants (cat access) within ${windowNs / 1000} ${m.unit} before a violation`,
      violations: r.violationCount,
    },
  };
}
