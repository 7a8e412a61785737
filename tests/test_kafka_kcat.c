/*
 * test_kafka_kcat.c - kcat (Debian's Kafka client, an independent
 * implementation of the producer side) produces into 'shmckpt kafka', and
 * reads back; the reference consumer's checkpointed state must equal the
 * aggregate of the lines we gave kcat.  Skipped (77) when kcat or the
 * shmckpt binary is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt_kafka_ref.h"
#include "kafkacheck.h"
#include "testutil.h"

#define TOPIC "kc"
#define GROUP "kcg"
#define N 300

static char tool[PATH_MAX];
static pid_t kafka_pid = -1; /* 'shmckpt kafka', stopped at exit */

static void kill_kafka(void)
{
	if (kafka_pid > 0) {
		kill(kafka_pid, SIGKILL);
		tu_wait(kafka_pid);
		kafka_pid = -1;
	}
}

static void test_kcat_produces(void **state)
{
	char *dir = tu_mkdtemp("kkcat");
	char bootstrap[512] = "", path[4200], cmd[8192], line[1024];
	ckpt_kafka_agg_t *expect, *got;
	ckpt_kafka_ref_opts_t o;
	ckpt_kafka_ref_result_t res;
	int64_t next_sum, c1, s1, c2, s2;
	int pfd[2], i, st, nread = 0;
	FILE *f, *out;
	pid_t pid;
	char why[1024];
	(void)state;

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(tool, "shmckpt", "kafka", "--topic", TOPIC, "--partitions",
		      "2", (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	kafka_pid = pid;
	close(pfd[1]);
	out = fdopen(pfd[0], "r");
	assert_non_null(out);
	while (fgets(line, sizeof(line), out))
		if (sscanf(line, "bootstrap: %511s", bootstrap) == 1)
			break;
	if (!bootstrap[0])
		fail_msg("'shmckpt kafka' printed no bootstrap line");
	printf("shmckpt kafka at %s\n", bootstrap);

	/* kcat sees the embedded cluster's metadata: the topic, 2 partitions */
	snprintf(cmd, sizeof(cmd), "timeout 30 kcat -L -b '%s' -t %s 2>&1",
		 bootstrap, TOPIC);
	f = popen(cmd, "r");
	assert_non_null(f);
	nread = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "partition "))
			nread++;
	pclose(f);
	printf("kcat -L lists %d partitions of %s\n", nread, TOPIC);
	assert_int_equal(nread, 2);
	nread = 0;

	/* The records, and their aggregate computed here. */
	expect = ckpt_kafka_agg_new();
	snprintf(path, sizeof(path), "%s/records.txt", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	for (i = 0; i < N; i++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k%d", i % 7);
		fprintf(f, "%s:%d\n", key, i * 3 - 100);
		OK(ckpt_kafka_agg_add(expect, key, (size_t)kl, 1, i * 3 - 100));
	}
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "kcat -P -b '%s' -t %s -K: -l '%s' 2>&1", bootstrap, TOPIC, path);
	st = system(cmd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("kcat -P failed: status 0x%x (%s)", st, cmd);
	/* kcat reads them back, too. */
	snprintf(cmd, sizeof(cmd),
		 "timeout 30 kcat -C -b '%s' -t %s -o beginning -e -q -f '%%k:%%s\\n'",
		 bootstrap, TOPIC);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		nread++;
	pclose(f);
	printf("kcat produced %d records and read back %d\n", N, nread);
	assert_int_equal(nread, N);

	memset(&o, 0, sizeof(o));
	o.bootstrap = bootstrap;
	o.group = GROUP;
	o.topic = TOPIC;
	o.dir = dir;
	o.mode = CKPT_KAFKA_ASSIGN;
	o.batch_ms = 20;
	o.exit_idle_ms = 2000;
	o.quiet = 1;
	OK(ckpt_kafka_ref_run(&o, &res));
	assert_int_equal(res.st.messages, N);

	got = ckpt_kafka_agg_new();
	OK(ckpt_kafka_ref_load(dir, GROUP, TOPIC, 2, got, &next_sum));
	ckpt_kafka_agg_totals(expect, &c1, &s1);
	ckpt_kafka_agg_totals(got, &c2, &s2);
	printf("expected count %" PRId64 " sum %" PRId64 "; state count %" PRId64
	       " sum %" PRId64 "\n", c1, s1, c2, s2);
	if (ckpt_kafka_agg_diff(got, expect, why, sizeof(why)))
		fail_msg("state differs from kcat's records: %s", why);
	assert_int_equal(next_sum, N);

	kill(pid, SIGTERM);
	st = tu_wait(pid);
	kafka_pid = -1;
	fclose(out);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("shmckpt kafka ended with status 0x%x", st);
	ckpt_kafka_agg_free(expect);
	ckpt_kafka_agg_free(got);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kcat_produces),
	};
	char self[PATH_MAX];
	ssize_t n;

	if (system("kcat -V >/dev/null 2>&1") != 0)
		tu_skip("kcat is not installed (apt-get install kcat)");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		tu_skip("cannot find this program's path");
	self[n] = '\0';
	snprintf(tool, sizeof(tool), "%s/../bin/shmckpt", dirname(self));
	if (access(tool, X_OK) != 0)
		tu_skip("%s is not built (make tools)", tool);
	printf("seed: none (deterministic)\n");
	atexit(kill_kafka);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
