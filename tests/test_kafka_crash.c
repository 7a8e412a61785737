/*
 * test_kafka_crash.c - >= 50 SIGKILLs of the reference consumer at random
 * moments while records flow; the checkpointed per-key state must equal an
 * oracle computed independently from the topic: no record lost, none
 * counted twice.
 *
 * The consumer runs in child processes (this program re-executed with
 * "consume ...": the same code as 'shmckpt consume'), in --assign mode so
 * that a restart does not wait for a group rebalance, with the in-process
 * flusher: what a killed consumer committed but had not made durable yet
 * is replayed from shared memory by the next one (R3).  The broker is the
 * embedded mock cluster in this process.
 *
 * Each kill comes at a random moment after the consumer said which
 * checkpoint it resumed from (its "assigned" lines), so every kill lands
 * mid-stream, never during start-up.  Those lines are checked too: the
 * checkpointed offsets never go back from one restart to the next, and
 * they do move forward across the storm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt_kafka_ref.h"
#include "kafkacheck.h"
#include "testutil.h"

/* A call of the driver library that must succeed; else its message. */
#define TOPIC "crash"
#define GROUP "crashgrp"
#define PARTS 3
#define KEYS 40
/* Bound of a wait for a child's lines: a liveness bound (the child is
 * stuck), never a measure of speed. */
#define LINE_WAIT_MS 120000

static pid_t live_child = -1; /* killed at exit if a check fails */

static void kill_live_child(void)
{
	if (live_child > 0) {
		kill(live_child, SIGKILL);
		tu_wait(live_child);
		live_child = -1;
	}
}

/* The consumer, stdout into a pipe (*out), stderr into @log. */
static pid_t spawn_consumer(const char *bootstrap, const char *dir,
			    const char *log, const char *exit_idle, int *out)
{
	int pfd[2];
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		fail_msg("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		char *argv[16];
		int i = 0, fd;
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
		argv[i++] = (char *)"--batch-ms";
		argv[i++] = (char *)"20";
		if (exit_idle) {
			argv[i++] = (char *)"--exit-idle-ms";
			argv[i++] = (char *)exit_idle;
		}
		argv[i] = NULL;
		/* Only async-signal-safe calls between fork and exec: the
		 * parent runs threads (the mock cluster, the producer). */
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || dup2(pfd[1], 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		close(pfd[0]);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	close(pfd[1]);
	live_child = pid;
	*out = pfd[0];
	return pid;
}

/*
 * Read the child's stdout until it has printed its PARTS "assigned" lines;
 * return the sum of the checkpointed offsets they name ("none" is 0).
 */
static int64_t read_assigned(int fd, const char *log)
{
	char buf[8192];
	size_t len = 0;
	int seen = 0;
	int64_t sum = 0;
	uint64_t deadline = tu_now_ns() + LINE_WAIT_MS * 1000000ull;

	while (seen < PARTS) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *nl;
		ssize_t n;
		if (tu_now_ns() > deadline)
			fail_msg("the consumer printed %d of %d 'assigned' lines "
				 "(see %s)", seen, PARTS, log);
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			fail_msg("the consumer ended before it was assigned its "
				 "partitions (see %s)", log);
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			char name[256], off[32];
			*nl = '\0';
			if (sscanf(buf, "assigned %255[^:]: checkpoint offset %31[^,]",
				   name, off) == 2) {
				seen++;
				if (strcmp(off, "none"))
					sum += strtoll(off, NULL, 10);
			}
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
	}
	return sum;
}

static void test_sigkill_storm(void **state)
{
	uint64_t seed = tu_seed("kafka_crash"), rng = seed;
	char *dir = tu_mkdtemp("kcrash");
	char log[4200];
	ckpt_kafka_mock_t *m;
	int64_t lo_sum = 0;
	int64_t prev = 0, resumed;
	int kills = 0, progressed = 0, fd;
	int target = (int)tu_scaled(60) < 50 ? 50 : (int)tu_scaled(60);
	pid_t pid;
	int st;
	(void)state;

	snprintf(log, sizeof(log), "%s/consumers.log", dir);
	OK(ckpt_kafka_mock_start(1, 0, &m));
	OK(ckpt_kafka_mock_topic(m, TOPIC, PARTS));
	/* Records flow through every kill. */
	OK(ckpt_kafka_mock_produce_start(m, TOPIC, 2000, KEYS, 0));
	while (kills < target) {
		useconds_t life = (useconds_t)(tu_rand(&rng) % 500000);
		pid = spawn_consumer(ckpt_kafka_mock_bootstrap(m), dir, log, NULL,
				     &fd);
		resumed = read_assigned(fd, log);
		/* R3: what one consumer committed, the next one recovers,
		 * whenever the kill came. */
		if (resumed < prev)
			fail_msg("restart %d resumed at offsets summing to %" PRId64
				 ", below the %" PRId64 " of the restart before",
				 kills, resumed, prev);
		progressed += resumed > prev;
		prev = resumed;
		usleep(life);
		kill(pid, SIGKILL);
		st = tu_wait(pid);
		live_child = -1;
		close(fd);
		/* It must have died by our hand, not exited on an error. */
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
			fail_msg("consumer exited with status 0x%x before the kill "
				 "(kill %d; see %s)", st, kills, log);
		kills++;
	}
	printf("kills: %d, each after a random 0-500 ms of consuming; the "
	       "checkpoint moved forward in %d of the restarts; produced so "
	       "far %" PRIu64 "\n", kills, progressed,
	       ckpt_kafka_mock_produced(m));
	assert_true(ckpt_kafka_mock_produce_stop(m) > 0);

	/* A last run drains the topic and exits cleanly. */
	pid = spawn_consumer(ckpt_kafka_mock_bootstrap(m), dir, log, "1500", &fd);
	resumed = read_assigned(fd, log);
	if (resumed < prev)
		fail_msg("the drain resumed at %" PRId64 ", below %" PRId64,
			 resumed, prev);
	progressed += resumed > prev;
	st = tu_wait(pid);
	live_child = -1;
	close(fd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("the draining consumer ended with status 0x%x (see %s)",
			 st, log);
	/* The storm was mid-stream: the checkpoint advanced between
	 * restarts, not only in the drain (a kill needs a few ms of
	 * consuming; most lives are longer). */
	if (progressed < kills / 4)
		fail_msg("the checkpoint moved in only %d of %d restarts: the "
			 "consumers did not get to consume (see %s)",
			 progressed, kills, log);

	char ctx[48];
	snprintf(ctx, sizeof(ctx), "(seed %" PRIu64 ")", seed);
	kc_check_exact(ckpt_kafka_mock_bootstrap(m), dir, GROUP, TOPIC, PARTS,
		       ctx, &lo_sum);
	assert_int_equal(lo_sum, 0);
	ckpt_kafka_mock_stop(m);
	tu_rmdir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigkill_storm),
	};
	if (argc > 1 && !strcmp(argv[1], "consume"))
		return ckpt_kafka_ref_main(argc - 1, argv + 1);
	atexit(kill_live_child);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
