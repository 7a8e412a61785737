/*
 * test_ring.c - the ring in one process: what goes in comes out, exactly.
 *
 * Round trip of every delta type; padding at the wrap; abort; empty
 * epochs; a commit never fails once its deltas were staged; epoch numbers
 * continue after close and reopen; nothing is visible before the commit;
 * released space is used again, and only released space.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define RING (64u * 1024u)

static uint64_t seed;

static ckpt_stream_t *open_s(const char *dir, int policy)
{
	ckpt_stream_t *s = NULL;
	ckpt_opts_t o;
	ckpt_opts_init(&o);
	o.ring_size = RING;
	o.max_key = 1024;
	o.max_value = 8192;
	o.max_meta = 4096;
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	o.flags |= CKPT_O_NOSLOTS; /* the test is the flusher */
	o.full_policy = policy;
	int ret = ckpt_open(dir, "ring", &o, &s);
	if (ret < 0)
		fail_msg("open: %s", ckpt_last_error());
	return s;
}

static ckpt_reader_t *open_r(const char *dir)
{
	ckpt_reader_t *r = NULL;
	int ret = ckpt_reader_open(dir, "ring", 0, &r);
	if (ret < 0)
		fail_msg("reader: %s", ckpt_last_error());
	return r;
}

static void next_epoch(ckpt_reader_t *r, ckpt_epoch_t *ep, int64_t e)
{
	int ret = ckpt_reader_next(r, ep);
	if (ret != 1)
		fail_msg("epoch %lld: reader_next %d: %s", (long long)e, ret,
			 ckpt_last_error());
	assert_int_equal(ep->epoch, e);
}

static void test_round_trip(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-rt");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	char topic[CKPT_TOPIC_MAX + 1];
	static uint8_t key[1024], val[8192], meta[4096];
	uint64_t rs = seed;
	ckpt_epoch_t ep;
	ckpt_delta_t d;

	memset(topic, 'T', CKPT_TOPIC_MAX);
	topic[CKPT_TOPIC_MAX] = '\0';
	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (uint8_t)tu_rand(&rs);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)tu_rand(&rs);
	for (size_t i = 0; i < sizeof(meta); i++)
		meta[i] = (uint8_t)tu_rand(&rs);

	assert_int_equal(ckpt_offset(s, "t", 0, 0), 0);
	assert_int_equal(ckpt_offset(s, topic, INT32_MAX, INT64_MAX), 0);
	assert_int_equal(ckpt_put(s, key, 1024, val, 8192), 0);
	assert_int_equal(ckpt_put(s, "", 0, val, 3), 0); /* empty key */
	assert_int_equal(ckpt_put(s, key, 5, "", 0), 0); /* empty value */
	assert_int_equal(ckpt_put(s, NULL, 0, NULL, 0), 0); /* both */
	assert_int_equal(ckpt_del(s, key, 7), 0);
	assert_int_equal(ckpt_del(s, NULL, 0), 0);
	assert_int_equal(ckpt_meta(s, meta, 4096), 0);
	assert_int_equal(ckpt_meta(s, NULL, 0), 0);
	assert_int_equal(ckpt_commit(s), 1);

	next_epoch(r, &ep, 1);
	assert_int_equal(ep.ndeltas, 10);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_OFFSET);
	assert_int_equal(d.topic_len, 1);
	assert_memory_equal(d.topic, "t", 1);
	assert_int_equal(d.partition, 0);
	assert_int_equal(d.offset, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_OFFSET);
	assert_int_equal(d.topic_len, CKPT_TOPIC_MAX);
	assert_memory_equal(d.topic, topic, CKPT_TOPIC_MAX);
	assert_int_equal(d.partition, INT32_MAX);
	assert_int_equal(d.offset, INT64_MAX);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_PUT);
	assert_int_equal(d.klen, 1024);
	assert_int_equal(d.vlen, 8192);
	assert_memory_equal(d.key, key, 1024);
	assert_memory_equal(d.val, val, 8192);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_PUT);
	assert_int_equal(d.klen, 0);
	assert_int_equal(d.vlen, 3);
	assert_memory_equal(d.val, val, 3);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_PUT);
	assert_int_equal(d.klen, 5);
	assert_memory_equal(d.key, key, 5);
	assert_int_equal(d.vlen, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_PUT);
	assert_int_equal(d.klen + d.vlen, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_DEL);
	assert_int_equal(d.klen, 7);
	assert_memory_equal(d.key, key, 7);
	assert_int_equal(d.vlen, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_DEL);
	assert_int_equal(d.klen, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_META);
	assert_int_equal(d.vlen, 4096);
	assert_memory_equal(d.val, meta, 4096);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_int_equal(d.type, CKPT_D_META);
	assert_int_equal(d.vlen, 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 0);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

/* Record bytes of a put as the ring stores it. */
static uint64_t put_bytes(size_t klen, size_t vlen)
{
	return (16 + klen + vlen + 7) & ~(uint64_t)7;
}

