// Shared anonymous memory (mm/shmem.c, reduced): a shmem file is a page cache,
// a two-level radix of table frames mapping pgoff -> pfn. The page cache holds
// one reference on each page; each mapping PTE holds another. When the last
// VMA drops the file, its pages are truncated (cache references dropped).

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock, spin_trylock } from '../hw/locks.ts';
import {
  fileWord, frameWord, tableEntry, FILE_IN_USE, FILE_REFS, FILE_ROOT, FILE_LOCK, FILE_NRPAGES, FILE_SIZE_PAGES, H_NEXT_FILE,
  PTRS_PER_TABLE, FILE_DEV_PFN, FM_PG_LOCK, FM_REF, FM_MAP,
} from '../hw/layout.ts';
import { alloc_pt_page, free_pt_page, alloc_page, get_page, put_page } from './page_alloc.ts';
import { i_mmap_init } from './rmap.ts';

export const FILE_MAX_PAGES = PTRS_PER_TABLE * PTRS_PER_TABLE;
const NO_MM = -2; // owner of radix nodes: no mm walks them

/** Create a shmem file of sizePages pages with one reference. Returns its id or -1. */
export function shmem_file_setup(sizePages: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  for (let tries = 0; tries < L.shape.maxFiles; tries++) {
    const f = Atomics.add(I, L.header + H_NEXT_FILE, 1) % L.shape.maxFiles;
    if (Atomics.compareExchange(I, fileWord(L, f, FILE_IN_USE), 0, 1) === 0) {
      Atomics.store(I, fileWord(L, f, FILE_REFS), 1);
      Atomics.store(I, fileWord(L, f, FILE_ROOT), 0);
      Atomics.store(I, fileWord(L, f, FILE_NRPAGES), 0);
      Atomics.store(I, fileWord(L, f, FILE_SIZE_PAGES), sizePages);
      i_mmap_init(cpu.V, f);
      return f;
    }
  }
  return -1;
}

export function file_get(f: number): void {
  Atomics.add(current.I, fileWord(current.V.L, f, FILE_REFS), 1);
}

export function file_put(f: number): void {
  const { I, L } = current.V;
  if (Atomics.sub(I, fileWord(L, f, FILE_REFS), 1) - 1 === 0) {
    const dev = Atomics.exchange(I, fileWord(L, f, FILE_DEV_PFN), 0); // a DAX-like device (src/mm/huge_memory.ts): its memory goes
    if (dev !== 0) put_page(dev);
    truncate_inode_pages(f);
    Atomics.store(I, fileWord(L, f, FILE_IN_USE), 0);
  }
}

/** Drop every page-cache reference and the radix nodes. */
function truncate_inode_pages(f: number): void {
  const { I, L } = current.V;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  const root = I[fileWord(L, f, FILE_ROOT)];
  I[fileWord(L, f, FILE_ROOT)] = 0;
  I[fileWord(L, f, FILE_NRPAGES)] = 0;
  spin_unlock(lock);
  if (root === 0) return;
  for (let i = 0; i < PTRS_PER_TABLE; i++) {
    const leaf = I[tableEntry(L, root, i)];
    if (leaf === 0) continue;
    for (let j = 0; j < PTRS_PER_TABLE; j++) {
      const pfn = I[tableEntry(L, leaf, j)];
      if (pfn !== 0) put_page(pfn);
    }
    free_pt_page(leaf);
  }
  free_pt_page(root);
}

/**
 * shmem_get_folio: the page at pgoff, allocated if absent, with an extra
 * reference for the caller. Returns 0 when out of memory.
 */
