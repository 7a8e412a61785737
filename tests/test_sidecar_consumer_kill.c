/*
 * test_sidecar_consumer_kill.c - R3 with the sidecar: consumers that open
 * their stream with CKPT_FLUSHER_EXTERNAL are SIGKILLed at random instants
 * while shmckptd flushes; nothing whose commit returned is lost.
 *
 * One shmckptd runs throughout.  Each run forks a consumer that opens the
 * stream, checks what it recovered against the oracle (tests/oracle.h:
 * every key, offset and the metadata, by every read call), then commits
 * epochs recovered+1, +2 ... (deterministic in (seed, epoch)), publishing
 * the newest epoch whose commit returned (L) and the newest it saw durable
 * (D); every 97 epochs it waits for durable, which only the sidecar can
 * give.  The parent SIGKILLs it after a random delay (1 in 5 counted from
 * the fork, so kills land in the open and the replay too).  The next
 * consumer's recovered epoch R must satisfy L <= R <= L + 1 and R >= D,
 * and its state must be the oracle's at R.
 *
 * One run in four, after the kill, the parent waits until the sidecar has
 * made every committed epoch of the dead consumer durable and let the
 * stream go (idle): the next consumer must be picked up again (its waits
 * for durable prove it).
 *
 * Finally a consumer commits FINAL_EPOCHS, waits until the last is durable
 * and closes; the sidecar is stopped with SIGTERM (exit 0), the shared
 * memory removed, and the slots alone must give the last epoch exactly.
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
#include "shmckpt.h"
#include "sidecar.h"
#include "testutil.h"

#define NAME "sc-consumer"
#define RING (256u * 1024u)
#define FINAL_EPOCHS 300
#define WAIT_MS 30000

static uint64_t seed;

struct ctl {
	int64_t last_returned; /* newest epoch whose commit returned */
	int64_t last_durable; /* newest epoch the consumer saw durable */
	uint64_t waits; /* ckpt_wait_durable that returned 0 */
	uint64_t again; /* stages/commits that found the ring full */
	uint64_t run;
	int phase; /* 1 opened, 2 checked, 3 committing */
	int64_t recovered;
	int failed;
	char why[384];
};

enum { PH_OPENED = 1, PH_CHECKED = 2, PH_COMMITTING = 3 };

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

static void consumer(struct ctl *c, const char *dir, uint64_t run,
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
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	opts.full_wait_ms = WAIT_MS;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 10, "run %llu: open: %s: %s",
			   (unsigned long long)run, ckpt_strerror(ret),
			   ckpt_last_error());
	int64_t r = ckpt_recovered_epoch(s);
	STORE(&c->recovered, r);
	STORE(&c->phase, PH_OPENED);
	or_goto(o, seed, r);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		child_fail(c, 11, "run %llu: recovered state != oracle: %s",
			   (unsigned long long)run, why);
	ret = ckpt_status(s, &st);
	if (ret != 0 || st.committed_epoch != r || st.health == CKPT_FAILED)
		child_fail(c, 12, "run %llu: status after open: committed "
			   "%lld, recovered %lld, health %d: %s",
			   (unsigned long long)run,
			   (long long)st.committed_epoch, (long long)r,
			   st.health, st.why);
	STORE(&c->phase, PH_CHECKED);

	for (int64_t e = r + 1; limit < 0 || e <= r + limit; e++) {
		uint64_t again = 0;
		or_gen(seed, e, &g);
		ret = or_stage(s, &g, buf, &again);
		if (ret < 0)
			child_fail(c, 13, "run %llu: stage epoch %lld: %s: %s",
				   (unsigned long long)run, (long long)e,
				   ckpt_strerror(ret), ckpt_last_error());
		int64_t got = or_commit(s, &again);
		if (got != e)
			child_fail(c, 14, "run %llu: commit of epoch %lld "
				   "returned %lld", (unsigned long long)run,
				   (long long)e, (long long)got);
		STORE(&c->last_returned, e);
		if (again)
			__atomic_fetch_add(&c->again, again, __ATOMIC_RELAXED);
		if (e == r + 1)
			STORE(&c->phase, PH_COMMITTING);
		if (e % 97 == 0 || (limit >= 0 && e == r + limit)) {
			/* only the sidecar can make it durable */
			ret = ckpt_wait_durable(s, e, WAIT_MS);
			if (ret != 0)
				child_fail(c, 16, "run %llu: wait_durable(%lld)"
					   ": %s: %s", (unsigned long long)run,
					   (long long)e, ckpt_strerror(ret),
					   ckpt_last_error());
			__atomic_fetch_add(&c->waits, 1, __ATOMIC_RELAXED);
		}
		int64_t d = ckpt_durable_epoch(s);
		if (d > e)
			child_fail(c, 17, "run %llu: durable %lld > committed "
				   "%lld", (unsigned long long)run,
				   (long long)d, (long long)e);
		if (d > LOAD(&c->last_durable))
			STORE(&c->last_durable, d);
	}
	ret = ckpt_close(s);
	if (ret != 0)
		child_fail(c, 19, "run %llu: close: %s",
			   (unsigned long long)run, ckpt_strerror(ret));
	_exit(0);
}

