// The VMA table of an mm (mm/vma.c, simplified): VMA records in shared memory
// (struct vm_area_struct: a record stays put while its VMA lives), and per mm an
// index of record numbers in address order (the maple tree); lookup, insert,
// remove, split and merge. Changes happen under the mmap_lock held for write,
// each VMA they touch write-locked first (vma_start_write, src/mm/mmap_lock.ts),
// as vma_prepare, __split_vma, vma_merge and the vm_flags_* helpers do;
// lookups under the mmap_lock held for read, or without it (mas_walk, for
// lock_vma_under_rcu): the index is republished under a sequence count
// (MM_MT_SEQ) that stands for the maple tree's RCU publication.

import {
  type Views, vmaF, vmaIdx, mmWord, MM_NVMAS, MM_MT_SEQ, MM_VMA_CURSOR, VMA_START, VMA_END, VMA_PGOFF, VMA_FLAGS, VMA_FILE,
  VMA_ANON, VMA_ANON_FORKED,
  PAGE_SIZE,
} from '../hw/layout.ts';
import { file_get, file_put } from './shmem.ts';
import { vma_link_file, vma_unlink_file, __vma_link_file, __vma_adjust_file, i_mmap_lock_write, i_mmap_unlock_write } from './rmap.ts';
import { vma_start_write, vma_lock_init, vma_mark_attached, vma_mark_detached, vma_rec_free } from './mmap_lock.ts';
import { ENOMEM, EINVAL } from './errno.ts';

export interface Vma {
  start: number;
  end: number;
  pgoff: number;
  flags: number;
  file: number; // -1: anonymous
  anon: number; // anon_vma id, -1: none yet
  /**
   * The anon_vma was inherited through fork: the kernel's anon_vma_chain of
   * the VMA is not singular (vma_had_uncowed_parents), and such a VMA merges
   * only with VMAs of the same anon_vma, never with one that has none yet.
   */
  forked?: boolean;
  /**
   * Which anon_vma of the fork family: anon_vma_fork gives every VMA a fork
   * copies an anon_vma of its own (a child of the parent's), so two child
   * VMAs made by the same fork do not merge, while pieces split from one
   * child VMA later do. `anon` stays the family's root (whose lock the
   * kernel takes); forkTag (non-zero when forked) tells the child anon_vmas
   * apart. Found by difftest against Linux 6.18.
   */
  forkTag?: number;
}


export function vma_count(V: Views, mm: number): number {
  return Atomics.load(V.I, mmWord(V.L, mm, MM_NVMAS));
}

/** The record of the VMA at address-order slot `slot` (stable while the caller holds the mmap_lock). */
export function vma_rec(V: Views, mm: number, slot: number): number {
  return V.I[vmaIdx(V.L, mm, slot)];
}

/** A VMA record's fields (under the mmap_lock, or the VMA's own lock). */
export function vma_read_rec(V: Views, mm: number, rec: number): Vma {
  const F = V.F;
  const b = vmaF(V.L, mm, rec, 0);
  return {
    start: F[b + VMA_START], end: F[b + VMA_END], pgoff: F[b + VMA_PGOFF], flags: F[b + VMA_FLAGS],
    file: F[b + VMA_FILE], anon: F[b + VMA_ANON], forked: F[b + VMA_ANON_FORKED] !== 0, forkTag: F[b + VMA_ANON_FORKED],
  };
}

export function vma_read(V: Views, mm: number, slot: number): Vma {
  return vma_read_rec(V, mm, vma_rec(V, mm, slot));
}

export function vma_field(V: Views, mm: number, slot: number, field: number): number {
  return V.F[vmaF(V.L, mm, vma_rec(V, mm, slot), field)];
}

/**
 * Change one field of the VMA at slot (mmap_lock held for write). Its range,
 * offset and flags change only with the VMA write-locked (vma_start_write, as
 * vma_prepare and vm_flags_set/vm_flags_reset do); the anon_vma fields do not
 * need it (see vma_set_anon_vma).
 */
