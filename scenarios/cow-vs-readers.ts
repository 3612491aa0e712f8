import { defineScenario } from '../src/engine/scenario.ts';

// The COW fault's ordering (mm/memory.c wp_page_copy(): clear and flush, install, then
// drop the old rmap): a thread keeps writing a small
// buffer, so every fork is followed by COW faults in the parent, while sibling
// threads read the buffer on other CPUs (their TLBs hold read-only entries for
// the pages being copied) and each child writes its copy at once. wp_page_copy
// clears the old entry and flushes it from every TLB before installing the new
// page, and drops the old page's mapcount and reference only after the switch.
// With knob cow.install_before_flush the old page's last parent reference goes
// before the flush: the child may then reuse that page in place (refcount 1)
// while a sibling still reads it through its stale entry (the COW oracle: the
// parent sees the child's write), or, if the child is gone, the page is freed
// under the stale entry (use after free). The three parties must really run at
// once: give each CPU its own thread (--threads 4); delays widen the window.
export default defineScenario({
  name: 'cow-vs-readers',
  description: "COW faults in the parent while siblings read through read-only TLB entries and each child writes its copy",
  machine: { cpus: 4, arch: 'x86', tlbEntries: 64, memoryMiB: 32 },
  run: { opsPerCpu: 3000, seed: 1, delay: 0.3 },
  processes: [{
    name: 'parent',
    regions: [{ name: 'buf', pages: 2, populate: true }],
    threads: [
      { name: 'forker', cpus: 0, program: [{ op: 'fork', childOps: 3, child: [{ op: 'access', region: 'buf', mode: 'write', count: 2 }] }] },
      { name: 'reader', cpus: [1, 3], program: [{ op: 'access', region: 'buf', mode: 'read', count: 4 }] },
      { name: 'writer', cpus: 2, program: [{ op: 'access', region: 'buf', mode: 'write', count: 1 }] },
    ],
  }],
});
