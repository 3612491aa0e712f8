// The whole SharedArrayBuffer layout of a simulated machine, declared once.
//
// Every thread (main, CPU workers, stress workers) builds the same views from a
// Layout computed here. No other module may invent offsets: it asks for a field
// index through the helpers below. Indices are in 32-bit words for the Int32Array
// view `I`, and in 64-bit words for the Float64Array view `F` (same buffer).

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PTRS_PER_TABLE = 512; // 4 KiB granule, 8-byte entries
export const PMD_SHIFT = 21;
export const PUD_SHIFT = 30;
export const PGDIR_SHIFT = 39;
export const PMD_SIZE = 2 ** PMD_SHIFT;
export const PUD_SIZE = 2 ** PUD_SHIFT;
export const PGDIR_SIZE = 2 ** PGDIR_SHIFT;
/** x86-64 with 4-level paging: user space is the lower half of 48 bits. */
export const TASK_SIZE = 2 ** 47 - PAGE_SIZE;
export const MMAP_MIN_ADDR = 0x10000;

// ---- the kernel half (init_mm, src/mm/vmalloc.ts) ----------------------------------
// x86-64 puts the kernel at the top of the sign-extended address space
// (0xffff8880... the direct map, 0xffffc900... vmalloc); those numbers are past
// 2^53 and not exact in a JavaScript number, so the model's kernel half is
// [2^47, 2^48): PGD entries 256..511, as on x86-64 and arm64's TTBR1 half. Every
// CPU walks init_mm's tables for it (arm64: TTBR1_EL1; x86-64: the kernel PGD
// entries every pgd_alloc copies, preallocated for vmalloc so that no sync is
// needed, arch/x86/mm/init_64.c preallocate_vmalloc_pages).
/** the first kernel address (PGD entry 256) */
export const KERNEL_VA_START = 2 ** 47;
/** VMALLOC_START (PGD entry 257): the vmalloc area, kernel stacks included */
export const VMALLOC_START = KERNEL_VA_START + PGDIR_SIZE;
/** pages in the model's vmalloc area: VMAP_SLOTS slots of VMAP_SLOT_PAGES (src/mm/vmalloc.ts) */
export const VMAP_SLOTS = 512;
export const VMAP_SLOT_PAGES = 8;
export const VMALLOC_END = VMALLOC_START + VMAP_SLOTS * VMAP_SLOT_PAGES * PAGE_SIZE;
/** PAGE_OFFSET (PGD entry 258): the linear map of every frame (pfn p at PAGE_OFFSET + p * PAGE_SIZE) */
export const PAGE_OFFSET = KERNEL_VA_START + 2 * PGDIR_SIZE;
/**
 * The TLB tag of kernel (global) entries: not an ASID, so no ASID flush or
 * switch-in flush of a user mm touches them; flush_tlb_kernel_range (and a
 * full flush) does. Larger than every mm index.
 */
export const KERNEL_ASID = 0x40000;

/** Content words per simulated page: enough for unique write tags, not 4 KiB. */
export const WORDS_PER_PAGE = 8;
export const WORD_SHIFT = PAGE_SHIFT - 3; // 8 words per page: offset bits 9..11 pick the word

export const MAX_CPUS = 256;
export const CPUMASK_WORDS = MAX_CPUS / 32;
const LINE = 16; // 64-byte cache line, in 32-bit words

/**
 * A record of fields laid one after another: `widths` gives each field's size
 * in words (or Float64 slots), in order; the result is each field's offset.
 * Throws when loading this module if the fields do not fit in `size`.
 */
function record<F extends Record<string, number>>(name: string, size: number, widths: F): { readonly [K in keyof F]: number } {
  const offsets: Record<string, number> = {};
  let at = 0;
  for (const [field, width] of Object.entries(widths)) {
    offsets[field] = at;
    at += width;
  }
  if (at > size) throw new Error(`layout: the ${name} record needs ${at} slots, more than its ${size}`);
  return offsets as { readonly [K in keyof F]: number };
}

// ---- per-frame metadata (struct page), in words -------------------------------
export const FM_REF = 0; // refcount
export const FM_MAP = 1; // mapcount
export const FM_FLAGS = 2; // PG_* below
export const FM_GEN = 3; // changes on every free: the UAF oracle compares it
export const FM_PTL = 4; // split page-table lock (table frames)
export const FM_PTL_WAITERS = 5;
export const FM_OWNER = 6; // table frames: owning mm; freed frames: cpu that freed it + 1
export const FM_AUX = 7; // table frames: level; data frames: index of the free site
export const FRAME_META_WORDS = 8;

export const PG_FREE = 1 << 0;
export const PG_TABLE = 1 << 1;
export const PG_ANON = 1 << 2;
export const PG_RESERVED = 1 << 3;
export const PG_DIRTY = 1 << 4;
export const PG_HEAD = 1 << 5; // head of a compound (THP) page
/** PageAnonExclusive: an anonymous page mapped by exactly one process, which may reuse it on a write fault (PG_anon_exclusive; mm/memory.c do_wp_page) */
export const PG_ANON_EXCLUSIVE = 1 << 10;
export const PG_TAIL = 1 << 6; // tail of a compound page: FM_COMPOUND names its head
// compound pages (src/mm/page_alloc.ts, src/mm/huge_memory.ts): the folio's refcount is
// the head's FM_REF (tails keep 0); each frame's FM_MAP counts the PTEs mapping it
/** head: the order (9: 2 MiB, 18: 1 GiB); tail: the head's pfn */
export const FM_COMPOUND = FM_AUX;
/** on the first tail (head + 1): the entire mapcount (PMD and PUD leaves mapping the whole folio) */
export const FM_ENTIRE_MAP = FM_OWNER;
/** table frames: a PMD table's list of deposited PTE tables (pgtable_trans_huge_deposit); a deposited table: the next one */
export const FM_PMD_HUGE_PTE = FM_MAP;
export const HPAGE_PMD_ORDER = 9;
export const HPAGE_PUD_ORDER = 18;
/** data frames: the folio lock (PG_locked) is a sleeping lock word at FM_PTL (+ waiters at FM_PTL_WAITERS), unused by data frames otherwise */
export const FM_PG_LOCK = FM_PTL;

