/*
 * test_sidecar_many.c - one sidecar serves 40 streams of 5 consumer
 * processes (8 each, CKPT_FLUSHER_EXTERNAL) through one flusher; each
 * stream's final state is exact.
 *
 * Each consumer commits deterministic epochs (tests/oracle.h, a seed per
 * stream) round-robin over its streams.  Half way it waits until every one
 * of its streams is durable and checks, white-box, that the flusher of
 * each is the one sidecar.  Then it commits the rest and, without waiting,
 * reports done and stays open.  The parent asks the sidecar for its status
 * (SIGHUP), then stops it with SIGTERM: the drain must make every
 * committed epoch of every stream durable before it exits 0.  The
 * consumers close; the shared memory is removed, and every stream reopened
 * from its slots alone must give its last epoch and the oracle's state.
 *
 * test_failed_stream: a sidecar whose storage fails the third datasync
 * (--fault eio_sync_at=3) serves four streams: the one that got the EIO
 * fails for good (its waits return CKPT_EFAILED, its status says why), the
 * sidecar drops it with one log line and keeps serving the three others,
 * whose later epochs all become durable.
 *
 * test_not_ours: streams the sidecar must leave alone while it scans: an
 * in-process consumer (CKPT_FLUSHER_THREAD) opened and closed again and
 * again never finds its flusher lock taken, and a producer-only stream
 * (CKPT_O_NOSLOTS) keeps its flusher lock free for its own reader.
 *
 * test_replaced: a served stream reopened with CKPT_O_RESET (a new region
 * under the same name) is dropped and the new region served; a region
 * removed under the sidecar is served on while its consumer lives, and
 * dropped when it closes.
 *
 * test_reset_storm: a stream reopened with CKPT_O_RESET again and again,
 * each time with a new history, beside a sidecar scanning every
 * millisecond: the sidecar must never flush the old history into the new
 * region (a reopen recovers exactly the new one).
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

#define PROCS 5
#define PER 8
#define STREAMS (PROCS * PER)
#define RING (128u * 1024u)
#define WAIT_MS 60000

static uint64_t seed;

struct ctl {
	pid_t sidecar;
	int64_t epochs; /* per stream */
	int done[PROCS]; /* consumer: all committed */
	int release; /* parent: close and exit */
	char backend[PROCS][16];
	int failed;
	char why[384];
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

static void stream_name(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "many-%02d", i);
}

static uint64_t stream_seed(int i)
{
	return seed ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
}

static void consumer(struct ctl *c, const char *dir, int p)
{
	static uint8_t buf[OR_VAL_MAX];
	ckpt_stream_t *s[PER];
	ckpt_opts_t opts;
	or_epoch_t g;
	char name[32];
	int ret;

	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	opts.full_wait_ms = WAIT_MS;
	for (int j = 0; j < PER; j++) {
		stream_name(p * PER + j, name, sizeof(name));
		ret = ckpt_open(dir, name, &opts, &s[j]);
		if (ret < 0)
			child_fail(c, 10, "open %s: %s: %s", name,
				   ckpt_strerror(ret), ckpt_last_error());
	}
	for (int64_t e = 1; e <= c->epochs; e++) {
		for (int j = 0; j < PER; j++) {
			uint64_t again = 0;
			or_gen(stream_seed(p * PER + j), e, &g);
			ret = or_stage(s[j], &g, buf, &again);
			if (ret < 0)
				child_fail(c, 11, "stream %d epoch %lld: %s",
					   p * PER + j, (long long)e,
					   ckpt_strerror(ret));
			int64_t got = or_commit(s[j], &again);
			if (got != e)
				child_fail(c, 12, "stream %d: commit %lld "
					   "returned %lld", p * PER + j,
					   (long long)e, (long long)got);
		}
		if (e != c->epochs / 2)
			continue;
		for (int j = 0; j < PER; j++) {
			ckpt_status_t st;
			size_t len;
			ret = ckpt_wait_durable(s[j], e, WAIT_MS);
			if (ret != 0)
				child_fail(c, 13, "stream %d: wait_durable(%lld)"
					   ": %s: %s", p * PER + j, (long long)e,
					   ckpt_strerror(ret), ckpt_last_error());
			stream_name(p * PER + j, name, sizeof(name));
			struct ckpt_region *h = sc_map(dir, name, &len);
			uint32_t fp = sc_flusher_pid(h);
			rm_unmap(h, len);
			if (fp != (uint32_t)c->sidecar)
				child_fail(c, 14, "stream %d: flushed by pid %u,"
					   " not the sidecar %d", p * PER + j,
					   fp, (int)c->sidecar);
			ckpt_status(s[j], &st);
			if (st.health != CKPT_HEALTHY &&
			    st.health != CKPT_BACKPRESSURED)
				child_fail(c, 15, "stream %d: health %d: %s",
					   p * PER + j, st.health, st.why);
			snprintf(c->backend[p], sizeof(c->backend[p]), "%s",
				 st.backend);
		}
	}
	STORE(&c->done[p], 1);
	while (!LOAD(&c->release))
		sc_nap(1000000);
	for (int j = 0; j < PER; j++) {
		ret = ckpt_close(s[j]);
		if (ret != 0)
			child_fail(c, 16, "close: %s", ckpt_strerror(ret));
	}
	_exit(0);
}

