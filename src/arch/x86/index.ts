// x86-64 native TLB-flush model (arch/x86/mm/tlb.c, asm/mmu_context.h):
// flush_tlb_mm_range with the 33-page ceiling, a per-mm TLB
// generation, mm_cpumask, lazy-TLB CPUs skipped unless page tables were freed,
// synchronous IPIs whose sender waits for every acknowledgement, and the
// generation check at switch-in that covers CPUs which got no IPI.
// Lazy MMU hooks are no-ops on bare metal: nothing is deferred.

import { type Cpu, type Host, current } from '../../hw/cpu.ts';
import {
  cpuCtl, mmWord, fIndex, CC_INFO_MM as CC_INFO_MM_, CC_INFO_GEN as CC_INFO_GEN_, CC_INFO_FREED, CC_INFO_STRIDE as CC_INFO_STRIDE_, CC_INFO_TRIM,
  CC_INFO_START_F as CC_INFO_START_F_, CC_INFO_END_F as CC_INFO_END_F_, CC_IS_LAZY as CC_IS_LAZY_, CC_LOADED_MM as CC_LOADED_MM_, MM_TLB_GEN as MM_TLB_GEN_, MM_CTX_ID, MM_CPUMASK as MM_CPUMASK_, MM_FLUSH_COUNT,
  ST_FLUSH_SINGLE as ST_FLUSH_SINGLE_, ST_FLUSH_RANGE as ST_FLUSH_RANGE_, ST_FLUSH_FULL as ST_FLUSH_FULL_, ST_FLUSH_SKIPPED as ST_FLUSH_SKIPPED_,
  ST_SWITCH_FLUSH, ST_LAZY_TLB_SKIPPED, PAGE_SHIFT,
  PAGE_SIZE as PAGE_SIZE_,
} from '../../hw/layout.ts';
import { EV } from '../../hw/trace.ts';
import { knobs } from '../../inject/knobs.ts';
import { sb_store, sb_load, sb_drain, smp_mb } from '../../hw/store_buffer.ts';
import { type Arch, IPI_FLUSH_TLB } from '../arch.ts';
import { native, clear_then_flush, mm_cpumask_cpus, initHostCommon } from '../generic.ts';

// Module-local copies of the constants flush_tlb_func uses (it runs once per target of every
// shootdown): optimized code folds a module's own const, but loads an imported one from its
// module cell at every use (src/hw/cpu.ts, src/hw/walker.ts)
const CC_INFO_MM = CC_INFO_MM_;
const MM_CPUMASK = MM_CPUMASK_;
const CC_IS_LAZY = CC_IS_LAZY_;
const CC_LOADED_MM = CC_LOADED_MM_;
const CC_INFO_GEN = CC_INFO_GEN_;
const ST_FLUSH_SKIPPED = ST_FLUSH_SKIPPED_;
const MM_TLB_GEN = MM_TLB_GEN_;
const CC_INFO_END_F = CC_INFO_END_F_;
const CC_INFO_START_F = CC_INFO_START_F_;
const CC_INFO_STRIDE = CC_INFO_STRIDE_;
const PAGE_SIZE = PAGE_SIZE_;
const ST_FLUSH_SINGLE = ST_FLUSH_SINGLE_;
const ST_FLUSH_RANGE = ST_FLUSH_RANGE_;
const ST_FLUSH_FULL = ST_FLUSH_FULL_;
const EV_FLUSH_LOCAL = EV.FLUSH_LOCAL;

/** tlb_single_page_flush_ceiling: more strides than this become a full flush. */
export const TLB_SINGLE_PAGE_FLUSH_CEILING = 33;
/** Every this many flushes of an mm, the flush also goes to CPUs that no longer
 *  have it loaded, so they drop out of mm_cpumask (the kernel does this about once a second). */
export const TRIM_CPUMASK_EVERY = 64;
export const TLB_FLUSH_ALL = -1;

function inc_mm_tlb_gen(I: Int32Array, mmGen: number): number {
  return Atomics.add(I, mmGen, 1) + 1;
}

