/*
 * epochgen.h - deterministic epochs and their oracle, for crash tests.
 *
 * Epoch e of a run with seed S is a pure function of (S, e): a few puts and
 * deletes over a small key space, one offset, sometimes metadata.  A test
 * can therefore stage epoch e in a child that dies at any instant and
 * compute, in the parent, the exact state after any epoch E by applying
 * epochs 1..E to an oracle.
 */
#ifndef CKPT_TEST_EPOCHGEN_H
#define CKPT_TEST_EPOCHGEN_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmckpt.h"
#include "testutil.h"

#define EG_KEYS 64
#define EG_VMAX 96

typedef struct eg_oracle {
	int64_t epoch;
	int present[EG_KEYS];
	uint8_t val[EG_KEYS][EG_VMAX];
	size_t vlen[EG_KEYS];
	int64_t offset; /* topic "t", partition 0; -1 none */
	char meta[64];
	size_t meta_len;
} eg_oracle_t;

static inline void eg_key(int k, char out[8])
{
	snprintf(out, 8, "k%02d", k);
}

/* Call @fn for each delta of epoch @e: type, key index, value, length. */
typedef void (*eg_fn)(void *arg, int type, int k, const uint8_t *v, size_t n,
		      int64_t off);

static inline void eg_epoch(uint64_t seed, int64_t e, eg_fn fn, void *arg)
{
	uint64_t st = seed ^ ((uint64_t)e * 0x9e3779b97f4a7c15ULL);
	int n = (int)(tu_rand(&st) % 4);
	uint8_t v[EG_VMAX];

	for (int i = 0; i < n; i++) {
		int k = (int)(tu_rand(&st) % EG_KEYS);
		if (tu_rand(&st) % 5 == 0) {
			fn(arg, CKPT_D_DEL, k, NULL, 0, 0);
			continue;
		}
		size_t len = (size_t)(tu_rand(&st) % EG_VMAX);
		for (size_t j = 0; j < len; j++)
			v[j] = (uint8_t)tu_rand(&st);
		fn(arg, CKPT_D_PUT, k, v, len, 0);
	}
	fn(arg, CKPT_D_OFFSET, 0, NULL, 0, e * 10);
	if (e % 7 == 0) {
		char m[32];
		int ml = snprintf(m, sizeof(m), "meta@%lld", (long long)e);
		fn(arg, CKPT_D_META, 0, (const uint8_t *)m, (size_t)ml, 0);
	}
}

static inline void eg_apply_fn(void *arg, int type, int k, const uint8_t *v,
			       size_t n, int64_t off)
{
	eg_oracle_t *o = arg;
	switch (type) {
	case CKPT_D_PUT:
		o->present[k] = 1;
		memcpy(o->val[k], v, n);
		o->vlen[k] = n;
		break;
	case CKPT_D_DEL:
		o->present[k] = 0;
		break;
	case CKPT_D_OFFSET:
		o->offset = off;
		break;
	case CKPT_D_META:
		memcpy(o->meta, v, n);
		o->meta_len = n;
		break;
	}
}

static inline void eg_oracle_init(eg_oracle_t *o)
{
	memset(o, 0, sizeof(*o));
	o->offset = -1;
}

/* Advance the oracle to epoch @e (>= its current epoch). */
static inline void eg_oracle_to(eg_oracle_t *o, uint64_t seed, int64_t e)
{
	while (o->epoch < e) {
		o->epoch++;
		eg_epoch(seed, o->epoch, eg_apply_fn, o);
	}
}

struct eg_stage_ctx {
	ckpt_stream_t *s;
	int err;
};

static inline void eg_stage_fn(void *arg, int type, int k, const uint8_t *v,
			       size_t n, int64_t off)
{
	struct eg_stage_ctx *c = arg;
	char key[8];
	int ret = 0;

	eg_key(k, key);
	switch (type) {
	case CKPT_D_PUT:
		ret = ckpt_put(c->s, key, strlen(key), v, n);
		break;
	case CKPT_D_DEL:
		ret = ckpt_del(c->s, key, strlen(key));
		break;
	case CKPT_D_OFFSET:
		ret = ckpt_offset(c->s, "t", 0, off);
		break;
	case CKPT_D_META:
		ret = ckpt_meta(c->s, v, n);
		break;
	}
	if (ret < 0 && !c->err)
		c->err = ret;
}

