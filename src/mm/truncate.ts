// mm/truncate.c and mm/memory.c's unmap_mapping_range, over the shmem page
// cache: ftruncate (shmem_setattr -> truncate_pagecache) and hole punching
// (fallocate PUNCH_HOLE). None of this takes any mm's mmap_lock: the mappings
// are found through the file's i_mmap (held for read for the whole walk), each
// mapping's page tables are walked and their PTL taken (zap_pte_range through
// an mmu_gather of THAT mm, which flushes the TLBs of THAT mm for the addresses
// the walk computed), then the pages leave the cache and are put. This is the
// third actor of CVE-2018-18281 (mremap flushed after dropping the PTLs; fixed by
// commit eb66ae030829): a stale TLB entry left by a mover that flushes late
// becomes a use-after-free as soon as the page is freed here.

import { current } from '../hw/cpu.ts';
import { PAGE_SIZE, ST_TRUNCATED } from '../hw/layout.ts';
import { SYS } from '../hw/trace.ts';
import { syscall } from './syscall.ts';
import { type zap_details, unmap_page_range } from './memory.ts';
import { mmu_gather, tlb_gather_mmu, tlb_finish_mmu } from './mmu_gather.ts';
import { type MappingRec, i_mmap_lock_read, i_mmap_unlock_read, vma_interval_tree_foreach } from './rmap.ts';
import {
  FILE_MAX_PAGES, i_size_pages, i_size_write, find_get_page, lock_page, unlock_page, page_in_cache, delete_from_page_cache,
  next_cached_pgoff,
} from './shmem.ts';
import { put_page, page_mapcount } from './page_alloc.ts';
import { EINVAL } from './errno.ts';

/** The part [start, end) of a mapping record that maps pgoffs [first, last]; null if none. */
export function rec_range(rec: MappingRec, first: number, last: number): { start: number; end: number } | null {
  const vlast = rec.pgoff + (rec.end - rec.start) / PAGE_SIZE - 1;
  const zfirst = Math.max(first, rec.pgoff);
  const zlast = Math.min(last, vlast);
  if (zfirst > zlast) return null;
  return { start: rec.start + (zfirst - rec.pgoff) * PAGE_SIZE, end: rec.start + (zlast - rec.pgoff + 1) * PAGE_SIZE };
}

/**
 * zap_page_range_single (via unmap_mapping_range_vma): zap [start, end) of
 * rec.mm through a gather of that mm: PTEs cleared under each table's PTL, the
 * TLBs of that mm flushed for [start, end), pages put after the flush.
 */
function zap_page_range_single(rec: MappingRec, start: number, end: number, details: zap_details): void {
  const discard = current.host.hooks.discard; // the content oracle: these contents go
  discard(rec.mm, start, end, false);
  const tlb = new mmu_gather();
  tlb_gather_mmu(tlb, rec.mm);
  unmap_page_range(tlb, rec.mm, start, end, details);
  tlb_finish_mmu(tlb);
  discard(rec.mm, start, end, true);
}

/**
 * unmap_mapping_range (in pages): unmap pgoffs [pgoff, pgoff + nr) (nr 0: to the
 * end of the file) from every mapping of file f, in every mm. even_cows: also the
 * anonymous COW copies of private mappings (truncation), else only page-cache
 * pages (hole punch, invalidation).
 */
export function unmap_mapping_range(f: number, pgoff: number, nr: number, even_cows: boolean): void {
  const first = pgoff;
  const last = nr === 0 ? FILE_MAX_PAGES - 1 : pgoff + nr - 1;
  const details: zap_details = { even_cows, single_folio: 0 };
  i_mmap_lock_read(f);
  vma_interval_tree_foreach(f, first, last, (rec) => {
    const r = rec_range(rec, first, last);
    if (r) zap_page_range_single(rec, r.start, r.end, details);
  });
  i_mmap_unlock_read(f);
}

/** unmap_mapping_folio: unmap one locked page-cache page from every mapping. */
export function unmap_mapping_folio(f: number, pgoff: number, pfn: number): void {
  const details: zap_details = { even_cows: false, single_folio: pfn };
  i_mmap_lock_read(f);
  vma_interval_tree_foreach(f, pgoff, pgoff, (rec) => {
    const r = rec_range(rec, pgoff, pgoff);
    if (r) zap_page_range_single(rec, r.start, r.end, details);
  });
  i_mmap_unlock_read(f);
}

