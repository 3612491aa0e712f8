// Deterministic mode: the same worker threads (one per CPU), but a token in
// shared memory lets exactly one CPU run at a time. At every scheduling point
// the token holder asks a seeded PCT-style scheduler who runs next:
//
//  - every CPU gets a distinct random priority; the highest-priority eligible
//    CPU runs;
//  - d-1 change points are drawn among the first k steps: when the step count
//    reaches one, the running CPU drops below every initial priority (this is
//    the bounded number of preemptions, --preemptions d);
//  - with hot preemption (RunOptions.hotPreempt p > 0): at a scheduling point
//    that follows an event where races live (a PTE cleared or written, a page
//    or table freed, a local flush, a shootdown sent or completed, a lock
//    released, a TLB fill, a page-table move), the running CPU drops below
//    every other CPU with probability p x the event's weight (HOT_WEIGHT). The
//    coin comes from a per-CPU generator seeded by the run's seed, and only the
//    token holder tosses it, so the interleaving stays a function of the seed;
//  - a CPU that must wait (a lock, IPI acknowledgements) is not eligible until
//    its host is kicked (a release, an acknowledgement, an IPI); a CPU whose
//    program is done is eligible only to take IPIs. No eligible CPU while some
//    are blocked is a deadlock, reported at once.
//
// All state is in shared memory and is changed only by the token holder, so the
// same seed and scenario give the same interleaving, result and trace. The
// decisions (which CPU got the token at each handoff) are logged for repro
// files and for checking that a replay followed the same path.

import { type Cpu, type Host, type Scheduler, Rng } from '../hw/cpu.ts';
import { EV } from '../hw/trace.ts';
import {
  type Views, hostWord, cpuCtl, HB_WAKE, CC_IPI_PENDING, CC_BC_PENDING, cpuHostWord,
  DET_TOKEN, DET_STEP, DET_DIRTY, DET_FINISHED, DET_DEADLOCK, DET_NCHANGE, DET_NEXT_CHANGE, DET_NDECISIONS,
  DET_STALLED, DET_MAX_CHANGES, DET_MAX_DECISIONS, DET_CPU_WORDS, DET_PRIO, DET_STATE, DET_BLOCKED_SEQ,
  DS_RUN, DS_BLOCKED, DS_DONE, DS_WAITING, H_STOP,
  DET_MIGRATABLE, DET_MIG_FROM, DET_MIG_TO, DET_MIG_PHASE, taskWord, T_CPU, ST_MIGRATIONS, ST_THREAD_MIGRATIONS,
} from '../hw/layout.ts';
import { switch_out, switch_in, cpu_state_save, cpu_state_load, preemptLevel, preemptible } from '../hw/preempt.ts';
import { lockdep_swap_cpus } from '../hw/lockdep.ts';
import { ARCH_CPU_STATE, put_slot, get_slot } from './migrate.ts';

export interface DetConfig {
  seed: number;
  /** PCT depth d: d-1 priority change points */
  preemptions: number;
  /** expected number of scheduling points in the run (change points are drawn below it) */
  expectedSteps: number;
}

/** Boot-time set-up of the scheduler state (main thread, before any CPU runs). */
export function initDet(V: Views, c: DetConfig): void {
  const { I, L } = V;
  const n = L.shape.cpus;
  const rng = new Rng(c.seed, 0x5c4ed);
  // distinct initial priorities d .. d+n-1 in random order
  const prios = [...Array(n).keys()].map((i) => i + c.preemptions);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [prios[i], prios[j]] = [prios[j], prios[i]];
  }
  for (let cpu = 0; cpu < n; cpu++) {
    I[L.detCpus + cpu * DET_CPU_WORDS + DET_PRIO] = prios[cpu];
    I[L.detCpus + cpu * DET_CPU_WORDS + DET_STATE] = DS_WAITING;
  }
  const nchange = Math.max(0, Math.min(DET_MAX_CHANGES, c.preemptions - 1));
  const changes = [...Array(nchange)].map(() => rng.int(1, Math.max(1, c.expectedSteps))).sort((a, b) => a - b);
  changes.forEach((s, i) => (I[L.detChanges + i] = s));
  I[L.det + DET_NCHANGE] = nchange;
  I[L.det + DET_NEXT_CHANGE] = 0;
  // the first CPU to run: the highest priority
  I[L.det + DET_TOKEN] = prios.indexOf(Math.max(...prios));
}

/**
 * Weight of an event type as a preemption point (hot preemption): the places
 * where the races of the catalogue open (src/tools/bugs/catalogue.ts). A PTE
 * write and a lock release are flagged by Cpu.hotHint (no event is logged for
 * them); everything else is read from the CPU's event ring.
 */
