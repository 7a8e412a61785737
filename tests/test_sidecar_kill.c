/*
 * test_sidecar_kill.c - R4: the sidecar SIGKILLed at random instants while
 * a consumer commits; restarted, it resumes with no epoch lost and no delta
 * missing.
 *
 * One consumer process (CKPT_FLUSHER_EXTERNAL, a 128 KiB ring,
 * CKPT_FULL_WAIT so that a full ring waits for the sidecar instead of
 * failing) commits deterministic epochs (tests/oracle.h) without a pause;
 * every commit must return the next epoch number.  The parent kills
 * shmckptd after a random delay from its start (1 in 8 at once, so kills
 * land in its start-up and recovery too, the others 1 us .. 32 ms), and,
 * while it is down, checks what a successor will resume from (white-box):
 *   - the newest valid slot holds epoch S >= the region's durable epoch,
 *     and its state is exactly the oracle's at S;
 *   - the ring, read from release_pos without the flusher lock, holds
 *     every epoch from S + 1 up to at least the newest whose commit had
 *     returned, consecutive, each with exactly the deltas the oracle
 *     generates for it.
 * Then it restarts the sidecar; one restart in ten, it waits until the new
 * one made an epoch durable that the dead one never had.
 *
 * At the end the consumer stops, waits for its last epoch to be durable and
 * closes; the sidecar drains on SIGTERM (exit 0); the shared memory is
 * removed and a reopen from the slots alone gives the last epoch and the
 * oracle's state.
 *
 * test_once: a consumer commits and exits while no sidecar runs; then
 * "shmckptd --once" makes its epochs durable and exits 0, and a second
 * --once finds nothing to do.
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

#include "lock.h"
#include "oracle.h"
#include "shmckpt.h"
#include "sidecar.h"
#include "slotfile.h"
#include "snapshot.h"
#include "testutil.h"

#define NAME "sc-kill"
#define RING (128u * 1024u)
#define WAIT_MS 60000

static uint64_t seed;

struct ctl {
	int64_t last_returned;
	uint64_t again; /* stages/commits that found the ring full */
	int committing;
	int stop; /* parent: stop committing, wait durable, close */
	int failed;
	char why[384];
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

static void consumer(struct ctl *c, const char *dir)
{
	static uint8_t buf[OR_VAL_MAX];
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	or_epoch_t g;
	int64_t e;
	int ret;

	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	opts.full_wait_ms = WAIT_MS;
	ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		child_fail(c, 10, "open: %s: %s", ckpt_strerror(ret),
			   ckpt_last_error());
	if (ckpt_recovered_epoch(s) != 0)
		child_fail(c, 11, "new stream recovered epoch %lld",
			   (long long)ckpt_recovered_epoch(s));
	STORE(&c->committing, 1);
	for (e = 1; !LOAD(&c->stop); e++) {
		uint64_t again = 0;
		or_gen(seed, e, &g);
		ret = or_stage(s, &g, buf, &again);
		if (ret < 0)
			child_fail(c, 13, "stage epoch %lld: %s: %s",
				   (long long)e, ckpt_strerror(ret),
				   ckpt_last_error());
		int64_t got = or_commit(s, &again);
		if (got != e) /* consecutive: none skipped, none repeated */
			child_fail(c, 14, "commit of epoch %lld returned %lld",
				   (long long)e, (long long)got);
		STORE(&c->last_returned, e);
		if (again)
			__atomic_fetch_add(&c->again, again, __ATOMIC_RELAXED);
	}
	ret = ckpt_wait_durable(s, e - 1, WAIT_MS);
	if (ret != 0)
		child_fail(c, 15, "wait_durable(%lld): %s: %s", (long long)e - 1,
			   ckpt_strerror(ret), ckpt_last_error());
	ret = ckpt_close(s);
	if (ret != 0)
		child_fail(c, 16, "close: %s", ckpt_strerror(ret));
	_exit(0);
}

/* ------------------------------------------------------------------------
 * The oracle as a snapshot, and deltas as the oracle makes them
 * ------------------------------------------------------------------------ */

