// lockdep: the kernel's lock-order validator (kernel/locking/lockdep.c), for
// the simulated kernel's locks.
//
// Every lock word belongs to a lock class (what lockdep keys on: one class for
// all mmap_locks, one for all split PTLs, ...), found from the word's place in
// the shared-memory layout. An acquisition while other locks are held adds the
// dependencies held-class -> new-class to one graph of classes for the whole
// machine: an N x N matrix in shared memory, so every host thread adds to and
// reads the same graph (lockdep's graph is global too). A new dependency A -> B
// is checked for a path B -> ... -> A already in the graph; if there is one, the
// two orders can deadlock, and the first such dependency is reported (with the
// chain of acquisitions that made each dependency: CPU, kernel functions, lock
// class and instance) before any deadlock happens; like lockdep, the checker
// then turns itself off (debug_locks_off) so the first report stays the report.
//
// As in lockdep:
//  - subclasses (spin_lock_nested(lock, SINGLE_DEPTH_NESTING)) are separate
//    nodes of the graph, so the annotated nestings of the kernel (move_ptes,
//    copy_pte_range, dup_mmap, copy_huge_pmd) are not reported;
//  - taking a lock of a class already held, same subclass, is "possible
//    recursive locking" (include/linux/lockdep.h, check_deadlock());
//  - a trylock adds no dependency of its own (it cannot wait), but locks taken
//    after it depend on it (check_prevs_add stops at a trylock);
//  - dependencies are only made within one context (hardirq vs process:
//    hlock->irq_context); the irq-safe/unsafe checks of lockdep are not modelled;
//  - read acquisitions of an rwsem are dependencies like write ones (down_read is
//    not a recursive read in lockdep: a waiting writer blocks new readers, in
//    the kernel and here, src/hw/locks.ts down_read).
// Deviation: the folio lock (PG_locked) is a bit lock the kernel's lockdep does
// not see (it has no lockdep map; only its wait is annotated by
// lock_page/folio_lock's might_sleep); it is a class here, so an ABBA between a
// folio lock and another lock is reported here where lockdep stays silent. It is
// still a deadlock. Nested folio locks (two of the class) are not reported as
// recursion (the kernel orders them by address, e.g. migrate/split paths).

import type { Cpu } from './cpu.ts';
import {
  type Layout, FRAME_META_WORDS, FM_PTL, MM_WORDS, MM_LOCK, MM_PT_LOCK, FILE_WORDS, FILE_LOCK, FILE_I_MMAP,
  ANON_VMA_LOCKS, ANON_VMA_LOCK_WORDS, ALLOC_LOCK, H_QUIESCE_LOCK, MAX_CPUS,
  LOCKDEP_NODES, LOCKDEP_RECS, LOCKDEP_REC_WORDS,
} from './layout.ts';

/** Lock classes (lockdep's lock_class_key: one per kind of lock). */
export const LC = {
  MMAP_LOCK: 0, // mm->mmap_lock (rwsem)
  VMA_LOCK: 1, // vma->vm_lock (per-VMA lock; classify its words in lock_class_of)
  PAGE_TABLE_LOCK: 2, // mm->page_table_lock (upper levels, pud_lock)
  PTL: 3, // split page-table locks (ptlock_ptr of a PTE or PMD table page)
  I_MMAP_RWSEM: 4, // mapping->i_mmap_rwsem
  ANON_VMA: 5, // anon_vma->root->rwsem
  FOLIO_LOCK: 6, // PG_locked (see the deviation above)
  I_PAGES: 7, // mapping->i_pages xa_lock
  ZONE_LOCK: 8, // zone->lock (the page allocator; table and data frames)
  QUIESCE: 9, // s390: the machine-wide IPTE/IDTE serialisation
} as const;
export const LC_NAMES = ['mmap_lock', 'vma_lock', 'page_table_lock', 'ptlock', 'i_mmap_rwsem', 'anon_vma->rwsem', 'folio_lock', 'i_pages', 'zone->lock', 'quiesce_lock'];
/** SINGLE_DEPTH_NESTING and friends: subclasses 0..MAX_SUBCLASSES-1 */
export const SINGLE_DEPTH_NESTING = 1;
const MAX_SUBCLASSES = 4;
const N = LOCKDEP_NODES; // graph nodes: 16 classes x MAX_SUBCLASSES
const RECS = LOCKDEP_RECS; // dependency records with their acquisition chain
const REC_WORDS = LOCKDEP_REC_WORDS;
const REC_HDR = 6; // cpu, from key, from instance, to key, to instance, text length
const REC_TEXT = (REC_WORDS - REC_HDR) * 4; // ASCII characters

