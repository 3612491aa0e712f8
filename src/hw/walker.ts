// The hardware page walker (x86-style): reads entries with Atomics, sets the
// accessed and dirty bits with compareExchange, fills the TLB. It never takes a
// lock: it races with the kernel exactly as a real MMU does.

import {
  frameWord, mmWord, tableEntry, FM_GEN, FM_FLAGS, FM_OWNER, PG_FREE, PG_TABLE, MM_PGD,
  PTRS_PER_TABLE, KERNEL_ASID, PAGE_OFFSET, FRAME_META_WORDS, MM_WORDS, PGDIR_SIZE, PUD_SIZE,
} from './layout.ts';
import {
  _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, PFN_SHIFT,
} from './pte.ts';
import { TLB_W, TLB_D, TLB_HUGE, TLB_LINEAR } from './tlb.ts';
import type { Cpu } from './cpu.ts';
import { EV } from './trace.ts';

export const WALK_NOT_PRESENT = -1;
export const WALK_PROT = -2;
export const WALK_NO_MM = -3;
// the same codes for walk()'s own returns: an exported binding is a cell that optimized code loads and hole-checks at each use
const NOT_PRESENT = WALK_NOT_PRESENT;
const PROT = WALK_PROT;
const NO_MM = WALK_NO_MM;

/** Index of the entry for va at a level whose entries each cover 2^shift bytes. */
export function pgtIndex(va: number, shift: number): number {
  // >>> sees only the low 32 bits of va: fine while the index bits (shift..shift+8) lie below bit 32
  return shift <= 23 ? (va >>> shift) & (PTRS_PER_TABLE - 1) : Math.floor(va / 2 ** shift) & (PTRS_PER_TABLE - 1);
}

const LEVEL_SHIFTS = [39, 30, 21, 12];
/** 2^shift of each level: the divisor of pgtIndex for shifts past 23, computed once */
const LEVEL_SIZES = new Float64Array(LEVEL_SHIFTS.map((s) => 2 ** s));

// walk()'s constants, bound in this module. Optimized code folds a module's own
// const bindings; an imported binding it loads from its cell at every use, with a
// hole (TDZ) check and a Smi check: a few dozen loads and branches per walk.
const PTRS = PTRS_PER_TABLE;
const IDX_MASK = PTRS_PER_TABLE - 1;
const META = FRAME_META_WORDS;
const G_FREE = PG_FREE;
const G_TABLE = PG_TABLE;
const M_WORDS = MM_WORDS;
const P_PRESENT = _PAGE_PRESENT;
const P_RW = _PAGE_RW;
const P_USER = _PAGE_USER;
const P_ACCESSED = _PAGE_ACCESSED;
const P_DIRTY = _PAGE_DIRTY;
const P_PSE = _PAGE_PSE;
const P_PFN_SHIFT = PFN_SHIFT;
const T_W = TLB_W;
const T_D = TLB_D;
const T_HUGE = TLB_HUGE;
const EV_TLB_FILL = EV.TLB_FILL;
/** the divisors of the two upper levels' indices (pgtIndex): constants, so that the division is a multiplication */
const PGD_BYTES = PGDIR_SIZE;
const PUD_BYTES = PUD_SIZE;

/**
 * Walk mm's tables for va. On success the translation is in the TLB and the slot
 * is returned; otherwise a negative WALK_* code (the caller takes a page fault).
 *
 * The four levels are written out (not a loop): each level's index is then
 * computed with constants, and the walk-freed-table oracle's report is a call
 * out of line (walkFreedTable), so that this function stays small.
 */
