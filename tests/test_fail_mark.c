/*
 * test_fail_mark.c - after a failed datasync, the slot that write left is
 * distrusted until a new write replaces it, also across a crash.
 *
 * A datasync fails (injected: the data is written, the sync reports EIO).
 * The slot now holds a newer epoch than the durable one; on a real disk
 * its bytes may never reach the platter, and a later fdatasync of it may
 * succeed without writing anything.  Recovery therefore distrusts any slot
 * newer than the region's durable epoch while the region's error word is
 * set.  What must hold:
 *   - a reopen (the retry) recovers everything from the ring, is healthy,
 *     and leaves both the error word and the durable epoch alone until its
 *     first write is durable; then the word is cleared;
 *   - a reopen killed before that first write completes leaves the word
 *     set: the next open still distrusts the slot and does not publish its
 *     epoch as durable.
 *   - a sidecar takes a stream whose in-process retry died before its
 *     first write (the mark set, health no longer "failed"), once its
 *     consumer opens it with an external flusher;
 *   - a CKPT_O_RESET interrupted between its steps (here: blanking the
 *     slots fails) must not leave the unsynced slot without its mark: the
 *     next plain open still distrusts it.
 * The writes after the failure are slowed (injected latency) to hold that
 * window open.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
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

#include "fault.h"
#include "layout.h"
#include "regionmap.h"
#include "shmckpt.h"
#include "sidecar.h"
#include "testutil.h"

#define NAME "mark"
#define SLOW_US 1500000 /* each write after the failure: 1.5 s */

static void commit_one(ckpt_stream_t *s, int64_t e)
{
	char v[32];
	snprintf(v, sizeof(v), "value-%lld", (long long)e);
	assert_int_equal(ckpt_offset(s, "t", 0, e), 0);
	assert_int_equal(ckpt_put(s, "k", 1, v, strlen(v)), 0);
	assert_int_equal(ckpt_commit(s), e);
}

/* Epochs 1.. one at a time until the third datasync fails; then three more
 * that only the ring holds.  Returns the last; *durable the durable one,
 * *failed the epoch whose slot was written but not synced. */
static int64_t fail_once(const char *dir, int64_t *durable, int64_t *failed)
{
	struct ckpt_fault_plan plan;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t e = 0;

	memset(&plan, 0, sizeof(plan));
	plan.eio_sync_at = 3;
	ckpt_opts_init(&o);
	o.fault = &plan;
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	*durable = *failed = 0;
	while (!*failed && e < 10) {
		commit_one(s, ++e);
		int ret = ckpt_wait_durable(s, e, 10000);
		if (ret == 0)
			*durable = e;
		else if (ret == CKPT_EFAILED)
			*failed = e;
		else
			fail_msg("wait_durable: %s", ckpt_strerror(ret));
	}
	assert_true(*failed == *durable + 1 && *durable > 0);
	for (int i = 0; i < 3; i++)
		commit_one(s, ++e);
	assert_int_equal(ckpt_close(s), -EIO);
	return e;
}

static int32_t region_error(const char *dir)
{
	size_t len;
	struct ckpt_region *h = rm_map(dir, NAME, 0, &len);
	int32_t err = __atomic_load_n(&h->flush.error, __ATOMIC_ACQUIRE);
	rm_unmap(h, len);
	return err;
}

static void check_value(ckpt_stream_t *s, int64_t e)
{
	char want[32];
	const void *v;
	size_t vl;
	int64_t next = -1;

	snprintf(want, sizeof(want), "value-%lld", (long long)e);
	assert_int_equal(ckpt_get(s, "k", 1, &v, &vl), 0);
	assert_int_equal(vl, strlen(want));
	assert_memory_equal(v, want, vl);
	assert_int_equal(ckpt_get_offset(s, "t", 0, &next), 0);
	assert_int_equal(next, e);
}

static ckpt_stream_t *open_slow(const char *dir, struct ckpt_fault_plan *plan)
{
	ckpt_stream_t *s;
	ckpt_opts_t o;

	memset(plan, 0, sizeof(*plan));
	plan->lat_min_us = plan->lat_max_us = SLOW_US;
	ckpt_opts_init(&o);
	o.fault = plan;
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	return s;
}

/* A retry (a reopen, slow writes) killed while its first write is in
 * flight. */
static void kill_retry_mid_write(const char *dir)
{
	struct ckpt_fault_plan plan;
	int *ready = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(ready != MAP_FAILED);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		(void)open_slow(dir, &plan);
		__atomic_store_n(ready, 1, __ATOMIC_RELEASE);
		pause();
		_exit(0);
	}
	while (!__atomic_load_n(ready, __ATOMIC_ACQUIRE))
		usleep(1000);
	usleep(200000); /* its first write is submitted, far from done */
	kill(pid, SIGKILL);
	tu_wait(pid);
	munmap(ready, sizeof(int));
}

