/*
 * test_io.c - the flusher's I/O backends (iouring/io.h, iouring/fault.h).
 *
 * Every backend test runs twice, on io_uring and on the fallback; io_uring
 * cases are skipped, with the reason printed, where the kernel or a seccomp
 * profile refuses io_uring.  Real faults are provoked where the kernel can
 * provide them (RLIMIT_FSIZE for short writes and EFBIG, seccomp for an
 * unavailable io_uring); the rest come from the fault wrapper.
 *
 * CKPT_TEST_THREADED: the power-cut test cuts from a second thread, as a
 * crash test does while the flusher writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "internal.h"
#include "io.h"
#include "io_private.h"
#include "testutil.h"

struct be {
	int kind;
	const char *name;
};

static struct be be_uring = { CKPT_BACKEND_URING, "io_uring" };
static struct be be_fallback = { CKPT_BACKEND_FALLBACK, "fallback" };
static int uring_ok;
static uint64_t seed;

/* ---- helpers ---------------------------------------------------------- */

/* In a forked child a cmocka failure would longjmp into the child's copy
 * of the runner: report and exit instead. */
#define CHILD_CHECK(c)                                                       \
	do {                                                                 \
		if (!(c)) {                                                  \
			fprintf(stderr, "child: %s:%d: %s failed (%s)\n",     \
				__FILE__, __LINE__, #c, ckpt_last_error());  \
			_exit(1);                                            \
		}                                                            \
	} while (0)

static const struct be *backend(void **state)
{
	const struct be *b = *state;

	if (b->kind == CKPT_BACKEND_URING && !uring_ok)
		skip();
	return b;
}

static ckpt__io_t *open_io(const struct be *b, struct ckpt_fault_plan *plan,
			   unsigned depth)
{
	ckpt__io_t *io = NULL;
	int ret = ckpt__io_open(b->kind, plan, depth, &io, NULL);

	if (ret < 0)
		fail_msg("open %s: %s: %s", b->name, ckpt_strerror(ret),
			 ckpt_last_error());
	return io;
}

static int open_file(const char *dir, const char *tag, int i)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s-%d", dir, tag, i);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static void fill_rand(void *buf, size_t n, uint64_t *rng)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)tu_rand(rng);
}

static void put(int fd, const void *buf, size_t n, uint64_t off)
{
	assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
}

static void get(int fd, void *buf, size_t n, uint64_t off)
{
	assert_int_equal(pread(fd, buf, n, (off_t)off), (ssize_t)n);
}

/* Reap until @want ops came back (10 s at most). */
static int reap_n(ckpt__io_t *io, struct ckpt__io_op **done, int want)
{
	uint64_t t0 = tu_now_ns();
	int got = 0;

	while (got < want) {
		int n = ckpt__io_reap(io, done + got, want - got, 100000000);

		assert_true(n >= 0);
		got += n;
		assert_true(tu_now_ns() - t0 < 10000000000ull);
	}
	return got;
}

/* One op, submitted and reaped. */
static struct ckpt__io_op one(ckpt__io_t *io, int fd, const void *buf,
			      size_t len, uint64_t off)
{
	struct ckpt__io_op op, *done[1];

	memset(&op, 0, sizeof(op));
	op.fd = fd;
	op.buf = buf;
	op.len = len;
	op.off = off;
	assert_int_equal(ckpt__io_submit(io, &op), 0);
	reap_n(io, done, 1);
	assert_ptr_equal(done[0], &op);
	assert_true(op.done_ns >= op.submit_ns);
	return op;
}

/* ---- write + sync, read back ------------------------------------------ */

#define RW_FILES 16
#define RW_SPAN (1u << 20)