/**
 * truncate_inode_pages_range (in pages): drop every cached page of [start, end):
 * lock it, unmap it if a fault mapped it since the caller's unmap
 * (truncate_cleanup_folio), take it out of the cache, unlock, put.
 */
export function truncate_inode_pages_range(f: number, start: number, end: number): void {
  const cpu = current;
  for (let p = next_cached_pgoff(f, start, end); p >= 0; p = next_cached_pgoff(f, p + 1, end)) {
    const pfn = find_get_page(f, p);
    if (pfn === 0) continue;
    lock_page(pfn);
    if (page_in_cache(f, p, pfn)) {
      if (page_mapcount(cpu.V, pfn) > 0) unmap_mapping_folio(f, p, pfn);
      if (delete_from_page_cache(f, p, pfn)) cpu.stat(ST_TRUNCATED);
    }
    unlock_page(pfn);
    put_page(pfn); // our lookup's reference: the page is freed here unless someone still holds one
  }
}

/**
 * The content oracle's view of a truncation: the contents of [first, last] are
 * discarded in every mapping that exists when it begins, until it ends (a page
 * the truncation drops unmapped, e.g. after reclaim moved it, would otherwise
 * look like a lost write). Returns the ranges to close.
 */
function discard_begin(f: number, first: number, last: number): { mm: number; start: number; end: number }[] {
  const discard = current.host.hooks.discard;
  const out: { mm: number; start: number; end: number }[] = [];
  i_mmap_lock_read(f);
  vma_interval_tree_foreach(f, first, last, (rec) => {
    const r = rec_range(rec, first, last);
    if (r) out.push({ mm: rec.mm, ...r });
  });
  i_mmap_unlock_read(f);
  for (const r of out) discard(r.mm, r.start, r.end, false);
  return out;
}
function discard_end(ranges: { mm: number; start: number; end: number }[]): void {
  const discard = current.host.hooks.discard;
  for (const r of ranges) discard(r.mm, r.start, r.end, true);
}

/**
 * truncate_pagecache: i_size is already lowered (new faults beyond it get
 * SIGBUS); unmap everything beyond it, drop the pages, and unmap again for COW
 * copies a private mapping made in between (the kernel's comment: the second
 * call is for correctness).
 */
export function truncate_pagecache(f: number, newPages: number): void {
  const ranges = discard_begin(f, newPages, FILE_MAX_PAGES - 1);
  unmap_mapping_range(f, newPages, 0, true);
  truncate_inode_pages_range(f, newPages, FILE_MAX_PAGES);
  unmap_mapping_range(f, newPages, 0, true);
  discard_end(ranges);
}

/** shmem_setattr(ATTR_SIZE): set i_size to newPages, truncating what lies beyond. */
export function shmem_setattr(f: number, newPages: number): number {
  if (newPages < 0 || newPages > FILE_MAX_PAGES) return -EINVAL;
  const old = i_size_pages(f);
  i_size_write(f, newPages);
  if (newPages < old) truncate_pagecache(f, newPages);
  return 0;
}

/** ftruncate(2) of a shmem file, in pages. */
export function do_ftruncate(f: number, newPages: number): number {
  return syscall(SYS.ftruncate, newPages, () => shmem_setattr(f, newPages));
}

/**
 * fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), in pages: unmap the
 * page-cache pages of the hole from every mapping (private COW copies stay),
 * then drop them from the cache. i_size does not change.
 */
export function shmem_punch_hole(f: number, pgoff: number, nr: number): number {
  if (pgoff < 0 || nr <= 0 || pgoff + nr > FILE_MAX_PAGES) return -EINVAL;
  return syscall(SYS.fallocate, pgoff, () => {
    const ranges = discard_begin(f, pgoff, pgoff + nr - 1);
    unmap_mapping_range(f, pgoff, nr, false);
    truncate_inode_pages_range(f, pgoff, pgoff + nr);
    discard_end(ranges);
    return 0;
  });
}
