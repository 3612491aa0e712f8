// The VMA layout after mmap/munmap/mprotect/mremap sequences must match what
// Linux makes of them. test/fixtures/layout/expected.txt is the output of
// vma_layout.c (same folder) run on this machine's kernel (Linux 6.18) with
// ops.txt; this test runs ops.txt on the simulator and prints the same way.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_FIXED } from '../src/mm/mmap.ts';
import { do_mprotect } from '../src/mm/mprotect.ts';
import { do_mremap, MREMAP_FIXED, MREMAP_MAYMOVE } from '../src/mm/mremap.ts';
import { vma_list } from '../src/mm/vma.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED } from '../src/mm/vm_flags.ts';

const dir = new URL('./fixtures/layout/', import.meta.url);
const ops = readFileSync(new URL('ops.txt', dir), 'utf8').trim().split('\n');
const expected = readFileSync(new URL('expected.txt', dir), 'utf8');
const SPAN = 2 ** 32;
const BASE = 64 * 2 ** 30;

/** The kernel's result of each op, for calls where the kernel chose the address. */
const kernelResults = expected.split('\n').filter((l) => / = /.test(l)).map((l) => Number(l.split(' = ')[1]));

function run(arch: string): string {
  const m = testMachine({ cpus: 1, arch, dataFrames: 8192, tableFrames: 1024 });
  const { mm } = m.process([0]);
  const k = <T>(fn: () => T): T => m.on(0, fn);
  const out: string[] = [];
  ops.forEach((line, i) => {
    const [op, ...a] = line.split(/\s+/);
    const n = a.map((x) => parseInt(x, 16));
    let res = 0;
    switch (op) {
      case 'mmap': res = k(() => do_mmap(mm, BASE + n[0], n[1], parseInt(a[2], 10), parseInt(a[3], 10) | MAP_FIXED)); break;
      case 'munmap': res = k(() => do_munmap(mm, BASE + n[0], n[1])); break;
      case 'mprotect': res = k(() => do_mprotect(mm, BASE + n[0], n[1], parseInt(a[2], 10))); break;
      case 'mremap': {
        const flags = parseInt(a[3], 10);
        const chosen = flags & MREMAP_MAYMOVE && !(flags & MREMAP_FIXED) && kernelResults[i] >= 0 ? BASE + kernelResults[i] : 0;
        res = k(() => do_mremap(mm, BASE + n[0], n[1], n[2], flags, BASE + n[4], chosen));
        break;
      }
      case 'touch': k(() => { for (let x = n[0]; x < n[0] + n[1]; x += 4096) m.cpus[0].write(BASE + x, 1); }); break;
      default: throw new Error(`ops.txt:${i + 1}: bad op ${op}`);
    }
    out.push(`${op} = ${res >= BASE ? res - BASE : res}`);
    for (const v of vma_list(m.V, mm)) {
      if (v.start < BASE || v.end > BASE + SPAN) continue;
      const perms = `${v.flags & VM_READ ? 'r' : '-'}${v.flags & VM_WRITE ? 'w' : '-'}${v.flags & VM_EXEC ? 'x' : '-'}${v.flags & VM_SHARED ? 's' : 'p'}`;
      out.push(`  ${(v.start - BASE).toString(16)}-${(v.end - BASE).toString(16)} ${perms}`);
    }
  });
  expect(m.violations).toEqual([]);
  return `${out.join('\n')}\n`;
}

describe('VMA layout matches Linux 6.18 after mmap/munmap/mprotect/mremap sequences', () => {
  for (const arch of ['x86', 's390']) {
    it(`${arch}: every step's result and VMAs equal the kernel's`, () => {
      const got = run(arch).split('\n');
      const want = expected.split('\n');
      // report the first differing step with its op line
      let step = -1;
      for (let i = 0; i < Math.max(got.length, want.length); i++) {
        if (/ = /.test(want[i] ?? '')) step++;
        if (got[i] !== want[i]) {
          expect.fail(`ops.txt line ${step + 1} (${ops[step]}): at output line ${i + 1} expected '${want[i]}', got '${got[i]}'\n${got.slice(Math.max(0, i - 6), i + 6).join('\n')}`);
        }
      }
    });
  }
});
