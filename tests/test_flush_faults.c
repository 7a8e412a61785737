/*
 * test_flush_faults.c - what a stream does when its storage fails.
 *
 * EIO on fdatasync, EIO on write and a short write each fail the stream:
 * the durable epoch stops where it was (never retry-and-trust), ckpt_status
 * says failed, -EIO and why, ckpt_wait_durable of any later epoch returns
 * CKPT_EFAILED, and a reopen without the fault recovers every committed
 * epoch (ckpt_close leaves them in the region).  ENOSPC while a slot grows
 * is not a failure: the stream is backpressured and says ENOSPC, the
 * durable epoch holds, and once space returns the flusher carries on.
 * Every backend (io_uring, fallback, AUTO with SHMCKPT_BACKEND) writes,
 * reopens and names itself in ckpt_status.
 *
 * CKPT_TEST_THREADED: waiters and the flusher thread.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "fault.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "faults-2"
#define WAIT_MS 60000 /* guards against a hang; asserts no speed */

/* ------------------------------------------------------------------------
 * Expected state per epoch.  A value is (vseed, vlen): its bytes are
 * derived, so a model is small whatever the value sizes.
 * ------------------------------------------------------------------------ */

#define NK 16
#define NT 2
#define MAXE 64
#define BIGV (100 * 1024)

struct model {
	int64_t epoch;
	uint8_t present[NK];
	uint32_t vseed[NK], vlen[NK];
	uint8_t has_off[NT];
	int64_t off[NT];
	uint32_t mseed, mlen;
};

static uint64_t seed;
static struct model models[MAXE + 1];
static int uring_ok;
static char uring_why[128];

/* A fresh, zeroed fault plan that outlives every handle (and a failed
 * case's leaked ones: flusher threads are shared per plan address, so a
 * plan is never reused). */
static struct ckpt_fault_plan *new_plan(void)
{
	static struct ckpt_fault_plan plans[32];
	static unsigned n;
	assert_true(n < 32);
	memset(&plans[n], 0, sizeof(plans[n]));
	plans[n].seed = seed + n;
	return &plans[n++];
}

static void bytes_of(uint32_t vs, uint32_t len, uint8_t *out)
{
	uint64_t st = vs;
	for (uint32_t i = 0; i < len; i++)
		out[i] = (uint8_t)(tu_rand(&st) >> 7);
}

static void key_of(int i, char k[8])
{
	snprintf(k, 8, "k%02d", i);
}

static void put_model(ckpt_stream_t *s, struct model *m, int i, uint32_t vs,
		      uint32_t len)
{
	static uint8_t v[BIGV];
	char k[8];
	key_of(i, k);
	bytes_of(vs, len, v);
	assert_int_equal(ckpt_put(s, k, strlen(k), v, len), 0);
	m->present[i] = 1;
	m->vseed[i] = vs;
	m->vlen[i] = len;
}

/* Stage a random small epoch and commit it; models[epoch] = the state.
 * Key 0 is left alone: test_enospc_grow keeps a big value there. */
static int64_t commit_random(ckpt_stream_t *s, struct model *m, uint64_t *rs)
{
	char k[8];
	int nput = 1 + (int)(tu_rand(rs) % 4);

	for (int j = 0; j < nput; j++)
		put_model(s, m, 1 + (int)(tu_rand(rs) % (NK - 1)),
			  (uint32_t)tu_rand(rs),
			  1 + (uint32_t)(tu_rand(rs) % 48));
	if (tu_rand(rs) % 3 == 0) {
		int i = 1 + (int)(tu_rand(rs) % (NK - 1));
		key_of(i, k);
		assert_int_equal(ckpt_del(s, k, strlen(k)), 0);
		m->present[i] = 0;
	}
	int t = (int)(tu_rand(rs) % NT);
	m->off[t] = (int64_t)(tu_rand(rs) >> 8);
	m->has_off[t] = 1;
	assert_int_equal(ckpt_offset(s, "in", t, m->off[t]), 0);
	if (tu_rand(rs) % 4 == 0) {
		uint8_t b[64];
		m->mseed = (uint32_t)tu_rand(rs);
		m->mlen = 1 + (uint32_t)(tu_rand(rs) % sizeof(b));
		bytes_of(m->mseed, m->mlen, b);
		assert_int_equal(ckpt_meta(s, b, m->mlen), 0);
	}
	int64_t e = ckpt_commit(s);
	if (e != m->epoch + 1)
		fail_msg("commit returned %lld, expected %lld (%s)",
			 (long long)e, (long long)m->epoch + 1,
			 e < 0 ? ckpt_strerror((int)e) : "");
	m->epoch = e;
	assert_true(e <= MAXE);
	models[e] = *m;
	return e;
}

