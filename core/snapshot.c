/*
 * snapshot.c - the materialized state of a stream.
 *
 * Keys and offsets live in two hash tables of the same kind: open
 * addressing, linear probing, power-of-two capacity doubled at 3/4 load,
 * deletion by backward shift (no tombstones, so a table that sees millions
 * of put/del pairs never degrades).  A table cell holds the full XXH3-64 of
 * the key next to the entry pointer, so a probe that misses compares 8
 * bytes in the table instead of chasing a pointer into the heap.
 *
 * Every entry is one allocation: a small header, then the key, then the
 * value; a bulk load (decoding a slot) carves its entries from one arena
 * instead, since a malloc per entry costs more than the copy itself.  An offset is an entry whose key is "topic\0" + partition (4 bytes)
 * and whose value is the next offset (8 bytes): the topic is then already
 * NUL-terminated for ckpt__snap_foreach_offset.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"
#include "snapshot.h"

struct ent {
	uint32_t klen;
	uint32_t vlen;
	unsigned char kv[]; /* key, then value */
};

struct cell {
	uint64_t h; /* XXH3-64 of the key; meaningless when e == NULL */
	struct ent *e; /* NULL: empty */
};

struct tab {
	struct cell *c;
	size_t cap; /* 0 or a power of two */
	size_t n;
	/* Arena of a bulk load (ckpt__snap_reserve): entries carved in
	 * order, never freed one by one; the mapping goes when the last of
	 * them is deleted or replaced, or at clear.  So the memory it holds
	 * is at most the size of the state that was loaded. */
	unsigned char *arena;
	size_t arena_size, arena_used, arena_live;
};

struct ckpt__snap {
	struct tab kv;
	struct tab off;
	void *meta;
	size_t meta_len;
	int64_t epoch;
	size_t data_bytes; /* keys + values + topics + meta */
	uint64_t kv_rec, off_rec; /* see ckpt__snap_record_bytes */
};

#define TAB_MIN_CAP 16u
#define REC8(n) (((uint64_t)(n) + 7) & ~(uint64_t)7)
#define KV_REC(klen, vlen) REC8(8 + (uint64_t)(klen) + (vlen))
#define OFF_REC(tlen) REC8(16 + (uint64_t)(tlen))
/* Offset keys: topic, NUL, partition. */
#define OFF_KEY_MAX (CKPT_TOPIC_MAX + 1 + 4)

/* ------------------------------------------------------------------------
 * Allocation, with a failure hook for the -ENOMEM tests.  Thread-local so
 * a test arming it cannot disturb (or race with) a flusher thread.
 * ------------------------------------------------------------------------ */

static _Thread_local long fail_after = -1;

void ckpt__snap_fail_alloc_after(long n)
{
	fail_after = n;
}

static int alloc_denied(void)
{
	if (__builtin_expect(fail_after < 0, 1))
		return 0;
	if (fail_after == 0)
		return 1;
	fail_after--;
	return 0;
}

static void *snap_malloc(size_t n)
{
	return alloc_denied() ? NULL : malloc(n);
}

static void *snap_calloc(size_t n, size_t size)
{
	return alloc_denied() ? NULL : calloc(n, size);
}

/*
 * Blocks of 2 MiB and more (tables of large snapshots, arenas) come from
 * mmap with transparent huge pages asked for: a 1 GiB snapshot in 4 KiB
 * pages costs 2^18 page faults and TLB misses on every random probe, and
 * page faults are what dominated loading (measured: perf/bench_recovery).
 * The pages come zeroed, which is what tables need.
 */
#define BIG_BLOCK (2u << 20)

static void *big_zalloc(size_t n)
{
	void *p;

	if (n < BIG_BLOCK)
		return snap_calloc(1, n);
	if (alloc_denied())
		return NULL;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, n, MADV_HUGEPAGE); /* a hint: fine if refused */
	return p;
}

static void big_free(void *p, size_t n)
{
	if (!p)
		return;
	if (n < BIG_BLOCK)
		free(p);
	else
		munmap(p, n);
}

/* ------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------ */

static uint64_t key_hash(const void *key, size_t klen)
{
	return XXH3_64bits(key, klen);
}

static inline const unsigned char *ent_val(const struct ent *e)
{
	return e->kv + e->klen;
}

/* Index of @key's cell, or of the empty cell where it would go.  The
 * table must have capacity (cap > n), which tab_make_room guarantees. */
