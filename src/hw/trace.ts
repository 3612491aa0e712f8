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
  SHOOTDOWN_DONE: 14, // a = mm, b = latency ns
  ZAP: 15, // a = start, b = end
  LAZY_TLB: 16,
} as const;
export const EV_NAMES: Record<number, string> = Object.fromEntries(Object.entries(EV).map(([k, v]) => [v, k]));

export const SYS = { mmap: 1, munmap: 2, mprotect: 3, mremap: 4, fork: 5, exit: 6, madvise: 7 } as const;
export const SYS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(SYS).map(([k, v]) => [v, k]));

export class EventRing {
  private pos = 0;
  private readonly base: number;
  private readonly mask: number;
  private readonly F: Float64Array;
  constructor(V: Views, cpu: number) {
    this.F = V.F;
    this.base = eventF(V.L, cpu, 0);
    this.mask = V.L.shape.eventRing - 1;
  }
  /** time is a per-CPU event sequence number; a = address or id, b = detail. */
  log(type: number, a: number, b: number): void {
    const p = this.pos++;
    const at = this.base + (p & this.mask) * EVENT_F64;
    this.F[at] = p + 1;
    this.F[at + 1] = type;
    this.F[at + 2] = a;
    this.F[at + 3] = b;
  }
}

export interface EventRecord {
  seq: number;
  type: string;
  a: number;
  b: number;
}

/** Read a CPU's ring, oldest first. Safe from any thread (a racing writer may tear the newest entry). */
export function readRing(V: Views, cpu: number, last = 16): EventRecord[] {
  const n = V.L.shape.eventRing;
  const out: EventRecord[] = [];
  for (let s = 0; s < n; s++) {
    const at = eventF(V.L, cpu, s);
    const seq = V.F[at];
    if (seq > 0) out.push({ seq, type: EV_NAMES[V.F[at + 1]] ?? `?${V.F[at + 1]}`, a: V.F[at + 2], b: V.F[at + 3] });
  }
  out.sort((x, y) => x.seq - y.seq);
  return out.slice(-last);
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
    case 'CTX_SWITCH':
      return `#${e.seq} switch_mm ${e.a} -> ${e.b}`;
    default:
      return `#${e.seq} ${e.type} ${hex(e.a)} ${e.b}`;
  }
}
