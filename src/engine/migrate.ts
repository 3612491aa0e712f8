// Migration of a preempted task to a CPU another host thread carries (issue #11).
//
// kernel/sched/core.c may resume a preempted task on any CPU its affinity allows. Here a
// task's kernel stack is its thread's JavaScript stack and cannot leave the thread, so
// the two threads trade CPUs instead, as migrate_swap() trades two tasks: the preempted
// task's thread (A) takes the identity of a CPU whose thread (B) is at a point where its
// own task may be preempted (a preemption point of kernel code, or an operation
// boundary: user mode; never with migration disabled), and B takes the identity of the
// CPU A's task left. What is thread-local and belongs to a CPU crosses in shared memory
// (src/hw/preempt.ts cpu_state_save / cpu_state_load); per-CPU words follow the id.
//
// A CPU's state is saved only once nothing will change it before the other side loads
// it: its thread no longer takes that CPU's broadcasts or IPIs from the save until the
// other thread has loaded it (a flush taken after the save would be lost, and a stale
// entry come back). Senders of IPIs to either CPU wait meanwhile, a few microseconds.
//
// Deterministic mode runs the handshake through the token (src/engine/det.ts); free mode
// through the words below, one migration at a time machine-wide, with one thread per CPU or
// hosted (several CPUs per thread: B answers for any of its CPUs at an operation boundary,
// where every CPU of the thread but the one that just ran is in user mode or idle, and for the
// CPU running kernel code at that CPU's preemption points).

import { type Cpu, type Host, type Migrator, set_current } from '../hw/cpu.ts';
import {
  type Views, type Layout, cpuCtl, taskWord, hostWord, cpuHostWord, T_CPU, H_STOP, ST_MIGRATIONS, ST_THREAD_MIGRATIONS, CC_ONLINE, HB_SLEEPING,
  MIG_HDR, MIG_PHASE, MIG_FROM, MIG_TO, MIG_TICKET, migSlotWords,
} from '../hw/layout.ts';
import { switch_out, switch_in, cpu_state_save, cpu_state_load, preemptLevel, preemptible, can_trade_task } from '../hw/preempt.ts';
import { lockdep_swap_cpus } from '../hw/lockdep.ts';
import { EV } from '../hw/trace.ts';
import { XenPvCpu } from '../arch/x86-xenpv/index.ts';
import { ppc64_tlb_batch } from '../arch/powerpc-hash/index.ts';
import { S390Cpu } from '../arch/s390/index.ts';
import { Arm64Cpu } from '../arch/arm64/index.ts';
import { tlb_batch } from '../arch/sparc64/index.ts';

/** The arch modules' per-CPU state classes (Cpu.arch), rebuilt on the thread a CPU moves to. */
export const ARCH_CPU_STATE: Record<string, new () => object> = Object.fromEntries(
  [XenPvCpu, ppc64_tlb_batch, S390Cpu, Arm64Cpu, tlb_batch].map((K) => [K.name, K]),
);

/** Write a serialized CPU state into slot k of the region: [length in bytes, bytes...]; false if it does not fit. */
export function put_slot(V: Views, k: number, bytes: Uint8Array): boolean {
  const words = migSlotWords(V.L.shape);
  const at = V.L.migrate + MIG_HDR + k * words;
  if (bytes.length > (words - 1) * 4) return false;
  V.I[at] = bytes.length;
  new Uint8Array(V.I.buffer, (at + 1) * 4, bytes.length).set(bytes);
  return true;
}

export function get_slot(V: Views, k: number): Uint8Array {
  const at = V.L.migrate + MIG_HDR + k * migSlotWords(V.L.shape);
  return new Uint8Array(V.I.buffer, (at + 1) * 4, V.I[at]).slice();
}

