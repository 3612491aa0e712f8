// fork and copy-on-write, kernel side (issue #6), on an inline machine where
// every step is driven by hand: refcounts, mapcounts and anon-exclusive after
// fork, COW on either side, exit of either side first, the eager copy of a
// pinned page, write_protect_seq against GUP-fast, private file mappings,
// /proc/pid/mem writes, exit_mmap's order, and the COW oracle's rule.
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { do_madvise, do_madvise_advice, MADV_DONTNEED, MADV_HUGEPAGE } from '../src/mm/madvise.ts';
import { pmd_trans_huge } from '../src/mm/huge_memory.ts';
import { do_fork, do_exit_mm } from '../src/mm/fork.ts';
import { task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { page_ref, page_mapcount, free_frames, folio_entire_mapcount } from '../src/mm/page_alloc.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { PageAnonExclusive, copy_user_highpage } from '../src/mm/memory.ts';
import {
  get_user_pages_fast, gup_fast, gup_put_page, unpin_user_page, access_remote_vm_write, page_maybe_dma_pinned, FOLL_PIN, FOLL_WRITE, FOLL_GET,
  GUP_PIN_COUNTING_BIAS,
} from '../src/mm/gup.ts';
import { shmem_file_setup, file_pages, file_put } from '../src/mm/shmem.ts';
import { raw_write_seqcount_begin, raw_write_seqcount_end } from '../src/hw/locks.ts';
import { pte_pfn, pte_write, pte_dirty, pte_young } from '../src/hw/pte.ts';
import { dataWord, mmWord, statWord, MM_WP_SEQ, WORDS_PER_PAGE, PMD_SIZE, ST_FORK_PTES, ST_COW_COPY, ST_COW_REUSE, ST_GUP_FAST_FALLBACK, ST_THP_SPLIT } from '../src/hw/layout.ts';
import { readRing } from '../src/hw/trace.ts';
import { audit } from '../src/oracles/audit.ts';
import { setKnobs } from '../src/inject/knobs.ts';
import { ContentOracle } from '../src/oracles/oracles.ts';
import { parseScenario } from '../src/engine/scenario.ts';

const P = 4096;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const A = 0x1000_0000;

function setup(o: { knobs?: string[]; cowShadow?: boolean; cpus?: number; dataFrames?: number } = {}) {
  const m = testMachine({ cpus: o.cpus ?? 2, knobs: o.knobs, cowShadow: o.cowShadow, dataFrames: o.dataFrames });
  const { mm, tasks } = m.process([0, 1]);
  const k = <T>(fn: () => T, cpu = 0): T => m.on(cpu, fn);
  const pte = (mmx: number, va: number) => k(() => Atomics.load(m.V.I, pte_offset(pmd_offset(pud_offset(pgd_offset(mmx, va), va), va), va)));
  const rd = (va: number, cpu = 0) => k(() => (m.cpus[cpu].read(va) ? m.cpus[cpu].value : 'SEGV'), cpu);
  const wr = (va: number, v: number, cpu = 0) => k(() => m.cpus[cpu].write(va, v), cpu);
  const stat = (f: number) => m.cpus.reduce((s, c) => s + m.V.I[statWord(m.V.L, c.id, f)], 0);
  const ref = (pfn: number) => page_ref(m.V, pfn);
  const map = (pfn: number) => page_mapcount(m.V, pfn);
  const excl = (pfn: number) => PageAnonExclusive(m.V, pfn);
  /** a task of mm on cpu, switched in */
  const run = (mmx: number, cpu: number) => {
    const t = task_create(m.V, mmx, cpu, 1);
    k(() => context_switch(m.cpus[cpu], t), cpu);
    return t;
  };
  return { m, mm, tasks, k, pte, rd, wr, stat, ref, map, excl, run };
}

describe('fork: refcounts, mapcounts and anon-exclusive (copy_present_ptes, do_wp_page)', () => {
  it('shares every anon page read-only with refcount 2, mapcount 2 and not exclusive; the child entries are old', () => {
    const { m, mm, k, pte, wr, stat, ref, map, excl } = setup();
    k(() => do_mmap(mm, A, 4 * P, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 4; p++) wr(A + p * P, 10 + p);
    const pfn = pte_pfn(pte(mm, A));
    expect([ref(pfn), map(pfn), excl(pfn)]).toEqual([1, 1, true]);
    const child = k(() => do_fork(mm));
    expect(child).toBeGreaterThanOrEqual(0);
    expect([ref(pfn), map(pfn), excl(pfn)]).toEqual([2, 2, false]);
    expect(pte_pfn(pte(child, A))).toBe(pfn);
    expect([pte_write(pte(mm, A)), pte_write(pte(child, A))]).toEqual([false, false]);
    expect(pte_young(pte(child, A))).toBe(false);
    expect(stat(ST_FORK_PTES)).toBe(4);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });

  it('COW on the child first copies; then the parent, alone with the page, reuses it and it is exclusive again', () => {
    const { m, mm, k, pte, rd, wr, stat, ref, map, excl, run } = setup();
    k(() => do_mmap(mm, A, 2 * P, RW, ANON | MAP_FIXED));
    wr(A, 1);
    const pfn = pte_pfn(pte(mm, A));
    const child = k(() => do_fork(mm));
    run(child, 1);
    wr(A, 11, 1); // the child copies
    const cpfn = pte_pfn(pte(child, A));
    expect(cpfn).not.toBe(pfn);
    expect([ref(cpfn), map(cpfn), excl(cpfn), pte_write(pte(child, A))]).toEqual([1, 1, true, true]);
    expect([ref(pfn), map(pfn), excl(pfn)]).toEqual([1, 1, false]); // the old page's rmap and reference went after the switch
    expect(stat(ST_COW_COPY)).toBe(1);
    wr(A, 2, 0); // the parent: refcount 1, so reuse in place
    expect(pte_pfn(pte(mm, A))).toBe(pfn);
    expect([excl(pfn), pte_write(pte(mm, A))]).toEqual([true, true]);
    expect(stat(ST_COW_REUSE)).toBe(1);
    expect([rd(A, 0), rd(A, 1)]).toEqual([2, 11]);
    expect(audit(m.V).problems).toEqual([]);
  });

  it('COW on the parent first copies and leaves the child the old page; the child then reuses it', () => {
    const { m, mm, k, pte, rd, wr, ref, excl, run } = setup();
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    wr(A, 1);
    const pfn = pte_pfn(pte(mm, A));
    const child = k(() => do_fork(mm));
    wr(A, 2, 0);
    expect(pte_pfn(pte(mm, A))).not.toBe(pfn);
    expect(pte_pfn(pte(child, A))).toBe(pfn);
    run(child, 1);
    expect(rd(A, 1)).toBe(1);
    wr(A, 3, 1);
    expect(pte_pfn(pte(child, A))).toBe(pfn);
    expect([ref(pfn), excl(pfn)]).toEqual([1, true]);
    expect([rd(A, 0), rd(A, 1)]).toEqual([2, 3]);
    expect(audit(m.V).problems).toEqual([]);
  });

  for (const first of ['child', 'parent'] as const) {
    it(`exit of the ${first} first: the survivor owns its pages, reuses them, and every frame comes back`, () => {
      const { m, mm, tasks, k, pte, rd, wr, ref, map, excl, run } = setup();
      const before = free_frames(m.V);
      k(() => do_mmap(mm, A, 3 * P, RW, ANON | MAP_FIXED));
      for (let p = 0; p < 3; p++) wr(A + p * P, 100 + p);
      const pfn = pte_pfn(pte(mm, A));
      const child = k(() => do_fork(mm));
      const ct = run(child, 1);
      wr(A + P, 201, 1); // one COW in the child
      if (first === 'child') {
        k(() => {
          do_exit_mm(child);
          context_switch(m.cpus[1], tasks[1]);
        }, 1);
        expect([ref(pfn), map(pfn)]).toEqual([1, 1]);
        expect(audit(m.V).problems).toEqual([]);
        wr(A, 5);
        expect(pte_pfn(pte(mm, A))).toBe(pfn); // reused, not copied
        expect(excl(pfn)).toBe(true);
        k(() => do_munmap(mm, A, 3 * P));
      } else {
        k(() => context_switch(m.cpus[0], -1), 0);
        for (let i = 0; i < 2; i++) k(() => do_exit_mm(mm)); // both parent tasks
        expect([ref(pfn), map(pfn)]).toEqual([1, 1]);
        expect(audit(m.V).problems).toEqual([]);
        k(() => context_switch(m.cpus[1], ct), 1);
        expect([rd(A, 1), rd(A + P, 1), rd(A + 2 * P, 1)]).toEqual([100, 201, 102]);
        wr(A, 7, 1);
        expect(pte_pfn(pte(child, A))).toBe(pfn);
        k(() => do_exit_mm(child), 1);
      }
      expect(free_frames(m.V).data).toBe(before.data);
      expect(audit(m.V).problems).toEqual([]);
      expect(m.violations).toEqual([]);
    });
  }

  it('copies nothing for a VMA without an anon_vma (never written, or a shared mapping): the child faults them in', () => {
    const { m, mm, k, pte, rd, wr, stat, run } = setup();
    k(() => do_mmap(mm, A, 2 * P, RW, ANON | MAP_FIXED));
    rd(A); // the zero page: no anon_vma yet
    const s = k(() => do_mmap(mm, 0x2000_0000, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
    wr(s, 42);
    const child = k(() => do_fork(mm));
    expect(stat(ST_FORK_PTES)).toBe(0);
    expect([pte(child, A), pte(child, s)]).toEqual([0, 0]);
    run(child, 1);
    expect([rd(A, 1), rd(s, 1)]).toEqual([0, 42]);
    wr(s, 43, 1); // shared: the parent sees it
    expect(rd(s, 0)).toBe(43);
    expect(audit(m.V).problems).toEqual([]);
  });
});

describe('pins, GUP-fast and write_protect_seq (copy_present_ptes, commit 57efa1fe5957)', () => {
  it('a possibly-pinned exclusive page is copied for the child at fork; the parent keeps it writable and exclusive', () => {
    const { m, mm, k, pte, rd, wr, ref, map, excl, run } = setup();
    k(() => do_mmap(mm, A, 2 * P, RW, ANON | MAP_FIXED));
    wr(A, 1);
    wr(A + 0x200, 2);
    wr(A + P, 3);
    const pfn = pte_pfn(pte(mm, A));
    expect(k(() => get_user_pages_fast(mm, A, FOLL_PIN | FOLL_WRITE))).toBe(pfn);
    expect([ref(pfn), page_maybe_dma_pinned(m.V, pfn)]).toEqual([1 + GUP_PIN_COUNTING_BIAS, true]);
    const child = k(() => do_fork(mm));
    expect(pte_pfn(pte(mm, A))).toBe(pfn);
    expect([pte_write(pte(mm, A)), excl(pfn), map(pfn), ref(pfn)]).toEqual([true, true, 1, 1 + GUP_PIN_COUNTING_BIAS]);
    const cpfn = pte_pfn(pte(child, A));
    expect(cpfn).not.toBe(pfn);
    expect([pte_write(pte(child, A)), pte_dirty(pte(child, A)), excl(cpfn), ref(cpfn), map(cpfn)]).toEqual([true, true, true, 1, 1]);
    for (let w = 0; w < WORDS_PER_PAGE; w++) expect(m.V.I[dataWord(m.V.L, cpfn, w)]).toBe(m.V.I[dataWord(m.V.L, pfn, w)]);
    expect(pte_pfn(pte(child, A + P))).toBe(pte_pfn(pte(mm, A + P))); // the unpinned page is shared as usual
    // a device write through the pin after fork reaches the parent only
    Atomics.store(m.V.I, dataWord(m.V.L, pfn, 0), 99);
    run(child, 1);
    expect([rd(A, 0), rd(A, 1)]).toEqual([99, 1]);
    k(() => unpin_user_page(pfn));
    expect(ref(pfn)).toBe(1);
    expect(audit(m.V).problems).toEqual([]);
  });

  it('GUP-fast pins back off while write_protect_seq is odd, and fork leaves it even; the knob ignores it', () => {
    const { m, mm, k, pte, wr, ref, stat } = setup();
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    wr(A, 1);
    const pfn = pte_pfn(pte(mm, A));
    const seq = mmWord(m.V.L, mm, MM_WP_SEQ);
    const s0 = m.V.I[seq];
    const child = k(() => do_fork(mm));
    expect(child).toBeGreaterThanOrEqual(0);
    expect(m.V.I[seq]).toBe(s0 + 2); // one COW VMA copied inside a write section
    wr(A, 2); // the parent's own copy, writable again
    const mine = pte_pfn(pte(mm, A));
    k(() => raw_write_seqcount_begin(seq)); // as if fork were copying now
    expect(k(() => gup_fast(mm, A, FOLL_PIN | FOLL_WRITE))).toBe(0);
    expect(ref(mine)).toBe(1);
    const before = stat(ST_GUP_FAST_FALLBACK);
    expect(k(() => get_user_pages_fast(mm, A, FOLL_PIN | FOLL_WRITE))).toBe(mine); // the slow path (the mmap_lock is free here)
    expect(stat(ST_GUP_FAST_FALLBACK)).toBe(before + 1);
    k(() => unpin_user_page(mine));
    setKnobs(['gup.fast_no_seqcount']);
    try {
      expect(k(() => gup_fast(mm, A, FOLL_PIN | FOLL_WRITE))).toBe(mine);
      k(() => unpin_user_page(mine));
    } finally {
      setKnobs([]);
    }
    // FOLL_GET does not look at the sequence
    expect(k(() => gup_fast(mm, A, FOLL_GET))).toBe(mine);
    k(() => raw_write_seqcount_end(seq));
    k(() => gup_put_page(mine, FOLL_GET));
    expect(pfn).not.toBe(mine);
    expect(audit(m.V).problems).toEqual([]);
  });

  it('a write pin of a COW-shared page takes the slow path, which breaks COW: the parent pins its own new page', () => {
    const { m, mm, k, pte, rd, wr, ref, excl, run } = setup();
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    wr(A, 1);
    const pfn = pte_pfn(pte(mm, A));
    const child = k(() => do_fork(mm));
    expect(k(() => gup_fast(mm, A, FOLL_PIN | FOLL_WRITE))).toBe(0); // read-only entry
    const pinned = k(() => get_user_pages_fast(mm, A, FOLL_PIN | FOLL_WRITE));
    expect(pinned).not.toBe(pfn);
    expect(pte_pfn(pte(mm, A))).toBe(pinned);
    expect([excl(pinned), ref(pinned), ref(pfn)]).toEqual([true, 1 + GUP_PIN_COUNTING_BIAS, 1]);
    run(child, 1);
    expect(rd(A, 1)).toBe(1);
    k(() => unpin_user_page(pinned));
    expect(audit(m.V).problems).toEqual([]);
  });
});

describe('fork of transparent huge pages', () => {
  it('a huge PMD is copied as huge; a possibly-pinned THP is split and its pages copied for the child at once', () => {
    const { m, mm, k, pte, rd, wr, stat, ref, run } = setup({ dataFrames: 8192 });
    const pmd = (mmx: number, va: number) => k(() => Atomics.load(m.V.I, pmd_offset(pud_offset(pgd_offset(mmx, va), va), va)));
    const a = k(() => do_mmap(mm, 0x4000_0000, PMD_SIZE, RW, ANON | MAP_FIXED));
    expect(k(() => do_madvise_advice(mm, a, PMD_SIZE, MADV_HUGEPAGE))).toBe(0);
    wr(a + P, 11);
    expect(pmd_trans_huge(pmd(mm, a))).toBe(true);
    const head = pte_pfn(pmd(mm, a));
    const child = k(() => do_fork(mm));
    expect(pmd_trans_huge(pmd(child, a))).toBe(true);
    expect(pte_pfn(pmd(child, a))).toBe(head);
    expect([ref(head), folio_entire_mapcount(m.V, head), stat(ST_FORK_PTES)]).toEqual([2, 2, 0]);
    expect([pte_write(pmd(mm, a)), pte_write(pmd(child, a))]).toEqual([false, false]);
    const ct = run(child, 1);
    expect(rd(a + P, 1)).toBe(11);
    expect(audit(m.V).problems).toEqual([]);
    k(() => do_exit_mm(child), 1);
    k(() => context_switch(m.cpus[1], -1), 1);
    expect(ct).toBeGreaterThanOrEqual(0);
    // a write pin of the (now unshared) THP: the slow path follows the huge PMD
    const pinned = k(() => get_user_pages_fast(mm, a + 3 * P, FOLL_PIN | FOLL_WRITE));
    expect(pinned).toBe(head + 3);
    expect(ref(head)).toBe(1 + GUP_PIN_COUNTING_BIAS);
    const c2 = k(() => do_fork(mm));
    expect(pmd_trans_huge(pmd(mm, a))).toBe(false); // split by copy_huge_pmd
    expect(stat(ST_THP_SPLIT)).toBe(1);
    expect(stat(ST_FORK_PTES)).toBe(512); // every subpage copied for the child
    expect(pte_pfn(pte(mm, a + 3 * P))).toBe(head + 3);
    const cp = pte_pfn(pte(c2, a + 3 * P));
    expect(cp).not.toBe(head + 3);
    Atomics.store(m.V.I, dataWord(m.V.L, head + 3, 0), 77); // DMA after fork
    run(c2, 1);
    expect([rd(a + 3 * P, 0), rd(a + 3 * P, 1)]).toEqual([77, 0]);
    expect(rd(a + P, 1)).toBe(11);
    k(() => unpin_user_page(pinned));
    expect(ref(head)).toBe(512);
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });
});

describe('private file mappings and /proc/pid/mem writes (CVE-2016-5195, Dirty COW)', () => {
  function fileSetup(prot: number) {
    const t = setup();
    const f = t.k(() => shmem_file_setup(4));
    const a = t.k(() => do_mmap(t.mm, A, 4 * P, prot, MAP_PRIVATE | MAP_FIXED, f, 0));
    t.k(() => file_put(f)); // the mapping holds it now
    return { ...t, f, a };
  }

  it('a read maps the page-cache page read-only; a write copies it into an exclusive anonymous page', () => {
    const { m, mm, f, a, pte, rd, wr, excl, stat } = fileSetup(RW);
    expect(rd(a)).toBe(0);
    const cache = file_pages(m.V.I, m.V.L, f);
    expect(cache).toHaveLength(1);
    expect(pte_pfn(pte(mm, a))).toBe(cache[0]);
    expect(pte_write(pte(mm, a))).toBe(false);
    wr(a, 5); // do_wp_page on a page-cache page: copy
    const anon = pte_pfn(pte(mm, a));
    expect(anon).not.toBe(cache[0]);
    expect([excl(anon), pte_write(pte(mm, a))]).toEqual([true, true]);
    expect(m.V.I[dataWord(m.V.L, cache[0], 0)]).toBe(0);
    wr(a + P, 6); // a write fault on an empty entry: do_cow_fault
    expect(excl(pte_pfn(pte(mm, a + P)))).toBe(true);
    expect(stat(ST_COW_COPY)).toBe(2);
    expect(file_pages(m.V.I, m.V.L, f).every((p) => m.V.I[dataWord(m.V.L, p, 0)] === 0)).toBe(true);
    expect(audit(m.V).problems).toEqual([]);
  });

  it('a FOLL_FORCE write to a read-only private mapping lands in a private copy, read-only and dirty, never in the page cache', () => {
    const { m, k, mm, f, a, pte, rd, wr, excl } = fileSetup(PROT_READ);
    expect(wr(a, 1)).toBe(false); // a plain write faults: SIGSEGV
    const pfn = k(() => access_remote_vm_write(mm, a, 0x1234));
    expect(pfn).toBeGreaterThan(0);
    expect(pte_pfn(pte(mm, a))).toBe(pfn);
    expect([excl(pfn), pte_write(pte(mm, a)), pte_dirty(pte(mm, a))]).toEqual([true, false, true]);
    expect(rd(a)).toBe(0x1234);
    expect(file_pages(m.V.I, m.V.L, f).every((p) => m.V.I[dataWord(m.V.L, p, 0)] === 0)).toBe(true);
    // a second forced write reuses the private copy (can_follow_write_pte: dirty and exclusive)
    expect(k(() => access_remote_vm_write(mm, a + 8, 7))).toBe(pfn);
    k(() => do_madvise(mm, a, P, MADV_DONTNEED));
    expect(rd(a)).toBe(0); // the file's contents again
    expect(audit(m.V).problems).toEqual([]);
    expect(m.violations).toEqual([]);
  });
});

describe('exit_mmap (mmu_gather: unhook, flush, free)', () => {
  it('frees the pages only after the flush that reaches every CPU of the mm, lazy ones included', () => {
    const { m, mm, tasks, k, rd, wr } = setup();
    k(() => do_mmap(mm, A, 8 * P, RW, ANON | MAP_FIXED));
    for (let p = 0; p < 8; p++) wr(A + p * P, p + 1);
    expect(rd(A, 1)).toBe(1); // cpu 1 caches a translation
    k(() => context_switch(m.cpus[1], -1), 1); // idle: keeps the mm loaded, lazily
    expect(m.cpus[1].loadedMm).toBe(mm);
    k(() => context_switch(m.cpus[0], -1), 0);
    const t0 = readRing(m.V, 0).length ? readRing(m.V, 0).at(-1)!.seq : 0;
    k(() => {
      for (const _ of tasks) do_exit_mm(mm);
    });
    const evs = readRing(m.V, 0).filter((e) => e.seq > t0);
    const firstFree = evs.findIndex((e) => e.type === 'FREE_PAGE');
    const flush = evs.findIndex((e) => e.type === 'SHOOTDOWN_DONE');
    expect(firstFree).toBeGreaterThan(0);
    expect(flush).toBeGreaterThanOrEqual(0);
    expect(flush).toBeLessThan(firstFree);
    expect(m.cpus[1].loadedMm).toBe(-1); // the lazy CPU got the flush and left the mm
    expect(audit(m.V).usedData).toBe(0);
  });
});

describe('the COW oracle (src/oracles/cow.ts)', () => {
  /** A scenario-style write and read, with the content and COW oracles of each CPU. */
  function oracleSetup(knobs: string[] = []) {
    const t = setup({ knobs, cowShadow: true });
    const o = t.m.cpus.map((c) => new ContentOracle(t.m.V, t.m.host, c.id));
    const write = (mmx: number, va: number, cpu: number, stampEarly?: () => void) => t.k(() => {
      const c = t.m.cpus[cpu];
      const tag = o[cpu].tag(va);
      o[cpu].cow.stamp(mmx);
      stampEarly?.();
      expect(c.write(va, tag)).toBe(true);
      o[cpu].cow.wrote(c.lastPfn, (va >>> 9) & 7, tag, false);
      return tag;
    }, cpu);
    const read = (mmx: number, va: number, cpu: number) => t.k(() => {
      const c = t.m.cpus[cpu];
      expect(c.read(va)).toBe(true);
      o[cpu].cow.read(mmx, c.lastPfn, (va >>> 9) & 7, c.value, false, va);
      return c.value;
    }, cpu);
    return { ...t, o, write, read };
  }
  const cowKinds = <T extends { kind: string }>(vs: T[]): T[] => vs.filter((v) => v.kind === 'cow');

  it('the correct kernel: the child sees what the parent wrote before fork, the parent keeps its own writes', () => {
    const { m, mm, k, write, read, run } = oracleSetup();
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    const t1 = write(mm, A, 1);
    const child = k(() => do_fork(mm));
    const t2 = write(mm, A, 1); // after fork: the parent's own copy
    const ct = run(child, 0);
    expect(ct).toBeGreaterThanOrEqual(0);
    expect(read(child, A, 0)).toBe(t1);
    const t3 = write(child, A, 0);
    expect(read(mm, A, 1)).toBe(t2);
    expect(t3).not.toBe(t2);
    expect(m.violations).toEqual([]);
  });

  it('fork.no_parent_flush: a sibling writes through its stale writable entry after fork returned, and the child reads it', () => {
    const { m, mm, k, write, read, run } = oracleSetup(['fork.no_parent_flush']);
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    write(mm, A, 1); // cpu 1 caches a writable entry
    const child = k(() => do_fork(mm));
    const late = write(mm, A, 1); // no flush: the stale entry writes the shared page
    run(child, 0);
    expect(read(child, A, 0)).toBe(late);
    const v = cowKinds(m.violations);
    expect(v).toHaveLength(1);
    expect(v[0].message).toMatch(/written by cpu 1 for its parent #\d+ after the fork that made this process had returned/);
  });

  it('a write that began before fork completed may land on either side: not reported', () => {
    const { m, mm, k, write, read, run } = oracleSetup(['fork.no_parent_flush']);
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    write(mm, A, 1);
    let child = -1;
    // stamped before the fork, stored after it (a slow store through the stale entry)
    const racing = write(mm, A, 1, () => (child = k(() => do_fork(mm))));
    run(child, 0);
    expect(read(child, A, 0)).toBe(racing);
    // the COW oracle must not judge it; the stale-TLB oracle (src/oracles/stale_tlb.ts) rightly
    // reports the knob's missing parent flush when the parent writes through its old entry
    expect(cowKinds(m.violations)).toEqual([]);
    expect(m.violations.every((v) => v.kind === 'stale-tlb')).toBe(true);
  });

  it('a parent reading its child\'s private write is reported (a page copied the wrong way)', () => {
    const { m, mm, k, pte, write, read, run } = oracleSetup();
    k(() => do_mmap(mm, A, P, RW, ANON | MAP_FIXED));
    write(mm, A, 1);
    const child = k(() => do_fork(mm));
    write(mm, A, 1); // the parent's copy
    run(child, 0);
    write(child, A, 0); // the child's copy
    // a kernel bug that copies the child's page over the parent's
    k(() => copy_user_highpage(pte_pfn(pte(mm, A)), pte_pfn(pte(child, A))));
    read(mm, A, 1);
    const v = cowKinds(m.violations);
    expect(v).toHaveLength(1);
    expect(v[0].message).toMatch(/which is not its ancestor/);
  });
});

describe('scenario ops', () => {
  it('exit is only allowed in a fork\'s child program', () => {
    const base = { name: 'x', description: 'x', processes: [{ name: 'p', regions: [{ name: 'r', pages: 1 }], threads: [{ name: 't', cpus: 0, program: [{ op: 'exit' }] }] }] };
    expect(() => parseScenario(base, 'bad.json')).toThrow("bad.json: processes.0.threads.0.program.0.op: 'exit' is only allowed in a fork's child program");
    const ok = { ...base, processes: [{ ...base.processes[0], threads: [{ name: 't', cpus: 0, program: [{ op: 'fork', child: [{ op: 'pin', region: 'r', hold: 2 }, { op: 'exit' }] }] }] }] };
    expect(parseScenario(ok).processes[0].threads[0].program[0]).toMatchObject({ op: 'fork', childOps: 20 });
    expect(() => parseScenario({ ...base, processes: [{ ...base.processes[0], threads: [{ name: 't', cpus: 0, program: [{ op: 'pin', region: 'r', access: 'dma' }] }] }] }, 'bad.json'))
      .toThrow(/bad.json: processes.0.threads.0.program.0.access/);
  });
});
