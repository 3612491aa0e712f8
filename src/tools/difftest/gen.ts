// Random sequences of memory-management calls for difftest: mmap (fixed, a
// hint, MAP_FIXED_NOREPLACE; shared and private; the memfd and anonymous),
// munmap, mprotect, mremap (every flag combination: shrink, grow, same size,
// move; ranges across VMA ends and gaps), madvise, brk, fork (the child runs
// calls of its own) and page touches. Addresses are aimed at the boundaries
// made so far, so calls meet VMA edges, gaps and PMD boundaries often.

/** The arena the calls aim at, and the window whose final maps are compared (the arena and room to grow past it). */
export const ARENA = 0x2000_0000_0000;
export const ARENA_LEN = 32 << 20;
export const WINDOW_LEN = 4 * ARENA_LEN;
/** brk calls stay within this many bytes above the first break; the heap window compared is this size. */
export const HEAP_LEN = 64 << 20;

const P = 4096;
const PMD = 2 << 20;

export type Op =
  | { k: 'mmap'; addr: Addr; len: number; prot: number; flags: number; file: boolean; off: number }
  | { k: 'munmap'; addr: Addr; len: number }
  | { k: 'mprotect'; addr: Addr; len: number; prot: number }
  | { k: 'madvise'; addr: Addr; len: number; advice: number }
  | { k: 'mremap'; addr: Addr; oldLen: number; newLen: number; flags: number; newAddr: Addr }
  | { k: 'brk'; addr: Addr }
  | { k: 'touch'; addr: Addr; len: number }
  | { k: 'fork'; child: Op[] };

/** An address: absolute, or (heap) bytes above the sequence's first break. */
export interface Addr { heap: boolean; v: number }

const MAP_SHARED = 1;
const MAP_PRIVATE = 2;
const MAP_FIXED = 0x10;
const MAP_POPULATE = 0x8000;
const MAP_FIXED_NOREPLACE = 0x100000;
const MADVICES = [0, 1, 2, 3, 4, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];

