// Kernel page tables (init_mm), vmalloc/vfree, vmap'd kernel stacks and the
// DEBUG_PAGEALLOC linear-map changes of an interrupt handler (issue #11 item 2).
//
// init_mm has its own mm record (Layout.initMm, never handed out by mm_alloc)
// whose tables map the kernel half of the address space (src/hw/layout.ts):
//  - the vmalloc area [VMALLOC_START, VMALLOC_END): VMAP_SLOTS slots of
//    VMAP_SLOT_PAGES pages, the first pages of a slot mapped, the rest its
//    guard gap (mm/vmalloc.c: every vm_struct has a guard page unless
//    VM_NO_GUARD). alloc_vmap_area takes the lowest free slot, as
//    __alloc_vmap_area -> find_vmap_lowest_match takes the lowest free block;
//  - the linear map at PAGE_OFFSET, one PTE per data frame, its tables built at
//    boot (arch/arm64/mm/mmu.c map_mem with NO_BLOCK_MAPPINGS: DEBUG_PAGEALLOC
//    forces page granularity, force_pte_mapping()).
// Every CPU walks them for kernel addresses (src/hw/walker.ts walk_kernel) and
// caches them as global entries (KERNEL_ASID) that only flush_tlb_kernel_range
// or a full flush removes. Kernel code reaches them with Cpu.kread/kwrite.
//
// vmalloc (mm/vmalloc.c __vmalloc_node_range): alloc_vmap_area, then the pages
// (__vmalloc_area_node -> vm_area_alloc_pages), then vmap_pages_range ->
// vmap_pages_pte_range, which stores the PTEs inside a lazy MMU section
// (lazy_mmu_mode_enable since 44562c71e2cf "mm/vmalloc: Enter lazy mmu mode
// while manipulating vmalloc ptes", Ryan Roberts, 6.16). No TLB flush: a PTE
// that was none cannot be cached. On arm64 the barrier that makes a valid
// kernel PTE visible to the walker (__set_pte_complete -> queue_pte_barriers)
// is deferred to the section's end (emit_pte_barriers at leave).
//
// vfree (mm/vmalloc.c vfree -> remove_vm_area -> free_unmap_vmap_area):
// vunmap_range_noflush (vunmap_pte_range clears the PTEs inside a lazy section),
// flush_tlb_kernel_range only if debug_pagealloc_enabled_static(), then
// free_vmap_area_noflush puts the address on the purge list (vmap_lazy_nr) and
// vfree frees the pages. The address is not reused before
// purge_vmap_area_lazy -> __purge_vmap_area_lazy has flushed the purged span
// with flush_tlb_kernel_range (run when vmap_lazy_nr passes lazy_max_pages(),
// or by alloc_vmap_area when it finds no room: "purge and retry"). Without
// DEBUG_PAGEALLOC the pages are thus freed while other CPUs may still cache
// their translation; nobody may use a vfree'd address, and the flush comes
// before the address maps anything else. vfree in interrupt context defers to
// a work item (vfree -> vfree_atomic -> delayed_vfree_work): here the next
// vmalloc or vfree in process context on that CPU runs it.
//
// Kernel stacks (CONFIG_VMAP_STACK, kernel/fork.c): dup_task_struct ->
// alloc_thread_stack_node -> __vmalloc_node_range(THREAD_SIZE), then
// set_task_stack_end_magic writes STACK_END_MAGIC through the new mapping at
// once; schedule_debug checks it at every schedule (CONFIG_SCHED_STACK_END_CHECK,
// task_stack_end_corrupted); the child's first run writes its frame. The model
// frees the stack when the task exits (free_thread_stack -> vfree; the kernel
// does it from an RCU callback, i.e. vfree_atomic, or keeps it in the per-CPU
// cached_stacks: not modelled, every fork maps a new stack).
//
// The interrupt handler (src/hw/irq.ts, on with a scenario's machine.irq): a
// driver's GFP_ATOMIC page allocation and free with DEBUG_PAGEALLOC, which
// maps the page in the linear map when it is handed out and unmaps it when it
// is freed (mm/page_alloc.c post_alloc_hook -> debug_pagealloc_map_pages,
// free_pages_prepare -> debug_pagealloc_unmap_pages -> __kernel_map_pages).
// arm64 (arch/arm64/mm/pageattr.c): __kernel_map_pages -> set_memory_valid ->
// __change_memory_common -> update_range_prot, which stores the PTE inside
// lazy_mmu_mode_enable/disable (a no-op in interrupt context), and flushes with
// flush_tlb_kernel_range only when bits other than PTE_VALID change ("If the
// memory is being switched from present-invalid to valid without changing any
// other bits then a TLBI isn't required"): making a page valid relies on the
// barrier of __set_pte_complete alone. x86 (arch/x86/mm/pat/set_memory.c
// __kernel_map_pages): the stores, then __flush_tlb_all() on this CPU only ("We
// should perform an IPI and flush all tlbs, but that can deadlock->flush only
// current cpu"). Arches say which with Arch.kernel_map_pages_flush.
// Only the handler's pages go through the linear map here: process-context
// allocations do not toggle it (fewer linear-map changes than the kernel makes,
// none of them in a lazy section of their own).

