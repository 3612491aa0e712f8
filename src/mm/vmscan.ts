// mm/vmscan.c's shrink_folio_list and mm/rmap.c's try_to_unmap, reduced to
// reclaiming page-cache pages of a file: isolate the page (a reference), trylock
// it, unmap it from every mapping through the file's i_mmap (held for read, no
// mmap_lock), then take it out of the cache and free it.
//
// try_to_unmap_one resolves the address it computed from the VMA record through
// that mm's page tables, takes the PTL of the PTE table it found there, clears
// the PTE and flushes THAT address (ptep_clear_flush). This is the second
// actor of the race fixed by commit 97113eb39fa7 ("mm/mremap: hold the rmap lock in
// write mode when moving page table entries."): if a whole-table mremap (NORMAL_PMD) moves the table to a new address
// while the walker holds its PTL, the PTE it clears now translates the new
// address, and the flush of the old one leaves a CPU that cached the new one
// with a stale entry to a freed page. The mover's rmap locks (i_mmap for write)
// exclude the walk.
//
// Reclaiming shmem means swapping out; here the swap device is a fresh frame
// that takes the page's place in the cache at once (the page as a later fault
// would read it back). The old frame is freed, which is what matters: any TLB
// entry still pointing at it is then a use-after-free the oracle sees.

import { current } from '../hw/cpu.ts';
import { mmWord, dataWord, frameWord, MM_RSS, FM_FLAGS, PG_DIRTY, PAGE_SIZE, WORDS_PER_PAGE, ST_RMAP_UNMAP, ST_TRUNCATED } from '../hw/layout.ts';
import { pte_present, pte_pfn, _PAGE_PRESENT, _PAGE_PSE, _PAGE_DIRTY } from '../hw/pte.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset_map_lock, pte_unmap_unlock, ptep_lockptr, ptep_get, ptep_clear_flush } from './pgtable.ts';
import { type MappingRec, i_mmap_lock_read, i_mmap_unlock_read, vma_interval_tree_foreach } from './rmap.ts';
import { find_get_page, trylock_page, unlock_page, page_in_cache, replace_page_cache_page, next_cached_pgoff, i_size_pages } from './shmem.ts';
import { alloc_page, put_page, page_mapcount_dec, page_mapcount } from './page_alloc.ts';

/**
 * page_vma_mapped_walk, reduced: the PMD entry for addr in mm, or -1 when no
 * PTE table is there (upper levels read locklessly, as the kernel does).
 */
function mm_find_pmd(mm: number, addr: number): number {
  const I = current.I;
  const pgdp = pgd_offset(mm, addr);
  if ((Atomics.load(I, pgdp) & _PAGE_PRESENT) === 0) return -1;
  const pudp = pud_offset(pgdp, addr);
  const pud = Atomics.load(I, pudp);
  if ((pud & _PAGE_PRESENT) === 0 || pud & _PAGE_PSE) return -1;
  const pmdp = pmd_offset(pudp, addr);
  const pmd = Atomics.load(I, pmdp);
  if ((pmd & _PAGE_PRESENT) === 0 || pmd & _PAGE_PSE) return -1;
  return pmdp;
}

/** What page_vma_mapped_walk found: the PTE mapping the page, its table's PTL (held), the address. */
export interface pvmw_result {
  ptep: number;
  ptl: number;
  addr: number;
}

/**
 * page_vma_mapped_walk, reduced to one PTE: compute the address rec maps pgoff
 * to, resolve it through that mm's page tables (upper levels read locklessly,
 * as the kernel does), take the PTL of the PTE table found through the PMD,
 * and return with it held if that PTE maps pfn; null otherwise.
 */
export function page_vma_mapped_walk(rec: MappingRec, pgoff: number, pfn: number): pvmw_result | null {
  const addr = rec.start + (pgoff - rec.pgoff) * PAGE_SIZE;
  const pmdp = mm_find_pmd(rec.mm, addr);
  if (pmdp < 0) return null;
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0) return null;
  const lock = ptep_lockptr(ptep);
  const pte = ptep_get(ptep);
  if (!pte_present(pte) || pte_pfn(pte) !== pfn) {
    pte_unmap_unlock(lock);
    return null;
  }
  return { ptep, ptl: lock, addr };
}

