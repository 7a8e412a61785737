/*
 * test_fork.c - the fork caveat of shmckpt.h, kept: a child of a process
 * that holds a stream with a flusher thread opens a stream of its own and
 * gets a flusher of its own (the parent's thread does not exist in the
 * child), and the parent's stream goes on unharmed.
 *
 * Not in the ThreadSanitizer run: TSan refuses to start a thread in the
 * child of a multi-threaded process ("starting new threads after
 * multi-threaded fork is not supported"), which is this test's subject.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmckpt.h"
#include "testutil.h"

static void test_child_opens_its_own(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("fork");
	ckpt_stream_t *a;
	int64_t e;
	pid_t pid;

	assert_int_equal(ckpt_open(dir, "parent", NULL, &a), 0);
	assert_int_equal(ckpt_put(a, "k", 1, "1", 1), 0);
	assert_int_equal(ckpt_commit(a), 1);
	/* fork once our flusher is idle: a thread inside malloc at the
	 * instant of fork leaves ASan's allocator locked in the child
	 * (glibc's malloc is fork-safe; the sanitizer's is not) */
	assert_int_equal(ckpt_wait_durable(a, 1, 10000), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ckpt_stream_t *b;
		int ret = ckpt_open(dir, "child", NULL, &b);
		if (ret < 0)
			_exit(2);
		ckpt_put(b, "k", 1, "v", 1);
		int64_t ce = ckpt_commit(b);
		ret = ckpt_wait_durable(b, ce, 10000);
		if (ret < 0) {
			fprintf(stderr, "child: wait_durable: %s\n",
				ckpt_strerror(ret));
			_exit(3);
		}
		_exit(ckpt_close(b) == 0 ? 0 : 4);
	}
	int st = tu_wait(pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* the parent's flusher is still its own */
	assert_int_equal(ckpt_put(a, "k", 1, "2", 1), 0);
	e = ckpt_commit(a);
	assert_int_equal(e, 2);
	assert_int_equal(ckpt_wait_durable(a, e, 10000), 0);
	assert_int_equal(ckpt_close(a), 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_opens_its_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