/** The cross-CPU part: which CPUs of the mask get an IPI (native_flush_tlb_multi). */
function should_flush_tlb(cpu: Cpu, target: number, mm: number, trim: boolean): boolean {
  const I = cpu.I;
  const L = cpu.V.L;
  // per_cpu(cpu_tlbstate_shared.is_lazy) and per_cpu(cpu_tlbstate.loaded_mm) of another CPU:
  // READ_ONCE()s, plain loads here (once per CPU of the mask per flush; Atomics.load is a call)
  const ctl = cpuCtl(L, target, 0);
  if (I[ctl + CC_IS_LAZY] !== 0) return false; // flushes at next switch-in
  if (I[ctl + CC_LOADED_MM] === mm) return true;
  return trim; // in the mask but not loaded: only the periodic trim flush goes there
}

const targets = new Int32Array(256);
const maskCpus = new Int32Array(256);

export function flush_tlb_mm_range(mm: number, start: number, end: number, strideShift: number, freedTables: boolean): void {
  const cpu = current;
  const I = cpu.I;
  const F = cpu.V.F;
  const L = cpu.V.L;
  const full = end === TLB_FLUSH_ALL || (end - start) / 2 ** strideShift > TLB_SINGLE_PAGE_FLUSH_CEILING;
  const gen = inc_mm_tlb_gen(I, mmWord(L, mm, MM_TLB_GEN));
  const trim = (Atomics.add(I, mmWord(L, mm, MM_FLUSH_COUNT), 1) + 1) % TRIM_CPUMASK_EVERY === 0;
  // Our flush_tlb_info: stable while we wait for the acknowledgements.
  Atomics.store(I, cpu.ctl + CC_INFO_MM, mm);
  Atomics.store(I, cpu.ctl + CC_INFO_GEN, gen);
  Atomics.store(I, cpu.ctl + CC_INFO_FREED, freedTables ? 1 : 0);
  Atomics.store(I, cpu.ctl + CC_INFO_STRIDE, strideShift);
  Atomics.store(I, cpu.ctl + CC_INFO_TRIM, trim ? 1 : 0);
  F[fIndex(cpu.ctl + CC_INFO_START_F)] = full ? 0 : start;
  F[fIndex(cpu.ctl + CC_INFO_END_F)] = full ? TLB_FLUSH_ALL : end;

  let n = 0;
  let local = false;
  const inMask = mm_cpumask_cpus(I, mmWord(L, mm, MM_CPUMASK), maskCpus);
  for (let k = 0; k < inMask; k++) {
    const t = maskCpus[k];
    if (t === cpu.id) {
      local = true;
      continue;
    }
    // freed_tables: every CPU in the mask, lazy ones included (they may walk the freed tables)
    if (freedTables || should_flush_tlb(cpu, t, mm, trim)) targets[n++] = t;
    else if (I[cpuCtl(L, t, CC_IS_LAZY)] !== 0) cpu.stat(ST_LAZY_TLB_SKIPPED);
  }
  if (local && cpu.loadedMm === mm) flush_tlb_func(cpu, cpu.id);
  if (n > 0) cpu.shootdown(mm, targets, n, IPI_FLUSH_TLB);
}

/**
 * The flush handler (runs on the target in interrupt context, or locally), in
 * the order of arch/x86/mm/tlb.c flush_tlb_func (Linux 6.18): a CPU that no
 * longer has f->mm loaded leaves its mm_cpumask and returns (commit "x86/mm: Fix
 * flush_tlb_func() ... trim for a not currently loaded mm", Rik van Riel, Dec
 * 2024: before the init_mm check); init_mm: nothing; lazy: switch to init_mm;
 * f->new_tlb_gen <= local_tlb_gen: already up to date for this request, return
 * without reading mm's tlb_gen; local == mm's: nothing (two flushes raced);
 * then a partial flush if f->new_tlb_gen == local + 1 == mm's, else a full one.
 */
