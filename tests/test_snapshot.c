/*
 * test_snapshot.c - the materialized state: apply put/del/offset/meta,
 * replace, delete of an absent key, the empty key, the largest value, many
 * keys through table growth against a simple oracle, order-independent
 * equality, exact data_bytes accounting, foreach, and -ENOMEM leaving the
 * snapshot unchanged (allocation failure injected).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "snapshot.h"
#include "testutil.h"

static int put(ckpt__snap_t *s, const void *k, size_t kl, const void *v,
	       size_t vl)
{
	ckpt_delta_t d = { .type = CKPT_D_PUT, .key = k, .klen = kl,
			   .val = v, .vlen = vl };
	return ckpt__snap_apply(s, &d);
}

static int del(ckpt__snap_t *s, const void *k, size_t kl)
{
	ckpt_delta_t d = { .type = CKPT_D_DEL, .key = k, .klen = kl };
	return ckpt__snap_apply(s, &d);
}

static int off(ckpt__snap_t *s, const char *topic, int32_t part, int64_t next)
{
	ckpt_delta_t d = { .type = CKPT_D_OFFSET, .topic = topic,
			   .topic_len = strlen(topic), .partition = part,
			   .offset = next };
	return ckpt__snap_apply(s, &d);
}

static int meta(ckpt__snap_t *s, const void *b, size_t n)
{
	ckpt_delta_t d = { .type = CKPT_D_META, .val = b, .vlen = n };
	return ckpt__snap_apply(s, &d);
}

static void expect_val(const ckpt__snap_t *s, const void *k, size_t kl,
		       const void *v, size_t vl)
{
	const void *got;
	size_t gl;
	assert_int_equal(ckpt__snap_get(s, k, kl, &got, &gl), 0);
	assert_int_equal(gl, vl);
	if (vl)
		assert_memory_equal(got, v, vl);
}

static int copy_kv(void *arg, const void *k, size_t kl, const void *v,
		   size_t vl)
{
	return put(arg, k, kl, v, vl);
}

static int copy_off(void *arg, const char *t, int32_t p, int64_t n)
{
	return off(arg, t, p, n);
}

/* An independent copy, built through the public calls only. */
static ckpt__snap_t *clone(const ckpt__snap_t *s)
{
	ckpt__snap_t *c = ckpt__snap_new();
	const void *m;
	size_t ml;

	assert_non_null(c);
	assert_int_equal(ckpt__snap_foreach_kv(s, copy_kv, c), 0);
	assert_int_equal(ckpt__snap_foreach_offset(s, copy_off, c), 0);
	ckpt__snap_get_meta(s, &m, &ml);
	assert_int_equal(meta(c, m, ml), 0);
	ckpt__snap_set_epoch(c, ckpt__snap_epoch(s));
	return c;
}

static int sum_kv(void *arg, const void *k, size_t kl, const void *v,
		  size_t vl)
{
	(void)k;
	(void)v;
	*(uint64_t *)arg += (8 + kl + vl + 7) / 8 * 8;
	return 0;
}

static int sum_off(void *arg, const char *t, int32_t p, int64_t n)
{
	(void)p;
	(void)n;
	*(uint64_t *)arg += (16 + strlen(t) + 7) / 8 * 8;
	return 0;
}

/* The running record sizes equal a recount. */
static void check_record_bytes(const ckpt__snap_t *s)
{
	uint64_t kv, of, want_kv = 0, want_of = 0;

	ckpt__snap_record_bytes(s, &kv, &of);
	ckpt__snap_foreach_kv(s, sum_kv, &want_kv);
	ckpt__snap_foreach_offset(s, sum_off, &want_of);
	assert_int_equal(kv, want_kv);
	assert_int_equal(of, want_of);
}

static void test_put_get_del(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	const void *v;
	size_t vl;

	assert_int_equal(put(s, "a", 1, "one", 3), 0);
	assert_int_equal(put(s, "b", 1, "two", 3), 0);
	expect_val(s, "a", 1, "one", 3);
	expect_val(s, "b", 1, "two", 3);
	assert_int_equal(ckpt__snap_get(s, "c", 1, &v, &vl), -ENOENT);
	assert_int_equal(ckpt__snap_nkeys(s), 2);

	assert_int_equal(del(s, "a", 1), 0);
	assert_int_equal(ckpt__snap_get(s, "a", 1, &v, &vl), -ENOENT);
	expect_val(s, "b", 1, "two", 3);
	assert_int_equal(ckpt__snap_nkeys(s), 1);
	ckpt__snap_free(s);
}

