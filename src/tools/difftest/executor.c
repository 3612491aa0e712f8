/* mmsim difftest executor: runs lists of memory-management calls on the host
 * kernel and prints, for each call, a line in strace's format with the
 * kernel's result, then the final /proc/self/maps of every process.
 *
 * Compiled at run time by src/tools/difftest/host.ts with the system C
 * compiler. Reads sequences from stdin:
 *   S <n>                     start of sequence n
 *   mmap ADDR LEN PROT FLAGS FILE OFF    (FILE 1: the sequence's memfd, else anonymous)
 *   munmap ADDR LEN | mprotect ADDR LEN PROT | madvise ADDR LEN ADVICE
 *   mremap ADDR OLD NEW FLAGS NEWADDR | brk ADDR
 *   (an address written hN is N bytes above the sequence's first break)
 *   touch ADDR LEN (write one byte in every page; SIGSEGV/SIGBUS -> EFAULT)
 *   fork N                    the next N calls run in the child, which then exits
 *   E                         end of sequence: run it
 * Every sequence runs in a fresh process forked from this one. Anything a call
 * maps outside [ARENA, ARENA + ARENA_LEN) (a placement the kernel chose) is
 * unmapped at once by an extra munmap line, so calls only ever touch the arena
 * and the heap. Numbers are decimal or 0x hex. No malloc after start-up (the
 * heap is under test): all output goes through a static buffer and write(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define MAX_OPS 100000
#define FILE_BYTES (1UL << 30)

enum { OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_BRK, OP_TOUCH, OP_FORK };
struct op { int kind; unsigned heap; unsigned long a[6]; };
static struct op ops[MAX_OPS];
static int nops;
static unsigned long arena, arena_len;
static unsigned long brk0;
static int memfd = -1;

/* ---- output ---- */
static char obuf[1 << 16];
static size_t olen;
static void flush_out(void) {
  size_t off = 0;
  while (off < olen) {
    ssize_t w = write(1, obuf + off, olen - off);
    if (w <= 0) _exit(3);
    off += (size_t)w;
  }
  olen = 0;
}
static void out(const char *fmt, ...) {
  va_list ap;
  if (olen > sizeof obuf - 1024) flush_out();
  va_start(ap, fmt);
  int n = vsnprintf(obuf + olen, sizeof obuf - olen, fmt, ap);
  va_end(ap);
  if (n > 0) olen += (size_t)n;
}

/* this process's /proc/self/maps between #MAPS pid and #ENDMAPS lines (the final maps compared) */
static void dump_maps(void) {
  out("#MAPS %d\n", getpid());
  flush_out();
  int mf = open("/proc/self/maps", O_RDONLY);
  char buf[4096];
  ssize_t k;
  while ((k = read(mf, buf, sizeof buf)) > 0) if (write(1, buf, (size_t)k) != k) _exit(3);
  close(mf);
  out("#ENDMAPS\n");
}