export function flush_tlb_func(cpu: Cpu, sender: number): void {
  const I = cpu.I;
  const F = cpu.V.F;
  const L = cpu.V.L;
  const info = cpuCtl(L, sender, 0);
  // Plain loads, as the kernel's: flush_tlb_func reads the sender's flush_tlb_info (f->mm,
  // f->new_tlb_gen, f->start, f->end, f->stride_shift) with ordinary loads, ordered after the
  // sender's stores by the IPI itself (our exchange of CC_IPI_PENDING / CC_IPI_MASK), and
  // mm->context.tlb_gen with atomic64_read(), a READ_ONCE. Atomics.load added nothing but a
  // ~8 ns call each (V8 does not inline it): 5 per handler, ~20% of a 256-CPU shootdown.
  const mm = I[info + CC_INFO_MM];
  const loaded = cpu.loadedMm;
  if (mm !== loaded) {
    // The CPU was left in the mm_cpumask of the target mm: clear it.
    Atomics.and(I, mmWord(L, mm, MM_CPUMASK) + (cpu.id >> 5), ~(1 << (cpu.id & 31)));
    return;
  }
  if (loaded < 0) return; // init_mm: no user translations in use
  if (cpu.I[cpu.ctl + CC_IS_LAZY] !== 0) {
    // A lazy CPU asked to flush stops using the user tables altogether.
    switch_to_init_mm(cpu);
    return;
  }
  const asid = cpu.asid;
  const localGen = cpu.ctxGen[asid];
  const reqGen = I[info + CC_INFO_GEN];
  if (reqGen <= localGen) {
    cpu.stat(ST_FLUSH_SKIPPED);
    return;
  }
  const mmGen = I[mmWord(L, mm, MM_TLB_GEN)];
  if (localGen === mmGen) {
    cpu.stat(ST_FLUSH_SKIPPED);
    return;
  }
  const end = F[fIndex(info + CC_INFO_END_F)];
  if (end !== TLB_FLUSH_ALL && reqGen === localGen + 1 && reqGen === mmGen) {
    const start = F[fIndex(info + CC_INFO_START_F)];
    const stride = 2 ** I[info + CC_INFO_STRIDE];
    let pages = 0;
    for (let va = start; va < end; va += stride) {
      // one INVLPG per stride; a huge-page stride drops every 4 KiB piece we cached
      const v0 = Math.floor(va / PAGE_SIZE);
      const v1 = Math.floor(Math.min(va + stride, end) / PAGE_SIZE);
      cpu.tlb.flushRange(asid, v0, Math.max(v1, v0 + 1));
      pages++;
    }
    cpu.stat(ST_FLUSH_SINGLE, pages);
    cpu.stat(ST_FLUSH_RANGE);
    cpu.ring.log(EV_FLUSH_LOCAL, start, pages);
  } else {
    cpu.tlb.flushAsid(asid);
    cpu.stat(ST_FLUSH_FULL);
    cpu.ring.log(EV_FLUSH_LOCAL, 0, -1);
  }
  cpu.ctxGen[asid] = mmGen;
}

export function switch_to_init_mm(cpu: Cpu): void {
  cpu.setLoaded(-1, false);
}

