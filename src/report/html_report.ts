// A self-contained HTML report of a run: one file, no external resources (inline
// CSS and SVG; no script needed). Sections: the summary, the violations with a
// timeline of the CPUs involved in the first one, the shootdown latency
// histogram, flush/IPI statistics (and the place for per-arch batching), per CPU.

import type { RunResult, TraceEvent } from '../engine/machine.ts';
import { summary } from './summary.ts';
import { buildTraceModel, instantName, hex, type TraceModel, type Span, type ViolationMark } from './trace_export.ts';
import { SYS_NAMES } from '../hw/trace.ts';
import { chooseRace, raceHtml, FINDING_KINDS } from './race.ts';
import { getArch } from '../arch/index.ts';
import { ERRNO_NAMES } from '../mm/errno.ts';
import { PAGE_SIZE } from '../hw/layout.ts';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const fmt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const ratio = (a: number, b: number, digits = 2): string => (b > 0 ? (a / b).toFixed(digits) : '–');
const pct = (a: number, b: number): string => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : '–');

/** A duration in ns, as people read it; deterministic runs count scheduler steps. */
function dur(ns: number, steps = false): string {
  if (steps) return `${fmt(ns)} step${ns === 1 ? '' : 's'}`;
  const a = Math.abs(ns);
  if (a < 1000) return `${Math.round(ns)} ns`;
  if (a < 1e6) return `${(ns / 1000).toFixed(a < 1e4 ? 1 : 0)} µs`;
  if (a < 1e9) return `${(ns / 1e6).toFixed(a < 1e7 ? 2 : 1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

const CAT_COLOR: Record<string, string> = {
  syscall: '#4e79a7', fault: '#f28e2b', shootdown: '#b07aa1', ipi: '#59a14f', lock: '#9c755f', lazy_mmu: '#76b7b2',
  mm: '#8c6d31', tlb: '#59a14f', tlb_fill: '#edc948', access: '#bab0ac', sched: '#86bcb6', other: '#999',
};

function verdictOf(r: RunResult): { text: string; cls: string } {
  if (r.crash) return { text: 'CRASHED', cls: 'bad' };
  if (r.hang) return { text: 'HUNG', cls: 'bad' };
  if (r.violationCount > 0 || !r.audit.ok || !r.teardownAudit.ok) return { text: 'VIOLATION', cls: 'bad' };
  return { text: 'clean', cls: 'good' };
}

function kv(rows: [string, string][]): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('')}</table>`;
}

// ---- summary -------------------------------------------------------------------------

function summarySection(r: RunResult, det: boolean): string {
  const s = r.stats;
  const opsPerS = r.wallMs > 0 ? s.ops / (r.wallMs / 1000) : 0;
  const card = (title: string, rows: [string, string][]): string => `<div class="card"><h3>${esc(title)}</h3>${kv(rows)}</div>`;
  const problems = [...r.audit.problems, ...r.teardownAudit.problems];
  let text = '';
  try {
    text = summary(r);
  } catch {
    text = ''; // a result from another version of mmsim: the page still renders
  }
  return `<section id="summary"><h2>Summary</h2><div class="cards">
${card('Run', [
    ['scenario', esc(r.scenario)], ['arch', esc(r.arch)], ['CPUs', `${r.cpus} (${esc(r.mode)}, ${r.threads} host thread${r.threads === 1 ? '' : 's'})`],
    ['seed', String(r.seed)], ['bug knobs', r.knobs.length ? r.knobs.map((k) => `<code>${esc(k)}</code>`).join(' ') : 'none'],
    ['wall time', `${(r.wallMs / 1000).toFixed(2)} s${r.bootMs ? ` (+${(r.bootMs / 1000).toFixed(2)} s starting threads)` : ''}`],
  ])}
${card('Work', [
    ['operations', `${fmt(s.ops)} (${fmt(opsPerS)}/s)`], ['reads / writes', `${fmt(s.reads)} / ${fmt(s.writes)}`],
    ['syscalls', `${fmt(s.syscalls)}${r.syscallErrors ? ` (${fmt(r.syscallErrors)} failed, last: ${esc(r.lastSyscallError)})` : ''}`],
    ['faults', `${fmt(s.faults)} (SIGSEGV ${fmt(s.segv)})`], ['context switches', fmt(s.contextSwitches)],
    ['contended locks', fmt(s.lockContended)], ['delays injected', fmt(s.delays)],
  ])}
${card('TLB and shootdowns', [
    ['TLB hits / misses', `${fmt(s.tlbHits)} / ${fmt(s.tlbMisses)} (miss rate ${pct(s.tlbMisses, s.tlbHits + s.tlbMisses)})`],
    ['page walks', fmt(s.walks)], ['shootdowns', fmt(s.shootdowns)],
    ['IPIs sent / received', `${fmt(s.ipiSent)} / ${fmt(s.ipiReceived)}`],
    ['shootdown latency', r.latencyNs.samples
      ? `p50 ${dur(r.latencyNs.p50, det)}, p99 ${dur(r.latencyNs.p99, det)}, max ${dur(r.latencyNs.max, det)}` : 'no shootdowns'],
  ])}
${card('Memory and oracles', [
    ['pages freed', fmt(s.pagesFreed)], ['page tables freed', fmt(s.tablesFreed)],
    ['reads checked', `${fmt(r.readsChecked)} (${fmt(r.readsExcused)} excused by a concurrent unmap)`],
    ['audit', r.audit.ok ? '<span class="ok">refcounts and mapcounts consistent</span>' : '<span class="err">FAILED</span>'],
    ['after every mm exited', r.teardownAudit.ok ? '<span class="ok">every frame free</span>' : '<span class="err">FAILED</span>'],
    ['violations', r.violationCount ? `<span class="err">${fmt(r.violationCount)}</span>` : '<span class="ok">0</span>'],
  ])}
</div>
${problems.length ? `<div class="problems"><h3>Audit problems</h3><ul>${problems.slice(0, 20).map((p) => `<li>${esc(p)}</li>`).join('')}</ul></div>` : ''}
${r.hang ? `<div class="problems"><h3>Hang</h3><pre>${esc(r.hang)}</pre></div>` : ''}
${r.crash ? `<div class="problems"><h3>Crash</h3><pre>${esc(r.crash)}</pre></div>` : ''}
${text ? `<details><summary>The summary as text (as <code>mmsim run</code> prints it)</summary><pre class="text">${esc(text)}</pre></details>` : ''}
</section>`;
}