static void test_write_read(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-rw");
	ckpt__io_t *io = open_io(b, NULL, RW_FILES);
	unsigned char *shadow = calloc(RW_FILES, RW_SPAN);
	unsigned char *bufs = malloc((size_t)RW_FILES * 65536);
	unsigned char *back = malloc(RW_SPAN);
	struct ckpt__io_op ops[RW_FILES], *done[RW_FILES];
	uint64_t end[RW_FILES] = { 0 };
	int fds[RW_FILES], busy[RW_FILES] = { 0 }, inflight = 0;
	uint64_t rng = seed;
	int total = (int)tu_scaled(600), issued = 0, reaped = 0;

	assert_non_null(shadow);
	assert_string_equal(ckpt__io_name(io), b->name);
	for (int i = 0; i < RW_FILES; i++)
		fds[i] = open_file(dir, "rw", i);
	/* One op per file at a time: ops in flight on one file would land in
	 * no defined order, and the shadow could not follow. */
	while (reaped < total) {
		for (int i = 0; i < RW_FILES && issued < total; i++) {
			size_t len;
			uint64_t off;

			if (busy[i] || tu_rand(&rng) % 3 == 0)
				continue;
			len = (size_t)(tu_rand(&rng) % 65537);
			off = tu_rand(&rng) % (RW_SPAN - len + 1);
			fill_rand(bufs + (size_t)i * 65536, len, &rng);
			memset(&ops[i], 0, sizeof(ops[i]));
			ops[i].fd = fds[i];
			ops[i].buf = bufs + (size_t)i * 65536;
			ops[i].len = len;
			ops[i].off = off;
			ops[i].user = &ops[i];
			assert_int_equal(ckpt__io_submit(io, &ops[i]), 0);
			busy[i] = 1;
			inflight++;
			issued++;
			assert_int_equal(ckpt__io_inflight(io), inflight);
		}
		{
			int n = ckpt__io_reap(io, done, RW_FILES, 100000000);

			assert_true(n >= 0);
			for (int k = 0; k < n; k++) {
				struct ckpt__io_op *op = done[k];
				int i = (int)(op - ops);

				assert_ptr_equal(op->user, op);
				assert_true(busy[i]);
				assert_int_equal(op->res, 0);
				assert_int_equal(op->failed_phase, 0);
				assert_int_equal(op->short_write, 0);
				assert_true(op->done_ns >= op->submit_ns);
				memcpy(shadow + (size_t)i * RW_SPAN + op->off,
				       op->buf, op->len);
				if (op->off + op->len > end[i])
					end[i] = op->off + op->len;
				busy[i] = 0;
				inflight--;
				reaped++;
			}
			assert_int_equal(ckpt__io_inflight(io), inflight);
		}
	}
	for (int i = 0; i < RW_FILES; i++) {
		struct stat st;

		assert_int_equal(fstat(fds[i], &st), 0);
		assert_int_equal((uint64_t)st.st_size, end[i]);
		get(fds[i], back, end[i], 0);
		assert_memory_equal(back, shadow + (size_t)i * RW_SPAN, end[i]);
		close(fds[i]);
	}
	/* nothing in flight: reap neither waits nor fails */
	assert_int_equal(ckpt__io_reap(io, done, RW_FILES, 0), 0);
	ckpt__io_close(io);
	free(shadow);
	free(bufs);
	free(back);
	tu_rmdir(dir);
}

/* ---- many files at once, depth bound ---------------------------------- */

#define MANY 64
#define MANY_LEN (64u * 1024u)

static void many_files(const struct be *b, struct ckpt_fault_plan *plan)
{
	char *dir = tu_mkdtemp("io-many");
	ckpt__io_t *io = open_io(b, plan, MANY);
	unsigned char *bufs = malloc((size_t)MANY * MANY_LEN);
	unsigned char *back = malloc(MANY_LEN);
	struct ckpt__io_op ops[MANY + 1], *done[MANY];
	int fds[MANY], seen[MANY] = { 0 };
	uint64_t rng = seed ^ 0x5555;

	fill_rand(bufs, (size_t)MANY * MANY_LEN, &rng);
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < MANY; i++) {
		fds[i] = open_file(dir, "many", i);
		ops[i].fd = fds[i];
		ops[i].buf = bufs + (size_t)i * MANY_LEN;
		ops[i].len = MANY_LEN;
		ops[i].off = 4096u * (unsigned)i; /* offsets differ per file */
		assert_int_equal(ckpt__io_submit(io, &ops[i]), 0);
	}
	assert_int_equal(ckpt__io_inflight(io), MANY);
	ops[MANY] = ops[0];
	assert_int_equal(ckpt__io_submit(io, &ops[MANY]), -EAGAIN);
	assert_int_equal(ckpt__io_inflight(io), MANY);

	assert_int_equal(reap_n(io, done, MANY), MANY);
	assert_int_equal(ckpt__io_inflight(io), 0);
	assert_int_equal(ckpt__io_reap(io, done, MANY, 0), 0);
	for (int k = 0; k < MANY; k++) {
		int i = (int)(done[k] - ops);

		assert_true(i >= 0 && i < MANY);
		assert_int_equal(seen[i]++, 0); /* each op exactly once */
		assert_int_equal(done[k]->res, 0);
	}
	for (int i = 0; i < MANY; i++) {
		get(fds[i], back, MANY_LEN, ops[i].off);
		assert_memory_equal(back, ops[i].buf, MANY_LEN);
		close(fds[i]);
	}
	ckpt__io_close(io);
	free(bufs);
	free(back);
	tu_rmdir(dir);
}

static void test_many_files(void **state)
{
	many_files(backend(state), NULL);
}

/* Through the wrapper: ops become due over a few ms and run in batches on
 * the inner backend. */
static void test_fault_many_files(void **state)
{
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;

	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = 1000;
	plan.lat_max_us = 3000;
	plan.seed = seed;
	many_files(backend(state), &plan);
	ckpt__fault_stats(&plan, &st);
	assert_int_equal(st.ops, MANY);
	assert_int_equal(st.writes_ok, MANY);
	assert_int_equal(st.max_inflight, MANY);
}

/* ---- ops split into several writes ------------------------------------ */

