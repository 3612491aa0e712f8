// Simulated CPUs and the host threads that carry them.
//
// A Host is one JavaScript thread (a worker, or the main thread in inline mode).
// It carries one or more Cpus. Every blocking wait of a host goes through
// Host.block(), which sleeps on the host's own futex word: IPI senders, IPI
// acknowledgements and lock releases all bump that word, so a host waiting for
// anything still services the IPIs of every CPU it carries. That is what keeps
// shootdowns from deadlocking against lock waits, on any number of hosts.

import {
  type Views, cpuCtl, hostWord, statWord, frameWord, dataWord, mmWord,
  CC_IPI_PENDING as CC_IPI_PENDING_, CC_IPI_MASK as CC_IPI_MASK_, CC_ACK, CC_BC_PENDING as CC_BC_PENDING_, CC_BC_MASK as CC_BC_MASK_, CC_BC_ACK as CC_BC_ACK_, CC_BC_ASID as CC_BC_ASID_, CC_BC_START_F as CC_BC_START_F_, CC_BC_END_F as CC_BC_END_F_,
  ST_BCAST_SENT, ST_BCAST_RECV as ST_BCAST_RECV_, CC_ONLINE, ST_SHOOTDOWNS, CC_INFO_TYPE as CC_INFO_TYPE_, CC_INFO_MM as CC_INFO_MM_, FM_OWNER, CC_IRQS_OFF, CC_LOADED_MM, CC_IS_LAZY, cpuHostWord,
  HB_WAKE, HB_SLEEPING, HB_WAITING_ON, HB_HEARTBEAT, FM_GEN, FM_FLAGS, PG_FREE, MM_PR_MAX,
  ST_TLB_HITS, ST_TLB_MISSES, ST_READS, ST_WRITES, ST_IPI_RECV as ST_IPI_RECV_, ST_IPI_SENT, ST_FAULTS, ST_SEGV, ST_DELAYS,
  WORD_SHIFT as WORD_SHIFT_, WORDS_PER_PAGE as WORDS_PER_PAGE_, MM_ASID, H_STOP, FRAME_META_WORDS as FRAME_META_WORDS_, MM_WORDS as MM_WORDS_, ST_WALKS,
  PAGE_SIZE as PAGE_SIZE_, KERNEL_ASID, H_ZERO, MB_PEND as MB_PEND_, MB_SENDERS as MB_SENDERS_, MB_SCAN as MB_SCAN_, mboxHdr, mboxSlot,
} from './layout.ts';
import { Tlb, TLB_W as TLB_W_, TLB_D as TLB_D_, TLB_LINEAR } from './tlb.ts';
import { EventRing, EV } from './trace.ts';
import { walk, walk_kernel } from './walker.ts';
import { irqOdds, maybe_irq } from './irq.ts';
import { SB_ENTRIES, sb_drain, sb_tick } from './store_buffer.ts';
import { preemptLevel, maybe_preempt } from './preempt.ts';
import { availableParallelism } from 'node:os';

// Module-local copies of the constants the TLB hit and the IPI and broadcast paths use on every
// access and every handler: optimized code folds a module's own const, but loads an imported one
// from its module cell, with a hole check, at every use (the page walk went from 148 to 126 ns
// when its constants were made local, src/hw/walker.ts).
const CC_IPI_PENDING = CC_IPI_PENDING_;
const CC_IPI_MASK = CC_IPI_MASK_;
const CC_BC_PENDING = CC_BC_PENDING_;
const CC_BC_MASK = CC_BC_MASK_;
const CC_BC_ACK = CC_BC_ACK_;
const CC_BC_ASID = CC_BC_ASID_;
const CC_BC_START_F = CC_BC_START_F_;
const CC_BC_END_F = CC_BC_END_F_;
const CC_INFO_TYPE = CC_INFO_TYPE_;
const CC_INFO_MM = CC_INFO_MM_;
const ST_IPI_RECV = ST_IPI_RECV_;
const ST_BCAST_RECV = ST_BCAST_RECV_;
const WORD_SHIFT = WORD_SHIFT_;
const WORDS_PER_PAGE = WORDS_PER_PAGE_;
const FRAME_META_WORDS = FRAME_META_WORDS_;
const MM_WORDS = MM_WORDS_;
const PAGE_SIZE = PAGE_SIZE_;
const MB_PEND = MB_PEND_;
const MB_SENDERS = MB_SENDERS_;
const MB_SCAN = MB_SCAN_;
const TLB_W = TLB_W_;
const TLB_D = TLB_D_;
const EV_IPI_HANDLE = EV.IPI_HANDLE;
const EV_IPI_DONE = EV.IPI_DONE;

/** Handler for a "call function" IPI: runs on the target, in interrupt context. */
export type IpiHandler = (target: Cpu, sender: number) => void;
/** Faults one access may take before the run is declared livelocked. */
const MAX_FAULT_RETRIES = 100_000;

/** The page-fault entry point the kernel registers: 0 = retry the access, VM_FAULT_SIGSEGV otherwise. */
export type FaultHandler = (cpu: Cpu, va: number, write: boolean) => number;
export const VM_FAULT_OK = 0;
export const VM_FAULT_SIGSEGV = 1;
export const VM_FAULT_OOM = 2;

export interface ViolationInfo {
  kind: string;
  message: string;
  cpu: number;
  va?: number;
  pfn?: number;
  /** Other CPUs whose recent events matter (e.g. the one that freed the frame). */
  cpus?: number[];
}
export type ViolationSink = (v: ViolationInfo) => void;

/** Per-machine hooks registered by the kernel (mm, arch) and the simulator (oracles). */
export interface Hooks {
  fault: FaultHandler;
  ipi: IpiHandler[];
  violation: ViolationSink;
  /** the contents of [start, end) of mm are about to be discarded (zap); `done` when finished */
  discard: (mm: number, start: number, end: number, done: boolean) => void;
  /** fork of parent into child is complete (dup_mmap, before the parent's mmap_lock is released): the COW oracle's epoch */
  forked?: (parent: number, child: number) => void;
  /** kernel code copied data frame src into dst (copy_user_highpage): the COW oracle's shadow follows */
  copy_page?: (dst: number, src: number) => void;
  /**
   * stale-TLB oracle (src/oracles/stale_tlb.ts): a page-table change of [start, end)
   * of mm that narrows translations begins (done false), or has reached its promise
   * point (done true): from then on no CPU may use a translation of the range older
   * than the change that the page tables no longer allow. `what` names the change.
   */
  promise?: (mm: number, start: number, end: number, done: boolean, what: number) => void;
  /** stale-TLB oracle: judge a use of TLB slot s, older than the mm's last promise (slow path) */
  stale_use?: (cpu: Cpu, slot: number, va: number, write: boolean) => void;
  /**
   * A kernel access to a kernel address found no translation (src/mm/vmalloc.ts
   * do_kern_addr_fault): true when the arch judged the fault spurious and the
   * access is retried; false after the oops was reported.
   */
  kernel_fault?: (cpu: Cpu, va: number, write: boolean) => boolean;
}

/** Xorshift128+-style PRNG on 32-bit ints: fast, seedable, reproducible. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number, stream = 0) {
    this.a = (seed ^ 0x9e3779b9) | 0;
    this.b = (stream * 0x85ebca6b) ^ 0x243f6a88;
    this.c = 0xb7e15162 ^ seed;
    this.d = 0x6a09e667 ^ (stream + 1);
    for (let i = 0; i < 16; i++) this.u32();
  }
  /** sfc32 */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** [0, 1) */
  next(): number {
    return this.u32() / 4294967296;
  }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