// ---- latency histogram ---------------------------------------------------------------

function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? p * 10;
}

function tickLabel(v: number, steps: boolean): string {
  if (steps) return fmt(v);
  if (v < 1e3) return `${v} ns`;
  if (v < 1e6) return `${v / 1e3} µs`;
  if (v < 1e9) return `${v / 1e6} ms`;
  return `${v / 1e9} s`;
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export function latencyHistogramSvg(samplesIn: number[], det: boolean, exact?: { p50: number; p99: number; max: number }): string {
  const samples = samplesIn.filter((x) => Number.isFinite(x) && x >= 0).sort((a, b) => a - b);
  if (!samples.length) return '<p class="muted">No shootdown in this run: nothing to plot.</p>';
  const W = 800, H = 330, L = 56, R = 44, T = 60, B = 46;
  const PER = 10; // buckets per decade (log scale)
  const floor1 = (x: number): number => Math.max(x, 1);
  let k0 = Math.floor(Math.log10(floor1(samples[0])) * PER);
  let k1 = Math.floor(Math.log10(floor1(samples[samples.length - 1])) * PER) + 1;
  if (k1 - k0 < PER) {
    const pad = PER - (k1 - k0);
    k0 -= Math.floor(pad / 2);
    k1 += Math.ceil(pad / 2);
  }
  const nb = k1 - k0;
  const counts = new Array<number>(nb).fill(0);
  for (const s of samples) counts[Math.min(nb - 1, Math.max(0, Math.floor(Math.log10(floor1(s)) * PER) - k0))]++;
  const cmax = Math.max(...counts);
  const pw = W - L - R, ph = H - T - B;
  const xk = (k: number): number => L + ((k - k0) / nb) * pw;
  const xv = (v: number): number => xk(Math.log10(floor1(v)) * PER);
  const y = (c: number): number => T + ph - (c / cmax) * ph;
  const out: string[] = [];
  out.push(`<svg class="hist" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="shootdown latency histogram">`);
  // y grid
  const ys = niceStep(cmax, 5);
  for (let c = 0; c <= cmax; c += ys) {
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y(c).toFixed(1)}" y2="${y(c).toFixed(1)}" class="grid"/><text x="${L - 6}" y="${(y(c) + 4).toFixed(1)}" class="tick" text-anchor="end">${fmt(c)}</text>`);
  }
  // bars
  let cum = 0;
  const cdf: string[] = [];
  for (let i = 0; i < nb; i++) {
    const lo = 10 ** ((k0 + i) / PER), hi = 10 ** ((k0 + i + 1) / PER);
    cum += counts[i];
    cdf.push(`${xk(k0 + i + 1).toFixed(1)},${(T + ph - (cum / samples.length) * ph).toFixed(1)}`);
    if (!counts[i]) continue;
    const x0 = xk(k0 + i) + 0.5, x1 = xk(k0 + i + 1) - 0.5;
    out.push(`<rect class="bar" x="${x0.toFixed(1)}" y="${y(counts[i]).toFixed(1)}" width="${(x1 - x0).toFixed(1)}" height="${(T + ph - y(counts[i])).toFixed(1)}"><title>${esc(`${dur(lo, det)} – ${dur(hi, det)}: ${fmt(counts[i])} shootdown${counts[i] === 1 ? '' : 's'} (${pct(counts[i], samples.length)})`)}</title></rect>`);
  }
  // cumulative fraction, right axis
  out.push(`<polyline class="cdf" points="${xk(k0).toFixed(1)},${T + ph} ${cdf.join(' ')}"/>`);
  for (const f of [0, 0.5, 1]) out.push(`<text x="${W - R + 6}" y="${(T + ph - f * ph + 4).toFixed(1)}" class="tick cdft">${f * 100}%</text>`);
  // x axis: decades labelled, 2x and 5x minor ticks
  out.push(`<line x1="${L}" x2="${W - R}" y1="${T + ph}" y2="${T + ph}" class="axis"/>`);
  for (let d = Math.floor(k0 / PER); d <= Math.ceil(k1 / PER); d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      const x = xv(v);
      if (x < L - 0.5 || x > W - R + 0.5) continue;
      out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${T + ph}" y2="${T + ph + (m === 1 ? 7 : 4)}" class="axis"/>`);
      out.push(`<text x="${x.toFixed(1)}" y="${T + ph + 20}" class="tick${m === 1 ? '' : ' minor'}" text-anchor="middle">${esc(tickLabel(v, det))}</text>`);
    }
  }
  out.push(`<text x="${L + pw / 2}" y="${H - 6}" class="label" text-anchor="middle">shootdown latency (log scale, ${PER} buckets per decade)${det ? ', scheduler steps' : ''}</text>`);
  out.push(`<text x="14" y="${T + ph / 2}" class="label" text-anchor="middle" transform="rotate(-90 14 ${T + ph / 2})">shootdowns</text>`);
  // percentile markers
  const marks: [string, number][] = [
    ['p50', exact?.p50 ?? quantile(samples, 0.5)], ['p90', quantile(samples, 0.9)],
    ['p99', exact?.p99 ?? quantile(samples, 0.99)], ['max', exact?.max ?? samples[samples.length - 1]],
  ];
  // labels above the plot, on up to three rows so that close markers do not collide
  const ends = [-1e9, -1e9, -1e9];
  for (const [name, v] of marks) {
    const x = Math.min(W - R, Math.max(L, xv(v)));
    const text = `${name} ${dur(v, det)}`;
    const wpx = text.length * 6 + 4;
    const right = x + wpx > W - 2;
    const x0 = right ? x - wpx : x;
    let row = ends.findIndex((e) => e < x0);
    if (row < 0) row = 0;
    ends[row] = x0 + wpx;
    const ty = T - 8 - row * 14;
    out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${ty + 2}" y2="${T + ph}" class="pmark ${name}"/>`);
    out.push(`<text x="${(right ? x - 3 : x + 3).toFixed(1)}" y="${ty}" class="plabel" text-anchor="${right ? 'end' : 'start'}">${esc(text)}</text>`);
  }
  out.push('</svg>');
  return out.join('');
}

