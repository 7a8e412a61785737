/*
 * test_security.c - what shmckpt creates is private whatever the umask, a
 * symlink planted where a slot or the stream directory belongs is not
 * followed (its target is left untouched), and another uid can neither
 * attach to a region nor open the stream.
 *
 * The other-uid case needs root (to become nobody); without it, it skips
 * that case and says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "region.h"
#include "shmckpt.h"
#include "testutil.h"

static void make_stream(const char *dir, const char *name, int keep_region)
{
	ckpt_stream_t *s;
	ckpt_opts_t o;

	ckpt_opts_init(&o);
	if (keep_region)
		o.flusher = CKPT_FLUSHER_EXTERNAL; /* region stays after close */
	assert_int_equal(ckpt_open(dir, name, &o, &s), 0);
	assert_int_equal(ckpt_put(s, "k", 1, "v", 1), 0);
	assert_true(ckpt_commit(s) > 0);
	if (!keep_region)
		assert_int_equal(ckpt_wait_durable(s, 1, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);
}

static unsigned mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	return st.st_mode & 07777;
}

static void test_private_whatever_the_umask(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sec-umask");
	char path[4200], rname[300];
	const char *files[] = { "slot-0", "slot-1", "lock" };
	mode_t old = umask(0); /* the most permissive a caller could set */

	make_stream(dir, "open.1", 1);
	umask(old);
	snprintf(path, sizeof(path), "%s/open.1", dir);
	assert_int_equal(mode_of(path), 0700);
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/open.1/%s", dir, files[i]);
		if (mode_of(path) != 0600)
			fail_msg("%s has mode %o under umask 0, not 0600", path,
				 mode_of(path));
	}
	assert_int_equal(ckpt__region_name(dir, "open.1", rname, sizeof(rname)),
			 0);
	snprintf(path, sizeof(path), "/dev/shm%s", rname);
	assert_int_equal(mode_of(path), 0600);
	tu_rmdir(dir);
}

/* A slot replaced by a symlink to a file of value: open refuses, says
 * why, and the file pointed to is byte for byte what it was. */
static void test_planted_slot_symlink(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sec-link");
	char slot[4200], victim[4200], buf[64];
	const char *precious = "precious bytes, not a slot\n";
	ckpt_stream_t *s = NULL;
	int fd, ret;

	make_stream(dir, "ln", 0);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, precious, strlen(precious)),
			 (ssize_t)strlen(precious));
	close(fd);
	for (int i = 0; i < 2; i++) {
		snprintf(slot, sizeof(slot), "%s/ln/slot-%d", dir, i);
		assert_int_equal(unlink(slot), 0);
		assert_int_equal(symlink(victim, slot), 0);
		ret = ckpt_open(dir, "ln", NULL, &s);
		if (ret >= 0)
			fail_msg("slot-%d as a symlink: open succeeded", i);
		assert_null(s);
		assert_non_null(strstr(ckpt_last_error(), "symlink"));
		/* the file behind the link is untouched */
		fd = open(victim, O_RDONLY);
		assert_true(fd >= 0);
		memset(buf, 0, sizeof(buf));
		assert_int_equal(read(fd, buf, sizeof(buf)),
				 (ssize_t)strlen(precious));
		close(fd);
		assert_string_equal(buf, precious);
		/* put a real (blank) slot back for the next round */
		assert_int_equal(unlink(slot), 0);
	}
	tu_rmdir(dir);
}

static void test_names_refused(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("sec-names");
	char longest[CKPT_NAME_MAX + 2];
	const char *bad[] = { "a/b", "/abs", "..", ".", "../up", "sp ace",
			      "nul\x01", "" };
	ckpt_stream_t *s = NULL;

	memset(longest, 'n', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0'; /* 129 bytes: one too many */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ckpt_open(dir, bad[i], NULL, &s), -EINVAL);
	assert_int_equal(ckpt_open(dir, longest, NULL, &s), -EINVAL);
	assert_null(s);
	/* nothing was created for them */
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", dir);
	assert_int_equal(system(cmd), 0);
	tu_rmdir(dir);
}

/* Another uid (nobody) tries the region and the stream of root. */
static void test_other_uid(void **state)
{
	(void)state;
	char *dir;
	pid_t pid;

	if (geteuid() != 0) {
		printf("SKIP (this case): needs root to run as another uid\n");
		skip();
	}
	dir = tu_mkdtemp("sec-uid");
	/* the parent directory is world-readable, so only our own modes
	 * keep nobody out */
	assert_int_equal(chmod(dir, 0755), 0);
	make_stream(dir, "mine", 1);
	char rname[300];
	assert_int_equal(ckpt__region_name(dir, "mine", rname, sizeof(rname)),
			 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ckpt_reader_t *r = NULL;
		ckpt_stream_t *s = NULL;
		int a, b, c;
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(9);
		a = ckpt_reader_open(dir, "mine", CKPT_R_NOLOCK, &r);
		b = ckpt_reader_open(dir, "mine", 0, &r);
		c = ckpt_open(dir, "mine", NULL, &s);
		/* root's region by its very name, bypassing the library */
		int fd = shm_open(rname, O_RDONLY, 0);
		int e = fd < 0 ? errno : 0;
		printf("as nobody: reader %s; locked reader %s; open %s; "
		       "shm_open of root's region: %s\n", ckpt_strerror(a),
		       ckpt_strerror(b), ckpt_strerror(c), strerror(e));
		fflush(NULL);
		_exit(a < 0 && b < 0 && c < 0 && !r && !s && fd < 0 &&
				      e == EACCES
			      ? 0
			      : 1);
	}
	int st = tu_wait(pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_private_whatever_the_umask),
		cmocka_unit_test(test_planted_slot_symlink),
		cmocka_unit_test(test_names_refused),
		cmocka_unit_test(test_other_uid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
