// The bug catalogue: every race mmsim can hunt (a knob in a scenario, found by
// an oracle) and the historical ones it cannot express yet, as data. `mmsim
// bugs list` prints it, `mmsim bugs run ID` runs an entry with the default
// hunting strategy (src/tools/stress/strategy.ts), bench/hunt.ts measures every
// entry, test/catalogue*.test.ts hold each caught entry to its seed budget.
//
// To add an entry: append an object to CATALOGUE. `id` is the CVE or the fix
// commit's first 12 hex digits (aliases: the other one); a bug with neither (a
// constructed knob) has the id `knob:<name>`. An entry with status 'caught'
// names a scenario and a knob and a seed budget its tests hold it to; every
// other status says why in `why`. Sources: the spec section, or where the id
// was checked (`verified`).

export type BugStatus =
  /** the default strategy catches the knob in its scenario within `budget` seeds, and the scenario is clean without it */
  | 'caught'
  /** the kernel model lacks the path (named in `why`) */
  | 'not-expressible'
  /** expressible once a named model feature lands (`why`) */
  | 'pending'
  /** a test of the simulator itself, not a kernel bug */
  | 'tooling';

export interface BugEntry {
  /** CVE-YYYY-NNNNN, a 12-digit fix commit id, or knob:<name> for constructed bugs */
  id: string;
  /** other names that `mmsim bugs run` accepts (the fix commit of a CVE, the knob) */
  aliases: string[];
  title: string;
  /** kernel versions affected (as far as known; sources in `source`) */
  versions: string;
  /** kernel path: files and functions */
  path: string;
  /** the race in one sentence: who does what in which order */
  race: string;
  /** library scenario that hunts it */
  scenario?: string;
  knob?: string;
  /** run options the entry needs besides the hunting strategy's (arch, lazy contract, CPUs) */
  /**
   * lazySeries: the version of Gordeev's lazy MMU series the entry runs under. The default (latest,
   * v6) has the s390 zap use-after-free this project found (README), which fails s390 scenarios with
   * or without a knob; s390 entries run 'v6-fixed' so that what is measured is the knob.
   */
  run?: { arch?: string; lazyContract?: 'strict' | 'hint'; lazySeries?: LazySeries; cpus?: number; preempt?: 'none' | 'full' | 'rt' };
  /** the oracle(s) that report it: violation kinds */
  oracle?: string;
  status: BugStatus;
  /** why it is not caught (status other than caught) */
  why?: string;
  /** caught entries: seeds (from seed 1) within which the default strategy catches it; the clean run uses the same seeds */
  budget?: number;
  /** where the facts come from */
  source: string;
  /** the last measurement with the default strategy: `mmsim stress <scenario> --knob K --seeds 10 --jobs 2` (docs/hunting.md) */
  measured?: string;
}

import { KNOBS, type KnobName } from '../../inject/knobs.ts';
import type { LazySeries } from '../../mm/lazy_mmu.ts';

/** the knob registry's kernel source for a knob-based entry */
const src = (k: KnobName, extra = ''): string => KNOBS[k].source + extra;

const NOT_VERIFIED = 'id and versions as given in issue #14; not re-checked against torvalds/linux here (the search tool found no copy of the commit)';

