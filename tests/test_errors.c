/*
 * test_errors.c - every refusal gets its exact code and a sentence that
 * says why (ckpt_last_error()), and leaves nothing broken behind.
 *
 * One writer (R9), bad names, a region of another layout version, uid or
 * mode, truncated, of another stream; files created 0600 whatever the
 * umask; a planted symlink; over-limit deltas; an epoch larger than the
 * ring; a full ring under both policies (CKPT_TEST_THREADED: a reader
 * thread frees room while the writer waits); option validation.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define RING (64u * 1024u)

/* @ret must be @code, and the message must contain @says. */
#define expect_err(ret, code, says) \
	expect_err_at((int64_t)(ret), (code), (says), __FILE__, __LINE__)

static void expect_err_at(int64_t ret, int code, const char *says,
			  const char *file, int line)
{
	if (ret != code)
		fail_msg("%s:%d: returned %lld (%s), expected %d (%s); "
			 "last error: %s",
			 file, line, (long long)ret, ckpt_strerror((int)ret),
			 code, ckpt_strerror(code), ckpt_last_error());
	if (says && !strstr(ckpt_last_error(), says))
		fail_msg("%s:%d: message '%s' does not say '%s'", file, line,
			 ckpt_last_error(), says);
}

static void small_opts(ckpt_opts_t *o)
{
	ckpt_opts_init(o);
	o->ring_size = RING;
	o->max_key = 64;
	o->max_value = 8192;
	o->max_meta = 32;
	o->flusher = CKPT_FLUSHER_EXTERNAL;
	o->flags |= CKPT_O_NOSLOTS; /* the test is the flusher */
}

static ckpt_stream_t *must_open(const char *dir, const char *name,
				const ckpt_opts_t *o)
{
	ckpt_stream_t *s = NULL;
	int ret = ckpt_open(dir, name, o, &s);
	if (ret < 0)
		fail_msg("open %s: %s: %s", name, ckpt_strerror(ret),
			 ckpt_last_error());
	return s;
}

/* Create stream @name and leave its region behind (external flusher). */
static void make_stream(const char *dir, const char *name)
{
	ckpt_opts_t o;
	small_opts(&o);
	ckpt_stream_t *s = must_open(dir, name, &o);
	assert_int_equal(ckpt_put(s, "k", 1, "v", 1), 0);
	assert_int_equal(ckpt_commit(s), 1);
	assert_int_equal(ckpt_close(s), 0);
}

/* ------------------------------------------------------------------ */

