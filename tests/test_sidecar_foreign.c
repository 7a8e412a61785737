/*
 * test_sidecar_foreign.c - the sidecar refuses regions of another uid, and
 * runs unprivileged.  Needs root (to run processes as nobody, uid 65534);
 * skips otherwise.
 *
 * The checkpoint directory belongs to nobody.  A consumer running as
 * nobody opens stream "evil" there (its region is named for uid 65534) and
 * also plants a region under the name a root sidecar would use
 * ("/shmckpt.0.<dirhash>.planted", a file owned by nobody).  A root
 * consumer opens "rootstream" in the same directory.  A sidecar running as
 * root must serve rootstream (its commit becomes durable), refuse both
 * foreign regions with a log line naming the uid (once each, not once per
 * scan), and leave them untouched (no flusher pid, nothing durable).
 *
 * Then a sidecar running as nobody serves "evil" (its waits for durable
 * return) and refuses rootstream as foreign: the daemon needs no
 * privilege, and uids keep each other out both ways.
 */
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "epochgen.h"
#include "region.h"
#include "shmckpt.h"
#include "sidecar.h"
#include "testutil.h"

#define NOBODY 65534
#define RING (64u * 1024u)
#define EPOCHS 40
#define WAIT_MS 30000

static uint64_t seed;

struct ctl {
	int ready; /* nobody's consumer: committed, region planted */
	int phase2; /* parent: the nobody sidecar runs; wait for durable */
	int64_t last;
	int failed;
	char why[384];
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* In a child: say why in c->why, raise c->failed, _exit(code). */
#define child_fail(c, code, ...)                                           \
	tu_child_fail((c)->why, sizeof((c)->why), &(c)->failed, (code),   \
		      __VA_ARGS__)

static int become_nobody(void)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return -1;
	return geteuid() == NOBODY ? 0 : -1;
}

/* "/shmckpt.<uid>.<dirhash>.<name>" for any uid. */
static void name_for(const char *dir, unsigned uid, const char *name,
		     char *buf, size_t cap)
{
	char prefix[128];
	assert_int_equal(ckpt__region_prefix(dir, prefix, sizeof(prefix)), 0);
	const char *h = strchr(prefix + 1, '.'); /* ".<uid>." */
	h = strchr(h + 1, '.'); /* ".<hash>." */
	snprintf(buf, cap, "/shmckpt.%u.%.16s.%s", uid, h + 1, name);
}

static void opts_ext(ckpt_opts_t *o)
{
	ckpt_opts_init(o);
	o->ring_size = RING;
	o->max_value = 1024;
	o->max_meta = 1024;
	o->flusher = CKPT_FLUSHER_EXTERNAL;
	o->full_policy = CKPT_FULL_WAIT;
	o->full_wait_ms = WAIT_MS;
}

static int64_t commit_some(ckpt_stream_t *s, uint64_t sd, int64_t n)
{
	int64_t e = 0;
	for (int64_t i = 1; i <= n; i++) {
		if (eg_stage(s, sd, i) < 0)
			return -1;
		e = ckpt_commit(s);
		if (e != i)
			return -1;
	}
	return e;
}

static void nobody_consumer(struct ctl *c, const char *dir)
{
	char planted[300];
	ckpt_stream_t *s;
	ckpt_opts_t o;
	size_t len;
	int ret, fd;

	pid_t parent = getppid();
	if (become_nobody() < 0)
		child_fail(c, 10, "cannot become uid %d", NOBODY);
	sc_die_with(parent); /* the change of uid cleared it */
	opts_ext(&o);
	ret = ckpt_open(dir, "evil", &o, &s);
	if (ret < 0)
		child_fail(c, 11, "open as nobody: %s: %s", ckpt_strerror(ret),
			   ckpt_last_error());
	if (commit_some(s, seed ^ 1, EPOCHS) != EPOCHS)
		child_fail(c, 12, "commits as nobody: %s", ckpt_last_error());
	/* a copy of our region under root's name: a valid-looking region
	 * of a file owned by us */
	struct ckpt_region *h = rm_map(dir, "evil", 0, &len);
	name_for(dir, 0, "planted", planted, sizeof(planted));
	fd = shm_open(planted, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 ||
	    pwrite(fd, h, len, 0) != (ssize_t)len)
		child_fail(c, 13, "planting %s: %s", planted, strerror(errno));
	close(fd);
	rm_unmap(h, len);
	STORE(&c->last, EPOCHS);
	STORE(&c->ready, 1);
	while (!LOAD(&c->phase2))
		sc_nap(1000000);
	/* a sidecar of our own uid serves us */
	ret = ckpt_wait_durable(s, EPOCHS, WAIT_MS);
	if (ret != 0)
		child_fail(c, 14, "wait_durable as nobody: %s: %s",
			   ckpt_strerror(ret), ckpt_last_error());
	ret = ckpt_close(s);
	_exit(ret == 0 ? 0 : 15);
}

