/*
 * gap.c - the gap record kept in a partition stream's metadata, stream
 * names, and the driver's error reporting.
 *
 * The record is JSON, one gap object per line so that it reads well in a
 * dump and parses without a JSON library:
 *
 *   {"shmckpt_kafka_gaps":1,"lost_total":4880,"gaps":[
 *   {"topic":"T","partition":0,"checkpointed":120,"earliest":5000,
 *    "resumed":5000,"lost":4880,"policy":"earliest","when":1700000000}
 *   ]}
 *
 * (each gap object on one line).  Only the newest CKPT_KAFKA_GAPS_KEPT gaps
 * are kept, so the record stays small; lost_total counts every gap ever.
 */
#include "kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char kafka_err[512];

int ckpt__kafka_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(kafka_err, sizeof(kafka_err), fmt, ap);
	va_end(ap);
	return code;
}

const char *ckpt_kafka_last_error(void)
{
	return kafka_err;
}

uint64_t ckpt__kafka_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *ckpt__kafka_policy_name(int policy)
{
	switch (policy) {
	case CKPT_KAFKA_GAP_FAIL: return "fail";
	case CKPT_KAFKA_GAP_EARLIEST: return "earliest";
	case CKPT_KAFKA_GAP_LATEST: return "latest";
	default: return "?";
	}
}

int ckpt__kafka_policy_parse(const char *name)
{
	if (!name)
		return -1;
	if (!strcmp(name, "fail"))
		return CKPT_KAFKA_GAP_FAIL;
	if (!strcmp(name, "earliest"))
		return CKPT_KAFKA_GAP_EARLIEST;
	if (!strcmp(name, "latest"))
		return CKPT_KAFKA_GAP_LATEST;
	return -1;
}

static int name_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int ckpt_kafka_stream_name(char *buf, size_t n, const char *group,
			   const char *topic, int32_t partition)
{
	char raw[1024];
	int len, i, clean = 1;
	uint32_t h = 2166136261u; /* FNV-1a of the exact original */

	if (!buf || n < CKPT_NAME_MAX + 1 || !group || !topic || partition < 0)
		return ckpt__kafka_fail(-EINVAL, "stream name: bad arguments");
	len = snprintf(raw, sizeof(raw), "%s.%s.%" PRId32, group, topic,
		       partition);
	if (len < 0)
		return ckpt__kafka_fail(-EINVAL, "stream name: encoding error");
	if ((size_t)len >= sizeof(raw))
		clean = 0;
	for (i = 0; raw[i]; i++) {
		h = (h ^ (unsigned char)raw[i]) * 16777619u;
		if (!name_ok((unsigned char)raw[i])) {
			raw[i] = '_';
			clean = 0;
		}
	}
	if (clean && len <= CKPT_NAME_MAX) {
		memcpy(buf, raw, (size_t)len + 1);
		return len;
	}
	/* Keep the partition visible at the end: "<prefix>-h<hash>". */
	{
		size_t keep = CKPT_NAME_MAX - 10;
		size_t rl = strlen(raw);
		if (rl < keep)
			keep = rl;
		memcpy(buf, raw, keep);
		len = (int)keep + snprintf(buf + keep, n - keep, "-h%08x", h);
	}
	return len;
}

/* One gap per line; returns 1 if @line held one. */
static int parse_line(const char *line, ckpt_kafka_gap_t *g)
{
	char topic[256], pol[16];
	long long p, c, e, r, l, w;
	if (sscanf(line,
		   "{\"topic\":\"%255[^\"]\",\"partition\":%lld,"
		   "\"checkpointed\":%lld,\"earliest\":%lld,\"resumed\":%lld,"
		   "\"lost\":%lld,\"policy\":\"%15[^\"]\",\"when\":%lld}",
		   topic, &p, &c, &e, &r, &l, pol, &w) != 8)
		return 0;
	g->partition = (int32_t)p;
	g->checkpointed = c;
	g->earliest = e;
	g->resumed = r;
	g->lost = l;
	g->policy = ckpt__kafka_policy_parse(pol);
	g->when_unix = w;
	return 1;
}

