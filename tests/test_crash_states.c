/*
 * test_crash_states.c - every state a crash can leave the slot files in
 * (CrashMonkey's idea) recovers an epoch >= the newest durable one, with
 * exactly the oracle's state of that epoch (R1, R2, R7).
 *
 * Record.  A workload runs through the public API with a fault plan whose
 * recorder (iouring/fault.h) logs, in order, every write (with its bytes),
 * every datasync and every growth of a slot file; the test adds a DURABLE
 * mark to the same log each time ckpt_wait_durable() reports an epoch.
 * The blank slot files are copied right after ckpt_open, before any write.
 * Epochs are the oracle's (tests/oracle.h: epoch e is a pure function of
 * (seed, e)); the test waits for durability on about every other epoch,
 * so there are many writes, and the state grows past the 64 KiB a slot
 * starts with, so each slot is grown too.
 *
 * Replay.  For every prefix of the log (k = 0 .. N events) the two files
 * are rebuilt from the blank copies: every write whose datasync succeeded
 * within the prefix is applied in full; the write not yet synced at the
 * crash (the flusher has at most one in flight) is, in turn,
 *   dropped,
 *   kept whole,
 *   torn: only a prefix of it reached the disk, cut at a 512-byte sector
 *     boundary - every boundary for small writes, for the first write and
 *     for the first write after each growth; for the other large writes
 *     the first eight (inside the 4 KiB header), the last four and a
 *     stratified sample of the middle,
 *   scattered: a random subset of its sectors (a disk that reorders them).
 * A growth is a write of zeros then a datasync, and is treated the same
 * (files cut between their old and new sizes).  Each state goes into a
 * fresh directory and is opened with ckpt_open (no region: /dev/shm does
 * not survive a power cut), which must succeed with recovered epoch R:
 *	R >= D, D = the newest epoch whose full image was written and synced
 *		within the prefix (what the flusher publishes as durable; the
 *		DURABLE marks must never be ahead of it);
 *	R == D exactly when the unsynced write is dropped, R == its epoch
 *		when it is kept whole (FORMAT.md: the newest valid slot wins);
 *	otherwise R is D or the unsynced write's epoch;
 *	the recovered offsets, keys and metadata are the oracle's for R.
 * After the workload the files on disk must equal the replay of the whole
 * log: nothing reached them that the recorder did not see.
 *
 * Workloads: a clean run (the backend the machine offers), and runs that
 * end in a fault - a datasync that fails with EIO (its bytes written, fate
 * unknown), a short write (half the image written and synced, the op
 * failed), and a power cut that tears an op.  test_recorder checks the
 * recorder itself on both backends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "io.h"
#include "oracle.h"
#include "region.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "crashst"
#define RING (1u << 20)
#define SECTOR 512u
#define HDR 4096u /* CKPT_SLOT_HDR_SIZE */
#define MAX_EPOCHS 2000

static uint64_t seed;
static char *base; /* every crash state gets a directory under it */
static or_oracle_t *oracles; /* oracles[e]: the state after epoch e */
static int64_t noracles;

/* ---- the log ------------------------------------------------------------ */

enum { EV_WRITE = 1, EV_SYNC, EV_GROW, EV_DURABLE };

struct ev {
	int kind;
	int res; /* SYNC, GROW */
	int torn; /* WRITE */
	uint64_t num;
	uint64_t dev, ino;
	uint64_t off, len;
	unsigned char *data; /* WRITE: a copy */
	int64_t epoch; /* DURABLE: the epoch reported */
};

struct rlog {
	pthread_mutex_t mu;
	struct ev *ev;
	size_t n, cap;
	int hole; /* a record could not be kept (no memory, unknown kind) */
};

/* Append *e (the log owns e->data from here on); kind < 0 is a hole. */
static void log_add(struct rlog *l, struct ev *e)
{
	pthread_mutex_lock(&l->mu);
	if (e->kind > 0 && l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct ev *p = realloc(l->ev, cap * sizeof(*p));
		if (p) {
			l->ev = p;
			l->cap = cap;
		} else {
			e->kind = -1;
		}
	}
	if (e->kind < 0) { /* the test fails on it */
		l->hole = 1;
		free(e->data);
	} else {
		l->ev[l->n++] = *e;
	}
	pthread_mutex_unlock(&l->mu);
}