static void test_many(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	or_oracle_t *o = malloc(sizeof(*o));
	char *dir = tu_mkdtemp("sc-many");
	char log[PATH_MAX], name[32], why[300];
	uint64_t t_start = tu_now_ns();
	pid_t kids[PROCS];
	int st;

	assert_true(c != MAP_FAILED);
	assert_non_null(o);
	memset(c, 0, sizeof(*c));
	c->epochs = (int64_t)tu_scaled(1000);
	if (c->epochs < 40)
		c->epochs = 40;
	snprintf(log, sizeof(log), "%s.log", dir);
	c->sidecar = sc_start(dir, log, NULL);

	for (int p = 0; p < PROCS; p++) {
		kids[p] = sc_fork();
		assert_true(kids[p] >= 0);
		if (kids[p] == 0)
			consumer(c, dir, p);
	}
	for (int p = 0; p < PROCS; p++) {
		uint64_t t0 = tu_now_ns();
		while (!LOAD(&c->done[p])) {
			if (LOAD(&c->failed) ||
			    waitpid(kids[p], &st, WNOHANG) == kids[p]) {
				sc_log_tail(log, 30);
				fail_msg("consumer %d: %s", p, c->why);
			}
			if (tu_now_ns() - t0 > 60ull * 1000000000ull) {
				kill(c->sidecar, SIGHUP); /* its view */
				sc_nap(200000000);
				sc_log_tail(log, 60);
				fail_msg("consumer %d not done in 60 s", p);
			}
			sc_nap(1000000);
		}
	}

	/* a status report, then the drain */
	kill(c->sidecar, SIGHUP);
	for (uint64_t t0 = tu_now_ns();
	     sc_log_count(log, "streams served with") == 0;) {
		if (tu_now_ns() - t0 > 10ull * 1000000000ull)
			fail_msg("no status line after SIGHUP");
		sc_nap(1000000);
	}
	st = sc_stop(c->sidecar);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 30);
		fail_msg("sidecar: SIGTERM gave 0x%x, not exit 0", st);
	}
	int served = sc_log_count(log, ": serving:");
	int drained = sc_log_count(log, ": drained:");
	for (int i = 0; i < STREAMS; i++) {
		size_t len;
		stream_name(i, name, sizeof(name));
		struct ckpt_region *h = sc_map(dir, name, &len);
		int64_t d = sc_durable(h), cm = sc_committed(h);
		rm_unmap(h, len);
		if (cm != c->epochs || d != cm) {
			sc_log_tail(log, 30);
			fail_msg("%s after the drain: committed %lld, durable "
				 "%lld (of %lld)", name, (long long)cm,
				 (long long)d, (long long)c->epochs);
		}
	}
	STORE(&c->release, 1);
	for (int p = 0; p < PROCS; p++) {
		st = tu_wait(kids[p]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("consumer %d ended with 0x%x: %s", p, st,
				 c->why);
	}

	/* every stream from its slots alone */
	tu_unlink_regions(dir);
	for (int i = 0; i < STREAMS; i++) {
		ckpt_stream_t *s;
		ckpt_opts_t opts;
		or_opts(&opts, RING);
		stream_name(i, name, sizeof(name));
		int ret = ckpt_open(dir, name, &opts, &s);
		if (ret < 0)
			fail_msg("reopen %s: %s: %s", name, ckpt_strerror(ret),
				 ckpt_last_error());
		or_reset(o);
		or_goto(o, stream_seed(i), c->epochs);
		if (or_compare(s, o, why, sizeof(why)) < 0)
			fail_msg("%s from its slots: %s", name, why);
		assert_int_equal(ckpt_close(s), 0);
	}
	printf("%d streams of %d consumer processes, %lld epochs each, one "
	       "sidecar (backend %s); sidecar log: %d 'serving', %d "
	       "'drained' at SIGTERM; every stream exact from its slots; "
	       "%.1f s\n", STREAMS, PROCS, (long long)c->epochs,
	       c->backend[0], served, drained,
	       (double)(tu_now_ns() - t_start) / 1e9);
	assert_true(served >= STREAMS);
	assert_int_equal(drained, STREAMS);
	free(o);
	munmap(c, sizeof(*c));
	sc_log_done(log);
	tu_rmdir(dir);
}

