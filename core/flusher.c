/*
 * flusher.c - one thread drains the rings of many streams, applies their
 * committed epochs to each stream's snapshot, and writes snapshots into the
 * slot files through one I/O backend (io_uring: many writes in flight).
 *
 * Per stream, a cycle is: read every committed epoch (verified copies, see
 * ring.c) and apply it to the snapshot; when no write is in flight and the
 * snapshot is newer than the durable one, encode it into the stream's
 * image buffer and submit write+datasync to the slot that does not hold
 * the newest durable snapshot; when that completes, publish the epoch as
 * durable and release the ring space of every epoch it covers.  Epochs
 * committed while a write is in flight are applied to the snapshot, so the
 * next write carries all of them at once: that is the coalescing, and why
 * memory does not depend on storage latency (R5).
 *
 * Ownership: the list of streams and everything in a stream is the
 * thread's.  Other threads only add streams and ask for removals, under
 * fl->mu, and wait on fl->done for the thread to answer.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "fault.h"
#include "flusher.h"
#include "internal.h"
#include "hist.h"
#include "io.h"
#include "probes.h"
#include "reader.h"

#define IO_DEPTH 256u
#define REAP_MAX 64
#define DRAIN_MAX 4096 /* epochs read per stream per cycle: fairness */
#define ENOSPC_RETRY_NS 1000000000ull

struct ckpt__fstream {
	struct ckpt__fstream *next;
	char name[CKPT_NAME_MAX + 1];
	ckpt__region_t *rg;
	int own_region;
	struct ckpt_region_flush *f;
	ckpt__snap_t *snap;
	ckpt__slots_t slots;
	ckpt__rd_t rd;
	int flockfd;

	int64_t applied; /* newest epoch in snap */
	uint64_t applied_end; /* ring position just past it */
	int64_t durable; /* newest epoch in a slot, durable */
	uint64_t pending; /* epochs applied since the last write began */
	uint64_t pending_ns; /* when the oldest of them was read */

	/* the one write in flight */
	int busy;
	struct ckpt__io_op op;
	unsigned char *img;
	size_t imgcap;
	int64_t w_epoch;
	uint64_t w_end, w_seq, w_epochs;
	uint64_t w_start_ns, w_first_ns; /* encode began; oldest epoch read */
	int w_slot;

	int failed; /* sticky; the error is in the region */
	int clear_mark; /* an earlier failure's error mark is still in the
			 * region: it goes at the first durable publish */
	int failed_pub; /* the error, for other threads (atomic): the
			 * region's copy may be scribbled over */
	uint64_t retry_ns; /* ENOSPC: no growth attempt before this */
	int enospc;

	/* removal, under fl->mu */
	int remove_req; /* 1: wait for durable; 2: drop; 3: as 1, by stop */
	uint64_t remove_deadline; /* 0: none */
	int64_t remove_until; /* the epoch to wait for; < 0: the region's
			       * committed_epoch (a sidecar knows no other) */
	int removed;
	int result;
};

struct ckpt__flusher {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* the thread sleeps on it when idle */
	pthread_cond_t done; /* removers wait on it */
	pthread_t th;
	ckpt__io_t *io;
	ckpt__fstream_t *streams; /* the thread's */
	ckpt__fstream_t *adds; /* handed over, under mu */
	unsigned nstreams; /* under mu */
	int stop;
	uint64_t interval_ns;
	char backend[16];
	/* process-wide registry (ckpt__flusher_get) */
	int kind;
	struct ckpt_fault_plan *fault;
	uint32_t interval_us;
	int refs;
	pid_t pid; /* process whose thread this is */
	struct ckpt__flusher *reg_next;
};

/* ------------------------------------------------------------------------
 * The status sentence and wake-ups
 * ------------------------------------------------------------------------ */

void ckpt__why_set(struct ckpt_region_flush *f, const char *fmt, ...)
{
	char buf[sizeof(f->why)];
	uint32_t seq = ckpt__load_relaxed(&f->why_seq);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* seqlock, without fences (ThreadSanitizer does not model them):
	 * each byte is stored with release, so a reader whose acquire load
	 * sees a new byte also sees the odd mark stored before it, and
	 * retries (pairs with the byte load_acquire in ckpt__why_get) */
	ckpt__store_relaxed(&f->why_seq, seq + 1);
	for (size_t i = 0; i < sizeof(buf); i++)
		ckpt__store_release(&f->why[i], buf[i]);
	/* pairs with ckpt__why_get's first load_acquire */
	ckpt__store_release(&f->why_seq, seq + 2);
}