static void test_retry_keeps_mark_until_written(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("failmark");
	struct ckpt_fault_plan plan;
	ckpt_status_t st;
	int64_t durable, failed, last;

	last = fail_once(dir, &durable, &failed);
	assert_int_equal(region_error(dir), -EIO);

	ckpt_stream_t *s = open_slow(dir, &plan);
	assert_int_equal(ckpt_recovered_epoch(s), last); /* from the ring */
	check_value(s, last);
	/* the retry is healthy, but its first write is not done: the slot of
	 * epoch `failed` is still there, so is the mark, and it was not
	 * published durable */
	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_not_equal(st.health, CKPT_FAILED);
	assert_int_equal(st.error, 0);
	assert_int_equal(ckpt_durable_epoch(s), durable);
	assert_int_equal(region_error(dir), -EIO);
	/* the first write replaces that slot; then the mark goes */
	assert_int_equal(ckpt_wait_durable(s, last, 20000), 0);
	assert_int_equal(region_error(dir), 0);
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);
	tu_rmdir(dir);
}

static void test_crash_before_first_write(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("failmark");
	struct ckpt_fault_plan plan;
	int64_t durable, failed, last;

	last = fail_once(dir, &durable, &failed);
	kill_retry_mid_write(dir);
	/* the mark survived the crash... */
	assert_int_equal(region_error(dir), -EIO);

	/* ...so the next open still distrusts the slot of epoch `failed`:
	 * it loads the older slot and does not publish `failed` durable
	 * (its own writes are slow, so nothing else moves the epoch yet) */
	ckpt_stream_t *s = open_slow(dir, &plan);
	printf("durable %lld, failed %lld, committed %lld; after the crash "
	       "and reopen: durable %lld\n", (long long)durable,
	       (long long)failed, (long long)last,
	       (long long)ckpt_durable_epoch(s));
	assert_int_equal(ckpt_recovered_epoch(s), last);
	check_value(s, last);
	assert_int_equal(ckpt_durable_epoch(s), durable);
	assert_int_equal(ckpt_wait_durable(s, last, 20000), 0);
	assert_int_equal(region_error(dir), 0);
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);
	tu_rmdir(dir);
}

/* The killed retry of test_crash_before_first_write, then a sidecar. */
static void test_sidecar_after_dead_retry(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("failmark");
	char log[PATH_MAX];
	ckpt_status_t st;
	ckpt_opts_t o;
	int64_t durable, failed, last;

	sc_daemon(); /* finds <O>/bin/shmckptd, or skips saying why */
	snprintf(log, sizeof(log), "%s.log", dir);
	last = fail_once(dir, &durable, &failed);
	kill_retry_mid_write(dir);
	assert_int_equal(region_error(dir), -EIO); /* marked, not failed */

	/* the consumer comes back with an external flusher, and a sidecar
	 * serves the directory: it must take the stream (distrusting the
	 * unsynced slot) and make everything durable */
	ckpt_stream_t *s;
	ckpt_opts_init(&o);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	pid_t sc = sc_start(dir, log, NULL);
	int ret = ckpt_wait_durable(s, last, 20000);
	if (ret != 0) {
		sc_log_tail(log, 20);
		fail_msg("wait_durable(%lld): %s", (long long)last,
			 ckpt_strerror(ret));
	}
	assert_int_equal(ckpt_status(s, &st), 0);
	assert_int_equal(st.health, CKPT_HEALTHY);
	assert_int_equal(region_error(dir), 0);
	int stc = sc_stop(sc);
	assert_true(WIFEXITED(stc) && WEXITSTATUS(stc) == 0);
	assert_int_equal(ckpt_close(s), 0);
	/* and from the slots alone, exactly */
	tu_unlink_regions(dir);
	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	check_value(s, last);
	assert_int_equal(ckpt_close(s), 0);
	sc_log_done(log);
	tu_unlink_regions(dir);
	tu_rmdir(dir);
}

static void test_reset_interrupted(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("failmark");
	struct ckpt_fault_plan plan;
	char tmp[1100], inner[1200];
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t durable, failed, last;

	last = fail_once(dir, &durable, &failed);
	/* a directory where the reset makes its first blank slot: blanking
	 * fails, as a crash at that point would stop it */
	snprintf(tmp, sizeof(tmp), "%s/%s/slot-0.tmp", dir, NAME);
	snprintf(inner, sizeof(inner), "%s/x", tmp);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(mkdir(inner, 0700), 0);
	ckpt_opts_init(&o);
	o.flags = CKPT_O_RESET;
	int ret = ckpt_open(dir, NAME, &o, &s);
	printf("interrupted reset: %s: %s\n", ckpt_strerror(ret),
	       ckpt_last_error());
	assert_true(ret < 0);
	assert_int_equal(rmdir(inner), 0);
	assert_int_equal(rmdir(tmp), 0);

	/* the old region, and its mark, are still there: the next plain
	 * open distrusts the unsynced slot and replays the ring */
	assert_int_equal(region_error(dir), -EIO);
	s = open_slow(dir, &plan);
	printf("after it: recovered %lld, durable %lld (durable was %lld, "
	       "the unsynced slot holds %lld)\n",
	       (long long)ckpt_recovered_epoch(s),
	       (long long)ckpt_durable_epoch(s), (long long)durable,
	       (long long)failed);
	assert_int_equal(ckpt_durable_epoch(s), durable);
	assert_int_equal(ckpt_recovered_epoch(s), last);
	check_value(s, last);
	assert_int_equal(ckpt_wait_durable(s, last, 20000), 0);
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_keeps_mark_until_written),
		cmocka_unit_test(test_crash_before_first_write),
		cmocka_unit_test(test_sidecar_after_dead_retry),
		cmocka_unit_test(test_reset_interrupted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
