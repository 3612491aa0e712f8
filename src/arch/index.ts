import type { Arch } from './arch.ts';
import { x86 } from './x86/index.ts';
import { x86xenpv } from './x86-xenpv/index.ts';
import { arm64 } from './arm64/index.ts';
import { powerpchash } from './powerpc-hash/index.ts';
import { sparc64 } from './sparc64/index.ts';
import { s390 } from './s390/index.ts';

export const ARCHES: Record<string, Arch> = {
  x86, 'x86-xenpv': x86xenpv, arm64, 'powerpc-hash': powerpchash, sparc64, s390,
};
export const ARCH_NAMES = Object.keys(ARCHES);

export function getArch(name: string): Arch {
  const a = ARCHES[name];
  if (!a) throw new Error(`unknown arch '${name}' (known: ${ARCH_NAMES.join(', ')})`);
  return a;
}
