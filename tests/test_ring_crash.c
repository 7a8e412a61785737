/*
 * test_ring_crash.c - writers SIGKILLed at random instants; half-written
 * and damaged records made by hand.
 *
 * test_kill_runs: a reader process reads (and verifies, tests/deltagen.h)
 * while writer processes are killed one after another, each after a random
 * delay of 10 us .. 10 ms.  After each kill the reader drains: it must end
 * exactly at the epoch the region says is committed, which is the epoch of
 * the last ckpt_commit that returned or the one after it (killed between
 * the publication and the return), having seen only whole, verified epochs.
 * Then a new writer opens the stream (the dead one's lock is gone) and must
 * continue at committed + 1.
 *
 * The other tests poke the ring by hand: a record left BUSY past
 * commit_pos (torn, discarded at the next open), whole unsealed records
 * (uncommitted, discarded), a BUSY record below commit_pos (damage), every
 * byte of an epoch flipped in turn, and bad lengths: the reader must return
 * CKPT_ECORRUPT with the right sentence and never read out of bounds (the
 * ASan build runs the same tests).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "deltagen.h"
#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "crash"
#define RING (64u * 1024u) /* the smallest: wraps every few hundred epochs */

static uint64_t seed;

/* Shared between the test, its reader process and its writer processes. */
struct ctl {
	int64_t last_returned; /* writer: newest epoch whose commit returned */
	int64_t writer_start; /* writer: recovered epoch at open */
	uint64_t writer_run; /* writer: run number, stored after the open */
	uint64_t drain_req; /* test: run whose writer is dead; drain */
	uint64_t drain_ack; /* reader: drained for that run */
	int64_t reader_last; /* reader: last epoch read at the drain */
	uint64_t reader_epochs; /* reader: epochs verified */
	int stop; /* test: reader may exit after the drain */
	char why[256]; /* reader: what failed */
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static void writer_main(struct ctl *c, const char *dir, uint64_t run,
			int64_t limit)
{
	dg_epoch_t *g = malloc(sizeof(*g));
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int ret;

	dg_opts(&o, RING);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0) {
		fprintf(stderr, "writer %llu: open: %s: %s\n",
			(unsigned long long)run, ckpt_strerror(ret),
			ckpt_last_error());
		_exit(3);
	}
	/* where it resumes: the region's committed epoch (we hold the lock) */
	size_t len;
	struct ckpt_region *h = rm_map(dir, NAME, 0, &len);
	int64_t e0 = (int64_t)LOAD(&h->prod.committed_epoch);
	STORE(&c->writer_start, e0);
	STORE(&c->writer_run, run);
	for (int64_t e = e0 + 1; limit < 0 || e <= e0 + limit; e++) {
		int64_t got;
		dg_gen(seed, e, g);
		ret = dg_stage(s, g);
		if (ret < 0) {
			fprintf(stderr, "writer: stage %lld: %s\n",
				(long long)e, ckpt_last_error());
			_exit(4);
		}
		while ((got = ckpt_commit(s)) == -EAGAIN && g->n == 0)
			;
		if (got != e) {
			fprintf(stderr, "writer: commit %lld returned %lld\n",
				(long long)e, (long long)got);
			_exit(5);
		}
		STORE(&c->last_returned, e);
	}
	_exit(ckpt_close(s) < 0 ? 6 : 0);
}

/* Read one epoch and verify it; 1, 0 (none) or -1 (failed, c->why set). */
static int read_one(struct ctl *c, ckpt_reader_t *r, dg_epoch_t *g,
		    int64_t *last, uint64_t *end)
{
	ckpt_epoch_t ep;
	int ret = ckpt_reader_next(r, &ep);
	if (ret < 0) {
		snprintf(c->why, sizeof(c->why), "after epoch %lld: %s: %s",
			 (long long)*last, ckpt_strerror(ret),
			 ckpt_last_error());
		return -1;
	}
	if (ret == 0)
		return 0;
	if (ep.epoch != *last + 1) {
		snprintf(c->why, sizeof(c->why), "epoch %lld after %lld",
			 (long long)ep.epoch, (long long)*last);
		return -1;
	}
	dg_gen(seed, ep.epoch, g);
	const char *why = dg_check(&ep, g);
	if (why) {
		snprintf(c->why, sizeof(c->why), "%s", why);
		return -1;
	}
	*last = ep.epoch;
	*end = ep.end_pos;
	STORE(&c->reader_epochs, LOAD(&c->reader_epochs) + 1);
	return 1;
}

