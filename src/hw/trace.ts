// Per-CPU event rings in shared memory: the last N events of every CPU, so that a
// violation report can show what each CPU involved was doing, from any thread.

import { type Views, eventF, EVENT_F64 } from './layout.ts';

export const EV = {
  READ: 1,
  WRITE: 2,
  FAULT: 3,
  SEGV: 4,
  TLB_FILL: 5,
  FLUSH_LOCAL: 6, // a = start va, b = pages (-1 = full)
  IPI_SEND: 7, // a = mm, b = number of targets
  IPI_HANDLE: 8, // a = sender cpu, b = mm
  SYSCALL: 9, // a = syscall id (SYS below), b = first address
  FREE_PAGE: 10, // a = pfn, b = va it was mapped at (or -1)
  FREE_TABLE: 11,
  CTX_SWITCH: 12, // a = from mm, b = to mm
  VIOLATION: 13,
  SHOOTDOWN_DONE: 14, // a = mm, b = latency ns (ends IPI_SEND)
  ZAP: 15, // a = start, b = end
  LAZY_TLB: 16,
  SYSCALL_END: 17, // a = syscall id, b = return value (ends SYSCALL)
  FAULT_END: 18, // a = va, b = result (ends FAULT)
  IPI_DONE: 19, // a = sender cpu (ends IPI_HANDLE)
  LOCK_WAIT: 20, // a = lock word (contended acquire begins)
  LOCK_ACQUIRED: 21, // a = lock word (ends LOCK_WAIT)
  LAZY_ENTER: 22, // arch lazy MMU section entered
  LAZY_LEAVE: 23, // ... left (ends LAZY_ENTER)
  OP: 24, // a = task, b = op index (an operation of the task's program begins)
  LAZY_RANGE: 25, // a = start, b = end: the fast range in force for this section
  LAZY_RANGE_IGNORED: 26, // a = start, b = end: a range passed to a nested enable, ignored
  MOVE_PGTABLES: 27, // a = old address, b = new address: move_page_tables begins (the mmu_notifier range starts)
  MOVE_PGTABLES_END: 28, // a = old address, b = bytes moved (ends MOVE_PGTABLES)
  // per-VMA locks (src/mm/mmap_lock.ts)
  VMA_LOCKED: 29, // a = fault address, b = VMA start: lock_vma_under_rcu took the VMA's read lock
  VMA_LOCK_ABORT: 30, // a = fault address: lock_vma_under_rcu failed; the fault takes the mmap_lock
  VMA_WRITE_LOCK: 31, // a = VMA start, b = VMA end: vma_start_write locked it for this mmap_lock write hold
  VMA_LOCK_RETRY: 32, // a = fault address: VM_FAULT_RETRY under the VMA lock; the fault takes the mmap_lock
  CHANGE_BEGIN: 33, // stale-TLB oracle: a = start, b = end + change kind (end page-aligned; kind = b % 4096, src/oracles/stale_tlb.ts CHANGE): a narrowing page-table change begins
  PROMISE: 34, // stale-TLB oracle: a = start, b = change kind: the change reached its promise point
  IRQ: 35, // a = interrupted task: a device interrupt handler begins (src/hw/irq.ts)
  IRQ_DONE: 36, // ends IRQ
  VMAP: 37, // a = start, b = pages: vmap_pages_range mapped a vmalloc area (src/mm/vmalloc.ts)
  VUNMAP: 38, // a = start, b = pages: vunmap_range_noflush unmapped one
  KERNEL_MAP: 39, // a = linear-map address, b = 1 valid / 0 invalid: __kernel_map_pages (DEBUG_PAGEALLOC)
  FLUSH_KERNEL: 40, // a = start, b = end: flush_tlb_kernel_range
  MIGRATE: 41, // a = task (-1 idle), b = the CPU it left: a task resumes on this CPU, and the one that ran here has left it (src/hw/preempt.ts)
} as const;
/** begin -> end pairs, for duration events in traces */
export const EV_SPANS: [number, number][] = [
  [EV.SYSCALL, EV.SYSCALL_END], [EV.FAULT, EV.FAULT_END], [EV.IPI_SEND, EV.SHOOTDOWN_DONE],
  [EV.IPI_HANDLE, EV.IPI_DONE], [EV.IRQ, EV.IRQ_DONE], [EV.LOCK_WAIT, EV.LOCK_ACQUIRED], [EV.LAZY_ENTER, EV.LAZY_LEAVE], [EV.MOVE_PGTABLES, EV.MOVE_PGTABLES_END],
];
export const EV_NAMES: Record<number, string> = Object.fromEntries(Object.entries(EV).map(([k, v]) => [v, k]));

export const SYS = {
  mmap: 1, munmap: 2, mprotect: 3, mremap: 4, fork: 5, exit: 6, madvise: 7, brk: 8,
  ftruncate: 20, fallocate: 21, reclaim: 22, // reclaim: not a syscall; the kernel's page reclaim run from a program step
} as const;
export const SYS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(SYS).map(([k, v]) => [v, k]));

/** short names of the stale-TLB oracle's change kinds (src/oracles/stale_tlb.ts CHANGE) */
export const CHANGE_LABELS: Record<number, string> = { 1: 'unmap', 2: 'mprotect', 3: 'THP split', 4: 'COW', 5: 'fork', 6: 'reclaim', 7: 'PUD split' };

/** EVENT_F64 bound in this module: optimized code folds a module's own const, but loads an imported one from its cell (with a hole check) at each use */
const EV_WORDS = EVENT_F64;