/**
 * The deterministic scheduler (src/engine/det.ts), when one is in force: it
 * decides at every scheduling point which CPU runs next, and replaces every
 * blocking wait by handing the CPU's turn to another.
 */
export interface Scheduler {
  /** a scheduling point of `cpu` (it holds the token); `kernel`: a point of kernel code (Cpu.sched_point), not inside an instruction (hw_point) */
  point(cpu: Cpu, kernel?: boolean): void;
  /** cpu cannot proceed until its host is kicked: give the turn away, return when it comes back */
  blocked(cpu: Cpu, seq: number): void;
  /** a host's futex word was bumped: eligibility may have changed */
  kicked(): void;
  /**
   * Resume the preempted (switched-out) task of `cpu` on a CPU another thread carries
   * (src/engine/det.ts): true when it moved, `cpu` then being that CPU.
   */
  migrate?(cpu: Cpu, task: number): boolean;
}

/** Migration to a CPU another host thread carries, in free mode (unless --no-migrate-threads): one thread per CPU, or hosted (src/engine/migrate.ts). */
export interface Migrator {
  /**
   * a point where this CPU's task could be preempted: take a request addressed to this CPU;
   * at an operation boundary (`boundary`) also one addressed to another CPU of this thread
   */
  poll(cpu: Cpu, boundary?: boolean): void;
  /** move the preempted (switched-out) task of `cpu`: true when it moved, `cpu` then being its new CPU */
  migrate(cpu: Cpu, task: number): boolean;
}

export interface DelayConfig {
  /** probability of a delay at each scheduling point */
  p: number;
  /** maximum delay, in spin iterations (Atomics.pause calls) */
  maxSpins: number;
}

export class Host {
  readonly id: number;
  readonly V: Views;
  readonly I: Int32Array;
  readonly cpus: Cpu[] = [];
  readonly wake: number;
  readonly hooks: Hooks;
  /** the deterministic scheduler, or null in free mode */
  sched: Scheduler | null = null;
  /** free mode, one thread per CPU: migration between threads (src/engine/migrate.ts), or null */
  migrator: Migrator | null = null;
  private readonly nhosts: number;
  /**
   * Free mode: host threads to kick once each (noteKick, kickNoted), for kickEachHost and for
   * the acknowledgements of a pollIpis pass. A host is noted at most once per batch: its
   * stamp is the batch number, which kickNoted advances.
   */
  private readonly kickStamp: Int32Array;
  private kickBatch = 1;
  private readonly kickHosts: Int32Array;
  private nKickHosts = 0;
  /** inside a pollIpis pass that defers its acknowledgement kicks to its end (acked) */
  private deferAcks = false;
  /**
   * IPI acknowledgements a pass owes each sender (ipiAcked), posted at the end of the pass
   * with one Atomics.sub per sender: the 128 handlers of one thread's CPUs used to decrement
   * the sender's CC_ACK word one by one, racing the other thread's 128 for its cache line.
   */
  private readonly ackOwed: Int32Array;
  private readonly ackSenders: Int32Array;
  private nAckSenders = 0;
  /**
   * This thread's IPI mailbox (src/hw/layout.ts MB_*): the word index of its MB_PEND, or -1
   * when the machine has none (one CPU per thread, or one thread). Used in free mode only:
   * deterministic mode posts to each target as it always has, so replays do not change.
   */
  readonly mbPend: number;
  /** postIpis: the target bits gathered for each other thread (mboxMaskWords words per host), and which threads have some */
  private readonly mbScratch: Int32Array;
  private readonly mbHosts: Int32Array;
  private readonly mbLocal: Int32Array;
  /**
   * pollIpis' summary of this thread's CPUs (free mode, several CPUs on one thread: hosted
   * with mailboxes, or inline): false when none of them can have an IPI or a broadcast
   * pending that pollIpis has not looked at, so it need not load the control lines of all
   * 128 of them after every operation. Every way a request reaches those lines sets it: a
   * post by this thread (postIpi: its own sends, and what drainMailbox turns into per-CPU
   * bits, forwards included), a hardware broadcast from another thread (MB_SCAN in this
   * thread's MB_PEND, seen by drainMailbox), a CPU that a migration brings here with its words
   * (cpu_state_load, src/hw/preempt.ts). A pass that leaves a request pending (interrupts
   * off on its CPU) sets it again. It only spares loads: each CPU takes each request at
   * the same points as before.
   */
  ipiScan = true;
  /** How long a sender on this thread spins for its acknowledgements before it sleeps, in ms (0: only its first 32 polls; waitSpinMs) */
  readonly spinWaitMs: number;
  /** waits still to come that do not spin (spinWait), after spins that ended without the acknowledgements; and the next backoff */
  private spinSkip = 0;
  private spinBackoff = 0;
  constructor(V: Views, id: number, hooks: Hooks) {
    this.V = V;
    this.I = V.I;
    this.id = id;
    this.hooks = hooks;
    this.wake = hostWord(V.L, id, HB_WAKE);
    this.nhosts = V.L.shape.hosts;
    this.kickStamp = new Int32Array(this.nhosts);
    this.kickHosts = new Int32Array(this.nhosts);
    this.ackOwed = new Int32Array(V.L.shape.cpus);
    this.ackSenders = new Int32Array(V.L.shape.cpus);
    this.mbPend = V.L.mbox >= 0 ? mboxHdr(V.L, id) + MB_PEND : -1;
    this.mbScratch = new Int32Array(V.L.mbox >= 0 ? this.nhosts * V.L.mboxMaskWords : 0);
    this.mbHosts = new Int32Array(V.L.mbox >= 0 ? this.nhosts : 0);
    this.mbLocal = new Int32Array(V.L.mbox >= 0 ? V.L.shape.cpus : 0);
    this.spinWaitMs = waitSpinMs(V.L.mbox >= 0, this.nhosts);
    Atomics.store(this.I, hostWord(V.L, id, HB_WAITING_ON), -1);
  }

  /** Free mode with mailboxes: senders post to other threads' mailboxes (postIpis), not to each target. */
  get usesMailboxes(): boolean {
    return this.mbPend >= 0 && this.sched === null;
  }

  /**
   * The IPI words of this thread's CPUs (CC_IPI_MASK, CC_IPI_PENDING) are written by this
   * thread alone: there is one thread (inline), or free mode has mailboxes, where a sender on
   * another thread posts to this thread's mailbox and a forward goes to the mailbox of the
   * CPU's new thread (drainMailbox). A migration between threads hands a CPU's words over
   * inside the handshake (src/engine/migrate.ts: its phase words are atomics, and neither
   * thread polls between saving and loading). Then plain loads and stores do what the locked
   * ones did, at ~1 ns instead of ~10 (V8 calls a builtin for each Atomics operation): five
   * per target of a shootdown. Otherwise (a thread per CPU, deterministic mode) senders on
   * other threads OR into them directly, and the words stay atomic. The same premise makes
   * pollIpis' summary (ipiScan) sound.
   */
  get plainIpiWords(): boolean {
    return this.sched === null && (this.nhosts === 1 || this.mbPend >= 0);
  }

