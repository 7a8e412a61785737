/*
 * test_enospc_real.c - a real full filesystem, not an injected error: a
 * small ext4 image, loop-mounted, filled to the brim.  Commits go on, the
 * durable epoch holds, the status says ENOSPC, and flushing resumes once
 * space is freed; what then recovers is the newest commit, exactly.
 *
 * Needs root (mount); without it, or where the kernel refuses a loop mount
 * (a container without /dev/loop*), it skips and says why.
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmckpt.h"
#include "testutil.h"

#define NAME "full"
#define VAL 8192 /* value bytes: 40 of them outgrow the 64 KiB slot */

static char *base, mnt[1024], img[1024];
static int mounted;

static int run(const char *cmd)
{
	int rc = system(cmd);
	return rc == 0 ? 0 : -1;
}

static void put_val(ckpt_stream_t *s, int k, int64_t e)
{
	char key[16], val[VAL];
	snprintf(key, sizeof(key), "key%03d", k);
	memset(val, (int)(e & 0x7f), sizeof(val));
	memcpy(val, &e, sizeof(e));
	assert_int_equal(ckpt_put(s, key, strlen(key), val, sizeof(val)), 0);
}

/* Commit epoch @e: offset e, key (e % nk) = value of e. */
static int64_t commit_one(ckpt_stream_t *s, int64_t e, int nk)
{
	assert_int_equal(ckpt_offset(s, "t", 0, e), 0);
	put_val(s, (int)(e % nk), e);
	return ckpt_commit(s);
}

/* Fill the filesystem: a file written until ENOSPC, then synced. */
static int fill(const char *path)
{
	static char chunk[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	long long total = 0;

	if (fd < 0)
		return -1;
	memset(chunk, 0xa5, sizeof(chunk));
	for (size_t n = sizeof(chunk); n >= 512;) {
		ssize_t w = write(fd, chunk, n);
		if (w > 0) {
			total += w;
			continue;
		}
		if (w < 0 && errno != ENOSPC)
			break;
		n /= 2; /* the last blocks, in smaller pieces */
	}
	fsync(fd);
	close(fd);
	printf("filled the filesystem with %lld bytes\n", total);
	return 0;
}

static void test_real_enospc(void **state)
{
	(void)state;
	char filler[4200];
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t o;
	int64_t e, durable0, last;
	const int nk = 40;

	ckpt_opts_init(&o);
	o.flush_interval_us = 500;
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	/* a small state first: fits the preallocated slots */
	for (e = 1; e <= 4; e++)
		assert_int_equal(commit_one(s, e, 4), e);
	assert_int_equal(ckpt_wait_durable(s, 4, 10000), 0);
	durable0 = ckpt_durable_epoch(s);
	assert_int_equal(durable0, 4);

	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	assert_int_equal(fill(filler), 0);

	/* now the state outgrows the slot, which cannot grow */
	for (; e <= 4 + nk; e++)
		assert_int_equal(commit_one(s, e, nk), e);
	last = e - 1;
	uint64_t t0 = tu_now_ns();
	do {
		usleep(20000);
		assert_int_equal(ckpt_status(s, &st), 0);
	} while (st.enospc_retries == 0 && tu_now_ns() - t0 < 10000000000ull);
	printf("full: health %d, durable %lld, committed %lld, enospc "
	       "retries %llu, why: %s\n", st.health,
	       (long long)st.durable_epoch, (long long)st.committed_epoch,
	       (unsigned long long)st.enospc_retries, st.why);
	assert_true(st.enospc_retries > 0);
	assert_int_equal(st.health, CKPT_BACKPRESSURED);
	assert_non_null(strstr(st.why, "no space"));
	assert_int_equal(st.error, 0); /* not failed: retried */
	assert_int_equal(st.durable_epoch, durable0); /* holds */
	assert_int_equal(ckpt_wait_durable(s, last, 300), -ETIMEDOUT);

	/* commits go on meanwhile */
	for (int i = 0; i < 10; i++, e++)
		assert_int_equal(commit_one(s, e, nk), e);
	last = e - 1;

	/* space comes back: flushing resumes by itself */
	assert_int_equal(unlink(filler), 0);
	assert_int_equal(ckpt_wait_durable(s, last, 20000), 0);
	assert_int_equal(ckpt_status(s, &st), 0);
	printf("freed: health %d, durable %lld, flushes %llu\n", st.health,
	       (long long)st.durable_epoch, (unsigned long long)st.flushes);
	assert_int_equal(st.health, CKPT_HEALTHY);
	assert_int_equal(ckpt_close(s), 0);

	/* and it is all there */
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	int64_t next = -1;
	assert_int_equal(ckpt_get_offset(s, "t", 0, &next), 0);
	assert_int_equal(next, last);
	for (int k = 0; k < nk; k++) {
		char key[16];
		const void *v;
		size_t vlen;
		int64_t want = last - ((last - k) % nk + nk) % nk, got;
		snprintf(key, sizeof(key), "key%03d", k);
		assert_int_equal(ckpt_get(s, key, strlen(key), &v, &vlen), 0);
		assert_int_equal(vlen, VAL);
		memcpy(&got, v, sizeof(got));
		assert_int_equal(got, want);
	}
	assert_int_equal(ckpt_close(s), 0);
}

static int setup(void **state)
{
	(void)state;
	char cmd[4096 + 512];

	if (geteuid() != 0)
		tu_skip("SKIP: needs root to loop-mount a small filesystem");
	base = tu_mkdtemp("enospc");
	snprintf(img, sizeof(img), "%s/fs.img", base);
	snprintf(mnt, sizeof(mnt), "%s/mnt", base);
	if (mkdir(mnt, 0700) < 0)
		return -1;
	/* 8 MiB, no blocks reserved for root (we are root) */
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 8M '%s' && mkfs.ext4 -q -F -m 0 '%s' "
		 ">/dev/null 2>&1 && mount -o loop '%s' '%s' 2>/dev/null",
		 img, img, img, mnt);
	if (run(cmd) < 0) {
		tu_rmdir(base);
		tu_skip("SKIP: cannot loop-mount an ext4 image here (no "
			"mkfs.ext4, no loop device, or mount not permitted)");
	}
	mounted = 1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (mounted) {
		tu_unlink_regions(mnt);
		umount(mnt);
	}
	tu_rmdir(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_enospc),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