/* The recorder: runs on the flusher thread, inside the fault wrapper. */
static void recorder(void *arg, const struct ckpt_fault_rec *r)
{
	struct rlog *l = arg;
	struct ev e;

	memset(&e, 0, sizeof(e));
	e.kind = r->kind == CKPT_FAULT_REC_WRITE  ? EV_WRITE
		 : r->kind == CKPT_FAULT_REC_SYNC ? EV_SYNC
		 : r->kind == CKPT_FAULT_REC_GROW ? EV_GROW
						  : -1;
	e.res = r->res;
	e.torn = r->torn;
	e.num = r->num;
	e.dev = r->dev;
	e.ino = r->ino;
	e.off = r->off;
	e.len = r->len;
	e.epoch = -1;
	if (r->kind == CKPT_FAULT_REC_WRITE) {
		e.data = malloc(r->len ? r->len : 1);
		if (!e.data)
			e.kind = -1; /* a hole */
		else
			memcpy(e.data, r->data, r->len);
	}
	log_add(l, &e);
}

static void log_free(struct rlog *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ev[i].data);
	free(l->ev);
	pthread_mutex_destroy(&l->mu);
}

/* ---- files ------------------------------------------------------------- */

struct file {
	unsigned char *b;
	uint64_t len, cap;
};

static void file_reserve(struct file *f, uint64_t len)
{
	if (len <= f->cap)
		return;
	uint64_t cap = f->cap ? f->cap : 65536;
	while (cap < len)
		cap *= 2;
	f->b = realloc(f->b, cap);
	assert_non_null(f->b);
	f->cap = cap;
}

static void file_copy(struct file *dst, const struct file *src)
{
	file_reserve(dst, src->len);
	memcpy(dst->b, src->b, src->len);
	dst->len = src->len;
}

/* Bytes [off, off + n) of a write land; the file grows as a file does
 * (a gap would read as zeros). */
static void file_put(struct file *f, uint64_t off, const unsigned char *data,
		     uint64_t n)
{
	if (n == 0)
		return;
	file_reserve(f, off + n);
	if (off > f->len)
		memset(f->b + f->len, 0, off - f->len);
	if (data)
		memcpy(f->b + off, data, n);
	else
		memset(f->b + off, 0, n); /* a growth's zeros */
	if (off + n > f->len)
		f->len = off + n;
}

static void read_file(const char *dir, const char *name, struct file *f,
		      struct stat *st)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, NAME, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, st), 0);
	f->len = 0;
	file_reserve(f, (uint64_t)st->st_size);
	assert_int_equal(pread(fd, f->b, (size_t)st->st_size, 0),
			 st->st_size);
	f->len = (uint64_t)st->st_size;
	close(fd);
}

static void write_file(int dfd, const char *name, const struct file *f)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			0600);
	uint64_t done = 0;

	assert_true(fd >= 0);
	while (done < f->len) {
		ssize_t w = pwrite(fd, f->b + done, (size_t)(f->len - done),
				   (off_t)done);
		assert_true(w > 0);
		done += (uint64_t)w;
	}
	close(fd);
}

static void free_file(struct file *f)
{
	free(f->b);
	memset(f, 0, sizeof(*f));
}

/* ---- the workload -------------------------------------------------------- */

struct wl_cfg {
	const char *label;
	int backend;
	int min_epochs; /* at least this many */
	int max_epochs; /* at most (0: MAX_EPOCHS) */
	int want_grows; /* then until this many growths (clean run) */
	/* fault plan fields; the run stops when the stream fails */
	uint64_t eio_sync_at, short_write_at, powercut_at_op;
	int torn;
	int expect_fail;
};

/* What a checker step needs: the log turned into writes, syncs, marks. */
enum { CW = 1, CS, CD };

struct cev {
	int kind;
	int file; /* CW: 0 or 1 */
	int grow; /* CW: the zeros of a growth */
	int ok; /* CS: the write's bytes are durable */
	int torn; /* CW: a power cut's torn prefix (never synced) */
	uint64_t num; /* pairs CW and CS */
	uint64_t off, len;
	const unsigned char *data; /* NULL: zeros */
	int64_t epoch; /* CW: the image's epoch (-1: none); CD: reported */
	int full; /* CW: a whole image (header + body_len) */
};

/* On the heap, plan and log included: a failure longjmps out of the
 * workload with the flusher still using them, so they must outlive it. */
struct wl {
	struct wl_cfg cfg;
	struct ckpt_fault_plan plan;
	struct rlog log;
	struct file init[2], final[2];
	uint64_t dev[2], ino[2];
	int64_t committed;
	int failed; /* the stream failed, as the plan wanted */
	struct ckpt_fault_stats fst;
	char backend[16];
	struct cev *cev;
	size_t ncev;
	unsigned writes, grows, syncs, marks;
	double secs;
};

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void mark_durable(struct wl *w, int64_t e)
{
	struct ev ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = EV_DURABLE;
	ev.epoch = e;
	log_add(&w->log, &ev);
}