// free-mode phases
const IDLE = 0;
const CLAIMED = 1; // A owns the handshake, filling it in
export const ASKED = 2; // B may take it
const TAKEN = 3; // B is switching its task out (A still takes its CPU's interrupts)
const B_SAVED = 4; // B saved its CPU; A stops taking interrupts and saves its own
const A_SAVED = 5; // B loads A's CPU
const B_LOADED = 6; // A loads B's CPU
/** the phase in the low bits of the phase word (phaseWord) */
const PHASE_MASK = 15;
/** tickets run 1 .. TICKET_MAX - 1, then start again */
const TICKET_MAX = 1 << 18;

/**
 * The phase word of handshake `ticket`, asked of CPU `to`, in `phase`: the phase in the low
 * bits, the target CPU + 1 above them, the ticket above that (IDLE and CLAIMED carry neither).
 * Every step of a handshake compares against the whole word of its own ticket, so no thread
 * can act on a handshake that ended while it was off the core. When the word was the phase
 * alone, B could read MIG_TO, lose the core, and then claim another request in its place:
 * A withdrew (ASKED -> IDLE), another thread claimed the handshake and asked for another CPU
 * (-> ASKED again), and B's ASKED -> TAKEN succeeded for the wrong CPU. B then saved its own
 * CPU X while the asking thread, loading slot 1 as its MIG_TO Y, became a second CPU Y with
 * X's TLB: Y's flushes went to the other thread that was Y, and X's translations stayed in use
 * unflushed, a uaf-stale-tlb no kernel could cause. The same went for an A that, off the core
 * while its handshake was called off, came back to a later handshake's B_SAVED. Found from the
 * ring of such a report (2026-12-06, munmap-vs-access, 8 CPUs one thread each): CPU 7's events
 * jumped from #52456 to #65097, the event ring position of another CPU's saved state.
 */
export const phaseWord = (phase: number, to: number, ticket: number): number => phase | ((to + 1) << 4) | (ticket << 13);

/**
 * How long a preempted task waits for the CPU it asked to answer before it stays where it is,
 * and how far a thread backs off after unanswered asks (it skips up to MAX_SKIP of its next
 * chances, doubling each time): on a loaded host the asked thread is often off the cores, and
 * each wait is time the asking CPU runs nothing (dirty-cow on arm64, 4 threads, delay 0.2: 24%
 * of one thread's run in 660 asks with a 2 ms window; one seed in 70 ran past 90 s under load).
 */
const ASK_MS = 0.5;
const MAX_SKIP = 63;
/**
 * Of the preemptions that may migrate (1 in MIGRATE_ODDS, src/hw/preempt.ts), 1 in ASK_ODDS asks
 * another thread: a handshake that succeeds costs both threads a few OS wake-ups (about 10 ms
 * each here, 4 worker threads on 2 cores), against microseconds for a move within one thread.
 */
const ASK_ODDS = 4;

/**
 * Free mode with one thread per CPU. B looks for a request addressed to its CPU at its
 * preemption points and operation boundaries (Cpu.sched_point, the op loop): two plain
 * loads. A that is not answered within ASK_MS withdraws (its task stays).
 */
export class FreeMigrator implements Migrator {
  private readonly V: Views;
  private readonly I: Int32Array;
  private readonly L: Layout;
  private readonly h: number;
  private readonly host: Host;
  /** chances still to skip after unanswered asks, and the next backoff */
  private skip = 0;
  private backoff = 0;
  constructor(V: Views, host: Host) {
    this.V = V;
    this.I = V.I;
    this.L = V.L;
    this.h = V.L.migrate;
    this.host = host;
  }

  /**
   * Wait for the other thread's next step without holding a core it may need (this machine
   * runs more threads than cores): a few spins, then sleeps that its kick ends at once.
   */
  private sleep_until(done: () => boolean): void {
    const I = this.I;
    const sleeping = hostWord(this.L, this.host.id, HB_SLEEPING);
    for (let spin = 0; !done(); spin++) {
      if (spin < 64) {
        Atomics.pause();
        continue;
      }
      const seq = Atomics.load(I, this.host.wake);
      Atomics.store(I, sleeping, 1);
      if (!done()) Atomics.wait(I, this.host.wake, seq, 1);
      Atomics.store(I, sleeping, 0);
    }
  }

