/*
 * fuzz_common.h - what the fuzz targets and the seed generator share: how a
 * region's identity page is made (as shm/region.c's create() makes it), the
 * input format of fuzz_ring, and the invariants every epoch read must keep.
 *
 * White-box: layout.h, region.h and ring.h are private to the library.
 */
#ifndef CKPT_FUZZ_COMMON_H
#define CKPT_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "region.h"
#include "ring.h"
#include "shmckpt.h"

#define FZ_NAME "fuzz"
#define FZ_DIR "/var/lib/shmckpt-fuzz"
#define FZ_RING (64u * 1024u) /* CKPT_RING_MIN: the smallest legal ring */

/* An invariant broke: print why and abort, so libFuzzer keeps the input. */
#define FZ_CHECK(cond, ...)                                                \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz invariant failed: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                      \
			fprintf(stderr, "\n  last error: %s\n",            \
				ckpt_last_error());                        \
			abort();                                           \
		}                                                          \
	} while (0)

/* Fill the identity page of a zeroed region of HDR_SIZE + @cap bytes the
 * way create() in shm/region.c does (version last). */
static inline void fz_region_init(struct ckpt_region *h, uint64_t cap,
				  uint32_t max_key, uint32_t max_value,
				  uint32_t max_meta)
{
	h->id.magic = CKPT_REGION_MAGIC;
	h->id.header_size = CKPT_REGION_HDR_SIZE;
	h->id.region_size = CKPT_REGION_HDR_SIZE + cap;
	h->id.ring_offset = CKPT_REGION_HDR_SIZE;
	h->id.ring_capacity = cap;
	h->id.creator_uid = 0;
	h->id.max_key = max_key;
	h->id.max_value = max_value;
	h->id.max_meta = max_meta;
	h->id.created_ns = 1;
	h->id.name_len = (uint32_t)strlen(FZ_NAME);
	memcpy(h->id.name, FZ_NAME, h->id.name_len);
	h->id.dir_len = (uint32_t)strlen(FZ_DIR);
	memcpy(h->id.dir, FZ_DIR, h->id.dir_len);
	h->id.flusher_mode = 0;
	__atomic_store_n(&h->id.layout_version, CKPT_LAYOUT_VERSION,
			 __ATOMIC_RELEASE);
}

/*
 * fuzz_ring input, little-endian:
 *   0  u64 release   release_pos (rounded down to 8)
 *   8  u32 used      commit_pos - release_pos, taken modulo cap + 8 and
 *                    rounded down to 8 (unless FZR_RAW_COMMIT)
 *  12  u8  flags     FZR_*
 *  13  u8  limits    index into fz_limits[]
 *  14  u16 nrt       round trip: epochs the producer writes afterwards
 *  16  ring bytes, laid into the ring from release_pos's offset on,
 *      wrapping; at most the ring's capacity is used.
 */
#define FZR_HDR 16u
#define FZR_FIX_SEALS 0x01u /* rewrite each seal found so it verifies */
#define FZR_AUTO_COMMIT 0x02u /* commit_pos = end of the last seal found */
#define FZR_RAW_COMMIT 0x04u /* commit_pos = release + used, unreduced */
#define FZR_ATTACH_FIRST 0x08u /* ckpt__prod_init's scan before reading */
#define FZR_ROUND_TRIP 0x10u /* then write epochs and read them back */

/*
 * Known bugs, reported to the lead (tests/fuzz/crashes/README.md):
 *  1. ring positions within a ring's capacity of 2^64 overflow the
 *     reader's bounds checks (pos + len > commit), so it spins ~2^48 times
 *     or hands out an epoch that ends past commit_pos; and
 *     ckpt__region_validate accepts such positions;
 *  2. a producer that takes over at committed epoch INT64_MAX overflows a
 *     signed int64 at its next commit (ckpt__prod_init accepts it).
 * Until they are fixed the targets skip those inputs so the rest keeps
 * being fuzzed; set this to 0 with the fixes, and the reproducers in
 * tests/fuzz/crashes/ (which fuzz-smoke always runs) become regression
 * inputs.
 */
#ifndef FZ_SKIP_KNOWN_BUGS
#define FZ_SKIP_KNOWN_BUGS 0 /* every known bug is fixed */
#endif

static inline int fz_known_bug(uint64_t commit, uint64_t cap)
{
	return FZ_SKIP_KNOWN_BUGS && commit > UINT64_MAX - 2 * cap;
}

struct fz_limits {
	uint32_t max_key, max_value, max_meta;
};

