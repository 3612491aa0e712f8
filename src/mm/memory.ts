// mm/memory.c: the page fault (handle_mm_fault, do_anonymous_page, do_wp_page),
// and unmapping (unmap_page_range, zap_pte_range, free_pgtables); the fault's
// entry (arch/x86/mm/fault.c do_user_addr_fault): the per-VMA lock first, the
// mmap_lock when that fails.

import { type Cpu, current, VM_FAULT_OK, VM_FAULT_SIGSEGV, VM_FAULT_OOM } from '../hw/cpu.ts';
import {
  type Views, mmWord, tableEntry, frameWord, dataWord, fileWord, MM_RSS, MM_PT_LOCK, MM_PT_PAGES, MM_LOCK_SEQ, FM_FLAGS, PG_ANON,
  VMA_ANON, H_NEXT_ANON, ST_RMAP_UNMAP, PTRS_PER_TABLE, PGDIR_SIZE, PUD_SIZE, PMD_SIZE, PAGE_SIZE, WORDS_PER_PAGE,
  PG_ANON_EXCLUSIVE, ST_COW_COPY, ST_COW_REUSE, ST_VMA_LOCK_SUCCESS, ST_VMA_LOCK_RETRY, ST_VMA_LOCK_RACED, FILE_DEV_PFN, vmaF,
} from '../hw/layout.ts';
import {
  pte_none, pte_present, pte_write, pte_pfn, pfn_pte, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_SPECIAL, _PAGE_PSE,
} from '../hw/pte.ts';
import { spin_lock, spin_unlock } from '../hw/locks.ts';
import { sb_store, smp_wmb, store_order } from '../hw/store_buffer.ts';
import { EV } from '../hw/trace.ts';
import {
  arch, pgd_offset, pud_alloc, pmd_alloc, __pte_alloc, pte_offset_map_lock, pte_unmap_unlock, ptep_lockptr, ptep_get,
  set_pte_at, ptep_get_and_clear_full, ptep_clear_flush, ptep_set_access_flags, pte_deref, flush_tlb_page,
} from './pgtable.ts';
import { knobs } from '../inject/knobs.ts';
import { alloc_page, get_page, put_page, page_mapcount_inc, page_mapcount_dec, zero_pfn, page_ref, page_mapcount } from './page_alloc.ts';
import { type Vma, vma_lookup, vma_rec, vma_read_rec, vma_slot_of, vma_set_anon_vma, find_mergeable_anon_vma } from './vma.ts';
import { lock_vma_under_rcu, vma_end_read, mmap_read_lock, mmap_read_unlock, mmap_read_trylock } from './mmap_lock.ts';
import { shmem_get_folio_locked, unlock_page } from './shmem.ts';
import { i_mmap_lock_read, i_mmap_unlock_read } from './rmap.ts';
import { lazy_mmu_mode_enable_with_ptes, lazy_mmu_mode_disable } from './lazy_mmu.ts';
import { type mmu_gather, __tlb_remove_page, tlb_flush_pte_range, tlb_flush_mmu_tlbonly, tlb_flush_mmu, tlb_remove_table } from './mmu_gather.ts';
import { huge_pmd_fault, huge_pud_fault, zap_huge_pmd_range, zap_huge_pud_range, VM_FAULT_FALLBACK } from './huge_memory.ts';
import { VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYWRITE } from './vm_flags.ts';

/** addr rounded up to the next multiple of size, capped at end (pgd_addr_end etc.). */
export function addr_end(addr: number, end: number, size: number): number {
  const b = (Math.floor(addr / size) + 1) * size;
  return b < end ? b : end;
}

/** VM_FAULT_RETRY (include/linux/mm_types.h): the fault gave up its lock; take the mmap_lock and fault again. */
export const VM_FAULT_RETRY = 0x400;
/** FAULT_FLAG_VMA_LOCK: the fault holds the VMA's read lock, not the mmap_lock */
export const FAULT_FLAG_VMA_LOCK = 1 << 12;

/**
 * struct vm_fault, the part our fault path carries: the VMA's record (its
 * identity: its address-order slot may move under a per-VMA-lock fault) and
 * FAULT_FLAG_VMA_LOCK when the fault holds the VMA lock rather than the mmap_lock.
 */
export interface vm_fault {
  mm: number;
  rec: number;
  flags: number;
}

/** access_error: may this access touch this VMA at all? (arch/x86/mm/fault.c) */
function access_error(vma: Vma, write: boolean): boolean {
  return write ? (vma.flags & VM_WRITE) === 0 : (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) === 0;
}