function latencySection(r: RunResult, det: boolean): string {
  const s = [...r.latencySamplesNs].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : 0;
  const rows: [string, string][] = [
    ['shootdowns measured', `${fmt(r.latencyNs.samples)}${s.length < r.latencyNs.samples ? ` (histogram of a uniform sample of ${fmt(s.length)})` : ''}`],
    ['p50', dur(r.latencyNs.p50, det)], ['p90', s.length ? dur(quantile(s, 0.9), det) : '–'], ['p99', dur(r.latencyNs.p99, det)],
    ['p99.9', s.length ? dur(quantile(s, 0.999), det) : '–'], ['max', dur(r.latencyNs.max, det)], ['mean', s.length ? dur(mean, det) : '–'],
  ];
  return `<section id="latency"><h2>Shootdown latency</h2>
<p class="muted">From sending the flush IPIs to the last acknowledgement (the sender's wait in <code>flush_tlb_mm_range</code>). The line is the cumulative fraction (right axis).</p>
<div class="row"><div>${latencyHistogramSvg(s, det, r.latencyNs.samples ? r.latencyNs : undefined)}</div><div>${kv(rows)}</div></div></section>`;
}

// ---- flush / IPI statistics ------------------------------------------------------------

const SHOWN_STATS = new Set([
  'ops', 'reads', 'writes', 'tlbHits', 'tlbMisses', 'walks', 'faults', 'segv', 'ipiSent', 'ipiReceived', 'flushSingle', 'flushRange',
  'flushFull', 'flushSkipped', 'shootdowns', 'switchFlush', 'contextSwitches', 'syscalls', 'lazyTlbSkipped', 'pagesFreed', 'tablesFreed',
  'lockContended', 'delays',
]);

function flushSection(r: RunResult, m: TraceModel | null): string {
  const s = r.stats as Record<string, number>;
  const handled = s.flushRange + s.flushFull + s.flushSkipped;
  const rows: [string, string, string][] = [
    ['shootdowns', fmt(s.shootdowns), 'flush_tlb_mm_range calls that sent IPIs and waited for every acknowledgement'],
    ['IPIs sent', fmt(s.ipiSent), `${ratio(s.ipiSent, s.shootdowns)} per shootdown`],
    ['IPIs received', fmt(s.ipiReceived), s.ipiReceived === s.ipiSent ? 'every IPI sent was handled' : `<span class="err">${fmt(s.ipiSent - s.ipiReceived)} not handled</span>`],
    ['lazy-TLB CPUs skipped', fmt(s.lazyTlbSkipped), 'targets left out because they ran a lazy mm; they catch up at switch-in'],
    ['flush requests handled', fmt(handled), 'by the flush handler, remote or local'],
    ['… as a range', fmt(s.flushRange), `${pct(s.flushRange, handled)}; ${fmt(s.flushSingle)} single-page invalidations (${ratio(s.flushSingle, s.flushRange, 1)} pages per range flush)`],
    ['… as a full flush', fmt(s.flushFull), `${pct(s.flushFull, handled)} (above the 33-page ceiling, or generations skipped)`],
    ['… already up to date', fmt(s.flushSkipped), `${pct(s.flushSkipped, handled)} (the local TLB generation was current)`],
    ['flushes at switch-in', fmt(s.switchFlush), `of ${fmt(s.contextSwitches)} context switches (the generation was behind)`],
    ['pages freed', fmt(s.pagesFreed), `${ratio(s.pagesFreed, s.shootdowns, 1)} per shootdown`],
    ['page tables freed', fmt(s.tablesFreed), ''],
  ];
  // per-arch lazy MMU batching and invalidation counters (the ones this build has)
  const has = (k: string): boolean => typeof s[k] === 'number';
  const batchRows: [string, string, string][] = [];
  const add = (k: string, label: string, note: string): void => {
    if (has(k)) batchRows.push([label, fmt(s[k]), note]);
  };
  add('lazySections', 'lazy MMU sections', 'outermost sections entered');
  add('pteUpdates', 'PTE updates', 'writes through the arch PTE accessors');
  if (has('lazyUpdates')) batchRows.push(['… inside lazy sections', fmt(s.lazyUpdates), has('pteUpdates') ? pct(s.lazyUpdates, s.pteUpdates) : '']);
  add('batched', 'deferred into a batch', 'updates or invalidations the arch queued');
  if (has('batchFlushes')) {
    batchRows.push(['batches completed', fmt(s.batchFlushes), has('batched') ? `${ratio(s.batched, s.batchFlushes, 1)} per batch; ${fmt(Math.max(0, s.batched - s.batchFlushes))} flushes avoided` : '']);
  }
  add('broadcastsSent', 'hardware broadcast invalidations', 'arm64 TLBI, powerpc tlbie, s390 IPTE/IDTE: no IPI, no acknowledgement wait');
  add('broadcastsPurged', '… purged on CPUs', 'CPU visits that took a broadcast');
  add('quiesces', 'machine-wide quiesces', 's390 serialised invalidations');
  add('localClears', 'local clears', 'invalidations done locally (mm attached to this CPU only)');
  const contract = (r as { lazyContract?: string }).lazyContract;
  let archLine = '';
  try {
    const a = getArch(r.arch) as { defers?: string; invalidation?: string };
    archLine = [a.defers ? `defers ${a.defers}` : '', a.invalidation ? `invalidates by ${a.invalidation}` : ''].filter(Boolean).join('; ');
  } catch {
    archLine = '';
  }
  const shownHere = new Set(['lazySections', 'pteUpdates', 'lazyUpdates', 'batched', 'batchFlushes', 'broadcastsSent', 'broadcastsPurged', 'quiesces', 'localClears']);
  const other = Object.entries(s).filter(([k]) => !SHOWN_STATS.has(k) && !shownHere.has(k));
  // what the trace adds: lazy MMU section lengths, time spent waiting for shootdowns
  let lazyRows = '';
  if (m) {
    const lazy = m.spans.filter((x) => x.kind === 'LAZY_ENTER');
    const shoot = m.spans.filter((x) => x.kind === 'IPI_SEND');
    const lazyDur = lazy.map((x) => x.endNs - x.startNs).sort((a, b) => a - b);
    lazyRows = kv([
      ['lazy MMU sections in the trace', `${fmt(lazy.length)}${lazy.length ? `, median ${dur(quantile(lazyDur, 0.5), m.deterministic)}, max ${dur(lazyDur[lazyDur.length - 1], m.deterministic)}` : ''}`],
      ['shootdowns in the trace', `${fmt(shoot.length)}, waiting ${dur(shoot.reduce((a, x) => a + x.endNs - x.startNs, 0), m.deterministic)} in total`],
    ]);
  }
  const table = (rs: [string, string, string][]): string => `<table class="stats"><thead><tr><th>counter</th><th class="num">value</th><th>meaning</th></tr></thead><tbody>
${rs.map(([k, v, d]) => `<tr><td>${esc(k)}</td><td class="num">${v}</td><td>${d.startsWith('<') ? d : esc(d)}</td></tr>`).join('\n')}
</tbody></table>`;
  return `<section id="flush"><h2>Flush and IPI statistics</h2>
${table(rows)}
<h3 id="batching">Batching per arch: <code>${esc(r.arch)}</code>${contract ? ` <span class="muted">(${esc(contract)} lazy MMU contract)</span>` : ''}</h3>
${archLine ? `<p class="muted">${esc(r.arch)} ${esc(archLine)}.</p>` : ''}
${batchRows.length ? table(batchRows) : '<p class="muted">This build collects no per-arch lazy MMU batching counters yet; they go here.</p>'}
${lazyRows}
${other.length ? `<h3>Other counters</h3>${kv(other.map(([k, v]) => [k, fmt(v)]))}` : ''}
</section>`;
}