  /**
   * Wait until word `ack` (an IPI's or a broadcast's acknowledgement count) is 0, servicing
   * this thread's CPUs' IPIs meanwhile: 32 polls, then spin up to spinWaitMs (spinWait), then
   * sleep, woken by the acknowledging thread's kick.
   */
  waitAcks(ack: number): void {
    const I = this.I;
    const free = this.sched === null;
    let spinUntil = 0; // when the spin after the first 32 polls ends (0: no spin)
    let ranOut = false;
    for (let spin = 0; Atomics.load(I, ack) !== 0; spin++) {
      this.pollIpis();
      if (free && spin < 32) {
        Atomics.pause();
        continue;
      }
      if (spin === 32 && free && this.spinWait()) spinUntil = performance.now() + this.spinWaitMs;
      if (spinUntil !== 0 && !ranOut) {
        if (performance.now() < spinUntil) {
          Atomics.pause();
          continue;
        }
        ranOut = true; // the spin ran out: the next waits sleep at once for a while
        this.spinBackoff = Math.min(SPIN_MAX_BACKOFF, 2 * this.spinBackoff + 1);
        this.spinSkip = this.spinBackoff;
      }
      this.block(-1, () => Atomics.load(I, ack) === 0);
    }
    if (spinUntil !== 0 && !ranOut) this.spinBackoff = 0; // the acknowledgements came while it spun
  }

  /**
   * Whether this wait spins (before it sleeps): where spinWaitMs allows, and only while spinning
   * pays. A spin that runs out without the acknowledgements makes the next 1, 3, 7 ... up to
   * SPIN_MAX_BACKOFF waits sleep at once, as an adaptive mutex stops spinning on a holder that
   * does not run: with 17 CPUs on 2 threads the other thread's half of the targets took a
   * shootdown's IPI 104 us after the send, just when the sender's 100 us spin ran out: their
   * thread had taken its mailbox, was neither asleep nor waiting on a lock, and did not run
   * (samples of the threads' cores found the two on one core).
   */
  private spinWait(): boolean {
    if (this.spinWaitMs === 0) return false;
    if (this.spinSkip > 0) {
      this.spinSkip--;
      return false;
    }
    return true;
  }

  /**
   * Post `self`'s call-function IPI to targets[0..n) (free mode, mailboxes): the targets this
   * thread carries get their own CC_IPI_MASK / CC_IPI_PENDING bits, as before (lines this core
   * owns); those of each other thread go into that thread's mailbox as one slot of target bits,
   * posted and kicked first, so the other thread starts while this one posts its own. The
   * receiver (drainMailbox) turns them into the targets' own bits. Either way each target takes
   * the request at the same points as before: its next instruction boundary with interrupts on.
   */
  postIpis(targets: ArrayLike<number>, n: number, self: number): void {
    const I = this.I;
    const L = this.V.L;
    const me = this.id;
    const mw = L.mboxMaskWords;
    const scratch = this.mbScratch;
    let nLocal = 0;
    let nHosts = 0;
    for (let i = 0; i < n; i++) {
      const t = targets[i];
      const h = I[L.cpuHost + t];
      if (h === me) {
        this.mbLocal[nLocal++] = t;
        continue;
      }
      const at = h * mw + (t >> 5);
      if (scratch[at] === 0) {
        let first = true;
        for (let w = h * mw; w < h * mw + mw; w++) if (scratch[w] !== 0) first = false;
        if (first) this.mbHosts[nHosts++] = h;
      }
      scratch[at] |= 1 << (t & 31);
    }
    for (let k = 0; k < nHosts; k++) {
      const h = this.mbHosts[k];
      const slot = mboxSlot(L, h, self);
      for (let w = 0; w < mw; w++) {
        const bits = scratch[h * mw + w];
        if (bits === 0) continue;
        Atomics.or(I, slot + w, bits);
        scratch[h * mw + w] = 0;
      }
      this.postMailbox(h, self);
      this.kickHost(h);
    }
    for (let i = 0; i < nLocal; i++) this.postIpi(this.mbLocal[i], self);
  }

  /**
   * Post `sender`'s call-function IPI to CPU t's own mailbox: the sender's bit in t's
   * CC_IPI_MASK, then the word's bit in t's CC_IPI_PENDING (handleIpis takes them in that order).
   */
  postIpi(t: number, sender: number): void {
    const I = this.I;
    const ctl = cpuCtl(this.V.L, t, 0);
    if (this.plainIpiWords) {
      I[ctl + CC_IPI_MASK + (sender >> 5)] |= 1 << (sender & 31);
      I[ctl + CC_IPI_PENDING] |= 1 << (sender >> 5);
    } else {
      Atomics.or(I, ctl + CC_IPI_MASK + (sender >> 5), 1 << (sender & 31));
      Atomics.or(I, ctl + CC_IPI_PENDING, 1 << (sender >> 5));
    }
    this.ipiScan = true;
  }

  /**
   * Forward `sender`'s IPI for CPU t to host h, which carries t now (a migration between
   * threads traded it away after the sender read L.cpuHost): into h's mailbox, as the sender
   * would have posted it, so that only h writes t's own words (plainIpiWords); h is kicked
   * with this pass's other kicks.
   */
  private forwardIpi(h: number, t: number, sender: number): void {
    const I = this.I;
    const L = this.V.L;
    Atomics.or(I, mboxSlot(L, h, sender) + (t >> 5), 1 << (t & 31));
    this.postMailbox(h, sender);
    this.noteKick(t);
  }

  /**
   * Host h's mailbox holds `sender`'s slot: the sender's bit in MB_SENDERS, then its word's bit
   * in MB_PEND, after the slot's target bits (drainMailbox takes them in the reverse order).
   */
  private postMailbox(h: number, sender: number): void {
    const hdr = mboxHdr(this.V.L, h);
    Atomics.or(this.I, hdr + MB_SENDERS + (sender >> 5), 1 << (sender & 31));
    Atomics.or(this.I, hdr + MB_PEND, 1 << (sender >> 5));
  }

  /**
   * Take what other threads posted to this thread's mailbox (postIpis): each target's bit
   * becomes the sender's bit in the target's own CC_IPI_MASK, and the word's bit in its
   * CC_IPI_PENDING, where the CPU's usual checks take it. A bit for a CPU this thread no longer
   * carries (a migration between threads traded it away after the sender read L.cpuHost) goes
   * to the mailbox of the thread that does (forwardIpi). Called wherever a CPU of this thread looks for
   * IPIs (Cpu.sched_point, local_irq_enable, the access path, pollIpis).
   */
  drainMailbox(): void {
    if (this.mbPend < 0) return;
    const I = this.I;
    const L = this.V.L;
    const pend = this.mbPend;
    const senders = pend - MB_PEND + MB_SENDERS;
    const mw = L.mboxMaskWords;
    // the words in use, lowest first, as Cpu.handleIpis takes CC_IPI_PENDING
    for (let words = Atomics.exchange(I, pend, 0); words !== 0; words = Atomics.load(I, pend) === 0 ? 0 : Atomics.exchange(I, pend, 0)) {
      if ((words & MB_SCAN) !== 0) {
        this.ipiScan = true; // a broadcast sits in our CPUs' own words (Cpu.broadcast_invalidate)
        words &= ~MB_SCAN;
      }
      while (words !== 0) {
        const w = 31 - Math.clz32(words & -words);
        words &= ~(1 << w);
        let ss = Atomics.exchange(I, senders + w, 0);
        while (ss !== 0) {
          const b = 31 - Math.clz32(ss & -ss);
          ss &= ~(1 << b);
          const slot = mboxSlot(L, this.id, w * 32 + b);
          for (let tw = 0; tw < mw; tw++) {
            if (Atomics.load(I, slot + tw) === 0) continue;
            let tb = Atomics.exchange(I, slot + tw, 0);
            while (tb !== 0) {
              const tbit = 31 - Math.clz32(tb & -tb);
              tb &= ~(1 << tbit);
              const t = tw * 32 + tbit;
              const h = I[L.cpuHost + t];
              if (h === this.id) this.postIpi(t, w * 32 + b);
              else this.forwardIpi(h, t, w * 32 + b);
            }
          }
        }
      }
    }
    if (this.nKickHosts > 0 && !this.deferAcks) this.kickNoted();
  }

