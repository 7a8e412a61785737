/*
 * fault.c - the fault-injecting wrapper (see fault.h for the model).
 *
 * Ops wait in a queue ordered by due time; reap executes the due ones as one
 * batch on the inner backend and waits for that batch before returning, so
 * between two calls nothing is in flight below the wrapper.  That is what
 * makes a power cut exact: once ckpt__fault_powercut() has seen no batch
 * executing, no byte of a queued op can reach a file.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "internal.h"
#include "io_private.h"

enum { F_NONE, F_EIO_WRITE, F_EIO_SYNC, F_SHORT };

/* The wrapper's record of one caller op; the caller's op keeps its private
 * fields for the backend it is really handed to. */
struct shadow {
	struct ckpt__io_op in; /* what runs on the inner backend */
	struct ckpt__io_op *op; /* the caller's */
	struct shadow *next; /* queue or free list */
	uint64_t due_ns, num;
	int fault;
};

struct fw {
	struct ckpt__io io;
	struct ckpt_fault_plan *plan;
	ckpt__io_t *inner;
	struct ckpt__fault_lat lat;
	uint64_t rng;
	struct shadow *sh, *free, *queue; /* queue: by due time, FIFO on ties */
	struct shadow **batch;
	struct ckpt__io_op **idone;
	struct ckpt__io_op *dhead, *dtail; /* finished, not yet reaped */
	int cut; /* this handle has processed the power cut */
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * exp and log without libm: the library links only -luring -lxxhash
 * -lpthread, and -z defs would refuse an undefined log().  Precision of
 * 1e-12 is far beyond what a latency distribution needs.
 */
static double exp_neg(double x) /* e^-x for x >= 0 */
{
	static const double e_inv = 0.36787944117144233; /* e^-1 */
	double r = 1.0, term = 1.0, p = e_inv, f;
	unsigned long long n;

	if (x > 745.0)
		return 0.0;
	n = (unsigned long long)x;
	f = x - (double)n;
	for (int k = 1; k < 24; k++) { /* e^-f, f in [0, 1) */
		term *= -f / k;
		r += term;
	}
	for (; n; n >>= 1, p *= p) /* times e^-n by squaring */
		if (n & 1)
			r *= p;
	return r;
}

static double ln_pos(double u) /* ln u for u > 0, normal */
{
	static const double ln2 = 0.69314718055994531;
	uint64_t bits;
	double m, z, z2, s = 0.0, pw;
	int e;

	memcpy(&bits, &u, sizeof(bits));
	e = (int)((bits >> 52) & 0x7ff) - 1023;
	bits = (bits & ((1ULL << 52) - 1)) | (1023ULL << 52);
	memcpy(&m, &bits, sizeof(m)); /* u = m * 2^e, m in [1, 2) */
	z = (m - 1.0) / (m + 1.0); /* ln m = 2 atanh z, z < 1/3 */
	z2 = z * z;
	pw = z;
	for (int k = 1; k < 60; k += 2) {
		s += pw / k;
		pw *= z2;
	}
	return e * ln2 + 2.0 * s;
}

/* Mean of min(X, R) for X exponential with scale t: t (1 - e^-(R/t)). */
static double clipped_mean(double t, double r)
{
	return t * (1.0 - exp_neg(r / t));
}

int ckpt__fault_lat_init(struct ckpt__fault_lat *lat,
			 const struct ckpt_fault_plan *p)
{
	uint64_t min = p->lat_min_us, max = p->lat_max_us, mean = p->lat_mean_us;
	double lo, hi, want, r;

	memset(lat, 0, sizeof(*lat));
	if (max == 0)
		max = min;
	lat->min_us = min;
	lat->max_us = max;
	if (max < min)
		return ckpt__fail(-EINVAL, "fault plan: latency max %llu us < "
				  "min %llu us", (unsigned long long)max,
				  (unsigned long long)min);
	if (max == 0)
		return 0;
	if (min == max) {
		lat->kind = 1;
		return 0;
	}
	if (mean == 0) {
		lat->kind = 2;
		return 0;
	}
	if (mean <= min || mean >= max)
		return ckpt__fail(-EINVAL, "fault plan: latency mean %llu us is "
				  "not strictly inside [%llu, %llu] us",
				  (unsigned long long)mean,
				  (unsigned long long)min,
				  (unsigned long long)max);
	/* clipped_mean grows with t from 0 towards r: bracket, then bisect */
	want = (double)(mean - min);
	r = (double)(max - min);
	lo = 0.0;
	hi = want;
	for (int i = 0; i < 2000 && clipped_mean(hi, r) < want; i++) {
		lo = hi;
		hi *= 2.0;
	}
	for (int i = 0; i < 200; i++) {
		double mid = 0.5 * (lo + hi);

		if (clipped_mean(mid, r) < want)
			lo = mid;
		else
			hi = mid;
	}
	lat->kind = 3;
	lat->theta_us = 0.5 * (lo + hi);
	return 0;
}

uint64_t ckpt__fault_lat_sample(const struct ckpt__fault_lat *lat,
				uint64_t *rng)
{
	double u, x;

	switch (lat->kind) {
	case 1:
		return lat->min_us;
	case 2:
		return lat->min_us +
		       splitmix(rng) % (lat->max_us - lat->min_us + 1);
	case 3:
		/* u in (0, 1]: never ln 0 */
		u = (double)((splitmix(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
		x = (double)lat->min_us - lat->theta_us * ln_pos(u) + 0.5;
		return x >= (double)lat->max_us ? lat->max_us : (uint64_t)x;
	}
	return 0;
}

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static void stat_max(uint64_t *c, uint64_t v)
{
	uint64_t cur = __atomic_load_n(c, __ATOMIC_RELAXED);

	while (cur < v && !__atomic_compare_exchange_n(c, &cur, v, 0,
						       __ATOMIC_RELAXED,
						       __ATOMIC_RELAXED))
		;
}

/* Tell the plan's recorder, if any (fault.h: struct ckpt_fault_rec). */
static void record(struct fw *fw, int kind, int res, uint64_t num, int fd,
		   uint64_t off, uint64_t len, const void *data, int torn)
{
	struct ckpt_fault_plan *p = fw->plan;
	struct ckpt_fault_rec r;
	struct stat st;

	if (!p->record)
		return;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.res = res;
	r.num = num;
	r.fd = fd;
	r.torn = torn;
	if (fstat(fd, &st) == 0) {
		r.dev = (uint64_t)st.st_dev;
		r.ino = (uint64_t)st.st_ino;
	}
	r.off = off;
	r.len = len;
	r.data = data;
	p->record(p->record_arg, &r);
}

static int in_range(uint64_t n, uint64_t at, uint64_t count)
{
	if (at == 0 || n < at)
		return 0;
	return count == UINT64_MAX || n - at < (count ? count : 1);
}

static void complete(struct fw *fw, struct shadow *s, int res, int phase,
		     int shrt)
{
	struct ckpt__io_op *op = s->op;

	op->res = res;
	op->failed_phase = res < 0 ? phase : 0;
	op->short_write = shrt;
	op->done_ns = ckpt__mono_ns();
	op->ckpt__next = NULL;
	if (fw->dtail)
		fw->dtail->ckpt__next = op;
	else
		fw->dhead = op;
	fw->dtail = op;
	s->op = NULL;
	s->next = fw->free;
	fw->free = s;
}

/*
 * The executing count and the powercut flag form a Dekker pair (both
 * seq_cst): the wrapper raises executing then reads powercut; the cutter
 * sets powercut then waits for executing to drop.  Either the wrapper sees
 * the cut before writing anything, or the cutter waits for its batch.
 */
static void window_enter(struct fw *fw)
{
	__atomic_fetch_add(&fw->plan->ckpt__executing, 1, __ATOMIC_SEQ_CST);
}

static void window_leave(struct fw *fw)
{
	__atomic_fetch_sub(&fw->plan->ckpt__executing, 1, __ATOMIC_SEQ_CST);
}

static int cut_signalled(struct fw *fw)
{
	return __atomic_load_n(&fw->plan->powercut, __ATOMIC_SEQ_CST) != 0;
}

static void torn_write(struct fw *fw, struct shadow *s)
{
	struct ckpt_fault_plan *p = fw->plan;
	const struct ckpt__io_op *op = s->op;
	uint64_t sectors = op->len ? (op->len - 1) / 512 + 1 : 0;
	uint64_t keep = sectors ? splitmix(&fw->rng) % sectors * 512 : 0;
	const char *b = op->buf;
	uint64_t done = 0;

	/* Only one op in the whole plan is torn, whichever handle sees the
	 * cut first. */
	if (__atomic_exchange_n(&p->ckpt__torn_done, 1, __ATOMIC_RELAXED))
		return;
	while (done < keep) {
		ssize_t w = pwrite(op->fd, b + done, (size_t)(keep - done),
				   (off_t)(op->off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ckpt__log(CKPT_LOG_WARN, "fault: torn write of op %llu "
				  "stopped at %llu bytes: %s",
				  (unsigned long long)s->num,
				  (unsigned long long)done,
				  w < 0 ? strerror(errno) : "no progress");
			break;
		}
		done += (uint64_t)w;
	}
	/* never synced: a recorder keeps it unsynced for good */
	if (done)
		record(fw, CKPT_FAULT_REC_WRITE, 0, s->num, op->fd, op->off,
		       done, b, 1);
	stat_add(&p->stats.torn, 1);
	__atomic_store_n(&p->stats.torn_op, s->num, __ATOMIC_RELAXED);
	__atomic_store_n(&p->stats.torn_bytes, done, __ATOMIC_RELAXED);
}

/* Inside the window: the power is gone from now on for this handle. */
static void cut_now(struct fw *fw, struct shadow *victim)
{
	if (!fw->cut && victim && fw->plan->torn)
		torn_write(fw, victim);
	fw->cut = 1;
	while (fw->queue) {
		struct shadow *s = fw->queue;

		fw->queue = s->next;
		stat_add(&fw->plan->stats.cut_ops, 1);
		complete(fw, s, -EIO, CKPT_IO_WRITE, 0);
	}
}

/* Notice a cut made by another thread (the torn prefix lands here). */
static void poll_cut(struct fw *fw)
{
	if (fw->cut || !cut_signalled(fw))
		return;
	window_enter(fw);
	cut_now(fw, fw->queue);
	window_leave(fw);
}

static void finish(struct fw *fw, struct shadow *s, const struct ckpt__io_op *in)
{
	struct ckpt_fault_stats *st = &fw->plan->stats;

	/* before complete() hands the op back: the sync is done (res 0) or
	 * its bytes are of unknown fate (res < 0) */
	if (in)
		record(fw, CKPT_FAULT_REC_SYNC,
		       in->res < 0 ? in->res
				   : s->fault == F_EIO_SYNC ? -EIO : 0,
		       s->num, in->fd, in->off, in->len, NULL, 0);
	if (in && in->res < 0) { /* a real failure beats an injected one */
		complete(fw, s, in->res, in->failed_phase, in->short_write);
	} else if (s->fault == F_SHORT) {
		stat_add(&st->short_writes, 1);
		complete(fw, s, -EIO, CKPT_IO_WRITE, 1);
	} else if (s->fault == F_EIO_SYNC) {
		stat_add(&st->eio_sync, 1);
		complete(fw, s, -EIO, CKPT_IO_SYNC, 0);
	} else if (s->fault == F_EIO_WRITE) {
		stat_add(&st->eio_write, 1);
		complete(fw, s, -EIO, CKPT_IO_WRITE, 0);
	} else {
		stat_add(&st->writes_ok, 1);
		complete(fw, s, 0, 0, 0);
	}
}

/* Run @nb due ops on the inner backend and wait for all of them. */
static int execute(struct fw *fw, int nb)
{
	int pending = 0;

	for (int i = 0; i < nb; i++) {
		struct shadow *s = fw->batch[i];
		struct ckpt__io_op *op = s->op;
		size_t len = op->len;
		int ret;

		if (s->fault == F_EIO_WRITE) {
			finish(fw, s, NULL);
			continue;
		}
		if (s->fault == F_SHORT) {
			len = (op->len / 2) & ~(size_t)511;
			if (len == 0) {
				finish(fw, s, NULL);
				continue;
			}
		}
		memset(&s->in, 0, sizeof(s->in));
		s->in.fd = op->fd;
		s->in.buf = op->buf;
		s->in.len = len;
		s->in.off = op->off;
		s->in.user = s;
		/* before the bytes go: from here on they may be in the file */
		record(fw, CKPT_FAULT_REC_WRITE, 0, s->num, op->fd, op->off,
		       len, op->buf, 0);
		ret = ckpt__io_submit(fw->inner, &s->in);
		if (ret < 0) { /* depth matches ours: only a real error */
			record(fw, CKPT_FAULT_REC_SYNC, ret, s->num, op->fd,
			       op->off, len, NULL, 0);
			complete(fw, s, ret, CKPT_IO_WRITE, 0);
			continue;
		}
		pending++;
	}
	while (pending > 0) {
		int n = ckpt__io_reap(fw->inner, fw->idone, (int)fw->io.depth,
				      1000000000);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++)
			finish(fw, fw->idone[i]->user, fw->idone[i]);
		pending -= n;
	}
	return 0;
}

static int run_due(struct fw *fw, uint64_t now)
{
	struct ckpt_fault_plan *p = fw->plan;
	struct shadow *victim = NULL;
	int nb = 0, ret = 0;

	window_enter(fw);
	if (fw->cut || cut_signalled(fw)) {
		cut_now(fw, fw->queue);
		goto out;
	}
	while (fw->queue && fw->queue->due_ns <= now) {
		struct shadow *s = fw->queue;

		if (p->powercut_at_op && s->num >= p->powercut_at_op) {
			victim = s;
			break;
		}
		fw->queue = s->next;
		fw->batch[nb++] = s;
	}
	ret = nb ? execute(fw, nb) : 0;
	if (victim) {
		__atomic_store_n(&p->powercut, 1, __ATOMIC_SEQ_CST);
		cut_now(fw, victim);
	}
out:
	window_leave(fw);
	return ret;
}

static int fw_submit(ckpt__io_t *io, struct ckpt__io_op *op)
{
	struct fw *fw = (struct fw *)io;
	struct ckpt_fault_plan *p = fw->plan;
	struct shadow *s, **pp;
	uint64_t n;

	/* First: an op submitted after the cut is never the torn one, and a
	 * cut returns shadows to the free list. */
	poll_cut(fw);
	s = fw->free;
	if (!s) /* io.c bounds ops in flight by depth: cannot happen */
		return ckpt__fail(-EAGAIN, "fault: no free shadow op");
	fw->free = s->next;
	n = __atomic_add_fetch(&p->stats.ops, 1, __ATOMIC_RELAXED);
	s->op = op;
	s->num = n;
	s->due_ns = op->submit_ns +
		    ckpt__fault_lat_sample(&fw->lat, &fw->rng) * 1000u;
	if (in_range(n, p->eio_write_at, p->eio_write_count))
		s->fault = F_EIO_WRITE;
	else if (in_range(n, p->short_write_at, p->short_write_count))
		s->fault = F_SHORT;
	else if (in_range(n, p->eio_sync_at, p->eio_sync_count))
		s->fault = F_EIO_SYNC;
	else
		s->fault = F_NONE;
	stat_max(&p->stats.max_inflight, io->inflight + 1u);
	for (pp = &fw->queue; *pp && (*pp)->due_ns <= s->due_ns;
	     pp = &(*pp)->next)
		;
	s->next = *pp;
	*pp = s;
	return 0;
}

static int fw_reap(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		   int64_t wait_ns)
{
	struct fw *fw = (struct fw *)io;
	uint64_t deadline = ckpt__mono_ns() + (uint64_t)wait_ns;
	int n = 0;

	for (;;) {
		uint64_t now = ckpt__mono_ns(), until;
		struct timespec ts;
		int ret = run_due(fw, now);

		if (ret < 0)
			return ret;
		if (fw->dhead || !fw->queue || now >= deadline)
			break;
		/* Wake at least every 5 ms: a power cut from another thread
		 * must fail the queued ops promptly, not after a 20 s
		 * latency. */
		until = fw->queue->due_ns < deadline ? fw->queue->due_ns
						      : deadline;
		if (until > now + 5000000u)
			until = now + 5000000u;
		ts.tv_sec = (time_t)(until / 1000000000u);
		ts.tv_nsec = (long)(until % 1000000000u);
		/* EINTR or not, the loop recomputes what is due */
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	while (n < max && fw->dhead) {
		struct ckpt__io_op *op = fw->dhead;

		fw->dhead = op->ckpt__next;
		if (!fw->dhead)
			fw->dtail = NULL;
		op->ckpt__next = NULL;
		done[n++] = op;
	}
	return n;
}

static int fw_grow(ckpt__io_t *io, int fd, uint64_t old_size,
		   uint64_t new_size)
{
	struct fw *fw = (struct fw *)io;
	struct ckpt_fault_plan *p = fw->plan;
	uint64_t g = __atomic_add_fetch(&p->stats.grows, 1, __ATOMIC_RELAXED);
	int ret;

	window_enter(fw);
	if (fw->cut || cut_signalled(fw)) {
		cut_now(fw, fw->queue);
		ret = ckpt__fail(-EIO, "fault plan: power cut, grow of fd %d "
				 "lost", fd);
	} else if (in_range(g, p->enospc_grow_at, p->enospc_grow_count)) {
		stat_add(&p->stats.enospc_grow, 1);
		ret = ckpt__fail(-ENOSPC, "fault plan: grow %llu of fd %d to "
				 "%llu bytes fails with ENOSPC",
				 (unsigned long long)g, fd,
				 (unsigned long long)new_size);
	} else {
		ret = ckpt__io_grow(fw->inner, fd, old_size, new_size);
		if (new_size > old_size)
			record(fw, CKPT_FAULT_REC_GROW, ret, g, fd, old_size,
			       new_size - old_size, NULL, 0);
	}
	window_leave(fw);
	return ret;
}

static void fw_close(ckpt__io_t *io)
{
	struct fw *fw = (struct fw *)io;

	/* Ops still queued never ran: their data never reached a file, and
	 * their owner, closing us, will not reap them. */
	poll_cut(fw);
	ckpt__io_close(fw->inner);
	free(fw->sh);
	free(fw->batch);
	free(fw->idone);
	free(fw);
}

static const struct ckpt__io_vt fw_vt = {
	.submit = fw_submit,
	.reap = fw_reap,
	.grow = fw_grow,
	.close = fw_close,
};

int ckpt__fault_open(struct ckpt_fault_plan *plan, ckpt__io_t *inner,
		     unsigned depth, ckpt__io_t **out)
{
	struct fw *fw = calloc(1, sizeof(*fw));
	int ret;

	*out = NULL;
	if (!fw) {
		ckpt__io_close(inner);
		return ckpt__fail(-ENOMEM, "allocating the fault backend");
	}
	fw->inner = inner;
	ret = ckpt__fault_lat_init(&fw->lat, plan);
	if (ret < 0)
		goto fail;
	fw->sh = calloc(depth, sizeof(*fw->sh));
	fw->batch = calloc(depth, sizeof(*fw->batch));
	fw->idone = calloc(depth, sizeof(*fw->idone));
	if (!fw->sh || !fw->batch || !fw->idone) {
		ret = ckpt__fail(-ENOMEM, "allocating %u fault shadow ops",
				 depth);
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++)
		fw->sh[i].next = i + 1 < depth ? &fw->sh[i + 1] : NULL;
	fw->free = fw->sh;
	fw->plan = plan;
	fw->rng = plan->seed;
	fw->io.vt = &fw_vt;
	fw->io.name = strcmp(inner->name, "io_uring") == 0 ? "fault+io_uring"
							   : "fault+fallback";
	fw->io.depth = depth;
	*out = &fw->io;
	return 0;
fail:
	ckpt__io_close(inner);
	free(fw->sh);
	free(fw->batch);
	free(fw->idone);
	free(fw);
	return ret;
}

void ckpt__fault_powercut(struct ckpt_fault_plan *plan)
{
	__atomic_store_n(&plan->powercut, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&plan->ckpt__executing, __ATOMIC_SEQ_CST) != 0)
		sched_yield(); /* at most one batch of writes + datasyncs */
}

void ckpt__fault_stats(const struct ckpt_fault_plan *plan,
		       struct ckpt_fault_stats *out)
{
	const struct ckpt_fault_stats *s = &plan->stats;

	out->ops = __atomic_load_n(&s->ops, __ATOMIC_RELAXED);
	out->writes_ok = __atomic_load_n(&s->writes_ok, __ATOMIC_RELAXED);
	out->grows = __atomic_load_n(&s->grows, __ATOMIC_RELAXED);
	out->eio_write = __atomic_load_n(&s->eio_write, __ATOMIC_RELAXED);
	out->eio_sync = __atomic_load_n(&s->eio_sync, __ATOMIC_RELAXED);
	out->short_writes = __atomic_load_n(&s->short_writes, __ATOMIC_RELAXED);
	out->enospc_grow = __atomic_load_n(&s->enospc_grow, __ATOMIC_RELAXED);
	out->cut_ops = __atomic_load_n(&s->cut_ops, __ATOMIC_RELAXED);
	out->torn = __atomic_load_n(&s->torn, __ATOMIC_RELAXED);
	out->torn_op = __atomic_load_n(&s->torn_op, __ATOMIC_RELAXED);
	out->torn_bytes = __atomic_load_n(&s->torn_bytes, __ATOMIC_RELAXED);
	out->max_inflight = __atomic_load_n(&s->max_inflight, __ATOMIC_RELAXED);
}
