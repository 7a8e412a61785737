/*
 * hist.h - log-linear latency histograms kept in shared memory (the
 * region's stats page), written by one thread, read by anyone.
 *
 * Values are microseconds.  Bucket 0 holds [0, 1) us; for v >= 1 with
 * k = floor(log2 v) and j the two bits after the leading one (0 for
 * k < 2, except j = 2 for v = 3), bucket 1 + 4k + j holds
 * [2^k (1 + j/4), 2^k (1 + (j+1)/4)) us: four buckets per octave, so any
 * percentile read from it is within 25% of the truth.  Bucket 127 also
 * holds everything from 2^31 us (about 36 minutes) up.  docs/FORMAT.md
 * gives the same rule.
 */
#ifndef CKPT_SHM_HIST_H
#define CKPT_SHM_HIST_H

#include <stdint.h>

#define CKPT_HIST_BUCKETS 128

static inline unsigned ckpt__hist_bucket(uint64_t us)
{
	unsigned k, j, b;

	if (us == 0)
		return 0;
	k = 63u - (unsigned)__builtin_clzll(us);
	if (k >= 2)
		j = (unsigned)(us >> (k - 2)) & 3u;
	else
		j = k == 1 ? (unsigned)(us & 1u) * 2u : 0u;
	b = 1u + 4u * k + j;
	return b < CKPT_HIST_BUCKETS ? b : CKPT_HIST_BUCKETS - 1;
}

/* Lower bound of bucket @b, in microseconds (a double: for k < 2 the
 * quarter steps are fractional). */
static inline double ckpt__hist_lower(unsigned b)
{
	unsigned k, j;

	if (b == 0)
		return 0.0;
	k = (b - 1) / 4;
	j = (b - 1) % 4;
	return (double)(1ull << k) * (1.0 + j / 4.0);
}

#endif