/** mulberry32: a small seeded generator, so a (seed, sequence) pair always gives the same calls. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  private readonly r: () => number;
  /** boundaries made so far (arena offsets), and in the heap */
  private readonly points: number[] = [0, ARENA_LEN / 2, PMD, 3 * PMD];
  private readonly heapPoints: number[] = [0];
  /** ranges mapped so far (arena offsets, as asked: a call may have failed or moved them) */
  private readonly regions: { start: number; len: number }[] = [];
  constructor(seed: number) {
    this.r = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  len(): number {
    const x = this.r();
    let pages: number;
    if (x < 0.55) pages = 1 + this.int(8);
    else if (x < 0.8) pages = 9 + this.int(56);
    else if (x < 0.9) pages = 512 * (1 + this.int(2)) + this.int(3) - 1;
    else if (x < 0.97) pages = 65 + this.int(400);
    else return this.chance(0.5) ? 0 : 1 + this.int(3 * P); // zero, or not a page multiple
    return pages * P;
  }
  addr(heapOk = true): Addr {
    if (heapOk && this.chance(0.1)) {
      const base = this.pick(this.heapPoints);
      return { heap: true, v: Math.max(0, base + (this.int(5) - 2) * P) };
    }
    let off: number;
    if (this.chance(0.6)) off = this.pick(this.points) + (this.int(5) - 2) * P;
    else if (this.chance(0.2)) off = this.int(ARENA_LEN / PMD) * PMD;
    else off = this.int(ARENA_LEN / P) * P;
    off = Math.min(Math.max(off, 0), ARENA_LEN - P);
    if (this.chance(0.02)) off += 1 + this.int(P - 1); // unaligned
    return { heap: false, v: ARENA + off };
  }
  /** An address inside something mapped (most of the time), with a length that ends near its end. */
  inside(): { addr: Addr; len: number } {
    if (this.regions.length === 0 || this.chance(0.25)) return { addr: this.addr(), len: this.len() };
    const r = this.pick(this.regions);
    const pages = Math.max(1, r.len / P);
    const first = this.chance(0.4) ? 0 : this.int(pages);
    let n: number;
    const x = this.r();
    if (x < 0.4) n = pages - first; // to the end
    else if (x < 0.7) n = 1 + this.int(pages - first); // within
    else n = pages - first + 1 + this.int(8); // past the end: a neighbour or a gap
    return { addr: { heap: false, v: ARENA + r.start + first * P }, len: n * P };
  }
  region(a: Addr, len: number): void {
    if (a.heap || len <= 0) return;
    this.regions.push({ start: Math.floor((a.v - ARENA) / P) * P, len: Math.ceil(len / P) * P });
    if (this.regions.length > 24) this.regions.shift();
  }
  note(a: Addr, len: number): void {
    const list = a.heap ? this.heapPoints : this.points;
    const base = a.heap ? a.v : a.v - ARENA;
    for (const x of [base, base + len]) {
      if (x >= 0 && x < (a.heap ? HEAP_LEN : ARENA_LEN)) list.push(Math.floor(x / P) * P);
    }
    if (list.length > 48) list.splice(1, list.length - 48);
  }
  prot(): number {
    return this.pick([0, 1, 3, 3, 3, 5, 7]);
  }
  op(inChild: boolean, budget: number): Op {
    const x = this.r();
    if (!inChild && budget > 2 && x < 0.03) {
      const n = Math.min(budget - 1, this.int(7));
      const child: Op[] = [];
      for (let i = 0; i < n; i++) child.push(this.op(true, 0));
      return { k: 'fork', child };
    }
    if (x < 0.25) {
      const file = this.chance(0.3);
      const shared = this.chance(0.3);
      const mode = this.r();
      const fixed = mode < 0.45 ? MAP_FIXED : mode < 0.65 ? MAP_FIXED_NOREPLACE : 0;
      let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | fixed;
      if (this.chance(0.05)) flags |= MAP_POPULATE;
      if (this.chance(0.01)) flags &= ~3; // neither shared nor private: EINVAL
      const addr = this.addr(false);
      const len = this.len();
      const off = file ? this.int(64) * P + (this.chance(0.02) ? 1 : 0) : 0;
      this.note(addr, len);
      this.region(addr, len);
      return { k: 'mmap', addr, len, prot: this.prot(), flags, file, off };
    }
    if (x < 0.33) {
      const { addr, len } = this.inside();
      this.note(addr, len);
      return { k: 'munmap', addr, len };
    }
    if (x < 0.43) {
      const { addr, len } = this.inside();
      this.note(addr, len);
      return { k: 'mprotect', addr, len, prot: this.prot() };
    }
    if (x < 0.65) {
      const at = this.inside();
      const addr = at.addr;
      const oldLen = this.chance(0.04) ? 0 : at.len;
      const shape = this.r();
      let newLen: number;
      if (shape < 0.3) newLen = Math.max(P, oldLen - (1 + this.int(8)) * P); // shrink
      else if (shape < 0.5) newLen = oldLen; // same size
      else if (shape < 0.9) newLen = oldLen + (1 + this.int(this.chance(0.2) ? 600 : 16)) * P; // grow
      else newLen = this.len();
      // the valid combinations mostly; FIXED or DONTUNMAP without MAYMOVE, and an unknown flag, sometimes
      let flags = this.pick([0, 0, 1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 7, 7, 2, 4, 8]);
      if (flags & 4 && this.chance(0.8)) newLen = oldLen; // DONTUNMAP cannot resize
      const newAddr = flags & 6 ? (this.chance(0.3) ? this.inside().addr : this.addr(false)) : { heap: false, v: 0 };
      this.note(addr, oldLen);
      this.note(addr, newLen);
      if (flags & 6) {
        this.note(newAddr, newLen);
        this.region(newAddr, newLen);
      } else if (newLen > oldLen) this.region(addr, newLen);
      return { k: 'mremap', addr, oldLen, newLen, flags, newAddr };
    }
    if (x < 0.72) {
      const { addr, len } = this.inside();
      return { k: 'madvise', addr, len, advice: this.chance(0.03) ? 99 : this.pick(MADVICES) };
    }
    if (x < 0.77) {
      const v = this.chance(0.1) ? this.int(HEAP_LEN / 4) : this.pick(this.heapPoints) + (this.int(9) - 3) * P + (this.chance(0.1) ? this.int(P) : 0);
      const a = { heap: true, v: Math.min(Math.max(0, v), HEAP_LEN - PMD) };
      this.note(a, 0);
      return { k: 'brk', addr: a };
    }
    const at = this.inside();
    const addr = this.chance(0.2) ? { ...at.addr, v: at.addr.v + this.int(P) } : at.addr;
    const len = this.chance(0.1) ? 16 * P + this.int(64 * P) : 1 + this.int(Math.min(at.len || P, 8 * P));
    return { k: 'touch', addr, len };
  }
}

/** Sequence `index` of a run with this seed: `calls` calls (a fork's child calls count). */
export function generate(seed: number, index: number, calls: number): Op[] {
  const g = new Gen((seed * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
  const ops: Op[] = [];
  let n = 0;
  while (n < calls) {
    const o = g.op(false, calls - n);
    ops.push(o);
    n += o.k === 'fork' ? 1 + o.child.length : 1;
  }
  return ops;
}

export function countCalls(ops: Op[]): number {
  return ops.reduce((n, o) => n + (o.k === 'fork' ? 1 + o.child.length : 1), 0);
}

const A = (a: Addr): string => (a.heap ? `h${a.v}` : String(a.v));

/** The executor's input for the calls. */
export function opsText(ops: Op[]): string {
  let s = '';
  for (const o of ops) {
    switch (o.k) {
      case 'mmap': s += `mmap ${A(o.addr)} ${o.len} ${o.prot} ${o.flags} ${o.file ? 1 : 0} ${o.off}\n`; break;
      case 'munmap': s += `munmap ${A(o.addr)} ${o.len}\n`; break;
      case 'mprotect': s += `mprotect ${A(o.addr)} ${o.len} ${o.prot}\n`; break;
      case 'madvise': s += `madvise ${A(o.addr)} ${o.len} ${o.advice}\n`; break;
      case 'mremap': s += `mremap ${A(o.addr)} ${o.oldLen} ${o.newLen} ${o.flags} ${A(o.newAddr)}\n`; break;
      case 'brk': s += `brk ${A(o.addr)}\n`; break;
      case 'touch': s += `touch ${A(o.addr)} ${o.len}\n`; break;
      case 'fork': s += `fork ${o.child.length}\n${opsText(o.child)}`; break;
    }
  }
  return s;
}