static uint8_t vbuf[OR_VAL_MAX];

static void to_delta(const or_delta_t *od, ckpt_delta_t *d, char *key)
{
	memset(d, 0, sizeof(*d));
	d->type = od->type;
	switch (od->type) {
	case CKPT_D_PUT:
	case CKPT_D_DEL:
		d->klen = or_key(od->k, key);
		d->key = key;
		if (od->type == CKPT_D_PUT) {
			or_fill(od->vseed, vbuf, od->vlen);
			d->val = vbuf;
			d->vlen = od->vlen;
		}
		break;
	case CKPT_D_OFFSET:
		d->topic = or_topic(od->k);
		d->topic_len = strlen(d->topic);
		d->partition = or_parts[od->p];
		d->offset = od->off;
		break;
	default:
		or_fill(od->vseed, vbuf, od->vlen);
		d->val = vbuf;
		d->vlen = od->vlen;
		break;
	}
}

/* Move the oracle snapshot forward to epoch @e. */
static void snap_to(ckpt__snap_t *o, int64_t e)
{
	char key[OR_KEY_MAX];
	ckpt_delta_t d;
	or_epoch_t g;

	while (ckpt__snap_epoch(o) < e) {
		int64_t n = ckpt__snap_epoch(o) + 1;
		or_gen(seed, n, &g);
		for (int i = 0; i < g.n; i++) {
			to_delta(&g.d[i], &d, key);
			assert_int_equal(ckpt__snap_apply(o, &d), 0);
		}
		ckpt__snap_set_epoch(o, n);
	}
}

/* NULL if @got is the oracle's delta @od, else what differs. */
static const char *same_delta(const ckpt_delta_t *got, const or_delta_t *od)
{
	char key[OR_KEY_MAX];
	ckpt_delta_t want;

	to_delta(od, &want, key);
	if (got->type != want.type)
		return "type";
	switch (want.type) {
	case CKPT_D_OFFSET:
		if (got->topic_len != want.topic_len ||
		    memcmp(got->topic, want.topic, want.topic_len) ||
		    got->partition != want.partition ||
		    got->offset != want.offset)
			return "offset";
		return NULL;
	case CKPT_D_META:
		break;
	default:
		if (got->klen != want.klen ||
		    (want.klen && memcmp(got->key, want.key, want.klen)))
			return "key";
		if (want.type == CKPT_D_DEL)
			return NULL;
		break;
	}
	if (got->vlen != want.vlen ||
	    (want.vlen && memcmp(got->val, want.val, want.vlen)))
		return "value";
	return NULL;
}

/* ------------------------------------------------------------------------
 * What a successor resumes from, checked while no sidecar runs
 * ------------------------------------------------------------------------ */

struct resume {
	int64_t slot; /* epoch of the newest valid slot */
	int64_t durable; /* region's durable epoch */
	int64_t ring_last; /* newest epoch read from the ring */
	int64_t replay; /* epochs after the slot found in the ring */
};

static void check_resume(const char *dir, ckpt__snap_t *oracle,
			 struct ctl *c, const char *log, uint64_t kill,
			 struct resume *out)
{
	char abs[CKPT_DIR_MAX];
	ckpt__slots_t sl;
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	or_epoch_t g;
	size_t len;
	int ret, sdirfd;

	/* first what had returned, then what the region says: C >= L */
	int64_t L = LOAD(&c->last_returned);
	struct ckpt_region *h = sc_map(dir, NAME, &len);
	int64_t D = sc_durable(h);
	int64_t C = sc_committed(h);
	rm_unmap(h, len);
	if (C < L)
		fail_msg("kill %llu: region committed %lld < returned %lld",
			 (unsigned long long)kill, (long long)C, (long long)L);