export const HOT_WEIGHT: Float64Array = (() => {
  const w = new Float64Array(64);
  w[EV.FREE_PAGE] = 1;
  w[EV.FREE_TABLE] = 1;
  w[EV.ZAP] = 1;
  w[EV.FLUSH_LOCAL] = 1;
  w[EV.IPI_SEND] = 1;
  w[EV.SHOOTDOWN_DONE] = 1;
  w[EV.MOVE_PGTABLES] = 1;
  w[EV.MOVE_PGTABLES_END] = 1;
  w[EV.LAZY_LEAVE] = 1;
  w[EV.SYSCALL] = 0.5;
  w[EV.SYSCALL_END] = 0.5;
  w[EV.FAULT_END] = 0.5;
  w[EV.LOCK_ACQUIRED] = 0.5;
  w[EV.CTX_SWITCH] = 0.5;
  w[EV.TLB_FILL] = 0.25;
  // an operation boundary: lets a CPU whose operations log nothing hot (TLB hits) give way now and then
  w[EV.OP] = 0.2;
  return w;
})();

export class DetScheduler implements Scheduler {
  private readonly I: Int32Array;
  private readonly V: Views;
  private readonly n: number;
  private readonly base: number;
  private readonly cpus: number;
  private readonly host: Host;
  private readonly L: Views['L'];
  /** hot preemption probability (0: plain PCT) */
  private readonly hotP: number;
  private readonly rng: Rng;
  /** per CPU: ring position already looked at for hot events */
  private readonly seen: Float64Array;
  constructor(V: Views, host: Host, hotP = 0, seed = 0, migrateThreads = false) {
    // off: preempt_schedule() draws nothing for a migration, so runs and repro files from before it replay
    if (migrateThreads) this.migrate = (cpu, task) => this.migrateNow(cpu, task);
    this.hotP = hotP;
    this.rng = new Rng(seed, 0x407 + host.id);
    this.seen = new Float64Array(V.L.shape.cpus);
    this.V = V;
    this.I = V.I;
    this.n = V.L.shape.cpus;
    this.base = V.L.det;
    this.cpus = V.L.detCpus;
    this.host = host;
    this.L = V.L;
  }

  /** the host thread carrying `cpu` now (a migration moves CPUs between threads) */
  private hostOf(cpu: number): number {
    return this.I[cpuHostWord(this.L, cpu)];
  }

  private word(cpu: number, f: number): number {
    return this.cpus + cpu * DET_CPU_WORDS + f;
  }

  get step(): number {
    return this.I[this.base + DET_STEP];
  }

  point(cpu: Cpu, kernel = false): void {
    const I = this.I;
    const b = this.base;
    const step = ++I[b + DET_STEP];
    const nc = I[b + DET_NEXT_CHANGE];
    let changed = false;
    if (nc < I[b + DET_NCHANGE] && step >= I[this.V.L.detChanges + nc]) {
      // a PCT change point: the running CPU drops below every initial priority
      I[this.word(cpu.id, DET_PRIO)] = nc;
      I[b + DET_NEXT_CHANGE] = nc + 1;
      changed = true;
    } else if (this.hotP > 0) {
      const w = this.heat(cpu);
      if (w > 0 && this.rng.next() < this.hotP * w) {
        // a hot preemption: below every CPU (priorities may go negative)
        let low = Infinity;
        for (let c = 0; c < this.n; c++) low = Math.min(low, I[this.word(c, DET_PRIO)]);
        I[this.word(cpu.id, DET_PRIO)] = low - 1;
        changed = true;
      }
    }
    if (!changed && I[b + DET_DIRTY] === 0) return;
    I[b + DET_DIRTY] = 0;
    const next = this.pick();
    if (next !== cpu.id && next >= 0) {
      // waiting where its task could be preempted and moved (a preemption point of kernel code, or an
      // operation boundary: user mode; not with migration disabled): a partner for a preempted task
      const m = this.migrate !== undefined && kernel && preemptLevel !== 0 && cpu.spinDepth === 0 && preemptible(cpu);
      if (m) I[this.word(cpu.id, DET_MIGRATABLE)] = 1;
      this.handoff(cpu, next);
      if (m) I[this.word(cpu.id, DET_MIGRATABLE)] = 0; // cpu.id: the CPU it carries now
    }
  }

