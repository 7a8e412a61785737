/*
 * consumer.c - the Kafka consumer driver: one stream per assigned
 * partition, one epoch per batch and partition, gap policies.
 *
 * Where a partition starts (decided when it is assigned, see part_start):
 *   checkpoint present -> the checkpointed offset, after checking it against
 *                         the log start (watermarks): a gap takes the policy;
 *   no checkpoint      -> RD_KAFKA_OFFSET_STORED: the group's committed
 *                         offset; librdkafka runs with auto.offset.reset=error
 *                         so that "nothing committed" and "out of range" come
 *                         back to us as __AUTO_OFFSET_RESET, and we apply
 *                         conf.offset_reset (no checkpoint: nothing to lose)
 *                         or the gap policy (a checkpoint or progress: the
 *                         broker deleted what we had not consumed yet).
 * Because librdkafka never resets an offset by itself, no record is skipped
 * without passing through gap_apply, which either refuses or records.
 */
#include "kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CQ_MAX 64 /* (epoch, offset) pairs awaiting durability per partition */
#define WM_TIMEOUT_MS 10000 /* watermark query bound */

struct cq_ent {
	int64_t epoch, offset;
};

struct ckpt_kafka_part {
	ckpt_kafka_t *k;
	int32_t partition;
	char name[CKPT_NAME_MAX + 1];
	ckpt_stream_t *s;
	int64_t committed; /* checkpointed next offset; -1 none */
	int64_t next; /* next offset after the last handled record; -1 none */
	uint32_t batch_msgs; /* records handled since the last commit */
	int gap_pending; /* a gap record is staged: commit even if no record */
	int in_assign; /* recovered state readable */
	void *user;
	char *gaps; /* gap record, NUL-terminated ("" if none) */
	size_t gaps_len;
	int64_t last_epoch;
	struct cq_ent cq[CQ_MAX];
	int cq_n;
	/* Offsets back to the group (conf.commit_kafka): the newest offset
	 * whose epoch is durable, the one last sent, and the one the group
	 * acknowledged.  A failed commit puts sent back to acked, so the
	 * newest durable offset is sent again with the next batch, even if
	 * no record arrives any more. */
	int64_t kafka_durable, kafka_sent, kafka_acked;
};

struct ckpt_kafka {
	ckpt_kafka_conf_t conf; /* strings below are private copies */
	char *bootstrap, *group, *topic, *dir, *offset_reset;
	ckpt_opts_t opts;
	rd_kafka_t *rk;
	ckpt_kafka_part_t **parts; /* indexed by partition */
	int32_t nparts;
	int err; /* first failure; sticky */
	char errmsg[512]; /* its message, given again by every later poll */
	ckpt_kafka_stats_t st;
	int closing;
};

static const char EMPTY[] = "";

/* Record the handle's first failure (sticky) and the thread's message. */
__attribute__((format(printf, 3, 4))) static int
kfail(ckpt_kafka_t *k, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!k->err) {
		k->err = code;
		memcpy(k->errmsg, msg, sizeof(msg));
	}
	return ckpt__kafka_fail(code, "%s", msg);
}

__attribute__((format(printf, 2, 3))) static void
knote(const ckpt_kafka_t *k, const char *fmt, ...)
{
	va_list ap;
	if (!k->conf.verbose)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "shmckpt-kafka: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void ckpt_kafka_conf_init(ckpt_kafka_conf_t *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = CKPT_KAFKA_GROUP;
	c->on_gap = CKPT_KAFKA_GAP_FAIL;
	c->offset_reset = "earliest";
	c->batch_ms = 100;
	c->batch_max = 10000;
	c->revoke_wait_ms = 5000;
	c->open_busy_ms = 10000;
	c->session_timeout_ms = 6000;
}

/* ---- partition table ---- */

static ckpt_kafka_part_t *part_find(const ckpt_kafka_t *k, int32_t partition)
{
	if (partition < 0 || partition >= k->nparts)
		return NULL;
	return k->parts[partition];
}

static int table_reserve(ckpt_kafka_t *k, int32_t partition)
{
	ckpt_kafka_part_t **np;
	int32_t n;
	if (partition < k->nparts)
		return 0;
	n = partition + 1 > 2 * k->nparts ? partition + 1 : 2 * k->nparts;
	np = realloc(k->parts, (size_t)n * sizeof(*np));
	if (!np)
		return -ENOMEM;
	memset(np + k->nparts, 0, (size_t)(n - k->nparts) * sizeof(*np));
	k->parts = np;
	k->nparts = n;
	return 0;
}

static void cq_push(ckpt_kafka_part_t *p, int64_t epoch, int64_t offset)
{
	/* Full: fold into the newest entry.  Its epoch only grows, so an
	 * offset is never committed to Kafka before its epoch is durable. */
	if (p->cq_n == CQ_MAX) {
		p->cq[CQ_MAX - 1].epoch = epoch;
		p->cq[CQ_MAX - 1].offset = offset;
		return;
	}
	p->cq[p->cq_n].epoch = epoch;
	p->cq[p->cq_n].offset = offset;
	p->cq_n++;
}

/* Move the offsets whose epochs are durable out of the queue into
 * p->kafka_durable. */
static void cq_take_durable(ckpt_kafka_part_t *p)
{
	int64_t d = ckpt_durable_epoch(p->s);
	int i = 0;
	while (i < p->cq_n && p->cq[i].epoch <= d)
		p->kafka_durable = p->cq[i++].offset;
	if (i) {
		memmove(p->cq, p->cq + i, (size_t)(p->cq_n - i) * sizeof(p->cq[0]));
		p->cq_n -= i;
	}
}

