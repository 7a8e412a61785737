/*
 * kafkacheck.h - what the Kafka integration tests share: a call that must
 * succeed, and the end-of-run check that a consumer's checkpointed state
 * equals an oracle computed independently from the topic.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef CKPT_TEST_KAFKACHECK_H
#define CKPT_TEST_KAFKACHECK_H

#include <inttypes.h>
#include <stdio.h>

#include "ckpt_kafka_ref.h"

/* @call returns >= 0, or the test fails with the driver's last error. */
#define OK(call)                                                           \
	do {                                                               \
		int rc_ = (call);                                          \
		if (rc_ < 0)                                               \
			fail_msg("%s = %d: %s", #call, rc_,                \
				 ckpt_kafka_last_error());                 \
	} while (0)

/*
 * Read the whole of @topic from @bootstrap (the oracle: every key's count
 * and sum) and load what the consumer group @group checkpointed under
 * @dir for its @parts partitions.  They must agree key by key, the
 * checkpointed next offsets must add up to the records read, and so must
 * the counts: nothing lost, nothing counted twice.  @ctx goes into the
 * failure message (a seed to replay, or "").  Returns the record count;
 * *lo_sum (may be NULL) gets the sum of the partitions' low watermarks.
 */
static inline int64_t kc_check_exact(const char *bootstrap, const char *dir,
				     const char *group, const char *topic,
				     int parts, const char *ctx,
				     int64_t *lo_sum)
{
	ckpt_kafka_agg_t *oracle = ckpt_kafka_agg_new();
	ckpt_kafka_agg_t *got = ckpt_kafka_agg_new();
	int64_t records = 0, next_sum = 0, lo = 0, c1, s1, c2, s2;
	char why[1024];
	size_t bad;

	assert_non_null(oracle);
	assert_non_null(got);
	OK(ckpt_kafka_ref_oracle(bootstrap, topic, oracle, &records, &lo,
				 60000));
	OK(ckpt_kafka_ref_load(dir, group, topic, parts, got, &next_sum));
	ckpt_kafka_agg_totals(oracle, &c1, &s1);
	ckpt_kafka_agg_totals(got, &c2, &s2);
	printf("oracle: %" PRId64 " records, %zu keys, count %" PRId64
	       " sum %" PRId64 "\n", records, ckpt_kafka_agg_keys(oracle), c1,
	       s1);
	printf("state:  next offsets sum %" PRId64 ", %zu keys, count %" PRId64
	       " sum %" PRId64 "\n", next_sum, ckpt_kafka_agg_keys(got), c2, s2);
	bad = ckpt_kafka_agg_diff(got, oracle, why, sizeof(why));
	if (bad)
		fail_msg("%zu keys differ%s%s: %s", bad, ctx[0] ? " " : "", ctx,
			 why);
	assert_int_equal(next_sum, records);
	assert_int_equal(c2, records);
	ckpt_kafka_agg_free(oracle);
	ckpt_kafka_agg_free(got);
	if (lo_sum)
		*lo_sum = lo;
	return records;
}

#endif