export function vma_set_field(V: Views, mm: number, slot: number, field: number, v: number): void {
  const rec = vma_rec(V, mm, slot);
  const at = vmaF(V.L, mm, rec, field);
  if (field === VMA_START || field === VMA_END || field === VMA_PGOFF || field === VMA_FLAGS) vma_start_write(mm, rec);
  if ((field === VMA_START || field === VMA_END || field === VMA_PGOFF) && V.F[vmaF(V.L, mm, rec, VMA_FILE)] >= 0 && V.F[at] !== v) {
    // a file VMA's range or offset changes: its i_mmap record with it, under the write lock
    const old = vma_read_rec(V, mm, rec);
    i_mmap_lock_write(old.file);
    V.F[at] = v;
    __vma_adjust_file(mm, old, vma_read_rec(V, mm, rec));
    i_mmap_unlock_write(old.file);
    return;
  }
  V.F[at] = v;
}

/**
 * vma->anon_vma set by __anon_vma_prepare: under mm->page_table_lock, with the
 * mmap_lock held for read (or the VMA's read lock and a read trylock of the
 * mmap_lock: __vmf_anon_prepare), never the VMA write lock.
 */
export function vma_set_anon_vma(V: Views, mm: number, rec: number, anon: number): void {
  V.F[vmaF(V.L, mm, rec, VMA_ANON)] = anon;
}

function write(V: Views, mm: number, rec: number, v: Vma): void {
  const F = V.F;
  const b = vmaF(V.L, mm, rec, 0);
  F[b + VMA_START] = v.start;
  F[b + VMA_END] = v.end;
  F[b + VMA_PGOFF] = v.pgoff;
  F[b + VMA_FLAGS] = v.flags;
  F[b + VMA_FILE] = v.file;
  F[b + VMA_ANON] = v.anon;
  F[b + VMA_ANON_FORKED] = v.forked && v.anon >= 0 ? v.forkTag || 1 : 0;
}

/**
 * vm_area_alloc: a free record of mm (detached, no reader left), looked for
 * round-robin from the last one handed out so a freed record is not reused at
 * once (the kernel's are SLAB_TYPESAFE_BY_RCU: reuse is allowed, and readers
 * recheck). -1 if none (cannot happen while the index has room: records are
 * freed when their VMA is detached).
 */
function vm_area_alloc(V: Views, mm: number): number {
  const n = V.L.shape.maxVmas;
  const cur = mmWord(V.L, mm, MM_VMA_CURSOR);
  for (let i = 0; i < n; i++) {
    const rec = (V.I[cur] + i) % n;
    if (vma_rec_free(mm, rec)) {
      V.I[cur] = (rec + 1) % n;
      vma_lock_init(mm, rec);
      return rec;
    }
  }
  return -1;
}

/** The index changes between these two: lockless walkers (mas_walk) retry. */
function mt_publish_begin(V: Views, mm: number): void {
  Atomics.add(V.I, mmWord(V.L, mm, MM_MT_SEQ), 1);
}
function mt_publish_end(V: Views, mm: number): void {
  Atomics.add(V.I, mmWord(V.L, mm, MM_MT_SEQ), 1);
}

/**
 * mas_walk under rcu_read_lock, for lock_vma_under_rcu: the record of the VMA
 * containing addr, or -1, without the mmap_lock. The answer is a consistent
 * snapshot of the index (retried while a writer republishes it) and may be
 * stale by the time the caller looks at it, as in the kernel.
 */
