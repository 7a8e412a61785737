/*
 * ckpt_kafka.h - the Kafka consumer driver: librdkafka consumption with
 * offsets and state checkpointed through shmckpt.
 *
 * Model (Kafka Streams' task model).  Every consumed partition is a stream of
 * its own, named "<group>.<topic>.<partition>" (see ckpt_kafka_stream_name).
 * The stream is opened when the partition is assigned and flushed (bounded
 * wait for durability) and closed when it is revoked, so a partition's state
 * moves with it on a rebalance.  On assign the driver resumes at the
 * checkpointed offset; a partition without a checkpoint resumes at the
 * group's committed offset, else at conf.offset_reset.
 *
 * Per batch (ckpt_kafka_poll) and partition, the next offset of the batch
 * and every state change the user staged for that partition while handling
 * the batch are committed as ONE epoch: after any crash the state and the
 * offset come back together, so each record's effect is in the recovered
 * state exactly once (exactly-once state; see docs/KAFKA.md).
 *
 * Retention gap (SPARK-12693).  When the checkpointed offset is no longer in
 * the log (below the log start, checked with the watermarks before
 * consuming, or reported by the broker as out of range while consuming), the
 * driver applies conf.on_gap: CKPT_KAFKA_GAP_FAIL (default) refuses with
 * CKPT_EGAP and a message naming topic, partition, checkpointed offset,
 * earliest available offset and the number of records lost;
 * CKPT_KAFKA_GAP_EARLIEST / _LATEST resume there and record the gap in the
 * stream's metadata (ckpt_kafka_part_gaps), in the same epoch as the new
 * offset.  Records are never skipped silently.
 *
 * Errors.  Calls return >= 0 on success, else -errno or a CKPT_E* code
 * (ckpt_strerror names both); ckpt_kafka_last_error() gives a sentence with
 * the details of the last failure in this thread.
 *
 * Caveats
 *   - Threads: a handle is driven by one thread (the one calling
 *     ckpt_kafka_poll); callbacks run on that thread, inside
 *     ckpt_kafka_poll/ckpt_kafka_close.
 *   - One topic per handle.
 *   - The metadata of the partition streams belongs to the driver (the gap
 *     record); use keys for your own data.
 *   - fork: as for shmckpt streams and librdkafka handles, a handle must not
 *     be used in a child of fork().
 *   - After a failure that is not transient (a callback error, a stage or
 *     commit failure, a gap under CKPT_KAFKA_GAP_FAIL) the handle is
 *     failed: ckpt_kafka_poll keeps returning that error.  Close it; a new
 *     handle resumes from the checkpoints (the failed batch is not in them).
 */
#ifndef CKPT_KAFKA_H
#define CKPT_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "shmckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ckpt_kafka_gap_policy {
	CKPT_KAFKA_GAP_FAIL = 0, /* refuse: CKPT_EGAP with the numbers */
	CKPT_KAFKA_GAP_EARLIEST = 1, /* resume at the log start, record the gap */
	CKPT_KAFKA_GAP_LATEST = 2, /* resume at the log end, record the gap */
};

enum ckpt_kafka_mode {
	/* Subscribe as a member of conf.group; partitions move between
	 * members by (eager) rebalance. */
	CKPT_KAFKA_GROUP = 0,
	/* Assign every partition of the topic to this consumer, no group
	 * membership (like Spark's direct stream).  conf.group still names
	 * the streams and the committed offsets. */
	CKPT_KAFKA_ASSIGN = 1,
};

typedef struct ckpt_kafka ckpt_kafka_t;
typedef struct ckpt_kafka_part ckpt_kafka_part_t;

/*
 * User callbacks.  Each returns 0, or a negative code that fails the handle
 * (the batch in progress is not committed).  NULL callbacks are skipped.
 */
typedef struct ckpt_kafka_cbs {
	/* Partition @p was assigned and its stream opened.  Its recovered
	 * state (ckpt_kafka_part_get/_foreach_kv) is readable now and only
	 * now: load it into your own structures. */
	int (*on_assign)(void *arg, ckpt_kafka_part_t *p);
	/* One record of @p.  Stage the state changes it causes with
	 * ckpt_kafka_part_put/_del (now, or in on_batch_end). */
	int (*on_message)(void *arg, ckpt_kafka_part_t *p,
			  const rd_kafka_message_t *m);
	/* The batch of @p ends: last chance to stage changes before the
	 * driver commits them with the batch's next offset. */
	int (*on_batch_end)(void *arg, ckpt_kafka_part_t *p);
	/* @p is revoked (or the handle closes); its last batch was committed.
	 * Drop your state of it.  The return value is ignored. */
	int (*on_revoke)(void *arg, ckpt_kafka_part_t *p);
} ckpt_kafka_cbs_t;