/**
 * The fault entry point registered with the hardware: do_user_addr_fault
 * (arch/x86/mm/fault.c, Linux 6.18; arm64 do_page_fault, powerpc
 * ___do_page_fault and s390 do_exception take the same steps):
 *
 *  1. lock_vma_under_rcu: the VMA, read-locked, without the mmap_lock. A bad
 *     access is refused under that lock (counted a success, as the kernel does);
 *     otherwise handle_mm_fault with FAULT_FLAG_VMA_LOCK. Unless it returns
 *     VM_FAULT_RETRY (having dropped the VMA lock itself), the fault is done:
 *     vma_end_read.
 *  2. Otherwise (no VMA lock to be had: VMA_LOCK_ABORT; or VM_FAULT_RETRY:
 *     VMA_LOCK_RETRY) lock_mm_and_find_vma: the mmap_lock for read, and the
 *     fault again under it.
 *
 * Stack expansion (expand_stack under the write lock) is not modelled: no
 * VM_GROWSDOWN VMA grows. A fault that got the VMA lock while another CPU held
 * the mmap_lock for write (or took it before the fault ended) is counted in
 * ST_VMA_LOCK_RACED: the interleavings the mmap_lock alone would forbid.
 */
export function do_user_addr_fault(cpu: Cpu, va: number, write: boolean): number {
  const mm = cpu.loadedMm;
  if (mm < 0) return VM_FAULT_SIGSEGV;
  const V = cpu.V;
  const rec = lock_vma_under_rcu(mm, va);
  if (rec >= 0) {
    const vma = vma_read_rec(V, mm, rec);
    if (access_error(vma, write)) {
      vma_end_read(mm, rec);
      cpu.stat(ST_VMA_LOCK_SUCCESS);
      return VM_FAULT_SIGSEGV;
    }
    const seqAt = mmWord(V.L, mm, MM_LOCK_SEQ);
    const seq0 = Atomics.load(V.I, seqAt);
    const fault = __handle_mm_fault({ mm, rec, flags: FAULT_FLAG_VMA_LOCK }, vma, va, write);
    if (!(fault & VM_FAULT_RETRY)) {
      const seq1 = Atomics.load(V.I, seqAt);
      vma_end_read(mm, rec);
      cpu.stat(ST_VMA_LOCK_SUCCESS);
      if ((seq0 & 1) !== 0 || seq1 !== seq0) cpu.stat(ST_VMA_LOCK_RACED);
      return fault & ~VM_FAULT_WRITE;
    }
    cpu.stat(ST_VMA_LOCK_RETRY); // count_vm_vma_lock_event(VMA_LOCK_RETRY)
    cpu.ring.log(EV.VMA_LOCK_RETRY, va, 0);
  }
  // lock_mmap: lock_mm_and_find_vma (mmap_read_trylock, else mmap_read_lock_killable)
  mmap_read_lock(mm);
  const r = faultin_page(mm, va, write);
  mmap_read_unlock(mm);
  return r;
}

/**
 * A fault result bit: the fault was a write that broke COW or reused the page
 * (the kernel's old VM_FAULT_WRITE, which GUP looked at before FOLL_COW; CVE-2016-5195,
 * fixed by commit 19be0eaffa3a). Only __faultin_page reports it; the hardware and faultin_page see 0.
 */
export const VM_FAULT_WRITE = 0x10;

