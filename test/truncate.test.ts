// CVE-2018-18281 (fixed by commit eb66ae030829) and the race fixed by commit
// 97113eb39fa7: rmap walkers (truncation, reclaim) against mremap, with and
// without the bug knobs. Scenario runs use one worker thread per CPU: a CPU
// hosted on the mover's thread cannot acknowledge the walker's shootdown while
// the mover's operation runs, which closes the windows (see the scenarios).
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type RunResult } from '../src/engine/machine.ts';
import { summary } from '../src/report/summary.ts';
import { do_mmap, MAP_SHARED, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { shmem_file_setup } from '../src/mm/shmem.ts';
import { shmem_punch_hole } from '../src/mm/truncate.ts';
import { PAGETABLE_MOVE, move_ptes, move_pgt_entry, NORMAL_PMD } from '../src/mm/mremap.ts';
import { find_get_page, lock_page, unlock_page } from '../src/mm/shmem.ts';
import { put_page } from '../src/mm/page_alloc.ts';
import { i_mmap_lock_read, i_mmap_unlock_read, i_mmap_records } from '../src/mm/rmap.ts';
import { page_vma_mapped_walk, try_to_unmap_one_locked, reclaim_file_page } from '../src/mm/vmscan.ts';
import { type Vma, vma_insert, vma_read, vma_lookup, find_vma, vma_count } from '../src/mm/vma.ts';
import { pgd_offset, pud_alloc, pmd_alloc, __pte_alloc, pud_offset, pmd_offset } from '../src/mm/pgtable.ts';
import { PMD_SIZE } from '../src/hw/layout.ts';

const P = 4096;

/**
 * The 6.1 interleaving driven by hand: CPU 0 moves the first 21-page extent of a
 * shared file mapping (move_ptes, the new VMA already in i_mmap); CPU 2 cached
 * an old address before; CPU 1 (another process) punches that page out of the
 * file; CPU 2 reads the old address again.
 */
function moveThenPunch(knobs: string[]) {
  const m = testMachine({ cpus: 3, knobs });
  const app = m.process([0, 2]).mm;
  m.process([1]);
  const f = m.on(0, () => shmem_file_setup(64));
  const a = 8 * PMD_SIZE - 21 * P;
  const b = 16 * PMD_SIZE - 21 * P;
  m.on(0, () => do_mmap(app, a, 32 * P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0));
  m.on(2, (c) => c.write(a + 5 * P, 7)); // CPU 2 caches a + 5P
  m.on(0, () => {
    const V = m.V;
    const vma = vma_read(V, app, vma_lookup(V, app, a));
    const nv: Vma = { ...vma, start: b, end: b + 32 * P };
    const at = find_vma(V, app, b);
    vma_insert(V, app, at < 0 ? vma_count(V, app) : at, nv); // copy_vma: linked into i_mmap after the source
    const old_pmd = pmd_offset(pud_offset(pgd_offset(app, a), a), a);
    const new_pmd = pmd_alloc(app, pud_alloc(app, pgd_offset(app, b), b), b);
    __pte_alloc(app, new_pmd);
    move_ptes(PAGETABLE_MOVE(app, vma, nv, a, b, 32 * P), 21 * P, old_pmd, new_pmd);
  });
  m.on(1, () => shmem_punch_hole(f, 5, 1)); // zaps b + 5P, flushes b + 5P, frees the page
  const read = m.on(2, (c) => (c.read(a + 5 * P) ? c.value : 'SEGV'));
  return { read, kinds: m.violations.map((v) => v.kind) };
}

describe('CVE-2018-18281 by hand: mremap, then a hole punch through the new mapping', () => {
  it('fixed order (flush before the PTLs are dropped): the old address no longer translates', () => {
    const { read, kinds } = moveThenPunch([]);
    expect(kinds).toEqual([]);
    expect(read).toBe(0); // a fault maps a fresh page (the VMA is still there in this hand-driven move)
  });

  // The knob leaves the flush to the end of move_page_tables (pagetable_move_control.need_flush),
  // as the pre-4.19 kernel did: nothing flushes the old address when move_ptes returns.
  it('mremap.flush_after_unlock: the old address still reaches the freed page (UAF)', () => {
    expect(moveThenPunch(['mremap.flush_after_unlock']).kinds).toContain('uaf-stale-tlb');
  });
});

describe('the race of commit 97113eb39fa7 by hand: a whole-PMD move under a reclaim walker holding the PTE table\'s lock', () => {
  // Without the knob the mover takes i_mmap for write around the NORMAL_PMD move
  // and would wait here for the walker's read lock (one thread: it cannot be
  // driven by hand); the scenario below runs that order.
  it('mremap.normal_pmd_no_rmap_locks: the walker clears the moved PTE, flushes the old address, and a sibling keeps the new one (UAF)', () => {
    const m = testMachine({ cpus: 4, knobs: ['mremap.normal_pmd_no_rmap_locks'] });
    const app = m.process([0, 3]).mm;
    m.process([2]);
    const f = m.on(0, () => shmem_file_setup(512));
    const a = 4 * PMD_SIZE;
    const b = 8 * PMD_SIZE;
    m.on(0, () => do_mmap(app, a, PMD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0));
    m.on(0, (c) => c.write(a, 42));
    // CPU 2, reclaim: isolate and lock page 0, take i_mmap for read, walk to the old address
    const pfn = m.on(2, () => find_get_page(f, 0));
    m.on(2, () => lock_page(pfn));
    // CPU 0, mremap: copy_vma links the new VMA (before the walker took i_mmap)
    const V = m.V;
    const vma = m.on(0, () => vma_read(V, app, vma_lookup(V, app, a)));
    const nv: Vma = { ...vma, start: b, end: b + PMD_SIZE };
    m.on(0, () => vma_insert(V, app, vma_count(V, app), nv));
    m.on(2, () => i_mmap_lock_read(f));
    expect(i_mmap_records(V, f).map((r) => r.start)).toEqual([a, b]); // the old mapping is visited first
    const w = m.on(2, () => page_vma_mapped_walk(i_mmap_records(V, f)[0], 0, pfn))!;
    expect(w.addr).toBe(a);
    // CPU 0 moves the whole PTE table (its PTL stays with the walker)
    m.on(0, () => {
      const old_pmd = pmd_offset(pud_offset(pgd_offset(app, a), a), a);
      const new_pmd = pmd_alloc(app, pud_alloc(app, pgd_offset(app, b), b), b);
      expect(move_pgt_entry(PAGETABLE_MOVE(app, vma, nv, a, b, PMD_SIZE), NORMAL_PMD, old_pmd, new_pmd)).toBe(true);
    });
    // CPU 3 walks the new address: the moved table still maps the page
    expect(m.on(3, (c) => (c.read(b) ? c.value : 'SEGV'))).toBe(42);
    // CPU 2 clears the PTE (now translating b) and flushes a, then the page is reclaimed
    m.on(2, () => {
      try_to_unmap_one_locked(app, pfn, w);
      i_mmap_unlock_read(f);
      unlock_page(pfn);
      put_page(pfn);
      expect(reclaim_file_page(f, 0)).toBe(true);
    });
    m.on(3, (c) => c.read(b));
    expect(m.violations.map((v) => v.kind)).toContain('uaf-stale-tlb');
  });
});

const s61 = await loadScenario('scenarios/mremap-vs-truncate.ts');
const s63 = await loadScenario('scenarios/mremap-pmd-vs-reclaim.ts');
const run = (s: typeof s61, seed: number, knobs: string[] = [], ops = 600): Promise<RunResult> =>
  runScenario(s, { cpus: 4, threads: 4, ops, seed, knobs, hangTimeoutMs: 30000, keepGoing: knobs.length > 0 });
const clean = (r: RunResult): void => {
  expect(r.violations, summary(r)).toEqual([]);
  expect(r.audit.problems).toEqual([]);
  expect(r.teardownAudit.problems).toEqual([]);
  expect(r.hang).toBeUndefined();
};

describe('mremap-vs-truncate (CVE-2018-18281: mremap flushes after dropping the PTLs)', () => {
  it('runs clean seed after seed, truncating and punching through the rmap', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await run(s61, seed);
      clean(r);
      expect(r.stats.truncatedPages).toBeGreaterThan(0);
      expect(r.stats.rmapUnmaps).toBeGreaterThan(0);
    }
  }, 120_000);

  it('mremap.flush_after_unlock: the use-after-free oracle fires, seed after seed', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await run(s61, seed, ['mremap.flush_after_unlock'], 1000);
      expect(r.violations.map((v) => v.kind), `seed ${seed}: ${summary(r)}`).toContain('uaf-stale-tlb');
    }
  }, 120_000);
});

describe('mremap-pmd-vs-reclaim (whole-PMD move without the rmap locks, commit 97113eb39fa7)', () => {
  it('runs clean seed after seed, reclaiming through the rmap', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const r = await run(s63, seed, [], 300);
      clean(r);
      expect(r.stats.movedPmds).toBeGreaterThan(0); // whole PTE tables moved (NORMAL_PMD), with the rmap locks
      expect(r.stats.truncatedPages).toBeGreaterThan(0); // reclaimed frames
    }
  }, 120_000);

  // The knob itself is shown caught by the hand-driven test above: in free
  // runs a sibling must walk the new address in the few instructions between
  // the move and the walker's clear without having touched the moving mapping
  // since the mremap began (a fault waits for the mmap_lock until it is over),
  // which 0 of 30 free and 0 of 40 deterministic seeds managed here (README).
});