  /**
   * Service what is pending for every CPU this host carries: hardware broadcast
   * invalidations always, IPIs where interrupts are on.
   */
  pollIpis(): void {
    const cs = this.cpus;
    // free mode, several CPUs on this thread: one kick per sender thread for the pass (acked)
    const outer = this.sched === null && cs.length > 1 && !this.deferAcks;
    if (outer) this.deferAcks = true;
    try {
      if (this.mbPend >= 0 && this.I[this.mbPend] !== 0) this.drainMailbox();
      // with the summary (several CPUs here, whose words only this thread writes; broadcasts
      // say so with MB_SCAN): nothing new since the last pass, nothing to load
      if (this.ipiScan || cs.length === 1 || !this.plainIpiWords) {
        this.ipiScan = false;
        for (let i = 0; i < cs.length; i++) {
          const c = cs[i];
          if (this.I[c.ctl + CC_BC_PENDING] !== 0) c.handleBroadcasts();
          if (this.I[c.ctl + CC_IPI_PENDING] !== 0) {
            if (c.irqOff === 0) c.handleIpis();
            else this.ipiScan = true; // held until its interrupts are on: look again next pass
          }
        }
      }
    } finally {
      // every pass sends what it deferred, a nested one too (a handler that waits must not
      // hold back the acknowledgement or kick its partner waits for); the outermost ends
      // the deferring. No handler waits inside a pass: flush_tlb_func and the other
      // IPI_TYPES handlers only purge, so the acknowledgements all come at its end.
      if (this.nAckSenders > 0) this.postAcks();
      if (this.nKickHosts > 0) this.kickNoted();
      if (outer) this.deferAcks = false;
    }
  }

  /**
   * Sleep until this host's futex word changes (an IPI, an acknowledgement, a
   * release of the lock we wait on) or a short timeout; `ready` is rechecked after
   * registering so that no wake-up is lost. lockIdx is the word we are waiting on
   * (its waiter count is the next word), or -1.
   */
  block(lockIdx: number, ready: () => boolean): void {
    const I = this.I;
    const L = this.V.L;
    const seq = Atomics.load(I, this.wake);
    if (lockIdx >= 0) {
      Atomics.store(I, hostWord(L, this.id, HB_WAITING_ON), lockIdx);
      Atomics.add(I, lockIdx + 1, 1);
    }
    if (!ready()) {
      this.pollIpis();
      if (this.sched !== null) {
        if (!ready()) this.sched.blocked(current, seq);
      } else {
        Atomics.store(I, hostWord(L, this.id, HB_SLEEPING), 1);
        Atomics.wait(I, this.wake, seq, 20);
        Atomics.store(I, hostWord(L, this.id, HB_SLEEPING), 0);
      }
    }
    if (lockIdx >= 0) {
      Atomics.sub(I, lockIdx + 1, 1);
      Atomics.store(I, hostWord(L, this.id, HB_WAITING_ON), -1);
    }
    I[hostWord(L, this.id, HB_HEARTBEAT)]++;
  }

  /** Get the attention of the host that carries `cpu`. */
  kick(cpu: number): void {
    // read each time: a migration in deterministic mode moves a CPU to another host thread
    this.kickHost(this.I[cpuHostWord(this.V.L, cpu)]);
  }

  /**
   * After posting work to targets[0..n) (all CPUs but `self` when targets is null):
   * get the attention of each host thread that carries one, once. Free mode only
   * kicks each thread once (a sleeping thread costs a futex wake per kick: 105
   * of them for one shootdown to 256 CPUs on 2 threads); the kicks come after every
   * target's pending bit is set, so a thread woken by the first one cannot go back
   * to sleep before it sees the last. Deterministic mode kicks per CPU in the
   * order it always has (each kick marks the scheduler dirty: replays stay exact).
   */
  kickEachHost(targets: ArrayLike<number> | null, n: number, self: number): void {
    const L = this.V.L;
    const I = this.I;
    const det = this.sched !== null;
    const m = targets === null ? L.shape.cpus : n;
    for (let i = 0; i < m; i++) {
      const t = targets === null ? i : targets[i];
      if (t === self) continue;
      if (targets === null && !det && Atomics.load(I, cpuCtl(L, t, CC_ONLINE)) === 0) continue; // Cpu.exists
      if (det) this.kick(t);
      else {
        this.noteKick(t);
        if (this.nKickHosts === this.nhosts) break; // every thread is noted: the rest would read CC_HOST for nothing
      }
    }
    if (this.nKickHosts > 0) this.kickNoted();
  }

  /**
   * An IPI or broadcast acknowledgement was posted to `sender`: get its thread's
   * attention. Inside pollIpis in free mode the kicks are deferred to the end of the
   * pass, one per sender thread: a thread carrying 128 CPUs acknowledges a shootdown
   * 105 times in one pass, each a futex wake while the sender sleeps. Elsewhere (and in
   * deterministic mode, where each kick marks the scheduler dirty) at once, as before.
   */
  acked(sender: number): void {
    if (this.deferAcks) this.noteKick(sender);
    else this.kick(sender);
  }

  /**
   * This host's CPU ran `sender`'s IPI request: acknowledge it (the sender's CC_ACK counts
   * down to zero, smp_call_function_many's wait). Inside a free-mode pollIpis pass the
   * decrement waits for the end of the pass, one per sender (ackOwed); the sender waits
   * for every target anyway, so only when its last acknowledgement lands matters, and that
   * is the end of the pass that ran its last handler here.
   */
  ipiAcked(sender: number): void {
    if (this.deferAcks) {
      if (this.ackOwed[sender]++ === 0) this.ackSenders[this.nAckSenders++] = sender;
      return;
    }
    Atomics.sub(this.I, cpuCtl(this.V.L, sender, CC_ACK), 1);
    this.kick(sender);
  }

  private postAcks(): void {
    const I = this.I;
    const L = this.V.L;
    for (let k = 0; k < this.nAckSenders; k++) {
      const s = this.ackSenders[k];
      Atomics.sub(I, cpuCtl(L, s, CC_ACK), this.ackOwed[s]);
      this.ackOwed[s] = 0;
      this.noteKick(s);
    }
    this.nAckSenders = 0;
  }