/** is_cow_mapping: private and possibly writable. */
export const is_cow_mapping = (flags: number): boolean => (flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;

/**
 * faultin_page (mm/gup.c): fault va of mm in as a user access would, with the
 * mmap_lock already held (read or write). For GUP and mm_populate.
 */
export function faultin_page(mm: number, va: number, write: boolean): number {
  return __faultin_page(mm, va, write, false) & ~VM_FAULT_WRITE;
}

/**
 * The same for GUP, with VM_FAULT_WRITE reported. `force` is FOLL_FORCE (a
 * /proc/pid/mem write): a write is allowed on a COW mapping without VM_WRITE
 * (check_vma_flags); the fault breaks COW but leaves the entry read-only.
 */
export function __faultin_page(mm: number, va: number, write: boolean, force: boolean): number {
  const V = current.V;
  const slot = vma_lookup(V, mm, va);
  if (slot < 0) return VM_FAULT_SIGSEGV;
  const rec = vma_rec(V, mm, slot);
  const vma = vma_read_rec(V, mm, rec);
  const ok = write
    ? (vma.flags & VM_WRITE) !== 0 || (force && is_cow_mapping(vma.flags))
    : (vma.flags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0;
  return ok ? __handle_mm_fault({ mm, rec, flags: 0 }, vma, va, write) : VM_FAULT_SIGSEGV;
}

function __handle_mm_fault(vmf: vm_fault, vma: Vma, va: number, write: boolean): number {
  const mm = vmf.mm;
  const addr = Math.floor(va / PAGE_SIZE) * PAGE_SIZE;
  const pgdp = pgd_offset(mm, addr);
  const pudp = pud_alloc(mm, pgdp, addr);
  if (pudp < 0) return VM_FAULT_OOM;
  const hr = huge_pud_fault(mm, vma, pudp, addr, write); // PUD leaves (src/mm/huge_memory.ts)
  if (hr !== VM_FAULT_FALLBACK) return hr;
  const pmdp = pmd_alloc(mm, pudp, addr);
  if (pmdp < 0) return VM_FAULT_OOM;
  const hp = huge_pmd_fault(mm, vmf, vma, pmdp, addr, write); // transparent huge pages
  if (hp !== VM_FAULT_FALLBACK) return hp;
  if (!__pte_alloc(mm, pmdp)) return VM_FAULT_OOM;
  return handle_pte_fault(mm, vmf, vma, pmdp, addr, write);
}

/**
 * vm_get_page_prot (mm/mmap.c): the protection bits a new user PTE of a VMA
 * with these flags gets. Any access right: present and user; PROT_NONE:
 * present but not user (the kernel's _PAGE_PROTNONE). Write permission is not
 * here: the fault path adds _PAGE_RW (maybe_mkwrite), so that private
 * writable mappings start write-protected for COW.
 */
export function vm_get_page_prot(vmFlags: number): number {
  return (vmFlags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0 ? _PAGE_PRESENT | _PAGE_USER : _PAGE_PRESENT;
}
/** vma->vm_page_prot: the kernel caches vm_get_page_prot(vm_flags) in the VMA; here it is computed when needed. */
export function vm_page_prot(vma: Vma): number {
  return vm_get_page_prot(vma.flags);
}

function handle_pte_fault(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number, write: boolean): number {
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0) return VM_FAULT_OK; // the table went away under us: retry the access
  const lock = ptep_lockptr(ptep);
  const entry = ptep_get(ptep);
  if (pte_none(entry)) {
    pte_unmap_unlock(lock);
    if (vma.file >= 0) {
      // do_fault: a private file mapping maps the page-cache page read-only on a
      // read, and copies it into an anonymous page on a write
      if (!(vma.flags & VM_SHARED)) return write ? do_cow_fault(mm, vmf, vma, pmdp, addr) : do_read_fault(mm, vmf, vma, pmdp, addr);
      return do_shared_fault(mm, vmf, vma, pmdp, addr, write);
    }
    return do_anonymous_page(mm, vmf, vma, pmdp, addr, write);
  }
  let r = VM_FAULT_OK;
  if (write && !pte_write(entry)) {
    r = do_wp_page(mm, vmf, vma, pmdp, ptep, lock, addr, entry); // drops the lock
    return r;
  }
  // Spurious fault: the PTE allows the access (another CPU fixed it, or our TLB
  // entry is older than the PTE). Mark it young/dirty and drop our stale entry.
  const want = entry | _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
  if (want !== entry) ptep_set_access_flags(mm, addr, ptep, want);
  arch.flush_tlb_local_page(current, addr);
  pte_unmap_unlock(lock);
  return r;
}

/**
 * __anon_vma_prepare: give the VMA (record rec) its anon_vma on its first
 * anonymous page, under mm->page_table_lock: a neighbour's if it can be shared
 * (find_mergeable_anon_vma), else a new one. The caller holds the mmap_lock
 * (for read at least): the neighbours stay where they are.
 */
export function __anon_vma_prepare(mm: number, rec: number): void {
  const V = current.V;
  const at = vmaF(V.L, mm, rec, VMA_ANON);
  if (V.F[at] >= 0) return;
  const lock = mmWord(V.L, mm, MM_PT_LOCK);
  spin_lock(lock);
  if (V.F[at] < 0) {
    const slot = vma_slot_of(V, mm, rec);
    const reuse = slot >= 0 ? find_mergeable_anon_vma(V, mm, slot) : -1;
    vma_set_anon_vma(V, mm, rec, reuse >= 0 ? reuse : Atomics.add(V.I, V.L.header + H_NEXT_ANON, 1));
  }
  spin_unlock(lock);
}

/**
 * vmf_anon_prepare (__vmf_anon_prepare, mm/memory.c, 6.18): nothing to do if
 * the VMA has its anon_vma. Under the VMA lock, preparing one needs the
 * mmap_lock too (find_mergeable_anon_vma looks at the neighbours): a read
 * trylock; if a writer holds or waits for it, the VMA lock is dropped and the
 * fault returns VM_FAULT_RETRY, to be retried under the mmap_lock.
 */
export function vmf_anon_prepare(vmf: vm_fault): number {
  const V = current.V;
  if (V.F[vmaF(V.L, vmf.mm, vmf.rec, VMA_ANON)] >= 0) return 0;
  const vmaLocked = (vmf.flags & FAULT_FLAG_VMA_LOCK) !== 0;
  if (vmaLocked && !mmap_read_trylock(vmf.mm)) {
    vma_end_read(vmf.mm, vmf.rec);
    return VM_FAULT_RETRY;
  }
  __anon_vma_prepare(vmf.mm, vmf.rec);
  if (vmaLocked) mmap_read_unlock(vmf.mm);
  return 0;
}

/**
 * vmf_can_call_fault (mm/memory.c): a file's ->fault may run under the VMA lock
 * only if the file has ->map_pages (shmem does: filemap_map_pages); a DAX-like
 * device (src/mm/huge_memory.ts) has none: drop the VMA lock, VM_FAULT_RETRY.
 */
function vmf_can_call_fault(vmf: vm_fault, vma: Vma): number {
  const V = current.V;
  if (!(vmf.flags & FAULT_FLAG_VMA_LOCK) || V.I[fileWord(V.L, vma.file, FILE_DEV_PFN)] === 0) return 0;
  vma_end_read(vmf.mm, vmf.rec);
  return VM_FAULT_RETRY;
}

function do_anonymous_page(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number, write: boolean): number {
  const cpu = current;
  let entry: number;
  let pfn = 0;
  if (!write) {
    // Reads of never-written anonymous memory map the shared zero page read-only.
    entry = pfn_pte(zero_pfn(cpu.V), vm_page_prot(vma) | _PAGE_SPECIAL);
  } else {
    const ret = vmf_anon_prepare(vmf);
    if (ret) return ret;
    const weak = store_order() === 'weak';
    pfn = alloc_page(true, !weak);
    if (pfn === 0) return VM_FAULT_OOM;
    if (weak) {
      // issue #11, arm64: alloc_anon_folio -> vma_alloc_zeroed_movable_folio zeroes the page
      // with plain stores (clear_user_highpage), which may become visible after later stores;
      // __folio_mark_uptodate's smp_wmb() orders them before set_pte_at (mm/memory.c:
      // "The memory barrier inside __folio_mark_uptodate makes sure that preceding stores to
      // the page contents become visible before the set_pte_at() write";
      // include/linux/page-flags.h __folio_mark_uptodate). A thread on another CPU walks the
      // new entry without a lock and reads the page: without the barrier it may read what the
      // frame held before (another address's or another process's data).
      clear_user_highpage(cpu, pfn);
      if (!knobs['fault.uptodate_no_smp_wmb']) smp_wmb(cpu);
    }
    entry = pfn_pte(pfn, vm_page_prot(vma) | _PAGE_ACCESSED);
    if (vma.flags & VM_WRITE) entry |= _PAGE_RW | _PAGE_DIRTY;
  }
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0) {
    if (pfn) put_page(pfn);
    return VM_FAULT_OK;
  }
  if (!pte_none(ptep_get(ptep))) {
    // someone else faulted it in first
    pte_unmap_unlock(ptep_lockptr(ptep));
    if (pfn) put_page(pfn);
    return VM_FAULT_OK;
  }
  const lock = ptep_lockptr(ptep);
  if (pfn) {
    if (knobs['fault.leak_ref']) get_page(pfn); // BUG (injected): a reference nobody drops
    SetPageAnonExclusive(pfn);
    page_mapcount_inc(pfn); // folio_add_new_anon_rmap
    Atomics.add(cpu.I, mmWord(cpu.V.L, mm, MM_RSS), 1);
  }
  set_pte_at(mm, addr, ptep, entry);
  if (pfn && store_order() === 'weak') {
    // issue #11 (weak store order only: the zeroes may still be buffered): update_mmu_cache_range, then the
    // unlock's release; the CPU may be delayed or interrupted between the entry store and the
    // release, and other CPUs walk the new entry meanwhile (a hot point for det.ts)
    cpu.hotHint = 1;
    cpu.sched_point();
  }
  pte_unmap_unlock(lock);
  return VM_FAULT_OK;
}

/**
 * __do_fault + finish_fault for a file page: find or create the page in the
 * file's cache and map it with `extra` protection bits. The page is locked from
 * the lookup until its PTE is set, so truncation, which takes the same lock
 * before it drops a page, cannot drop it in between; beyond EOF the access gets
 * SIGBUS.
 */
function finish_file_fault(mm: number, vma: Vma, pmdp: number, addr: number, extra: number): number {
  const cpu = current;
  const pfn = filemap_page(vma, addr); // locked, +1 reference for this mapping
  if (pfn < 0) return VM_FAULT_SIGSEGV; // SIGBUS: beyond EOF
  if (pfn === 0) return VM_FAULT_OOM;
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0 || !pte_none(ptep_get(ptep))) {
    if (ptep >= 0) pte_unmap_unlock(ptep_lockptr(ptep));
    unlock_page(pfn);
    put_page(pfn);
    return VM_FAULT_OK;
  }
  const lock = ptep_lockptr(ptep);
  page_mapcount_inc(pfn); // folio_add_file_rmap
  Atomics.add(cpu.I, mmWord(cpu.V.L, mm, MM_RSS), 1);
  set_pte_at(mm, addr, ptep, pfn_pte(pfn, vm_page_prot(vma) | _PAGE_ACCESSED | extra));
  pte_unmap_unlock(lock);
  unlock_page(pfn);
  return VM_FAULT_OK;
}