export const CATALOGUE: BugEntry[] = [
  // ---- historical races the model expresses
  {
    id: 'CVE-2018-18281', aliases: ['eb66ae030829', 'mremap.flush_after_unlock'],
    title: 'mremap flushes the TLB after dropping the PTLs',
    versions: 'before 4.19 (fixed by eb66ae030829, Oct 2018; stable backports)',
    path: 'mm/mremap.c move_ptes / move_page_tables',
    race: 'CPU1 caches old_va; CPU0 mremap moves the PTE and drops both PTLs without flushing; CPU2 ftruncate/punch clears the new PTE, flushes new_va and frees the page; CPU1 uses old_va through its stale entry.',
    scenario: 'mremap-vs-truncate', knob: 'mremap.flush_after_unlock', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '7/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 2 in 6.3 s (free-delay), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('mremap.flush_after_unlock', '; NVD CVE-2018-18281'),
  },
  {
    id: '97113eb39fa7', aliases: ['mremap.normal_pmd_no_rmap_locks'],
    title: 'whole-PMD mremap (NORMAL_PMD) vs try_to_unmap without the rmap locks',
    versions: 'from the NORMAL_PMD move (2c91bd4a4e2e, 2019) until 97113eb39fa7 (2021)',
    path: 'mm/mremap.c move_normal_pmd / move_pgt_entry; mm/rmap.c try_to_unmap_one',
    race: 'reclaim resolves old_addr and takes the PTE table\'s lock; mremap moves the whole table to new_addr under the PMD locks only; a sibling fills new_addr from the moved table; reclaim clears the PTE, flushes old_addr (not new_addr) and frees the page; the sibling uses its stale entry.',
    scenario: 'mremap-pmd-vs-reclaim', knob: 'mremap.normal_pmd_no_rmap_locks', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '3/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 3 in 14.7 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('mremap.normal_pmd_no_rmap_locks'),
  },
  {
    id: 'CVE-2016-5195', aliases: ['19be0eaffa3a', 'gup.dirty_cow'],
    title: 'Dirty COW: GUP drops write intent after breaking COW',
    versions: '2.6.22 to 4.8.2 (fixed 4.8.3 by 19be0eaffa3a)',
    path: 'mm/gup.c __get_user_pages / follow_page_pte; mm/madvise.c MADV_DONTNEED',
    race: 'T1 writes a read-only private file page through /proc/self/mem: the write fault installs a private copy and GUP retries without write intent; T2 zaps the copy with MADV_DONTNEED; the retry maps the page-cache page and T1 writes the file.',
    scenario: 'dirty-cow', knob: 'gup.dirty_cow', oracle: 'content / cow',
    status: 'caught', budget: 20, measured: '7/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 3.6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('gup.dirty_cow', '; NVD CVE-2016-5195'),
  },
  {
    id: 'CVE-2020-29374', aliases: ['17839856fd58', 'cow.reuse_by_mapcount'],
    title: 'COW breaks the wrong way: reuse by mapcount ignores a GUP reference',
    versions: 'before 5.8 (17839856fd58; stable 5.7.x)',
    path: 'mm/memory.c do_wp_page; mm/gup.c',
    race: 'after fork the child pins a shared anon page read-only (vmsplice) and unmaps it; the parent\'s write fault sees mapcount 1 and reuses the page in place; the child reads the parent\'s post-fork data through the pin.',
    scenario: 'cow-vmsplice', knob: 'cow.reuse_by_mapcount', oracle: 'cow',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 4 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('cow.reuse_by_mapcount', '; NVD CVE-2020-29374'),
  },
  {
    id: '57efa1fe5957', aliases: ['gup.fast_no_seqcount'],
    title: 'GUP-fast vs fork: no write_protect_seq check',
    versions: 'before 5.13 (57efa1fe5957, 2021)',
    path: 'mm/gup.c gup_fast / lockless_pages_from_mm; mm/memory.c copy_present_pte',
    race: 'thread A starts pin_user_pages_fast on a writable entry; thread B forks, finds the page not pinned, shares it with the child and write-protects the parent\'s entry; A completes the pin; the parent\'s next write copies the page, and DMA through the pin now lands in the child\'s page.',
    scenario: 'fork-vs-pin', knob: 'gup.fast_no_seqcount', oracle: 'cow / content',
    status: 'caught', budget: 20, measured: '2/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 3 in 28.2 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('gup.fast_no_seqcount'),
  },
  {
    id: 'knob:cow.install_before_flush', aliases: ['cow.install_before_flush'],
    title: 'wp_page_copy installs the new page before flushing the old one',
    versions: 'the ordering wp_page_copy keeps since the 2006 and 2008 COW race fixes (no single fix commit: the knob registry cites the lore threads)',
    path: 'mm/memory.c wp_page_copy',
    race: 'the COW fault installs the new page and drops the old page\'s rmap and reference before the flush; a sibling still translating the address to the old page reads or writes it while its other owner reuses it in place (or it is freed).',
    scenario: 'cow-vs-readers', knob: 'cow.install_before_flush', oracle: 'cow / uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '8/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 4.6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('cow.install_before_flush'),
  },
  // ---- constructed knobs (the rules the kernel keeps)
  {
    id: 'knob:munmap.free_before_flush', aliases: ['munmap.free_before_flush'],
    title: 'munmap frees the pages before the TLB shootdown completes',
    versions: 'constructed (flush rule T3: unhook, flush, free; docs/kernel-rules.md)',
    path: 'mm/mmu_gather.c tlb_flush_mmu',
    race: 'CPU0 munmap clears the PTEs and frees the pages before its shootdown; CPU1 keeps writing through its TLB entry to a freed frame.',
    scenario: 'munmap-vs-access', knob: 'munmap.free_before_flush', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '9/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 9.3 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('munmap.free_before_flush'),
  },
  {
    id: 'knob:munmap.skip_flush', aliases: ['munmap.skip_flush'],
    title: 'munmap never flushes the TLBs of a gather',
    versions: 'constructed (flush rule T2; docs/kernel-rules.md)',
    path: 'mm/mmu_gather.c tlb_flush_mmu_tlbonly',
    race: 'CPU0 munmap clears the PTEs and frees the pages with no flush at all; CPU1 keeps using its entries.',
    scenario: 'munmap-vs-access', knob: 'munmap.skip_flush', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 3.9 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('munmap.skip_flush'),
  },
  {
    id: 'knob:x86.switch_mm_no_gen_check', aliases: ['x86.switch_mm_no_gen_check'],
    title: 'x86 switch_mm skips the ASID generation check',
    versions: 'constructed (arch/x86/mm/tlb.c switch_mm_irqs_off: the tlb_gen check at switch-in)',
    path: 'arch/x86/mm/tlb.c switch_mm_irqs_off',
    race: 'CPU1 runs process B while A\'s munmap shootdown skips it; CPU1 switches back to A without comparing tlb_gen and uses A\'s stale ASID-tagged entries to freed pages.',
    scenario: 'switch-mm-munmap', knob: 'x86.switch_mm_no_gen_check', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 8 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('x86.switch_mm_no_gen_check'),
  },
  {
    id: 'knob:zap.off_by_one', aliases: ['zap.off_by_one'],
    title: 'zap_pte_range zaps one PTE past the end of the range',
    versions: 'constructed (content oracle sensitivity)',
    path: 'mm/memory.c zap_pte_range',
    race: 'munmap zaps a page of a VMA that stays mapped; the next read of that page sees zeroes instead of what was written.',
    scenario: 'munmap-vs-access', knob: 'zap.off_by_one', oracle: 'content',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 13.8 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  {
    id: 'knob:thp.free_before_flush', aliases: ['thp.free_before_flush'],
    title: 'zap_huge_pmd frees the huge page before the flush',
    versions: 'constructed (zap_huge_pmd frees through tlb_remove_page_size, after the flush)',
    path: 'mm/huge_memory.c zap_huge_pmd',
    race: 'CPU0 clears a huge PMD and drops the 2 MiB page at once; CPU1 still caches 4 KiB pieces of it and writes to the freed frames.',
    scenario: 'thp-vs-access', knob: 'thp.free_before_flush', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '6/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 22.4 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('thp.free_before_flush'),
  },
  {
    id: 'knob:mremap.normal_pmd_no_flush', aliases: ['mremap.normal_pmd_no_flush'],
    title: 'move_normal_pmd does not flush the old PMD range',
    versions: 'constructed (move_normal_pmd flushes under both PMD locks)',
    path: 'mm/mremap.c move_normal_pmd',
    race: 'mremap moves a whole PTE table without flushing old addresses; a CPU keeps translating the old address to a page that now lives at the new one, which MADV_DONTNEED or a later move frees.',
    scenario: 'mremap-vs-fault', knob: 'mremap.normal_pmd_no_flush', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('mremap.normal_pmd_no_flush'),
  },
  {
    id: 'knob:fork.no_parent_flush', aliases: ['fork.no_parent_flush'],
    title: 'fork skips the parent\'s TLB flush after copy_page_range',
    versions: 'constructed (dup_mmap flushes the parent before releasing its mmap_lock)',
    path: 'kernel/fork.c dup_mmap',
    race: 'fork write-protects the parent\'s entries and shares the pages with the child without flushing; a sibling writes through its stale writable entry after fork returned, and the child reads the write.',
    scenario: 'fork-vs-writers', knob: 'fork.no_parent_flush', oracle: 'cow',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 10.6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('fork.no_parent_flush'),
  },
  {
    id: 'knob:fork.flush_after_unlock', aliases: ['fork.flush_after_unlock'],
    title: 'fork flushes the parent after releasing its mmap_lock',
    versions: 'constructed (flush rule T4; docs/kernel-rules.md)',
    path: 'kernel/fork.c dup_mmap',
    race: 'fork drops the parent\'s mmap_lock before flushing; a COW fault copies a shared page while a sibling still writes the original through a stale writable entry, and the write ends up in the child\'s page.',
    scenario: 'fork-vs-writers', knob: 'fork.flush_after_unlock', oracle: 'cow',
    status: 'caught', budget: 20, measured: '9/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 19.7 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('fork.flush_after_unlock'),
  },
  {
    id: 'knob:arm64.lazy_no_dsb', aliases: ['arm64.lazy_no_dsb'],
    title: 'arm64 leaves lazy MMU mode without the deferred DSB',
    versions: 'constructed (arm64 lazy MMU: the barrier deferred to the leave since 5fdd05efa1cd, 6.16)',
    path: 'arch/arm64/include/asm/pgtable.h arch_leave_lazy_mmu_mode; mm/vmalloc.c vmap_pages_pte_range',
    race: 'vmalloc (or fork\'s vmap\'d stack) stores valid kernel PTEs in a lazy section whose leave drops the DSB; the caller writes the new area at once (set_task_stack_end_magic), the walker does not see the PTE, and is_spurious_el1_translation_fault\'s AT does not either: an oops on a valid mapping.',
    scenario: 'vmalloc-vs-irq', knob: 'arm64.lazy_no_dsb', run: { arch: 'arm64' }, oracle: 'kernel-paging-request',
    status: 'caught', budget: 10,
    measured: '10/10 seeds with the default swarm (seeds 1-10), 0/10 without the knob (6 Dec 2026, 2 jobs, load average 7-37); 4/4 in fork-vs-writers and fork-storm on arm64 (the stack end magic); deterministic seed 1 caught (test/vmalloc_irq.test.ts). Before init_mm existed it was not expressible: user PTE stores carry no deferred barrier (__set_pte_complete: pte_valid_not_user only)',
    source: src('arm64.lazy_no_dsb', '; arch/arm64/include/asm/pgtable.h __set_pte_complete/queue_pte_barriers/emit_pte_barriers ("The dsb makes the store visible to the table walker"); arch/arm64/mm/fault.c is_spurious_el1_translation_fault'),
  },
  {
    id: 'b81c688426a9', aliases: ['lazy_mmu.active_in_irq', '5fdd05efa1cd'],
    title: 'arm64 defers an interrupt handler\'s kernel PTE barrier to the interrupted task\'s lazy section',
    versions: 'the arm64 for-next/mm branch of the 6.16 merge window, between 5fdd05efa1cd ("arm64/mm: Batch barriers when updating kernel mappings") and its fix b81c688426a9 (May 2025, reported by syzbot); both merged in 6.16, so no release had it; the generic layer of Brodsky\'s nesting series (7.0) keeps the rule: lazy MMU mode is never active in interrupt context',
    path: 'arch/arm64/include/asm/pgtable.h queue_pte_barriers; include/linux/pgtable.h is_lazy_mmu_mode_active; arch/arm64/mm/pageattr.c __change_memory_common (DEBUG_PAGEALLOC, KFENCE)',
    race: 'a task is inside a lazy MMU section (zap_pte_range, vmap_pages_pte_range); an interrupt handler allocates a page and DEBUG_PAGEALLOC makes it valid in the linear map (no TLBI for invalid-to-valid); its barrier is queued for the task\'s leave; the handler writes the page and takes an unresolvable translation fault.',
    scenario: 'vmalloc-vs-irq', knob: 'lazy_mmu.active_in_irq', run: { arch: 'arm64' }, oracle: 'kernel-paging-request',
    status: 'caught', budget: 10,
    measured: '10/10 seeds with the default swarm (seeds 1-10), 0/10 without the knob (6 Dec 2026, 2 jobs, load average 7-37); deterministic: caught on the first seeds, replays exactly (test/vmalloc_irq.test.ts)',
    source: src('lazy_mmu.active_in_irq', '; lore <20250512102242.4156463-1-ryan.roberts@arm.com>; verified: b81c688426a9 in a merge log and the patch text on lore (search tool), 5fdd05efa1cd by its Fixes tag'),
  },
  {
    id: 'knob:vmalloc.purge_no_flush', aliases: ['vmalloc.purge_no_flush'],
    title: 'the lazy vmap purge makes vfree\'d addresses reusable without flushing them',
    versions: 'constructed (mm/vmalloc.c __purge_vmap_area_lazy flushes the purged span before the areas are free again)',
    path: 'mm/vmalloc.c vfree / free_unmap_vmap_area / purge_vmap_area_lazy',
    race: 'a task\'s vmap\'d stack is vfree\'d at exit (pages freed, no flush: nobody may use the address); the purge hands the address out again without flush_tlb_kernel_range; a CPU that cached the old translation writes the new stack\'s end magic into the freed (reused) page.',
    scenario: 'fork-storm', knob: 'vmalloc.purge_no_flush', run: { cpus: 8 }, oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 6,
    measured: '6/6 seeds with the default swarm on 8 CPUs, 0/6 without the knob; 4/4 on the scenario\'s 64 CPUs, x86 and arm64 (6 Dec 2026, 2 jobs, load average 7-37)',
    source: src('vmalloc.purge_no_flush'),
  },
  {
    id: 'knob:xenpv.leave_without_flush', aliases: ['xenpv.leave_without_flush'],
    title: 'Xen PV leaves lazy MMU mode without issuing the queued multicall',
    versions: 'constructed (Xen PV lazy MMU multicalls, issue #4)',
    path: 'arch/x86/xen/mmu_pv.c xen_leave_lazy_mmu',
    race: 'munmap\'s PTE clears stay queued when the section ends; the page tables keep the old entries and other CPUs keep reaching the freed pages.',
    scenario: 'munmap-vs-access', knob: 'xenpv.leave_without_flush', run: { arch: 'x86-xenpv' }, oracle: 'audit / uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 4.7 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('xenpv.leave_without_flush'),
  },
  {
    id: 'knob:powerpc.leave_without_flush', aliases: ['powerpc.leave_without_flush'],
    title: 'powerpc hash leaves lazy MMU mode without flushing the ppc64_tlb_batch',
    versions: 'constructed (powerpc hash lazy MMU batch)',
    path: 'arch/powerpc/include/asm/book3s/64/tlbflush-hash.h arch_leave_lazy_mmu_mode',
    race: 'the hash and TLB invalidations of a munmap stay batched; other CPUs keep their translations of the freed pages.',
    scenario: 'munmap-vs-access', knob: 'powerpc.leave_without_flush', run: { arch: 'powerpc-hash' }, oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 4.3 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('powerpc.leave_without_flush'),
  },
  {
    id: 'knob:sparc64.leave_without_flush', aliases: ['sparc64.leave_without_flush'],
    title: 'sparc64 leaves lazy MMU mode without flushing the tlb_batch',
    versions: 'constructed (sparc64 lazy MMU batch)',
    path: 'arch/sparc/mm/tlb.c arch_leave_lazy_mmu_mode',
    race: 'the TSB and TLB invalidations of a munmap stay batched; other CPUs keep their translations of the freed pages.',
    scenario: 'munmap-vs-access', knob: 'sparc64.leave_without_flush', run: { arch: 'sparc64' }, oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm (seeds 1-10); bench:hunt: first catch at seed 1 in 5.4 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('sparc64.leave_without_flush'),
  },
  {
    id: 'knob:s390.leave_without_apply', aliases: ['s390.leave_without_apply'],
    title: 's390 leaves a fast-range section without applying the IPTE batch',
    versions: 'constructed (the proposed s390 lazy MMU batch)',
    path: 'arch/s390 arch_leave_lazy_mmu_mode (proposed series)',
    race: 'memory keeps the old valid entries of the pages a munmap freed; walkers and TLBs keep reaching them.',
    scenario: 'munmap-vs-access', knob: 's390.leave_without_apply', run: { arch: 's390', lazySeries: 'v6-fixed' }, oracle: 'uaf-stale-tlb / walker',
    status: 'caught', budget: 20, measured: '10/10 seeds with the default swarm and --lazy-series v6-fixed (seeds 1-10; 0/10 without the knob; under the default series v6 the series\' own zap use-after-free fails 18 of 20 seeds without any knob); bench:hunt: first catch at seed 1 in 2.4 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('s390.leave_without_apply'),
  },
  {
    id: 'knob:fault.leak_ref', aliases: ['fault.leak_ref'],
    title: 'anonymous fault takes one page reference too many',
    versions: 'constructed (refcount audit sensitivity)',
    path: 'mm/memory.c do_anonymous_page',
    race: 'no race: every anonymous fault leaks a reference, and the audit finds the pages that never come back.',
    scenario: 'munmap-vs-access', knob: 'fault.leak_ref', oracle: 'audit',
    status: 'caught', budget: 5, source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  {
    id: 'knob:munmap.double_put', aliases: ['munmap.double_put'],
    title: 'munmap drops every gathered page\'s reference twice',
    versions: 'constructed (allocator double-free check sensitivity)',
    path: 'mm/mmu_gather.c tlb_flush_mmu_free',
    race: 'no race: the second put frees a page twice (or frees a page still mapped elsewhere).',
    scenario: 'munmap-vs-access', knob: 'munmap.double_put', oracle: 'double-free / audit',
    status: 'caught', budget: 5, source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  {
    id: 'knob:munmap.leak_mmap_lock', aliases: ['munmap.leak_mmap_lock'],
    title: 'munmap returns without releasing the mmap_lock',
    versions: 'constructed (hang watchdog sensitivity)',
    path: 'mm/mmap.c do_munmap',
    race: 'no race: the next fault or syscall of the mm blocks for good; the hang watchdog (or the deterministic scheduler\'s deadlock check, or the task timeout) reports it.',
    scenario: 'munmap-vs-access', knob: 'munmap.leak_mmap_lock', oracle: 'hang / timeout',
    status: 'caught', budget: 5, source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  {
    id: 'knob:thp.split_no_ref', aliases: ['thp.split_no_ref'],
    title: 'THP split without the 511 extra folio references',
    versions: 'constructed (compound refcount audit sensitivity)',
    path: 'mm/huge_memory.c __split_huge_pmd_locked',
    race: 'no race: the split PTEs hold references the folio never got; the audit (or the allocator) finds the imbalance.',
    scenario: 'thp-vs-access', knob: 'thp.split_no_ref', oracle: 'audit',
    status: 'caught', budget: 10, source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  {
    id: 'knob:mremap.realign_unchecked', aliases: ['mremap.realign_unchecked'],
    title: 'mremap PMD realignment without its safety checks',
    versions: 'constructed (mremap_test.c checks it)',
    path: 'mm/mremap.c can_align_down',
    race: 'not a race: the first extent of a realigned move overwrites entries of a mapping that is not moving.',
    knob: 'mremap.realign_unchecked', oracle: 'mremap_test content checks',
    status: 'not-expressible', why: 'caught by `mmsim selftest mremap --knob mremap.realign_unchecked` (the port of mremap_test.c), not by a stress scenario: no library scenario maps a neighbour inside the realignment window',
    source: src('mremap.realign_unchecked'),
  },
  {
    id: 'knob:zap.direct_deref', aliases: ['zap.direct_deref'],
    title: 'zap_pte_range reads PTEs by direct dereference inside the lazy section',
    versions: 'constructed (review of the s390 lazy MMU batch)',
    path: 'mm/memory.c zap_pte_range',
    race: 'on s390 with range batching, a zap inside a section that already updated an entry reads memory that does not hold the update yet.',
    knob: 'zap.direct_deref', run: { arch: 's390', lazyContract: 'strict' }, oracle: 'lazy-mmu-contract',
    status: 'not-expressible', why: 'caught by the unit tests of test/arch_s390.test.ts (a zap inside a range section that already updated an entry); no library scenario nests a zap inside a fast-range section',
    source: src('zap.direct_deref'),
  },
  {
    id: 'knob:lazy_mmu.nested_disable_leaves', aliases: ['lazy_mmu.nested_disable_leaves'],
    title: 'a nested lazy_mmu_mode_disable() leaves the mode (no nesting count)',
    versions: 'before Kevin Brodsky\'s nesting series ("mm: enable lazy_mmu sections to nest", 7.0)',
    path: 'include/linux/pgtable.h lazy_mmu_mode_enable/disable',
    race: 'not a race: an inner section\'s disable ends the outer section\'s batching half-way, and the outer disable is unbalanced.',
    knob: 'lazy_mmu.nested_disable_leaves', oracle: 'lazy_mmu_mode_kunit port',
    status: 'not-expressible',
    why: 'caught by the port of mm/tests/lazy_mmu_mode_kunit.c (test/lazy_mmu_kunit.test.ts), not by a stress scenario: no library scenario nests sections where the early leave becomes a stale translation (knob added by another branch at the end of this work)',
    source: src('lazy_mmu.nested_disable_leaves'),
  },
  {
    id: 'knob:sim.crash_cpu_worker', aliases: ['sim.crash_cpu_worker'],
    title: 'a CPU thread throws (runner test)',
    versions: 'not a kernel bug',
    path: 'src/engine/program.ts TaskRunner.step',
    race: 'none: checks that a crashed host thread ends the run with a report (exit 3).',
    knob: 'sim.crash_cpu_worker', oracle: 'crash',
    status: 'tooling', why: 'tests the runner, not the kernel', source: 'constructed (the knob registry, src/inject/knobs.ts)',
  },
  // ---- historical races the model cannot express yet
  {
    id: '2ff6ddf19c0e', aliases: [],
    title: 'lazy-TLB CPUs walk page tables freed without an IPI to them',
    versions: '4.19 merge window only: 2ff6ddf19c0e ("x86/mm/tlb: Leave lazy TLB mode at page table free time") was the page-table-free half of Rik van Riel\'s lazier lazy-TLB series (95b0e6357d3e, 64482aafe55f, ac0315896970, 61d0beb5796a), which stopped sending shootdown IPIs to lazy CPUs; the whole series was reverted before 4.19 ("x86/mm/tlb: Revert the recent lazy TLB patches", Peter Zijlstra, Aug 2018). Mainline today IPIs lazy CPUs whenever tables are freed (arch/x86/mm/tlb.c native_flush_tlb_multi: info->freed_tables)',
    path: 'arch/x86/mm/tlb.c; mm/mmu_gather.c tlb_remove_table',
    race: 'a CPU in lazy TLB mode still has the mm loaded; munmap frees page-table pages and skips the lazy CPU\'s IPI; the lazy CPU\'s speculative walker reads the freed (reused) table.',
    status: 'not-expressible',
    why: 'the walker runs only for an access of the task on the CPU: there is no speculative walk by a lazy CPU and no paging-structure cache, so a lazy CPU never touches a freed table',
    source: 'checked: the revert <20180822154046.717610121@infradead.org> ("[PATCH 1/4] x86/mm/tlb: Revert the recent lazy TLB patches") lists 2ff6ddf19c0e with that subject',
  },
  {
    id: 'CVE-2022-39188', aliases: ['b67fbebd4cf9'],
    title: 'PFNMAP pages freed in unlink_file_vma before the TLB flush',
    versions: 'before 5.19 (NVD); fix b67fbebd4cf9 "mmu_gather: Force tlb-flush VM_PFNMAP vmas"',
    path: 'mm/mmap.c unmap_region / free_pgtables; mm/memory.c unmap_mapping_range',
    race: 'munmap unlinks a VM_PFNMAP VMA from the file before its deferred flush; a driver\'s unmap_mapping_range finds no VMA, returns, and frees the PFNs while CPUs still translate them.',
    status: 'not-expressible',
    why: 'no VM_PFNMAP mappings or driver-owned PFNs in the model (file mappings are shmem pages with struct-page lifetimes)',
    source: 'fix id from the upstream commit cited in Freescale/linux-fslc PR #803 ([ Upstream commit b67fbebd4cf980aecbcc750e1462128bffe8ae15 ])',
  },
  {
    id: 'khugepaged-gup-fast-ipi', aliases: [],
    title: 'khugepaged retract_page_tables vs GUP-fast (fixed by sending an IPI, 2022); pte_offset_map_lock may fail / RCU-freed retracted tables (6.5/6.6)',
    versions: 'the IPI fix 2022 (stable), the RCU table work 6.5/6.6',
    path: 'mm/khugepaged.c retract_page_tables / collapse_pte_mapped_thp; mm/gup.c gup_fast; mm/pgtable-generic.c __pte_offset_map_lock',
    race: 'khugepaged clears a PMD and frees the PTE table it retracted while GUP-fast, with interrupts off and no IPI to wait for, still walks that table.',
    status: 'not-expressible',
    why: 'the model has no khugepaged collapse or retract_page_tables, and page tables are not RCU-freed (pte_offset_map_lock cannot fail)',
    source: NOT_VERIFIED,
  },
  {
    id: '61f67c230a5e', aliases: [],
    title: 'anon_vma use-after-free on an MREMAP_DONTUNMAP faulted/unfaulted merge',
    versions: 'from 879bca0a2c4f ("mm/vma: fix incorrectly disallowed anonymous VMA merges") until 61f67c230a5e (Jan 2026, stable 6.18; CVE-2026-23077)',
    path: 'mm/vma.c vma_merge / anon_vma handling; mm/mremap.c MREMAP_DONTUNMAP',
    race: 'MREMAP_DONTUNMAP moves a faulted VMA next to an unfaulted one; the merge keeps a VMA pointing at an anon_vma whose last reference goes away, and a later rmap walk uses it.',
    status: 'not-expressible',
    why: 'MREMAP_DONTUNMAP and anon_vma object lifetimes are not modelled (rmap.ts keeps per-page reverse maps without anon_vma reference counts)',
    source: 'checked: commit 61f67c230a5e "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge" (Lorenzo Stoakes; its message names MREMAP_DONTUNMAP as the most direct trigger: vma_expand() skipped dup_anon_vma() for the copied-from VMA, unlink_anon_vmas() then freed an anon_vma folios still point to)',
  },
  {
    id: '772e5b4a5e83', aliases: [],
    title: 'move_normal_pmd during the move-back of a failed mremap meets existing tables (a WARN, not a corruption)',
    versions: 'from 0cef0bb836e3 ("mm: clear uffd-wp PTE/PMD state on mremap()") until 772e5b4a5e83 (Aug 2025, stable)',
    path: 'mm/mremap.c move_page_tables (the undo after a failed move) / move_normal_pmd',
    race: 'a uffd-wp VMA with remap events disabled is mremap()ed: the forward move recurses into PTEs (no whole-table moves) and fails on a table allocation; the move back, with the VMAs swapped, checks only the (now uffd-less) source and tries move_normal_pmd, which finds the destination PMD populated and hits WARN_ON_ONCE(!pmd_none(*new_pmd)); it then falls back and the result is right.',
    status: 'not-expressible',
    why: 'no failure injection inside move_page_tables: a move in the model either completes or fails before it starts',
    source: 'checked: commit 772e5b4a5e83 "mm/mremap: fix WARN with uffd that has remap events disabled" (David Hildenbrand, syzbot; "The code ends up doing the right thing ... but triggering that WARN is unpleasant")',
  },
  {
    id: 'e3ba51ab24fd', aliases: [],
    title: 'arm64 range TLBI encoding leaves part of a 0x200000-page range unflushed',
    versions: 'from 117940aa6e5f ("KVM: arm64: Define kvm_tlb_flush_vmid_range()", 6.6) until e3ba51ab24fd (6.9-rc, stable 6.6+)',
    path: 'arch/arm64/include/asm/tlbflush.h __flush_tlb_range_op',
    race: 'KVM write-protects a guest\'s stage-2 entries for dirty logging and flushes MAX_TLBI_RANGE_PAGES (0x200000) pages at once; __TLBI_RANGE_NUM cannot encode SCALE 3 / NUM 31, the scale underflows and a bogus operand is issued; CPUs keep writable stage-2 entries and dirty pages are missed.',
    status: 'not-expressible',
    why: 'no KVM stage-2 tables in the model, and its arm64 flushes ranges as address sets, without the TLBI range (scale, num) encoding',
    source: 'checked: commit e3ba51ab24fd "arm64: tlb: Fix TLBI RANGE operand" (Gavin Shan, 2024-04-10; Fixes: 117940aa6e5f)',
  },
  {
    id: '5d1904204c99', aliases: [],
    title: 'mremap vs page_mkclean: lost write',
    versions: '2016/17 (fix 5d1904204c99), later subsumed by eb66ae030829',
    path: 'mm/mremap.c move_ptes; mm/rmap.c page_mkclean',
    race: 'CPU1 has a dirty writable entry for old_va; mremap moves the PTE and drops the PTLs before flushing; writeback cleans the page through the new PTE; CPU1 writes through the stale entry and the write is lost.',
    status: 'not-expressible',
    why: 'no writeback: the model has no page_mkclean and no dirty tracking of file pages through the rmap, and no lost-write oracle',
    source: 'commit 5d1904204c99 (Aaron Lu); commit eb66ae030829',
  },
  {
    id: '1cf35d47712d', aliases: [],
    title: 'zap_pte_range vs page_mkclean',
    versions: 'fixed 2014 (1cf35d47712d)',
    path: 'mm/memory.c zap_pte_range; mm/rmap.c page_mkclean',
    race: 'zap transfers a dirty shared PTE\'s dirtiness to the page, drops the PTL and flushes later; page_mkclean marks the page clean meanwhile; a CPU writes through its stale writable entry and the write is lost.',
    status: 'not-expressible', why: 'no writeback / page_mkclean (as 5d1904204c99)', source: 'commit 1cf35d47712d "mm: split \'tlb_flush_mmu()\' into tlb flushing and memory freeing parts"',
  },
  {
    id: '3ea277194daa', aliases: [],
    title: 'deferred reclaim flush vs mprotect/munmap (flush_tlb_batched_pending)',
    versions: 'fixed 2017 (3ea277194daa)',
    path: 'mm/rmap.c try_to_unmap_one (TTU batch flush); mm/mprotect.c, mm/memory.c flush_tlb_batched_pending',
    race: 'reclaim clears a PTE and defers its flush; mprotect finds the PTE empty and returns without a flush; a CPU writes through its stale writable entry after mprotect returned.',
    status: 'not-expressible',
    why: 'reclaim in the model flushes at once (no batched unmap flush), and a missing flush with the page alive needs the translation oracle of issue #14 item 3',
    source: 'commit 3ea277194daa (Mel Gorman, 2017): flush_tlb_batched_pending',
  },
  {
    id: '60bae7370896', aliases: [],
    title: 'migrate_vma_collect_pmd flushes outside the PTL',
    versions: 'fixed by 60bae73708963de4a17231077285bd9ff2f41c44',
    path: 'mm/migrate_device.c migrate_vma_collect_pmd',
    race: 'migration clears a PTE, unlocks and flushes later; MADV_DONTNEED finds the PTE empty and returns; the page is still reachable through the stale entry after madvise returned.',
    status: 'not-expressible', why: 'no device migration (migrate_vma) in the model', source: 'commit 60bae73708963de4a17231077285bd9ff2f41c44',
  },
  {
    id: '99baac21e458', aliases: [],
    title: 'parallel MADV_DONTNEED flush miss (mm_tlb_flush_nested)',
    versions: 'fixed 2017 (99baac21e458; follow-up 7a30df49f63a)',
    path: 'mm/mmu_gather.c tlb_finish_mmu',
    race: 'two threads zap overlapping ranges under the read lock; the second finds the PTEs empty and returns while the first has not flushed; a CPU still uses the page after the second madvise returned.',
    status: 'not-expressible',
    why: 'the model implements the fix (mmu_gather.ts forces the flush) but has no knob removing it, and with the page kept alive by the first gather the miss needs the translation oracle of issue #14 item 3',
    source: 'commits 99baac21e458 and 7a30df49f63a (ids from the project\'s kernel notes, not re-checked)',
  },
  {
    id: 'fb49c455323f', aliases: ['fork.no_vma_write_lock'],
    title: 'fork vs a per-VMA-lock page fault (fork does not write-lock the parent\'s VMAs)',
    versions: '6.4 (per-VMA locks) until fb49c455323f (6.5)',
    path: 'kernel/fork.c dup_mmap (vma_start_write); mm/memory.c lock_vma_under_rcu, wp_page_copy',
    race: 'fork write-protects a page for the child while a sibling\'s per-VMA-lock write fault (no mmap_lock) breaks COW on it; other CPUs still cache the page writable and their writes land in the page the child keeps.',
    scenario: 'fork-vs-vma-faults', knob: 'fork.no_vma_write_lock', oracle: 'cow',
    status: 'caught', budget: 20,
    measured: 'bench:hunt: first catch at seed 2 in 2.8 s (free-delay), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('fork.no_vma_write_lock'),
  },
  {
    id: 'CVE-2025-37964', aliases: ['83b0177a6c48', 'x86.switch_mm_no_smp_mb'],
    title: 'x86 switch_mm_irqs_off: the cpumask/loaded_mm stores may pass the tlb_gen load (missing smp_mb)',
    versions: 'x86 lazy-TLB rework kernels until fea4e317f9e7 and its follow-up 83b0177a6c48 (2025)',
    path: 'arch/x86/mm/tlb.c switch_mm_irqs_off / flush_tlb_mm_range (should_flush_tlb)',
    race: 'a CPU switching to an mm stores itself into mm_cpumask and loaded_mm, then loads tlb_gen while its stores still sit in its store buffer; a flusher bumps tlb_gen, reads the cpumask without the CPU and sends it no IPI; the CPU runs with the stale entries of a freed page.',
    scenario: 'switch-mm-munmap', knob: 'x86.switch_mm_no_smp_mb', oracle: 'uaf-stale-tlb',
    status: 'caught', budget: 20,
    measured: 'bench:hunt: first catch at seed 1 in 5.7 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('x86.switch_mm_no_smp_mb'),
  },
  {
    id: 'knob:xenpv.ctxsw_task_lazy_state', aliases: ['291b3abed657', 'xenpv.ctxsw_task_lazy_state'],
    title: 'Xen PV: a task preempted inside a lazy MMU section re-enters lazy mode from the task state at switch-in',
    versions: 'kernels with 291b3abed657 ("x86/xen: use lazy_mmu_state when context-switching") under PREEMPT_RT (the May 2026 regression)',
    path: 'arch/x86/xen/enlighten_pv.c xen_start_context_switch / xen_end_context_switch; include/linux/pgtable.h lazy_mmu_mode_enable',
    race: 'a task is preempted between lazy_mmu_mode_enable()\'s enable count and arch_enter_lazy_mmu_mode(); at switch-in Xen re-enters lazy mode from the task state, then the task\'s own arch_enter finds the mode already on (Xen BUG).',
    scenario: 'munmap-vs-access', knob: 'xenpv.ctxsw_task_lazy_state', oracle: 'lazy-mmu-contract', run: { arch: 'x86-xenpv', preempt: 'rt' },
    status: 'caught', budget: 20,
    measured: 'bench:hunt: first catch at seed 2 in 7.7 s (free-delay), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('xenpv.ctxsw_task_lazy_state'),
  },
  {
    id: 'knob:fault.uptodate_no_smp_wmb', aliases: ['fault.uptodate_no_smp_wmb'],
    title: 'arm64: a new anonymous page published before its zeroes (no smp_wmb in __folio_mark_uptodate)',
    versions: 'constructed: the barrier has been there since the anonymous fault path was made lockless against other CPUs\' walkers; it matters on weakly ordered CPUs (arm64, powerpc)',
    path: 'mm/memory.c do_anonymous_page (alloc_anon_folio, __folio_mark_uptodate, set_pte_at); include/linux/page-flags.h __folio_mark_uptodate',
    race: 'CPU0 write-faults a fresh anonymous page: it zeroes the frame with plain stores and stores the new PTE; on arm64 without the barrier the PTE becomes visible first, and a thread on CPU1 walks it and reads what the frame held before (another address\'s data), or its write is overwritten by a late zero.',
    scenario: 'munmap-vs-access', knob: 'fault.uptodate_no_smp_wmb', oracle: 'content', run: { arch: 'arm64' },
    status: 'caught', budget: 20,
    measured: '8/20 seeds with the default swarm (`mmsim stress munmap-vs-access --arch arm64 --knob fault.uptodate_no_smp_wmb --seeds 20 --jobs 2`), 0/20 without the knob; on --arch powerpc-hash 3/20 and 0/20 (6 Dec 2026, load average 30-85 on 2 cores)',
    source: src('fault.uptodate_no_smp_wmb'),
  },
  {
    id: 'knob:fault.i_mmap_before_folio_lock', aliases: ['fault.i_mmap_before_folio_lock'],
    title: 'a file fault takes i_mmap_rwsem before the folio lock (the order hugetlb_fault had after c0d0381ade79)',
    versions: 'constructed on the file fault path after the hugetlb inversion of c0d0381ade79',
    path: 'mm/memory.c __do_fault / finish_fault; mm/rmap.c (reclaim takes the folio lock, then i_mmap_rwsem)',
    race: 'a fault takes i_mmap_rwsem then the folio lock while reclaim holds the folio lock and wants i_mmap_rwsem: lockdep reports the inverted order on its first run, before any deadlock.',
    scenario: 'mremap-pmd-vs-reclaim', knob: 'fault.i_mmap_before_folio_lock', oracle: 'lockdep',
    status: 'caught', budget: 20,
    measured: 'bench:hunt: first catch at seed 1 in 2.5 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('fault.i_mmap_before_folio_lock'),
  },
  {
    id: 'knob:s390.wrprotect_no_ipte', aliases: ['s390.wrprotect_no_ipte'],
    title: 's390: fork write-protects a valid attached PTE with a plain store instead of IPTE',
    versions: 'constructed (the rule quoted in arch/s390/include/asm/tlb.h: a valid entry of an attached mm changes only by IPTE/IDTE/CSP)',
    path: 'arch/s390/include/asm/pgtable.h ptep_set_wrprotect / ptep_xchg_lazy; mm/memory.c copy_present_ptes',
    race: 'fork write-protects the parent\'s PTEs with a plain store while other CPUs have the mm attached: the hardware may keep using the writable translation and the parent\'s write lands in the page the child shares.',
    scenario: 'fork-vs-writers', knob: 's390.wrprotect_no_ipte', oracle: 's390-valid-entry-changed', run: { arch: 's390', lazySeries: 'v6-fixed' },
    status: 'caught', budget: 20, measured: 'bench:hunt: first catch at seed 1 in 6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('s390.wrprotect_no_ipte'),
  },
  {
    id: 'knob:mprotect.skip_flush', aliases: ['mprotect.skip_flush'],
    title: 'mprotect(PROT_READ) returns without flushing the TLBs that hold the page writable',
    versions: 'constructed (mm/mprotect.c change_protection: the gather\'s flush before the syscall returns)',
    path: 'mm/mprotect.c change_protection / tlb_finish_mmu',
    race: 'mprotect write-protects the PTEs and returns without a flush; another CPU keeps writing through its old writable entry to a page that stays alive (no use-after-free: only the stale-TLB oracle sees it).',
    scenario: 'madvise-vs-access', knob: 'mprotect.skip_flush', oracle: 'stale-tlb',
    status: 'caught', budget: 20, measured: 'bench:hunt: first catch at seed 1 in 3 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('mprotect.skip_flush'),
  },
  {
    id: 'knob:thp.split_no_flush', aliases: ['thp.split_no_flush'],
    title: 'a THP split installs the PTE table without flushing the huge translation',
    versions: 'constructed (mm/huge_memory.c __split_huge_pmd_locked: the flush before the PMD lock is dropped)',
    path: 'mm/huge_memory.c __split_huge_pmd / __split_huge_pmd_locked',
    race: 'a huge PMD is split into a PTE table without a flush; another CPU keeps using its huge translation where small and huge entries must never coexist.',
    scenario: 'thp-split-vs-access', knob: 'thp.split_no_flush', oracle: 'stale-tlb',
    status: 'caught', budget: 20, measured: 'bench:hunt: first catch at seed 1 in 1.6 s (det-hot), 0/20 false positives over seeds 1-20 (Dec 2026, 2 cores, load average 40-190)',
    source: src('thp.split_no_flush'),
  },
];

/** The entry with this id, alias or knob (case-insensitive; a commit id may be given longer than 12 digits). */
export function findBug(id: string): BugEntry | undefined {
  const q = id.trim().toLowerCase();
  const short = /^[0-9a-f]{12,40}$/.test(q) ? q.slice(0, 12) : q;
  return CATALOGUE.find((b) => [b.id, ...b.aliases, b.knob ?? ''].some((x) => x.toLowerCase() === short || x.toLowerCase() === q));
}

export function caughtEntries(): BugEntry[] {
  return CATALOGUE.filter((b) => b.status === 'caught');
}
