// `mmsim strace FILE`: run an strace capture on the simulated kernel, call by
// call, and compare each result with the recorded one.
//
// One simulated CPU runs the log in order (a log is sequential); each traced
// process is an mm, each pid a task (threads, clone with CLONE_VM, and vfork
// share their parent's mm; fork and clone without CLONE_VM copy it through
// dup_mmap; execve gives a fresh one). Where the kernel chose an address (no
// MAP_FIXED), the recorded result is passed as the placement hint, so the
// mapping lands where the kernel put it if that range is free.
//
// A trace starts after execve: the program, its interpreter, the stack and the
// vdso are mapped already and never show. The rule for those (README,
// "Replaying strace captures"): when a call the kernel completed touches a
// range the trace has never mapped (no mmap, mremap or brk of this mm or of an
// ancestor ever returned it), the simulator first maps the part of that range
// it has no VMA for, as a pre-existing mapping with the permissions the call's
// success implies, and counts it as inferred. Ranges the trace did map are
// never patched up: a difference there is reported.

import { Cpu, set_current, type Host } from '../../hw/cpu.ts';
import { type Views, PAGE_SIZE, TASK_SIZE, type MachineShape } from '../../hw/layout.ts';
import { createMachine } from '../../engine/inline.ts';
import { makeHost } from '../../engine/hostrun.ts';
import { setKnobs } from '../../inject/knobs.ts';
import { audit } from '../../oracles/audit.ts';
import type { ViolationRecord } from '../../oracles/oracles.ts';
import { mm_alloc, task_create, mm_in_use } from '../../mm/mm.ts';
import { context_switch } from '../../mm/mmu_context.ts';
import { do_fork, do_exit_mm } from '../../mm/fork.ts';
import {
  do_mmap, do_munmap, PROT_READ, PROT_WRITE, PROT_EXEC, PROT_NONE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_POPULATE, MAP_LOCKED, FMODE_READ, FMODE_WRITE, PAGE_ALIGN, lockOf,
} from '../../mm/mmap.ts';
import { do_mprotect } from '../../mm/mprotect.ts';
import { do_mremap, MREMAP_FIXED, MREMAP_DONTUNMAP } from '../../mm/mremap.ts';
import { do_madvise_advice } from '../../mm/madvise.ts';
import { sys_brk, brk_init, brk_dup, mm_start_brk, vma_is_initial_heap } from '../../mm/brk.ts';
import { shmem_file_setup, file_put, FILE_MAX_PAGES } from '../../mm/shmem.ts';
import { type Vma, vma_list, vma_lookup, vma_read, vma_count } from '../../mm/vma.ts';
import { faultin_page } from '../../mm/memory.ts';
import { free_frames } from '../../mm/page_alloc.ts';
import { down_read, up_read } from '../../hw/locks.ts';
import {
  type StraceCall, type StraceEvent, type StraceLog, parseStrace, parseNum, parseFlags, parseFd, parseCString, ArgError,
  StraceParseError, PROT_FLAGS, MAP_FLAGS, MREMAP_FLAGS, MADV_NAMES,
} from './strace_parse.ts';
import { show_map_vma, fake_inode, type MapsName } from './procmaps.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED } from '../../mm/vm_flags.ts';
import { ERRNO_NAMES, EINVAL } from '../../mm/errno.ts';

export { StraceParseError } from './strace_parse.ts';

/** The simulator itself failed (out of simulated resources, or a bug): not the input's fault. */
export class ReplayError extends Error {}

export interface ReplayOptions {
  arch?: string;
  /** also print each process's final VMAs */
  maps?: boolean;
  /** TLB entries of the CPU */
  tlb?: number;
}

export interface Difference {
  line: number;
  /** the line with the recorded result, when the call was resumed later */
  endLine: number;
  pid: number;
  call: string;
  recorded: string;
  simulated: string;
  /** why, when known (a VMA table full, a known gap in the simulator...) */
  note?: string;
}

export interface Inference {
  line: number;
  pid: number;
  what: 'mapping' | 'initial break' | 'file' | 'process';
  start?: number;
  end?: number;
  perms?: string;
  detail: string;
}

export interface ProcessMaps {
  /** the pids that used this address space (the first one names it) */
  pids: number[];
  /** how it ended: 'exited with 0 at line 119', 'replaced by execve at line 3', 'alive at the end of the trace' */
  end: string;
  maps: string[];
}

export interface ReplayResult {
  file: string;
  arch: string;
  lines: number;
  processes: number;
  calls: number;
  matched: number;
  differing: number;
  inferred: number;
  ignored: number;
  /** ignored lines by syscall name */
  ignoredByName: Record<string, number>;
  /** of the ignored calls, those followed for file descriptors (openat, close, dup...) */
  fdCalls: number;
  /** calls that never completed (unfinished when their task died) */
  unfinished: number;
  differences: Difference[];
  inferences: Inference[];
  notes: string[];
  audit: { ok: boolean; problems: string[] };
  wallMs: number;
  mms: ProcessMaps[];
}

// ---- interval sets ------------------------------------------------------------------

