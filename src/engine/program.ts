// The interpreter of a thread's program: runs one operation at a time on the
// CPU the thread is placed on, through the simulated kernel's syscalls and the
// simulated CPU's loads and stores, feeding the content oracle.

import type { Cpu } from '../hw/cpu.ts';
import { PAGE_SIZE, WORDS_PER_PAGE, dataWord } from '../hw/layout.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, PROT_EXEC } from '../mm/mmap.ts';
import { do_mprotect } from '../mm/mprotect.ts';
import { do_madvise, do_madvise_advice, MADV_DONTNEED, MADV_HUGEPAGE } from '../mm/madvise.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED } from '../mm/mremap.ts';
import { do_fork, do_exit_mm } from '../mm/fork.ts';
import { task_create } from '../mm/mm.ts';
import { lazy_mmu_nest_test } from '../mm/lazy_mmu_nest.ts';
import { vmalloc, vfree, alloc_thread_stack_node, free_thread_stack, check_stack_end, THREAD_SIZE_PAGES } from '../mm/vmalloc.ts';
import { do_ftruncate, shmem_punch_hole } from '../mm/truncate.ts';
import { reclaim_file_range } from '../mm/vmscan.ts';
import { get_user_pages_fast, gup_put_page, access_remote_vm_write, FOLL_PIN, FOLL_WRITE, FOLL_GET } from '../mm/gup.ts';
import type { Step } from './scenario.ts';
import { knobs } from '../inject/knobs.ts';
import type { ContentOracle } from '../oracles/oracles.ts';

export interface RegionInfo {
  name: string;
  base: number;
  pages: number;
  shared: boolean;
  /**
   * a MAP_SHARED region: what names its memory in every mm that maps it, for the
   * content oracle (`f<file id>@<byte offset of the region's start>`, or
   * `p<process>r<region>@0` for shared anonymous memory, which fork shares)
   */
  share?: { key: string; at: number };
  prot: string;
  /** MADV_HUGEPAGE again after an mmap step re-maps part of it (src/mm/huge_memory.ts) */
  thp?: boolean;
}

/** A page-cache file of the scenario: its id, and its size in pages at boot. */
export interface FileInfo {
  name: string;
  id: number;
  pages: number;
}

export interface TaskPlan {
  id: number;
  cpu: number;
  mm: number;
  proc: string;
  thread: string;
  program: Step[];
  regions: RegionInfo[];
  /** a forked child: exits after this many operations */
  opsLeft?: number;
  /** the scenario's files (truncate, punch, reclaim steps name them) */
  files?: FileInfo[];
  /** a forked task's vmap'd kernel stack (its lowest address; src/mm/vmalloc.ts), 0 or absent: none modelled */
  stack?: number;
}

export function protBits(p: string): number {
  return (p.includes('r') ? PROT_READ : 0) | (p.includes('w') ? PROT_WRITE : 0) | (p.includes('x') ? PROT_EXEC : 0);
}

/** A page a task holds through GUP: a write pin (DMA writes) or a read reference (reads, as from a pipe). */
interface Pin {
  pfn: number;
  flags: number;
  va: number;
  off: number; // offset in its region (the content oracle's `where`)
  word: number;
  shared: boolean;
  share?: string; // the content oracle's name of the word when shared (RegionInfo.share)
  left: number; // accesses through it still to do
}

/** The content oracle's name of a shared region's word at offset `off` (RegionInfo.share), undefined when private. */
function shareOf(r: RegionInfo, off: number): string | undefined {
  return r.share && `${r.share.key}:${Math.floor((r.share.at + off) / 512)}`;
}

interface Frame {
  steps: Step[];
  idx: number;
  left: number; // remaining iterations (Infinity for the top level)
}

export class TaskRunner {
  readonly plan: TaskPlan;
  private readonly regions = new Map<string, RegionInfo>();
  private readonly saved = new Map<string, { region: string; page: number; pages: number }>();
  private readonly stack: Frame[];
  syscallErrors = 0;
  lastError = '';
  /** the task has exited: the CPU drops it */
  exited = false;
  /** add a task to this CPU (a forked child) */
  spawn: (plan: TaskPlan) => void = () => {};
  /** pages held through GUP */
  private readonly pins: Pin[] = [];
  constructor(plan: TaskPlan) {
    this.plan = plan;
    for (const r of plan.regions) this.regions.set(r.name, r);
    this.stack = [{ steps: plan.program, idx: 0, left: Infinity }];
  }

  private steps = 0;
  private stopped = false;
  /** vmalloc areas held by 'vmalloc' steps, oldest first, with the tag written to each page */
  private readonly areas: { addr: number; pages: number; tag: number }[] = [];