static void test_split(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-split");
	ckpt__io_t *io;
	size_t len = 4096 * 9 + 100;
	unsigned char *buf = malloc(4096 * 20), *back = malloc(len);
	uint64_t rng = seed ^ 0x77;
	struct ckpt__io_op op;
	int fd = open_file(dir, "split", 0);

	/* Small pieces exercise the chain of linked writes (and the
	 * fallback's loop) without gigabytes of I/O. */
	ckpt__io_max_write = 4096;
	io = open_io(b, NULL, 8);
	fill_rand(buf, 4096 * 20, &rng);
	op = one(io, fd, buf, len, 777);
	assert_int_equal(op.res, 0);
	get(fd, back, len, 777);
	assert_memory_equal(back, buf, len);
	if (b->kind == CKPT_BACKEND_URING) {
		/* 20 writes + 1 fsync do not fit in a 16-entry ring */
		memset(&op, 0, sizeof(op));
		op.fd = fd;
		op.buf = buf;
		op.len = 4096 * 20;
		assert_int_equal(ckpt__io_submit(io, &op), -EINVAL);
		assert_int_equal(ckpt__io_inflight(io), 0);
	}
	ckpt__io_max_write = CKPT__IO_MAX_WRITE_DEFAULT;
	ckpt__io_close(io);
	close(fd);
	free(buf);
	free(back);
	tu_rmdir(dir);
}

/* ---- a 1 GiB op in one piece ------------------------------------------ */

static void test_big_write(void **state)
{
	const struct be *b = backend(state);
	const size_t len = (size_t)1 << 30;
	char tmpl[] = "/dev/shm/shmckpt-io-big-XXXXXX", *dir;
	struct statvfs vfs;
	ckpt__io_t *io;
	unsigned char *buf;
	struct ckpt__io_op op;
	struct stat st;
	int fd;

#ifdef __SANITIZE_THREAD__
	/* TSan's pwrite interceptor checks the whole 1 GiB source range in
	 * shadow memory: 20 s for the fallback, nothing learned. */
	printf("SKIP big write: not under ThreadSanitizer\n");
	skip();
#endif
	/* tmpfs: what is tested is that 1 GiB goes down as one write and
	 * comes back complete, not the disk's bandwidth (a disk takes ~10 s
	 * per backend here, a third of the time budget). */
	if (statvfs("/dev/shm", &vfs) < 0 ||
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < 2 * (uint64_t)len) {
		printf("SKIP big write: /dev/shm lacks 2 GiB free\n");
		skip();
	}
	if ((uint64_t)sysconf(_SC_AVPHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE)
	    < 4 * (uint64_t)len) {
		printf("SKIP big write: less than 4 GiB of free memory\n");
		skip();
	}
	dir = mkdtemp(tmpl);
	assert_non_null(dir);
	dir = strdup(dir);
	assert_non_null(dir);
	/* Populated up front: faulting 262144 zero pages in during the
	 * write costs this VM seconds, and is not what is under test. */
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	assert_true(buf != MAP_FAILED);
	for (size_t at = 0; at < len; at += 1 << 20)
		memcpy(buf + at, &at, sizeof(at));
	memcpy(buf + len - 8, "the end!", 8);
	fd = open_file(dir, "big", 0);
	io = open_io(b, NULL, 2);
	op = one(io, fd, buf, len, 4096);
	assert_int_equal(op.res, 0);
	assert_int_equal(op.short_write, 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, 4096 + (uint64_t)len);
	for (size_t at = 0; at < len; at += 64u << 20) {
		size_t v;

		get(fd, &v, sizeof(v), 4096 + at);
		assert_int_equal(v, at);
	}
	{
		char tail[8];

		get(fd, tail, 8, 4096 + len - 8);
		assert_memory_equal(tail, "the end!", 8);
	}
	printf("1 GiB write+datasync on %s: %.2f s\n", b->name,
	       (double)(op.done_ns - op.submit_ns) / 1e9);
	ckpt__io_close(io);
	close(fd);
	munmap(buf, len);
	tu_rmdir(dir);
}

/* ---- grow -------------------------------------------------------------- */

static void test_grow(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-grow");
	ckpt__io_t *io = open_io(b, NULL, 4);
	const size_t old = 100000, grown = 5 * 1024 * 1024 + 123;
	unsigned char *data = malloc(old), *back = malloc(grown);
	uint64_t rng = seed ^ 0x99;
	struct stat st;
	int fd = open_file(dir, "grow", 0);

	fill_rand(data, old, &rng);
	put(fd, data, old, 0);
	assert_int_equal(ckpt__io_grow(io, fd, old, grown), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, grown);
	/* real blocks, not a sparse tail */
	assert_true((uint64_t)st.st_blocks * 512 >= grown);
	assert_int_equal(lseek(fd, 0, SEEK_HOLE), (off_t)grown);
	get(fd, back, grown, 0);
	assert_memory_equal(back, data, old);
	for (size_t i = old; i < grown; i++)
		if (back[i] != 0)
			fail_msg("byte %zu after grow is %u, not 0", i, back[i]);
	/* nothing to do is no error */
	assert_int_equal(ckpt__io_grow(io, fd, grown, grown), 0);
	ckpt__io_close(io);
	close(fd);
	free(data);
	free(back);
	tu_rmdir(dir);
}

/* ---- real short writes: RLIMIT_FSIZE ---------------------------------- */