  /** the hottest event since the last look (0: none) */
  private heat(cpu: Cpu): number {
    let w = cpu.hotHint;
    cpu.hotHint = 0;
    const pos = cpu.ring.pos;
    const from = Math.max(this.seen[cpu.id], pos - 8);
    for (let p = from; p < pos; p++) w = Math.max(w, HOT_WEIGHT[cpu.ring.typeAt(p)] ?? 0);
    this.seen[cpu.id] = pos;
    return w;
  }

  blocked(cpu: Cpu, seq: number): void {
    const I = this.I;
    I[this.word(cpu.id, DET_BLOCKED_SEQ)] = seq;
    I[this.word(cpu.id, DET_STATE)] = DS_BLOCKED;
    const next = this.pick();
    if (next < 0) {
      this.deadlock();
      this.waitForTurn(cpu); // never returns normally: the run is being stopped
      return;
    }
    if (next === cpu.id) {
      // picked again: we were kicked in the meantime; the caller re-checks
      if (++I[this.base + DET_STALLED] > 1000 * this.n) this.deadlock();
    } else this.handoff(cpu, next);
    I[this.word(cpu.id, DET_STATE)] = DS_RUN;
  }

  kicked(): void {
    this.I[this.base + DET_DIRTY] = 1;
  }

  /** The highest-priority eligible CPU, or -1 if none (all done, or deadlock). */
  private pick(): number {
    const I = this.I;
    const L = this.V.L;
    let best = -1;
    let bestPrio = -Infinity;
    for (let c = 0; c < this.n; c++) {
      const st = I[this.word(c, DET_STATE)];
      let ok: boolean;
      if (st === DS_RUN || st === DS_WAITING) ok = true;
      else if (st === DS_BLOCKED) ok = Atomics.load(I, hostWord(L, this.hostOf(c), HB_WAKE)) !== I[this.word(c, DET_BLOCKED_SEQ)];
      else if (st === DS_DONE) ok = Atomics.load(I, cpuCtl(L, c, CC_IPI_PENDING)) !== 0 || Atomics.load(I, cpuCtl(L, c, CC_BC_PENDING)) !== 0;
      else ok = false;
      if (ok && I[this.word(c, DET_PRIO)] > bestPrio) {
        best = c;
        bestPrio = I[this.word(c, DET_PRIO)];
      }
    }
    if (best >= 0 && I[this.word(best, DET_STATE)] !== DS_BLOCKED) I[this.base + DET_STALLED] = 0;
    return best;
  }

  private logDecision(to: number): void {
    const I = this.I;
    const b = this.base;
    const k = I[b + DET_NDECISIONS];
    if (k < DET_MAX_DECISIONS) {
      I[this.V.L.detDecisions + 2 * k] = I[b + DET_STEP];
      I[this.V.L.detDecisions + 2 * k + 1] = to;
      I[b + DET_NDECISIONS] = k + 1;
    }
  }

  private handoff(cpu: Cpu, to: number): void {
    this.logDecision(to);
    this.giveToken(to);
    this.waitForTurn(cpu);
  }

  private wakeHost(h: number): void {
    const w = hostWord(this.V.L, h, HB_WAKE);
    Atomics.add(this.I, w, 1);
    Atomics.notify(this.I, w);
  }

  /** Sleep until the token is ours (or the run is over); take our half of a migration asked of us on the way. */
  waitForTurn(cpu: Cpu): void {
    const I = this.I;
    const b = this.base;
    const w = hostWord(this.V.L, this.host.id, HB_WAKE);
    for (;;) {
      const seq = Atomics.load(I, w);
      if (Atomics.load(I, b + DET_TOKEN) === cpu.id) { // cpu.id is read each time: a migration changes it
        if (!this.migrating && I[b + DET_MIG_PHASE] === 1 && I[b + DET_MIG_TO] === cpu.id) {
          this.takeMigration(cpu);
          continue;
        }
        if (this.switchIn >= 0) {
          // our task was moved while it waited here: it resumes on this CPU now
          const t = this.switchIn;
          this.switchIn = -1;
          switch_in(cpu, t);
          cpu.stat(ST_MIGRATIONS);
          cpu.stat(ST_THREAD_MIGRATIONS);
          cpu.ring.log(EV.MIGRATE, t, this.switchInFrom);
          cpu.preemptOff--;
        }
        return;
      }
      if (Atomics.load(I, b + DET_FINISHED) !== 0) return;
      Atomics.wait(I, w, seq, 50);
    }
  }