static void run_workload(struct wl *w)
{
	static uint8_t buf[OR_VAL_MAX];
	struct ckpt_fault_plan *plan = &w->plan;
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t opts;
	struct stat sb;
	uint64_t rng = seed ^ 0x63726173685fULL, t0 = tu_now_ns();
	char *dir = tu_mkdtemp("crashwl");
	int ret;

	memset(plan, 0, sizeof(*plan)); /* no latency */
	plan->seed = seed;
	plan->eio_sync_at = w->cfg.eio_sync_at;
	plan->short_write_at = w->cfg.short_write_at;
	plan->powercut_at_op = w->cfg.powercut_at_op;
	plan->torn = w->cfg.torn;
	plan->record = recorder;
	plan->record_arg = &w->log;
	pthread_mutex_init(&w->log.mu, NULL);

	or_opts(&opts, RING);
	opts.backend = w->cfg.backend;
	opts.fault = plan;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		fail_msg("%s: open: %s: %s", w->cfg.label, ckpt_strerror(ret),
			 ckpt_last_error());
	/* Nothing is committed yet, so the flusher has written nothing:
	 * these are the blank files as ckpt_open made them durable. */
	for (int i = 0; i < 2; i++) {
		read_file(dir, i ? "slot-1" : "slot-0", &w->init[i], &sb);
		w->dev[i] = (uint64_t)sb.st_dev;
		w->ino[i] = (uint64_t)sb.st_ino;
	}
	assert_int_equal(w->log.n, 0);

	for (int64_t e = 1; e <= (w->cfg.max_epochs ? w->cfg.max_epochs
						    : MAX_EPOCHS); e++) {
		or_epoch_t g;
		int64_t got;

		or_gen(seed, e, &g);
		ret = or_stage(s, &g, buf, NULL);
		if (ret == 0) {
			got = ckpt_commit(s);
			if (got != e)
				fail_msg("%s: commit of epoch %lld: %lld (%s)",
					 w->cfg.label, (long long)e,
					 (long long)got, ckpt_last_error());
			w->committed = e;
		}
		if (ret == 0 && tu_rand(&rng) % 2 != 0 && e >= 2)
			continue; /* coalesced into a later write */
		if (ret == 0)
			ret = ckpt_wait_durable(s, e, 30000);
		if (ret == CKPT_EFAILED || ret == -EAGAIN) {
			ckpt_status(s, &st);
			if (!w->cfg.expect_fail || st.health != CKPT_FAILED)
				fail_msg("%s: epoch %lld: %s; status %d %s: %s",
					 w->cfg.label, (long long)e,
					 ckpt_strerror(ret), st.health,
					 ckpt_strerror(st.error), st.why);
			w->failed = 1;
			break;
		}
		if (ret != 0)
			fail_msg("%s: epoch %lld: %s: %s", w->cfg.label,
				 (long long)e, ckpt_strerror(ret),
				 ckpt_last_error());
		mark_durable(w, ckpt_durable_epoch(s));
		pthread_mutex_lock(&w->log.mu);
		w->grows = 0;
		for (size_t i = 0; i < w->log.n; i++)
			w->grows += w->log.ev[i].kind == EV_GROW;
		pthread_mutex_unlock(&w->log.mu);
		if (e >= w->cfg.min_epochs && (int)w->grows >= w->cfg.want_grows &&
		    !w->cfg.expect_fail)
			break;
	}
	ckpt_status(s, &st);
	snprintf(w->backend, sizeof(w->backend), "%s", st.backend);
	ret = ckpt_close(s);
	/* a fault that did not fail the stream is reported after the
	 * crash states: their check says more precisely what went wrong */
	if (!w->cfg.expect_fail && ret != 0)
		fail_msg("%s: close: %s", w->cfg.label, ckpt_strerror(ret));
	ckpt__fault_stats(plan, &w->fst);
	assert_false(w->log.hole);
	for (int i = 0; i < 2; i++) {
		read_file(dir, i ? "slot-1" : "slot-0", &w->final[i], &sb);
		/* the same files: nothing renamed a new one into place */
		assert_int_equal((uint64_t)sb.st_ino, w->ino[i]);
	}
	tu_rmdir(dir);
	w->secs = (double)(tu_now_ns() - t0) / 1e9;
}

