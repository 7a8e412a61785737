/*
 * test_durable_crash.c - R1 and R3 with the in-process flusher: a consumer
 * SIGKILLed at random instants, reopened on the same boot, loses no epoch
 * whose commit returned and recovers exactly one committed epoch.
 *
 * test_kill_runs: a child opens the stream (CKPT_FLUSHER_THREAD, a 256 KiB
 * ring so that it wraps and the producer meets backpressure), checks what
 * it recovered against the oracle (tests/oracle.h: every key by ckpt_get
 * and ckpt_foreach_kv, every offset, the metadata), then commits epochs
 * recovered+1, +2 ... and publishes, through a shared page, the newest
 * epoch whose ckpt_commit returned and the newest epoch it saw durable.
 * The parent SIGKILLs it after a random delay (0 .. ~4 ms; most once it
 * commits, some from the fork on, so that kills land in the open and the
 * replay too).  The next child's recovered epoch R must satisfy, with L and
 * D the last returned and last durable epochs published before the kill:
 *	L <= R <= L + 1		(R3: nothing that returned is lost; at most
 *				 the one published before its return shows)
 *	R >= D			(R2 holds a fortiori)
 * and its state must be the oracle's for exactly epoch R (R1).  Its first
 * commit must return R + 1.
 *
 * Finally a child commits a last batch, waits for it to be durable and
 * closes; the shared memory is then removed and the parent reopens: the
 * slots alone must give the last epoch exactly (the snapshots the flusher
 * wrote hold what the ring held).
 *
 * test_kill_between_seal_and_publish: the narrowest kill window of a
 * commit (committed_epoch stored, commit_pos not yet), made by hand, which
 * the random kills hit about once in 6000.
 *
 * Children are forked from a parent that holds no stream open: a child
 * that opens a stream must get its own flusher thread.
 *
 * CKPT_TEST_THREADED: the children run the flusher thread beside the
 * producer, so the suite also runs this under ThreadSanitizer.
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

#include "oracle.h"
#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "durable-crash"
#define RING (256u * 1024u)
#define FINAL_EPOCHS 300

static uint64_t seed;

/* Shared between the test and its children. */
struct ctl {
	/* cumulative, written by whichever child is alive */
	int64_t last_returned; /* newest epoch whose commit returned */
	int64_t last_durable; /* newest epoch seen durable */
	uint64_t again; /* stages/commits that found the ring full */
	uint64_t waits; /* ckpt_wait_durable calls that returned 0 */
	/* per run */
	uint64_t run; /* the child's run, stored first */
	int phase; /* 1 opened, 2 state checked, 3 committing */
	int64_t recovered; /* ckpt_recovered_epoch at open */
	int64_t durable_at_open; /* ckpt_durable_epoch at open */
	int failed; /* the child found a contract broken */
	char why[384];
	char stuck[384]; /* the child's status while the ring stays full */
};

enum { PH_OPENED = 1, PH_CHECKED = 2, PH_COMMITTING = 3 };

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

/*
 * A consumer: open, check the recovered state against *o (the oracle at
 * the parent's last returned epoch, moved here to the recovered one),
 * commit @limit epochs (< 0: until killed), wait for the last to be
 * durable, close.
 */
