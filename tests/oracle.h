/*
 * oracle.h - a model of a stream's state after epoch N, for crash tests.
 *
 * Epoch N of a run with seed S is a pure function of (S, N), so a process
 * that dies at any instant, a new one that continues from any epoch, and a
 * parent that checks what recovery returned all agree on what epoch N holds,
 * however many restarts (and lost epochs) came between.  The oracle keeps
 * descriptors only (a value is its length and the seed of its bytes), so
 * replaying epochs 1..N costs no byte generation and rebuilding from 0 is
 * cheap.
 *
 * What an epoch holds: 0 deltas (1 in 32), or 1..8 of: puts (empty key and
 * empty values included, values up to OR_VAL_MAX, keys up to ~160 bytes),
 * deletes (of present and absent keys), offsets over three topics (one of
 * CKPT_TOPIC_MAX bytes) and partitions up to INT32_MAX, and metadata blobs.
 * One epoch in 16 is preceded by junk deltas (a key no epoch uses, poison
 * values over real keys, offsets, metadata) that are staged and then
 * dropped by ckpt_abort(): they must never show.
 *
 * Streams that use it must open with or_opts() (limits that fit).
 */
#ifndef CKPT_TEST_ORACLE_H
#define CKPT_TEST_ORACLE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmckpt.h"
#include "testutil.h"

#define OR_KEYS 384
#define OR_TOPICS 3
#define OR_PARTS 4
#define OR_KEY_MAX 256
#define OR_VAL_MAX 12000
#define OR_META_MAX 3000
#define OR_MAX_DELTAS 8
/* what the foreach callbacks return to stop at a difference */
#define OR_STOP 0x5eed

static const int32_t or_parts[OR_PARTS] = { 0, 1, 7, 2147483647 };

/* Options every generated epoch fits (a quarter ring >= a record). */
static inline void or_opts(ckpt_opts_t *o, uint64_t ring)
{
	ckpt_opts_init(o);
	o->ring_size = ring;
	o->max_key = OR_KEY_MAX;
	o->max_value = 16384;
	o->max_meta = 4096;
	o->flusher = CKPT_FLUSHER_THREAD;
	o->full_policy = CKPT_FULL_WAIT;
	o->full_wait_ms = 5000;
}

/* Key @k: k 0 is the empty key; the others "k<k>/" and 0..149 filler
 * bytes, so keys differ in length and content.  Returns the length. */
static inline size_t or_key(int k, char out[OR_KEY_MAX])
{
	if (k == 0)
		return 0;
	int n = snprintf(out, OR_KEY_MAX, "k%d/", k);
	size_t fill = (size_t)k * 7 % 150;
	for (size_t i = 0; i < fill; i++)
		out[(size_t)n + i] = (char)('a' + (k + (int)i) % 26);
	return (size_t)n + fill;
}

/* Key index of a key, or -1 if no epoch uses it. */
static inline int or_key_index(const void *key, size_t klen)
{
	char buf[OR_KEY_MAX];
	const char *p = key;
	int k = 0;

	if (klen == 0)
		return 0;
	if (klen < 3 || p[0] != 'k')
		return -1;
	for (size_t i = 1; i < klen && p[i] != '/'; i++) {
		if (p[i] < '0' || p[i] > '9' || k > OR_KEYS)
			return -1;
		k = k * 10 + (p[i] - '0');
	}
	if (k <= 0 || k >= OR_KEYS || or_key(k, buf) != klen ||
	    memcmp(buf, key, klen) != 0)
		return -1;
	return k;
}

static inline const char *or_topic(int t)
{
	static char longest[CKPT_TOPIC_MAX + 1];
	if (t == 0)
		return "orders";
	if (t == 1)
		return "clicks.v2-eu_west";
	if (!longest[0]) {
		for (int i = 0; i < CKPT_TOPIC_MAX; i++)
			longest[i] = "xyz._-0123"[i % 10];
	}
	return longest;
}

/* The bytes of a value (or metadata blob) of seed @vs and length @n. */
static inline void or_fill(uint64_t vs, uint8_t *p, size_t n)
{
	uint64_t st = vs;
	while (n >= 8) {
		uint64_t r = tu_rand(&st);
		memcpy(p, &r, 8);
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t r = tu_rand(&st);
		memcpy(p, &r, n);
	}
}

typedef struct or_delta {
	int type; /* enum ckpt_delta_type */
	int k; /* PUT, DEL: key index; OFFSET: topic index */
	int p; /* OFFSET: partition index */
	int64_t off; /* OFFSET */
	uint32_t vlen; /* PUT, META */
	uint64_t vseed; /* PUT, META */
} or_delta_t;