/* The log as the checker walks it; fails on what it cannot model. */
static void build_cev(struct wl *w)
{
	struct rlog *l = &w->log;

	w->cev = calloc(2 * l->n + 1, sizeof(*w->cev));
	assert_non_null(w->cev);
	w->grows = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct ev *e = &l->ev[i];
		struct cev *c = &w->cev[w->ncev];
		int file = -1;

		for (int f = 0; f < 2; f++)
			if (e->dev == w->dev[f] && e->ino == w->ino[f])
				file = f;
		if (e->kind != EV_DURABLE && file < 0)
			fail_msg("%s: log event %zu (kind %d, op %llu) is on "
				 "a file that is not a slot (dev %llu ino %llu)",
				 w->cfg.label, i, e->kind,
				 (unsigned long long)e->num,
				 (unsigned long long)e->dev,
				 (unsigned long long)e->ino);
		switch (e->kind) {
		case EV_WRITE:
			c->kind = CW;
			c->file = file;
			c->torn = e->torn;
			c->num = e->num;
			c->off = e->off;
			c->len = e->len;
			c->data = e->data;
			c->epoch = -1;
			if (e->off == 0 && e->len >= HDR &&
			    memcmp(e->data, "SHMCKSLT", 8) == 0) {
				c->epoch = (int64_t)ld64(e->data + 16);
				c->full = e->len == HDR + ld64(e->data + 40);
			}
			w->ncev++;
			w->writes++;
			break;
		case EV_SYNC:
			c->kind = CS;
			c->file = file;
			c->num = e->num;
			c->ok = e->res == 0;
			w->ncev++;
			w->syncs++;
			break;
		case EV_GROW: /* zeros, then their datasync */
			c->kind = CW;
			c->file = file;
			c->grow = 1;
			c->num = e->num | 1ull << 63;
			c->off = e->off;
			c->len = e->len;
			c->epoch = -1;
			c[1].kind = CS;
			c[1].file = file;
			c[1].num = c->num;
			c[1].ok = e->res == 0;
			w->ncev += 2;
			w->grows++;
			break;
		case EV_DURABLE:
			c->kind = CD;
			c->epoch = e->epoch;
			w->ncev++;
			w->marks++;
			break;
		default:
			fail_msg("%s: log event %zu of unknown kind",
				 w->cfg.label, i);
		}
	}
}

/* ---- checking one crash state ------------------------------------------ */

struct counts {
	uint64_t prefixes, states, dropped, whole, torn, scattered, grow;
	uint64_t newer; /* recovered the unsynced write's epoch */
	uint64_t fell_back; /* torn/scattered: recovered D, the older slot */
};

static uint64_t state_no;

static void rm_state(const char *dir)
{
	char sd[PATH_MAX + 16];
	DIR *d;
	struct dirent *de;

	snprintf(sd, sizeof(sd), "%s/%s", dir, NAME);
	d = opendir(sd);
	if (d) {
		int dfd = dirfd(d);
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dfd, de->d_name, 0);
		closedir(d);
	}
	rmdir(sd);
	rmdir(dir);
}

/*
 * Recover the files @f and check the result.  @lo: the durable bound D;
 * @a, @b: the epochs R may be (b = -1: only a); the caller has checked
 * that a >= lo.  @what describes the state for a failure.
 */
static int64_t check_state(struct wl *w, const struct file f[2], int64_t lo,
			   int64_t a, int64_t b, const char *what)
{
	char dir[1024], sdir[PATH_MAX], why[400];
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	int64_t r;
	int dfd, ret;

	snprintf(dir, sizeof(dir), "%s/c%llu", base,
		 (unsigned long long)++state_no);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(sdir, sizeof(sdir), "%s/%s", dir, NAME);
	assert_int_equal(mkdir(sdir, 0700), 0);
	dfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	write_file(dfd, "slot-0", &f[0]);
	write_file(dfd, "slot-1", &f[1]);
	close(dfd);

	/* a small ring: the region is new (/dev/shm died with the power) */
	or_opts(&opts, 128u * 1024u);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		ckpt__region_unlink(dir, NAME); /* the files stay */
	if (ret < 0)
		fail_msg("%s: %s: recovery failed: %s: %s (files kept in %s)",
			 w->cfg.label, what, ckpt_strerror(ret),
			 ckpt_last_error(), dir);
	r = ckpt_recovered_epoch(s);
	if (r < lo || (r != a && r != b)) {
		ckpt_close(s);
		ckpt__region_unlink(dir, NAME);
		if (b < 0)
			fail_msg("%s: %s: recovered epoch %lld, must be %lld "
				 "(durable %lld) (files kept in %s)",
				 w->cfg.label, what, (long long)r, (long long)a,
				 (long long)lo, dir);
		fail_msg("%s: %s: recovered epoch %lld, must be %lld or %lld "
			 "and >= durable %lld (files kept in %s)", w->cfg.label,
			 what, (long long)r, (long long)a, (long long)b,
			 (long long)lo, dir);
	}
	assert_true(r >= 0 && r < noracles);
	if (or_compare(s, &oracles[r], why, sizeof(why)) < 0) {
		ckpt_close(s);
		ckpt__region_unlink(dir, NAME);
		fail_msg("%s: %s: recovered epoch %lld, state differs from the "
			 "oracle's: %s (files kept in %s)", w->cfg.label, what,
			 (long long)r, why, dir);
	}
	ret = ckpt_close(s);
	if (ret != 0)
		fail_msg("%s: %s: close: %s", w->cfg.label, what,
			 ckpt_strerror(ret));
	ckpt__region_unlink(dir, NAME);
	rm_state(dir);
	return r;
}