/* ---- epochs ---- */

/* Commit the batch of @p as one epoch: staged changes + next offset. */
static int part_commit(ckpt_kafka_t *k, ckpt_kafka_part_t *p)
{
	int64_t e;
	int rc;
	uint64_t t0;

	if (!p->batch_msgs && !p->gap_pending)
		return 0;
	if (k->err) {
		ckpt_abort(p->s);
		return k->err;
	}
	t0 = ckpt__kafka_now_ns();
	if (p->batch_msgs && k->conf.cbs.on_batch_end) {
		rc = k->conf.cbs.on_batch_end(k->conf.arg, p);
		if (rc < 0) {
			ckpt_abort(p->s);
			return kfail(k, rc, "%s: on_batch_end failed: %s", p->name,
				     ckpt_strerror(rc));
		}
	}
	rc = ckpt_offset(p->s, k->topic, p->partition, p->next);
	if (rc < 0) {
		ckpt_abort(p->s);
		return kfail(k, rc, "%s: staging offset %" PRId64 ": %s (%s)",
			     p->name, p->next, ckpt_strerror(rc),
			     ckpt_last_error());
	}
	e = ckpt_commit(p->s);
	if (e < 0) {
		ckpt_abort(p->s);
		return kfail(k, (int)e, "%s: commit: %s (%s)", p->name,
			     ckpt_strerror((int)e), ckpt_last_error());
	}
	{
		uint64_t dt = ckpt__kafka_now_ns() - t0;
		k->st.commit_ns_total += dt;
		if (dt > k->st.commit_ns_max)
			k->st.commit_ns_max = dt;
		k->st.batches++;
	}
	p->committed = p->next;
	p->batch_msgs = 0;
	p->gap_pending = 0;
	p->last_epoch = e;
	k->st.epochs++;
	cq_push(p, e, p->next);
	return 0;
}

static int commit_all(ckpt_kafka_t *k)
{
	int32_t i;
	int rc, first = 0;
	for (i = 0; i < k->nparts; i++) {
		if (!k->parts[i])
			continue;
		rc = part_commit(k, k->parts[i]);
		if (rc < 0 && !first)
			first = rc;
	}
	return first;
}

/* Result of an asynchronous offset commit (served by
 * rd_kafka_consumer_poll, so on the thread that drives the handle). */
static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			     rd_kafka_topic_partition_list_t *offsets,
			     void *opaque)
{
	ckpt_kafka_t *k = opaque;
	int i;
	(void)rk;
	if (!offsets)
		return;
	for (i = 0; i < offsets->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
		rd_kafka_resp_err_t e = err ? err : tp->err;
		ckpt_kafka_part_t *p = strcmp(tp->topic, k->topic) ?
					       NULL :
					       part_find(k, tp->partition);
		if (!p)
			continue; /* revoked meanwhile: its new owner commits */
		if (!e) {
			if (tp->offset > p->kafka_acked)
				p->kafka_acked = tp->offset;
			continue;
		}
		k->st.kafka_errors++;
		knote(k, "offset commit of %s [%" PRId32 "] at %" PRId64
		      " failed: %s; sent again with the next batch",
		      k->topic, tp->partition, tp->offset, rd_kafka_err2str(e));
		if (p->kafka_sent == tp->offset)
			p->kafka_sent = p->kafka_acked;
	}
}

/* Send offsets whose epochs are durable to the group (async).  @only: one
 * partition, else all. */
