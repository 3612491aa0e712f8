import { describe, it, expect } from 'vitest';
import { loadScenario } from '../src/engine/scenario.ts';
import { runScenario, type RunResult } from '../src/engine/machine.ts';
import { exitCode } from '../src/report/summary.ts';
import { testMachine } from './helpers.ts';
import { ContentOracle } from '../src/oracles/oracles.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { dataWord, frameWord, FM_REF } from '../src/hw/layout.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { pte_pfn } from '../src/hw/pte.ts';
import { audit } from '../src/oracles/audit.ts';

// Each oracle, shown firing on the bug it exists for (a knob in the kernel
// code, or a direct corruption for the content model), and passing on the
// correct kernel. Runs use real worker threads, one per CPU.
const munmap = await loadScenario('scenarios/munmap-vs-access.ts');
const switchMm = await loadScenario('scenarios/switch-mm-munmap.ts');
const run = (s = munmap, knobs: string[] = [], seed = 1, extra = {}): Promise<RunResult> =>
  runScenario(s, { cpus: 4, threads: 4, ops: 5000, delay: 0.02, seed, knobs, hangTimeoutMs: 20000, ...extra });
const kinds = (r: RunResult) => [...new Set(r.violations.map((v) => v.kind))];

describe('oracles on the correct kernel', () => {
  it('munmap-vs-access and switch-mm-munmap run clean, audits included', async () => {
    for (const s of [munmap, switchMm]) {
      const r = await run(s);
      expect(r.violations).toEqual([]);
      expect(r.audit.problems).toEqual([]);
      expect(r.teardownAudit.problems).toEqual([]);
      expect(r.stats.shootdowns).toBeGreaterThan(0);
      expect(r.readsChecked).toBeGreaterThan(1000);
      expect(exitCode(r)).toBe(0);
    }
  });
});

describe('use-after-free through a stale TLB entry (frame generation)', () => {
  for (const knob of ['munmap.free_before_flush', 'munmap.skip_flush']) {
    it(`fires on ${knob}`, async () => {
      // keepGoing: every oracle that fires is recorded (the first to meet a freed frame may be the content oracle)
      const r = await run(munmap, [knob], 1, { keepGoing: true });
      expect(kinds(r)).toContain('uaf-stale-tlb');
      const v = r.violations.find((x) => x.kind === 'uaf-stale-tlb')!;
      expect(v.message).toMatch(/stale TLB entry: pfn \d+ was filled at generation \d+ but the frame is now at generation \d+/);
      expect(Object.keys(v.events).length).toBeGreaterThanOrEqual(1);
      expect(exitCode(r)).toBe(1);
    });
  }
  it('fires when switch_mm skips the generation check (x86.switch_mm_no_gen_check)', async () => {
    const r = await run(switchMm, ['x86.switch_mm_no_gen_check'], 1, { keepGoing: true });
    expect(kinds(r)).toContain('uaf-stale-tlb');
  });
});

