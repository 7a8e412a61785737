/*
 * test_powercut.c - R2: after a power cut (files keep exactly what was
 * datasync'd, plus at most one torn write; /dev/shm is lost), recovery
 * yields an epoch >= the newest epoch reported durable, with the state of
 * exactly that epoch (R1), never a mix and never a corrupt slot.
 *
 * test_powercut_runs: each run forks a consumer that sets up its own fault
 * plan (iouring/fault.h; the plan lives in a shared page so that the
 * parent can read its counters and, in some runs, cut the power itself),
 * opens the stream with it (CKPT_FLUSHER_THREAD, a 256 KiB ring) and
 * commits the oracle's epochs (tests/oracle.h), publishing the newest
 * epoch whose commit returned and the newest epoch it saw durable.  The
 * power goes at op powercut_at_op (1 .. 24, 1 and 2 often: the first
 * writes of a new stream) or, in one run in three, when the parent calls
 * ckpt__fault_powercut after a random delay; with a torn prefix in half
 * the runs and op latencies of 0, fixed, or uniform up to 2 ms.  The
 * consumer sees the stream fail (ckpt_status: CKPT_FAILED, -EIO; the
 * durable epoch frozen; ckpt_wait_durable: CKPT_EFAILED) and stops.
 *
 * The parent then SIGKILLs it, removes the stream's shared memory (what a
 * power cut does to /dev/shm) and has a checker process open the stream
 * with no fault plan: the open must succeed, the recovered epoch R satisfy
 *	D <= R <= L + 1		(D: last durable reported, L: last returned)
 *	R >= the epoch recovered by the previous run's checker (it was on
 *	     stable storage: recovered from, and closed over, the slots)
 * and the state be the oracle's for exactly R.  The stream continues from
 * R in the next run (its epochs R+1 ... are made again, identically); one
 * run in five starts a new stream, so that cuts also hit its first writes.
 *
 * CKPT_TEST_THREADED: the consumers run the flusher thread (and the fault
 * wrapper) beside the producer, so the suite also runs this under
 * ThreadSanitizer.
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

#include "fault.h"
#include "oracle.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "powercut"
#define RING (256u * 1024u)

static uint64_t seed;

/* Shared between the test, its consumers and its checkers. */
struct ctl {
	struct ckpt_fault_plan plan; /* the consumer's plan */
	uint64_t run;
	int phase; /* PH_* */
	int failed; /* the child found a contract broken */
	int64_t recovered; /* at open (consumer or checker) */
	int64_t last_returned;
	int64_t last_durable; /* newest epoch seen durable */
	int64_t durable_frozen; /* ckpt_durable_epoch once FAILED was seen */
	int st_error; /* ckpt_status().error once FAILED was seen */
	char backend[16];
	char why[384];
};

enum { PH_OPENED = 1, PH_COMMITTING = 2, PH_FAILED_SEEN = 3, PH_CHECKED = 4 };

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

/* The stream has failed: check what the contract says of a failed stream,
 * publish it, and wait to be killed. */
static void consumer_failed(struct ctl *c, ckpt_stream_t *s, int64_t dmax)
{
	ckpt_status_t st;
	int64_t d = ckpt_durable_epoch(s);

	ckpt_status(s, &st);
	if (st.health != CKPT_FAILED || st.error != -EIO ||
	    st.durable_epoch != d || d < dmax)
		child_fail(c, 20, "failed stream: health %d, error %d (%s), "
			   "status durable %lld, call %lld, seen before %lld",
			   st.health, st.error, ckpt_strerror(st.error),
			   (long long)st.durable_epoch, (long long)d,
			   (long long)dmax);
	int64_t committed = st.committed_epoch;
	if (committed > d) {
		int ret = ckpt_wait_durable(s, committed, -1);
		if (ret != CKPT_EFAILED)
			child_fail(c, 21, "wait_durable(%lld) on a failed "
				   "stream: %d (%s), not CKPT_EFAILED",
				   (long long)committed, ret,
				   ckpt_strerror(ret));
	}
	if (ckpt_durable_epoch(s) != d)
		child_fail(c, 22, "durable epoch moved from %lld to %lld after "
			   "the failure", (long long)d,
			   (long long)ckpt_durable_epoch(s));
	STORE(&c->st_error, st.error);
	STORE(&c->durable_frozen, d);
	if (d > LOAD(&c->last_durable))
		STORE(&c->last_durable, d);
	snprintf(c->backend, sizeof(c->backend), "%s", st.backend);
	STORE(&c->phase, PH_FAILED_SEEN);
	for (;;)
		pause();
}