static void reader_main(struct ctl *c, const char *dir)
{
	dg_epoch_t *g = malloc(sizeof(*g));
	ckpt_reader_t *r;
	int64_t last = 0;
	uint64_t end = 0, released = 0;
	int ret, batch = 0;

	ret = ckpt_reader_open(dir, NAME, 0, &r);
	if (ret < 0) {
		snprintf(c->why, sizeof(c->why), "reader open: %s",
			 ckpt_last_error());
		_exit(1);
	}
	for (;;) {
		ret = read_one(c, r, g, &last, &end);
		if (ret < 0)
			_exit(1);
		if (ret > 0 && ++batch < 8)
			continue;
		batch = 0;
		if (end != released) {
			ckpt_reader_durable(r, last, end);
			released = end;
		}
		if (ret > 0)
			continue;
		uint64_t req = LOAD(&c->drain_req);
		if (req == LOAD(&c->drain_ack)) {
			sched_yield();
			continue;
		}
		/* the writer is dead: what is committed now is final */
		while ((ret = read_one(c, r, g, &last, &end)) > 0)
			;
		if (ret < 0)
			_exit(1);
		if (end != released) {
			ckpt_reader_durable(r, last, end);
			released = end;
		}
		STORE(&c->reader_last, last);
		STORE(&c->drain_ack, req);
		if (LOAD(&c->stop))
			break;
	}
	ckpt_reader_close(r);
	_exit(0);
}

static void drain(struct ctl *c, pid_t rpid, uint64_t run)
{
	uint64_t t0 = tu_now_ns();
	int st;

	STORE(&c->drain_req, run);
	while (LOAD(&c->drain_ack) != run) {
		if (waitpid(rpid, &st, WNOHANG) == rpid)
			fail_msg("reader died (status %d): %s", st, c->why);
		if (tu_now_ns() - t0 > 60ull * 1000000000ull)
			fail_msg("reader did not drain in 60 s");
		usleep(50);
	}
}

/* What the region has committed: the epoch of the seal that ends at
 * commit_pos (docs/FORMAT.md: a writer killed between its stores of
 * committed_epoch and commit_pos leaves the word one ahead of the ring). */
static int64_t committed_of(const struct ckpt_region *h)
{
	const uint8_t *ring = (const uint8_t *)h + CKPT_REGION_HDR_SIZE;
	uint64_t commit = LOAD(&h->prod.commit_pos);
	struct ckpt_rec_seal sl;

	if (commit < sizeof(sl))
		return (int64_t)LOAD(&h->prod.committed_epoch);
	memcpy(&sl, ring + ((commit - sizeof(sl)) & (RING - 1)), sizeof(sl));
	if (sl.h.type != CKPT_R_SEAL || sl.h.len != sizeof(sl))
		return (int64_t)LOAD(&h->prod.committed_epoch);
	return (int64_t)sl.epoch;
}