static void test_failed_stream(void **state)
{
	(void)state;
	enum { N = 4, ROUNDS = 6 };
	char *dir = tu_mkdtemp("sc-fail");
	char log[PATH_MAX], name[32], needle[64];
	static const char *const extra[] = { "--fault", "eio_sync_at=3",
					     NULL };
	ckpt_stream_t *s[N];
	ckpt_opts_t opts;
	int failed[N] = { 0 }, nfailed = 0, st;

	snprintf(log, sizeof(log), "%s.log", dir);
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f-%d", i);
		assert_int_equal(ckpt_open(dir, name, &opts, &s[i]), 0);
	}
	pid_t sc = sc_start(dir, log, extra);
	for (int64_t e = 1; e <= ROUNDS; e++)
		for (int i = 0; i < N; i++) {
			static uint8_t buf[OR_VAL_MAX];
			or_epoch_t g;
			if (failed[i])
				continue;
			or_gen(stream_seed(i), e, &g);
			assert_int_equal(or_stage(s[i], &g, buf, NULL), 0);
			assert_int_equal(ckpt_commit(s[i]), e);
			int ret = ckpt_wait_durable(s[i], e, WAIT_MS);
			if (ret == 0)
				continue;
			if (ret != CKPT_EFAILED) {
				sc_log_tail(log, 30);
				fail_msg("f-%d epoch %lld: %s", i, (long long)e,
					 ckpt_strerror(ret));
			}
			ckpt_status_t stt;
			ckpt_status(s[i], &stt);
			if (stt.health != CKPT_FAILED || stt.error != -EIO ||
			    !strstr(stt.why, "fdatasync"))
				fail_msg("f-%d: health %d, error %d, why '%s'",
					 i, stt.health, stt.error, stt.why);
			failed[i] = 1;
			nfailed++;
		}
	assert_int_equal(nfailed, 1);
	if (waitpid(sc, &st, WNOHANG) == sc)
		fail_msg("the sidecar ended (0x%x) after a stream failed", st);
	sc_nap(100000000); /* five scans: the failed one stays dropped */

	/* Its consumer opens it again (the cause is gone: the fault fired
	 * once): that is the retry.  It waits for the sidecar, rather than
	 * answering CKPT_EFAILED, and the sidecar takes it again; what the
	 * ring kept becomes durable and recovers exactly. */
	int fi = -1;
	for (int i = 0; i < N; i++)
		if (failed[i])
			fi = i;
	snprintf(name, sizeof(name), "f-%d", fi);
	assert_int_equal(ckpt_close(s[fi]), 0);
	assert_int_equal(ckpt_open(dir, name, &opts, &s[fi]), 0);
	{
		ckpt_status_t stt;
		or_oracle_t *o = malloc(sizeof(*o));
		char why[256];
		assert_non_null(o);
		or_reset(o);
		assert_int_equal(ckpt_status(s[fi], &stt), 0);
		int64_t last = stt.committed_epoch;
		/* recovered from the ring; waiting for a flusher, not failed */
		assert_int_equal(ckpt_recovered_epoch(s[fi]), last);
		assert_true(stt.health != CKPT_FAILED && stt.error == 0);
		int ret = ckpt_wait_durable(s[fi], last, WAIT_MS);
		if (ret != 0) {
			sc_log_tail(log, 30);
			fail_msg("f-%d reopened: wait_durable(%lld): %s", fi,
				 (long long)last, ckpt_strerror(ret));
		}
		assert_int_equal(ckpt_status(s[fi], &stt), 0);
		assert_int_equal(stt.health, CKPT_HEALTHY);
		assert_int_equal(stt.error, 0);
		or_goto(o, stream_seed(fi), last);
		if (or_compare(s[fi], o, why, sizeof(why)) < 0)
			fail_msg("f-%d reopened: %s", fi, why);
		printf("f-%d reopened after its failure: retried by the sidecar, "
		       "epoch %lld durable\n", fi, (long long)last);
		free(o);
	}
	st = sc_stop(sc);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 30);
		fail_msg("sidecar: SIGTERM gave 0x%x", st);
	}
	for (int i = 0; i < N; i++) {
		snprintf(needle, sizeof(needle), "stream f-%d in", i);
		int lines = sc_log_count(log, needle);
		/* serving + drained; the failed one: serving, failed and
		 * dropped, serving again (retrying), drained */
		if (lines != (i == fi ? 4 : 2)) {
			sc_log_tail(log, 30);
			fail_msg("%d log lines on f-%d, want %d", lines, i,
				 i == fi ? 4 : 2);
		}
		assert_int_equal(ckpt_close(s[i]), 0);
	}
	assert_int_equal(sc_log_count(log, "dropped"), 1);
	assert_int_equal(sc_log_count(log, "retrying"), 1);
	assert_int_equal(sc_log_count(log, ": drained:"), N);
	printf("1 of %d streams failed on an injected EIO of its datasync: "
	       "dropped with one log line, served again once reopened; the "
	       "%d others served to the end\n", N, N - 1);
	sc_log_done(log);
	tu_rmdir(dir);
}

