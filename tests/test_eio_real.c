/*
 * test_eio_real.c - a device that really fails writes, not an injected
 * error.  An ext4 filesystem lives on a loop device whose backing file sits
 * on a tmpfs far smaller than the filesystem: once the tmpfs is full, the
 * filesystem still has room, so fallocate and the write into the page
 * cache succeed, but writeback to the device fails and fdatasync reports
 * it (ENOSPC from the block layer, or EIO: whichever the kernel says).
 * This is the fsync-error case of real disks, where a retried fsync may
 * return 0 for data that never reached the device.
 *
 * What must hold (BRIEF, "EIO on write or fdatasync: never
 * retry-and-trust"):
 *   - the stream fails: health FAILED, the kernel's error in the status,
 *     the durable epoch frozen, ckpt_wait_durable says CKPT_EFAILED;
 *   - commits go on (the ring keeps them);
 *   - after a power cut (region gone, page cache gone: the filesystem is
 *     unmounted and mounted again) what comes back is at least the last
 *     epoch reported durable, and exactly the committed state at the epoch
 *     it claims;
 *   - on the same boot, once the device works again, a reopen recovers
 *     every committed epoch from the ring, flushes it, and a power cut
 *     after that loses nothing.
 *
 * The filesystem is ext4 with its journal, as most are: the journal's own
 * failed writes abort it, the error surfaces at whichever step the kernel
 * reports it first (growing a slot, a write, a datasync) and the
 * filesystem turns read-only until it is mounted again.  (Without a
 * journal, where the error would surface at fdatasync, whether the device
 * runs out depends on where ext4 places the blocks against the pages its
 * backing store already holds: not repeatable.  Injected datasync errors
 * cover that path: test_flush_faults.)
 *
 * Needs root (mount) and loop devices; without them it skips and says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmckpt.h"
#include "testutil.h"

#define NAME "eio"
#define NKEYS 40
#define SMALL 64 /* value bytes before the device fails */
#define BIG 8192 /* after: the image outgrows what was ever written */
#define MAXE 256

/* ext4's "going down" ioctl (the kernel's fs/ext4/ext4.h; the same number
 * as XFS_IOC_GOINGDOWN and F2FS_IOC_SHUTDOWN): the filesystem stops at
 * once; with NOLOGFLUSH neither dirty pages nor the journal's tail reach
 * the device, which is what a power cut leaves (xfstests' "godown"). */
#ifndef EXT4_IOC_SHUTDOWN
#define EXT4_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#define GOING_FLAGS_NOLOGFLUSH 0x2u

static char *base, back[900], img[1024], mnt[1024], filler[1024];
static int back_mounted, mnt_mounted;

/* What was committed: epoch e put key (e % NKEYS) with a value of
 * vlen[e] bytes, and offset e.  The state at epoch E is a replay. */
static size_t vlen[MAXE + 1];

static int run(const char *cmd)
{
	return system(cmd) == 0 ? 0 : -1;
}

static void fill_val(char *val, size_t len, int64_t e)
{
	memset(val, (int)(e & 0x7f) | 1, len);
	memcpy(val, &e, sizeof(e));
}

static int64_t commit_one(ckpt_stream_t *s, int64_t e, size_t len)
{
	char key[16], val[BIG];

	assert_true(e <= MAXE && len <= sizeof(val));
	vlen[e] = len;
	snprintf(key, sizeof(key), "key%03d", (int)(e % NKEYS));
	fill_val(val, len, e);
	assert_int_equal(ckpt_offset(s, "t", 0, e), 0);
	assert_int_equal(ckpt_put(s, key, strlen(key), val, len), 0);
	return ckpt_commit(s);
}

/* The recovered state must be exactly the replay of epochs 1..E. */
static void check_state(ckpt_stream_t *s, int64_t E)
{
	int64_t next = -1;

	assert_int_equal(ckpt_get_offset(s, "t", 0, &next), 0);
	assert_int_equal(next, E);
	for (int k = 0; k < NKEYS; k++) {
		char key[16], want[BIG];
		const void *v;
		size_t len;
		int64_t e = -1;

		for (int64_t x = 1; x <= E; x++)
			if (x % NKEYS == k)
				e = x;
		snprintf(key, sizeof(key), "key%03d", k);
		int ret = ckpt_get(s, key, strlen(key), &v, &len);
		if (e < 0) {
			assert_int_equal(ret, -ENOENT);
			continue;
		}
		assert_int_equal(ret, 0);
		assert_int_equal(len, vlen[e]);
		fill_val(want, len, e);
		assert_memory_equal(v, want, len);
	}
}

/* Fill the tmpfs under the loop device: the filesystem above it keeps its
 * free space, the device loses its room to write. */
