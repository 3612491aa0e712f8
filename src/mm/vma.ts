// The VMA table of an mm (mm/vma.c, simplified to a sorted array in shared
// memory): lookup, insert, remove, split and merge. Changes happen under the
// mmap_lock held for write; lookups under it held for read.

import {
  type Views, vmaF, mmWord, MM_NVMAS, VMA_START, VMA_END, VMA_PGOFF, VMA_FLAGS, VMA_FILE, VMA_ANON, VMA_F64,
} from '../hw/layout.ts';
import { VM_ACCOUNT } from '../hw/pte.ts';
import { file_get, file_put } from './shmem.ts';
import { vma_link_file, vma_unlink_file, __vma_link_file, __vma_adjust_file, i_mmap_lock_write, i_mmap_unlock_write } from './rmap.ts';

export interface Vma {
  start: number;
  end: number;
  pgoff: number;
  flags: number;
  file: number; // -1: anonymous
  anon: number; // anon_vma id, -1: none yet
}

export const ENOMEM = 12;

export function vma_count(V: Views, mm: number): number {
  return Atomics.load(V.I, mmWord(V.L, mm, MM_NVMAS));
}

export function vma_read(V: Views, mm: number, slot: number): Vma {
  const F = V.F;
  const b = vmaF(V.L, mm, slot, 0);
  return {
    start: F[b + VMA_START], end: F[b + VMA_END], pgoff: F[b + VMA_PGOFF], flags: F[b + VMA_FLAGS],
    file: F[b + VMA_FILE], anon: F[b + VMA_ANON],
  };
}

export function vma_field(V: Views, mm: number, slot: number, field: number): number {
  return V.F[vmaF(V.L, mm, slot, field)];
}
export function vma_set_field(V: Views, mm: number, slot: number, field: number, v: number): void {
  const at = vmaF(V.L, mm, slot, field);
  if ((field === VMA_START || field === VMA_END || field === VMA_PGOFF) && V.F[vmaF(V.L, mm, slot, VMA_FILE)] >= 0 && V.F[at] !== v) {
    // a file VMA's range or offset changes: its i_mmap record with it, under the write lock
    const old = vma_read(V, mm, slot);
    i_mmap_lock_write(old.file);
    V.F[at] = v;
    __vma_adjust_file(mm, old, vma_read(V, mm, slot));
    i_mmap_unlock_write(old.file);
    return;
  }
  V.F[at] = v;
}

function write(V: Views, mm: number, slot: number, v: Vma): void {
  const F = V.F;
  const b = vmaF(V.L, mm, slot, 0);
  F[b + VMA_START] = v.start;
  F[b + VMA_END] = v.end;
  F[b + VMA_PGOFF] = v.pgoff;
  F[b + VMA_FLAGS] = v.flags;
  F[b + VMA_FILE] = v.file;
  F[b + VMA_ANON] = v.anon;
}

