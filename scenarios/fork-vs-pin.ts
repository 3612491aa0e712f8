import { defineScenario } from '../src/sim/scenario.ts';

// GUP-fast vs fork (spec 4.8, 6.11, commit 57efa1fe5957): threads pin pages of
// a buffer for DMA (pin_user_pages_fast, FOLL_PIN | FOLL_WRITE), write through
// the pins as a device would, and read and write the buffer themselves, while
// one thread forks. fork copies a possibly-pinned anon page for the child at
// once (the parent keeps the pinned page, writable); a pin racing with fork
// sees write_protect_seq odd or changed and retries on the slow path, which
// waits for fork's mmap_lock. With knob gup.fast_no_seqcount a pin can land
// between fork's "maybe pinned?" test and its write-protection of the entry:
// the pinned page becomes the child's too, DMA writes after fork reach the
// child (the COW oracle) and, once the parent's next write copies the page,
// no longer reach the parent (the content oracle: lost write).
export default defineScenario({
  name: 'fork-vs-pin',
  description: 'pin_user_pages_fast and DMA writes through the pins while another thread forks (write_protect_seq, eager copy)',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 32 },
  run: { opsPerCpu: 2000, seed: 1 },
  processes: [{
    name: 'app',
    regions: [{ name: 'buf', pages: 8, populate: true }],
    threads: [
      {
        name: 'dma', cpus: 'rest',
        program: [
          { op: 'pin', region: 'buf', access: 'write', hold: 3, save: 'p' },
          { op: 'access', region: 'buf', at: 'p', mode: 'rw', count: 2 },
          { op: 'access', region: 'buf', mode: 'rw', count: 2 },
        ],
      },
      {
        name: 'forker', cpus: 0,
        program: [
          { op: 'access', region: 'buf', mode: 'write', count: 2 },
          { op: 'fork', childOps: 4, child: [{ op: 'access', region: 'buf', mode: 'read', count: 8 }] },
        ],
      },
    ],
  }],
});
