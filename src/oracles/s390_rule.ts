// The s390 rule oracle. arch/s390/include/asm/tlb.h quotes the Principles of
// Operation at its top: "A valid table entry must not be changed while it is
// attached to any CPU and may be used for translation by that CPU except to (1)
// invalidate the entry by using INVALIDATE PAGE TABLE ENTRY, or INVALIDATE DAT
// TABLE ENTRY, (2) alter bits 56-63 of a page table entry, or (3) make a change
// by means of a COMPARE AND SWAP AND PURGE instruction that purges the TLB."
//
// Every store the s390 model makes into a PTE outside IPTE goes through
// s390_pte_store() below, which exchanges the word and judges the change:
//  - the old entry was invalid (our encoding: _PAGE_PRESENT clear): allowed;
//  - only software bits changed (bits 56-63 on s390: young, dirty, soft-dirty,
//    special; our _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_SOFT_DIRTY, _PAGE_SPECIAL): allowed;
//  - the mm is attached to no CPU that exists (cpu_attach_mask, online CPUs): allowed;
//  - the two exceptions the kernel takes knowingly, each named at its call:
//    'lazy-invalidate' (ptep_flush_lazy, arch/s390/mm/pgtable.c: with
//    cpu_attach_mask == this CPU only it sets the invalid bit by a plain store and
//    leaves the purge to flush_mm; a CPU that joined the mask since, but is still
//    waiting for flush_count before it loads the ASCE, cannot translate yet) and 'fullmm' (ptep_get_and_clear_full with
//    full set, arch/s390/include/asm/pgtable.h: exit_mmap, no user left);
//  - anything else is a violation 's390-valid-entry-changed' naming the
//    primitive and the kernel code (the call stack) that did it.
// The check runs on every s390 store, always on: it costs one compare unless the
// old entry was valid and something other than software bits changed.

import type { Cpu } from '../hw/cpu.ts';
import { cpuCtl, mmWord, CC_ONLINE, CC_LOADED_MM, CPUMASK_WORDS, MM_S390_ATTACH_MASK } from '../hw/layout.ts';
import { _PAGE_PRESENT, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_SOFT_DIRTY, _PAGE_SPECIAL } from '../hw/pte.ts';

/** Bits a store may change in a valid attached entry (s390 PTE bits 56-63: software bits). */
export const S390_SOFTWARE_BITS = _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SOFT_DIRTY | _PAGE_SPECIAL;

/** How the store is made: by the kernel's plain set_pte, or under one of its two stated exceptions. */
export type S390StoreKind = 'plain' | 'lazy-invalidate' | 'fullmm';

export const S390_RULE_KIND = 's390-valid-entry-changed';

/** The online CPUs in mm->context.cpu_attach_mask other than `self`, as a list (empty: none). */
export function attached_elsewhere(cpu: Cpu, mm: number, self: number): number[] {
  const I = cpu.I;
  const L = cpu.V.L;
  const base = mmWord(L, mm, MM_S390_ATTACH_MASK);
  const out: number[] = [];
  for (let w = 0; w < CPUMASK_WORDS; w++) {
    let bits = Atomics.load(I, base + w);
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits);
      bits &= ~(1 << b);
      const c = w * 32 + b;
      if (c !== self && Atomics.load(I, cpuCtl(L, c, CC_ONLINE)) !== 0) out.push(c);
    }
  }
  return out;
}

/** Has CPU c loaded mm's ASCE (CR7) and so may translate through it (src/arch/s390/index.ts switch_mm_irqs_off)? */
function translating(cpu: Cpu, c: number, mm: number): boolean {
  return Atomics.load(cpu.I, cpuCtl(cpu.V.L, c, CC_LOADED_MM)) === mm;
}

/** Is the mm attached to this CPU? */
function attached_here(cpu: Cpu, mm: number): boolean {
  const w = Atomics.load(cpu.I, mmWord(cpu.V.L, mm, MM_S390_ATTACH_MASK) + (cpu.id >> 5));
  return (w & (1 << (cpu.id & 31))) !== 0;
}

/** The kernel functions on the stack (TypeScript frames named as the kernel's), innermost first. */
function kernel_callers(): string {
  const stack = new Error().stack ?? '';
  const names: string[] = [];
  for (const line of stack.split('\n').slice(1)) {
    const m = /at (?:Object\.)?([A-Za-z_$][\w$.]*) \(.*?src\/(\w+\/[\w/.-]+):(\d+)/.exec(line);
    if (!m) continue;
    if (m[2].startsWith('oracles/')) continue;
    names.push(`${m[1]} (${m[2]}:${m[3]})`);
    if (names.length >= 6) break;
  }
  return names.join(' <- ');
}

/**
 * Store `val` into the PTE at ptep of mm by a plain store (exchange) and judge
 * the change against the rule. `prim` names the s390 primitive making the store
 * (set_ptes, ptep_xchg_commit, ...). Returns the previous value.
 */
export function s390_pte_store(cpu: Cpu, mm: number, ptep: number, val: number, prim: string, how: S390StoreKind = 'plain'): number {
  const prev = Atomics.exchange(cpu.I, ptep, val);
  if ((prev & _PAGE_PRESENT) === 0) return prev;
  if (((prev ^ val) & ~S390_SOFTWARE_BITS) === 0) return prev;
  if (how === 'fullmm') return prev;
  const others = attached_elsewhere(cpu, mm, cpu.id);
  const here = attached_here(cpu, mm);
  if (others.length === 0 && !here) return prev;
  // ptep_flush_lazy: only the invalid bit set, the mm attached to this CPU only. A CPU that joined
  // cpu_attach_mask after ptep_flush_lazy looked at it (switch_mm_irqs_off sets the bit and loads
  // the invalid ASCE into CR7) cannot translate through the mm yet: finish_arch_post_lock_switch
  // waits for mm->context.flush_count, which ptep_flush_lazy holds raised, then runs
  // __tlb_flush_mm_lazy (flush_mm is set by then) and only then loads the user ASCE. Such a CPU
  // is not "attached and may be used for translation" in the rule's sense. Seen: a false
  // report on switch-mm-munmap --arch s390 --lazy-series none, seed 1000 (the rule's first
  // 10,000-seed campaign).
  if (how === 'lazy-invalidate' && val === (prev & ~_PAGE_PRESENT) && others.every((c) => !translating(cpu, c, mm))) return prev;
  const who = [...(here ? [cpu.id] : []), ...others];
  cpu.host.hooks.violation({
    kind: S390_RULE_KIND, cpu: cpu.id,
    message: `cpu ${cpu.id}: ${prim} changed a valid PTE of mm ${mm} attached to cpu ${who.join(',')} without IPTE/IDTE/CSP ` +
      `(0x${(prev >>> 0).toString(16)} -> 0x${(val >>> 0).toString(16)}; arch/s390/include/asm/tlb.h, the Principles of Operation rule); by ${kernel_callers()}`,
  });
  return prev;
}
