// VMA layout after mmap / munmap / mprotect / mremap / madvise / fork sequences,
// against what Linux gives: test/fixtures/vma-merge/layout.c runs each sequence
// on a real kernel and layout.out is its output (Linux 6.18, x86-64). Each case
// here runs the same sequence on the simulator and must print the same layout.

import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { testMachine, type TestMachine } from './helpers.ts';
import {
  do_mmap, do_munmap, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, MAP_NORESERVE, MAP_STACK, MAP_GROWSDOWN,
} from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP } from '../src/mm/mremap.ts';
import { do_madvise_advice, MADV_DONTFORK, MADV_DOFORK, MADV_HUGEPAGE } from '../src/mm/madvise.ts';
import { do_fork, do_exit_mm } from '../src/mm/fork.ts';
import { task_create } from '../src/mm/mm.ts';
import { context_switch } from '../src/mm/mmu_context.ts';
import { shmem_file_setup } from '../src/mm/shmem.ts';
import { vma_list } from '../src/mm/vma.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE } from '../src/mm/vm_flags.ts';

const P = 4096;
const W = 0x7f0000000000;
const R = 1;
const RW = 3;
const RWX = 7;
const NONE = 0;

/** layout.out: case name -> its dumps, in order */
function linuxLayouts(): Map<string, string[][]> {
  const text = readFileSync(new URL('./fixtures/vma-merge/layout.out', import.meta.url), 'utf8');
  const out = new Map<string, string[][]>();
  let cur: string[] | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('== ')) {
      const name = line.slice(3);
      cur = [];
      if (!out.has(name)) out.set(name, []);
      out.get(name)!.push(cur);
    } else if (line.startsWith('  ') && cur) cur.push(line.trim());
  }
  return out;
}

/** The C program's helpers, on a simulated process. */
class Proc {
  readonly m: TestMachine;
  readonly mm: number;
  readonly task: number;
  readonly dumps: string[][] = [];
  private file = -1;
  constructor(m: TestMachine, mm: number, task: number) {
    this.m = m;
    this.mm = mm;
    this.task = task;
  }
  private run<T>(fn: () => T): T {
    return this.m.on(0, (cpu) => {
      context_switch(cpu, this.task);
      return fn();
    });
  }
  fd(): number {
    if (this.file < 0) this.file = this.run(() => shmem_file_setup(64));
    return this.file;
  }
  M(pg: number, n: number, prot: number, flags: number, file = -1, off = 0): void {
    const r = this.run(() => do_mmap(this.mm, W + pg * P, n * P, prot, flags | MAP_FIXED_NOREPLACE | (file < 0 ? MAP_ANONYMOUS : 0), file, off / P));
    expect(r).toBe(W + pg * P);
  }
  touch(pg: number, n: number): void {
    for (let i = 0; i < n; i++) expect(this.run(() => this.m.cpus[0].write(W + (pg + i) * P, 1))).toBe(true);
  }
  mprotect(pg: number, n: number, prot: number): number {
    return this.run(() => do_mprotect(this.mm, W + pg * P, n * P, prot));
  }
  munmap(pg: number, n: number): void {
    expect(this.run(() => do_munmap(this.mm, W + pg * P, n * P))).toBe(0);
  }
  mremap(pg: number, oldn: number, newn: number, flags: number, newpg = 0): number {
    const r = this.run(() => do_mremap(this.mm, W + pg * P, oldn * P, newn * P, flags, W + newpg * P));
    return r < 0 ? r : (r - W) / P;
  }
  madvise(pg: number, n: number, advice: number): void {
    expect(this.run(() => do_madvise_advice(this.mm, W + pg * P, n * P, advice))).toBe(0);
  }
  /** fork(): the child runs fn, dumps into the same list, and exits */
  fork(fn: (child: Proc) => void): void {
    const child = this.run(() => do_fork(this.mm));
    expect(child).toBeGreaterThanOrEqual(0);
    const t = task_create(this.m.V, child, 0, 1);
    const c = new Proc(this.m, child, t);
    fn(c);
    this.dumps.push(...c.dumps);
    c.run(() => do_exit_mm(child));
    this.m.on(0, (cpu) => context_switch(cpu, -1));
  }
  dump(): void {
    const lines = vma_list(this.m.V, this.mm).filter((v) => v.start >= W && v.end <= W + 256 * P).map((v) => {
      const perms = (v.flags & VM_READ ? 'r' : '-') + (v.flags & VM_WRITE ? 'w' : '-') + (v.flags & VM_EXEC ? 'x' : '-') + (v.flags & VM_MAYSHARE ? 's' : 'p');
      return `${(v.start - W) / P}-${(v.end - W) / P} ${perms} ${(v.file >= 0 ? v.pgoff * P : 0).toString(16)}`;
    });
    this.dumps.push(lines);
  }
}

