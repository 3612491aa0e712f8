// Page-table entry encoding: one Int32 word per entry so that every update is a
// single Atomics operation. Bits 0..9 are flags, bits 10..31 the pfn (4M frames).
// The same encoding serves PGD, PUD, PMD and PTE entries; _PAGE_PSE marks a leaf
// (huge mapping) at PUD or PMD level.

export const _PAGE_PRESENT = 1 << 0;
export const _PAGE_RW = 1 << 1;
export const _PAGE_USER = 1 << 2;
export const _PAGE_ACCESSED = 1 << 5; // young
export const _PAGE_DIRTY = 1 << 6;
export const _PAGE_PSE = 1 << 7; // leaf at PMD/PUD level
export const _PAGE_SPECIAL = 1 << 8;
export const _PAGE_SOFT_DIRTY = 1 << 9;
export const PFN_SHIFT = 10;
export const MAX_PFN = (1 << (32 - PFN_SHIFT)) - 1;
const FLAG_MASK = (1 << PFN_SHIFT) - 1;

export const pte_none = (e: number): boolean => e === 0;
export const pte_present = (e: number): boolean => (e & _PAGE_PRESENT) !== 0;
export const pte_write = (e: number): boolean => (e & _PAGE_RW) !== 0;
export const pte_young = (e: number): boolean => (e & _PAGE_ACCESSED) !== 0;
export const pte_dirty = (e: number): boolean => (e & _PAGE_DIRTY) !== 0;
export const pte_huge = (e: number): boolean => (e & _PAGE_PSE) !== 0;
export const pte_pfn = (e: number): number => e >>> PFN_SHIFT;
export const pte_flags = (e: number): number => e & FLAG_MASK;
export const pfn_pte = (pfn: number, flags: number): number => ((pfn << PFN_SHIFT) | (flags & FLAG_MASK)) | 0;
export const pte_wrprotect = (e: number): number => e & ~_PAGE_RW;
export const pte_mkwrite = (e: number): number => e | _PAGE_RW;
export const pte_mkclean = (e: number): number => e & ~_PAGE_DIRTY;
export const pte_mkold = (e: number): number => e & ~_PAGE_ACCESSED;
/** An upper-level entry pointing at a table page. */
export const mk_table_entry = (pfn: number): number => pfn_pte(pfn, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED);

export function describePte(e: number): string {
  if (e === 0) return 'none';
  const f: string[] = [];
  if (e & _PAGE_PRESENT) f.push('P');
  if (e & _PAGE_RW) f.push('W');
  if (e & _PAGE_USER) f.push('U');
  if (e & _PAGE_ACCESSED) f.push('A');
  if (e & _PAGE_DIRTY) f.push('D');
  if (e & _PAGE_PSE) f.push('PSE');
  return `pfn ${pte_pfn(e)} [${f.join('')}]`;
}