static void test_replace(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();

	assert_int_equal(put(s, "k", 1, "1234", 4), 0);
	assert_int_equal(put(s, "k", 1, "abcd", 4), 0); /* same size */
	expect_val(s, "k", 1, "abcd", 4);
	assert_int_equal(put(s, "k", 1, "longer value", 12), 0);
	expect_val(s, "k", 1, "longer value", 12);
	assert_int_equal(put(s, "k", 1, "", 0), 0);
	expect_val(s, "k", 1, "", 0);
	assert_int_equal(ckpt__snap_nkeys(s), 1);
	assert_int_equal(ckpt__snap_data_bytes(s), 1);
	ckpt__snap_free(s);
}

static void test_delete_absent(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();

	assert_int_equal(del(s, "nothing", 7), 0); /* empty table */
	assert_int_equal(put(s, "x", 1, "y", 1), 0);
	assert_int_equal(del(s, "nothing", 7), 0);
	assert_int_equal(del(s, "x", 1), 0);
	assert_int_equal(del(s, "x", 1), 0);
	assert_int_equal(ckpt__snap_nkeys(s), 0);
	assert_int_equal(ckpt__snap_data_bytes(s), 0);
	ckpt__snap_free(s);
}

static void test_empty_key(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	const void *v;
	size_t vl;

	assert_int_equal(put(s, NULL, 0, "empty", 5), 0);
	expect_val(s, "", 0, "empty", 5);
	assert_int_equal(put(s, "", 0, NULL, 0), 0);
	expect_val(s, NULL, 0, "", 0);
	assert_int_equal(ckpt__snap_nkeys(s), 1);
	assert_int_equal(del(s, NULL, 0), 0);
	assert_int_equal(ckpt__snap_get(s, "", 0, &v, &vl), -ENOENT);
	ckpt__snap_free(s);
}

static void test_limits(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	size_t big = CKPT__SNAP_VAL_MAX;
	unsigned char *v = malloc(big + 1);
	unsigned char *k = malloc(CKPT__SNAP_KEY_MAX + 1);

	for (size_t i = 0; i <= big; i++)
		v[i] = (unsigned char)(i * 31 + 7);
	memset(k, 0xab, CKPT__SNAP_KEY_MAX + 1);
	assert_int_equal(put(s, k, CKPT__SNAP_KEY_MAX, v, big), 0);
	expect_val(s, k, CKPT__SNAP_KEY_MAX, v, big);
	assert_int_equal(ckpt__snap_data_bytes(s), CKPT__SNAP_KEY_MAX + big);

	assert_int_equal(put(s, k, CKPT__SNAP_KEY_MAX + 1, "v", 1), -EINVAL);
	assert_int_equal(put(s, "k", 1, v, big + 1), -EINVAL);
	assert_int_equal(meta(s, v, CKPT__SNAP_META_MAX + 1), -EINVAL);
	assert_int_equal(put(s, NULL, 3, "v", 1), -EINVAL);
	assert_int_equal(put(s, "k", 1, NULL, 1), -EINVAL);
	assert_int_equal(off(s, "", 0, 1), -EINVAL);
	assert_int_equal(off(s, "t", -1, 1), -EINVAL);
	assert_int_equal(off(s, "t", 0, -1), -EINVAL);
	ckpt_delta_t nul = { .type = CKPT_D_OFFSET, .topic = "a\0b",
			     .topic_len = 3 };
	assert_int_equal(ckpt__snap_apply(s, &nul), -EINVAL);
	ckpt_delta_t bad = { .type = 99 };
	assert_int_equal(ckpt__snap_apply(s, &bad), -EINVAL);
	/* Refusals changed nothing. */
	assert_int_equal(ckpt__snap_nkeys(s), 1);
	assert_int_equal(ckpt__snap_noffsets(s), 0);
	assert_int_equal(ckpt__snap_data_bytes(s), CKPT__SNAP_KEY_MAX + big);
	free(k);
	free(v);
	ckpt__snap_free(s);
}

