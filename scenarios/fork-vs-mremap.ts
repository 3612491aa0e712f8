import { defineScenario } from '../src/engine/scenario.ts';

// fork and mremap contend for the mmap_lock (issue #6): a mover thread moves a
// populated region back and forth (move_ptes moves entries that fork may just
// have write-protected, pages shared with children), a forker thread forks
// (children read and write whichever copy of the region they got), siblings
// access both ranges. Each fork sees the region at one place or the other,
// never half-moved: both take the lock for write.
export default defineScenario({
  name: 'fork-vs-mremap',
  description: 'fork and mremap of a populated region contend for the mmap_lock while siblings access both ranges',
  machine: { cpus: 8, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'a', pages: 32, populate: true }, { name: 'b', pages: 32 }],
    threads: [
      {
        name: 'accessor', cpus: 'rest',
        program: [{ op: 'choose', weights: [1, 1], steps: [
          { op: 'access', region: 'a', mode: 'rw', count: 4 },
          { op: 'access', region: 'b', mode: 'rw', count: 4 },
        ] }],
      },
      {
        name: 'mover', cpus: 0,
        program: [
          { op: 'access', region: 'a', mode: 'write', count: 8 },
          { op: 'mremap', region: 'a', to: 'b' },
          { op: 'access', region: 'b', mode: 'rw', count: 8 },
          { op: 'mremap', region: 'b', to: 'a' },
        ],
      },
      {
        name: 'forker', cpus: 1,
        program: [
          { op: 'choose', weights: [1, 1], steps: [
            { op: 'access', region: 'a', mode: 'write', count: 4 },
            { op: 'access', region: 'b', mode: 'write', count: 4 },
          ] },
          {
            op: 'fork', childOps: 8, child: [{ op: 'choose', weights: [1, 1], steps: [
              { op: 'access', region: 'a', mode: 'rw', count: 4 },
              { op: 'access', region: 'b', mode: 'rw', count: 4 },
            ] }],
          },
        ],
      },
    ],
  }],
});