	/* the newest valid slot */
	assert_int_equal(ckpt__absdir(dir, abs, sizeof(abs)), 0);
	sdirfd = ckpt__stream_dir(abs, NAME, 0);
	assert_true(sdirfd >= 0);
	ckpt__snap_t *sn = ckpt__snap_new();
	assert_non_null(sn);
	ret = ckpt__slots_open(sdirfd, NAME, 0, &sl, sn);
	if (ret < 0) {
		sc_log_tail(log, 20);
		fail_msg("kill %llu: slots: %s: %s", (unsigned long long)kill,
			 ckpt_strerror(ret), ckpt_last_error());
	}
	int64_t S = ckpt__snap_epoch(sn);
	if (S < D)
		fail_msg("kill %llu: newest slot holds epoch %lld, durable "
			 "was %lld (R2)", (unsigned long long)kill,
			 (long long)S, (long long)D);
	if (S < ckpt__snap_epoch(oracle))
		fail_msg("kill %llu: newest slot went back to epoch %lld from "
			 "%lld", (unsigned long long)kill, (long long)S,
			 (long long)ckpt__snap_epoch(oracle));
	snap_to(oracle, S);
	if (!ckpt__snap_equal(sn, oracle))
		fail_msg("kill %llu: the slot's state at epoch %lld differs "
			 "from the oracle's", (unsigned long long)kill,
			 (long long)S);
	ckpt__slots_close(&sl);
	ckpt__snap_free(sn);
	close(sdirfd);

	/* the ring from release_pos: every epoch after S, whole */
	ret = ckpt_reader_open(dir, NAME, CKPT_R_NOLOCK, &r);
	if (ret < 0)
		fail_msg("kill %llu: reader: %s: %s", (unsigned long long)kill,
			 ckpt_strerror(ret), ckpt_last_error());
	int64_t last = 0, replay = 0, first = -1;
	while (last < C) {
		ret = ckpt_reader_next(r, &ep);
		if (ret < 0)
			fail_msg("kill %llu: ring after epoch %lld: %s: %s",
				 (unsigned long long)kill, (long long)last,
				 ckpt_strerror(ret), ckpt_last_error());
		if (ret == 0)
			break;
		if (first < 0)
			first = ep.epoch;
		if (last && ep.epoch != last + 1)
			fail_msg("kill %llu: ring has epoch %lld after %lld",
				 (unsigned long long)kill, (long long)ep.epoch,
				 (long long)last);
		last = ep.epoch;
		if (ep.epoch <= S)
			continue;
		replay++;
		or_gen(seed, ep.epoch, &g);
		int i = 0;
		while ((ret = ckpt_epoch_next(&ep, &d)) > 0) {
			const char *why = i < g.n ? same_delta(&d, &g.d[i])
						  : "extra delta";
			if (why)
				fail_msg("kill %llu: epoch %lld delta %d: %s "
					 "differs from the oracle",
					 (unsigned long long)kill,
					 (long long)ep.epoch, i, why);
			i++;
		}
		if (i != g.n)
			fail_msg("kill %llu: epoch %lld has %d deltas, oracle "
				 "%d (a delta missing)", (unsigned long long)kill,
				 (long long)ep.epoch, i, g.n);
	}
	ckpt_reader_close(r);
	if (C > S && (first < 0 || first > S + 1))
		fail_msg("kill %llu: slot at %lld, ring starts at epoch %lld: "
			 "epochs %lld.. are lost", (unsigned long long)kill,
			 (long long)S, (long long)first, (long long)S + 1);
	if (C > S && last < C)
		fail_msg("kill %llu: ring ends at epoch %lld, %lld committed "
			 "(%lld returned)", (unsigned long long)kill,
			 (long long)last, (long long)C, (long long)L);
	out->slot = S;
	out->durable = D;
	out->ring_last = last;
	out->replay = replay;
}