typedef struct or_epoch {
	int64_t epoch;
	int n, junk; /* deltas; junk deltas staged then aborted first */
	or_delta_t d[OR_MAX_DELTAS];
} or_epoch_t;

static inline uint32_t or_len(uint64_t *st, uint32_t small, uint32_t max)
{
	uint64_t r = tu_rand(st);
	if (r % 20 == 0)
		return 0;
	if ((r >> 8) % 16 == 0)
		return (uint32_t)((r >> 32) % (max + 1));
	return 1 + (uint32_t)((r >> 32) % small);
}

/* Epoch @e of the run with @seed. */
static inline void or_gen(uint64_t seed, int64_t e, or_epoch_t *g)
{
	uint64_t st = seed ^ ((uint64_t)e * 0xa0761d6478bd642fULL);
	uint64_t r = tu_rand(&st);

	g->epoch = e;
	g->n = r % 32 == 0 ? 0 : 1 + (int)((r >> 8) % OR_MAX_DELTAS);
	g->junk = (r >> 16) % 16 == 0 ? 1 + (int)((r >> 24) % 4) : 0;
	for (int i = 0; i < g->n; i++) {
		or_delta_t *d = &g->d[i];
		uint64_t x = tu_rand(&st);
		memset(d, 0, sizeof(*d));
		unsigned kind = (unsigned)(x % 20);
		if (kind < 8) { /* 40% puts */
			d->type = CKPT_D_PUT;
			d->k = (int)((x >> 8) % OR_KEYS);
			d->vlen = or_len(&st, 200, OR_VAL_MAX);
			d->vseed = tu_rand(&st);
		} else if (kind < 11) { /* 15% deletes */
			d->type = CKPT_D_DEL;
			d->k = (int)((x >> 8) % OR_KEYS);
		} else if (kind < 18) { /* 35% offsets */
			d->type = CKPT_D_OFFSET;
			d->k = (int)((x >> 8) % OR_TOPICS);
			d->p = (int)((x >> 16) % OR_PARTS);
			d->off = (x >> 24) % 4 == 0 ? (int64_t)(tu_rand(&st) >> 2)
						    : e * 100 + i;
		} else { /* 10% metadata, mostly small */
			d->type = CKPT_D_META;
			d->vlen = 1 + (uint32_t)(tu_rand(&st) % OR_META_MAX);
			if (tu_rand(&st) % 4)
				d->vlen = 1 + d->vlen % 40;
			d->vseed = tu_rand(&st);
		}
	}
}

typedef struct or_oracle {
	int64_t epoch;
	uint8_t present[OR_KEYS];
	uint32_t vlen[OR_KEYS];
	uint64_t vseed[OR_KEYS];
	int64_t off[OR_TOPICS][OR_PARTS]; /* -1: never set */
	uint32_t meta_len; /* 0: none */
	uint64_t meta_seed;
} or_oracle_t;

static inline void or_reset(or_oracle_t *o)
{
	memset(o, 0, sizeof(*o));
	for (int t = 0; t < OR_TOPICS; t++)
		for (int p = 0; p < OR_PARTS; p++)
			o->off[t][p] = -1;
}

static inline void or_apply(or_oracle_t *o, const or_epoch_t *g)
{
	for (int i = 0; i < g->n; i++) {
		const or_delta_t *d = &g->d[i];
		switch (d->type) {
		case CKPT_D_PUT:
			o->present[d->k] = 1;
			o->vlen[d->k] = d->vlen;
			o->vseed[d->k] = d->vseed;
			break;
		case CKPT_D_DEL:
			o->present[d->k] = 0;
			break;
		case CKPT_D_OFFSET:
			o->off[d->k][d->p] = d->off;
			break;
		default:
			o->meta_len = d->vlen;
			o->meta_seed = d->vseed;
			break;
		}
	}
	o->epoch = g->epoch;
}

/* Move the oracle to epoch @e, forward by replay, backward by a rebuild
 * from epoch 0 (epochs after a power cut are lost, then made again). */
static inline void or_goto(or_oracle_t *o, uint64_t seed, int64_t e)
{
	or_epoch_t g;
	if (e < o->epoch)
		or_reset(o);
	while (o->epoch < e) {
		or_gen(seed, o->epoch + 1, &g);
		or_apply(o, &g);
	}
}

/* One delta on @s: 0 or its error (-EAGAIN: the ring stayed full for
 * full_wait_ms; nothing of the delta was staged). */
static inline int or_stage_one(ckpt_stream_t *s, const or_delta_t *d,
			       uint8_t *buf)
{
	char key[OR_KEY_MAX];
	size_t kl;

	switch (d->type) {
	case CKPT_D_PUT:
		kl = or_key(d->k, key);
		or_fill(d->vseed, buf, d->vlen);
		return ckpt_put(s, key, kl, buf, d->vlen);
	case CKPT_D_DEL:
		kl = or_key(d->k, key);
		return ckpt_del(s, key, kl);
	case CKPT_D_OFFSET:
		return ckpt_offset(s, or_topic(d->k), or_parts[d->p], d->off);
	default:
		or_fill(d->vseed, buf, d->vlen);
		return ckpt_meta(s, buf, d->vlen);
	}
}