static void commit_back(ckpt_kafka_t *k, ckpt_kafka_part_t *only)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	int32_t i;

	if (!k->conf.commit_kafka)
		return;
	l = rd_kafka_topic_partition_list_new(4);
	if (!l)
		return;
	for (i = 0; i < k->nparts; i++) {
		ckpt_kafka_part_t *p = k->parts[i];
		if (!p || (only && p != only))
			continue;
		cq_take_durable(p);
		if (p->kafka_durable >= 0 && p->kafka_durable != p->kafka_sent) {
			rd_kafka_topic_partition_list_add(l, k->topic,
							  p->partition)
				->offset = p->kafka_durable;
			p->kafka_sent = p->kafka_durable;
		}
	}
	if (l->cnt) {
		err = rd_kafka_commit(k->rk, l, 1);
		if (err)
			knote(k, "offset commit to the group: %s",
			      rd_kafka_err2str(err));
		else
			k->st.kafka_commits++;
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* ---- gaps ---- */

/*
 * The checkpoint asks for an offset outside [lo, hi].  FAIL: refuse with the
 * numbers.  Else stage the gap record and choose *start; the caller commits
 * the epoch (new offset + record) before consuming.
 */
static int gap_apply(ckpt_kafka_t *k, ckpt_kafka_part_t *p, int64_t want,
		     int64_t lo, int64_t hi, const char *when, int64_t *start)
{
	ckpt_kafka_gap_t g;
	char *blob = NULL;
	size_t blen = 0;
	int64_t lost;
	int rc;

	k->st.gaps++;
	if (want > hi) {
		/* Beyond the end: the log was truncated or the topic
		 * recreated.  Nothing we know of was lost, but the offsets we
		 * would resume at are not the records we consumed. */
		if (k->conf.on_gap == CKPT_KAFKA_GAP_FAIL)
			return kfail(k, CKPT_EGAP,
				     "topic %s partition %" PRId32
				     ": checkpointed offset %" PRId64
				     " is beyond the log end %" PRId64
				     " (earliest available offset %" PRId64
				     "; found %s): the log was truncated or "
				     "the topic recreated. Refusing to "
				     "continue (--on-gap fail); rerun with "
				     "--on-gap earliest or latest to accept "
				     "it, the gap will be recorded in the "
				     "checkpoint",
				     k->topic, p->partition, want, hi, lo, when);
		lost = 0;
	} else {
		lost = lo - want;
		if (k->conf.on_gap == CKPT_KAFKA_GAP_FAIL)
			return kfail(k, CKPT_EGAP,
				     "retention gap: topic %s partition %" PRId32
				     ": checkpointed offset %" PRId64
				     " is no longer in the log; earliest "
				     "available offset is %" PRId64
				     ", so %" PRId64
				     " records were deleted before they were "
				     "consumed (found %s). Refusing to skip "
				     "them (--on-gap fail); rerun with --on-gap "
				     "earliest or latest to accept the loss, "
				     "which is then recorded in the checkpoint",
				     k->topic, p->partition, want, lo, lost,
				     when);
	}
	*start = k->conf.on_gap == CKPT_KAFKA_GAP_EARLIEST ? lo : hi;
	if (k->conf.on_gap == CKPT_KAFKA_GAP_LATEST && want < hi)
		lost = hi - want;
	memset(&g, 0, sizeof(g));
	g.partition = p->partition;
	g.checkpointed = want;
	g.earliest = lo;
	g.resumed = *start;
	g.lost = lost;
	g.policy = k->conf.on_gap;
	g.when_unix = (int64_t)time(NULL);
	rc = ckpt__kafka_gaps_append(p->gaps, p->gaps_len, k->topic, &g, &blob,
				     &blen);
	if (rc == -ENOMEM)
		return kfail(k, rc, "%s: out of memory", p->name);
	rc = ckpt_meta(p->s, blob, blen);
	if (rc < 0) {
		free(blob);
		ckpt_abort(p->s);
		return kfail(k, rc, "%s: recording the gap: %s (%s)", p->name,
			     ckpt_strerror(rc), ckpt_last_error());
	}
	if (p->gaps != EMPTY)
		free(p->gaps);
	p->gaps = blob;
	p->gaps_len = blen;
	p->gap_pending = 1;
	p->next = *start;
	k->st.records_lost += (uint64_t)lost;
	/* Never silent: this line is printed whatever the verbosity. */
	fprintf(stderr,
		"shmckpt-kafka: retention gap on topic %s partition %" PRId32
		": checkpointed offset %" PRId64 ", earliest available %" PRId64
		", log end %" PRId64 " (found %s); resuming at %" PRId64
		" (--on-gap %s): %" PRId64
		" records lost, recorded in the checkpoint of %s\n",
		k->topic, p->partition, want, lo, hi, when, *start,
		ckpt__kafka_policy_name(k->conf.on_gap), lost, p->name);
	return 0;
}

/* ---- assign / revoke ---- */

static void part_free(ckpt_kafka_part_t *p)
{
	if (p->gaps != EMPTY)
		free(p->gaps);
	free(p);
}

static int stream_open(ckpt_kafka_t *k, ckpt_kafka_part_t *p)
{
	uint64_t deadline = ckpt__kafka_now_ns() +
			    (uint64_t)k->conf.open_busy_ms * 1000000ull;
	int rc;
	for (;;) {
		rc = ckpt_open(k->dir, p->name, &k->opts, &p->s);
		if (rc != -EBUSY || ckpt__kafka_now_ns() >= deadline)
			break;
		/* The previous owner (another member, on its revoke) is
		 * still flushing; it lets go within its revoke bound. */
		usleep(20000);
	}
	if (rc < 0)
		return kfail(k, rc, "opening stream %s in %s: %s (%s)", p->name,
			     k->dir, ckpt_strerror(rc), ckpt_last_error());
	return 0;
}

/* A partition without checkpoint: the group's committed offset, else
 * conf.offset_reset.  If the group cannot be asked, RD_KAFKA_OFFSET_STORED:
 * librdkafka asks when fetching, and an answer of "none" comes back to
 * on_offset_reset. */
static int64_t committed_or_reset(ckpt_kafka_t *k, ckpt_kafka_part_t *p)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;
	int64_t off = RD_KAFKA_OFFSET_STORED;

	if (!l)
		return off;
	rd_kafka_topic_partition_list_add(l, k->topic, p->partition);
	err = rd_kafka_committed(k->rk, l, WM_TIMEOUT_MS);
	if (!err && !l->elems[0].err) {
		if (l->elems[0].offset >= 0) {
			off = l->elems[0].offset;
			/* Said whatever the verbosity: a partition that the
			 * group consumed before but that has no checkpoint
			 * here (a new directory?) starts with empty state. */
			fprintf(stderr,
				"shmckpt-kafka: %s: no checkpoint in %s; "
				"starting at the group's committed offset %"
				PRId64 " with empty state\n",
				p->name, k->dir, off);
		} else
			off = !strcmp(k->offset_reset, "latest") ?
				      RD_KAFKA_OFFSET_END :
				      RD_KAFKA_OFFSET_BEGINNING;
	} else {
		knote(k, "%s: committed offset unavailable (%s)", p->name,
		      rd_kafka_err2str(err ? err : l->elems[0].err));
	}
	rd_kafka_topic_partition_list_destroy(l);
	return off;
}

/* Where @p starts; may stage a gap record.  *start is an offset or
 * RD_KAFKA_OFFSET_STORED. */
