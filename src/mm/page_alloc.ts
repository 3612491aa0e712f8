// The page allocator: two zones of frames (page-table frames and data frames),
// each a stack of free pfns under a spinlock. Frame metadata is the simulator's
// struct page: refcount, mapcount, flags, generation. Freeing bumps the
// generation, which is what lets the UAF oracle see a stale TLB entry.

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import {
  type Views, frameWord, tableEntry, dataWord, FM_REF, FM_MAP, FM_FLAGS, FM_GEN, FM_OWNER, FM_AUX, FM_PTL,
  PG_FREE, PG_TABLE, PG_ANON, PG_RESERVED, ALLOC_LOCK, ALLOC_TOP, ALLOC_LOW, PTRS_PER_TABLE, WORDS_PER_PAGE,
  ST_PAGES_FREED, ST_TABLES_FREED, PG_HEAD, PG_TAIL, FM_COMPOUND, FM_ENTIRE_MAP, type Layout,
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

/**
 * A zeroed data frame with refcount 1, or 0 when out of memory. zero false: the
 * caller zeroes it itself with kernel stores (do_anonymous_page under a weak store
 * order: clear_user_highpage, src/mm/memory.ts); until then it holds its last contents.
 */
export function alloc_page(anon: boolean, zero = true): number {
  const cpu = current;
  const { I, L } = cpu.V;
  const pfn = pop(L.dataAlloc, L.dataStack);
  if (pfn === 0) return 0;
  claim(pfn, anon ? PG_ANON : 0);
  if (zero) for (let w = 0; w < WORDS_PER_PAGE; w++) Atomics.store(I, dataWord(L, pfn, w), 0);
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
  if (Atomics.load(cpu.I, frameWord(cpu.V.L, pfn, FM_FLAGS)) & PG_HEAD) {
    free_compound_page(pfn, va);
    return;
  }
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

/** A reference on the page's folio (the head of a compound page holds the count). */
export function get_page(pfn: number): void {
  const I = current.I;
  const L = current.V.L;
  Atomics.add(I, frameWord(L, compound_head_of(I, L, pfn), FM_REF), 1);
  current.hotHint = 1; // a reference changed: a scheduling-only hint (src/engine/det.ts hot preemption)
}

/** Drop a reference on the page's folio; frees the frame (or the whole compound page) when it was the last. */
export function put_page(pfn: number, va = -1): void {
  const cpu = current;
  pfn = compound_head_of(cpu.I, cpu.V.L, pfn);
  const left = Atomics.sub(cpu.I, frameWord(cpu.V.L, pfn, FM_REF), 1) - 1;
  cpu.hotHint = 1; // a reference changed: a scheduling-only hint (src/engine/det.ts hot preemption)
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
  current.hotHint = 1; // a mapping count changed: a scheduling-only hint (src/engine/det.ts hot preemption)
}
export function page_mapcount_dec(pfn: number): number {
  current.hotHint = 1;
  return Atomics.sub(current.I, frameWord(current.V.L, pfn, FM_MAP), 1) - 1;
}
/** The folio's reference count (the head's, for a page of a compound page). */
export function page_ref(V: Views, pfn: number): number {
  return Atomics.load(V.I, frameWord(V.L, compound_head_of(V.I, V.L, pfn), FM_REF));
}
/** How many page-table entries map this page: its own PTE mapcount, plus the folio's entire mapcount (PMD/PUD leaves). */
export function page_mapcount(V: Views, pfn: number): number {
  const own = Atomics.load(V.I, frameWord(V.L, pfn, FM_MAP));
  const head = compound_head_of(V.I, V.L, pfn);
  const fl = Atomics.load(V.I, frameWord(V.L, head, FM_FLAGS));
  return fl & PG_HEAD ? own + Atomics.load(V.I, frameWord(V.L, head + 1, FM_ENTIRE_MAP)) : own;
}
export function free_frames(V: Views): { tables: number; data: number } {
  return { tables: Atomics.load(V.I, V.L.tableAlloc + ALLOC_TOP), data: Atomics.load(V.I, V.L.dataAlloc + ALLOC_TOP) };
}

// ---- compound pages (folios of order > 0: transparent huge pages, DAX-like device memory) ----

/** compound_head: the head of the compound page pfn belongs to (pfn itself for an order-0 page). */
export function compound_head_of(I: Int32Array, L: Layout, pfn: number): number {
  return Atomics.load(I, frameWord(L, pfn, FM_FLAGS)) & PG_TAIL ? Atomics.load(I, frameWord(L, pfn, FM_COMPOUND)) : pfn;
}
export function compound_head(V: Views, pfn: number): number {
  return compound_head_of(V.I, V.L, pfn);
}
/** Order of the compound page headed by pfn (0 for an order-0 page). */
export function compound_order(V: Views, head: number): number {
  return Atomics.load(V.I, frameWord(V.L, head, FM_FLAGS)) & PG_HEAD ? Atomics.load(V.I, frameWord(V.L, head, FM_COMPOUND)) : 0;
}
/** folio_entire_mapcount: PMD/PUD leaves mapping the whole compound page. */
export function folio_entire_mapcount(V: Views, head: number): number {
  return Atomics.load(V.I, frameWord(V.L, head + 1, FM_ENTIRE_MAP));
}
export function folio_entire_mapcount_add(head: number, n: number): number {
  return Atomics.add(current.I, frameWord(current.V.L, head + 1, FM_ENTIRE_MAP), n) + n;
}
/** folio_ref_add */
export function folio_ref_add(head: number, n: number): void {
  Atomics.add(current.I, frameWord(current.V.L, head, FM_REF), n);
}

/** Which pfns are on the data free stack (scratch of this thread, for the run search). */
let onStack: Uint8Array | null = null;

/**
 * alloc_pages(order) for a compound page: 2^order contiguous free frames, the run
 * aligned to its size up to 2 MiB (so 2 MiB pages are naturally aligned; a 1 GiB
 * page is 2 MiB-aligned, so the machine needs a little more than 1 GiB, not 2).
 * The data zone has no buddy lists: under the zone lock, the free stack is
 * scanned for the highest free aligned run (order-0 allocations take the lowest
 * frames first, so the top of memory stays contiguous longest), which is cut
 * out of the stack. Frames are zeroed; the head holds refcount 1. Returns the
 * head pfn, or 0 when no such run is free (the caller falls back to small pages).
 */
export function alloc_compound_page(order: number, anon: boolean): number {
  const cpu = current;
  const { I, L } = cpu.V;
  const n = 2 ** order;
  const align = Math.min(n, PTRS_PER_TABLE);
  const zone = L.dataAlloc;
  const stack = L.dataStack;
  let base = 0;
  spin_lock(zone + ALLOC_LOCK);
  const top = I[zone + ALLOC_TOP];
  if (top >= n) {
    if (onStack === null || onStack.length !== L.nframes) onStack = new Uint8Array(L.nframes);
    else onStack.fill(0);
    for (let k = 0; k < top; k++) onStack[I[stack + k]] = 1;
    let b = Math.floor((L.nframes - n) / align) * align;
    while (b >= L.dataStart) {
      let j = b + n - 1;
      while (j >= b && onStack[j] === 1) j--;
      if (j < b) {
        base = b;
        break;
      }
      b = Math.floor((j - n) / align) * align; // the next run that lies wholly below frame j
    }
    if (base !== 0) {
      let w = 0;
      for (let k = 0; k < top; k++) {
        const p = I[stack + k];
        if (p < base || p >= base + n) I[stack + w++] = p;
      }
      I[zone + ALLOC_TOP] = w;
      if (w < I[zone + ALLOC_LOW]) I[zone + ALLOC_LOW] = w;
    }
  }
  spin_unlock(zone + ALLOC_LOCK);
  if (base === 0) return 0;
  const kind = anon ? PG_ANON : 0;
  for (let i = 0; i < n; i++) {
    const pfn = base + i;
    claim(pfn, kind | (i === 0 ? PG_HEAD : PG_TAIL));
    if (i > 0) Atomics.store(I, frameWord(L, pfn, FM_REF), 0);
    Atomics.store(I, frameWord(L, pfn, FM_COMPOUND), i === 0 ? order : base);
  }
  I.fill(0, dataWord(L, base, 0), dataWord(L, base + n, 0));
  return base;
}

/**
 * Free a compound page whose last reference is gone: every frame goes back at
 * once (the generation of each changes, for the UAF oracle), to the cold end
 * of the free stack, where order-0 allocations reach it last, so it stays
 * contiguous for the next compound allocation (a buddy allocator would merge it).
 */
function free_compound_page(head: number, va: number): void {
  const cpu = current;
  const { I, L } = cpu.V;
  const flags = Atomics.load(I, frameWord(L, head, FM_FLAGS));
  if ((flags & PG_HEAD) === 0 || flags & (PG_FREE | PG_RESERVED)) {
    release(head, 'compound page', va); // reports the double free
    return;
  }
  const order = Atomics.load(I, frameWord(L, head, FM_COMPOUND));
  const n = 2 ** order;
  const entire = Atomics.load(I, frameWord(L, head + 1, FM_ENTIRE_MAP));
  let mapped = entire !== 0 ? `its entire mapcount is ${entire}` : '';
  for (let i = 0; i < n; i++) {
    const pfn = head + i;
    const map = Atomics.load(I, frameWord(L, pfn, FM_MAP));
    if (map !== 0 && mapped === '') mapped = `page ${i} still has mapcount ${map}`;
    Atomics.add(I, frameWord(L, pfn, FM_GEN), 1);
    Atomics.store(I, frameWord(L, pfn, FM_OWNER), cpu.id + 1);
    Atomics.store(I, frameWord(L, pfn, FM_COMPOUND), 0);
    Atomics.store(I, frameWord(L, pfn, FM_REF), 0);
    Atomics.store(I, frameWord(L, pfn, FM_FLAGS), PG_FREE);
  }
  if (mapped !== '') {
    cpu.host.hooks.violation({
      kind: 'free-mapped', cpu: cpu.id, pfn: head,
      message: `cpu ${cpu.id} freed the order-${order} compound page at pfn ${head} while ${mapped}`,
    });
  }
  cpu.ring.log(EV.FREE_PAGE, head, va);
  cpu.stat(ST_PAGES_FREED, n);
  const zone = L.dataAlloc;
  const stack = L.dataStack;
  spin_lock(zone + ALLOC_LOCK);
  const top = I[zone + ALLOC_TOP];
  I.copyWithin(stack + n, stack, stack + top);
  for (let i = 0; i < n; i++) I[stack + i] = head + n - 1 - i;
  I[zone + ALLOC_TOP] = top + n;
  spin_unlock(zone + ALLOC_LOCK);
}
