// The cover letter's table, reproduced in counts: mprotect, munmap, mremap and
// fork of a populated anonymous region on the s390 model, without the series
// (--lazy-series none: mainline) and with each modelled version, counting the
// invalidation instructions (IPTE, IPTE-range, IDTE) and the machine-wide
// quiesces (every global IPTE / IPTE-range / IDTE is one).
//
//   node bench/lazy-s390.ts [--pages N] [--quick] [--out FILE]
//   npm run bench:lazy-s390
//
// mmsim counts; it cannot time s390. The cover letter's figures are wall-clock
// speed-ups measured on z/Architecture machines (and a quiesce count over four
// LPARs), so the columns below are set beside them, not compared as equals: a
// reduction in quiesces is what the series buys, the speed-up is what the
// hardware makes of it. The counts are exact and deterministic (one host
// thread, no races); two attachments are measured: the process has run on two
// CPUs (its IPTEs are global: each is a quiesce), and on one CPU only (local
// clearing: no quiesce at all, with or without the series).

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { statWord, PAGE_SIZE, PMD_SIZE, ST_IPTE, ST_IPTE_RANGE, ST_IDTE, ST_QUIESCE, ST_LOCAL_CLEAR, ST_BATCHED, ST_BATCH_FLUSHES, STAT_NAMES } from '../src/hw/layout.ts';
import { inlineMachine } from '../src/engine/inline.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED } from '../src/mm/mremap.ts';
import { do_fork } from '../src/mm/fork.ts';
import { set_lazy_series, LAZY_SERIES, LAZY_SERIES_LATEST, type LazySeries } from '../src/mm/lazy_mmu.ts';

export const WORKLOADS = ['mprotect', 'munmap', 'mremap', 'fork'] as const;
export type Workload = (typeof WORKLOADS)[number];

/**
 * The figures of the posted series: the s390 patch's commit message (v5 2/4
 * <227ed305e14b04b97be34716426e369860efc99c.1783945507.git.agordeev@linux.ibm.com>;
 * the fork() figure from RFC 2/2, v2 5/6 and v4 2/4, which v5 dropped).
 */
export const COVER_LETTER: Record<Workload | 'quiesce', string> = {
  quiesce: '~25x fewer quiesce events (mprotect() on four LPARs in parallel)',
  mprotect: '~15x faster',
  munmap: '~3x faster',
  mremap: '~28x faster',
  fork: '~1.5x slower (RFC 2/2, v2 5/6, v4 2/4 commit messages; the sentence is gone from v5 2/4)',
};

/** dense: every page populated; alternate: every other page (no two present PTEs adjacent: runs of one) */
export type Pattern = 'dense' | 'alternate';

export interface Counts {
  ipte: number;
  ipteRange: number;
  idte: number;
  quiesces: number;
  localClears: number;
  /** PTE updates that went into the per-CPU cache */
  batched: number;
  batchFlushes: number;
  /** ipte + ipteRange + idte */
  instructions: number;
}

const BASE = 0x40000000;
const TARGET = 0x80000000;

/**
 * One workload on a fresh 2-CPU s390 machine: map `pages` pages at a PMD-aligned
 * address, populate them from the last CPU of `attach`, then run the syscall on
 * CPU 0 and count what it issued (every CPU's counters, deltas around the call).
 */
export function measure(workload: Workload, series: LazySeries, pages: number, attach: 1 | 2, pattern: Pattern = 'dense'): Counts {
  set_lazy_series(series);
  const m = inlineMachine({ cpus: 2, arch: 's390', dataFrames: pages + 1024, tableFrames: 64 + 4 * Math.ceil(pages / 512) });
  const on = attach === 2 ? [0, 1] : [0];
  const { mm } = m.process(on);
  const len = pages * PAGE_SIZE;
  const va = m.on(0, () => do_mmap(mm, BASE, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED));
  if (va !== BASE) throw new Error(`mmap failed: ${va}`);
  m.on(on[on.length - 1], (cpu) => {
    for (let p = 0; p < pages; p += pattern === 'dense' ? 1 : 2) if (!cpu.write(va + p * PAGE_SIZE, p + 1)) throw new Error(`populate failed at page ${p}`);
  });
  const I = m.V.I;
  const L = m.V.L;
  const fields = [ST_IPTE, ST_IPTE_RANGE, ST_IDTE, ST_QUIESCE, ST_LOCAL_CLEAR, ST_BATCHED, ST_BATCH_FLUSHES];
  const snap = (): number[] => fields.map((f) => I[statWord(L, 0, f)] + I[statWord(L, 1, f)]);
  const before = snap();
  const rc = m.on(0, () => {
    switch (workload) {
      case 'mprotect': return do_mprotect(mm, va, len, PROT_READ);
      case 'munmap': return do_munmap(mm, va, len);
      case 'mremap': return do_mremap(mm, va, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, TARGET);
      case 'fork': return do_fork(mm);
    }
  });
  if (rc < 0) throw new Error(`${workload} failed: ${rc}`);
  if (m.violations.length) throw new Error(`${workload} under ${series}: ${m.violations[0].kind}: ${m.violations[0].message}`);
  const d = snap().map((v, i) => v - before[i]);
  set_lazy_series(LAZY_SERIES_LATEST);
  return {
    ipte: d[0], ipteRange: d[1], idte: d[2], quiesces: d[3], localClears: d[4], batched: d[5], batchFlushes: d[6],
    instructions: d[0] + d[1] + d[2],
  };
}