static void test_sidecar_kills(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *dir = tu_mkdtemp("sc-kill");
	char log[PATH_MAX];
	uint64_t kills = tu_scaled(150), rs = seed ^ 0x52344bULL;
	uint64_t zero = 0, progress_checks = 0, replays = 0, down_long = 0;
	uint64_t from_serving = 0;
	uint64_t t_start = tu_now_ns();
	int64_t max_replay = 0, slot_prev = 0, slot_moves = 0;
	ckpt__snap_t *oracle = ckpt__snap_new();
	struct resume rz;
	pid_t cons, sc;
	int st = 0;

	assert_true(c != MAP_FAILED);
	assert_non_null(oracle);
	memset(c, 0, sizeof(*c));
	if (kills < 100) /* the acceptance figure, in every build */
		kills = 100;
	snprintf(log, sizeof(log), "%s.log", dir);

	cons = sc_fork();
	assert_true(cons >= 0);
	if (cons == 0)
		consumer(c, dir);
	while (!LOAD(&c->committing) && !LOAD(&c->failed))
		sched_yield();
	sc = sc_start(dir, log, NULL);

	for (uint64_t k = 1; k <= kills; k++) {
		int none, serving = tu_rand(&rs) % 2;
		uint64_t ns = sc_delay(&rs, 6, 14, &none); /* 64 us .. 32 ms */
		zero += none;
		if (serving) {
			/* half the kills count from the moment it serves
			 * the stream (a slow start, under ASan, would
			 * otherwise take most of them) */
			size_t len;
			struct ckpt_region *h = sc_map(dir, NAME, &len);
			uint64_t t0 = tu_now_ns();
			while (sc_flusher_pid(h) != (uint32_t)sc) {
				if (waitpid(sc, &st, WNOHANG) == sc ||
				    tu_now_ns() - t0 > 30ull * 1000000000ull) {
					sc_log_tail(log, 30);
					fail_msg("kill %llu: the sidecar did not "
						 "serve the stream (status 0x%x)",
						 (unsigned long long)k, st);
				}
				sc_nap(100000);
			}
			rm_unmap(h, len);
			from_serving++;
		}
		if (ns)
			sc_nap(ns);
		kill(sc, SIGKILL);
		st = tu_wait(sc);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
			sc_log_tail(log, 30);
			fail_msg("kill %llu: sidecar ended with 0x%x before our "
				 "SIGKILL", (unsigned long long)k, st);
		}
		if (LOAD(&c->failed) || waitpid(cons, &st, WNOHANG) == cons) {
			sc_log_tail(log, 30);
			fail_msg("kill %llu: consumer: %s",
				 (unsigned long long)k, c->why);
		}
		check_resume(dir, oracle, c, log, k, &rz);
		replays += rz.replay > 0;
		if (rz.replay > max_replay)
			max_replay = rz.replay;
		slot_moves += rz.slot > slot_prev;
		slot_prev = rz.slot;

		if (tu_rand(&rs) % 4 == 0) {
			/* down for a while: the ring fills, the consumer
			 * waits (CKPT_FULL_WAIT) */
			sc_nap(1000000ull + tu_rand(&rs) % 40000000ull);
			down_long++;
		}
		sc = sc_start(dir, log, NULL);
		if (k % 10 == 0) {
			/* the new one resumes: an epoch durable that the
			 * dead one never made durable */
			size_t len;
			struct ckpt_region *h = sc_map(dir, NAME, &len);
			uint64_t t0 = tu_now_ns();
			while (sc_durable(h) <= rz.ring_last) {
				if (tu_now_ns() - t0 > 30ull * 1000000000ull) {
					sc_log_tail(log, 30);
					fail_msg("kill %llu: restarted sidecar: "
						 "durable %lld after 30 s, "
						 "needed > %lld",
						 (unsigned long long)k,
						 (long long)sc_durable(h),
						 (long long)rz.ring_last);
				}
				sc_nap(500000);
			}
			rm_unmap(h, len);
			progress_checks++;
		}
	}

	/* the consumer stops, waits for its last epoch durable, closes */
	STORE(&c->stop, 1);
	st = tu_wait(cons);
	if (LOAD(&c->failed) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 30);
		fail_msg("consumer ended with 0x%x: %s", st, c->why);
	}
	int64_t last = LOAD(&c->last_returned);
	st = sc_stop(sc);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 30);
		fail_msg("sidecar: SIGTERM gave 0x%x, not exit 0", st);
	}
	int started = sc_log_count(log, "info: started");
	size_t rlen;
	struct ckpt_region *h = sc_map(dir, NAME, &rlen);
	uint64_t bp = h->prod.backpressure_events, waited = h->prod.wait_ns;
	rm_unmap(h, rlen);
	int served = sc_log_count(log, ": serving:");

	/* the slots alone: the last epoch, the oracle's state */
	tu_unlink_regions(dir);
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	char why[300];
	or_oracle_t *o = malloc(sizeof(*o));
	assert_non_null(o);
	or_reset(o);
	or_opts(&opts, RING);
	int ret = ckpt_open(dir, NAME, &opts, &s);
	if (ret < 0)
		fail_msg("reopen from the slots: %s: %s", ckpt_strerror(ret),
			 ckpt_last_error());
	or_goto(o, seed, last);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		fail_msg("from the slots: %s", why);
	assert_int_equal(ckpt_close(s), 0);

	printf("%llu sidecar kills (%llu with no delay, %llu counted from its "
	       "taking the stream); %lld epochs committed "
	       "consecutively; the ring was full %llu times (%.0f ms waited); at "
	       "the kills: the ring "
	       "held epochs beyond the newest slot %llu times (at most %lld "
	       "epochs), the newest slot moved %lld times; %llu long downtimes; "
	       "%llu restarts "
	       "checked for progress; sidecar log: %d starts, %d 'serving'; "
	       "%.1f s\n",
	       (unsigned long long)kills, (unsigned long long)zero,
	       (unsigned long long)from_serving, (long long)last, (unsigned long long)bp, (double)waited / 1e6,
	       (unsigned long long)replays, (long long)max_replay,
	       (long long)slot_moves, (unsigned long long)down_long,
	       (unsigned long long)progress_checks,
	       started, served, (double)(tu_now_ns() - t_start) / 1e9);
	assert_true(last > 0);
	/* the consumer met the full ring while no sidecar ran, and waited */
	assert_true(bp > 0);
	assert_int_equal(LOAD(&c->again), 0); /* it waited, never -EAGAIN */
	assert_true(served >= (int)from_serving);
	free(o);
	ckpt__snap_free(oracle);
	munmap(c, sizeof(*c));
	sc_log_done(log);
	tu_rmdir(dir);
}

