// The page allocator: two zones of frames (page-table frames and data frames),
// each a stack of free pfns under a spinlock. Frame metadata is the simulator's
// struct page: refcount, mapcount, flags, generation. Freeing bumps the
// generation, which is what lets the UAF oracle see a stale TLB entry.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import {
  type Views, frameWord, tableEntry, dataWord, FM_REF, FM_MAP, FM_FLAGS, FM_GEN, FM_OWNER, FM_AUX, FM_PTL,
  PG_FREE, PG_TABLE, PG_ANON, PG_RESERVED, ALLOC_LOCK, ALLOC_TOP, ALLOC_LOW, PTRS_PER_TABLE, WORDS_PER_PAGE,
  ST_PAGES_FREED, ST_TABLES_FREED,
} from '../hw/layout.ts';
import { EV } from '../hw/trace.ts';

/** Boot-time initialisation (main thread, before any CPU runs). */
export function init_page_alloc(V: Views): void {
  const { I, L } = V;
  const t = L.shape.tableFrames;
  // table zone: pfns 1..t-1 (pfn 0 reserved)
  let n = 0;
  for (let pfn = t - 1; pfn >= 1; pfn--) I[L.tableStack + n++] = pfn;
  I[L.tableAlloc + ALLOC_TOP] = n;
  I[L.tableAlloc + ALLOC_LOW] = n;
  n = 0;
  // The first data frame is the shared zero page: reserved, never allocated or freed.
  for (let pfn = L.nframes - 1; pfn > L.dataStart; pfn--) I[L.dataStack + n++] = pfn;
  I[L.dataAlloc + ALLOC_TOP] = n;
  I[L.dataAlloc + ALLOC_LOW] = n;
  for (let pfn = 0; pfn < L.nframes; pfn++) {
    const inZone = (pfn >= 1 && pfn < t) || pfn > L.dataStart;
    I[frameWord(L, pfn, FM_FLAGS)] = inZone ? PG_FREE : PG_RESERVED;
  }
}

function pop(zone: number, stack: number): number {
  const cpu = current;
  const I = cpu.I;
  spin_lock(zone + ALLOC_LOCK);
  const top = I[zone + ALLOC_TOP];
  let pfn = 0;
  if (top > 0) {
    pfn = I[stack + top - 1];
    I[zone + ALLOC_TOP] = top - 1;
    if (top - 1 < I[zone + ALLOC_LOW]) I[zone + ALLOC_LOW] = top - 1;
  }
  spin_unlock(zone + ALLOC_LOCK);
  return pfn;
}

function push(zone: number, stack: number, pfn: number): void {
  const I = current.I;
  spin_lock(zone + ALLOC_LOCK);
  const top = I[zone + ALLOC_TOP];
  I[stack + top] = pfn;
  I[zone + ALLOC_TOP] = top + 1;
  spin_unlock(zone + ALLOC_LOCK);
}

function claim(pfn: number, flags: number): void {
  const cpu = current;
  const { I, L } = cpu.V;
  const old = Atomics.exchange(I, frameWord(L, pfn, FM_FLAGS), flags);
  if ((old & PG_FREE) === 0) {
    cpu.host.hooks.violation({ kind: 'allocator', cpu: cpu.id, pfn, message: `allocator handed out pfn ${pfn}, which was not free (flags ${old})` });
  }
  Atomics.store(I, frameWord(L, pfn, FM_REF), 1);
  Atomics.store(I, frameWord(L, pfn, FM_MAP), 0);
  Atomics.store(I, frameWord(L, pfn, FM_OWNER), 0);
}

/** The shared zero page (read faults on anonymous memory map it read-only). */
export const zero_pfn = (V: Views): number => V.L.dataStart;

/** A zeroed data frame with refcount 1, or 0 when out of memory. */
export function alloc_page(anon: boolean): number {
  const cpu = current;
  const { I, L } = cpu.V;
  const pfn = pop(L.dataAlloc, L.dataStack);
  if (pfn === 0) return 0;
  claim(pfn, anon ? PG_ANON : 0);
  for (let w = 0; w < WORDS_PER_PAGE; w++) Atomics.store(I, dataWord(L, pfn, w), 0);
  return pfn;
}

/** A zeroed page-table frame owned by mm, with refcount 1, or 0 when out of memory. */
export function alloc_pt_page(mm: number, level: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  const pfn = pop(L.tableAlloc, L.tableStack);
  if (pfn === 0) return 0;
  claim(pfn, PG_TABLE);
  for (let i = 0; i < PTRS_PER_TABLE; i++) Atomics.store(I, tableEntry(L, pfn, i), 0);
  Atomics.store(I, frameWord(L, pfn, FM_OWNER), mm + 1);
  Atomics.store(I, frameWord(L, pfn, FM_AUX), level);
  Atomics.store(I, frameWord(L, pfn, FM_PTL), 0);
  return pfn;
}

