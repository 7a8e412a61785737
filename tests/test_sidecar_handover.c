/*
 * test_sidecar_handover.c - a stream changes hands between the sidecar and
 * an in-process flusher, both ways, with no epoch lost:
 *   - opened with CKPT_FLUSHER_EXTERNAL (the sidecar serves it), closed,
 *     then opened with a flusher thread: the sidecar hands it over once
 *     what was committed is durable, and the open gets it;
 *   - an in-process consumer killed with epochs still in its ring, then
 *     reopened with CKPT_FLUSHER_EXTERNAL: the sidecar takes it (the mode
 *     is each open's, not the creator's) and makes them durable.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmckpt.h"
#include "fault.h"
#include "testutil.h"
#include "sidecar.h"

static void commit_n(ckpt_stream_t *s, int64_t from, int64_t to)
{
	for (int64_t e = from; e <= to; e++) {
		assert_int_equal(ckpt_offset(s, "t", 0, e), 0);
		assert_int_equal(ckpt_put(s, "last", 4, &e, sizeof(e)), 0);
		assert_int_equal(ckpt_commit(s), e);
	}
}

static void check_state(ckpt_stream_t *s, int64_t e)
{
	const void *v;
	size_t vlen;
	int64_t got, off;

	assert_int_equal(ckpt_recovered_epoch(s), e);
	assert_int_equal(ckpt_get(s, "last", 4, &v, &vlen), 0);
	assert_int_equal(vlen, sizeof(got));
	memcpy(&got, v, sizeof(got));
	assert_int_equal(got, e);
	assert_int_equal(ckpt_get_offset(s, "t", 0, &off), 0);
	assert_int_equal(off, e);
}

static void test_handover_both_ways(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sc-handover");
	char log[PATH_MAX];
	ckpt_stream_t *s;
	ckpt_opts_t ext;
	pid_t sc;

	sc_daemon(); /* skips, saying why, without the daemon */
	snprintf(log, sizeof(log), "%s.log", dir);
	sc = sc_start(dir, log, NULL);
	ckpt_opts_init(&ext);
	ext.flusher = CKPT_FLUSHER_EXTERNAL;

	/* 1. sidecar -> in-process */
	assert_int_equal(ckpt_open(dir, "h", &ext, &s), 0);
	commit_n(s, 1, 200);
	assert_int_equal(ckpt_wait_durable(s, 100, 20000), 0);
	assert_int_equal(ckpt_close(s), 0);
	assert_int_equal(ckpt_open(dir, "h", NULL, &s), 0); /* waits */
	check_state(s, 200);
	commit_n(s, 201, 250);
	assert_int_equal(ckpt_wait_durable(s, 250, 20000), 0);
	assert_int_equal(ckpt_close(s), 0);

	/* 2. in-process, killed -> sidecar */
	fflush(NULL);
	pid_t c = sc_fork();
	if (c == 0) {
		ckpt_opts_t slow;
		/* writes take a minute: the epochs are in the ring only
		 * when we die */
		static struct ckpt_fault_plan plan;
		plan.lat_min_us = plan.lat_max_us = 60000000;
		ckpt_opts_init(&slow);
		slow.fault = &plan;
		if (ckpt_open(dir, "k", &slow, &s) < 0)
			_exit(2);
		commit_n(s, 1, 50);
		kill(getpid(), SIGKILL);
	}
	int st = tu_wait(c);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(ckpt_open(dir, "k", &ext, &s), 0);
	check_state(s, 50);
	commit_n(s, 51, 60);
	assert_int_equal(ckpt_wait_durable(s, 60, 20000), 0);
	assert_int_equal(ckpt_close(s), 0);

	st = sc_stop(sc);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (sc_log_count(log, "handed over") < 1) {
		sc_log_tail(log, 20);
		fail_msg("the sidecar did not say it handed stream h over");
	}
	sc_log_done(log);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handover_both_ways),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