static void test_wrap_with_padding(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-wrap");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	static uint8_t val[8192];
	uint64_t rs = seed ^ 1, padded = 0, prev_end = 0;
	ckpt_epoch_t ep;
	ckpt_delta_t d;

	/* sizes that do not divide the ring: every lap ends with a PAD */
	for (int64_t e = 1; e <= (int64_t)tu_scaled(20000); e++) {
		int n = 1 + (int)(tu_rand(&rs) % 3);
		size_t vl[3];
		uint64_t bytes = 48; /* the seal */
		for (int i = 0; i < n; i++) {
			vl[i] = (size_t)(tu_rand(&rs) % 3000);
			for (size_t j = 0; j < vl[i]; j += 97)
				val[j] = (uint8_t)(e + (int64_t)j + i);
			assert_int_equal(ckpt_put(s, &e, sizeof(e), val, vl[i]),
					 0);
			bytes += put_bytes(sizeof(e), vl[i]);
		}
		assert_int_equal(ckpt_commit(s), e);
		next_epoch(r, &ep, e);
		assert_int_equal(ep.ndeltas, n);
		/* more bytes than its records: a PAD at the wrap */
		assert_true(ep.end_pos - prev_end >= bytes);
		padded += ep.end_pos - prev_end > bytes;
		prev_end = ep.end_pos;
		for (int i = 0; i < n; i++) {
			assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
			assert_int_equal(d.klen, sizeof(e));
			assert_memory_equal(d.key, &e, sizeof(e));
			assert_int_equal(d.vlen, vl[i]);
			for (size_t j = 0; j < vl[i]; j += 97)
				assert_int_equal(((const uint8_t *)d.val)[j],
						 (uint8_t)(e + (int64_t)j + i));
		}
		assert_int_equal(ckpt_epoch_next(&ep, &d), 0);
		assert_int_equal(ckpt_reader_durable(r, e, ep.end_pos), 0);
	}
	printf("%llu ring laps, %llu epochs padded at the wrap\n",
	       (unsigned long long)(prev_end / RING), (unsigned long long)padded);
	/* a lap ends without padding only when a record ends exactly at
	 * the wrap, which these sizes make rare */
	assert_true(padded > 0 && padded >= prev_end / RING * 9 / 10);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

static void test_abort_and_empty(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-abort");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	ckpt_epoch_t ep;
	ckpt_delta_t d;

	assert_int_equal(ckpt_commit(s), 1); /* empty epoch */
	assert_int_equal(ckpt_commit(s), 2);
	assert_int_equal(ckpt_put(s, "dropped", 7, "x", 1), 0);
	assert_int_equal(ckpt_offset(s, "dropped", 1, 1), 0);
	assert_int_equal(ckpt_abort(s), 0);
	assert_int_equal(ckpt_abort(s), 0); /* twice is fine */
	assert_int_equal(ckpt_commit(s), 3); /* empty: the abort dropped all */
	assert_int_equal(ckpt_put(s, "gone", 4, "x", 1), 0);
	assert_int_equal(ckpt_abort(s), 0);
	assert_int_equal(ckpt_put(s, "kept", 4, "y", 1), 0);
	assert_int_equal(ckpt_commit(s), 4);

	for (int64_t e = 1; e <= 3; e++) {
		next_epoch(r, &ep, e);
		assert_int_equal(ep.ndeltas, 0);
		assert_int_equal(ckpt_epoch_next(&ep, &d), 0);
	}
	next_epoch(r, &ep, 4);
	assert_int_equal(ep.ndeltas, 1);
	assert_int_equal(ckpt_epoch_next(&ep, &d), 1);
	assert_memory_equal(d.key, "kept", 4);
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

/* Fill the ring until a stage gets -EAGAIN; the commit must still work,
 * whatever the record sizes (and so wherever the seal lands). */
static void test_commit_after_stages_never_fails(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-commit");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	static uint8_t val[8192];
	uint64_t rs = seed ^ 2;
	int64_t e = 0;
	ckpt_epoch_t ep;
	int fulls = 0;

	for (int round = 0; round < (int)tu_scaled(400); round++) {
		int staged = 0, ret;
		size_t vl = (size_t)(tu_rand(&rs) % 2048);
		while ((ret = ckpt_put(s, "k", 1, val, vl)) == 0) {
			staged++;
			if (tu_rand(&rs) % 4 == 0) {
				assert_int_equal(ckpt_commit(s), ++e);
				staged = 0;
			}
		}
		assert_int_equal(ret, -EAGAIN);
		fulls++;
		/* the ring is full, yet the seal was reserved: it fits */
		int64_t c = ckpt_commit(s);
		if (c != e + 1)
			fail_msg("round %d: commit after %d stages returned "
				 "%lld: %s",
				 round, staged, (long long)c, ckpt_last_error());
		e = c;
		/* release everything (or, every other round, half) */
		int64_t last = 0;
		uint64_t end = 0;
		while (ckpt_reader_next(r, &ep) == 1) {
			last = ep.epoch;
			end = ep.end_pos;
			if (round % 2 && end >= RING / 2 + (end & ~(uint64_t)(RING - 1)))
				break;
		}
		assert_int_equal(ckpt_reader_durable(r, last, end), 0);
	}
	printf("%d rounds filled the ring; %lld epochs\n", fulls, (long long)e);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

static void test_epochs_continue_after_reopen(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-reopen");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	ckpt_epoch_t ep;

	for (int64_t e = 1; e <= 5; e++)
		assert_int_equal(ckpt_commit(s), e);
	assert_int_equal(ckpt_put(s, "open", 4, "epoch", 5), 0);
	assert_int_equal(ckpt_close(s), 0); /* drops the open epoch */
	s = open_s(dir, CKPT_FULL_EAGAIN);
	assert_int_equal(ckpt_commit(s), 6);
	assert_int_equal(ckpt_close(s), 0);
	s = open_s(dir, CKPT_FULL_EAGAIN);
	assert_int_equal(ckpt_commit(s), 7);
	for (int64_t e = 1; e <= 7; e++) {
		next_epoch(r, &ep, e);
		assert_int_equal(ep.ndeltas, 0);
	}
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

static void test_nothing_before_commit(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-vis");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	ckpt_epoch_t ep;

	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	assert_int_equal(ckpt_put(s, "a", 1, "1", 1), 0);
	assert_int_equal(ckpt_offset(s, "t", 0, 9), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	assert_int_equal(ckpt_meta(s, "m", 1), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	assert_int_equal(ckpt_commit(s), 1);
	next_epoch(r, &ep, 1);
	assert_int_equal(ep.ndeltas, 3);
	assert_int_equal(ckpt_put(s, "b", 1, "2", 1), 0);
	assert_int_equal(ckpt_reader_next(r, &ep), 0);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

static void test_release(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-release");
	ckpt_stream_t *s = open_s(dir, CKPT_FULL_EAGAIN);
	ckpt_reader_t *r = open_r(dir);
	static uint8_t val[4000];
	ckpt_epoch_t ep;
	int64_t e = 0;
	size_t len;
	int ret;

	struct ckpt_region *h = rm_map(dir, "ring", 0, &len);
	while ((ret = ckpt_put(s, "k", 1, val, sizeof(val))) == 0)
		assert_int_equal(ckpt_commit(s), ++e);
	assert_int_equal(ret, -EAGAIN);
	uint64_t used = h->prod.commit_pos - h->flush.release_pos;
	assert_true(used > RING - 4200);
	/* read, but not yet durable: still no room */
	next_epoch(r, &ep, 1);
	uint64_t end1 = ep.end_pos;
	next_epoch(r, &ep, 2);
	uint64_t end2 = ep.end_pos;
	assert_int_equal(ckpt_put(s, "k", 1, val, sizeof(val)), -EAGAIN);
	/* releases that are not allowed */
	assert_int_equal(ckpt_reader_durable(r, 2, end2 + 8), -EINVAL);
	assert_int_equal(ckpt_reader_durable(r, 3, end2), -EINVAL);
	assert_int_equal(ckpt_reader_durable(r, 1, end1 + 4), -EINVAL);
	assert_int_equal(ckpt_reader_durable(r, -1, end1), -EINVAL);
	/* release epoch by epoch: a put fits exactly when the released
	 * space covers it, its padding at the wrap and the seal reserve */
	uint64_t ends[8];
	int64_t nread = 2;
	ends[1] = end1;
	ends[2] = end2;
	int fitted = 0;
	for (int64_t k = 1; k <= 6; k++) {
		if (k > nread) {
			next_epoch(r, &ep, k);
			ends[k] = ep.end_pos;
			nread = k;
		}
		assert_int_equal(ckpt_reader_durable(r, k, ends[k]), 0);
		assert_int_equal(h->flush.release_pos, ends[k]);
		assert_int_equal(h->flush.durable_epoch, k);
		assert_int_equal(ckpt_reader_durable_epoch(r), k);
		uint64_t w = h->prod.commit_pos, off = w & (RING - 1);
		uint64_t rec = put_bytes(1, sizeof(val));
		uint64_t pad = off + rec > RING ? RING - off : 0;
		int fits = w + pad + rec + CKPT_SEAL_RESERVE - ends[k] <= RING;
		ret = ckpt_put(s, "k", 1, val, sizeof(val));
		assert_int_equal(ret, fits ? 0 : -EAGAIN);
		if (fits) {
			assert_int_equal(ckpt_commit(s), ++e);
			fitted++;
		}
	}
	assert_true(fitted >= 3);
	assert_int_equal(ckpt_reader_durable(r, 1, end1), -EINVAL); /* back */
	/* a new reader starts at the released position */
	ckpt_reader_close(r);
	r = open_r(dir);
	next_epoch(r, &ep, 7);
	assert_true(h->prod.used_hwm <= RING);
	rm_unmap(h, len);
	ckpt_reader_close(r);
	ckpt_close(s);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_wrap_with_padding),
		cmocka_unit_test(test_abort_and_empty),
		cmocka_unit_test(test_commit_after_stages_never_fails),
		cmocka_unit_test(test_epochs_continue_after_reopen),
		cmocka_unit_test(test_nothing_before_commit),
		cmocka_unit_test(test_release),
	};
	seed = tu_seed("test_ring");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
