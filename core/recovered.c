/*
 * recovered.c - the recovered state of a stream, as ckpt_open found it
 * (ckpt_recovered_epoch, ckpt_get_offset, ckpt_get, ckpt_get_meta,
 * ckpt_foreach_kv, ckpt_foreach_offset).
 *
 * With a flusher thread the snapshot is the flusher's own: it only reads
 * it until the first commit gives it something to apply.  That commit is
 * made by the thread that calls these accessors (one producer per handle),
 * so "before the first commit" is a happens-before edge, not a race; after
 * it they answer -ESTALE.
 */
#include <string.h>

#include "internal.h"
#include "snapshot.h"
#include "stream.h"

static int stale(const ckpt_stream_t *s)
{
	if (!s->snap || s->pr.epoch != s->recovered_epoch)
		return ckpt__fail(-ESTALE, "the recovered state is gone after "
				  "the first commit (read it right after "
				  "ckpt_open)");
	return 0;
}

int64_t ckpt_recovered_epoch(const ckpt_stream_t *s)
{
	return s->recovered_epoch;
}

int ckpt_get_offset(const ckpt_stream_t *s, const char *topic,
		    int32_t partition, int64_t *next)
{
	int ret = stale(s);

	if (ret < 0)
		return ret;
	if (!topic || !next)
		return ckpt__fail(-EINVAL, "topic and next must not be NULL");
	return ckpt__snap_get_offset(s->snap, topic, strlen(topic), partition,
				     next);
}

int ckpt_get(const ckpt_stream_t *s, const void *key, size_t klen,
	     const void **val, size_t *vlen)
{
	int ret = stale(s);

	if (ret < 0)
		return ret;
	if ((!key && klen) || !val || !vlen)
		return ckpt__fail(-EINVAL, "NULL key, val or vlen");
	return ckpt__snap_get(s->snap, key, klen, val, vlen);
}

int ckpt_get_meta(const ckpt_stream_t *s, const void **blob, size_t *len)
{
	int ret = stale(s);

	if (ret < 0)
		return ret;
	if (!blob || !len)
		return ckpt__fail(-EINVAL, "NULL blob or len");
	ckpt__snap_get_meta(s->snap, blob, len);
	return 0;
}

int ckpt_foreach_kv(const ckpt_stream_t *s, ckpt_kv_fn fn, void *arg)
{
	int ret = stale(s);

	if (ret < 0)
		return ret;
	return ckpt__snap_foreach_kv(s->snap, fn, arg);
}

int ckpt_foreach_offset(const ckpt_stream_t *s, ckpt_offset_fn fn, void *arg)
{
	int ret = stale(s);

	if (ret < 0)
		return ret;
	return ckpt__snap_foreach_offset(s->snap, fn, arg);
}