  /**
   * B: called where `running`'s task could be preempted (a preemption point of kernel code), or
   * at an operation boundary (`boundary`: its task is back in user mode); takes a request
   * addressed to it, or at a boundary to any CPU of this thread that can give up its task
   * there (each is between operations, as migration_target in src/hw/preempt.ts has it).
   */
  poll(running: Cpu, boundary = false): void {
    const I = this.I;
    const h = this.h;
    const seen = I[h + MIG_PHASE];
    if ((seen & PHASE_MASK) !== ASKED || preemptLevel === 0) return;
    const want = ((seen >>> 4) & 511) - 1;
    let cpu = running;
    if (want !== running.id) {
      if (!boundary) return;
      const cs = this.host.cpus;
      let k = 0;
      while (k < cs.length && cs[k].id !== want) k++;
      if (k === cs.length) return;
      cpu = cs[k];
      if (!can_trade_task(cpu)) return;
    } else if (cpu.spinDepth !== 0 || !preemptible(cpu)) return;
    if (!this.claim_request(seen)) return; // withdrawn, or another request since
    if (cpu !== running) set_current(cpu); // the context switches below run on the CPU that gives its task up
    try {
      this.take(cpu, seen >>> 13);
    } finally {
      if (cpu !== running) set_current(running);
    }
  }

  /**
   * B claims the request whose phase word it read (phaseWord): false when that request was
   * withdrawn, even if another, for any CPU, has been posted since. Public for its test.
   */
  claim_request(seen: number): boolean {
    const taken = phaseWord(TAKEN, ((seen >>> 4) & 511) - 1, seen >>> 13);
    return Atomics.compareExchange(this.I, this.h + MIG_PHASE, seen, taken) === seen;
  }

  /** B's half, for `cpu` (its task switched out, the identities traded, its task switched back in). */
  private take(cpu: Cpu, ticket: number): void {
    const I = this.I;
    const h = this.h;
    const L = this.L;
    const from = I[h + MIG_FROM];
    const to = cpu.id;
    const bSaved = phaseWord(B_SAVED, to, ticket);
    const tb = cpu.curTask;
    cpu.preemptOff++; // __schedule runs with preemption off
    switch_out(cpu); // its task leaves CPU `to` (to idle: lazy TLB)
    if (!put_slot(this.V, 1, cpu_state_save(cpu))) {
      // larger than the slot (the layout sizes it from the TLB): the task stays; A sees the handshake called off
      Atomics.store(I, h + MIG_PHASE, IDLE);
      if (tb >= 0) switch_in(cpu, tb);
      cpu.preemptOff--;
      return;
    }
    Atomics.store(I, h + MIG_PHASE, bSaved);
    this.host.kickHost(I[cpuHostWord(L, from)]);
    // the run is stopping (A's thread may be gone): call it off unless A has answered
    this.sleep_until(() => Atomics.load(I, h + MIG_PHASE) !== bSaved ||
      (Atomics.load(I, L.header + H_STOP) !== 0 && Atomics.compareExchange(I, h + MIG_PHASE, bSaved, IDLE) === bSaved));
    const hostFrom = I[cpuHostWord(L, from)];
    if (Atomics.load(I, h + MIG_PHASE) === phaseWord(A_SAVED, to, ticket)) {
      lockdep_swap_cpus(from, to);
      cpu_state_load(cpu, from, get_slot(this.V, 0), ARCH_CPU_STATE);
      I[cpuHostWord(L, from)] = this.host.id;
      I[cpuHostWord(L, to)] = hostFrom;
      if (tb >= 0) I[taskWord(L, tb, T_CPU)] = from;
      Atomics.store(I, h + MIG_PHASE, phaseWord(B_LOADED, to, ticket));
      this.host.kickHost(hostFrom);
    }
    if (tb >= 0) {
      switch_in(cpu, tb);
      if (cpu.id !== to) {
        cpu.stat(ST_MIGRATIONS);
        cpu.stat(ST_THREAD_MIGRATIONS);
        cpu.ring.log(EV.MIGRATE, tb, to);
      }
    }
    cpu.preemptOff--;
  }

