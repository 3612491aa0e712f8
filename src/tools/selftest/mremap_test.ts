// tools/testing/selftests/mm/mremap_test.c, run as a user program on the
// simulated machine: the same region, expand and misc cases, the same
// placement rules (exact alignment, 40 MiB headroom, probing with
// MAP_FIXED_NOREPLACE), a seeded byte pattern (here: one pattern value per
// content word, WORDS_PER_PAGE words per page), a validation threshold, and the
// time of the single mremap call. Reimplemented from the test's described
// behaviour (docs/kernel-rules.md#mremap-selftest); names follow the C test so results line up.

import { PAGE_SIZE, WORDS_PER_PAGE, ST_MOVE_PTE, ST_MOVE_PMD, ST_MOVE_PUD, ST_REALIGN, MMAP_MIN_ADDR, statWord } from '../../hw/layout.ts';
import { type InlineMachine, inlineMachine } from '../../engine/inline.ts';
import {
  do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_FIXED, MAP_FIXED_NOREPLACE, PROT_NONE, PROT_READ, PROT_WRITE,
} from '../../mm/mmap.ts';
import { do_mremap, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP } from '../../mm/mremap.ts';
import { userfaultfd_register } from '../../mm/userfaultfd.ts';
import { vma_list } from '../../mm/vma.ts';
import { VM_UFFD_MISSING } from '../../mm/vm_flags.ts';
import { EEXIST, EPERM, EFAULT, ERRNO_NAMES } from '../../mm/errno.ts';

const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;
const PTE = PAGE_SIZE;
const PMD = 2 * MB;
const PUD = GB;
const WORD = PAGE_SIZE / WORDS_PER_PAGE;
const RW = PROT_READ | PROT_WRITE;

export interface SelftestResult {
  name: string;
  /** pass, fail, xfail (an expected failure), skip */
  result: 'pass' | 'fail' | 'xfail' | 'skip';
  /** wall time of the one mremap call (ns), when the whole region was populated and verified */
  ns?: number;
  /** entries moved by kind during the timed call */
  moved?: { ptes: number; pmds: number; puds: number; realigned: number };
  message?: string;
}

export interface SelftestOptions {
  /** MiB of each region to fill and verify; 0 = all (default 4, as the C test) */
  thresholdMb?: number;
  /** pattern seed (default 1) */
  seed?: number;
  arch?: string;
  /** run the three 1 GiB perf cases (the C test runs them when threshold is 0 or >= 1024) */
  perf?: boolean;
  /** only the cases whose name includes this */
  filter?: string;
  memoryMiB?: number;
  /** bug knobs in force while the test runs */
  knobs?: string[];
}

/** The process the tests run in: one CPU of an inline machine. */
class Proc {
  readonly m: InlineMachine;
  readonly mm: number;
  private readonly pattern: Int32Array;
  constructor(m: InlineMachine, seed: number, patternWords: number) {
    this.m = m;
    this.mm = m.process([0]).mm;
    // srand(seed) + rand(): a reproducible stream (xorshift32 here)
    this.pattern = new Int32Array(patternWords);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < patternWords; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      this.pattern[i] = x | 0;
    }
  }
  private k<T>(fn: () => T): T {
    return this.m.on(0, fn);
  }
  mmap(addr: number, len: number, prot: number, flags: number): number {
    return this.k(() => do_mmap(this.mm, addr, len, prot, flags));
  }
  munmap(addr: number, len: number): number {
    return this.k(() => do_munmap(this.mm, addr, len));
  }
  mremap(addr: number, old_len: number, new_len: number, flags: number, new_addr = 0): number {
    return this.k(() => do_mremap(this.mm, addr, old_len, new_len, flags, new_addr));
  }
  /** memcpy(dst, pattern + patOff, len) */
  fill(dst: number, len: number, patOff = 0): void {
    const cpu = this.m.cpus[0];
    this.k(() => {
      for (let o = 0; o < len; o += WORD) cpu.write(dst + o, this.pattern[(patOff + o) / WORD]);
    });
  }
  /** memcmp(src, pattern + patOff, len) == 0; the first mismatch's offset otherwise */
  compare(src: number, len: number, patOff = 0): number {
    const cpu = this.m.cpus[0];
    return this.k(() => {
      for (let o = 0; o < len; o += WORD) {
        if (!cpu.read(src + o) || cpu.value !== this.pattern[(patOff + o) / WORD]) return o;
      }
      return -1;
    });
  }
  /** is [start, end) inside one mapping (the test reads /proc/self/maps) */
  rangeMapped(start: number, end: number): boolean {
    return vma_list(this.m.V, this.mm).some((v) => v.start <= start && v.end >= end);
  }
  stats(): { ptes: number; pmds: number; puds: number; realigned: number } {
    const { I, L } = this.m.V;
    return {
      ptes: I[statWord(L, 0, ST_MOVE_PTE)], pmds: I[statWord(L, 0, ST_MOVE_PMD)], puds: I[statWord(L, 0, ST_MOVE_PUD)],
      realigned: I[statWord(L, 0, ST_REALIGN)],
    };
  }
}