// ---- per CPU -------------------------------------------------------------------------

function cpuSection(r: RunResult, m: TraceModel | null): string {
  const head = ['CPU', 'ops'];
  if (m) head.push('shootdowns sent', 'waiting for acks', 'IPIs handled', 'faults', 'lock waits', 'trace window', 'older events dropped');
  const rows = r.perCpuOps.map((ops, c) => {
    const cells = [`CPU ${c}`, fmt(ops)];
    if (m) {
      const sp = m.spans.filter((x) => x.cpu === c);
      const cnt = (k: string): Span[] => sp.filter((x) => x.kind === k);
      const w = m.cpus[c];
      cells.push(
        fmt(cnt('IPI_SEND').length), dur(cnt('IPI_SEND').reduce((a, x) => a + x.endNs - x.startNs, 0), m.deterministic),
        fmt(cnt('IPI_HANDLE').length), fmt(cnt('FAULT').length), fmt(cnt('LOCK_WAIT').length),
        w && w.events.length ? `${dur(w.lastNs - w.firstNs, m.deterministic)} (${fmt(w.events.length)} events)` : '–',
        w ? fmt(w.dropped) : '–',
      );
    }
    return `<tr>${cells.map((x, i) => `<td${i ? ' class="num"' : ''}>${x}</td>`).join('')}</tr>`;
  });
  return `<section id="cpus"><h2>Per CPU</h2>${m ? '<p class="muted">Counts from the trace cover each CPU\'s retained window only (the event ring keeps the most recent events).</p>' : ''}
<table class="stats"><thead><tr>${head.map((h, i) => `<th${i ? ' class="num"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table></section>`;
}

// ---- violations and the timeline around the first one ---------------------------------

/** One line for a raw event, in the ladder (begin/end events included). */
function ladderText(e: TraceEvent, det: boolean): string {
  switch (e.type) {
    case 'SYSCALL':
      return `${SYS_NAMES[e.a] ?? `syscall ${e.a}`}(${hex(e.b)})`;
    case 'SYSCALL_END':
      return `${SYS_NAMES[e.a] ?? `syscall ${e.a}`} returns ${e.b < 0 ? `-${ERRNO_NAMES[-e.b] ?? -e.b}` : e.b >= 4096 ? hex(e.b) : e.b}`;
    case 'FAULT':
      return `page fault ${e.b ? 'W' : 'R'} ${hex(e.a)}`;
    case 'FAULT_END':
      return `fault ${hex(e.a)} done${e.b ? ` (${['OK', 'SIGSEGV', 'OOM'][e.b] ?? e.b})` : ''}`;
    case 'IPI_SEND':
      return `flush_tlb_mm_range: IPIs to ${e.b} CPU${e.b === 1 ? '' : 's'} (mm ${e.a}), waiting`;
    case 'SHOOTDOWN_DONE':
      return `shootdown acked after ${dur(e.b, det)}`;
    case 'IPI_HANDLE':
      return `flush IPI from cpu ${e.a} (mm ${e.b})`;
    case 'IPI_DONE':
      return `IPI from cpu ${e.a} done`;
    case 'LOCK_WAIT':
      return `${['spin_lock', 'down_read', 'down_write'][e.b] ?? 'lock'} word ${e.a}: contended, waiting`;
    case 'LOCK_ACQUIRED':
      return `lock word ${e.a} acquired`;
    case 'LAZY_ENTER':
      return 'arch_enter_lazy_mmu_mode';
    case 'LAZY_LEAVE':
      return 'arch_leave_lazy_mmu_mode';
    default:
      return instantName(e);
  }
}

const samePage = (a: number, b: number): boolean => Math.floor(a / PAGE_SIZE) === Math.floor(b / PAGE_SIZE);

interface Focus { pfn?: number; va?: number }
function isKey(e: TraceEvent, f: Focus): boolean {
  if (f.pfn !== undefined && ((e.type === 'FREE_PAGE' && e.a === f.pfn) || (e.type === 'TLB_FILL' && e.b === f.pfn))) return true;
  if (f.va !== undefined && (e.type === 'READ' || e.type === 'WRITE' || e.type === 'TLB_FILL' || e.type === 'FAULT') && samePage(e.a, f.va)) return true;
  if (f.va !== undefined && e.type === 'ZAP' && f.va >= e.a && f.va < e.b) return true;
  return false;
}
const QUIET = new Set(['READ', 'WRITE', 'OP', 'TLB_FILL']);

function timelineSvg(m: TraceModel, v: ViolationMark, cpus: number[], t0: number, t1: number, focus: Focus): string {
  const det = m.deterministic;
  const W = 1100, LBL = 70, R = 16, TOP = 26;
  const pw = W - LBL - R;
  const x = (ns: number): number => LBL + ((ns - t0) / (t1 - t0)) * pw;
  const out: string[] = [];
  const lanes: { cpu: number; y: number; h: number; depth: number }[] = [];
  let y = TOP;
  for (const c of cpus) {
    const spans = m.spans.filter((s) => s.cpu === c && s.endNs >= t0 && s.startNs <= t1);
    const depth = spans.reduce((a, s) => Math.max(a, s.depth + 1), 1);
    const h = depth * 18 + 46;
    lanes.push({ cpu: c, y, h, depth });
    y += h + 8;
  }
  const H = y + 30;
  out.push(`<svg class="timeline" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="timeline around the violation">`);
  // time axis (relative to the violation)
  const step = niceStep(t1 - t0, 8);
  const tv = v.tsNs ?? t1;
  for (let t = Math.ceil((t0 - tv) / step) * step; tv + t <= t1; t += step) {
    const xx = x(tv + t);
    out.push(`<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${TOP - 6}" y2="${H - 24}" class="grid"/>`);
    out.push(`<text x="${xx.toFixed(1)}" y="${H - 10}" class="tick" text-anchor="middle">${t === 0 ? '0' : (t > 0 ? '+' : '−') + dur(Math.abs(t), det)}</text>`);
  }
  out.push(`<text x="${LBL}" y="${H - 10}" class="tick" text-anchor="end">t − violation</text>`);
  for (const lane of lanes) {
    const c = lane.cpu;
    out.push(`<rect x="${LBL}" y="${lane.y}" width="${pw}" height="${lane.h}" class="lane"/>`);
    out.push(`<text x="6" y="${lane.y + 16}" class="lanelabel">CPU ${c}</text>`);
    out.push(`<text x="6" y="${lane.y + 30}" class="tick">${c === v.cpu ? 'violation' : 'involved'}</text>`);
    for (const s of m.spans) {
      if (s.cpu !== c || s.endNs < t0 || s.startNs > t1) continue;
      const x0 = Math.max(LBL, x(s.startNs)), x1 = Math.min(W - R, x(s.endNs));
      const wpx = Math.max(1.5, x1 - x0);
      const yy = lane.y + 4 + s.depth * 18;
      const tip = `${s.name} — ${dur(s.endNs - s.startNs, det)}${s.truncated ? ` (${s.truncated})` : ''}\n${Object.entries(s.args).map(([k, a]) => `${k}: ${a}`).join(', ')}`;
      out.push(`<g><title>${esc(tip)}</title><rect x="${x0.toFixed(1)}" y="${yy}" width="${wpx.toFixed(1)}" height="16" rx="2" fill="${CAT_COLOR[s.cat] ?? '#999'}"${s.truncated ? ' class="trunc"' : ''}/>`);
      const chars = Math.floor((wpx - 6) / 6.2);
      if (chars >= 4) out.push(`<text x="${(x0 + 3).toFixed(1)}" y="${yy + 12}" class="spanlabel">${esc(s.name.length > chars ? s.name.slice(0, chars - 1) + '…' : s.name)}</text>`);
      out.push('</g>');
    }
    // instants: a row of ticks under the spans; key ones labelled
    const iy = lane.y + lane.depth * 18 + 8;
    const w = m.cpus[c];
    const labelled: { x: number; text: string; cls: string }[] = [];
    for (const e of w ? w.events : []) {
      const ns = Math.round(e.ts * 1000);
      if (ns < t0 || ns > t1 || /_END$|_DONE$|ACQUIRED|LEAVE|^SYSCALL$|^FAULT$|^IPI_|^LOCK_WAIT$|^LAZY_ENTER$/.test(e.type)) continue;
      if (e.type === 'OP') continue;
      const xx = x(ns);
      const key = isKey(e, focus);
      const cat = e.type === 'READ' || e.type === 'WRITE' ? 'access' : e.type === 'TLB_FILL' ? 'tlb_fill' : e.type === 'FLUSH_LOCAL' ? 'tlb' : e.type === 'SEGV' ? 'fault' : e.type === 'CTX_SWITCH' ? 'sched' : 'mm';
      out.push(`<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${iy}" y2="${iy + (key ? 18 : 10)}" stroke="${key ? '#c00' : CAT_COLOR[cat]}" stroke-width="${key ? 2 : 1}"><title>${esc(`#${e.seq} ${ladderText(e, det)}`)}</title></line>`);
      if (key || (!QUIET.has(e.type) && e.type !== 'FREE_PAGE')) labelled.push({ x: xx, text: ladderText(e, det), cls: key ? 'keylabel' : 'ilabel' });
    }
    // label the key events, then others where there is room: two rows, no overlaps
    const rowEnd = [-1e9, -1e9];
    for (const l of labelled.sort((a, b) => (a.cls === b.cls ? a.x - b.x : a.cls === 'keylabel' ? -1 : 1))) {
      const text = l.text.length > 42 ? l.text.slice(0, 41) + '…' : l.text;
      const wpx = text.length * 5.9 + 8;
      const right = l.x + wpx > W - 4;
      const x0 = right ? l.x - wpx : l.x;
      const row = rowEnd.findIndex((e) => e <= x0);
      if (row < 0) continue; // no room: the tick's tooltip still has it
      rowEnd[row] = x0 + wpx;
      out.push(`<text x="${(right ? l.x - 2 : l.x + 2).toFixed(1)}" y="${iy + 24 + row * 12}" class="${l.cls}" text-anchor="${right ? 'end' : 'start'}">${esc(text)}</text>`);
    }
  }
  if (v.loNs !== undefined) {
    const lane = lanes.find((l) => l.cpu === v.cpu);
    const a = Math.max(t0, v.loNs), b = Math.min(t1, v.hiNs ?? t1);
    if (lane && b > a) {
      out.push(`<rect x="${x(a).toFixed(1)}" y="${lane.y + 1}" width="${Math.max(1, x(b) - x(a)).toFixed(1)}" height="${lane.h - 2}" class="band"><title>${esc(`the violating access happened in here: ${v.located}`)}</title></rect>`);
    }
  }
  if (v.tsNs !== undefined) {
    const xx = x(v.tsNs);
    out.push(`<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${TOP - 14}" y2="${H - 24}" class="vline"/>`);
    const right = xx > LBL + pw * 0.7;
    out.push(`<text x="${(xx + (right ? -4 : 4)).toFixed(1)}" y="${TOP - 8}" class="vlabel" text-anchor="${right ? 'end' : 'start'}">${esc(`[${v.kind}] on cpu ${v.cpu}`)}</text>`);
  }
  out.push('</svg>');
  return out.join('');
}

function ladderTable(m: TraceModel, v: ViolationMark, cpus: number[], t0: number, t1: number, focus: Focus): string {
  const det = m.deterministic;
  const evs: TraceEvent[] = [];
  for (const c of cpus) for (const e of m.cpus[c]?.events ?? []) {
    const ns = Math.round(e.ts * 1000);
    if (ns >= t0 && ns <= t1) evs.push(e);
  }
  evs.sort((a, b) => a.ts - b.ts || a.cpu - b.cpu || a.seq - b.seq);
  const tv = v.tsNs ?? t1;
  type Row = { ns: number; cpu: number; html: string; cls: string };
  const rows: Row[] = [];
  let vDone = v.tsNs === undefined;
  const pushViolation = (): void => {
    rows.push({ ns: tv, cpu: v.cpu, html: `<b>${esc(`[${v.kind}]`)}</b> ${esc(v.message)}`, cls: 'vrow' });
    vDone = true;
  };
  let run: { cpu: number; n: number; r: number; w: number; f: number; ns: number } | null = null;
  const flush = (): void => {
    if (run) rows.push({ ns: run.ns, cpu: run.cpu, html: `<span class="muted">… ${run.n} access${run.n === 1 ? '' : 'es'} (${run.r} R, ${run.w} W${run.f ? `, ${run.f} TLB fill${run.f === 1 ? '' : 's'}` : ''})</span>`, cls: 'quiet' });
    run = null;
  };
  for (const e of evs) {
    const ns = Math.round(e.ts * 1000);
    if (!vDone && ns > tv) {
      flush();
      pushViolation();
    }
    const key = isKey(e, focus);
    if (QUIET.has(e.type) && !key) {
      if (e.type === 'OP') continue;
      if (run && run.cpu !== e.cpu) flush();
      run ??= { cpu: e.cpu, n: 0, r: 0, w: 0, f: 0, ns };
      if (e.type === 'READ') run.r++, run.n++;
      else if (e.type === 'WRITE') run.w++, run.n++;
      else run.f++;
      continue;
    }
    flush();
    rows.push({ ns, cpu: e.cpu, html: `<span class="seq">#${e.seq}</span> ${esc(ladderText(e, det))}`, cls: key ? 'key' : '' });
  }
  flush();
  if (!vDone) pushViolation();
  const MAXROWS = 80;
  const vi = rows.findIndex((r) => r.cls === 'vrow');
  let from = 0, to = rows.length;
  if (rows.length > MAXROWS) {
    to = Math.min(rows.length, vi + 16);
    from = Math.max(0, to - MAXROWS);
  }
  const body = rows.slice(from, to).map((r) => `<tr class="${r.cls}"><td class="num">${r.ns === tv ? '0' : (r.ns > tv ? '+' : '−') + esc(dur(Math.abs(r.ns - tv), det))}</td>${cpus.map((c) => `<td>${c === r.cpu ? r.html : ''}</td>`).join('')}</tr>`);
  return `<table class="ladder"><thead><tr><th class="num">t − violation</th>${cpus.map((c) => `<th>CPU ${c}${c === v.cpu ? ' (violation)' : ''}</th>`).join('')}</tr></thead><tbody>
${from > 0 ? `<tr class="quiet"><td></td><td colspan="${cpus.length}" class="muted">${from} earlier rows left out</td></tr>` : ''}
${body.join('\n')}
${to < rows.length ? `<tr class="quiet"><td></td><td colspan="${cpus.length}" class="muted">${rows.length - to} later rows left out</td></tr>` : ''}
</tbody></table>`;
}

/**
 * The first violation's race, chosen by causality (src/report/race.ts): the fill
 * of the entry used, the change on the other CPU (page-table update, free of the
 * frame), the flushes or their absence, and the stale use, on one screen at the top.
 */
function raceSection(r: RunResult, m: TraceModel | null): string {
  const mk = m?.violations[0];
  if (!m || !mk || !r.violations.length) return '';
  const v0 = r.violations[0];
  if (FINDING_KINDS.test(v0.kind)) return '';
  const byCpu: Record<number, TraceEvent[]> = {};
  m.cpus.forEach((w, c) => {
    if (w) byCpu[c] = w.events;
  });
  const race = chooseRace(byCpu, v0, mk.tsNs !== undefined ? mk.tsNs / 1000 : undefined);
  if (race.rows.length < 2) return '';
  return `<section id="race"><h2>The race</h2><p class="muted">The events that make the first violation, however far apart in time: the fill of the TLB entry used, the change on the other CPU (its page-table update, the free of the frame), the flushes (or their absence) and the stale use. Rows are in time order; long gaps are marked. The full timeline is under <a href="#violations">Violations</a>.</p>
${raceHtml(race, m.deterministic)}</section>`;
}

/**
 * The top of the report when there is no race to draw: a first violation that is not a stale use
 * (FINDING_KINDS: a lock-order report, an architecture rule broken by one store, ...), or a run
 * without a trace: what the oracle said, in full (lockdep's two acquisition chains are in it).
 */
function findingSection(r: RunResult, m: TraceModel | null): string {
  const v0 = r.violations[0];
  if (!v0) return '';
  const why = FINDING_KINDS.test(v0.kind) ? 'Not a stale translation used after a page-table change, so no race table'
    : m ? 'No race could be drawn from the trace (the events that make it were overwritten or are missing)'
      : 'Not traced: run with --report or --trace to see the race';
  return `<section id="finding"><h2>The finding</h2><p class="muted">${why}: the first violation as the oracle reported it${r.violations.length > 1 ? ` (${fmt(r.violations.length)} kept, all under <a href="#violations">Violations</a>)` : ''}.</p>
<pre class="text"><span class="kind">[${esc(v0.kind)}]</span> cpu ${v0.cpu}: ${esc(v0.message)}</pre></section>`;
}

function violationsSection(r: RunResult, m: TraceModel | null): string {
  if (!r.violations.length) {
    if (r.violationCount > 0) return `<section id="violations"><h2>Violations</h2><p>${fmt(r.violationCount)} counted, none kept with details.</p></section>`;
    return '';
  }
  const det = m?.deterministic ?? false;
  const v0 = r.violations[0];
  const items = r.violations.map((v, i) => {
    const mk = m?.violations[i];
    return `<li><span class="kind">[${esc(v.kind)}]</span> ${esc(v.message)}${mk ? ` <span class="muted">(${esc(mk.tsNs !== undefined ? `at ${dur(mk.tsNs, det)} into the run, ${mk.located}` : mk.located)})</span>` : ''}</li>`;
  });
  const SHOW = 6;
  const list = items.slice(0, SHOW).join('') +
    (items.length > SHOW ? `<li class="more"><details><summary>${items.length - SHOW} more kept</summary><ul class="vlist">${items.slice(SHOW).join('')}</ul></details></li>` : '');
  const cpus = [v0.cpu, ...(v0.cpus ?? []).filter((c) => c !== v0.cpu)];
  const focus: Focus = { pfn: v0.pfn, va: v0.va };
  let timeline: string;
  const mk = m?.violations[0];
  if (m && mk && mk.tsNs !== undefined) {
    const tv = mk.tsNs;
    // the window: back to the free of the frame (or the fill of it) if that is recent, else a fixed span
    const scale = det ? 1 : 1000;
    let earliest = tv - 40 * scale;
    for (const c of cpus) {
      for (const e of m.cpus[c]?.events ?? []) {
        const ns = Math.round(e.ts * 1000);
        if (ns <= tv && ns >= tv - 2000 * scale && (e.type === 'FREE_PAGE' || e.type === 'TLB_FILL') && isKey(e, focus)) earliest = Math.min(earliest, ns);
      }
      const sd = m.spans.find((s) => s.cpu === c && s.kind === 'IPI_SEND' && s.startNs <= tv && s.endNs >= tv);
      if (sd && sd.startNs >= tv - 2000 * scale) earliest = Math.min(earliest, sd.startNs);
    }
    const t0 = earliest - Math.max(5 * scale, (tv - earliest) * 0.15);
    // after it: up to the next flush on an involved CPU (the one that came too late), within reason
    let t1 = tv + Math.max(5 * scale, (tv - t0) * 0.12);
    const horizon = tv + Math.max(20 * scale, 0.6 * (tv - t0));
    for (const c of cpus) {
      const next = (m.cpus[c]?.events ?? []).find((e) => e.ts * 1000 > tv && (e.type === 'FLUSH_LOCAL' || e.type === 'IPI_SEND'));
      if (next && next.ts * 1000 <= horizon) t1 = Math.max(t1, Math.round(next.ts * 1000) + Math.max(3 * scale, (tv - t0) * 0.08));
    }
    // the event-by-event table goes on to the first flush after it on another CPU (the one that came too late)
    let ladderEnd = t1;
    for (const c of cpus) {
      if (c === v0.cpu) continue;
      const next = (m.cpus[c]?.events ?? []).find((e) => e.ts * 1000 > tv && (e.type === 'FLUSH_LOCAL' || e.type === 'IPI_SEND'));
      if (next && next.ts * 1000 <= tv + 5000 * scale) ladderEnd = Math.max(ladderEnd, Math.round(next.ts * 1000));
    }
    // earlier events about the same frame or page, outside the window
    const earlier: string[] = [];
    for (const c of cpus) {
      const evs = m.cpus[c]?.events ?? [];
      for (const type of ['TLB_FILL', 'FREE_PAGE']) {
        let last: TraceEvent | undefined;
        for (const e of evs) if (e.type === type && e.ts * 1000 < t0 && isKey(e, focus)) last = e;
        if (last) earlier.push(`cpu ${c} #${last.seq} ${ladderText(last, det)}, ${dur(tv - Math.round(last.ts * 1000), det)} before the violation`);
      }
    }
    timeline = `<h3>Around the violation</h3><p class="muted">CPUs ${cpus.join(', ')} from ${dur(tv - t0, det)} before the violation to ${dur(t1 - tv, det)} after it (time 0: ${esc(mk.located)}).
Bars are spans (syscalls, faults, shootdowns, IPI handlers, lock waits, lazy MMU sections; hover for details); ticks are single events, red ones concern
${focus.pfn !== undefined ? `pfn ${focus.pfn}` : ''}${focus.pfn !== undefined && focus.va !== undefined ? ' or ' : ''}${focus.va !== undefined ? `the page of ${hex(focus.va)}` : ''}.</p>
<div class="scroll">${timelineSvg(m, mk, cpus, t0, t1, focus)}</div>
${earlier.length ? `<p>Earlier, outside the window: ${earlier.map((x) => esc(x)).join('; ')}.</p>` : ''}
<h3 id="ladder">Event by event</h3>
${ladderTable(m, mk, cpus, Math.min(t0, tv - 2000 * scale), Math.max(t1, ladderEnd), focus)}`;
  } else {
    const cols = Object.entries(v0.events ?? {});
    timeline = `<p class="muted">${m ? `The trace does not locate this violation (${esc(mk?.located ?? '')}); ` : 'The run was not traced; '}the last events each CPU involved had logged when it fired:</p>
<div class="evcols">${cols.map(([c, evs]) => `<div><h4>CPU ${esc(c)}${Number(c) === v0.cpu ? ' (violation)' : ''}</h4><pre>${esc(evs.join('\n'))}</pre></div>`).join('')}</div>`;
  }
  return `<section id="violations"><h2>Violations</h2>
<ul class="vlist">${list}</ul>${r.violationCount > r.violations.length ? `<p class="muted">${fmt(r.violationCount - r.violations.length)} more counted, not kept.</p>` : ''}
<h3>Timeline around the first violation</h3>
${timeline}
</section>`;
}

// ---- the page -----------------------------------------------------------------------

const CSS = `
:root { --fg:#1d2330; --muted:#667085; --line:#d8dde6; --bg:#fff; --panel:#f6f8fb; --bad:#c62828; --good:#2e7d32; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1180px; padding: 20px 24px 60px; }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; border-bottom: 2px solid var(--line); padding-bottom: 10px; }
h1 { font-size: 22px; margin: 0; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; } h4 { margin: 4px 0; font-size: 13px; }
code, pre, .num, .seq, .ladder td { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--panel); padding: 8px 10px; border-radius: 4px; overflow-x: auto; margin: 4px 0; }
.badge { font-weight: 700; padding: 2px 10px; border-radius: 12px; color: #fff; font-size: 14px; }
.badge.good { background: var(--good); } .badge.bad { background: var(--bad); }
.sub { color: var(--muted); width: 100%; }
.muted { color: var(--muted); } .ok { color: var(--good); } .err { color: var(--bad); font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px 10px; }
.card h3 { margin: 4px 0 6px; }
table { border-collapse: collapse; }
table.kv th { text-align: left; font-weight: 500; color: var(--muted); padding: 2px 14px 2px 0; vertical-align: top; white-space: nowrap; }
table.kv td { padding: 2px 0; }
table.stats { width: 100%; } table.stats th, table.stats td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left; }
table.stats th { color: var(--muted); font-weight: 500; }
.num { text-align: right !important; white-space: nowrap; }
.row { display: flex; gap: 20px; align-items: flex-start; flex-wrap: wrap; }
.problems { border-left: 4px solid var(--bad); padding: 4px 12px; margin: 10px 0; background: #fff5f5; }
details { margin-top: 10px; } summary { cursor: pointer; color: var(--muted); }
pre.text { font-size: 12px; }
.vlist { padding-left: 18px; } .vlist li.more { list-style: none; margin-left: -18px; } .vlist li { margin: 4px 0; } .kind { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: var(--bad); font-weight: 700; }
.scroll { overflow-x: auto; }
.evcols { display: flex; gap: 12px; flex-wrap: wrap; } .evcols > div { flex: 1; min-width: 320px; }
table.ladder { width: 100%; table-layout: fixed; margin-top: 6px; }
table.ladder th { text-align: left; background: var(--panel); border-bottom: 1px solid var(--line); padding: 4px 6px; position: sticky; top: 0; }
table.ladder th:first-child { width: 110px; }
table.ladder td { padding: 1px 6px; border-bottom: 1px solid #eef1f5; vertical-align: top; overflow-wrap: anywhere; }
table.ladder tr.key td { background: #fff4d6; } table.ladder tr.vrow td { background: #fde3e3; color: #8a1111; }
table.ladder tr.quiet td { color: var(--muted); }
table.race { width: 100%; table-layout: fixed; margin: 6px 0 14px; border-collapse: collapse; }
table.race th { text-align: left; background: var(--panel); border-bottom: 1px solid var(--line); padding: 4px 6px; }
table.race th:first-child { width: 110px; }
table.race td { padding: 3px 6px; border-bottom: 1px solid #eef1f5; vertical-align: top; overflow-wrap: anywhere; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
table.race tr.gap td { color: var(--muted); text-align: center; font-style: italic; background: #fafbfc; }
table.race .role { display: inline-block; min-width: 64px; font-size: 11px; color: #555; text-transform: uppercase; }
table.race tr.race-use td, table.race tr.race-no-flush td { background: #fde3e3; color: #8a1111; }
table.race tr.race-fill td, table.race tr.race-free td, table.race tr.race-zap td, table.race tr.race-change td { background: #fff4d6; }
table.race tr.race-flush-late td { background: #eef4ff; }
.seq { color: var(--muted); }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; }
svg .grid { stroke: #e6e9ef; } svg .axis { stroke: #555; }
svg .tick { font-size: 11px; fill: #555; } svg .tick.minor { fill: #999; font-size: 10px; } svg .label { font-size: 12px; fill: #333; }
svg .bar { fill: #6b8fc7; } svg .bar:hover { fill: #3d5f99; }
svg .cdf { fill: none; stroke: #e07b39; stroke-width: 1.5; } svg .cdft { fill: #e07b39; }
svg .pmark { stroke: #444; stroke-dasharray: 4 3; } svg .pmark.max { stroke: var(--bad); } svg .plabel { font-size: 11px; fill: #222; }
svg .lane { fill: #fafbfd; stroke: #e3e7ee; } svg .lanelabel { font-size: 13px; font-weight: 600; fill: #222; }
svg .spanlabel { font-size: 10.5px; fill: #fff; pointer-events: none; }
svg .trunc { stroke: #333; stroke-dasharray: 3 2; }
svg .ilabel { font-size: 10px; fill: #555; } svg .keylabel { font-size: 10.5px; fill: #b00; font-weight: 600; }
svg .band { fill: #c62828; fill-opacity: 0.08; stroke: #c62828; stroke-opacity: 0.25; stroke-dasharray: 2 2; }
svg .vline { stroke: var(--bad); stroke-width: 2; } svg .vlabel { font-size: 12px; fill: var(--bad); font-weight: 700; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { .scroll { overflow: visible; } }
`;

export function htmlReport(r: RunResult): string {
  const m = buildTraceModel(r);
  const det = m?.deterministic ?? String(r.mode) === 'deterministic';
  const v = verdictOf(r);
  const title = `mmsim ${r.scenario} — ${v.text}`;
  const sub = `${r.cpus} CPUs, ${r.arch}, seed ${r.seed}, ${r.mode}${r.knobs.length ? `, bug knobs: ${r.knobs.join(', ')}` : ''}${m ? '' : ' (not traced: run with --report or --trace for timelines)'}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body>
<header><h1>mmsim: ${esc(r.scenario)}</h1><span class="badge ${v.cls}">${esc(v.text)}</span><div class="sub">${esc(sub)}</div></header>
${raceSection(r, m) || findingSection(r, m)}
${summarySection(r, det)}
${violationsSection(r, m)}
${latencySection(r, det)}
${flushSection(r, m)}
${cpuSection(r, m)}
<footer>Generated by mmsim. ${m ? `Trace: ${fmt(r.trace!.events.length)} events kept, ${fmt(r.trace!.dropped)} older ones overwritten in the per-CPU rings.` : ''}</footer>
</body></html>
`;
}
