// Generic mm primitives every arch shares, as the kernel has them:
// GUP-fast (mm/gup.c gup_fast_pte_range) and page-table freeing under
// MMU_GATHER_RCU_TABLE_FREE (mm/mmu_gather.c tlb_remove_table,
// tlb_remove_table_sync_one).
import { describe, it, expect } from 'vitest';
import { testMachine } from './helpers.ts';
import { frameWord, FM_REF, FM_FLAGS, PG_FREE, PAGE_SIZE } from '../src/hw/layout.ts';
import { pte_pfn } from '../src/hw/pte.ts';
import { do_mmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { pgd_offset, pud_offset, pmd_offset, pte_offset } from '../src/mm/pgtable.ts';
import { gup_fast, gup_put_page, FOLL_GET } from '../src/mm/gup.ts';
import { mmu_gather, tlb_gather_mmu, tlb_remove_table, tlb_finish_mmu } from '../src/mm/mmu_gather.ts';
import { alloc_pt_page } from '../src/mm/page_alloc.ts';
import { IPI_TLB_REMOVE_TABLE_SYNC } from '../src/arch/arch.ts';

const VA = 0x40000000;

function setup(arch: string) {
  const m = testMachine({ cpus: 2, arch });
  const { mm } = m.process([0, 1]);
  expect(m.on(0, () => do_mmap(mm, VA, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))).toBe(VA);
  m.on(0, (cpu) => expect(cpu.write(VA, 1)).toBe(true));
  const pmdp = m.on(0, () => pmd_offset(pud_offset(pgd_offset(mm, VA), VA), VA));
  const ptep = m.on(0, () => pte_offset(pmdp, VA));
  return { m, mm, pmdp, ptep };
}

describe('GUP-fast (mm/gup.c gup_fast_pte_range)', () => {
  it('takes the page when nothing changed', () => {
    const { m, mm, ptep } = setup('arm64');
    const pfn = pte_pfn(Atomics.load(m.V.I, ptep));
    expect(m.on(0, () => gup_fast(mm, VA, FOLL_GET))).toBe(pfn);
    m.on(0, () => gup_put_page(pfn, FOLL_GET));
  });

  for (const what of ['pmd', 'pte'] as const) {
    it(`re-reads the ${what.toUpperCase()} after taking the page: changed meanwhile, it undoes and falls back`, () => {
      const { m, mm, pmdp, ptep } = setup('arm64');
      const pfn = pte_pfn(Atomics.load(m.V.I, ptep));
      const ref = (): number => Atomics.load(m.V.I, frameWord(m.V.L, pfn, FM_REF));
      const ref0 = ref();
      const cpu = m.cpus[0];
      const orig = cpu.hw_point.bind(cpu);
      let points = 0;
      const p = what === 'pmd' ? pmdp : ptep;
      const saved = Atomics.load(m.V.I, p);
      // the fifth hardware point is after try_grab_folio, before the re-reads:
      // another CPU changes the entry there (a PMD: the table was detached or replaced)
      cpu.hw_point = () => {
        if (++points === 5) Atomics.store(m.V.I, p, saved ^ (what === 'pmd' ? 1 << 20 : 1 << 6));
        orig();
      };
      expect(m.on(0, () => gup_fast(mm, VA, FOLL_GET))).toBe(0);
      cpu.hw_point = orig;
      Atomics.store(m.V.I, p, saved);
      expect(points).toBe(5);
      expect(ref()).toBe(ref0); // the reference was dropped again
    });
  }
});

describe('page-table freeing with MMU_GATHER_RCU_TABLE_FREE (mm/mmu_gather.c)', () => {
  for (const arch of ['arm64', 's390', 'x86']) {
    const rcu = arch !== 'x86';
    it(`${arch}: ${rcu ? 'a table is freed only after every CPU with interrupts off has taken the sync IPI' : 'no grace period: the flush IPI (which waits for interrupts on) is the protection'}`, () => {
      const { m, mm } = setup(arch);
      const sent: number[][] = [];
      let pt = 0;
      const cpu0 = m.cpus[0];
      const orig = cpu0.send_ipis_and_wait.bind(cpu0);
      cpu0.send_ipis_and_wait = (targets, n, type) => {
        if (type === IPI_TLB_REMOVE_TABLE_SYNC) {
          expect(Atomics.load(m.V.I, frameWord(m.V.L, pt, FM_FLAGS)) & PG_FREE).toBe(0); // not yet freed
          sent.push(Array.from(targets).slice(0, n));
          return;
        }
        orig(targets, n, type);
      };
      m.cpus[1].local_irq_disable(); // CPU 1 is in GUP-fast, say
      m.on(0, () => {
        const tlb = new mmu_gather();
        tlb_gather_mmu(tlb, mm);
        pt = alloc_pt_page(mm, 1);
        tlb_remove_table(tlb, pt, VA, PAGE_SIZE);
        if (arch === 'x86') m.cpus[1].local_irq_enable(); // the x86 shootdown IPI would wait for this
        tlb_finish_mmu(tlb);
      });
      if (rcu) m.cpus[1].local_irq_enable();
      expect(sent).toEqual(rcu ? [[1]] : []);
      expect(Atomics.load(m.V.I, frameWord(m.V.L, pt, FM_FLAGS)) & PG_FREE).not.toBe(0);
    });
  }
});
