/*
 * snapshot.h - the materialized state of a stream (private to the library).
 *
 * The flusher applies committed epochs to a snapshot (that is the coalescing
 * step: many epochs, one state), and the slot writer encodes it.  Recovery
 * decodes a slot into one.  Memory is owned by the snapshot; pointers handed
 * out stay valid until the next mutation or ckpt__snap_free().
 */
#ifndef CKPT_CORE_SNAPSHOT_H
#define CKPT_CORE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "shmckpt.h"

typedef struct ckpt__snap ckpt__snap_t;

/* Largest key, value and metadata blob a snapshot (and a version-1 slot)
 * holds: the upper bounds of ckpt_opts_t.max_key/max_value/max_meta. */
#define CKPT__SNAP_KEY_MAX (64u * 1024u)
#define CKPT__SNAP_VAL_MAX (16u * 1024u * 1024u)
#define CKPT__SNAP_META_MAX (16u * 1024u * 1024u)

/* NULL on allocation failure. */
ckpt__snap_t *ckpt__snap_new(void);
void ckpt__snap_free(ckpt__snap_t *s);
/* Drop all state, epoch back to 0. */
void ckpt__snap_clear(ckpt__snap_t *s);

/* Apply one delta (OFFSET: set, PUT: insert/replace, DEL: remove if present,
 * META: replace).  0, -ENOMEM (the snapshot is unchanged), -EINVAL. */
int ckpt__snap_apply(ckpt__snap_t *s, const ckpt_delta_t *d);

/* Make room up front for @nkeys more keys holding @kv_bytes of keys and
 * values in all (decoding a slot knows both; an upper bound is fine), so
 * that loading neither rehashes nor mallocs per key: their entries are
 * carved from one arena.  0 or -ENOMEM (the content is unchanged either
 * way: only capacity moves). */
int ckpt__snap_reserve(ckpt__snap_t *s, size_t nkeys, size_t kv_bytes);

/* Tests: in the calling thread, let the next @n allocations of snapshot
 * memory succeed and fail every one after that (-1: never fail again), so
 * that the -ENOMEM paths are exercised (libuv's test-loop-oom does the
 * same with a replaced allocator). */
void ckpt__snap_fail_alloc_after(long n);

void ckpt__snap_set_epoch(ckpt__snap_t *s, int64_t epoch);
int64_t ckpt__snap_epoch(const ckpt__snap_t *s);

int ckpt__snap_get(const ckpt__snap_t *s, const void *key, size_t klen,
		   const void **val, size_t *vlen); /* 0 or -ENOENT */
int ckpt__snap_get_offset(const ckpt__snap_t *s, const char *topic,
			  size_t topic_len, int32_t partition,
			  int64_t *next); /* 0 or -ENOENT */
void ckpt__snap_get_meta(const ckpt__snap_t *s, const void **blob,
			 size_t *len);
int ckpt__snap_foreach_kv(const ckpt__snap_t *s, ckpt_kv_fn fn, void *arg);
/* topic passed NUL-terminated */
int ckpt__snap_foreach_offset(const ckpt__snap_t *s, ckpt_offset_fn fn,
			      void *arg);

size_t ckpt__snap_nkeys(const ckpt__snap_t *s);
size_t ckpt__snap_noffsets(const ckpt__snap_t *s);
/* Bytes of keys+values+topics+meta held (for memory accounting). */
size_t ckpt__snap_data_bytes(const ckpt__snap_t *s);

/* Sum over keys of round8(8 + klen + vlen), and over offsets of
 * round8(16 + topic_len): the size of their records in a version-1 slot
 * body, kept up to date by apply so that sizing an image is O(1) instead of
 * a walk over every entry of a large snapshot. */
void ckpt__snap_record_bytes(const ckpt__snap_t *s, uint64_t *kv,
			     uint64_t *offsets);

/* Equality of content (epoch included): for tests and oracles. */
int ckpt__snap_equal(const ckpt__snap_t *a, const ckpt__snap_t *b);

#endif
