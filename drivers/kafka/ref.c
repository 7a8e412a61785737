/*
 * ref.c - the reference consumer: count and sum per key, checkpointed
 * through the driver; its oracle; and the loader of its checkpoints.
 */
#include "ckpt_kafka_ref.h"
#include "kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- aggregate: open addressing, FNV-1a ---- */

struct agg_ent {
	uint64_t hash;
	int64_t count, sum;
	uint32_t klen;
	int dirty;
	unsigned char key[];
};

struct ckpt_kafka_agg {
	struct agg_ent **tab;
	size_t cap, n;
	struct agg_ent **dirty; /* entries changed since the last flush */
	size_t ndirty, dirty_cap;
};

static uint64_t hash_key(const void *key, size_t klen)
{
	const unsigned char *b = key;
	uint64_t h = 1469598103934665603ull;
	size_t i;
	for (i = 0; i < klen; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

ckpt_kafka_agg_t *ckpt_kafka_agg_new(void)
{
	ckpt_kafka_agg_t *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->cap = 64;
	a->tab = calloc(a->cap, sizeof(*a->tab));
	if (!a->tab) {
		free(a);
		return NULL;
	}
	return a;
}

void ckpt_kafka_agg_free(ckpt_kafka_agg_t *a)
{
	size_t i;
	if (!a)
		return;
	for (i = 0; i < a->cap; i++)
		free(a->tab[i]);
	free(a->tab);
	free(a->dirty);
	free(a);
}

static struct agg_ent **slot_of(struct agg_ent **tab, size_t cap, uint64_t h,
				const void *key, size_t klen)
{
	size_t i = (size_t)h & (cap - 1);
	for (;; i = (i + 1) & (cap - 1)) {
		struct agg_ent *e = tab[i];
		if (!e || (e->hash == h && e->klen == klen &&
			   !memcmp(e->key, key, klen)))
			return &tab[i];
	}
}

static int grow(ckpt_kafka_agg_t *a)
{
	size_t ncap = a->cap * 2, i;
	struct agg_ent **nt = calloc(ncap, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	for (i = 0; i < a->cap; i++)
		if (a->tab[i])
			*slot_of(nt, ncap, a->tab[i]->hash, a->tab[i]->key,
				 a->tab[i]->klen) = a->tab[i];
	free(a->tab);
	a->tab = nt;
	a->cap = ncap;
	return 0;
}

static struct agg_ent *agg_upsert(ckpt_kafka_agg_t *a, const void *key,
				  size_t klen)
{
	uint64_t h = hash_key(key, klen);
	struct agg_ent **s;
	if ((a->n + 1) * 2 > a->cap && grow(a) < 0)
		return NULL;
	s = slot_of(a->tab, a->cap, h, key, klen);
	if (!*s) {
		struct agg_ent *e = calloc(1, sizeof(*e) + klen);
		if (!e)
			return NULL;
		e->hash = h;
		e->klen = (uint32_t)klen;
		if (klen)
			memcpy(e->key, key, klen);
		*s = e;
		a->n++;
	}
	return *s;
}

int ckpt_kafka_agg_add(ckpt_kafka_agg_t *a, const void *key, size_t klen,
		       int64_t count, int64_t sum)
{
	struct agg_ent *e = agg_upsert(a, key, klen);
	if (!e)
		return -ENOMEM;
	e->count += count;
	e->sum += sum;
	return 0;
}

int ckpt_kafka_agg_get(const ckpt_kafka_agg_t *a, const void *key,
		       size_t klen, int64_t *count, int64_t *sum)
{
	struct agg_ent *e = *slot_of(a->tab, a->cap, hash_key(key, klen), key,
				     klen);
	if (!e)
		return -ENOENT;
	*count = e->count;
	*sum = e->sum;
	return 0;
}

size_t ckpt_kafka_agg_keys(const ckpt_kafka_agg_t *a)
{
	return a->n;
}

void ckpt_kafka_agg_totals(const ckpt_kafka_agg_t *a, int64_t *count,
			   int64_t *sum)
{
	size_t i;
	*count = 0;
	*sum = 0;
	for (i = 0; i < a->cap; i++)
		if (a->tab[i]) {
			*count += a->tab[i]->count;
			*sum += a->tab[i]->sum;
		}
}

static size_t diff_one_way(const ckpt_kafka_agg_t *a, const ckpt_kafka_agg_t *b,
			   int missing_only, const char *an, const char *bn,
			   char *why, size_t n, size_t *used)
{
	size_t i, bad = 0;
	for (i = 0; i < a->cap; i++) {
		const struct agg_ent *e = a->tab[i];
		int64_t c = 0, s = 0;
		int found;
		if (!e)
			continue;
		found = ckpt_kafka_agg_get(b, e->key, e->klen, &c, &s) == 0;
		if (found && (missing_only || (c == e->count && s == e->sum)))
			continue;
		bad++;
		if (why && *used + 80 < n)
			*used += (size_t)snprintf(
				why + *used, n - *used,
				"key '%.*s': %s count %" PRId64 " sum %" PRId64
				", %s %s; ",
				(int)(e->klen > 24 ? 24 : e->klen), e->key, an,
				e->count, e->sum, bn,
				found ? "differs" : "missing");
	}
	return bad;
}

size_t ckpt_kafka_agg_diff(const ckpt_kafka_agg_t *a,
			   const ckpt_kafka_agg_t *b, char *why, size_t n)
{
	size_t used = 0, bad;
	if (why && n)
		why[0] = '\0';
	bad = diff_one_way(a, b, 0, "got", "oracle", why, n, &used);
	bad += diff_one_way(b, a, 1, "oracle", "state", why, n, &used);
	return bad;
}

int ckpt_kafka_parse_int(const void *v, size_t len, int64_t *out)
{
	const unsigned char *s = v;
	size_t i = 0;
	int neg = 0;
	uint64_t acc = 0;

	if (!v || !len)
		return -EINVAL;
	if (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len)
		return -EINVAL;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (acc > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		acc = acc * 10 + (uint64_t)(s[i] - '0');
	}
	if (acc > (uint64_t)INT64_MAX)
		return -EINVAL;
	*out = neg ? -(int64_t)acc : (int64_t)acc;
	return 0;
}

/* State value "<count> <sum>". */
static int decode_state(const void *v, size_t len, int64_t *count,
			int64_t *sum)
{
	char buf[64];
	long long c, s;
	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (sscanf(buf, "%lld %lld", &c, &s) != 2)
		return -EINVAL;
	*count = c;
	*sum = s;
	return 0;
}

/* ---- the consumer's callbacks ---- */

struct ref_ctx {
	const ckpt_kafka_ref_opts_t *o;
	uint64_t bad_values;
};

static int load_kv(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	ckpt_kafka_agg_t *a = arg;
	int64_t c, s;
	if (decode_state(val, vlen, &c, &s) < 0)
		return ckpt__kafka_fail(CKPT_ECORRUPT,
					"state value of key '%.*s' is not "
					"'<count> <sum>'",
					(int)(klen > 40 ? 40 : klen),
					(const char *)key);
	return ckpt_kafka_agg_add(a, key, klen, c, s);
}

/* "offset 123" or "offset none" */
static const char *offset_text(int64_t off, char *buf, size_t n)
{
	if (off < 0)
		snprintf(buf, n, "none");
	else
		snprintf(buf, n, "%" PRId64, off);
	return buf;
}

static int ref_assign(void *arg, ckpt_kafka_part_t *p)
{
	struct ref_ctx *ctx = arg;
	ckpt_kafka_agg_t *a = ckpt_kafka_agg_new();
	char off[32];
	int rc;
	if (!a)
		return -ENOMEM;
	rc = ckpt_kafka_part_foreach_kv(p, load_kv, a);
	if (rc < 0) {
		ckpt_kafka_agg_free(a);
		return rc;
	}
	ckpt_kafka_part_set_user(p, a);
	/* The seeds' "Read offset ranges" line: what a restart resumed. */
	if (!ctx->o->quiet)
		printf("assigned %s: checkpoint offset %s, epoch %" PRId64
		       ", %zu keys\n",
		       ckpt_kafka_part_stream_name(p),
		       offset_text(ckpt_kafka_part_committed(p), off,
				   sizeof(off)),
		       ckpt_recovered_epoch(ckpt_kafka_part_stream(p)),
		       ckpt_kafka_agg_keys(a));
	return 0;
}

static int ref_message(void *arg, ckpt_kafka_part_t *p,
		       const rd_kafka_message_t *m)
{
	struct ref_ctx *ctx = arg;
	ckpt_kafka_agg_t *a = ckpt_kafka_part_user(p);
	struct agg_ent *e;
	int64_t v = 0;

	if (ckpt_kafka_parse_int(m->payload, m->len, &v) < 0) {
		v = 0;
		ctx->bad_values++;
	}
	e = agg_upsert(a, m->key ? m->key : "", m->key ? m->key_len : 0);
	if (!e)
		return -ENOMEM;
	e->count++;
	e->sum += v;
	if (!e->dirty) {
		if (a->ndirty == a->dirty_cap) {
			size_t nc = a->dirty_cap ? 2 * a->dirty_cap : 64;
			struct agg_ent **nd = realloc(a->dirty, nc * sizeof(*nd));
			if (!nd)
				return -ENOMEM;
			a->dirty = nd;
			a->dirty_cap = nc;
		}
		a->dirty[a->ndirty++] = e;
		e->dirty = 1;
	}
	return 0;
}

/* One put per key changed in the batch, whatever its number of records. */
static int ref_batch_end(void *arg, ckpt_kafka_part_t *p)
{
	ckpt_kafka_agg_t *a = ckpt_kafka_part_user(p);
	size_t i;
	int rc = 0;
	(void)arg;
	for (i = 0; i < a->ndirty; i++) {
		struct agg_ent *e = a->dirty[i];
		char val[48];
		int vl = snprintf(val, sizeof(val), "%" PRId64 " %" PRId64,
				  e->count, e->sum);
		e->dirty = 0;
		if (!rc)
			rc = ckpt_kafka_part_put(p, e->key, e->klen, val,
						 (size_t)vl);
	}
	a->ndirty = 0;
	return rc;
}

static int ref_revoke(void *arg, ckpt_kafka_part_t *p)
{
	struct ref_ctx *ctx = arg;
	char off[32];
	if (!ctx->o->quiet)
		printf("revoked %s: checkpoint offset %s\n",
		       ckpt_kafka_part_stream_name(p),
		       offset_text(ckpt_kafka_part_committed(p), off,
				   sizeof(off)));
	ckpt_kafka_agg_free(ckpt_kafka_part_user(p));
	ckpt_kafka_part_set_user(p, NULL);
	return 0;
}

int ckpt_kafka_ref_run(const ckpt_kafka_ref_opts_t *o,
		       ckpt_kafka_ref_result_t *res)
{
	struct ref_ctx ctx = { .o = o };
	ckpt_kafka_conf_t c;
	ckpt_kafka_stats_t st;
	ckpt_kafka_t *k;
	uint64_t total = 0, idle_since;
	int rc, n;

	ckpt_kafka_conf_init(&c);
	c.bootstrap = o->bootstrap;
	c.group = o->group;
	c.topic = o->topic;
	c.dir = o->dir;
	c.mode = o->mode;
	c.on_gap = o->on_gap;
	if (o->offset_reset)
		c.offset_reset = o->offset_reset;
	if (o->batch_ms > 0)
		c.batch_ms = o->batch_ms;
	c.commit_kafka = o->commit_kafka;
	c.verbose = o->verbose;
	c.ckpt_opts = o->ckpt_opts;
	c.props = o->props;
	c.cbs.on_assign = ref_assign;
	c.cbs.on_message = ref_message;
	c.cbs.on_batch_end = ref_batch_end;
	c.cbs.on_revoke = ref_revoke;
	c.arg = &ctx;
	if (res)
		memset(res, 0, sizeof(*res));

	rc = ckpt_kafka_open(&c, &k);
	if (rc < 0)
		return rc;
	idle_since = ckpt__kafka_now_ns();
	for (;;) {
		if (o->stop && *o->stop)
			break;
		if (o->max_messages && total >= o->max_messages)
			break;
		n = ckpt_kafka_poll(k);
		if (n < 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", ckpt_kafka_last_error());
			if (res)
				ckpt_kafka_stats(k, &res->st);
			ckpt_kafka_close(k);
			return ckpt__kafka_fail(n, "%s", msg);
		}
		total += (uint64_t)n;
		if (n > 0)
			idle_since = ckpt__kafka_now_ns();
		else if (o->exit_idle_ms > 0 &&
			 ckpt__kafka_now_ns() - idle_since >=
				 (uint64_t)o->exit_idle_ms * 1000000ull)
			break;
	}
	ckpt_kafka_stats(k, &st);
	if (res)
		res->st = st;
	rc = ckpt_kafka_close(k);
	if (!o->quiet)
		printf("consumed %" PRIu64 " records this run (%" PRIu64
		       " epochs, %" PRIu64 " gaps, %" PRIu64
		       " records lost to gaps, %" PRIu64
		       " non-integer values, %" PRIu64
		       " Kafka errors retried)\n",
		       total, st.epochs, st.gaps, st.records_lost,
		       ctx.bad_values, st.kafka_errors);
	return rc;
}

/* ---- oracle and loader ---- */

int ckpt_kafka_ref_oracle(const char *bootstrap, const char *topic,
			  ckpt_kafka_agg_t *a, int64_t *records,
			  int64_t *log_start, int timeout_ms)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *l;
	char es[512];
	int64_t *hi = NULL, *pos = NULL;
	int np, i, left, rc = 0;
	uint64_t deadline = ckpt__kafka_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	*records = 0;
	if (log_start)
		*log_start = 0;
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, es,
			      sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "false", es,
			      sizeof(es)) != RD_KAFKA_CONF_OK ||
	    /* assign() needs a group; this one never commits or joins. */
	    rd_kafka_conf_set(conf, "group.id", "shmckpt-oracle", es,
			      sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", es,
			      sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "0", es, sizeof(es)) !=
		    RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(conf);
		return ckpt__kafka_fail(-EIO, "oracle: %s", es);
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return ckpt__kafka_fail(-EIO, "oracle: %s", es);
	}
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	while (rd_kafka_metadata(rk, 0, rkt, &md, 5000) ||
	       md->topic_cnt != 1 || md->topics[0].err ||
	       md->topics[0].partition_cnt < 1) {
		if (md)
			rd_kafka_metadata_destroy(md);
		md = NULL;
		if (ckpt__kafka_now_ns() > deadline) {
			rd_kafka_topic_destroy(rkt);
			rd_kafka_destroy(rk);
			return ckpt__kafka_fail(-ETIMEDOUT,
						"oracle: no metadata for %s",
						topic);
		}
		usleep(100000);
	}
	np = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	hi = calloc((size_t)np, sizeof(*hi));
	pos = calloc((size_t)np, sizeof(*pos));
	l = rd_kafka_topic_partition_list_new(np);
	if (!hi || !pos || !l) {
		rc = ckpt__kafka_fail(-ENOMEM, "oracle: out of memory");
		goto out;
	}
	left = 0;
	for (i = 0; i < np; i++) {
		int64_t lo;
		rd_kafka_resp_err_t err;
		while ((err = rd_kafka_query_watermark_offsets(rk, topic, i, &lo,
							       &hi[i], 5000))) {
			if (ckpt__kafka_now_ns() > deadline) {
				rc = ckpt__kafka_fail(-ETIMEDOUT,
						      "oracle: watermarks of %s "
						      "[%d]: %s",
						      topic, i,
						      rd_kafka_err2str(err));
				goto out;
			}
			usleep(100000);
		}
		pos[i] = lo;
		if (log_start)
			*log_start += lo;
		if (lo < hi[i]) {
			rd_kafka_topic_partition_list_add(l, topic, i)->offset = lo;
			left++;
		}
	}
	if (left) {
		rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
		if (err) {
			rc = ckpt__kafka_fail(-EIO, "oracle: assign: %s",
					      rd_kafka_err2str(err));
			goto out;
		}
	}
	while (left > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (ckpt__kafka_now_ns() > deadline) {
			rc = ckpt__kafka_fail(-ETIMEDOUT,
					      "oracle: %d partitions not read to "
					      "their end in time", left);
			if (m)
				rd_kafka_message_destroy(m);
			goto out;
		}
		if (!m)
			continue;
		if (!m->err && m->partition >= 0 && m->partition < np &&
		    m->offset >= pos[m->partition] &&
		    m->offset < hi[m->partition]) {
			int64_t v = 0;
			if (ckpt_kafka_parse_int(m->payload, m->len, &v) < 0)
				v = 0;
			if (ckpt_kafka_agg_add(a, m->key ? m->key : "",
					       m->key ? m->key_len : 0, 1, v) < 0) {
				rd_kafka_message_destroy(m);
				rc = ckpt__kafka_fail(-ENOMEM, "oracle: out of memory");
				goto out;
			}
			(*records)++;
			pos[m->partition] = m->offset + 1;
			if (pos[m->partition] >= hi[m->partition])
				left--;
		}
		rd_kafka_message_destroy(m);
	}
out:
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	free(hi);
	free(pos);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}

int ckpt_kafka_ref_load(const char *dir, const char *group, const char *topic,
			int nparts, ckpt_kafka_agg_t *a, int64_t *next_sum)
{
	int i, rc;
	if (next_sum)
		*next_sum = 0;
	for (i = 0; i < nparts; i++) {
		char name[CKPT_NAME_MAX + 1], path[4096];
		ckpt_stream_t *s;
		int64_t next;
		ckpt_opts_t o;

		rc = ckpt_kafka_stream_name(name, sizeof(name), group, topic, i);
		if (rc < 0)
			return rc;
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (access(path, F_OK) != 0)
			continue;
		ckpt_opts_init(&o);
		rc = ckpt_open(dir, name, &o, &s);
		if (rc < 0)
			return ckpt__kafka_fail(rc, "load %s: %s (%s)", name,
						ckpt_strerror(rc),
						ckpt_last_error());
		rc = ckpt_foreach_kv(s, load_kv, a);
		if (rc == 0 && next_sum &&
		    ckpt_get_offset(s, topic, i, &next) == 0)
			*next_sum += next;
		ckpt_close(s);
		if (rc < 0)
			return rc;
	}
	return 0;
}
