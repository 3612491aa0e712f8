// The bug-injection registry: named knobs, default off, each consulted at exactly
// one point of kernel code. A knob is only real when a test shows a scenario
// catching it and the same scenario passing with the knob off.

export interface KnobInfo {
  name: string;
  where: string;
  what: string;
  source: string;
}

export const KNOBS = {
  'munmap.free_before_flush': {
    where: 'src/mm/mmu_gather.ts tlb_flush_mmu',
    what: 'free the gathered pages before the TLB shootdown completes (breaks unhook -> flush -> free)',
    source: 'mm/mmu_gather.c tlb_flush_mmu(): flush, then free (docs/kernel-rules.md#flush-rules T3)',
  },
  'munmap.skip_flush': {
    where: 'src/mm/mmu_gather.ts tlb_flush_mmu_tlbonly',
    what: 'never flush TLBs for a gather (pages are freed while other CPUs still cache them)',
    source: 'constructed (docs/kernel-rules.md#flush-rules T2)',
  },
  'x86.switch_mm_no_gen_check': {
    where: 'src/arch/x86/index.ts switch_mm_irqs_off',
    what: 'do not compare the ASID generation on switch-in (a CPU that got no IPI while it ran another mm keeps stale entries)',
    source: 'arch/x86/mm/tlb.c switch_mm_irqs_off(): the TLB generation check at switch-in',
  },
  'x86.switch_mm_no_smp_mb': {
    where: 'src/arch/x86/index.ts switch_mm_irqs_off',
    what: 'no smp_mb() between the loaded_mm store and the tlb_gen load when the CPU is already in mm_cpumask: the store sits in the store buffer, a flusher reads the old loaded_mm and sends no IPI, and we read the old tlb_gen and keep the stale entries',
    source: 'arch/x86/mm/tlb.c switch_mm_irqs_off(): the else smp_mb() of commit 83b0177a6c48 "x86/mm: Fix SMP ordering in switch_mm_irqs_off()" (follow-up to fea4e317f9e7, CVE-2025-37964; Fixes: 209954cbc7d0)',
  },
  'xenpv.ctxsw_task_lazy_state': {
    where: 'src/arch/x86-xenpv/index.ts xen_end_context_switch',
    what: 'at switch-in re-enter Xen lazy MMU mode from the generic task state (enable_count) instead of the TIF flag saved at switch-out: a task preempted between its enable_count increment and arch_enter_lazy_mmu_mode() enters twice (Xen BUG)',
    source: 'commit 291b3abed657 (context-switch change of the lazy MMU nesting series), regression reported May 2026 ("x86/xen: Tolerate nested XEN_LAZY_MMU entering/leaving", Juergen Gross)',
  },
  'fault.uptodate_no_smp_wmb': {
    where: 'src/mm/memory.ts do_anonymous_page',
    what: 'no smp_wmb() in __folio_mark_uptodate between zeroing a new anonymous page and set_pte_at: on a weakly ordered CPU (arm64) the new entry may become visible before the zeroes, and a thread on another CPU reads what the frame held before (another address\'s data)',
    source: 'include/linux/page-flags.h __folio_mark_uptodate() (smp_wmb before PG_uptodate), relied on by mm/memory.c do_anonymous_page ("The memory barrier inside __folio_mark_uptodate makes sure that preceding stores to the page contents become visible before the set_pte_at() write"); constructed: the barrier removed',
  },
  'zap.off_by_one': {
    where: 'src/mm/memory.ts zap_pte_range',
    what: 'zap one PTE past the end of the range: a page of a VMA that stays mapped loses its contents',
    source: 'constructed (content oracle sensitivity)',
  },
  'fault.leak_ref': {
    where: 'src/mm/memory.ts do_anonymous_page',
    what: 'take one page reference too many on every anonymous fault (pages never come back)',
    source: 'constructed (refcount audit sensitivity)',
  },
  'munmap.double_put': {
    where: 'src/mm/mmu_gather.ts tlb_flush_mmu_free',
    what: 'drop the reference of every gathered page twice (double free)',
    source: 'constructed (allocator double-free check sensitivity)',
  },
  'munmap.leak_mmap_lock': {
    where: 'src/mm/mmap.ts do_munmap',
    what: 'return from munmap without releasing the mmap_lock (every fault and syscall of the mm then blocks)',
    source: 'constructed (hang watchdog sensitivity)',
  },
  'xenpv.leave_without_flush': {
    where: 'src/arch/x86-xenpv/index.ts arch_leave_lazy_mmu_mode',
    what: 'leave lazy MMU mode without issuing the queued multicall: page tables keep the old entries',
    source: 'arch/x86/xen/mmu_pv.c xen_leave_lazy_mmu() (xen_mc_flush), issue #4',
  },
  'arm64.lazy_no_dsb': {
    where: 'src/arch/arm64/index.ts arch_leave_lazy_mmu_mode',
    what: 'drop the DSB deferred to the end of a lazy section (queue_pte_barriers: valid kernel PTE stores only): other walkers keep seeing the old entries',
    source: 'arch/arm64/include/asm/pgtable.h arch_leave_lazy_mmu_mode() -> emit_pte_barriers()',
  },
  'lazy_mmu.active_in_irq': {
    where: 'src/mm/lazy_mmu.ts is_lazy_mmu_mode_active',
    what: 'is_lazy_mmu_mode_active() without its in_interrupt() check: an interrupt handler\'s kernel PTE store sees the interrupted task\'s lazy section as its own (its own lazy_mmu_mode_enable/disable are no-ops in interrupt context), so arm64 defers the handler\'s barrier to the task\'s leave and the handler uses the new mapping before the walker can see it',
    source: 'commit b81c688426a9 "arm64/mm: Disable barrier batching in interrupt contexts" (Ryan Roberts, May 2025; Fixes: 5fdd05efa1cd "arm64/mm: Batch barriers when updating kernel mappings"), whose message names the hazard ("the task context may have already been in lazy mmu mode, the updates would be deferred"); kept by Brodsky\'s generic layer (include/linux/pgtable.h: in interrupt context the lazy MMU mode is never active)',
  },
  'vmalloc.purge_no_flush': {
    where: 'src/mm/vmalloc.ts purge_vmap_area_lazy',
    what: 'make lazily freed vmalloc addresses reusable without flush_tlb_kernel_range: a CPU that cached a translation of a vfree\'d area (its pages already freed) uses it when the address is handed out again (a new kernel stack)',
    source: 'constructed: mm/vmalloc.c __purge_vmap_area_lazy() flushes the purged span (flush_tlb_kernel_range) before the areas go back to the free tree; vfree() frees the pages without a flush (free_unmap_vmap_area: only under DEBUG_PAGEALLOC)',
  },
  'powerpc.leave_without_flush': {
    where: 'src/arch/powerpc-hash/index.ts arch_leave_lazy_mmu_mode',
    what: 'leave lazy MMU mode without flushing the ppc64_tlb_batch: hash entries and TLBs stay valid',
    source: 'arch/powerpc/include/asm/book3s/64/tlbflush-hash.h arch_leave_lazy_mmu_mode() -> __flush_tlb_pending()',
  },
  'sparc64.leave_without_flush': {
    where: 'src/arch/sparc64/index.ts arch_leave_lazy_mmu_mode',
    what: 'leave lazy MMU mode without flushing the tlb_batch: TSB and TLB entries stay valid',
    source: 'arch/sparc/mm/tlb.c arch_leave_lazy_mmu_mode() -> flush_tlb_pending()',
  },
  's390.leave_without_apply': {
    where: 'src/arch/s390/lazy_mmu.ts leave_ipte_range',
    what: 'leave a fast-range section without applying the IPTE batch: memory keeps the old valid entries',
    source: 'Gordeev\'s s390 batch, v2 5/6 <924c91e711e8b16470eb2af7e31d0b6ffcf2940c.1776264097.git.agordeev@linux.ibm.com>: leave invalidates (IPTE range), then stores',
  },
  'lazy_mmu.nested_disable_leaves': {
    where: 'src/mm/lazy_mmu.ts lazy_mmu_mode_disable',
    what: 'a nested lazy_mmu_mode_disable() leaves the mode as the outermost one does (no nesting count): the outer section loses its batching half-way and its own disable is unbalanced',
    source: 'the behaviour before Kevin Brodsky\'s nesting series ("mm: enable lazy_mmu sections to nest", 7.0); mm/tests/lazy_mmu_mode_kunit.c lazy_mmu_mode_active catches it',
  },
  's390.wrprotect_no_ipte': {
    where: 'src/arch/s390/index.ts ptep_set_wrprotect',
    what: 'write-protect a valid PTE by a plain store, without IPTE (the x86 way): other CPUs keep writable translations; breaks the rule quoted in arch/s390/include/asm/tlb.h',
    source: 'constructed (s390 rule oracle sensitivity), after arch/s390/include/asm/pgtable.h ptep_set_wrprotect',
  },
  'mremap.flush_after_unlock': {
    where: 'src/mm/mremap.ts move_ptes',
    what: 'flush the old range after the PTLs are dropped, once at the end of move_page_tables as before 4.19, not per extent under both PTLs (truncation can free the page through the new mapping while another CPU still translates the old address)',
    source: 'CVE-2018-18281: mm/mremap.c move_ptes() before commit eb66ae030829 "mremap: properly flush TLB before releasing the page"',
  },
  'mremap.normal_pmd_no_rmap_locks': {
    where: 'src/mm/mremap.ts move_pgt_entry',
    what: 'move whole PTE/PMD tables (NORMAL_PMD/NORMAL_PUD) without the rmap locks: a walker holding the moved table\'s PTL flushes the address it computed, the old one',
    source: 'mm/mremap.c move_pgt_entry() before commit 97113eb39fa7 "mm/mremap: hold the rmap lock in write mode when moving page table entries."',
  },
  'mremap.normal_pmd_no_flush': {
    where: 'src/mm/mremap.ts move_normal_pmd',
    what: 'move a whole PTE table without flushing the old PMD range: CPUs keep translating the old addresses to pages that now live (and are freed) at the new ones',
    source: 'constructed (mm/mremap.c move_normal_pmd(): flush_tlb_range() under both PMD locks)',
  },
  'mremap.realign_unchecked': {
    where: 'src/mm/mremap.ts can_align_down',
    what: 'PMD realignment without its safety checks (the address is its VMA\'s start; nothing else is mapped between the aligned-down address and it): the first extent then moves or overwrites entries of mappings that are not moving',
    source: 'mm/mremap.c can_align_down(); mremap_test.c "mremap move within range" and "move 1mb from start" exist to catch it',
  },
  'zap.direct_deref': {
    where: 'src/mm/memory.ts zap_pte_range',
    what: 'read each PTE by direct dereference instead of ptep_get inside the lazy section',
    source: 'constructed from review of the s390 lazy MMU batch (docs/kernel-rules.md#direct-deref)',
  },
  'thp.free_before_flush': {
    where: 'src/mm/huge_memory.ts zap_huge_pmd',
    what: 'drop the huge page\'s reference as soon as its PMD is cleared, not through the mmu_gather: the 2 MiB page is freed while other CPUs still cache 4 KiB pieces of it',
    source: 'mm/huge_memory.c zap_huge_pmd(): tlb_remove_page_size(), freed after the flush',
  },
  'thp.split_no_flush': {
    where: 'src/mm/huge_memory.ts __split_huge_pmd_locked',
    what: 'invalidate the huge PMD without flushing it (pmdp_invalidate without flush_pmd_tlb_range): other CPUs keep using the huge translation after the PTE table replaced it',
    source: 'mm/huge_memory.c __split_huge_pmd_locked(): pmdp_invalidate() flushes before pmd_populate(), under the PMD lock (AMD erratum 383, arm64 break-before-make); constructed',
  },
  'mprotect.skip_flush': {
    where: 'src/mm/mprotect.ts change_pte_range',
    what: 'change a PTE\'s protection without adding it to the mmu_gather\'s flush range: after mprotect(PROT_READ) returns, other CPUs still write through their old writable entries',
    source: 'mm/mprotect.c change_pte_range(): tlb_flush_pte_range() for every changed PTE, flushed by tlb_finish_mmu() before mprotect returns; constructed',
  },
  'thp.split_no_ref': {
    where: 'src/mm/huge_memory.ts __split_huge_pmd_locked',
    what: 'split a huge PMD into 512 PTEs without taking the 511 extra folio references the new PTEs hold',
    source: 'constructed (compound refcount audit sensitivity)',
  },
  'fork.no_parent_flush': {
    where: 'src/mm/fork.ts dup_mmap',
    what: 'skip the flush of the parent mm after copy_page_range: sibling threads keep writable TLB entries for pages now shared with the child, and their writes after fork returns land in the child\'s memory',
    source: 'constructed: mm/mmap.c dup_mmap() flush_tlb_mm(oldmm) (docs/kernel-rules.md#fork-parent-flush)',
  },
  'fork.flush_after_unlock': {
    where: 'src/mm/fork.ts dup_mmap',
    what: 'flush the parent mm after its mmap_lock is released: a COW fault (or a sibling\'s write) can act on a shared page while stale writable entries survive',
    source: 'constructed (docs/kernel-rules.md#fork-parent-flush, #flush-rules T4)',
  },
  'fork.no_vma_write_lock': {
    where: 'src/mm/fork.ts dup_mmap',
    what: 'do not write-lock the parent\'s VMAs (vma_start_write) while fork copies them: a sibling thread\'s per-VMA-lock fault runs during the copy and COW-breaks (wp_page_copy) a page fork has just write-protected while other CPUs still cache it as writable; their writes land in the page the child keeps',
    source: 'commit fb49c455323f (6.5, "fork: lock VMAs of the parent process when forking"); mm/mmap.c dup_mmap() (vma_start_write on each parent VMA)',
  },
  'cow.install_before_flush': {
    where: 'src/mm/memory.ts wp_page_copy',
    what: 'install the new page over the old entry, drop the old page\'s rmap and reference, then flush: for a moment CPUs translate the address to different pages, and the old page can be reused in place by its other owner (or freed) while still translated',
    source: 'mm/memory.c wp_page_copy() order: "[patch] mm: fix a race condition under SMC + COW" <20060927151507.A12423@unix-os.sc.intel.com>, "[patch] mm: fix race in COW logic" <20080622153035.GA31114@wotan.suse.de>',
  },
  'cow.reuse_by_mapcount': {
    where: 'src/mm/memory.ts do_wp_page',
    what: 'reuse an anonymous page on a write fault when its mapcount is 1, ignoring references held without a mapping (a GUP reference of a child that unmapped it)',
    source: 'CVE-2020-29374: do_wp_page() before commits 17839856fd58 "gup: document and work around \"COW can break either way\" issue" and 09854ba94c6a "mm: do_wp_page() simplification"',
  },
  'gup.dirty_cow': {
    where: 'src/mm/gup.ts __get_user_pages',
    what: 'after a write fault that broke COW on a read-only private mapping, retry without write intent (the pre-4.8.3 GUP): if the copy is zapped meanwhile, a FOLL_FORCE write lands in the page cache',
    source: 'CVE-2016-5195 (Dirty COW), fixed by commit 19be0eaffa3a "mm: remove gup_flags FOLL_WRITE games from __get_user_pages()"',
  },
  'gup.fast_no_seqcount': {
    where: 'src/mm/gup.ts gup_fast',
    what: 'GUP-fast does not check mm->write_protect_seq: a pin can land between fork\'s "maybe pinned?" test and its write-protection of the entry, and the pinned page ends up shared with the child',
    source: 'mm/gup.c gup_fast() before commit 57efa1fe5957 "mm/gup: prevent gup_fast from racing with COW during fork"',
  },
  'fault.i_mmap_before_folio_lock': {
    where: 'src/mm/memory.ts filemap_page',
    what: 'a file fault looks its page up and locks it under i_mmap_rwsem (i_mmap_rwsem -> folio lock), against folio lock -> i_mmap_rwsem of reclaim (try_to_unmap) and truncation (unmap_mapping_folio): an ABBA that deadlocks once an i_mmap writer waits',
    source: 'mm/hugetlb.c hugetlb_fault() after commit c0d0381ade79 "hugetlbfs: use i_mmap_rwsem for more pmd sharing synchronization" (i_mmap_rwsem taken before the page lock, against the documented order of mm/rmap.c), reworked by 40549ba8f8e0 "hugetlb: use new vma_lock for pmd sharing synchronization"; lockdep (src/hw/lockdep.ts) sensitivity',
  },
  'sim.crash_cpu_worker': {
    where: 'src/engine/program.ts TaskRunner.step',
    what: 'throw inside the CPU thread after 1000 operations (not a kernel bug: tests that a crashed thread ends the run with a report)',
    source: 'test of the runner',
  },
} as const satisfies Record<string, Omit<KnobInfo, 'name'>>;

export type KnobName = keyof typeof KNOBS;
export const KNOB_NAMES = Object.keys(KNOBS) as KnobName[];

/** The knobs in force on this thread (each thread sets them from the run's config). */
export const knobs: Record<KnobName, boolean> = Object.fromEntries(KNOB_NAMES.map((k) => [k, false])) as Record<KnobName, boolean>;

export function setKnobs(on: readonly string[]): void {
  for (const k of KNOB_NAMES) knobs[k] = false;
  for (const k of on) {
    if (!(k in KNOBS)) throw new Error(`unknown bug knob '${k}' (known: ${KNOB_NAMES.join(', ')})`);
    knobs[k as KnobName] = true;
  }
}