import { type Cpu, current } from '../hw/cpu.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import {
  type Views, mmWord, tableEntry, frameWord, vmapSlot, MM_PGD, MM_IN_USE, PAGE_SIZE, PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT, PGDIR_SHIFT,
  VMALLOC_START, VMAP_SLOTS, VMAP_SLOT_PAGES, VMAP_LOCK, VMAP_PURGE_LOCK, VMAP_LAZY_NR, VS_FREE, VS_BUSY, VS_LAZY, VS_PURGING,
  PAGE_OFFSET, KERNEL_ASID, PTRS_PER_TABLE, FM_FLAGS, PG_TABLE, PG_FREE,
  ST_VMALLOCS, ST_VFREES, ST_VMAP_PURGES, ST_KERNEL_TLB_FLUSHES, ST_KERNEL_SPURIOUS, ST_IRQ_KERNEL_MAPS,
} from '../hw/layout.ts';
import { pfn_pte, pte_pfn, _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY } from '../hw/pte.ts';
import { pgtIndex } from '../hw/walker.ts';
import { EV } from '../hw/trace.ts';
import { register_irq_handler } from '../hw/irq.ts';
import { arch, pgd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset, set_pte_kernel, ptep_get_and_clear_kernel, ptep_get } from './pgtable.ts';
import { flush_tlb_kernel_range_ipi } from '../arch/generic.ts';
import { alloc_page, alloc_pt_page, free_pt_page, put_page } from './page_alloc.ts';
import { lazy_mmu_mode_enable, lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { knobs } from '../inject/knobs.ts';

/** PAGE_KERNEL: present, writable, young, dirty; no _PAGE_USER (pte_valid_not_user on arm64) */
export const PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY;
/** THREAD_SIZE (16 KiB on x86-64 and arm64 with 4 KiB pages), in pages */
export const THREAD_SIZE_PAGES = 4;
/** include/uapi/linux/magic.h STACK_END_MAGIC */
export const STACK_END_MAGIC = 0x57ac6e9d;
/**
 * lazy_max_pages(): the kernel lets fls(num_online_cpus()) * 32 MiB of vfree'd
 * address space wait for a purge; the model's vmalloc area is 16 MiB and a run
 * is short, so 64 pages (16 kernel stacks) wait: purges, and the reuse of
 * addresses after them, come often. Purging sooner than the kernel flushes no
 * less and frees nothing later.
 */
export const LAZY_MAX_PAGES = 64;

/** init_mm's mm index */
export const init_mm = (): number => current.V.L.initMm;
export const slot_addr = (slot: number): number => VMALLOC_START + slot * VMAP_SLOT_PAGES * PAGE_SIZE;
const addr_slot = (addr: number): number => Math.floor((addr - VMALLOC_START) / (VMAP_SLOT_PAGES * PAGE_SIZE));
/** the linear-map address of a frame (page_address / __va) */
export const page_address = (pfn: number): number => PAGE_OFFSET + pfn * PAGE_SIZE;

/** DEBUG_PAGEALLOC (debug_pagealloc_enabled_static): on in a machine with the interrupt source (set per host) */
let debugPagealloc = false;
export function set_debug_pagealloc(on: boolean): void {
  debugPagealloc = on;
}
export const debug_pagealloc_enabled = (): boolean => debugPagealloc;

// ---- init_mm's tables ----------------------------------------------------------------

/** init_mm's PGD (swapper_pg_dir), allocated on first use (boot does it: kernel_page_tables_init). */
function init_mm_pgd(cpu: Cpu): boolean {
  const { I, L } = cpu.V;
  const w = mmWord(L, L.initMm, MM_PGD);
  if (Atomics.load(I, w) !== 0) return true;
  const pgd = alloc_pt_page(L.initMm, 4);
  if (pgd === 0) return false;
  if (Atomics.compareExchange(I, w, 0, pgd) !== 0) free_pt_page(pgd);
  // init_mm is not a user mm: its MM_IN_USE stays 0, so the audit's user-mm walk and
  // teardown's exit_mmap skip it (mm_alloc never reaches its index anyway)
  Atomics.store(I, mmWord(L, L.initMm, MM_IN_USE), 0);
  return true;
}

/** The PTE of a kernel address, allocating the tables on the way (process context, or boot); -1 when out of memory. */
function kernel_pte_alloc(addr: number): number {
  const mm = init_mm();
  if (!init_mm_pgd(current)) return -1;
  const pgdp = pgd_offset(mm, addr);
  const pudp = pud_alloc(mm, pgdp, addr);
  if (pudp < 0) return -1;
  const pmdp = pmd_alloc(mm, pudp, addr);
  if (pmdp < 0) return -1;
  if (!__pte_alloc(mm, pmdp)) return -1;
  return pte_offset(pmdp, addr);
}

/** The PTE of a kernel address whose tables exist (virt_to_kpte / vmalloc_to_pte), or -1. */
export function kernel_pte_lookup(V: Views, addr: number): number {
  const { I, L } = V;
  let table = I[mmWord(L, L.initMm, MM_PGD)];
  if (table === 0) return -1;
  const shifts = [PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT];
  for (const sh of shifts) {
    const e = Atomics.load(I, tableEntry(L, table, pgtIndex(addr, sh)));
    if ((e & _PAGE_PRESENT) === 0) return -1;
    table = pte_pfn(e);
  }
  return tableEntry(L, table, pgtIndex(addr, PAGE_SHIFT));
}

/**
 * Boot (paging_init / map_mem): init_mm's PGD and the linear map's tables for
 * every data frame, all entries invalid (DEBUG_PAGEALLOC: free pages are not
 * mapped). The interrupt handler never allocates page tables.
 */
export function kernel_page_tables_init(): void {
  const L = current.V.L;
  for (let pfn = L.dataStart; pfn < L.nframes; pfn += PTRS_PER_TABLE) {
    if (kernel_pte_alloc(page_address(pfn)) < 0) throw new Error('boot: out of page-table frames for the linear map');
  }
}

// ---- flush_tlb_kernel_range --------------------------------------------------------

/**
 * flush_tlb_kernel_range: every CPU drops its global entries of [start, end).
 * The arch's own (arm64: DSB ISHST; TLBI VAALE1IS per page; DSB ISH), else
 * x86's (arch/x86/mm/tlb.c flush_tlb_kernel_range: on_each_cpu, an IPI to every
 * online CPU, lazy ones included, and wait): src/arch/generic.ts.
 */
export function flush_tlb_kernel_range(start: number, end: number): void {
  const cpu = current;
  cpu.stat(ST_KERNEL_TLB_FLUSHES);
  cpu.ring.log(EV.FLUSH_KERNEL, start, end);
  (arch.flush_tlb_kernel_range ?? flush_tlb_kernel_range_ipi)(start, end);
}

// ---- vmap / vunmap ------------------------------------------------------------------

/**
 * mm/vmalloc.c vmap_pages_pte_range: one PTE table's part of the area, inside a
 * lazy MMU section. Gordeev's series (every version, --lazy-series; 'none' is
 * mainline's plain lazy_mmu_mode_enable()) converts this call site and
 * vunmap_pte_range to the range-aware entry with &init_mm and the table's range:
 * only s390 uses the range (src/arch/s390/lazy_mmu.ts), every other arch enters
 * as for a plain enable.
 */
function vmap_pages_pte_range(addr: number, end: number, pfns: number[], at: number): number {
  const mm = init_mm();
  const ptep0 = kernel_pte_alloc(addr);
  if (ptep0 < 0) return -1;
  lazy_mmu_mode_enable_with_ptes(mm, addr, end, ptep0);
  let i = at;
  for (let a = addr, ptep = ptep0; a < end; a += PAGE_SIZE, ptep++, i++) {
    if (ptep_get(ptep) !== 0) {
      const c = current;
      c.host.hooks.violation({ kind: 'vmalloc', cpu: c.id, va: a, message: `cpu ${c.id}: vmap_pages_pte_range: the PTE of 0x${a.toString(16)} is not none (WARN_ON(!pte_none(ptep_get(pte))))` });
    }
    set_pte_kernel(mm, a, ptep, pfn_pte(pfns[i], PAGE_KERNEL));
  }
  lazy_mmu_mode_disable();
  return i;
}

/** vmap_pages_range(_noflush): map pfns at [addr, addr + n pages), PMD by PMD. flush_cache_vmap: nothing on x86 and arm64. */
export function vmap_pages_range(addr: number, pfns: number[]): boolean {
  const end = addr + pfns.length * PAGE_SIZE;
  let i = 0;
  for (let a = addr; a < end;) {
    const next = Math.min(end, (Math.floor(a / 2 ** PMD_SHIFT) + 1) * 2 ** PMD_SHIFT);
    i = vmap_pages_pte_range(a, next, pfns, i);
    if (i < 0) return false;
    a = next;
  }
  current.ring.log(EV.VMAP, addr, pfns.length);
  return true;
}

/** vunmap_range_noflush -> vunmap_pte_range: clear the PTEs inside a lazy MMU section; no flush, no table freed. */
export function vunmap_range_noflush(start: number, end: number): void {
  const mm = init_mm();
  for (let a = start; a < end;) {
    const next = Math.min(end, (Math.floor(a / 2 ** PMD_SHIFT) + 1) * 2 ** PMD_SHIFT);
    const ptep0 = kernel_pte_lookup(current.V, a);
    if (ptep0 >= 0) {
      lazy_mmu_mode_enable_with_ptes(mm, a, next, ptep0);
      for (let x = a, ptep = ptep0; x < next; x += PAGE_SIZE, ptep++) ptep_get_and_clear_kernel(mm, x, ptep);
      lazy_mmu_mode_disable();
    }
    a = next;
  }
  current.ring.log(EV.VUNMAP, start, (end - start) / PAGE_SIZE);
}

// ---- the vmalloc allocator -------------------------------------------------------

function sleeping_in_irq(cpu: Cpu, what: string): boolean {
  if (!cpu.in_interrupt() && cpu.irqOff === 0) return false;
  cpu.host.hooks.violation({
    kind: 'sleep-in-atomic', cpu: cpu.id,
    message: `cpu ${cpu.id}: BUG: sleeping function called from invalid context: ${what} (might_sleep) in ${cpu.in_interrupt() ? 'interrupt context' : 'an interrupts-disabled section'}`,
  });
  return true;
}

/** alloc_vmap_area: the lowest free slot; none free: purge the lazily freed ones and retry once. */
function alloc_vmap_area(): number {
  const cpu = current;
  const { I, L } = cpu.V;
  for (let purged = 0; purged < 2; purged++) {
    spin_lock(L.vmap + VMAP_LOCK);
    for (let s = 0; s < VMAP_SLOTS; s++) {
      const w = vmapSlot(L, s);
      if (I[w] === VS_FREE) {
        I[w] = VS_BUSY;
        spin_unlock(L.vmap + VMAP_LOCK);
        return s;
      }
    }
    spin_unlock(L.vmap + VMAP_LOCK);
    if (purged === 0) purge_vmap_area_lazy();
  }
  return -1;
}

/**
 * purge_vmap_area_lazy (__purge_vmap_area_lazy, under vmap_purge_lock): take
 * every lazily freed area, flush_tlb_kernel_range over their span, then make
 * their addresses free. Until then no CPU can be handed the address.
 */
export function purge_vmap_area_lazy(): void {
  const cpu = current;
  const { I, L } = cpu.V;
  spin_lock(L.vmap + VMAP_PURGE_LOCK);
  let lo = -1;
  let hi = -1;
  let pages = 0;
  spin_lock(L.vmap + VMAP_LOCK);
  for (let s = 0; s < VMAP_SLOTS; s++) {
    const w = vmapSlot(L, s);
    if (I[w] !== VS_LAZY) continue;
    I[w] = VS_PURGING;
    pages += I[w + 1];
    if (lo < 0) lo = s;
    hi = s;
  }
  spin_unlock(L.vmap + VMAP_LOCK);
  if (lo >= 0) {
    // BUG (injected): the addresses become reusable while CPUs may still cache translations to the freed pages
    if (!knobs['vmalloc.purge_no_flush']) flush_tlb_kernel_range(slot_addr(lo), slot_addr(hi + 1));
    spin_lock(L.vmap + VMAP_LOCK);
    for (let s = lo; s <= hi; s++) if (I[vmapSlot(L, s)] === VS_PURGING) I[vmapSlot(L, s)] = VS_FREE;
    Atomics.sub(I, L.vmap + VMAP_LAZY_NR, pages);
    spin_unlock(L.vmap + VMAP_LOCK);
    cpu.stat(ST_VMAP_PURGES);
  }
  spin_unlock(L.vmap + VMAP_PURGE_LOCK);
}

/** vfree()s deferred from interrupt context (vfree_atomic), per host thread: run by this CPU's next vmalloc/vfree. */
const deferred: { cpu: number; addr: number }[] = [];
function drain_deferred(cpu: Cpu): void {
  for (let k = 0; k < deferred.length; k++) {
    if (deferred[k].cpu !== cpu.id) continue;
    const { addr } = deferred[k];
    deferred.splice(k--, 1);
    vfree(addr);
  }
}

/** vmalloc(pages * PAGE_SIZE): the area's address, or 0 (no room, no memory, or called where it may not sleep). */
export function vmalloc(pages: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  if (pages < 1 || pages >= VMAP_SLOT_PAGES) throw new RangeError(`vmalloc: ${pages} pages (the model's areas hold 1..${VMAP_SLOT_PAGES - 1} pages and a guard page)`);
  if (sleeping_in_irq(cpu, 'vmalloc')) return 0;
  drain_deferred(cpu);
  const slot = alloc_vmap_area();
  if (slot < 0) return 0;
  const w = vmapSlot(L, slot);
  const pfns: number[] = [];
  for (let i = 0; i < pages; i++) {
    const pfn = alloc_page(false);
    if (pfn === 0) break;
    pfns.push(pfn);
  }
  const addr = slot_addr(slot);
  if (pfns.length < pages || !vmap_pages_range(addr, pfns)) {
    // __vmalloc_area_node's failure path: vfree what was set up
    for (let i = 0; i < pfns.length; i++) I[w + 2 + i] = pfns[i];
    I[w + 1] = pfns.length;
    vfree(addr);
    return 0;
  }
  for (let i = 0; i < pages; i++) I[w + 2 + i] = pfns[i];
  I[w + 1] = pages;
  cpu.stat(ST_VMALLOCS);
  return addr;
}

/** vfree: unmap (no flush unless DEBUG_PAGEALLOC), put the address on the purge list, free the pages. */
export function vfree(addr: number): void {
  const cpu = current;
  const { I, L } = cpu.V;
  if (cpu.in_interrupt()) {
    deferred.push({ cpu: cpu.id, addr }); // vfree_atomic: delayed_vfree_work
    return;
  }
  const slot = addr_slot(addr);
  const w = vmapSlot(L, slot);
  if (slot < 0 || slot >= VMAP_SLOTS || slot_addr(slot) !== addr || I[w] !== VS_BUSY) {
    cpu.host.hooks.violation({ kind: 'vmalloc', cpu: cpu.id, va: addr, message: `cpu ${cpu.id}: vfree(0x${addr.toString(16)}): not a vmalloc area in use (Trying to vfree() nonexistent vm area)` });
    return;
  }
  const pages = I[w + 1];
  const end = addr + pages * PAGE_SIZE;
  // remove_vm_area hands back the vm_struct with its pages[]: they are ours to free
  // even after the address went back to the allocator (which reuses the slot's words)
  const pfns: number[] = [];
  for (let i = 0; i < pages; i++) pfns.push(I[w + 2 + i]);
  vunmap_range_noflush(addr, end); // free_unmap_vmap_area
  if (debugPagealloc) flush_tlb_kernel_range(addr, end);
  spin_lock(L.vmap + VMAP_LOCK); // free_vmap_area_noflush
  I[w] = VS_LAZY;
  const lazy = Atomics.add(I, L.vmap + VMAP_LAZY_NR, pages) + pages;
  spin_unlock(L.vmap + VMAP_LOCK);
  for (let i = 0; i < pages; i++) put_page(pfns[i], addr + i * PAGE_SIZE); // vfree: __free_page of vm->pages[]
  cpu.stat(ST_VFREES);
  if (lazy > LAZY_MAX_PAGES) purge_vmap_area_lazy(); // the kernel schedules drain_vmap_work; the model purges now
  drain_deferred(cpu);
}

// ---- kernel stacks ----------------------------------------------------------------

/** kernel/fork.c alloc_thread_stack_node (CONFIG_VMAP_STACK) + set_task_stack_end_magic: the stack's lowest address, or 0. */
export function alloc_thread_stack_node(): number {
  const cpu = current;
  const stack = vmalloc(THREAD_SIZE_PAGES);
  if (stack === 0) return 0;
  cpu.kwrite(stack, STACK_END_MAGIC); // *end_of_stack(tsk) = STACK_END_MAGIC, through the new mapping
  return stack;
}

/** task_stack_end_corrupted (schedule_debug, CONFIG_SCHED_STACK_END_CHECK): false after an oops or a corrupt stack end. */
export function check_stack_end(stack: number): boolean {
  const cpu = current;
  if (!cpu.kread(stack)) return false;
  if (cpu.value !== STACK_END_MAGIC) {
    cpu.host.hooks.violation({
      kind: 'stack-end-corrupted', cpu: cpu.id, va: stack,
      message: `cpu ${cpu.id} task ${cpu.curTask}: Kernel panic - not syncing: corrupted stack end detected inside scheduler (0x${stack.toString(16)} holds 0x${(cpu.value >>> 0).toString(16)})`,
    });
    return false;
  }
  return true;
}

/** kernel/fork.c free_thread_stack (here when the task exits): vfree. */
export function free_thread_stack(stack: number): void {
  vfree(stack);
}

// ---- the kernel fault on a kernel address --------------------------------------------

/**
 * A kernel access found no translation for a kernel address (arm64
 * do_translation_fault -> do_bad_area -> __do_kernel_fault; x86
 * do_kern_addr_fault -> bad_area_nosemaphore -> page_fault_oops). arm64 first
 * asks is_spurious_el1_translation_fault (arch/arm64/mm/fault.c): an AT S1E1R of
 * the address; if the walk now succeeds the fault was spurious and the access
 * is retried (Arch.is_spurious_kernel_fault). Otherwise: "Unable to handle
 * kernel paging request" on an address the kernel itself mapped.
 */
export function do_kern_addr_fault(cpu: Cpu, va: number, write: boolean): boolean {
  if (arch.is_spurious_kernel_fault?.(cpu, va, write)) {
    cpu.stat(ST_KERNEL_SPURIOUS);
    return true;
  }
  const ptep = kernel_pte_lookup(cpu.V, va);
  const inMemory = ptep >= 0 ? Atomics.load(cpu.I, ptep) : 0;
  const pending = ptep >= 0 && arch.pte_memory_stale(ptep);
  const where = va >= PAGE_OFFSET ? 'linear-map' : 'vmalloc';
  cpu.host.hooks.violation({
    kind: 'kernel-paging-request', cpu: cpu.id, va,
    message: `cpu ${cpu.id}${cpu.in_interrupt() ? ' (in interrupt)' : ''}: Unable to handle kernel paging request at virtual address 0x${va.toString(16)} (${write ? 'write' : 'read'} of a ${where} address the kernel mapped): ` +
      (pending ? `this CPU stored the valid PTE but ${arch.name === 'arm64' ? 'its barrier has not been issued: the walker does not see it (the DSB of __set_pte_complete / emit_pte_barriers is missing)' : 'the store has not reached memory yet: the walker does not see it (the arch deferred it in a lazy MMU section)'}`
        : (inMemory & _PAGE_PRESENT) !== 0 ? 'the PTE is valid in memory' : 'the PTE is not valid in memory'),
  });
  return false;
}

// ---- DEBUG_PAGEALLOC and the interrupt handler ---------------------------------------

/**
 * __kernel_map_pages(page, 1, enable) on the linear map: set_memory_valid on
 * arm64 (update_range_prot's lazy section, TLBI only when invalidating), the
 * stores and a local __flush_tlb_all on x86 (Arch.kernel_map_pages_flush).
 */
export function __kernel_map_pages(pfn: number, enable: boolean): void {
  const cpu = current;
  const va = page_address(pfn);
  const ptep = kernel_pte_lookup(cpu.V, va);
  if (ptep < 0) return;
  const mm = init_mm();
  lazy_mmu_mode_enable(); // update_range_prot: a no-op in interrupt context
  const old = ptep_get(ptep);
  set_pte_kernel(mm, va, ptep, enable ? pfn_pte(pfn, PAGE_KERNEL) : old & ~_PAGE_PRESENT); // set_memory_valid(addr, 1, 0): PTE_VALID cleared, the rest kept
  lazy_mmu_mode_disable();
  if (cpu.in_interrupt()) cpu.stat(ST_IRQ_KERNEL_MAPS);
  cpu.ring.log(EV.KERNEL_MAP, va, enable ? 1 : 0);
  if (arch.kernel_map_pages_flush === 'local') {
    // x86: __flush_tlb_all() on this CPU. It drops the user entries too; the model drops
    // the kernel ones only: no kernel path relies on this debug flush for user entries
    cpu.tlb.flushAsid(KERNEL_ASID);
  } else if (!enable) {
    flush_tlb_kernel_range(va, va + PAGE_SIZE); // arm64 __change_memory_common: bits other than PTE_VALID... or PTE_VALID cleared
  }
}

/**
 * The device interrupt handler: a driver allocates a buffer page
 * (GFP_ATOMIC), DEBUG_PAGEALLOC maps it, the driver writes and reads it through
 * its linear-map address, frees it, DEBUG_PAGEALLOC unmaps it.
 */
export function debug_pagealloc_irq(cpu: Cpu): void {
  const { I, L } = cpu.V;
  if (I[mmWord(L, L.initMm, MM_PGD)] === 0) return; // no linear map (a machine built without boot())
  const pfn = alloc_page(false);
  if (pfn === 0) return;
  __kernel_map_pages(pfn, true);
  const va = page_address(pfn);
  const tag = (0x1a000000 | ((cpu.id & 0xff) << 16) | (cpu.rng.u32() & 0xffff)) | 0;
  if (cpu.kwrite(va, tag) && cpu.kread(va) && cpu.value !== tag) {
    cpu.host.hooks.violation({ kind: 'content', cpu: cpu.id, va, pfn, message: `cpu ${cpu.id} (in interrupt): read 0x${(cpu.value >>> 0).toString(16)} back from its buffer page at 0x${va.toString(16)} after writing 0x${(tag >>> 0).toString(16)}` });
  }
  __kernel_map_pages(pfn, false);
  put_page(pfn);
}
register_irq_handler(debug_pagealloc_irq);

// ---- teardown and audit helpers ----------------------------------------------------

/** After every CPU stopped: unmap and free every area still allocated, then init_mm's tables. */
export function vmalloc_teardown(): void {
  const cpu = current;
  const { I, L } = cpu.V;
  drain_deferred(cpu);
  for (let s = 0; s < VMAP_SLOTS; s++) {
    const w = vmapSlot(L, s);
    if (I[w] === VS_BUSY) {
      const addr = slot_addr(s);
      const pages = I[w + 1];
      for (let i = 0; i < pages; i++) {
        const ptep = kernel_pte_lookup(cpu.V, addr + i * PAGE_SIZE);
        if (ptep >= 0) Atomics.store(I, ptep, 0);
        put_page(I[w + 2 + i]);
      }
    }
    I[w] = VS_FREE;
  }
  I[L.vmap + VMAP_LAZY_NR] = 0;
  const pgd = I[mmWord(L, L.initMm, MM_PGD)];
  if (pgd !== 0) free_kernel_table(cpu, pgd, 0);
  I[mmWord(L, L.initMm, MM_PGD)] = 0;
}

function free_kernel_table(cpu: Cpu, table: number, level: number): void {
  const { I, L } = cpu.V;
  if (level < 3) {
    for (let i = 0; i < PTRS_PER_TABLE; i++) {
      const e = I[tableEntry(L, table, i)];
      if ((e & _PAGE_PRESENT) !== 0) free_kernel_table(cpu, pte_pfn(e), level + 1);
    }
  } else {
    for (let i = 0; i < PTRS_PER_TABLE; i++) I[tableEntry(L, table, i)] = 0;
  }
  if ((I[frameWord(L, table, FM_FLAGS)] & (PG_TABLE | PG_FREE)) === PG_TABLE) free_pt_page(table);
}

/** The audit's view of init_mm (src/oracles/audit.ts): its table frames, the frames its vmalloc PTEs map (one reference each: vm->pages), and linear-map PTEs of free frames. */
export function init_mm_references(V: Views, table: (pfn: number) => void, vmallocPage: (pfn: number) => void, problem: (s: string) => void): void {
  const { I, L } = V;
  const pgd = I[mmWord(L, L.initMm, MM_PGD)];
  if (pgd === 0) return;
  const walk = (t: number, level: number, base: number): void => {
    table(t);
    const span = 2 ** (PGDIR_SHIFT - 9 * level);
    for (let i = 0; i < PTRS_PER_TABLE; i++) {
      const e = I[tableEntry(L, t, i)];
      if ((e & _PAGE_PRESENT) === 0) continue;
      const va = base + i * span;
      if (level < 3) walk(pte_pfn(e), level + 1, va);
      else if (va >= PAGE_OFFSET) {
        if (I[frameWord(L, pte_pfn(e), FM_FLAGS)] & PG_FREE) problem(`init_mm: the linear map maps free pfn ${pte_pfn(e)} at 0x${va.toString(16)} (DEBUG_PAGEALLOC unmaps a page before freeing it)`);
      } else vmallocPage(pte_pfn(e));
    }
  };
  walk(pgd, 0, 0);
}

