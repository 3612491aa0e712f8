import { defineScenario } from '../src/engine/scenario.ts';

// fork under contention (issue #6): one thread forks over and over while its
// siblings write the heap on every other CPU. copy_pte_range write-protects
// entries those CPUs may still cache as writable; the parent's TLB flush at the
// end of dup_mmap (before the mmap_lock is released) is what keeps their later
// writes out of the pages the child now shares. Each child (on the forking
// CPU) reads and writes its copy, sometimes forks a grandchild, and exits.
// The COW oracle checks every read of private memory: no child sees a write
// its parent made after fork returned, no parent sees a child's. The shared
// region is MAP_SHARED: parent and children see each other there, by design.
export default defineScenario({
  name: 'fork-vs-writers',
  description: 'one thread forks repeatedly while its siblings write on every other CPU; children read and write their copies and exit',
  machine: { cpus: 8, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 2000, seed: 1 },
  processes: [{
    name: 'parent',
    regions: [
      { name: 'heap', pages: 48, populate: true },
      { name: 'shm', pages: 4, shared: true },
    ],
    threads: [
      {
        name: 'writer', cpus: 'rest',
        program: [{ op: 'choose', weights: [6, 1], steps: [
          { op: 'access', region: 'heap', mode: 'rw', count: 4 },
          { op: 'access', region: 'shm', mode: 'rw', count: 2 },
        ] }],
      },
      {
        name: 'forker', cpus: 0,
        program: [
          { op: 'access', region: 'heap', mode: 'write', count: 8 },
          {
            op: 'fork', childOps: 10, child: [
              { op: 'access', region: 'heap', mode: 'rw', count: 4 },
              { op: 'choose', weights: [12, 1, 1, 2], steps: [
                { op: 'access', region: 'heap', mode: 'read', count: 4 },
                { op: 'access', region: 'shm', mode: 'rw', count: 2 },
                { op: 'fork', childOps: 4, child: [{ op: 'access', region: 'heap', mode: 'rw', count: 2 }] },
                { op: 'exit' },
              ] },
            ],
          },
        ],
      },
    ],
  }],
});
