// The stale-TLB oracle: translations that outlive the change that removed them.
//
// The use-after-free oracle (src/hw/cpu.ts) sees a stale TLB entry only once the
// frame behind it has been freed. This one judges every use of an entry against
// the kernel's promise: once a change that narrows translations has passed its
// promise point, no CPU may use a translation of the range that is older than
// the change and wider than what the page tables now allow:
//   - the mapping is gone (PTE none or not present),
//   - the page tables map another frame there,
//   - a write where the PTE allows only reads,
//   - a huge (PMD/PUD) translation where the page tables now hold a PTE table.
// An older entry narrower than the page tables (read-only after an upgrade) is
// legal: it only causes a spurious fault, which the fault path handles.
//
// Promise points (each is where the kernel has finished its flush; the hook
// sits at or after it, never before: a stricter oracle would be a false positive):
//   munmap, brk shrink, mremap (both ranges), madvise(MADV_DONTNEED/MADV_FREE),
//   truncation, exit: the content oracle's discard hook, whose `done` call
//     follows tlb_finish_mmu (mm/vma.c unmap_region -> mm/mmu_gather.c
//     tlb_finish_mmu; mm/madvise.c madvise_dontneed_single_vma; mm/mremap.c
//     move_page_tables flushes old ranges before dropping the PTL and the old
//     VMA is unmapped before mremap returns; mm/truncate.c unmap_mapping_range);
//   mprotect: after the syscall body, that is after tlb_finish_mmu and
//     mmap_write_unlock (mm/mprotect.c do_mprotect_pkey: tlb_gather_mmu ...
//     mprotect_fixup -> change_protection -> tlb_finish_mmu);
//   THP split: when the PMD lock is dropped (mm/huge_memory.c __split_huge_pmd:
//     __split_huge_pmd_locked calls pmdp_invalidate, whose flush_pmd_tlb_range
//     runs before pmd_populate, all under the PMD lock; its comment explains
//     that no CPU may hold the huge translation once the PTE table is installed
//     (AMD erratum 383; arm64 break-before-make));
//   PUD split of a DAX-like leaf: __split_huge_pud, same;
//   COW (mm/memory.c wp_page_copy): ptep_clear_flush before set_pte_at;
//   fork (kernel/fork.c dup_mmap): flush_tlb_mm(oldmm) before mmap_write_unlock;
//   reclaim (mm/rmap.c try_to_unmap_one): the flush before the page is freed;
//     this machine flushes in place (ptep_clear_flush) rather than batching
//     through set_tlb_ubc_flush_pending / try_to_unmap_flush.
//
// Design, for a cheap TLB hit: a global change counter (H_PROMISE_SEQ) stamps each
// TLB fill with the value read before its walk; each change takes the next id
// and records [start, end) in its mm's promise log, in flight; at its promise
// point it is marked done and the mm's MM_PR_MAX raised to a fresh number (above
// every id handed out). A hit whose entry stamp is >= MM_PR_MAX (or that was
// judged at this MM_PR_MAX already) is not looked at; otherwise the page tables
// are read here (no side effects), and only an entry wider than they allow has
// the log scanned for the completed change that covers it. While any change covering the
// page is still in flight the use is not judged (its page-table state is in
// flux, and the previous state's translations are legal until its own promise).

import type { Cpu } from '../hw/cpu.ts';
import {
  type Views, mmWord, promiseWord, tableEntry, frameWord, H_PROMISE_SEQ, MM_PR_MAX, MM_PR_SLOT, MM_CTX_ID, MM_PGD,
  PR_ENTRIES, FM_OWNER,
} from '../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_PSE, PFN_SHIFT } from '../hw/pte.ts';
import { TLB_W, TLB_HUGE } from '../hw/tlb.ts';
import { pgtIndex } from '../hw/walker.ts';
import { EV } from '../hw/trace.ts';
import { current } from '../hw/cpu.ts';

