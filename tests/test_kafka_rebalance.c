/*
 * test_kafka_rebalance.c - two consumers of one group on one host while
 * records flow: partitions move between them by rebalance (a second member
 * joins, one is SIGKILLed, it rejoins, one leaves); every partition's state
 * moves with it through its stream.  The final per-key totals must equal
 * the oracle exactly.
 *
 * Consumers are child processes (this program re-executed as "consume"),
 * group mode.  Their stdout lines ("assigned <stream>: ...", "revoked
 * <stream>: ...") tell the test who owns which partition; each step waits
 * for the ownership it expects, so the schedule follows the group's real
 * rebalances (3-10 s each in the mock cluster) instead of guessing their
 * length.  The waits are bounded only to report a stuck group.
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

#define TOPIC "moves"
#define GROUP "movers"
#define PARTS 4
#define WAIT_MS 120000 /* liveness bound of one step */

/* A group member: its process, its stdout, what it owns now. */
struct member {
	const char *name;
	pid_t pid;
	int fd;
	char buf[8192];
	size_t len;
	int owns[PARTS];
	char log[4200];
};

static struct member ma = { .name = "a", .pid = -1, .fd = -1 };
static struct member mb = { .name = "b", .pid = -1, .fd = -1 };
static int assigns[PARTS]; /* times each partition was assigned */

static void kill_members(void)
{
	struct member *m[2] = { &ma, &mb };
	int i;
	for (i = 0; i < 2; i++)
		if (m[i]->pid > 0) {
			kill(m[i]->pid, SIGKILL);
			tu_wait(m[i]->pid);
			m[i]->pid = -1;
		}
}