function release(pfn: number, what: string, va: number): boolean {
  const cpu = current;
  const { I, L } = cpu.V;
  const flags = Atomics.load(I, frameWord(L, pfn, FM_FLAGS));
  if (flags & (PG_FREE | PG_RESERVED)) {
    cpu.host.hooks.violation({
      kind: 'double-free', cpu: cpu.id, pfn, va: va >= 0 ? va : undefined,
      cpus: [Atomics.load(I, frameWord(L, pfn, FM_OWNER)) - 1].filter((c) => c >= 0 && c !== cpu.id),
      message: `cpu ${cpu.id} freed ${what} pfn ${pfn}, which is already ${flags & PG_FREE ? 'free' : 'reserved'}`,
    });
    return false;
  }
  const map = Atomics.load(I, frameWord(L, pfn, FM_MAP));
  if (map !== 0) {
    cpu.host.hooks.violation({
      kind: 'free-mapped', cpu: cpu.id, pfn,
      message: `cpu ${cpu.id} freed ${what} pfn ${pfn} while its mapcount is ${map}`,
    });
  }
  Atomics.add(I, frameWord(L, pfn, FM_GEN), 1);
  Atomics.store(I, frameWord(L, pfn, FM_OWNER), cpu.id + 1);
  Atomics.store(I, frameWord(L, pfn, FM_FLAGS), PG_FREE);
  Atomics.store(I, frameWord(L, pfn, FM_REF), 0);
  return true;
}

/** Return a data frame whose last reference is gone. */
export function free_page(pfn: number, va = -1): void {
  const cpu = current;
  if (!release(pfn, 'page', va)) return;
  cpu.ring.log(EV.FREE_PAGE, pfn, va);
  cpu.stat(ST_PAGES_FREED);
  push(cpu.V.L.dataAlloc, cpu.V.L.dataStack, pfn);
}

export function free_pt_page(pfn: number): void {
  const cpu = current;
  if (!release(pfn, 'page-table', -1)) return;
  cpu.ring.log(EV.FREE_TABLE, pfn, -1);
  cpu.stat(ST_TABLES_FREED);
  push(cpu.V.L.tableAlloc, cpu.V.L.tableStack, pfn);
}

export function get_page(pfn: number): void {
  Atomics.add(current.I, frameWord(current.V.L, pfn, FM_REF), 1);
}

/** Drop a reference; frees the frame when it was the last. */
export function put_page(pfn: number, va = -1): void {
  const cpu = current;
  const left = Atomics.sub(cpu.I, frameWord(cpu.V.L, pfn, FM_REF), 1) - 1;
  if (left === 0) free_page(pfn, va);
  else if (left < 0) {
    const { I, L } = cpu.V;
    const freed = (Atomics.load(I, frameWord(L, pfn, FM_FLAGS)) & PG_FREE) !== 0;
    const by = Atomics.load(I, frameWord(L, pfn, FM_OWNER)) - 1;
    cpu.host.hooks.violation({
      kind: freed ? 'double-free' : 'refcount-underflow', cpu: cpu.id, pfn, va: va >= 0 ? va : undefined,
      cpus: freed && by >= 0 && by !== cpu.id ? [by] : [],
      message: freed
        ? `cpu ${cpu.id} dropped a reference to pfn ${pfn}${va >= 0 ? ` (was at 0x${va.toString(16)})` : ''}, which is already free${by >= 0 ? ` (freed by cpu ${by})` : ''}: double free`
        : `cpu ${cpu.id}: refcount of pfn ${pfn} went negative`,
    });
  }
}

export function page_mapcount_inc(pfn: number): void {
  Atomics.add(current.I, frameWord(current.V.L, pfn, FM_MAP), 1);
}
export function page_mapcount_dec(pfn: number): number {
  return Atomics.sub(current.I, frameWord(current.V.L, pfn, FM_MAP), 1) - 1;
}
export function page_ref(V: Views, pfn: number): number {
  return Atomics.load(V.I, frameWord(V.L, pfn, FM_REF));
}
export function page_mapcount(V: Views, pfn: number): number {
  return Atomics.load(V.I, frameWord(V.L, pfn, FM_MAP));
}
export function free_frames(V: Views): { tables: number; data: number } {
  return { tables: Atomics.load(V.I, V.L.tableAlloc + ALLOC_TOP), data: Atomics.load(V.I, V.L.dataAlloc + ALLOC_TOP) };
}