/* ---- the variants of an unsynced write ---------------------------------- */

/* Prefix lengths p (0 < p < len) at which the write is torn: (off + p) a
 * sector boundary.  Every one when @all or when there are few; else the
 * first 8, the last 4 and @sample stratified from the middle. */
static size_t torn_points(const struct cev *u, int all, uint64_t sample,
			  uint64_t *rng, uint64_t *out, size_t cap)
{
	uint64_t first = (u->off / SECTOR + 1) * SECTOR - u->off;
	uint64_t nb, n = 0;

	if (first >= u->len)
		return 0;
	nb = (u->len - first - 1) / SECTOR + 1; /* boundaries inside */
	if (all || nb <= 8 + 4 + sample) {
		for (uint64_t i = 0; i < nb && n < cap; i++)
			out[n++] = first + i * SECTOR;
		return n;
	}
	for (uint64_t i = 0; i < 8; i++)
		out[n++] = first + i * SECTOR;
	uint64_t mid = nb - 12;
	for (uint64_t j = 0; j < sample; j++) {
		uint64_t lo = mid * j / sample, hi = mid * (j + 1) / sample;
		if (hi > lo)
			out[n++] = first + (8 + lo + tu_rand(rng) % (hi - lo)) *
						   SECTOR;
	}
	for (uint64_t i = nb - 4; i < nb; i++)
		out[n++] = first + i * SECTOR;
	return n;
}

struct walk {
	struct wl *w;
	struct counts *ct;
	struct file cur[2]; /* what is durable at this point */
	struct file tmp[2];
	uint64_t rng;
	int exhaustive; /* tear @u at every boundary */
	uint64_t sample;
};

static void describe(char *buf, size_t cap, const struct wl *w, size_t k,
		     const struct cev *u, const char *variant, uint64_t p)
{
	const struct cev *last = k ? &w->cev[k - 1] : NULL;
	int n;

	n = snprintf(buf, cap, "crash after %zu of %zu events (last: %s)", k,
		     w->ncev, !last ? "none" : last->kind == CW ? "a write"
				  : last->kind == CS ? "a sync"
						     : "a durable mark");
	if (!u || n < 0 || (size_t)n >= cap)
		return;
	snprintf(buf + n, cap - (size_t)n, ", unsynced %s%s: op %llu, epoch "
		 "%lld, %llu bytes at offset %llu of slot-%d, %llu of them on "
		 "disk", u->grow ? "growth" : u->torn ? "torn write" : "write",
		 variant, (unsigned long long)(u->num & ~(1ull << 63)),
		 (long long)u->epoch, (unsigned long long)u->len,
		 (unsigned long long)u->off, u->file, (unsigned long long)p);
}

/* Every state of crash point @k: durable bound @d, unsynced write @u. */
static void crash_point(struct walk *wk, size_t k, int64_t d,
			int64_t partial, const struct cev *u)
{
	struct wl *w = wk->w;
	struct counts *ct = wk->ct;
	char what[400];
	uint64_t pts[1024];
	size_t np;
	int64_t ue = u && u->epoch > d ? u->epoch : -1;
	int64_t r;

	ct->prefixes++;
	/* a synced short write, if any, may happen to complete its image */
	partial = partial > d ? partial : -1;
	if (!u) {
		describe(what, sizeof(what), w, k, NULL, "", 0);
		check_state(w, wk->cur, d, d, partial, what);
		ct->states++;
		return;
	}
	/* the stream fails on a short write: nothing is written after it */
	assert_true(partial < 0);
	/* dropped: only what was synced */
	describe(what, sizeof(what), w, k, u, " (dropped)", 0);
	check_state(w, wk->cur, d, d, -1, what);
	ct->states++;
	ct->dropped++;
	ct->grow += u->grow;
	/* kept whole: a whole image must win (the newest valid slot) */
	file_copy(&wk->tmp[0], &wk->cur[0]);
	file_copy(&wk->tmp[1], &wk->cur[1]);
	file_put(&wk->tmp[u->file], u->off, u->data, u->len);
	describe(what, sizeof(what), w, k, u, " (kept whole)", u->len);
	r = check_state(w, wk->tmp, d, u->full && ue >= 0 ? ue : d,
			u->full || ue < 0 ? -1 : ue, what);
	ct->states++;
	ct->whole++;
	ct->grow += u->grow;
	ct->newer += r > d;
	/* torn at sector boundaries */
	np = torn_points(u, wk->exhaustive, wk->sample, &wk->rng, pts,
			 sizeof(pts) / sizeof(pts[0]));
	for (size_t i = 0; i < np; i++) {
		file_copy(&wk->tmp[u->file], &wk->cur[u->file]);
		file_put(&wk->tmp[u->file], u->off, u->data, pts[i]);
		describe(what, sizeof(what), w, k, u, " (torn)", pts[i]);
		r = check_state(w, wk->tmp, d, d, ue, what);
		ct->states++;
		ct->torn++;
		ct->grow += u->grow;
		ct->newer += r > d;
		ct->fell_back += r == d && !u->grow;
	}
	/* scattered sectors: a growth's zeros past the end cannot scatter
	 * (the file would have holes), so images only */
	if (u->grow || u->len < 2 * SECTOR)
		return;
	for (uint64_t j = 0; j < 1 + wk->sample / 8; j++) {
		uint64_t kept = 0;

		file_copy(&wk->tmp[u->file], &wk->cur[u->file]);
		for (uint64_t o = 0; o < u->len; o += SECTOR) {
			uint64_t n = u->len - o < SECTOR ? u->len - o : SECTOR;
			if (tu_rand(&wk->rng) & 1) {
				file_put(&wk->tmp[u->file], u->off + o,
					 u->data + o, n);
				kept += n;
			}
		}
		describe(what, sizeof(what), w, k, u, " (scattered)", kept);
		r = check_state(w, wk->tmp, d, d, ue, what);
		ct->states++;
		ct->scattered++;
		ct->newer += r > d;
		ct->fell_back += r == d;
	}
}