static void fill_device(void)
{
	static char chunk[65536];
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	long long total = 0;

	assert_true(fd >= 0);
	memset(chunk, 0x5a, sizeof(chunk));
	for (size_t n = sizeof(chunk); n >= 4096;) {
		ssize_t w = write(fd, chunk, n);
		if (w > 0) {
			total += w;
			continue;
		}
		assert_true(w < 0 && errno == ENOSPC);
		n /= 2;
	}
	close(fd);
	printf("device full: %lld bytes of filler in its backing store\n",
	       total);
}

static void mount_fs(void)
{
	char cmd[8192];

	snprintf(cmd, sizeof(cmd), "mount -o loop '%s' '%s' 2>/dev/null",
		 img, mnt);
	assert_int_equal(run(cmd), 0);
	mnt_mounted = 1;
}

/* Power cut: the region and every page not on the device are gone.  A
 * plain umount would write the dirty pages back first, so the filesystem
 * is shut down without flushing anything before it is unmounted. */
static void power_cut(void)
{
	uint32_t how = GOING_FLAGS_NOLOGFLUSH;
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	if (ioctl(fd, EXT4_IOC_SHUTDOWN, &how) < 0)
		fail_msg("EXT4_IOC_SHUTDOWN: %s", strerror(errno));
	close(fd);
	tu_unlink_regions(mnt);
	assert_int_equal(umount(mnt), 0); /* the loop device goes with it */
	mnt_mounted = 0;
}

/* A fresh filesystem image on the empty tmpfs, mounted. */
static int make_fs(void)
{
	char cmd[8192];

	/* 256 MiB of filesystem on 24 MiB of device (the image is sparse:
	 * mkfs writes only metadata) */
	snprintf(cmd, sizeof(cmd),
		 "rm -f '%s' '%s' && truncate -s 256M '%s' && "
		 "mkfs.ext4 -q -F -m 0 '%s' >/dev/null 2>&1 && "
		 "mount -o loop '%s' '%s' 2>/dev/null",
		 img, filler, img, img, img, mnt);
	if (run(cmd) < 0)
		return -1;
	mnt_mounted = 1;
	return 0;
}

/* Open, commit a small state, see it durable, then let the device fail
 * under a growing state.  Returns the last epoch committed; *durable0 is
 * the durable epoch before the failure. */
static int64_t fail_device(ckpt_stream_t **sp, int64_t *durable0)
{
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t o;
	int64_t e, last;

	ckpt_opts_init(&o);
	o.flush_interval_us = 500;
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), 0);
	for (e = 1; e <= 8; e++)
		assert_int_equal(commit_one(s, e, SMALL), e);
	assert_int_equal(ckpt_wait_durable(s, 8, 10000), 0);
	*durable0 = ckpt_durable_epoch(s);
	assert_int_equal(*durable0, 8);

	fill_device();
	/* 40 values of 8 KiB: slot bytes never written before, so the
	 * device must find room for them */
	for (; e <= 8 + NKEYS; e++)
		assert_int_equal(commit_one(s, e, BIG), e);
	last = e - 1;
	uint64_t t0 = tu_now_ns();
	do {
		usleep(20000);
		assert_int_equal(ckpt_status(s, &st), 0);
	} while (st.health != CKPT_FAILED &&
		 tu_now_ns() - t0 < 30000000000ull);
	printf("device failing: health %d, error %d (%s), durable %lld, enospc retries %llu, "
	       "committed %lld, flush errors %llu\n  why: %s\n", st.health,
	       st.error, ckpt_strerror(st.error), (long long)st.durable_epoch, (unsigned long long)st.enospc_retries,
	       (long long)st.committed_epoch,
	       (unsigned long long)st.flush_errors, st.why);
	assert_int_equal(st.health, CKPT_FAILED);
	/* what the kernel said, not a retry's verdict */
	assert_true(st.error == -EIO || st.error == -ENOSPC);
	assert_true(st.flush_errors >= 1);
	assert_int_equal(st.durable_epoch, *durable0);
	assert_non_null(strstr(st.why, ckpt_strerror(st.error)));
	assert_true(strstr(st.why, "fdatasync") || strstr(st.why, "write") ||
		    strstr(st.why, "grow"));
	assert_int_equal(ckpt_wait_durable(s, last, 2000), CKPT_EFAILED);

	/* commits go on: the ring keeps them */
	for (int i = 0; i < 10; i++, e++)
		assert_int_equal(commit_one(s, e, SMALL), e);
	last = e - 1;
	/* and the durable epoch never moves again (no retry-and-trust) */
	usleep(200000);
	assert_int_equal(ckpt_durable_epoch(s), *durable0);
	*sp = s;
	return last;
}