const isErr = (r: number): boolean => r < 0;
const errName = (r: number): string => ERRNO_NAMES[-r] ?? String(r);

interface RegionConfig {
  src_alignment: number;
  dest_alignment: number;
  region_size: number;
  overlapping: boolean;
  dest_preamble_size: number;
}

/** get_source_mapping: the first candidate aligned to exactly src_alignment above mmap_min_addr + 40 MiB. */
function get_source_mapping(p: Proc, c: { src_alignment: number; region_size: number }): number {
  const min = MMAP_MIN_ADDR + 10 * 4 * MB;
  for (let addr = c.src_alignment; ; addr += c.src_alignment) {
    if (addr < min) continue;
    if (addr + c.region_size > 2 ** 47) return -1;
    const r = p.mmap(addr, c.region_size, RW, MAP_FIXED_NOREPLACE | MAP_ANONYMOUS | MAP_SHARED);
    if (isErr(r)) {
      if (r === -EPERM || r === -EEXIST) continue;
      return r;
    }
    if (r % c.src_alignment !== 0 || Math.floor(r / c.src_alignment) % 2 === 0) {
      p.munmap(r, c.region_size);
      continue;
    }
    return r;
  }
}

function is_remap_region_valid(p: Proc, addr: number, size: number): boolean {
  const r = p.mmap(addr, size, RW, MAP_FIXED_NOREPLACE | MAP_ANONYMOUS | MAP_SHARED);
  if (isErr(r)) return r !== -EEXIST;
  p.munmap(r, size);
  return true;
}

/** remap_region: the time of the mremap call (ns), or a failure message. */
function remap_region(p: Proc, c: RegionConfig, thresholdMb: number): { ns: number; moved: SelftestResult['moved'] } | string {
  const threshold = thresholdMb === 0 ? c.region_size : Math.min(thresholdMb * MB, c.region_size);
  const src = get_source_mapping(p, c);
  if (src < 0) return `source mapping failed (${errName(src)})`;
  try {
    p.fill(src, threshold);
    const offset = c.overlapping ? -c.dest_alignment : c.dest_alignment;
    let addr = Math.floor((src + c.region_size + offset) / c.dest_alignment) * c.dest_alignment;
    addr += c.dest_preamble_size;
    if (Math.floor(addr / c.dest_alignment) % 2 === 0) addr += c.dest_alignment; // addr |= dest_alignment
    while (!c.overlapping && !is_remap_region_valid(p, addr, c.region_size)) addr += c.dest_alignment;
    let preamble = -1;
    if (c.dest_preamble_size) {
      preamble = p.mmap(addr - c.dest_preamble_size, c.dest_preamble_size, RW, MAP_FIXED_NOREPLACE | MAP_ANONYMOUS | MAP_SHARED);
      if (isErr(preamble)) return `dest preamble mapping failed (${errName(preamble)})`;
      p.fill(preamble, c.dest_preamble_size);
    }
    try {
      const before = p.stats();
      const t0 = process.hrtime.bigint();
      const dest = p.mremap(src, c.region_size, c.region_size, MREMAP_MAYMOVE | MREMAP_FIXED, addr);
      const ns = Number(process.hrtime.bigint() - t0);
      if (isErr(dest)) return `mremap failed: ${errName(dest)}`;
      const after = p.stats();
      try {
        const bad = p.compare(dest, threshold);
        if (bad >= 0) return `data after remap doesn't match at offset ${bad}`;
        if (c.dest_preamble_size && p.compare(preamble, c.dest_preamble_size) >= 0) return `preamble data after remap doesn't match`;
      } finally {
        p.munmap(dest, c.region_size);
      }
      return {
        ns,
        moved: { ptes: after.ptes - before.ptes, pmds: after.pmds - before.pmds, puds: after.puds - before.puds, realigned: after.realigned - before.realigned },
      };
    } finally {
      if (preamble >= 0) p.munmap(preamble, c.dest_preamble_size);
    }
  } finally {
    p.munmap(src, c.region_size);
  }
}

