/*
 * reader.c - the public reader API a flusher uses (ckpt_reader_*).
 */
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "internal.h"
#include "lock.h"
#include "reader.h"

int ckpt__reader_attach(const char *dir, const char *name, unsigned flags,
			ckpt_reader_t **out)
{
	ckpt_reader_t *r;
	pid_t holder = 0;
	int ret;

	ckpt__clear_error();
	ret = ckpt__check_name(name);
	if (ret < 0)
		return ret;
	if (flags & ~CKPT_R_NOLOCK)
		return ckpt__fail(-EINVAL, "unknown reader flags 0x%x", flags);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lockfd = r->sdirfd = -1;
	r->flags = flags;
	ret = ckpt__absdir(dir, r->absdir, sizeof(r->absdir));
	if (ret < 0)
		goto fail;
	if (!(flags & CKPT_R_NOLOCK)) {
		ret = ckpt__stream_dir(r->absdir, name, 0);
		if (ret < 0)
			goto fail;
		r->sdirfd = ret;
		ret = ckpt__lock(r->sdirfd, CKPT_LOCK_FLUSHER, &holder);
		if (ret < 0)
			goto fail;
		r->lockfd = ret;
	}
	/* a region being created by its writer shows version 0 briefly */
	for (int i = 0; i < 200; i++) {
		ret = ckpt__region_attach(r->absdir, name, &r->rg);
		if (ret != -EAGAIN)
			break;
		usleep(1000);
	}
	if (ret < 0)
		goto fail;
	ckpt__rd_init(&r->rd, &r->rg);
	if (!(flags & CKPT_R_NOLOCK))
		ckpt__store_relaxed(&r->rg.hdr->flush.flusher_pid,
				    (uint32_t)getpid());
	ckpt__clear_error();
	*out = r;
	return 0;
fail:
	if (r->lockfd >= 0)
		close(r->lockfd);
	if (r->sdirfd >= 0)
		close(r->sdirfd);
	free(r);
	return ret;
}

int ckpt_reader_open(const char *dir, const char *name, unsigned flags,
		     ckpt_reader_t **out)
{
	if (!out)
		return ckpt__fail(-EINVAL, "out is NULL");
	return ckpt__reader_attach(dir, name, flags, out);
}

int ckpt_reader_close(ckpt_reader_t *r)
{
	if (!r)
		return 0;
	if (r->rg.hdr && !(r->flags & CKPT_R_NOLOCK))
		ckpt__store_relaxed(&r->rg.hdr->flush.flusher_pid, 0);
	ckpt__rd_free(&r->rd);
	ckpt__region_unmap(&r->rg);
	if (r->lockfd >= 0)
		close(r->lockfd);
	if (r->sdirfd >= 0)
		close(r->sdirfd);
	free(r);
	return 0;
}

int ckpt_reader_next(ckpt_reader_t *r, ckpt_epoch_t *ep)
{
	int ret = ckpt__rd_next(&r->rd, ep);
	/* the counter is the flusher's (single writer): a NOLOCK reader
	 * only looks */
	if (ret > 0 && !(r->flags & CKPT_R_NOLOCK))
		ckpt__count_add(&r->rg.hdr->flush.epochs_read, 1);
	return ret;
}

void ckpt__futex_wake(uint32_t *word)
{
	/* shared futex: waiters may be in other processes */
	syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

int ckpt_reader_durable(ckpt_reader_t *r, int64_t epoch, uint64_t end_pos)
{
	struct ckpt_region_flush *f = &r->rg.hdr->flush;
	uint64_t rel = ckpt__load_relaxed(&f->release_pos);

	if (r->flags & CKPT_R_NOLOCK)
		return ckpt__fail(-EPERM, "a NOLOCK reader never releases");
	if (end_pos > r->rd.rpos || end_pos < rel || end_pos % 8 || epoch < 0 ||
	    epoch > r->rd.last_epoch)
		return ckpt__fail(-EINVAL,
				  "durable epoch %lld at %llu: not read yet or "
				  "before the released position %llu",
				  (long long)epoch,
				  (unsigned long long)end_pos,
				  (unsigned long long)rel);
	ckpt__publish_durable(f, epoch, end_pos);
	return 0;
}

void ckpt__publish_durable(struct ckpt_region_flush *f, int64_t epoch,
			   uint64_t end_pos)
{
	/* pairs with ckpt_durable_epoch()'s load_acquire */
	ckpt__store_release(&f->durable_epoch, (uint64_t)epoch);
	/* pairs with the producer's load_acquire in wait_room(): it may now
	 * overwrite everything before end_pos */
	ckpt__store_release(&f->release_pos, end_pos);
	/* pairs with ckpt_wait_durable()'s futex wait on the same word */
	__atomic_add_fetch(&f->durable_futex, 1, __ATOMIC_RELEASE);
	ckpt__futex_wake(&f->durable_futex);
}

int64_t ckpt_reader_durable_epoch(const ckpt_reader_t *r)
{
	return (int64_t)ckpt__load_acquire(&r->rg.hdr->flush.durable_epoch);
}