static int part_start(ckpt_kafka_t *k, ckpt_kafka_part_t *p, int64_t *start)
{
	int64_t lo = -1, hi = -1;
	rd_kafka_resp_err_t err;

	if (p->committed < 0) {
		*start = committed_or_reset(k, p);
		return 0;
	}
	*start = p->committed;
	err = rd_kafka_query_watermark_offsets(k->rk, k->topic, p->partition,
					       &lo, &hi, WM_TIMEOUT_MS);
	if (err) {
		/* Not fatal: with auto.offset.reset=error the broker's
		 * out-of-range answer brings us back to gap_apply. */
		knote(k, "%s: watermarks unavailable (%s); resuming at %" PRId64
		      ", a gap will be caught when fetching",
		      p->name, rd_kafka_err2str(err), p->committed);
		return 0;
	}
	if (p->committed >= lo && p->committed <= hi)
		return 0;
	return gap_apply(k, p, p->committed, lo, hi, "before consuming", start);
}

/* Open, recover, hand to the user, decide the start.  On success *out is in
 * the table.  On CKPT_EGAP (policy fail) the partition is not opened. */
static int part_assign(ckpt_kafka_t *k, int32_t partition, int64_t *start)
{
	ckpt_kafka_part_t *p;
	const void *meta = NULL;
	size_t mlen = 0;
	int64_t next;
	int rc;

	if (table_reserve(k, partition) < 0)
		return kfail(k, -ENOMEM, "out of memory");
	if (k->parts[partition]) {
		/* Already ours (a cooperative re-assign): keep its position,
		 * never the group's committed offset, which trails it. */
		p = k->parts[partition];
		*start = p->next >= 0 ? p->next : RD_KAFKA_OFFSET_STORED;
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return kfail(k, -ENOMEM, "out of memory");
	p->k = k;
	p->partition = partition;
	p->gaps = (char *)EMPTY;
	p->kafka_durable = p->kafka_sent = p->kafka_acked = -1;
	rc = ckpt_kafka_stream_name(p->name, sizeof(p->name), k->group, k->topic,
				    partition);
	if (rc < 0) {
		free(p);
		return kfail(k, rc, "stream name: %s", ckpt_kafka_last_error());
	}
	rc = stream_open(k, p);
	if (rc < 0) {
		free(p);
		return rc;
	}
	p->committed = ckpt_get_offset(p->s, k->topic, partition, &next) == 0 ?
			       next : -1;
	p->next = p->committed;
	if (ckpt_get_meta(p->s, &meta, &mlen) == 0 && mlen) {
		p->gaps = malloc(mlen + 1);
		if (!p->gaps) {
			ckpt_close(p->s);
			free(p);
			return kfail(k, -ENOMEM, "out of memory");
		}
		memcpy(p->gaps, meta, mlen);
		p->gaps[mlen] = '\0';
		p->gaps_len = mlen;
	}
	rc = part_start(k, p, start);
	if (rc < 0) {
		ckpt_close(p->s);
		part_free(p);
		return rc;
	}
	p->in_assign = 1;
	if (k->conf.cbs.on_assign) {
		rc = k->conf.cbs.on_assign(k->conf.arg, p);
		if (rc < 0) {
			p->in_assign = 0;
			ckpt_abort(p->s);
			ckpt_close(p->s);
			part_free(p);
			return kfail(k, rc, "%s: on_assign failed: %s", p->name,
				     ckpt_strerror(rc));
		}
	}
	p->in_assign = 0;
	k->parts[partition] = p;
	k->st.assigns++;
	k->st.assigned++;
	knote(k, "assigned %s: checkpoint %" PRId64 " (epoch %" PRId64
	      "), starting at %" PRId64, p->name, p->committed,
	      ckpt_recovered_epoch(p->s), *start);
	if (p->gap_pending) {
		/* The new start and its gap record, as one epoch, before any
		 * record of the partition is consumed. */
		rc = part_commit(k, p);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void part_revoke(ckpt_kafka_t *k, ckpt_kafka_part_t *p)
{
	int rc;

	if (!k->err)
		part_commit(k, p);
	else
		ckpt_abort(p->s);
	if (p->last_epoch > 0) {
		rc = ckpt_wait_durable(p->s, p->last_epoch, k->conf.revoke_wait_ms);
		if (rc < 0)
			/* Not lost: committed epochs stay in the shared-memory
			 * ring and the next owner on this host replays them. */
			knote(k, "%s: epoch %" PRId64 " not durable within %d ms "
			      "(%s); it stays in shared memory",
			      p->name, p->last_epoch, k->conf.revoke_wait_ms,
			      ckpt_strerror(rc));
	}
	commit_back(k, p);
	if (k->conf.cbs.on_revoke)
		k->conf.cbs.on_revoke(k->conf.arg, p);
	rc = ckpt_close(p->s);
	if (rc < 0)
		knote(k, "%s: close: %s", p->name, ckpt_strerror(rc));
	k->parts[p->partition] = NULL;
	k->st.assigned--;
	k->st.revokes++;
	knote(k, "revoked %s at offset %" PRId64, p->name, p->committed);
	part_free(p);
}

/* Assign @parts (those of our topic); the accepted ones with their start
 * offsets go to *acc. */
static int assign_list(ckpt_kafka_t *k,
		       const rd_kafka_topic_partition_list_t *parts,
		       rd_kafka_topic_partition_list_t *acc)
{
	int i, rc, first = 0;
	for (i = 0; i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &parts->elems[i];
		int64_t start = RD_KAFKA_OFFSET_STORED;
		if (strcmp(tp->topic, k->topic) != 0)
			continue;
		rc = part_assign(k, tp->partition, &start);
		if (rc < 0) {
			if (!first)
				first = rc;
			continue;
		}
		rd_kafka_topic_partition_list_add(acc, tp->topic, tp->partition)
			->offset = start;
	}
	return first;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	ckpt_kafka_t *k = opaque;
	int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
	rd_kafka_error_t *e = NULL;
	rd_kafka_resp_err_t aerr = 0;
	int i;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		rd_kafka_topic_partition_list_t *acc =
			rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
		if (!acc) {
			kfail(k, -ENOMEM, "out of memory");
			return;
		}
		if (!k->closing)
			assign_list(k, parts, acc);
		if (coop)
			e = rd_kafka_incremental_assign(rk, acc);
		else
			aerr = rd_kafka_assign(rk, acc);
		rd_kafka_topic_partition_list_destroy(acc);
	} else {
		if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			knote(k, "rebalance error: %s", rd_kafka_err2str(err));
		for (i = 0; i < parts->cnt; i++) {
			ckpt_kafka_part_t *p;
			if (strcmp(parts->elems[i].topic, k->topic) != 0)
				continue;
			p = part_find(k, parts->elems[i].partition);
			if (p)
				part_revoke(k, p);
		}
		if (coop)
			e = rd_kafka_incremental_unassign(rk, parts);
		else
			aerr = rd_kafka_assign(rk, NULL);
	}
	if (e) {
		knote(k, "(un)assign: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	} else if (aerr) {
		knote(k, "(un)assign: %s", rd_kafka_err2str(aerr));
	}
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
		   const char *buf)
{
	const ckpt_kafka_t *k = rd_kafka_opaque(rk);
	if (k && k->conf.verbose)
		fprintf(stderr, "rdkafka %d %s: %s\n", level, fac, buf);
}

/*
 * Restart fetching @partition at @offset.  A seek is refused once
 * librdkafka stopped the partition on an offset error (auto.offset.reset
 * =error leaves it in no fetch state), so the partition is re-assigned:
 * incrementally where the protocol allows, else the whole assignment is
 * assigned again with every other partition at its own next offset.
 */
static int seek_to(ckpt_kafka_t *k, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *l = NULL, *cur = NULL;
	rd_kafka_error_t *e = NULL;
	rd_kafka_resp_err_t err;
	int i, rc = 0;

	if (k->conf.mode == CKPT_KAFKA_GROUP &&
	    !strcmp(rd_kafka_rebalance_protocol(k->rk), "COOPERATIVE")) {
		l = rd_kafka_topic_partition_list_new(1);
		if (!l)
			return kfail(k, -ENOMEM, "out of memory");
		rd_kafka_topic_partition_list_add(l, k->topic, partition)
			->offset = offset;
		e = rd_kafka_incremental_unassign(k->rk, l);
		if (!e)
			e = rd_kafka_incremental_assign(k->rk, l);
		if (e) {
			rc = kfail(k, -EIO, "re-assign %s [%" PRId32 "] at %" PRId64
				   ": %s", k->topic, partition, offset,
				   rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
		}
		rd_kafka_topic_partition_list_destroy(l);
		return rc;
	}
	err = rd_kafka_assignment(k->rk, &cur);
	if (err)
		return kfail(k, -EIO, "assignment: %s", rd_kafka_err2str(err));
	for (i = 0; i < cur->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &cur->elems[i];
		ckpt_kafka_part_t *p = strcmp(tp->topic, k->topic) ?
					       NULL :
					       part_find(k, tp->partition);
		if (p && tp->partition == partition)
			tp->offset = offset;
		else if (p && p->next >= 0)
			tp->offset = p->next;
		else
			tp->offset = RD_KAFKA_OFFSET_STORED;
	}
	err = rd_kafka_assign(k->rk, cur);
	if (err)
		rc = kfail(k, -EIO, "re-assign %s [%" PRId32 "] at %" PRId64 ": %s",
			   k->topic, partition, offset, rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(cur);
	return rc;
}

/* The broker says our fetch position is out of range (or nothing is
 * committed and there is no checkpoint). */
static int on_offset_reset(ckpt_kafka_t *k, const rd_kafka_message_t *m)
{
	ckpt_kafka_part_t *p = part_find(k, m->partition);
	int64_t lo, hi, start = RD_KAFKA_OFFSET_INVALID;
	rd_kafka_resp_err_t err;
	int rc;

	if (!p)
		return 0;
	if (p->committed < 0 && p->next < 0) {
		/* Nothing checkpointed, nothing consumed: Kafka's own
		 * semantics apply (conf.offset_reset). */
		start = !strcmp(k->offset_reset, "latest") ? RD_KAFKA_OFFSET_END :
							     RD_KAFKA_OFFSET_BEGINNING;
		fprintf(stderr,
			"shmckpt-kafka: %s: no checkpoint, and the group's "
			"committed offset is out of range (or unknown); "
			"starting at the %s offset (offset_reset)\n",
			p->name, k->offset_reset);
		return seek_to(k, p->partition, start);
	}
	rc = part_commit(k, p); /* what was handled before the gap stays */
	if (rc < 0)
		return rc;
	err = rd_kafka_query_watermark_offsets(k->rk, k->topic, p->partition,
					       &lo, &hi, WM_TIMEOUT_MS);
	if (err) {
		k->st.kafka_errors++;
		knote(k, "%s: out of range, watermarks unavailable (%s); "
		      "retrying at %" PRId64, p->name, rd_kafka_err2str(err),
		      p->committed);
		return seek_to(k, p->partition, p->committed);
	}
	if (p->committed >= lo && p->committed <= hi)
		return seek_to(k, p->partition, p->committed); /* stale answer */
	rc = gap_apply(k, p, p->committed, lo, hi, "while consuming", &start);
	if (rc < 0)
		return rc;
	rc = part_commit(k, p);
	if (rc < 0)
		return rc;
	return seek_to(k, p->partition, start);
}

static int on_error(ckpt_kafka_t *k, const rd_kafka_message_t *m)
{
	char fatal[256];
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return 0;
	if (m->rkt && (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
		       m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) &&
	    !strcmp(rd_kafka_topic_name(m->rkt), k->topic))
		return on_offset_reset(k, m);
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(k->rk, fatal, sizeof(fatal));
		return kfail(k, -EIO, "kafka: fatal error: %s", fatal);
	}
	if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
		knote(k, "topic %s: %s", k->topic, rd_kafka_message_errstr(m));
	/* Broker down, transport, coordinator moves: librdkafka retries;
	 * what is checkpointed stays, consumption resumes where it was. */
	k->st.kafka_errors++;
	knote(k, "kafka: %s (retrying)", rd_kafka_message_errstr(m));
	return 0;
}

/* ---- open / poll / close ---- */

static int set_prop(ckpt_kafka_t *k, rd_kafka_conf_t *rc, const char *name,
		    const char *val)
{
	char es[256];
	if (rd_kafka_conf_set(rc, name, val, es, sizeof(es)) != RD_KAFKA_CONF_OK)
		return kfail(k, -EIO, "librdkafka property %s=%s: %s", name, val,
			     es);
	return 0;
}

/* Properties the driver's guarantees rest on: a user value would let
 * librdkafka commit or reset offsets behind the checkpoint's back. */
static int reserved_prop(const char *name)
{
	static const char *const own[] = {
		"bootstrap.servers", "group.id", "enable.auto.commit",
		"enable.auto.offset.store", "auto.offset.reset",
	};
	size_t i;
	for (i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (!strcmp(name, own[i]))
			return 1;
	return 0;
}

static int assign_all(ckpt_kafka_t *k)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_topic_partition_list_t *l = NULL, *acc = NULL;
	uint64_t deadline = ckpt__kafka_now_ns() + 30000000000ull;
	rd_kafka_resp_err_t err;
	int i, rc;

	rkt = rd_kafka_topic_new(k->rk, k->topic, NULL);
	if (!rkt)
		return kfail(k, -EIO, "topic %s: %s", k->topic,
			     rd_kafka_err2str(rd_kafka_last_error()));
	for (;;) {
		err = rd_kafka_metadata(k->rk, 0, rkt, &md, 5000);
		if (!err && md->topic_cnt == 1 && !md->topics[0].err &&
		    md->topics[0].partition_cnt > 0)
			break;
		if (!err) {
			err = md->topic_cnt ? md->topics[0].err :
					      RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
			rd_kafka_metadata_destroy(md);
			md = NULL;
		}
		if (ckpt__kafka_now_ns() >= deadline) {
			rd_kafka_topic_destroy(rkt);
			return kfail(k, -ETIMEDOUT,
				     "metadata of topic %s at %s: %s (gave up "
				     "after 30 s)",
				     k->topic, k->bootstrap, rd_kafka_err2str(err));
		}
		knote(k, "metadata of %s: %s; retrying", k->topic,
		      rd_kafka_err2str(err));
		usleep(200000);
	}
	l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	acc = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	if (!l || !acc) {
		rc = kfail(k, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < md->topics[0].partition_cnt; i++)
		rd_kafka_topic_partition_list_add(l, k->topic,
						  md->topics[0].partitions[i].id);
	rc = assign_list(k, l, acc);
	if (rc == 0) {
		err = rd_kafka_assign(k->rk, acc);
		if (err)
			rc = kfail(k, -EIO, "assign: %s", rd_kafka_err2str(err));
	}
out:
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	if (acc)
		rd_kafka_topic_partition_list_destroy(acc);
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return rc;
}

static void handle_free(ckpt_kafka_t *k)
{
	free(k->bootstrap);
	free(k->group);
	free(k->topic);
	free(k->dir);
	free(k->offset_reset);
	free(k->parts);
	free(k);
}

int ckpt_kafka_open(const ckpt_kafka_conf_t *c, ckpt_kafka_t **out)
{
	ckpt_kafka_t *k;
	rd_kafka_conf_t *rc;
	char es[512], num[32];
	int r;
	size_t i;

	if (!c || !out)
		return ckpt__kafka_fail(-EINVAL, "NULL conf or out");
	if (!c->bootstrap || !*c->bootstrap)
		return ckpt__kafka_fail(-EINVAL, "conf.bootstrap is required");
	if (!c->group || !*c->group)
		return ckpt__kafka_fail(-EINVAL, "conf.group is required");
	if (!c->topic || !*c->topic)
		return ckpt__kafka_fail(-EINVAL, "conf.topic is required");
	if (!c->dir || !*c->dir)
		return ckpt__kafka_fail(-EINVAL, "conf.dir is required");
	if (c->mode != CKPT_KAFKA_GROUP && c->mode != CKPT_KAFKA_ASSIGN)
		return ckpt__kafka_fail(-EINVAL, "conf.mode %d unknown", c->mode);
	if (c->on_gap < CKPT_KAFKA_GAP_FAIL || c->on_gap > CKPT_KAFKA_GAP_LATEST)
		return ckpt__kafka_fail(-EINVAL, "conf.on_gap %d unknown",
					c->on_gap);
	if (c->offset_reset && strcmp(c->offset_reset, "earliest") &&
	    strcmp(c->offset_reset, "latest"))
		return ckpt__kafka_fail(-EINVAL,
					"conf.offset_reset must be earliest or "
					"latest, not %s", c->offset_reset);
	if (c->batch_ms < 1 || c->batch_max < 1 || c->revoke_wait_ms < 0 ||
	    c->open_busy_ms < 0 || c->session_timeout_ms < 1)
		return ckpt__kafka_fail(-EINVAL, "conf: batch_ms, batch_max and "
					"session_timeout_ms must be >= 1, waits >= 0");

	k = calloc(1, sizeof(*k));
	if (!k)
		return ckpt__kafka_fail(-ENOMEM, "out of memory");
	k->conf = *c;
	k->bootstrap = strdup(c->bootstrap);
	k->group = strdup(c->group);
	k->topic = strdup(c->topic);
	k->dir = strdup(c->dir);
	k->offset_reset = strdup(c->offset_reset ? c->offset_reset : "earliest");
	if (!k->bootstrap || !k->group || !k->topic || !k->dir ||
	    !k->offset_reset) {
		handle_free(k);
		return ckpt__kafka_fail(-ENOMEM, "out of memory");
	}
	k->conf.bootstrap = k->bootstrap;
	k->conf.group = k->group;
	k->conf.topic = k->topic;
	k->conf.dir = k->dir;
	k->conf.offset_reset = k->offset_reset;
	k->conf.props = NULL;
	k->conf.ckpt_opts = NULL;
	if (c->ckpt_opts) {
		k->opts = *c->ckpt_opts;
	} else {
		ckpt_opts_init(&k->opts);
		k->opts.full_policy = CKPT_FULL_WAIT;
		k->opts.full_wait_ms = 5000;
	}

	rc = rd_kafka_conf_new();
	r = set_prop(k, rc, "bootstrap.servers", k->bootstrap);
	if (!r)
		r = set_prop(k, rc, "group.id", k->group);
	/* Offsets live in the checkpoint; the group sees only durable ones,
	 * committed by us.  Never let librdkafka reset an offset by itself:
	 * every reset comes to on_offset_reset. */
	if (!r)
		r = set_prop(k, rc, "enable.auto.commit", "false");
	if (!r)
		r = set_prop(k, rc, "enable.auto.offset.store", "false");
	if (!r)
		r = set_prop(k, rc, "auto.offset.reset", "error");
	if (!r)
		r = set_prop(k, rc, "partition.assignment.strategy",
			     "range,roundrobin");
	if (!r) {
		snprintf(num, sizeof(num), "%d", c->session_timeout_ms);
		r = set_prop(k, rc, "session.timeout.ms", num);
	}
	if (!r) {
		int hb = c->session_timeout_ms / 3;
		snprintf(num, sizeof(num), "%d", hb > 100 ? hb : 100);
		r = set_prop(k, rc, "heartbeat.interval.ms", num);
	}
	if (!r)
		r = set_prop(k, rc, "log.connection.close", "false");
	for (i = 0; !r && c->props && c->props[i]; i++) {
		char name[256];
		const char *eq = strchr(c->props[i], '=');
		if (!eq || eq == c->props[i] ||
		    (size_t)(eq - c->props[i]) >= sizeof(name)) {
			r = kfail(k, -EINVAL, "property '%s' is not name=value",
				  c->props[i]);
			break;
		}
		memcpy(name, c->props[i], (size_t)(eq - c->props[i]));
		name[eq - c->props[i]] = '\0';
		if (reserved_prop(name)) {
			r = kfail(k, -EINVAL,
				  "property %s is the driver's own (offsets "
				  "live in the checkpoint; every reset passes "
				  "through the gap policy)", name);
			break;
		}
		r = set_prop(k, rc, name, eq + 1);
	}
	if (r) {
		/* the message is kfail's, still in place */
		rd_kafka_conf_destroy(rc);
		handle_free(k);
		return r;
	}
	rd_kafka_conf_set_opaque(rc, k);
	rd_kafka_conf_set_log_cb(rc, log_cb);
	if (c->commit_kafka)
		rd_kafka_conf_set_offset_commit_cb(rc, offset_commit_cb);
	if (c->mode == CKPT_KAFKA_GROUP)
		rd_kafka_conf_set_rebalance_cb(rc, rebalance_cb);
	k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rc, es, sizeof(es));
	if (!k->rk) {
		rd_kafka_conf_destroy(rc);
		handle_free(k);
		return ckpt__kafka_fail(-EIO, "creating the consumer: %s", es);
	}
	rd_kafka_poll_set_consumer(k->rk);

	if (c->mode == CKPT_KAFKA_GROUP) {
		rd_kafka_topic_partition_list_t *l =
			rd_kafka_topic_partition_list_new(1);
		rd_kafka_resp_err_t err;
		rd_kafka_topic_partition_list_add(l, k->topic,
						  RD_KAFKA_PARTITION_UA);
		err = rd_kafka_subscribe(k->rk, l);
		rd_kafka_topic_partition_list_destroy(l);
		if (err)
			r = kfail(k, -EIO, "subscribe to %s: %s", k->topic,
				  rd_kafka_err2str(err));
	} else {
		r = assign_all(k);
	}
	if (r < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", ckpt_kafka_last_error());
		k->closing = 1;
		ckpt_kafka_close(k);
		return ckpt__kafka_fail(r, "%s", msg);
	}
	*out = k;
	return 0;
}

int ckpt_kafka_poll(ckpt_kafka_t *k)
{
	uint64_t deadline;
	int n = 0, rc;

	if (k->err)
		return ckpt__kafka_fail(k->err, "%s", k->errmsg);
	deadline = ckpt__kafka_now_ns() + (uint64_t)k->conf.batch_ms * 1000000ull;
	while (n < k->conf.batch_max && !k->err) {
		uint64_t now = ckpt__kafka_now_ns();
		rd_kafka_message_t *m;
		ckpt_kafka_part_t *p;
		int wait_ms;

		if (now >= deadline)
			break;
		wait_ms = (int)((deadline - now + 999999) / 1000000);
		m = rd_kafka_consumer_poll(k->rk, wait_ms);
		if (!m)
			continue;
		if (m->err) {
			on_error(k, m);
			rd_kafka_message_destroy(m);
			continue;
		}
		p = strcmp(rd_kafka_topic_name(m->rkt), k->topic) ?
			    NULL :
			    part_find(k, m->partition);
		if (!p || (p->next >= 0 && m->offset < p->next)) {
			/* Not ours any more, or fetched before a seek back:
			 * its effect is (or will be) accounted once. */
			k->st.skipped_stale++;
			rd_kafka_message_destroy(m);
			continue;
		}
		if (k->conf.cbs.on_message) {
			rc = k->conf.cbs.on_message(k->conf.arg, p, m);
			if (rc < 0) {
				kfail(k, rc, "%s: on_message at offset %" PRId64
				      " failed: %s", p->name, m->offset,
				      ckpt_strerror(rc));
				rd_kafka_message_destroy(m);
				break;
			}
		}
		p->next = m->offset + 1;
		p->batch_msgs++;
		k->st.messages++;
		n++;
		rd_kafka_message_destroy(m);
	}
	if (k->err) {
		int32_t i;
		for (i = 0; i < k->nparts; i++)
			if (k->parts[i])
				ckpt_abort(k->parts[i]->s);
		return ckpt__kafka_fail(k->err, "%s", k->errmsg);
	}
	rc = commit_all(k);
	if (rc < 0)
		return rc;
	commit_back(k, NULL);
	return n;
}

int ckpt_kafka_close(ckpt_kafka_t *k)
{
	int rc = 0, first;
	int32_t i;
	rd_kafka_resp_err_t err;

	if (!k)
		return 0;
	first = k->err;
	if (!k->err) {
		rc = commit_all(k);
		if (rc < 0 && !first)
			first = rc;
	}
	k->closing = 1;
	if (k->rk && k->conf.mode == CKPT_KAFKA_GROUP) {
		/* Leaves the group: the revoke callback flushes and closes. */
		err = rd_kafka_consumer_close(k->rk);
		if (err)
			knote(k, "leaving the group: %s", rd_kafka_err2str(err));
	}
	for (i = 0; i < k->nparts; i++)
		if (k->parts[i])
			part_revoke(k, k->parts[i]);
	if (k->rk) {
		if (k->conf.mode != CKPT_KAFKA_GROUP) {
			err = rd_kafka_consumer_close(k->rk);
			if (err)
				knote(k, "closing the consumer: %s",
				      rd_kafka_err2str(err));
		}
		rd_kafka_destroy(k->rk);
	}
	handle_free(k);
	return first;
}

int ckpt_kafka_error(const ckpt_kafka_t *k)
{
	return k->err;
}

rd_kafka_t *ckpt_kafka_rk(ckpt_kafka_t *k)
{
	return k->rk;
}

void ckpt_kafka_stats(const ckpt_kafka_t *k, ckpt_kafka_stats_t *st)
{
	*st = k->st;
}

/* ---- partition view ---- */

const char *ckpt_kafka_part_topic(const ckpt_kafka_part_t *p)
{
	return p->k->topic;
}

int32_t ckpt_kafka_part_partition(const ckpt_kafka_part_t *p)
{
	return p->partition;
}

const char *ckpt_kafka_part_stream_name(const ckpt_kafka_part_t *p)
{
	return p->name;
}

ckpt_stream_t *ckpt_kafka_part_stream(ckpt_kafka_part_t *p)
{
	return p->s;
}

int64_t ckpt_kafka_part_committed(const ckpt_kafka_part_t *p)
{
	return p->committed;
}

void *ckpt_kafka_part_user(const ckpt_kafka_part_t *p)
{
	return p->user;
}

void ckpt_kafka_part_set_user(ckpt_kafka_part_t *p, void *user)
{
	p->user = user;
}

int ckpt_kafka_part_put(ckpt_kafka_part_t *p, const void *key, size_t klen,
			const void *val, size_t vlen)
{
	return ckpt_put(p->s, key, klen, val, vlen);
}

int ckpt_kafka_part_del(ckpt_kafka_part_t *p, const void *key, size_t klen)
{
	return ckpt_del(p->s, key, klen);
}

int ckpt_kafka_part_get(const ckpt_kafka_part_t *p, const void *key,
			size_t klen, const void **val, size_t *vlen)
{
	if (!p->in_assign)
		return -ESTALE;
	return ckpt_get(p->s, key, klen, val, vlen);
}

int ckpt_kafka_part_foreach_kv(const ckpt_kafka_part_t *p, ckpt_kv_fn fn,
			       void *arg)
{
	if (!p->in_assign)
		return -ESTALE;
	return ckpt_foreach_kv(p->s, fn, arg);
}

const char *ckpt_kafka_part_gaps(const ckpt_kafka_part_t *p)
{
	return p->gaps;
}
