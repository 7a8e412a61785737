/*
 * test_slow_storage.c - R5 against the storage that killed Spark (P1).
 *
 * Every slot write takes 1-20 s (mean 2.6 s, the fault backend's clipped
 * exponential), and the consumer commits one epoch every millisecond (one
 * offset + three puts over 1000 keys, so the state itself stays the same
 * size) for 60 s (divided by CKPT_TEST_SCALE under sanitizers).
 *
 * Asserted on bytes and counts, never on time:
 *   - memory: the heap in use after warm-up grows by at most 1 MiB, and
 *     stays under a bound computed from the configuration (ring + a few
 *     images of the state + slack); in the plain build the resident set too;
 *   - ring_used never exceeds ring_capacity; at most one write in flight;
 *   - coalescing: many epochs per slot write;
 *   - nothing dropped silently: every commit returned the next epoch number,
 *     every batch that did not fit got -EAGAIN (and ckpt_status counts each
 *     one, and says backpressured); after the last wait the durable epoch is
 *     the last committed one, and a reopen recovers exactly that state.
 *
 * CKPT_TEST_THREADED: the producer against the flusher thread under load.
 */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "shmckpt.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HAVE_SAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HAVE_SAN_ALLOC 1
#endif
#endif
#ifdef HAVE_SAN_ALLOC
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define NAME "slow-1"
#define RING (1u << 20)
#define NKEYS 1000
#define VLEN 64
#define PUTS 3
#define TOPIC "events"

/* Bytes the library may hold on the heap for this stream (R5): the
 * reader's private copy of one epoch (at most the ring), the materialized
 * state and the encoded image of one write - counted 4 images to leave
 * room for the state's own index - plus fixed slack for the flusher
 * thread, the I/O backend and stdio. */
#define SLACK (2u << 20)
#define GROWTH_MAX (1u << 20) /* after warm-up (the brief's figure) */