/* ---- names as strace prints them ---- */
static const char *errname(int e) {
  switch (e) {
  case EINVAL: return "EINVAL (Invalid argument)";
  case ENOMEM: return "ENOMEM (Cannot allocate memory)";
  case EFAULT: return "EFAULT (Bad address)";
  case EEXIST: return "EEXIST (File exists)";
  case EACCES: return "EACCES (Permission denied)";
  case EPERM: return "EPERM (Operation not permitted)";
  case EAGAIN: return "EAGAIN (Resource temporarily unavailable)";
  case EBADF: return "EBADF (Bad file descriptor)";
  case ENODEV: return "ENODEV (No such device)";
  case EBUSY: return "EBUSY (Device or resource busy)";
  case EOVERFLOW: return "EOVERFLOW (Value too large for defined data type)";
  default: { static char b[32]; snprintf(b, sizeof b, "E%d (unknown)", e); return b; }
  }
}
static char fbuf[256];
static const char *prot_names(unsigned long p) {
  if (!p) return "PROT_NONE";
  fbuf[0] = 0;
  if (p & PROT_READ) strcat(fbuf, "|PROT_READ");
  if (p & PROT_WRITE) strcat(fbuf, "|PROT_WRITE");
  if (p & PROT_EXEC) strcat(fbuf, "|PROT_EXEC");
  if (p & ~7UL) snprintf(fbuf + strlen(fbuf), 32, "|%#lx", p & ~7UL);
  return fbuf + 1;
}
static const char *map_names(unsigned long f) {
  fbuf[0] = 0;
  if ((f & 3) == MAP_SHARED) strcat(fbuf, "|MAP_SHARED");
  if ((f & 3) == MAP_PRIVATE) strcat(fbuf, "|MAP_PRIVATE");
  if (f & MAP_FIXED) strcat(fbuf, "|MAP_FIXED");
  if (f & MAP_ANONYMOUS) strcat(fbuf, "|MAP_ANONYMOUS");
  if (f & MAP_POPULATE) strcat(fbuf, "|MAP_POPULATE");
  if (f & MAP_FIXED_NOREPLACE) strcat(fbuf, "|MAP_FIXED_NOREPLACE");
  unsigned long rest = f & ~(3UL | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE | MAP_FIXED_NOREPLACE);
  if (rest) snprintf(fbuf + strlen(fbuf), 32, "|%#lx", rest);
  if (!fbuf[0]) return "0";
  return fbuf + 1;
}
static const char *mremap_names(unsigned long f) {
  fbuf[0] = 0;
  if (f & MREMAP_MAYMOVE) strcat(fbuf, "|MREMAP_MAYMOVE");
  if (f & MREMAP_FIXED) strcat(fbuf, "|MREMAP_FIXED");
  if (f & MREMAP_DONTUNMAP) strcat(fbuf, "|MREMAP_DONTUNMAP");
  unsigned long rest = f & ~7UL;
  if (rest) snprintf(fbuf + strlen(fbuf), 32, "|%#lx", rest);
  if (!fbuf[0]) return "0";
  return fbuf + 1;
}
static const char *madv_name(unsigned long a) {
  switch (a) {
  case 0: return "MADV_NORMAL"; case 1: return "MADV_RANDOM"; case 2: return "MADV_SEQUENTIAL";
  case 3: return "MADV_WILLNEED"; case 4: return "MADV_DONTNEED"; case 8: return "MADV_FREE";
  case 9: return "MADV_REMOVE"; case 10: return "MADV_DONTFORK"; case 11: return "MADV_DOFORK";
  case 14: return "MADV_HUGEPAGE"; case 15: return "MADV_NOHUGEPAGE"; case 16: return "MADV_DONTDUMP";
  case 17: return "MADV_DODUMP"; case 18: return "MADV_WIPEONFORK"; case 19: return "MADV_KEEPONFORK";
  case 20: return "MADV_COLD"; case 21: return "MADV_PAGEOUT"; case 22: return "MADV_POPULATE_READ";
  case 23: return "MADV_POPULATE_WRITE";
  default: { static char b[32]; snprintf(b, sizeof b, "%#lx", a); return b; }
  }
}
static void addr_arg(unsigned long a) {
  if (a) out("%#lx", a); else out("NULL");
}

/* ---- touching pages ---- */
static sigjmp_buf jb;
static volatile unsigned long fault_addr;
static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)sig; (void)uc;
  fault_addr = (unsigned long)si->si_addr;
  siglongjmp(jb, 1);
}

static int in_arena(unsigned long a, unsigned long len) {
  return a >= arena && a + len <= arena + arena_len && a + len >= a;
}

/* a call mapped [r, r + len) outside the arena: take it away again */
static void evict(unsigned long r, unsigned long len) {
  if (in_arena(r, (len + 4095) & ~4095UL)) return;
  int res = munmap((void *)r, len);
  out("%d munmap(%#lx, %lu) = %d\n", getpid(), r, len, res);
}