static void test_eio_then_power_cut(void **state)
{
	(void)state;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t durable0, last, r;

	assert_int_equal(make_fs(), 0);
	last = fail_device(&s, &durable0);
	ckpt_status_t st;
	assert_int_equal(ckpt_status(s, &st), 0);
	int ret = ckpt_close(s);
	printf("close after the failure: %d (%s)\n", ret, ckpt_strerror(ret));
	assert_int_equal(ret, st.error); /* the flusher's error */

	/* the power goes while the device is still failing; it is repaired
	 * (its backing store freed) before the machine comes back */
	power_cut();
	assert_int_equal(unlink(filler), 0);
	mount_fs();

	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	r = ckpt_recovered_epoch(s);
	printf("after the power cut: recovered epoch %lld (durable was "
	       "%lld, committed %lld)\n", (long long)r, (long long)durable0,
	       (long long)last);
	/* R2: at least what was reported durable; never past what was
	 * committed; and exactly the state at the epoch it claims */
	assert_true(r >= durable0 && r <= last);
	check_state(s, r);
	/* the stream goes on from there on a working device */
	assert_int_equal(commit_one(s, r + 1, SMALL), r + 1);
	assert_int_equal(ckpt_wait_durable(s, r + 1, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);
}

/* Same boot: the device is repaired and the filesystem mounted again
 * (it went read-only); the region, and the ring in it, survived. */
static void test_eio_then_repair(void **state)
{
	(void)state;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t durable0, last;

	assert_int_equal(make_fs(), 0);
	last = fail_device(&s, &durable0);
	ckpt_status_t st;
	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_equal(ckpt_close(s), st.error); /* the flusher's error */

	/* what the failed writes left on the device is whatever it is: the
	 * slots' hashes and the region's failure mark decide what counts */
	assert_int_equal(umount(mnt), 0);
	mnt_mounted = 0;
	assert_int_equal(unlink(filler), 0);
	mount_fs();
	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	printf("same boot: recovered epoch %lld of %lld committed\n",
	       (long long)ckpt_recovered_epoch(s), (long long)last);
	assert_int_equal(ckpt_recovered_epoch(s), last); /* R3: the ring */
	check_state(s, last);
	assert_int_equal(ckpt_wait_durable(s, last, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);

	/* now durable for real: a power cut loses nothing */
	power_cut();
	mount_fs();
	assert_int_equal(ckpt_open(mnt, NAME, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	check_state(s, last);
	assert_int_equal(ckpt_close(s), 0);
}

/* Each test starts on a new filesystem and a new, empty device. */
static int test_teardown(void **state)
{
	(void)state;
	if (mnt_mounted) {
		/* detached even while a failed test left a stream open */
		tu_unlink_regions(mnt);
		umount2(mnt, MNT_DETACH);
		mnt_mounted = 0;
	}
	unlink(filler);
	unlink(img);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		tu_skip("SKIP: needs root to mount a tmpfs and a loop device");
	/* Our own mount namespace: whatever is mounted here is gone when
	 * this process is, even killed by a timeout with no teardown run. */
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		tu_skip("SKIP: cannot make a private mount namespace: %s",
			strerror(errno));
	base = tu_mkdtemp("eioreal");
	snprintf(back, sizeof(back), "%s/device", base);
	snprintf(mnt, sizeof(mnt), "%s/mnt", base);
	snprintf(img, sizeof(img), "%s/fs.img", back);
	snprintf(filler, sizeof(filler), "%s/filler", back);
	if (mkdir(back, 0700) < 0 || mkdir(mnt, 0700) < 0)
		return -1;
	if (mount("tmpfs", back, "tmpfs", 0, "size=24m,mode=0700") < 0) {
		tu_rmdir(base);
		tu_skip("SKIP: cannot mount a tmpfs here: %s", strerror(errno));
	}
	back_mounted = 1;
	if (make_fs() < 0) {
		umount(back);
		tu_rmdir(base);
		tu_skip("SKIP: cannot loop-mount an ext4 image here (no "
			"mkfs.ext4, no loop device, or mount not permitted)");
	}
	test_teardown(NULL);
	return 0;
}

static int teardown(void **state)
{
	test_teardown(state);
	if (back_mounted && umount(back) < 0)
		umount2(back, MNT_DETACH);
	tu_rmdir(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_eio_then_power_cut,
					  test_teardown),
		cmocka_unit_test_teardown(test_eio_then_repair, test_teardown),
	};
	if (getenv("CKPT_TEST_FILTER")) /* one test alone, by name */
		cmocka_set_test_filter(getenv("CKPT_TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
