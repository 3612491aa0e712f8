// arm64: placeholder until its backend lands (behaves as x86 native).
import type { Arch } from '../arch.ts';
import { x86 } from '../x86/tlb.ts';

export const arm64: Arch = { ...x86, name: 'arm64' };