/** What changed the page tables (the `what` of Hooks.promise). */
export const CHANGE = {
  unmap: 1, // munmap, brk, mremap, madvise DONTNEED/FREE, truncation, exit (the discard hook)
  mprotect: 2,
  thp_split: 3,
  cow: 4,
  fork: 5,
  reclaim: 6,
  pud_split: 7,
} as const;
export const CHANGE_NAMES: Record<number, string> = {
  1: 'unmap (munmap/mremap/madvise/truncate)', 2: 'mprotect', 3: 'THP split (__split_huge_pmd)', 4: 'COW (wp_page_copy)',
  5: 'fork (dup_mmap write-protect)', 6: 'reclaim (try_to_unmap_one)', 7: 'PUD split (__split_huge_pud)',
};

// entry words
const P_STATE = 0;
const P_ID = 1;
const P_KIND = 2;
const P_CPU = 3;
const P_CTX = 4;
/**
 * who made the promise: its task (or, outside a task, -2 - its CPU). The done call of the change
 * matches on it, not on the CPU: a task preempted between the two (under an rwsem such as the
 * mmap_lock, after a spin_unlock) may finish on another CPU, and a promise matched by CPU then
 * never completed and kept its range out of judgement for the life of the mm
 */
const P_WHO = 5;
const P_START_F = 6; // Float64 word pairs
const P_END_F = 8;
const PR_FREE = 0;
const PR_INFLIGHT = 1;
const PR_DONE = 2;

/** The kernel's promise hook (Hooks.promise). */
export function makePromiseHook(V: Views): (mm: number, start: number, end: number, done: boolean, what: number) => void {
  const { I, F, L } = V;
  return (mm, start, end, done, what) => {
    if (mm < 0) return;
    const cpu = current;
    const cpuId = cpu === undefined ? -1 : cpu.id;
    const who = cpu === undefined ? -1 : cpu.curTask >= 0 ? cpu.curTask : -2 - cpu.id;
    const ctx = Atomics.load(I, mmWord(L, mm, MM_CTX_ID));
    if (!done) {
      const id = Atomics.add(I, L.header + H_PROMISE_SEQ, 1) + 1;
      let b = -1;
      for (let tries = 0; tries < PR_ENTRIES; tries++) {
        const e = (Atomics.add(I, mmWord(L, mm, MM_PR_SLOT), 1) >>> 0) % PR_ENTRIES;
        b = promiseWord(L, mm, e);
        if (Atomics.load(I, b + P_STATE) !== PR_INFLIGHT || I[b + P_CTX] !== ctx) break;
      }
      Atomics.store(I, b + P_STATE, PR_FREE);
      I[b + P_ID] = id;
      I[b + P_KIND] = what;
      I[b + P_CPU] = cpuId;
      I[b + P_WHO] = who;
      I[b + P_CTX] = ctx;
      F[(b + P_START_F) >> 1] = start;
      F[(b + P_END_F) >> 1] = end;
      Atomics.store(I, b + P_STATE, PR_INFLIGHT);
      cpu?.ring.log(EV.CHANGE_BEGIN, start, end + what); // b: the end (page-aligned) plus the kind
      return;
    }
    for (let e = 0; e < PR_ENTRIES; e++) {
      const b = promiseWord(L, mm, e);
      if (Atomics.load(I, b + P_STATE) !== PR_INFLIGHT || I[b + P_WHO] !== who || I[b + P_KIND] !== what || I[b + P_CTX] !== ctx) continue;
      if (F[(b + P_START_F) >> 1] !== start || F[(b + P_END_F) >> 1] !== end) continue;
      Atomics.store(I, b + P_STATE, PR_DONE);
      // the promise takes a number of its own: MM_PR_MAX then exceeds every id handed out so far
      // (this change's included) and grows at every promise, which voids every judgement cached before it
      const pm = Atomics.add(I, L.header + H_PROMISE_SEQ, 1) + 1;
      const w = mmWord(L, mm, MM_PR_MAX);
      for (let cur = Atomics.load(I, w); pm > cur; cur = Atomics.load(I, w)) if (Atomics.compareExchange(I, w, cur, pm) === cur) break;
      cpu?.ring.log(EV.PROMISE, start, what);
      return;
    }
  };
}

