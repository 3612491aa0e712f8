// mm/rmap.c: the rmap locks and the file rmap (i_mmap). A file's i_mmap_rwsem guards the
// file's tree of mappings (rmap walkers such as truncation and reclaim take it
// for read); an anon_vma's rwsem guards the VMAs that share its anonymous
// pages. mremap takes both for write around moves that could hide a PTE from a
// walker (need_rmap_locks from mm/vma.c copy_vma(); commit 38a76013ad80 "mm: avoid
// taking rmap locks in move_ptes()") and always around whole-table moves
// (NORMAL_PMD / NORMAL_PUD: mm/mremap.c should_take_rmap_locks(), commit 97113eb39fa7).

import { current } from '../hw/cpu.ts';
import { down_read, up_read, down_write, up_write } from '../hw/locks.ts';
import {
  type Layout, type Views, fileWord, anonVmaLock, iMmapF, mmWord, vmaF, vmaIdx, FILE_I_MMAP, FILE_IN_USE, MM_IN_USE, MM_NVMAS,
  VMA_START, VMA_END, VMA_PGOFF, VMA_FILE, IM_MM, IM_START, IM_END, IM_PGOFF, IM_F64, PAGE_SIZE,
} from '../hw/layout.ts';
import type { Vma } from './vma.ts';