// ---- per-CPU control block (64 words = 4 lines) --------------------------------
// line 0: written by IPI senders
// CC_IPI_PENDING: one bit per CC_IPI_MASK word that a sender set a bit in (a sender sets its
// mask bit first, then this bit; the target exchanges this word, then each word it names), so
// a target of a 256-CPU machine reads the one or two words in use, not all eight
export const CC_IPI_PENDING = 0;
export const CC_IPI_MASK = 1; // CPUMASK_WORDS words: which senders have a request for us
// line 1: acknowledgements for this CPU's own requests (written by targets)
export const CC_ACK = LINE;
// line 2: this CPU's flush_tlb_info (written by owner while it waits; read by targets)
export const CC_INFO_TYPE = 2 * LINE;
export const CC_INFO_MM = 2 * LINE + 1;
export const CC_INFO_GEN = 2 * LINE + 2;
export const CC_INFO_FREED = 2 * LINE + 3;
export const CC_INFO_STRIDE = 2 * LINE + 4;
export const CC_INFO_TRIM = 2 * LINE + 5;
export const CC_INFO_START_F = 2 * LINE + 8; // Float64: word index; use fIndex()
export const CC_INFO_END_F = 2 * LINE + 10;
// line 3: state other CPUs read (cpu_tlbstate / cpu_tlbstate_shared)
export const CC_LOADED_MM = 3 * LINE; // -1 = init_mm
export const CC_IS_LAZY = 3 * LINE + 1;
export const CC_IRQS_OFF = 3 * LINE + 2;
export const CC_CUR_TASK = 3 * LINE + 3;
// 3 * LINE + 4 was CC_HOST: the CPU -> host thread map is L.cpuHost now (cpuHostWord), away from this hot line
export const CC_DONE = 3 * LINE + 5;
export const CC_ONLINE = 3 * LINE + 6; // a Cpu object exists for it on some running host: hardware broadcasts reach it
// line 4: hardware broadcast invalidations addressed to this CPU (arm64 TLBI, powerpc
// tlbie, s390 IPTE/IDTE): taken at the next instruction boundary whatever the
// interrupt state
export const CC_BC_PENDING = 4 * LINE; // one bit per CC_BC_MASK word in use, as CC_IPI_PENDING
export const CC_BC_MASK = 4 * LINE + 1; // CPUMASK_WORDS words: which issuers
// line 5: acknowledgements of this CPU's own broadcast
export const CC_BC_ACK = 5 * LINE;
// line 6: this CPU's broadcast request (read by every other CPU)
export const CC_BC_ASID = 6 * LINE; // -1: every ASID
export const CC_BC_START_F = 6 * LINE + 2; // first vpn (Float64 slot)
export const CC_BC_END_F = 6 * LINE + 4; // end vpn, -1: the whole ASID
export const CPU_CTL_WORDS = 7 * LINE;

// ---- per-host (thread) block: the futex word everyone bumps to get our attention --
export const HOST_WORDS = LINE;
const HB = record('host', HOST_WORDS, { WAKE: 1, SLEEPING: 1, WAITING_ON: 1, HEARTBEAT: 1 });
export const HB_WAKE = HB.WAKE;
export const HB_SLEEPING = HB.SLEEPING;
export const HB_WAITING_ON = HB.WAITING_ON; // lock word index this host is blocked on, or -1
export const HB_HEARTBEAT = HB.HEARTBEAT;

// ---- per-host IPI mailboxes (free mode, several CPUs per host thread) -------------
// A sender posts a call-function IPI for the CPUs another thread carries into that thread's
// mailbox: the targets' bits in the sender's slot (one word per 32 CPUs), then its own bit in
// MB_SENDERS, then the word's bit in MB_PEND (as CC_IPI_PENDING names CC_IPI_MASK words). The
// receiving thread (Host.drainMailbox) turns each target bit into the target's own CC_IPI_MASK /
// CC_IPI_PENDING bits, on lines its own core owns, and forwards a bit for a CPU it no longer
// carries (a migration traded it away meanwhile) to the mailbox of the thread that does. Before, the sender set 2 bits in each of
// ~128 CPUs' lines that the other core owns: 8-35 us of a 256-CPU shootdown.
export const MB_PEND = 0;
/**
 * A bit of MB_PEND above every sender word (at most CPUMASK_WORDS of them): a hardware broadcast
 * was posted straight into the per-CPU words (CC_BC_*) of the CPUs this thread carries, so
 * Host.pollIpis must look at every CPU again (Host.ipiScan).
 */
export const MB_SCAN = 1 << 30;
export const MB_SENDERS = 1; // CPUMASK_WORDS words: which senders posted
export const MB_HDR = LINE;

