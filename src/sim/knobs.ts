// The bug-injection registry: named knobs, default off, each consulted at exactly
// one point of kernel code. A knob is only real when a test shows a scenario
// catching it and the same scenario passing with the knob off.

export interface KnobInfo {
  name: string;
  where: string;
  what: string;
  source: string;
}

export const KNOBS = {
  'munmap.free_before_flush': {
    where: 'src/mm/mmu_gather.ts tlb_flush_mmu',
    what: 'free the gathered pages before the TLB shootdown completes (breaks unhook -> flush -> free)',
    source: 'spec 5.5 / 5.7 rule T3',
  },
  'munmap.skip_flush': {
    where: 'src/mm/mmu_gather.ts tlb_flush_mmu_tlbonly',
    what: 'never flush TLBs for a gather (pages are freed while other CPUs still cache them)',
    source: 'spec 5.7 rule T2',
  },
  'x86.flush_skip_lazy_freed_tables': {
    where: 'src/arch/x86/tlb.ts native_flush_tlb_multi',
    what: 'skip lazy-TLB CPUs even when page tables are freed (freed_tables ignored)',
    source: 'spec 5.1 step 4',
  },
  'x86.switch_mm_no_gen_check': {
    where: 'src/arch/x86/tlb.ts switch_mm_irqs_off',
    what: 'do not compare the ASID generation on switch-in (a CPU that missed an IPI keeps stale entries)',
    source: 'spec 5.1 step 6',
  },
  'mprotect.skip_flush': {
    where: 'src/mm/mprotect.ts change_protection',
    what: 'do not flush TLBs after write-protecting PTEs',
    source: 'spec 5.7 rule T4',
  },
} as const satisfies Record<string, Omit<KnobInfo, 'name'>>;

export type KnobName = keyof typeof KNOBS;
export const KNOB_NAMES = Object.keys(KNOBS) as KnobName[];

/** The knobs in force on this thread (each thread sets them from the run's config). */
export const knobs: Record<KnobName, boolean> = Object.fromEntries(KNOB_NAMES.map((k) => [k, false])) as Record<KnobName, boolean>;

export function setKnobs(on: readonly string[]): void {
  for (const k of KNOB_NAMES) knobs[k] = false;
  for (const k of on) {
    if (!(k in KNOBS)) throw new Error(`unknown bug knob '${k}' (known: ${KNOB_NAMES.join(', ')})`);
    knobs[k as KnobName] = true;
  }
}