  // ---- migration between CPU threads (issue #11; src/engine/migrate.ts) -------------
  //
  // Through the token, so the swap is a function of the seed like every other decision:
  //   1. A (preempted, switched out) asks (phase 1) and passes the token to B's CPU, then
  //      waits as an idle CPU: given the turn while B's context switch waits for something,
  //      it takes its broadcasts and IPIs and passes the turn on;
  //   2. B switches its task out (it may give the turn away and get it back), saves its CPU
  //      into slot 1 and passes the token to A (phase 2);
  //   3. A saves its CPU into slot 0 and passes the token to B (phase 3);
  //   4. B loads slot 0: it is now the CPU A's task left; it passes the token to the CPU it
  //      left (phase 4), which only A waits for; its task is switched in when B next runs;
  //   5. A loads slot 1: it is now B's old CPU, and switches its task in there.
  // Each CPU is saved only once nothing will change it before it is loaded.
  private migrating = false;
  /** our task, switched out by a migration while it waited: switched in when we next run */
  private switchIn = -1;
  private switchInFrom = -1;

  /** the Scheduler hook, present only when migration between threads is on (RunOptions.migrateThreads) */
  migrate?: (cpu: Cpu, task: number) => boolean;

  private migrateNow(cpu: Cpu, _task: number): boolean {
    const I = this.I;
    const b = this.base;
    const L = this.L;
    if (L.migrate < 0 || I[b + DET_MIG_PHASE] !== 0) return false;
    const cands: number[] = [];
    for (let c = 0; c < this.n; c++) {
      if (c !== cpu.id && I[this.word(c, DET_STATE)] === DS_RUN && I[this.word(c, DET_MIGRATABLE)] === 1) cands.push(c);
    }
    if (cands.length === 0) return false;
    const to = cands[cpu.rng.u32() % cands.length];
    const from = cpu.id;
    this.migrating = true;
    I[b + DET_MIG_FROM] = from;
    I[b + DET_MIG_TO] = to;
    I[this.word(from, DET_STATE)] = DS_DONE; // until the answer: eligible only for broadcasts and IPIs
    Atomics.store(I, b + DET_MIG_PHASE, 1);
    this.giveToken(to);
    const w = hostWord(L, this.host.id, HB_WAKE);
    for (;;) {
      const seq = Atomics.load(I, w);
      const tok = Atomics.load(I, b + DET_TOKEN);
      const ph = Atomics.load(I, b + DET_MIG_PHASE);
      if (tok === to && ph === 4) break;
      // not on H_STOP (a violation): the run goes on to its end under the token, and a handshake
      // left half-way would let two threads run at once (found: a replay that differed after a stop)
      if (Atomics.load(I, b + DET_FINISHED) !== 0) {
        this.migrating = false;
        return false;
      }
      if (tok === from && ph === 2) {
        if (!put_slot(this.V, 0, cpu_state_save(cpu))) throw new Error('migration: a CPU state larger than its slot');
        Atomics.store(I, b + DET_MIG_PHASE, 3);
        this.giveToken(to);
        continue;
      }
      if (tok === from && ph === 1) {
        // given the turn while B's context switch waits for something: what an idle CPU does
        if (I[cpu.ctl + CC_BC_PENDING] !== 0) cpu.handleBroadcasts();
        if (I[cpu.ctl + CC_IPI_PENDING] !== 0) cpu.handleIpis();
        const next = this.pick();
        if (next < 0) this.deadlock();
        else if (next !== from) {
          this.logDecision(next);
          this.giveToken(next);
        }
        continue;
      }
      Atomics.wait(I, w, seq, 50);
    }
    lockdep_swap_cpus(from, to); // the held locks stay with the task (this thread)
    cpu_state_load(cpu, to, get_slot(this.V, 1), ARCH_CPU_STATE);
    I[this.word(to, DET_STATE)] = DS_RUN;
    I[this.word(from, DET_STATE)] = DS_RUN; // B, waiting for its turn as `from`
    I[this.word(to, DET_MIGRATABLE)] = 0;
    Atomics.store(I, b + DET_MIG_PHASE, 0);
    I[b + DET_DIRTY] = 1; // the CPUs' priorities stay with the CPUs: re-pick at the next point
    this.migrating = false;
    return true;
  }

  /**
   * Hand the token to `cpu`: its host's wake word is bumped *before* the token is published,
   * then notified. In the other order the new holder can run, read its own wake word (a
   * blocked() sequence) and only then see our late bump, which makes it look kicked: a
   * scheduling decision that depended on the host's timing (a deterministic run that did not
   * replay, 8 of 12 re-runs of mremap-vs-fault seed 1 with --preempt none).
   */
  private giveToken(cpu: number): void {
    const w = hostWord(this.V.L, this.hostOf(cpu), HB_WAKE);
    Atomics.add(this.I, w, 1);
    Atomics.store(this.I, this.base + DET_TOKEN, cpu);
    Atomics.notify(this.I, w);
  }