  /** A: the preempted (switched-out) task of `cpu` asks another CPU's thread to trade; true when it moved. */
  migrate(cpu: Cpu, _task: number): boolean {
    const I = this.I;
    const L = this.L;
    const h = this.h;
    const n = L.shape.cpus;
    if (this.skip > 0) {
      this.skip--;
      return false;
    }
    if (cpu.rng.u32() % ASK_ODDS !== 0) return false;
    if (Atomics.compareExchange(I, h + MIG_PHASE, IDLE, CLAIMED) !== IDLE) return false; // another migration is under way
    // a CPU another thread carries (hosted: the caller chose to leave the thread; a few draws
    // find one, as half or more of the CPUs are elsewhere)
    let to = -1;
    for (let k = 0; k < 8 && to < 0; k++) {
      const t = (cpu.id + 1 + (cpu.rng.u32() % (n - 1))) % n;
      if (I[cpuHostWord(L, t)] !== this.host.id) to = t;
    }
    if (to >= 0 && Atomics.load(I, cpuCtl(L, to, CC_ONLINE)) === 0) to = -1;
    if (to < 0) {
      Atomics.store(I, h + MIG_PHASE, IDLE);
      return false;
    }
    const from = cpu.id;
    const ticket = (I[h + MIG_TICKET] % (TICKET_MAX - 1)) + 1;
    I[h + MIG_TICKET] = ticket;
    I[h + MIG_FROM] = from;
    I[h + MIG_TO] = to;
    const asked = phaseWord(ASKED, to, ticket);
    const taken = phaseWord(TAKEN, to, ticket);
    const bSaved = phaseWord(B_SAVED, to, ticket);
    Atomics.store(I, h + MIG_PHASE, asked);
    this.host.kick(to);
    const deadline = performance.now() + ASK_MS;
    for (let spin = 0; ; spin++) {
      const seq = Atomics.load(I, this.host.wake);
      const p = Atomics.load(I, h + MIG_PHASE);
      if (p === asked && (performance.now() > deadline || Atomics.load(I, L.header + H_STOP) !== 0)) {
        if (Atomics.compareExchange(I, h + MIG_PHASE, asked, IDLE) === asked) { // withdrawn: not taken
          this.backoff = Math.min(MAX_SKIP, 2 * this.backoff + 1);
          this.skip = this.backoff;
          return false;
        }
        continue;
      }
      if (p === bSaved) break;
      if (p !== taken && p !== asked) return false; // B called it off (IDLE), and perhaps another handshake began since
      // what an idle CPU does while B switches its task out (B may wait for us: a broadcast, an IPI)
      this.host.pollIpis();
      // short sleeps: the deadline is checked each time round (host.block sleeps up to 20 ms)
      if (spin > 64) Atomics.wait(I, this.host.wake, seq, 0.05);
      else Atomics.pause();
    }
    if (!put_slot(this.V, 0, cpu_state_save(cpu))) {
      // larger than the slot: call it off (B switches its task back in where it was)
      if (Atomics.compareExchange(I, h + MIG_PHASE, bSaved, IDLE) === bSaved) return false;
    }
    if (Atomics.compareExchange(I, h + MIG_PHASE, bSaved, phaseWord(A_SAVED, to, ticket)) !== bSaved) return false; // B called it off (the run is stopping)
    this.host.kick(to); // B waits for A_SAVED, then always loads
    const bLoaded = phaseWord(B_LOADED, to, ticket);
    this.sleep_until(() => Atomics.load(I, h + MIG_PHASE) === bLoaded);
    lockdep_swap_cpus(from, to); // the held locks stay with the task (this thread)
    cpu_state_load(cpu, to, get_slot(this.V, 1), ARCH_CPU_STATE);
    Atomics.store(I, h + MIG_PHASE, IDLE);
    this.backoff = 0;
    return true;
  }
}
