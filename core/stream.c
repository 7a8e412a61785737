/*
 * stream.c - open/close a stream and the producer calls of the public API.
 *
 * The staging and commit calls are thin: they forward to the ring
 * (shm/ring.c), where the hot path lives.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "internal.h"
#include "lock.h"
#include "slotfile.h"
#include "stream.h"

void ckpt_opts_init(ckpt_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->ring_size = CKPT_RING_DEFAULT;
	o->max_key = 4096;
	o->max_value = 256 * 1024;
	o->max_meta = 64 * 1024;
	o->full_policy = CKPT_FULL_EAGAIN;
	o->full_wait_ms = 1000;
	o->flusher = CKPT_FLUSHER_THREAD;
	o->backend = CKPT_BACKEND_AUTO;
	o->flush_interval_us = 1000;
}

int ckpt__opts_resolve(const ckpt_opts_t *in, ckpt_opts_t *o)
{
	uint64_t rec;

	if (in)
		*o = *in;
	else
		ckpt_opts_init(o);
	if (!o->ring_size)
		o->ring_size = CKPT_RING_DEFAULT;
	if (!o->max_key)
		o->max_key = 4096;
	if (!o->max_value)
		o->max_value = 256 * 1024;
	if (!o->max_meta)
		o->max_meta = 64 * 1024;
	if (!o->flush_interval_us)
		o->flush_interval_us = 1000;
	if (o->ring_size < CKPT_RING_MIN || o->ring_size > CKPT_RING_MAX ||
	    (o->ring_size & (o->ring_size - 1)))
		return ckpt__fail(-EINVAL,
				  "ring_size %llu: must be a power of two in "
				  "[64 KiB, 1 GiB]",
				  (unsigned long long)o->ring_size);
	if (o->max_key > 65536 || o->max_value > (16u << 20) ||
	    o->max_meta > (16u << 20))
		return ckpt__fail(-EINVAL, "max_key <= 64 KiB, max_value and "
					   "max_meta <= 16 MiB");
	/* the largest record plus a seal must fit in a quarter ring, so a
	 * full ring always drains to room for it */
	rec = 16 + (uint64_t)o->max_key + o->max_value;
	if (rec < 16 + (uint64_t)o->max_meta)
		rec = 16 + (uint64_t)o->max_meta;
	if (rec + CKPT_SEAL_RESERVE > o->ring_size / 4)
		return ckpt__fail(-EINVAL,
				  "ring_size %llu too small for records of %llu "
				  "bytes (max_key + max_value); needs 4x",
				  (unsigned long long)o->ring_size,
				  (unsigned long long)rec);
	if (o->full_policy != CKPT_FULL_EAGAIN &&
	    o->full_policy != CKPT_FULL_WAIT)
		return ckpt__fail(-EINVAL, "unknown full_policy %d",
				  o->full_policy);
	if (o->flusher != CKPT_FLUSHER_THREAD &&
	    o->flusher != CKPT_FLUSHER_EXTERNAL)
		return ckpt__fail(-EINVAL, "unknown flusher mode %d",
				  o->flusher);
	if (o->backend < CKPT_BACKEND_AUTO || o->backend > CKPT_BACKEND_FALLBACK)
		return ckpt__fail(-EINVAL, "unknown backend %d", o->backend);
	if (o->flags & ~(CKPT_O_RESET | CKPT_O_NOSLOTS))
		return ckpt__fail(-EINVAL, "unknown flags 0x%x", o->flags);
	if ((o->flags & CKPT_O_NOSLOTS) && o->flusher != CKPT_FLUSHER_EXTERNAL)
		return ckpt__fail(-EINVAL, "CKPT_O_NOSLOTS needs "
					   "CKPT_FLUSHER_EXTERNAL: the in-process "
					   "flusher writes the slots");
	return 0;
}