/** find_vma: the first VMA whose end is above addr (slot), or -1. */
export function find_vma(V: Views, mm: number, addr: number): number {
  const n = vma_count(V, mm);
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (V.F[vmaF(V.L, mm, mid, VMA_END)] <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo < n ? lo : -1;
}

/** vma_lookup: the VMA containing addr, or -1. */
export function vma_lookup(V: Views, mm: number, addr: number): number {
  const s = find_vma(V, mm, addr);
  return s >= 0 && V.F[vmaF(V.L, mm, s, VMA_START)] <= addr ? s : -1;
}

function shift(V: Views, mm: number, from: number, by: number): void {
  const n = vma_count(V, mm);
  const base = vmaF(V.L, mm, 0, 0);
  const F = V.F;
  F.copyWithin(base + (from + by) * VMA_F64, base + from * VMA_F64, base + n * VMA_F64);
  Atomics.store(V.I, mmWord(V.L, mm, MM_NVMAS), n + by);
}

/** Insert at slot (keeps order; the caller chose the slot); a file VMA is linked into the file's i_mmap. Returns false if the table is full. */
export function vma_insert(V: Views, mm: number, slot: number, v: Vma): boolean {
  if (vma_count(V, mm) >= V.L.shape.maxVmas) return false;
  shift(V, mm, slot, 1);
  write(V, mm, slot, v);
  vma_link_file(mm, v);
  return true;
}

/**
 * Remove slots [from, to), unlinking file VMAs from i_mmap and dropping their
 * file references. With dropFiles false the VMAs are detached and the caller
 * takes them over (munmap): it unlinks them from i_mmap before it frees their
 * page tables (unlink_file_vma in free_pgtables), then drops the references.
 */
export function vma_remove(V: Views, mm: number, from: number, to: number, dropFiles = true): void {
  if (dropFiles) for (let s = from; s < to; s++) {
    const f = vma_field(V, mm, s, VMA_FILE);
    if (f < 0) continue;
    vma_unlink_file(mm, vma_read(V, mm, s));
    file_put(f);
  }
  const n = vma_count(V, mm);
  const base = vmaF(V.L, mm, 0, 0);
  V.F.copyWithin(base + from * VMA_F64, base + to * VMA_F64, base + n * VMA_F64);
  Atomics.store(V.I, mmWord(V.L, mm, MM_NVMAS), n - (to - from));
}

/** split_vma: cut the VMA at slot at addr; the lower part stays at slot. Returns false (ENOMEM) if full. */
export function split_vma(V: Views, mm: number, slot: number, addr: number): boolean {
  const v = vma_read(V, mm, slot);
  if (addr <= v.start || addr >= v.end) return true;
  if (vma_count(V, mm) >= V.L.shape.maxVmas) return false;
  const hi: Vma = { ...v, start: addr, pgoff: v.pgoff + (addr - v.start) / 4096 };
  // both halves change in i_mmap at once, as __split_vma does under i_mmap_lock_write
  if (v.file >= 0) i_mmap_lock_write(v.file);
  V.F[vmaF(V.L, mm, slot, VMA_END)] = addr;
  shift(V, mm, slot + 1, 1);
  write(V, mm, slot + 1, hi);
  if (v.file >= 0) {
    __vma_adjust_file(mm, v, { ...v, end: addr });
    __vma_link_file(mm, hi);
    i_mmap_unlock_write(v.file);
    file_get(v.file);
  }
  return true;
}

/** Can b follow a in one VMA (is_mergeable_vma + anon_vma compatibility + contiguous pgoff)? */
export function can_merge(a: Vma, b: Vma): boolean {
  if (a.end !== b.start) return false;
  if ((a.flags & ~VM_ACCOUNT) !== (b.flags & ~VM_ACCOUNT)) return false;
  if (a.file !== b.file) return false;
  if (a.anon >= 0 && b.anon >= 0 && a.anon !== b.anon) return false;
  return a.pgoff + (a.end - a.start) / 4096 === b.pgoff;
}

/** Merge slot with its neighbours where compatible. Returns the slot of the merged VMA. */
export function vma_merge_neighbours(V: Views, mm: number, slot: number): number {
  let s = slot;
  const n = vma_count(V, mm);
  if (s + 1 < n) {
    const a = vma_read(V, mm, s);
    const b = vma_read(V, mm, s + 1);
    if (can_merge(a, b)) {
      vma_set_field(V, mm, s, VMA_END, b.end);
      if (a.anon < 0) vma_set_field(V, mm, s, VMA_ANON, b.anon);
      vma_remove(V, mm, s + 1, s + 2);
    }
  }
  if (s > 0) {
    const a = vma_read(V, mm, s - 1);
    const b = vma_read(V, mm, s);
    if (can_merge(a, b)) {
      vma_set_field(V, mm, s - 1, VMA_END, b.end);
      if (a.anon < 0) vma_set_field(V, mm, s - 1, VMA_ANON, b.anon);
      vma_remove(V, mm, s, s + 1);
      s--;
    }
  }
  return s;
}

export function vma_list(V: Views, mm: number): Vma[] {
  const out: Vma[] = [];
  for (let s = 0; s < vma_count(V, mm); s++) out.push(vma_read(V, mm, s));
  return out;
}