typedef struct ckpt_kafka_conf {
	const char *bootstrap; /* bootstrap.servers; required */
	const char *group; /* group.id; required */
	const char *topic; /* required */
	const char *dir; /* checkpoint directory (must exist); required */
	int mode; /* enum ckpt_kafka_mode; default GROUP */
	int on_gap; /* enum ckpt_kafka_gap_policy; default FAIL */
	/* Where a partition without checkpoint and without committed offset
	 * starts: "earliest" or "latest".  Default "earliest". */
	const char *offset_reset;
	int batch_ms; /* longest batch; default 100 */
	int batch_max; /* most records per batch; default 10000 */
	/* Commit offsets whose epoch is durable back to the group,
	 * asynchronously, so lag tools see progress; a commit that fails is
	 * sent again after the next batch.  Default 0. */
	int commit_kafka;
	int revoke_wait_ms; /* bound of the durability wait on revoke; 5000 */
	int open_busy_ms; /* retry an -EBUSY stream (its previous owner is
			   * still closing) this long; default 10000 */
	int session_timeout_ms; /* group mode; default 6000 */
	int verbose; /* librdkafka logs and driver notes to stderr */
	/* Extra librdkafka properties, "name=value", NULL-terminated (e.g.
	 * security settings).  The ones the driver's guarantees rest on are
	 * refused with -EINVAL: bootstrap.servers, group.id (use the fields),
	 * enable.auto.commit, enable.auto.offset.store, auto.offset.reset. */
	const char *const *props;
	/* Options of every partition stream; NULL: defaults, except that the
	 * driver waits (CKPT_FULL_WAIT, 5 s) when a ring is full. */
	const ckpt_opts_t *ckpt_opts;
	ckpt_kafka_cbs_t cbs;
	void *arg; /* passed to every callback */
} ckpt_kafka_conf_t;

/* Fill *c with the defaults above.  Always call it before setting fields. */
void ckpt_kafka_conf_init(ckpt_kafka_conf_t *c);

/*
 * Create the consumer and subscribe (GROUP) or assign every partition
 * (ASSIGN; then the partitions are opened here and on_assign runs before
 * this returns).  Errors: -EINVAL (bad conf: message says which field),
 * -ENOMEM, -EIO (librdkafka refused a property or the handle), -ETIMEDOUT
 * (ASSIGN: topic metadata unavailable for 30 s), CKPT_EGAP (ASSIGN, policy
 * FAIL), any error of ckpt_open.  On failure *out is untouched.
 */
int ckpt_kafka_open(const ckpt_kafka_conf_t *c, ckpt_kafka_t **out);

/*
 * Run one batch: consume for at most conf.batch_ms (or conf.batch_max
 * records), then commit one epoch per partition that received records.
 * Rebalances happen inside.  Transient Kafka errors (broker down, transport)
 * are retried by librdkafka and counted, not returned.
 * Returns the number of records handled (>= 0), or the handle's failure:
 * CKPT_EGAP, a callback's code, a ckpt_ stage/commit error.
 */
int ckpt_kafka_poll(ckpt_kafka_t *k);

/*
 * Commit what was handled, leave the group (revoking: flush + close every
 * stream), destroy the consumer, free the handle.  Returns 0 or the first
 * error (the handle is freed either way).
 */
int ckpt_kafka_close(ckpt_kafka_t *k);

/* The handle's failure (0 if none). */
int ckpt_kafka_error(const ckpt_kafka_t *k);

/* The librdkafka consumer (do not poll it yourself). */
rd_kafka_t *ckpt_kafka_rk(ckpt_kafka_t *k);