  /** Note the host thread carrying `cpu` (read live, as kick does) for the next kickNoted, once. */
  private noteKick(cpu: number): void {
    const h = this.I[cpuHostWord(this.V.L, cpu)];
    if (this.kickStamp[h] === this.kickBatch) return;
    this.kickStamp[h] = this.kickBatch;
    this.kickHosts[this.nKickHosts++] = h;
  }

  /** Kick every noted host thread, and start a new batch. */
  private kickNoted(): void {
    for (let k = 0; k < this.nKickHosts; k++) this.kickHost(this.kickHosts[k]);
    this.nKickHosts = 0;
    this.kickBatch++;
  }

  kickHost(h: number): void {
    const L = this.V.L;
    Atomics.add(this.I, hostWord(L, h, HB_WAKE), 1);
    if (this.sched !== null) this.sched.kicked();
    if (Atomics.load(this.I, hostWord(L, h, HB_SLEEPING)) !== 0) Atomics.notify(this.I, hostWord(L, h, HB_WAKE));
  }

  /** A lock word was released and has waiters: wake the hosts blocked on it. */
  wakeWaiters(lockIdx: number): void {
    const L = this.V.L;
    for (let h = 0; h < this.nhosts; h++) {
      if (Atomics.load(this.I, hostWord(L, h, HB_WAITING_ON)) === lockIdx) this.kickHost(h);
    }
  }

  stopRequested(): boolean {
    return Atomics.load(this.I, this.V.L.header + H_STOP) !== 0;
  }
}

/** The CPU whose code this thread is executing right now (the kernel's `current` CPU). */
export let current: Cpu = undefined as unknown as Cpu;

/**
 * How long a waiting sender (an IPI's acknowledgements, a broadcast's) spins, polling, before it
 * sleeps on its futex word, in free mode with mailboxes (several CPUs on each of 2+ threads)
 * and no more threads than cores. The kernel's sender never sleeps (kernel/smp.c csd_lock_wait
 * spins); ours sleeps so that threads outnumbering the cores do not burn them, and pays a futex
 * wake-up on the last acknowledgement. Hosted, the other thread's ~128 handlers finish 15-40 us
 * after the sender's own thread's: a sender that slept after its 32 polls paid ~20 us of
 * wake-up in most shootdowns once the handlers got cheap (the 256-CPU hosted shootdown, 8 seeds
 * alternated: p50 31-90 us sleeping, 24-68 us spinning up to 100 us; lower in each pair). It
 * backs off where it does not pay (Host.spinWait). Not with one CPU per thread: there the tenth
 * session measured K = 1 and 4 worse with a 50 us spin when other work shared the cores
 * (docs/performance.md).
 */
const WAIT_SPIN_US = 100;
/** the most waits a run-out spin makes sleep at once (Host.spinWait) */
const SPIN_MAX_BACKOFF = 63;
function waitSpinMs(mailboxes: boolean, hosts: number): number {
  return mailboxes && hosts <= availableParallelism() ? WAIT_SPIN_US / 1000 : 0;
}

/** Read and zero word idx: a locked exchange, or a plain load and store where only this thread writes it (Host.plainIpiWords). */
function take(I: Int32Array, idx: number, plain: boolean): number {
  if (!plain) return Atomics.exchange(I, idx, 0);
  const v = I[idx];
  if (v !== 0) I[idx] = 0;
  return v;
}

function purge(tlb: Tlb, asid: number, startVpn: number, endVpn: number): void {
  if (asid < 0) tlb.flushAll();
  else if (endVpn < 0) tlb.flushAsid(asid);
  else tlb.flushRange(asid, startVpn, endVpn);
}
export function set_current(c: Cpu): void {
  current = c;
}

export class Cpu {
  readonly id: number;
  readonly host: Host;
  readonly V: Views;
  readonly I: Int32Array;
  readonly tlb: Tlb;
  readonly ring: EventRing;
  readonly ctl: number;
  readonly st: number;
  readonly rng: Rng;
  /** interrupts-disabled depth; IPIs are held while > 0 */
  irqOff = 0;
  /** interrupt (hardirq) nesting; in_interrupt() */
  inIrq = 0;
  /** softirq-disabled depth (spin_lock_bh); also counts as in_interrupt() */
  bhOff = 0;
  /** the mm whose tables this CPU walks: index, or -1 for init_mm */
  loadedMm = -1;
  asid = -1;
  /** the task running on this CPU now, or -1 (idle) */
  curTask = -1;
  /** per-ASID TLB generation this CPU has caught up with (cpu_tlbstate.ctxs[].tlb_gen) */
  readonly ctxGen: Int32Array;
  /** per-ASID context id this CPU's cached entries belong to (ASIDs are reused across mms) */
  readonly ctxId: Int32Array;
  /** arch backend state (lazy MMU batches etc.), owned by the arch module */
  arch: unknown = undefined;
  /** the fast_pte_range in force (src/mm/lazy_mmu.ts), or null */
  lazyRange: { mm: number; start: number; end: number; ptep: number; nptes: number } | null = null;
  delay: DelayConfig = { p: 0, maxSpins: 0 };
  /** set where a race may open without logging an event (a PTE write, a lock release): the deterministic scheduler's hot preemption reads and clears it */
  hotHint = 0;
  /** shootdown latencies (ns) measured by this CPU as a sender, up to lat.length samples */
  readonly lat = new Float64Array(1 << 16);
  nlat = 0;
  /** the store buffer (src/hw/store_buffer.ts): word indices and values, oldest first */
  readonly sbIdx = new Int32Array(SB_ENTRIES);
  readonly sbVal = new Int32Array(SB_ENTRIES);
  sbN = 0;
  /** preempt_disable() depth other than spinlocks and irqs (src/hw/preempt.ts) */
  preemptOff = 0;
  /** spinlocks held (preemption is off while > 0, except under PREEMPT_RT) */
  spinDepth = 0;
  /** the task that ran before the last context switch (the arch switch hooks' `prev`) */
  prevTask = -1;
  /** last value read by read() (valid when it returned true) */
  value = 0;
  /** set by read()/write() when the access ended in SIGSEGV */
  segv = false;
  /** the frame the last successful read()/write() reached (for the COW oracle's shadow) */
  lastPfn = 0;
  /**
   * Log every read and write in the event ring (READ/WRITE events). Only a traced
   * run needs them (its access counters and the accesses shown just before a
   * violation, src/report/trace_export.ts); an untraced run's ring keeps the
   * kernel's events (the last ones a violation report shows). Set by runHost.
   */
  logAccesses = false;
  // Hot counters of the access path (tlbHits, tlbMisses, reads, writes, walks),
  // kept in this thread's own fields and added to the shared statistics words by
  // publishStats() at operation boundaries and when the host finishes: a TLB hit
  // then stores nothing to shared memory but the data word it writes.
  hits = 0;
  misses = 0;
  reads = 0;
  writes = 0;
  walks = 0;
  // word indices of the layout, computed once (the access path adds a pfn or an mm to them)
  private readonly genBase: number;
  private readonly dataBase: number;
  private readonly prMaxBase: number;
  /**
   * the word the access path and the interrupt points check for IPIs posted to this thread's
   * mailbox (Host.mbPend); without mailboxes, the header's H_ZERO, always 0. (Not a per-CPU
   * word: a migration between threads changes this Cpu's id, not its thread.)
   */
  private readonly mbPend: number;