export function shmem_get_page(f: number, pgoff: number): number {
  const { I, L } = current.V;
  const dev = Atomics.load(I, fileWord(L, f, FILE_DEV_PFN));
  if (dev !== 0) {
    // a DAX-like device: its memory is one compound page (src/mm/huge_memory.ts)
    if (pgoff >= Atomics.load(I, fileWord(L, f, FILE_SIZE_PAGES))) return 0;
    get_page(dev + pgoff);
    return dev + pgoff;
  }
  if (pgoff >= FILE_MAX_PAGES) return 0;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  let root = I[fileWord(L, f, FILE_ROOT)];
  if (root === 0) {
    root = alloc_pt_page(NO_MM, 0);
    if (root === 0) return unlockRet(lock, 0);
    I[fileWord(L, f, FILE_ROOT)] = root;
  }
  const li = tableEntry(L, root, Math.floor(pgoff / PTRS_PER_TABLE));
  let leaf = I[li];
  if (leaf === 0) {
    leaf = alloc_pt_page(NO_MM, 0);
    if (leaf === 0) return unlockRet(lock, 0);
    I[li] = leaf;
  }
  const pi = tableEntry(L, leaf, pgoff % PTRS_PER_TABLE);
  let pfn = I[pi];
  if (pfn === 0) {
    pfn = alloc_page(false); // refcount 1: the page cache's reference
    if (pfn === 0) return unlockRet(lock, 0);
    I[pi] = pfn;
    I[fileWord(L, f, FILE_NRPAGES)]++;
  }
  get_page(pfn); // the caller's reference
  spin_unlock(lock);
  return pfn;
}

function unlockRet(lock: number, v: number): number {
  spin_unlock(lock);
  return v;
}

/** Every page a file's cache holds (for the audit). */
export function file_pages(I: Int32Array, L: import('../hw/layout.ts').Layout, f: number): number[] {
  const out: number[] = [];
  const root = I[fileWord(L, f, FILE_ROOT)];
  if (root === 0) return out;
  for (let i = 0; i < PTRS_PER_TABLE; i++) {
    const leaf = I[tableEntry(L, root, i)];
    if (leaf === 0) continue;
    for (let j = 0; j < PTRS_PER_TABLE; j++) {
      const pfn = I[tableEntry(L, leaf, j)];
      if (pfn !== 0) out.push(pfn);
    }
  }
  return out;
}

/** Radix node frames of a file (for the audit). */
export function file_nodes(I: Int32Array, L: import('../hw/layout.ts').Layout, f: number): number[] {
  const root = I[fileWord(L, f, FILE_ROOT)];
  if (root === 0) return [];
  const out = [root];
  for (let i = 0; i < PTRS_PER_TABLE; i++) {
    const leaf = I[tableEntry(L, root, i)];
    if (leaf !== 0) out.push(leaf);
  }
  return out;
}

// ---- the folio lock, lookups and removal (mm/filemap.c, reduced) ------------------
// A page-cache page is locked (PG_locked) while a fault checks it is still in the
// cache and maps it, and while truncation or reclaim unmaps it and takes it out
// of the cache: so a fault never maps a page truncation has already dropped.

/** lock_page: the folio lock, a sleeping lock in the frame's metadata. */
export function lock_page(pfn: number): void {
  spin_lock(frameWord(current.V.L, pfn, FM_PG_LOCK));
}
export function trylock_page(pfn: number): boolean {
  return spin_trylock(frameWord(current.V.L, pfn, FM_PG_LOCK));
}
export function unlock_page(pfn: number): void {
  spin_unlock(frameWord(current.V.L, pfn, FM_PG_LOCK));
}

/** i_size in pages. */
export function i_size_pages(f: number): number {
  return Atomics.load(current.I, fileWord(current.V.L, f, FILE_SIZE_PAGES));
}
export function i_size_write(f: number, pages: number): void {
  Atomics.store(current.I, fileWord(current.V.L, f, FILE_SIZE_PAGES), pages);
}

/** The radix slot (word index) of pgoff, or -1 when its leaf does not exist. Caller holds the i_pages lock. */
function slot_of(f: number, pgoff: number): number {
  const { I, L } = current.V;
  const root = I[fileWord(L, f, FILE_ROOT)];
  if (root === 0) return -1;
  const leaf = I[tableEntry(L, root, Math.floor(pgoff / PTRS_PER_TABLE))];
  return leaf === 0 ? -1 : tableEntry(L, leaf, pgoff % PTRS_PER_TABLE);
}

/** filemap_get_folio: the page at pgoff with a reference for the caller, or 0. */
export function find_get_page(f: number, pgoff: number): number {
  const { I, L } = current.V;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  const s = slot_of(f, pgoff);
  const pfn = s < 0 ? 0 : I[s];
  if (pfn !== 0) get_page(pfn);
  spin_unlock(lock);
  return pfn;
}

