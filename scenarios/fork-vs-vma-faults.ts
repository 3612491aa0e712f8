import { defineScenario } from '../src/engine/scenario.ts';

// fork against per-VMA-lock faults (issue #11, commit fb49c455323f): one
// thread forks over and over while its siblings write a small heap through a
// small TLB, so their write faults keep meeting pages fork has just
// write-protected. With every parent VMA write-locked by dup_mmap those faults
// fall back to the mmap_lock and wait for fork (and its flush) to finish;
// without (knob fork.no_vma_write_lock) a sibling COW-copies a page while
// another still writes it through a writable TLB entry fork has not flushed
// yet, and that write is lost to the parent: the content oracle sees the
// writer read back an older value. The children exit at once.
export default defineScenario({
  name: 'fork-vs-vma-faults',
  description: 'one thread forks repeatedly while two siblings write a small heap through a small TLB: their per-VMA-lock write faults meet fork\'s write-protection',
  machine: { cpus: 3, arch: 'x86', tlbEntries: 4, memoryMiB: 16 },
  run: { opsPerCpu: 1500, seed: 1 },
  processes: [{
    name: 'parent',
    regions: [{ name: 'heap', pages: 2, populate: true }],
    threads: [
      { name: 'writer', cpus: 'rest', program: [{ op: 'access', region: 'heap', mode: 'rw', count: 1 }] },
      { name: 'forker', cpus: 0, program: [{ op: 'fork', childOps: 1, child: [{ op: 'exit' }] }] },
    ],
  }],
});