  constructor(host: Host, id: number, tlbEntries: number, seed: number) {
    this.id = id;
    this.host = host;
    this.V = host.V;
    this.I = host.V.I;
    this.tlb = new Tlb(tlbEntries);
    this.ring = new EventRing(host.V, id);
    this.ctl = cpuCtl(host.V.L, id, 0);
    this.st = statWord(host.V.L, id, 0);
    this.rng = new Rng(seed, id);
    this.ctxGen = new Int32Array(host.V.L.shape.maxMms);
    this.ctxId = new Int32Array(host.V.L.shape.maxMms);
    const L = host.V.L;
    this.genBase = frameWord(L, 0, FM_GEN);
    this.dataBase = dataWord(L, 0, 0);
    this.prMaxBase = mmWord(L, 0, MM_PR_MAX);
    this.mbPend = host.mbPend >= 0 ? host.mbPend : L.header + H_ZERO;
    Atomics.store(this.I, this.ctl + CC_ONLINE, 1);
  }

  /** the clock latencies are measured with: ns, or scheduler steps in deterministic mode */
  now: () => number = () => performance.now() * 1e6;

  recordLatency(ns: number): void {
    if (this.nlat < this.lat.length) this.lat[this.nlat++] = ns;
    else this.lat[this.rng.u32() % this.lat.length] = ns; // keep a uniform sample
  }

  stat(field: number, n = 1): void {
    this.I[this.st + field] += n;
  }

  /** Add the access path's private counters to this CPU's shared statistics words (an operation boundary, the end of a run). */
  publishStats(): void {
    const I = this.I;
    const st = this.st;
    if (this.hits !== 0) I[st + ST_TLB_HITS] += this.hits;
    if (this.misses !== 0) I[st + ST_TLB_MISSES] += this.misses;
    if (this.reads !== 0) I[st + ST_READS] += this.reads;
    if (this.writes !== 0) I[st + ST_WRITES] += this.writes;
    if (this.walks !== 0) I[st + ST_WALKS] += this.walks;
    this.hits = this.misses = this.reads = this.writes = this.walks = 0;
  }

  // ---- scheduling points and delay injection ---------------------------------
  /**
   * Called by kernel code at every shared access: a scheduling point (delay
   * injection widens race windows here) and, with interrupts on, a point where
   * a pending IPI is taken, as on a real CPU between instructions.
   */
  sched_point(): void {
    if (this.host.sched !== null) this.host.sched.point(this, true);
    else if (this.delay.p > 0 && this.rng.next() < this.delay.p) this.injectDelay();
    if (this.sbN !== 0) sb_tick(this); // issue #11: the store buffer drains when it will
    if (this.host.migrator !== null) this.host.migrator.poll(this); // issue #11: another thread's task may move here
    if (preemptLevel !== 0) maybe_preempt(this); // issue #11: preemption inside kernel code
    if (irqOdds !== 0 && this.irqOff === 0) maybe_irq(this); // issue #11: a device interrupt (src/hw/irq.ts)
    if (this.I[this.mbPend] !== 0) this.host.drainMailbox();
    if (this.I[this.ctl + CC_BC_PENDING] !== 0) this.handleBroadcasts();
    if (this.irqOff === 0 && this.I[this.ctl + CC_IPI_PENDING] !== 0) this.handleIpis();
  }

  /** The same inside one hardware instruction (a page walk, a TLB-hit access): delays, never interrupts. */
  hw_point(): void {
    if (this.host.sched !== null) this.host.sched.point(this);
    else if (this.delay.p > 0 && this.rng.next() < this.delay.p) this.injectDelay();
  }

  private injectDelay(): void {
    const n = 1 + Math.floor(this.rng.next() * this.delay.maxSpins);
    for (let i = 0; i < n; i++) Atomics.pause();
    this.I[this.st + ST_DELAYS]++;
  }

  // ---- interrupts ------------------------------------------------------------
  local_irq_disable(): void {
    this.irqOff++;
    this.I[this.ctl + CC_IRQS_OFF] = this.irqOff;
  }
  local_irq_enable(): void {
    this.irqOff--;
    this.I[this.ctl + CC_IRQS_OFF] = this.irqOff;
    if (this.irqOff === 0) {
      if (this.I[this.mbPend] !== 0) this.host.drainMailbox();
      if (this.I[this.ctl + CC_IPI_PENDING] !== 0) this.handleIpis();
    }
  }
  in_interrupt(): boolean {
    return this.inIrq > 0 || this.bhOff > 0;
  }

  /** Service this CPU's mailbox: run each sender's request, then acknowledge it. */
  handleIpis(): void {
    const I = this.I;
    const prev = current;
    current = this;
    if (this.sbN !== 0) sb_drain(this); // issue #11: interrupt entry serialises (src/hw/store_buffer.ts)
    this.inIrq++;
    this.irqOff++;
    const pend = this.ctl + CC_IPI_PENDING;
    // CC_IPI_PENDING names the mask words in use (a sender sets its mask bit, then the word's
    // bit here): a bit set after our exchange is seen by the next round, whose mask bits may
    // already have been taken by this one (an empty word then). The re-check loads before it
    // exchanges: usually nothing came meanwhile, and a locked exchange costs more than a load.
    const plain = this.host.plainIpiWords;
    for (let words = take(I, pend, plain); words !== 0; words = (plain ? I[pend] : Atomics.load(I, pend)) === 0 ? 0 : take(I, pend, plain)) {
      while (words !== 0) {
        const w = 31 - Math.clz32(words & -words); // the lowest word first, as the loop over all eight went
        words &= ~(1 << w);
        let bits = take(I, this.ctl + CC_IPI_MASK + w, plain);
        while (bits !== 0) {
          const b = 31 - Math.clz32(bits);
          bits &= ~(1 << b);
          const sender = w * 32 + b;
          // the request is read with plain loads, after our exchange of the mask word (the
          // kernel's IPI handlers read the sender's call_single_data / flush_tlb_info so)
          const req = cpuCtl(this.V.L, sender, 0);
          const type = I[req + CC_INFO_TYPE];
          I[this.st + ST_IPI_RECV]++;
          this.ring.log(EV_IPI_HANDLE, sender, I[req + CC_INFO_MM]);
          this.host.hooks.ipi[type](this, sender);
          this.ring.log(EV_IPI_DONE, sender, 0);
          this.host.ipiAcked(sender);
        }
      }
    }
    this.irqOff--;
    this.inIrq--;
    current = prev;
  }

  /**
   * Send a call-function IPI to `targets` and wait until each has run the handler
   * (smp_call_function_many with wait=true). The caller has written its request
   * (CC_INFO_*) first. Interrupts must be on: the sender services IPIs while it waits.
   */
  send_ipis_and_wait(targets: ArrayLike<number>, n: number, type: number): void {
    const I = this.I;
    if (this.irqOff > 0) {
      this.host.hooks.violation({
        kind: 'ipi-with-irqs-off', cpu: this.id,
        message: `cpu ${this.id} waits for IPI acknowledgements with interrupts disabled (deadlock hazard: docs/kernel-rules.md#flush-rules T5)`,
      });
    }
    Atomics.store(I, this.ctl + CC_INFO_TYPE, type);
    Atomics.store(I, this.ctl + CC_ACK, n);
    if (this.host.usesMailboxes) this.host.postIpis(targets, n, this.id);
    else {
      for (let i = 0; i < n; i++) this.host.postIpi(targets[i], this.id);
      this.host.kickEachHost(targets, n, this.id);
    }
    this.I[this.st + ST_IPI_SENT] += n;
    const ack = this.ctl + CC_ACK;
    this.host.waitAcks(ack);
  }

