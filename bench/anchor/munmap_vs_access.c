/*
 * The anchor of `npm run bench`: what scenarios/munmap-vs-access.ts does, run on
 * this machine's own kernel, so that mmsim's ops/s can be read as a slowdown
 * factor against the real thing.
 *
 * One process, T threads. Every thread runs the scenario's "worker" program:
 * one access (a read or a write, 50/50, of a random word of a random page) of a
 * 64-page anonymous private region per operation. Thread 0 also runs the
 * "unmapper" program, its operations interleaved one for one with its accesses
 * as mmsim's CPU 0 round-robins its two tasks: munmap of 1-8 random pages, four
 * yields (operations that do nothing but pass the turn), mmap(MAP_FIXED) of the hole again. An access to the hole takes
 * SIGSEGV, as in mmsim, and counts as an operation. The threads run for
 * SECONDS of wall time (mmsim's --duration); the kernel does the TLB shootdowns.
 *
 *   cc -O2 -pthread -o munmap_vs_access munmap_vs_access.c
 *   ./munmap_vs_access THREADS SECONDS
 *
 * Prints one JSON line: threads, ops, seconds, ops_per_sec, segv, munmaps.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGES 64
#define WORDS_PER_PAGE 8 /* mmsim's words per page: offsets 0, 512, ... 3584 */

static long page_size;
static char *region;
static int nthreads;
static atomic_int stop;
static atomic_long total_ops, total_segv, total_munmaps;
static __thread sigjmp_buf segv_jmp;
static __thread volatile int in_access;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)si; (void)uc;
	if (!in_access)
		abort();
	siglongjmp(segv_jmp, 1);
}

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static int access_once(uint32_t *rng, uint32_t tag)
{
	uint32_t r = xorshift(rng);
	long page = r % PAGES;
	long word = (r >> 8) % WORDS_PER_PAGE;
	volatile uint32_t *p = (volatile uint32_t *)(region + page * page_size + word * (page_size / WORDS_PER_PAGE));
	if (sigsetjmp(segv_jmp, 1)) {
		in_access = 0;
		return 1; /* SIGSEGV: the page was unmapped */
	}
	in_access = 1;
	if (r & (1u << 31))
		*p = tag;
	else
		(void)*p;
	in_access = 0;
	return 0;
}

static void *run(void *arg)
{
	long id = (long)arg;
	uint32_t rng = 0x9e3779b9u ^ (uint32_t)(id * 2654435761u);
	long ops = 0, segv = 0, munmaps = 0;
	int step = 0;
	long hole = 0, hole_pages = 0;
	for (;;) {
		segv += access_once(&rng, (uint32_t)(id << 24 | (ops & 0xffffff)));
		ops++;
		if (id == 0) {
			/* the unmapper's program: munmap, 4 x yield, mmap the hole again */
			if (step == 0) {
				uint32_t r = xorshift(&rng);
				hole_pages = 1 + r % 8;
				hole = (r >> 8) % (PAGES - hole_pages + 1);
				if (munmap(region + hole * page_size, hole_pages * page_size))
					abort();
				munmaps++;
			} else if (step == 5) {
				if (mmap(region + hole * page_size, hole_pages * page_size, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
					abort();
			} /* else: mmsim's yield op, which only passes the turn to the CPU's other task (the accesses, next) */
			step = (step + 1) % 6;
			ops++;
		}
		if (atomic_load_explicit(&stop, memory_order_relaxed) && step == 0)
			break;
	}
	atomic_fetch_add(&total_ops, ops);
	atomic_fetch_add(&total_segv, segv);
	atomic_fetch_add(&total_munmaps, munmaps);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s THREADS SECONDS\n", argv[0]);
		return 2;
	}
	nthreads = atoi(argv[1]);
	double seconds = atof(argv[2]);
	if (nthreads < 1 || nthreads > 1024 || !(seconds > 0)) {
		fprintf(stderr, "%s: bad THREADS or SECONDS\n", argv[0]);
		return 2;
	}
	page_size = sysconf(_SC_PAGESIZE);
	region = mmap(NULL, PAGES * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	pthread_t *t = calloc(nthreads, sizeof(*t));
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, run, (void *)i);
	struct timespec d = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&d, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	printf("{\"threads\":%d,\"ops\":%ld,\"seconds\":%.6f,\"ops_per_sec\":%.1f,\"segv\":%ld,\"munmaps\":%ld}\n",
	       nthreads, atomic_load(&total_ops), s, atomic_load(&total_ops) / s, atomic_load(&total_segv), atomic_load(&total_munmaps));
	return 0;
}