/* The same, retrying -EAGAIN when @again is set (counted there). */
static inline int or_stage_retry(ckpt_stream_t *s, const or_delta_t *d,
				 uint8_t *buf, uint64_t *again)
{
	int ret;
	while ((ret = or_stage_one(s, d, buf)) == -EAGAIN && again)
		++*again;
	return ret;
}

/*
 * Stage epoch *g on @s: its junk first, aborted, then its deltas (the
 * epoch is left open for ckpt_commit).  @buf holds OR_VAL_MAX bytes.
 * A full ring (-EAGAIN) is waited out when @again is set (and counted
 * there), else returned with the deltas staged so far left open.
 * Returns 0 or the first error.
 */
static inline int or_stage(ckpt_stream_t *s, const or_epoch_t *g,
			   uint8_t *buf, uint64_t *again)
{
	int ret;

	for (int j = 0; j < g->junk; j++) {
		static const char junk_key[] = "junk:never-committed";
		or_delta_t d = { .type = CKPT_D_PUT,
				 .k = (int)(g->epoch % OR_KEYS),
				 .vlen = 17,
				 .vseed = ~(uint64_t)g->epoch };
		ret = or_stage_one(s, &d, buf);
		if (ret == 0)
			ret = ckpt_put(s, junk_key, sizeof(junk_key) - 1, "x", 1);
		if (ret == 0)
			ret = ckpt_offset(s, "junk", 0, 999999999);
		if (ret == 0)
			ret = ckpt_meta(s, "junk meta", 9);
		if (ret < 0 && ret != -EAGAIN)
			return ret;
	}
	if (g->junk && (ret = ckpt_abort(s)) != 0)
		return ret;
	for (int i = 0; i < g->n; i++) {
		ret = or_stage_retry(s, &g->d[i], buf, again);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Commit the staged epoch; an empty one may find the ring full. */
static inline int64_t or_commit(ckpt_stream_t *s, uint64_t *again)
{
	int64_t got;
	while ((got = ckpt_commit(s)) == -EAGAIN)
		if (again)
			++*again;
	return got;
}

struct or_walk {
	const or_oracle_t *o;
	uint8_t *buf;
	uint8_t seen[OR_KEYS];
	int seen_off[OR_TOPICS][OR_PARTS];
	int n;
	char *why;
	size_t cap;
};

static inline int or_walk_kv(void *arg, const void *key, size_t klen,
			     const void *val, size_t vlen)
{
	struct or_walk *w = arg;
	int k = or_key_index(key, klen);

	w->n++;
	if (k < 0) {
		snprintf(w->why, w->cap, "foreach_kv: a key no epoch puts "
			 "(%zu bytes, '%.*s')", klen, (int)(klen > 40 ? 40 : klen),
			 (const char *)key);
		return OR_STOP;
	}
	if (w->seen[k]++) {
		snprintf(w->why, w->cap, "foreach_kv: key %d visited twice", k);
		return OR_STOP;
	}
	if (!w->o->present[k]) {
		snprintf(w->why, w->cap, "foreach_kv: key %d present, oracle "
			 "deleted it", k);
		return OR_STOP;
	}
	or_fill(w->o->vseed[k], w->buf, w->o->vlen[k]);
	if (vlen != w->o->vlen[k] || (vlen && memcmp(val, w->buf, vlen))) {
		snprintf(w->why, w->cap, "foreach_kv: key %d: value of %zu "
			 "bytes differs from the oracle's %u", k, vlen,
			 w->o->vlen[k]);
		return OR_STOP;
	}
	return 0;
}

static inline int or_walk_off(void *arg, const char *topic, int32_t part,
			      int64_t next)
{
	struct or_walk *w = arg;
	int t, p;

	w->n++;
	for (t = 0; t < OR_TOPICS; t++)
		if (strcmp(topic, or_topic(t)) == 0)
			break;
	for (p = 0; p < OR_PARTS; p++)
		if (part == or_parts[p])
			break;
	if (t == OR_TOPICS || p == OR_PARTS) {
		snprintf(w->why, w->cap, "foreach_offset: unknown %.40s/%d",
			 topic, part);
		return OR_STOP;
	}
	if (w->seen_off[t][p]++ || w->o->off[t][p] != next) {
		snprintf(w->why, w->cap, "foreach_offset: topic %d/%d = %lld, "
			 "oracle %lld (visit %d)", t, part, (long long)next,
			 (long long)w->o->off[t][p], w->seen_off[t][p]);
		return OR_STOP;
	}
	return 0;
}

/*
 * Compare what @s recovered with the oracle, through every read call:
 * ckpt_recovered_epoch, ckpt_get of every key, ckpt_foreach_kv,
 * ckpt_get_offset of every topic/partition, ckpt_foreach_offset,
 * ckpt_get_meta.  0, or -1 with a sentence in @why.
 */
static inline int or_compare(const ckpt_stream_t *s, const or_oracle_t *o,
			     char *why, size_t cap)
{
	static uint8_t buf[OR_VAL_MAX];
	struct or_walk w;
	char key[OR_KEY_MAX];
	const void *v;
	size_t vl;
	int64_t off;
	int ret, nkeys = 0, noffs = 0;

	if (ckpt_recovered_epoch(s) != o->epoch) {
		snprintf(why, cap, "recovered epoch %lld, oracle at %lld",
			 (long long)ckpt_recovered_epoch(s),
			 (long long)o->epoch);
		return -1;
	}
	for (int k = 0; k < OR_KEYS; k++) {
		size_t kl = or_key(k, key);
		ret = ckpt_get(s, key, kl, &v, &vl);
		if (!o->present[k]) {
			if (ret != -ENOENT) {
				snprintf(why, cap, "epoch %lld: key %d: get %d, "
					 "the oracle has it deleted",
					 (long long)o->epoch, k, ret);
				return -1;
			}
			continue;
		}
		nkeys++;
		or_fill(o->vseed[k], buf, o->vlen[k]);
		if (ret != 0 || vl != o->vlen[k] ||
		    (vl && memcmp(v, buf, vl) != 0)) {
			snprintf(why, cap, "epoch %lld: key %d: get %d, %zu "
				 "bytes, oracle %u bytes%s", (long long)o->epoch,
				 k, ret, ret == 0 ? vl : 0, o->vlen[k],
				 ret == 0 && vl == o->vlen[k] ? " (content differs)"
							      : "");
			return -1;
		}
	}
	static const char junk_key[] = "junk:never-committed";
	if ((ret = ckpt_get(s, junk_key, sizeof(junk_key) - 1, &v, &vl)) !=
	    -ENOENT) {
		snprintf(why, cap, "epoch %lld: an aborted key is there (%d)",
			 (long long)o->epoch, ret);
		return -1;
	}
	for (int t = 0; t < OR_TOPICS; t++)
		for (int p = 0; p < OR_PARTS; p++) {
			ret = ckpt_get_offset(s, or_topic(t), or_parts[p], &off);
			if (o->off[t][p] < 0 ? ret != -ENOENT
					     : ret != 0 || off != o->off[t][p]) {
				snprintf(why, cap, "epoch %lld: offset of topic "
					 "%d/%d: get %d, %lld, oracle %lld",
					 (long long)o->epoch, t, or_parts[p], ret,
					 ret == 0 ? (long long)off : -1LL,
					 (long long)o->off[t][p]);
				return -1;
			}
			noffs += o->off[t][p] >= 0;
		}
	if ((ret = ckpt_get_offset(s, "junk", 0, &off)) != -ENOENT) {
		snprintf(why, cap, "epoch %lld: an aborted offset is there (%d)",
			 (long long)o->epoch, ret);
		return -1;
	}
	ret = ckpt_get_meta(s, &v, &vl);
	or_fill(o->meta_seed, buf, o->meta_len);
	if (ret != 0 || vl != o->meta_len ||
	    (vl && (!v || memcmp(v, buf, vl) != 0))) {
		snprintf(why, cap, "epoch %lld: metadata: %d, %zu bytes, oracle "
			 "%u bytes", (long long)o->epoch, ret, vl, o->meta_len);
		return -1;
	}

	memset(&w, 0, sizeof(w));
	w.o = o;
	w.buf = buf;
	w.why = why;
	w.cap = cap;
	ret = ckpt_foreach_kv(s, or_walk_kv, &w);
	if (ret != 0 || w.n != nkeys) {
		if (ret != OR_STOP)
			snprintf(why, cap, "epoch %lld: foreach_kv returned %d "
				 "after %d keys, oracle has %d",
				 (long long)o->epoch, ret, w.n, nkeys);
		return -1;
	}
	w.n = 0;
	ret = ckpt_foreach_offset(s, or_walk_off, &w);
	if (ret != 0 || w.n != noffs) {
		if (ret != OR_STOP)
			snprintf(why, cap, "epoch %lld: foreach_offset returned "
				 "%d after %d offsets, oracle has %d",
				 (long long)o->epoch, ret, w.n, noffs);
		return -1;
	}
	return 0;
}

#endif