  /**
   * A TLB shootdown of mm to `targets` (the request is in this CPU's CC_INFO
   * area): send, wait for every acknowledgement, record the latency.
   */
  shootdown(mm: number, targets: ArrayLike<number>, n: number, type: number): void {
    this.ring.log(EV.IPI_SEND, mm, n);
    const t0 = this.now();
    this.send_ipis_and_wait(targets, n, type);
    const ns = this.now() - t0;
    this.recordLatency(ns);
    this.I[this.st + ST_SHOOTDOWNS]++;
    this.ring.log(EV.SHOOTDOWN_DONE, mm, ns);
  }

  // ---- hardware broadcast invalidation (arm64 TLBI+DSB, powerpc tlbie, s390 IPTE) ----
  /**
   * Invalidate [startVpn, endVpn) of asid (endVpn -1: the whole ASID; asid -1:
   * everything) in every CPU's TLB, and return only when every CPU has purged:
   * the instruction (with its completing barrier) does not finish before that.
   * No IPIs: targets purge at their next instruction boundary, with interrupts
   * on or off.
   */
  broadcast_invalidate(asid: number, startVpn: number, endVpn: number): void {
    const I = this.I;
    const F = this.V.F;
    const L = this.V.L;
    const n = L.shape.cpus;
    I[this.ctl + CC_BC_ASID] = asid;
    F[(this.ctl + CC_BC_START_F) >> 1] = startVpn;
    F[(this.ctl + CC_BC_END_F) >> 1] = endVpn;
    // every CPU that exists (at boot and teardown only the main thread's does)
    let targets = 0;
    for (let t = 0; t < n; t++) if (t !== this.id && this.exists(t)) targets++;
    Atomics.store(I, this.ctl + CC_BC_ACK, targets);
    const word = this.id >> 5;
    const bit = 1 << (this.id & 31);
    for (let t = 0; t < n; t++) {
      if (t === this.id || !this.exists(t)) continue;
      Atomics.or(I, cpuCtl(L, t, CC_BC_MASK + word), bit);
      Atomics.or(I, cpuCtl(L, t, CC_BC_PENDING), 1 << word);
    }
    // the CPUs' own words were written directly, not through a mailbox: each thread's
    // pollIpis must look at its CPUs again (Host.ipiScan)
    this.host.ipiScan = true;
    if (L.mbox >= 0) for (let h = 0; h < L.shape.hosts; h++) if (h !== this.host.id) Atomics.or(I, mboxHdr(L, h) + MB_PEND, MB_SCAN);
    this.host.kickEachHost(null, n, this.id);
    purge(this.tlb, asid, startVpn, endVpn);
    I[this.st + ST_BCAST_SENT]++;
    const ack = this.ctl + CC_BC_ACK;
    this.host.waitAcks(ack);
  }

  /**
   * CPU t exists (a Cpu object carries it on some running host): hardware
   * broadcasts and kernel-wide IPIs reach it. In deterministic mode every CPU of
   * the machine does from the start: its thread may not have built it yet when
   * an early flush_tlb_kernel_range is issued, and the number of targets must
   * not depend on thread start-up times (the schedule would not replay); the
   * scheduler runs it, and it takes the request at its first boundary.
   */
  exists(t: number): boolean {
    return this.host.sched !== null || Atomics.load(this.I, cpuCtl(this.V.L, t, CC_ONLINE)) !== 0;
  }

  /** Purge what other CPUs' broadcasts ask for (at an instruction boundary). */
  handleBroadcasts(): void {
    const I = this.I;
    const F = this.V.F;
    const L = this.V.L;
    const pend = this.ctl + CC_BC_PENDING;
    // the words in use, as in handleIpis
    for (let words = Atomics.exchange(I, pend, 0); words !== 0; words = Atomics.load(I, pend) === 0 ? 0 : Atomics.exchange(I, pend, 0)) {
      while (words !== 0) {
        const w = 31 - Math.clz32(words & -words); // the lowest word first, as the loop over all eight went
        words &= ~(1 << w);
        let bits = Atomics.exchange(I, this.ctl + CC_BC_MASK + w, 0);
        while (bits !== 0) {
          const b = 31 - Math.clz32(bits);
          bits &= ~(1 << b);
          const issuer = w * 32 + b;
          const req = cpuCtl(L, issuer, 0);
          purge(this.tlb, I[req + CC_BC_ASID], F[(req + CC_BC_START_F) >> 1], F[(req + CC_BC_END_F) >> 1]);
          I[this.st + ST_BCAST_RECV]++;
          Atomics.sub(I, req + CC_BC_ACK, 1);
          this.host.acked(issuer);
        }
      }
    }
  }

  // ---- memory access: TLB -> walk -> fault -----------------------------------
  /** Read the word at va. Returns false on SIGSEGV; the value is in this.value. */
  read(va: number): boolean {
    const at = this.hitWord(va, false);
    if (at < 0) return this.access(va, false, 0);
    // A plain load, as the CPU's MOV is (V8 compiles it to one; Atomics.load is a
    // call that cost as much as the rest of the TLB hit): the simulated program's
    // load, in program order after the generation check, which is a plain load too.
    this.value = this.I[at];
    this.reads++;
    return true;
  }

  /** Write value at va. Returns false on SIGSEGV. */
  write(va: number, value: number): boolean {
    const at = this.hitWord(va, true);
    if (at < 0) return this.access(va, true, value);
    Atomics.store(this.I, at, value);
    this.writes++;
    return true;
  }

  /**
   * The TLB hit of access(), small enough for V8 to inline into the caller's
   * loop: the data word's index when the access is a plain hit, or -1 when
   * anything else is in play (an IPI or broadcast pending, tracing, a
   * scheduler or delay at hw_point, a miss, a write needing a walk, a frame
   * generation that differs (the UAF oracle reports it on the full path), an
   * entry the stale-TLB oracle must judge): then access() does it all from the
   * start. It checks everything access() checks on a hit, in the same order,
   * and changes nothing before it commits.
   */
  private hitWord(va: number, write: boolean): number {
    const I = this.I;
    if (I[this.ctl + CC_BC_PENDING] !== 0 || I[this.ctl + CC_IPI_PENDING] !== 0 || I[this.mbPend] !== 0) return -1;
    if (this.logAccesses || this.host.sched !== null || this.delay.p > 0) return -1;
    const tlb = this.tlb;
    const s = tlb.lookup(this.asid, Math.floor(va / PAGE_SIZE));
    if (s < 0 || (write && (tlb.flags[s] & (TLB_W | TLB_D)) !== (TLB_W | TLB_D))) return -1;
    const pfn = tlb.pfn[s];
    if (I[this.genBase + pfn * FRAME_META_WORDS] !== tlb.gen[s]) return -1;
    const mm = this.loadedMm;
    if (mm >= 0) {
      const pm = I[this.prMaxBase + mm * MM_WORDS];
      if (tlb.stamp[s] < pm && tlb.chk[s] !== pm && this.host.hooks.stale_use !== undefined) return -1;
    }
    this.segv = false;
    this.hits++;
    this.lastPfn = pfn;
    return this.dataBase + pfn * WORDS_PER_PAGE + ((va >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1));
  }