const ratio = (a: number, b: number): string => (b === 0 ? (a === 0 ? '1.0x' : `${a}/0`) : a / b >= 0.95 ? `${(a / b).toFixed(1)}x` : `${(a / b).toFixed(3)}x`);

function main(): void {
  const here = dirname(fileURLToPath(import.meta.url));
  const { values: args } = parseArgs({
    options: {
      pages: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (args.help) {
    console.log('usage: node bench/lazy-s390.ts [--pages N] [--quick] [--out FILE]\n  --pages N   region size in 4 KiB pages (default 8192 = 32 MiB; --quick 1024)\n  --out FILE  JSON output (default bench/results/lazy-s390.json)');
    return;
  }
  const pages = args.pages !== undefined ? Number(args.pages) : args.quick ? 1024 : 8192;
  if (!Number.isInteger(pages) || pages < 1 || (pages * PAGE_SIZE) % PMD_SIZE !== 0 || pages > 65536) {
    process.stderr.write(`bench/lazy-s390.ts: --pages must be a multiple of ${PMD_SIZE / PAGE_SIZE} up to 65536, got '${args.pages}'\n`);
    process.exit(2);
  }
  const versions = (Object.keys(LAZY_SERIES) as LazySeries[]).filter((v) => v !== 'none');
  const results: { workload: Workload; attach: number; pattern: Pattern; series: LazySeries; counts: Counts }[] = [];
  console.log(`mmsim bench: Gordeev's lazy MMU series on the s390 model, ${pages} pages (${(pages * PAGE_SIZE) >> 20} MiB), stat fields ${STAT_NAMES.slice(46, 49).join('/')}`);
  console.log('mmsim COUNTS instructions; it cannot time s390. The cover letter\'s speed-ups are wall-clock figures on real machines, shown beside the counts, not reproduced.\n');
  for (const pattern of ['dense', 'alternate'] as const) {
    for (const attach of [2, 1] as const) {
      console.log(`${pattern === 'dense' ? 'every page populated' : 'every other page populated'}; ${attach === 2
        ? 'process attached to 2 CPUs (multi-threaded: every IPTE/IDTE is global, a quiesce)'
        : 'process attached to 1 CPU (single-threaded: local clearing, no quiesce with or without the series)'}`);
      const head = ['workload', 'series', 'IPTE', 'IPTE-range', 'IDTE', 'quiesces', 'local', 'cached', 'quiesce ratio', 'instr ratio', 'the series\' figures'];
      const rows: string[][] = [head];
      for (const w of WORKLOADS) {
        const base = measure(w, 'none', pages, attach, pattern);
        results.push({ workload: w, attach, pattern, series: 'none', counts: base });
        rows.push([w, 'none', ...[base.ipte, base.ipteRange, base.idte, base.quiesces, base.localClears, base.batched].map(String), '1.0x', '1.0x', '']);
        // versions with identical counts share a row
        const groups: { names: LazySeries[]; c: Counts }[] = [];
        for (const v of versions) {
          const c = measure(w, v, pages, attach, pattern);
          results.push({ workload: w, attach, pattern, series: v, counts: c });
          const g = groups.find((x) => JSON.stringify(x.c) === JSON.stringify(c));
          if (g) g.names.push(v);
          else groups.push({ names: [v], c });
        }
        for (const { names, c } of groups) {
          rows.push([
            w, names.join(','), ...[c.ipte, c.ipteRange, c.idte, c.quiesces, c.localClears, c.batched].map(String),
            ratio(base.quiesces, c.quiesces), ratio(base.instructions, c.instructions),
            attach === 2 && pattern === 'dense' ? COVER_LETTER[w] : '',
          ]);
        }
      }
      const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      for (const r of rows) console.log('  ' + r.map((c, i) => (i >= 2 && i <= 9 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd());
      console.log('');
    }
  }
  console.log(`ratios: none / version (how many times fewer). Cover letter, quiesces: ${COVER_LETTER.quiesce}.`);
  const out = resolve(args.out ?? `${here}/results/lazy-s390.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    when: new Date().toISOString(), pages, note: 'counts from the s390 model; mmsim cannot time s390', coverLetter: COVER_LETTER, results,
  }, null, 2));
  console.log(`wrote ${out}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
