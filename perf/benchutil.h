/*
 * benchutil.h - what every benchmark needs the same way: clocks, the
 * directory to write to (a real filesystem, not tmpfs, unless asked), and
 * cleaning up after itself.
 */
#ifndef CKPT_PERF_BENCHUTIL_H
#define CKPT_PERF_BENCHUTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The time-stamp counter, fenced on both sides: the first lfence waits for
 * earlier instructions to finish, the second keeps later ones from
 * starting before the read.  Elsewhere than x86, CLOCK_MONOTONIC in ns. */
static inline uint64_t tsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;
	__asm__ __volatile__("lfence\n\trdtsc\n\tlfence"
			     : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
#else
	return mono_ns();
#endif
}

/* splitmix64's finaliser: cheap, well-spread values from a counter. */
static inline uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline const char *fs_name(long t)
{
	switch ((unsigned long)t) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs";
	case 0x858458f6: return "ramfs";
	case 0x794c7630: return "overlayfs";
	case 0x6969: return "nfs";
	case 0x2fc12fc1: return "zfs";
	case 0xF2F52010: return "f2fs";
	}
	return "other";
}

static inline int is_ramfs(long t)
{
	return (unsigned long)t == 0x01021994 || (unsigned long)t == 0x858458f6;
}

/* Where to write: $CKPT_BENCH_DIR as given, else the first of $TMPDIR,
 * /var/tmp, /tmp that is not in memory (fdatasync on tmpfs measures
 * nothing). */
static inline const char *pick_base(void)
{
	const char *c[] = { getenv("CKPT_BENCH_DIR"), getenv("TMPDIR"),
			    "/var/tmp", "/tmp" };
	struct statfs sf;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		if (!c[i] || statfs(c[i], &sf) != 0)
			continue;
		if (i == 0 || !is_ramfs((long)sf.f_type))
			return c[i];
	}
	return "/tmp";
}

/* nftw callback: remove what it is given (a tree, depth first). */
static inline int rm_one(const char *p, const struct stat *sb, int flag,
			 struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

#endif