/** Sorted disjoint [start, end) intervals. */
class Ranges {
  private r: [number, number][] = [];
  clone(): Ranges {
    const c = new Ranges();
    c.r = this.r.map(([a, b]) => [a, b]);
    return c;
  }
  add(a: number, b: number): void {
    if (b <= a) return;
    const out: [number, number][] = [];
    let placed = false;
    for (const [s, e] of this.r) {
      if (e < a || s > b) {
        if (s > b && !placed) {
          out.push([a, b]);
          placed = true;
        }
        out.push([s, e]);
      } else {
        a = Math.min(a, s);
        b = Math.max(b, e);
      }
    }
    if (!placed) out.push([a, b]);
    out.sort((x, y) => x[0] - y[0]);
    this.r = out;
  }
  /** the parts of [a, b) not in the set */
  holes(a: number, b: number): [number, number][] {
    const out: [number, number][] = [];
    let at = a;
    for (const [s, e] of this.r) {
      if (e <= at) continue;
      if (s >= b) break;
      if (s > at) out.push([at, s]);
      at = Math.max(at, e);
      if (at >= b) break;
    }
    if (at < b) out.push([at, b]);
    return out;
  }
}

// ---- the replay state -----------------------------------------------------------

interface FdEntry {
  /** the file's identity: its path while it has one */
  path: string;
  /** what /proc/PID/maps shows for it */
  name?: string;
  fmode: number;
  cloexec: boolean;
}

interface FdTable {
  fds: Map<number, FdEntry>;
}

interface MmState {
  mm: number;
  /** ranges some mmap/mremap/brk of this address space (or of an ancestor) returned */
  ever: Ranges;
  brkKnown: boolean;
  pids: number[];
  users: number;
  done: boolean;
}

interface Proc {
  pid: number;
  tgid: number;
  task: number;
  mm: MmState;
  files: FdTable;
  alive: boolean;
}

const O_WRONLY = 1;
const O_RDWR = 2;
const ERRNO_BY_NAME: Record<string, number> = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17,
  ENODEV: 19, EINVAL: 22, ENFILE: 23, EMFILE: 24, ETXTBSY: 26, EFBIG: 27, EOVERFLOW: 75, EOPNOTSUPP: 95,
};
const errnoName = (e: number): string => ERRNO_NAMES[e] ?? Object.entries(ERRNO_BY_NAME).find(([, v]) => v === e)?.[0] ?? `errno ${e}`;
const hex = (n: number): string => (n < 0 ? '-0x' + (-n).toString(16) : '0x' + n.toString(16));
const show = (r: number, addr: boolean): string => (r < 0 ? `-1 ${errnoName(-r)}` : addr ? hex(r) : String(r));
const permsOf = (prot: number): string => (prot & PROT_READ ? 'r' : '-') + (prot & PROT_WRITE ? 'w' : '-') + (prot & PROT_EXEC ? 'x' : '-');

/** Calls the simulator runs and compares. */
const MM_CALLS = new Set(['mmap', 'munmap', 'mprotect', 'mremap', 'brk', 'madvise', 'touch']);
const PROC_CALLS = new Set(['clone', 'clone3', 'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group']);
const FD_CALLS = new Set(['open', 'openat', 'openat2', 'creat', 'memfd_create', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'unlink', 'unlinkat']);

/** Machine size for a log: enough VMAs, mms, tasks, files and frames for what it does. */
function shapeFor(log: StraceLog): MachineShape {
  let mmCalls = 0;
  let forks = 0;
  let pagesTouched = 0;
  let tablesTouched = 0;
  let files = 0;
  const pids = new Set<number>();
  for (const e of log.events) {
    pids.add(e.pid);
    if (e.kind === 'signal') files++;
    if (e.kind !== 'call') continue;
    if (MM_CALLS.has(e.name)) mmCalls++;
    // page-cache objects: one per path opened, per memfd, per shared anonymous mapping, per inferred mapping
    if (/^(open|openat|openat2|creat|memfd_create|mprotect|madvise|mremap|touch)$/.test(e.name)) files++;
    if (e.name === 'mmap' && /MAP_SHARED/.test(e.args[3] ?? '')) files++;
    if (/^(clone|clone3|fork|vfork|execve|execveat)$/.test(e.name)) forks++;
    if (e.name === 'touch' || (e.name === 'mmap' && /MAP_POPULATE|MAP_LOCKED/.test(e.args[3] ?? '')) ||
      (e.name === 'madvise' && /MADV_POPULATE/.test(e.args[2] ?? ''))) {
      try {
        const len = parseNum(e.args[1] ?? '0');
        pagesTouched += Math.ceil(len / PAGE_SIZE) + 1;
        tablesTouched += Math.ceil(len / (PAGE_SIZE * 512)) + 3;
      } catch { /* reported when run */ }
    }
  }
  // address spaces alive at once: at most the pids alive at once (each from its first line to its +++ line), plus room for an exec
  let alive = 0;
  let peak = 0;
  const seen = new Set<number>();
  for (const e of log.events) {
    if (!seen.has(e.pid)) {
      seen.add(e.pid);
      peak = Math.max(peak, ++alive);
    }
    if (e.kind === 'exit') alive--;
  }
  const maxMms = Math.min(256, peak + 4);
  let maxVmas = Math.min(1 << 16, 2 * mmCalls + 256);
  while (maxMms * maxVmas * 64 > (256 << 20) && maxVmas > 256) maxVmas >>= 1;
  const maxFiles = Math.min(1 << 16, files + 64);
  // i_mmap records per file: a shared library is mapped by ~5 VMAs in every process alive at once
  let iMmapMax = Math.max(128, 16 * maxMms);
  while (maxFiles * (iMmapMax + 1) * 32 > (512 << 20) && iMmapMax > 128) iMmapMax >>= 1; // virtual: untouched records cost no RSS
  return {
    cpus: 1, hosts: 1,
    dataFrames: Math.min(1 << 20, Math.max(4096, pagesTouched * Math.min(forks + 2, 8) * 2 + 1024)),
    tableFrames: Math.min(1 << 15, Math.max(1024, tablesTouched * Math.min(forks + 2, 8) + 256 + 16 * maxMms)),
    maxMms, maxVmas, maxTasks: pids.size + forks + 16, maxFiles, iMmapMax,
    eventRing: 64,
  };
}