export class EventRing {
  /** events logged so far (the next event's sequence number - 1) */
  pos = 0;
  /** source of timestamps; null: not tracing (time 0) */
  clock: (() => number) | null = null;
  private readonly base: number;
  private readonly mask: number;
  private readonly F: Float64Array;
  constructor(V: Views, cpu: number) {
    this.F = V.F;
    this.base = eventF(V.L, cpu, 0);
    this.mask = V.L.shape.eventRing - 1;
  }
  /** the type of the event with sequence number p + 1 (p < pos; only the last eventRing ones are kept) */
  typeAt(p: number): number {
    return this.F[this.base + (p & this.mask) * EV_WORDS + 2];
  }
  /** time is a per-CPU event sequence number; a = address or id, b = detail. */
  log(type: number, a: number, b: number): void {
    const p = this.pos++;
    const at = this.base + (p & this.mask) * EV_WORDS;
    this.F[at] = p + 1;
    this.F[at + 1] = this.clock === null ? 0 : this.clock();
    this.F[at + 2] = type;
    this.F[at + 3] = a;
    this.F[at + 4] = b;
  }
}

export interface EventRecord {
  seq: number;
  /** microseconds since the run started (free mode), or scheduler step (deterministic); 0 untraced */
  ts: number;
  type: string;
  a: number;
  b: number;
}

/** Read a CPU's ring, oldest first. Safe from any thread (a racing writer may tear the newest entry). */
export function readRing(V: Views, cpu: number, last = Infinity): EventRecord[] {
  const n = V.L.shape.eventRing;
  const out: EventRecord[] = [];
  for (let s = 0; s < n; s++) {
    const at = eventF(V.L, cpu, s);
    const seq = V.F[at];
    if (seq > 0) out.push({ seq, ts: V.F[at + 1], type: EV_NAMES[V.F[at + 2]] ?? `?${V.F[at + 2]}`, a: V.F[at + 3], b: V.F[at + 4] });
  }
  out.sort((x, y) => x.seq - y.seq);
  return last === Infinity ? out : out.slice(-last);
}

export function formatEvent(e: EventRecord): string {
  const hex = (x: number): string => (x < 0 ? String(x) : '0x' + x.toString(16));
  switch (e.type) {
    case 'SYSCALL':
      return `#${e.seq} ${SYS_NAMES[e.a] ?? e.a}(${hex(e.b)})`;
    case 'READ':
    case 'WRITE':
    case 'FAULT':
    case 'SEGV':
    case 'TLB_FILL':
      return `#${e.seq} ${e.type.toLowerCase()} ${hex(e.a)}${e.type === 'TLB_FILL' ? ` -> pfn ${e.b}` : ''}`;
    case 'FREE_PAGE':
      return `#${e.seq} free pfn ${e.a}${e.b >= 0 ? ` (was at ${hex(e.b)})` : ''}`;
    case 'FLUSH_LOCAL':
      return `#${e.seq} local flush ${e.b < 0 ? 'full' : `${hex(e.a)} +${e.b} pages`}`;
    case 'IPI_SEND':
      return `#${e.seq} shootdown mm ${e.a} -> ${e.b} cpus`;
    case 'IPI_HANDLE':
      return `#${e.seq} flush IPI from cpu ${e.a} (mm ${e.b})`;
    case 'SHOOTDOWN_DONE':
      return `#${e.seq} shootdown acked (mm ${e.a}, ${(e.b / 1000).toFixed(1)} us)`;
    case 'ZAP':
      return `#${e.seq} zap ${hex(e.a)}-${hex(e.b)}`;
    case 'OP':
      return `#${e.seq} task ${e.a}: operation ${e.b}`;
    case 'CTX_SWITCH':
      return `#${e.seq} switch_mm ${e.a} -> ${e.b}`;
    case 'MIGRATE':
      return e.a < 0 ? `#${e.seq} idle here: this CPU's task moved to cpu ${e.b}` : `#${e.seq} task ${e.a} migrated here from cpu ${e.b}`;
    case 'MOVE_PGTABLES':
      return `#${e.seq} move_page_tables ${hex(e.a)} -> ${hex(e.b)}`;
    case 'CHANGE_BEGIN':
      return `#${e.seq} page-table change (${CHANGE_LABELS[e.b % 4096] ?? e.b % 4096}) of ${hex(e.a)}-${hex(e.b - (e.b % 4096))} begins`;
    case 'PROMISE':
      return `#${e.seq} ${CHANGE_LABELS[e.b] ?? e.b} of ${hex(e.a)}: promise point (old translations must be gone)`;
    case 'MOVE_PGTABLES_END':
      return `#${e.seq} move_page_tables moved ${hex(e.b)} bytes`;
    case 'VMA_LOCKED':
      return `#${e.seq} fault ${hex(e.a)} under the VMA lock (VMA at ${hex(e.b)})`;
    case 'VMA_LOCK_ABORT':
      return `#${e.seq} fault ${hex(e.a)}: no VMA lock, falls back to the mmap_lock`;
    case 'VMA_LOCK_RETRY':
      return `#${e.seq} fault ${hex(e.a)}: VM_FAULT_RETRY under the VMA lock, falls back to the mmap_lock`;
    case 'VMA_WRITE_LOCK':
      return `#${e.seq} vma_start_write ${hex(e.a)}-${hex(e.b)}`;
    default:
      return `#${e.seq} ${e.type} ${hex(e.a)} ${e.b}`;
  }
}