// ---- per-CPU statistics (hot counters, each CPU its own lines) ----------------
// One table: a counter's index is its position in STAT_NAMES (the name the run
// result reports it under); the ST_* constants are looked up from it.
export const STAT_NAMES = [
  'ops',
  'reads',
  'writes',
  'tlbHits',
  'tlbMisses',
  'walks',
  'faults',
  'segv',
  'ipiSent',
  'ipiReceived',
  'flushSingle', // local per-page invalidations (INVLPG)
  'flushRange', // flush requests handled as a range
  'flushFull', // flush requests handled as a full ASID flush
  'flushSkipped', // handler found the local generation current
  'shootdowns', // flush_tlb_multi calls that waited for acks
  'switchFlush', // flushes done at context switch (generation behind)
  'contextSwitches',
  'syscalls',
  'lazyTlbSkipped', // targets skipped because lazy
  'pagesFreed',
  'tablesFreed',
  'lockContended',
  'delays',
  // architecture and lazy MMU mode
  'pteUpdates', // PTE writes through the accessors
  'lazyUpdates', // ... made inside a lazy MMU section
  'batched', // updates or invalidations an arch deferred into a batch
  'batchFlushes', // batches completed (leave, flush, full, mm change)
  'broadcastsSent', // hardware broadcast invalidations issued
  'broadcastsPurged', // ... purged here
  'quiesces', // s390: machine-wide serialised invalidations (IPTE, IDTE)
  'localClears', // invalidations done locally (mm attached to this CPU only)
  'lazySections', // outermost lazy MMU sections entered
  // mremap (move_page_tables): entries moved, by kind
  'movedPtes', // PTEs moved one by one (move_ptes)
  'movedPmds', // whole PTE tables moved (NORMAL_PMD)
  'movedPuds', // whole PMD tables moved (NORMAL_PUD)
  'movedHugePmds', // huge PMD leaves moved (HPAGE_PMD)
  'movedHugePuds', // huge PUD leaves moved (HPAGE_PUD)
  'realigned', // move_page_tables calls whose start was realigned down
  // transparent huge pages
  'thpFaults', // huge PMDs installed by a fault
  'thpSplits', // huge PMDs split into PTE tables
  // fork and COW
  'forkPtes', // PTEs copied by copy_pte_range
  'cowCopies', // COW faults that copied
  'cowReuses', // COW faults that reused the page
  'gupFastFallbacks', // GUP-fast walks that fell back to the slow path
  // rmap walkers
  'rmapUnmaps', // PTEs cleared by rmap walks (truncate, reclaim)
  'truncatedPages', // page-cache pages removed by truncation or reclaim
  // s390 invalidation instructions (global ones also count as quiesces)
  'ipte', // single-entry IPTEs
  'ipteRange', // IPTEs with additional entries (IPTE-range)
  'idte', // IDTEs (whole address space, or a huge leaf's segment)
  // per-VMA locks (src/mm/mmap_lock.ts)
  'vmaLockFaults', // faults handled under the VMA's read lock (VMA_LOCK_SUCCESS)
  'vmaLockAborts', // lock_vma_under_rcu failed: no VMA, write-locked, or replaced (VMA_LOCK_ABORT): mmap_lock fallback
  'vmaLockRetries', // VM_FAULT_RETRY under the VMA lock (VMA_LOCK_RETRY): mmap_lock fallback
  'vmaLockRaced', // ... of the successes, those that ran while another CPU held the mmap_lock for write
  // store buffers (src/hw/store_buffer.ts)
  'sbStores', // kernel stores to lockless shared words that went into the store buffer
  'sbLoadsPassed', // loads that passed a buffered store of their CPU (a store->load reordering)
  'sbForwarded', // loads served from the CPU's own store buffer
  'smpMb', // full barriers that found stores to drain
  // preemption (src/hw/preempt.ts)
  'preemptions', // tasks preempted inside kernel code
  'preemptInLazy', // ... with their lazy MMU enable count non-zero
  'migrations', // tasks moved to another CPU: the preempted one and the one it traded places with (migrate_swap; idle not counted)
  'threadMigrations', // ... of them, moves to a CPU another host thread carried (src/engine/migrate.ts, src/engine/det.ts)
  // kernel page tables and interrupts (src/mm/vmalloc.ts, src/hw/irq.ts)
  'irqs', // device interrupts delivered (src/hw/irq.ts)
  'irqInLazy', // ... that landed while the interrupted task was inside a lazy MMU section
  'irqKernelMaps', // kernel (linear map) PTEs changed by interrupt handlers (DEBUG_PAGEALLOC __kernel_map_pages)
  'vmallocs', // vmalloc / vmap areas mapped (kernel stacks included)
  'vfrees', // vfree / vunmap areas unmapped
  'vmapPurges', // purge_vmap_area_lazy runs (flush_tlb_kernel_range, then the lazily freed addresses are reusable)
  'kernelTlbFlushes', // flush_tlb_kernel_range calls
  'kernelSpuriousFaults', // kernel translation faults the arch judged spurious and retried (arm64 is_spurious_el1_translation_fault)
] as const;
export type StatName = (typeof STAT_NAMES)[number];
const st = (name: StatName): number => STAT_NAMES.indexOf(name);
export const ST_OPS = st('ops');
export const ST_READS = st('reads');
export const ST_WRITES = st('writes');
export const ST_TLB_HITS = st('tlbHits');
export const ST_TLB_MISSES = st('tlbMisses');
export const ST_WALKS = st('walks');
export const ST_FAULTS = st('faults');
export const ST_SEGV = st('segv');
export const ST_IPI_SENT = st('ipiSent');
export const ST_IPI_RECV = st('ipiReceived');
export const ST_FLUSH_SINGLE = st('flushSingle');
export const ST_FLUSH_RANGE = st('flushRange');
export const ST_FLUSH_FULL = st('flushFull');
export const ST_FLUSH_SKIPPED = st('flushSkipped');
export const ST_SHOOTDOWNS = st('shootdowns');
export const ST_SWITCH_FLUSH = st('switchFlush');
export const ST_CTX_SWITCH = st('contextSwitches');
export const ST_SYSCALLS = st('syscalls');
export const ST_LAZY_TLB_SKIPPED = st('lazyTlbSkipped');
export const ST_PAGES_FREED = st('pagesFreed');
export const ST_TABLES_FREED = st('tablesFreed');
export const ST_LOCK_CONTENDED = st('lockContended');
export const ST_DELAYS = st('delays');
export const ST_PTE_UPDATES = st('pteUpdates');
export const ST_LAZY_UPDATES = st('lazyUpdates');
export const ST_BATCHED = st('batched');
export const ST_BATCH_FLUSHES = st('batchFlushes');
export const ST_BCAST_SENT = st('broadcastsSent');
export const ST_BCAST_RECV = st('broadcastsPurged');
export const ST_QUIESCE = st('quiesces');
export const ST_LOCAL_CLEAR = st('localClears');
export const ST_LAZY_SECTIONS = st('lazySections');
export const ST_MOVE_PTE = st('movedPtes');
export const ST_MOVE_PMD = st('movedPmds');
export const ST_MOVE_PUD = st('movedPuds');
export const ST_MOVE_HUGE_PMD = st('movedHugePmds');
export const ST_MOVE_HUGE_PUD = st('movedHugePuds');
export const ST_REALIGN = st('realigned');
export const ST_THP_FAULT = st('thpFaults');
export const ST_THP_SPLIT = st('thpSplits');
export const ST_FORK_PTES = st('forkPtes');
export const ST_COW_COPY = st('cowCopies');
export const ST_COW_REUSE = st('cowReuses');
export const ST_GUP_FAST_FALLBACK = st('gupFastFallbacks');
export const ST_RMAP_UNMAP = st('rmapUnmaps');
export const ST_TRUNCATED = st('truncatedPages');
export const ST_VMA_LOCK_SUCCESS = st('vmaLockFaults');
export const ST_VMA_LOCK_ABORT = st('vmaLockAborts');
export const ST_VMA_LOCK_RETRY = st('vmaLockRetries');
export const ST_VMA_LOCK_RACED = st('vmaLockRaced');
export const ST_IPTE = st('ipte');
export const ST_IPTE_RANGE = st('ipteRange');
export const ST_IDTE = st('idte');
export const ST_SB_STORES = st('sbStores');
export const ST_SB_PASSED = st('sbLoadsPassed');
export const ST_SB_FORWARDED = st('sbForwarded');
export const ST_SMP_MB = st('smpMb');
export const ST_PREEMPTIONS = st('preemptions');
export const ST_PREEMPT_IN_LAZY = st('preemptInLazy');
export const ST_MIGRATIONS = st('migrations');
export const ST_THREAD_MIGRATIONS = st('threadMigrations');
export const ST_IRQS = st('irqs');
export const ST_IRQ_IN_LAZY = st('irqInLazy');
export const ST_IRQ_KERNEL_MAPS = st('irqKernelMaps');
export const ST_VMALLOCS = st('vmallocs');
export const ST_VFREES = st('vfrees');
export const ST_VMAP_PURGES = st('vmapPurges');
export const ST_KERNEL_TLB_FLUSHES = st('kernelTlbFlushes');
export const ST_KERNEL_SPURIOUS = st('kernelSpuriousFaults');
export const STAT_WORDS = 5 * LINE;
if (STAT_NAMES.length > STAT_WORDS) throw new Error(`layout: ${STAT_NAMES.length} statistics do not fit in STAT_WORDS (${STAT_WORDS})`);