const LINE = 16; // the layout's cache line, in words
// region: [next record, reports, off, pad...] (one line), matrix N*N (0 = no dependency,
// -1 = being recorded, r + 1 = record r), records
const H_NEXT = 0;
const H_REPORTS = 1;
const H_OFF = 2;

/** The class of lock word idx, or -1 for words lockdep does not track (scratch, oracle locks). */
export function lock_class_of(L: Layout, idx: number): number {
  if (idx >= L.frameMeta && idx < L.frameMeta + L.nframes * FRAME_META_WORDS) {
    const off = idx - L.frameMeta;
    if (off % FRAME_META_WORDS !== FM_PTL) return -1;
    return Math.floor(off / FRAME_META_WORDS) < L.shape.tableFrames ? LC.PTL : LC.FOLIO_LOCK;
  }
  if (idx >= L.mms && idx < L.mms + L.shape.maxMms * MM_WORDS) {
    const f = (idx - L.mms) % MM_WORDS;
    return f === MM_LOCK ? LC.MMAP_LOCK : f === MM_PT_LOCK ? LC.PAGE_TABLE_LOCK : -1;
  }
  if (idx >= L.files && idx < L.files + L.shape.maxFiles * FILE_WORDS) {
    const f = (idx - L.files) % FILE_WORDS;
    return f === FILE_I_MMAP ? LC.I_MMAP_RWSEM : f === FILE_LOCK ? LC.I_PAGES : -1;
  }
  if (idx >= L.anonLocks && idx < L.anonLocks + ANON_VMA_LOCKS * ANON_VMA_LOCK_WORDS) return LC.ANON_VMA;
  if (idx === L.tableAlloc + ALLOC_LOCK || idx === L.dataAlloc + ALLOC_LOCK) return LC.ZONE_LOCK;
  if (idx === L.header + H_QUIESCE_LOCK) return LC.QUIESCE;
  return -1;
}

/** "ptlock (table pfn 17)": the class and the instance of lock word idx. */
export function describe_lock(L: Layout, idx: number, key: number): string {
  const cls = Math.floor(key / MAX_SUBCLASSES);
  const sub = key % MAX_SUBCLASSES;
  let inst: string;
  switch (cls) {
    case LC.PTL: case LC.FOLIO_LOCK: inst = `pfn ${Math.floor((idx - L.frameMeta) / FRAME_META_WORDS)}`; break;
    case LC.MMAP_LOCK: case LC.PAGE_TABLE_LOCK: inst = `mm ${Math.floor((idx - L.mms) / MM_WORDS)}`; break;
    case LC.I_MMAP_RWSEM: case LC.I_PAGES: inst = `file ${Math.floor((idx - L.files) / FILE_WORDS)}`; break;
    case LC.ANON_VMA: inst = `anon_vma lock ${Math.floor((idx - L.anonLocks) / ANON_VMA_LOCK_WORDS)}`; break;
    case LC.ZONE_LOCK: inst = idx === L.tableAlloc + ALLOC_LOCK ? 'table frames' : 'data frames'; break;
    default: inst = `word ${idx}`;
  }
  return `${LC_NAMES[cls] ?? `class ${cls}`}${sub ? `/${sub}` : ''} (${inst})`;
}
const keyName = (key: number): string => {
  const cls = Math.floor(key / MAX_SUBCLASSES);
  const sub = key % MAX_SUBCLASSES;
  return `${LC_NAMES[cls] ?? `class ${cls}`}${sub ? `/${sub}` : ''}`;
};