static void test_offsets(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	int64_t next;
	char longest[CKPT_TOPIC_MAX + 1];

	memset(longest, 't', CKPT_TOPIC_MAX);
	longest[CKPT_TOPIC_MAX] = '\0';
	assert_int_equal(off(s, "orders", 0, 10), 0);
	assert_int_equal(off(s, "orders", 1, 20), 0);
	assert_int_equal(off(s, "orders", 0, 11), 0);
	assert_int_equal(off(s, longest, 7, 5), 0);
	assert_int_equal(ckpt__snap_get_offset(s, "orders", 6, 0, &next), 0);
	assert_int_equal(next, 11);
	assert_int_equal(ckpt__snap_get_offset(s, "orders", 6, 1, &next), 0);
	assert_int_equal(next, 20);
	assert_int_equal(ckpt__snap_get_offset(s, longest, CKPT_TOPIC_MAX, 7,
					       &next), 0);
	assert_int_equal(next, 5);
	assert_int_equal(ckpt__snap_get_offset(s, "orders", 6, 2, &next),
			 -ENOENT);
	assert_int_equal(ckpt__snap_get_offset(s, "order", 5, 0, &next),
			 -ENOENT);
	assert_int_equal(ckpt__snap_noffsets(s), 3);
	assert_int_equal(ckpt__snap_data_bytes(s), 6 + 6 + CKPT_TOPIC_MAX);
	check_record_bytes(s);
	/* Offsets and keys are separate name spaces. */
	assert_int_equal(ckpt__snap_nkeys(s), 0);
	ckpt__snap_free(s);
}

static void test_meta(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	const void *m;
	size_t ml;

	ckpt__snap_get_meta(s, &m, &ml);
	assert_null(m);
	assert_int_equal(ml, 0);
	assert_int_equal(meta(s, "v1", 2), 0);
	assert_int_equal(meta(s, "version 2", 9), 0);
	ckpt__snap_get_meta(s, &m, &ml);
	assert_int_equal(ml, 9);
	assert_memory_equal(m, "version 2", 9);
	assert_int_equal(ckpt__snap_data_bytes(s), 9);
	assert_int_equal(meta(s, NULL, 0), 0);
	ckpt__snap_get_meta(s, &m, &ml);
	assert_int_equal(ml, 0);
	assert_int_equal(ckpt__snap_data_bytes(s), 0);
	ckpt__snap_free(s);
}

/* The oracle: key i is "key-<i>" and, when present, holds a value of
 * length len[i] filled from ver[i]. */
#define ONKEYS 4096

struct oracle {
	unsigned char present[ONKEYS];
	uint16_t len[ONKEYS];
	uint32_t ver[ONKEYS];
	size_t nkeys, bytes;
};

static size_t okey(unsigned i, char *buf)
{
	return (size_t)sprintf(buf, "key-%u", i);
}

static void oval(uint32_t ver, size_t len, unsigned char *buf)
{
	for (size_t j = 0; j < len; j++)
		buf[j] = (unsigned char)(ver * 131u + j);
}

static void test_many_keys_vs_oracle(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("many_keys");
	uint64_t ops = tu_scaled(400000);
	struct oracle *o = calloc(1, sizeof(*o));
	ckpt__snap_t *s = ckpt__snap_new();
	unsigned char val[300];
	char key[32];

	for (uint64_t n = 0; n < ops; n++) {
		uint64_t r = tu_rand(&seed);
		unsigned i = (unsigned)(r % ONKEYS);
		size_t kl = okey(i, key);
		if ((r >> 20) % 3 == 0) {
			assert_int_equal(del(s, key, kl), 0);
			if (o->present[i]) {
				o->present[i] = 0;
				o->nkeys--;
				o->bytes -= kl + o->len[i];
			}
		} else {
			size_t vl = (size_t)((r >> 32) % sizeof(val));
			oval((uint32_t)n, vl, val);
			assert_int_equal(put(s, key, kl, val, vl), 0);
			if (o->present[i])
				o->bytes -= kl + o->len[i];
			else
				o->nkeys++;
			o->present[i] = 1;
			o->len[i] = (uint16_t)vl;
			o->ver[i] = (uint32_t)n;
			o->bytes += kl + vl;
		}
		assert_int_equal(ckpt__snap_nkeys(s), o->nkeys);
		assert_int_equal(ckpt__snap_data_bytes(s), o->bytes);
		if (n % 1024 == 0)
			check_record_bytes(s);
	}
	check_record_bytes(s);
	for (unsigned i = 0; i < ONKEYS; i++) {
		size_t kl = okey(i, key);
		const void *v;
		size_t vl;
		if (!o->present[i]) {
			assert_int_equal(ckpt__snap_get(s, key, kl, &v, &vl),
					 -ENOENT);
			continue;
		}
		oval(o->ver[i], o->len[i], val);
		expect_val(s, key, kl, val, o->len[i]);
	}
	free(o);
	ckpt__snap_free(s);
}