  /** Run the next leaf operation; returns the number of ops it counts as. */
  step(cpu: Cpu, oracle: ContentOracle): number {
    if (++this.steps === 1000 && knobs['sim.crash_cpu_worker']) throw new Error(`injected crash on cpu ${cpu.id} (sim.crash_cpu_worker)`);
    if (this.plan.opsLeft !== undefined && this.plan.opsLeft-- <= 0) {
      this.exit(); // a forked child exits when its operations are done, stopped or not
      return 1;
    }
    const stack = this.plan.stack ?? 0;
    if (stack !== 0) {
      // the task runs on its vmap'd stack: its first run writes its frame at the top
      // (ret_from_fork), every schedule() checks the end magic (schedule_debug)
      if (this.steps === 1) cpu.kwrite(stack + THREAD_SIZE_PAGES * PAGE_SIZE - 8, this.plan.id);
      check_stack_end(stack);
    }
    if (this.stopped) return 1; // idle: the program ended with 'stop'
    for (let i = 0; i < this.pins.length; i++) {
      const p = this.pins[i];
      this.through(cpu, oracle, p);
      if (--p.left <= 0) {
        gup_put_page(p.pfn, p.flags);
        this.pins.splice(i--, 1);
      }
    }
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f.idx >= f.steps.length) {
        f.left--;
        if (f.left > 0) f.idx = 0;
        else this.stack.pop();
        continue;
      }
      let s = f.steps[f.idx++];
      while (s.op === 'choose') s = pickWeighted(cpu, s.weights, s.steps);
      if (s.op === 'repeat') {
        this.stack.push({ steps: s.steps, idx: 0, left: s.times });
        continue;
      }
      return this.exec(cpu, oracle, s);
    }
  }

  private pages(cpu: Cpu, p: number | [number, number]): number {
    return typeof p === 'number' ? p : cpu.rng.int(p[0], p[1]);
  }

  /** Resolve `at` + `pages` to a page range inside the region. */
  private range(cpu: Cpu, r: RegionInfo, at: number | string, pages: number): { page: number; pages: number } {
    if (typeof at === 'string' && at !== 'random') {
      const s = this.saved.get(at);
      if (!s) return { page: 0, pages: 0 };
      return { page: s.page, pages: s.pages };
    }
    const n = Math.min(pages, r.pages);
    const page = at === 'random' ? cpu.rng.int(0, r.pages - n) : Math.min(at as number, r.pages - n);
    return { page, pages: n };
  }

  /** One leaf operation of the program (a scenario step): dispatch to the op_* below. */
  private exec(cpu: Cpu, oracle: ContentOracle, s: Exclude<Step, { op: 'choose' } | { op: 'repeat' }>): number {
    switch (s.op) {
      case 'access':
        return this.op_access(cpu, oracle, s);
      case 'munmap':
        return this.op_munmap(cpu, s);
      case 'mmap':
        return this.op_mmap(cpu, s);
      case 'mprotect':
        return this.op_mprotect(cpu, s);
      case 'madvise':
        return this.op_madvise(cpu, s);
      case 'mremap':
        return this.op_mremap(s);
      case 'fork':
        return this.op_fork(cpu, oracle, s);
      case 'pin':
        return this.op_pin(cpu, oracle, s);
      case 'procmem-write':
        return this.op_procmem_write(cpu, oracle, s);
      case 'exit':
        this.exit();
        return 1;
      case 'lazy-nest':
        return this.op_lazy_nest(s);
      case 'vmalloc':
        return this.op_vmalloc(cpu, s);
      case 'yield':
        return 1;
      case 'stop':
        this.stopped = true;
        return 1;
      case 'truncate':
        return this.op_truncate(cpu, s);
      case 'punch':
      case 'reclaim':
        return this.op_punch_or_reclaim(cpu, s);
    }
  }

  /** reads and writes at random words of a region, each checked by the content and COW oracles */
  private op_access(cpu: Cpu, oracle: ContentOracle, s: Extract<Step, { op: 'access' }>): number {
    const mm = this.plan.mm;
    const r = this.regions.get(s.region)!;
    for (let i = 0; i < s.count; i++) {
      const { page } = typeof s.at === 'string' && s.at !== 'random'
        ? this.pickInSaved(cpu, s.at, r)
        : this.range(cpu, r, s.at, 1);
      const word = cpu.rng.int(0, WORDS_PER_PAGE - 1);
      const off = page * PAGE_SIZE + word * (PAGE_SIZE / WORDS_PER_PAGE);
      const va = r.base + off;
      const write = s.mode === 'write' || (s.mode === 'rw' && (cpu.rng.u32() & 1) === 1);
      if (write) {
        const tag = oracle.tag(off);
        const snap = oracle.snapshot(mm);
        oracle.cow.stamp(mm);
        if (cpu.write(va, tag)) {
          oracle.wrote(mm, va, tag, snap, shareOf(r, off));
          oracle.cow.wrote(cpu.lastPfn, word, tag, r.shared);
        }
      } else if (cpu.read(va)) {
        oracle.read(mm, va, cpu.value, off);
        oracle.cow.read(mm, cpu.lastPfn, word, cpu.value, r.shared, va);
      }
    }
    return s.count;
  }

  /** munmap(2) of a page range of a region */
  private op_munmap(cpu: Cpu, s: Extract<Step, { op: 'munmap' }>): number {
    const x = this.syscallRange(cpu, s);
    if (x === null) return 1;
    this.check(do_munmap(this.plan.mm, x.start, x.len), 'munmap');
    if (s.save) this.saved.set(s.save, { region: x.r.name, ...x.g });
    return 1;
  }

  /** mmap(2) MAP_FIXED over a page range of a region */
  private op_mmap(cpu: Cpu, s: Extract<Step, { op: 'mmap' }>): number {
    const mm = this.plan.mm;
    const r = this.regions.get(s.region)!;
    const g = this.range(cpu, r, s.at, s.pages ? this.pages(cpu, s.pages) : 1);
    if (g.pages === 0) return 1;
    const flags = MAP_FIXED | MAP_ANONYMOUS | (r.shared ? MAP_SHARED : MAP_PRIVATE);
    const got = do_mmap(mm, r.base + g.page * PAGE_SIZE, g.pages * PAGE_SIZE, protBits(r.prot), flags);
    this.check(got, 'mmap');
    if (r.thp && got >= 0) this.check(do_madvise_advice(mm, got, g.pages * PAGE_SIZE, MADV_HUGEPAGE), 'madvise(MADV_HUGEPAGE)');
    return 1;
  }

  /** mprotect(2) of a page range */
  private op_mprotect(cpu: Cpu, s: Extract<Step, { op: 'mprotect' }>): number {
    const x = this.syscallRange(cpu, s);
    if (x === null) return 1;
    this.check(do_mprotect(this.plan.mm, x.start, x.len, protBits(s.prot)), 'mprotect');
    if (s.save) this.saved.set(s.save, { region: x.r.name, ...x.g });
    return 1;
  }

  /** madvise(MADV_DONTNEED) of a page range */
  private op_madvise(cpu: Cpu, s: Extract<Step, { op: 'madvise' }>): number {
    const x = this.syscallRange(cpu, s);
    if (x === null) return 1;
    this.check(do_madvise(this.plan.mm, x.start, x.len, MADV_DONTNEED), 'madvise');
    return 1;
  }

  /** mremap(2) of the region's pages onto another region of the same size (MREMAP_MAYMOVE | MREMAP_FIXED) */
  private op_mremap(s: Extract<Step, { op: 'mremap' }>): number {
    const mm = this.plan.mm;
    // move the region's pages onto another region of the same size (MREMAP_MAYMOVE | MREMAP_FIXED)
    const r = this.regions.get(s.region)!;
    const to = this.regions.get(s.to)!;
    const len = Math.min(r.pages, to.pages) * PAGE_SIZE;
    this.check(do_mremap(mm, r.base, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to.base), 'mremap');
    return 1;
  }

  /** fork(2): the child runs its own program on this CPU, on a vmap'd kernel stack */
  private op_fork(cpu: Cpu, oracle: ContentOracle, s: Extract<Step, { op: 'fork' }>): number {
    const mm = this.plan.mm;
    // copy_process -> dup_task_struct -> alloc_thread_stack_node comes before copy_mm
    const stack = alloc_thread_stack_node();
    if (stack === 0) {
      this.check(-12, 'fork (kernel stack)');
      return 1;
    }
    const child = do_fork(mm);
    if (child < 0) {
      free_thread_stack(stack);
      this.check(child, 'fork');
      return 1;
    }
    oracle.inherit(mm, child);
    const id = task_create(cpu.V, child, cpu.id, -1);
    this.spawn({ ...this.plan, id, mm: child, thread: `${this.plan.thread}/child`, program: s.child, opsLeft: s.childOps, stack });
    return 1;
  }

  /** vmalloc an area, write then read a tag in every page through the kernel mapping, vfree the area taken `hold` steps ago */
  private op_vmalloc(cpu: Cpu, s: Extract<Step, { op: 'vmalloc' }>): number {
    for (const a of this.areas) this.check_area(cpu, a); // the areas still held: their translations are used again
    const pages = this.pages(cpu, s.pages);
    const addr = vmalloc(pages);
    if (addr === 0) {
      this.check(-12, 'vmalloc');
    } else {
      const tag = (0x2b000000 | ((cpu.id & 0xff) << 16) | (cpu.rng.u32() & 0xffff)) | 0;
      const a = { addr, pages, tag };
      let ok = true;
      for (let i = 0; i < pages && ok; i++) ok = cpu.kwrite(addr + i * PAGE_SIZE, tag + i);
      if (ok) this.check_area(cpu, a);
      this.areas.push(a);
    }
    while (this.areas.length > s.hold) vfree(this.areas.shift()!.addr);
    return 1;
  }

  private check_area(cpu: Cpu, a: { addr: number; pages: number; tag: number }): void {
    for (let i = 0; i < a.pages; i++) {
      const va = a.addr + i * PAGE_SIZE;
      if (!cpu.kread(va)) return;
      if (cpu.value !== a.tag + i) {
        cpu.host.hooks.violation({
          kind: 'content', cpu: cpu.id, va,
          message: `cpu ${cpu.id} task ${this.plan.id}: read 0x${(cpu.value >>> 0).toString(16)} from its vmalloc area at 0x${va.toString(16)}, which it wrote 0x${((a.tag + i) >>> 0).toString(16)}`,
        });
        return;
      }
    }
  }

  /** The pages a munmap, mprotect or madvise step covers (`pages` drawn, then `at`), or null when none. */
  private syscallRange(cpu: Cpu, s: { region: string; at: number | string; pages: number | [number, number] }): { r: RegionInfo; g: { page: number; pages: number }; start: number; len: number } | null {
    const r = this.regions.get(s.region)!;
    const g = this.range(cpu, r, s.at, this.pages(cpu, s.pages));
    if (g.pages === 0) return null;
    return { r, g, start: r.base + g.page * PAGE_SIZE, len: g.pages * PAGE_SIZE };
  }

  /** One word of one page of a region (`at` as in range()), or null when the range is empty. */
  private pickWord(cpu: Cpu, region: string, at: number | string): { r: RegionInfo; page: number; word: number; off: number } | null {
    const r = this.regions.get(region)!;
    const g = this.range(cpu, r, at, 1);
    if (g.pages === 0) return null;
    const word = cpu.rng.int(0, WORDS_PER_PAGE - 1);
    return { r, page: g.page, word, off: g.page * PAGE_SIZE + word * (PAGE_SIZE / WORDS_PER_PAGE) };
  }

  /** a GUP pin (FOLL_PIN for writes, FOLL_GET for reads) held for `hold` steps, with one access through it now */
  private op_pin(cpu: Cpu, oracle: ContentOracle, s: Extract<Step, { op: 'pin' }>): number {
    const mm = this.plan.mm;
    const w = this.pickWord(cpu, s.region, s.at);
    if (w === null) return 1;
    const { r, page, word, off } = w;
    const flags = s.access === 'write' ? FOLL_PIN | FOLL_WRITE : FOLL_GET;
    const pfn = get_user_pages_fast(mm, r.base + off, flags);
    if (pfn < 0) {
      this.check(pfn, 'pin');
      return 1;
    }
    if (s.save) this.saved.set(s.save, { region: r.name, page, pages: 1 });
    const p: Pin = { pfn, flags, va: r.base + off, off, word, shared: r.shared, share: shareOf(r, off), left: s.hold };
    this.through(cpu, oracle, p);
    if (p.left > 0) this.pins.push(p);
    else gup_put_page(pfn, flags);
    return 1;
  }

  /** a write through /proc/pid/mem (access_remote_vm) */
  private op_procmem_write(cpu: Cpu, oracle: ContentOracle, s: Extract<Step, { op: 'procmem-write' }>): number {
    const mm = this.plan.mm;
    const w = this.pickWord(cpu, s.region, s.at);
    if (w === null) return 1;
    const { r, word, off } = w;
    const tag = oracle.tag(off);
    const snap = oracle.snapshot(mm);
    oracle.cow.stamp(mm);
    const pfn = access_remote_vm_write(mm, r.base + off, tag);
    if (pfn < 0) this.check(pfn, 'procmem-write');
    else {
      oracle.cow.wrote(pfn, word, tag, r.shared);
      oracle.wrote(mm, r.base + off, tag, snap, shareOf(r, off));
    }
    return 1;
  }

  /** the nested lazy MMU section test (src/mm/lazy_mmu_nest.ts) */
  private op_lazy_nest(s: Extract<Step, { op: 'lazy-nest' }>): number {
    const mm = this.plan.mm;
    const r = this.regions.get(s.region)!;
    lazy_mmu_nest_test(mm, r.base, Math.min(s.pages, r.pages), s.order);
    return 1;
  }

  /** ftruncate(2) of a file */
  private op_truncate(cpu: Cpu, s: Extract<Step, { op: 'truncate' }>): number {
    const f = this.file(s.file);
    this.check(do_ftruncate(f.id, this.pages(cpu, s.pages)), 'ftruncate');
    return 1;
  }

  /** fallocate(PUNCH_HOLE) or reclaim of a page range of a file */
  private op_punch_or_reclaim(cpu: Cpu, s: Extract<Step, { op: 'punch' | 'reclaim' }>): number {
    const f = this.file(s.file);
    const n = Math.min(this.pages(cpu, s.pages), f.pages);
    const at = s.at === 'random' ? cpu.rng.int(0, f.pages - n)
      : Array.isArray(s.at) ? Math.min(cpu.rng.int(s.at[0], s.at[1]), f.pages - n) : Math.min(s.at, f.pages - n);
    if (s.op === 'punch') this.check(shmem_punch_hole(f.id, at, n), 'fallocate');
    else reclaim_file_range(f.id, at, n);
    return 1;
  }

  private file(name: string): FileInfo {
    const f = this.plan.files?.find((x) => x.name === name);
    if (!f) throw new Error(`task ${this.plan.thread}: no file '${name}'`);
    return f;
  }

  /** One access through a pin: a device write of a fresh tag, or a read checked by the COW oracle. */
  private through(cpu: Cpu, oracle: ContentOracle, p: Pin): void {
    const mm = this.plan.mm;
    if (p.flags & FOLL_WRITE) {
      const at = dataWord(cpu.V.L, p.pfn, p.word);
      const tag = oracle.tag(p.off);
      const snap = oracle.snapshot(mm);
      oracle.cow.stamp(mm);
      Atomics.store(cpu.I, at, tag);
      oracle.cow.wrote(p.pfn, p.word, tag, p.shared);
      oracle.wrote(mm, p.va, tag, snap, p.share);
      // the program reads the result: the pinned page must still be what va maps
      if (cpu.read(p.va)) {
        oracle.read(mm, p.va, cpu.value, p.off);
        oracle.cow.read(mm, cpu.lastPfn, p.word, cpu.value, p.shared, p.va);
      }
    } else {
      // a read of the whole page (what the pipe hands out)
      const page = dataWord(cpu.V.L, p.pfn, 0);
      const base = p.va - p.word * (PAGE_SIZE / WORDS_PER_PAGE);
      for (let w = 0; w < WORDS_PER_PAGE; w++) {
        if (!oracle.cow.read(mm, p.pfn, w, Atomics.load(cpu.I, page + w), p.shared, base + w * (PAGE_SIZE / WORDS_PER_PAGE), 'read through its GUP reference')) break;
      }
    }
  }

  /** Release every page held through GUP, and the vmalloc areas (the task exits, or the run ends). */
  release(): void {
    for (const p of this.pins) gup_put_page(p.pfn, p.flags);
    this.pins.length = 0;
    for (const a of this.areas) vfree(a.addr);
    this.areas.length = 0;
  }

  /** The task exits: its pins go, then its reference on the mm (the last one tears it down). */
  private exit(): void {
    this.release();
    do_exit_mm(this.plan.mm);
    if (this.plan.stack) free_thread_stack(this.plan.stack); // free_thread_stack (the kernel: after an RCU grace period)
    this.plan.stack = 0;
    this.exited = true;
  }

  private pickInSaved(cpu: Cpu, name: string, r: RegionInfo): { page: number } {
    const s = this.saved.get(name);
    if (!s || s.pages === 0) return { page: cpu.rng.int(0, r.pages - 1) };
    return { page: s.page + cpu.rng.int(0, s.pages - 1) };
  }

  private check(ret: number, what: string): void {
    if (ret < 0) {
      this.syscallErrors++;
      this.lastError = `${what} returned ${ret}`;
    }
  }
}

function pickWeighted(cpu: Cpu, weights: number[], steps: Step[]): Step {
  let total = 0;
  for (const w of weights) total += w;
  let x = cpu.rng.next() * total;
  for (let i = 0; i < steps.length; i++) {
    x -= weights[i];
    if (x < 0) return steps[i];
  }
  return steps[steps.length - 1];
}