static void child_main(struct ctl *c, const char *dir, uint64_t run,
		       or_oracle_t *o, int64_t limit)
{
	static uint8_t buf[OR_VAL_MAX];
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t opts;
	or_epoch_t g;
	char why[300];
	int ret;

	STORE(&c->run, run);
	or_opts(&opts, RING);
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 10, "run %llu: open: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	int64_t r = ckpt_recovered_epoch(s);
	int64_t d = ckpt_durable_epoch(s);
	STORE(&c->recovered, r);
	STORE(&c->durable_at_open, d);
	STORE(&c->phase, PH_OPENED);

	or_goto(o, seed, r < 0 ? 0 : r);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		child_fail(c, 11, "run %llu: recovered state != oracle: %s",
			   (unsigned long long)run, why);
	ret = ckpt_status(s, &st);
	if (ret != 0 || st.committed_epoch != r || st.durable_epoch > r ||
	    d > r || d < 0 || st.health == CKPT_FAILED)
		child_fail(c, 12, "run %llu: status after open: ret %d, "
			   "committed %lld, durable %lld (call: %lld), "
			   "recovered %lld, health %d: %s",
			   (unsigned long long)run, ret,
			   (long long)st.committed_epoch,
			   (long long)st.durable_epoch, (long long)d,
			   (long long)r, st.health, st.why);
	STORE(&c->phase, PH_CHECKED);

	int64_t dmax = d;
	for (int64_t e = r + 1; limit < 0 || e <= r + limit; e++) {
		uint64_t again = 0;
		or_gen(seed, e, &g);
		/* a ring still full after full_wait_ms: say what the status
		 * says (the parent prints it if this never ends), drop the
		 * partial epoch and stage it again */
		while ((ret = or_stage(s, &g, buf, NULL)) == -EAGAIN) {
			again++;
			ckpt_abort(s);
			ckpt_status(s, &st);
			snprintf(c->stuck, sizeof(c->stuck),
				 "epoch %lld: ring full for %u ms, %u times: "
				 "health %d, durable %lld, used %llu of %llu, "
				 "%llu flushes, backend '%.15s': %.160s",
				 (long long)e, opts.full_wait_ms,
				 (unsigned)again, st.health,
				 (long long)st.durable_epoch,
				 (unsigned long long)st.ring_used,
				 (unsigned long long)st.ring_capacity,
				 (unsigned long long)st.flushes, st.backend,
				 st.why);
		}
		if (ret < 0)
			child_fail(c, 13, "run %llu: stage epoch %lld: %s: %s",
				   (unsigned long long)run, (long long)e,
				   ckpt_strerror(ret), ckpt_last_error());
		int64_t got = or_commit(s, &again);
		if (got != e)
			child_fail(c, 14, "run %llu: commit of epoch %lld "
				   "returned %lld (recovered %lld)",
				   (unsigned long long)run, (long long)e,
				   (long long)got, (long long)r);
		STORE(&c->last_returned, e);
		if (again)
			__atomic_fetch_add(&c->again, again, __ATOMIC_RELAXED);
		if (e == r + 1) {
			const void *v;
			size_t vl;
			ret = ckpt_get(s, "", 0, &v, &vl);
			if (ret != -ESTALE)
				child_fail(c, 15, "run %llu: ckpt_get after the "
					   "first commit returned %d, not "
					   "-ESTALE", (unsigned long long)run,
					   ret);
			STORE(&c->phase, PH_COMMITTING);
		}
		if (e % 97 == 0 || (limit >= 0 && e == r + limit)) {
			ret = ckpt_wait_durable(s, e, -1);
			if (ret != 0)
				child_fail(c, 16, "run %llu: wait_durable(%lld): "
					   "%s: %s", (unsigned long long)run,
					   (long long)e, ckpt_strerror(ret),
					   ckpt_last_error());
			__atomic_fetch_add(&c->waits, 1, __ATOMIC_RELAXED);
		}
		d = ckpt_durable_epoch(s);
		if (d < dmax || d > e)
			child_fail(c, 17, "run %llu: durable epoch %lld after "
				   "%lld, committed %lld",
				   (unsigned long long)run, (long long)d,
				   (long long)dmax, (long long)e);
		if (e % 97 == 0 && d < e)
			child_fail(c, 18, "run %llu: waited for %lld, durable "
				   "says %lld", (unsigned long long)run,
				   (long long)e, (long long)d);
		dmax = d;
		if (d > LOAD(&c->last_durable))
			STORE(&c->last_durable, d);
	}
	ret = ckpt_close(s);
	if (ret != 0)
		child_fail(c, 19, "run %llu: close: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	_exit(0);
}

static void reset_run(struct ctl *c)
{
	STORE(&c->run, 0);
	STORE(&c->phase, 0);
	STORE(&c->recovered, -1);
	STORE(&c->durable_at_open, -1);
	c->why[0] = '\0';
	c->stuck[0] = '\0';
}

static void test_kill_runs(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	or_oracle_t *o = malloc(sizeof(*o));
	char *dir = tu_mkdtemp("durable-crash");
	uint64_t runs = tu_scaled(1000), rs = seed ^ 0x6b696c6c73ULL;
	uint64_t checked = 0, at_work = 0, replayed = 0, one_more = 0;
	uint64_t zero_delay = 0;
	int64_t L = 0, D = 0, Rprev = 0, lag_min = INT64_MAX, lag_max = 0;
	char why[300];
	int st;

	assert_true(c != MAP_FAILED);
	assert_non_null(o);
	memset(c, 0, sizeof(*c));
	or_reset(o);
	if (runs < 50)
		runs = 50;

	for (uint64_t run = 1; run <= runs; run++) {
		/* 4 runs in 5 kill a consumer at work (delay from its first
		 * commit), 1 in 5 anywhere from the fork (open, replay,
		 * check); 1 in 8 with no delay at all */
		int from_fork = tu_rand(&rs) % 5 == 0;
		uint64_t ns = 0;
		if (tu_rand(&rs) % 8 != 0) {
			uint64_t base = 1000ull << (tu_rand(&rs) % 12);
			ns = base + tu_rand(&rs) % base; /* 1 us .. 4 ms */
		} else {
			zero_delay++;
		}
		struct timespec ts = { (time_t)(ns / 1000000000ull),
				       (long)(ns % 1000000000ull) };

		or_goto(o, seed, L); /* the child starts from the oracle at L */
		reset_run(c);
		fflush(NULL);
		pid_t w = fork();
		assert_true(w >= 0);
		if (w == 0)
			child_main(c, dir, run, o, -1);
		for (uint64_t t0 = tu_now_ns();
		     !from_fork && LOAD(&c->phase) < PH_COMMITTING &&
		     !LOAD(&c->failed);) {
			if (waitpid(w, &st, WNOHANG) == w)
				fail_msg("run %llu: child ended (status %d) "
					 "before committing: %s",
					 (unsigned long long)run, st, c->why);
			/* a liveness bound, not a timing assertion */
			if (tu_now_ns() - t0 > 60ull * 1000000000ull) {
				kill(w, SIGKILL);
				tu_wait(w);
				fail_msg("run %llu: child not committing after "
					 "60 s (phase %d): %s",
					 (unsigned long long)run, LOAD(&c->phase),
					 c->stuck[0] ? c->stuck : "no ring-full report");
			}
			sched_yield();
		}
		if (ns)
			nanosleep(&ts, NULL);
		kill(w, SIGKILL);
		st = tu_wait(w);
		if (LOAD(&c->failed))
			fail_msg("%s", c->why);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			fail_msg("run %llu: child ended with status %d, not by "
				 "our SIGKILL", (unsigned long long)run, st);

		if (LOAD(&c->phase) >= PH_OPENED) {
			int64_t r = LOAD(&c->recovered);
			if (r < L || r < D || r < Rprev)
				fail_msg("run %llu: recovered epoch %lld, but "
					 "epoch %lld had returned from commit "
					 "and %lld was durable (R3)",
					 (unsigned long long)run, (long long)r,
					 (long long)L, (long long)D);
			if (r > L + 1)
				fail_msg("run %llu: recovered epoch %lld, but "
					 "the last commit to return was %lld",
					 (unsigned long long)run, (long long)r,
					 (long long)L);
			one_more += r == L + 1;
			replayed += r > D;
			if (r - D < lag_min)
				lag_min = r - D;
			if (r - D > lag_max)
				lag_max = r - D;
			Rprev = r;
		}
		checked += LOAD(&c->phase) >= PH_CHECKED;
		if (LOAD(&c->phase) >= PH_COMMITTING)
			at_work++;
		L = LOAD(&c->last_returned);
		D = LOAD(&c->last_durable);
		if (D > L)
			fail_msg("run %llu: durable %lld ahead of the last "
				 "returned commit %lld",
				 (unsigned long long)run, (long long)D,
				 (long long)L);
	}

	/* figures only (white-box): did the ring of the killed consumers wrap and fill? */
	size_t rlen;
	struct ckpt_region *h = rm_map(dir, NAME, 0, &rlen);
	uint64_t laps = h->prod.bytes / RING, bp = h->prod.backpressure_events;
	uint64_t hwm = h->prod.used_hwm;
	rm_unmap(h, rlen);

	/* the last consumer commits FINAL_EPOCHS, waits until they are
	 * durable and closes */
	or_goto(o, seed, L);
	reset_run(c);
	fflush(NULL);
	pid_t w = fork();
	assert_true(w >= 0);
	if (w == 0)
		child_main(c, dir, runs + 1, o, FINAL_EPOCHS);
	st = tu_wait_bounded(w, 120);
	if (LOAD(&c->failed) || st != 0)
		fail_msg("last consumer (status %d): %s%s%s", st, c->why,
			 c->stuck[0] ? "; " : "", c->stuck);
	int64_t r = LOAD(&c->recovered);
	if (r < L || r > L + 1 || r < D)
		fail_msg("last consumer recovered %lld after %lld returned, "
			 "%lld durable", (long long)r, (long long)L,
			 (long long)D);
	int64_t last = LOAD(&c->last_returned);
	assert_int_equal(last, r + FINAL_EPOCHS);
	assert_int_equal(LOAD(&c->last_durable), last);

	/* shared memory gone: the slots alone hold the last epoch */
	tu_unlink_regions(dir);
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	or_opts(&opts, RING);
	int ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		fail_msg("reopen from the slots: %s: %s", ckpt_strerror(ret),
			 ckpt_last_error());
	or_goto(o, seed, last);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		fail_msg("from the slots: %s", why);
	assert_int_equal(ckpt_close(s), 0);

	printf("%llu kills (%llu with no delay, %llu at work, %llu after the "
	       "state check); %lld epochs committed, %llu ring-full retries, "
	       "%llu waits for durable; recovered = last returned + 1 in "
	       "%llu runs; recovered - last durable: min %lld, max %lld "
	       "(replay needed in %llu runs); durable at the last kill %lld "
	       "of %lld; ring: %llu laps, %llu full, high-water %llu KiB\n",
	       (unsigned long long)runs, (unsigned long long)zero_delay,
	       (unsigned long long)at_work, (unsigned long long)checked,
	       (long long)last, (unsigned long long)LOAD(&c->again),
	       (unsigned long long)LOAD(&c->waits),
	       (unsigned long long)one_more, (long long)lag_min,
	       (long long)lag_max, (unsigned long long)replayed, (long long)D,
	       (long long)L, (unsigned long long)laps, (unsigned long long)bp,
	       (unsigned long long)(hwm >> 10));
	/* the delays must hit consumers at work, and the flusher must have
	 * made epochs durable on the way (else the slots were never tried) */
	assert_true(at_work >= runs / 2);
	assert_true(checked >= runs / 2);
	assert_true(D > 0);
	free(o);
	munmap(c, sizeof(*c));
	tu_rmdir(dir);
}

/*
 * The narrowest kill window of a commit, made by hand: the seal of epoch 4
 * is written and committed_epoch says 4, but commit_pos was not published
 * yet (the writer died between the two stores).  Epoch 4 was never
 * committed; its commit never returned.  Recovery must give epoch 3 and its
 * state, and the next commit must be epoch 4 again; the stream must reopen
 * after that.  Runs in a process of its own, so that a failure leaves no
 * open handle (and flusher thread) in the process that forks the others.
 */
static void window_main(struct ctl *c, const char *dir)
{
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	const void *v;
	size_t vl, rlen;
	int ret;

	/* a producer only (no flusher), so that nothing reads the ring */
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 40, "open: %s", ckpt_last_error());
	struct ckpt_region *h = rm_map(dir, NAME, 1, &rlen);
	for (int64_t e = 1; e <= 4; e++) {
		char val[1] = { (char)('0' + e) };
		if (e == 4)
			STORE(&c->durable_at_open, (int64_t)h->prod.commit_pos);
		if (ckpt_put(s, "a", 1, val, 1) != 0 || ckpt_commit(s) != e)
			child_fail(c, 41, "commit %lld: %s", (long long)e,
				   ckpt_last_error());
	}
	if (ckpt_close(s) != 0 || h->prod.committed_epoch != 4)
		child_fail(c, 42, "close, or committed_epoch %llu",
			   (unsigned long long)h->prod.committed_epoch);
	/* undo only the publication of epoch 4 */
	h->prod.commit_pos = (uint64_t)LOAD(&c->durable_at_open);

	or_opts(&opts, RING);
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 43, "open after the kill window: %s: %s",
			   ckpt_strerror(ret), ckpt_last_error());
	if (ckpt_recovered_epoch(s) != 3)
		child_fail(c, 44, "recovered epoch %lld, not 3",
			   (long long)ckpt_recovered_epoch(s));
	ret = ckpt_get(s, "a", 1, &v, &vl);
	if (ret != 0 || vl != 1 || memcmp(v, "3", 1) != 0)
		child_fail(c, 45, "get of the recovered state right after "
			   "open: %d (%s: %s)", ret, ckpt_strerror(ret),
			   ret ? ckpt_last_error() : "wrong value");
	int64_t got = -1;
	if (ckpt_put(s, "a", 1, "5", 1) != 0 || (got = ckpt_commit(s)) != 4)
		child_fail(c, 46, "first commit after recovering epoch 3 "
			   "returned %lld, not 4", (long long)got);
	ret = ckpt_close(s);
	if (ret != 0)
		child_fail(c, 47, "close: %s", ckpt_last_error());
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 48, "the open after that: %s: %s",
			   ckpt_strerror(ret), ckpt_last_error());
	if (ckpt_recovered_epoch(s) != 4 || ckpt_get(s, "a", 1, &v, &vl) != 0 ||
	    vl != 1 || memcmp(v, "5", 1) != 0)
		child_fail(c, 49, "the open after that recovered epoch %lld",
			   (long long)ckpt_recovered_epoch(s));
	if (ckpt_close(s) != 0)
		child_fail(c, 50, "last close: %s", ckpt_last_error());
	rm_unmap(h, rlen);
	_exit(0);
}

static void test_kill_between_seal_and_publish(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *dir = tu_mkdtemp("durable-window");

	assert_true(c != MAP_FAILED);
	memset(c, 0, sizeof(*c));
	fflush(NULL);
	pid_t w = fork();
	assert_true(w >= 0);
	if (w == 0)
		window_main(c, dir);
	int st = tu_wait_bounded(w, 60);
	if (LOAD(&c->failed) || st != 0)
		fail_msg("kill between seal and publication (status %d): %s", st,
			 c->why);
	munmap(c, sizeof(*c));
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_between_seal_and_publish),
		cmocka_unit_test(test_kill_runs),
	};
	seed = tu_seed("test_durable_crash");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