// ---- per-mm (mm_struct) -----------------------------------------------------------
export const MM_IN_USE = 0;
export const MM_USERS = 1;
export const MM_PGD = 2; // pfn of the top-level table
export const MM_LOCK = 3; // mmap_lock: rwsem count word
export const MM_LOCK_WAITERS = 4;
export const MM_LOCK_WWAIT = 5; // writers waiting (readers hold back while > 0)
export const MM_TLB_GEN = 6;
export const MM_NVMAS = 7;
export const MM_FLUSH_PENDING = 8; // tlb_flush_pending
export const MM_PT_LOCK = 9; // page_table_lock (populating upper levels)
export const MM_PT_LOCK_WAITERS = 10;
export const MM_WP_SEQ = 11; // write_protect_seq
export const MM_UNMAP_SEQ = 12; // content oracle: number of zap events logged
export const MM_FLUSH_COUNT = 13; // for periodic cpumask trimming
export const MM_RSS = 14;
export const MM_PT_PAGES = 15;
export const MM_CPUMASK = LINE; // CPUMASK_WORDS words
// the writer, for hang reports: task+1, as rwsem->owner is the task_struct (kernel/locking/rwsem.c
// rwsem_set_owner stores current), so a task that moves keeps it; -(cpu+1) outside a task
export const MM_LOCK_OWNER = LINE + CPUMASK_WORDS;
export const MM_ASID = MM_LOCK_OWNER + 1;
/** unique for the life of the machine: a CPU whose cached ASID context differs flushes it */
export const MM_CTX_ID = MM_ASID + 1;
export const MM_UNMAP_SLOT = MM_CTX_ID + 1; // content oracle: unmap-log entries written
// -- per-VMA locks (src/mm/mmap_lock.ts; include/linux/mm_types.h, Linux 6.18) ------
/** mm->mm_lock_seq: a seqcount, odd while the mmap_lock is held for write (mm_lock_seqcount_begin/end) */
export const MM_LOCK_SEQ = MM_UNMAP_SLOT + 1;
/** mm->vma_writer_wait: a writer in __vma_enter_locked waits here for readers to leave (+ waiters word) */
export const MM_VMA_WRITER_WAIT = MM_LOCK_SEQ + 1;
export const MM_VMA_WRITER_WAITERS = MM_VMA_WRITER_WAIT + 1;
/** the VMA index's publication count (stands for the maple tree's RCU publication): odd while it changes */
export const MM_MT_SEQ = MM_VMA_WRITER_WAITERS + 1;
/** where the next VMA record allocation starts looking (records are reused round-robin) */
export const MM_VMA_CURSOR = MM_MT_SEQ + 1;
// -- end per-VMA locks
// the stale-TLB oracle (src/oracles/stale_tlb.ts): the mm's promise number (above every
// change id handed out before its last promise), and the next slot of its promise log
export const MM_PR_MAX = MM_VMA_CURSOR + 1;
export const MM_PR_SLOT = MM_PR_MAX + 1;
// s390 mm->context (arch/s390/include/asm/mmu.h): cpu_attach_mask (the CPUs that
// have the mm's ASCE loaded now; mm_cpumask is MM_CPUMASK), flush_mm, flush_count
// and the context lock __tlb_flush_mm_lazy takes (a spinlock word and its waiters)
export const MM_S390_ATTACH_MASK = MM_PR_SLOT + 1; // CPUMASK_WORDS words (after the per-VMA lock and stale-TLB words)
export const MM_S390_FLUSH_MM = MM_S390_ATTACH_MASK + CPUMASK_WORDS;
export const MM_S390_FLUSH_COUNT = MM_S390_FLUSH_MM + 1;
export const MM_S390_CTX_LOCK = MM_S390_FLUSH_MM + 2; // and its waiter count at + 3
export const MM_S390_FC_WAITERS = MM_S390_FLUSH_MM + 4; // CPUs waiting in finish_arch_post_lock_switch for flush_count 0
if (MM_S390_FC_WAITERS >= 3 * LINE) throw new Error('layout: the s390 mm->context words overlap MM_START_BRK_F');
// mm->start_brk and mm->brk (src/mm/brk.ts): Float64 slots, word indexes (use fIndex)
export const MM_START_BRK_F = 3 * LINE;
export const MM_BRK_F = 3 * LINE + 2;
// the COW oracle (src/oracles/cow.ts), the rest of the last line: this mm's fork epoch
// (forks it has completed) and its ancestry, nearest first, as pairs (ancestor's
// MM_CTX_ID, the ancestor's epoch when it forked this line)
export const MM_COW_EPOCH = 3 * LINE + 4;
export const MM_COW_DEPTH = MM_COW_EPOCH + 1; // pairs recorded; negative when older ancestors were dropped
export const MM_COW_CHAIN = MM_COW_EPOCH + 2;
export const MM_COW_CHAIN_MAX = 5; // generations: older writers are left unjudged
export const MM_WORDS = 4 * LINE;

