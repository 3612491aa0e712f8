// A kernel path for the seed's case 3 (nesting with interleaved plain and range
// enables), driven from a scenario the way a KUnit test drives kernel code:
// it opens two nested sections in the given order, updates PTEs inside and
// outside the range, and logs which range was in force (EV.LAZY_RANGE or
// EV.LAZY_RANGE_IGNORED in the trace). Touches only the young bit of present
// entries (no content changes), under the PTL.
import { current } from '../hw/cpu.ts';
import { PAGE_SIZE, PMD_SIZE } from '../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_PSE, pte_present, pte_mkold } from '../hw/pte.ts';
import { down_read, up_read } from '../hw/locks.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset_map_lock, pte_unmap_unlock, ptep_lockptr, ptep_get, ptep_set_access_flags } from './pgtable.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_enable_fast_pte_range, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { lockOf } from './mmap.ts';

export function lazy_mmu_nest_test(mm: number, base: number, pages: number, order: 'plain-outer' | 'range-outer'): void {
  const I = current.I;
  down_read(lockOf(mm));
  try {
    const end = Math.min(base + pages * PAGE_SIZE, (Math.floor(base / PMD_SIZE) + 1) * PMD_SIZE);
    const pgdp = pgd_offset(mm, base);
    if (!(Atomics.load(I, pgdp) & _PAGE_PRESENT)) return;
    const pudp = pud_offset(pgdp, base);
    if (!(Atomics.load(I, pudp) & _PAGE_PRESENT) || Atomics.load(I, pudp) & _PAGE_PSE) return;
    const pmdp = pmd_offset(pudp, base);
    if (!(Atomics.load(I, pmdp) & _PAGE_PRESENT) || Atomics.load(I, pmdp) & _PAGE_PSE) return;
    const ptep0 = pte_offset_map_lock(pmdp, base);
    if (ptep0 < 0) return;
    const lock = ptep_lockptr(ptep0);
    const n = (end - base) / PAGE_SIZE;
    const half = Math.max(1, n >> 1) * PAGE_SIZE; // the range passed: the first half
    const touch = (from: number, to: number): void => {
      for (let a = from; a < to; a += PAGE_SIZE) {
        const p = ptep0 + (a - base) / PAGE_SIZE;
        const e = ptep_get(p);
        if (pte_present(e)) ptep_set_access_flags(mm, a, p, pte_mkold(e));
      }
    };
    if (order === 'plain-outer') {
      lazy_mmu_mode_enable();
      lazy_mmu_mode_enable_fast_pte_range(mm, base, base + half, ptep0); // nested: the range is ignored
      touch(base, end);
      lazy_mmu_mode_disable();
      lazy_mmu_mode_disable();
    } else {
      lazy_mmu_mode_enable_fast_pte_range(mm, base, base + half, ptep0); // outermost: the range is in force
      lazy_mmu_mode_enable(); // an inner plain section...
      touch(base, end); // ...updates PTEs outside the range, believing them lazily handled
      lazy_mmu_mode_disable();
      lazy_mmu_mode_disable();
    }
    pte_unmap_unlock(lock);
  } finally {
    up_read(lockOf(mm));
  }
}
