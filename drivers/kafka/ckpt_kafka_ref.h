/*
 * ckpt_kafka_ref.h - the reference consumer (the seeds' SparkApp) and the
 * embedded Kafka (the seeds' KafkaApp), as library code so that the CLI, the
 * demo and the tests run the very same thing.
 *
 * The reference consumer aggregates, per key, the count of records and the
 * sum of their integer values.  Its state is stored through the driver: one
 * key per message key, value "<count> <sum>" in decimal text (readable in a
 * dump).  A value that is not an integer counts as a record and adds 0.
 */
#ifndef CKPT_KAFKA_REF_H
#define CKPT_KAFKA_REF_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "ckpt_kafka.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the aggregate: key -> (count, sum) ---- */

typedef struct ckpt_kafka_agg ckpt_kafka_agg_t;

ckpt_kafka_agg_t *ckpt_kafka_agg_new(void); /* NULL: out of memory */
void ckpt_kafka_agg_free(ckpt_kafka_agg_t *a);
/* Add (count, sum) to @key.  0 or -ENOMEM. */
int ckpt_kafka_agg_add(ckpt_kafka_agg_t *a, const void *key, size_t klen,
		       int64_t count, int64_t sum);
/* 0 and the totals of @key, or -ENOENT. */
int ckpt_kafka_agg_get(const ckpt_kafka_agg_t *a, const void *key,
		       size_t klen, int64_t *count, int64_t *sum);
size_t ckpt_kafka_agg_keys(const ckpt_kafka_agg_t *a);
/* Sum of every key's count and sum. */
void ckpt_kafka_agg_totals(const ckpt_kafka_agg_t *a, int64_t *count,
			   int64_t *sum);
/* Number of keys whose totals differ between @a and @b (either side
 * missing counts); the first few differences are described in @why. */
size_t ckpt_kafka_agg_diff(const ckpt_kafka_agg_t *a,
			   const ckpt_kafka_agg_t *b, char *why, size_t n);

/* Integer value of a record ("-12", "0042"): 0, or -EINVAL. */
int ckpt_kafka_parse_int(const void *v, size_t len, int64_t *out);

/* ---- the reference consumer ---- */

typedef struct ckpt_kafka_ref_opts {
	const char *bootstrap, *group, *topic, *dir; /* required */
	int mode; /* enum ckpt_kafka_mode */
	int on_gap; /* enum ckpt_kafka_gap_policy */
	const char *offset_reset; /* "earliest" (default) or "latest" */
	int batch_ms; /* default 100 */
	uint64_t max_messages; /* stop after this many records (0: no) */
	int exit_idle_ms; /* stop after this long without records (0: no) */
	int commit_kafka;
	int verbose;
	/* No lines on stdout.  Otherwise one line per partition assigned
	 * ("assigned <stream>: checkpoint offset N|none, epoch E, K keys")
	 * and revoked ("revoked <stream>: checkpoint offset N|none"), and a
	 * summary at the end. */
	int quiet;
	/* Extra librdkafka properties, "name=value", NULL-terminated (a real
	 * cluster's security settings, timeouts). */
	const char *const *props;
	const ckpt_opts_t *ckpt_opts; /* NULL: driver defaults */
	volatile sig_atomic_t *stop; /* set (by a signal handler) to stop */
} ckpt_kafka_ref_opts_t;

typedef struct ckpt_kafka_ref_result {
	ckpt_kafka_stats_t st;
} ckpt_kafka_ref_result_t;

/*
 * Consume and checkpoint until a stop condition.  Returns 0 on a clean stop,
 * else the driver's error (message in ckpt_kafka_last_error()).  @res may be
 * NULL.
 */
int ckpt_kafka_ref_run(const ckpt_kafka_ref_opts_t *o,
		       ckpt_kafka_ref_result_t *res);

/*
 * The command line of 'shmckpt consume' (argv[0] is "consume"; --help for
 * the options).  Installs SIGINT/SIGTERM handlers that stop it cleanly.
 * Returns the exit code: 0 ok, 1 failure, 64 usage.
 */
int ckpt_kafka_ref_main(int argc, char **argv);

/*
 * The oracle: read partitions of @topic from the log start to the high
 * watermark seen at the call (a plain consumer, no group, no checkpoint)
 * and aggregate them into @a.  *records gets the number read, *log_start
 * (may be NULL) the sum of the partitions' log start offsets.  0, or
 * -ETIMEDOUT / -EIO with ckpt_kafka_last_error().
 */
int ckpt_kafka_ref_oracle(const char *bootstrap, const char *topic,
			  ckpt_kafka_agg_t *a, int64_t *records,
			  int64_t *log_start, int timeout_ms);

/*
 * Load the checkpointed state of @nparts partition streams of @group/@topic
 * under @dir into @a (their writers must be gone: it opens them).  Streams
 * that do not exist are skipped.  *next_sum (may be NULL) gets the sum of
 * their checkpointed next offsets.  0 or a ckpt_ error.
 */
int ckpt_kafka_ref_load(const char *dir, const char *group, const char *topic,
			int nparts, ckpt_kafka_agg_t *a, int64_t *next_sum);

/* ---- the embedded Kafka: librdkafka's mock cluster ---- */

typedef struct ckpt_kafka_mock ckpt_kafka_mock_t;

/* Start @brokers mock brokers on loopback ports.  0, -EIO. */
int ckpt_kafka_mock_start(int brokers, int verbose, ckpt_kafka_mock_t **out);
void ckpt_kafka_mock_stop(ckpt_kafka_mock_t *m);
const char *ckpt_kafka_mock_bootstrap(const ckpt_kafka_mock_t *m);
rd_kafka_mock_cluster_t *ckpt_kafka_mock_cluster(ckpt_kafka_mock_t *m);
/* Create @topic with @partitions.  0 or -EIO. */
int ckpt_kafka_mock_topic(ckpt_kafka_mock_t *m, const char *topic,
			  int partitions);

/*
 * The counter producer (KafkaApp): record n has value n and key n, or key
 * n % @keys when @keys > 0.  @rate records per second (0: as fast as the
 * client takes them); stops after @limit records (0: never).  It runs in a
 * thread until ckpt_kafka_mock_produce_stop, which waits until every
 * record is delivered (at most 30 s) and returns how many were acked.
 */
int ckpt_kafka_mock_produce_start(ckpt_kafka_mock_t *m, const char *topic,
				  double rate, int keys, uint64_t limit);
uint64_t ckpt_kafka_mock_produced(const ckpt_kafka_mock_t *m); /* acked */
int64_t ckpt_kafka_mock_produce_stop(ckpt_kafka_mock_t *m);
/* Produce @n counter records synchronously (no thread). */
int ckpt_kafka_mock_produce_n(ckpt_kafka_mock_t *m, const char *topic,
			      int keys, uint64_t n);

/*
 * Retention: the mock keeps about 5 MiB (or 100000 batches) per partition
 * and drops its oldest batches beyond that (the limit is fixed in 2.0.2).
 * Append padding records (key "pad", value 64 KiB of '0', which counts as
 * the integer 0) to @partition until its log start is past @offset.
 * *lo gets the new log start.  0, -ETIMEDOUT, -EIO.
 */
int ckpt_kafka_mock_prune(ckpt_kafka_mock_t *m, const char *topic,
			  int32_t partition, int64_t offset, int64_t *lo);

/* Watermarks of a partition, as the broker reports them. */
int ckpt_kafka_mock_watermarks(ckpt_kafka_mock_t *m, const char *topic,
			       int32_t partition, int64_t *lo, int64_t *hi);

#ifdef __cplusplus
}
#endif
#endif