/**
 * The order calls take effect: a call that was interrupted in the log
 * (`<unfinished ...>` ... `<... resumed>`) takes effect where its result
 * appears, except a clone, which must exist before its child's first line.
 */
function inExecutionOrder(events: StraceEvent[]): StraceEvent[] {
  const at = (e: StraceEvent): number =>
    e.kind === 'call' && e.ret !== undefined && !/^(clone|clone3|fork|vfork)$/.test(e.name) ? e.endLine : e.line;
  return events.map((e, i) => ({ e, k: at(e), i })).sort((a, b) => a.k - b.k || a.i - b.i).map((x) => x.e);
}

export function replayStrace(text: string, file: string, opts: ReplayOptions = {}): ReplayResult {
  const log = parseStrace(text, file);
  return new Replayer(log, file, opts).run();
}

class Replayer {
  private readonly log: StraceLog;
  private readonly file: string;
  private readonly archName: string;
  private readonly V: Views;
  private readonly host: Host;
  private readonly cpu: Cpu;
  private readonly procs = new Map<number, Proc>();
  private readonly mms: MmState[] = [];
  private readonly maps: ProcessMaps[] = [];
  /** page cache objects by path (the inode cache): one reference held for the whole replay */
  private readonly byPath = new Map<string, number>();
  /** every file the replay holds a reference on (unlinked ones too) */
  private readonly held: number[] = [];
  /** names for --maps, by file id */
  private readonly fileNames = new Map<number, MapsName>();
  private readonly r: ReplayResult;
  private readonly violations: ViolationRecord[] = [];
  private tag = 1;

  constructor(log: StraceLog, file: string, opts: ReplayOptions) {
    this.log = log;
    this.file = file;
    this.archName = opts.arch ?? 'x86';
    setKnobs([]);
    this.V = createMachine(shapeFor(log), () => 0);
    this.host = makeHost(this.V, 0, this.archName, this.violations, false);
    this.cpu = new Cpu(this.host, 0, opts.tlb ?? 64, 1);
    this.host.cpus.push(this.cpu);
    set_current(this.cpu);
    this.r = {
      file, arch: this.archName, lines: log.lines, processes: 0, calls: 0, matched: 0, differing: 0, inferred: 0, ignored: 0,
      ignoredByName: {}, fdCalls: 0, unfinished: 0, differences: [], inferences: [], notes: [], audit: { ok: true, problems: [] },
      wallMs: 0, mms: [],
    };
  }

  run(): ReplayResult {
    const t0 = performance.now();
    for (const e of inExecutionOrder(this.log.events)) {
      try {
        this.event(e);
      } catch (err) {
        if (err instanceof StraceParseError) throw err;
        throw new ReplayError(`${this.file}:${e.line}: the simulator failed on this line (${(err as Error).message}): ${e.text.trim()}`, { cause: err });
      }
    }
    this.r.wallMs = performance.now() - t0;
    this.finish();
    return this.r;
  }

  // ---- bookkeeping -----------------------------------------------------------------

  private ignore(name: string): void {
    this.r.ignored++;
    this.r.ignoredByName[name] = (this.r.ignoredByName[name] ?? 0) + 1;
  }

  private newMm(pid: number, ever = new Ranges()): MmState {
    const mm = mm_alloc();
    if (mm < 0) throw new Error(`out of simulated address spaces (${this.V.L.shape.maxMms})`);
    const st: MmState = { mm, ever, brkKnown: false, pids: [pid], users: 0, done: false };
    this.mms.push(st);
    return st;
  }

  private newTask(pid: number, tgid: number, mm: MmState, files: FdTable): Proc {
    const task = task_create(this.V, mm.mm, 0, 0);
    mm.users++;
    if (!mm.pids.includes(pid)) mm.pids.push(pid);
    const p: Proc = { pid, tgid, task, mm, files, alive: true };
    this.procs.set(pid, p);
    this.r.processes = new Set([...this.procs.values()].map((x) => x.tgid)).size;
    return p;
  }

  /** The task of pid, made on first sight if no clone in the log created it. */
  private proc(pid: number, line: number): Proc {
    const p = this.procs.get(pid);
    if (p && p.alive) return p;
    if (p) this.r.notes.push(`pid ${pid} (line ${line}) runs again after its exit with no clone in the log that made it: it starts with an empty address space`);
    else if (this.procs.size > 0) this.r.notes.push(`pid ${pid} (line ${line}) appears with no clone/fork in the log that created it: it starts with an empty address space`);
    return this.newTask(pid, pid, this.newMm(pid), { fds: new Map() });
  }

  private on(p: Proc): void {
    set_current(this.cpu);
    context_switch(this.cpu, p.task);
  }

  private snapshot(st: MmState, end: string): void {
    const V = this.V;
    const lines = vma_list(V, st.mm).map((v) => show_map_vma(v, this.nameOf(st.mm, v)));
    this.maps.push({ pids: [...st.pids], end, maps: lines });
  }