void ckpt__why_get(const struct ckpt_region_flush *f, char *out, size_t cap)
{
	char buf[sizeof(f->why)];

	for (int tries = 0; tries < 1000; tries++) {
		/* pairs with the store_release at the end of ckpt__why_set */
		uint32_t s1 = ckpt__load_acquire(&f->why_seq);
		/* pairs with the byte store_release in ckpt__why_set */
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = ckpt__load_acquire(&f->why[i]);
		if (!(s1 & 1) && s1 == ckpt__load_relaxed(&f->why_seq))
			break;
		ckpt__cpu_relax();
	}
	buf[sizeof(buf) - 1] = '\0';
	snprintf(out, cap, "%s", buf);
}

void ckpt__durable_wake(struct ckpt_region_flush *f)
{
	/* pairs with ckpt_wait_durable()'s load_acquire of the futex word */
	__atomic_add_fetch(&f->durable_futex, 1, __ATOMIC_RELEASE);
	ckpt__futex_wake(&f->durable_futex);
}

/* ------------------------------------------------------------------------
 * Per-stream work (flusher thread only)
 * ------------------------------------------------------------------------ */

static void set_health(ckpt__fstream_t *fs, uint32_t health)
{
	ckpt__store_release(&fs->f->health, health);
}

/* Fail the stream for good: no more writes, the durable epoch is frozen.
 * Never retry-and-trust: after a failed datasync the kernel may have
 * dropped the dirty pages, so a later success would prove nothing. */