static const struct fz_limits fz_limits[4] = {
	{ 1024, 8192, 4096 },
	{ 1, 0, 0 },
	{ 65536, 16u << 20, 16u << 20 },
	{ 16, 16, 16 },
};

static inline uint64_t fz_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t fz_le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/*
 * Read every committed epoch of @rg from its release position and check
 * what ckpt__rd_next and ckpt_epoch_next promise whatever the ring holds:
 * only whole epochs below commit_pos, consecutive numbers, deltas inside
 * the reader's private copy and within the region's limits.  Returns the
 * last value of ckpt__rd_next (0 = read up to commit_pos).
 */
static inline int fz_read_all(ckpt__rd_t *rd, ckpt__region_t *rg,
			      unsigned *nepochs)
{
	uint64_t commit = rg->hdr->prod.commit_pos;
	int ret = 0;

	*nepochs = 0;
	for (int i = 0; i < 4096; i++) {
		ckpt_epoch_t ep;
		ckpt_delta_t d;
		uint64_t from = rd->rpos;
		int64_t last = rd->last_epoch;
		uint32_t n = 0;

		memset(&ep, 0, sizeof(ep));
		ret = ckpt__rd_next(rd, &ep);
		FZ_CHECK(ret == 1 || ret == 0 || ret == CKPT_ECORRUPT ||
				 ret == -ENOMEM,
			 "rd_next returned %d", ret);
		if (ret == 0) {
			FZ_CHECK(rd->rpos == commit,
				 "nothing more to read at %llu but commit is "
				 "%llu",
				 (unsigned long long)rd->rpos,
				 (unsigned long long)commit);
			break;
		}
		if (ret < 0) {
			FZ_CHECK(rd->rpos == from && rd->last_epoch == last,
				 "failed read moved the reader");
			break;
		}
		(*nepochs)++;
		FZ_CHECK(ep.end_pos > from && ep.end_pos <= commit &&
				 ep.end_pos - from <= rg->cap,
			 "epoch [%llu, %llu) outside [release, commit %llu)",
			 (unsigned long long)from,
			 (unsigned long long)ep.end_pos,
			 (unsigned long long)commit);
		FZ_CHECK(rd->rpos == ep.end_pos, "rpos != end_pos");
		FZ_CHECK(ep.epoch >= 1 && (last < 0 || ep.epoch == last + 1),
			 "epoch %lld after %lld", (long long)ep.epoch,
			 (long long)last);
		FZ_CHECK(ep.ckpt__len <= rd->bufcap, "epoch body beyond copy");

		const uint8_t *lo = ep.ckpt__buf, *hi = lo + ep.ckpt__len;
		while (n <= ep.ndeltas && ckpt_epoch_next(&ep, &d) == 1) {
			n++;
			switch (d.type) {
			case CKPT_D_OFFSET:
				FZ_CHECK(d.topic_len >= 1 &&
						 d.topic_len <= CKPT_TOPIC_MAX &&
						 d.partition >= 0 && d.offset >= 0,
					 "offset delta fields");
				FZ_CHECK((const uint8_t *)d.topic >= lo &&
						 (const uint8_t *)d.topic +
								 d.topic_len <=
							 hi,
					 "topic outside the epoch copy");
				break;
			case CKPT_D_PUT:
			case CKPT_D_DEL:
				FZ_CHECK(d.klen <= rg->max_key &&
						 d.vlen <= rg->max_value &&
						 (d.type == CKPT_D_PUT || !d.vlen),
					 "kv delta over the limits");
				FZ_CHECK(!d.klen || ((const uint8_t *)d.key >= lo &&
						     (const uint8_t *)d.key +
								     d.klen <=
							     hi),
					 "key outside the epoch copy");
				FZ_CHECK(!d.vlen || ((const uint8_t *)d.val >= lo &&
						     (const uint8_t *)d.val +
								     d.vlen <=
							     hi),
					 "value outside the epoch copy");
				break;
			case CKPT_D_META:
				FZ_CHECK(d.vlen <= rg->max_meta, "meta too long");
				FZ_CHECK(!d.vlen || ((const uint8_t *)d.val >= lo &&
						     (const uint8_t *)d.val +
								     d.vlen <=
							     hi),
					 "meta outside the epoch copy");
				break;
			default:
				FZ_CHECK(0, "delta type %d", d.type);
			}
		}
		FZ_CHECK(n == ep.ndeltas, "%u deltas iterated, epoch says %u", n,
			 ep.ndeltas);
	}
	return ret;
}

#endif