// VMA records (Float64 slots)
export const VMA_F64 = 8;
const VMA = record('vma', VMA_F64, { START: 1, END: 1, PGOFF: 1, FLAGS: 1, FILE: 1, ANON: 1, ANON_FORKED: 1 });
export const VMA_START = VMA.START;
export const VMA_END = VMA.END;
export const VMA_PGOFF = VMA.PGOFF;
export const VMA_FLAGS = VMA.FLAGS;
export const VMA_FILE = VMA.FILE; // -1 anonymous
export const VMA_ANON = VMA.ANON; // anon_vma id (root), -1 none yet
export const VMA_ANON_FORKED = VMA.ANON_FORKED; // 1: the anon_vma came through fork (its anon_vma_chain is not singular)
// -- per-VMA locks: Float64 slot 7 of a VMA record holds two 32-bit words (use vmaWord)
/** vma->vm_refcnt: 0 detached, 1 attached, +1 per reader, +VMA_LOCK_OFFSET while a writer excludes readers */
export const VMA_REFCNT_W = 14;
/** vma->vm_lock_seq: the mm_lock_seq of the write lock that last locked it (write-locked while equal) */
export const VMA_LOCK_SEQ_W = 15;
// VMA records are no longer kept in address order: per mm, an Int32 index of
// record numbers in address order (vmaIdx) is what lookups search; a record
// stays put while its VMA lives (readers under the VMA lock hold on to it).
// -- end per-VMA locks

// ---- oracle state (src/oracles), not hardware: the content oracle's unmap log ------
// (MM_UNMAP_SEQ, MM_UNMAP_SLOT and the MM_COW_* fields of the mm record belong to it too)
// [start, end, seq] per entry, ring per mm
export const UNMAP_LOG_ENTRIES = 256;
export const UNMAP_LOG_F64 = 4; // start, end, beginSeq, endSeq (0 while in progress)

// promise log for the stale-TLB oracle: a ring per mm of page-table changes, in flight
// or promised: [state, id, kind, cpu, mm ctx id, pad, start F, end F, begin time F, promise time F]
export const PR_ENTRIES = 64;
export const PR_WORDS = 16;

// ---- files (shmem / page-cache objects): a 2-level radix of table frames maps pgoff -> pfn
export const FILE_WORDS = LINE;
const FILE = record('file', FILE_WORDS, { IN_USE: 1, REFS: 1, ROOT: 1, LOCK: 2, NRPAGES: 1, I_MMAP: 3, SIZE_PAGES: 1, DEV_PFN: 1 });
export const FILE_IN_USE = FILE.IN_USE;
export const FILE_REFS = FILE.REFS; // VMAs and other holders
export const FILE_ROOT = FILE.ROOT; // table pfn of the radix root, 0 = empty
export const FILE_LOCK = FILE.LOCK; // i_pages lock (+ waiters word)
export const FILE_NRPAGES = FILE.NRPAGES;
export const FILE_I_MMAP = FILE.I_MMAP; // i_mmap_rwsem (+ waiters, writers-waiting)
export const FILE_SIZE_PAGES = FILE.SIZE_PAGES;
export const FILE_DEV_PFN = FILE.DEV_PFN; // a DAX-like device (src/mm/huge_memory.ts): head pfn of its memory, 0 for shmem
// i_mmap (src/mm/rmap.ts): per file, the VMAs that map it, as (mm, start, end, pgoff)
// records in increasing pgoff order, ties in insertion order (the order the kernel's
// interval tree visits them); guarded by i_mmap_rwsem (FILE_I_MMAP)
export const I_MMAP_MAX = 128; // records per file unless the shape says otherwise (MachineShape.iMmapMax)
export const IM_F64 = 4;
const IM = record('i_mmap', IM_F64, { MM: 1, START: 1, END: 1, PGOFF: 1 });
export const IM_MM = IM.MM;
export const IM_START = IM.START;
export const IM_END = IM.END;
export const IM_PGOFF = IM.PGOFF;

// ---- tasks ------------------------------------------------------------------------
export const TASK_WORDS = 8;
const TASK = record('task', TASK_WORDS, { IN_USE: 1, MM: 1, CPU: 1, LAZY_ENABLE: 1, LAZY_PAUSE: 1, PROC: 1 });
export const T_IN_USE = TASK.IN_USE;
export const T_MM = TASK.MM;
export const T_CPU = TASK.CPU;
export const T_LAZY_ENABLE = TASK.LAZY_ENABLE; // lazy_mmu_state.enable_count
export const T_LAZY_PAUSE = TASK.LAZY_PAUSE; // lazy_mmu_state.pause_count
export const T_PROC = TASK.PROC;

// ---- header -----------------------------------------------------------------------
export const H_MAGIC = 0;
export const H_STOP = 1; // set to stop every CPU at its next op boundary
export const H_DONE = 2; // CPUs that finished their program
export const H_VIOLATIONS = 3;
export const H_NEXT_MM = 4;
export const H_NEXT_TASK = 5;
export const H_NEXT_ANON = 6;
export const H_TAG_SEQ = 7;
export const H_STARTED = 8;
export const H_NEXT_CTX = 9;
export const H_NEXT_FILE = 10;
export const H_RUNNING = 11; // hosts still executing operations (the rest only service IPIs)
export const H_QUIESCE_LOCK = 12; // s390: the machine-wide quiesce of a global IPTE/IDTE (+ waiters word)
export const H_QUIESCE_WAITERS = 13;
/** stale-TLB oracle (src/oracles/stale_tlb.ts): the last page-table change id handed out; TLB fills are stamped with it */
export const H_PROMISE_SEQ = 14;
/** always 0: the word a CPU checks for mailbox IPIs on a machine without mailboxes (src/hw/cpu.ts Cpu.mbPend) */
export const H_ZERO = 15;
export const HEADER_WORDS = 2 * LINE;
export const MAGIC = 0x6d6d7331; // 'mms1'