export function switch_mm_irqs_off(cpu: Cpu, _prev: number, next: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  const wasLazy = I[cpu.ctl + CC_IS_LAZY] !== 0;
  if (next === cpu.loadedMm && !wasLazy) return;
  if (next < 0) {
    switch_to_init_mm(cpu);
    return;
  }
  // arch/x86/mm/tlb.c switch_mm_irqs_off() (6.18). cpu_tlbstate(_shared) is written with
  // plain this_cpu_write()s and read by flushers without a lock: those stores go through
  // the store buffer (src/hw/store_buffer.ts), and only the barriers below order them
  // against our tlb_gen load.
  if (wasLazy) sb_store(cpu, cpu.ctl + CC_IS_LAZY, 0); // this_cpu_write(cpu_tlbstate_shared.is_lazy, false)
  let gen: number;
  if (next === cpu.loadedMm) {
    // Same mm, coming back from lazy TLB: "smp_mb(): synchronizes with the tlb_gen
    // increment in the TLB shootdown code", then read tlb_gen.
    smp_mb(cpu);
    gen = sb_load(cpu, mmWord(L, next, MM_TLB_GEN));
  } else {
    // A different mm. The kernel first stores LOADED_MM_SWITCHING (and should_flush_tlb()
    // sends an IPI to a CPU in that state, commit fea4e317f9e7, CVE-2025-37964), and
    // stores next at the end; we publish next at once, which a flusher treats the same.
    sb_store(cpu, cpu.ctl + CC_LOADED_MM, next);
    // Join mm_cpumask with a locked RMW (cpumask_set_cpu), or, if already in it, issue
    // smp_mb() (commit 83b0177a6c48 "x86/mm: Fix SMP ordering in switch_mm_irqs_off()"):
    // either the flusher sees our loaded_mm or we see its new tlb_gen.
    const maskWord = mmWord(L, next, MM_CPUMASK) + (cpu.id >> 5);
    const bit = 1 << (cpu.id & 31);
    if ((Atomics.load(I, maskWord) & bit) === 0) {
      sb_drain(cpu); // the LOCK-prefixed bit set drains the buffer before it
      Atomics.or(I, maskWord, bit);
    } else if (!knobs['x86.switch_mm_no_smp_mb']) smp_mb(cpu);
    gen = sb_load(cpu, mmWord(L, next, MM_TLB_GEN));
  }
  // cpu.setLoaded() would store loaded_mm/is_lazy past the buffer: keep them buffered
  cpu.loadedMm = next;
  cpu.asid = cpu.asidOf(next);
  const ctx = Atomics.load(I, mmWord(L, next, MM_CTX_ID));
  if (cpu.ctxId[cpu.asid] !== ctx) {
    // The ASID was last used here by another (now dead) mm: its entries are not ours.
    cpu.tlb.flushAsid(cpu.asid);
    cpu.ctxId[cpu.asid] = ctx;
    cpu.ctxGen[cpu.asid] = gen;
    cpu.stat(ST_SWITCH_FLUSH);
  } else if (cpu.ctxGen[cpu.asid] !== gen) {
    // We missed flushes while this mm was not loaded here: drop its entries.
    if (!knobs['x86.switch_mm_no_gen_check']) {
      cpu.tlb.flushAsid(cpu.asid);
      cpu.stat(ST_SWITCH_FLUSH);
    }
    cpu.ctxGen[cpu.asid] = gen;
  }
}

export function enter_lazy_tlb(cpu: Cpu): void {
  if (cpu.loadedMm >= 0) Atomics.store(cpu.I, cpu.ctl + CC_IS_LAZY, 1);
}

export const x86: Arch = {
  ...native,
  name: 'x86',
  kernel_map_pages_flush: 'local', // arch/x86/mm/pat/set_memory.c __kernel_map_pages: __flush_tlb_all() on this CPU only
  supports_page_table_move: true,
  defers: 'nothing: PTE stores go to memory at once; TLBs are flushed by the caller',
  invalidation: 'IPIs to the CPUs of mm_cpumask running the mm (lazy-TLB ones skipped unless tables are freed); the sender waits for every acknowledgement',
  initHost(host: Host): void {
    initHostCommon(host);
    host.hooks.ipi[IPI_FLUSH_TLB] = flush_tlb_func;
  },
  ptep_clear_flush(mm, addr, ptep) {
    return clear_then_flush(x86, mm, addr, ptep);
  },
  flush_tlb_mm_range,
  flush_tlb_mm(mm) {
    flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, false);
  },
  switch_mm_irqs_off,
  enter_lazy_tlb,
  arch_enter_lazy_mmu_mode() {},
  arch_enter_lazy_mmu_mode_fast_pte_range() {},
  arch_leave_lazy_mmu_mode() {},
  arch_flush_lazy_mmu_mode() {},
};