/** do_shared_fault: a shared file mapping maps the page-cache page itself, writable if the VMA is. */
function do_shared_fault(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number, write: boolean): number {
  const ret = vmf_can_call_fault(vmf, vma);
  if (ret) return ret;
  const rw = vma.flags & VM_WRITE && vma.flags & VM_SHARED ? _PAGE_RW | (write ? _PAGE_DIRTY : 0) : 0;
  return finish_file_fault(mm, vma, pmdp, addr, rw);
}

// ---- private file faults and copy-on-write (mm/memory.c do_wp_page, wp_page_copy) ----

export const PageAnonExclusive = (V: Views, pfn: number): boolean => (Atomics.load(V.I, frameWord(V.L, pfn, FM_FLAGS)) & PG_ANON_EXCLUSIVE) !== 0;
export function SetPageAnonExclusive(pfn: number): void {
  Atomics.or(current.I, frameWord(current.V.L, pfn, FM_FLAGS), PG_ANON_EXCLUSIVE);
}
export function ClearPageAnonExclusive(pfn: number): void {
  Atomics.and(current.I, frameWord(current.V.L, pfn, FM_FLAGS), ~PG_ANON_EXCLUSIVE);
}

/**
 * copy_user_highpage: the contents of data frame src into dst (not atomic
 * against writers of src, as in the kernel); the COW oracle's shadow follows.
 */
