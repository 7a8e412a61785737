/*
 * testutil.h - small helpers shared by the test programs.
 */
#ifndef CKPT_TESTUTIL_H
#define CKPT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CKPT_TEST_SKIP 77

/* A fresh private directory under $TMPDIR (or /tmp); removed (with its
 * stream regions) by tu_rmdir().  Aborts on failure. */
char *tu_mkdtemp(const char *tag);
void tu_rmdir(char *dir);

/* Remove every shared-memory region that belongs to streams under @dir. */
void tu_unlink_regions(const char *dir);

/* Iterations scaled down under sanitizers: n / CKPT_TEST_SCALE (>= 1). */
uint64_t tu_scaled(uint64_t n);

/* Deterministic PRNG (splitmix64). */
static inline uint64_t tu_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A seed from the environment (CKPT_TEST_SEED) or the clock; printed so a
 * failure can be replayed. */
uint64_t tu_seed(const char *test);

/* Monotonic clock in ns. */
uint64_t tu_now_ns(void);

/* Wait for @pid; returns its raw wait status. */
int tu_wait(pid_t pid);

/* Wait for @pid at most @secs (a liveness bound, not a timing assertion);
 * past it, kill it so that no child outlives a failed test.  Returns the
 * wait status, or -1 if it had to be killed. */
int tu_wait_bounded(pid_t pid, unsigned secs);

/* In a forked child: write the reason into @why (@cap bytes of memory the
 * parent shares and reads), raise *failed with release, and _exit(@code). */
void tu_child_fail(char *why, size_t cap, int *failed, int code,
		   const char *fmt, ...)
	__attribute__((format(printf, 5, 6), noreturn));

/* Print "SKIP: why" and exit 77. */
void tu_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