static void __attribute__((format(printf, 3, 4)))
fail(ckpt__fstream_t *fs, int code, const char *fmt, ...)
{
	char why[sizeof(fs->f->why)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fs->failed = 1;
	__atomic_store_n(&fs->failed_pub, code ? code : CKPT_EFAILED,
			 __ATOMIC_RELEASE);
	ckpt__why_set(fs->f, "%s", why);
	/* error before health: a reader that sees FAILED finds the error */
	ckpt__store_release(&fs->f->error, code);
	set_health(fs, CKPT_FAILED);
	if (code == CKPT_ECORRUPT)
		ckpt__count_add(&fs->f->corrupt_events, 1);
	ckpt__log(CKPT_LOG_ERROR, "stream %s: %s", fs->name, why);
	ckpt__durable_wake(fs->f); /* waiters must see the failure */
}

/* Read and apply every committed epoch (at most DRAIN_MAX).  Returns the
 * count applied. */
static int drain(ckpt__fstream_t *fs)
{
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	int n = 0, ret;

	while (n < DRAIN_MAX) {
		ret = ckpt__rd_next(&fs->rd, &ep);
		if (ret == 0)
			break;
		if (ret < 0) {
			if (ret == CKPT_ECORRUPT)
				fail(fs, ret, "ring damaged: %s; durable epoch "
				     "stays %lld", ckpt_last_error(),
				     (long long)fs->durable);
			else
				fail(fs, ret, "reading the ring: %s",
				     ckpt_strerror(ret));
			return n;
		}
		ckpt__count_add(&fs->f->epochs_read, 1);
		if (ep.epoch <= fs->applied)
			continue; /* in the snapshot already (a restart) */
		if (ep.epoch != fs->applied + 1) {
			fail(fs, CKPT_ECORRUPT, "ring holds epoch %lld after "
			     "epoch %lld: epochs missing", (long long)ep.epoch,
			     (long long)fs->applied);
			return n;
		}
		while ((ret = ckpt_epoch_next(&ep, &d)) > 0) {
			ret = ckpt__snap_apply(fs->snap, &d);
			if (ret < 0) {
				/* half an epoch is in the snapshot now: it
				 * must never be written */
				fail(fs, ret, "applying epoch %lld: %s",
				     (long long)ep.epoch, ckpt_strerror(ret));
				return n;
			}
		}
		ckpt__snap_set_epoch(fs->snap, ep.epoch);
		fs->applied = ep.epoch;
		fs->applied_end = ep.end_pos;
		if (!fs->pending++)
			fs->pending_ns = ckpt__mono_ns();
		n++;
	}
	return n;
}

static void enospc_wait(ckpt__fstream_t *fs, uint64_t now, const char *what,
			uint64_t bytes)
{
	fs->enospc = 1;
	fs->retry_ns = now + ENOSPC_RETRY_NS;
	ckpt__count_add(&fs->f->enospc_retries, 1);
	ckpt__why_set(fs->f, "no space left on device: %s (%llu bytes); "
		      "durable epoch stays %lld, retrying every second", what,
		      (unsigned long long)bytes, (long long)fs->durable);
	set_health(fs, CKPT_BACKPRESSURED);
}

/* Start writing the snapshot, if there is something new and no write in
 * flight.  Returns 1 if a write was submitted. */
static int start_write(ckpt__flusher_t *fl, ckpt__fstream_t *fs, uint64_t now)
{
	size_t need;
	ssize_t len;
	int t, ret;

	if (fs->failed || fs->busy || fs->applied <= fs->durable ||
	    now < fs->retry_ns)
		return 0;
	need = ckpt__slot_image_size(fs->snap);
	t = ckpt__slots_target(&fs->slots);
	if (need > fs->slots.size[t]) {
		/* grow the target only: the newest durable slot is never
		 * touched.  Doubling keeps growths rare. */
		uint64_t nsz = fs->slots.size[t] ? fs->slots.size[t]
						 : CKPT_SLOT_INITIAL;
		while (nsz < need)
			nsz *= 2;
		ret = ckpt__io_grow(fl->io, fs->slots.fd[t], fs->slots.size[t],
				    nsz);
		if (ret == -ENOSPC || ret == -EDQUOT) {
			enospc_wait(fs, now, "growing a slot", nsz);
			return 0;
		}
		if (ret < 0) {
			ckpt__count_add(&fs->f->flush_errors, 1);
			fail(fs, ret, "growing slot-%d to %llu bytes: %s; "
			     "durable epoch stays %lld", t,
			     (unsigned long long)nsz, ckpt_strerror(ret),
			     (long long)fs->durable);
			return 0;
		}
		fs->slots.size[t] = nsz;
	}
	if (fs->imgcap < need) {
		/* one image per stream, reused: it only grows with the state */
		size_t cap = fs->imgcap ? fs->imgcap : 4096;
		while (cap < need)
			cap *= 2;
		void *b = realloc(fs->img, cap);
		if (!b) {
			fs->retry_ns = now + ENOSPC_RETRY_NS;
			ckpt__log(CKPT_LOG_WARN, "stream %s: no memory for a "
				  "%zu-byte image; retrying", fs->name, cap);
			return 0;
		}
		fs->img = b;
		fs->imgcap = cap;
	}
	fs->w_start_ns = now;
	len = ckpt__slot_encode(fs->snap, fs->name, fs->slots.next_seq,
				ckpt__real_ns(), fs->img, fs->imgcap);
	if (len < 0) {
		fail(fs, (int)len, "encoding epoch %lld: %s",
		     (long long)fs->applied, ckpt_strerror((int)len));
		return 0;
	}
	memset(&fs->op, 0, sizeof(fs->op));
	fs->op.fd = fs->slots.fd[t];
	fs->op.buf = fs->img;
	fs->op.len = (size_t)len;
	fs->op.off = 0;
	fs->op.user = fs;
	ret = ckpt__io_submit(fl->io, &fs->op);
	if (ret == -EAGAIN)
		return 0; /* the backend is full: next cycle */
	if (ret < 0) {
		ckpt__count_add(&fs->f->flush_errors, 1);
		fail(fs, ret, "submitting a write of slot-%d: %s", t,
		     ckpt_strerror(ret));
		return 0;
	}
	/* the target's old content is being overwritten: not valid now */
	fs->slots.valid[t] = 0;
	fs->busy = 1;
	fs->w_slot = t;
	fs->w_epoch = fs->applied;
	fs->w_end = fs->applied_end;
	fs->w_seq = fs->slots.next_seq++;
	fs->w_epochs = fs->pending;
	fs->w_first_ns = fs->pending_ns ? fs->pending_ns : now;
	fs->pending = 0;
	fs->pending_ns = 0;
	CKPT_PROBE3(flush_start, fs->name, fs->w_epoch, (uint64_t)len);
	return 1;
}

static void complete(ckpt__fstream_t *fs, struct ckpt__io_op *op, uint64_t now)
{
	struct ckpt_region_flush *f = fs->f;
	int t = fs->w_slot;

	fs->busy = 0;
	CKPT_PROBE4(datasync_done, fs->name, fs->w_epoch, op->res,
		    op->done_ns - op->submit_ns);
	if (op->res == 0) {
		struct ckpt_region_stats *st = &fs->rg->hdr->stats;
		uint64_t lag = now > fs->w_first_ns ? now - fs->w_first_ns : 0;
		ckpt__count_add(&st->sync_us[ckpt__hist_bucket(
				(op->done_ns - op->submit_ns) / 1000)], 1);
		ckpt__count_add(&st->flush_us[ckpt__hist_bucket(
				(now - fs->w_start_ns) / 1000)], 1);
		ckpt__count_add(&st->lag_us[ckpt__hist_bucket(lag / 1000)], 1);
		ckpt__count_add(&st->sync_ns_sum, op->done_ns - op->submit_ns);
		ckpt__count_add(&st->flush_ns_sum, now - fs->w_start_ns);
		ckpt__count_add(&st->lag_ns_sum, lag);
		ckpt__store_relaxed(&st->last_lag_ns, lag);
		if (fs->w_epochs > ckpt__load_relaxed(&st->epochs_per_flush_max))
			ckpt__store_relaxed(&st->epochs_per_flush_max,
					    fs->w_epochs);
		fs->slots.valid[t] = 1;
		fs->slots.epoch[t] = fs->w_epoch;
		fs->slots.seq[t] = fs->w_seq;
		fs->slots.newest = t;
		fs->durable = fs->w_epoch;
		ckpt__count_add(&f->flushes, 1);
		ckpt__count_add(&f->epochs_coalesced, fs->w_epochs);
		ckpt__count_add(&f->bytes_written, op->len);
		ckpt__store_relaxed(&f->last_flush_ns, op->done_ns - op->submit_ns);
		if (fs->enospc) {
			fs->enospc = 0;
			set_health(fs, CKPT_HEALTHY);
			ckpt__why_set(f, "%s", "");
		}
		/* durable_epoch, then release_pos, then the wake-up (reader.c) */
		ckpt__publish_durable(f, fs->w_epoch, fs->w_end);
		if (fs->clear_mark) {
			/* this write went to the slot an earlier failure may
			 * have left unsynced (recovery loaded the other one):
			 * nothing is left to distrust */
			ckpt__store_release(&f->error, 0);
			fs->clear_mark = 0;
		}
		CKPT_PROBE3(flush_done, fs->name, fs->w_epoch, fs->w_epochs);
		return;
	}
	if (op->res == -ENOSPC && op->failed_phase == CKPT_IO_WRITE) {
		/* nothing was synced: the newest slot is intact, and the
		 * whole image is rewritten next time; not a retry-and-trust */
		fs->pending += fs->w_epochs;
		if (!fs->pending_ns || fs->w_first_ns < fs->pending_ns)
			fs->pending_ns = fs->w_first_ns;
		enospc_wait(fs, now, "writing a slot", op->len);
		return;
	}
	ckpt__count_add(&f->flush_errors, 1);
	fail(fs, op->res, "%s of slot-%d (epoch %lld) failed: %s%s; durable "
	     "epoch stays %lld", op->failed_phase == CKPT_IO_SYNC ? "fdatasync"
								  : "write",
	     t, (long long)fs->w_epoch, ckpt_strerror(op->res),
	     op->short_write ? " (short write)" : "", (long long)fs->durable);
}

/* Free what the stream owns, except the struct itself. */
static void release_stream(ckpt__fstream_t *fs)
{
	if (fs->rg && !fs->failed)
		ckpt__store_relaxed(&fs->f->flusher_pid, 0);
	ckpt__rd_free(&fs->rd);
	ckpt__slots_close(&fs->slots);
	ckpt__snap_free(fs->snap);
	fs->snap = NULL;
	free(fs->img);
	fs->img = NULL;
	if (fs->own_region && fs->rg) {
		ckpt__region_unmap(fs->rg);
		free(fs->rg);
	}
	fs->rg = NULL;
	if (fs->flockfd >= 0)
		close(fs->flockfd);
	fs->flockfd = -1;
}

/* Under fl->mu: answer removal requests that can be answered now. */
static void removals(ckpt__flusher_t *fl, uint64_t now)
{
	ckpt__fstream_t **pp = &fl->streams;

	while (*pp) {
		ckpt__fstream_t *fs = *pp;
		int64_t committed;
		int done = 0;

		if (!fs->remove_req || fs->busy) { /* never abandon a write */
			pp = &fs->next;
			continue;
		}
		/* The producer in this process said which epoch it last
		 * committed: nothing in shared memory can change that.  A
		 * sidecar has only the region's word (pairs with the
		 * producer's release store of commit_pos; committed_epoch is
		 * stored before it). */
		if (fs->remove_until >= 0) {
			committed = fs->remove_until;
		} else {
			(void)ckpt__load_acquire(&fs->rg->hdr->prod.commit_pos);
			committed = (int64_t)ckpt__load_relaxed(
				&fs->rg->hdr->prod.committed_epoch);
		}
		if (fs->failed) {
			/* our own copy: the region's may be scribbled over */
			fs->result = fs->failed_pub;
			done = 1;
		} else if (fs->remove_req == 2 || fs->durable >= committed) {
			fs->result = 0;
			done = 1;
		} else if (fs->remove_deadline && now >= fs->remove_deadline) {
			fs->result = -ETIMEDOUT;
			done = 1;
		}
		if (!done) {
			pp = &fs->next;
			continue;
		}
		*pp = fs->next;
		release_stream(fs);
		fl->nstreams--;
		if (fs->remove_req == 3) {
			free(fs);
			continue;
		}
		fs->removed = 1;
		pthread_cond_broadcast(&fl->done);
	}
}

static void *flusher_main(void *arg)
{
	ckpt__flusher_t *fl = arg;
	struct ckpt__io_op *done[REAP_MAX];
	sigset_t all;

	/* signals belong to the application's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	for (;;) {
		uint64_t now = ckpt__mono_ns();
		int work = 0, n;

		pthread_mutex_lock(&fl->mu);
		while (fl->adds) { /* adopt new streams */
			ckpt__fstream_t *fs = fl->adds;
			fl->adds = fs->next;
			fs->next = fl->streams;
			fl->streams = fs;
		}
		removals(fl, now);
		if (fl->stop && !fl->streams) {
			pthread_mutex_unlock(&fl->mu);
			break;
		}
		pthread_mutex_unlock(&fl->mu);

		for (ckpt__fstream_t *fs = fl->streams; fs; fs = fs->next) {
			ckpt__store_relaxed(&fs->f->heartbeat_ns, now);
			if (fs->failed)
				continue;
			work += drain(fs);
			work += start_write(fl, fs, now);
		}

		n = ckpt__io_reap(fl->io, done, REAP_MAX,
				  ckpt__io_inflight(fl->io) && !work
					  ? (int64_t)fl->interval_ns
					  : 0);
		if (n < 0) {
			/* the backend itself broke: every write in flight is
			 * lost, so every stream with one fails */
			for (ckpt__fstream_t *fs = fl->streams; fs; fs = fs->next)
				if (fs->busy) {
					fs->busy = 0;
					fail(fs, n, "I/O backend failed: %s",
					     ckpt_strerror(n));
				}
			n = 0;
		}
		now = ckpt__mono_ns();
		for (int i = 0; i < n; i++)
			complete(done[i]->user, done[i], now);
		work += n;

		if (!work && !ckpt__io_inflight(fl->io)) {
			/* idle: sleep one interval, or until an add, a
			 * removal or stop wakes us */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += (long)fl->interval_ns;
			while (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&fl->mu);
			if (!fl->adds && !fl->stop)
				pthread_cond_timedwait(&fl->wake, &fl->mu, &ts);
			pthread_mutex_unlock(&fl->mu);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * API for other threads
 * ------------------------------------------------------------------------ */

int ckpt__flusher_start(int backend, struct ckpt_fault_plan *fault,
			uint32_t interval_us, ckpt__flusher_t **out,
			const char **why)
{
	pthread_condattr_t ca;
	ckpt__flusher_t *fl;
	int ret;

	fl = calloc(1, sizeof(*fl));
	if (!fl)
		return -ENOMEM;
	ret = ckpt__io_open(backend, fault, IO_DEPTH, &fl->io, why);
	if (ret < 0) {
		free(fl);
		return ret;
	}
	snprintf(fl->backend, sizeof(fl->backend), "%s", ckpt__io_name(fl->io));
	fl->interval_ns = (uint64_t)(interval_us ? interval_us : 1000) * 1000;
	fl->kind = backend;
	fl->fault = fault;
	fl->interval_us = interval_us;
	fl->pid = getpid();
	pthread_mutex_init(&fl->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fl->wake, &ca);
	pthread_cond_init(&fl->done, &ca);
	pthread_condattr_destroy(&ca);
	ret = pthread_create(&fl->th, NULL, flusher_main, fl);
	if (ret) {
		ckpt__io_close(fl->io);
		pthread_cond_destroy(&fl->wake);
		pthread_cond_destroy(&fl->done);
		pthread_mutex_destroy(&fl->mu);
		free(fl);
		return -ret;
	}
	*out = fl;
	return 0;
}

const char *ckpt__flusher_backend(const ckpt__flusher_t *fl)
{
	return fl->backend;
}

unsigned ckpt__flusher_nstreams(ckpt__flusher_t *fl)
{
	unsigned n;

	pthread_mutex_lock(&fl->mu);
	n = fl->nstreams;
	pthread_mutex_unlock(&fl->mu);
	return n;
}

int ckpt__flusher_add(ckpt__flusher_t *fl, const struct ckpt__fstream_init *in,
		      ckpt__fstream_t **out)
{
	struct ckpt_region_flush *f = &in->rg->hdr->flush;
	ckpt__fstream_t *fs;
	char be[sizeof(f->backend)];

	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	snprintf(fs->name, sizeof(fs->name), "%s", in->name);
	fs->rg = in->rg;
	fs->own_region = in->own_region;
	fs->f = f;
	fs->snap = in->snap;
	fs->slots = *in->slots;
	fs->rd = *in->rd;
	fs->flockfd = in->flockfd;
	fs->applied = ckpt__snap_epoch(in->snap);
	fs->applied_end = fs->rd.rpos;
	fs->durable = fs->slots.newest >= 0 ? fs->slots.epoch[fs->slots.newest]
					    : 0;
	/* the epochs recovery replayed are not durable yet: the first
	 * write carries them (the count is a lower bound of what it holds) */
	fs->pending = fs->applied > fs->durable
			      ? (uint64_t)(fs->applied - fs->durable)
			      : 0;

	/* Written before the thread sees the stream, by this thread: the
	 * region says who flushes it and how. */
	memset(be, 0, sizeof(be));
	snprintf(be, sizeof(be), "%s", fl->backend);
	for (size_t i = 0; i < sizeof(be); i++)
		ckpt__store_relaxed(&f->backend[i], be[i]);
	/* A new flusher takes over: the stream is healthy again.  An earlier
	 * failure's error word stays until this flusher's first durable
	 * publish, though: until that write replaces it, the slot the failed
	 * write left (never synced) is still there, and recovery after a
	 * crash in between must go on distrusting it (core/recover.c). */
	fs->clear_mark = ckpt__load_acquire(&f->error) != 0;
	ckpt__store_relaxed(&f->health, CKPT_HEALTHY);
	ckpt__why_set(f, "%s", "");
	ckpt__store_relaxed(&f->heartbeat_ns, ckpt__mono_ns());
	ckpt__store_relaxed(&f->flusher_pid, (uint32_t)getpid());

	pthread_mutex_lock(&fl->mu);
	fs->next = fl->adds;
	fl->adds = fs;
	fl->nstreams++;
	pthread_cond_signal(&fl->wake);
	pthread_mutex_unlock(&fl->mu);
	*out = fs;
	return 0;
}

static int remove_common(ckpt__flusher_t *fl, ckpt__fstream_t *fs, int how,
			 int timeout_ms, int64_t until)
{
	int ret;

	pthread_mutex_lock(&fl->mu);
	fs->remove_req = how;
	fs->remove_until = until;
	if (timeout_ms >= 0)
		fs->remove_deadline = ckpt__mono_ns() +
				      (uint64_t)timeout_ms * 1000000ull;
	pthread_cond_signal(&fl->wake);
	while (!fs->removed)
		pthread_cond_wait(&fl->done, &fl->mu);
	ret = fs->result;
	pthread_mutex_unlock(&fl->mu);
	free(fs);
	return ret;
}

int ckpt__flusher_remove(ckpt__flusher_t *fl, ckpt__fstream_t *fs,
			 int timeout_ms, int64_t until)
{
	return remove_common(fl, fs, 1, timeout_ms, until);
}

int ckpt__flusher_drop(ckpt__flusher_t *fl, ckpt__fstream_t *fs)
{
	return remove_common(fl, fs, 2, 0, -1);
}

int ckpt__fstream_failed(const ckpt__fstream_t *fs)
{
	return __atomic_load_n(&fs->failed_pub, __ATOMIC_ACQUIRE) != 0;
}

int ckpt__fstream_error(const ckpt__fstream_t *fs)
{
	return __atomic_load_n(&fs->failed_pub, __ATOMIC_ACQUIRE);
}

void ckpt__flusher_stop(ckpt__flusher_t *fl, int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ? ckpt__mono_ns() +
			(uint64_t)timeout_ms * 1000000ull : 0;

	pthread_mutex_lock(&fl->mu);
	/* streams nobody removed: remove them as remove would, and let the
	 * thread free them (3: nobody waits for the answer) */
	for (int l = 0; l < 2; l++)
		for (ckpt__fstream_t *fs = l ? fl->adds : fl->streams; fs;
		     fs = fs->next)
			if (!fs->remove_req) {
				fs->remove_req = 3;
				fs->remove_until = -1;
				fs->remove_deadline = deadline;
			}
	fl->stop = 1;
	pthread_cond_signal(&fl->wake);
	pthread_mutex_unlock(&fl->mu);
	pthread_join(fl->th, NULL);
	ckpt__io_close(fl->io);
	pthread_cond_destroy(&fl->wake);
	pthread_cond_destroy(&fl->done);
	pthread_mutex_destroy(&fl->mu);
	free(fl);
}

/* ------------------------------------------------------------------------
 * The process-wide flushers of CKPT_FLUSHER_THREAD streams
 * ------------------------------------------------------------------------ */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ckpt__flusher_t *reg_head;

int ckpt__flusher_get(int backend, struct ckpt_fault_plan *fault,
		      uint32_t interval_us, ckpt__flusher_t **out)
{
	ckpt__flusher_t *fl;
	const char *why = NULL;
	int ret = 0;

	pthread_mutex_lock(&reg_mu);
	/* In the child of a fork, the registry lists the parent's flushers,
	 * whose threads do not exist here: forget them (their memory is the
	 * parent's copy; freeing it would free nothing of ours). */
	for (ckpt__flusher_t **pp = &reg_head; *pp;)
		if ((*pp)->pid != getpid())
			*pp = (*pp)->reg_next;
		else
			pp = &(*pp)->reg_next;
	for (fl = reg_head; fl; fl = fl->reg_next)
		if (fl->kind == backend && fl->fault == fault &&
		    fl->interval_us == interval_us)
			break;
	if (!fl) {
		ret = ckpt__flusher_start(backend, fault, interval_us, &fl,
					  &why);
		if (ret == 0) {
			fl->reg_next = reg_head;
			reg_head = fl;
			ckpt__log(why ? CKPT_LOG_WARN : CKPT_LOG_INFO,
				  "flusher started with the %s backend%s%s",
				  fl->backend, why ? ": " : "", why ? why : "");
		}
	}
	if (ret == 0) {
		fl->refs++;
		*out = fl;
	}
	pthread_mutex_unlock(&reg_mu);
	return ret;
}

void ckpt__flusher_put(ckpt__flusher_t *fl)
{
	ckpt__flusher_t **pp;

	pthread_mutex_lock(&reg_mu);
	if (fl->pid != getpid() || --fl->refs > 0) {
		/* (a handle the parent of a fork opened: its flusher thread
		 * is not ours to stop) */
		pthread_mutex_unlock(&reg_mu);
		return;
	}
	for (pp = &reg_head; *pp; pp = &(*pp)->reg_next)
		if (*pp == fl) {
			*pp = fl->reg_next;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	ckpt__flusher_stop(fl, -1);
}
