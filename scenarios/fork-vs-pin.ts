import { defineScenario } from '../src/engine/scenario.ts';

// GUP-fast vs fork (commit 57efa1fe5957 "mm/gup: prevent gup_fast from racing with COW
// during fork"): a thread pins a DMA
// buffer (pin_user_pages_fast, FOLL_PIN | FOLL_WRITE), holds the pin for a few
// operations while a device writes through it and the program reads each result
// back, releases it, and pins again; a sibling writes the buffer; another
// thread forks. fork copies a possibly-pinned anon page for the child at once
// (the parent keeps the pinned page, writable); a pin racing with fork sees
// write_protect_seq odd or changed and retries on the slow path, which waits
// for fork's mmap_lock. With knob gup.fast_no_seqcount a pin can land between
// fork's "maybe pinned?" test and its write-protection of the entry: the pinned
// page becomes the child's too, so DMA writes after fork reach the child (the
// COW oracle) and, once the sibling's next write copies the page for the
// parent, the program no longer reads them back (the content oracle). The race
// is a few instructions wide: delays at scheduling points (run.delay) widen it.
export default defineScenario({
  name: 'fork-vs-pin',
  description: 'pin_user_pages_fast and DMA writes through the pin while a sibling writes and another thread forks (write_protect_seq, eager copy)',
  machine: { cpus: 3, arch: 'x86', tlbEntries: 64, memoryMiB: 32 },
  run: { opsPerCpu: 4000, seed: 1, delay: 0.3, delaySpins: 10000 },
  processes: [{
    name: 'app',
    regions: [{ name: 'dmabuf', pages: 1, populate: true }],
    threads: [
      { name: 'forker', cpus: 0, program: [{ op: 'fork', childOps: 1, child: [{ op: 'access', region: 'dmabuf', mode: 'read', count: 8 }] }] },
      { name: 'writer', cpus: 1, program: [{ op: 'access', region: 'dmabuf', mode: 'rw', count: 2 }] },
      {
        name: 'dma', cpus: 2,
        program: [
          { op: 'pin', region: 'dmabuf', access: 'write', hold: 3 },
          { op: 'repeat', times: 4, steps: [{ op: 'yield' }] },
        ],
      },
    ],
  }],
});