// ---- deterministic scheduler (src/engine/det.ts), not hardware: the run engine's --
export const DET_TOKEN = 0; // the CPU allowed to run
export const DET_STEP = 1; // scheduling points passed so far (the deterministic clock)
export const DET_DIRTY = 2; // something changed eligibility (a kick, a block): rescan
export const DET_FINISHED = 3;
export const DET_DEADLOCK = 4; // every CPU blocked: set by the scheduler, read by the watchdog
export const DET_NCHANGE = 5; // PCT change points
export const DET_NEXT_CHANGE = 6; // index of the next change point
export const DET_NDECISIONS = 7;
export const DET_STALLED = 8; // consecutive picks of blocked CPUs that blocked again
export const DET_RR = 9; // round-robin cursor for equal choices
// a migration between two CPU threads in progress (src/engine/det.ts migrate): the CPU the
// preempted task leaves, the CPU it goes to, and the phase (0 none, 1 asked, 2 the target's half done)
export const DET_MIG_FROM = 10;
export const DET_MIG_TO = 11;
export const DET_MIG_PHASE = 12;
/**
 * words of one migration slot: one CPU's thread-local state, serialized (src/hw/preempt.ts
 * cpu_state_save): its TLB (40 bytes an entry, 48 with the serializer's tags), per-ASID
 * generations and arch state (a few KiB), with room to spare
 */
export const migSlotWords = (shape: MachineShape): number => Math.ceil(((shape.tlbEntries ?? 1024) * 48 + (shape.maxMms * 8) + (64 << 10)) / 4);
// free mode (one thread per CPU): the migration handshake's words at the head of the region (src/engine/migrate.ts)
export const MIG_HDR = LINE;
export const MIG_PHASE = 0;
export const MIG_FROM = 1;
export const MIG_TO = 2;
/** free mode: the last handshake's ticket (src/engine/migrate.ts phaseWord), written by the thread that claimed it */
export const MIG_TICKET = 3;
export const DET_HDR = LINE;
export const DET_MAX_CHANGES = 64;
export const DET_MAX_DECISIONS = 1 << 18;
/** per CPU: priority, state, wake sequence seen when it blocked */
export const DET_CPU_WORDS = 4;
export const DET_PRIO = 0;
export const DET_STATE = 1;
export const DET_BLOCKED_SEQ = 2;
/** 1 while the CPU waits for the token at a point where its task could be preempted and moved: a migration partner */
export const DET_MIGRATABLE = 3;
export const DS_RUN = 0;
export const DS_BLOCKED = 1;
export const DS_DONE = 2; // left its program: runs only to take IPIs
export const DS_WAITING = 3; // booted, waiting for the token

// event ring: [seq, time, type, a, b] as Float64 per event (time: microseconds, or the
// deterministic scheduler's step; 0 when not tracing)
export const EVENT_F64 = 5;

export interface MachineShape {
  cpus: number;
  hosts: number;
  dataFrames: number;
  tableFrames: number;
  maxMms: number;
  maxVmas: number;
  maxTasks: number;
  maxFiles: number;
  eventRing: number; // events per CPU, power of two
  /** i_mmap records per file: how many VMAs may map one file at once (default I_MMAP_MAX) */
  iMmapMax?: number;
  /** room for the deterministic scheduler's decision log */
  deterministic?: boolean;
  /** lockdep (src/hw/lockdep.ts): on unless false */
  lockdep?: boolean;
  /** shadow memory for the COW oracle: the provenance of every data word (src/oracles/cow.ts) */
  cowShadow?: boolean;
  /** entries of each CPU's TLB: sizes the migration slots (a CPU's serialized state) */
  tlbEntries?: number;
}

export interface Layout {
  shape: MachineShape;
  bytes: number;
  header: number;
  cpuCtl: number; // word index of CPU 0's control block
  hostBlk: number;
  stats: number;
  frameMeta: number; // word index of frame 0's metadata
  tableMem: number; // word index of table frame 0's 512 entries
  dataStart: number; // first data pfn
  nframes: number; // total pfns (tables + gap + data)
  dataMem: number; // word index of the first data frame's content
  tableAlloc: number; // allocator: [lock, waiters, top, pad...] then stack
  tableStack: number;
  dataAlloc: number;
  dataStack: number;
  mms: number;
  vmasF: number; // Float64 index
  unmapLogF: number; // Float64 index
  tasks: number;
  files: number;
  eventsF: number; // Float64 index
  det: number; // deterministic scheduler block: header, change points, per-CPU words, decisions
  detChanges: number;
  detCpus: number;
  detDecisions: number;
  /**
   * migration between host threads (deterministic mode, one thread per CPU): MIG_HDR words, then two
   * migSlotWords slots; -1 when no CPU can move to another thread
   */
  migrate: number;
  anonLocks: number;
  /** COW oracle shadow: per data frame, WORDS_PER_PAGE records of COW_SHADOW_WORDS; -1 when not allocated */
  cowShadow: number;
  iMmapF: number; // Float64 index: per file [count, pad x3] then iMmapMax records
  iMmapMax: number;
  vmaIdx: number; // per mm, maxVmas record numbers in address order (per-VMA locks)
  /** lockdep's region (src/hw/lockdep.ts); -1 when the shape turns lockdep off */
  lockdep: number;
  promiseLog: number; // stale-TLB oracle: per mm PR_ENTRIES records of PR_WORDS
  /** init_mm's mm record index (one past the user mms: mm_alloc never hands it out) */
  initMm: number;
  /** the vmalloc allocator (src/mm/vmalloc.ts): VMAP_HDR words, then per slot its state and VMAP_SLOT_PAGES pfns */
  vmap: number;
  /**
   * one word per CPU: the host thread carrying it (cpuHostWord). Written at boot and by a
   * migration between threads, read by every IPI sender: its own lines, 16 CPUs to a line,
   * apart from the control lines the CPUs write all the time
   */
  cpuHost: number;
  /** the per-host IPI mailboxes (MB_*, mboxHdr, mboxSlot): free mode with several CPUs per thread; -1 otherwise */
  mbox: number;
  /** words of one sender's slot in a mailbox: one per 32 CPUs */
  mboxMaskWords: number;
  /** words of one host's mailbox: the MB_HDR line, then one slot per sender */
  mboxHostWords: number;
  // Word indices precomputed for the page walk (src/hw/walker.ts), which would otherwise
  // call a helper (and load its constants) for each on every walk. Frame pfn's field is
  // pfn * FRAME_META_WORDS past frame 0's; mm's MM_PGD is mm * MM_WORDS past mm 0's.
  /** frameWord(L, 0, FM_FLAGS) */
  frameFlags0: number;
  /** frameWord(L, 0, FM_OWNER) */
  frameOwner0: number;
  /** frameWord(L, 0, FM_GEN) */
  frameGen0: number;
  /** mmWord(L, 0, MM_PGD) */
  mmPgd0: number;
  /** the header's H_PROMISE_SEQ word */
  promiseSeq: number;
}