/* Growth from empty to many keys (several doublings), then every key
 * deleted: a backward-shift bug loses keys in long probe runs. */
static void test_growth_then_empty(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	unsigned n = (unsigned)tu_scaled(200000);
	char key[32];

	for (unsigned i = 0; i < n; i++) {
		size_t kl = okey(i, key);
		assert_int_equal(put(s, key, kl, &i, sizeof(i)), 0);
	}
	assert_int_equal(ckpt__snap_nkeys(s), n);
	for (unsigned i = 0; i < n; i += 2)
		assert_int_equal(del(s, key, okey(i, key)), 0);
	for (unsigned i = 0; i < n; i++) {
		size_t kl = okey(i, key);
		const void *v;
		size_t vl;
		if (i % 2 == 0) {
			assert_int_equal(ckpt__snap_get(s, key, kl, &v, &vl),
					 -ENOENT);
		} else {
			expect_val(s, key, kl, &i, sizeof(i));
		}
	}
	for (unsigned i = 1; i < n; i += 2)
		assert_int_equal(del(s, key, okey(i, key)), 0);
	assert_int_equal(ckpt__snap_nkeys(s), 0);
	assert_int_equal(ckpt__snap_data_bytes(s), 0);
	ckpt__snap_free(s);
}

static void test_reserve(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	char key[32];

	assert_int_equal(put(s, "before", 6, "x", 1), 0);
	assert_int_equal(ckpt__snap_reserve(s, 100000, 1000), 0);
	expect_val(s, "before", 6, "x", 1);
	for (unsigned i = 0; i < 1000; i++)
		assert_int_equal(put(s, key, okey(i, key), "v", 1), 0);
	assert_int_equal(ckpt__snap_nkeys(s), 1001);
	ckpt__snap_free(s);
}

static void fill(ckpt__snap_t *s, const unsigned *order, unsigned n)
{
	char key[32];
	for (unsigned j = 0; j < n; j++) {
		unsigned i = order[j];
		assert_int_equal(put(s, key, okey(i, key), &i, sizeof(i)), 0);
		assert_int_equal(off(s, "topic", (int32_t)(i % 7), i), 0);
	}
}

static void test_equal(void **state)
{
	(void)state;
	enum { N = 1000 };
	unsigned fwd[N], rev[N];
	ckpt__snap_t *a = ckpt__snap_new(), *b = ckpt__snap_new();

	for (unsigned i = 0; i < N; i++) {
		fwd[i] = i;
		rev[i] = N - 1 - i;
	}
	assert_true(ckpt__snap_equal(a, b)); /* both empty */
	fill(a, fwd, N);
	/* Reverse order: different last writer per partition, so fix it. */
	fill(b, rev, N);
	for (int32_t p = 0; p < 7; p++) {
		int64_t na;
		assert_int_equal(ckpt__snap_get_offset(a, "topic", 5, p, &na), 0);
		assert_int_equal(off(b, "topic", p, na), 0);
	}
	assert_int_equal(meta(a, "m", 1), 0);
	assert_int_equal(meta(b, "m", 1), 0);
	ckpt__snap_set_epoch(a, 7);
	ckpt__snap_set_epoch(b, 7);
	assert_true(ckpt__snap_equal(a, b));
	assert_true(ckpt__snap_equal(b, a));

	ckpt__snap_set_epoch(b, 8);
	assert_false(ckpt__snap_equal(a, b));
	ckpt__snap_set_epoch(b, 7);

	unsigned x = 12345;
	assert_int_equal(put(b, "key-3", 5, &x, sizeof(x)), 0);
	assert_false(ckpt__snap_equal(a, b));
	x = 3;
	assert_int_equal(put(b, "key-3", 5, &x, sizeof(x)), 0);
	assert_true(ckpt__snap_equal(a, b));

	assert_int_equal(meta(b, "n", 1), 0);
	assert_false(ckpt__snap_equal(a, b));
	assert_int_equal(meta(b, "m", 1), 0);

	assert_int_equal(off(b, "topic", 0, 1), 0);
	assert_false(ckpt__snap_equal(a, b));

	ckpt__snap_free(a);
	ckpt__snap_free(b);
}