  access(va: number, write: boolean, value: number): boolean {
    const I = this.I;
    if (I[this.mbPend] !== 0) this.host.drainMailbox();
    if (I[this.ctl + CC_BC_PENDING] !== 0) this.handleBroadcasts();
    if (I[this.ctl + CC_IPI_PENDING] !== 0 && this.irqOff === 0) this.handleIpis();
    this.segv = false;
    const vpn = Math.floor(va / PAGE_SIZE);
    let asid = this.asid;
    let tlb = this.tlb;
    const word = (va >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1);
    // A real CPU retries the access until it completes; the kernel guarantees
    // progress only eventually (a fork on another CPU may write-protect the
    // entry again between our fault and the retry, over and over while it
    // keeps forking). Give up only after far more retries than any fair run
    // needs, and say so.
    for (let attempt = 0; attempt < MAX_FAULT_RETRIES; attempt++) {
      let s = tlb.lookup(asid, vpn);
      if (s >= 0 && (!write || (tlb.flags[s] & (TLB_W | TLB_D)) === (TLB_W | TLB_D))) {
        this.hits++;
      } else {
        if (s < 0) this.misses++;
        s = walk(this, this.loadedMm, va, vpn, write);
        if (s < 0) {
          I[this.st + ST_FAULTS]++;
          this.ring.log(EV.FAULT, va, write ? 1 : 0);
          const r = this.host.hooks.fault(this, va, write);
          this.ring.log(EV.FAULT_END, va, r);
          if (r !== VM_FAULT_OK) {
            I[this.st + ST_SEGV]++;
            this.ring.log(EV.SEGV, va, r);
            this.segv = true;
            return false;
          }
          // the task may have migrated inside the fault handler (src/hw/preempt.ts
          // migrate_swap): the access is retried on the CPU it runs on now
          asid = this.asid;
          tlb = this.tlb;
          continue;
        }
      }
      // A delay here widens the window between translation and use: a stale
      // entry is used exactly as a slow CPU would use it.
      this.hw_point();
      const pfn = tlb.pfn[s];
      this.lastPfn = pfn;
      // the UAF oracle, on every access: the frame's generation now against the one the entry was filled with
      const gen = I[this.genBase + pfn * FRAME_META_WORDS];
      if (gen !== tlb.gen[s]) this.staleTlbAccess(va, pfn, s, gen, write);
      // stale-TLB oracle hook: an entry filled before the mm's last promised change
      // (and not judged since) is checked against the page tables, off the fast path
      else if (this.loadedMm >= 0) {
        const pm = I[this.prMaxBase + this.loadedMm * MM_WORDS];
        if (tlb.stamp[s] < pm && tlb.chk[s] !== pm && this.host.hooks.stale_use !== undefined) this.host.hooks.stale_use(this, s, va, write);
      }
      const at = this.dataBase + pfn * WORDS_PER_PAGE + word;
      if (write) {
        Atomics.store(I, at, value);
        this.writes++;
        if (this.logAccesses) this.ring.log(EV.WRITE, va, value);
      } else {
        this.value = I[at]; // a plain load, as in read()
        this.reads++;
        if (this.logAccesses) this.ring.log(EV.READ, va, this.value);
      }
      return true;
    }
    throw new Error(`cpu ${this.id}: access to 0x${va.toString(16)} faulted ${MAX_FAULT_RETRIES} times without progress (livelock)`);
  }

  // ---- kernel accesses to kernel addresses (vmalloc, kernel stacks, the linear map) ----
  /**
   * A load by kernel code from a kernel address (src/mm/vmalloc.ts): the TLB's
   * global entries, else a walk of init_mm (walk_kernel), else a kernel
   * translation fault (hooks.kernel_fault: the arch may call it spurious and
   * retry, else it is the oops "unable to handle kernel paging request").
   * Returns false after an oops; the value is in this.value. Separate from
   * read()/write(): the user TLB-hit path is unchanged.
   */
  kread(va: number): boolean {
    return this.kaccess(va, false, 0);
  }
  kwrite(va: number, value: number): boolean {
    return this.kaccess(va, true, value);
  }
  private kaccess(va: number, write: boolean, value: number): boolean {
    const I = this.I;
    this.sched_point();
    const vpn = Math.floor(va / PAGE_SIZE);
    const word = (va >>> WORD_SHIFT) & (WORDS_PER_PAGE - 1);
    for (let attempt = 0; attempt < MAX_FAULT_RETRIES; attempt++) {
      let s = this.tlb.lookup(KERNEL_ASID, vpn);
      if (s < 0) {
        s = walk_kernel(this, va, vpn, write);
        if (s < 0) {
          I[this.st + ST_FAULTS]++;
          this.ring.log(EV.FAULT, va, write ? 1 : 0);
          const retry = this.host.hooks.kernel_fault?.(this, va, write) ?? false;
          this.ring.log(EV.FAULT_END, va, retry ? 0 : 1);
          if (!retry) return false;
          continue;
        }
      }
      this.hw_point();
      const pfn = this.tlb.pfn[s];
      // the UAF oracle: a vmalloc entry filled before its frame was freed (a linear-map
      // entry always names the same frame: a stale one is still the right translation)
      const gen = I[this.genBase + pfn * FRAME_META_WORDS];
      if (gen !== this.tlb.gen[s] && (this.tlb.flags[s] & TLB_LINEAR) === 0) this.staleTlbAccess(va, pfn, s, gen, write);
      const at = this.dataBase + pfn * WORDS_PER_PAGE + word;
      if (write) Atomics.store(I, at, value);
      else this.value = Atomics.load(I, at);
      return true;
    }
    throw new Error(`cpu ${this.id}: kernel access to 0x${va.toString(16)} faulted ${MAX_FAULT_RETRIES} times without progress (livelock)`);
  }

  private staleTlbAccess(va: number, pfn: number, slot: number, gen: number, write: boolean): void {
    const L = this.V.L;
    const freed = (Atomics.load(this.I, frameWord(L, pfn, FM_FLAGS)) & PG_FREE) !== 0;
    const freer = Atomics.load(this.I, frameWord(L, pfn, FM_OWNER)) - 1; // cpu that freed it
    this.host.hooks.violation({
      kind: 'uaf-stale-tlb',
      cpu: this.id,
      va,
      pfn,
      cpus: freer >= 0 && freer !== this.id ? [freer] : [],
      message:
        `cpu ${this.id} ${write ? 'wrote' : 'read'} 0x${va.toString(16)} through a stale TLB entry: ` +
        `pfn ${pfn} was filled at generation ${this.tlb.gen[slot]} but the frame is now at generation ${gen} ` +
        `(${freed ? 'free' : 'freed and reallocated'}${freer >= 0 ? `, last freed by cpu ${freer}` : ''})`,
    });
  }

  /** The ASID of an mm (stable for the mm's life). */
  asidOf(mm: number): number {
    return this.I[mmWord(this.V.L, mm, MM_ASID)];
  }

  setLoaded(mm: number, lazy: boolean): void {
    this.loadedMm = mm;
    this.asid = mm >= 0 ? this.asidOf(mm) : -1;
    Atomics.store(this.I, this.ctl + CC_LOADED_MM, mm);
    Atomics.store(this.I, this.ctl + CC_IS_LAZY, lazy ? 1 : 0);
  }
}