static const char GAPS_HEAD[] = "{\"shmckpt_kafka_gaps\":1,\"lost_total\":";

int ckpt_kafka_gaps_parse(const void *blob, size_t len, ckpt_kafka_gap_t *gaps,
			  int max, int64_t *lost_total)
{
	char *text;
	const char *at;
	long long total = 0;
	int n = 0;

	if (lost_total)
		*lost_total = 0;
	if (!blob || len == 0)
		return 0;
	if (len < sizeof(GAPS_HEAD) - 1 ||
	    memcmp(blob, GAPS_HEAD, sizeof(GAPS_HEAD) - 1) != 0)
		return ckpt__kafka_fail(-EINVAL, "metadata is not a gap record");
	text = malloc(len + 1);
	if (!text)
		return -ENOMEM;
	memcpy(text, blob, len);
	text[len] = '\0';
	if (sscanf(text + sizeof(GAPS_HEAD) - 1, "%lld", &total) != 1) {
		free(text);
		return ckpt__kafka_fail(-EINVAL, "gap record: no lost_total");
	}
	for (at = strchr(text, '\n'); at; at = strchr(at, '\n')) {
		ckpt_kafka_gap_t g;
		at++;
		if (parse_line(at, &g)) {
			if (gaps && n < max)
				gaps[n] = g;
			n++;
		}
	}
	free(text);
	if (lost_total)
		*lost_total = total;
	return n;
}

static int append_gap(char *buf, size_t n, const char *topic,
		      const ckpt_kafka_gap_t *g)
{
	return snprintf(buf, n,
			"{\"topic\":\"%s\",\"partition\":%" PRId32
			",\"checkpointed\":%" PRId64 ",\"earliest\":%" PRId64
			",\"resumed\":%" PRId64 ",\"lost\":%" PRId64
			",\"policy\":\"%s\",\"when\":%" PRId64 "}",
			topic, g->partition, g->checkpointed, g->earliest,
			g->resumed, g->lost, ckpt__kafka_policy_name(g->policy),
			g->when_unix);
}

int ckpt__kafka_gaps_append(const void *old, size_t olen, const char *topic,
			    const ckpt_kafka_gap_t *g, char **out,
			    size_t *outlen)
{
	ckpt_kafka_gap_t kept[CKPT_KAFKA_GAPS_KEPT];
	int64_t total = 0;
	int n, first, i, rc = 0;
	size_t cap, len;
	char *buf;

	n = ckpt_kafka_gaps_parse(old, olen, kept, CKPT_KAFKA_GAPS_KEPT, &total);
	if (n == -ENOMEM)
		return n;
	if (n < 0) {
		rc = -EINVAL;
		n = 0;
		total = 0;
	}
	if (n > CKPT_KAFKA_GAPS_KEPT)
		n = CKPT_KAFKA_GAPS_KEPT; /* parse keeps the oldest ones... */
	first = n >= CKPT_KAFKA_GAPS_KEPT ? n - (CKPT_KAFKA_GAPS_KEPT - 1) : 0;
	total += g->lost;
	cap = 128 + (size_t)(n + 1) * (300 + strlen(topic));
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	len = (size_t)snprintf(buf, cap, "%s%" PRId64 ",\"gaps\":[", GAPS_HEAD,
			       total);
	for (i = first; i < n; i++) {
		len += (size_t)snprintf(buf + len, cap - len, "\n");
		len += (size_t)append_gap(buf + len, cap - len, topic, &kept[i]);
		len += (size_t)snprintf(buf + len, cap - len, ",");
	}
	len += (size_t)snprintf(buf + len, cap - len, "\n");
	len += (size_t)append_gap(buf + len, cap - len, topic, g);
	len += (size_t)snprintf(buf + len, cap - len, "\n]}");
	*out = buf;
	*outlen = len;
	return rc;
}