static pid_t sidecar;
static char logpath[PATH_MAX];

static void check_sidecar(const char *when)
{
	int st;
	if (waitpid(sidecar, &st, WNOHANG) == sidecar) {
		sc_log_tail(logpath, 40);
		fail_msg("%s: the sidecar ended (status 0x%x)", when, st);
	}
}

static void test_kill_runs(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	or_oracle_t *o = malloc(sizeof(*o));
	char *dir = tu_mkdtemp("sc-consumer");
	uint64_t runs = tu_scaled(200), rs = seed ^ 0x7233ULL;
	uint64_t at_work = 0, zero = 0, one_more = 0, idled = 0, retaken = 0;
	int just_idled = 0;
	int64_t L = 0, D = 0, Rprev = 0, flushed_after = 0;
	uint64_t t_start = tu_now_ns();
	char why[300];
	int st;

	assert_true(c != MAP_FAILED);
	assert_non_null(o);
	memset(c, 0, sizeof(*c));
	or_reset(o);
	if (runs < 100) /* the acceptance figure, in every build */
		runs = 100;
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	sidecar = sc_start(dir, logpath, NULL);

	for (uint64_t run = 1; run <= runs; run++) {
		int from_fork = tu_rand(&rs) % 5 == 0, none;
		uint64_t ns = sc_delay(&rs, 0, 11, &none); /* 1 us .. 4 ms */
		zero += none;

		or_goto(o, seed, L);
		STORE(&c->phase, 0);
		STORE(&c->recovered, -1);
		pid_t w = sc_fork();
		assert_true(w >= 0);
		if (w == 0)
			consumer(c, dir, run, o, -1);
		if (just_idled) {
			/* picked up again: the sidecar serves the new
			 * consumer before we kill it */
			size_t len;
			struct ckpt_region *h;
			uint64_t t0 = tu_now_ns();
			while (LOAD(&c->phase) < PH_OPENED &&
			       !LOAD(&c->failed))
				sched_yield();
			h = sc_map(dir, NAME, &len);
			while (sc_flusher_pid(h) != (uint32_t)sidecar &&
			       !LOAD(&c->failed)) {
				if (tu_now_ns() - t0 > 30ull * 1000000000ull) {
					sc_log_tail(logpath, 30);
					fail_msg("run %llu: the sidecar did not "
						 "take the stream back in 30 s",
						 (unsigned long long)run);
				}
				sc_nap(200000);
			}
			rm_unmap(h, len);
			retaken++;
			just_idled = 0;
		}
		for (uint64_t t0 = tu_now_ns();
		     !from_fork && LOAD(&c->phase) < PH_COMMITTING &&
		     !LOAD(&c->failed);) {
			if (waitpid(w, &st, WNOHANG) == w) {
				sc_log_tail(logpath, 30);
				fail_msg("run %llu: consumer ended (status "
					 "0x%x) before committing: %s",
					 (unsigned long long)run, st, c->why);
			}
			if (tu_now_ns() - t0 > 60ull * 1000000000ull)
				fail_msg("run %llu: consumer not committing "
					 "after 60 s", (unsigned long long)run);
			sched_yield();
		}
		if (ns)
			sc_nap(ns);
		kill(w, SIGKILL);
		st = tu_wait(w);
		if (LOAD(&c->failed)) {
			sc_log_tail(logpath, 30);
			fail_msg("%s", c->why);
		}
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
			fail_msg("run %llu: consumer ended with 0x%x, not by "
				 "our SIGKILL", (unsigned long long)run, st);
		if (LOAD(&c->phase) >= PH_OPENED) {
			int64_t r = LOAD(&c->recovered);
			if (r < L || r < D || r < Rprev || r > L + 1)
				fail_msg("run %llu: recovered epoch %lld; the "
					 "last commit to return was %lld, "
					 "durable %lld (R3)",
					 (unsigned long long)run, (long long)r,
					 (long long)L, (long long)D);
			one_more += r == L + 1;
			Rprev = r;
		}
		at_work += LOAD(&c->phase) >= PH_COMMITTING;
		L = LOAD(&c->last_returned);
		D = LOAD(&c->last_durable);
		check_sidecar("after a kill");

		if (run % 4 == 0) {
			/* the dead consumer's epochs: made durable by the
			 * sidecar alone, which then lets the stream go */
			size_t len;
			struct ckpt_region *h = sc_map(dir, NAME, &len);
			uint64_t t0 = tu_now_ns();
			int64_t cm = sc_committed(h);
			while (sc_durable(h) < cm || sc_flusher_pid(h) != 0) {
				if (tu_now_ns() - t0 > 30ull * 1000000000ull) {
					sc_log_tail(logpath, 30);
					fail_msg("run %llu: after 30 s the "
						 "sidecar made epoch %lld of "
						 "%lld durable (flusher pid "
						 "%u)", (unsigned long long)run,
						 (long long)sc_durable(h),
						 (long long)cm,
						 sc_flusher_pid(h));
				}
				sc_nap(1000000);
			}
			if (cm < L)
				fail_msg("committed %lld < returned %lld",
					 (long long)cm, (long long)L);
			flushed_after += cm - D > 0 ? cm - D : 0;
			idled++;
			just_idled = 1;
			rm_unmap(h, len);
		}
	}

	/* the last consumer commits, waits for durable, closes */
	or_goto(o, seed, L);
	STORE(&c->phase, 0);
	pid_t w = sc_fork();
	assert_true(w >= 0);
	if (w == 0)
		consumer(c, dir, runs + 1, o, FINAL_EPOCHS);
	st = tu_wait(w);
	if (LOAD(&c->failed) || st != 0) {
		sc_log_tail(logpath, 30);
		fail_msg("last consumer (status 0x%x): %s", st, c->why);
	}
	int64_t r = LOAD(&c->recovered);
	if (r < L || r > L + 1)
		fail_msg("last consumer recovered %lld after %lld returned",
			 (long long)r, (long long)L);
	int64_t last = LOAD(&c->last_returned);
	assert_int_equal(last, r + FINAL_EPOCHS);
	assert_int_equal(LOAD(&c->last_durable), last);

	check_sidecar("at the end");
	st = sc_stop(sidecar);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(logpath, 30);
		fail_msg("sidecar: SIGTERM gave status 0x%x, not exit 0", st);
	}
	int served = sc_log_count(logpath, ": serving:");
	int idle = sc_log_count(logpath, ": idle:");

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

	printf("%llu consumer kills (%llu with no delay, %llu at work); %lld "
	       "epochs committed; recovered = last returned + 1 in %llu runs; "
	       "%llu waits for durable, %llu ring-full retries; %llu times the "
	       "sidecar alone flushed a dead consumer's epochs (%lld epochs) "
	       "and went idle, %llu times it took the next one back; sidecar log: %d 'serving', %d 'idle'; %.1f s\n",
	       (unsigned long long)runs, (unsigned long long)zero,
	       (unsigned long long)at_work, (long long)last,
	       (unsigned long long)one_more,
	       (unsigned long long)LOAD(&c->waits),
	       (unsigned long long)LOAD(&c->again), (unsigned long long)idled,
	       (long long)flushed_after, (unsigned long long)retaken, served,
	       idle,
	       (double)(tu_now_ns() - t_start) / 1e9);
	assert_true(at_work >= runs / 2);
	assert_true(LOAD(&c->waits) > 0);
	/* every idle stream was picked up again by a later consumer */
	assert_true(idle >= (int)idled);
	assert_true(served >= (int)idled + 1);
	free(o);
	munmap(c, sizeof(*c));
	sc_log_done(logpath);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_runs),
	};
	sc_daemon();
	seed = tu_seed("test_sidecar_consumer_kill");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