/* Commit until the stream fails. */
static void consumer_main(struct ctl *c, const char *dir, uint64_t run)
{
	static uint8_t buf[OR_VAL_MAX];
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t opts;
	or_epoch_t g;
	int ret;

	STORE(&c->run, run);
	or_opts(&opts, RING);
	opts.full_wait_ms = 20;
	opts.fault = &c->plan;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 10, "run %llu: open with the fault plan: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	int64_t r = ckpt_recovered_epoch(s);
	STORE(&c->recovered, r);
	STORE(&c->phase, PH_OPENED);

	int64_t dmax = ckpt_durable_epoch(s);
	for (int64_t e = r + 1;; e++) {
		or_gen(seed, e, &g);
		/* a full ring after the cut: -EAGAIN (once full_wait_ms is
		 * over), then the status says why */
		for (;;) {
			ret = or_stage(s, &g, buf, NULL);
			if (ret != -EAGAIN)
				break;
			ckpt_abort(s);
			ckpt_status(s, &st);
			if (st.health == CKPT_FAILED)
				consumer_failed(c, s, dmax);
		}
		if (ret < 0)
			child_fail(c, 13, "run %llu: stage epoch %lld: %s: %s",
				   (unsigned long long)run, (long long)e,
				   ckpt_strerror(ret), ckpt_last_error());
		int64_t got;
		while ((got = ckpt_commit(s)) == -EAGAIN) {
			ckpt_status(s, &st);
			if (st.health == CKPT_FAILED)
				consumer_failed(c, s, dmax);
		}
		if (got != e)
			child_fail(c, 14, "run %llu: commit of epoch %lld "
				   "returned %lld (recovered %lld)",
				   (unsigned long long)run, (long long)e,
				   (long long)got, (long long)r);
		STORE(&c->last_returned, e);
		if (e == r + 1)
			STORE(&c->phase, PH_COMMITTING);
		int64_t d = ckpt_durable_epoch(s);
		if (d < dmax || d > e)
			child_fail(c, 17, "run %llu: durable epoch %lld after "
				   "%lld, committed %lld",
				   (unsigned long long)run, (long long)d,
				   (long long)dmax, (long long)e);
		dmax = d;
		if (d > LOAD(&c->last_durable))
			STORE(&c->last_durable, d);
		if (e % 8 == 0) {
			ckpt_status(s, &st);
			if (st.health == CKPT_FAILED)
				consumer_failed(c, s, dmax);
		}
	}
}