/** What the page tables of mm allow at va now: the leaf entry (0: nothing) and whether it is huge. */
function leafOf(V: Views, mm: number, va: number): { e: number; huge: boolean; sub: number } {
  const { I, L } = V;
  let table = I[mmWord(L, mm, MM_PGD)];
  const shifts = [39, 30, 21, 12];
  for (let level = 0; level < 4; level++) {
    const e = Atomics.load(I, tableEntry(L, table, pgtIndex(va, shifts[level])));
    if ((e & _PAGE_PRESENT) === 0) return { e: 0, huge: false, sub: 0 };
    if (level === 3 || (e & _PAGE_PSE) !== 0) {
      const sub = level === 3 ? 0 : Math.floor(va / 4096) % 2 ** (shifts[level] - 12);
      return { e, huge: level < 3, sub };
    }
    table = e >>> PFN_SHIFT;
    // a table freed or reused under us: nothing the page tables allow
    if (Atomics.load(I, frameWord(L, table, FM_OWNER)) !== mm + 1) return { e: 0, huge: false, sub: 0 };
  }
  return { e: 0, huge: false, sub: 0 };
}

/** The slow path of a TLB hit (Hooks.stale_use): judge the use of slot s. */
export function makeStaleUseCheck(V: Views): (cpu: Cpu, s: number, va: number, write: boolean) => void {
  const { I, F, L } = V;
  return (cpu, s, va, write) => {
    const mm = cpu.loadedMm;
    const tlb = cpu.tlb;
    const pm = Atomics.load(I, mmWord(L, mm, MM_PR_MAX));
    const stamp = tlb.stamp[s];
    // first the page tables: an entry no wider than they allow is fine whatever happened
    // (cached until the next promise of this mm)
    const leaf = leafOf(V, mm, va);
    const pfn = tlb.pfn[s];
    const flags = tlb.flags[s];
    let why = '';
    if (leaf.e === 0 || (leaf.e & _PAGE_USER) === 0) why = 'the page tables no longer map the page';
    else if ((leaf.e >>> PFN_SHIFT) + leaf.sub !== pfn) why = `the page tables map pfn ${(leaf.e >>> PFN_SHIFT) + leaf.sub} there now`;
    else if ((flags & TLB_HUGE) !== 0 && !leaf.huge) why = 'the entry is a huge-page translation but the page tables hold a PTE table there now';
    else if ((flags & TLB_W) !== 0 && (leaf.e & _PAGE_RW) === 0) {
      if (!write) return; // a read through a writable entry is allowed: judge the next write
      why = 'the PTE is read-only now';
    }
    if (why === '') {
      tlb.chk[s] = pm;
      return;
    }
    // wider: which completed change covering the page came after the fill?
    const ctx = Atomics.load(I, mmWord(L, mm, MM_CTX_ID));
    let best = -1;
    let bestId = -1;
    for (let e = 0; e < PR_ENTRIES; e++) {
      const b = promiseWord(L, mm, e);
      const st = Atomics.load(I, b + P_STATE);
      if (st === PR_FREE || I[b + P_CTX] !== ctx) continue;
      if (va < F[(b + P_START_F) >> 1] || va >= F[(b + P_END_F) >> 1]) continue;
      if (st === PR_INFLIGHT) return; // in flux: not judged now (and not cached)
      const id = I[b + P_ID];
      if (id > stamp && id > bestId) {
        best = b;
        bestId = id;
      }
    }
    if (best < 0) {
      // no completed change covers it since the fill (a narrowing this oracle does not
      // track, or one that fell out of the log): not judged
      tlb.chk[s] = pm;
      return;
    }
    tlb.chk[s] = pm; // report once per entry and promise
    const changer = I[best + P_CPU];
    const kind = I[best + P_KIND];
    const lo = F[(best + P_START_F) >> 1], hi = F[(best + P_END_F) >> 1];
    cpu.host.hooks.violation({
      kind: 'stale-tlb',
      cpu: cpu.id,
      va,
      pfn,
      cpus: changer >= 0 && changer !== cpu.id ? [changer] : [],
      message:
        `cpu ${cpu.id} ${write ? 'wrote' : 'read'} 0x${va.toString(16)} through a TLB entry (pfn ${pfn}, ${flags & TLB_W ? 'writable' : 'read-only'}${flags & TLB_HUGE ? ', huge' : ''}) ` +
        `filled before change #${bestId}, ${CHANGE_NAMES[kind] ?? kind} of 0x${lo.toString(16)}-0x${hi.toString(16)} by cpu ${changer}, ` +
        `which had passed its promise point: ${why} (a TLB flush is missing or late)`,
    });
  };
}