  private nameOf(mm: number, v: Vma): MapsName | undefined {
    if (v.file < 0) return vma_is_initial_heap(this.V, mm, v) ? { name: '[heap]' } : undefined;
    return this.fileNames.get(v.file) ?? { name: '/dev/zero (deleted)', dev: '00:01', inode: fake_inode(`shmem:${v.file}`) };
  }

  /** A task leaves its mm; the last one out tears the address space down. */
  private exitTask(p: Proc, end: string): void {
    if (!p.alive) return;
    this.on(p);
    p.alive = false;
    const st = p.mm;
    st.users--;
    if (st.users === 0) {
      this.snapshot(st, end);
      st.done = true;
    }
    do_exit_mm(st.mm);
    context_switch(this.cpu, -1);
  }

  // ---- results ------------------------------------------------------------------

  private compare(c: StraceCall, sim: number, addr: boolean, note?: string): void {
    this.r.calls++;
    const rec = c.ret!;
    const ok = rec.errno !== undefined ? sim < 0 && errnoName(-sim) === rec.errno : sim >= 0 && sim === rec.value;
    if (ok) {
      this.r.matched++;
      return;
    }
    this.r.differing++;
    this.r.differences.push({
      line: c.line, endLine: c.endLine, pid: c.pid, call: c.text.trim(), recorded: rec.text, simulated: show(sim, addr), note,
    });
  }

  private infer(i: Inference): void {
    this.r.inferred++;
    this.r.inferences.push(i);
  }

  // ---- the events ---------------------------------------------------------------------

  private event(e: StraceEvent): void {
    if (e.kind === 'exit') {
      const p = this.procs.get(e.pid);
      if (p) this.exitTask(p, e.how === 'exited' ? `exited with ${e.code} at line ${e.line}` : e.how === 'killed' ? `killed by ${e.sig} at line ${e.line}` : `superseded by execve at line ${e.line}`);
      return;
    }
    if (e.kind === 'signal') {
      this.signal(e.pid, e.line, e.sig, e.info, e.text);
      return;
    }
    const c = e;
    if (c.ret === undefined) {
      if (MM_CALLS.has(c.name) || PROC_CALLS.has(c.name)) this.r.unfinished++;
      else this.ignore(c.name);
      return;
    }
    try {
      if (MM_CALLS.has(c.name)) this.mmCall(c);
      else if (PROC_CALLS.has(c.name)) this.procCall(c);
      else {
        if (FD_CALLS.has(c.name)) {
          this.fdCall(c);
          this.r.fdCalls++;
        }
        this.ignore(c.name);
      }
    } catch (err) {
      if (err instanceof ArgError) throw new StraceParseError(this.file, c.line, `${c.name}: ${err.message}: ${c.text.trim()}`);
      throw err;
    }
  }

  private arg(c: StraceCall, i: number): string {
    const a = c.args[i];
    if (a === undefined) throw new ArgError(`argument ${i + 1} missing`);
    return a;
  }

