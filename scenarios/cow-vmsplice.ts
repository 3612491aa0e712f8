import { defineScenario } from '../src/engine/scenario.ts';

// CVE-2020-29374, "COW can break the wrong way" (fixed by commits
// 17839856fd58 and 09854ba94c6a): after fork, the
// child takes a GUP reference to a page it shares with the parent (vmsplice
// into a pipe: FOLL_GET, read-only), unmaps the page, and keeps reading it
// through the reference (the pipe). The parent's writers then write that page:
// the page is mapped once (mapcount 1) but referenced twice. The fixed rule
// (reuse only if anon-exclusive or the refcount is 1) copies it; with knob
// cow.reuse_by_mapcount the parent reuses it in place, and the child reads the
// parent's post-fork data through its reference (the COW oracle).
export default defineScenario({
  name: 'cow-vmsplice',
  description: 'CVE-2020-29374: a child keeps a GUP reference (vmsplice) to a page it unmapped while the parent writes it',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 32 },
  run: { opsPerCpu: 2000, seed: 1 },
  processes: [{
    name: 'parent',
    regions: [{ name: 'buf', pages: 16, populate: true }],
    threads: [
      { name: 'writer', cpus: 'rest', program: [{ op: 'access', region: 'buf', mode: 'write', count: 1 }] },
      {
        name: 'forker', cpus: 0,
        program: [
          { op: 'access', region: 'buf', mode: 'write', count: 2 },
          {
            op: 'fork', childOps: 10, child: [
              { op: 'pin', region: 'buf', access: 'read', hold: 8, save: 'spliced' },
              { op: 'madvise', region: 'buf', at: 'spliced', pages: 1 },
              { op: 'repeat', times: 8, steps: [{ op: 'yield' }] },
            ],
          },
        ],
      },
    ],
  }],
});