static int count_kv(void *arg, const void *k, size_t kl, const void *v,
		    size_t vl)
{
	size_t *n = arg;
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	return ++*n == 5 ? 42 : 0;
}

struct seen {
	unsigned mask;
};

static int check_off(void *arg, const char *topic, int32_t p, int64_t n)
{
	struct seen *sn = arg;
	char want[32];
	snprintf(want, sizeof(want), "t%d", (int)p);
	assert_string_equal(topic, want); /* NUL-terminated */
	assert_int_equal(n, p * 100);
	sn->mask |= 1u << p;
	return 0;
}

static void test_foreach(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	char key[32];
	size_t n = 0;
	struct seen sn = { 0 };

	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(put(s, key, okey(i, key), "v", 1), 0);
	/* Stops at the first non-zero return and passes it on. */
	assert_int_equal(ckpt__snap_foreach_kv(s, count_kv, &n), 42);
	assert_int_equal(n, 5);
	for (int32_t p = 0; p < 8; p++) {
		char t[32];
		snprintf(t, sizeof(t), "t%d", (int)p);
		assert_int_equal(off(s, t, p, p * 100), 0);
	}
	assert_int_equal(ckpt__snap_foreach_offset(s, check_off, &sn), 0);
	assert_int_equal(sn.mask, 0xffu);
	ckpt__snap_free(s);
}

static void test_clear(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	ckpt__snap_t *empty = ckpt__snap_new();

	assert_int_equal(put(s, "k", 1, "v", 1), 0);
	assert_int_equal(off(s, "t", 0, 1), 0);
	assert_int_equal(meta(s, "m", 1), 0);
	ckpt__snap_set_epoch(s, 9);
	ckpt__snap_clear(s);
	assert_true(ckpt__snap_equal(s, empty));
	assert_int_equal(ckpt__snap_data_bytes(s), 0);
	/* Usable again after a clear. */
	assert_int_equal(put(s, "k", 1, "v", 1), 0);
	expect_val(s, "k", 1, "v", 1);
	ckpt__snap_free(s);
	ckpt__snap_free(empty);
}

/* Fail the first allocation of each kind of change: the snapshot must be
 * exactly as before (R5 says memory pressure is visible, never damage). */
static void test_enomem_unchanged(void **state)
{
	(void)state;
	ckpt__snap_t *s = ckpt__snap_new();
	char key[32];

	/* 12 keys: the next new key needs the 16-cell table to grow. */
	for (unsigned i = 0; i < 12; i++)
		assert_int_equal(put(s, key, okey(i, key), "val", 3), 0);
	assert_int_equal(off(s, "t", 0, 5), 0);
	assert_int_equal(meta(s, "meta", 4), 0);
	ckpt__snap_set_epoch(s, 3);
	ckpt__snap_t *before = clone(s);

	for (long allow = 0; allow < 3; allow++) {
		ckpt__snap_fail_alloc_after(allow);
		int r1 = put(s, "new key", 7, "v", 1);
		ckpt__snap_fail_alloc_after(-1);
		if (r1 == 0)
			break; /* enough allocations allowed: done */
		assert_int_equal(r1, -ENOMEM);
		assert_true(ckpt__snap_equal(s, before));
	}
	assert_int_equal(del(s, "new key", 7), 0);
	assert_true(ckpt__snap_equal(s, before));

	ckpt__snap_fail_alloc_after(0);
	assert_int_equal(put(s, "key-1", 5, "a longer value", 14), -ENOMEM);
	assert_int_equal(off(s, "new topic", 0, 1), -ENOMEM);
	assert_int_equal(meta(s, "other meta", 10), -ENOMEM);
	/* Same-size replacements need no memory. */
	assert_int_equal(put(s, "key-1", 5, "VAL", 3), 0);
	assert_int_equal(off(s, "t", 0, 6), 0);
	ckpt__snap_fail_alloc_after(-1);
	assert_int_equal(put(s, "key-1", 5, "val", 3), 0);
	assert_int_equal(off(s, "t", 0, 5), 0);
	assert_true(ckpt__snap_equal(s, before));

	ckpt__snap_free(before);
	ckpt__snap_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_delete_absent),
		cmocka_unit_test(test_empty_key),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_offsets),
		cmocka_unit_test(test_meta),
		cmocka_unit_test(test_many_keys_vs_oracle),
		cmocka_unit_test(test_growth_then_empty),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_foreach),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_enomem_unchanged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