/* The heap in use: glibc's count over every arena, or the sanitizer's. */
static uint64_t heap_bytes(void)
{
#ifdef HAVE_SAN_ALLOC
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
#endif
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void key_of(unsigned i, char k[16])
{
	snprintf(k, 16, "key-%04u", i);
}

/* The value key @i gets in epoch @e: derived, so the model is one epoch
 * number per key. */
static void value_of(unsigned i, int64_t e, uint8_t v[VLEN])
{
	uint64_t st = (uint64_t)e << 16 ^ i;
	for (unsigned j = 0; j < VLEN; j += 8) {
		uint64_t r = tu_rand(&st);
		memcpy(v + j, &r, 8);
	}
}

static ckpt_opts_t opts(struct ckpt_fault_plan *plan)
{
	ckpt_opts_t o;
	ckpt_opts_init(&o);
	o.ring_size = RING;
	o.max_key = 64;
	o.max_value = 256;
	o.max_meta = 256;
	o.full_policy = CKPT_FULL_EAGAIN;
	o.fault = plan;
	return o;
}

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u),
			       (long)(ns % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static void test_slow_storage(void **state)
{
	(void)state;
	static int64_t model[NKEYS]; /* epoch of each key's value */
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats fst;
	ckpt_status_t st;
	ckpt_stream_t *s = NULL;
	char *dir = tu_mkdtemp("slow");
	uint64_t seed = tu_seed("test_slow_storage"), rs = seed;
	/* 60 s plain (the figure); never below 30 s under the
	 * sanitizers: with writes of up to 20 s, a shorter run may not see
	 * the two flushes and two ring laps that warm-up takes */
	uint64_t run_ms = tu_scaled(60000) < 30000 ? 30000 : tu_scaled(60000);
	uint64_t heap0, rss0, heap_warm = 0, rss_warm = 0;
	uint64_t heap_max = 0, rss_max = 0, used_max = 0;
	uint64_t ticks = 0, eagain = 0, eagain_seen = 0, batches_dropped = 0;
	uint64_t bp_status = 0, image_est;
	int64_t last = 0, next_offset = 0, durable_prev = 0;
	int warm = 0, ret;
	char k[16];
	uint8_t v[VLEN];

	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = 1000000;
	plan.lat_max_us = 20000000;
	plan.lat_mean_us = 2600000;
	plan.seed = seed;

	heap0 = heap_bytes();
	rss0 = rss_bytes();
	ckpt_opts_t o = opts(&plan);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		fail_msg("open: %s: %s", ckpt_strerror(ret), ckpt_last_error());

	/* Epoch 1 holds every key: from here on the state has a fixed
	 * size, and so has the image of every write. */
	for (unsigned i = 0; i < NKEYS; i++) {
		key_of(i, k);
		value_of(i, 1, v);
		assert_int_equal(ckpt_put(s, k, strlen(k), v, VLEN), 0);
		model[i] = 1;
	}
	assert_int_equal(ckpt_offset(s, TOPIC, 0, 0), 0);
	assert_int_equal(ckpt_commit(s), 1);
	last = 1;
	/* header + KV entries pad8(8 + klen + vlen) + the offset entry */
	image_est = 4096 + 16 + NKEYS * ((8 + 8 + VLEN + 7) / 8 * 8) + 64;

	printf("slow storage: %llu ms of 1 ms batches, writes of 1-20 s "
	       "(mean 2.6 s), ring %u KiB, image ~%llu KiB\n",
	       (unsigned long long)run_ms, RING >> 10,
	       (unsigned long long)(image_est >> 10));
	fflush(stdout);

	uint64_t t0 = tu_now_ns(), tick_ns = t0;
	while (tu_now_ns() - t0 < run_ms * 1000000u) {
		unsigned keys[PUTS];
		int full = 0;

		tick_ns += 1000000;
		sleep_until(tick_ns);
		ticks++;
		ret = ckpt_offset(s, TOPIC, 0, next_offset + 1);
		for (unsigned j = 0; ret == 0 && j < PUTS; j++) {
			keys[j] = (unsigned)(tu_rand(&rs) % NKEYS);
			key_of(keys[j], k);
			value_of(keys[j], last + 1, v);
			ret = ckpt_put(s, k, strlen(k), v, VLEN);
		}
		if (ret == -EAGAIN) {
			/* visible backpressure: the batch is retried, as a
			 * consumer would re-read it */
			eagain++;
			batches_dropped++;
			full = 1;
			assert_int_equal(ckpt_abort(s), 0);
		} else if (ret != 0) {
			fail_msg("stage: %s", ckpt_strerror(ret));
		}
		if (!full) {
			int64_t e = ckpt_commit(s);
			/* space for the seal was reserved by the stages */
			if (e != last + 1)
				fail_msg("commit returned %lld after epoch %lld "
					 "(%s)", (long long)e, (long long)last,
					 e < 0 ? ckpt_strerror((int)e) : "");
			last = e;
			next_offset++;
			for (unsigned j = 0; j < PUTS; j++)
				model[keys[j]] = e;
		}

		if (ticks % 100)
			continue;
		assert_int_equal(ckpt_status(s, &st), 0);
		assert_int_equal(st.ring_capacity, RING);
		if (st.ring_used > st.ring_capacity)
			fail_msg("ring_used %llu > capacity %llu",
				 (unsigned long long)st.ring_used,
				 (unsigned long long)st.ring_capacity);
		if (st.ring_used > used_max)
			used_max = st.ring_used;
		assert_int_equal(st.committed_epoch, last);
		assert_true(st.durable_epoch >= durable_prev);
		assert_true(st.durable_epoch <= last);
		durable_prev = st.durable_epoch;
		if (st.health == CKPT_FAILED)
			fail_msg("stream failed: %s", st.why);
		if (eagain > eagain_seen) {
			/* the ring filled since the last status call */
			if (st.health != CKPT_BACKPRESSURED)
				fail_msg("ring filled, health %d (%s)",
					 st.health, st.why);
			assert_true(st.why[0] != '\0');
			bp_status++;
		}
		eagain_seen = eagain;

		uint64_t h = heap_bytes(), r = rss_bytes();
		if (!warm) {
			/* warm: both slots written (grown) once, and the
			 * ring lapped: every buffer has its final size */
			if (st.flushes >= 2 &&
			    (uint64_t)last * 300 > 2 * (uint64_t)RING) {
				warm = 1;
				heap_warm = h;
				rss_warm = r;
			}
			continue;
		}
		if (h > heap_max)
			heap_max = h;
		if (r > rss_max)
			rss_max = r;
	}
	double secs = (double)(tu_now_ns() - t0) / 1e9;

	assert_int_equal(ckpt_status(s, &st), 0);
	ckpt__fault_stats(&plan, &fst);
	printf("ran %.1f s: %llu batches, %lld epochs committed, %llu batches "
	       "refused with -EAGAIN (%llu status calls saw backpressure), "
	       "backpressure_events %llu\n", secs, (unsigned long long)ticks,
	       (long long)last, (unsigned long long)batches_dropped,
	       (unsigned long long)bp_status,
	       (unsigned long long)st.backpressure_events);
	printf("writes submitted %llu, flushes %llu, durable epoch %lld: %.0f "
	       "epochs per write; most writes in flight %llu\n",
	       (unsigned long long)fst.ops, (unsigned long long)st.flushes,
	       (long long)st.durable_epoch,
	       (double)last / (double)(fst.ops ? fst.ops : 1),
	       (unsigned long long)fst.max_inflight);
	printf("ring used at most %llu of %llu bytes\n",
	       (unsigned long long)used_max,
	       (unsigned long long)st.ring_capacity);

	/* nothing silently dropped: every batch either became the next
	 * epoch or was refused with -EAGAIN, and each refusal was counted */
	assert_int_equal((uint64_t)(last - 1) + batches_dropped, ticks);
	/* (the ring also counts a stage that found its cached view full
	 * and then, re-reading the flusher's position, room: >=) */
	if (st.backpressure_events < eagain)
		fail_msg("%llu stages refused with -EAGAIN, backpressure_events "
			 "%llu", (unsigned long long)eagain,
			 (unsigned long long)st.backpressure_events);
	/* coalescing, and never more than one write in flight (R5) */
	assert_true(fst.ops >= 1);
	if ((uint64_t)last < 100 * fst.ops)
		fail_msg("%lld epochs in %llu writes: not coalesced",
			 (long long)last, (unsigned long long)fst.ops);
	assert_true(fst.max_inflight <= 1);
	assert_true(used_max <= RING);

	/* memory */
	uint64_t heap_bound = heap0 + RING + 4 * image_est + SLACK;
	/* resident: the mapped ring (and its header pages) on top */
	uint64_t rss_bound = rss0 + RING + 64 * 1024 + 4 * image_est +
			     2 * SLACK;
	if (!warm)
		fail_msg("never warmed up: %llu flushes",
			 (unsigned long long)st.flushes);
	printf("heap: %llu before open, %llu after warm-up, %llu max after "
	       "(growth %lld; bound %llu, growth bound %u)\n",
	       (unsigned long long)heap0, (unsigned long long)heap_warm,
	       (unsigned long long)heap_max,
	       (long long)(heap_max - heap_warm),
	       (unsigned long long)heap_bound, GROWTH_MAX);
	printf("rss: %llu before open, %llu after warm-up, %llu max after "
	       "(growth %lld; bound %llu)\n", (unsigned long long)rss0,
	       (unsigned long long)rss_warm, (unsigned long long)rss_max,
	       (long long)(rss_max - rss_warm),
	       (unsigned long long)rss_bound);
	fflush(stdout);
	if (heap_max > heap_warm + GROWTH_MAX)
		fail_msg("heap grew by %llu bytes after warm-up",
			 (unsigned long long)(heap_max - heap_warm));
	if (heap_max > heap_bound)
		fail_msg("heap %llu over the bound %llu",
			 (unsigned long long)heap_max,
			 (unsigned long long)heap_bound);
#ifndef HAVE_SAN_ALLOC
	/* (sanitizers keep shadow memory and freed blocks resident) */
	if (rss_max > rss_warm + GROWTH_MAX)
		fail_msg("resident set grew by %llu bytes after warm-up",
			 (unsigned long long)(rss_max - rss_warm));
	if (rss_max > rss_bound)
		fail_msg("resident set %llu over the bound %llu",
			 (unsigned long long)rss_max,
			 (unsigned long long)rss_bound);
#endif

	/* the last committed epoch becomes durable: 120 s guards a hang
	 * (a write takes at most 20 s), it asserts no speed */
	ret = ckpt_wait_durable(s, last, 120000);
	if (ret != 0)
		fail_msg("wait_durable(%lld): %s", (long long)last,
			 ckpt_strerror(ret));
	assert_int_equal(ckpt_durable_epoch(s), last);
	assert_int_equal(ckpt_close(s), 0);

	/* reopen without the slow storage: exactly the last epoch */
	o = opts(NULL);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		fail_msg("reopen: %s: %s", ckpt_strerror(ret),
			 ckpt_last_error());
	assert_int_equal(ckpt_recovered_epoch(s), last);
	int64_t off = -1;
	assert_int_equal(ckpt_get_offset(s, TOPIC, 0, &off), 0);
	assert_int_equal(off, next_offset);
	for (unsigned i = 0; i < NKEYS; i++) {
		const void *val;
		size_t vlen;
		key_of(i, k);
		value_of(i, model[i], v);
		assert_int_equal(ckpt_get(s, k, strlen(k), &val, &vlen), 0);
		assert_int_equal(vlen, VLEN);
		if (memcmp(val, v, VLEN) != 0)
			fail_msg("%s: value of epoch %lld expected", k,
				 (long long)model[i]);
	}
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slow_storage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