// ---- the vmalloc allocator (src/mm/vmalloc.ts) ----------------------------------------
export const VMAP_LOCK = 0; // vmap_area_lock (+ waiters at 1)
export const VMAP_PURGE_LOCK = 2; // vmap_purge_lock (+ waiters at 3)
export const VMAP_LAZY_NR = 4; // vmap_lazy_nr: pages of lazily freed areas not purged yet
export const VMAP_HDR = LINE;
/** per slot: state (VS_*), number of pages, then VMAP_SLOT_PAGES pfns (vm->pages) */
export const VMAP_SLOT_WORDS = 2 + VMAP_SLOT_PAGES;
export const VS_FREE = 0;
export const VS_BUSY = 1;
/** vfree'd: unmapped and its pages freed, the address not reusable until purge_vmap_area_lazy has flushed it */
export const VS_LAZY = 2;
export const VS_PURGING = 3;
export const vmapSlot = (L: Layout, slot: number): number => L.vmap + VMAP_HDR + slot * VMAP_SLOT_WORDS;

/** COW oracle shadow record of one data word: [lock, tag, writer's MM_CTX_ID, epoch | COW_SHARED] */
export const COW_SHADOW_WORDS = 4;
export const COW_SHARED = 1 << 30;
export const cowShadowWord = (L: Layout, pfn: number, word: number): number =>
  L.cowShadow + ((pfn - L.dataStart) * WORDS_PER_PAGE + word) * COW_SHADOW_WORDS;

/** anon_vma rwsems, striped: anon_vma id % ANON_VMA_LOCKS picks one (rwsem count, waiters, writers waiting, owner) */
export const ANON_VMA_LOCKS = 256;
export const ANON_VMA_LOCK_WORDS = 4;
export const anonVmaLock = (L: Layout, anon: number): number => L.anonLocks + (anon % ANON_VMA_LOCKS) * ANON_VMA_LOCK_WORDS;

/** lockdep (src/hw/lockdep.ts): [header line], the class dependency matrix, the dependency records */
export const LOCKDEP_NODES = 64;
export const LOCKDEP_RECS = 128;
export const LOCKDEP_REC_WORDS = 256;
export const LOCKDEP_WORDS = LINE + LOCKDEP_NODES * LOCKDEP_NODES + LOCKDEP_RECS * LOCKDEP_REC_WORDS;

export const ALLOC_LOCK = 0;
export const ALLOC_WAITERS = 1;
export const ALLOC_TOP = 2;
export const ALLOC_LOW = 3; // low-water mark, for stats

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** i_mmap records per file of a machine of this shape */
export const iMmapMax = (shape: MachineShape): number => shape.iMmapMax ?? I_MMAP_MAX;

export function computeLayout(shape: MachineShape): Layout {
  if (shape.cpus < 1 || shape.cpus > MAX_CPUS) throw new RangeError(`cpus must be 1..${MAX_CPUS}`);
  if (shape.eventRing & (shape.eventRing - 1)) throw new RangeError('eventRing must be a power of two');
  let w = 0; // running word offset; every region starts on a cache line
  const take = (words: number): number => {
    const at = align(w, LINE);
    w = at + words;
    return at;
  };
  const header = take(HEADER_WORDS);
  const cpuCtl = take(shape.cpus * CPU_CTL_WORDS);
  const hostBlk = take(shape.hosts * HOST_WORDS);
  const stats = take(shape.cpus * STAT_WORDS);
  // pfn 0 is reserved (never allocated) so that a zero entry can never look valid.
  const dataStart = align(shape.tableFrames, PTRS_PER_TABLE);
  const nframes = dataStart + shape.dataFrames;
  const frameMeta = take(nframes * FRAME_META_WORDS);
  const tableMem = take(shape.tableFrames * PTRS_PER_TABLE);
  const dataMem = take(shape.dataFrames * WORDS_PER_PAGE);
  const tableAlloc = take(LINE);
  const tableStack = take(shape.tableFrames);
  const dataAlloc = take(LINE);
  const dataStack = take(shape.dataFrames);
  const mms = take((shape.maxMms + 1) * MM_WORDS); // + init_mm
  const vmap = take(VMAP_HDR + VMAP_SLOTS * VMAP_SLOT_WORDS);
  const tasks = take(shape.maxTasks * TASK_WORDS);
  const files = take(shape.maxFiles * FILE_WORDS);
  const vmasF = take(shape.maxMms * shape.maxVmas * VMA_F64 * 2) / 2;
  const unmapLogF = take(shape.maxMms * UNMAP_LOG_ENTRIES * UNMAP_LOG_F64 * 2) / 2;
  const eventsF = take(shape.cpus * shape.eventRing * EVENT_F64 * 2) / 2;
  const anonLocks = take(ANON_VMA_LOCKS * ANON_VMA_LOCK_WORDS);
  const iMmapF = take(shape.maxFiles * (iMmapMax(shape) + 1) * IM_F64 * 2) / 2;
  const vmaIdx = take(shape.maxMms * shape.maxVmas);
  const promiseLog = take(shape.maxMms * PR_ENTRIES * PR_WORDS);
  const det = take(DET_HDR);
  const detChanges = take(DET_MAX_CHANGES);
  const detCpus = take(shape.cpus * DET_CPU_WORDS);
  const detDecisions = take(shape.deterministic ? DET_MAX_DECISIONS * 2 : 0);
  // migration between host threads: deterministic mode, and free mode with two threads or more (one CPU each, or hosted)
  const migrate = shape.deterministic || (shape.hosts > 1 && shape.cpus > 1) ? take(MIG_HDR + 2 * migSlotWords(shape)) : -1;
  const cowShadow = shape.cowShadow ? take(shape.dataFrames * WORDS_PER_PAGE * COW_SHADOW_WORDS) : -1;
  const lockdep = shape.lockdep === false ? -1 : take(LOCKDEP_WORDS);
  const cpuHost = take(shape.cpus);
  // mailboxes only where a thread carries several CPUs and there is another thread to post from (hosted)
  const mboxMaskWords = Math.ceil(shape.cpus / 32);
  const mbox = shape.hosts < shape.cpus && shape.hosts > 1 ? take(shape.hosts * mboxHostWords(shape)) : -1;
  const bytes = align(w, LINE) * 4;
  return {
    shape, bytes, header, cpuCtl, hostBlk, stats, frameMeta, tableMem, dataStart, nframes,
    dataMem, tableAlloc, tableStack, dataAlloc, dataStack, mms, vmasF, unmapLogF, tasks, files, eventsF,
    det, detChanges, detCpus, detDecisions, migrate, anonLocks, cowShadow, iMmapF, iMmapMax: iMmapMax(shape), vmaIdx, lockdep, promiseLog,
    initMm: shape.maxMms, vmap, cpuHost, mbox, mboxMaskWords, mboxHostWords: mboxHostWords(shape),
    frameFlags0: frameMeta + FM_FLAGS, frameOwner0: frameMeta + FM_OWNER, frameGen0: frameMeta + FM_GEN,
    mmPgd0: mms + MM_PGD, promiseSeq: header + H_PROMISE_SEQ,
  };
}