/** Is pfn still the page at pgoff (folio->mapping and index unchanged)? */
export function page_in_cache(f: number, pgoff: number, pfn: number): boolean {
  const { I, L } = current.V;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  const s = slot_of(f, pgoff);
  const ok = s >= 0 && I[s] === pfn;
  spin_unlock(lock);
  return ok;
}

/**
 * shmem_get_folio for a fault: the page at pgoff, allocated if absent, locked,
 * with a reference for the caller. 0: out of memory; -1: pgoff is beyond i_size
 * (SIGBUS). A page found, then truncated while we waited for its lock, is let go
 * and looked up again, as filemap_fault does when folio->mapping changed.
 */
export function shmem_get_folio_locked(f: number, pgoff: number): number {
  if (Atomics.load(current.I, fileWord(current.V.L, f, FILE_DEV_PFN)) !== 0) {
    // a DAX-like device (src/mm/huge_memory.ts): no page cache, nothing truncates it
    const pfn = shmem_get_page(f, pgoff);
    if (pfn !== 0) lock_page(pfn);
    return pfn;
  }
  for (;;) {
    if (pgoff >= i_size_pages(f)) return -1;
    const pfn = shmem_get_page(f, pgoff);
    if (pfn === 0) return 0;
    lock_page(pfn);
    const cached = page_in_cache(f, pgoff, pfn);
    if (cached && pgoff < i_size_pages(f)) return pfn;
    // truncated under us; a page we added beyond the new EOF goes again (unless
    // someone mapped it before the truncation: the truncation unmaps and drops it)
    if (cached && Atomics.load(current.I, frameWord(current.V.L, pfn, FM_MAP)) === 0) delete_from_page_cache(f, pgoff, pfn);
    unlock_page(pfn);
    put_page(pfn);
  }
}

/**
 * filemap_remove_folio: take pfn out of the cache at pgoff (the caller holds the
 * page lock) and drop the cache's reference. False if it is no longer there.
 */
export function delete_from_page_cache(f: number, pgoff: number, pfn: number): boolean {
  const { I, L } = current.V;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  const s = slot_of(f, pgoff);
  const ok = s >= 0 && I[s] === pfn;
  if (ok) {
    I[s] = 0;
    I[fileWord(L, f, FILE_NRPAGES)]--;
  }
  spin_unlock(lock);
  if (ok) put_page(pfn);
  return ok;
}

/**
 * __remove_mapping + the stand-in for swap-in: if the page cache and the caller
 * hold the only references to pfn (refcount 2, frozen under the i_pages lock, so
 * no lookup can take a new one), put `replacement` in its place and drop the
 * cache's reference to pfn. False (nothing changed) if anyone else holds one.
 */
export function replace_page_cache_page(f: number, pgoff: number, pfn: number, replacement: number): boolean {
  const { I, L } = current.V;
  const lock = fileWord(L, f, FILE_LOCK);
  spin_lock(lock);
  const s = slot_of(f, pgoff);
  const ok = s >= 0 && I[s] === pfn && Atomics.load(I, frameWord(L, pfn, FM_REF)) === 2;
  if (ok) I[s] = replacement;
  spin_unlock(lock);
  if (ok) put_page(pfn);
  return ok;
}

/** The first pgoff in [from, to) that has a page in the cache, or -1 (a lockless peek, like a pagevec lookup). */
export function next_cached_pgoff(f: number, from: number, to: number): number {
  const { I, L } = current.V;
  const root = Atomics.load(I, fileWord(L, f, FILE_ROOT));
  if (root === 0) return -1;
  to = Math.min(to, FILE_MAX_PAGES);
  for (let p = from; p < to;) {
    const leaf = Atomics.load(I, tableEntry(L, root, Math.floor(p / PTRS_PER_TABLE)));
    if (leaf === 0) {
      p = (Math.floor(p / PTRS_PER_TABLE) + 1) * PTRS_PER_TABLE;
      continue;
    }
    if (Atomics.load(I, tableEntry(L, leaf, p % PTRS_PER_TABLE)) !== 0) return p;
    p++;
  }
  return -1;
}
