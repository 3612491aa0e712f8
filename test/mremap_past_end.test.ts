// mremap calls whose old_len reaches past the end of the VMA, against the
// answers Linux 6.18 gave on a real machine (test/fixtures/mremap-past-vma-end:
// probe.c and its output, recorded once, not computed here). A call that maps
// no new space (shrink, or the same size, without FIXED/DONTUNMAP) skips
// remap_is_valid and succeeds (mm/mremap.c check_prep_vma / vrm_will_map_new).
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { testMachine } from './helpers.ts';
import { do_mmap, do_munmap, MAP_ANONYMOUS, MAP_PRIVATE, MAP_FIXED, PROT_READ, PROT_WRITE } from '../src/mm/mmap.ts';
import { EFAULT, EINVAL, ENOMEM } from '../src/mm/errno.ts';
import { do_mremap } from '../src/mm/mremap.ts';
import { vma_list } from '../src/mm/vma.ts';
import { audit } from '../src/oracles/audit.ts';

const P = 4096;
const fixture = readFileSync(new URL('./fixtures/mremap-past-vma-end/linux-6.18.txt', import.meta.url), 'utf8')
  .trim().split('\n').map((l) => l.split(' '));
const errname: Record<number, string> = { [EFAULT]: 'EFAULT', [EINVAL]: 'EINVAL', [ENOMEM]: 'ENOMEM' };

describe('mremap past the end of the VMA, as Linux 6.18 answers', () => {
  it(`gives the kernel's result in all ${fixture.length} recorded cases`, () => {
    const got: string[] = [];
    for (const [oldp, newp, flags] of fixture) {
      const m = testMachine({ cpus: 1 });
      const { mm } = m.process([0]);
      const k = <T>(fn: () => T): T => m.on(0, fn);
      const a = 0x1000_0000;
      k(() => do_mmap(mm, a, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)); // 4 pages, then a gap
      const r = k(() => do_mremap(mm, a, +oldp * P, +newp * P, +flags, a + 8 * P));
      got.push(`${oldp} ${newp} ${flags} ${r < 0 ? errname[-r] ?? String(r) : r === a ? 'addr' : 'moved'}`);
      expect(audit(m.V).ok).toBe(true);
    }
    expect(got).toEqual(fixture.map((f) => f.join(' ')));
  });

  it('a shrink past the end unmaps only the tail of the VMA; a same-size call leaves it alone', () => {
    const m = testMachine({ cpus: 1 });
    const { mm } = m.process([0]);
    const k = <T>(fn: () => T): T => m.on(0, fn);
    const a = 0x1000_0000;
    k(() => do_mmap(mm, a, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED));
    k(() => do_mmap(mm, a + 8 * P, 2 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)); // beyond the gap
    expect(k(() => do_mremap(mm, a, 6 * P, 6 * P, 0))).toBe(a);
    expect(vma_list(m.V, mm).map((v) => [v.start - a, v.end - a])).toEqual([[0, 4 * P], [8 * P, 10 * P]]);
    // shrink [a, a+10P) to 2 pages: unmaps [a+2P, a+10P), the far VMA too
    expect(k(() => do_mremap(mm, a, 10 * P, 2 * P, 0))).toBe(a);
    expect(vma_list(m.V, mm).map((v) => [v.start - a, v.end - a])).toEqual([[0, 2 * P]]);
    k(() => do_munmap(mm, a, 2 * P));
  });
});
