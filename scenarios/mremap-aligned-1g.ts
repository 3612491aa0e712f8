import { defineScenario } from '../src/engine/scenario.ts';

// mremap_test.c's perf cases as a scenario: three processes each move a fully
// populated 1 GiB region once, PTE-aligned (every PTE moved: 262144),
// PMD-aligned (each PTE table moved whole: 512 NORMAL_PMD moves) and
// PUD-aligned (the PMD table moved whole: 1 NORMAL_PUD move), with their
// contents checked before and after. On arches without page-table moves
// (s390, sparc64, powerpc hash) all three move PTEs. Each source is aligned to
// exactly a PUD (not 2 GiB); each target to exactly its alignment.
const GiB = 262144; // pages
const proc = (name: string, align: 'page' | 'pmd' | 'pud', cpu: number) => ({
  name,
  regions: [
    { name: 'src', pages: GiB, align: 'pud' as const, populate: true },
    { name: 'dst', pages: GiB, align },
  ],
  threads: [{
    name: 'mover', cpus: cpu,
    program: [
      { op: 'access' as const, region: 'src', mode: 'write' as const, count: 512 },
      { op: 'mremap' as const, region: 'src', to: 'dst' },
      { op: 'access' as const, region: 'dst', mode: 'read' as const, count: 512 },
      { op: 'stop' as const },
    ],
  }],
});

export default defineScenario({
  name: 'mremap-aligned-1g',
  description: '1 GiB populated, moved PTE-, PMD- and PUD-aligned: 262144 PTEs, 512 PTE tables, 1 PMD table',
  machine: { cpus: 3, arch: 'x86', tlbEntries: 64, memoryMiB: 3100, tableFrames: 4096 },
  run: { opsPerCpu: 1100, seed: 1 },
  processes: [proc('pte', 'page', 0), proc('pmd', 'pmd', 1), proc('pud', 'pud', 2)],
});