/* Walk every prefix of the log. */
static void check_all(struct wl *w, struct counts *ct, uint64_t sample)
{
	struct walk wk;
	struct file all[2]; /* every write applied: what the files hold */
	const struct cev *u = NULL;
	int64_t d = 0, dmark = 0, issued = 0, partial = -1;
	int grew = 0, first = 1;

	memset(&wk, 0, sizeof(wk));
	memset(all, 0, sizeof(all));
	wk.w = w;
	wk.ct = ct;
	wk.rng = seed ^ 0x746f726eULL;
	wk.sample = sample;
	for (int i = 0; i < 2; i++) {
		file_copy(&wk.cur[i], &w->init[i]);
		file_copy(&all[i], &w->init[i]);
	}
	for (size_t k = 0;; k++) {
		/* the API never says durable before the write and its
		 * datasync are done */
		if (dmark > d)
			fail_msg("%s: after %zu events epoch %lld was reported "
				 "durable, but the newest synced image is epoch "
				 "%lld", w->cfg.label, k, (long long)dmark,
				 (long long)d);
		/* tear every boundary of the first image write, of the first
		 * one after each growth, and of the last */
		wk.exhaustive = u && !u->grow && (first || grew ||
						  k == w->ncev);
		crash_point(&wk, k, d, partial, u);
		if (k == w->ncev)
			break;
		const struct cev *c = &w->cev[k];
		switch (c->kind) {
		case CW:
			if (u)
				fail_msg("%s: event %zu: write of op %llu while "
					 "op %llu is not synced: the checker "
					 "models one write in flight",
					 w->cfg.label, k,
					 (unsigned long long)c->num,
					 (unsigned long long)u->num);
			u = c;
			file_put(&all[c->file], c->off, c->data, c->len);
			if (c->epoch > issued)
				issued = c->epoch;
			break;
		case CS:
			if (!u || u->num != c->num)
				fail_msg("%s: event %zu: sync of op %llu that is "
					 "not the write in flight", w->cfg.label,
					 k, (unsigned long long)c->num);
			if (!c->ok)
				break; /* fate unknown: stays unsynced */
			file_put(&wk.cur[u->file], u->off, u->data, u->len);
			if (u->full && u->epoch > d)
				d = u->epoch;
			else if (!u->full && u->epoch > partial)
				partial = u->epoch;
			if (!u->grow)
				first = grew = 0;
			grew |= u->grow;
			u = NULL;
			break;
		case CD:
			if (c->epoch > dmark)
				dmark = c->epoch;
			break;
		}
	}
	assert_true(issued <= w->committed);
	/* nothing reached the files that the recorder did not log */
	for (int i = 0; i < 2; i++)
		if (all[i].len != w->final[i].len ||
		    memcmp(all[i].b, w->final[i].b, all[i].len) != 0)
			fail_msg("%s: slot-%d on disk (%llu bytes) differs from "
				 "the replay of the whole log (%llu bytes): the "
				 "recorder missed a write", w->cfg.label, i,
				 (unsigned long long)w->final[i].len,
				 (unsigned long long)all[i].len);
	if (!w->cfg.expect_fail && d != w->committed)
		fail_msg("%s: the log ends at durable epoch %lld, %lld were "
			 "committed and waited for", w->cfg.label, (long long)d,
			 (long long)w->committed);
	for (int i = 0; i < 2; i++) {
		free_file(&wk.cur[i]);
		free_file(&wk.tmp[i]);
		free_file(&all[i]);
	}
}