export function i_mmap_lock_write(file: number): void {
  down_write(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_unlock_write(file: number): void {
  up_write(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_lock_read(file: number): void {
  down_read(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_unlock_read(file: number): void {
  up_read(fileWord(current.V.L, file, FILE_I_MMAP));
}

export function anon_vma_lock_write(anon: number): void {
  down_write(anonVmaLock(current.V.L, anon));
}
export function anon_vma_unlock_write(anon: number): void {
  up_write(anonVmaLock(current.V.L, anon));
}
export function anon_vma_lock_read(anon: number): void {
  down_read(anonVmaLock(current.V.L, anon));
}
export function anon_vma_unlock_read(anon: number): void {
  up_read(anonVmaLock(current.V.L, anon));
}

/** take_rmap_locks (mm/mremap.c): the file's i_mmap_rwsem, then the anon_vma's, both for write. */
export function take_rmap_locks(vma: Vma): void {
  if (vma.file >= 0) i_mmap_lock_write(vma.file);
  if (vma.anon >= 0) anon_vma_lock_write(vma.anon);
}

/** drop_rmap_locks: in the reverse order. */
export function drop_rmap_locks(vma: Vma): void {
  if (vma.anon >= 0) anon_vma_unlock_write(vma.anon);
  if (vma.file >= 0) i_mmap_unlock_write(vma.file);
}

// ---- the file rmap: i_mmap ---------------------------------------------------------
// Each file keeps the VMAs that map it (of any mm) as records (mm, start, end,
// pgoff) in increasing pgoff order, ties in insertion order: the order in which
// the kernel's i_mmap interval tree visits them (an equal key goes to the right).
// Records change only under i_mmap_rwsem held for write; walkers (truncation,
// reclaim) hold it for read for the whole walk, so the list is stable under them
// and no VMA they find can have its page tables freed: munmap and exit unlink a
// VMA (under the write lock) before free_pgtables (mm/memory.c free_pgtables(): unlink_file_vma first).

/** One record of a file's i_mmap. */
export interface MappingRec {
  mm: number;
  start: number;
  end: number;
  pgoff: number;
}

const countIdx = (L: Layout, f: number): number => iMmapF(L, f, -1, 0);

function read_rec(F: Float64Array, L: Layout, f: number, r: number): MappingRec {
  const b = iMmapF(L, f, r, 0);
  return { mm: F[b + IM_MM], start: F[b + IM_START], end: F[b + IM_END], pgoff: F[b + IM_PGOFF] };
}

/** The records of file f, in walk order (no lock: for tests, the audit, and walkers holding i_mmap). */
export function i_mmap_records(V: Views, f: number): MappingRec[] {
  const n = V.F[countIdx(V.L, f)];
  const out: MappingRec[] = [];
  for (let r = 0; r < n; r++) out.push(read_rec(V.F, V.L, f, r));
  return out;
}

/** Empty a new file's i_mmap (shmem_file_setup). */
export function i_mmap_init(V: Views, f: number): void {
  V.F[countIdx(V.L, f)] = 0;
}

/** vma_interval_tree_insert: after every record whose pgoff is <= the new one. Caller holds i_mmap for write. */
function __i_mmap_insert(V: Views, f: number, rec: MappingRec): void {
  const { F, L } = V;
  const n = F[countIdx(L, f)];
  if (n >= L.iMmapMax) {
    throw new Error(`simulator limit: file ${f} is mapped by more than ${L.iMmapMax} VMAs at once (MachineShape.iMmapMax; ` +
      'mmsim strace sizes it from the processes in the capture, scenarios get I_MMAP_MAX in src/hw/layout.ts)');
  }
  let at = n;
  while (at > 0 && F[iMmapF(L, f, at - 1, IM_PGOFF)] > rec.pgoff) at--;
  const base = iMmapF(L, f, 0, 0);
  F.copyWithin(base + (at + 1) * IM_F64, base + at * IM_F64, base + n * IM_F64);
  const b = iMmapF(L, f, at, 0);
  F[b + IM_MM] = rec.mm;
  F[b + IM_START] = rec.start;
  F[b + IM_END] = rec.end;
  F[b + IM_PGOFF] = rec.pgoff;
  F[countIdx(L, f)] = n + 1;
}

/** vma_interval_tree_remove of the record of mm's VMA starting at start; false if there is none. */
function __i_mmap_remove(V: Views, f: number, mm: number, start: number): boolean {
  const { F, L } = V;
  const n = F[countIdx(L, f)];
  for (let r = 0; r < n; r++) {
    const b = iMmapF(L, f, r, 0);
    if (F[b + IM_MM] !== mm || F[b + IM_START] !== start) continue;
    const base = iMmapF(L, f, 0, 0);
    F.copyWithin(base + r * IM_F64, base + (r + 1) * IM_F64, base + n * IM_F64);
    F[countIdx(L, f)] = n - 1;
    return true;
  }
  return false;
}

/** __vma_link_file: caller holds the file's i_mmap_rwsem for write. */
export function __vma_link_file(mm: number, vma: Vma): void {
  __i_mmap_insert(current.V, vma.file, { mm, start: vma.start, end: vma.end, pgoff: vma.pgoff });
}

/**
 * vma_interval_tree_insert_after (dup_mmap): the child's record goes right after
 * its parent's, so a walker visits the child just after the parent. Caller
 * holds the file's i_mmap_rwsem for write.
 */
export function __vma_link_file_after(mm: number, vma: Vma, parentMm: number, parent: Vma): void {
  const { F, L } = current.V;
  const f = vma.file;
  const n = F[countIdx(L, f)];
  let at = -1;
  for (let r = 0; r < n; r++) {
    const b = iMmapF(L, f, r, 0);
    if (F[b + IM_MM] === parentMm && F[b + IM_START] === parent.start) at = r + 1;
  }
  if (at < 0 || n >= L.iMmapMax) {
    __vma_link_file(mm, vma); // (no parent record: an ordinary insert, which also reports a full i_mmap)
    return;
  }
  const base = iMmapF(L, f, 0, 0);
  F.copyWithin(base + (at + 1) * IM_F64, base + at * IM_F64, base + n * IM_F64);
  const b = iMmapF(L, f, at, 0);
  F[b + IM_MM] = mm;
  F[b + IM_START] = vma.start;
  F[b + IM_END] = vma.end;
  F[b + IM_PGOFF] = vma.pgoff;
  F[countIdx(L, f)] = n + 1;
}

/** vma_link_file: a file VMA became visible in mm (mmap, copy_vma). */
export function vma_link_file(mm: number, vma: Vma): void {
  if (vma.file < 0) return;
  i_mmap_lock_write(vma.file);
  __vma_link_file(mm, vma);
  i_mmap_unlock_write(vma.file);
}

/**
 * unlink_file_vma: the VMA goes away. Idempotent (munmap and exit unlink a
 * detached VMA before its page tables are freed; removing its slot later finds
 * nothing left to unlink).
 */
export function vma_unlink_file(mm: number, vma: Vma): void {
  if (vma.file < 0) return;
  i_mmap_lock_write(vma.file);
  __i_mmap_remove(current.V, vma.file, mm, vma.start);
  i_mmap_unlock_write(vma.file);
}

/**
 * The start, end or pgoff of a linked file VMA changes (split, merge, expand):
 * as vma_prepare/vma_complete do, the record is removed and inserted again with
 * the new values (so it goes after the records of equal pgoff). Caller holds
 * i_mmap for write.
 */
export function __vma_adjust_file(mm: number, old: Vma, nv: Vma): void {
  const V = current.V;
  if (__i_mmap_remove(V, old.file, mm, old.start)) __i_mmap_insert(V, old.file, { mm, start: nv.start, end: nv.end, pgoff: nv.pgoff });
}

/**
 * vma_interval_tree_foreach: every record of f mapping a page in [first, last]
 * (pgoffs, inclusive), in walk order. Caller holds i_mmap (read or write).
 */
export function vma_interval_tree_foreach(f: number, first: number, last: number, fn: (rec: MappingRec) => void): void {
  const { F, L } = current.V;
  const n = F[countIdx(L, f)];
  for (let r = 0; r < n; r++) {
    const rec = read_rec(F, L, f, r);
    if (rec.pgoff > last) break; // sorted by pgoff: nothing further can overlap
    if (rec.pgoff + (rec.end - rec.start) / PAGE_SIZE - 1 < first) continue;
    fn(rec);
  }
}

/**
 * For the audit (at quiescence, no lock): every file VMA of every live mm has
 * exactly one i_mmap record with its range and offset, every record is such a
 * VMA, and each file's records are in pgoff order.
 */
export function i_mmap_check(V: Views): string[] {
  const { I, F, L } = V;
  const problems: string[] = [];
  const want = new Map<string, number>();
  for (let mm = 0; mm < L.shape.maxMms; mm++) {
    if (I[mmWord(L, mm, MM_IN_USE)] === 0) continue;
    const n = I[mmWord(L, mm, MM_NVMAS)];
    for (let s = 0; s < n; s++) {
      const b = vmaF(L, mm, I[vmaIdx(L, mm, s)], 0); // the record at address-order slot s
      const file = F[b + VMA_FILE];
      if (file < 0) continue;
      const key = `${file}:${mm}:${F[b + VMA_START]}:${F[b + VMA_END]}:${F[b + VMA_PGOFF]}`;
      want.set(key, (want.get(key) ?? 0) + 1);
    }
  }
  for (let f = 0; f < L.shape.maxFiles; f++) {
    const recs = i_mmap_records(V, f);
    if (recs.length > 0 && I[fileWord(L, f, FILE_IN_USE)] === 0) problems.push(`i_mmap: file ${f} is not in use but has ${recs.length} records`);
    recs.forEach((r, i) => {
      if (i > 0 && recs[i - 1].pgoff > r.pgoff) problems.push(`i_mmap: file ${f} records ${i - 1} and ${i} are out of pgoff order`);
      const key = `${f}:${r.mm}:${r.start}:${r.end}:${r.pgoff}`;
      const left = want.get(key) ?? 0;
      if (left === 0) {
        problems.push(`i_mmap: file ${f} has a record of mm ${r.mm} [0x${r.start.toString(16)}, 0x${r.end.toString(16)}) pgoff ${r.pgoff} that no VMA matches (stale)`);
      } else want.set(key, left - 1);
    });
  }
  for (const [key, left] of want) {
    if (left > 0) {
      const [f, mm, start, end, pgoff] = key.split(':').map(Number);
      problems.push(`i_mmap: mm ${mm}'s VMA [0x${start.toString(16)}, 0x${end.toString(16)}) of file ${f} pgoff ${pgoff} is missing from the file's i_mmap (rmap walkers cannot find it)`);
    }
  }
  return problems;
}