/* The consumer reopens the instant it learns of the failure, before the
 * daemon's scan has even seen it: the retry must still happen. */
static void test_failed_reopen_at_once(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sc-refail");
	char log[PATH_MAX], why[256];
	static const char *const extra[] = { "--fault", "eio_sync_at=1",
					     NULL };
	static uint8_t buf[OR_VAL_MAX];
	or_oracle_t *o = malloc(sizeof(*o));
	ckpt_stream_t *s;
	ckpt_status_t stt;
	ckpt_opts_t opts;
	or_epoch_t g;
	int64_t e = 0;
	int ret, st;

	assert_non_null(o);
	or_reset(o);
	snprintf(log, sizeof(log), "%s.log", dir);
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, "r", &opts, &s), 0);
	pid_t sc = sc_start(dir, log, extra);
	do { /* the daemon's first write fails */
		or_gen(seed ^ 3, ++e, &g);
		assert_int_equal(or_stage(s, &g, buf, NULL), 0);
		assert_int_equal(ckpt_commit(s), e);
		ret = ckpt_wait_durable(s, e, WAIT_MS);
	} while (ret == 0 && e < 5);
	assert_int_equal(ret, CKPT_EFAILED);
	/* at once: close, open again, and wait */
	assert_int_equal(ckpt_close(s), 0);
	assert_int_equal(ckpt_open(dir, "r", &opts, &s), 0);
	assert_int_equal(ckpt_status(s, &stt), 0);
	/* waiting for the retry, and saying after what; or already taken */
	printf("right after the reopen: health %d: %s\n", stt.health, stt.why);
	assert_true(stt.error == 0);
	assert_true(stt.health == CKPT_HEALTHY ||
		    (stt.health == CKPT_NOFLUSHER &&
		     strstr(stt.why, "retry after") &&
		     strstr(stt.why, "fdatasync")));
	ret = ckpt_wait_durable(s, e, WAIT_MS);
	if (ret != 0) {
		sc_log_tail(log, 30);
		fail_msg("reopened at once: wait_durable(%lld): %s",
			 (long long)e, ckpt_strerror(ret));
	}
	assert_int_equal(ckpt_status(s, &stt), 0);
	assert_int_equal(stt.health, CKPT_HEALTHY);
	or_goto(o, seed ^ 3, e);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		fail_msg("reopened at once: %s", why);
	st = sc_stop(sc);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(sc_log_count(log, "retrying"), 1);
	assert_int_equal(ckpt_close(s), 0);
	printf("reopened the instant epoch %lld failed: retried, durable, "
	       "exact\n", (long long)e);
	free(o);
	sc_log_done(log);
	tu_rmdir(dir);
}

