/*
 * deltagen.h - random epochs of every delta type, a pure function of
 * (seed, epoch), so that a reader in another process can regenerate what
 * a writer committed and check it with no channel between them but the ring.
 *
 * An epoch has 0..DG_MAX_DELTAS deltas (about one in eight is empty): a mix
 * of offsets (topics of 1..249 bytes), puts and deletes (empty keys and
 * values included, values up to 4 KiB), and metadata blobs (empty ones
 * too).  Streams that use it need max_key >= DG_KEY_MAX, max_value >=
 * DG_VAL_MAX and max_meta >= DG_META_MAX.
 */
#ifndef CKPT_TEST_DELTAGEN_H
#define CKPT_TEST_DELTAGEN_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "shmckpt.h"
#include "testutil.h"

#define DG_MAX_DELTAS 6
#define DG_KEY_MAX 1024
#define DG_VAL_MAX 4096
#define DG_META_MAX 2048
#define DG_BUF (DG_MAX_DELTAS * (DG_KEY_MAX + DG_VAL_MAX + CKPT_TOPIC_MAX + 8))

typedef struct dg_epoch {
	int64_t epoch;
	uint32_t n;
	ckpt_delta_t d[DG_MAX_DELTAS];
	uint64_t hash; /* dg_hash() of d[0..n) */
	uint8_t buf[DG_BUF];
} dg_epoch_t;

static inline void dg_fill(uint64_t *st, uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t r = tu_rand(st);
		memcpy(p, &r, 8);
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t r = tu_rand(st);
		memcpy(p, &r, n);
	}
}

/* A length in [0, max]: mostly small, sometimes anything, sometimes 0. */
static inline size_t dg_len(uint64_t *st, size_t small, size_t max,
			    unsigned zero_in, unsigned big_in)
{
	uint64_t r = tu_rand(st);
	if (r % zero_in == 0)
		return 0;
	if ((r >> 16) % big_in == 0)
		return (size_t)((r >> 32) % (max + 1));
	return 1 + (size_t)((r >> 32) % small);
}

/* Fold one delta into a running XXH3 hash.  Only content counts. */
static inline uint64_t dg_hash_one(uint64_t h, const ckpt_delta_t *d)
{
	uint64_t w[6] = { (uint64_t)d->type, (uint64_t)(uint32_t)d->partition,
			  (uint64_t)d->offset, d->topic_len, d->klen, d->vlen };
	h = XXH3_64bits_withSeed(w, sizeof(w), h);
	if (d->topic_len)
		h = XXH3_64bits_withSeed(d->topic, d->topic_len, h);
	if (d->klen)
		h = XXH3_64bits_withSeed(d->key, d->klen, h);
	if (d->vlen)
		h = XXH3_64bits_withSeed(d->val, d->vlen, h);
	return h;
}

/* Epoch @e of the run with @seed into *g. */
static inline void dg_gen(uint64_t seed, int64_t e, dg_epoch_t *g)
{
	uint64_t st = seed ^ ((uint64_t)e * 0xd1b54a32d192ed03ULL);
	uint8_t *p = g->buf;
	uint64_t r = tu_rand(&st);

	g->epoch = e;
	g->n = r % 8 == 0 ? 0 : 1 + (uint32_t)((r >> 8) % DG_MAX_DELTAS);
	g->hash = 0;
	for (uint32_t i = 0; i < g->n; i++) {
		ckpt_delta_t *d = &g->d[i];
		uint64_t k = tu_rand(&st);
		memset(d, 0, sizeof(*d));
		switch (k % 8) {
		case 0:
		case 1: { /* offset; topic chars from the Kafka alphabet */
			static const char al[] = "abcdefghijklmnopqrstuvwxyz"
						 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						 "0123456789._-";
			size_t tl = (k >> 8) % 64 == 0
					    ? CKPT_TOPIC_MAX
					    : 1 + (size_t)((k >> 16) % 24);
			for (size_t j = 0; j < tl; j++)
				p[j] = (uint8_t)al[tu_rand(&st) % (sizeof(al) - 1)];
			p[tl] = '\0';
			d->type = CKPT_D_OFFSET;
			d->topic = (const char *)p;
			d->topic_len = tl;
			d->partition = (int32_t)((k >> 24) % 1000);
			d->offset = (int64_t)(tu_rand(&st) >> 2);
			p += tl + 1;
			break;
		}
		case 2:
		case 3:
		case 4:
		case 5: /* put */
			d->type = CKPT_D_PUT;
			d->klen = dg_len(&st, 32, DG_KEY_MAX, 6, 64);
			d->vlen = dg_len(&st, 128, DG_VAL_MAX, 10, 24);
			d->key = p;
			dg_fill(&st, p, d->klen);
			p += d->klen;
			d->val = p;
			dg_fill(&st, p, d->vlen);
			p += d->vlen;
			break;
		case 6: /* delete */
			d->type = CKPT_D_DEL;
			d->klen = dg_len(&st, 32, DG_KEY_MAX, 6, 64);
			d->key = p;
			dg_fill(&st, p, d->klen);
			p += d->klen;
			break;
		default: /* metadata */
			d->type = CKPT_D_META;
			d->vlen = dg_len(&st, 64, DG_META_MAX, 8, 32);
			d->val = p;
			dg_fill(&st, p, d->vlen);
			p += d->vlen;
			break;
		}
		g->hash = dg_hash_one(g->hash, d);
	}
}