static int kv_count(void *arg, const void *key, size_t klen,
		    const void *val, size_t vlen)
{
	(void)key, (void)klen, (void)val, (void)vlen;
	++*(int *)arg;
	return 0;
}

static int off_count(void *arg, const char *topic, int32_t p, int64_t next)
{
	(void)topic, (void)p, (void)next;
	++*(int *)arg;
	return 0;
}

/* The recovered state is exactly @m. */
static void expect_state(ckpt_stream_t *s, const struct model *m)
{
	static uint8_t v[BIGV];
	const void *val;
	size_t vlen;
	int n = 0, nk = 0, no = 0;
	char k[8];

	assert_int_equal(ckpt_recovered_epoch(s), m->epoch);
	for (int i = 0; i < NK; i++) {
		key_of(i, k);
		int ret = ckpt_get(s, k, strlen(k), &val, &vlen);
		if (!m->present[i]) {
			assert_int_equal(ret, -ENOENT);
			continue;
		}
		nk++;
		assert_int_equal(ret, 0);
		bytes_of(m->vseed[i], m->vlen[i], v);
		if (vlen != m->vlen[i] || memcmp(val, v, vlen) != 0)
			fail_msg("epoch %lld: %s differs", (long long)m->epoch,
				 k);
	}
	for (int t = 0; t < NT; t++) {
		int64_t next = -1;
		int ret = ckpt_get_offset(s, "in", t, &next);
		if (!m->has_off[t]) {
			assert_int_equal(ret, -ENOENT);
			continue;
		}
		no++;
		assert_int_equal(ret, 0);
		assert_int_equal(next, m->off[t]);
	}
	assert_int_equal(ckpt_get_meta(s, &val, &vlen), 0);
	assert_int_equal(vlen, m->mlen);
	bytes_of(m->mseed, m->mlen, v);
	if (vlen && memcmp(val, v, vlen) != 0)
		fail_msg("epoch %lld: metadata differs", (long long)m->epoch);
	assert_int_equal(ckpt_foreach_kv(s, kv_count, &n), 0);
	assert_int_equal(n, nk);
	n = 0;
	assert_int_equal(ckpt_foreach_offset(s, off_count, &n), 0);
	assert_int_equal(n, no);
}

static ckpt_opts_t opts(int backend, struct ckpt_fault_plan *plan)
{
	ckpt_opts_t o;
	ckpt_opts_init(&o);
	o.ring_size = 1u << 20;
	o.max_key = 64;
	o.max_value = 128 * 1024;
	o.max_meta = 1024;
	o.backend = backend;
	o.fault = plan;
	return o;
}

static ckpt_stream_t *open_ok(const char *dir, const ckpt_opts_t *o)
{
	ckpt_stream_t *s = NULL;
	int ret = ckpt_open(dir, NAME, o, &s);
	if (ret < 0)
		fail_msg("open: %s: %s", ckpt_strerror(ret), ckpt_last_error());
	return s;
}

static void wait_ok(ckpt_stream_t *s, int64_t e)
{
	int ret = ckpt_wait_durable(s, e, WAIT_MS);
	if (ret != 0)
		fail_msg("wait_durable(%lld): %s", (long long)e,
			 ckpt_strerror(ret));
}

static int need_backend(int backend)
{
	if (backend == CKPT_BACKEND_URING && !uring_ok) {
		printf("SKIP io_uring case: io_uring unavailable (%s)\n",
		       uring_why);
		return 0;
	}
	return 1;
}

/* "io_uring" or "fallback", or with the fault wrapper "fault+<that>" */
static void expect_backend(const ckpt_status_t *st, const char *inner,
			   int fault)
{
	char want[32];
	snprintf(want, sizeof(want), "%s%s", fault ? "fault+" : "", inner);
	if (strcmp(st->backend, want) != 0)
		fail_msg("backend '%s', expected '%s'", st->backend, want);
}

/* ------------------------------------------------------------------------
 * (a) (b) (c): a failed write or datasync fails the stream
 * ------------------------------------------------------------------------ */

enum { F_SYNC, F_WRITE, F_SHORT };

