// The COW oracle: per-process isolation of private memory across fork.
//
// The rule (issue #6): after fork returns, a child must never read a value the
// parent wrote after fork returned, nor the parent (or a sibling, or an
// unrelated process) a value the child wrote, in private memory. Writes racing
// with fork itself may land on either side, as in Linux.
//
// Tags (the content oracle's: cpu | address hash | 16-bit sequence) are too
// narrow to say who wrote them and when, and a 16-bit sequence wraps. So the
// provenance lives beside the data, in a shadow (like KASAN's or KMSAN's): for
// every word of every data frame, [lock, tag, writer, epoch | shared] where
//   - writer is the writing process's MM_CTX_ID (unique for the machine's life),
//   - epoch is the writer's fork epoch sampled *before* the write: the number
//     of forks the process had completed. dup_mmap calls hooks.forked after the
//     parent's flush, before its mmap_lock is released, and the epoch advances
//     there; the child records (parent, the epoch before the increment) in its
//     ancestry. A write stamped with an epoch at or below that value began
//     before fork completed (it may have raced with it: allowed on either side);
//     one stamped above began after, and in a correct kernel can only reach the
//     parent's own pages (its TLBs were flushed before the epoch advanced).
//   - shared: written through a MAP_SHARED mapping (visible to everyone: exempt).
// Kernel code that copies a page (copy_user_highpage) copies the shadow too
// (hooks.copy_page), so the provenance follows COW copies. A shadow record
// whose tag is not the value read (a writer between the store and the shadow
// update, or a copy racing a writer) says nothing: the read is unjudged.
//
// Each mm carries its ancestry, nearest first (MM_COW_CHAIN, up to 12 levels;
// a deeper line marks itself truncated and leaves older writers unjudged). A
// reader of process R checking a value written by W:
//   W = R: fine (the content oracle checks own writes);
//   W an ancestor of R, written at an epoch <= the one R's line was forked at: fine;
//   W an ancestor, a later epoch: the child saw the parent's post-fork write;
//   W anything else (R's child, sibling, an unrelated process): a private write leaked.
// The shadow only exists when the scenario uses fork, pins or /proc/pid/mem
// writes (MachineShape.cowShadow); the ancestry always does.

import type { Host } from '../hw/cpu.ts';
import {
  type Views, mmWord, cowShadowWord, MM_CTX_ID, MM_COW_EPOCH, MM_COW_DEPTH, MM_COW_CHAIN, MM_COW_CHAIN_MAX, COW_SHARED,
  WORDS_PER_PAGE,
} from '../hw/layout.ts';

/** the writing CPU of a content-oracle tag (TAG_CPU_SHIFT in oracles.ts) */
const tagCpu = (tag: number): number => tag >>> 24;

function lock(I: Int32Array, at: number): void {
  while (Atomics.compareExchange(I, at, 0, 1) !== 0) Atomics.pause();
}
function unlock(I: Int32Array, at: number): void {
  Atomics.store(I, at, 0);
}

/** fork of parent into child is complete: advance the parent's epoch, give the child its ancestry. */
export function makeForkHook(V: Views): (parent: number, child: number) => void {
  const { I, L } = V;
  return (parent, child) => {
    const e = Atomics.add(I, mmWord(L, parent, MM_COW_EPOCH), 1);
    const pd = Atomics.load(I, mmWord(L, parent, MM_COW_DEPTH));
    const pn = Math.abs(pd);
    const n = Math.min(MM_COW_CHAIN_MAX, pn + 1);
    const truncated = pd < 0 || pn + 1 > MM_COW_CHAIN_MAX;
    const c0 = mmWord(L, child, MM_COW_CHAIN);
    const p0 = mmWord(L, parent, MM_COW_CHAIN);
    Atomics.store(I, c0, Atomics.load(I, mmWord(L, parent, MM_CTX_ID)));
    Atomics.store(I, c0 + 1, e);
    for (let i = 1; i < n; i++) {
      Atomics.store(I, c0 + 2 * i, Atomics.load(I, p0 + 2 * (i - 1)));
      Atomics.store(I, c0 + 2 * i + 1, Atomics.load(I, p0 + 2 * (i - 1) + 1));
    }
    Atomics.store(I, mmWord(L, child, MM_COW_EPOCH), 0);
    Atomics.store(I, mmWord(L, child, MM_COW_DEPTH), truncated ? -n : n);
  };
}

