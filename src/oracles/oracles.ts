// Oracles: violation records, and the content model.
//
// The use-after-free oracle lives in the hardware (frame generation checked on
// every TLB hit, src/hw/cpu.ts) and the allocator (double free); they report
// through the violation sink made here, which snapshots the event rings of the
// CPUs involved and, by default, stops the run.
//
// The content oracle: every write stores a unique tag (writer CPU, a hash of the
// address, a sequence number). A read must return 0, a tag whose address hash
// matches, and, if this CPU wrote the word last as far as it knows, exactly
// that tag, unless a zap (munmap, exit) of that address began or ended since
// the write: those legitimately discard contents. Zaps are logged in shared
// memory by the kernel's discard hook.
//
// "This CPU wrote the word last" is known per (mm, address) for private memory
// only. A word of a MAP_SHARED mapping (a page-cache page, or shmem shared across
// fork) is one word in every mm that maps it: a forked child, or another process
// mapping the same file, that runs on this CPU and writes it makes this CPU's
// newer tag appear at the parent's address, and that is the page cache doing its
// job, not a stale read. So a write to a shared word drops this CPU's expectations
// for that word in every other mm (the `share` key names the word: file and
// offset, or the shared anonymous region and offset). Before this, soak-mix at 8
// CPUs reported "stale content" on about half of its 3-second runs: a child wrote
// the shared file page on the CPU its parent ran on, and the parent read it.

import type { Host, ViolationInfo } from '../hw/cpu.ts';
import {
  type Views, mmWord, unmapLogF, hostWord, MM_UNMAP_SEQ, MM_UNMAP_SLOT, UNMAP_LOG_ENTRIES, H_STOP, H_VIOLATIONS, HB_WAKE,
  MM_CTX_ID,
} from '../hw/layout.ts';
import { readRing, formatEvent, EV } from '../hw/trace.ts';
import { current } from '../hw/cpu.ts';
import { CowOracle } from './cow.ts';

export interface ViolationRecord extends ViolationInfo {
  /** recent events of the CPUs involved, formatted, oldest first */
  events: Record<number, string[]>;
}

export function makeViolationSink(V: Views, out: ViolationRecord[], stopOnViolation: boolean, maxKept = 32): (v: ViolationInfo) => void {
  return (v) => {
    Atomics.add(V.I, V.L.header + H_VIOLATIONS, 1);
    // on the detecting CPU's own thread: its ring gets the moment of detection
    if (current !== undefined && current.id === v.cpu) current.ring.log(EV.VIOLATION, v.va ?? -1, v.pfn ?? -1);
    if (out.length < maxKept) {
      const events: Record<number, string[]> = {};
      for (const c of [v.cpu, ...(v.cpus ?? [])]) events[c] = readRing(V, c, 12).map(formatEvent);
      out.push({ ...v, events });
    }
    if (stopOnViolation) requestStop(V);
  };
}

export function requestStop(V: Views): void {
  Atomics.store(V.I, V.L.header + H_STOP, 1);
  kickAll(V);
}

export function kickAll(V: Views): void {
  for (let h = 0; h < V.L.shape.hosts; h++) {
    const w = hostWord(V.L, h, HB_WAKE);
    Atomics.add(V.I, w, 1);
    Atomics.notify(V.I, w);
  }
}

// ---- the discard log (written by the kernel's hook) ---------------------------
export function makeDiscardHook(V: Views): (mm: number, start: number, end: number, done: boolean) => void {
  const { I, F, L } = V;
  return (mm, start, end, done) => {
    if (!done) {
      // begin: the slot is reserved atomically, because not every zap of an mm
      // holds its mmap_lock for write (truncation logs into every mapping mm's log)
      const slot = Atomics.add(I, mmWord(L, mm, MM_UNMAP_SLOT), 1) % UNMAP_LOG_ENTRIES;
      const b = unmapLogF(L, mm, slot, 0);
      F[b + 3] = 0;
      F[b] = start;
      F[b + 1] = end;
      F[b + 2] = Atomics.add(I, mmWord(L, mm, MM_UNMAP_SEQ), 1) + 1;
    } else {
      const endSeq = Atomics.add(I, mmWord(L, mm, MM_UNMAP_SEQ), 1) + 1;
      for (let e = 0; e < UNMAP_LOG_ENTRIES; e++) {
        const b = unmapLogF(L, mm, e, 0);
        if (F[b] === start && F[b + 1] === end && F[b + 3] === 0) {
          F[b + 3] = endSeq;
          break;
        }
      }
    }
  };
}

interface OwnWrite {
  tag: number;
  seq: number; // MM_UNMAP_SEQ before the write
  slot: number; // MM_UNMAP_SLOT before the write
  uid: number; // MM_CTX_ID of the mm written: an entry of an earlier mm in the same slot is void
  share?: string; // a word of a shared mapping: the same word in every mm that maps it
}

export const TAG_CPU_SHIFT = 24;
/**
 * The hash a tag carries of where it was written: by default the word's virtual
 * address; a scenario passes the word's offset in its region instead (so data
 * that mremap moves between equally-sized regions still matches).
 */
export function addrHash(where: number): number {
  const w = Math.floor(where / 512);
  return (Math.imul(w ^ (w / 4294967296), 0x9e3779b1) >>> 24) & 0xff;
}
export function tagCpu(tag: number): number {
  return tag >>> TAG_CPU_SHIFT;
}