// ---- per-CPU held locks (host-local: a CPU runs on one host thread) -------------
const MAX_DEPTH = 48;
interface Held {
  I: Int32Array | null; // the machine these entries belong to (reset when a new machine reuses the CPU id)
  depth: number;
  key: Int32Array; // graph node, -1: a trylock marker bit is in flags
  idx: Int32Array; // lock word
  flags: Int32Array; // 1: trylock, 2: taken in interrupt context
}
const held: Held[] = [];
for (let c = 0; c < MAX_CPUS; c++) {
  held.push({ I: null, depth: 0, key: new Int32Array(MAX_DEPTH), idx: new Int32Array(MAX_DEPTH), flags: new Int32Array(MAX_DEPTH) });
}

/** Host-local switch (tests of the lock primitives themselves turn it off); the run-wide switch is the region's H_OFF word. */
export const lockdepConfig = { enabled: true };

// the layout's lock regions, cached for the fast path (recomputed when another machine's layout comes by)
// literals for the fast path (module imports are live bindings the compiler may not fold)
const FM_SHIFT = 3, FM_LOCK_OFF = 4, MM_MASK = 63, MM_LOCK_OFF = 3, K_PTL = 3 * 4, K_FOLIO = 6 * 4, K_MMAP = 0;
if (1 << FM_SHIFT !== FRAME_META_WORDS || FM_LOCK_OFF !== FM_PTL || MM_MASK + 1 !== MM_WORDS || MM_LOCK_OFF !== MM_LOCK ||
    K_PTL !== LC.PTL * MAX_SUBCLASSES || K_FOLIO !== LC.FOLIO_LOCK * MAX_SUBCLASSES || K_MMAP !== LC.MMAP_LOCK * MAX_SUBCLASSES) {
  throw new Error('lockdep: the fast path\'s literals disagree with the layout');
}
const C = { L: null as Layout | null, fmLo: 0, fmHi: 0, fmTab: 0, mmLo: 0, mmHi: 0, on: true };

/** lock_acquire: called by src/hw/locks.ts once the lock is held. */
export function lock_acquire(cpu: Cpu, idx: number, subclass: number, trylock: boolean): void {
  const L = cpu.V.L;
  const c = C;
  if (L !== c.L) {
    c.L = L;
    c.fmLo = L.frameMeta;
    c.fmHi = L.frameMeta + L.nframes * FRAME_META_WORDS;
    c.fmTab = L.frameMeta + L.shape.tableFrames * FRAME_META_WORDS;
    c.mmLo = L.mms;
    c.mmHi = L.mms + L.shape.maxMms * MM_WORDS;
  }
  const base = L.lockdep;
  if (base < 0 || !lockdepConfig.enabled) return;
  const fmLo = c.fmLo, mmLo = c.mmLo;
  // the common classes inline: split PTLs and folio locks, mmap_lock; the rest through lock_class_of
  let key: number;
  if (idx >= fmLo && idx < c.fmHi) {
    if (((idx - fmLo) & ((1 << FM_SHIFT) - 1)) !== FM_LOCK_OFF) return;
    key = (idx < c.fmTab ? K_PTL : K_FOLIO) + subclass;
  } else if (idx >= mmLo && idx < c.mmHi && ((idx - mmLo) & MM_MASK) === MM_LOCK_OFF) key = K_MMAP + subclass;
  else {
    const k = lock_class_of(L, idx);
    if (k < 0) return;
    key = k * MAX_SUBCLASSES + subclass;
  }
  const I = cpu.I;
  const h = held[cpu.id];
  if (h.I !== I) {
    h.I = I;
    h.depth = 0;
  }
  const irq = cpu.inIrq > 0 ? 2 : 0;
  const d = h.depth;
  if (d > 0 && !trylock && I[base + H_OFF] === 0) {
    const m = base + LINE;
    // check_prevs_add: a dependency from every held lock of this context, back to the last trylock
    for (let i = d - 1; i >= 0; i--) {
      const f = h.flags[i];
      if ((f & 2) !== irq) continue;
      const hk = h.key[i];
      if (hk === key && key !== K_FOLIO) {
        report_recursion(cpu, h, i, idx, key);
        break;
      }
      if (hk !== key && I[m + hk * N + key] === 0) add_dependency(cpu, h, i, idx, key);
      if (f & 1) break;
    }
  }
  if (d < MAX_DEPTH) {
    h.key[d] = key;
    h.idx[d] = idx;
    h.flags[d] = (trylock ? 1 : 0) | irq;
  }
  h.depth = d + 1;
}