export function walk(cpu: Cpu, mm: number, va: number, vpn: number, write: boolean): number {
  const I = cpu.I;
  const L = cpu.V.L;
  cpu.walks++; // published to ST_WALKS at the next operation boundary (Cpu.publishStats)
  if (mm < 0) return NO_MM;
  // stale-TLB oracle hook: the change id in force before this walk reads any entry
  const stamp = Atomics.load(I, L.promiseSeq);
  const owner = mm + 1;
  // word indices of table 0's entries (tableEntry(L, 0, 0)) and of frame 0's metadata
  // fields (Layout's precomputed frameWord(L, 0, field)s): pfn * PTRS or pfn * META away from any other's
  const entries = L.tableMem;
  const flags0 = L.frameFlags0;
  const owner0 = L.frameOwner0;
  const gen0 = L.frameGen0;
  let table = I[L.mmPgd0 + mm * M_WORDS]; // mmWord(L, mm, MM_PGD)
  // level 0 (PGD); pgtIndex(va, 39), inline: the upper levels' index bits lie above bit 31
  let idx = entries + table * PTRS + (Math.floor(va / PGD_BYTES) & IDX_MASK);
  cpu.hw_point();
  let e = Atomics.load(I, idx);
  if ((e & P_PRESENT) === 0) return NOT_PRESENT;
  let level = 0;
  if ((e & P_PSE) === 0) {
    // The walk-freed-table oracle. Its metadata loads are plain loads (MOVs), as the
    // UAF check of a TLB hit is: after the entry's Atomics.load in program order,
    // and a third of the cost of a walk when they were Atomics calls.
    table = e >>> P_PFN_SHIFT;
    let fl = I[flags0 + table * META];
    if ((fl & G_TABLE) === 0 || (fl & G_FREE) !== 0 || I[owner0 + table * META] !== owner) return walkFreedTable(cpu, va, table, fl, 0);
    // level 1 (PUD)
    idx = entries + table * PTRS + (Math.floor(va / PUD_BYTES) & IDX_MASK);
    cpu.hw_point();
    e = Atomics.load(I, idx);
    if ((e & P_PRESENT) === 0) return NOT_PRESENT;
    level = 1;
    if ((e & P_PSE) === 0) {
      table = e >>> P_PFN_SHIFT;
      fl = I[flags0 + table * META];
      if ((fl & G_TABLE) === 0 || (fl & G_FREE) !== 0 || I[owner0 + table * META] !== owner) return walkFreedTable(cpu, va, table, fl, 1);
      // level 2 (PMD)
      idx = entries + table * PTRS + ((va >>> 21) & IDX_MASK);
      cpu.hw_point();
      e = Atomics.load(I, idx);
      if ((e & P_PRESENT) === 0) return NOT_PRESENT;
      level = 2;
      if ((e & P_PSE) === 0) {
        table = e >>> P_PFN_SHIFT;
        fl = I[flags0 + table * META];
        if ((fl & G_TABLE) === 0 || (fl & G_FREE) !== 0 || I[owner0 + table * META] !== owner) return walkFreedTable(cpu, va, table, fl, 2);
        // level 3 (PTE)
        idx = entries + table * PTRS + ((va >>> 12) & IDX_MASK);
        cpu.hw_point();
        e = Atomics.load(I, idx);
        if ((e & P_PRESENT) === 0) return NOT_PRESENT;
        level = 3;
      }
    }
  }
  // the leaf
  if ((e & P_USER) === 0) return PROT;
  if (write && (e & P_RW) === 0) return PROT;
  // Set accessed (and dirty on a write) atomically, as x86 hardware does; if the
  // entry changed under us, re-check it.
  const want = P_ACCESSED | (write ? P_DIRTY : 0);
  while ((e & want) !== want) {
    const old = Atomics.compareExchange(I, idx, e, e | want);
    if (old === e) {
      e |= want;
      break;
    }
    e = old;
    if ((e & P_PRESENT) === 0) return NOT_PRESENT;
    if (write && (e & P_RW) === 0) return PROT;
  }
  // A huge leaf maps 2^(shift-12) pages; this TLB caches the 4 KiB piece.
  const pfn = level === 3 ? e >>> P_PFN_SHIFT : (e >>> P_PFN_SHIFT) + hugeSub(vpn, level);
  const fl = I[flags0 + pfn * META]; // oracle metadata: a plain load (above)
  if ((fl & G_FREE) !== 0) walkFreeFrame(cpu, va, pfn, idx, e);
  const gen = I[gen0 + pfn * META]; // read after the leaf entry, in program order
  const flags = ((e & P_RW) !== 0 ? T_W : 0) | ((e & P_DIRTY) !== 0 ? T_D : 0) | (level < 3 ? T_HUGE : 0);
  cpu.ring.log(EV_TLB_FILL, va, pfn);
  return cpu.tlb.fillStamped(cpu.asid, vpn, pfn, flags, gen, stamp); // stamp: the stale-TLB oracle hook
}

/** The 4 KiB page of a huge leaf at `level` (0..2) that vpn falls in: vpn % 2^(shift-12). */
function hugeSub(vpn: number, level: number): number {
  return vpn % 2 ** (LEVEL_SHIFTS[level] - 12);
}

/** walk()'s walk-freed-table report: the entry at `level` named table frame `pfn`, whose flags were `fl`. */
function walkFreedTable(cpu: Cpu, va: number, pfn: number, fl: number, level: number): number {
  cpu.host.hooks.violation({
    kind: 'walk-freed-table', cpu: cpu.id, va, pfn,
    message: `cpu ${cpu.id}'s page walk for 0x${va.toString(16)} reached level-${level + 1} table pfn ${pfn}, which is ${(fl & PG_FREE) !== 0 ? 'free' : (fl & PG_TABLE) === 0 ? 'not a page table' : 'a table of another mm'} (page table freed before the walkers were flushed)`,
  });
  return WALK_NOT_PRESENT;
}