function sim(fn: (p: Proc) => void): string[][] {
  const m = testMachine({ cpus: 1 });
  const { mm, tasks } = m.process([0]);
  const p = new Proc(m, mm, tasks[0]);
  fn(p);
  return p.dumps;
}

const PRIV = MAP_PRIVATE;
const cases: [string, (p: Proc) => void][] = [
  ['1 adjacent anon rw', (p) => { p.M(0, 2, RW, PRIV); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['2 rw then r adjacent, mprotect first to r (no fault)', (p) => { p.M(0, 2, RW, PRIV); p.M(2, 2, R, PRIV); p.mprotect(0, 2, R); p.dump(); }],
  ['3 same with fault', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.M(2, 2, R, PRIV); p.mprotect(0, 2, R); p.dump(); }],
  ['4 mprotect middle r then back rw', (p) => { p.M(0, 6, RW, PRIV); p.mprotect(2, 2, R); p.dump(); p.mprotect(2, 2, RW); p.dump(); }],
  ['4b same faulted', (p) => { p.M(0, 6, RW, PRIV); p.touch(0, 6); p.mprotect(2, 2, R); p.dump(); p.mprotect(2, 2, RW); p.dump(); }],
  ['5 none + rw adjacent, mprotect none->rw', (p) => { p.M(0, 2, NONE, PRIV); p.M(2, 2, RW, PRIV); p.mprotect(0, 2, RW); p.dump(); }],
  ['6 rw->none (no fault) then new none adjacent', (p) => { p.M(0, 2, RW, PRIV); p.mprotect(0, 2, NONE); p.M(2, 2, NONE, PRIV); p.dump(); }],
  ['6b rw->none (faulted) then new none adjacent', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.mprotect(0, 2, NONE); p.M(2, 2, NONE, PRIV); p.dump(); }],
  ['7 noreserve rw + rw adjacent', (p) => { p.M(0, 2, RW, PRIV | MAP_NORESERVE); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['7b noreserve none + none adjacent', (p) => { p.M(0, 2, NONE, PRIV | MAP_NORESERVE); p.M(2, 2, NONE, PRIV); p.dump(); }],
  ['8 stack rw + rw adjacent', (p) => { p.M(0, 2, RW, PRIV | MAP_STACK); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['9 file off0 + off2 adjacent, + off5', (p) => { const f = p.fd(); p.M(0, 2, R, PRIV, f, 0); p.M(2, 2, R, PRIV, f, 2 * P); p.M(4, 2, R, PRIV, f, 5 * P); p.dump(); }],
  ['9b file shared', (p) => { const f = p.fd(); p.M(0, 2, R, MAP_SHARED, f, 0); p.M(2, 2, R, MAP_SHARED, f, 2 * P); p.dump(); }],
  ['9c file rw private', (p) => { const f = p.fd(); p.M(0, 2, RW, PRIV, f, 0); p.M(2, 2, RW, PRIV, f, 2 * P); p.dump(); }],
  ['10 anon_vma: A(f) gap B(f), fill gap', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.M(4, 2, RW, PRIV); p.touch(4, 1); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['10b A(f) gap B(nofault), fill gap', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.M(4, 2, RW, PRIV); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['11b mremap move faulted next to new', (p) => { p.M(0, 2, RW, PRIV); p.M(10, 2, RW, PRIV); p.touch(10, 1); p.mremap(10, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 2); p.dump(); }],
  ['11c mremap move faulted next to faulted', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.M(10, 2, RW, PRIV); p.touch(10, 1); p.mremap(10, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 2); p.dump(); }],
  ['11 mremap move unfaulted next to new', (p) => { p.M(0, 2, RW, PRIV); p.M(10, 2, RW, PRIV); p.mremap(10, 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, 2); p.dump(); }],
  ['12 mremap expand into next compatible', (p) => { p.M(0, 2, RW, PRIV); p.M(4, 2, RW, PRIV); p.mremap(0, 2, 4, 0); p.dump(); }],
  ['13 growsdown + rw', (p) => { p.M(0, 2, RW, PRIV | MAP_GROWSDOWN); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['14 shared anon adjacent', (p) => { p.M(0, 2, RW, MAP_SHARED); p.M(2, 2, RW, MAP_SHARED); p.dump(); }],
  ['15 mprotect none->r partial of noreserve', (p) => { p.M(0, 8, NONE, PRIV | MAP_NORESERVE); p.mprotect(0, 2, RW); p.mprotect(2, 2, RW); p.dump(); }],
  ['16 mprotect rw->r->rw whole (faulted) next to rw', (p) => { p.M(0, 2, RW, PRIV); p.M(2, 2, RW, PRIV); p.touch(0, 4); p.mprotect(2, 2, R); p.dump(); p.mprotect(2, 2, RW); p.dump(); }],
  ['17 file private rw merge after mprotect', (p) => { const f = p.fd(); p.M(0, 4, R, PRIV, f, 0); p.mprotect(2, 2, RW); p.dump(); p.mprotect(2, 2, R); p.dump(); }],
  ['18 madvise dontfork split', (p) => { p.M(0, 4, RW, PRIV); p.madvise(1, 1, MADV_DONTFORK); p.dump(); p.madvise(1, 1, MADV_DOFORK); p.dump(); }],
  ['19 madvise hugepage split', (p) => { p.M(0, 4, RW, PRIV); p.madvise(1, 1, MADV_HUGEPAGE); p.dump(); }],
  ['20 rw anon faulted, munmap middle, refill', (p) => { p.M(0, 6, RW, PRIV); p.touch(0, 6); p.munmap(2, 2); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['21 mremap shrink then expand', (p) => { p.M(0, 6, RW, PRIV); p.mremap(0, 6, 2, 0); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['22 dontunmap', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 2); expect(p.mremap(0, 2, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, 4)).toBe(4); p.dump(); }],
  ['a P(nofault) gap N(fault), fill gap', (p) => { p.M(0, 2, RW, PRIV); p.M(4, 2, RW, PRIV); p.touch(4, 1); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['b child: inherited faulted + new adjacent', (p) => {
    p.M(0, 2, RW, PRIV); p.touch(0, 1);
    p.fork((c) => {
      c.M(2, 2, RW, PRIV); c.dump(); c.M(6, 2, RW, PRIV); c.touch(6, 1); c.M(4, 2, RW, PRIV); c.dump();
      c.mprotect(0, 1, R); c.mprotect(0, 1, RW); c.dump();
    });
  }],
  ['c child: inherited unfaulted + new adjacent', (p) => { p.M(0, 2, RW, PRIV); p.fork((c) => { c.M(2, 2, RW, PRIV); c.dump(); }); }],
  ['d parent after fork: faulted + new adjacent', (p) => { p.M(0, 2, RW, PRIV); p.touch(0, 1); p.fork(() => {}); p.M(2, 2, RW, PRIV); p.dump(); }],
  ['e new between faulted(prev) and nofault(next) in child, prev inherited', (p) => {
    p.M(0, 2, RW, PRIV); p.touch(0, 1); p.fork((c) => { c.M(4, 2, RW, PRIV); c.M(2, 2, RW, PRIV); c.dump(); });
  }],
  ['f mremap dontunmap whole vma then refill', (p) => {
    p.M(0, 2, RW, PRIV); p.M(2, 2, RW, PRIV); p.touch(0, 4); p.mprotect(2, 2, R);
    p.mremap(2, 2, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, 10); p.dump(); p.mprotect(2, 2, RW); p.dump();
  }],
  ['g dontunmap part', (p) => { p.M(0, 8, RW, PRIV); p.touch(0, 8); p.mremap(0, 2, 2, MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, 10); p.dump(); }],
  ['h anon_vma reuse: A rw faulted, B rwx adjacent faulted, mprotect B rw', (p) => {
    p.M(0, 2, RW, PRIV); p.touch(0, 1); p.M(2, 2, RWX, PRIV); p.touch(2, 1); p.mprotect(2, 2, RW); p.dump();
  }],
  ['i mprotect across VMAs merging into next', (p) => {
    p.M(0, 8, NONE, PRIV | MAP_NORESERVE); p.mprotect(0, 2, RW); p.mprotect(3, 3, RWX); p.dump();
    expect(p.mprotect(0, 8, NONE)).toBe(0); p.dump();
  }],
];

describe('VMA layout: the simulator against Linux (test/fixtures/vma-merge/layout.out)', () => {
  const linux = linuxLayouts();
  it('the reference covers every case here, and every case of the reference is here', () => {
    const here = new Set(cases.map((c) => c[0]));
    expect([...linux.keys()].filter((k) => !here.has(k))).toEqual([]);
    expect([...here].filter((k) => !linux.has(k))).toEqual([]);
  });
  for (const [name, fn] of cases) {
    it(name, () => {
      expect(sim(fn)).toEqual(linux.get(name));
    });
  }
});