static void spawn(struct member *m, const char *bootstrap, const char *dir)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		fail_msg("pipe: %s", strerror(errno));
	m->pid = fork();
	if (m->pid == 0) {
		char *argv[20];
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
		argv[i++] = (char *)"--batch-ms";
		argv[i++] = (char *)"50";
		argv[i] = NULL;
		/* async-signal-safe only: the parent runs threads */
		fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || dup2(pfd[1], 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (m->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	close(pfd[1]);
	m->fd = pfd[0];
	m->len = 0;
	memset(m->owns, 0, sizeof(m->owns));
}

/* "assigned movers.moves.3: ..." -> 3 and *assigned 1; "revoked ..." ->
 * 3 and 0; other lines -1. */
static int parse_line(const char *line, int *assigned)
{
	static const char stream[] = GROUP "." TOPIC ".";
	const char *at;
	char *end;
	long p;
	if (!strncmp(line, "assigned ", 9)) {
		*assigned = 1;
		at = line + 9;
	} else if (!strncmp(line, "revoked ", 8)) {
		*assigned = 0;
		at = line + 8;
	} else {
		return -1;
	}
	if (strncmp(at, stream, sizeof(stream) - 1))
		return -1;
	p = strtol(at + sizeof(stream) - 1, &end, 10);
	if (*end != ':' || p < 0 || p >= PARTS)
		return -1;
	return (int)p;
}

/* Take in what @m printed; 0, or -1 at end of its output. */
static int drain(struct member *m)
{
	char *nl;
	ssize_t n;
	if (m->fd < 0)
		return -1;
	n = read(m->fd, m->buf + m->len, sizeof(m->buf) - 1 - m->len);
	if (n <= 0)
		return -1;
	m->len += (size_t)n;
	m->buf[m->len] = '\0';
	while ((nl = strchr(m->buf, '\n'))) {
		int assigned, p;
		*nl = '\0';
		p = parse_line(m->buf, &assigned);
		if (p >= 0) {
			m->owns[p] = assigned;
			assigns[p] += assigned;
			printf("  %s %s partition %d\n", m->name,
			       assigned ? "assigned" : "revoked", p);
		}
		m->len -= (size_t)(nl + 1 - m->buf);
		memmove(m->buf, nl + 1, m->len + 1);
	}
	return 0;
}

static int count(const struct member *m)
{
	int p, n = 0;
	for (p = 0; p < PARTS; p++)
		n += m->owns[p];
	return n;
}

/* Wait (reading both members) until a owns @na and b owns @nb partitions,
 * each partition exactly once when both counts are given; -1 = "any > 0". */
static void wait_owned(int na, int nb, const char *step)
{
	uint64_t deadline = tu_now_ns() + WAIT_MS * 1000000ull;
	for (;;) {
		struct pollfd p[2] = { { .fd = ma.fd, .events = POLLIN },
				       { .fd = mb.fd, .events = POLLIN } };
		int ca = count(&ma), cb = count(&mb), q, both = 1;
		for (q = 0; q < PARTS; q++)
			both &= ma.owns[q] + mb.owns[q] == 1;
		if ((na < 0 ? ca > 0 : ca == na) && (nb < 0 ? cb > 0 : cb == nb) &&
		    both)
			return;
		if (tu_now_ns() > deadline)
			fail_msg("%s: a owns %d, b owns %d partitions after %d s "
				 "(logs %s, %s)", step, ca, cb, WAIT_MS / 1000,
				 ma.log, mb.log);
		if (poll(p, 2, 1000) <= 0)
			continue;
		if ((p[0].revents & (POLLIN | POLLHUP)) && drain(&ma) < 0) {
			close(ma.fd);
			ma.fd = -1;
		}
		if ((p[1].revents & (POLLIN | POLLHUP)) && drain(&mb) < 0) {
			close(mb.fd);
			mb.fd = -1;
		}
	}
}

static void stop(struct member *m, int sig)
{
	int st;
	kill(m->pid, sig);
	st = tu_wait(m->pid);
	m->pid = -1;
	if (sig == SIGKILL) {
		if (!WIFSIGNALED(st))
			fail_msg("member %s ended with status 0x%x before the "
				 "kill", m->name, st);
		memset(m->owns, 0, sizeof(m->owns)); /* no revoke from the dead */
	} else {
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("member %s ended with status 0x%x (see %s)",
				 m->name, st, m->log);
		while (drain(m) == 0) /* its revoke lines */
			;
	}
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

static void test_partitions_move(void **state)
{
	char *dir = tu_mkdtemp("kreb");
	char logd[4200];
	ckpt_kafka_mock_t *m;
	ckpt_kafka_ref_opts_t o;
	const char *bs;
	int p;
	(void)state;

	snprintf(ma.log, sizeof(ma.log), "%s/a.log", dir);
	snprintf(mb.log, sizeof(mb.log), "%s/b.log", dir);
	snprintf(logd, sizeof(logd), "%s/drain.log", dir);
	OK(ckpt_kafka_mock_start(1, 0, &m));
	bs = ckpt_kafka_mock_bootstrap(m);
	OK(ckpt_kafka_mock_topic(m, TOPIC, PARTS));
	OK(ckpt_kafka_mock_produce_start(m, TOPIC, 1000, 25, 0));

	printf("a joins alone\n");
	spawn(&ma, bs, dir);
	wait_owned(PARTS, 0, "a alone");
	printf("b joins: the partitions are shared\n");
	spawn(&mb, bs, dir);
	wait_owned(-1, -1, "a and b");
	printf("a is SIGKILLed: its partitions move to b after its session\n");
	stop(&ma, SIGKILL);
	wait_owned(0, PARTS, "b alone");
	printf("a rejoins\n");
	spawn(&ma, bs, dir);
	wait_owned(-1, -1, "a back");
	printf("a leaves (SIGTERM): its partitions go to b\n");
	stop(&ma, SIGTERM);
	wait_owned(0, PARTS, "b after a left");
	printf("produced %" PRId64 "; b leaves\n", ckpt_kafka_mock_produce_stop(m));
	stop(&mb, SIGTERM);

	for (p = 0; p < PARTS; p++) {
		printf("partition %d: assigned %d times\n", p, assigns[p]);
		/* a, then the shared split, then b alone: at least 3 */
		if (assigns[p] < 3)
			fail_msg("partition %d was assigned only %d times",
				 p, assigns[p]);
	}

	/* Whatever b had not reached when it left: a plain drain. */
	memset(&o, 0, sizeof(o));
	o.bootstrap = bs;
	o.group = GROUP;
	o.topic = TOPIC;
	o.dir = dir;
	o.mode = CKPT_KAFKA_ASSIGN;
	o.batch_ms = 50;
	o.exit_idle_ms = 2000;
	o.quiet = 1;
	OK(ckpt_kafka_ref_run(&o, NULL));

	kc_check_exact(bs, dir, GROUP, TOPIC, PARTS, "", NULL);
	ckpt_kafka_mock_stop(m);
	tu_rmdir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partitions_move),
	};
	if (argc > 1 && !strcmp(argv[1], "consume"))
		return ckpt_kafka_ref_main(argc - 1, argv + 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(kill_members);
	printf("seed: none (the schedule follows the group's rebalances)\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
