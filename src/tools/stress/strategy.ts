// The default hunting strategy of `mmsim stress` (and `mmsim bugs run`): a
// swarm. When the user names no scheduling flag (--mode, --threads, --delay,
// --preemptions, --hot-preempt), each seed draws its own configuration from the
// seed itself, so that a campaign of N seeds spreads over every way of
// interleaving the simulator has:
//
//  - deterministic PCT with hot preemption (src/engine/det.ts): one CPU at a
//    time, preempted with probability p right after the events where races
//    open (a PTE write, a page or table free, a flush, a shootdown, a lock
//    release, a TLB fill). Its failures replay exactly. It is what catches the
//    TLB-shootdown races (munmap, THP, switch_mm, the arch leave knobs) fastest;
//  - free running with one host thread per CPU, with or without random delays
//    at scheduling points: the OS preempts the CPUs inside operations, and
//    the spins widen windows a few instructions wide (fork vs GUP-fast, the
//    per-extent mremap flush, COW installs);
//  - inline (every CPU on the task's thread, interleaving between operations):
//    the cheapest, and enough for bugs whose window spans operations
//    (cow.reuse_by_mapcount, the content bugs).
//
// The weights below were chosen by measuring each family on the catalogue
// (docs/hunting.md). Every drawn value ends up in the seed's task options,
// hence in its repro file: a failing seed replays with the configuration that
// found it. The strategy only ever adds interleavings: it changes no kernel
// code path and never removes a flush or a lock.

import { Rng } from '../../hw/cpu.ts';
import type { Scenario } from '../../engine/scenario.ts';
import type { TaskOptions } from './stress.ts';

/** the user's options that pin a scheduling mode: any of them turns the swarm off */
export const MODE_FLAGS = ['mode', 'threads', 'delay', 'preemptions', 'hotPreempt'] as const;

export type Family = 'det-hot' | 'free-delay' | 'free' | 'inline';

export interface Draw {
  family: Family;
  options: Partial<TaskOptions>;
}

/** above this many CPUs the swarm runs hosted (free) instead of one thread per CPU */
export const MAX_HUNT_THREADS = 16;

/**
 * The families, as a cycle of ten seeds: seed k takes PATTERN[(k - 1) mod 10],
 * so that any ten consecutive seeds run every family in these proportions
 * (a random draw left a family out of a 10-seed campaign too often). The other
 * parameters are drawn from the seed.
 */
export const PATTERN: readonly Family[] = [
  'det-hot', 'free-delay', 'det-hot', 'free', 'det-hot', 'free-delay', 'det-hot', 'inline', 'det-hot', 'free-delay',
];

/** family -> share of the seeds */
export const SWARM: { family: Family; weight: number }[] = (['det-hot', 'free-delay', 'free', 'inline'] as Family[])
  .map((family) => ({ family, weight: PATTERN.filter((f) => f === family).length }));

/** det-hot: the hot preemption probabilities drawn from (0.1 catches the munmap-style races in 1-2 seeds, 0.3 the mremap/rmap ones) */
export const HOT_PREEMPT = [0.1, 0.3, 0.3, 0.5] as const;
/**
 * det-hot: a CPU that has done its operations keeps running, up to this many times its budget, while
 * another has not (RunOptions.overtime). Without it the CPUs of cheap operations (accesses) finish early and
 * the expensive ones (fork, mremap) race with nobody for the rest of the run: fork.flush_after_unlock went from
 * 1/10 to 10/10 seeds (--mode deterministic --hot-preempt 0.3), the whole-PMD mremap vs reclaim race from
 * 2/20 to 9/20 (docs/hunting.md).
 */
export const DET_OVERTIME = 4;
/** free-delay: the delay probabilities drawn from, plus the scenario's own (0.05 caught CVE-2018-18281 10/10) */
export const DELAYS = [0.02, 0.05, 0.05] as const;

/** true when the options name no scheduling mode: the swarm decides */
export function huntsByDefault(o: Partial<TaskOptions>): boolean {
  return MODE_FLAGS.every((k) => o[k] === undefined);
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng.next() * xs.length)];
}

/**
 * The configuration seed `seed` runs with. A function of the seed and the
 * scenario's CPU count only: the same seed of the same scenario always draws
 * the same configuration (so a campaign's seed k can be re-run alone).
 */
export function drawConfig(seed: number, s: Scenario, base: Partial<TaskOptions> = {}): Draw {
  const rng = new Rng(seed, 0x5a4a);
  let family: Family = PATTERN[(((seed - 1) % PATTERN.length) + PATTERN.length) % PATTERN.length];
  const cpus = base.cpus ?? s.machine.cpus;
  // one host thread per CPU is what lets the OS (or the deterministic scheduler) preempt a CPU inside an
  // operation; past MAX_HUNT_THREADS CPUs the threads would drown the host: the big machines run hosted
  const threads = Math.min(cpus, MAX_HUNT_THREADS);
  if (family === 'det-hot' && cpus > MAX_HUNT_THREADS) family = 'free-delay';
  const tlb = s.machine.tlbEntries;
  // a larger TLB keeps stale entries longer; never smaller than the scenario's
  const tlbEntries = pick(rng, [tlb, tlb, tlb * 4]);
  switch (family) {
    case 'det-hot':
      return { family, options: { mode: 'deterministic', preemptions: pick(rng, [3, 3, 10]), hotPreempt: pick(rng, HOT_PREEMPT), overtime: DET_OVERTIME, tlbEntries } };
    case 'free-delay':
      // the scenario's own delay (its author's tuning) is one of the choices
      return { family, options: { mode: 'free', threads, delay: pick(rng, [...DELAYS, s.run.delay > 0 ? s.run.delay : 0.1]), tlbEntries } };
    case 'free':
      return { family, options: { mode: 'free', threads, delay: 0, tlbEntries } };
    case 'inline':
      // no delay: with every CPU on one thread a spin only slows the run (nothing races with it)
      return { family, options: { mode: 'free', threads: 1, delay: 0, tlbEntries } };
  }
}

/** The options seed `seed` runs with: the user's, or the user's plus the swarm's draw. */
export function seedOptions(seed: number, s: Scenario, o: TaskOptions): { options: TaskOptions; family?: Family } {
  if (!huntsByDefault(o)) return { options: o };
  const d = drawConfig(seed, s, o);
  // the user's explicit non-mode options (--tlb, --cpus) win over the draw
  const options = {
    ...o, ...d.options,
    ...(o.tlbEntries !== undefined ? { tlbEntries: o.tlbEntries } : {}),
    ...(o.overtime !== undefined && d.family === 'det-hot' ? { overtime: o.overtime } : {}),
  } as TaskOptions;
  return { options, family: d.family };
}

/** One line describing the swarm, for the campaign header. */
export function describeSwarm(): string {
  const total = SWARM.reduce((a, f) => a + f.weight, 0);
  return `hunting swarm (${SWARM.map((f) => `${f.family} ${Math.round((100 * f.weight) / total)}%`).join(', ')}; docs/hunting.md)`;
}