static void io_failure(int kind, int backend)
{
	struct ckpt_fault_plan *plan, *slow;
	struct ckpt_fault_stats fst;
	ckpt_status_t st;
	struct model m;
	ckpt_stream_t *s;
	char *dir;
	uint64_t rs = seed ^ (uint64_t)(kind * 7 + backend);
	int64_t durable = 0, failed = 0, last = 0, e;
	int ret;

	if (!need_backend(backend))
		skip();
	plan = new_plan();
	memset(&m, 0, sizeof(m));
	/* the third write fails: two good slots first */
	switch (kind) {
	case F_SYNC: plan->eio_sync_at = 3; break;
	case F_WRITE: plan->eio_write_at = 3; break;
	case F_SHORT: plan->short_write_at = 3; break;
	}
	dir = tu_mkdtemp("flushfault");
	ckpt_opts_t o = opts(backend, plan);
	s = open_ok(dir, &o);

	/* one epoch at a time, each waited for, until a write fails */
	for (int i = 0; i < 20 && !failed; i++) {
		e = commit_random(s, &m, &rs);
		ret = ckpt_wait_durable(s, e, WAIT_MS);
		if (ret == 0) {
			assert_true(ckpt_durable_epoch(s) >= e);
			durable = e;
		} else if (ret == CKPT_EFAILED) {
			failed = e;
		} else {
			fail_msg("wait_durable(%lld): %s", (long long)e,
				 ckpt_strerror(ret));
		}
	}
	ckpt__fault_stats(plan, &fst);
	if (!failed)
		fail_msg("no write failed in 20 epochs (%llu ops)",
			 (unsigned long long)fst.ops);
	assert_int_equal(kind == F_SYNC ? fst.eio_sync
			 : kind == F_WRITE ? fst.eio_write : fst.short_writes,
			 1);
	printf("durable %lld, the write of epoch %lld failed\n",
	       (long long)durable, (long long)failed);
	/* the epoch of the failed write never became durable */
	assert_int_equal(durable, failed - 1);
	assert_int_equal(ckpt_durable_epoch(s), durable);

	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_equal(st.health, CKPT_FAILED);
	assert_int_equal(st.error, -EIO);
	assert_true(st.why[0] != '\0');
	assert_true(st.flush_errors >= 1);
	assert_int_equal(st.durable_epoch, durable);
	assert_int_equal(st.committed_epoch, failed);
	printf("status: %s (flush_errors %llu, backend %s)\n", st.why,
	       (unsigned long long)st.flush_errors, st.backend);

	/* committing goes on (the ring has room); durability does not */
	for (int i = 0; i < 5; i++)
		last = commit_random(s, &m, &rs);
	assert_int_equal(ckpt_wait_durable(s, last, WAIT_MS), CKPT_EFAILED);
	assert_int_equal(ckpt_wait_durable(s, failed, WAIT_MS), CKPT_EFAILED);
	/* an epoch that is durable stays so */
	assert_int_equal(ckpt_wait_durable(s, durable, 0), 0);
	for (int i = 0; i < 5; i++) {
		usleep(20000); /* give a (wrong) retry the chance to happen */
		assert_int_equal(ckpt_durable_epoch(s), durable);
	}
	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_equal(st.health, CKPT_FAILED);
	assert_int_equal(st.durable_epoch, durable);
	assert_int_equal(st.committed_epoch, last);
	ckpt__fault_stats(plan, &fst);
	assert_int_equal(fst.eio_sync + fst.eio_write + fst.short_writes, 1);

	ret = ckpt_close(s);
	if (ret != -EIO && ret != CKPT_EFAILED)
		fail_msg("close of a failed stream returned %d (%s)", ret,
			 ckpt_strerror(ret));

	/* reopen on sound (if slow: 1.5 s a write) storage: the slots plus
	 * the epochs the region kept - every committed epoch, exactly */
	slow = new_plan();
	slow->lat_min_us = slow->lat_max_us = 1500000;
	o = opts(backend, slow);
	s = open_ok(dir, &o);
	printf("reopened: recovered epoch %lld, durable epoch %lld (durable "
	       "was %lld, last committed %lld)\n",
	       (long long)ckpt_recovered_epoch(s),
	       (long long)ckpt_durable_epoch(s), (long long)durable,
	       (long long)last);
	/* R2: before the new flusher's first write lands, the durable epoch
	 * is still the one the failed flusher published - not the epoch
	 * whose write or datasync failed (its bytes may be readable from
	 * the page cache, but were never made durable) */
	if (ckpt_durable_epoch(s) != durable)
		fail_msg("after reopen, durable epoch %lld; the last epoch "
			 "made durable was %lld (epoch %lld's write failed)",
			 (long long)ckpt_durable_epoch(s), (long long)durable,
			 (long long)failed);
	assert_true(ckpt_recovered_epoch(s) >= durable);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	expect_state(s, &models[last]);
	/* a new flusher on sound storage: the old failure is history */
	assert_int_equal(ckpt_status(s, &st), 0);
	if (st.health != CKPT_HEALTHY || st.error != 0)
		fail_msg("reopened on sound storage: health %d, error %d, "
			 "why '%s'", st.health, st.error, st.why);
	wait_ok(s, last);
	e = commit_random(s, &m, &rs);
	wait_ok(s, e);
	assert_int_equal(ckpt_close(s), 0);

	/* and once more, from the slots alone */
	tu_unlink_regions(dir);
	o = opts(backend, NULL);
	s = open_ok(dir, &o);
	expect_state(s, &models[e]);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

static void test_eio_sync_fallback(void **state)
{
	(void)state;
	io_failure(F_SYNC, CKPT_BACKEND_FALLBACK);
}

static void test_eio_write_fallback(void **state)
{
	(void)state;
	io_failure(F_WRITE, CKPT_BACKEND_FALLBACK);
}

static void test_short_write_fallback(void **state)
{
	(void)state;
	io_failure(F_SHORT, CKPT_BACKEND_FALLBACK);
}

static void test_eio_sync_uring(void **state)
{
	(void)state;
	io_failure(F_SYNC, CKPT_BACKEND_URING);
}

static void test_eio_write_uring(void **state)
{
	(void)state;
	io_failure(F_WRITE, CKPT_BACKEND_URING);
}

static void test_short_write_uring(void **state)
{
	(void)state;
	io_failure(F_SHORT, CKPT_BACKEND_URING);
}

/* ------------------------------------------------------------------------
 * (d) ENOSPC while a slot grows: backpressure, then recovery
 * ------------------------------------------------------------------------ */

static int says_enospc(const char *why)
{
	return strstr(why, "ENOSPC") || strstr(why, "No space") ||
	       strstr(why, "no space");
}

static void test_enospc_grow(void **state)
{
	(void)state;
	enum { REFUSED = 3 };
	struct ckpt_fault_plan *plan = new_plan();
	struct ckpt_fault_stats fst;
	ckpt_status_t st;
	struct model m;
	ckpt_stream_t *s;
	char *dir = tu_mkdtemp("enospc");
	uint64_t rs = seed ^ 0xe05bcu;
	int saw = 0, polls = 0;

	memset(&m, 0, sizeof(m));
	/* the first REFUSED slot growths fail, later ones succeed */
	plan->enospc_grow_at = 1;
	plan->enospc_grow_count = REFUSED;
	ckpt_opts_t o = opts(CKPT_BACKEND_AUTO, plan);
	s = open_ok(dir, &o);

	assert_int_equal(commit_random(s, &m, &rs), 1);
	wait_ok(s, 1); /* fits the preallocated 64 KiB */

	/* a snapshot larger than the slot: it must grow */
	put_model(s, &m, 0, (uint32_t)tu_rand(&rs), BIGV);
	assert_int_equal(ckpt_commit(s), 2);
	m.epoch = 2;
	models[2] = m;

	/* until epoch 2 is durable: every status while it is not says the
	 * durable epoch holds at 1 and the stream has not failed */
	uint64_t t0 = tu_now_ns();
	for (;;) {
		assert_int_equal(ckpt_status(s, &st), 0);
		ckpt__fault_stats(plan, &fst);
		polls++;
		if (st.durable_epoch >= 2) {
			/* durable needs a grow that succeeded */
			assert_int_equal(fst.enospc_grow, REFUSED);
			break;
		}
		assert_int_equal(st.durable_epoch, 1);
		if (st.health == CKPT_FAILED)
			fail_msg("ENOSPC on growth failed the stream: %s",
				 st.why);
		if (st.health == CKPT_BACKPRESSURED && says_enospc(st.why)) {
			if (!saw) {
				printf("backpressured: '%s' (error %d, "
				       "enospc_retries %llu)\n", st.why,
				       st.error,
				       (unsigned long long)st.enospc_retries);
				/* the hot path goes on meanwhile */
				assert_int_equal(commit_random(s, &m, &rs), 3);
			}
			saw++;
		}
		if (tu_now_ns() - t0 > (uint64_t)WAIT_MS * 1000000u)
			fail_msg("epoch 2 not durable after %d s (%llu grows, "
				 "%llu refused): %s", WAIT_MS / 1000,
				 (unsigned long long)fst.grows,
				 (unsigned long long)fst.enospc_grow, st.why);
		usleep(2000);
	}
	printf("%d of %d status calls showed ENOSPC backpressure; %llu "
	       "grows, %llu refused; enospc_retries %llu\n", saw, polls,
	       (unsigned long long)fst.grows,
	       (unsigned long long)fst.enospc_grow,
	       (unsigned long long)st.enospc_retries);
	if (!saw)
		fail_msg("no status call showed backpressure with ENOSPC");
	assert_true(st.enospc_retries >= 1);
	assert_true(fst.grows > REFUSED);

	/* flushing resumed */
	wait_ok(s, 3);
	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_equal(st.health, CKPT_HEALTHY);
	assert_int_equal(st.error, 0);
	assert_int_equal(st.durable_epoch, 3);
	assert_int_equal(ckpt_close(s), 0);

	o = opts(CKPT_BACKEND_AUTO, NULL);
	s = open_ok(dir, &o);
	expect_state(s, &models[3]);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

/* ------------------------------------------------------------------------
 * (e) backends
 * ------------------------------------------------------------------------ */

static void backend_case(int backend, const char *env, const char *inner,
			 int fault)
{
	struct ckpt_fault_plan *plan = fault ? new_plan() : NULL;
	ckpt_status_t st;
	struct model m;
	ckpt_stream_t *s;
	char *dir = tu_mkdtemp("backend");
	uint64_t rs = seed ^ (uint64_t)backend;
	int64_t e = 0;

	memset(&m, 0, sizeof(m));
	if (env)
		setenv("SHMCKPT_BACKEND", env, 1);
	else
		unsetenv("SHMCKPT_BACKEND");
	ckpt_opts_t o = opts(backend, plan);
	s = open_ok(dir, &o);
	for (int i = 0; i < 3; i++)
		e = commit_random(s, &m, &rs);
	wait_ok(s, e);
	assert_int_equal(ckpt_status(s, &st), 0);
	printf("backend %d, SHMCKPT_BACKEND=%s: '%s'\n", backend,
	       env ? env : "(unset)", st.backend);
	expect_backend(&st, inner, fault);
	assert_int_equal(st.health, CKPT_HEALTHY);
	assert_true(st.flushes >= 1);
	assert_int_equal(st.durable_epoch, e);
	assert_int_equal(ckpt_close(s), 0);

	/* reopen from the slots alone */
	tu_unlink_regions(dir);
	s = open_ok(dir, &o);
	expect_state(s, &models[e]);
	e = commit_random(s, &m, &rs);
	wait_ok(s, e);
	assert_int_equal(ckpt_status(s, &st), 0);
	expect_backend(&st, inner, fault);
	assert_int_equal(ckpt_close(s), 0);
	unsetenv("SHMCKPT_BACKEND");
	tu_rmdir(dir);
}

static void test_backend_uring(void **state)
{
	(void)state;
	if (!need_backend(CKPT_BACKEND_URING))
		skip();
	backend_case(CKPT_BACKEND_URING, NULL, "io_uring", 0);
	backend_case(CKPT_BACKEND_URING, NULL, "io_uring", 1);
}

static void test_backend_fallback(void **state)
{
	(void)state;
	backend_case(CKPT_BACKEND_FALLBACK, NULL, "fallback", 0);
	backend_case(CKPT_BACKEND_FALLBACK, NULL, "fallback", 1);
}

static void test_backend_auto(void **state)
{
	(void)state;
	backend_case(CKPT_BACKEND_AUTO, NULL,
		     uring_ok ? "io_uring" : "fallback", 0);
	backend_case(CKPT_BACKEND_AUTO, "fallback", "fallback", 0);
	backend_case(CKPT_BACKEND_AUTO, "fallback", "fallback", 1);
	if (need_backend(CKPT_BACKEND_URING))
		backend_case(CKPT_BACKEND_AUTO, "uring", "io_uring", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eio_sync_fallback),
		cmocka_unit_test(test_eio_write_fallback),
		cmocka_unit_test(test_short_write_fallback),
		cmocka_unit_test(test_eio_sync_uring),
		cmocka_unit_test(test_eio_write_uring),
		cmocka_unit_test(test_short_write_uring),
		cmocka_unit_test(test_enospc_grow),
		cmocka_unit_test(test_backend_uring),
		cmocka_unit_test(test_backend_fallback),
		cmocka_unit_test(test_backend_auto),
	};
	struct io_uring ring;
	int ret;

	seed = tu_seed("test_flush_faults");
	unsetenv("SHMCKPT_BACKEND");
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret == 0) {
		uring_ok = 1;
		io_uring_queue_exit(&ring);
	} else {
		snprintf(uring_why, sizeof(uring_why), "io_uring_queue_init: "
			 "%s", strerror(-ret));
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