  private mmCall(c: StraceCall): void {
    const p = this.proc(c.pid, c.line);
    const st = p.mm;
    const rec = c.ret!;
    const success = rec.errno === undefined && rec.value !== null && rec.value >= 0;
    this.on(p);
    switch (c.name) {
      case 'mmap': {
        const addr = parseNum(this.arg(c, 0));
        const len = parseNum(this.arg(c, 1));
        const prot = parseFlags(this.arg(c, 2), PROT_FLAGS);
        const flags = parseFlags(this.arg(c, 3), MAP_FLAGS);
        const fd = parseFd(this.arg(c, 4));
        const off = parseNum(this.arg(c, 5));
        if (off % PAGE_SIZE !== 0 || off < 0) return this.compare(c, -EINVAL, true); // sys_mmap: offset not page aligned
        let file = -1;
        let fmode = FMODE_READ | FMODE_WRITE;
        if (!(flags & MAP_ANONYMOUS)) {
          const ent = p.files.fds.get(fd);
          // strace -y decorates the fd with the file's resolved path (what /proc/PID/maps prints)
          const yPath = /^\s*-?\d+<(.+)>\s*$/.exec(this.arg(c, 4))?.[1];
          if (yPath !== undefined && (ent === undefined || ent.fmode >= 0)) {
            file = this.fileFor(yPath);
            if (ent) fmode = ent.fmode;
          } else if (ent) {
            if (ent.fmode < 0) return this.compare(c, -9, true); // O_PATH
            file = this.fileFor(ent.path, ent.name);
            fmode = ent.fmode;
          } else if (success) {
            const path = `[fd ${fd}]`;
            p.files.fds.set(fd, { path, fmode: FMODE_READ | FMODE_WRITE, cloexec: false });
            file = this.fileFor(path);
            this.infer({ line: c.line, pid: c.pid, what: 'file', detail: `fd ${fd} was open before the trace (mapped at line ${c.line}): a file of its own` });
          }
        }
        const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
        const hint = fixed || !success ? addr : rec.value!;
        const r = do_mmap(st.mm, hint, len, prot & 7, flags, file, off / PAGE_SIZE, fmode);
        if (r >= 0) {
          st.ever.add(r, r + PAGE_ALIGN(len));
          // a MAP_SHARED|MAP_ANONYMOUS mapping got a new shmem file, maybe in the slot of one named before
          if (flags & MAP_ANONYMOUS) {
            const s = vma_lookup(this.V, st.mm, r);
            if (s >= 0) this.fileNames.delete(vma_read(this.V, st.mm, s).file);
          }
          if (flags & (MAP_POPULATE | MAP_LOCKED)) this.populate(st.mm, r, r + PAGE_ALIGN(len));
        }
        return this.compare(c, r, true, r >= 0 && !fixed && success && r !== rec.value ? 'the recorded range is not free in the simulator' : undefined);
      }
      case 'munmap':
        return this.compare(c, do_munmap(st.mm, parseNum(this.arg(c, 0)), parseNum(this.arg(c, 1))), false);
      case 'mprotect': {
        const addr = parseNum(this.arg(c, 0));
        const len = parseNum(this.arg(c, 1));
        const prot = parseFlags(this.arg(c, 2), PROT_FLAGS);
        if (success) this.inferRange(c, st, addr, addr + PAGE_ALIGN(len), prot & 7, 'mprotect');
        return this.compare(c, do_mprotect(st.mm, addr, len, prot), false);
      }
      case 'madvise': {
        const addr = parseNum(this.arg(c, 0));
        const len = parseNum(this.arg(c, 1));
        const a = this.arg(c, 2);
        const advice = a in MADV_NAMES ? MADV_NAMES[a] : parseNum(a);
        if (success) this.inferRange(c, st, addr, addr + PAGE_ALIGN(len), PROT_READ | PROT_WRITE, 'madvise');
        return this.compare(c, do_madvise_advice(st.mm, addr, len, advice), false);
      }
      case 'mremap': {
        const addr = parseNum(this.arg(c, 0));
        const oldLen = parseNum(this.arg(c, 1));
        const newLen = parseNum(this.arg(c, 2));
        const flags = parseFlags(this.arg(c, 3), MREMAP_FLAGS);
        // strace prints new_address only with MREMAP_FIXED; MREMAP_DONTUNMAP alone reads it as a
        // hint (vrm_implies_new_addr): the recorded result is where that hint, whatever it was, led
        const newAddr = c.args[4] !== undefined ? parseNum(c.args[4]) : flags & MREMAP_DONTUNMAP && success ? rec.value! : 0;
        this.inferForMremap(c, st, addr, PAGE_ALIGN(oldLen), PAGE_ALIGN(newLen), flags, success);
        const placeAt = success && !(flags & MREMAP_FIXED) ? rec.value! : 0;
        const r = do_mremap(st.mm, addr, oldLen, newLen, flags, newAddr, placeAt);
        if (r >= 0) st.ever.add(r, r + PAGE_ALIGN(newLen));
        return this.compare(c, r, true);
      }
      case 'brk': {
        const want = parseNum(this.arg(c, 0));
        if (!st.brkKnown && rec.value !== null) {
          brk_init(this.V, st.mm, rec.value);
          st.brkKnown = true;
          this.infer({ line: c.line, pid: c.pid, what: 'initial break', start: rec.value, detail: `initial break ${hex(rec.value)} (the result of the first brk of this address space)` });
        }
        const r = sys_brk(st.mm, want);
        const start = mm_start_brk(this.V, st.mm);
        if (r > start) st.ever.add(start, PAGE_ALIGN(r));
        return this.compare(c, r, true);
      }
      case 'touch': {
        const addr = parseNum(this.arg(c, 0));
        const len = parseNum(this.arg(c, 1));
        const first = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
        const end = PAGE_ALIGN(addr + len);
        if (success) this.inferRange(c, st, first, end, PROT_READ | PROT_WRITE, 'touch');
        let r = 0;
        let at = 0;
        for (let va = first; va < end; va += PAGE_SIZE) {
          at = Math.max(va, addr);
          if (!this.cpu.write(at, this.tag++)) {
            const free = free_frames(this.V);
            if (free.data === 0 || free.tables === 0) {
              throw new Error(`out of simulated memory (${this.V.L.shape.dataFrames} data frames, ${this.V.L.shape.tableFrames} page-table frames)`);
            }
            r = -14;
            break;
          }
        }
        return this.compare(c, r, false, r < 0 ? `SIGSEGV writing ${hex(at)}` : undefined);
      }
    }
  }

  /** MAP_POPULATE / MAP_LOCKED: fault every page in (mm_populate), as far as simulated memory allows. */
  private populate(mm: number, start: number, end: number): void {
    const V = this.V;
    down_read(lockOf(mm));
    try {
      for (let va = start; va < end; va += PAGE_SIZE) {
        const s = vma_lookup(V, mm, va);
        if (s < 0) break;
        const v = vma_read(V, mm, s);
        if (!(v.flags & (VM_READ | VM_WRITE | VM_EXEC))) continue;
        const write = (v.flags & VM_WRITE) !== 0 && (v.flags & VM_SHARED) === 0;
        if (faultin_page(mm, va, write) !== 0) {
          this.r.notes.push(`populate of ${hex(start)}..${hex(end)} stopped at ${hex(va)}: out of simulated memory`);
          break;
        }
      }
    } finally {
      up_read(lockOf(mm));
    }
  }

  /** The page-cache object of a path, made on first use and kept for the whole replay. */
  private fileFor(path: string, name = path): number {
    let f = this.byPath.get(path);
    if (f === undefined) {
      f = shmem_file_setup(FILE_MAX_PAGES);
      if (f < 0) throw new Error('out of simulated files');
      this.byPath.set(path, f);
      this.held.push(f);
      this.fileNames.set(f, { name, dev: '00:00', inode: fake_inode(path) });
    }
    return f;
  }

  /** unlink: the file keeps its pages while mapped, shows as "(deleted)", and its path is free for a new file */
  private unlinked(path: string): void {
    const f = this.byPath.get(path);
    if (f === undefined) return;
    this.byPath.delete(path);
    const n = this.fileNames.get(f)!;
    this.fileNames.set(f, { ...n, name: `${n.name} (deleted)` });
  }