/** walk()'s pte-maps-free-frame report: the leaf entry e (at word idx) maps pfn, which is free. */
function walkFreeFrame(cpu: Cpu, va: number, pfn: number, idx: number, e: number): void {
  const I = cpu.I;
  const L = cpu.V.L;
  cpu.host.hooks.violation({
    kind: 'pte-maps-free-frame', cpu: cpu.id, va, pfn,
    cpus: [Atomics.load(I, frameWord(L, pfn, FM_OWNER)) - 1].filter((c) => c >= 0 && c !== cpu.id),
    // The entry may have been cleared since this walk read it: an unmap that frees
    // the page before its shootdown reaches this CPU (a walk is one fill, as hardware's,
    // so no flush can land inside it; only a free without the flush gets here).
    message: Atomics.load(I, idx) === e
      ? `cpu ${cpu.id}'s page walk for 0x${va.toString(16)} found a present PTE for pfn ${pfn}, which is free (freed before it was unmapped)`
      : `cpu ${cpu.id}'s page walk for 0x${va.toString(16)} read a present PTE for pfn ${pfn}, which was cleared and the page freed before this CPU's TLB was flushed (freed before the flush)`,
  });
}

/**
 * The walk of a kernel address (the kernel half, src/hw/layout.ts): init_mm's
 * tables (arm64 TTBR1_EL1; x86-64 the kernel PGD entries shared by every pgd),
 * whatever user mm the CPU has loaded. Kernel leaves carry no _PAGE_USER; the
 * entry is global (tagged KERNEL_ASID, src/hw/tlb.ts). A separate function so
 * that the user walk above does no more work than before (issue #11: the page
 * walk must not get slower). Returns the TLB slot, or WALK_NOT_PRESENT (a
 * kernel translation fault).
 */
export function walk_kernel(cpu: Cpu, va: number, vpn: number, write: boolean): number {
  const I = cpu.I;
  const L = cpu.V.L;
  const initMm = L.initMm;
  let table = I[mmWord(L, initMm, MM_PGD)];
  if (table === 0) return WALK_NOT_PRESENT;
  const entries = tableEntry(L, 0, 0);
  for (let level = 0; level < 4; level++) {
    const shift = LEVEL_SHIFTS[level];
    const i = level >= 2 ? (va >>> shift) & (PTRS_PER_TABLE - 1) : Math.floor(va / LEVEL_SIZES[level]) & (PTRS_PER_TABLE - 1);
    const idx = entries + table * PTRS_PER_TABLE + i;
    cpu.hw_point();
    const e = Atomics.load(I, idx);
    if ((e & _PAGE_PRESENT) === 0) return WALK_NOT_PRESENT;
    if (level < 3) {
      const next = e >>> PFN_SHIFT;
      const fl = I[frameWord(L, next, FM_FLAGS)];
      if ((fl & PG_TABLE) === 0 || (fl & PG_FREE) !== 0 || I[frameWord(L, next, FM_OWNER)] !== initMm + 1) {
        cpu.host.hooks.violation({
          kind: 'walk-freed-table', cpu: cpu.id, va, pfn: next,
          message: `cpu ${cpu.id}'s page walk for kernel address 0x${va.toString(16)} reached level-${level + 1} table pfn ${next}, which is ${(fl & PG_FREE) !== 0 ? 'free' : (fl & PG_TABLE) === 0 ? 'not a page table' : 'not a table of init_mm'}`,
        });
        return WALK_NOT_PRESENT;
      }
      table = next;
      continue;
    }
    if (write && (e & _PAGE_RW) === 0) return WALK_PROT;
    const pfn = e >>> PFN_SHIFT;
    const fl = I[frameWord(L, pfn, FM_FLAGS)];
    const linear = va >= PAGE_OFFSET;
    if ((fl & PG_FREE) !== 0) {
      cpu.host.hooks.violation({
        kind: 'pte-maps-free-frame', cpu: cpu.id, va, pfn,
        cpus: [Atomics.load(I, frameWord(L, pfn, FM_OWNER)) - 1].filter((c) => c >= 0 && c !== cpu.id),
        message: `cpu ${cpu.id}'s page walk for kernel address 0x${va.toString(16)} found a present ${linear ? 'linear-map' : 'vmalloc'} PTE for pfn ${pfn}, which is free (freed before it was unmapped)`,
      });
    }
    const gen = I[frameWord(L, pfn, FM_GEN)];
    cpu.ring.log(EV.TLB_FILL, va, pfn);
    return cpu.tlb.fill(KERNEL_ASID, vpn, pfn, TLB_W | TLB_D | (linear ? TLB_LINEAR : 0), gen);
  }
  return WALK_NOT_PRESENT;
}