int ckpt_open(const char *dir, const char *name, const ckpt_opts_t *opts,
	      ckpt_stream_t **out)
{
	struct ckpt__region_geom geom;
	ckpt_stream_t *s;
	pid_t holder = 0;
	int ret, created;

	ckpt__clear_error();
	if (!out)
		return ckpt__fail(-EINVAL, "out is NULL");
	ret = ckpt__check_name(name);
	if (ret < 0)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sdirfd = s->lockfd = -1;
	ret = ckpt__opts_resolve(opts, &s->opts);
	if (ret < 0)
		goto fail;
	strcpy(s->name, name);
	ret = ckpt__absdir(dir, s->absdir, sizeof(s->absdir));
	if (ret < 0)
		goto fail;
	ret = ckpt__stream_dir(s->absdir, name, 1);
	if (ret < 0)
		goto fail;
	s->sdirfd = ret;
	ret = ckpt__lock(s->sdirfd, CKPT_LOCK_WRITER, &holder);
	if (ret < 0)
		goto fail;
	s->lockfd = ret;

	if (s->opts.flags & CKPT_O_RESET) {
		/* Blank the slots before the new region exists: a flusher
		 * (a sidecar) that adopts the new region must find nothing
		 * of the old history to recover and publish into it.  And
		 * before the old region goes: it may carry a failed flush's
		 * mark (flush.error), the only thing that says not to trust
		 * a slot that write left; stopped in between (a crash, an
		 * error), the old region over blank slots is refused as
		 * damage, never the unsynced slot trusted.  (Blanking renames
		 * new files over the slots, so a sidecar still writing from
		 * the old region writes to the old, unlinked files.) */
		if (!(s->opts.flags & CKPT_O_NOSLOTS)) {
			ret = ckpt__slots_reset(s->sdirfd, name);
			if (ret < 0)
				goto fail;
		}
		ret = ckpt__region_unlink(s->absdir, name);
		if (ret < 0 && ret != -ENOENT)
			goto fail;
	}
	geom.ring_size = s->opts.ring_size;
	geom.max_key = s->opts.max_key;
	geom.max_value = s->opts.max_value;
	geom.max_meta = s->opts.max_meta;
	geom.flusher_mode = (uint32_t)s->opts.flusher;
	ret = ckpt__region_open(s->absdir, name, &geom, 1, &s->rg, &created);
	if (ret == CKPT_ECORRUPT && !(s->opts.flags & CKPT_O_NOSLOTS))
		ret = ckpt__fail(ret, "%s: " CKPT__RING_DAMAGED_HINT,
				 ckpt_last_error(), s->absdir, name);
	if (ret < 0)
		goto fail;
	/* who flushes it from now on: a sidecar hands a stream back once it
	 * sees a thread asked for (pairs with its load_acquire) */
	ckpt__store_release(&s->rg.hdr->prod.flusher_mode,
			    (uint32_t)s->opts.flusher);
	ret = ckpt__prod_init(&s->pr, &s->rg, s->opts.full_policy,
			      s->opts.full_wait_ms, 0);
	if (ret == CKPT_ECORRUPT && !(s->opts.flags & CKPT_O_NOSLOTS))
		ret = ckpt__fail(ret, "%s: " CKPT__RING_DAMAGED_HINT,
				 ckpt_last_error(), s->absdir, name);
	if (ret < 0)
		goto fail;
	{
		struct ckpt_region_prod *p = &s->rg.hdr->prod;
		ckpt__store_relaxed(&p->owner_pid, (uint32_t)getpid());
		ckpt__store_relaxed(&p->owner_generation,
				    p->owner_generation + 1);
		ckpt__store_relaxed(&p->heartbeat_ns, ckpt__mono_ns());
	}
	ret = ckpt__stream_recover(s);
	if (ret < 0)
		goto fail;
	ckpt__clear_error();
	*out = s;
	return 0;
fail:
	if (s->rg.hdr)
		ckpt__region_unmap(&s->rg);
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->sdirfd >= 0)
		close(s->sdirfd);
	free(s);
	return ret;
}

int ckpt_close(ckpt_stream_t *s)
{
	int err = 0, all_durable;

	if (!s)
		return 0;
	all_durable = ckpt__stream_stop(s, &err);
	ckpt__store_relaxed(&s->rg.hdr->prod.owner_pid, 0);
	/* Our own flusher made everything committed durable: shared memory
	 * holds nothing the slots do not, so give it back.  The flusher's
	 * word decides, not the region's durable_epoch, which anyone who can
	 * write the region could raise.  With an external flusher (which may
	 * still be at work and keeps serving the region; producer-only
	 * streams are external too) the region stays for the next open
	 * (R3). */
	if (!err && s->opts.flusher == CKPT_FLUSHER_THREAD && all_durable)
		(void)ckpt__region_unlink(s->absdir, s->name);
	ckpt__region_unmap(&s->rg);
	close(s->lockfd); /* releases the writer lock */
	close(s->sdirfd);
	free(s);
	return err;
}

int ckpt_holder_pid(const char *dir, const char *name)
{
	char abs[CKPT_DIR_MAX];
	int ret, fd;

	ret = ckpt__check_name(name);
	if (ret < 0)
		return ret;
	ret = ckpt__absdir(dir, abs, sizeof(abs));
	if (ret < 0)
		return ret;
	fd = ckpt__stream_dir(abs, name, 0);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	ret = ckpt__lock_holder(fd, CKPT_LOCK_WRITER);
	close(fd);
	return ret;
}

int ckpt_offset(ckpt_stream_t *s, const char *topic, int32_t partition,
		int64_t next_offset)
{
	return ckpt__prod_offset(&s->pr, topic, partition, next_offset);
}

int ckpt_put(ckpt_stream_t *s, const void *key, size_t klen, const void *val,
	     size_t vlen)
{
	return ckpt__prod_kv(&s->pr, CKPT_R_PUT, key, klen, val, vlen);
}

int ckpt_del(ckpt_stream_t *s, const void *key, size_t klen)
{
	return ckpt__prod_kv(&s->pr, CKPT_R_DEL, key, klen, NULL, 0);
}

int ckpt_meta(ckpt_stream_t *s, const void *blob, size_t len)
{
	return ckpt__prod_kv(&s->pr, CKPT_R_META, blob, len, NULL, 0);
}

int64_t ckpt_commit(ckpt_stream_t *s)
{
	return ckpt__prod_commit(&s->pr);
}

int ckpt_abort(ckpt_stream_t *s)
{
	ckpt__prod_abort(&s->pr);
	return 0;
}