/** lock_release: called by src/hw/locks.ts when the lock is dropped (any order). */
export function lock_release(cpu: Cpu, idx: number): void {
  const h = held[cpu.id];
  const d = h.depth;
  if (d === 0 || h.I !== cpu.I) return;
  if (d <= MAX_DEPTH && h.idx[d - 1] === idx) { // the usual: the last taken is the first dropped
    h.depth = d - 1;
    return;
  }
  if (d > MAX_DEPTH) { // beyond what is recorded: just count
    h.depth = d - 1;
    return;
  }
  for (let i = d - 1; i >= 0; i--) {
    if (h.idx[i] !== idx) continue;
    for (let j = i; j < d - 1; j++) {
      h.key[j] = h.key[j + 1];
      h.idx[j] = h.idx[j + 1];
      h.flags[j] = h.flags[j + 1];
    }
    h.depth--;
    return;
  }
}

/** The kernel functions on the stack: "move_ptes (mm/mremap.ts:259) < move_page_tables (mm/mremap.ts:330) < ..." */
function kernel_stack(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  const out: string[] = [];
  for (const line of stack.split('\n').slice(1)) {
    const m = /at (?:(\S+) \()?.*\/src\/((?:mm|arch|hw|engine)\/[^:]+):(\d+)/.exec(line);
    if (!m || m[2] === 'hw/locks.ts' || m[2] === 'hw/lockdep.ts') continue;
    if (m[2].startsWith('engine/')) break;
    out.push(`${(m[1] ?? '<anonymous>').replace(/^Object\./, '')} (${m[2]}:${m[3]})`);
    if (out.length >= 8) break;
  }
  return out.join(' < ');
}

function held_list(L: Layout, h: Held, upto: number): string {
  const out: string[] = [];
  for (let i = 0; i < Math.min(upto, MAX_DEPTH); i++) out.push(describe_lock(L, h.idx[i], h.key[i]) + (h.flags[i] & 1 ? ' [trylock]' : ''));
  return out.length ? out.join(', ') : 'none';
}

function add_dependency(cpu: Cpu, h: Held, i: number, idx: number, key: number): void {
  const L = cpu.V.L;
  const I = cpu.I;
  const base = L.lockdep;
  const m = base + LINE;
  const from = h.key[i];
  const cell = m + from * N + key;
  if (Atomics.compareExchange(I, cell, 0, -1) !== 0) return; // another CPU records it
  const text = `cpu ${cpu.id} took ${describe_lock(L, idx, key)} holding ${held_list(L, h, h.depth)} at ${kernel_stack()}`;
  const r = Atomics.add(I, base + H_NEXT, 1);
  if (r < RECS) {
    const w = base + LINE + N * N + r * REC_WORDS;
    I[w] = cpu.id;
    I[w + 1] = from;
    I[w + 2] = h.idx[i];
    I[w + 3] = key;
    I[w + 4] = idx;
    const t = text.slice(0, REC_TEXT);
    I[w + 5] = t.length;
    for (let c = 0; c < t.length; c += 4) {
      I[w + REC_HDR + (c >> 2)] = (t.charCodeAt(c) & 0x7f) | ((t.charCodeAt(c + 1) & 0x7f) << 8) | ((t.charCodeAt(c + 2) & 0x7f) << 16) | ((t.charCodeAt(c + 3) & 0x7f) << 24);
    }
    Atomics.store(I, cell, r + 1);
  } else Atomics.store(I, cell, RECS + 1); // no room for its chain: the dependency counts, without text
  // check_noncircular: is there already a path key -> ... -> from?
  const path = find_path(I, m, key, from);
  if (path === null) return;
  if (Atomics.compareExchange(I, base + H_OFF, 0, 1) !== 0) return; // debug_locks_off: one report per run
  Atomics.add(I, base + H_REPORTS, 1);
  const lines = [
    `possible circular locking dependency (lockdep): cpu ${cpu.id} takes ${describe_lock(L, idx, key)} while holding ${describe_lock(L, h.idx[i], from)}, but ${keyName(key)} -> ${keyName(from)} was seen before`,
    `  new dependency ${keyName(from)} -> ${keyName(key)}: ${text}`,
    `  existing chain (${path.length - 1} dependenc${path.length === 2 ? 'y' : 'ies'}):`,
  ];
  for (let p = 0; p < path.length - 1; p++) {
    lines.push(`    #${p + 1} ${keyName(path[p])} -> ${keyName(path[p + 1])}: ${record_text(I, base, I[m + path[p] * N + path[p + 1]])}`);
  }
  lines.push(`  possible deadlock: CPU A holds ${keyName(from)} and waits for ${keyName(key)}; CPU B holds ${keyName(key)} and (through the chain) waits for ${keyName(from)}`);
  cpu.host.hooks.violation({ kind: 'lockdep', cpu: cpu.id, message: lines.join('\n') });
}

function record_text(I: Int32Array, base: number, cell: number): string {
  if (cell <= 0 || cell > RECS) return '(chain not recorded)';
  const w = base + LINE + N * N + (cell - 1) * REC_WORDS;
  const len = I[w + 5];
  let s = '';
  for (let c = 0; c < len; c++) s += String.fromCharCode((I[w + REC_HDR + (c >> 2)] >>> ((c & 3) * 8)) & 0x7f);
  return s;
}

/** Breadth-first search of the dependency matrix: the nodes of a path from -> ... -> to, or null. */
function find_path(I: Int32Array, m: number, from: number, to: number): number[] | null {
  const prev = new Int32Array(N).fill(-2);
  prev[from] = -1;
  const queue = [from];
  for (let q = 0; q < queue.length; q++) {
    const a = queue[q];
    if (a === to) {
      const path: number[] = [];
      for (let x = a; x !== -1; x = prev[x]) path.push(x);
      return path.reverse();
    }
    for (let b = 0; b < N; b++) {
      if (prev[b] === -2 && I[m + a * N + b] !== 0) {
        prev[b] = a;
        queue.push(b);
      }
    }
  }
  return null;
}

function report_recursion(cpu: Cpu, h: Held, i: number, idx: number, key: number): void {
  const L = cpu.V.L;
  const I = cpu.I;
  if (Atomics.compareExchange(I, L.lockdep + H_OFF, 0, 1) !== 0) return;
  Atomics.add(I, L.lockdep + H_REPORTS, 1);
  cpu.host.hooks.violation({
    kind: 'lockdep', cpu: cpu.id,
    message: `possible recursive locking (lockdep): cpu ${cpu.id} takes ${describe_lock(L, idx, key)} while holding ${describe_lock(L, h.idx[i], h.key[i])} of the same class and subclass (no spin_lock_nested annotation) at ${kernel_stack()}; held: ${held_list(L, h, h.depth)}`,
  });
}

/** How many reports the run made (0 or 1: lockdep turns itself off after the first). */
export function lockdep_reports(L: Layout, I: Int32Array): number {
  return L.lockdep < 0 ? 0 : I[L.lockdep + H_REPORTS];
}
/** Dependencies recorded so far (distinct class pairs). */
export function lockdep_dependencies(L: Layout, I: Int32Array): string[] {
  if (L.lockdep < 0) return [];
  const out: string[] = [];
  for (let a = 0; a < N; a++) for (let b = 0; b < N; b++) if (I[L.lockdep + LINE + a * N + b] !== 0) out.push(`${keyName(a)} -> ${keyName(b)}`);
  return out;
}

/**
 * A migration swapped the tasks of CPUs a and b (src/hw/preempt.ts migrate_swap): the locks
 * each task holds go with it (lockdep's held-lock stack is the task's, kernel/locking/lockdep.c
 * current->held_locks; here it is indexed by CPU id, so the two stacks trade places).
 */
export function lockdep_swap_cpus(a: number, b: number): void {
  const t = held[a];
  held[a] = held[b];
  held[b] = t;
}