static void result_addr(unsigned long r) {
  if (r == (unsigned long)MAP_FAILED) out(" = -1 %s\n", errname(errno));
  else out(" = %#lx\n", r);
}
static void result_int(long r) {
  if (r < 0) out(" = -1 %s\n", errname(errno));
  else out(" = %ld\n", r);
}

static void run(int from, int to);

static void do_op(int i, int *skip) {
  struct op *o = &ops[i];
  int pid = getpid();
  unsigned long a[6];
  for (int k = 0; k < 6; k++) a[k] = o->a[k] + ((o->heap >> k) & 1 ? brk0 : 0);
  switch (o->kind) {
  case OP_MMAP: {
    int fd = a[4] ? memfd : -1;
    unsigned long flags = a[3] | (a[4] ? 0 : MAP_ANONYMOUS);
    errno = 0;
    void *r = mmap((void *)a[0], a[1], (int)a[2], (int)flags, fd, (off_t)a[5]);
    int e = errno;
    out("%d mmap(", pid); addr_arg(a[0]);
    out(", %lu, %s, ", a[1], prot_names(a[2]));
    out("%s, %d, %#lx)", map_names(flags), fd, a[5]);
    errno = e; result_addr((unsigned long)r);
    if (r != MAP_FAILED) evict((unsigned long)r, a[1]);
    break;
  }
  case OP_MUNMAP: {
    long r = munmap((void *)a[0], a[1]);
    out("%d munmap(%#lx, %lu)", pid, a[0], a[1]); result_int(r);
    break;
  }
  case OP_MPROTECT: {
    long r = mprotect((void *)a[0], a[1], (int)a[2]);
    int e = errno;
    out("%d mprotect(%#lx, %lu, %s)", pid, a[0], a[1], prot_names(a[2])); errno = e; result_int(r);
    break;
  }
  case OP_MADVISE: {
    long r = madvise((void *)a[0], a[1], (int)a[2]);
    out("%d madvise(%#lx, %lu, %s)", pid, a[0], a[1], madv_name(a[2])); result_int(r);
    break;
  }
  case OP_MREMAP: {
    errno = 0;
    unsigned long r = (unsigned long)syscall(SYS_mremap, a[0], a[1], a[2], a[3], a[4]);
    int e = errno;
    out("%d mremap(%#lx, %lu, %lu, %s", pid, a[0], a[1], a[2], mremap_names(a[3]));
    /* strace prints new_address only with MREMAP_FIXED; DONTUNMAP's hint matters too (it must not overlap) */
    if (a[3] & (MREMAP_FIXED | MREMAP_DONTUNMAP)) out(", %#lx", a[4]);
    out(")");
    errno = e; result_addr(r);
    if (r != (unsigned long)MAP_FAILED) evict(r, a[2]);
    break;
  }
  case OP_BRK: {
    unsigned long want = a[0];
    unsigned long r = (unsigned long)syscall(SYS_brk, want);
    out("%d brk(%#lx) = %#lx\n", pid, want, r);
    break;
  }
  case OP_TOUCH: {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    volatile int bus = 0;
    int failed = 0;
    if (sigsetjmp(jb, 1) == 0) {
      for (unsigned long p = a[0] & ~4095UL; p < a[0] + a[1]; p += 4096) {
        volatile char *c = (volatile char *)(p < a[0] ? a[0] : p);
        *c = (char)(i + 1);
      }
    } else {
      failed = 1;
    }
    (void)bus;
    out("%d touch(%#lx, %lu)", pid, a[0], a[1]);
    if (failed) out(" = -1 EFAULT (Bad address)\n");
    else out(" = 0\n");
    break;
  }
  case OP_FORK: {
    int n = (int)a[0];
    int go[2];
    if (pipe(go) < 0) _exit(4);
    flush_out();
    pid_t c = fork();
    if (c < 0) { out("%d fork() = -1 %s\n", pid, errname(errno)); *skip = n; break; }
    if (c == 0) {
      char b;
      close(go[1]);
      if (read(go[0], &b, 1) != 1) _exit(5);
      close(go[0]);
      run(i + 1, i + 1 + n);
      dump_maps();
      flush_out();
      _exit(0);
    }
    out("%d fork() = %d\n", pid, (int)c);
    flush_out();
    close(go[0]);
    if (write(go[1], "g", 1) != 1) _exit(5);
    close(go[1]);
    int st;
    waitpid(c, &st, 0);
    if (WIFEXITED(st)) out("%d +++ exited with %d +++\n", (int)c, WEXITSTATUS(st));
    else out("%d +++ killed by signal %d +++\n", (int)c, WTERMSIG(st));
    *skip = n;
    break;
  }
  }
}

