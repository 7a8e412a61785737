/*
 * test_kafka_gap.c - the retention gap (SPARK-12693).  While the consumer
 * is stopped, the embedded broker's log is pruned past its checkpoint.
 *   - fail (default): refuses with CKPT_EGAP and a message naming topic,
 *     partition, checkpointed offset, earliest offset and records lost;
 *     the checkpoint is untouched, and a second start refuses the same way.
 *   - earliest: resumes at the log start and records the gap (metadata).
 *   - latest: resumes at the log end and records the gap.
 *   - at run time: the log is pruned under a running consumer; the broker's
 *     out-of-range answer takes the same policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt_kafka_ref.h"
#include "kafkacheck.h"
#include "testutil.h"

static ckpt_kafka_mock_t *m;
static char *dir;

static int run(const char *group, const char *topic, int policy,
	       ckpt_kafka_ref_result_t *res)
{
	ckpt_kafka_ref_opts_t o;
	memset(&o, 0, sizeof(o));
	o.bootstrap = ckpt_kafka_mock_bootstrap(m);
	o.group = group;
	o.topic = topic;
	o.dir = dir;
	o.mode = CKPT_KAFKA_ASSIGN;
	o.on_gap = policy;
	o.batch_ms = 20;
	o.exit_idle_ms = 2000;
	o.quiet = 1;
	o.verbose = getenv("CKPT_TEST_VERBOSE") != NULL;
	return ckpt_kafka_ref_run(&o, res);
}

/* The gap record of partition 0 of @group/@topic. */
static int read_gaps(const char *group, const char *topic,
		     ckpt_kafka_gap_t *g, int max, int64_t *total)
{
	char name[CKPT_NAME_MAX + 1];
	ckpt_stream_t *s;
	const void *meta;
	size_t len;
	int n;
	OK(ckpt_kafka_stream_name(name, sizeof(name), group, topic, 0));
	OK(ckpt_open(dir, name, NULL, &s));
	OK(ckpt_get_meta(s, &meta, &len));
	n = ckpt_kafka_gaps_parse(meta, len, g, max, total);
	if (len)
		printf("gap record of %s:\n%.*s\n", name, (int)len,
		       (const char *)meta);
	ckpt_close(s);
	return n;
}

static int64_t checkpointed_next(const char *group, const char *topic)
{
	ckpt_kafka_agg_t *a = ckpt_kafka_agg_new();
	int64_t next = -1;
	OK(ckpt_kafka_ref_load(dir, group, topic, 1, a, &next));
	ckpt_kafka_agg_free(a);
	return next;
}

/* 100 records consumed and checkpointed; then 50 more produced and the log
 * pruned past offset 120 while no consumer runs.  Returns the log start. */
static int64_t stage(const char *group, const char *topic)
{
	ckpt_kafka_ref_result_t res;
	int64_t lo, hi;
	OK(ckpt_kafka_mock_topic(m, topic, 1));
	OK(ckpt_kafka_mock_produce_n(m, topic, 5, 100));
	OK(run(group, topic, CKPT_KAFKA_GAP_FAIL, &res));
	assert_int_equal(res.st.messages, 100);
	assert_int_equal(checkpointed_next(group, topic), 100);
	OK(ckpt_kafka_mock_produce_n(m, topic, 5, 50));
	OK(ckpt_kafka_mock_prune(m, topic, 0, 120, &lo));
	OK(ckpt_kafka_mock_watermarks(m, topic, 0, &lo, &hi));
	printf("%s: checkpoint at 100, log now %" PRId64 "..%" PRId64 "\n",
	       topic, lo, hi);
	assert_true(lo > 120);
	return lo;
}

static void test_fail_refuses(void **state)
{
	ckpt_kafka_ref_result_t res;
	char want[256];
	int64_t lo = stage("gf", "gapfail");
	int i;
	(void)state;

	for (i = 0; i < 2; i++) { /* twice: the same refusal, no loop */
		int rc = run("gf", "gapfail", CKPT_KAFKA_GAP_FAIL, &res);
		const char *msg = ckpt_kafka_last_error();
		printf("refusal %d: %s\n", i + 1, msg);
		assert_int_equal(rc, CKPT_EGAP);
		assert_non_null(strstr(msg, "topic gapfail partition 0"));
		assert_non_null(strstr(msg, "checkpointed offset 100 "));
		snprintf(want, sizeof(want), "earliest available offset is %" PRId64,
			 lo);
		assert_non_null(strstr(msg, want));
		snprintf(want, sizeof(want), "%" PRId64 " records were deleted",
			 lo - 100);
		assert_non_null(strstr(msg, want));
		/* Nothing moved. */
		assert_int_equal(checkpointed_next("gf", "gapfail"), 100);
	}
}