interface RegionTest {
  name: string;
  config: RegionConfig;
  expect_failure: boolean;
}

const T = (src: number, dst: number, size: number, overlap: boolean, fail: boolean, name: string, preamble = 0): RegionTest => ({
  name, config: { src_alignment: src, dest_alignment: dst, region_size: size, overlapping: overlap, dest_preamble_size: preamble }, expect_failure: fail,
});

/** The region test table of mremap_test.c's main(), in order. */
export const REGION_TESTS: RegionTest[] = [
  T(PTE, PTE, PTE, true, true, 'mremap - Source and Destination Regions Overlapping'),
  T(PTE, PTE / 4, PTE, false, true, 'mremap - Destination Address Misaligned (1KB-aligned)'),
  T(PTE / 4, PTE, PTE, false, true, 'mremap - Source Address Misaligned (1KB-aligned)'),
  T(PTE, PTE, 2 * PTE, false, false, '8KB mremap - Source PTE-aligned, Destination PTE-aligned'),
  T(MB, PTE, 2 * MB, false, false, '2MB mremap - Source 1MB-aligned, Destination PTE-aligned'),
  T(MB, MB, 2 * MB, false, false, '2MB mremap - Source 1MB-aligned, Destination 1MB-aligned'),
  T(PMD, PTE, 4 * MB, false, false, '4MB mremap - Source PMD-aligned, Destination PTE-aligned'),
  T(PMD, MB, 4 * MB, false, false, '4MB mremap - Source PMD-aligned, Destination 1MB-aligned'),
  T(PMD, PMD, 4 * MB, false, false, '4MB mremap - Source PMD-aligned, Destination PMD-aligned'),
  T(PUD, PTE, 2 * GB, false, false, '2GB mremap - Source PUD-aligned, Destination PTE-aligned'),
  T(PUD, MB, 2 * GB, false, false, '2GB mremap - Source PUD-aligned, Destination 1MB-aligned'),
  T(PUD, PMD, 2 * GB, false, false, '2GB mremap - Source PUD-aligned, Destination PMD-aligned'),
  T(PUD, PUD, 2 * GB, false, false, '2GB mremap - Source PUD-aligned, Destination PUD-aligned'),
  T(MB, MB, 5 * MB, false, false, '5MB mremap - Source 1MB-aligned, Destination 1MB-aligned'),
  T(MB, MB, 5 * MB, false, false, '5MB mremap - Source 1MB-aligned, Dest 1MB-aligned with 40MB Preamble', 10 * 4 * MB),
];

/** The perf cases ("mremap HAVE_MOVE_PMD/PUD optimization time comparison for 1GB region"). */
export const PERF_TESTS: RegionTest[] = [
  T(PTE, PTE, GB, false, false, '1GB mremap - Source PTE-aligned, Destination PTE-aligned'),
  T(PMD, PMD, GB, false, false, '1GB mremap - Source PMD-aligned, Destination PMD-aligned'),
  T(PUD, PUD, GB, false, false, '1GB mremap - Source PUD-aligned, Destination PUD-aligned'),
];

type Misc = (p: Proc) => string | null; // null: pass; else the failure