/* Stage epoch @e on @s.  0 or the first error. */
static inline int eg_stage(ckpt_stream_t *s, uint64_t seed, int64_t e)
{
	struct eg_stage_ctx c = { s, 0 };
	eg_epoch(seed, e, eg_stage_fn, &c);
	return c.err;
}

static inline int eg_count_fn(void *arg, const void *k, size_t kl,
			      const void *v, size_t vl)
{
	(void)k, (void)kl, (void)v, (void)vl;
	++*(int *)arg;
	return 0;
}

/* Compare the recovered state of @s with @o; returns NULL or what differs. */
static inline const char *eg_compare(const ckpt_stream_t *s,
				     const eg_oracle_t *o)
{
	static _Thread_local char why[160];
	int64_t off;
	const void *v, *m;
	size_t vl, ml;
	int nkeys = 0;

	if (ckpt_recovered_epoch(s) != o->epoch) {
		snprintf(why, sizeof(why), "epoch %lld != oracle %lld",
			 (long long)ckpt_recovered_epoch(s),
			 (long long)o->epoch);
		return why;
	}
	for (int k = 0; k < EG_KEYS; k++) {
		char key[8];
		eg_key(k, key);
		int ret = ckpt_get(s, key, strlen(key), &v, &vl);
		if (!o->present[k]) {
			if (ret != -ENOENT) {
				snprintf(why, sizeof(why), "%s present (%d)",
					 key, ret);
				return why;
			}
			continue;
		}
		nkeys++;
		if (ret != 0 || vl != o->vlen[k] ||
		    (vl && memcmp(v, o->val[k], vl))) {
			snprintf(why, sizeof(why), "%s differs (%d)", key, ret);
			return why;
		}
	}
	int ret = ckpt_get_offset(s, "t", 0, &off);
	if (o->offset < 0 ? ret != -ENOENT : (ret != 0 || off != o->offset)) {
		snprintf(why, sizeof(why), "offset %lld != %lld (%d)",
			 (long long)off, (long long)o->offset, ret);
		return why;
	}
	if (ckpt_get_meta(s, &m, &ml) != 0 || ml != o->meta_len ||
	    (ml && memcmp(m, o->meta, ml))) {
		snprintf(why, sizeof(why), "metadata differs");
		return why;
	}
	int total = 0;
	ckpt_foreach_kv(s, eg_count_fn, &total);
	if (total != nkeys) {
		snprintf(why, sizeof(why), "%d keys, oracle has %d", total,
			 nkeys);
		return why;
	}
	return NULL;
}

/* The same comparison for a snapshot loaded from a slot (white-box). */
#ifdef CKPT_CORE_SNAPSHOT_H
static inline const char *eg_compare_snap(const ckpt__snap_t *sn,
					  const eg_oracle_t *o)
{
	static _Thread_local char why[160];
	const void *v, *m;
	size_t vl, ml;
	int64_t off;
	size_t nkeys = 0;

	if (ckpt__snap_epoch(sn) != o->epoch) {
		snprintf(why, sizeof(why), "epoch %lld != oracle %lld",
			 (long long)ckpt__snap_epoch(sn), (long long)o->epoch);
		return why;
	}
	for (int k = 0; k < EG_KEYS; k++) {
		char key[8];
		eg_key(k, key);
		int ret = ckpt__snap_get(sn, key, strlen(key), &v, &vl);
		if (!o->present[k]) {
			if (ret != -ENOENT) {
				snprintf(why, sizeof(why), "%s present", key);
				return why;
			}
			continue;
		}
		nkeys++;
		if (ret || vl != o->vlen[k] || (vl && memcmp(v, o->val[k], vl))) {
			snprintf(why, sizeof(why), "%s differs", key);
			return why;
		}
	}
	int ret = ckpt__snap_get_offset(sn, "t", 1, 0, &off);
	if (o->offset < 0 ? ret != -ENOENT : (ret || off != o->offset)) {
		snprintf(why, sizeof(why), "offset differs");
		return why;
	}
	ckpt__snap_get_meta(sn, &m, &ml);
	if (ml != o->meta_len || (ml && memcmp(m, o->meta, ml))) {
		snprintf(why, sizeof(why), "metadata differs");
		return why;
	}
	if (ckpt__snap_nkeys(sn) != nkeys) {
		snprintf(why, sizeof(why), "%zu keys, oracle %zu",
			 ckpt__snap_nkeys(sn), nkeys);
		return why;
	}
	return NULL;
}
#endif

#endif