/** One CPU's view of the content model (private to the thread that runs the CPU). */
export class ContentOracle {
  private seq = 0;
  private readonly own = new Map<number, OwnWrite>();
  /** a shared word -> the (mm, address) keys of `own` that hold an expectation of it */
  private readonly shared = new Map<string, Set<number>>();
  private readonly V: Views;
  private readonly cpu: number;
  private readonly host: Host;
  readsChecked = 0;
  excused = 0;
  /** this CPU's side of the COW oracle (src/oracles/cow.ts) */
  readonly cow: CowOracle;
  constructor(V: Views, host: Host, cpu: number) {
    this.V = V;
    this.host = host;
    this.cpu = cpu;
    this.cow = new CowOracle(V, host, cpu);
  }

  private key(mm: number, va: number): number {
    return mm * 2 ** 40 + Math.floor(va / 512);
  }

  /** A fresh tag for a write by this CPU at `where` (the address, or its logical position). */
  tag(where: number): number {
    this.seq = (this.seq % 65535) + 1;
    return ((this.cpu << TAG_CPU_SHIFT) | (addrHash(where) << 16) | this.seq) | 0;
  }

  /** Call before the write: what the discard log says now. */
  snapshot(mm: number): OwnWrite {
    const { I, L } = this.V;
    return {
      tag: 0, seq: Atomics.load(I, mmWord(L, mm, MM_UNMAP_SEQ)), slot: Atomics.load(I, mmWord(L, mm, MM_UNMAP_SLOT)),
      uid: Atomics.load(I, mmWord(L, mm, MM_CTX_ID)),
    };
  }

  /** `share`: the word is of a shared mapping (see the top of this file), named file and offset or region and offset. */
  wrote(mm: number, va: number, tag: number, snap: OwnWrite, share?: string): void {
    const k = this.key(mm, va);
    if (share !== undefined) {
      // this write is what every other mm mapping the word will read: no other expectation of it holds
      const keys = this.shared.get(share);
      if (keys) {
        for (const x of keys) if (x !== k) this.own.delete(x);
        keys.clear();
        keys.add(k);
      } else this.shared.set(share, new Set([k]));
    }
    const o = this.own.get(k);
    if (o) {
      o.tag = tag;
      o.seq = snap.seq;
      o.slot = snap.slot;
      o.uid = snap.uid;
      o.share = share;
    } else this.own.set(k, { tag, seq: snap.seq, slot: snap.slot, uid: snap.uid, share });
  }

  /**
   * fork on this CPU made child a copy of parent: what this CPU wrote to parent
   * and nothing discarded since is expected in the child too (it runs on this
   * CPU), until the child writes or discards it itself.
   */
  inherit(parent: number, child: number): void {
    const { I, L } = this.V;
    const puid = Atomics.load(I, mmWord(L, parent, MM_CTX_ID));
    const snap = this.snapshot(child);
    const lo = parent * 2 ** 40;
    const add: [number, OwnWrite][] = [];
    for (const [k, o] of this.own) {
      if (k < lo || k >= lo + 2 ** 40 || o.uid !== puid) continue;
      const va = (k - lo) * 512;
      if (this.discardedSince(parent, va, o)) continue;
      add.push([this.key(child, va), { tag: o.tag, seq: snap.seq, slot: snap.slot, uid: snap.uid, share: o.share }]);
    }
    for (const [k, o] of add) {
      this.own.set(k, o);
      if (o.share !== undefined) this.shared.get(o.share)?.add(k);
    }
  }

  /** Was va's content possibly discarded since the snapshot? */
  private discardedSince(mm: number, va: number, o: OwnWrite): boolean {
    const { I, F, L } = this.V;
    const slots = Atomics.load(I, mmWord(L, mm, MM_UNMAP_SLOT));
    if (slots - o.slot >= UNMAP_LOG_ENTRIES) return true; // the log wrapped: cannot judge, so allow
    for (let e = 0; e < UNMAP_LOG_ENTRIES; e++) {
      const b = unmapLogF(L, mm, e, 0);
      if (F[b] <= va && va < F[b + 1] && (F[b + 3] === 0 || F[b + 3] > o.seq)) return true;
    }
    return false;
  }

  read(mm: number, va: number, value: number, where = va): void {
    this.readsChecked++;
    if (value !== 0 && ((value >>> 16) & 0xff) !== addrHash(where)) {
      this.fail(va, `read 0x${(value >>> 0).toString(16)} at 0x${va.toString(16)}, a tag written to another address (by cpu ${tagCpu(value)}): the page holds someone else's data`);
      return;
    }
    const o = this.own.get(this.key(mm, va));
    if (!o || value === o.tag) return;
    if (o.uid !== Atomics.load(this.V.I, mmWord(this.V.L, mm, MM_CTX_ID))) {
      this.own.delete(this.key(mm, va)); // written to an earlier mm in this slot
      return;
    }
    if (value !== 0 && tagCpu(value) !== this.cpu) return; // someone else wrote it since: fine
    if (this.discardedSince(mm, va, o)) {
      this.excused++;
      return;
    }
    this.fail(va,
      value === 0
        ? `read 0 at 0x${va.toString(16)} but this CPU wrote 0x${(o.tag >>> 0).toString(16)} there and nothing unmapped it since (lost write)`
        : `read this CPU's older tag 0x${(value >>> 0).toString(16)} at 0x${va.toString(16)}, but its last write there was 0x${(o.tag >>> 0).toString(16)} (stale content)`);
  }

  forget(mm: number, va: number): void {
    this.own.delete(this.key(mm, va));
  }

  private fail(va: number, message: string): void {
    this.host.hooks.violation({ kind: 'content', cpu: this.cpu, va, message: `cpu ${this.cpu} ${message}` });
  }
}