static void test_second_writer(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-r9");
	char pid[32];
	ckpt_stream_t *s = must_open(dir, "r9", NULL), *s2 = NULL;
	ckpt_reader_t *r, *r2;
	pid_t child;
	int st;

	snprintf(pid, sizeof(pid), "pid %d", (int)getpid());
	/* same process, another open: the OFD lock conflicts too */
	expect_err(ckpt_open(dir, "r9", NULL, &s2), -EBUSY, pid);
	assert_null(s2);
	assert_int_equal(ckpt_holder_pid(dir, "r9"), getpid());

	/* another process sees us as the holder */
	fflush(NULL);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		ckpt_stream_t *c = NULL;
		int ret = ckpt_open(dir, "r9", NULL, &c);
		int ok = ret == -EBUSY && strstr(ckpt_last_error(), pid) &&
			 ckpt_holder_pid(dir, "r9") == getppid();
		free(dir); /* valgrind checks the child's leaks too */
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(tu_wait(child), 0);

	/* one flusher too: the stream's own flusher thread holds that lock */
	expect_err(ckpt_reader_open(dir, "r9", 0, &r2), -EBUSY, "flusher pid");
	assert_int_equal(ckpt_close(s), 0);
	/* ... and with an external flusher, one reader excludes a second */
	{
		ckpt_opts_t o;
		small_opts(&o);
		s = must_open(dir, "r9", &o);
		assert_int_equal(ckpt_reader_open(dir, "r9", 0, &r), 0);
		expect_err(ckpt_reader_open(dir, "r9", 0, &r2), -EBUSY,
			   "flusher pid");
		ckpt_reader_close(r);
		assert_int_equal(ckpt_close(s), 0);
	}
	assert_int_equal(ckpt_holder_pid(dir, "r9"), 0);

	/* a writer in another process, then killed: the lock dies with it */
	int p[2];
	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		ckpt_stream_t *c = NULL;
		char ok = ckpt_open(dir, "r9", NULL, &c) == 0 ? 'y' : 'n';
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char ok = 0;
	assert_int_equal(read(p[0], &ok, 1), 1);
	assert_int_equal(ok, 'y');
	snprintf(pid, sizeof(pid), "pid %d", (int)child);
	expect_err(ckpt_open(dir, "r9", NULL, &s), -EBUSY, pid);
	assert_int_equal(ckpt_holder_pid(dir, "r9"), child);
	kill(child, SIGKILL);
	st = tu_wait(child);
	assert_true(WIFSIGNALED(st));
	close(p[0]);
	close(p[1]);
	s = must_open(dir, "r9", NULL);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

static void test_bad_names(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-names");
	char longest[CKPT_NAME_MAX + 2];
	const char *bad[] = { "", ".", "..", "a/b", "/abs", "caf\xc3\xa9",
			      "a b", "tab\t", longest };
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;

	memset(longest, 'n', sizeof(longest));
	longest[CKPT_NAME_MAX + 1] = '\0'; /* 129 bytes */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_err(ckpt_open(dir, bad[i], NULL, &s), -EINVAL,
			   "stream name");
		expect_err(ckpt_reader_open(dir, bad[i], 0, &r), -EINVAL,
			   "stream name");
		expect_err(ckpt_holder_pid(dir, bad[i]), -EINVAL,
			   "stream name");
	}
	expect_err(ckpt_open(dir, NULL, NULL, &s), -EINVAL, "NULL");
	assert_null(s);
	longest[CKPT_NAME_MAX] = '\0'; /* 128 bytes: the longest allowed */
	s = must_open(dir, longest, NULL);
	assert_int_equal(ckpt_close(s), 0);
	s = must_open(dir, "A-z_0.9", NULL);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

static void test_layout_version(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-version");
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;
	size_t len;

	make_stream(dir, "ver");
	struct ckpt_region *h = rm_map(dir, "ver", 1, &len);
	h->id.layout_version = 2;
	expect_err(ckpt_open(dir, "ver", NULL, &s), CKPT_EVERSION,
		   "layout version 2");
	expect_err(ckpt_reader_open(dir, "ver", 0, &r), CKPT_EVERSION,
		   "layout version 2");
	/* version 0: to a reader, a region still being made (-EAGAIN: look
	 * again); to the writer, who holds the lock and so knows nobody is
	 * making it, a damaged one.  Not a guess either way. */
	h->id.layout_version = 0;
	expect_err(ckpt_reader_open(dir, "ver", CKPT_R_NOLOCK, &r), -EAGAIN,
		   "being created");
	expect_err(ckpt_open(dir, "ver", NULL, &s), CKPT_ECORRUPT,
		   "layout version 0");
	h->id.layout_version = CKPT_LAYOUT_VERSION;
	h->id.magic ^= 1;
	expect_err(ckpt_open(dir, "ver", NULL, &s), CKPT_ECORRUPT, "magic");
	h->id.magic ^= 1;
	assert_null(s);
	s = must_open(dir, "ver", NULL);
	assert_int_equal(ckpt_close(s), 0);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

static void test_foreign_region(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-foreign");
	char path[512];
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;

	make_stream(dir, "fr");
	rm_path(dir, "fr", path, sizeof(path));
	assert_int_equal(chmod(path, 0644), 0);
	expect_err(ckpt_open(dir, "fr", NULL, &s), CKPT_EFOREIGN, "mode 0644");
	expect_err(ckpt_reader_open(dir, "fr", 0, &r), CKPT_EFOREIGN,
		   "mode 0644");
	assert_int_equal(chmod(path, 0660), 0);
	expect_err(ckpt_open(dir, "fr", NULL, &s), CKPT_EFOREIGN, "mode 0660");
	assert_int_equal(chmod(path, 0600), 0);

	if (geteuid() != 0) {
		printf("SKIP part: chown to another uid needs root\n");
	} else {
		assert_int_equal(chown(path, 65534, 65534), 0);
		expect_err(ckpt_open(dir, "fr", NULL, &s), CKPT_EFOREIGN,
			   "uid 65534");
		expect_err(ckpt_reader_open(dir, "fr", 0, &r), CKPT_EFOREIGN,
			   "uid 65534");
		assert_int_equal(chown(path, 0, 0), 0);
	}
	assert_null(s);
	s = must_open(dir, "fr", NULL);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

static void test_truncated_region(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-trunc");
	char path[512];
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;

	make_stream(dir, "tr");
	rm_path(dir, "tr", path, sizeof(path));
	/* shorter than the header says */
	assert_int_equal(truncate(path, CKPT_REGION_HDR_SIZE + RING / 2), 0);
	expect_err(ckpt_open(dir, "tr", NULL, &s), CKPT_ECORRUPT, "truncated");
	expect_err(ckpt_reader_open(dir, "tr", 0, &r), CKPT_ECORRUPT,
		   "truncated");
	/* shorter than a header */
	assert_int_equal(truncate(path, 100), 0);
	expect_err(ckpt_open(dir, "tr", NULL, &s), CKPT_ECORRUPT, "truncated");
	assert_int_equal(truncate(path, 0), 0);
	expect_err(ckpt_open(dir, "tr", NULL, &s), CKPT_ECORRUPT, "truncated");
	assert_null(s);
	tu_rmdir(dir);
}

static void test_other_stream(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-stream");
	char pa[512], pb[512];
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;

	make_stream(dir, "alpha");
	s = must_open(dir, "beta", NULL); /* makes beta's directory */
	assert_int_equal(ckpt_close(s), 0);
	s = NULL;
	rm_path(dir, "alpha", pa, sizeof(pa));
	rm_path(dir, "beta", pb, sizeof(pb));
	assert_int_equal(rename(pa, pb), 0); /* alpha's region, beta's name */
	expect_err(ckpt_open(dir, "beta", NULL, &s), CKPT_ESTREAM,
		   "belongs to stream 'alpha', not 'beta'");
	expect_err(ckpt_reader_open(dir, "beta", 0, &r), CKPT_ESTREAM,
		   "'alpha'");
	assert_null(s);
	tu_rmdir(dir);
}

static void check_modes(const char *dir, const char *name, mode_t um)
{
	char path[512];
	struct stat st;
	mode_t old = umask(um);
	ckpt_opts_t o;

	small_opts(&o);
	ckpt_stream_t *s = must_open(dir, name, &o);
	umask(old);
	rm_path(dir, name, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(path, sizeof(path), "%s/%s/lock", dir, name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0); /* private directory */
	assert_int_equal(ckpt_close(s), 0);
}

static void test_modes_any_umask(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-umask");
	check_modes(dir, "um0", 0);
	check_modes(dir, "um077", 077);
	check_modes(dir, "um022", 022);
	tu_rmdir(dir);
}

static void test_symlink_refused(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-symlink");
	char *elsewhere = tu_mkdtemp("err-symlink-target");
	char path[512], lock[512];
	ckpt_stream_t *s = NULL;
	ckpt_reader_t *r = NULL;

	snprintf(path, sizeof(path), "%s/planted", dir);
	assert_int_equal(symlink(elsewhere, path), 0);
	expect_err(ckpt_open(dir, "planted", NULL, &s), CKPT_EFOREIGN,
		   "symlink");
	expect_err(ckpt_reader_open(dir, "planted", 0, &r), CKPT_EFOREIGN,
		   "symlink");
	/* nothing was made at the link's target */
	snprintf(lock, sizeof(lock), "%s/lock", elsewhere);
	assert_int_equal(access(lock, F_OK), -1);

	/* a symlink as the lock file is not followed either */
	snprintf(path, sizeof(path), "%s/lk", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/lk/lock", dir);
	assert_int_equal(symlink(lock, path), 0);
	expect_err(ckpt_open(dir, "lk", NULL, &s), -ELOOP, "lock file");
	assert_int_equal(access(lock, F_OK), -1);
	assert_null(s);
	tu_rmdir(elsewhere);
	tu_rmdir(dir);
}

static void test_delta_limits(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-limits");
	char big[CKPT_TOPIC_MAX + 2];
	ckpt_opts_t o;

	small_opts(&o);
	ckpt_stream_t *s = must_open(dir, "lim", &o);
	static char buf[8193];
	memset(big, 't', sizeof(big));
	big[CKPT_TOPIC_MAX + 1] = '\0';

	expect_err(ckpt_put(s, buf, 65, buf, 1), -EMSGSIZE, "limits");
	expect_err(ckpt_put(s, buf, 1, buf, 8193), -EMSGSIZE, "limits");
	expect_err(ckpt_del(s, buf, 65), -EMSGSIZE, "limits");
	expect_err(ckpt_meta(s, buf, 33), -EMSGSIZE, "limits");
	expect_err(ckpt_offset(s, big, 0, 1), -EMSGSIZE, "topic");
	expect_err(ckpt_offset(s, "", 0, 1), -EMSGSIZE, "topic");
	expect_err(ckpt_put(s, NULL, 1, "v", 1), -EINVAL, "NULL");
	expect_err(ckpt_put(s, "k", 1, NULL, 1), -EINVAL, "NULL");
	expect_err(ckpt_meta(s, NULL, 3), -EINVAL, "NULL");
	expect_err(ckpt_offset(s, NULL, 0, 1), -EINVAL, "topic");
	expect_err(ckpt_offset(s, "t", -1, 1), -EINVAL, "partition");
	expect_err(ckpt_offset(s, "t", 0, -1), -EINVAL, "offset");
	/* at the limits exactly: fine; the refusals staged nothing */
	big[CKPT_TOPIC_MAX] = '\0';
	assert_int_equal(ckpt_put(s, buf, 64, buf, 8192), 0);
	assert_int_equal(ckpt_meta(s, buf, 32), 0);
	assert_int_equal(ckpt_offset(s, big, 0, 1), 0);
	assert_int_equal(ckpt_put(s, NULL, 0, NULL, 0), 0);
	assert_int_equal(ckpt_commit(s), 1);
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	assert_int_equal(ckpt_reader_open(dir, "lim", 0, &r), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ep.ndeltas, 4);
	ckpt_reader_close(r);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

static void test_epoch_larger_than_ring(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-nobufs");
	static char v[8192];
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	ckpt_opts_t o;
	int ret = 0, n = 0;

	small_opts(&o);
	ckpt_stream_t *s = must_open(dir, "nb", &o);
	assert_int_equal(ckpt_reader_open(dir, "nb", 0, &r), 0);
	/* move off position 0 first, released: the epoch starts mid-ring */
	assert_int_equal(ckpt_put(s, "k", 1, v, 5000), 0);
	assert_int_equal(ckpt_commit(s), 1);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ckpt_reader_durable(r, 1, ep.end_pos), 0);
	while ((ret = ckpt_put(s, "k", 1, v, sizeof(v))) == 0)
		n++;
	expect_err(ret, -ENOBUFS, "the ring holds 65536");
	assert_true(n >= 6 && n <= 8);
	/* it can never fit: abort it, and the stream goes on */
	assert_int_equal(ckpt_abort(s), 0);
	assert_int_equal(ckpt_put(s, "small", 5, "v", 1), 0);
	assert_int_equal(ckpt_commit(s), 2);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ep.epoch, 2);
	assert_int_equal(ep.ndeltas, 1);
	ckpt_reader_close(r);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

/* Commit epochs of one 4000-byte put until the ring is nearly full. */
static int64_t fill(ckpt_stream_t *s, struct ckpt_region *h, int64_t e)
{
	static char v[4000];
	while (h->prod.commit_pos - h->flush.release_pos + 2 * 4200 < RING) {
		assert_int_equal(ckpt_put(s, "f", 1, v, sizeof(v)), 0);
		assert_int_equal(ckpt_commit(s), ++e);
	}
	return e;
}

static void test_full_eagain(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-eagain");
	static char v[4000];
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	ckpt_opts_t o;
	size_t len;
	int64_t e = 0;
	int ret;

	small_opts(&o);
	o.full_policy = CKPT_FULL_EAGAIN;
	ckpt_stream_t *s = must_open(dir, "ea", &o);
	struct ckpt_region *h = rm_map(dir, "ea", 0, &len);
	e = fill(s, h, e);
	uint64_t bp = h->prod.backpressure_events, ea = h->prod.eagain;
	/* an epoch of an offset and puts, until the ring is full */
	assert_int_equal(ckpt_offset(s, "t", 0, 42), 0);
	int staged = 0;
	while ((ret = ckpt_put(s, "p", 1, v, sizeof(v))) == 0)
		staged++;
	expect_err(ret, -EAGAIN, NULL);
	assert_true(h->prod.backpressure_events > bp);
	assert_int_equal(h->prod.eagain, ea + 1);
	assert_int_equal(ckpt_put(s, "p", 1, v, sizeof(v)), -EAGAIN);
	assert_int_equal(h->prod.eagain, ea + 2);

	/* a flusher frees room: the retry succeeds, earlier deltas stayed */
	assert_int_equal(ckpt_reader_open(dir, "ea", 0, &r), 0);
	int64_t last = 0;
	uint64_t end = 0;
	while (ckpt_reader_next(r, &ep) == 1) {
		last = ep.epoch;
		end = ep.end_pos;
	}
	assert_int_equal(last, e);
	assert_int_equal(ckpt_reader_durable(r, last, end), 0);
	assert_int_equal(ckpt_put(s, "p", 1, v, sizeof(v)), 0);
	assert_int_equal(ckpt_commit(s), ++e);
	assert_int_equal(ckpt_reader_next(r, &ep), 1);
	assert_int_equal(ep.epoch, e);
	assert_int_equal(ep.ndeltas, 1 + staged + 1);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_OFFSET);
	assert_int_equal(d.offset, 42);
	ckpt_reader_close(r);
	assert_int_equal(ckpt_close(s), 0);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

static void test_full_wait_times_out(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-wait");
	static char v[4000];
	ckpt_opts_t o;
	size_t len;
	int ret;

	small_opts(&o);
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 100;
	ckpt_stream_t *s = must_open(dir, "wt", &o);
	struct ckpt_region *h = rm_map(dir, "wt", 0, &len);
	fill(s, h, 0);
	uint64_t ea = h->prod.eagain, t = 0;
	do {
		t = tu_now_ns();
		ret = ckpt_put(s, "p", 1, v, sizeof(v));
		t = tu_now_ns() - t;
	} while (ret == 0);
	expect_err(ret, -EAGAIN, NULL);
	printf("CKPT_FULL_WAIT, 100 ms: -EAGAIN after %.1f ms\n", t / 1e6);
	assert_true(t >= 100ull * 1000000ull); /* it did wait, at least */
	assert_int_equal(h->prod.eagain, ea + 1);
	assert_true(h->prod.wait_ns >= 100ull * 1000000ull);
	assert_int_equal(ckpt_close(s), 0);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

struct drainer {
	const char *dir;
	int stop;
	int failed;
};

/* A flusher thread: first slow (the writer must wait), then draining. */
static void *drain_thread(void *arg)
{
	struct drainer *dr = arg;
	ckpt_reader_t *r;
	ckpt_epoch_t ep;

	if (ckpt_reader_open(dr->dir, "wr", 0, &r) < 0) {
		__atomic_store_n(&dr->failed, 1, __ATOMIC_RELEASE);
		return NULL;
	}
	usleep(50 * 1000);
	while (!__atomic_load_n(&dr->stop, __ATOMIC_ACQUIRE)) {
		int ret = ckpt_reader_next(r, &ep);
		if (ret < 0) {
			__atomic_store_n(&dr->failed, 1, __ATOMIC_RELEASE);
			break;
		}
		if (ret == 0) {
			usleep(100);
			continue;
		}
		ckpt_reader_durable(r, ep.epoch, ep.end_pos);
	}
	ckpt_reader_close(r);
	return NULL;
}

static void test_full_wait_succeeds(void **state) /* CKPT_TEST_THREADED */
{
	(void)state;
	char *dir = tu_mkdtemp("err-waitok");
	static char v[4000];
	struct drainer dr = { dir, 0, 0 };
	pthread_t th;
	ckpt_opts_t o;
	size_t len;

	small_opts(&o);
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 10000;
	ckpt_stream_t *s = must_open(dir, "wr", &o);
	struct ckpt_region *h = rm_map(dir, "wr", 0, &len);
	int64_t e = fill(s, h, 0);
	uint64_t bp = h->prod.backpressure_events, ea = h->prod.eagain;
	assert_int_equal(pthread_create(&th, NULL, drain_thread, &dr), 0);
	/* twice the ring: these commits need the thread's releases */
	for (int i = 0; i < 2 * (int)(RING / 4000); i++) {
		int ret = ckpt_put(s, "w", 1, v, sizeof(v));
		if (ret < 0)
			fail_msg("put %d: %s", i, ckpt_last_error());
		assert_int_equal(ckpt_commit(s), ++e);
	}
	__atomic_store_n(&dr.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	assert_int_equal(dr.failed, 0);
	assert_true(h->prod.backpressure_events > bp);
	assert_int_equal(h->prod.eagain, ea);
	assert_true(h->prod.wait_ns > 0);
	printf("waited %.1f ms in all for the reader thread\n",
	       h->prod.wait_ns / 1e6);
	assert_int_equal(ckpt_close(s), 0);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

static void test_opts_validation(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("err-opts");
	ckpt_stream_t *s = NULL;
	ckpt_opts_t o;
	struct {
		uint64_t ring;
		uint32_t key, val, meta;
		int policy, flusher, backend;
		unsigned flags;
		const char *says;
	} cases[] = {
		{ 100000, 0, 0, 0, 0, 0, 0, 0, "power of two" },
		{ 32768, 0, 0, 0, 0, 0, 0, 0, "power of two" },
		{ 2ull << 30, 0, 0, 0, 0, 0, 0, 0, "power of two" },
		{ 0, 65537, 0, 0, 0, 0, 0, 0, "max_key" },
		{ 0, 0, (16u << 20) + 1, 0, 0, 0, 0, 0, "max_value" },
		{ 0, 0, 0, (16u << 20) + 1, 0, 0, 0, 0, "max_meta" },
		{ 65536, 0, 0, 0, 0, 0, 0, 0, "too small" },
		{ 0, 0, 0, 0, 7, 0, 0, 0, "full_policy" },
		{ 0, 0, 0, 0, -1, 0, 0, 0, "full_policy" },
		{ 0, 0, 0, 0, 0, 9, 0, 0, "flusher" },
		{ 0, 0, 0, 0, 0, 0, 5, 0, "backend" },
		{ 0, 0, 0, 0, 0, 0, -1, 0, "backend" },
		{ 0, 0, 0, 0, 0, 0, 0, 0x10, "flags" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ckpt_opts_init(&o);
		o.flusher = CKPT_FLUSHER_EXTERNAL;
		if (cases[i].ring)
			o.ring_size = cases[i].ring;
		if (cases[i].key)
			o.max_key = cases[i].key;
		if (cases[i].val)
			o.max_value = cases[i].val;
		if (cases[i].meta)
			o.max_meta = cases[i].meta;
		if (cases[i].policy)
			o.full_policy = cases[i].policy;
		if (cases[i].flusher)
			o.flusher = cases[i].flusher;
		if (cases[i].backend)
			o.backend = cases[i].backend;
		o.flags = cases[i].flags;
		expect_err(ckpt_open(dir, "opts", &o, &s), -EINVAL,
			   cases[i].says);
		assert_null(s);
	}
	ckpt_opts_init(&o); /* NOSLOTS with the in-process flusher */
	o.flags = CKPT_O_NOSLOTS;
	expect_err(ckpt_open(dir, "opts", &o, &s), -EINVAL, "NOSLOTS");
	expect_err(ckpt_open(dir, "opts", NULL, NULL), -EINVAL, "NULL");
	expect_err(ckpt_open("", "opts", NULL, &s), -EINVAL, "empty");
	expect_err(ckpt_open("/nonexistent/shmckpt", "opts", NULL, &s), -ENOENT,
		   "nonexistent");
	ckpt_reader_t *r = NULL;
	expect_err(ckpt_reader_open(dir, "nostream", 0, &r), -ENOENT, NULL);
	expect_err(ckpt_reader_open(dir, "opts", 0x80, &r), -EINVAL, "flags");
	assert_null(r);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_writer),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_layout_version),
		cmocka_unit_test(test_foreign_region),
		cmocka_unit_test(test_truncated_region),
		cmocka_unit_test(test_other_stream),
		cmocka_unit_test(test_modes_any_umask),
		cmocka_unit_test(test_symlink_refused),
		cmocka_unit_test(test_delta_limits),
		cmocka_unit_test(test_epoch_larger_than_ring),
		cmocka_unit_test(test_full_eagain),
		cmocka_unit_test(test_full_wait_times_out),
		cmocka_unit_test(test_full_wait_succeeds),
		cmocka_unit_test(test_opts_validation),
	};
	(void)tu_seed("test_errors"); /* no randomness; printed anyway */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