static size_t tab_find(const struct tab *t, uint64_t h, const void *key,
		       size_t klen)
{
	size_t mask = t->cap - 1;
	size_t i = (size_t)h & mask;

	for (;; i = (i + 1) & mask) {
		const struct cell *c = &t->c[i];
		if (!c->e)
			return i;
		/* klen 0: the empty key may come as NULL, which memcmp
		 * must not see even for 0 bytes. */
		if (c->h == h && c->e->klen == klen &&
		    (!klen || memcmp(c->e->kv, key, klen) == 0))
			return i;
	}
}

static const struct ent *tab_get(const struct tab *t, const void *key,
				 size_t klen)
{
	if (!t->n)
		return NULL;
	return t->c[tab_find(t, key_hash(key, klen), key, klen)].e;
}

/* Move every entry into a table of @cap cells; on failure nothing moved. */
static int tab_resize(struct tab *t, size_t cap)
{
	struct cell *nc = big_zalloc(cap * sizeof(*nc));
	size_t mask = cap - 1;

	if (!nc)
		return ckpt__fail(-ENOMEM, "snapshot: no memory for a table "
				  "of %zu cells", cap);
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->c[i].e)
			continue;
		size_t j = (size_t)t->c[i].h & mask;
		while (nc[j].e)
			j = (j + 1) & mask;
		nc[j] = t->c[i];
	}
	big_free(t->c, t->cap * sizeof(*nc));
	t->c = nc;
	t->cap = cap;
	return 0;
}

/* Capacity that keeps @n entries at or under 3/4 load (linear probing
 * slows sharply above that). */
static size_t cap_for(size_t n)
{
	size_t cap = TAB_MIN_CAP;
	while (cap - cap / 4 < n)
		cap *= 2;
	return cap;
}

static int tab_make_room(struct tab *t, size_t n)
{
	if (t->cap && n <= t->cap - t->cap / 4)
		return 0;
	return tab_resize(t, cap_for(n));
}

static int in_arena(const struct tab *t, const struct ent *e)
{
	uintptr_t p = (uintptr_t)e, a = (uintptr_t)t->arena;
	return t->arena && p >= a && p < a + t->arena_size;
}

static struct ent *ent_alloc(struct tab *t, size_t size)
{
	size_t sz = (size + 7) & ~(size_t)7; /* keeps struct ent aligned */

	if (t->arena && t->arena_size - t->arena_used >= sz) {
		void *e = t->arena + t->arena_used;
		t->arena_used += sz;
		t->arena_live++;
		return e;
	}
	return snap_malloc(size);
}

static void ent_free(struct tab *t, struct ent *e)
{
	if (!in_arena(t, e)) {
		free(e);
		return;
	}
	if (--t->arena_live == 0) {
		big_free(t->arena, t->arena_size);
		t->arena = NULL;
		t->arena_size = t->arena_used = 0;
	}
}

/* Remove the entry at cell @i and close the gap (backward shift): every
 * later entry of the run whose home is not in (i, j] moves back, so each
 * entry stays reachable from its home without tombstones. */
