/*
 * ring.h - the lock-free single-producer ring of deltas and seals
 * (private to the library; docs/FORMAT.md has the byte layout).
 *
 * Positions are 64-bit byte counters that only grow; the ring offset is
 * pos & (cap - 1).  Three positions matter:
 *   release_pos <= read position <= commit_pos <= write position
 * release_pos (flusher page): space before it is free again; moved only when
 *   a snapshot covering it is durable.
 * commit_pos (producer page): end of the newest seal; a reader reads only
 *   below it, so it only ever sees whole, sealed epochs (R1).
 * The write position is private to the producer: records of the open epoch
 *   lie between commit_pos and it, invisible until the seal.
 */
#ifndef CKPT_SHM_RING_H
#define CKPT_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

#include "region.h"
#include "shmckpt.h"

typedef struct ckpt__producer {
	uint8_t *ring;
	uint64_t cap, mask;
	struct ckpt_region_prod *p; /* our page */
	struct ckpt_region_flush *f; /* the flusher's page: we only read it */
	uint64_t wpos; /* next byte to write */
	uint64_t release_cache; /* last release_pos seen */
	uint64_t epoch_start; /* where the open epoch began */
	uint32_t nrec; /* records staged in the open epoch */
	int64_t epoch; /* last committed epoch */
	uint32_t max_key, max_value, max_meta;
	int full_policy;
	uint64_t full_wait_ns;
	int corrupt; /* the region failed a check: refuse further work */
} ckpt__producer_t;

/* Take over the producer side of @rg after a previous writer (or none):
 * the write position resumes at commit_pos; a record left half-written or
 * an unsealed epoch beyond it is counted and discarded. */
int ckpt__prod_init(ckpt__producer_t *pr, ckpt__region_t *rg, int full_policy,
		    uint32_t full_wait_ms, int64_t min_epoch);

int ckpt__prod_offset(ckpt__producer_t *pr, const char *topic,
		      int32_t partition, int64_t next);
int ckpt__prod_kv(ckpt__producer_t *pr, int type, const void *key,
		  size_t klen, const void *val, size_t vlen);
int64_t ckpt__prod_commit(ckpt__producer_t *pr);
void ckpt__prod_abort(ckpt__producer_t *pr);

/* The reading side. */
typedef struct ckpt__rd {
	ckpt__region_t *rg;
	uint64_t rpos; /* next byte to read */
	int64_t last_epoch; /* last epoch read; -1 unknown */
	uint8_t *buf; /* private copy of the current epoch */
	size_t bufcap;
} ckpt__rd_t;

/* Start reading at the region's release_pos. */
void ckpt__rd_init(ckpt__rd_t *rd, ckpt__region_t *rg);
void ckpt__rd_free(ckpt__rd_t *rd);
/* 1 and *ep, 0 nothing committed, CKPT_ECORRUPT / -ENOMEM. */
int ckpt__rd_next(ckpt__rd_t *rd, ckpt_epoch_t *ep);

/* Hash of an epoch body as the seal records it: XXH3-64 of the bytes, the
 * part before the ring's wrap point first, the rest seeded with that. */
uint64_t ckpt__epoch_hash(const uint8_t *a, size_t alen, const uint8_t *b,
			  size_t blen);

#endif