static void test_not_ours(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sc-notours");
	char log[PATH_MAX];
	ckpt_stream_t *s, *ns;
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	ckpt_opts_t opts;
	int st, n = 0;

	snprintf(log, sizeof(log), "%s.log", dir);
	pid_t sc = sc_start(dir, log, NULL);

	/* producer-only: the slots are not its store; its reader flushes */
	ckpt_opts_init(&opts);
	opts.ring_size = RING;
	opts.max_value = 1024;
	opts.max_meta = 1024;
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	opts.flags = CKPT_O_NOSLOTS;
	assert_int_equal(ckpt_open(dir, "noslots", &opts, &ns), 0);
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(ckpt_put(ns, "k", 1, "v", 1), 0);
		assert_int_equal(ckpt_commit(ns), i);
	}

	/* in-process: every open takes the flusher lock itself */
	or_opts(&opts, RING);
	for (int i = 0; i < 40; i++) {
		int ret = ckpt_open(dir, "inproc", &opts, &s);
		if (ret < 0) {
			sc_log_tail(log, 20);
			fail_msg("in-process open %d: %s: %s", i,
				 ckpt_strerror(ret), ckpt_last_error());
		}
		assert_int_equal(ckpt_put(s, "k", 1, "v", 1), 0);
		int64_t e = ckpt_commit(s);
		assert_true(e > 0);
		if (i % 4 == 0)
			assert_int_equal(ckpt_wait_durable(s, e, WAIT_MS), 0);
		sc_nap(5000000);
		assert_int_equal(ckpt_close(s), 0);
	}
	assert_int_equal(ckpt_reader_open(dir, "noslots", 0, &r), 0);
	while (ckpt_reader_next(r, &ep) > 0)
		n++;
	assert_int_equal(n, 5);
	assert_int_equal(ckpt_reader_close(r), 0);
	assert_int_equal(ckpt_close(ns), 0);

	st = sc_stop(sc);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (sc_log_count(log, ": serving:") != 0) {
		sc_log_tail(log, 20);
		fail_msg("the sidecar served a stream that is not its own");
	}
	printf("40 in-process opens and a producer-only stream beside a "
	       "scanning sidecar: none taken\n");
	sc_log_done(log);
	tu_rmdir(dir);
}

static void commit_wait(ckpt_stream_t *s, uint64_t sd, int64_t from,
			int64_t to, const char *log)
{
	static uint8_t buf[OR_VAL_MAX];
	or_epoch_t g;

	for (int64_t e = from; e <= to; e++) {
		or_gen(sd, e, &g);
		assert_int_equal(or_stage(s, &g, buf, NULL), 0);
		assert_int_equal(ckpt_commit(s), e);
	}
	int ret = ckpt_wait_durable(s, to, WAIT_MS);
	if (ret != 0) {
		sc_log_tail(log, 20);
		fail_msg("wait_durable(%lld): %s", (long long)to,
			 ckpt_strerror(ret));
	}
}