static void test_kill_runs(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *dir = tu_mkdtemp("ring-crash");
	uint64_t runs = tu_scaled(300), rs = seed ^ 0x6b696c6cULL;
	uint64_t opened = 0, progressed = 0;
	int64_t ce_prev = 0;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	size_t len;
	pid_t rpid;
	int st;

	assert_true(c != MAP_FAILED);
	memset(c, 0, sizeof(*c));
	if (runs < 100)
		runs = 100;
	dg_opts(&o, RING);
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	assert_int_equal(ckpt_close(s), 0);
	struct ckpt_region *h = rm_map(dir, NAME, 0, &len);

	fflush(NULL);
	rpid = fork();
	assert_true(rpid >= 0);
	if (rpid == 0)
		reader_main(c, dir);

	for (uint64_t run = 1; run <= runs; run++) {
		/* about log-uniform delays: 10 us .. 10 ms after the fork
		 * (odd runs: kills during the open too), or 1 us .. 2 ms
		 * after the writer opened (even runs: kills at work) */
		int after_open = run % 2 == 0;
		uint64_t base = after_open ? 1000ull << (tu_rand(&rs) % 11)
					   : 10000ull << (tu_rand(&rs) % 10);
		uint64_t ns = base + tu_rand(&rs) % base;
		struct timespec ts = { 0, (long)ns };
		pid_t w = fork();
		assert_true(w >= 0);
		if (w == 0)
			writer_main(c, dir, run, -1);
		for (uint64_t t0 = tu_now_ns();
		     after_open && LOAD(&c->writer_run) != run &&
		     tu_now_ns() - t0 < 10ull * 1000000000ull;)
			sched_yield();
		nanosleep(&ts, NULL);
		kill(w, SIGKILL);
		st = tu_wait(w);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			fail_msg("run %llu: writer ended with status %d, not "
				 "by our SIGKILL",
				 (unsigned long long)run, st);

		int64_t ce = committed_of(h);
		int64_t lr = LOAD(&c->last_returned);
		if (LOAD(&c->writer_run) == run) {
			/* it opened: it resumed right after the last commit */
			assert_int_equal(LOAD(&c->writer_start), ce_prev);
			opened++;
		}
		/* committed is what returned, or one more published just
		 * before the kill; never less, never a partial one */
		if (ce < lr || ce > lr + 1 || ce < ce_prev)
			fail_msg("run %llu: committed %lld, last returned %lld, "
				 "before %lld",
				 (unsigned long long)run, (long long)ce,
				 (long long)lr, (long long)ce_prev);
		drain(c, rpid, run);
		assert_int_equal(LOAD(&c->reader_last), ce);
		progressed += ce > ce_prev;
		ce_prev = ce;
	}

	/* a last writer finishes normally and the reader follows it */
	pid_t w = fork();
	assert_true(w >= 0);
	if (w == 0)
		writer_main(c, dir, runs + 1, 1000);
	st = tu_wait(w);
	assert_int_equal(st, 0);
	assert_int_equal(LOAD(&c->writer_start), ce_prev);
	assert_int_equal((int64_t)LOAD(&h->prod.committed_epoch), ce_prev + 1000);
	STORE(&c->stop, 1);
	drain(c, rpid, runs + 1);
	assert_int_equal(LOAD(&c->reader_last), ce_prev + 1000);
	st = tu_wait(rpid);
	if (st != 0)
		fail_msg("reader: %s", c->why);

	printf("%llu kills: %llu writers opened, %llu committed something; "
	       "%lld epochs verified, %llu ring laps; discarded at open: "
	       "%llu torn, %llu uncommitted records\n",
	       (unsigned long long)runs, (unsigned long long)opened,
	       (unsigned long long)progressed,
	       (long long)LOAD(&c->reader_epochs),
	       (unsigned long long)(h->prod.bytes / RING),
	       (unsigned long long)h->prod.torn_discarded,
	       (unsigned long long)h->prod.uncommitted_discarded);
	assert_int_equal((int64_t)LOAD(&c->reader_epochs), ce_prev + 1000);
	/* the delays must hit writers at work, not only before they open */
	assert_true(opened >= runs / 2);
	assert_true(progressed >= runs / 4);
	rm_unmap(h, len);
	munmap(c, sizeof(*c));
	tu_rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* hand-made records                                                   */
/* ------------------------------------------------------------------ */

static ckpt_stream_t *open_writer(const char *dir)
{
	ckpt_stream_t *s = NULL;
	ckpt_opts_t o;
	dg_opts(&o, RING);
	o.full_policy = CKPT_FULL_EAGAIN;
	int ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		fail_msg("open: %s: %s", ckpt_strerror(ret), ckpt_last_error());
	return s;
}

static void put_str(ckpt_stream_t *s, const char *k, const char *v)
{
	assert_int_equal(ckpt_put(s, k, strlen(k), v, strlen(v)), 0);
}

/* Next epoch must be @e with one put of key @k (or no delta if !k). */
static void expect_epoch(ckpt_reader_t *r, int64_t e, const char *k)
{
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	int ret = ckpt_reader_next(r, &ep);
	if (ret != 1)
		fail_msg("epoch %lld: reader_next %d: %s", (long long)e, ret,
			 ckpt_last_error());
	assert_int_equal(ep.epoch, e);
	assert_int_equal(ep.ndeltas, k ? 1 : 0);
	if (k) {
		assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
		assert_int_equal(d.type, CKPT_D_PUT);
		assert_int_equal(d.klen, strlen(k));
		assert_memory_equal(d.key, k, d.klen);
	}
	assert_int_equal(ckpt_epoch_next(&ep, &d), 0);
}

static void test_torn_past_commit(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-torn");
	ckpt_stream_t *s = open_writer(dir);
	ckpt_reader_t *r;
	size_t len;

	for (int64_t e = 1; e <= 3; e++) {
		put_str(s, "k", "committed");
		assert_int_equal(ckpt_commit(s), e);
	}
	/* an epoch being staged when its writer died: one whole record,
	 * then one it was still writing (BUSY) */
	put_str(s, "A", "whole but never sealed");
	put_str(s, "B", "half-written when the writer died");
	struct ckpt_region *h = rm_map(dir, NAME, 1, &len);
	uint64_t cp = h->prod.commit_pos;
	struct ckpt_rec_hdr *a = rm_rec(h, cp);
	assert_int_equal(a->type, CKPT_R_PUT);
	assert_int_equal(a->len & CKPT_REC_BUSY, 0);
	struct ckpt_rec_hdr *b = rm_rec(h, cp + a->len);
	assert_int_equal(b->type, CKPT_R_PUT);
	b->len |= CKPT_REC_BUSY;
	assert_int_equal(ckpt_close(s), 0); /* leaves the ring as it is */

	s = open_writer(dir);
	assert_int_equal(h->prod.torn_discarded, 1);
	assert_int_equal(h->prod.uncommitted_discarded, 1);
	assert_int_equal(h->prod.commit_pos, cp);
	assert_int_equal(ckpt_reader_open(dir, NAME, 0, &r), 0);
	for (int64_t e = 1; e <= 3; e++)
		expect_epoch(r, e, "k");
	assert_int_equal(ckpt_reader_next(r, &(ckpt_epoch_t){ 0 }), 0);
	put_str(s, "C", "after the restart");
	assert_int_equal(ckpt_commit(s), 4);
	expect_epoch(r, 4, "C");

	/* whole records only (killed between two stages) */
	put_str(s, "D", "d");
	assert_int_equal(ckpt_offset(s, "topic", 3, 77), 0);
	assert_int_equal(ckpt_meta(s, "m", 1), 0);
	assert_int_equal(ckpt_close(s), 0);
	s = open_writer(dir);
	assert_int_equal(h->prod.torn_discarded, 1);
	assert_int_equal(h->prod.uncommitted_discarded, 1 + 3);
	assert_int_equal(ckpt_commit(s), 5);
	expect_epoch(r, 5, NULL);

	/* the BUSY record right at commit_pos */
	put_str(s, "F", "f");
	rm_rec(h, h->prod.commit_pos)->len |= CKPT_REC_BUSY;
	assert_int_equal(ckpt_close(s), 0);
	s = open_writer(dir);
	assert_int_equal(h->prod.torn_discarded, 2);
	assert_int_equal(h->prod.uncommitted_discarded, 4);
	put_str(s, "G", "g");
	assert_int_equal(ckpt_commit(s), 6);
	expect_epoch(r, 6, "G");
	assert_int_equal(ckpt_reader_next(r, &(ckpt_epoch_t){ 0 }), 0);

	ckpt_reader_close(r);
	ckpt_close(s);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

static void expect_corrupt(ckpt_reader_t *r, const char *what)
{
	ckpt_epoch_t ep;
	int ret = ckpt_reader_next(r, &ep);
	if (ret != CKPT_ECORRUPT)
		fail_msg("expected CKPT_ECORRUPT (%s), got %d", what, ret);
	if (what && !strstr(ckpt_last_error(), what))
		fail_msg("message '%s' does not say '%s'", ckpt_last_error(),
			 what);
}

static void test_busy_below_commit(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-busy");
	ckpt_stream_t *s = open_writer(dir);
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	size_t len;

	put_str(s, "k1", "v1");
	assert_int_equal(ckpt_commit(s), 1);
	put_str(s, "k2", "v2");
	assert_int_equal(ckpt_commit(s), 2);
	assert_int_equal(ckpt_reader_open(dir, NAME, 0, &r), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	uint64_t end1 = ep.end_pos;

	struct ckpt_region *h = rm_map(dir, NAME, 1, &len);
	/* damage: a BUSY record inside a committed epoch */
	struct ckpt_rec_hdr *rec = rm_rec(h, end1);
	rec->len |= CKPT_REC_BUSY;
	expect_corrupt(r, "half-written");
	rec->len &= ~CKPT_REC_BUSY;
	/* the same for the seal itself */
	struct ckpt_rec_hdr *seal =
		rm_rec(h, h->prod.commit_pos - sizeof(struct ckpt_rec_seal));
	assert_int_equal(seal->type, CKPT_R_SEAL);
	seal->len |= CKPT_REC_BUSY;
	expect_corrupt(r, "half-written");
	seal->len &= ~CKPT_REC_BUSY;
	/* repaired, the epoch reads whole: the failed reads moved nothing */
	expect_epoch(r, 2, "k2");

	ckpt_reader_close(r);
	ckpt_close(s);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

/* Commit filler epochs, read and released, until the next epoch starts
 * @left bytes before the ring's end. */
static void position_at(ckpt_stream_t *s, ckpt_reader_t *r,
			struct ckpt_region *h, uint64_t left, int64_t *e)
{
	static char v[4096];
	ckpt_epoch_t ep;
	for (;;) {
		uint64_t rem = RING - (h->prod.commit_pos & (RING - 1));
		size_t vlen;
		if (rem == left)
			return;
		/* a put record is 16 + 1 + vlen rounded to 8, its seal 48 */
		if (rem >= left + 48 + 24 && rem - left - 48 <= 4000)
			vlen = rem - left - 48 - 17;
		else
			vlen = 3000;
		assert_int_equal(ckpt_put(s, "f", 1, v, vlen), 0);
		assert_int_equal(ckpt_commit(s), ++*e);
		assert_int_equal(ckpt_reader_next(r, &ep), 1);
		assert_int_equal(ckpt_reader_durable(r, ep.epoch, ep.end_pos), 0);
	}
}

static void test_flip_every_byte(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-flip");
	ckpt_stream_t *s = open_writer(dir);
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	int64_t e = 0;
	size_t len;
	uint64_t rs = seed, flips = 0, hash_msgs = 0;

	assert_int_equal(ckpt_reader_open(dir, NAME, 0, &r), 0);
	struct ckpt_region *h = rm_map(dir, NAME, 1, &len);
	/* one epoch of every record type that wraps: offset (32 bytes) fits
	 * the last 96, the put does not: PAD, then the rest from 0 */
	position_at(s, r, h, 96, &e);
	uint64_t start = h->prod.commit_pos;
	assert_int_equal(ckpt_offset(s, "topic", 7, 123456789), 0);
	put_str(s, "key-0001", "a value of a few bytes, then some more bytes "
			       "to make it longer than one line, 100 bytes");
	assert_int_equal(ckpt_del(s, "key-0002", 8), 0);
	assert_int_equal(ckpt_meta(s, "metadata blob, forty bytes long........", 40), 0);
	assert_int_equal(ckpt_commit(s), ++e);
	uint64_t end = h->prod.commit_pos;
	uint64_t sealpos = end - sizeof(struct ckpt_rec_seal);
	assert_true((end & (RING - 1)) < start - (start & ~(uint64_t)(RING - 1)));
	assert_int_equal(rm_rec(h, start + 32)->type, CKPT_R_PAD);

	for (uint64_t p = start; p < end; p++) {
		uint64_t in_seal = p - sealpos;
		/* the seal's flags, aux and reserved bytes carry nothing and
		 * are neither hashed nor checked */
		if (p >= sealpos && ((in_seal >= 5 && in_seal < 8) ||
				     (in_seal >= 12 && in_seal < 16)))
			continue;
		uint8_t *b = rm_ring(h) + (p & (RING - 1));
		uint8_t x[3] = { 0x01, 0x80, (uint8_t)(tu_rand(&rs) | 1) };
		for (int i = 0; i < 3; i++) {
			uint8_t old = *b;
			*b ^= x[i];
			int ret = ckpt_reader_next(r, &ep);
			*b = old;
			if (ret != CKPT_ECORRUPT)
				fail_msg("byte %llu of the epoch ^ 0x%02x: "
					 "reader_next %d, not CKPT_ECORRUPT",
					 (unsigned long long)(p - start), x[i],
					 ret);
			flips++;
			hash_msgs += strstr(ckpt_last_error(),
					    "hash mismatch") != NULL;
		}
	}
	/* a byte of the put's value: only the hash can tell */
	uint8_t *v = rm_ring(h) + ((start + 96 + 16 + 8 + 3) & (RING - 1));
	*v ^= 0x20;
	expect_corrupt(r, "hash mismatch");
	*v ^= 0x20;
	printf("%llu flips over %llu bytes: all CKPT_ECORRUPT, %llu by the "
	       "hash\n",
	       (unsigned long long)flips, (unsigned long long)(end - start),
	       (unsigned long long)hash_msgs);

	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ep.epoch, e);
	assert_int_equal(ep.ndeltas, 4);
	ckpt_reader_close(r);
	ckpt_close(s);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

static void test_bad_lengths(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-badlen");
	ckpt_stream_t *s = open_writer(dir);
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	size_t len;

	put_str(s, "k1", "v1");
	assert_int_equal(ckpt_commit(s), 1);
	assert_int_equal(ckpt_offset(s, "tp", 1, 2), 0);
	put_str(s, "k2", "v2");
	assert_int_equal(ckpt_commit(s), 2);
	assert_int_equal(ckpt_reader_open(dir, NAME, 0, &r), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	struct ckpt_region *h = rm_map(dir, NAME, 1, &len);
	uint64_t p_off = ep.end_pos; /* epoch 2: offset, put, seal */
	uint64_t p_put = p_off + rm_rec(h, p_off)->len;
	uint64_t p_seal = h->prod.commit_pos - sizeof(struct ckpt_rec_seal);
	struct ckpt_rec_offset *ro = (void *)rm_rec(h, p_off);
	struct ckpt_rec_kv *rk = (void *)rm_rec(h, p_put);
	struct ckpt_rec_seal *rs = (void *)rm_rec(h, p_seal);
	struct {
		void *field;
		size_t size;
		uint64_t value;
		const char *says;
	} cases[] = {
		{ &ro->h.len, 4, 0, "out of bounds" },
		{ &ro->h.len, 4, 4, "out of bounds" },
		{ &ro->h.len, 4, 12, "out of bounds" },
		{ &ro->h.len, 4, 0x7ffffff8, "out of bounds" },
		{ &ro->h.len, 4, RING, "out of bounds" },
		{ &ro->h.len, 4, 16, NULL }, /* shorter than its fields */
		{ &ro->h.aux, 2, 0xffff, NULL },
		{ &ro->h.aux, 2, 0, NULL },
		{ &ro->h.type, 1, 99, NULL },
		{ &rk->klen, 4, 0xffffffff, NULL },
		{ &rk->vlen, 4, 0xfffffff0, NULL },
		{ &rk->klen, 4, 40, NULL },
		{ &rs->h.len, 4, 56, NULL },
		{ &rs->h.len, 4, 40, NULL },
		{ &rs->nrec, 4, 3, "does not describe" },
		{ &rs->nrec, 4, 0xffffffff, "does not describe" },
		{ &rs->start_pos, 8, 8, "does not describe" },
		{ &rs->body_len, 8, ~0ull, "does not describe" },
		{ &rs->epoch, 8, 7, "not consecutive" },
		{ &rs->epoch, 8, 0, "not consecutive" },
		{ &rs->epoch, 8, ~0ull, "not consecutive" },
		{ &h->prod.commit_pos, 8, p_seal + 4, "commit position" },
		{ &h->prod.commit_pos, 8, RING * 2, "commit position" },
		{ &h->prod.commit_pos, 8, p_put, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t old[8];
		memcpy(old, cases[i].field, cases[i].size);
		memcpy(cases[i].field, &cases[i].value, cases[i].size); /* LE */
		expect_corrupt(r, cases[i].says);
		memcpy(cases[i].field, old, cases[i].size);
	}
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ep.epoch, 2);
	assert_int_equal(ep.ndeltas, 2);
	ckpt_reader_close(r);
	assert_int_equal(ckpt_close(s), 0);

	/* positions that contradict each other: refused at open, by both */
	uint64_t old = h->flush.release_pos;
	h->flush.release_pos = h->prod.commit_pos + 8;
	assert_int_equal(ckpt_open(dir, NAME, NULL, &s), CKPT_ECORRUPT);
	assert_non_null(strstr(ckpt_last_error(), "inconsistent"));
	assert_int_equal(ckpt_reader_open(dir, NAME, CKPT_R_NOLOCK, &r),
			 CKPT_ECORRUPT);
	h->flush.release_pos = old;
	rm_unmap(h, len);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_torn_past_commit),
		cmocka_unit_test(test_busy_below_commit),
		cmocka_unit_test(test_flip_every_byte),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_kill_runs),
	};
	seed = tu_seed("test_ring_crash");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