export function copy_user_highpage(dst: number, src: number): void {
  const cpu = current;
  const { I, L } = cpu.V;
  for (let w = 0; w < WORDS_PER_PAGE; w++) {
    // a 4 KiB copy takes a while: other CPUs' stores (through TLB entries not yet
    // flushed) and interrupts land between its words, and the deterministic
    // scheduler may switch CPUs here
    cpu.sched_point();
    Atomics.store(I, dataWord(L, dst, w), Atomics.load(I, dataWord(L, src, w)));
  }
  cpu.host.hooks.copy_page?.(dst, src);
}

/** clear_user_highpage: zero a data frame with this CPU's plain stores (through its store buffer). */
function clear_user_highpage(cpu: Cpu, pfn: number): void {
  const L = cpu.V.L;
  for (let w = 0; w < WORDS_PER_PAGE; w++) sb_store(cpu, dataWord(L, pfn, w), 0);
}

/** maybe_mkwrite: writable only if the VMA is (a FOLL_FORCE write on a read-only mapping stays read-only). */
const maybe_mkwrite = (entry: number, vma: Vma): number => (vma.flags & VM_WRITE ? entry | _PAGE_RW : entry);

/**
 * The page-cache page at addr's offset in vma's file, locked (until its PTE is
 * set: truncation takes the same lock), with a reference for the caller.
 * 0: out of memory; -1: beyond EOF (SIGBUS).
 */
function filemap_page(vma: Vma, addr: number): number {
  const pgoff = vma.pgoff + (addr - vma.start) / PAGE_SIZE;
  if (knobs['fault.i_mmap_before_folio_lock']) { // BUG (injected): i_mmap_rwsem -> folio lock, as hugetlb_fault after c0d0381ade79
    i_mmap_lock_read(vma.file);
    const pfn = shmem_get_folio_locked(vma.file, pgoff);
    i_mmap_unlock_read(vma.file);
    return pfn;
  }
  return shmem_get_folio_locked(vma.file, pgoff);
}

/** do_read_fault, private mapping: map the page-cache page read-only (a write later copies it). */
function do_read_fault(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number): number {
  const ret = vmf_can_call_fault(vmf, vma);
  if (ret) return ret;
  return finish_file_fault(mm, vma, pmdp, addr, 0);
}