static void test_replaced(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sc-replaced");
	char log[PATH_MAX], why[300];
	or_oracle_t *o = malloc(sizeof(*o));
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	int st;

	assert_non_null(o);
	snprintf(log, sizeof(log), "%s.log", dir);
	pid_t sc = sc_start(dir, log, NULL);
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, "r", &opts, &s), 0);
	commit_wait(s, seed ^ 1, 1, 30, log);
	assert_int_equal(ckpt_close(s), 0);

	/* a new history under the same name, while the old is served */
	opts.flags = CKPT_O_RESET;
	assert_int_equal(ckpt_open(dir, "r", &opts, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), 0);
	commit_wait(s, seed ^ 2, 1, 10, log);
	assert_int_equal(ckpt_close(s), 0);

	/* removed under the sidecar while it serves it: served on while
	 * its consumer lives (it commits into its mapping), dropped when it
	 * closes */
	opts.flags = 0;
	assert_int_equal(ckpt_open(dir, "gone", &opts, &s), 0);
	commit_wait(s, seed ^ 3, 1, 5, log);
	size_t len;
	char shm[320];
	struct ckpt_region *h = sc_map(dir, "gone", &len);
	assert_int_equal(sc_flusher_pid(h), (uint32_t)sc);
	assert_int_equal(ckpt__region_name(dir, "gone", shm, sizeof(shm)), 0);
	assert_int_equal(shm_unlink(shm), 0);
	sc_nap(100000000); /* five scans */
	commit_wait(s, seed ^ 3, 6, 10, log);
	assert_int_equal(sc_flusher_pid(h), (uint32_t)sc);
	assert_int_equal(ckpt_close(s), 0);
	/* our mapping keeps the memory: we see the sidecar let go */
	for (uint64_t t0 = tu_now_ns(); sc_flusher_pid(h) == (uint32_t)sc;) {
		if (tu_now_ns() - t0 > 30ull * 1000000000ull) {
			sc_log_tail(log, 20);
			fail_msg("a removed region is still served after 30 s");
		}
		sc_nap(2000000);
	}
	rm_unmap(h, len);

	st = sc_stop(sc);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (sc_log_count(log, "region replaced") != 1 ||
	    sc_log_count(log, "was removed from") != 1 ||
	    sc_log_count(log, "region removed; no longer served") != 1) {
		sc_log_tail(log, 20);
		fail_msg("want one line each: region replaced, was removed, "
			 "region removed");
	}
	/* the new history alone, from the slots */
	tu_unlink_regions(dir);
	or_opts(&opts, RING);
	assert_int_equal(ckpt_open(dir, "r", &opts, &s), 0);
	or_reset(o);
	or_goto(o, seed ^ 2, 10);
	if (or_compare(s, o, why, sizeof(why)) < 0)
		fail_msg("after the reset: %s", why);
	assert_int_equal(ckpt_close(s), 0);
	free(o);
	sc_log_done(log);
	tu_rmdir(dir);
}

static void test_reset_storm(void **state)
{
	(void)state;
	static const char *const fast[] = { "--scan-ms", "1", NULL };
	char *dir = tu_mkdtemp("sc-reset");
	char log[PATH_MAX], why[300];
	or_oracle_t *o = malloc(sizeof(*o));
	int rounds = (int)tu_scaled(60);
	ckpt_stream_t *s;
	ckpt_opts_t opts;
	int st;

	assert_non_null(o);
	if (rounds < 20)
		rounds = 20;
	snprintf(log, sizeof(log), "%s.log", dir);
	pid_t sc = sc_start(dir, log, fast);
	or_opts(&opts, RING);
	opts.flusher = CKPT_FLUSHER_EXTERNAL;
	for (int i = 0; i < rounds; i++) {
		uint64_t sd = seed ^ (0x5e5e7ULL * (uint64_t)(i + 1));
		opts.flags = CKPT_O_RESET;
		assert_int_equal(ckpt_open(dir, "storm", &opts, &s), 0);
		assert_int_equal(ckpt_recovered_epoch(s), 0);
		commit_wait(s, sd, 1, 5, log);
		assert_int_equal(ckpt_close(s), 0);
		opts.flags = 0;
		assert_int_equal(ckpt_open(dir, "storm", &opts, &s), 0);
		or_reset(o);
		or_goto(o, sd, 5);
		if (or_compare(s, o, why, sizeof(why)) < 0) {
			sc_log_tail(log, 20);
			fail_msg("round %d, after a reset: %s", i, why);
		}
		assert_int_equal(ckpt_close(s), 0);
	}
	st = sc_stop(sc);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	printf("%d resets beside a sidecar scanning every ms: each reopen "
	       "recovered its own history\n", rounds);
	free(o);
	sc_log_done(log);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_failed_stream),
		cmocka_unit_test(test_failed_reopen_at_once),
		cmocka_unit_test(test_not_ours),
		cmocka_unit_test(test_replaced),
		cmocka_unit_test(test_reset_storm),
	};
	sc_daemon();
	seed = tu_seed("test_sidecar_many");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