/** copy_user_highpage copied frame src into dst: the provenance goes with the data. */
export function makeCopyPageHook(V: Views): (dst: number, src: number) => void {
  const { I, L } = V;
  return (dst, src) => {
    if (L.cowShadow < 0) return;
    for (let w = 0; w < WORDS_PER_PAGE; w++) {
      const s = cowShadowWord(L, src, w);
      const d = cowShadowWord(L, dst, w);
      lock(I, s);
      const tag = I[s + 1];
      const uid = I[s + 2];
      const ef = I[s + 3];
      unlock(I, s);
      lock(I, d);
      I[d + 1] = tag;
      I[d + 2] = uid;
      I[d + 3] = ef;
      unlock(I, d);
    }
  };
}

/** One CPU's side of the COW oracle (private to the thread that runs the CPU). */
export class CowOracle {
  readonly enabled: boolean;
  private readonly V: Views;
  private readonly host: Host;
  private readonly cpu: number;
  /** reads whose provenance was looked up */
  checked = 0;
  /** ... and could not be judged (shadow mid-update, ancestry truncated) */
  unjudged = 0;
  /** the writer identity and epoch sampled by the last stamp() */
  private uid = 0;
  private epoch = 0;
  constructor(V: Views, host: Host, cpu: number) {
    this.V = V;
    this.host = host;
    this.cpu = cpu;
    this.enabled = V.L.cowShadow >= 0;
  }

  /** Before a write by mm: who is writing, at which fork epoch. */
  stamp(mm: number): void {
    if (!this.enabled) return;
    const { I, L } = this.V;
    this.uid = Atomics.load(I, mmWord(L, mm, MM_CTX_ID));
    this.epoch = Atomics.load(I, mmWord(L, mm, MM_COW_EPOCH));
  }

  /** After the write of `tag` into word `word` of frame pfn (stamp() came first). */
  wrote(pfn: number, word: number, tag: number, shared: boolean): void {
    if (!this.enabled || pfn < this.V.L.dataStart) return;
    const I = this.V.I;
    const at = cowShadowWord(this.V.L, pfn, word);
    lock(I, at);
    I[at + 1] = tag;
    I[at + 2] = this.uid;
    I[at + 3] = this.epoch | (shared ? COW_SHARED : 0);
    unlock(I, at);
  }

  /**
   * mm read `value` from word `word` of frame pfn (at va, through a private
   * mapping unless `shared`; `how` says through what, for the message).
   * Returns false when it reported a violation.
   */
  read(mm: number, pfn: number, word: number, value: number, shared: boolean, va: number, how = 'read'): boolean {
    if (!this.enabled || value === 0 || shared || pfn <= this.V.L.dataStart) return true;
    const { I, L } = this.V;
    const at = cowShadowWord(L, pfn, word);
    lock(I, at);
    const tag = I[at + 1];
    const uid = I[at + 2];
    const ef = I[at + 3];
    unlock(I, at);
    this.checked++;
    if (tag !== value) {
      this.unjudged++;
      return true;
    }
    if (ef & COW_SHARED) return true;
    const me = Atomics.load(I, mmWord(L, mm, MM_CTX_ID));
    if (uid === me) return true;
    const epoch = ef & ~COW_SHARED;
    const depth = Atomics.load(I, mmWord(L, mm, MM_COW_DEPTH));
    const c0 = mmWord(L, mm, MM_COW_CHAIN);
    const n = Math.abs(depth);
    const v = `0x${(value >>> 0).toString(16)}`;
    for (let i = 0; i < n; i++) {
      if (Atomics.load(I, c0 + 2 * i) !== uid) continue;
      const forkedAt = Atomics.load(I, c0 + 2 * i + 1);
      if (epoch <= forkedAt) return true;
      this.fail(va, pfn, tagCpu(value),
        `process #${me} (mm ${mm}) ${how} ${v} at 0x${va.toString(16)} (pfn ${pfn}), written by cpu ${tagCpu(value)} for its ` +
        `${i === 0 ? 'parent' : `ancestor ${i + 1} generations up`} #${uid} after the fork that made this process had returned ` +
        `(the writer's fork epoch ${epoch}, this line was forked at ${forkedAt}): the child sees the parent's post-fork write`);
      return false;
    }
    if (depth < 0) {
      this.unjudged++; // older ancestors were dropped from the chain
      return true;
    }
    this.fail(va, pfn, tagCpu(value),
      `process #${me} (mm ${mm}) ${how} ${v} at 0x${va.toString(16)} (pfn ${pfn}), a private write by cpu ${tagCpu(value)} for process #${uid}, ` +
      `which is not its ancestor (its child, a sibling or an unrelated process): private memory leaked between processes`);
    return false;
  }

  private fail(va: number, pfn: number, writer: number, message: string): void {
    this.host.hooks.violation({
      kind: 'cow', cpu: this.cpu, va, pfn, cpus: writer !== this.cpu ? [writer] : [], message: `cpu ${this.cpu}: ${message}`,
    });
  }
}