static int short_child(const struct be *b, const char *dir)
{
	struct rlimit rl;
	static unsigned char buf[128 * 1024];
	unsigned char back[4096];
	struct ckpt__io_op op, *done[1];
	ckpt__io_t *io;
	int fd, n;

	signal(SIGXFSZ, SIG_IGN); /* EFBIG / short count instead of death */
	CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
	rl.rlim_cur = 64 * 1024;
	CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	memset(buf, 0xab, sizeof(buf));
	fd = open_file(dir, b->name, 0);
	CHILD_CHECK(ckpt__io_open(b->kind, NULL, 4, &io, NULL) == 0);

	/* crosses the limit: the kernel writes 64 KiB and says so */
	memset(&op, 0, sizeof(op));
	op.fd = fd;
	op.buf = buf;
	op.len = sizeof(buf);
	CHILD_CHECK(ckpt__io_submit(io, &op) == 0);
	do
		n = ckpt__io_reap(io, done, 1, 1000000000);
	while (n == 0);
	CHILD_CHECK(n == 1 && done[0] == &op);
	if (op.res != -EIO || op.short_write != 1 ||
	    op.failed_phase != CKPT_IO_WRITE) {
		fprintf(stderr, "child %s: short: res %d short %d phase %d\n",
			b->name, op.res, op.short_write, op.failed_phase);
		_exit(1);
	}
	/* starts at the limit: nothing written at all */
	op.off = 64 * 1024;
	op.len = 4096;
	CHILD_CHECK(ckpt__io_submit(io, &op) == 0);
	do
		n = ckpt__io_reap(io, done, 1, 1000000000);
	while (n == 0);
	if (n != 1 || op.res != -EFBIG || op.short_write != 0 ||
	    op.failed_phase != CKPT_IO_WRITE) {
		fprintf(stderr, "child %s: beyond: n %d res %d short %d "
			"phase %d\n", b->name, n, op.res, op.short_write,
			op.failed_phase);
		_exit(1);
	}
	/* grow past the limit: EFBIG, the bytes before old_size intact */
	CHILD_CHECK(ckpt__io_grow(io, fd, 4096, 256 * 1024) == -EFBIG);
	CHILD_CHECK(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHILD_CHECK(memcmp(back, buf, sizeof(back)) == 0);
	ckpt__io_close(io);
	close(fd);
	return 0;
}

static void test_short_rlimit(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-short");
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(short_child(b, dir));
	st = tu_wait(pid);
	tu_rmdir(dir);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- choosing a backend ------------------------------------------------ */

static void test_auto_env(void **state)
{
	struct ckpt_fault_plan plan;
	const char *why = "unset";
	ckpt__io_t *io = NULL;
	(void)state;

	memset(&plan, 0, sizeof(plan));
	setenv("SHMCKPT_BACKEND", "fallback", 1);
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 4, &io, &why), 0);
	assert_string_equal(ckpt__io_name(io), "fallback");
	assert_non_null(why);
	assert_non_null(strstr(why, "SHMCKPT_BACKEND=fallback"));
	ckpt__io_close(io);
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, &plan, 4, &io, &why),
			 0);
	assert_string_equal(ckpt__io_name(io), "fault+fallback");
	ckpt__io_close(io);

	if (uring_ok) {
		/* an explicit choice beats the variable */
		assert_int_equal(ckpt__io_open(CKPT_BACKEND_URING, NULL, 4, &io,
					       &why), 0);
		assert_string_equal(ckpt__io_name(io), "io_uring");
		assert_null(why);
		ckpt__io_close(io);
		setenv("SHMCKPT_BACKEND", "uring", 1);
		assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 4, &io,
					       &why), 0);
		assert_string_equal(ckpt__io_name(io), "io_uring");
		assert_null(why);
		ckpt__io_close(io);
		assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, &plan, 4, &io,
					       NULL), 0);
		assert_string_equal(ckpt__io_name(io), "fault+io_uring");
		ckpt__io_close(io);
	}
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_FALLBACK, NULL, 4, &io,
				       &why), 0);
	assert_string_equal(ckpt__io_name(io), "fallback");
	ckpt__io_close(io);

	setenv("SHMCKPT_BACKEND", "pwrite", 1);
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 4, &io, &why),
			 -EINVAL);
	assert_null(io);
	assert_non_null(strstr(ckpt_last_error(), "SHMCKPT_BACKEND='pwrite'"));

	unsetenv("SHMCKPT_BACKEND");
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 4, &io, &why), 0);
	assert_string_equal(ckpt__io_name(io), uring_ok ? "io_uring" : "fallback");
	if (uring_ok)
		assert_null(why);
	else
		assert_non_null(strstr(why, "io_uring unavailable"));
	ckpt__io_close(io);

	assert_int_equal(ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 0, &io, NULL),
			 -EINVAL);
	assert_int_equal(ckpt__io_open(42, NULL, 4, &io, NULL), -EINVAL);
	plan.lat_min_us = 10;
	plan.lat_max_us = 5;
	assert_int_equal(ckpt__io_open(CKPT_BACKEND_FALLBACK, &plan, 4, &io,
				       NULL), -EINVAL);
	assert_null(io);
}

