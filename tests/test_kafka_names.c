/*
 * test_kafka_names.c - the Kafka driver's pure parts: partition stream
 * names (valid ones kept, others sanitized without collisions), and the gap
 * record (append, parse, the newest 16 kept, the lost total kept).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_kafka.h"
#include "testutil.h"

/* kafka_int.h is private; the one helper under test is declared here. */
int ckpt__kafka_gaps_append(const void *old, size_t olen, const char *topic,
			    const ckpt_kafka_gap_t *g, char **out,
			    size_t *outlen);

static int valid(const char *s)
{
	size_t i, n = strlen(s);
	if (n < 1 || n > CKPT_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return 0;
	for (i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789._-", s[i]))
			return 0;
	return 1;
}

static void test_names(void **state)
{
	char a[CKPT_NAME_MAX + 1], b[CKPT_NAME_MAX + 1], small[8], big[400];
	(void)state;

	assert_int_equal(ckpt_kafka_stream_name(a, sizeof(a), "g", "Experience", 7),
			 (int)strlen("g.Experience.7"));
	assert_string_equal(a, "g.Experience.7");

	/* Bytes outside the charset: sanitized, and distinct from the group
	 * whose name is the sanitized text. */
	assert_true(ckpt_kafka_stream_name(a, sizeof(a), "my/group", "t", 0) > 0);
	assert_true(ckpt_kafka_stream_name(b, sizeof(b), "my_group", "t", 0) > 0);
	printf("'my/group' -> %s\n", a);
	assert_true(valid(a));
	assert_string_equal(b, "my_group.t.0");
	assert_string_not_equal(a, b);

	/* Too long: cut, hashed, still valid and distinct per partition. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(ckpt_kafka_stream_name(a, sizeof(a), big, "t", 1),
			 CKPT_NAME_MAX);
	assert_int_equal(ckpt_kafka_stream_name(b, sizeof(b), big, "t", 2),
			 CKPT_NAME_MAX);
	assert_true(valid(a));
	assert_true(valid(b));
	assert_string_not_equal(a, b);

	assert_int_equal(ckpt_kafka_stream_name(small, sizeof(small), "g", "t", 0),
			 -EINVAL);
	assert_int_equal(ckpt_kafka_stream_name(a, sizeof(a), "g", "t", -1),
			 -EINVAL);
}

static void test_gap_record(void **state)
{
	ckpt_kafka_gap_t g, out[32];
	char *blob = NULL, *next;
	size_t len = 0;
	int64_t total;
	int i, n;
	(void)state;

	assert_int_equal(ckpt_kafka_gaps_parse(NULL, 0, out, 32, &total), 0);
	assert_int_equal(total, 0);
	assert_int_equal(ckpt_kafka_gaps_parse("hello", 5, out, 32, &total),
			 -EINVAL);

	for (i = 0; i < 20; i++) {
		memset(&g, 0, sizeof(g));
		g.partition = 3;
		g.checkpointed = 100 * i;
		g.earliest = 100 * i + 40;
		g.resumed = g.earliest;
		g.lost = 40;
		g.policy = i % 2 ? CKPT_KAFKA_GAP_LATEST : CKPT_KAFKA_GAP_EARLIEST;
		g.when_unix = 1700000000 + i;
		assert_int_equal(ckpt__kafka_gaps_append(blob, len, "topic", &g,
							 &next, &len),
				 0);
		free(blob);
		blob = next;
	}
	printf("%s\n", blob);
	n = ckpt_kafka_gaps_parse(blob, len, out, 32, &total);
	assert_int_equal(n, 16); /* the newest 16 */
	assert_int_equal(total, 20 * 40); /* every gap counted */
	assert_int_equal(out[0].checkpointed, 400);
	assert_int_equal(out[15].checkpointed, 1900);
	assert_int_equal(out[15].policy, CKPT_KAFKA_GAP_LATEST);
	assert_int_equal(out[15].when_unix, 1700000019);
	assert_int_equal(out[15].partition, 3);
	free(blob);

	/* A blob that is not a gap record is replaced, and says so. */
	assert_int_equal(ckpt__kafka_gaps_append("junk", 4, "t", &g, &blob, &len),
			 -EINVAL);
	assert_int_equal(ckpt_kafka_gaps_parse(blob, len, out, 32, &total), 1);
	assert_int_equal(total, 40);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_gap_record),
	};
	printf("seed: none (deterministic)\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