static void test_earliest_records(void **state)
{
	ckpt_kafka_ref_result_t res;
	ckpt_kafka_gap_t g[4];
	int64_t total, lo = stage("ge", "gapearliest"), l2, hi;
	(void)state;

	OK(run("ge", "gapearliest", CKPT_KAFKA_GAP_EARLIEST, &res));
	OK(ckpt_kafka_mock_watermarks(m, "gapearliest", 0, &l2, &hi));
	assert_int_equal(res.st.gaps, 1);
	assert_int_equal(res.st.records_lost, lo - 100);
	assert_int_equal(res.st.messages, hi - lo);
	assert_int_equal(checkpointed_next("ge", "gapearliest"), hi);
	assert_int_equal(read_gaps("ge", "gapearliest", g, 4, &total), 1);
	assert_int_equal(g[0].checkpointed, 100);
	assert_int_equal(g[0].earliest, lo);
	assert_int_equal(g[0].resumed, lo);
	assert_int_equal(g[0].lost, lo - 100);
	assert_int_equal(g[0].policy, CKPT_KAFKA_GAP_EARLIEST);
	assert_int_equal(total, lo - 100);
	/* The record survives later epochs and restarts. */
	OK(ckpt_kafka_mock_produce_n(m, "gapearliest", 5, 10));
	OK(run("ge", "gapearliest", CKPT_KAFKA_GAP_FAIL, &res));
	assert_int_equal(res.st.messages, 10);
	assert_int_equal(res.st.gaps, 0);
	assert_int_equal(read_gaps("ge", "gapearliest", g, 4, &total), 1);
}

static void test_latest_records(void **state)
{
	ckpt_kafka_ref_result_t res;
	ckpt_kafka_gap_t g[4];
	int64_t total, l2, hi;
	(void)state;

	stage("gl", "gaplatest");
	OK(ckpt_kafka_mock_watermarks(m, "gaplatest", 0, &l2, &hi));
	OK(run("gl", "gaplatest", CKPT_KAFKA_GAP_LATEST, &res));
	assert_int_equal(res.st.gaps, 1);
	assert_int_equal(res.st.messages, 0);
	assert_int_equal(res.st.records_lost, hi - 100);
	assert_int_equal(checkpointed_next("gl", "gaplatest"), hi);
	assert_int_equal(read_gaps("gl", "gaplatest", g, 4, &total), 1);
	assert_int_equal(g[0].resumed, hi);
	assert_int_equal(g[0].lost, hi - 100);
	assert_int_equal(g[0].policy, CKPT_KAFKA_GAP_LATEST);
}

/*
 * The log is pruned under a running consumer: 100 records consumed and
 * checkpointed, the partition paused (a fetch cannot race the pruning),
 * 50 more produced, the log pruned past 120, the partition resumed.  Its
 * next fetch is answered "out of range" and the policy applies at run
 * time.  *k is the open handle.
 */
static void runtime_stage(const char *group, const char *topic, int mode,
			  int policy, ckpt_kafka_t **k, int64_t *lo,
			  int64_t *hi)
{
	/* A fetch in flight when the partition is paused comes back within
	 * fetch.wait.max.ms; the pause below outlasts it by far. */
	static const char *const props[] = { "fetch.wait.max.ms=10", NULL };
	ckpt_kafka_ref_result_t res;
	ckpt_kafka_conf_t c;
	rd_kafka_topic_partition_list_t *l;

	OK(ckpt_kafka_mock_topic(m, topic, 1));
	OK(ckpt_kafka_mock_produce_n(m, topic, 5, 100));
	OK(run(group, topic, CKPT_KAFKA_GAP_FAIL, &res));
	assert_int_equal(res.st.messages, 100);

	ckpt_kafka_conf_init(&c);
	c.bootstrap = ckpt_kafka_mock_bootstrap(m);
	c.group = group;
	c.topic = topic;
	c.dir = dir;
	c.mode = mode;
	c.on_gap = policy;
	c.batch_ms = 50;
	c.props = props;
	OK(ckpt_kafka_open(&c, k));
	if (mode == CKPT_KAFKA_GROUP) {
		/* the group assigns the partition within a few polls */
		ckpt_kafka_stats_t st;
		uint64_t deadline = tu_now_ns() + 120000000000ull;
		do {
			if (tu_now_ns() > deadline)
				fail_msg("the group assigned nothing in 120 s");
			assert_int_equal(ckpt_kafka_poll(*k), 0);
			ckpt_kafka_stats(*k, &st);
		} while (!st.assigned);
	}
	l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, topic, 0);
	assert_int_equal(rd_kafka_pause_partitions(ckpt_kafka_rk(*k), l), 0);
	assert_int_equal(ckpt_kafka_poll(*k), 0);
	usleep(500000);
	OK(ckpt_kafka_mock_produce_n(m, topic, 5, 50));
	OK(ckpt_kafka_mock_prune(m, topic, 0, 120, lo));
	OK(ckpt_kafka_mock_watermarks(m, topic, 0, lo, hi));
	assert_int_equal(rd_kafka_resume_partitions(ckpt_kafka_rk(*k), l), 0);
	rd_kafka_topic_partition_list_destroy(l);
}