static void free_wl(struct wl *w)
{
	for (int i = 0; i < 2; i++) {
		free_file(&w->init[i]);
		free_file(&w->final[i]);
	}
	free(w->cev);
	log_free(&w->log);
}

static void run_and_check(const struct wl_cfg *cfg, struct counts *total)
{
	struct wl *w = calloc(1, sizeof(*w)); /* leaked on failure: see wl */
	struct counts ct;
	uint64_t t0;

	assert_non_null(w);
	memset(&ct, 0, sizeof(ct));
	w->cfg = *cfg;
	run_workload(w);
	build_cev(w);
	if (cfg->want_grows && (int)w->grows < cfg->want_grows)
		fail_msg("%s: %u growths in %lld epochs, wanted %d", cfg->label,
			 w->grows, (long long)w->committed, cfg->want_grows);
	t0 = tu_now_ns();
	check_all(w, &ct, tu_scaled(24));
	printf("%s (%s): %lld epochs, %u writes, %u growths, %u syncs, %u "
	       "durable marks, workload %.2f s\n"
	       "  %llu crash points, %llu crash states checked in %.2f s: "
	       "%llu dropped, %llu whole, %llu torn, %llu scattered (%llu on "
	       "growths); %llu recovered the unsynced epoch, %llu torn or "
	       "scattered fell back to the older slot\n"
	       "  faults: eio_sync %llu, short %llu, torn %llu (%llu bytes), "
	       "cut ops %llu\n",
	       cfg->label, w->backend, (long long)w->committed, w->writes,
	       w->grows, w->syncs, w->marks, w->secs,
	       (unsigned long long)ct.prefixes, (unsigned long long)ct.states,
	       (double)(tu_now_ns() - t0) / 1e9,
	       (unsigned long long)ct.dropped, (unsigned long long)ct.whole,
	       (unsigned long long)ct.torn, (unsigned long long)ct.scattered,
	       (unsigned long long)ct.grow, (unsigned long long)ct.newer,
	       (unsigned long long)ct.fell_back,
	       (unsigned long long)w->fst.eio_sync,
	       (unsigned long long)w->fst.short_writes,
	       (unsigned long long)w->fst.torn,
	       (unsigned long long)w->fst.torn_bytes,
	       (unsigned long long)w->fst.cut_ops);
	fflush(stdout);
	total->prefixes += ct.prefixes;
	total->states += ct.states;
	if (cfg->expect_fail && !w->failed)
		fail_msg("%s: the planned fault never failed the stream "
			 "(%lld epochs)", cfg->label, (long long)w->committed);
	free_wl(w);
	free(w);
}

/* ---- tests ---------------------------------------------------------------- */

static struct counts total;

static void test_clean_run(void **state)
{
	(void)state;
	/* both slots grow past 64 KiB at least once */
	struct wl_cfg cfg = { .label = "clean", .backend = CKPT_BACKEND_AUTO,
			      .min_epochs = 300, .want_grows = 2 };
	run_and_check(&cfg, &total);
}

static void test_fault_runs(void **state)
{
	(void)state;
	uint64_t rng = seed ^ 0x6661756c74ULL;
	/* the faults hit an op after a dozen writes; the fallback backend,
	 * so both backends are recorded across the test */
	struct wl_cfg cfgs[3] = {
		{ .label = "eio-sync", .backend = CKPT_BACKEND_FALLBACK,
		  .min_epochs = 1, .max_epochs = 200, .expect_fail = 1,
		  .eio_sync_at = 8 + tu_rand(&rng) % 16 },
		{ .label = "short-write", .backend = CKPT_BACKEND_FALLBACK,
		  .min_epochs = 1, .max_epochs = 200, .expect_fail = 1,
		  .short_write_at = 8 + tu_rand(&rng) % 16 },
		{ .label = "torn-powercut", .backend = CKPT_BACKEND_AUTO,
		  .min_epochs = 1, .max_epochs = 200, .expect_fail = 1,
		  .torn = 1,
		  .powercut_at_op = 8 + tu_rand(&rng) % 16 },
	};

	for (int i = 0; i < 3; i++)
		run_and_check(&cfgs[i], &total);
}