  /**
   * The pre-existing-mapping rule: the parts of [start, end) that have no VMA
   * and that the trace never mapped become one private mapping each, of a
   * file of its own named [inferred], with `prot`.
   */
  private inferRange(c: StraceCall, st: MmState, start: number, end: number, prot: number, why: string): void {
    if (!(start % PAGE_SIZE === 0 && end > start && end <= TASK_SIZE)) return;
    const vmas = new Ranges();
    for (const v of vma_list(this.V, st.mm)) vmas.add(v.start, v.end);
    for (const [a, b] of vmas.holes(start, end)) {
      for (const [x, y] of st.ever.holes(a, b)) this.mapInferred(c, st, x, y, prot, why);
    }
  }

  private mapInferred(c: StraceCall, st: MmState, a: number, b: number, prot: number, why: string): void {
    const f = shmem_file_setup(Math.min(FILE_MAX_PAGES, (b - a) / PAGE_SIZE));
    if (f < 0) throw new Error('out of simulated files');
    this.fileNames.set(f, { name: '[inferred]', dev: '00:00', inode: 0 });
    const r = do_mmap(st.mm, a, b - a, prot, MAP_PRIVATE | MAP_FIXED_NOREPLACE, f, 0);
    file_put(f); // the VMA holds its own reference
    if (r !== a) {
      this.r.notes.push(`line ${c.line}: could not map the inferred ${hex(a)}..${hex(b)} (${show(r, true)})`);
      return;
    }
    st.ever.add(a, b);
    this.infer({
      line: c.line, pid: c.pid, what: 'mapping', start: a, end: b, perms: permsOf(prot),
      detail: `${hex(a)}-${hex(b)} ${permsOf(prot)}: ${why} succeeded on a range the trace never mapped`,
    });
  }

  /**
   * mremap: the old range must lie in one VMA (infer it if the trace never
   * mapped any of it); and where the kernel moved or refused to grow a mapping
   * that the simulator could grow in place, something the trace never showed
   * lies above it: infer one page there.
   */
  private inferForMremap(c: StraceCall, st: MmState, addr: number, oldLen: number, newLen: number, flags: number, success: boolean): void {
    const V = this.V;
    const rec = c.ret!;
    if (success && oldLen > 0 && vma_lookup(V, st.mm, addr) < 0) {
      const never = st.ever.holes(addr, addr + oldLen);
      if (never.length === 1 && never[0][0] === addr && never[0][1] === addr + oldLen) {
        this.inferRange(c, st, addr, addr + oldLen, PROT_READ | PROT_WRITE, 'mremap');
      }
    }
    const moved = success && rec.value !== addr;
    const refused = rec.errno === 'ENOMEM';
    if (!(moved || refused) || newLen <= oldLen || flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) return;
    const s = vma_lookup(V, st.mm, addr);
    if (s < 0) return;
    const v = vma_read(V, st.mm, s);
    if (v.end !== addr + oldLen) return;
    const next = s + 1 < vma_count(V, st.mm) ? vma_read(V, st.mm, s + 1) : undefined;
    if (next && next.start < addr + newLen) return; // the simulator cannot grow it either
    const page = addr + oldLen;
    if (st.ever.holes(page, page + PAGE_SIZE).length === 1) {
      this.mapInferred(c, st, page, page + PAGE_SIZE, PROT_NONE, moved ? 'mremap moved instead of growing in place' : 'mremap could not grow in place');
    }
  }

  // ---- processes --------------------------------------------------------------------

  private procCall(c: StraceCall): void {
    const rec = c.ret!;
    switch (c.name) {
      case 'clone': case 'clone3': case 'fork': case 'vfork': {
        if (rec.value === null || rec.value <= 0) return this.ignore(c.name);
        const parent = this.proc(c.pid, c.line);
        const flags = c.name === 'vfork' ? ['CLONE_VM', 'CLONE_VFORK'] : c.name === 'fork' ? [] : cloneFlags(c);
        const child = rec.value;
        if (this.procs.get(child)?.alive) this.exitTask(this.procs.get(child)!, `pid reused at line ${c.line}`);
        const files = flags.includes('CLONE_FILES') ? parent.files : { fds: new Map(parent.files.fds) };
        const tgid = flags.includes('CLONE_THREAD') ? parent.tgid : child;
        if (flags.includes('CLONE_VM')) {
          this.newTask(child, tgid, parent.mm, files);
          return this.compare(c, child, false);
        }
        this.on(parent);
        const mm = do_fork(parent.mm.mm);
        if (mm < 0) return this.compare(c, mm, false, 'dup_mmap failed in the simulator');
        const st: MmState = { mm, ever: parent.mm.ever.clone(), brkKnown: parent.mm.brkKnown, pids: [child], users: 0, done: false };
        this.mms.push(st);
        brk_dup(this.V, parent.mm.mm, mm);
        this.newTask(child, tgid, st, files);
        return this.compare(c, child, false);
      }
      case 'execve': case 'execveat': {
        if (rec.errno !== undefined || rec.value !== 0) return this.ignore(c.name);
        const p = this.proc(c.pid, c.line);
        // de_thread: the other threads of the group go; the caller gets a new mm
        for (const q of this.procs.values()) if (q.alive && q !== p && q.tgid === p.tgid) this.exitTask(q, `killed by execve at line ${c.line}`);
        const files: FdTable = { fds: new Map([...p.files.fds].filter(([, f]) => !f.cloexec)) };
        const fresh = p.mm.users === 1 && vma_list(this.V, p.mm.mm).length === 0 && !p.mm.brkKnown;
        if (!fresh) {
          this.exitTask(p, `replaced by execve at line ${c.line}`);
          this.newTask(p.pid, p.tgid, this.newMm(p.pid), files);
        } else {
          p.files = files;
        }
        return this.compare(c, 0, false);
      }
      case 'exit': case 'exit_group':
        // nothing to compare (the result is ?): each task leaves its mm at its own +++ line
        this.r.calls++;
        this.r.matched++;
        return;
    }
  }

