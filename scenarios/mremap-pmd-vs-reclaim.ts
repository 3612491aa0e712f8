import { defineScenario, type Step } from '../src/engine/scenario.ts';

// Commit 97113eb39fa7 ("mm/mremap: hold the rmap lock in write mode when moving page
// table entries."): a whole-PMD mremap (NORMAL_PMD: the PTE table
// itself moves to the new PMD) races with reclaim of the file's pages. Reclaim
// (try_to_unmap through the file's i_mmap, no mmap_lock) resolves the OLD
// address through the old PMD and takes that PTE table's lock; the table can
// still move under it, because the mover takes only the PMD locks. The walker
// then clears the PTE, which now translates the NEW address, flushes the OLD
// address it computed, and frees the page: a sibling that walked the new
// address in between keeps a stale TLB entry to it. The mover's rmap locks
// (i_mmap for write around NORMAL_PMD/NORMAL_PUD moves) exclude the walk; knob
// mremap.normal_pmd_no_rmap_locks drops them.
//
// Both ranges are PMD-aligned and one PMD long, so every move is one NORMAL_PMD
// move (stat movedPmds). The siblings spend most accesses on a private page:
// one that touches the moving mapping while the mremap runs faults and waits for
// the mmap_lock until the mremap is over, and only a sibling that did not can
// walk the new address in the window. Run it with one host thread per CPU
// (--threads 4 where CPUs outnumber cores); run.delay widens the window between
// the walker's lock and its clear.

/** mostly a private page; sometimes the first page of either range */
const sibling: Step = { op: 'choose', weights: [10, 1, 1], steps: [
  { op: 'access', region: 'c', mode: 'rw', at: 0, count: 1 },
  { op: 'access', region: 'a', mode: 'rw', at: 0, count: 1 },
  { op: 'access', region: 'b', mode: 'rw', at: 0, count: 1 },
] };

export default defineScenario({
  name: 'mremap-pmd-vs-reclaim',
  description: 'whole-PMD mremap without the rmap locks vs reclaim (fixed by commit 97113eb39fa7): whole-PMD mremap of a shared file mapping back and forth, reclaim of its pages through the rmap on another CPU, accessors on the rest',
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 64 },
  run: { opsPerCpu: 3000, seed: 1, delay: 0.1 },
  files: [{ name: 'f', pages: 512 }],
  processes: [{
    name: 'app',
    regions: [
      { name: 'a', pages: 512, file: 'f', shared: true, align: 'pmd', populate: true },
      { name: 'b', pages: 512, align: 'pmd' }, // a placeholder the first move replaces
      { name: 'c', pages: 1 },
    ],
    threads: [
      // (the yields let a sibling's fault and its retried access complete between two moves:
      // back-to-back moves can take the table away again right after each fault)
      { name: 'mover', cpus: 0, program: [
        { op: 'mremap', region: 'a', to: 'b' }, { op: 'yield' },
        { op: 'mremap', region: 'b', to: 'a' }, { op: 'yield' },
      ] },
      { name: 'sibling', cpus: 'rest', program: [sibling] },
    ],
  }, {
    // the walker, in a process of its own as kswapd would be (so the mover's shootdowns
    // do not wait for it): reclaims the first page of the file again and again
    name: 'kswapd',
    threads: [{ name: 'reclaimer', cpus: 2, program: [{ op: 'reclaim', file: 'f', at: 0, pages: 1 }, { op: 'yield' }, { op: 'yield' }] }],
  }],
});