describe('content model', () => {
  it('fires on a zap that runs one PTE past its range (lost contents, no stale TLB involved)', async () => {
    const r = await run(munmap, ['zap.off_by_one']);
    expect(kinds(r)).toEqual(['content']);
    expect(r.violations[0].message).toMatch(/lost write/);
  });

  it('unit: a lost write, someone else\'s data, and a stale own value are each reported; a concurrent unmap excuses', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const a = m.on(0, () => do_mmap(mm, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    const o = new ContentOracle(m.V, m.host, 0);
    const cpu = m.cpus[0];
    const write = (va: number) => m.on(0, () => {
      const t = o.tag(va);
      const snap = o.snapshot(mm);
      cpu.write(va, t);
      o.wrote(mm, va, t, snap);
      return t;
    });
    const read = (va: number) => m.on(0, () => (cpu.read(va), o.read(mm, va, cpu.value)));
    const pfnOf = (va: number) => m.on(0, () => pte_pfn(Atomics.load(m.V.I, pte_offset(pmd_offset(pud_offset(pgd_offset(mm, va), va), va), va))));
    const word = (va: number) => dataWord(m.V.L, pfnOf(va), (va % 4096) / 512);
    const t1 = write(a);
    read(a);
    expect(m.violations).toEqual([]);
    m.V.I[word(a)] = 0; // the write is lost
    read(a);
    expect(m.violations.at(-1)?.message).toMatch(/lost write/);
    write(a + 4096);
    m.V.I[word(a)] = m.V.I[word(a + 4096)]; // another page's data shows up here
    read(a);
    expect(m.violations.at(-1)?.message).toMatch(/another address/);
    write(a);
    m.V.I[word(a)] = t1; // an older value of ours comes back
    read(a);
    expect(m.violations.at(-1)?.message).toMatch(/stale content/);
    const n = m.violations.length;
    write(a + 2 * 4096);
    m.host.hooks.discard(mm, a + 2 * 4096, a + 3 * 4096, false); // an munmap is under way there
    m.V.I[word(a + 2 * 4096)] = 0;
    read(a + 2 * 4096);
    expect(m.violations.length).toBe(n);
    expect(o.excused).toBe(1);
  });
});

describe('content oracle and shared memory', () => {
  it('unit: a CPU\'s newer tag in a shared word, written through another mm (a forked child, another process mapping the file), is not stale content; in private memory it is', () => {
    const m = testMachine({ cpus: 1 });
    const a = m.process([0]).mm;
    const b = m.process([0]).mm;
    const o = new ContentOracle(m.V, m.host, 0);
    const va = 0x10000000;
    const vb = 0x20000000; // b maps the same file page elsewhere
    const off = 3 * 512;
    const check = (share: string | undefined) => m.on(0, () => {
      const t1 = o.tag(off);
      o.wrote(a, va, t1, o.snapshot(a), share);
      const t2 = o.tag(off);
      o.wrote(b, vb, t2, o.snapshot(b), share);
      o.read(a, va, t2, off); // a sees what this CPU wrote through b
      o.read(b, vb, t2, off);
    });
    check('f1:3');
    expect(m.violations).toEqual([]);
    check(undefined); // the same in private memory: a's page cannot hold b's write
    expect(m.violations.map((v) => v.message)).toEqual([expect.stringMatching(/cpu 0 read this CPU's older tag .* \(stale content\)/)]);
  });
});

describe('refcount audit and double free', () => {
  it('the audit finds pages leaked by fault.leak_ref, live and after every mm exits', async () => {
    const r = await run(munmap, ['fault.leak_ref']);
    expect(r.audit.ok).toBe(false);
    expect(r.audit.problems[0]).toMatch(/refcount \d+ but only \d+ references exist \(leaked 1\)/);
    expect(r.teardownAudit.problems.at(-1)).toMatch(/still allocated \(leaked\)/);
    expect(exitCode(r)).toBe(1);
  });

  it('unit: the audit catches a missing reference and a mapcount that does not match the PTEs', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const a = m.on(0, () => do_mmap(mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
    m.on(0, (cpu) => cpu.write(a, 1));
    expect(audit(m.V).ok).toBe(true);
    const pfn = m.on(0, () => pte_pfn(Atomics.load(m.V.I, pte_offset(pmd_offset(pud_offset(pgd_offset(mm, a), a), a), a))));
    m.V.I[frameWord(m.V.L, pfn, FM_REF)] = 0;
    m.V.I[frameWord(m.V.L, pfn, FM_REF + 1)] = 2;
    expect(audit(m.V).problems).toEqual([
      `pfn ${pfn}: mapcount 2 but 1 PTEs map it`,
      `pfn ${pfn}: refcount 0 but 1 references exist (a later put would free it while in use)`,
    ]);
  });

  it('the allocator reports a double free (munmap.double_put)', async () => {
    const r = await run(munmap, ['munmap.double_put']);
    expect(kinds(r)).toContain('double-free');
  });
});
