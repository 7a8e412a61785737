/*
 * test_kafka_broker_down.c - the broker goes down mid-stream (mock cluster
 * rd_kafka_mock_broker_set_down) for a few seconds and comes back.  The
 * consumer keeps what it checkpointed, librdkafka retries, consumption
 * resumes where it was: the final state equals the oracle exactly (no loss,
 * no record counted twice), and the offsets committed back to the group
 * (--commit-kafka, only durable ones, re-sent when a commit failed) reach
 * the end of the log.
 *
 * "Mid-stream" is checked, not assumed: the broker goes down only once the
 * group's committed offsets show the consumer making progress, and the test
 * requires progress after the broker is back.  The consumer's summary line
 * says how many Kafka errors it met (and retried) meanwhile.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt_kafka_ref.h"
#include "kafkacheck.h"
#include "testutil.h"

#define TOPIC "downs"
#define GROUP "downers"
#define PARTS 2
#define WAIT_MS 120000 /* liveness bound of each wait */

static pid_t child = -1;

static void kill_child(void)
{
	if (child > 0) {
		kill(child, SIGKILL);
		tu_wait(child);
		child = -1;
	}
}

static pid_t spawn(const char *bootstrap, const char *dir, const char *out,
		   const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[24];
		int i = 0, fo, fl;
		argv[i++] = (char *)"test";
		argv[i++] = (char *)"consume";
		argv[i++] = (char *)"--bootstrap";
		argv[i++] = (char *)bootstrap;
		argv[i++] = (char *)"--dir";
		argv[i++] = (char *)dir;
		argv[i++] = (char *)"--group";
		argv[i++] = (char *)GROUP;
		argv[i++] = (char *)"--topic";
		argv[i++] = (char *)TOPIC;
		argv[i++] = (char *)"--assign";
		argv[i++] = (char *)"--commit-kafka";
		argv[i++] = (char *)"--batch-ms";
		argv[i++] = (char *)"50";
		/* A request sent to the broker while it is down may never be
		 * answered (the mock keeps such connections open); give up
		 * on it after 5 s instead of the default 60 s. */
		argv[i++] = (char *)"-X";
		argv[i++] = (char *)"socket.timeout.ms=5000";
		argv[i] = NULL;
		/* async-signal-safe only: the parent runs threads */
		fo = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		fl = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fo < 0 || fl < 0 || dup2(fo, 1) < 0 || dup2(fl, 2) < 0)
			_exit(127);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	child = pid;
	return pid;
}

/* Sum of the group's committed offsets (-1 while any is unavailable). */
static int64_t committed_sum(const char *bootstrap)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_t *rk;
	char es[256];
	int64_t sum = 0;
	int p;

	if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "group.id", GROUP, es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "log_level", "0", es, sizeof(es)))
		fail_msg("conf: %s", es);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, es, sizeof(es));
	if (!rk)
		fail_msg("consumer: %s", es);
	l = rd_kafka_topic_partition_list_new(PARTS);
	for (p = 0; p < PARTS; p++)
		rd_kafka_topic_partition_list_add(l, TOPIC, p);
	if (rd_kafka_committed(rk, l, 5000))
		sum = -1;
	for (p = 0; sum >= 0 && p < PARTS; p++)
		sum = l->elems[p].offset < 0 ? -1 : sum + l->elems[p].offset;
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return sum;
}

/* Wait until the group's committed offsets sum to more than @than (or to
 * exactly @exact when >= 0).  Returns the sum. */
static int64_t wait_committed(const char *bs, int64_t than, int64_t exact,
			      const char *what)
{
	uint64_t deadline = tu_now_ns() + WAIT_MS * 1000000ull;
	int64_t com;
	for (;;) {
		com = committed_sum(bs);
		if (exact >= 0 ? com == exact : com > than)
			return com;
		if (tu_now_ns() > deadline)
			fail_msg("%s: the group's committed offsets stay at %" PRId64
				 " (want %s %" PRId64 ")", what, com,
				 exact >= 0 ? "=" : ">", exact >= 0 ? exact : than);
		usleep(100000);
	}
}

static void test_broker_down_and_up(void **state)
{
	char *dir = tu_mkdtemp("kdown");
	char out[4200], log[4200], line[512];
	ckpt_kafka_mock_t *m;
	int64_t records = 0, produced, lo, hi;
	int64_t want = 0, at_down, at_up;
	long long errors = -1;
	uint64_t acked;
	const char *bs;
	FILE *f;
	int i, st;
	(void)state;

	snprintf(out, sizeof(out), "%s/consumer.out", dir);
	snprintf(log, sizeof(log), "%s/consumer.log", dir);
	OK(ckpt_kafka_mock_start(1, 0, &m));
	bs = ckpt_kafka_mock_bootstrap(m);
	OK(ckpt_kafka_mock_topic(m, TOPIC, PARTS));
	OK(ckpt_kafka_mock_produce_start(m, TOPIC, 500, 20, 0));
	spawn(bs, dir, out, log);

	/* Down only once the consumer demonstrably consumes. */
	at_down = wait_committed(bs, 200, -1, "before the outage");
	acked = ckpt_kafka_mock_produced(m);
	assert_int_equal(rd_kafka_mock_broker_set_down(ckpt_kafka_mock_cluster(m), 1),
			 0);
	printf("broker 1 down: group committed %" PRId64 ", %" PRIu64
	       " records produced\n", at_down, acked);
	sleep(4); /* the outage; records keep coming into the producer */
	assert_int_equal(rd_kafka_mock_broker_set_up(ckpt_kafka_mock_cluster(m), 1),
			 0);
	/* Back: the producer delivers again and the consumer moves on. */
	at_up = committed_sum(bs);
	printf("broker 1 up: group committed %" PRId64 "\n", at_up);
	at_up = wait_committed(bs, at_up > at_down ? at_up : at_down, -1,
			       "after the outage");
	for (i = 0; ckpt_kafka_mock_produced(m) <= acked; i++) {
		if (i > WAIT_MS / 100)
			fail_msg("the producer delivers nothing after the outage");
		usleep(100000);
	}
	sleep(1); /* records flow for a while after the outage */
	produced = ckpt_kafka_mock_produce_stop(m);
	for (i = 0; i < PARTS; i++) {
		OK(ckpt_kafka_mock_watermarks(m, TOPIC, i, &lo, &hi));
		want += hi;
	}
	/* The consumer commits durable offsets back to the group: they
	 * reach the log end, then it is stopped cleanly. */
	wait_committed(bs, 0, want, "at the end");
	printf("produced %" PRId64 ", log end %" PRId64
	       ", group committed the same\n", produced, want);
	kill(child, SIGTERM);
	st = tu_wait(child);
	child = -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("consumer ended with status 0x%x (see %s)", st, log);
	f = fopen(out, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		const char *e = strstr(line, " non-integer values, ");
		if (!strncmp(line, "consumed ", 9) && e)
			errors = strtoll(e + 21, NULL, 10);
	}
	fclose(f);
	printf("the consumer met %lld Kafka errors and retried them\n", errors);
	if (errors < 0)
		fail_msg("no summary line from the consumer (see %s)", out);

	records = kc_check_exact(bs, dir, GROUP, TOPIC, PARTS, "", NULL);
	assert_int_equal(records, want);
	ckpt_kafka_mock_stop(m);
	tu_rmdir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broker_down_and_up),
	};
	if (argc > 1 && !strcmp(argv[1], "consume"))
		return ckpt_kafka_ref_main(argc - 1, argv + 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(kill_child);
	printf("seed: none (the schedule follows the consumer's progress)\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