/**
 * The rest of try_to_unmap_one, PTL held: clear the PTE and flush the address
 * the walk computed (ptep_clear_flush) before the PTL is dropped, then remove
 * the rmap and the mapping's reference.
 */
export function try_to_unmap_one_locked(mm: number, pfn: number, w: pvmw_result): void {
  const cpu = current;
  cpu.host.hooks.promise?.(mm, w.addr, w.addr + PAGE_SIZE, false, 6); // stale-TLB oracle hook: promised once flushed, before the page can be freed
  const old = ptep_clear_flush(mm, w.addr, w.ptep);
  cpu.host.hooks.promise?.(mm, w.addr, w.addr + PAGE_SIZE, true, 6);
  if (old & _PAGE_DIRTY) Atomics.or(cpu.I, frameWord(cpu.V.L, pfn, FM_FLAGS), PG_DIRTY);
  page_mapcount_dec(pfn);
  Atomics.sub(cpu.I, mmWord(cpu.V.L, mm, MM_RSS), 1);
  cpu.stat(ST_RMAP_UNMAP);
  pte_unmap_unlock(w.ptl);
  put_page(pfn, w.addr); // the mapping's reference (the reclaimer holds its own)
}

/** try_to_unmap_one: unmap pfn at the address rec maps pgoff to, if it is mapped there. */
function try_to_unmap_one(rec: MappingRec, pgoff: number, pfn: number): void {
  const w = page_vma_mapped_walk(rec, pgoff, pfn);
  if (w) try_to_unmap_one_locked(rec.mm, pfn, w);
}

/** try_to_unmap: unmap a locked page-cache page from every mapping. True if none is left. */
export function try_to_unmap(f: number, pgoff: number, pfn: number): boolean {
  i_mmap_lock_read(f);
  vma_interval_tree_foreach(f, pgoff, pgoff, (rec) => try_to_unmap_one(rec, pgoff, pfn));
  i_mmap_unlock_read(f);
  return page_mapcount(current.V, pfn) === 0;
}

/**
 * shrink_folio_list for one page-cache page: isolate, trylock, unmap through
 * the rmap, page out (the stand-in for swap: a copy that takes its place in the
 * cache), remove and free. Returns true if the frame was freed.
 */
export function reclaim_file_page(f: number, pgoff: number): boolean {
  const cpu = current;
  const { I, L } = cpu.V;
  const pfn = find_get_page(f, pgoff); // isolated: our reference
  if (pfn === 0) return false;
  if (!trylock_page(pfn)) {
    put_page(pfn);
    return false;
  }
  let freed = false;
  if (page_in_cache(f, pgoff, pfn) && try_to_unmap(f, pgoff, pfn)) {
    const copy = alloc_page(false);
    if (copy !== 0) {
      for (let w = 0; w < WORDS_PER_PAGE; w++) Atomics.store(I, dataWord(L, copy, w), Atomics.load(I, dataWord(L, pfn, w)));
      // __remove_mapping: only if the cache and we hold the only references
      freed = replace_page_cache_page(f, pgoff, pfn, copy);
      if (!freed) put_page(copy);
      else cpu.stat(ST_TRUNCATED);
    }
  }
  unlock_page(pfn);
  put_page(pfn); // the last reference when the page was reclaimed: freed here
  return freed;
}

/** Reclaim the cached pages of pgoffs [pgoff, pgoff + nr) of file f; returns how many frames were freed. */
export function reclaim_file_range(f: number, pgoff: number, nr: number): number {
  return syscall(SYS.reclaim, pgoff, () => {
    let n = 0;
    const end = Math.min(pgoff + nr, i_size_pages(f));
    for (let p = next_cached_pgoff(f, pgoff, end); p >= 0; p = next_cached_pgoff(f, p + 1, end)) {
      if (reclaim_file_page(f, p)) n++;
    }
    return n;
  });
}