export function mas_walk(V: Views, mm: number, addr: number): number {
  const { I, F, L } = V;
  const seqAt = mmWord(L, mm, MM_MT_SEQ);
  for (;;) {
    const seq = Atomics.load(I, seqAt);
    if (seq & 1) {
      Atomics.pause();
      continue;
    }
    const n = Atomics.load(I, mmWord(L, mm, MM_NVMAS));
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (F[vmaF(L, mm, Atomics.load(I, vmaIdx(L, mm, mid)), VMA_END)] <= addr) lo = mid + 1;
      else hi = mid;
    }
    const rec = lo < n ? Atomics.load(I, vmaIdx(L, mm, lo)) : -1;
    const found = rec >= 0 && F[vmaF(L, mm, rec, VMA_START)] <= addr ? rec : -1;
    if (Atomics.load(I, seqAt) === seq) return found;
  }
}

/** The address-order slot of record rec (mmap_lock held), or -1 if it is not in the index. */
export function vma_slot_of(V: Views, mm: number, rec: number): number {
  const s = vma_lookup(V, mm, V.F[vmaF(V.L, mm, rec, VMA_START)]);
  return s >= 0 && vma_rec(V, mm, s) === rec ? s : -1;
}

/** find_vma: the first VMA whose end is above addr (slot), or -1. */
export function find_vma(V: Views, mm: number, addr: number): number {
  const n = vma_count(V, mm);
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (V.F[vmaF(V.L, mm, vma_rec(V, mm, mid), VMA_END)] <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo < n ? lo : -1;
}

/** find_vma_intersection: does any VMA of mm overlap [start, end)? */
export function find_vma_intersection(V: Views, mm: number, start: number, end: number): boolean {
  const s = find_vma(V, mm, start);
  return s >= 0 && vma_read(V, mm, s).start < end;
}

/** vma_lookup: the VMA containing addr, or -1. */
export function vma_lookup(V: Views, mm: number, addr: number): number {
  const s = find_vma(V, mm, addr);
  return s >= 0 && V.F[vmaF(V.L, mm, vma_rec(V, mm, s), VMA_START)] <= addr ? s : -1;
}

/** Open (by > 0) or close (by < 0) a gap in the index at `from`; the caller publishes. */
function shift(V: Views, mm: number, from: number, by: number): void {
  const n = vma_count(V, mm);
  const base = vmaIdx(V.L, mm, 0);
  V.I.copyWithin(base + from + by, base + from, base + n);
  Atomics.store(V.I, mmWord(V.L, mm, MM_NVMAS), n + by);
}

/**
 * Insert at slot (keeps order; the caller chose the slot); a file VMA is linked
 * into the file's i_mmap unless `link` is false (the caller links it itself,
 * under the i_mmap lock it holds: dup_mmap). Returns false if the table is full.
 */
export function vma_insert(V: Views, mm: number, slot: number, v: Vma, link = true): boolean {
  if (vma_count(V, mm) >= V.L.shape.maxVmas) return false;
  const rec = vm_area_alloc(V, mm);
  if (rec < 0) return false;
  write(V, mm, rec, v);
  // vma_link / __mmap_new_vma: the new VMA is write-locked before it is stored
  // (vma_iter_store_new: attached, then published)
  vma_start_write(mm, rec);
  vma_mark_attached(mm, rec);
  mt_publish_begin(V, mm);
  shift(V, mm, slot, 1);
  V.I[vmaIdx(V.L, mm, slot)] = rec;
  mt_publish_end(V, mm);
  if (link) vma_link_file(mm, v);
  return true;
}

/**
 * Remove slots [from, to), unlinking file VMAs from i_mmap and dropping their
 * file references. With dropFiles false the VMAs are detached and the caller
 * takes them over (munmap): it unlinks them from i_mmap before it frees their
 * page tables (unlink_file_vma in free_pgtables), then drops the references.
 */
export function vma_remove(V: Views, mm: number, from: number, to: number, dropFiles = true): void {
  const recs: number[] = [];
  for (let s = from; s < to; s++) recs.push(vma_rec(V, mm, s));
  // vms_gather_munmap_vmas / vma_merge: every VMA going away is write-locked first
  for (const rec of recs) vma_start_write(mm, rec);
  if (dropFiles) for (const rec of recs) {
    const v = vma_read_rec(V, mm, rec);
    if (v.file < 0) continue;
    vma_unlink_file(mm, v);
    file_put(v.file);
  }
  mt_publish_begin(V, mm);
  shift(V, mm, to, from - to);
  mt_publish_end(V, mm);
  // vma_mark_detached: a reader that raced to a reference is waited out; the record is then free
  for (const rec of recs) vma_mark_detached(mm, rec);
}

/** split_vma: cut the VMA at slot at addr; the lower part stays at slot. Returns false (ENOMEM) if full. */
export function split_vma(V: Views, mm: number, slot: number, addr: number): boolean {
  const v = vma_read(V, mm, slot);
  if (addr <= v.start || addr >= v.end) return true;
  if (vma_count(V, mm) >= V.L.shape.maxVmas) return false;
  const rec = vma_rec(V, mm, slot);
  // __split_vma: vma_start_write(vma) and the new one before anything changes
  vma_start_write(mm, rec);
  const hiRec = vm_area_alloc(V, mm);
  if (hiRec < 0) return false;
  const hi: Vma = { ...v, start: addr, pgoff: v.pgoff + (addr - v.start) / PAGE_SIZE };
  write(V, mm, hiRec, hi);
  vma_start_write(mm, hiRec);
  // both halves change in i_mmap at once, as __split_vma does under i_mmap_lock_write
  if (v.file >= 0) i_mmap_lock_write(v.file);
  V.F[vmaF(V.L, mm, rec, VMA_END)] = addr;
  vma_mark_attached(mm, hiRec);
  mt_publish_begin(V, mm);
  shift(V, mm, slot + 1, 1);
  V.I[vmaIdx(V.L, mm, slot + 1)] = hiRec;
  mt_publish_end(V, mm);
  if (v.file >= 0) {
    __vma_adjust_file(mm, v, { ...v, end: addr });
    __vma_link_file(mm, hi);
    i_mmap_unlock_write(v.file);
    file_get(v.file);
  }
  return true;
}

/**
 * Can b follow a in one VMA (is_mergeable_vma + anon_vma compatibility + contiguous pgoff)?
 * Every flag counts, VM_ACCOUNT included (the kernel ignores only VM_SOFTDIRTY,
 * which we do not model): an accounted and an unaccounted VMA stay apart.
 */
export function can_merge(a: Vma, b: Vma): boolean {
  if (a.end !== b.start) return false;
  if (a.flags !== b.flags) return false;
  if (a.file !== b.file) return false;
  if (!anon_vma_compatible(a, b)) return false;
  return a.pgoff + (a.end - a.start) / PAGE_SIZE === b.pgoff;
}

/**
 * is_mergeable_anon_vma: both have the same anon_vma, or one has none yet and
 * the other's did not come through fork (vma_had_uncowed_parents).
 */
const forkTagOf = (v: Vma): number => (v.forked ? v.forkTag || 1 : 0);

export function anon_vma_compatible(a: Vma, b: Vma): boolean {
  if (a.anon < 0 && b.anon < 0) return true;
  if (a.anon < 0) return !b.forked;
  if (b.anon < 0) return !a.forked;
  return a.anon === b.anon && forkTagOf(a) === forkTagOf(b);
}

/**
 * Merge slot with its neighbours where compatible, as vma_merge_new_range and
 * vma_merge_existing_range decide: the previous VMA is tried first; the next
 * one too only if it is compatible with the VMA at slot and, when both would
 * merge, the previous and next VMAs' anon_vmas are compatible with each other
 * (otherwise only the left merge happens). The merged VMA keeps whichever
 * anon_vma was set. Returns the slot of the merged VMA.
 */
export function vma_merge_neighbours(V: Views, mm: number, slot: number): number {
  const n = vma_count(V, mm);
  const cur = vma_read(V, mm, slot);
  const prev = slot > 0 ? vma_read(V, mm, slot - 1) : null;
  const next = slot + 1 < n ? vma_read(V, mm, slot + 1) : null;
  const left = prev !== null && can_merge(prev, cur);
  let right = next !== null && can_merge(cur, next);
  if (left && right && !anon_vma_compatible(prev!, next!)) right = false;
  let s = slot;
  let anon = cur.anon;
  // vma_prepare: every VMA the merge changes or removes is write-locked before any changes
  if (left) vma_start_write(mm, vma_rec(V, mm, slot - 1));
  if (left || right) vma_start_write(mm, vma_rec(V, mm, slot));
  if (right) vma_start_write(mm, vma_rec(V, mm, slot + 1));
  if (right) {
    if (anon < 0) anon = next!.anon;
    vma_set_field(V, mm, s, VMA_END, next!.end);
    vma_remove(V, mm, s + 1, s + 2);
  }
  if (left) {
    if (prev!.anon >= 0) anon = prev!.anon;
    vma_set_field(V, mm, s - 1, VMA_END, right ? next!.end : cur.end);
    vma_remove(V, mm, s, s + 1);
    s--;
  }
  if (left || right) {
    vma_set_field(V, mm, s, VMA_ANON, anon);
    const tag = (left ? forkTagOf(prev!) : 0) || forkTagOf(cur) || (right ? forkTagOf(next!) : 0);
    vma_set_field(V, mm, s, VMA_ANON_FORKED, anon >= 0 ? tag : 0);
  }
  return s;
}

/**
 * find_mergeable_anon_vma: the anon_vma a VMA getting its first anonymous page
 * can share with a neighbour (the next one first, then the previous): adjacent,
 * same file, flags equal but for access bits, contiguous pgoff, and the
 * neighbour's anon_vma not inherited through fork. -1: none.
 */
export function find_mergeable_anon_vma(V: Views, mm: number, slot: number): number {
  const ACCESS = 0x7; // VM_READ | VM_WRITE | VM_EXEC
  const v = vma_read(V, mm, slot);
  const reusable = (a: Vma, b: Vma, old: Vma): boolean =>
    old.anon >= 0 && !old.forked && a.end === b.start && a.file === b.file && ((a.flags ^ b.flags) & ~ACCESS) === 0 &&
    b.pgoff === a.pgoff + (b.start - a.start) / PAGE_SIZE;
  if (slot + 1 < vma_count(V, mm)) {
    const next = vma_read(V, mm, slot + 1);
    if (reusable(v, next, next)) return next.anon;
  }
  if (slot > 0) {
    const prev = vma_read(V, mm, slot - 1);
    if (reusable(prev, v, prev)) return prev.anon;
  }
  return -1;
}

export function vma_list(V: Views, mm: number): Vma[] {
  const out: Vma[] = [];
  for (let s = 0; s < vma_count(V, mm); s++) out.push(vma_read(V, mm, s));
  return out;
}


/**
 * vma_modify_flags: set `bits` on every VMA of [start, end), splitting the VMAs
 * at the two ends (mseal, UFFDIO_REGISTER). The caller holds the mmap_lock for
 * write. 0, -EINVAL if part of the range is unmapped, -ENOMEM if a
 * split finds the table full.
 */
export function vma_modify_flags(V: Views, mm: number, start: number, end: number, bits: number): number {
  for (let a = start; a < end;) {
    const s = vma_lookup(V, mm, a);
    if (s < 0) return -EINVAL;
    a = vma_read(V, mm, s).end;
  }
  if (!split_vma(V, mm, vma_lookup(V, mm, start), start)) return -ENOMEM;
  if (!split_vma(V, mm, vma_lookup(V, mm, end - 1), end)) return -ENOMEM;
  for (let s = find_vma(V, mm, start); s >= 0 && s < vma_count(V, mm); s++) {
    const v = vma_read(V, mm, s);
    if (v.start >= end) break;
    vma_set_field(V, mm, s, VMA_FLAGS, v.flags | bits);
  }
  return 0;
}
