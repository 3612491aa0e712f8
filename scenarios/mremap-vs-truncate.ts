import { defineScenario } from '../src/engine/scenario.ts';

// CVE-2018-18281 (Jann Horn; mremap flushed after dropping the PTLs, fixed by commit
// eb66ae030829 "mremap: properly flush TLB before releasing the page"): mremap of a shared file mapping races
// with truncation of the file from another process. Truncation takes no
// mmap_lock of the mover's mm: it finds the new VMA through the file's i_mmap,
// takes the new PTE table's lock, clears the moved PTE, flushes the NEW address
// and frees the page. If the mover flushes the old range only after dropping
// the PTLs (knob mremap.flush_after_unlock), a sibling thread that cached the
// OLD address still reaches the freed page: the use-after-free oracle fires.
//
// Layout (top-down from 0x7ffff7fff000, in region order): 'a' starts 21 pages
// below a PMD boundary, and 'b' at the same offset two PMDs lower, so a move
// takes two move_ptes extents (21 pages, then 491) through four distinct PTE
// tables: while the mover works on the second extent, the tables of the first
// are free for a walker. The siblings and the hole punches work on the first
// page; the truncations (of the last pages) must wait for the mover to leave the
// second extent's tables, so it is the punch that frees a moved page in time.
//
// Run it with one host thread per CPU (the default where CPUs <= cores, else
// --threads 4): a CPU hosted with the mover cannot acknowledge the punch's
// shootdown until the mover's operation ends, which closes the window. The
// random delays (run.delay) widen it.
export default defineScenario({
  name: 'mremap-vs-truncate',
  description: 'CVE-2018-18281 (mremap flushes after dropping the PTLs): mremap moves a shared file mapping back and forth, siblings access both ranges, another process truncates, punches and re-extends the file',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 1000, seed: 1, delay: 0.1 },
  files: [{ name: 'f', pages: 512 }],
  processes: [
    {
      name: 'app',
      regions: [
        { name: 'pad1', pages: 20, prot: 'none' },
        { name: 'a', pages: 512, file: 'f', shared: true, populate: true },
        { name: 'pad2', pages: 512, prot: 'none' },
        // a placeholder the first move replaces (a second mapping of the file here would alias 'a'
        // for the content oracle)
        { name: 'b', pages: 512 },
      ],
      threads: [
        {
          // T0: moves the mapping a -> b -> a (the new VMA is linked into i_mmap before the PTEs move)
          name: 'mover', cpus: 0,
          program: [
            { op: 'access', region: 'a', mode: 'write', at: 0, count: 4 },
            { op: 'mremap', region: 'a', to: 'b' },
            { op: 'access', region: 'b', mode: 'write', at: 0, count: 4 },
            { op: 'mremap', region: 'b', to: 'a' },
          ],
        },
        {
          // T1: siblings, each keeping one range's first page in its TLB (a CPU that faults
          // blocks on the mover's mmap_lock; one that hits its TLB keeps running)
          name: 'accessor-a', cpus: 1,
          program: [{ op: 'access', region: 'a', mode: 'rw', at: 0, count: 1 }],
        },
        {
          name: 'accessor-b', cpus: 3,
          program: [{ op: 'access', region: 'b', mode: 'rw', at: 0, count: 1 }],
        },
      ],
    },
    {
      // T2: another process (no mapping of its own) punches holes in the first pages,
      // and truncates the file and extends it again
      name: 'truncator',
      threads: [{
        name: 'truncate', cpus: 2,
        program: [
          { op: 'choose', weights: [4, 1], steps: [
            { op: 'punch', file: 'f', at: 0, pages: 1 },
            { op: 'repeat', times: 1, steps: [
              { op: 'truncate', file: 'f', pages: [504, 511] },
              { op: 'truncate', file: 'f', pages: 512 },
            ] },
          ] },
          { op: 'repeat', times: 8, steps: [{ op: 'yield' }] },
        ],
      }],
    },
  ],
});