  private fdCall(c: StraceCall): void {
    const rec = c.ret!;
    if (rec.errno !== undefined || rec.value === null || rec.value < 0) return;
    const p = this.procs.get(c.pid) ?? this.proc(c.pid, c.line);
    const fds = p.files.fds;
    const fd = rec.value;
    switch (c.name) {
      case 'open': case 'openat': case 'creat': case 'openat2': {
        const pi = c.name === 'open' || c.name === 'creat' ? 0 : 1;
        const path = parseCString(c.args[pi] ?? '') ?? `[fd ${fd}]`;
        const fl = c.name === 'creat' ? 'O_WRONLY|O_CREAT|O_TRUNC' : c.args[pi + 1] ?? 'O_RDONLY';
        const names = fl.replace(/[{}]/g, '').split(/[|,\s]+/);
        const acc = names.includes('O_RDWR') ? O_RDWR : names.includes('O_WRONLY') ? O_WRONLY : 0;
        const fmode = names.includes('O_PATH') ? -1 : acc === O_RDWR ? FMODE_READ | FMODE_WRITE : acc === O_WRONLY ? FMODE_WRITE : FMODE_READ;
        fds.set(fd, { path, fmode, cloexec: names.includes('O_CLOEXEC') });
        return;
      }
      case 'memfd_create': {
        const name = parseCString(c.args[0] ?? '') ?? '';
        fds.set(fd, { path: `memfd#${c.line}`, name: `/memfd:${name} (deleted)`, fmode: FMODE_READ | FMODE_WRITE, cloexec: /MFD_CLOEXEC/.test(c.args[1] ?? '') });
        return;
      }
      case 'close':
        fds.delete(parseFd(c.args[0] ?? '-1'));
        return;
      case 'unlink': case 'unlinkat': {
        const path = parseCString(c.args[c.name === 'unlink' ? 0 : 1] ?? '');
        if (path !== undefined && !/AT_REMOVEDIR/.test(c.args[2] ?? '')) this.unlinked(path);
        return;
      }
      case 'close_range': {
        const lo = parseFd(c.args[0] ?? '0');
        const hi = Math.min(parseNum(c.args[1] ?? '0'), 1 << 20);
        if (/CLOSE_RANGE_CLOEXEC/.test(c.args[2] ?? '')) {
          for (const [k, v] of fds) if (k >= lo && k <= hi) v.cloexec = true;
        } else {
          for (const k of [...fds.keys()]) if (k >= lo && k <= hi) fds.delete(k);
        }
        return;
      }
      case 'dup': case 'dup2': case 'dup3': {
        const from = fds.get(parseFd(c.args[0] ?? '-1'));
        if (from) fds.set(fd, { ...from, cloexec: c.name === 'dup3' && /O_CLOEXEC/.test(c.args[2] ?? '') });
        return;
      }
      case 'fcntl': {
        if (!/F_DUPFD/.test(c.args[1] ?? '')) return;
        const from = fds.get(parseFd(c.args[0] ?? '-1'));
        if (from) fds.set(fd, { ...from, cloexec: /CLOEXEC/.test(c.args[1] ?? '') });
        return;
      }
    }
  }

  /**
   * SIGSEGV with a fault address checks the simulated address space:
   * SEGV_MAPERR means nothing is mapped there, SEGV_ACCERR that a mapping
   * without the needed access is (inferred as one PROT_NONE page if the trace
   * never mapped it). Other signals are not checked.
   */
  private signal(pid: number, line: number, sig: string, info: Record<string, string>, text: string): void {
    const code = info.si_code;
    if (sig !== 'SIGSEGV' || (code !== 'SEGV_MAPERR' && code !== 'SEGV_ACCERR') || info.si_addr === undefined) {
      this.ignore(`--- ${sig}`);
      return;
    }
    let addr: number;
    try {
      addr = parseNum(info.si_addr);
    } catch {
      throw new StraceParseError(this.file, line, `SIGSEGV: bad si_addr '${info.si_addr}'`);
    }
    const p = this.proc(pid, line);
    const st = p.mm;
    const fake: StraceCall = { kind: 'call', line, endLine: line, pid, name: 'SIGSEGV', args: [], ret: { value: 0, text: code }, text };
    const page = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    const mapped = addr < TASK_SIZE && vma_lookup(this.V, st.mm, addr) >= 0;
    if (code === 'SEGV_ACCERR' && !mapped && addr < TASK_SIZE && st.ever.holes(page, page + PAGE_SIZE).length === 1) {
      this.on(p);
      this.mapInferred(fake, st, page, page + PAGE_SIZE, PROT_NONE, 'a SEGV_ACCERR fault');
    }
    const now = addr < TASK_SIZE && vma_lookup(this.V, st.mm, addr) >= 0;
    const ok = code === 'SEGV_MAPERR' ? !now : now;
    this.r.calls++;
    if (ok) {
      this.r.matched++;
      return;
    }
    this.r.differing++;
    this.r.differences.push({
      line, endLine: line, pid, call: text.trim(), recorded: `${code} at ${hex(addr)}`,
      simulated: now ? `a VMA covers ${hex(addr)}` : `nothing is mapped at ${hex(addr)}`,
    });
  }

