// The layout rules of the repository that a reader relies on (README "Layout"):
// lower floors never import from higher ones, every docs/ page is reachable from
// the README, and code cites kernel sources (not a document outside the repo).
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
function files(dir: string, ext = '.ts'): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...files(p, ext));
    else if (p.endsWith(ext)) out.push(p);
  }
  return out;
}
const imports = (f: string): string[] =>
  [...readFileSync(join(root, f), 'utf8').matchAll(/from '(\.[^']+)'/g)].map((m) => join(f, '..', m[1]));

// what each floor may import (besides itself)
const FLOORS: [string, string[]][] = [
  ['src/hw/', []],
  ['src/inject/', []],
  // src/oracles/s390_rule.ts is the check every s390 PTE store makes (issue #10):
  // the s390 model calls it, so it may import src/hw/ only (asserted below)
  ['src/arch/', ['src/hw/', 'src/inject/', 'src/mm/', 'src/oracles/s390_rule.ts']],
  ['src/mm/', ['src/hw/', 'src/inject/', 'src/arch/']],
  ['src/oracles/', ['src/hw/', 'src/mm/', 'src/arch/', 'src/inject/']],
];

describe('repository layout', () => {
  it('no floor imports from a floor above it', () => {
    const bad: string[] = [];
    for (const [floor, allowed] of FLOORS) {
      for (const f of files(floor)) {
        for (const target of imports(f)) {
          if (target.startsWith(floor) || allowed.some((a) => target.startsWith(a))) continue;
          bad.push(`${f} imports ${target}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('the s390 rule oracle, called from src/arch/s390, imports from src/hw/ only', () => {
    const f = 'src/oracles/s390_rule.ts';
    expect(imports(f).filter((t) => !t.startsWith('src/hw/'))).toEqual([]);
  });

  it('every docs/ page is linked from the README', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const pages = files('docs', '.md').filter((p) => !p.startsWith('docs/findings/'));
    expect(pages.length).toBeGreaterThan(5);
    expect(pages.filter((p) => !readme.includes(`](${p})`))).toEqual([]);
  });

  it('code cites kernel sources, not section numbers of a document outside the repository', () => {
    const cited = ['src', 'test', 'scenarios', 'bench', 'workers'].flatMap((d) => files(d))
      .filter((f) => /\bspec (section )?\d+\.\d+/.test(readFileSync(join(root, f), 'utf8')));
    expect(cited).toEqual([]);
  });
});
