import type { Arch } from './arch.ts';
import { x86 } from './x86/tlb.ts';

export const ARCHES: Record<string, Arch> = { x86 };
export const ARCH_NAMES = Object.keys(ARCHES);

export function getArch(name: string): Arch {
  const a = ARCHES[name];
  if (!a) throw new Error(`unknown arch '${name}' (known: ${ARCH_NAMES.join(', ')})`);
  return a;
}
