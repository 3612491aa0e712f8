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

/** Protection bits a VMA's VM_READ/VM_WRITE give a new user PTE. */
export function vm_get_page_prot(vmFlags: number): number {
  if ((vmFlags & (VM_READ | VM_WRITE | VM_EXEC)) === 0) return 0; // PROT_NONE: not present
  let f = _PAGE_PRESENT | _PAGE_USER;
  if (vmFlags & VM_WRITE && vmFlags & VM_SHARED) f |= _PAGE_RW; // private writable: RW set at fault
  return f;
}

// VMA flags (a subset of the kernel's, same meaning)
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_GROWSDOWN = 0x100;
export const VM_UFFD_MISSING = 0x200; // userfaultfd armed (missing-page mode)
export const VM_LOCKED = 0x2000;
export const VM_DONTEXPAND = 0x40000;
export const VM_ACCOUNT = 0x100000;
export const VM_HUGEPAGE = 0x20000000;
/** mseal(2)ed: the kernel keeps this in a high bit; here one our 32-bit flag words leave free */
export const VM_SEALED = 0x10000000;

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