/* The recorder on its own: what each kind of op records, in order. */
static void recorder_on(int kind)
{
	struct ckpt_fault_plan plan;
	struct ckpt__io_op op[3], *done[3];
	struct rlog l;
	ckpt__io_t *io = NULL;
	unsigned char data[3][2048];
	char path[PATH_MAX];
	struct stat st;
	char *dir = tu_mkdtemp("crashrec");
	int fd, n = 0, ret;

	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	memset(&l, 0, sizeof(l));
	pthread_mutex_init(&l.mu, NULL);
	memset(&plan, 0, sizeof(plan));
	plan.eio_sync_at = 2; /* op 2: written, then EIO on datasync */
	plan.short_write_at = 3; /* op 3: 1024 of 2048 bytes */
	plan.record = recorder;
	plan.record_arg = &l;
	ret = ckpt__io_open(kind, &plan, 4, &io, NULL);
	if (ret < 0) {
		printf("recorder on backend %d: not available (%s)\n", kind,
		       ckpt_strerror(ret));
		close(fd);
		log_free(&l);
		tu_rmdir(dir);
		return;
	}
	assert_int_equal(ckpt__io_grow(io, fd, 0, 8192), 0);
	for (int i = 0; i < 3; i++) {
		memset(data[i], 'a' + i, sizeof(data[i]));
		memset(&op[i], 0, sizeof(op[i]));
		op[i].fd = fd;
		op[i].buf = data[i];
		op[i].len = sizeof(data[i]);
		op[i].off = (uint64_t)i * 2048;
		assert_int_equal(ckpt__io_submit(io, &op[i]), 0);
	}
	while (n < 3) {
		ret = ckpt__io_reap(io, done + n, 3 - n, 1000000000);
		assert_true(ret >= 0);
		n += ret;
	}
	ckpt__io_close(io);
	close(fd);

	/* GROW, then per op WRITE ... SYNC in op order (zero latency:
	 * one batch) */
	assert_int_equal(l.n, 7);
	assert_int_equal(l.ev[0].kind, EV_GROW);
	assert_int_equal(l.ev[0].off, 0);
	assert_int_equal(l.ev[0].len, 8192);
	assert_int_equal(l.ev[0].res, 0);
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(l.ev[i].ino, (uint64_t)st.st_ino);
		assert_int_equal(l.ev[i].dev, (uint64_t)st.st_dev);
	}
	for (uint64_t num = 1; num <= 3; num++) {
		int w = -1, s = -1;
		for (int i = 1; i < 7; i++) {
			if (l.ev[i].num != num)
				continue;
			if (l.ev[i].kind == EV_WRITE)
				w = i;
			else if (l.ev[i].kind == EV_SYNC)
				s = i;
		}
		assert_true(w > 0 && s > w);
		assert_int_equal(l.ev[w].off, (num - 1) * 2048);
		assert_int_equal(l.ev[w].len, num == 3 ? 1024 : 2048);
		assert_memory_equal(l.ev[w].data, data[num - 1], l.ev[w].len);
		assert_int_equal(l.ev[s].res, num == 2 ? -EIO : 0);
	}
	log_free(&l);
	tu_rmdir(dir);
}

static void test_recorder(void **state)
{
	(void)state;
	recorder_on(CKPT_BACKEND_FALLBACK);
	recorder_on(CKPT_BACKEND_URING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recorder),
		cmocka_unit_test(test_clean_run),
		cmocka_unit_test(test_fault_runs),
	};
	or_oracle_t o;
	char *b;
	int ret;

	seed = tu_seed("test_crash_states");
	/* The crash states need no durability, only files: on tmpfs their
	 * thousands of create-open-remove cycles run ~3x faster than on a
	 * journalled disk.  (Region names are "shmckpt.<uid>.<hash>.":
	 * this directory's name cannot be taken for one.) */
	b = strdup("/dev/shm/shmckpt-crashstates-XXXXXX");
	if (!b || !mkdtemp(b)) {
		free(b);
		b = tu_mkdtemp("crashstates");
	}
	/* thousands of recoveries fall back from a torn slot, each saying
	 * so: keep the log for real trouble (SHMCKPT_LOG set wins) */
	setenv("SHMCKPT_LOG", "error", 0);
	base = realpath(b, NULL); /* regions are named by absolute paths */
	if (!base)
		abort();
	free(b);
	noracles = MAX_EPOCHS + 1;
	oracles = malloc((size_t)noracles * sizeof(*oracles));
	if (!oracles)
		abort();
	or_reset(&o);
	for (int64_t e = 0; e < noracles; e++) {
		or_goto(&o, seed, e);
		oracles[e] = o;
	}
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	printf("crash states checked: %llu at %llu crash points\n",
	       (unsigned long long)total.states,
	       (unsigned long long)total.prefixes);
	if (ret == 0)
		tu_rmdir(base);
	else
		printf("the failing crash states are kept under %s\n", base);
	free(oracles);
	return ret;
}