typedef struct ckpt_kafka_stats {
	uint64_t messages; /* records handed to on_message */
	uint64_t epochs; /* epochs committed */
	uint64_t assigned; /* partitions assigned now */
	uint64_t assigns, revokes; /* partitions opened / closed so far */
	uint64_t gaps; /* retention gaps met (each recorded or refused) */
	uint64_t records_lost; /* sum of the gaps' lost counts */
	uint64_t kafka_commits; /* async offset commits sent */
	uint64_t kafka_errors; /* transient errors seen (retried), failed
				* offset commits included */
	uint64_t skipped_stale; /* records below the checkpoint, dropped */
	uint64_t commit_ns_max; /* slowest batch commit (all partitions) */
	uint64_t commit_ns_total; /* sum over batch commits */
	uint64_t batches; /* batch commits that committed something */
} ckpt_kafka_stats_t;

void ckpt_kafka_stats(const ckpt_kafka_t *k, ckpt_kafka_stats_t *st);

/* Details of the last failure of a ckpt_kafka_ call in this thread. */
const char *ckpt_kafka_last_error(void);

/*
 * Stream name of a partition: "<group>.<topic>.<partition>" when that is a
 * valid stream name; otherwise every byte outside [A-Za-z0-9._-] becomes
 * '_', the name is cut to fit, and "-h" + 8 hex digits of a hash of the
 * exact original are appended so that distinct inputs keep distinct names.
 * Returns the length, or -EINVAL (@n < CKPT_NAME_MAX + 1, NULL).
 */
int ckpt_kafka_stream_name(char *buf, size_t n, const char *group,
			   const char *topic, int32_t partition);

/* ---- the partition view, valid between on_assign and on_revoke ---- */

const char *ckpt_kafka_part_topic(const ckpt_kafka_part_t *p);
int32_t ckpt_kafka_part_partition(const ckpt_kafka_part_t *p);
const char *ckpt_kafka_part_stream_name(const ckpt_kafka_part_t *p);
/* The stream (for ckpt_status / ckpt_durable_epoch; do not commit on it). */
ckpt_stream_t *ckpt_kafka_part_stream(ckpt_kafka_part_t *p);
/* Next offset as last committed (checkpointed) by the driver; -1: none. */
int64_t ckpt_kafka_part_committed(const ckpt_kafka_part_t *p);
void *ckpt_kafka_part_user(const ckpt_kafka_part_t *p);
void ckpt_kafka_part_set_user(ckpt_kafka_part_t *p, void *user);

/* Stage a change of the open epoch of @p (errors as ckpt_put/ckpt_del). */
int ckpt_kafka_part_put(ckpt_kafka_part_t *p, const void *key, size_t klen,
			const void *val, size_t vlen);
int ckpt_kafka_part_del(ckpt_kafka_part_t *p, const void *key, size_t klen);

/* Recovered state, in on_assign only (else -ESTALE): as ckpt_get and
 * ckpt_foreach_kv. */
int ckpt_kafka_part_get(const ckpt_kafka_part_t *p, const void *key,
			size_t klen, const void **val, size_t *vlen);
int ckpt_kafka_part_foreach_kv(const ckpt_kafka_part_t *p, ckpt_kv_fn fn,
			       void *arg);

/* The gap record of @p (JSON text, see docs/KAFKA.md; "" if none).  Valid
 * until on_revoke. */
const char *ckpt_kafka_part_gaps(const ckpt_kafka_part_t *p);

/* ---- gap records (the stream metadata the driver writes) ---- */

typedef struct ckpt_kafka_gap {
	int32_t partition;
	int64_t checkpointed; /* next offset the checkpoint asked for */
	int64_t earliest; /* log start when the gap was found */
	int64_t resumed; /* where consumption resumed */
	int64_t lost; /* records never consumed: earliest - checkpointed
		       * (for LATEST: resumed - checkpointed) */
	int policy; /* enum ckpt_kafka_gap_policy */
	int64_t when_unix; /* seconds */
} ckpt_kafka_gap_t;

/*
 * Parse a gap record (metadata blob of @len bytes).  Fills up to @max gaps
 * (oldest first) and returns how many the record holds, and *lost_total
 * (may be NULL) the sum of every gap's lost count ever recorded (older gaps
 * beyond the 16 kept still count).  0 for an empty blob; -EINVAL if the blob
 * is not a gap record.
 */
int ckpt_kafka_gaps_parse(const void *blob, size_t len, ckpt_kafka_gap_t *gaps,
			  int max, int64_t *lost_total);

#ifdef __cplusplus
}
#endif
#endif /* CKPT_KAFKA_H */