/* A sidecar as nobody: the log is opened as root, then privileges go. */
static pid_t start_as_nobody(const char *dir, const char *log)
{
	pid_t pid = sc_fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0600);
		pid_t parent = getppid();
		if (fd < 0 || dup2(fd, 2) < 0 || become_nobody() < 0)
			_exit(126);
		sc_die_with(parent);
		execl(sc_bin, sc_bin, "--dir", dir, "--scan-ms", "20",
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void wait_log(const char *log, const char *a, const char *b)
{
	char line[2048];
	for (uint64_t t0 = tu_now_ns();;) {
		FILE *f = fopen(log, "r");
		int found = 0;
		while (f && !found && fgets(line, sizeof(line), f))
			found = strstr(line, a) && strstr(line, b);
		if (f)
			fclose(f);
		if (found)
			return;
		if (tu_now_ns() - t0 > 10ull * 1000000000ull) {
			sc_log_tail(log, 30);
			fail_msg("no log line with '%s' and '%s' in 10 s", a, b);
		}
		sc_nap(2000000);
	}
}

static void test_foreign(void **state)
{
	(void)state;
	struct ctl *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *dir = tu_mkdtemp("sc-uid");
	char log[PATH_MAX], log2[PATH_MAX], evil[300], planted[300];
	char shmpath[400];
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int st, ret;

	assert_true(c != MAP_FAILED);
	memset(c, 0, sizeof(*c));
	assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
	snprintf(log, sizeof(log), "%s.log", dir);
	snprintf(log2, sizeof(log2), "%s.nobody.log", dir);
	name_for(dir, NOBODY, "evil", evil, sizeof(evil));
	name_for(dir, 0, "planted", planted, sizeof(planted));

	pid_t kid = sc_fork();
	assert_true(kid >= 0);
	if (kid == 0)
		nobody_consumer(c, dir);
	for (uint64_t t0 = tu_now_ns(); !LOAD(&c->ready);) {
		if (LOAD(&c->failed) || waitpid(kid, &st, WNOHANG) == kid)
			fail_msg("nobody's consumer: %s", c->why);
		if (tu_now_ns() - t0 > 30ull * 1000000000ull)
			fail_msg("nobody's consumer not ready in 30 s");
		sc_nap(1000000);
	}
	/* the planted file really is nobody's */
	struct stat sb;
	snprintf(shmpath, sizeof(shmpath), "/dev/shm%s", planted);
	assert_int_equal(stat(shmpath, &sb), 0);
	assert_int_equal(sb.st_uid, NOBODY);

	/* root: our own stream, and a root sidecar */
	opts_ext(&o);
	ret = ckpt_open(dir, "rootstream", &o, &s);
	if (ret < 0)
		fail_msg("root open: %s: %s", ckpt_strerror(ret),
			 ckpt_last_error());
	pid_t sc = sc_start(dir, log, NULL);
	assert_int_equal(commit_some(s, seed ^ 2, EPOCHS), EPOCHS);
	ret = ckpt_wait_durable(s, EPOCHS, WAIT_MS);
	if (ret != 0) {
		sc_log_tail(log, 30);
		fail_msg("root stream not served: %s: %s", ckpt_strerror(ret),
			 ckpt_last_error());
	}
	wait_log(log, "evil", "foreign");
	wait_log(log, "planted", "foreign");
	sc_nap(200000000); /* ten scans more: still one line each */

	/* untouched: nobody flushes them, nothing became durable */
	int fd = shm_open(evil, O_RDONLY, 0);
	assert_true(fd >= 0);
	struct ckpt_region *h = mmap(NULL, CKPT_REGION_HDR_SIZE, PROT_READ,
				     MAP_SHARED, fd, 0);
	close(fd);
	assert_true(h != MAP_FAILED);
	assert_int_equal(sc_flusher_pid(h), 0);
	assert_int_equal(sc_durable(h), 0);
	assert_int_equal(sc_committed(h), EPOCHS);
	munmap(h, CKPT_REGION_HDR_SIZE);

	st = sc_stop(sc);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log, 30);
		fail_msg("root sidecar: SIGTERM gave 0x%x", st);
	}
	int evil_lines = sc_log_count(log, "evil");
	int planted_lines = sc_log_count(log, "planted");
	int foreign_lines = sc_log_count(log, "foreign");
	if (evil_lines != 1 || planted_lines != 1 || foreign_lines != 2 ||
	    sc_log_count(log, "uid 65534") != 2) {
		sc_log_tail(log, 30);
		fail_msg("root sidecar log: %d lines on evil, %d on planted, "
			 "%d say foreign (want 1, 1, 2, each naming uid "
			 "65534)", evil_lines, planted_lines, foreign_lines);
	}
	assert_int_equal(sc_log_count(log, "rootstream in"), 2);
	assert_int_equal(sc_log_count(log, ": drained:"), 1);

	/* a sidecar as nobody serves nobody's stream, refuses root's */
	pid_t sc2 = start_as_nobody(dir, log2);
	STORE(&c->phase2, 1);
	st = tu_wait(kid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log2, 30);
		fail_msg("nobody's consumer ended with 0x%x: %s", st, c->why);
	}
	wait_log(log2, "rootstream", "foreign");
	st = sc_stop(sc2);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		sc_log_tail(log2, 30);
		fail_msg("nobody's sidecar: SIGTERM gave 0x%x", st);
	}
	assert_true(sc_log_count(log2, "evil in") >= 1);
	assert_true(sc_log_count(log2, "started: uid 65534") == 1);
	assert_int_equal(ckpt_close(s), 0);

	printf("root sidecar: served rootstream (%d epochs durable), refused "
	       "nobody's region and the region nobody planted under root's "
	       "name (%d 'foreign' lines, one per region); nobody's sidecar "
	       "served nobody's stream and refused root's\n", EPOCHS,
	       foreign_lines);
	shm_unlink(evil);
	shm_unlink(planted);
	munmap(c, sizeof(*c));
	sc_log_done(log);
	sc_log_done(log2);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_foreign),
	};
	if (geteuid() != 0)
		tu_skip("needs root, to run processes as uid %d (nobody)",
			NOBODY);
	sc_daemon();
	seed = tu_seed("test_sidecar_foreign");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