static void test_once(void **state)
{
	(void)state;
	static const char *const once[] = { "--once", NULL };
	char *dir = tu_mkdtemp("sc-once");
	char log[PATH_MAX], why[300];
	static uint8_t buf[OR_VAL_MAX];
	or_oracle_t *o = malloc(sizeof(*o));
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	or_epoch_t g;
	size_t len;
	int st;

	assert_non_null(o);
	snprintf(log, sizeof(log), "%s.log", dir);
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, NAME, &opts, &s), 0);
	for (int64_t e = 1; e <= 50; e++) {
		or_gen(seed, e, &g);
		assert_int_equal(or_stage(s, &g, buf, NULL), 0);
		assert_int_equal(ckpt_commit(s), e);
	}
	assert_int_equal(ckpt_durable_epoch(s), 0);
	assert_int_equal(ckpt_close(s), 0); /* gone, nothing durable */

	st = tu_wait(sc_start(dir, log, once));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 20);
		fail_msg("--once: status 0x%x", st);
	}
	struct ckpt_region *h = sc_map(dir, NAME, &len);
	assert_int_equal(sc_durable(h), 50);
	rm_unmap(h, len);
	st = tu_wait(sc_start(dir, log, once));
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(sc_log_count(log, ": serving:"), 1);
	assert_int_equal(sc_log_count(log, ": drained:"), 1);

	tu_unlink_regions(dir);
	or_reset(o);
	or_opts(&opts, RING);
	assert_int_equal(ckpt_open(dir, NAME, &opts, &s), 0);
	or_goto(o, seed, 50);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		fail_msg("after --once, from the slots: %s", why);
	assert_int_equal(ckpt_close(s), 0);
	free(o);
	sc_log_done(log);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sidecar_kills),
		cmocka_unit_test(test_once),
	};
	sc_daemon();
	seed = tu_seed("test_sidecar_kill");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
