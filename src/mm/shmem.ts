// Shared anonymous memory (mm/shmem.c, reduced): a shmem file is a page cache,
// a two-level radix of table frames mapping pgoff -> pfn. The page cache holds
// one reference on each page; each mapping PTE holds another. When the last
// VMA drops the file, its pages are truncated (cache references dropped).

import { current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import { fileWord, tableEntry, FILE_IN_USE, FILE_REFS, FILE_ROOT, FILE_LOCK, FILE_NRPAGES, FILE_SIZE_PAGES, H_NEXT_FILE, PTRS_PER_TABLE, FILE_DEV_PFN } from '../hw/layout.ts';
import { alloc_pt_page, free_pt_page, alloc_page, get_page, put_page } from './page_alloc.ts';

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