/** mremap expand merge: 3 pages, unmap the middle, expand the first in place: one mapping of 3 pages. */
const expand_merge: Misc = (p) => {
  const start = p.mmap(0, 3 * PTE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  if (isErr(start)) return `mmap failed: ${errName(start)}`;
  p.munmap(start + PTE, PTE);
  const r = p.mremap(start, PTE, 2 * PTE, 0);
  if (isErr(r)) return `mremap failed: ${errName(r)}`;
  const ok = p.rangeMapped(start, start + 3 * PTE);
  p.munmap(start, 3 * PTE);
  return ok ? null : 'the expanded VMA did not merge with the third page';
};

/** mremap expand merge offset: unmap the last page, expand the second (inside the VMA): one mapping again. */
const expand_merge_offset: Misc = (p) => {
  const start = p.mmap(0, 3 * PTE, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  if (isErr(start)) return `mmap failed: ${errName(start)}`;
  p.munmap(start + 2 * PTE, PTE);
  const r = p.mremap(start + PTE, PTE, 2 * PTE, 0);
  if (isErr(r)) return `mremap failed: ${errName(r)}`;
  const ok = p.rangeMapped(start, start + 3 * PTE);
  p.munmap(start, 3 * PTE);
  return ok ? null : 'the mapping was not restored to one VMA of 3 pages';
};

/** mremap mremap move within range: moving the upper 1 MiB of a 2 MiB block down must not drag the lower 1 MiB (realignment). */
const move_within_range: Misc = (p) => {
  const size = 20 * MB;
  const ptr = p.mmap(0, size, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  if (isErr(ptr)) return `mmap failed: ${errName(ptr)}`;
  try {
    const src = Math.floor((ptr + 6 * MB) / (2 * MB)) * (2 * MB);
    p.fill(src, 2 * MB);
    const dest = src - 2 * MB;
    const r = p.mremap(src + MB, MB, MB, MREMAP_MAYMOVE | MREMAP_FIXED, dest + MB);
    if (isErr(r)) return `mremap failed: ${errName(r)}`;
    const bad = p.compare(src, MB);
    return bad < 0 ? null : `data at src offset ${bad} got corrupted by an unrelated mremap`;
  } finally {
    p.munmap(ptr, size);
  }
};

/** mremap move 1mb from start at 1MB+256KB aligned src: aligning down must not land on (and destroy) the source's own start. */
const move_1mb_from_start: Misc = (p) => {
  const c = { src_alignment: MB + 256 * KB, region_size: 6 * MB };
  const src = get_source_mapping(p, c);
  if (src < 0) return 'source mapping failed';
  const dest = get_source_mapping(p, c);
  if (dest < 0) return 'dest mapping failed';
  try {
    p.fill(src, 2 * MB);
    p.munmap(dest, MB);
    const r = p.mremap(src + MB, MB, MB, MREMAP_MAYMOVE | MREMAP_FIXED, dest + MB);
    if (isErr(r)) return `mremap failed: ${errName(r)}`;
    const bad = p.compare(src, MB);
    return bad < 0 ? null : `data at src offset ${bad} got corrupted by an unrelated mremap`;
  } finally {
    p.munmap(src, c.region_size);
    p.munmap(dest, c.region_size);
  }
};

/**
 * The C tests' set-up: a private mapping to work on, and a free target range
 * (mapped once so the kernel picks a place, then unmapped); both are unmapped
 * after the body, whatever it returns.
 */
function with_source_and_target(p: Proc, size: number, tgtSize: number, tgtProt: number, body: (ptr: number, tgt: number) => string | null): string | null {
  const ptr = p.mmap(0, size, RW, MAP_PRIVATE | MAP_ANONYMOUS);
  const tgt = p.mmap(0, tgtSize, tgtProt, MAP_PRIVATE | MAP_ANONYMOUS);
  if (isErr(ptr) || isErr(tgt)) return 'mmap failed';
  p.munmap(tgt, tgtSize);
  try {
    return body(ptr, tgt);
  } finally {
    p.munmap(tgt, tgtSize);
    p.munmap(ptr, size);
  }
}

/** mremap shrink multiple vmas [inplace]: 10 pages, odd ones unmapped; shrink to 1 page across VMAs and gaps. */
const shrink_multiple = (inplace: boolean): Misc => (p) => {
  const size = 10 * PTE;
  return with_source_and_target(p, size, size, RW, (ptr, tgt) => {
    for (let i = 1; i < 10; i += 2) p.munmap(ptr + i * PTE, PTE);
    const r = inplace ? p.mremap(ptr, size, PTE, 0) : p.mremap(ptr, size, PTE, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
    return isErr(r) ? `mremap failed: ${errName(r)}` : null;
  });
};

/** The multi-VMA layout: pages 0, 2, 4-6, 8, 10 mapped (pattern pages 0..6). */
function multiple_vma_range_ok(p: Proc, ptr: number): boolean {
  for (let i = 0; i <= 10; i += 2) {
    const size = i === 4 ? 2 * PTE : PTE;
    if (p.compare(ptr + i * PTE, size, i * PTE) >= 0) return false;
  }
  return true;
}

/** mremap move multiple vmas [dontunnmap]: move the 11-page range with gaps, move it next to itself, move it back over a PROT_NONE mapping. */
const move_multiple = (dontunmap: boolean): Misc => (p) => {
  const flags = MREMAP_FIXED | MREMAP_MAYMOVE | (dontunmap ? MREMAP_DONTUNMAP : 0);
  const size = 11 * PTE;
  return with_source_and_target(p, size, 2 * size, RW, (ptr, tgt) => {
    for (let i = 1; i < 10; i += 2) if (i !== 5) p.munmap(ptr + i * PTE, PTE);
    for (let i = 0; i <= 10; i += 2) p.fill(ptr + i * PTE, i === 4 ? 2 * PTE : PTE, i * PTE);
    let r = p.mremap(ptr, size, size, flags, tgt);
    if (isErr(r)) return `mremap (whole range) failed: ${errName(r)}`;
    if (!multiple_vma_range_ok(p, tgt)) return 'pattern wrong after the first move';
    r = p.mremap(tgt, size, size, flags, tgt + size);
    if (isErr(r)) return `mremap (next to itself) failed: ${errName(r)}`;
    if (!multiple_vma_range_ok(p, tgt + size)) return 'pattern wrong after moving next to itself';
    if (isErr(p.mmap(tgt, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))) return 'mmap tgt failed';
    r = p.mremap(tgt + size, size, size, flags, tgt);
    if (isErr(r)) return `mremap (overwrite) failed: ${errName(r)}`;
    if (!multiple_vma_range_ok(p, tgt)) return 'pattern wrong after moving back over a mapping';
    return null;
  });
};

/**
 * mremap move multiple vmas split [dontunnmap]: move 7 pages from page 2 of
 * [0-4] [6-9]: both VMAs are split. (The C test jumps to its cleanup on a
 * mismatch without recording a failure, so it cannot fail on corruption;
 * this port does fail.)
 */
const move_multiple_split = (dontunmap: boolean): Misc => (p) => {
  const flags = MREMAP_FIXED | MREMAP_MAYMOVE | (dontunmap ? MREMAP_DONTUNMAP : 0);
  const size = 10 * PTE;
  return with_source_and_target(p, size, size, RW, (ptr, tgt) => {
    p.munmap(ptr + 5 * PTE, PTE);
    for (let i = 0; i < 10; i++) if (i !== 5) p.fill(ptr + i * PTE, PTE, i * PTE);
    const r = p.mremap(ptr + 2 * PTE, size - 3 * PTE, size - 3 * PTE, flags, tgt);
    if (isErr(r)) return `mremap failed: ${errName(r)}`;
    for (let i = 0; i < 7; i++) {
      if (i === 3) continue;
      if (p.compare(tgt + i * PTE, PTE, (i + 2) * PTE) >= 0) return `page ${i} corrupted`;
    }
    return null;
  });
};

/** mremap move multiple invalid vmas: userfaultfd-armed VMAs may not take part in a multi-VMA move (EFAULT, partial-move rules). */
const move_multi_invalid: Misc = (p) => {
  const size = 10 * PTE;
  const mapped = (a: number): boolean => p.rangeMapped(a, a + PTE);
  return with_source_and_target(p, size, size, PROT_NONE, (ptr, tgt) => {
    for (let i = 0; i < 10; i += 2) {
      if (isErr(p.m.on(0, () => userfaultfd_register(p.mm, ptr + i * PTE, PTE, VM_UFFD_MISSING)))) return 'UFFDIO_REGISTER failed';
      p.munmap(ptr + (i + 1) * PTE, PTE);
    }
    let r = p.mremap(ptr, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
    if (!isErr(r)) return 'mremap() succeeded for multi VMA uffd armed';
    if (r !== -EFAULT) return `unexpected error ${errName(r)}`;
    if (mapped(tgt)) return 'invalid uffd-armed VMA at start of multi range moved';
    r = p.mremap(ptr, PTE, PTE, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
    if (isErr(r)) return `mremap of a single invalid-multi VMA failed: ${errName(r)}`;
    p.munmap(tgt, PTE);
    if (isErr(p.mmap(ptr, PTE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))) return 'mmap failed';
    r = p.mremap(ptr, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
    if (!isErr(r)) return 'mremap() succeeded for multi VMA uffd armed';
    if (r !== -EFAULT) return `unexpected error ${errName(r)}`;
    if (!mapped(tgt)) return 'valid VMA not moved';
    p.munmap(tgt, PTE);
    p.munmap(ptr, size - 2 * PTE);
    for (let i = 0; i < 8; i += 2) if (isErr(p.mmap(ptr + i * PTE, PTE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))) return 'mmap failed';
    r = p.mremap(ptr, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
    if (!isErr(r)) return 'mremap() succeeded for multi VMA uffd armed';
    if (r !== -EFAULT) return `unexpected error ${errName(r)}`;
    for (let i = 0; i < 10; i += 2) {
      const m = mapped(tgt + i * PTE);
      if (i < 8 && !m) return `valid VMA not moved at ${i}`;
      if (i === 8 && m) return `invalid VMA moved at ${i}`;
    }
    return null;
  });
};

export const EXPAND_TESTS: [string, Misc][] = [
  ['mremap expand merge', expand_merge],
  ['mremap expand merge offset', expand_merge_offset],
];

export const MISC_TESTS: [string, Misc][] = [
  ['mremap mremap move within range', move_within_range],
  ['mremap move 1mb from start at 1MB+256KB aligned src', move_1mb_from_start],
  ['mremap shrink multiple vmas [inplace]', shrink_multiple(true)],
  ['mremap shrink multiple vmas', shrink_multiple(false)],
  ['mremap move multiple vmas', move_multiple(false)],
  ['mremap move multiple vmas [dontunnmap]', move_multiple(true)],
  ['mremap move multiple vmas split', move_multiple_split(false)],
  ['mremap move multiple vmas split [dontunnmap]', move_multiple_split(true)],
  ['mremap move multiple invalid vmas', move_multi_invalid],
];

/** Run mremap_test on a fresh simulated machine; results in the C test's order. */
export function run_mremap_selftest(o: SelftestOptions = {}): SelftestResult[] {
  const thresholdMb = o.thresholdMb ?? 4;
  const perf = o.perf ?? (thresholdMb === 0 || thresholdMb >= 1024);
  const memoryMiB = o.memoryMiB ?? (perf || thresholdMb === 0 ? 1536 : 96);
  const m = inlineMachine({ cpus: 1, knobs: o.knobs, arch: o.arch ?? 'x86', dataFrames: memoryMiB * 256, tableFrames: Math.max(2048, memoryMiB * 4) });
  const patternBytes = Math.max(Math.min(thresholdMb === 0 ? 2 * GB : thresholdMb * MB, 2 * GB), 2 * MB, 40 * MB);
  const p = new Proc(m, o.seed ?? 1, Math.min(patternBytes, perf || thresholdMb === 0 ? GB : patternBytes) / WORD);
  const out: SelftestResult[] = [];
  const want = (name: string): boolean => !o.filter || name.includes(o.filter);
  const region = (t: RegionTest): void => {
    if (!want(t.name)) return;
    const r = remap_region(p, t.config, thresholdMb);
    if (typeof r === 'string') {
      out.push({ name: t.name, result: t.expect_failure ? 'xfail' : 'fail', message: r });
      return;
    }
    const whole = thresholdMb === 0 || t.config.region_size <= thresholdMb * MB;
    out.push({ name: t.name, result: 'pass', moved: r.moved, ...(whole ? { ns: r.ns } : {}) });
  };
  REGION_TESTS.forEach(region);
  if (perf) PERF_TESTS.forEach(region);
  for (const [name, fn] of [...EXPAND_TESTS, ...MISC_TESTS]) {
    if (!want(name)) continue;
    const msg = fn(p);
    out.push({ name, result: msg === null ? 'pass' : 'fail', ...(msg ? { message: msg } : {}) });
  }
  if (m.violations.length) out.push({ name: 'oracles', result: 'fail', message: m.violations.map((v) => v.message).join('; ') });
  return out;
}

/** ksft-style text: "ok N name" / "not ok N name", with times where the C test prints them. */
export function format_selftest(results: SelftestResult[]): string {
  const lines = ['TAP version 13', `1..${results.length}`];
  results.forEach((r, i) => {
    if (r.message) lines.push(`# ${r.name}: ${r.message}`);
    if (r.ns !== undefined) lines.push(`# ${r.name}: mremap time: ${String(r.ns).padStart(12)}ns${r.moved ? ` (moved ${r.moved.ptes} PTEs, ${r.moved.pmds} PTE tables, ${r.moved.puds} PMD tables${r.moved.realigned ? ', realigned' : ''})` : ''}`);
    const ok = r.result === 'pass' || r.result === 'xfail';
    lines.push(`${ok ? 'ok' : 'not ok'} ${i + 1} ${r.name}${r.result === 'xfail' ? ' # XFAIL' : r.result === 'skip' ? ' # SKIP' : ''}`);
  });
  const fails = results.filter((r) => r.result === 'fail').length;
  lines.push(`# Totals: pass:${results.filter((r) => r.result === 'pass').length} fail:${fails} xfail:${results.filter((r) => r.result === 'xfail').length} xpass:0 skip:0 error:0`);
  return lines.join('\n');
}