  /** B's half: this thread's task, waiting where it could be preempted, leaves CPU `to`; this thread becomes CPU `from`. */
  private takeMigration(cpu: Cpu): void {
    const I = this.I;
    const b = this.base;
    const L = this.L;
    this.migrating = true;
    const from = I[b + DET_MIG_FROM];
    const to = cpu.id;
    I[this.word(to, DET_MIGRATABLE)] = 0;
    const tb = cpu.curTask;
    cpu.preemptOff++; // __schedule runs with preemption off (until the task is back in: waitForTurn)
    switch_out(cpu); // its task leaves CPU `to` (to idle: lazy TLB); may give the turn away and get it back
    if (!put_slot(this.V, 1, cpu_state_save(cpu))) throw new Error('migration: a CPU state larger than its slot');
    Atomics.store(I, b + DET_MIG_PHASE, 2);
    this.giveToken(from);
    const w = hostWord(L, this.host.id, HB_WAKE);
    for (;;) {
      const seq = Atomics.load(I, w);
      if (Atomics.load(I, b + DET_TOKEN) === to && Atomics.load(I, b + DET_MIG_PHASE) === 3) break;
      if (Atomics.load(I, b + DET_FINISHED) !== 0) { // as in migrate(): not on H_STOP
        this.migrating = false;
        return;
      }
      Atomics.wait(I, w, seq, 50);
    }
    const hostFrom = this.hostOf(from);
    lockdep_swap_cpus(from, to);
    cpu_state_load(cpu, from, get_slot(this.V, 0), ARCH_CPU_STATE);
    I[cpuHostWord(L, from)] = this.host.id;
    I[cpuHostWord(L, to)] = hostFrom;
    if (tb >= 0) {
      I[taskWord(L, tb, T_CPU)] = from;
      this.switchIn = tb;
      this.switchInFrom = to;
    } else cpu.preemptOff--;
    this.migrating = false;
    Atomics.store(I, b + DET_MIG_PHASE, 4);
    this.giveToken(to); // back to the preempted task, which runs on `to` from now on
  }

  /** A CPU finished its program (or the run is stopping): from now on it only takes IPIs. */
  done(cpu: Cpu): void {
    this.I[this.word(cpu.id, DET_STATE)] = DS_DONE;
    this.idle(cpu);
  }

  /** Wait for the first turn (at start), then run. */
  start(cpu: Cpu): void {
    this.waitForTurn(cpu);
    this.I[this.word(cpu.id, DET_STATE)] = DS_RUN;
  }

  /** The idle loop of a done CPU: take IPIs when given the turn, until every CPU is done. */
  private idle(cpu: Cpu): void {
    const I = this.I;
    for (;;) {
      if (Atomics.load(I, this.base + DET_FINISHED) !== 0) return;
      if (Atomics.load(I, this.base + DET_TOKEN) === cpu.id) {
        if (I[cpu.ctl + CC_BC_PENDING] !== 0) cpu.handleBroadcasts();
        if (I[cpu.ctl + CC_IPI_PENDING] !== 0) cpu.handleIpis();
        const next = this.pick();
        if (next < 0) {
          if (this.anyBlocked()) this.deadlock();
          this.finish();
          return;
        }
        if (next !== cpu.id) this.handoff(cpu, next);
        continue;
      }
      this.waitForTurn(cpu);
    }
  }

  private anyBlocked(): boolean {
    for (let c = 0; c < this.n; c++) if (this.I[this.word(c, DET_STATE)] === DS_BLOCKED) return true;
    return false;
  }

  private finish(): void {
    Atomics.store(this.I, this.base + DET_FINISHED, 1);
    for (let h = 0; h < this.V.L.shape.hosts; h++) this.wakeHost(h);
  }

  private deadlock(): void {
    Atomics.store(this.I, this.base + DET_DEADLOCK, 1);
    Atomics.store(this.I, this.V.L.header + H_STOP, 1);
  }
}

/** The decisions logged so far: [step, cpu] per handoff. */
export function detDecisions(V: Views): number[] {
  const I = V.I;
  const n = Math.min(I[V.L.det + DET_NDECISIONS], DET_MAX_DECISIONS);
  return Array.from(I.subarray(V.L.detDecisions, V.L.detDecisions + 2 * n));
}

export function detStep(V: Views): number {
  return V.I[V.L.det + DET_STEP];
}
export function detDeadlocked(V: Views): boolean {
  return Atomics.load(V.I, V.L.det + DET_DEADLOCK) !== 0;
}