/** words of one host's mailbox: the MB_HDR line, then one slot per sender */
const mboxHostWords = (shape: MachineShape): number => align(MB_HDR + shape.cpus * Math.ceil(shape.cpus / 32), LINE);

/** The views every thread builds over one machine's SharedArrayBuffer. */
export interface Views {
  L: Layout;
  sab: SharedArrayBuffer;
  I: Int32Array;
  F: Float64Array;
}

export function makeViews(sab: SharedArrayBuffer, L: Layout): Views {
  return { L, sab, I: new Int32Array(sab), F: new Float64Array(sab) };
}

// ---- index helpers (the only place offsets are combined) -----------------------
// They multiply by module-private copies of the record sizes: optimized code folds a module's
// own unexported const, but loads an exported one from its module cell, with a hole check, at
// every use (measured on the page walk: 148 -> 126 ns once its constants were local, src/hw/walker.ts).
const CTL_W = CPU_CTL_WORDS;
const HOST_W = HOST_WORDS;
const STAT_W = STAT_WORDS;
const FRAME_W = FRAME_META_WORDS;
const PTRS = PTRS_PER_TABLE;
const PAGE_W = WORDS_PER_PAGE;
const MM_W = MM_WORDS;
const MBH = MB_HDR;
export const cpuCtl = (L: Layout, cpu: number, field: number): number => L.cpuCtl + cpu * CTL_W + field;
export const hostWord = (L: Layout, host: number, field: number): number => L.hostBlk + host * HOST_W + field;
/** word index of the host thread that carries `cpu` */
export const cpuHostWord = (L: Layout, cpu: number): number => L.cpuHost + cpu;
/** word index of host h's mailbox header (MB_PEND, MB_SENDERS); L.mbox must be >= 0 */
export const mboxHdr = (L: Layout, host: number): number => L.mbox + host * L.mboxHostWords;
/** word index of sender's slot in host h's mailbox: L.mboxMaskWords words of target bits */
export const mboxSlot = (L: Layout, host: number, sender: number): number => L.mbox + host * L.mboxHostWords + MBH + sender * L.mboxMaskWords;
export const statWord = (L: Layout, cpu: number, field: number): number => L.stats + cpu * STAT_W + field;
export const frameWord = (L: Layout, pfn: number, field: number): number => L.frameMeta + pfn * FRAME_W + field;
export const tableEntry = (L: Layout, pfn: number, idx: number): number => L.tableMem + pfn * PTRS + idx;
export const dataWord = (L: Layout, pfn: number, word: number): number =>
  L.dataMem + (pfn - L.dataStart) * PAGE_W + word;
export const mmWord = (L: Layout, mm: number, field: number): number => L.mms + mm * MM_W + field;
/** The inverse of mmWord for one field: the mm whose `field` is word w, or -1 if w is no mm's `field`. */
export function mmOfWord(L: Layout, w: number, field: number): number {
  if (w < L.mms || w >= L.mms + L.shape.maxMms * MM_WORDS || (w - L.mms) % MM_WORDS !== field) return -1;
  return Math.floor((w - L.mms) / MM_WORDS);
}
/** Float64 index of a field of VMA record rec of mm (a record, not an address-order slot: see vmaIdx) */
export const vmaF = (L: Layout, mm: number, rec: number, field: number): number =>
  L.vmasF + (mm * L.shape.maxVmas + rec) * VMA_F64 + field;
/** per-VMA locks: Int32 index of word w (VMA_REFCNT_W, VMA_LOCK_SEQ_W) of VMA record rec */
export const vmaWord = (L: Layout, mm: number, rec: number, w: number): number => vmaF(L, mm, rec, 0) * 2 + w;
/** per-VMA locks: Int32 index of the address-order slot of mm's VMA index (holds a record number) */
export const vmaIdx = (L: Layout, mm: number, slot: number): number => L.vmaIdx + mm * L.shape.maxVmas + slot;
export const unmapLogF = (L: Layout, mm: number, entry: number, field: number): number =>
  L.unmapLogF + (mm * UNMAP_LOG_ENTRIES + entry) * UNMAP_LOG_F64 + field;
/** word index of promise-log entry `e` of mm */
export const promiseWord = (L: Layout, mm: number, e: number): number => L.promiseLog + (mm * PR_ENTRIES + e) * PR_WORDS;
export const fileWord = (L: Layout, file: number, field: number): number => L.files + file * FILE_WORDS + field;
/** Float64 index of file f's i_mmap record count (rec = -1) or of field `field` of record rec */
export const iMmapF = (L: Layout, file: number, rec: number, field: number): number =>
  L.iMmapF + (file * (L.iMmapMax + 1) + rec + 1) * IM_F64 + field;
export const taskWord = (L: Layout, task: number, field: number): number => L.tasks + task * TASK_WORDS + field;
export const eventF = (L: Layout, cpu: number, slot: number): number =>
  L.eventsF + (cpu * L.shape.eventRing + slot) * EVENT_F64;
/** Float64 index of a field declared in 32-bit words (must be even). */
export const fIndex = (wordIndex: number): number => wordIndex >> 1;

export const isTablePfn = (L: Layout, pfn: number): boolean => pfn > 0 && pfn < L.shape.tableFrames;
export const isDataPfn = (L: Layout, pfn: number): boolean => pfn >= L.dataStart && pfn < L.nframes;
