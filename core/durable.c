/*
 * durable.c - what a producer asks about durability: the durable epoch,
 * waiting for one, and the stream's health (ckpt_durable_epoch,
 * ckpt_wait_durable, ckpt_status).  All of it reads the flusher's page of
 * the region, so it works the same whether the flusher is a thread of this
 * process or the shmckptd sidecar.
 */
#include <limits.h>
#include <signal.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "flusher.h"
#include "internal.h"
#include "stream.h"

/* A flusher whose heartbeat is older than this is taken for gone. */
#define FLUSHER_STALE_NS (5ull * 1000000000ull)

int64_t ckpt_durable_epoch(const ckpt_stream_t *s)
{
	/* pairs with the store_release in ckpt__publish_durable() */
	return (int64_t)ckpt__load_acquire(&s->rg.hdr->flush.durable_epoch);
}

int ckpt_wait_durable(const ckpt_stream_t *s, int64_t epoch, int timeout_ms)
{
	struct ckpt_region_flush *f = &s->rg.hdr->flush;
	uint64_t deadline = 0;
	int64_t committed;

	committed = (int64_t)ckpt__load_relaxed(&s->rg.hdr->prod.committed_epoch);
	if (epoch < 0 || epoch > committed)
		return ckpt__fail(-EINVAL, "epoch %lld was never committed "
				  "(newest: %lld)", (long long)epoch,
				  (long long)committed);
	if (timeout_ms >= 0)
		deadline = ckpt__mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		/* the futex word first, then the state it guards: a publish
		 * after our check changes the word and the wait returns at
		 * once (pairs with ckpt__durable_wake's release increment) */
		uint32_t word = ckpt__load_acquire(&f->durable_futex);
		struct timespec ts;
		uint64_t left = 100000000ull; /* re-check at least each 100 ms */

		if (ckpt_durable_epoch(s) >= epoch)
			return 0;
		/* health, not error: the error word may be an earlier
		 * failure's mark, kept until a new flusher's first write */
		if (s->fs ? ckpt__fstream_error(s->fs) != 0
			  : ckpt__load_acquire(&f->health) == CKPT_FAILED)
			return ckpt__fail(CKPT_EFAILED, "the flusher failed: "
					  "epoch %lld will not become durable",
					  (long long)epoch);
		if (deadline) {
			uint64_t now = ckpt__mono_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			if (deadline - now < left)
				left = deadline - now;
		}
		ts.tv_sec = (time_t)(left / 1000000000ull);
		ts.tv_nsec = (long)(left % 1000000000ull);
		/* shared futex: the flusher may be another process */
		syscall(SYS_futex, &f->durable_futex, FUTEX_WAIT, word, &ts,
			NULL, 0);
	}
}

int ckpt_status(ckpt_stream_t *s, ckpt_status_t *st)
{
	struct ckpt_region_flush *f = &s->rg.hdr->flush;
	struct ckpt_region_prod *p = &s->rg.hdr->prod;
	uint64_t commit, rel, bp, seen, hb, now;
	uint32_t health, pid;

	memset(st, 0, sizeof(*st));
	/* pairs with the producer's store_release of commit_pos */
	commit = ckpt__load_acquire(&p->commit_pos);
	rel = ckpt__load_acquire(&f->release_pos);
	st->committed_epoch = (int64_t)ckpt__load_relaxed(&p->committed_epoch);
	st->durable_epoch = ckpt_durable_epoch(s);
	st->ring_capacity = s->rg.cap;
	st->ring_used = commit >= rel ? commit - rel : 0;
	bp = ckpt__load_relaxed(&p->backpressure_events);
	st->backpressure_events = bp;
	st->flushes = ckpt__load_relaxed(&f->flushes);
	st->flush_errors = ckpt__load_relaxed(&f->flush_errors);
	st->enospc_retries = ckpt__load_relaxed(&f->enospc_retries);
	for (size_t i = 0; i + 1 < sizeof(st->backend); i++)
		st->backend[i] = ckpt__load_relaxed(&f->backend[i]);
	/* pairs with fail()'s store_release of error before health */
	health = ckpt__load_acquire(&f->health);
	st->error = ckpt__load_acquire(&f->error);
	/* an earlier failure's mark under a healthy flusher (which keeps it
	 * until its first write) is not a failure now */
	if (health != CKPT_FAILED)
		st->error = 0;
	seen = __atomic_exchange_n(&s->bp_seen, bp, __ATOMIC_RELAXED);

	if (s->fs) {
		/* Our own flusher's verdict decides, both ways: the region's
		 * copy of it is shared memory, which anyone with access to
		 * the region may have damaged. */
		st->error = ckpt__fstream_error(s->fs);
		if (health == CKPT_FAILED)
			health = CKPT_HEALTHY;
	}
	if (st->error || health == CKPT_FAILED) {
		st->health = CKPT_FAILED;
		ckpt__why_get(f, st->why, sizeof(st->why));
		return 0;
	}
	if (s->opts.flusher == CKPT_FLUSHER_EXTERNAL &&
	    health == CKPT_NOFLUSHER) {
		/* stored by an open after a failure: the request to retry,
		 * until a flusher takes the stream again (the failed one's
		 * pid may still be there, and beating) */
		static const char pre[] = "no flusher: waiting for one to "
					  "retry after: ";
		char why[sizeof(st->why) - sizeof(pre) + 1];
		st->health = CKPT_NOFLUSHER;
		ckpt__why_get(f, why, sizeof(why));
		snprintf(st->why, sizeof(st->why), "%s%s", pre, why);
		return 0;
	}
	pid = ckpt__load_relaxed(&f->flusher_pid);
	hb = ckpt__load_relaxed(&f->heartbeat_ns);
	now = ckpt__mono_ns();
	if (s->opts.flusher == CKPT_FLUSHER_EXTERNAL &&
	    (!pid || pid > (uint32_t)INT32_MAX || now - hb > FLUSHER_STALE_NS ||
	     kill((pid_t)pid, 0) < 0)) {
		/* (a pid from shared memory: above INT32_MAX, kill would
		 * probe a process group, or every process) */
		st->health = CKPT_NOFLUSHER;
		if (pid)
			snprintf(st->why, sizeof(st->why), "no flusher: pid %u "
				 "is gone or stopped beating", pid);
		else
			snprintf(st->why, sizeof(st->why), "no flusher "
				 "attached (is shmckptd running?)");
		return 0;
	}
	if (health == CKPT_BACKPRESSURED) {
		st->health = CKPT_BACKPRESSURED;
		ckpt__why_get(f, st->why, sizeof(st->why));
	} else if (bp > seen) {
		st->health = CKPT_BACKPRESSURED;
		snprintf(st->why, sizeof(st->why),
			 "the ring filled %llu times since the last status: "
			 "storage is slower than commits",
			 (unsigned long long)(bp - seen));
	} else if (st->ring_used > st->ring_capacity / 4 * 3) {
		st->health = CKPT_BACKPRESSURED;
		snprintf(st->why, sizeof(st->why),
			 "the ring is %llu%% full: storage is slower than "
			 "commits",
			 (unsigned long long)(st->ring_used * 100 /
					      st->ring_capacity));
	}
	return 0;
}
