// mm/rmap.c (first part): the rmap locks. A file's i_mmap_rwsem guards the
// file's tree of mappings (rmap walkers such as truncation and reclaim take it
// for read); an anon_vma's rwsem guards the VMAs that share its anonymous
// pages. mremap takes both for write around moves that could hide a PTE from a
// walker (need_rmap_locks, spec 3.6) and always around whole-table moves
// (NORMAL_PMD / NORMAL_PUD, spec 3.10, 6.3).

import { current } from '../hw/cpu.ts';
import { down_read, up_read, down_write, up_write } from '../hw/locks.ts';
import { fileWord, anonVmaLock, FILE_I_MMAP } from '../hw/layout.ts';
import type { Vma } from './vma.ts';

export function i_mmap_lock_write(file: number): void {
  down_write(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_unlock_write(file: number): void {
  up_write(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_lock_read(file: number): void {
  down_read(fileWord(current.V.L, file, FILE_I_MMAP));
}
export function i_mmap_unlock_read(file: number): void {
  up_read(fileWord(current.V.L, file, FILE_I_MMAP));
}

export function anon_vma_lock_write(anon: number): void {
  down_write(anonVmaLock(current.V.L, anon));
}
export function anon_vma_unlock_write(anon: number): void {
  up_write(anonVmaLock(current.V.L, anon));
}
export function anon_vma_lock_read(anon: number): void {
  down_read(anonVmaLock(current.V.L, anon));
}
export function anon_vma_unlock_read(anon: number): void {
  up_read(anonVmaLock(current.V.L, anon));
}

/** take_rmap_locks (mm/mremap.c): the file's i_mmap_rwsem, then the anon_vma's, both for write. */
export function take_rmap_locks(vma: Vma): void {
  if (vma.file >= 0) i_mmap_lock_write(vma.file);
  if (vma.anon >= 0) anon_vma_lock_write(vma.anon);
}

/** drop_rmap_locks: in the reverse order. */
export function drop_rmap_locks(vma: Vma): void {
  if (vma.anon >= 0) anon_vma_unlock_write(vma.anon);
  if (vma.file >= 0) i_mmap_unlock_write(vma.file);
}