/* Open with no fault plan, check the recovered state, close. */
static void checker_main(struct ctl *c, const char *dir, uint64_t run,
			 or_oracle_t *o)
{
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	char why[300];
	int ret;

	STORE(&c->run, run);
	or_opts(&opts, RING);
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 30, "run %llu: open after the power cut: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	int64_t r = ckpt_recovered_epoch(s);
	STORE(&c->recovered, r);
	STORE(&c->phase, PH_OPENED);
	or_goto(o, seed, r < 0 ? 0 : r);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		child_fail(c, 31, "run %llu: recovered state != oracle: %s",
			   (unsigned long long)run, why);
	STORE(&c->phase, PH_CHECKED);
	ret = ckpt_close(s);
	if (ret != 0)
		child_fail(c, 32, "run %llu: close after the check: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	_exit(0);
}

static void reset_run(struct ctl *c, uint64_t run)
{
	STORE(&c->run, 0);
	STORE(&c->phase, 0);
	STORE(&c->recovered, -1);
	STORE(&c->durable_frozen, -1);
	STORE(&c->st_error, 0);
	(void)run;
}

/* Wait until the child reaches @phase (or dies: fail with its reason). */
static void await_phase(struct ctl *c, pid_t pid, int phase, uint64_t run,
			const char *what)
{
	uint64_t t0 = tu_now_ns();
	int st;

	while (LOAD(&c->phase) < phase) {
		if (LOAD(&c->failed) || waitpid(pid, &st, WNOHANG) == pid) {
			if (!LOAD(&c->failed))
				fail_msg("run %llu: child ended (status %d) "
					 "before %s", (unsigned long long)run,
					 st, what);
			kill(pid, SIGKILL);
			tu_wait(pid);
			fail_msg("%s", c->why);
		}
		/* a liveness bound, not a timing assertion */
		if (tu_now_ns() - t0 > 60ull * 1000000000ull) {
			kill(pid, SIGKILL);
			tu_wait(pid);
			fail_msg("run %llu: no %s after 60 s (phase %d)",
				 (unsigned long long)run, what,
				 LOAD(&c->phase));
		}
		usleep(100);
	}
}

static void test_powercut_runs(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	or_oracle_t *o = malloc(sizeof(*o));
	uint64_t runs = tu_scaled(200), rs = seed ^ 0x706f776572ULL;
	uint64_t torn = 0, torn_bytes = 0, cut_ops = 0, parent_cuts = 0;
	uint64_t streams = 0, fresh_torn = 0, exact = 0;
	int64_t L = 0, D = 0, Rprev = 0, lost_max = 0, epochs = 0;
	int64_t over_min = INT64_MAX, over_max = 0;
	char *dir = NULL;
	int st;

	assert_true(c != MAP_FAILED);
	assert_non_null(o);
	memset(c, 0, sizeof(*c));
	if (runs < 12)
		runs = 12;

	for (uint64_t run = 1; run <= runs; run++) {
		if (run % 5 == 1) { /* a new stream */
			tu_rmdir(dir);
			dir = tu_mkdtemp("powercut");
			or_reset(o);
			L = D = Rprev = 0;
			streams++;
		}
		int fresh = L == 0;

		/* the consumer's plan */
		reset_run(c, run);
		STORE(&c->last_returned, Rprev);
		STORE(&c->last_durable, 0);
		memset(&c->plan, 0, sizeof(c->plan));
		c->plan.seed = tu_rand(&rs);
		c->plan.torn = (int)(run & 1);
		switch (tu_rand(&rs) % 3) {
		case 0:
			break; /* no latency */
		case 1: /* fixed */
			c->plan.lat_min_us = c->plan.lat_max_us =
				50 + tu_rand(&rs) % 1000;
			break;
		default: /* uniform */
			c->plan.lat_max_us = 1 + tu_rand(&rs) % 2000;
			break;
		}
		int parent_cut = tu_rand(&rs) % 3 == 0;
		if (!parent_cut) {
			uint64_t x = tu_rand(&rs) % 8;
			c->plan.powercut_at_op = x < 2 ? 1 + x
						       : 1 + tu_rand(&rs) % 24;
		}

		fflush(NULL);
		pid_t w = fork();
		assert_true(w >= 0);
		if (w == 0)
			consumer_main(c, dir, run);
		if (parent_cut) {
			await_phase(c, w, PH_COMMITTING, run, "first commit");
			uint64_t ns = tu_rand(&rs) % 8 == 0
					      ? 0
					      : tu_rand(&rs) % 5000000ull;
			struct timespec ts = { 0, (long)ns };
			nanosleep(&ts, NULL);
			ckpt__fault_powercut(&c->plan);
			parent_cuts++;
		}
		await_phase(c, w, PH_FAILED_SEEN, run, "failure after the cut");
		kill(w, SIGKILL);
		st = tu_wait(w);
		if (LOAD(&c->failed))
			fail_msg("%s", c->why);

		/* the consumer started where the last checker left */
		if (LOAD(&c->recovered) != Rprev)
			fail_msg("run %llu: the consumer recovered %lld, the "
				 "checker before it %lld (no power cut between)",
				 (unsigned long long)run,
				 (long long)LOAD(&c->recovered), (long long)Rprev);
		struct ckpt_fault_stats fs;
		ckpt__fault_stats(&c->plan, &fs);
		assert_int_equal(LOAD(&c->plan.powercut), 1);
		assert_int_equal(LOAD(&c->st_error), -EIO);
		torn += fs.torn;
		torn_bytes += fs.torn_bytes;
		cut_ops += fs.cut_ops;
		fresh_torn += fresh && fs.torn;
		L = LOAD(&c->last_returned);
		D = LOAD(&c->last_durable);
		if (D > L)
			fail_msg("run %llu: durable %lld ahead of the last "
				 "returned commit %lld",
				 (unsigned long long)run, (long long)D,
				 (long long)L);

		/* the power is back: /dev/shm is empty */
		tu_unlink_regions(dir);
		reset_run(c, run);
		fflush(NULL);
		pid_t k = fork();
		assert_true(k >= 0);
		if (k == 0)
			checker_main(c, dir, run, o);
		st = tu_wait_bounded(k, 120);
		if (LOAD(&c->failed) || st != 0)
			fail_msg("run %llu (torn %d, cut at op %llu, %llu ops): "
				 "checker (status %d): %s",
				 (unsigned long long)run, c->plan.torn,
				 (unsigned long long)c->plan.powercut_at_op,
				 (unsigned long long)fs.ops, st, c->why);
		int64_t r = LOAD(&c->recovered);
		if (r < D || r < Rprev)
			fail_msg("run %llu: recovered epoch %lld after a power "
				 "cut, but %lld was reported durable and %lld "
				 "recovered before (R2)",
				 (unsigned long long)run, (long long)r,
				 (long long)D, (long long)Rprev);
		if (r > L + 1)
			fail_msg("run %llu: recovered epoch %lld, but the last "
				 "commit to return was %lld",
				 (unsigned long long)run, (long long)r,
				 (long long)L);
		exact += r == D;
		if (r - D < over_min)
			over_min = r - D;
		if (r - D > over_max)
			over_max = r - D;
		if (L - r > lost_max)
			lost_max = L - r;
		epochs += L - Rprev;
		or_goto(o, seed, r);
		Rprev = r;
	}

	printf("%llu power cuts over %llu streams (%llu by the parent, the "
	       "rest at op 1..24), backend %s: %llu torn writes (%llu bytes, "
	       "%llu on a new stream), %llu ops lost at the cuts; %lld epochs "
	       "committed; recovered - last reported durable: min %lld, max "
	       "%lld (equal in %llu runs); at most %lld returned epochs lost "
	       "with /dev/shm\n",
	       (unsigned long long)runs, (unsigned long long)streams,
	       (unsigned long long)parent_cuts, c->backend,
	       (unsigned long long)torn, (unsigned long long)torn_bytes,
	       (unsigned long long)fresh_torn, (unsigned long long)cut_ops,
	       (long long)epochs, (long long)over_min, (long long)over_max,
	       (unsigned long long)exact, (long long)lost_max);
	free(o);
	munmap(c, sizeof(*c));
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_powercut_runs),
	};
	seed = tu_seed("test_powercut");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