static void tab_remove_at(struct tab *t, size_t i)
{
	size_t mask = t->cap - 1;
	size_t j = i;

	ent_free(t, t->c[i].e);
	t->c[i].e = NULL;
	t->n--;
	for (;;) {
		j = (j + 1) & mask;
		if (!t->c[j].e)
			return;
		size_t home = (size_t)t->c[j].h & mask;
		/* Distance from home to j, and from home to the hole. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->c[i] = t->c[j];
			t->c[j].e = NULL;
			i = j;
		}
	}
}

static void tab_free(struct tab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->c[i].e && !in_arena(t, t->c[i].e))
			free(t->c[i].e);
	big_free(t->c, t->cap * sizeof(*t->c));
	big_free(t->arena, t->arena_size);
	memset(t, 0, sizeof(*t));
}

static struct ent *ent_new(struct tab *t, const void *k1, size_t l1,
			   const void *k2, size_t l2, const void *val,
			   size_t vlen)
{
	struct ent *e = ent_alloc(t, sizeof(*e) + l1 + l2 + vlen);
	if (!e)
		return NULL;
	e->klen = (uint32_t)(l1 + l2);
	e->vlen = (uint32_t)vlen;
	if (l1)
		memcpy(e->kv, k1, l1);
	if (l2)
		memcpy(e->kv + l1, k2, l2);
	if (vlen)
		memcpy(e->kv + l1 + l2, val, vlen);
	return e;
}

/*
 * Insert or replace; the key is @k1 followed by @k2 (offsets are keyed by
 * topic and partition without building a key first).  On failure the table
 * is unchanged except possibly for a larger capacity.  *old_vlen gets the
 * replaced value's length, or -1 when the key is new.
 */
static int tab_put(struct tab *t, const void *k1, size_t l1, const void *k2,
		   size_t l2, const void *val, size_t vlen, long *old_vlen)
{
	unsigned char kbuf[OFF_KEY_MAX];
	const void *key = k1;
	size_t klen = l1 + l2;

	if (l2) {
		/* Only offset keys come in two parts, and they are short. */
		memcpy(kbuf, k1, l1);
		memcpy(kbuf + l1, k2, l2);
		key = kbuf;
	}
	uint64_t h = key_hash(key, klen);
	size_t i = t->cap ? tab_find(t, h, key, klen) : 0;
	struct ent *e = t->cap ? t->c[i].e : NULL;

	if (e) {
		*old_vlen = e->vlen;
		if (e->vlen == vlen) {
			/* Same size (counters, offsets): overwrite in place,
			 * no allocation, so this path cannot fail. */
			if (vlen)
				memcpy(e->kv + e->klen, val, vlen);
			return 0;
		}
		struct ent *ne = ent_new(t, key, klen, NULL, 0, val, vlen);
		if (!ne)
			return ckpt__fail(-ENOMEM, "snapshot: no memory for a "
					  "%zu-byte value", vlen);
		ent_free(t, e);
		t->c[i].e = ne;
		return 0;
	}

	*old_vlen = -1;
	if (!t->cap || t->n + 1 > t->cap - t->cap / 4) {
		int ret = tab_make_room(t, t->n + 1);
		if (ret < 0)
			return ret;
		i = tab_find(t, h, key, klen);
	}
	e = ent_new(t, key, klen, NULL, 0, val, vlen);
	if (!e)
		return ckpt__fail(-ENOMEM, "snapshot: no memory for a %zu-byte "
				  "entry", klen + vlen);
	t->c[i].h = h;
	t->c[i].e = e;
	t->n++;
	return 0;
}

/* 1 if removed, 0 if absent; *old_vlen gets the removed value's length. */
static int tab_del(struct tab *t, const void *key, size_t klen,
		   size_t *old_vlen)
{
	if (!t->n)
		return 0;
	size_t i = tab_find(t, key_hash(key, klen), key, klen);
	if (!t->c[i].e)
		return 0;
	*old_vlen = t->c[i].e->vlen;
	tab_remove_at(t, i);
	return 1;
}

/* ------------------------------------------------------------------------
 * Snapshot
 * ------------------------------------------------------------------------ */

ckpt__snap_t *ckpt__snap_new(void)
{
	ckpt__snap_t *s = snap_calloc(1, sizeof(*s));
	if (!s)
		ckpt__fail(-ENOMEM, "snapshot: out of memory");
	return s;
}

void ckpt__snap_clear(ckpt__snap_t *s)
{
	tab_free(&s->kv);
	tab_free(&s->off);
	free(s->meta);
	s->meta = NULL;
	s->meta_len = 0;
	s->epoch = 0;
	s->data_bytes = 0;
	s->kv_rec = s->off_rec = 0;
}

void ckpt__snap_free(ckpt__snap_t *s)
{
	if (!s)
		return;
	ckpt__snap_clear(s);
	free(s);
}

int ckpt__snap_reserve(ckpt__snap_t *s, size_t nkeys, size_t kv_bytes)
{
	struct tab *t = &s->kv;
	const size_t per = sizeof(struct ent) + 7;
	int ret;

	if (nkeys > (SIZE_MAX / sizeof(struct cell)) / 4 ||
	    kv_bytes > SIZE_MAX / 2 || nkeys > (SIZE_MAX / 2) / per)
		return ckpt__fail(-ENOMEM, "snapshot: cannot hold %zu keys "
				  "of %zu bytes", nkeys, kv_bytes);
	ret = tab_make_room(t, t->n + nkeys);
	if (ret < 0 || !nkeys || !kv_bytes || t->arena)
		return ret; /* one arena at a time: later ones malloc */
	size_t size = kv_bytes + nkeys * per;
	t->arena = big_zalloc(size);
	if (!t->arena)
		return ckpt__fail(-ENOMEM, "snapshot: no memory for a %zu-byte "
				  "arena", size);
	t->arena_size = size;
	t->arena_used = t->arena_live = 0;
	return 0;
}

static int check_offset(const ckpt_delta_t *d)
{
	if (!d->topic || d->topic_len < 1 || d->topic_len > CKPT_TOPIC_MAX)
		return ckpt__fail(-EINVAL, "snapshot: topic must be 1..%d "
				  "bytes, got %zu", CKPT_TOPIC_MAX,
				  d->topic ? d->topic_len : 0);
	/* The topic is handed out NUL-terminated: a NUL inside would cut it. */
	if (memchr(d->topic, '\0', d->topic_len))
		return ckpt__fail(-EINVAL, "snapshot: topic contains a NUL byte");
	if (d->partition < 0 || d->offset < 0)
		return ckpt__fail(-EINVAL, "snapshot: negative partition %d or "
				  "offset %lld", (int)d->partition,
				  (long long)d->offset);
	return 0;
}

static int apply_offset(ckpt__snap_t *s, const ckpt_delta_t *d)
{
	unsigned char part[5];
	long old;
	int ret = check_offset(d);
	if (ret < 0)
		return ret;

	part[0] = '\0';
	memcpy(part + 1, &d->partition, 4);
	ret = tab_put(&s->off, d->topic, d->topic_len, part, sizeof(part),
		      &d->offset, sizeof(d->offset), &old);
	if (ret == 0 && old < 0) {
		s->data_bytes += d->topic_len;
		s->off_rec += OFF_REC(d->topic_len);
	}
	return ret;
}

static int apply_put(ckpt__snap_t *s, const ckpt_delta_t *d)
{
	long old;
	int ret;

	if ((!d->key && d->klen) || (!d->val && d->vlen))
		return ckpt__fail(-EINVAL, "snapshot: NULL key or value with a "
				  "non-zero length");
	if (d->klen > CKPT__SNAP_KEY_MAX || d->vlen > CKPT__SNAP_VAL_MAX)
		return ckpt__fail(-EINVAL, "snapshot: key of %zu bytes (max %u) "
				  "or value of %zu bytes (max %u)", d->klen,
				  CKPT__SNAP_KEY_MAX, d->vlen,
				  CKPT__SNAP_VAL_MAX);
	ret = tab_put(&s->kv, d->key, d->klen, NULL, 0, d->val, d->vlen, &old);
	if (ret < 0)
		return ret;
	if (old < 0) {
		s->data_bytes += d->klen + d->vlen;
	} else {
		s->data_bytes = s->data_bytes - (size_t)old + d->vlen;
		s->kv_rec -= KV_REC(d->klen, (size_t)old);
	}
	s->kv_rec += KV_REC(d->klen, d->vlen);
	return 0;
}

static int apply_del(ckpt__snap_t *s, const ckpt_delta_t *d)
{
	size_t old;

	if (!d->key && d->klen)
		return ckpt__fail(-EINVAL, "snapshot: NULL key with a non-zero "
				  "length");
	if (d->klen > CKPT__SNAP_KEY_MAX)
		return 0; /* could never have been put */
	if (tab_del(&s->kv, d->key, d->klen, &old)) {
		s->data_bytes -= d->klen + old;
		s->kv_rec -= KV_REC(d->klen, old);
	}
	return 0;
}

static int apply_meta(ckpt__snap_t *s, const ckpt_delta_t *d)
{
	void *m = NULL;

	if (!d->val && d->vlen)
		return ckpt__fail(-EINVAL, "snapshot: NULL metadata with a "
				  "non-zero length");
	if (d->vlen > CKPT__SNAP_META_MAX)
		return ckpt__fail(-EINVAL, "snapshot: metadata of %zu bytes "
				  "(max %u)", d->vlen, CKPT__SNAP_META_MAX);
	if (d->vlen) {
		m = snap_malloc(d->vlen);
		if (!m)
			return ckpt__fail(-ENOMEM, "snapshot: no memory for "
					  "%zu bytes of metadata", d->vlen);
		memcpy(m, d->val, d->vlen);
	}
	free(s->meta);
	s->data_bytes = s->data_bytes - s->meta_len + d->vlen;
	s->meta = m;
	s->meta_len = d->vlen;
	return 0;
}

int ckpt__snap_apply(ckpt__snap_t *s, const ckpt_delta_t *d)
{
	switch (d->type) {
	case CKPT_D_OFFSET:
		return apply_offset(s, d);
	case CKPT_D_PUT:
		return apply_put(s, d);
	case CKPT_D_DEL:
		return apply_del(s, d);
	case CKPT_D_META:
		return apply_meta(s, d);
	default:
		return ckpt__fail(-EINVAL, "snapshot: unknown delta type %d",
				  d->type);
	}
}

void ckpt__snap_set_epoch(ckpt__snap_t *s, int64_t epoch)
{
	s->epoch = epoch;
}

int64_t ckpt__snap_epoch(const ckpt__snap_t *s)
{
	return s->epoch;
}

int ckpt__snap_get(const ckpt__snap_t *s, const void *key, size_t klen,
		   const void **val, size_t *vlen)
{
	const struct ent *e;

	if (klen > CKPT__SNAP_KEY_MAX || (!key && klen))
		return -ENOENT;
	e = tab_get(&s->kv, key, klen);
	if (!e)
		return -ENOENT;
	*val = ent_val(e);
	*vlen = e->vlen;
	return 0;
}

int ckpt__snap_get_offset(const ckpt__snap_t *s, const char *topic,
			  size_t topic_len, int32_t partition, int64_t *next)
{
	unsigned char key[OFF_KEY_MAX];
	const struct ent *e;

	if (!topic || topic_len < 1 || topic_len > CKPT_TOPIC_MAX)
		return -ENOENT;
	memcpy(key, topic, topic_len);
	key[topic_len] = '\0';
	memcpy(key + topic_len + 1, &partition, 4);
	e = tab_get(&s->off, key, topic_len + 5);
	if (!e)
		return -ENOENT;
	memcpy(next, ent_val(e), sizeof(*next));
	return 0;
}

void ckpt__snap_get_meta(const ckpt__snap_t *s, const void **blob,
			 size_t *len)
{
	*blob = s->meta;
	*len = s->meta_len;
}

/* Cells ahead whose entries are prefetched while visiting: entries lie
 * wherever malloc put them, so walking the table in order would wait for
 * memory at every entry of a large snapshot (encoding 1 GiB measured
 * twice as fast with it). */
#define PREFETCH_AHEAD 16

int ckpt__snap_foreach_kv(const ckpt__snap_t *s, ckpt_kv_fn fn, void *arg)
{
	for (size_t i = 0; i < s->kv.cap; i++) {
		const struct ent *e = s->kv.c[i].e;
		if (i + PREFETCH_AHEAD < s->kv.cap) {
			const struct ent *f = s->kv.c[i + PREFETCH_AHEAD].e;
			if (f) {
				__builtin_prefetch(f);
				__builtin_prefetch((const char *)f + 64);
			}
		}
		if (!e)
			continue;
		int ret = fn(arg, e->kv, e->klen, ent_val(e), e->vlen);
		if (ret)
			return ret;
	}
	return 0;
}

static void offset_of(const struct ent *e, int32_t *partition, int64_t *next)
{
	memcpy(partition, e->kv + e->klen - 4, 4);
	memcpy(next, ent_val(e), 8);
}

int ckpt__snap_foreach_offset(const ckpt__snap_t *s, ckpt_offset_fn fn,
			      void *arg)
{
	for (size_t i = 0; i < s->off.cap; i++) {
		const struct ent *e = s->off.c[i].e;
		int32_t partition;
		int64_t next;

		if (!e)
			continue;
		offset_of(e, &partition, &next);
		int ret = fn(arg, (const char *)e->kv, partition, next);
		if (ret)
			return ret;
	}
	return 0;
}

size_t ckpt__snap_nkeys(const ckpt__snap_t *s)
{
	return s->kv.n;
}

size_t ckpt__snap_noffsets(const ckpt__snap_t *s)
{
	return s->off.n;
}

size_t ckpt__snap_data_bytes(const ckpt__snap_t *s)
{
	return s->data_bytes;
}

void ckpt__snap_record_bytes(const ckpt__snap_t *s, uint64_t *kv,
			     uint64_t *offsets)
{
	*kv = s->kv_rec;
	*offsets = s->off_rec;
}

/* Every entry of @a is in @b with the same value; with equal counts and
 * unique keys that makes the tables equal whatever their order. */
static int tab_subset(const struct tab *a, const struct tab *b)
{
	for (size_t i = 0; i < a->cap; i++) {
		const struct ent *e = a->c[i].e;
		if (!e)
			continue;
		const struct ent *f = tab_get(b, e->kv, e->klen);
		if (!f || f->vlen != e->vlen ||
		    memcmp(ent_val(f), ent_val(e), e->vlen) != 0)
			return 0;
	}
	return 1;
}

int ckpt__snap_equal(const ckpt__snap_t *a, const ckpt__snap_t *b)
{
	if (a->epoch != b->epoch || a->kv.n != b->kv.n ||
	    a->off.n != b->off.n || a->meta_len != b->meta_len ||
	    a->data_bytes != b->data_bytes)
		return 0;
	if (a->meta_len && memcmp(a->meta, b->meta, a->meta_len) != 0)
		return 0;
	return tab_subset(&a->off, &b->off) && tab_subset(&a->kv, &b->kv);
}