/* Stage every delta of *g on @s (the epoch is left open).  -EAGAIN from a
 * full ring is retried (the caller's reader frees room); 0 or an error. */
static inline int dg_stage(ckpt_stream_t *s, const dg_epoch_t *g)
{
	for (uint32_t i = 0; i < g->n; i++) {
		const ckpt_delta_t *d = &g->d[i];
		int ret;
		do {
			switch (d->type) {
			case CKPT_D_OFFSET:
				ret = ckpt_offset(s, d->topic, d->partition,
						  d->offset);
				break;
			case CKPT_D_PUT:
				ret = ckpt_put(s, d->key, d->klen, d->val,
					       d->vlen);
				break;
			case CKPT_D_DEL:
				ret = ckpt_del(s, d->key, d->klen);
				break;
			default:
				ret = ckpt_meta(s, d->val, d->vlen);
				break;
			}
		} while (ret == -EAGAIN);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * Check a read epoch against the expected one.  Consumes the epoch's
 * deltas.  Returns NULL, or a sentence saying what differs.
 */
static inline const char *dg_check(ckpt_epoch_t *ep, const dg_epoch_t *g)
{
	static _Thread_local char why[200];
	ckpt_delta_t d;
	uint64_t h = 0;
	uint32_t i = 0;
	int ret;

	if (ep->epoch != g->epoch) {
		snprintf(why, sizeof(why), "epoch %lld, expected %lld",
			 (long long)ep->epoch, (long long)g->epoch);
		return why;
	}
	if (ep->ndeltas != g->n) {
		snprintf(why, sizeof(why), "epoch %lld: %u deltas, expected %u",
			 (long long)ep->epoch, ep->ndeltas, g->n);
		return why;
	}
	while ((ret = ckpt_epoch_next(ep, &d)) == 1) {
		if (i >= g->n) {
			snprintf(why, sizeof(why),
				 "epoch %lld: more deltas than its count",
				 (long long)ep->epoch);
			return why;
		}
		h = dg_hash_one(h, &d);
		i++;
	}
	if (ret != 0 || i != g->n) {
		snprintf(why, sizeof(why), "epoch %lld: iterated %u of %u (%d)",
			 (long long)ep->epoch, i, g->n, ret);
		return why;
	}
	if (h != g->hash) {
		snprintf(why, sizeof(why),
			 "epoch %lld: deltas hash %016llx, expected %016llx",
			 (long long)ep->epoch, (unsigned long long)h,
			 (unsigned long long)g->hash);
		return why;
	}
	return NULL;
}

/* Options that fit every generated delta into a ring of @ring bytes. */
static inline void dg_opts(ckpt_opts_t *o, uint64_t ring)
{
	ckpt_opts_init(o);
	o->ring_size = ring;
	o->max_key = DG_KEY_MAX;
	o->max_value = DG_VAL_MAX;
	o->max_meta = DG_META_MAX;
	o->flusher = CKPT_FLUSHER_EXTERNAL;
	o->flags |= CKPT_O_NOSLOTS; /* the test is the flusher */
	o->full_policy = CKPT_FULL_WAIT;
	o->full_wait_ms = 10000;
}

#endif
