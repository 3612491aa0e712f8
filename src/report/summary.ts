// Formatting a run's result for people (the summary) and machines (JSON).

import { runVerdict, type RunResult, type TraceEvent } from '../engine/machine.ts';
import { chooseRace, raceText } from './race.ts';

const fmt = (n: number): string => n.toLocaleString('en-US');
const us = (ns: number): string => (ns / 1000).toFixed(ns < 10000 ? 1 : 0) + ' us';

export function summary(r: RunResult): string {
  const s = r.stats;
  const out: string[] = [];
  const verdict = runVerdict(r).label;
  const det = r.deterministic ? `, PCT d=${r.deterministic.preemptions}, ${r.deterministic.steps.toLocaleString('en-US')} steps, ${(r.deterministic.schedule.length / 2).toLocaleString('en-US')} handoffs` : '';
  out.push(`mmsim: ${r.scenario} on ${r.cpus} CPUs (${r.arch}), seed ${r.seed}, ${r.mode} (${r.threads} host thread${r.threads > 1 ? 's' : ''}${det})${r.knobs.length ? `, bug knobs: ${r.knobs.join(', ')}` : ''}`);
  out.push(`  result        ${verdict} in ${(r.wallMs / 1000).toFixed(2)} s${r.bootMs ? ` (+${(r.bootMs / 1000).toFixed(2)} s starting threads)` : ''}`);
  out.push(`  ops           ${fmt(s.ops)} (${fmt(Math.round(s.ops / (r.wallMs / 1000)))}/s), reads ${fmt(s.reads)}, writes ${fmt(s.writes)}, syscalls ${fmt(s.syscalls)}${r.syscallErrors ? ` (${r.syscallErrors} failed, last: ${r.lastSyscallError})` : ''}`);
  out.push(`  faults        ${fmt(s.faults)} (SIGSEGV ${fmt(s.segv)})`);
  out.push(`  TLB           hits ${fmt(s.tlbHits)}, misses ${fmt(s.tlbMisses)}, walks ${fmt(s.walks)}`);
  out.push(`  IPIs          sent ${fmt(s.ipiSent)}, received ${fmt(s.ipiReceived)}; shootdowns ${fmt(s.shootdowns)}; lazy-TLB CPUs skipped ${fmt(s.lazyTlbSkipped)}`);
  out.push(`  flushes       single-page ${fmt(s.flushSingle)} (in ${fmt(s.flushRange)} range flushes), full ${fmt(s.flushFull)}, up to date ${fmt(s.flushSkipped)}, at switch-in ${fmt(s.switchFlush)}`);
  if (r.deterministic) out.push(`  shootdown     p50 ${fmt(r.latencyNs.p50)} steps, p99 ${fmt(r.latencyNs.p99)}, max ${fmt(r.latencyNs.max)} (${fmt(r.latencyNs.samples)} samples; deterministic mode counts scheduling steps)`);
  else out.push(`  shootdown     p50 ${us(r.latencyNs.p50)}, p99 ${us(r.latencyNs.p99)}, max ${us(r.latencyNs.max)} (${fmt(r.latencyNs.samples)} samples)`);
  out.push(`  lazy MMU      ${fmt(s.lazySections)} sections (${r.lazyContract} contract, series ${r.lazySeries}); PTE updates ${fmt(s.pteUpdates)}, ${fmt(s.lazyUpdates)} inside sections; batched ${fmt(s.batched)} in ${fmt(s.batchFlushes)} batch flushes (${fmt(Math.max(0, s.batched - s.batchFlushes))} flushes avoided)`);
  out.push(`  invalidation  IPIs ${fmt(s.ipiSent)} vs hardware broadcasts ${fmt(s.broadcastsSent)} (purged on ${fmt(s.broadcastsPurged)} CPU visits); s390 quiesces ${fmt(s.quiesces)}, local clears ${fmt(s.localClears)}`);
  if (s.thpFaults || s.thpSplits) out.push(`  huge pages    THP faults ${fmt(s.thpFaults)}, huge PMDs split ${fmt(s.thpSplits)}`);
  if (s.movedPtes + s.movedPmds + s.movedPuds + s.movedHugePmds + s.movedHugePuds > 0) {
    out.push(`  mremap        moved ${fmt(s.movedPtes)} PTEs, ${fmt(s.movedPmds)} PTE tables (NORMAL_PMD), ${fmt(s.movedPuds)} PMD tables (NORMAL_PUD), ${fmt(s.movedHugePmds)} huge PMDs, ${fmt(s.movedHugePuds)} huge PUDs; ${fmt(s.realigned)} realigned starts`);
  }
  if (s.rmapUnmaps || s.truncatedPages) out.push(`  rmap walkers  PTEs cleared through i_mmap ${fmt(s.rmapUnmaps)}; page-cache pages truncated or reclaimed ${fmt(s.truncatedPages)}`);
  out.push(`  per-VMA locks ${fmt(s.vmaLockFaults)} faults under a VMA lock (${fmt(s.vmaLockRaced)} while another CPU held the mmap_lock for write); fell back to the mmap_lock ${fmt(s.vmaLockAborts + s.vmaLockRetries)} (no VMA lock to be had ${fmt(s.vmaLockAborts)}, VM_FAULT_RETRY ${fmt(s.vmaLockRetries)})`);
  out.push(`  memory        pages freed ${fmt(s.pagesFreed)}, page tables freed ${fmt(s.tablesFreed)}; contended locks ${fmt(s.lockContended)}; delays injected ${fmt(s.delays)}`);
  // issue #11 (docs/concurrency.md): preemption inside kernel code and store buffers
  out.push(`  concurrency   preemptions ${fmt(s.preemptions)} (${fmt(s.preemptInLazy)} inside lazy MMU sections, ${fmt(s.migrations)} task moves to another CPU, ${fmt(s.threadMigrations)} of them to a CPU of another host thread: a migration moves the preempted task and the one it trades with, as migrate_swap); store buffers: ${fmt(s.sbStores)} stores buffered, ${fmt(s.sbLoadsPassed)} loads passed one, ${fmt(s.sbForwarded)} forwarded, ${fmt(s.smpMb)} drained by smp_mb()`);
  // issue #11 item 2 (docs/concurrency.md): kernel page tables and device interrupts
  if (s.irqs || s.vmallocs || s.vfrees) {
    out.push(`  kernel        interrupts ${fmt(s.irqs)} (${fmt(s.irqInLazy)} inside a task's lazy MMU section; ${fmt(s.irqKernelMaps)} linear-map PTE changes in interrupt context); vmalloc ${fmt(s.vmallocs)}, vfree ${fmt(s.vfrees)}, lazy purges ${fmt(s.vmapPurges)}; flush_tlb_kernel_range ${fmt(s.kernelTlbFlushes)}; spurious kernel faults ${fmt(s.kernelSpuriousFaults)}`);
  }
  out.push(`  content       ${fmt(r.readsChecked)} reads checked (${fmt(r.readsExcused)} excused by a concurrent unmap)`);
  if (s.forkPtes || s.cowCopies || s.cowReuses || s.gupFastFallbacks || r.cowChecked) {
    out.push(`  fork/COW      PTEs copied by fork ${fmt(s.forkPtes)}; COW faults: copied ${fmt(s.cowCopies)}, reused ${fmt(s.cowReuses)}; GUP-fast fallbacks ${fmt(s.gupFastFallbacks)}`);
    out.push(`  COW oracle    ${fmt(r.cowChecked)} reads' provenance checked (${fmt(r.cowUnjudged)} unjudged: written meanwhile)`);
  }
  out.push(`  audit         ${r.audit.ok ? 'refcounts and mapcounts consistent' : 'FAILED'}; after exit of every mm: ${r.teardownAudit.ok ? 'every frame free' : 'FAILED'}`);
  for (const p of [...r.audit.problems, ...r.teardownAudit.problems].slice(0, 10)) out.push(`    - ${p}`);
  out.push(`  violations    ${r.violationCount}`);
  // with a trace: the first violation's race, chosen by causality (src/report/race.ts)
  if (r.trace && r.violations.length) {
    const byCpu: Record<number, TraceEvent[]> = {};
    for (const e of r.trace.events) (byCpu[e.cpu] ??= []).push(e);
    for (const k of Object.keys(byCpu)) byCpu[Number(k)].sort((a, b) => a.seq - b.seq);
    const race = chooseRace(byCpu, r.violations[0]);
    if (race.rows.length > 1) {
      out.push('  the race (first violation; fill, change, free, flushes, stale use):');
      for (const l of raceText(race, r.mode === 'deterministic', 44)) out.push(`    ${l}`);
    }
  }
  for (const v of r.violations.slice(0, 5)) {
    out.push(`  [${v.kind}] ${v.message}`);
    for (const [cpu, evs] of Object.entries(v.events)) {
      out.push(`    last events of cpu ${cpu}:`);
      for (const e of evs) out.push(`      ${e}`);
    }
  }
  if (r.hang) out.push(`  HANG: ${r.hang.replace(/\n/g, '\n    ')}`);
  if (r.crash) out.push(`  CRASH: ${r.crash}`);
  return out.join('\n');
}

/** 0 clean, 1 violation, audit failure or hang, 3 crash (runVerdict). */
export function exitCode(r: RunResult): number {
  return runVerdict(r).exit;
}
