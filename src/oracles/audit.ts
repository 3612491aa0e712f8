// The refcount audit, run at quiescence (every CPU stopped): walk every live
// mm's page tables and every file's page cache, count the references each frame
// should have, and compare with its refcount and mapcount. Also checks that the
// allocator's free stacks hold exactly the free frames, once each. Reads shared
// memory only; runs no kernel code.

import {
  type Views, frameWord, tableEntry, mmWord, fileWord, FM_REF, FM_MAP, FM_FLAGS, PG_FREE, PG_TABLE, PG_RESERVED,
  MM_IN_USE, MM_PGD, FILE_IN_USE, ALLOC_TOP, PTRS_PER_TABLE, PG_ANON_EXCLUSIVE,
  PG_HEAD, PG_TAIL, FM_COMPOUND, FM_ENTIRE_MAP, FILE_DEV_PFN, HPAGE_PMD_ORDER, HPAGE_PUD_ORDER,
} from '../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_PSE, PFN_SHIFT } from '../hw/pte.ts';
import { file_pages, file_nodes } from '../mm/shmem.ts';
import { deposited_tables } from '../mm/huge_memory.ts';
import { i_mmap_check } from '../mm/rmap.ts';
import { init_mm_references } from '../mm/vmalloc.ts';

export interface AuditReport {
  ok: boolean;
  problems: string[];
  usedData: number;
  usedTables: number;
  freeData: number;
  freeTables: number;
  mappedPages: number;
}

/** What the audit expects of every frame, counted from the page tables and the page cache, and what it found wrong. */
interface Expected {
  V: Views;
  /** frames in the machine */
  n: number;
  /** PTEs mapping each frame */
  expMap: Int32Array;
  /** references each frame should hold (compound pages: on the head) */
  expRef: Int32Array;
  /** table entries (and file radix nodes) pointing at each table frame */
  tabRef: Int32Array;
  /** compound heads: PMD and PUD leaves mapping the whole folio (entire mapcount) */
  expEntire: Int32Array;
  /** pages mapped by user page tables (the zero page not counted) */
  mapped: number;
  problem: (s: string) => void;
}

function headOf(x: Expected, pfn: number): number {
  const { I, L } = x.V;
  return pfn > 0 && pfn < x.n && I[frameWord(L, pfn, FM_FLAGS)] & PG_TAIL ? I[frameWord(L, pfn, FM_COMPOUND)] : pfn;
}

/** A PMD table deposits one PTE table per huge PMD (src/mm/huge_memory.ts): count them and check the pairing. */
function count_deposited(x: Expected, table: number, mm: number): void {
  const { I, L } = x.V;
  const d = deposited_tables(I, L, table);
  for (const t of d) x.tabRef[t]++;
  let huge = 0;
  for (let i = 0; i < PTRS_PER_TABLE; i++) {
    if ((I[tableEntry(L, table, i)] & (_PAGE_PRESENT | _PAGE_PSE)) === (_PAGE_PRESENT | _PAGE_PSE)) huge++;
  }
  if (d.length !== huge) x.problem(`mm ${mm}: PMD table pfn ${table} has ${huge} huge PMD(s) but ${d.length} deposited page table(s)`);
}

/** A leaf entry (a PTE, or a huge PMD/PUD) maps pfn: count its reference and mapping. */
function count_leaf(x: Expected, pfn: number, level: number, mm: number): void {
  const { I, L } = x.V;
  if (pfn === L.dataStart) return; // the zero page is not counted
  x.mapped += level === 3 ? 1 : PTRS_PER_TABLE ** (3 - level);
  if (pfn <= 0 || pfn >= x.n) {
    x.problem(`mm ${mm}: a level-${level} leaf points outside memory (pfn ${pfn})`);
    return;
  }
  const head = headOf(x, pfn);
  x.expRef[head]++;
  if (level === 3) {
    x.expMap[pfn]++;
    return;
  }
  // a huge leaf maps a whole compound page of its size: it counts in the entire mapcount
  x.expEntire[head]++;
  const want = level === 2 ? HPAGE_PMD_ORDER : HPAGE_PUD_ORDER;
  if (head !== pfn || (I[frameWord(L, pfn, FM_FLAGS)] & (PG_HEAD | PG_FREE)) !== PG_HEAD || I[frameWord(L, pfn, FM_COMPOUND)] !== want) {
    x.problem(`mm ${mm}: a level-${level} leaf maps pfn ${pfn}, which is not the head of an order-${want} compound page`);
  }
}