static void run(int from, int to) {
  for (int i = from; i < to && i < nops; i++) {
    int skip = 0;
    do_op(i, &skip);
    i += skip;
  }
}

static void sequence(long n) {
  flush_out();
  pid_t c = fork();
  if (c < 0) { perror("fork"); exit(1); }
  if (c == 0) {
    memfd = (int)syscall(SYS_memfd_create, "difftest", 0);
    if (memfd < 0 || ftruncate(memfd, (off_t)FILE_BYTES) < 0) { perror("memfd"); _exit(1); }
    brk0 = (unsigned long)syscall(SYS_brk, 0);
    out("#SEQ %ld\n", n);
    out("%d memfd_create(\"difftest\", 0) = %d\n", getpid(), memfd);
    out("%d brk(NULL) = %#lx\n", getpid(), brk0);
    run(0, nops);
    dump_maps();
    out("#ENDSEQ\n");
    flush_out();
    _exit(0);
  }
  int st;
  waitpid(c, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    out("#CRASH %ld %d\n#ENDSEQ\n", n, st);
    flush_out();
  }
}

/* ---- input ---- */
static char line[512];
static int read_line(void) {
  size_t n = 0;
  for (;;) {
    char ch;
    ssize_t r = read(0, &ch, 1);
    if (r <= 0) { line[n] = 0; return n > 0; }
    if (ch == '\n') { line[n] = 0; return 1; }
    if (n < sizeof line - 1) line[n++] = ch;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: executor ARENA ARENA_LEN < ops\n"); return 2; }
  arena = strtoul(argv[1], NULL, 0);
  arena_len = strtoul(argv[2], NULL, 0);
  /* the stdin reader is unbuffered (read one byte at a time): no stdio buffers in the heap */
  long seq = -1;
  while (read_line()) {
    char *p = line;
    char *w = strsep(&p, " ");
    if (!w || !*w) continue;
    if (!strcmp(w, "S")) { seq = strtol(p, NULL, 0); nops = 0; continue; }
    if (!strcmp(w, "E")) { sequence(seq); continue; }
    if (nops >= MAX_OPS) { fprintf(stderr, "too many calls\n"); return 2; }
    struct op *o = &ops[nops++];
    memset(o, 0, sizeof *o);
    if (!strcmp(w, "mmap")) o->kind = OP_MMAP;
    else if (!strcmp(w, "munmap")) o->kind = OP_MUNMAP;
    else if (!strcmp(w, "mprotect")) o->kind = OP_MPROTECT;
    else if (!strcmp(w, "madvise")) o->kind = OP_MADVISE;
    else if (!strcmp(w, "mremap")) o->kind = OP_MREMAP;
    else if (!strcmp(w, "brk")) o->kind = OP_BRK;
    else if (!strcmp(w, "touch")) o->kind = OP_TOUCH;
    else if (!strcmp(w, "fork")) o->kind = OP_FORK;
    else { fprintf(stderr, "unknown call '%s'\n", w); return 2; }
    for (int k = 0; k < 6 && p; k++) {
      char *t = strsep(&p, " ");
      /* hN: N bytes above the sequence's first break (resolved when run) */
      if (t && *t == 'h') { o->a[k] = strtoul(t + 1, NULL, 0); o->heap |= 1u << k; }
      else if (t && *t) o->a[k] = strtoul(t, NULL, 0);
    }
  }
  flush_out();
  return 0;
}