  // ---- the end ----------------------------------------------------------------------

  private finish(): void {
    // address spaces still alive at the end of the log: their maps now, then tear them down
    const alive = this.mms.filter((st) => !st.done);
    for (const st of alive) {
      this.snapshot(st, 'alive at the end of the trace');
      st.done = true;
    }
    const pre = audit(this.V);
    for (const p of this.procs.values()) {
      if (!p.alive) continue;
      this.on(p);
      p.alive = false;
      do_exit_mm(p.mm.mm);
      context_switch(this.cpu, -1);
    }
    for (const f of this.held) file_put(f);
    const post = audit(this.V);
    const problems = [...pre.problems, ...post.problems];
    let leaked = false;
    for (let mm = 0; mm < this.V.L.shape.maxMms; mm++) if (mm_in_use(this.V, mm)) leaked = true;
    if (post.usedData > 0 || post.usedTables > 0) {
      problems.push(`after every mm exited, ${post.usedData} data frames and ${post.usedTables} page-table frames are still allocated (leaked)`);
    }
    if (leaked) problems.push('an address space is still in use after every task exited');
    for (const v of this.violations) problems.push(`[${v.kind}] ${v.message}`);
    this.r.audit = { ok: problems.length === 0, problems };
    this.r.mms = this.maps;
  }
}

/** The CLONE_* names of a clone or clone3 call's flags. */
function cloneFlags(c: StraceCall): string[] {
  const all = c.args.join(', ');
  const m = /flags=([A-Z0-9_|]+)/.exec(all);
  if (!m) throw new ArgError(`no flags= in ${c.name}`);
  return m[1].split('|');
}

// ---- the report ------------------------------------------------------------------------

const fmt = (n: number): string => n.toLocaleString('en-US');

export function replaySummary(r: ReplayResult, opts: { maps?: boolean; verbose?: boolean } = {}): string {
  const out: string[] = [];
  const pre = r.inferences.filter((i) => i.what === 'mapping').length;
  const brk = r.inferences.filter((i) => i.what === 'initial break').length;
  const fil = r.inferences.filter((i) => i.what === 'file').length;
  out.push(`mmsim strace: ${r.file} (${fmt(r.lines)} lines, ${r.processes} process${r.processes === 1 ? '' : 'es'}, ${r.arch})`);
  out.push(`  result        ${r.differing === 0 && r.audit.ok ? 'every call matched' : r.differing > 0 ? `${r.differing} difference${r.differing === 1 ? '' : 's'}` : 'audit failed'}`);
  out.push(`  calls         run ${fmt(r.calls)}, matched ${fmt(r.matched)}, differing ${fmt(r.differing)}` + (r.unfinished ? `, unfinished ${r.unfinished} (not run)` : ''));
  out.push(`  inferred      ${r.inferred}` + (r.inferred ? ` (${[pre ? `${pre} pre-existing mapping${pre === 1 ? '' : 's'}` : '', brk ? `${brk} initial break${brk === 1 ? '' : 's'}` : '', fil ? `${fil} file${fil === 1 ? '' : 's'} open before the trace` : ''].filter(Boolean).join(', ')})` : ''));
  const top = Object.entries(r.ignoredByName).sort((a, b) => b[1] - a[1]);
  out.push(`  ignored       ${fmt(r.ignored)}` + (top.length ? ` (${top.slice(0, 6).map(([k, v]) => `${k} ${v}`).join(', ')}${top.length > 6 ? ', ...' : ''}; ${r.fdCalls} followed for file descriptors)` : ''));
  out.push(`  audit         ${r.audit.ok ? 'refcounts and mapcounts consistent; after every mm exited: every frame free' : r.audit.problems.slice(0, 5).join('; ')}`);
  out.push(`  speed         ${fmt(r.calls)} calls in ${r.wallMs.toFixed(1)} ms (${fmt(Math.round(r.calls / Math.max(r.wallMs, 1e-3) * 1000))} calls/s)`);
  const shownInf = opts.verbose ? r.inferences : r.inferences.slice(0, 10);
  for (const i of shownInf) out.push(`  inferred at line ${i.line} (pid ${i.pid}): ${i.detail}`);
  if (shownInf.length < r.inferences.length) out.push(`  ... ${r.inferences.length - shownInf.length} more inferences (--verbose lists them)`);
  for (const n of r.notes.slice(0, opts.verbose ? undefined : 10)) out.push(`  note          ${n}`);
  for (const d of r.differences) {
    out.push(`  difference at line ${d.line}${d.endLine !== d.line ? ` (result at line ${d.endLine})` : ''}: ${d.call}`);
    out.push(`      recorded  ${d.recorded}`);
    out.push(`      simulator ${d.simulated}${d.note ? ` (${d.note})` : ''}`);
  }
  if (opts.maps) {
    for (const m of r.mms) {
      out.push('');
      out.push(`# pid ${m.pids[0]}${m.pids.length > 1 ? ` (with ${m.pids.slice(1).join(', ')})` : ''}: ${m.end}`);
      for (const l of m.maps) out.push(l);
    }
  }
  return out.join('\n');
}

export function replayExitCode(r: ReplayResult): number {
  return r.differing === 0 && r.audit.ok ? 0 : 1;
}