/** Walk one page table (level 0: PGD .. 3: PTE table) of mm, counting what its entries reference. */
function walk_table(x: Expected, table: number, level: number, mm: number): void {
  const { I, L } = x.V;
  if (level === 2) count_deposited(x, table, mm);
  for (let i = 0; i < PTRS_PER_TABLE; i++) {
    const e = I[tableEntry(L, table, i)];
    if ((e & _PAGE_PRESENT) === 0) {
      if (e !== 0) x.problem(`mm ${mm}: non-present but non-zero entry ${e} at level ${level}`);
      continue;
    }
    const pfn = e >>> PFN_SHIFT;
    if (level < 3 && (e & _PAGE_PSE) === 0) {
      if (pfn <= 0 || pfn >= x.n) {
        x.problem(`mm ${mm}: level-${level} entry points outside memory (pfn ${pfn})`);
        continue;
      }
      x.tabRef[pfn]++;
      walk_table(x, pfn, level + 1, mm);
    } else {
      count_leaf(x, pfn, level, mm);
    }
  }
}

/** Every live mm's page tables, then every file's page cache and device memory. */
function count_references(x: Expected): void {
  const { I, L } = x.V;
  for (let mm = 0; mm < L.shape.maxMms; mm++) {
    if (I[mmWord(L, mm, MM_IN_USE)] === 0) continue;
    const pgd = I[mmWord(L, mm, MM_PGD)];
    x.tabRef[pgd]++;
    walk_table(x, pgd, 0, mm);
  }
  // init_mm (src/mm/vmalloc.ts): its tables, and one reference per vmalloc'd page (vm->pages)
  init_mm_references(x.V, (t) => x.tabRef[t]++, (pfn) => x.expRef[pfn]++, x.problem);
  for (let f = 0; f < L.shape.maxFiles; f++) {
    if (I[fileWord(L, f, FILE_IN_USE)] === 0) continue;
    for (const t of file_nodes(I, L, f)) x.tabRef[t]++;
    for (const p of file_pages(I, L, f)) x.expRef[headOf(x, p)]++;
    const dev = I[fileWord(L, f, FILE_DEV_PFN)]; // a DAX-like device holds its memory
    if (dev !== 0) x.expRef[dev]++;
  }
}

/** A data frame in use: its mapcount, refcount and compound-page state against what was counted. */
function check_data_frame(x: Expected, pfn: number, flags: number): void {
  const { I, L } = x.V;
  const { expMap, expRef, expEntire, n, problem } = x;
  const ref = I[frameWord(L, pfn, FM_REF)];
  const map = I[frameWord(L, pfn, FM_MAP)];
  if (map !== expMap[pfn]) problem(`pfn ${pfn}: mapcount ${map} but ${expMap[pfn]} PTEs map it`);
  if (flags & PG_ANON_EXCLUSIVE && expMap[pfn] > 1) problem(`pfn ${pfn} is anon-exclusive but ${expMap[pfn]} PTEs map it (docs/kernel-rules.md#cow-invariants)`);
  if (flags & PG_TAIL) {
    // a tail: its references and whole-page mappings are counted on the head
    const head = I[frameWord(L, pfn, FM_COMPOUND)];
    const hf = head > 0 && head < n ? I[frameWord(L, head, FM_FLAGS)] : 0;
    if ((hf & (PG_HEAD | PG_FREE)) !== PG_HEAD || pfn >= head + 2 ** I[frameWord(L, head, FM_COMPOUND)]) {
      problem(`pfn ${pfn} is a tail of pfn ${head}, which is not the head of a compound page containing it`);
    }
    if (ref !== 0) problem(`tail pfn ${pfn} has refcount ${ref} (references belong on the head, pfn ${head})`);
    return;
  }
  if (flags & PG_HEAD) {
    const entire = I[frameWord(L, pfn + 1, FM_ENTIRE_MAP)];
    if (entire !== expEntire[pfn]) problem(`compound pfn ${pfn}: entire mapcount ${entire} but ${expEntire[pfn]} huge leaves map it`);
  }
  if (ref !== expRef[pfn]) {
    problem(ref > expRef[pfn]
      ? `pfn ${pfn}: refcount ${ref} but only ${expRef[pfn]} references exist (leaked ${ref - expRef[pfn]})`
      : `pfn ${pfn}: refcount ${ref} but ${expRef[pfn]} references exist (a later put would free it while in use)`);
  }
}