/** do_cow_fault: a write to a private file mapping copies the page-cache page into a new anonymous page. */
function do_cow_fault(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number): number {
  const cpu = current;
  let ret = vmf_can_call_fault(vmf, vma);
  if (!ret) ret = vmf_anon_prepare(vmf);
  if (ret) return ret;
  const npfn = alloc_page(true);
  if (npfn === 0) return VM_FAULT_OOM;
  const page = filemap_page(vma, addr); // locked until the copy is mapped, as __do_fault/finish_fault
  if (page <= 0) {
    put_page(npfn);
    return page < 0 ? VM_FAULT_SIGSEGV : VM_FAULT_OOM; // SIGBUS beyond EOF
  }
  copy_user_highpage(npfn, page);
  const done = (): void => {
    unlock_page(page);
    put_page(page); // the page cache keeps its own
  };
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0 || !pte_none(ptep_get(ptep))) {
    if (ptep >= 0) pte_unmap_unlock(ptep_lockptr(ptep));
    done();
    put_page(npfn);
    return VM_FAULT_OK;
  }
  const lock = ptep_lockptr(ptep);
  SetPageAnonExclusive(npfn);
  page_mapcount_inc(npfn); // folio_add_new_anon_rmap
  Atomics.add(cpu.I, mmWord(cpu.V.L, mm, MM_RSS), 1);
  set_pte_at(mm, addr, ptep, maybe_mkwrite(pfn_pte(npfn, vm_page_prot(vma) | _PAGE_ACCESSED | _PAGE_DIRTY), vma));
  pte_unmap_unlock(lock);
  done();
  cpu.stat(ST_COW_COPY);
  return VM_FAULT_WRITE;
}

/** wp_can_reuse_anon_folio: nobody but this mapping holds a reference (no swap cache or LRU batches here). */
function wp_can_reuse_anon_folio(V: Views, pfn: number): boolean {
  return page_ref(V, pfn) === 1;
}

/**
 * do_wp_page: a write to a present, write-protected PTE (PTL held; dropped here).
 * Shared mappings are made writable in place. A private anonymous page is
 * reused if it is anon-exclusive, or if the refcount says nobody else holds it
 * (then it becomes exclusive); anything else is copied (wp_page_copy).
 */
function do_wp_page(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, ptep: number, lock: number, addr: number, entry: number): number {
  const cpu = current;
  const V = cpu.V;
  const pfn = pte_pfn(entry);
  if (vma.flags & VM_SHARED) {
    wp_page_reuse(mm, vma, ptep, lock, addr, entry);
    return VM_FAULT_OK;
  }
  const special = pfn === zero_pfn(V) || (entry & _PAGE_SPECIAL) !== 0;
  const flags = special ? 0 : Atomics.load(V.I, frameWord(V.L, pfn, FM_FLAGS));
  if (flags & PG_ANON) {
    // BUG (injected, CVE-2020-29374): the rule before commit 09854ba94c6a ("mm:
    // do_wp_page() simplification"), "mapped once, so ours", blind to
    // references held without a mapping (a GUP reference of a process that unmapped it)
    const reuse = knobs['cow.reuse_by_mapcount']
      ? page_mapcount(V, pfn) === 1
      : (flags & PG_ANON_EXCLUSIVE) !== 0 || wp_can_reuse_anon_folio(V, pfn);
    if (reuse) {
      SetPageAnonExclusive(pfn);
      wp_page_reuse(mm, vma, ptep, lock, addr, entry);
      cpu.stat(ST_COW_REUSE);
      return VM_FAULT_WRITE;
    }
  }
  pte_unmap_unlock(lock);
  return wp_page_copy(mm, vmf, vma, pmdp, addr, entry);
}

/** wp_page_reuse: writable (if the VMA is), dirty and young in place; no flush is needed to add permission. */
function wp_page_reuse(mm: number, vma: Vma, ptep: number, lock: number, addr: number, entry: number): void {
  ptep_set_access_flags(mm, addr, ptep, maybe_mkwrite(entry | _PAGE_DIRTY | _PAGE_ACCESSED, vma));
  arch.flush_tlb_local_page(current, addr); // our own read-only entry
  pte_unmap_unlock(lock);
}

/**
 * wp_page_copy (mm/memory.c, the order its comments require): copy outside the PTL, recheck the entry,
 * clear it and flush it from every TLB, install the new exclusive page, and
 * only then drop the old page's mapcount; its reference goes after the unlock.
 */