static void runtime_gap(const char *group, const char *topic, int mode)
{
	ckpt_kafka_t *k;
	ckpt_kafka_stats_t st;
	ckpt_kafka_gap_t g[4];
	int64_t lo, hi, total;
	uint64_t deadline;
	int n = 0;

	runtime_stage(group, topic, mode, CKPT_KAFKA_GAP_EARLIEST, &k, &lo, &hi);
	/* until the gap was met and everything after it consumed (bounded
	 * only to report a stuck consumer) */
	deadline = tu_now_ns() + 120000000000ull;
	for (;;) {
		int r = ckpt_kafka_poll(k);
		if (r < 0)
			fail_msg("poll: %s", ckpt_kafka_last_error());
		n += r;
		ckpt_kafka_stats(k, &st);
		if (st.gaps && n >= hi - lo)
			break;
		if (tu_now_ns() > deadline)
			fail_msg("after 120 s: %" PRIu64 " gaps, %d records", st.gaps,
				 n);
	}
	/* a little longer: nothing more may come */
	n += ckpt_kafka_poll(k);
	ckpt_kafka_stats(k, &st);
	printf("run-time gap: log %" PRId64 "..%" PRId64 ", %d records after it, "
	       "%" PRIu64 " gaps\n", lo, hi, n, st.gaps);
	assert_int_equal(st.gaps, 1);
	assert_int_equal(st.records_lost, lo - 100);
	assert_int_equal(n, hi - lo);
	OK(ckpt_kafka_close(k));
	assert_int_equal(read_gaps(group, topic, g, 4, &total), 1);
	assert_int_equal(g[0].checkpointed, 100);
	assert_int_equal(g[0].earliest, lo);
	assert_int_equal(g[0].resumed, lo);
	assert_int_equal(total, lo - 100);
	assert_int_equal(checkpointed_next(group, topic), hi);
}

static void test_runtime_gap(void **state)
{
	(void)state;
	runtime_gap("gr", "gaprun", CKPT_KAFKA_ASSIGN);
}

/* The same as a group member: the partition is re-assigned at the new
 * start outside a rebalance (a seek is refused after an offset error). */
static void test_runtime_gap_group(void **state)
{
	(void)state;
	runtime_gap("grg", "gaprungroup", CKPT_KAFKA_GROUP);
}

/* The same at run time under the default policy: the handle fails with the
 * numbers, the checkpoint stays, a restart refuses before consuming. */
static void test_runtime_gap_fail(void **state)
{
	ckpt_kafka_ref_result_t res;
	ckpt_kafka_t *k;
	char want[256];
	int64_t lo, hi;
	uint64_t deadline;
	int r;
	(void)state;

	runtime_stage("grf", "gaprunfail", CKPT_KAFKA_ASSIGN, CKPT_KAFKA_GAP_FAIL,
		      &k, &lo, &hi);
	deadline = tu_now_ns() + 120000000000ull;
	while ((r = ckpt_kafka_poll(k)) >= 0) {
		assert_int_equal(r, 0); /* nothing past the gap is consumed */
		if (tu_now_ns() > deadline)
			fail_msg("no out-of-range answer in 120 s");
	}
	printf("run-time refusal: %s\n", ckpt_kafka_last_error());
	assert_int_equal(r, CKPT_EGAP);
	assert_non_null(strstr(ckpt_kafka_last_error(),
			       "topic gaprunfail partition 0: checkpointed "
			       "offset 100 "));
	assert_non_null(strstr(ckpt_kafka_last_error(), "(found while consuming)"));
	snprintf(want, sizeof(want), "earliest available offset is %" PRId64
		 ", so %" PRId64 " records were deleted", lo, lo - 100);
	assert_non_null(strstr(ckpt_kafka_last_error(), want));
	assert_int_equal(ckpt_kafka_poll(k), CKPT_EGAP); /* sticky */
	assert_int_equal(ckpt_kafka_close(k), CKPT_EGAP);
	assert_int_equal(checkpointed_next("grf", "gaprunfail"), 100);
	assert_int_equal(run("grf", "gaprunfail", CKPT_KAFKA_GAP_FAIL, &res),
			 CKPT_EGAP);
	assert_non_null(strstr(ckpt_kafka_last_error(), want));
	assert_non_null(strstr(ckpt_kafka_last_error(), "(found before consuming)"));
	assert_int_equal(checkpointed_next("grf", "gaprunfail"), 100);
}

static int setup(void **state)
{
	(void)state;
	dir = tu_mkdtemp("kgap");
	if (ckpt_kafka_mock_start(1, 0, &m) < 0) {
		fprintf(stderr, "mock: %s\n", ckpt_kafka_last_error());
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ckpt_kafka_mock_stop(m);
	tu_rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fail_refuses),
		cmocka_unit_test(test_earliest_records),
		cmocka_unit_test(test_latest_records),
		cmocka_unit_test(test_runtime_gap),
		cmocka_unit_test(test_runtime_gap_group),
		cmocka_unit_test(test_runtime_gap_fail),
	};
	printf("seed: none (deterministic)\n");
	return cmocka_run_group_tests(tests, setup, teardown);
}