/* What Docker's and containerd's default profiles do to io_uring. */
static int deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & 0xfff)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

static void test_auto_seccomp(void **state)
{
	pid_t pid;
	int st;
	(void)state;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ckpt__io_t *io = NULL;
		const char *why = NULL;
		int ret;

		unsetenv("SHMCKPT_BACKEND");
		if (deny_io_uring() < 0)
			_exit(CKPT_TEST_SKIP);
		ret = ckpt__io_open(CKPT_BACKEND_AUTO, NULL, 4, &io, &why);
		CHILD_CHECK(ret == 0);
		CHILD_CHECK(strcmp(ckpt__io_name(io), "fallback") == 0);
		CHILD_CHECK(why && strcmp(why, "io_uring unavailable (Operation "
				    "not permitted): using pwrite+fdatasync") == 0);
		ckpt__io_close(io);
		ret = ckpt__io_open(CKPT_BACKEND_URING, NULL, 4, &io, &why);
		CHILD_CHECK(ret == -EPERM);
		CHILD_CHECK(strstr(ckpt_last_error(), "io_uring_queue_init"));
		_exit(0);
	}
	st = tu_wait(pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == CKPT_TEST_SKIP) {
		printf("SKIP seccomp case: cannot install a seccomp filter\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- fault wrapper: latency ------------------------------------------- */

static double sample_mean(const struct ckpt_fault_plan *p, int n,
			  uint64_t *lo, uint64_t *hi)
{
	struct ckpt__fault_lat lat;
	uint64_t rng = seed;
	double sum = 0;

	assert_int_equal(ckpt__fault_lat_init(&lat, p), 0);
	*lo = UINT64_MAX;
	*hi = 0;
	for (int i = 0; i < n; i++) {
		uint64_t v = ckpt__fault_lat_sample(&lat, &rng);

		sum += (double)v;
		if (v < *lo)
			*lo = v;
		if (v > *hi)
			*hi = v;
	}
	return sum / n;
}

static void test_fault_latency(void **state)
{
	struct ckpt_fault_plan p;
	struct ckpt__fault_lat lat;
	uint64_t lo, hi;
	double m;
	(void)state;

	/* the P1 storage: 1-20 s, 2.6 s on average */
	memset(&p, 0, sizeof(p));
	p.lat_min_us = 1000000;
	p.lat_max_us = 20000000;
	p.lat_mean_us = 2600000;
	m = sample_mean(&p, 200000, &lo, &hi);
	printf("1-20 s, mean 2.6 s: sampled mean %.4f s, range %.3f-%.3f s\n",
	       m / 1e6, (double)lo / 1e6, (double)hi / 1e6);
	assert_true(m > 2600000 * 0.99 && m < 2600000 * 1.01);
	assert_true(lo >= 1000000 && hi <= 20000000);
	assert_true(hi > 10000000); /* the tail is there */

	/* a mean near the top: the clip carries real weight */
	p.lat_min_us = 100;
	p.lat_max_us = 2000;
	p.lat_mean_us = 1500;
	m = sample_mean(&p, 200000, &lo, &hi);
	assert_true(m > 1500 * 0.98 && m < 1500 * 1.02);
	assert_true(lo >= 100 && hi == 2000);

	p.lat_mean_us = 300;
	m = sample_mean(&p, 200000, &lo, &hi);
	assert_true(m > 300 * 0.98 && m < 300 * 1.02);

	p.lat_mean_us = 0; /* uniform */
	m = sample_mean(&p, 200000, &lo, &hi);
	assert_true(m > 1050 * 0.98 && m < 1050 * 1.02);
	assert_true(lo >= 100 && hi <= 2000);

	p.lat_min_us = p.lat_max_us = 500; /* fixed */
	m = sample_mean(&p, 1000, &lo, &hi);
	assert_true(lo == 500 && hi == 500);
	p.lat_max_us = 0; /* max 0: fixed at min */
	m = sample_mean(&p, 1000, &lo, &hi);
	assert_true(lo == 500 && hi == 500);

	p.lat_min_us = 100;
	p.lat_max_us = 2000;
	p.lat_mean_us = 50;
	assert_int_equal(ckpt__fault_lat_init(&lat, &p), -EINVAL);
	p.lat_mean_us = 2000;
	assert_int_equal(ckpt__fault_lat_init(&lat, &p), -EINVAL);
}

/* Latency through the wrapper: no op completes before its minimum, and
 * reap's wait bound holds while ops are not yet due. */
static void test_fault_latency_ops(void **state)
{
	const struct be *b = backend(state);
	struct ckpt_fault_plan plan;
	char *dir = tu_mkdtemp("io-lat");
	ckpt__io_t *io;
	unsigned char buf[4096];
	struct ckpt__io_op op, *done[1];
	int fd = open_file(dir, "lat", 0);
	uint64_t t0;

	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = 2000;
	plan.lat_max_us = 8000;
	plan.lat_mean_us = 3000;
	plan.seed = seed;
	io = open_io(b, &plan, 2);
	memset(buf, 1, sizeof(buf));
	for (int i = 0; i < 10; i++) {
		op = one(io, fd, buf, sizeof(buf), 0);
		assert_int_equal(op.res, 0);
		assert_true(op.done_ns - op.submit_ns >= 2000000);
	}
	/* a 50 ms op: a 1 ms wait returns empty-handed, after >= 1 ms */
	ckpt__io_close(io);
	plan.lat_min_us = plan.lat_max_us = 50000;
	plan.lat_mean_us = 0;
	io = open_io(b, &plan, 2);
	memset(&op, 0, sizeof(op));
	op.fd = fd;
	op.buf = buf;
	op.len = sizeof(buf);
	assert_int_equal(ckpt__io_submit(io, &op), 0);
	t0 = tu_now_ns();
	assert_int_equal(ckpt__io_reap(io, done, 1, 1000000), 0);
	assert_true(tu_now_ns() - t0 >= 1000000);
	assert_int_equal(ckpt__io_reap(io, done, 1, 0), 0);
	reap_n(io, done, 1);
	assert_true(op.done_ns - op.submit_ns >= 50000000);
	ckpt__io_close(io);
	close(fd);
	tu_rmdir(dir);
}

/* ---- fault wrapper: EIO, short, ENOSPC -------------------------------- */

#define REG 8192u

/* Three regions of one file, old contents 0x11; ops 1-3 write new random
 * data, one to each.  Returns the fd; results in ops[]. */
static int three_ops(const struct be *b, struct ckpt_fault_plan *plan,
		     const char *dir, unsigned char nu[3][REG],
		     struct ckpt__io_op ops[3])
{
	unsigned char old[3 * REG];
	uint64_t rng = seed ^ 0x3333;
	ckpt__io_t *io = open_io(b, plan, 4);
	char name[32];
	int fd = open_file(dir, "three", 0);

	snprintf(name, sizeof(name), "fault+%s", b->name);
	assert_string_equal(ckpt__io_name(io), name);
	memset(old, 0x11, sizeof(old));
	put(fd, old, sizeof(old), 0);
	for (int i = 0; i < 3; i++) {
		fill_rand(nu[i], REG, &rng);
		ops[i] = one(io, fd, nu[i], REG, (uint64_t)i * REG);
	}
	ckpt__io_close(io);
	return fd;
}

static void region_is(int fd, int i, const unsigned char *want)
{
	unsigned char back[REG];

	get(fd, back, REG, (uint64_t)i * REG);
	assert_memory_equal(back, want, REG);
}

static void test_fault_eio_write(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-eiow");
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;
	unsigned char nu[3][REG], old[REG];
	struct ckpt__io_op ops[3];
	int fd;

	memset(&plan, 0, sizeof(plan));
	plan.eio_write_at = 2;
	fd = three_ops(b, &plan, dir, nu, ops);
	memset(old, 0x11, sizeof(old));
	assert_int_equal(ops[0].res, 0);
	assert_int_equal(ops[1].res, -EIO);
	assert_int_equal(ops[1].failed_phase, CKPT_IO_WRITE);
	assert_int_equal(ops[1].short_write, 0);
	assert_int_equal(ops[2].res, 0);
	region_is(fd, 0, nu[0]);
	region_is(fd, 1, old); /* a failed write left nothing */
	region_is(fd, 2, nu[2]);
	ckpt__fault_stats(&plan, &st);
	assert_int_equal(st.ops, 3);
	assert_int_equal(st.writes_ok, 2);
	assert_int_equal(st.eio_write, 1);
	close(fd);
	tu_rmdir(dir);
}

static void test_fault_eio_sync(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-eios");
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;
	unsigned char nu[3][REG];
	struct ckpt__io_op ops[3];
	int fd;

	memset(&plan, 0, sizeof(plan));
	plan.eio_sync_at = 2;
	plan.eio_sync_count = UINT64_MAX; /* and every op after it */
	fd = three_ops(b, &plan, dir, nu, ops);
	assert_int_equal(ops[0].res, 0);
	for (int i = 1; i < 3; i++) {
		assert_int_equal(ops[i].res, -EIO);
		assert_int_equal(ops[i].failed_phase, CKPT_IO_SYNC);
		assert_int_equal(ops[i].short_write, 0);
		region_is(fd, i, nu[i]); /* written, just not durable */
	}
	ckpt__fault_stats(&plan, &st);
	assert_int_equal(st.eio_sync, 2);
	assert_int_equal(st.writes_ok, 1);
	close(fd);
	tu_rmdir(dir);
}

static void test_fault_short(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-short");
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;
	unsigned char nu[3][REG], want[REG];
	struct ckpt__io_op ops[3];
	int fd;

	memset(&plan, 0, sizeof(plan));
	plan.short_write_at = 3;
	fd = three_ops(b, &plan, dir, nu, ops);
	assert_int_equal(ops[0].res, 0);
	assert_int_equal(ops[1].res, 0);
	assert_int_equal(ops[2].res, -EIO);
	assert_int_equal(ops[2].failed_phase, CKPT_IO_WRITE);
	assert_int_equal(ops[2].short_write, 1);
	memcpy(want, nu[2], REG / 2);
	memset(want + REG / 2, 0x11, REG / 2);
	region_is(fd, 2, want);
	ckpt__fault_stats(&plan, &st);
	assert_int_equal(st.short_writes, 1);
	assert_int_equal(st.writes_ok, 2);
	close(fd);
	tu_rmdir(dir);
}

static void test_fault_enospc_grow(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-enospc");
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;
	ckpt__io_t *io;
	struct stat sb;
	int fd = open_file(dir, "grow", 0);

	memset(&plan, 0, sizeof(plan));
	plan.enospc_grow_at = 2;
	plan.enospc_grow_count = 2;
	io = open_io(b, &plan, 4);
	assert_int_equal(ckpt__io_grow(io, fd, 0, 4096), 0);
	assert_int_equal(ckpt__io_grow(io, fd, 4096, 65536), -ENOSPC);
	assert_non_null(strstr(ckpt_last_error(), "ENOSPC"));
	assert_int_equal(ckpt__io_grow(io, fd, 4096, 65536), -ENOSPC);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 4096);
	assert_int_equal(ckpt__io_grow(io, fd, 4096, 65536), 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 65536);
	ckpt__fault_stats(&plan, &st);
	assert_int_equal(st.grows, 4);
	assert_int_equal(st.enospc_grow, 2);
	ckpt__io_close(io);
	close(fd);
	tu_rmdir(dir);
}

/* ---- fault wrapper: power cut ----------------------------------------- */

#define CUT_FILES 8
#define CUT_LEN (32u * 1024u)

struct cutter {
	struct ckpt_fault_plan *plan;
	int done; /* atomic: the cut has happened */
};

static void *cut_thread(void *arg)
{
	struct cutter *c = arg;
	struct timespec ts = { 0, 120 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	ckpt__fault_powercut(c->plan);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE); /* pairs with the
							  * acquire in the
							  * writer loop */
	return NULL;
}

static void test_fault_powercut(void **state)
{
	const struct be *b = backend(state);
	char *dir = tu_mkdtemp("io-cut");
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats st;
	struct cutter c;
	pthread_t th;
	ckpt__io_t *io;
	static unsigned char bufs[CUT_FILES][CUT_LEN];
	static unsigned char snap[CUT_FILES][CUT_LEN], back[CUT_LEN];
	struct ckpt__io_op ops[CUT_FILES], *done[CUT_FILES];
	int fds[CUT_FILES], busy[CUT_FILES] = { 0 }, after[CUT_FILES] = { 0 };
	int snapped = 0, failed_after = 0, ok = 0;
	uint64_t rng = seed ^ 0xc0c0, t_end = 0, t0 = tu_now_ns();

	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = 5000;
	plan.lat_max_us = 30000;
	plan.seed = seed;
	io = open_io(b, &plan, CUT_FILES);
	for (int i = 0; i < CUT_FILES; i++) {
		fds[i] = open_file(dir, "cut", i);
		memset(bufs[i], 0x22, CUT_LEN);
		put(fds[i], bufs[i], CUT_LEN, 0);
	}
	c.plan = &plan;
	c.done = 0;
	assert_int_equal(pthread_create(&th, NULL, cut_thread, &c), 0);

	/* Keep every file busy until well after the cut. */
	while (!snapped || tu_now_ns() < t_end) {
		int n;

		if (!snapped && __atomic_load_n(&c.done, __ATOMIC_ACQUIRE)) {
			/* From here on no byte may change. */
			for (int i = 0; i < CUT_FILES; i++) {
				get(fds[i], snap[i], CUT_LEN, 0);
				after[i] = busy[i] ? 0 : 1;
			}
			snapped = 1;
			t_end = tu_now_ns() + 100000000;
		}
		for (int i = 0; i < CUT_FILES; i++) {
			if (busy[i])
				continue;
			fill_rand(bufs[i], CUT_LEN, &rng);
			memset(&ops[i], 0, sizeof(ops[i]));
			ops[i].fd = fds[i];
			ops[i].buf = bufs[i];
			ops[i].len = CUT_LEN;
			assert_int_equal(ckpt__io_submit(io, &ops[i]), 0);
			busy[i] = 1;
			if (snapped)
				after[i] = 1;
		}
		n = ckpt__io_reap(io, done, CUT_FILES, 10000000);
		assert_true(n >= 0);
		for (int k = 0; k < n; k++) {
			int i = (int)(done[k] - ops);

			busy[i] = 0;
			if (done[k]->res == 0)
				ok++;
			/* an op submitted after the cut can only fail */
			if (snapped && after[i]) {
				assert_int_equal(done[k]->res, -EIO);
				assert_int_equal(done[k]->failed_phase,
						 CKPT_IO_WRITE);
				failed_after++;
			}
		}
		assert_true(tu_now_ns() - t0 < 10000000000ull);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	ckpt__io_close(io);
	for (int i = 0; i < CUT_FILES; i++) {
		get(fds[i], back, CUT_LEN, 0);
		assert_memory_equal(back, snap[i], CUT_LEN);
		close(fds[i]);
	}
	ckpt__fault_stats(&plan, &st);
	printf("power cut on %s: %d ops ok before, %d failed after, "
	       "%llu cut\n", b->name, ok,
	       failed_after, (unsigned long long)st.cut_ops);
	assert_true(ok > 0);
	assert_true(failed_after > 0);
	assert_true(st.cut_ops >= (uint64_t)failed_after);
	assert_int_equal(st.torn, 0);
	tu_rmdir(dir);
}

/* Op 3 is in flight when the power goes: a 512-multiple prefix of it, and
 * nothing of op 4. */
static void test_fault_torn(void **state)
{
	const struct be *b = backend(state);
	const size_t len = 16 * 1024 + 300;
	char *dir = tu_mkdtemp("io-torn");
	unsigned char nu[4][16 * 1024 + 300], old[16 * 1024 + 300], back[16 * 1024 + 300];
	uint64_t rng = seed ^ 0x7070, seen_bytes[64];
	int distinct = 0, rounds = 24;

	memset(old, 0x5a, len);
	for (int r = 0; r < rounds; r++) {
		struct ckpt_fault_plan plan;
		struct ckpt_fault_stats st;
		struct ckpt__io_op ops[4];
		ckpt__io_t *io;
		int fd = open_file(dir, "torn", r);
		uint64_t p;

		memset(&plan, 0, sizeof(plan));
		plan.powercut_at_op = 3;
		plan.torn = 1;
		plan.seed = seed + (uint64_t)r;
		io = open_io(b, &plan, 4);
		for (int i = 0; i < 4; i++) {
			put(fd, old, len, (uint64_t)i * len);
			fill_rand(nu[i], len, &rng);
		}
		for (int i = 0; i < 4; i++)
			ops[i] = one(io, fd, nu[i], len, (uint64_t)i * len);
		assert_int_equal(ckpt__io_grow(io, fd, 4 * len, 8 * len), -EIO);
		ckpt__io_close(io);

		assert_int_equal(ops[0].res, 0);
		assert_int_equal(ops[1].res, 0);
		for (int i = 2; i < 4; i++) {
			assert_int_equal(ops[i].res, -EIO);
			assert_int_equal(ops[i].failed_phase, CKPT_IO_WRITE);
		}
		ckpt__fault_stats(&plan, &st);
		assert_int_equal(st.torn, 1);
		assert_int_equal(st.torn_op, 3);
		assert_int_equal(st.writes_ok, 2);
		assert_int_equal(st.cut_ops, 2);
		p = st.torn_bytes;
		assert_true(p % 512 == 0 && p < len);
		for (int i = 0; i < 2; i++) {
			get(fd, back, len, (uint64_t)i * len);
			assert_memory_equal(back, nu[i], len);
		}
		get(fd, back, len, 2 * len);
		if (p)
			assert_memory_equal(back, nu[2], p);
		assert_memory_equal(back + p, old + p, len - p);
		get(fd, back, len, 3 * len);
		assert_memory_equal(back, old, len);
		{
			struct stat sb;

			assert_int_equal(fstat(fd, &sb), 0);
			assert_int_equal((uint64_t)sb.st_size, 4 * len);
		}
		close(fd);
		seen_bytes[r] = p;
		distinct++;
		for (int k = 0; k < r; k++)
			if (seen_bytes[k] == p) {
				distinct--;
				break;
			}
	}
	printf("torn prefixes on %s: %d distinct lengths in %d cuts\n",
	       b->name, distinct, rounds);
	assert_true(distinct >= 3);
	tu_rmdir(dir);
}

/* ---- main --------------------------------------------------------------- */

#define BOTH(f)                                                              \
	cmocka_unit_test_prestate(f, &be_uring),                             \
		cmocka_unit_test_prestate(f, &be_fallback)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_write_read),
		BOTH(test_many_files),
		BOTH(test_split),
		BOTH(test_grow),
		BOTH(test_short_rlimit),
		cmocka_unit_test(test_auto_env),
		cmocka_unit_test(test_auto_seccomp),
		cmocka_unit_test(test_fault_latency),
		BOTH(test_fault_latency_ops),
		BOTH(test_fault_many_files),
		BOTH(test_fault_eio_write),
		BOTH(test_fault_eio_sync),
		BOTH(test_fault_short),
		BOTH(test_fault_enospc_grow),
		BOTH(test_fault_powercut),
		BOTH(test_fault_torn),
		BOTH(test_big_write),
	};
	ckpt__io_t *io;
	int ret;

	seed = tu_seed("test_io");
	unsetenv("SHMCKPT_BACKEND");
	ret = ckpt__io_open(CKPT_BACKEND_URING, NULL, 4, &io, NULL);
	if (ret == 0) {
		uring_ok = 1;
		ckpt__io_close(io);
	} else {
		printf("SKIP io_uring cases: %s (%s)\n", ckpt_strerror(ret),
		       ckpt_last_error());
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
