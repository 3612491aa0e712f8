// The differences difftest found between mmsim and Linux 6.18, each as a short
// sequence recorded on a real 6.18 kernel (test/fixtures/difftest/
// kernel-fixes.ops run by src/tools/difftest/executor.c; the output, results
// and final /proc/PID/maps, is kept as recorded, not computed here). Each must
// replay on mmsim with every result and every final map the same.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseHostOutput } from '../src/tools/difftest/host.ts';
import { compareRun } from '../src/tools/difftest/difftest.ts';

const runs = parseHostOutput(readFileSync(new URL('./fixtures/difftest/kernel-fixes.linux-6.18.txt', import.meta.url), 'utf8'));
const run = (seq: number) => runs.find((r) => r.seq === seq)!;
const arena = (maps: string[]) => maps.filter((l) => l.startsWith('2000')).map((l) => l.split(' ').slice(0, 2).join(' '));

describe('kernel behaviour difftest found (Linux 6.18 recordings)', () => {
  it('kernel/fork.c dup_mmap: a VM_DONTCOPY VMA (MADV_DONTFORK, applied around a hole: ENOMEM) is not copied; VM_WIPEONFORK is copied empty', () => {
    const r = run(0);
    expect(r.trace).toMatch(/MADV_DONTFORK\) = -1 ENOMEM/);
    expect(r.trace).toMatch(/touch\(0x200000100000, 1\) = -1 EFAULT/); // the child has no copy
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/madvise.c madvise_populate: EINVAL for a VMA without the access, ENOMEM at a hole, EFAULT beyond a file\'s end; pages faulted in (anon_vma) decide a later merge', () => {
    const r = run(1);
    expect(r.trace).toMatch(/MADV_POPULATE_WRITE\) = -1 EINVAL[\s\S]*MADV_POPULATE_READ\) = -1 ENOMEM[\s\S]*MADV_POPULATE_READ\) = -1 EINVAL[\s\S]*MADV_POPULATE_READ\) = -1 EFAULT/);
    // the populated piece (anon_vma, VM_ACCOUNT) and the never-faulted one (VM_ACCOUNT dropped by mprotect) stay apart
    expect(arena([...r.maps.values()][0])).toContain('200001036000-200001046000 r--p');
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/mmap.c brk: shrinking when no VMA is left in [newbrk, oldbrk) fails (returns the old break)', () => {
    const r = run(2);
    expect(r.trace).toMatch(/brk\((0x[0-9a-f]+)\) = (?!\1)0x[0-9a-f]+\n$/);
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/mremap.c check_mremap_params: vrm_overlaps also for MREMAP_DONTUNMAP\'s new_addr hint (EINVAL)', () => {
    const r = run(3);
    expect(r.trace).toMatch(/MREMAP_DONTUNMAP, 0x200000101000\) = -1 EINVAL/);
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/rmap.c anon_vma_fork: each VMA fork copies gets an anon_vma of its own, so the child\'s VMAs do not merge', () => {
    const r = run(4);
    const child = [...r.maps.entries()].find(([pid]) => r.trace.includes(`${pid} +++ exited`))![1];
    // three r-x pieces side by side, from the parent's three VMAs
    expect(arena(child)).toEqual([
      '2000009ff000-200000d04000 rwxp', '200000d04000-200000d07000 r-xp', '200000d07000-200000d08000 r-xp',
      '200000d08000-200000d0e000 r-xp', '200000d0e000-200000dfe000 rwxp',
    ]);
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/mmap.c do_mmap: MAP_FIXED_NOREPLACE\'s EEXIST comes before the mapping-type check', () => {
    const r = run(5);
    expect(r.trace).toMatch(/MAP_ANONYMOUS\|MAP_FIXED_NOREPLACE, -1, 0\) = -1 EEXIST/);
    expect(compareRun(r).lines).toEqual([]);
  });

  it('mm/mremap.c dontunmap_complete: the whole VMA moved with MREMAP_DONTUNMAP loses its anon_vma, so brk merges with it again (in a forked child too)', () => {
    const r = run(6);
    const child = [...r.maps.entries()].find(([pid]) => r.trace.includes(`${pid} +++ exited`))![1];
    const heap = child.filter((l) => l.endsWith('[heap]')); // the child's brk grew it: one VMA
    expect(heap).toHaveLength(1);
    expect(compareRun(r).lines).toEqual([]);
  });
});