function wp_page_copy(mm: number, vmf: vm_fault, vma: Vma, pmdp: number, addr: number, orig: number): number {
  const cpu = current;
  const { I, L } = cpu.V;
  const oldPfn = pte_pfn(orig);
  const special = oldPfn === zero_pfn(cpu.V) || (orig & _PAGE_SPECIAL) !== 0;
  const ret = vmf_anon_prepare(vmf);
  if (ret) return ret;
  const npfn = alloc_page(true); // zeroed: the copy of the zero page
  if (npfn === 0) return VM_FAULT_OOM;
  if (!special) copy_user_highpage(npfn, oldPfn);
  const ptep = pte_offset_map_lock(pmdp, addr);
  if (ptep < 0) {
    put_page(npfn);
    return VM_FAULT_OK;
  }
  const lock = ptep_lockptr(ptep);
  if (ptep_get(ptep) !== orig) {
    // someone else handled it meanwhile
    pte_unmap_unlock(lock);
    put_page(npfn);
    return VM_FAULT_OK;
  }
  const entry = maybe_mkwrite(pfn_pte(npfn, vm_page_prot(vma) | _PAGE_ACCESSED | _PAGE_DIRTY), vma);
  SetPageAnonExclusive(npfn);
  page_mapcount_inc(npfn); // folio_add_new_anon_rmap
  const installFirst = knobs['cow.install_before_flush'];
  // stale-TLB oracle hook: the old translation must be gone once the new entry is in (wp_page_copy: ptep_clear_flush, then set_pte_at)
  cpu.host.hooks.promise?.(mm, addr, addr + PAGE_SIZE, false, 4);
  if (installFirst) {
    // BUG (injected; the order before "[patch] mm: fix a race condition under SMC + COW"
    // <20060927151507.A12423@unix-os.sc.intel.com> and "[patch] mm: fix race in COW logic"
    // <20080622153035.GA31114@wotan.suse.de>): the new entry replaces the old in place, the old
    // page's rmap and reference go, and only then is the old translation flushed:
    // meanwhile other CPUs translate the address to either page, and the old one
    // may be reused by its other owner or freed
    set_pte_at(mm, addr, ptep, entry);
    if (!special) {
      page_mapcount_dec(oldPfn);
      put_page(oldPfn, addr);
    }
    flush_tlb_page(mm, addr);
  } else {
    ptep_clear_flush(mm, addr, ptep); // no CPU can use the old entry once this returns
    set_pte_at(mm, addr, ptep, entry);
    if (!special) page_mapcount_dec(oldPfn); // the rmap goes only after the switch
  }
  cpu.host.hooks.promise?.(mm, addr, addr + PAGE_SIZE, true, 4);
  if (special) Atomics.add(I, mmWord(L, mm, MM_RSS), 1);
  pte_unmap_unlock(lock);
  if (!special && !installFirst) put_page(oldPfn, addr);
  cpu.stat(ST_COW_COPY);
  return VM_FAULT_WRITE;
}

// ---- unmapping -----------------------------------------------------------------

/**
 * struct zap_details: an rmap walker's zap (truncation, hole punch) leaves the
 * anonymous COW copies of a private file mapping alone unless even_cows, and
 * with single_folio (a pfn) zaps only the PTEs of that page.
 */
export interface zap_details {
  even_cows: boolean;
  single_folio: number;
}

/** zap_skip_check_mapping: true when details say this page's PTE stays. */
function zap_skip(details: zap_details, pfn: number): boolean {
  if (details.single_folio !== 0) return pfn !== details.single_folio;
  return !details.even_cows && (Atomics.load(current.I, frameWord(current.V.L, pfn, FM_FLAGS)) & PG_ANON) !== 0;
}

/** zap_pte_range: clear [addr, end) of one PTE table; returns how far it got (a full batch stops it early). */
function zap_pte_range(tlb: mmu_gather, mm: number, pmdp: number, addr: number, end: number, details?: zap_details): number {
  const cpu = current;
  const V = cpu.V;
  const ptep0 = pte_offset_map_lock(pmdp, addr);
  if (ptep0 < 0) return end;
  const lock = ptep_lockptr(ptep0);
  const zero = zero_pfn(V);
  let force = false;
  let rss = 0;
  lazy_mmu_mode_enable_with_ptes(mm, addr, end, ptep0);
  let a = addr;
  // BUG (injected): one entry too many, if the table has one
  const stop = knobs['zap.off_by_one'] && end % PMD_SIZE !== 0 ? end + PAGE_SIZE : end;
  const deref = knobs['zap.direct_deref'];
  for (let ptep = ptep0; a < stop; a += PAGE_SIZE, ptep++) {
    const e = ptep_get(ptep);
    if (pte_none(e)) continue;
    if (details !== undefined && pte_present(e) && zap_skip(details, pte_pfn(e))) continue;
    const old = ptep_get_and_clear_full(mm, a, ptep, tlb.fullmm);
    // BUG (injected, docs/kernel-rules.md#direct-deref): "did the clear take?" asked by direct dereference;
    // where memory still holds the old entry the page is skipped (and leaked)
    if (deref && !pte_none(pte_deref(ptep))) continue;
    tlb_flush_pte_range(tlb, a, PAGE_SIZE);
    if (!pte_present(old)) continue;
    const pfn = pte_pfn(old);
    if (pfn === zero || old & _PAGE_SPECIAL) continue;
    page_mapcount_dec(pfn); // rmap removed now; the reference goes after the flush
    rss++;
    if (details !== undefined) cpu.stat(ST_RMAP_UNMAP);
    if (__tlb_remove_page(tlb, pfn, a)) {
      force = true;
      a += PAGE_SIZE;
      break;
    }
  }
  lazy_mmu_mode_disable();
  Atomics.sub(cpu.I, mmWord(V.L, mm, MM_RSS), rss);
  // A full batch is flushed from TLBs before the PTL is dropped (commit 1cf35d47712d),
  // and its pages freed after.
  if (force) tlb_flush_mmu_tlbonly(tlb);
  pte_unmap_unlock(lock);
  if (force) tlb_flush_mmu(tlb);
  return a;
}

