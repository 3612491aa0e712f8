// /proc/PID/maps lines (fs/proc/task_mmu.c show_map_vma), for `mmsim strace --maps`:
// `start-end perms offset major:minor inode`, then, for a named mapping, spaces up
// to column 73 and the name. Anonymous VMAs print offset 0 (the kernel prints the
// file offset only for file mappings), device 00:00 and inode 0.

import { PAGE_SIZE } from '../../hw/layout.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE } from '../../mm/vm_flags.ts';

export interface MapsVma {
  start: number;
  end: number;
  pgoff: number;
  flags: number;
  /** -1: anonymous */
  file: number;
}

export interface MapsName {
  /** the path, or a bracketed name ([heap]) */
  name: string;
  dev?: string;
  inode?: number;
}

const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');

/** One line; `name` undefined for an anonymous VMA without a name. */
export function show_map_vma(v: MapsVma, name?: MapsName): string {
  const perms = (v.flags & VM_READ ? 'r' : '-') + (v.flags & VM_WRITE ? 'w' : '-') + (v.flags & VM_EXEC ? 'x' : '-') +
    (v.flags & VM_MAYSHARE ? 's' : 'p');
  const off = v.file >= 0 ? v.pgoff * PAGE_SIZE : 0;
  const head = `${hex(v.start, 8)}-${hex(v.end, 8)} ${perms} ${hex(off, 8)} ${name?.dev ?? '00:00'} ${name?.inode ?? 0} `;
  if (!name || name.name === '') return head;
  return head.padEnd(72, ' ') + ' ' + name.name;
}

/** A stable fake inode number for a path (FNV-1a, 32 bits): the same path always gets the same one. */
export function fake_inode(path: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) {
    h ^= path.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
