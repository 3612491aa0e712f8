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

export interface AuditReport {
  ok: boolean;
  problems: string[];
  usedData: number;
  usedTables: number;
  freeData: number;
  freeTables: number;
  mappedPages: number;
}

export function audit(V: Views, maxProblems = 20): AuditReport {
  const { I, L } = V;
  const n = L.nframes;
  const expMap = new Int32Array(n);
  const expRef = new Int32Array(n);
  const tabRef = new Int32Array(n);
  // compound pages: references count on the head; PMD/PUD leaves in its entire mapcount
  const expEntire = new Int32Array(n);
  const headOf = (pfn: number): number => (pfn > 0 && pfn < n && I[frameWord(L, pfn, FM_FLAGS)] & PG_TAIL ? I[frameWord(L, pfn, FM_COMPOUND)] : pfn);
  const problems: string[] = [];
  const problem = (s: string): void => {
    if (problems.length < maxProblems) problems.push(s);
    else if (problems.length === maxProblems) problems.push('... (more problems not listed)');
  };
  let mapped = 0;
  const walk = (table: number, level: number, mm: number): void => {
    if (level === 2) {
      // a PTE table is deposited with every huge PMD (src/mm/huge_memory.ts)
      const d = deposited_tables(I, L, table);
      for (const t of d) tabRef[t]++;
      let huge = 0;
      for (let i = 0; i < PTRS_PER_TABLE; i++) {
        if ((I[tableEntry(L, table, i)] & (_PAGE_PRESENT | _PAGE_PSE)) === (_PAGE_PRESENT | _PAGE_PSE)) huge++;
      }
      if (d.length !== huge) problem(`mm ${mm}: PMD table pfn ${table} has ${huge} huge PMD(s) but ${d.length} deposited page table(s)`);
    }
    for (let i = 0; i < PTRS_PER_TABLE; i++) {
      const e = I[tableEntry(L, table, i)];
      if ((e & _PAGE_PRESENT) === 0) {
        if (e !== 0) problem(`mm ${mm}: non-present but non-zero entry ${e} at level ${level}`);
        continue;
      }
      const pfn = e >>> PFN_SHIFT;
      if (level < 3 && (e & _PAGE_PSE) === 0) {
        if (pfn <= 0 || pfn >= n) {
          problem(`mm ${mm}: level-${level} entry points outside memory (pfn ${pfn})`);
          continue;
        }
        tabRef[pfn]++;
        walk(pfn, level + 1, mm);
      } else {
        if (pfn === L.dataStart) continue; // the zero page is not counted
        mapped += level === 3 ? 1 : PTRS_PER_TABLE ** (3 - level);
        if (pfn <= 0 || pfn >= n) {
          problem(`mm ${mm}: a level-${level} leaf points outside memory (pfn ${pfn})`);
          continue;
        }
        const head = headOf(pfn);
        expRef[head]++;
        if (level === 3) {
          expMap[pfn]++;
          continue;
        }
        // a huge leaf maps a whole compound page of its size: it counts in the entire mapcount
        expEntire[head]++;
        const want = level === 2 ? HPAGE_PMD_ORDER : HPAGE_PUD_ORDER;
        if (head !== pfn || (I[frameWord(L, pfn, FM_FLAGS)] & (PG_HEAD | PG_FREE)) !== PG_HEAD || I[frameWord(L, pfn, FM_COMPOUND)] !== want) {
          problem(`mm ${mm}: a level-${level} leaf maps pfn ${pfn}, which is not the head of an order-${want} compound page`);
        }
      }
    }
  };
  for (let mm = 0; mm < L.shape.maxMms; mm++) {
    if (I[mmWord(L, mm, MM_IN_USE)] === 0) continue;
    const pgd = I[mmWord(L, mm, MM_PGD)];
    tabRef[pgd]++;
    walk(pgd, 0, mm);
  }
  for (let f = 0; f < L.shape.maxFiles; f++) {
    if (I[fileWord(L, f, FILE_IN_USE)] === 0) continue;
    for (const t of file_nodes(I, L, f)) tabRef[t]++;
    for (const p of file_pages(I, L, f)) expRef[headOf(p)]++;
    const dev = I[fileWord(L, f, FILE_DEV_PFN)]; // a DAX-like device holds its memory
    if (dev !== 0) expRef[dev]++;
  }
  let usedData = 0;
  let usedTables = 0;
  let freeData = 0;
  let freeTables = 0;
  for (let pfn = 1; pfn < n; pfn++) {
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
      continue;
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
  // free stacks
  const checkStack = (zone: number, stack: number, name: string, expected: number): void => {
    const top = I[zone + ALLOC_TOP];
    const seen = new Set<number>();
    for (let k = 0; k < top; k++) {
      const pfn = I[stack + k];
      if (seen.has(pfn)) problem(`${name} free list holds pfn ${pfn} twice (double free)`);
      seen.add(pfn);
      if ((I[frameWord(L, pfn, FM_FLAGS)] & PG_FREE) === 0) problem(`${name} free list holds pfn ${pfn}, which is in use`);
    }
    if (top !== expected) problem(`${name} free list has ${top} entries but ${expected} frames are free`);
  };
  checkStack(L.tableAlloc, L.tableStack, 'page-table', freeTables);
  checkStack(L.dataAlloc, L.dataStack, 'data', freeData);
  for (const p of i_mmap_check(V)) problem(p); // the file rmap matches the VMAs
  return { ok: problems.length === 0, problems, usedData, usedTables, freeData, freeTables, mappedPages: mapped };
}