/** unmap_page_range: zap every PTE of [addr, end) in mm (with details: only what they select). */
export function unmap_page_range(tlb: mmu_gather, mm: number, addr: number, end: number, details?: zap_details): void {
  const cpu = current;
  const I = cpu.I;
  cpu.ring.log(EV.ZAP, addr, end);
  while (addr < end) {
    const next = addr_end(addr, end, PMD_SIZE);
    const pgdp = pgd_offset(mm, addr);
    if ((Atomics.load(I, pgdp) & _PAGE_PRESENT) === 0) {
      addr = addr_end(addr, end, PGDIR_SIZE);
      continue;
    }
    const pudp = tableEntry(cpu.V.L, pte_pfn(Atomics.load(I, pgdp)), Math.floor(addr / PUD_SIZE) & 511);
    // a PUD leaf: zapped whole or split (src/mm/huge_memory.ts); if it is gone by now, look again
    if (Atomics.load(I, pudp) & _PAGE_PSE && zap_huge_pud_range(tlb, mm, pudp, addr, addr_end(addr, end, PUD_SIZE))) {
      addr = addr_end(addr, end, PUD_SIZE);
      continue;
    }
    if ((Atomics.load(I, pudp) & _PAGE_PRESENT) === 0 || Atomics.load(I, pudp) & _PAGE_PSE) {
      addr = addr_end(addr, end, PUD_SIZE);
      continue;
    }
    const pmdp = tableEntry(cpu.V.L, pte_pfn(Atomics.load(I, pudp)), Math.floor(addr / PMD_SIZE) & 511);
    const pmd = Atomics.load(I, pmdp);
    // a huge PMD (or one being split: it waits for the lock): zapped whole, or split and its PTEs zapped below
    if (pmd & _PAGE_PSE && zap_huge_pmd_range(tlb, mm, pmdp, addr, next)) {
      addr = next;
      continue;
    }
    if ((Atomics.load(I, pmdp) & _PAGE_PRESENT) === 0 || Atomics.load(I, pmdp) & _PAGE_PSE) {
      addr = next;
      continue;
    }
    addr = zap_pte_range(tlb, mm, pmdp, addr, next, details);
  }
}

const LEVEL_SIZE = [PGDIR_SIZE, PUD_SIZE, PMD_SIZE];

/**
 * free_pgtables / free_pgd_range: unhook and queue every table below the PGD
 * that covers part of [addr, end) and lies wholly inside [floor, ceiling)
 * (the gaps to the neighbouring VMAs), so no table another VMA uses is freed.
 */
export function free_pgtables(tlb: mmu_gather, mm: number, addr: number, end: number, floor: number, ceiling: number): void {
  const cpu = current;
  const pgd = cpu.I[mmWord(cpu.V.L, mm, 2 /* MM_PGD */)];
  free_level(tlb, mm, pgd, 0, 0, addr, end, floor, ceiling);
}

function free_level(tlb: mmu_gather, mm: number, table: number, level: number, base: number, addr: number, end: number, floor: number, ceiling: number): void {
  const cpu = current;
  const { I, L } = cpu.V;
  const size = LEVEL_SIZE[level];
  const first = Math.max(0, Math.floor((addr - base) / size));
  const last = Math.min(PTRS_PER_TABLE - 1, Math.floor((end - 1 - base) / size));
  for (let i = first; i <= last; i++) {
    const ep = tableEntry(L, table, i);
    const e = Atomics.load(I, ep);
    if ((e & _PAGE_PRESENT) === 0 || e & _PAGE_PSE) continue;
    const lo = base + i * size;
    const childTable = pte_pfn(e);
    if (level < 2) free_level(tlb, mm, childTable, level + 1, lo, Math.max(addr, lo), Math.min(end, lo + size), floor, ceiling);
    if (lo < floor || lo + size > ceiling) continue;
    for (let j = 0; j < PTRS_PER_TABLE; j++) {
      if (Atomics.load(I, tableEntry(L, childTable, j)) !== 0) {
        cpu.host.hooks.violation({
          kind: 'free-nonempty-table', cpu: cpu.id, pfn: childTable,
          message: `free_pgtables: table pfn ${childTable} covering 0x${lo.toString(16)} still has entry ${j} set`,
        });
        break;
      }
    }
    Atomics.store(I, ep, 0); // unhook first
    Atomics.sub(I, mmWord(L, mm, MM_PT_PAGES), 1);
    tlb_remove_table(tlb, childTable, lo, PAGE_SIZE, level === 2 ? 'pmd' : level === 1 ? 'pud' : 'p4d'); // freed after the flush
  }
}