/** Every frame against the counts: free frames unreferenced, tables referenced once, data frames as counted. */
function check_frames(x: Expected): { usedData: number; usedTables: number; freeData: number; freeTables: number } {
  const { I, L } = x.V;
  const { expMap, expRef, tabRef, expEntire, problem } = x;
  let usedData = 0;
  let usedTables = 0;
  let freeData = 0;
  let freeTables = 0;
  for (let pfn = 1; pfn < x.n; pfn++) {
    const flags = I[frameWord(L, pfn, FM_FLAGS)];
    if (flags & PG_RESERVED) continue;
    const isTableZone = pfn < L.shape.tableFrames;
    if (flags & PG_FREE) {
      if (isTableZone) freeTables++;
      else freeData++;
      if (expMap[pfn] || expRef[pfn] || tabRef[pfn] || expEntire[pfn]) {
        problem(`pfn ${pfn} is free but still referenced (${expMap[pfn]} PTEs, ${tabRef[pfn]} table entries, ${expRef[pfn] - expMap[pfn]} cache refs): use after free`);
      }
      continue;
    }
    if (flags & PG_TABLE) {
      usedTables++;
      if (tabRef[pfn] !== 1) {
        problem(tabRef[pfn] === 0 ? `page-table pfn ${pfn} is allocated but no table or file references it (leaked)` : `page-table pfn ${pfn} is referenced ${tabRef[pfn]} times`);
      }
      continue;
    }
    usedData++;
    check_data_frame(x, pfn, flags);
  }
  return { usedData, usedTables, freeData, freeTables };
}

/** An allocator's free stack holds exactly the free frames of its zone, once each. */
function check_free_list(x: Expected, zone: number, stack: number, name: string, expected: number): void {
  const { I, L } = x.V;
  const top = I[zone + ALLOC_TOP];
  const seen = new Set<number>();
  for (let k = 0; k < top; k++) {
    const pfn = I[stack + k];
    if (seen.has(pfn)) x.problem(`${name} free list holds pfn ${pfn} twice (double free)`);
    seen.add(pfn);
    if ((I[frameWord(L, pfn, FM_FLAGS)] & PG_FREE) === 0) x.problem(`${name} free list holds pfn ${pfn}, which is in use`);
  }
  if (top !== expected) x.problem(`${name} free list has ${top} entries but ${expected} frames are free`);
}

export function audit(V: Views, maxProblems = 20): AuditReport {
  const { L } = V;
  const n = L.nframes;
  const problems: string[] = [];
  const x: Expected = {
    V, n, expMap: new Int32Array(n), expRef: new Int32Array(n), tabRef: new Int32Array(n), expEntire: new Int32Array(n), mapped: 0,
    problem: (s: string): void => {
      if (problems.length < maxProblems) problems.push(s);
      else if (problems.length === maxProblems) problems.push('... (more problems not listed)');
    },
  };
  count_references(x);
  const used = check_frames(x);
  check_free_list(x, L.tableAlloc, L.tableStack, 'page-table', used.freeTables);
  check_free_list(x, L.dataAlloc, L.dataStack, 'data', used.freeData);
  for (const p of i_mmap_check(V)) x.problem(p); // the file rmap matches the VMAs
  return { ok: problems.length === 0, problems, ...used, mappedPages: x.mapped };
}
