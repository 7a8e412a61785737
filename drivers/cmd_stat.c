/*
 * cmd_stat.c - 'shmckpt stat': the live counters of streams, read from their
 * shared-memory regions as text, JSON lines or Prometheus text exposition.
 *
 * A profiler must not disturb what it measures: the region is mapped
 * PROT_READ, no lock is taken, nothing is written, and every counter is one
 * relaxed load of a single-writer word (shm/layout.h).  The numbers of one
 * sample are therefore not one consistent cut (a flush may land between two
 * loads); each is exact on its own.
 *
 * The region is untrusted: it is attached only after the same checks the
 * library makes (owner uid, mode 0600, size, then ckpt__region_validate),
 * every string taken from it is bounded and escaped, and a region that
 * shrinks under the mapping (SIGBUS) fails that stream, not the tool.
 * docs/TOOLS.md documents the output formats; docs/TRACING.md how to read
 * them.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "flusher.h"
#include "hist.h"
#include "internal.h"
#include "layout.h"
#include "region.h"
#include "shmckpt.h"

#define CMD "stat"
/* As core/durable.c: a flusher that has not beaten for this long is gone. */
#define STALE_NS (5ull * 1000000000ull)

enum { OUT_TEXT, OUT_JSON, OUT_PROM };
enum { H_SYNC, H_FLUSH, H_LAG, H_N };

static const char *const hist_name[H_N] = { "datasync", "flush",
					    "durable_lag" };

/* One read of one region: a copy of every counter, then derived values. */
struct sample {
	char name[CKPT_NAME_MAX + 1];
	uint64_t mono_ns, real_ns; /* when it was read */
	uint64_t created_ns;
	uint32_t flusher_mode;
	/* producer page */
	uint64_t commit_pos, committed_epoch;
	uint32_t owner_pid;
	uint64_t prod_hb;
	uint64_t commits, records, bytes, bp_events, eagain, wait_ns, used_hwm;
	uint64_t torn, uncommitted;
	/* flusher page */
	uint64_t release_pos, durable_epoch;
	uint32_t flusher_pid, health_raw;
	int32_t error;
	uint64_t flush_hb;
	char backend[17];
	char why[161];
	uint64_t epochs_read, flushes, coalesced, flush_errors, enospc;
	uint64_t bytes_written, last_flush_ns, corrupt;
	/* stats page */
	uint64_t hist[H_N][CKPT_HIST_BUCKETS];
	uint64_t sum_ns[H_N]; /* exact sums of what each histogram counts */
	uint64_t last_lag_ns, epf_max;
	/* derived */
	uint64_t ring_cap, used;
	int consumer_alive, flusher_alive;
	const char *health;
	char health_why[256]; /* room for a prefix and why[160] */
};

/* ------------------------------------------------------------------------
 * Reading a region, read-only
 * ------------------------------------------------------------------------ */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
	if (bus_armed) {
		bus_armed = 0;
		siglongjmp(bus_jmp, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int pid_alive(uint32_t pid)
{
	if (!pid || pid > (uint32_t)INT32_MAX)
		return 0;
	/* EPERM: it exists, and belongs to someone else */
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

static void copy_string(char *dst, const char *src, size_t n)
{
	/* bytes from shared memory: one load each, NUL-bounded, and made
	 * printable so that a hostile region cannot write escapes to a
	 * terminal */
	size_t i;
	for (i = 0; i < n; i++) {
		char c = ckpt__load_relaxed(&src[i]);
		if (!c)
			break;
		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : c;
	}
	dst[i] = '\0';
}

static void copy_counters(const ckpt__region_t *rg, struct sample *s)
{
	const struct ckpt_region *h = rg->hdr;
	const struct ckpt_region_prod *p = &h->prod;
	const struct ckpt_region_flush *f = &h->flush;
	const struct ckpt_region_stats *st = &h->stats;
	char why[sizeof(f->why)];

	s->created_ns = h->id.created_ns;
	s->flusher_mode = ckpt__load_acquire(&h->prod.flusher_mode);
	s->ring_cap = rg->cap; /* validated at attach, unlike the page now */
	/* release before commit: release_pos never passes commit_pos, so
	 * read in this order the difference cannot go negative (pairs with
	 * the flusher's and the producer's store_release of each) */
	s->release_pos = ckpt__load_acquire(&f->release_pos);
	s->commit_pos = ckpt__load_acquire(&p->commit_pos);
	/* committed_epoch is stored before the commit_pos it goes with */
	s->committed_epoch = ckpt__load_relaxed(&p->committed_epoch);
	s->owner_pid = ckpt__load_relaxed(&p->owner_pid);
	s->prod_hb = ckpt__load_relaxed(&p->heartbeat_ns);
	s->commits = ckpt__load_relaxed(&p->commits);
	s->records = ckpt__load_relaxed(&p->records);
	s->bytes = ckpt__load_relaxed(&p->bytes);
	s->bp_events = ckpt__load_relaxed(&p->backpressure_events);
	s->eagain = ckpt__load_relaxed(&p->eagain);
	s->wait_ns = ckpt__load_relaxed(&p->wait_ns);
	s->used_hwm = ckpt__load_relaxed(&p->used_hwm);
	s->torn = ckpt__load_relaxed(&p->torn_discarded);
	s->uncommitted = ckpt__load_relaxed(&p->uncommitted_discarded);

	/* pairs with the store_release in the durable publish */
	s->durable_epoch = ckpt__load_acquire(&f->durable_epoch);
	s->flusher_pid = ckpt__load_relaxed(&f->flusher_pid);
	s->flush_hb = ckpt__load_relaxed(&f->heartbeat_ns);
	/* pairs with the flusher's fail(): error is stored before health */
	s->health_raw = ckpt__load_acquire(&f->health);
	s->error = ckpt__load_acquire(&f->error);
	/* the error of a failure now; under another health, the word is an
	 * earlier failure's mark (ckpt_status reports it the same way) */
	if (s->health_raw != CKPT_FAILED)
		s->error = 0;
	copy_string(s->backend, f->backend, sizeof(f->backend));
	ckpt__why_get(f, why, sizeof(why)); /* the seqlock reader */
	copy_string(s->why, why, sizeof(why) - 1);
	s->epochs_read = ckpt__load_relaxed(&f->epochs_read);
	s->flushes = ckpt__load_relaxed(&f->flushes);
	s->coalesced = ckpt__load_relaxed(&f->epochs_coalesced);
	s->flush_errors = ckpt__load_relaxed(&f->flush_errors);
	s->enospc = ckpt__load_relaxed(&f->enospc_retries);
	s->bytes_written = ckpt__load_relaxed(&f->bytes_written);
	s->last_flush_ns = ckpt__load_relaxed(&f->last_flush_ns);
	s->corrupt = ckpt__load_relaxed(&f->corrupt_events);

	for (int b = 0; b < CKPT_HIST_BUCKETS; b++) {
		s->hist[H_SYNC][b] = ckpt__load_relaxed(&st->sync_us[b]);
		s->hist[H_FLUSH][b] = ckpt__load_relaxed(&st->flush_us[b]);
		s->hist[H_LAG][b] = ckpt__load_relaxed(&st->lag_us[b]);
	}
	s->sum_ns[H_SYNC] = ckpt__load_relaxed(&st->sync_ns_sum);
	s->sum_ns[H_FLUSH] = ckpt__load_relaxed(&st->flush_ns_sum);
	s->sum_ns[H_LAG] = ckpt__load_relaxed(&st->lag_ns_sum);
	s->last_lag_ns = ckpt__load_relaxed(&st->last_lag_ns);
	s->epf_max = ckpt__load_relaxed(&st->epochs_per_flush_max);
}

/* Health as a reader outside the stream sees it (ckpt_status's rules, with
 * "nobody flushes" for either flusher mode). */
static void derive(struct sample *s, const struct sample *prev)
{
	uint64_t age = s->flush_hb && s->mono_ns > s->flush_hb
			       ? s->mono_ns - s->flush_hb
			       : 0;

	s->used = s->commit_pos - s->release_pos;
	if (s->used > s->ring_cap)
		s->used = s->ring_cap;
	s->consumer_alive = pid_alive(s->owner_pid);
	s->flusher_alive = pid_alive(s->flusher_pid);
	s->health_why[0] = '\0';
	/* (error alone, under a healthy flusher, is an earlier failure's
	 * mark that stays until its first write: not a failure now) */
	if (s->health_raw == CKPT_FAILED) {
		s->health = "failed";
		snprintf(s->health_why, sizeof(s->health_why), "%s", s->why);
	} else if (s->health_raw == CKPT_NOFLUSHER) {
		/* stored by a consumer's open after a failure: its request
		 * to retry, until a flusher takes the stream again */
		s->health = "noflusher";
		snprintf(s->health_why, sizeof(s->health_why),
			 "no flusher: waiting for one to retry after: %s",
			 s->why);
	} else if (!s->flusher_pid || !s->flusher_alive || age > STALE_NS) {
		s->health = "noflusher";
		if (s->flusher_pid)
			snprintf(s->health_why, sizeof(s->health_why),
				 "no flusher: pid %u is gone or stopped beating",
				 s->flusher_pid);
		else
			snprintf(s->health_why, sizeof(s->health_why),
				 "no flusher attached (%s)",
				 s->flusher_mode == CKPT_FLUSHER_EXTERNAL
					 ? "is shmckptd running?"
					 : "the consumer closed or died");
	} else if (s->health_raw == CKPT_BACKPRESSURED) {
		s->health = "backpressured";
		snprintf(s->health_why, sizeof(s->health_why), "%s", s->why);
	} else if (s->used > s->ring_cap / 4 * 3) {
		s->health = "backpressured";
		snprintf(s->health_why, sizeof(s->health_why),
			 "the ring is %" PRIu64 "%% full: storage is slower "
			 "than commits", s->used * 100 / s->ring_cap);
	} else if (prev && s->bp_events > prev->bp_events) {
		s->health = "backpressured";
		snprintf(s->health_why, sizeof(s->health_why),
			 "the ring filled %" PRIu64 " times in the last "
			 "interval: storage is slower than commits",
			 s->bp_events - prev->bp_events);
	} else {
		s->health = "healthy";
	}
}

/*
 * Read stream @name's region @shm into *s.  0, or an error with
 * ckpt_last_error() set: -ENOENT (no region), CKPT_EFOREIGN, CKPT_EVERSION,
 * CKPT_ECORRUPT, -EAGAIN (still being created), -errno.
 */
static int read_region(const char *shm, const char *name, struct sample *s)
{
	ckpt__region_t rg;
	struct stat st;
	void *map;
	size_t len;
	int fd, ret = 0;

	fd = shm_open(shm, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0)
		return ckpt__fail(-errno, "region %s: %s", shm, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = ckpt__fail(-errno, "region %s: fstat: %s", shm,
				 strerror(errno));
	} else if (st.st_uid != geteuid()) {
		ret = ckpt__fail(CKPT_EFOREIGN, "region %s belongs to uid %u, "
				 "not to us (uid %u)", shm, (unsigned)st.st_uid,
				 (unsigned)geteuid());
	} else if ((st.st_mode & 07777) != 0600) {
		ret = ckpt__fail(CKPT_EFOREIGN, "region %s has mode %04o, not "
				 "0600", shm, (unsigned)(st.st_mode & 07777));
	} else if (st.st_size < (off_t)CKPT_REGION_HDR_SIZE ||
		   (uint64_t)st.st_size > CKPT_REGION_HDR_SIZE + CKPT_RING_MAX) {
		ret = ckpt__fail(CKPT_ECORRUPT, "region %s is %lld bytes: not a "
				 "region", shm, (long long)st.st_size);
	}
	if (ret < 0) {
		close(fd);
		return ret;
	}
	len = (size_t)st.st_size;
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return ckpt__fail(-errno, "region %s: mmap: %s", shm,
				  strerror(errno));

	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	if (sigsetjmp(bus_jmp, 1)) {
		ret = ckpt__fail(CKPT_ECORRUPT, "region %s shrank while it was "
				 "read", shm);
		goto out;
	}
	bus_armed = 1;
	/* A live region may be caught mid-change: its ring positions are two
	 * loads that the validation compares, and a new region is "being
	 * created" for an instant.  Both pass on a second look. */
	for (int tries = 0; tries < 5; tries++) {
		ret = ckpt__region_validate(map, len, name, &rg);
		if (ret != -EAGAIN && ret != CKPT_ECORRUPT)
			break;
		usleep(2000);
	}
	if (ret == 0) {
		copy_counters(&rg, s);
		s->mono_ns = ckpt__mono_ns();
		s->real_ns = ckpt__real_ns();
	}
	bus_armed = 0;
out:
	munmap(map, len);
	return ret;
}

/* ------------------------------------------------------------------------
 * Histograms
 * ------------------------------------------------------------------------ */

static uint64_t hist_count(const uint64_t *h)
{
	uint64_t n = 0;
	for (int b = 0; b < CKPT_HIST_BUCKETS; b++)
		n += h[b];
	return n;
}

static double bucket_upper(unsigned b)
{
	return b + 1 < CKPT_HIST_BUCKETS ? ckpt__hist_lower(b + 1)
					 : ckpt__hist_lower(b);
}

/* Percentile @q (0..1) in microseconds, interpolated linearly inside its
 * bucket (as Prometheus' histogram_quantile does); -1 when empty.  Buckets
 * are a quarter octave wide, so the answer is within 25%. */
static double hist_pct(const uint64_t *h, double q)
{
	uint64_t n = hist_count(h), cum = 0;
	double rank;

	if (!n)
		return -1.0;
	rank = ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < CKPT_HIST_BUCKETS; b++) {
		if (!h[b])
			continue;
		if ((double)(cum + h[b]) >= rank) {
			double lo = ckpt__hist_lower(b), hi = bucket_upper(b);
			return lo + (hi - lo) * (rank - (double)cum) /
					    (double)h[b];
		}
		cum += h[b];
	}
	return bucket_upper(CKPT_HIST_BUCKETS - 1);
}

/*
 * Bound of bucket @b for a Prometheus "le" label, in whole microseconds.
 * The flusher records floor(ns / 1000), so a value in bucket b is below
 * ceil(upper(b)) us.  Quarter steps under 4 us share whole bounds; callers
 * skip a bound equal to the previous one (the buckets it would name are
 * empty or merged into the next), so every le is distinct.
 */
static uint64_t bucket_le_us(unsigned b)
{
	return (uint64_t)ceil(bucket_upper(b));
}

/* ------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------ */

static const char *fmt_bytes(char *buf, size_t n, double v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%.0f B", v);
	else
		snprintf(buf, n, "%.1f %s", v, unit[u]);
	return buf;
}

static const char *fmt_us(char *buf, size_t n, double us)
{
	if (us < 0)
		snprintf(buf, n, "-");
	else if (us < 1)
		snprintf(buf, n, "%.0f ns", us * 1000);
	else if (us < 1000)
		snprintf(buf, n, "%.1f us", us);
	else if (us < 1e6)
		snprintf(buf, n, "%.2f ms", us / 1e3);
	else
		snprintf(buf, n, "%.2f s", us / 1e6);
	return buf;
}

static const char *fmt_age(char *buf, size_t n, uint64_t hb, uint64_t now)
{
	if (!hb)
		snprintf(buf, n, "never");
	else
		snprintf(buf, n, "%.1f s ago",
			 now > hb ? (double)(now - hb) / 1e9 : 0.0);
	return buf;
}

static const char *mode_name(uint32_t m)
{
	return m == CKPT_FLUSHER_EXTERNAL ? "external"
	       : m == CKPT_FLUSHER_THREAD ? "thread"
					  : "unknown";
}

static void text_sample(const struct sample *s, const char *region)
{
	char a[32], b[32], c[32], d[32];

	printf("stream %s  (region %s, flusher %s)\n", s->name, region,
	       mode_name(s->flusher_mode));
	printf("  health       %s%s%s\n", s->health,
	       s->health_why[0] ? ": " : "", s->health_why);
	printf("  epochs       committed %" PRIu64 "  durable %" PRIu64
	       "  (%" PRIu64 " not durable yet)\n",
	       s->committed_epoch, s->durable_epoch,
	       s->committed_epoch > s->durable_epoch
		       ? s->committed_epoch - s->durable_epoch
		       : 0);
	printf("  commits      %" PRIu64 "  records %" PRIu64
	       "  ring bytes %s\n",
	       s->commits, s->records, fmt_bytes(a, sizeof(a), (double)s->bytes));
	printf("  ring         %s used of %s (%.1f%%), high-water %s\n",
	       fmt_bytes(a, sizeof(a), (double)s->used),
	       fmt_bytes(b, sizeof(b), (double)s->ring_cap),
	       s->ring_cap ? 100.0 * (double)s->used / (double)s->ring_cap : 0,
	       fmt_bytes(c, sizeof(c), (double)s->used_hwm));
	printf("  backpressure %" PRIu64 " events, %" PRIu64
	       " eagain, waited %.3f s\n",
	       s->bp_events, s->eagain, (double)s->wait_ns / 1e9);
	printf("  flushes      %" PRIu64 "  epochs read %" PRIu64
	       "  epochs/flush mean %.2f max %" PRIu64 "  written %s\n",
	       s->flushes, s->epochs_read,
	       s->flushes ? (double)s->coalesced / (double)s->flushes : 0.0,
	       s->epf_max, fmt_bytes(a, sizeof(a), (double)s->bytes_written));
	for (int h = 0; h < H_N; h++) {
		const uint64_t *hh = s->hist[h];
		printf("  %-12s p50 %s  p99 %s  p99.9 %s  (n=%" PRIu64 ")%s%s\n",
		       hist_name[h], fmt_us(a, sizeof(a), hist_pct(hh, 0.5)),
		       fmt_us(b, sizeof(b), hist_pct(hh, 0.99)),
		       fmt_us(c, sizeof(c), hist_pct(hh, 0.999)),
		       hist_count(hh),
		       h == H_SYNC ? "  last " : h == H_LAG ? "  last " : "",
		       h == H_SYNC ? fmt_us(d, sizeof(d),
					    (double)s->last_flush_ns / 1e3)
		       : h == H_LAG ? fmt_us(d, sizeof(d),
					     (double)s->last_lag_ns / 1e3)
				    : "");
	}
	printf("  errors       flush %" PRIu64 ", corrupt %" PRIu64
	       ", enospc retries %" PRIu64 ", torn records %" PRIu64
	       ", uncommitted records %" PRIu64 "; error %d%s%s\n",
	       s->flush_errors, s->corrupt, s->enospc, s->torn, s->uncommitted,
	       s->error, s->error ? " " : " (none)",
	       s->error ? ckpt_strerror(s->error) : "");
	printf("  backend      %s\n", s->backend[0] ? s->backend : "-");
	if (s->owner_pid)
		printf("  consumer     pid %u (%s), heartbeat %s\n", s->owner_pid,
		       s->consumer_alive ? "alive" : "gone",
		       fmt_age(a, sizeof(a), s->prod_hb, s->mono_ns));
	else
		printf("  consumer     none (closed), heartbeat %s\n",
		       fmt_age(a, sizeof(a), s->prod_hb, s->mono_ns));
	if (s->flusher_pid)
		printf("  flusher      pid %u (%s), heartbeat %s\n",
		       s->flusher_pid, s->flusher_alive ? "alive" : "gone",
		       fmt_age(a, sizeof(a), s->flush_hb, s->mono_ns));
	else
		printf("  flusher      none, heartbeat %s\n",
		       fmt_age(a, sizeof(a), s->flush_hb, s->mono_ns));
}

/* Per-second deltas between two samples of one stream.  A counter that
 * went down means the region was made anew (a reset): count from 0. */
struct rates {
	double commits, epochs, durable, bytes, flushes, epf, bp, eagain,
		written;
};

static double delta(uint64_t now, uint64_t then)
{
	return now >= then ? (double)(now - then) : (double)now;
}

static void rates_of(const struct sample *s, const struct sample *p,
		     struct rates *r)
{
	double dt = (double)(s->mono_ns - p->mono_ns) / 1e9;
	double fl = delta(s->flushes, p->flushes);

	if (dt <= 0)
		dt = 1e-9;
	r->commits = delta(s->commits, p->commits) / dt;
	r->epochs = delta(s->committed_epoch, p->committed_epoch) / dt;
	r->durable = delta(s->durable_epoch, p->durable_epoch) / dt;
	r->bytes = delta(s->bytes, p->bytes) / dt;
	r->flushes = fl / dt;
	r->epf = fl > 0 ? delta(s->coalesced, p->coalesced) / fl : 0;
	r->bp = delta(s->bp_events, p->bp_events) / dt;
	r->eagain = delta(s->eagain, p->eagain) / dt;
	r->written = delta(s->bytes_written, p->bytes_written) / dt;
}

static void text_rates_header(void)
{
	printf("%-8s %-20s %10s %10s %10s %10s %9s %7s %8s %8s %6s %10s %s\n",
	       "time", "stream", "commits/s", "epochs/s", "durable/s",
	       "ring B/s", "flushes/s", "ep/fl", "bp/s", "eagain/s", "ring%",
	       "lag", "health");
}

static void text_rates(const struct sample *s, const struct rates *r)
{
	char tbuf[16], lag[32];
	time_t t = (time_t)(s->real_ns / 1000000000ull);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
	printf("%-8s %-20s %10.0f %10.0f %10.0f %10.0f %9.1f %7.1f %8.1f "
	       "%8.1f %6.1f %10s %s\n",
	       tbuf, s->name, r->commits, r->epochs, r->durable, r->bytes,
	       r->flushes, r->epf, r->bp, r->eagain,
	       s->ring_cap ? 100.0 * (double)s->used / (double)s->ring_cap : 0,
	       fmt_us(lag, sizeof(lag), (double)s->last_lag_ns / 1e3),
	       s->health);
}

/* ------------------------------------------------------------------------
 * JSON (one object per stream per sample, one per line)
 * ------------------------------------------------------------------------ */

static void json_str(const char *p)
{
	putchar('"');
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c); /* copy_string left ASCII only */
		else
			putchar(c);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (v < 0 || !isfinite(v))
		printf("null");
	else
		printf("%.6g", v);
}

static void json_pid(const char *key, uint32_t pid, int alive, uint64_t hb,
		     uint64_t now)
{
	printf("\"%s\":{\"pid\":", key);
	if (pid)
		printf("%u", pid);
	else
		printf("null");
	printf(",\"alive\":%s,\"heartbeat_age_s\":", alive ? "true" : "false");
	json_num(hb ? (now > hb ? (double)(now - hb) / 1e9 : 0.0) : -1);
	putchar('}');
}

static void json_sample(const struct sample *s, const char *region,
			const struct rates *r)
{
	printf("{\"stream\":");
	json_str(s->name);
	printf(",\"region\":");
	json_str(region);
	printf(",\"time_ns\":%" PRIu64 ",\"flusher_mode\":\"%s\"", s->real_ns,
	       mode_name(s->flusher_mode));
	printf(",\"health\":\"%s\",\"why\":", s->health);
	json_str(s->health_why);
	printf(",\"epochs\":{\"committed\":%" PRIu64 ",\"durable\":%" PRIu64
	       "}",
	       s->committed_epoch, s->durable_epoch);
	printf(",\"commits\":%" PRIu64 ",\"records\":%" PRIu64
	       ",\"ring_bytes\":%" PRIu64,
	       s->commits, s->records, s->bytes);
	printf(",\"ring\":{\"capacity\":%" PRIu64 ",\"used\":%" PRIu64
	       ",\"high_water\":%" PRIu64 ",\"commit_pos\":%" PRIu64
	       ",\"release_pos\":%" PRIu64 "}",
	       s->ring_cap, s->used, s->used_hwm, s->commit_pos, s->release_pos);
	printf(",\"backpressure\":{\"events\":%" PRIu64 ",\"eagain\":%" PRIu64
	       ",\"wait_ns\":%" PRIu64 "}",
	       s->bp_events, s->eagain, s->wait_ns);
	printf(",\"flush\":{\"flushes\":%" PRIu64 ",\"epochs_read\":%" PRIu64
	       ",\"epochs_coalesced\":%" PRIu64 ",\"epochs_per_flush_mean\":",
	       s->flushes, s->epochs_read, s->coalesced);
	json_num(s->flushes ? (double)s->coalesced / (double)s->flushes : 0);
	printf(",\"epochs_per_flush_max\":%" PRIu64 ",\"bytes_written\":%" PRIu64
	       ",\"last_flush_ns\":%" PRIu64 "}",
	       s->epf_max, s->bytes_written, s->last_flush_ns);
	printf(",\"latency_us\":{");
	for (int h = 0; h < H_N; h++) {
		printf("%s\"%s\":{\"count\":%" PRIu64 ",\"p50\":",
		       h ? "," : "", hist_name[h], hist_count(s->hist[h]));
		json_num(hist_pct(s->hist[h], 0.5));
		printf(",\"p99\":");
		json_num(hist_pct(s->hist[h], 0.99));
		printf(",\"p999\":");
		json_num(hist_pct(s->hist[h], 0.999));
		putchar('}');
	}
	printf("},\"last_lag_ns\":%" PRIu64, s->last_lag_ns);
	printf(",\"errors\":{\"flush_errors\":%" PRIu64
	       ",\"corrupt_events\":%" PRIu64 ",\"enospc_retries\":%" PRIu64
	       ",\"torn_discarded\":%" PRIu64
	       ",\"uncommitted_discarded\":%" PRIu64 ",\"code\":%d,\"message\":",
	       s->flush_errors, s->corrupt, s->enospc, s->torn, s->uncommitted,
	       s->error);
	if (s->error)
		json_str(ckpt_strerror(s->error));
	else
		printf("null");
	printf("},\"backend\":");
	json_str(s->backend);
	putchar(',');
	json_pid("consumer", s->owner_pid, s->consumer_alive, s->prod_hb,
		 s->mono_ns);
	putchar(',');
	json_pid("flusher", s->flusher_pid, s->flusher_alive, s->flush_hb,
		 s->mono_ns);
	if (r) {
		printf(",\"rates\":{\"commits_per_s\":");
		json_num(r->commits);
		printf(",\"epochs_per_s\":");
		json_num(r->epochs);
		printf(",\"durable_epochs_per_s\":");
		json_num(r->durable);
		printf(",\"ring_bytes_per_s\":");
		json_num(r->bytes);
		printf(",\"flushes_per_s\":");
		json_num(r->flushes);
		printf(",\"epochs_per_flush\":");
		json_num(r->epf);
		printf(",\"backpressure_per_s\":");
		json_num(r->bp);
		printf(",\"eagain_per_s\":");
		json_num(r->eagain);
		printf(",\"bytes_written_per_s\":");
		json_num(r->written);
		putchar('}');
	}
	printf("}\n");
}

/* ------------------------------------------------------------------------
 * Prometheus text exposition format 0.0.4
 * ------------------------------------------------------------------------ */

static void prom_label(const char *p)
{
	putchar('"');
	for (; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", stdout);
		else if (*p == '"')
			fputs("\\\"", stdout);
		else if (*p == '\n')
			fputs("\\n", stdout);
		else
			putchar(*p);
	}
	putchar('"');
}

static void prom_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_val(const char *name, const struct sample *s, double v)
{
	printf("%s{stream=", name);
	prom_label(s->name);
	printf("} %.17g\n", v);
}

/* One family per metric: HELP and TYPE once, then a line per stream. */
#define PROM_FAMILY(NAME, TYPE, HELP, EXPR)                              \
	do {                                                             \
		prom_head(NAME, TYPE, HELP);                             \
		for (size_t i_ = 0; i_ < n; i_++) {                      \
			const struct sample *s = &v[i_];                 \
			prom_val(NAME, s, (double)(EXPR));               \
		}                                                        \
	} while (0)

static void prom_hist(const char *name, const char *help,
		      const struct sample *v, size_t n, int h)
{
	prom_head(name, "histogram", help);
	for (size_t i = 0; i < n; i++) {
		const uint64_t *hh = v[i].hist[h];
		uint64_t cum = 0, last_le = UINT64_MAX;

		for (unsigned b = 0; b + 1 < CKPT_HIST_BUCKETS; b++) {
			uint64_t le = bucket_le_us(b);
			cum += hh[b];
			/* the next bucket with the same whole bound
			 * carries this one's count forward */
			if (b + 2 < CKPT_HIST_BUCKETS &&
			    bucket_le_us(b + 1) == le)
				continue;
			if (le == last_le)
				continue;
			last_le = le;
			printf("%s_bucket{stream=", name);
			prom_label(v[i].name);
			printf(",le=\"%.10g\"} %" PRIu64 "\n", (double)le * 1e-6,
			       cum);
		}
		cum += hh[CKPT_HIST_BUCKETS - 1];
		printf("%s_bucket{stream=", name);
		prom_label(v[i].name);
		printf(",le=\"+Inf\"} %" PRIu64 "\n", cum);
		printf("%s_sum{stream=", name);
		prom_label(v[i].name);
		/* exact: the region keeps the sum beside the buckets */
		printf("} %.17g\n", (double)v[i].sum_ns[h] * 1e-9);
		printf("%s_count{stream=", name);
		prom_label(v[i].name);
		printf("} %" PRIu64 "\n", cum);
	}
}

static void prom_all(const struct sample *v, size_t n)
{
	static const char *const states[] = { "healthy", "backpressured",
					      "failed", "noflusher" };

	prom_head("shmckpt_info", "gauge",
		  "Stream identity: I/O backend and flusher mode (always 1).");
	for (size_t i = 0; i < n; i++) {
		printf("shmckpt_info{stream=");
		prom_label(v[i].name);
		printf(",backend=");
		prom_label(v[i].backend);
		printf(",flusher_mode=\"%s\"} 1\n",
		       mode_name(v[i].flusher_mode));
	}
	prom_head("shmckpt_health", "gauge",
		  "Stream health: 1 for the current state, 0 for the others.");
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < 4; k++) {
			printf("shmckpt_health{stream=");
			prom_label(v[i].name);
			printf(",state=\"%s\"} %d\n", states[k],
			       !strcmp(v[i].health, states[k]));
		}
	PROM_FAMILY("shmckpt_committed_epoch", "gauge",
		    "Newest committed epoch.", s->committed_epoch);
	PROM_FAMILY("shmckpt_durable_epoch", "gauge",
		    "Newest epoch on stable storage.", s->durable_epoch);
	PROM_FAMILY("shmckpt_commits_total", "counter",
		    "Epochs committed by the producer (ckpt_commit calls).",
		    s->commits);
	PROM_FAMILY("shmckpt_records_total", "counter",
		    "Delta records staged into the ring.", s->records);
	PROM_FAMILY("shmckpt_ring_written_bytes_total", "counter",
		    "Bytes written into the ring, seals and padding included.",
		    s->bytes);
	PROM_FAMILY("shmckpt_ring_capacity_bytes", "gauge",
		    "Ring capacity.", s->ring_cap);
	PROM_FAMILY("shmckpt_ring_used_bytes", "gauge",
		    "Ring bytes committed and not yet released (durable).",
		    s->used);
	PROM_FAMILY("shmckpt_ring_used_high_water_bytes", "gauge",
		    "High-water mark of ring bytes in use.", s->used_hwm);
	PROM_FAMILY("shmckpt_backpressure_events_total", "counter",
		    "Stages that found the ring full.", s->bp_events);
	PROM_FAMILY("shmckpt_eagain_total", "counter",
		    "-EAGAIN returned to the producer.", s->eagain);
	PROM_FAMILY("shmckpt_backpressure_wait_seconds_total", "counter",
		    "Time the producer spent waiting for ring space.",
		    (double)s->wait_ns / 1e9);
	PROM_FAMILY("shmckpt_epochs_read_total", "counter",
		    "Committed epochs the flusher read from the ring.",
		    s->epochs_read);
	PROM_FAMILY("shmckpt_flushes_total", "counter",
		    "Snapshots made durable.", s->flushes);
	PROM_FAMILY("shmckpt_epochs_coalesced_total", "counter",
		    "Epochs carried by the durable snapshots (sum over "
		    "flushes).", s->coalesced);
	PROM_FAMILY("shmckpt_epochs_per_flush_max", "gauge",
		    "Most epochs coalesced into one snapshot.", s->epf_max);
	PROM_FAMILY("shmckpt_slot_written_bytes_total", "counter",
		    "Snapshot bytes written to slot files.", s->bytes_written);
	PROM_FAMILY("shmckpt_last_flush_seconds", "gauge",
		    "Duration of the newest slot write and fdatasync.",
		    (double)s->last_flush_ns / 1e9);
	PROM_FAMILY("shmckpt_durable_lag_last_seconds", "gauge",
		    "Durable lag of the newest durable write.",
		    (double)s->last_lag_ns / 1e9);
	PROM_FAMILY("shmckpt_flush_errors_total", "counter",
		    "Failed slot writes or fdatasyncs.", s->flush_errors);
	PROM_FAMILY("shmckpt_enospc_retries_total", "counter",
		    "Slot growths refused for space and retried.", s->enospc);
	PROM_FAMILY("shmckpt_corrupt_events_total", "counter",
		    "Damage found in the ring by the flusher.", s->corrupt);
	PROM_FAMILY("shmckpt_torn_records_discarded_total", "counter",
		    "Half-written ring records found and discarded at attach.",
		    s->torn);
	PROM_FAMILY("shmckpt_uncommitted_records_discarded_total", "counter",
		    "Records of an unsealed epoch discarded at attach.",
		    s->uncommitted);
	PROM_FAMILY("shmckpt_error_code", "gauge",
		    "The error that failed the stream (-errno or CKPT_E*), "
		    "0 if none.", s->error);
	PROM_FAMILY("shmckpt_consumer_pid", "gauge",
		    "pid of the stream's writer, 0 if none.", s->owner_pid);
	PROM_FAMILY("shmckpt_consumer_up", "gauge",
		    "1 if the writer's pid exists.", s->consumer_alive);
	PROM_FAMILY("shmckpt_flusher_pid", "gauge",
		    "pid of the stream's flusher, 0 if none.", s->flusher_pid);
	PROM_FAMILY("shmckpt_flusher_up", "gauge",
		    "1 if the flusher's pid exists.", s->flusher_alive);
	prom_head("shmckpt_consumer_heartbeat_age_seconds", "gauge",
		  "Time since the writer's heartbeat (refreshed at open and "
		  "every 4096 commits).");
	for (size_t i = 0; i < n; i++)
		if (v[i].prod_hb)
			prom_val("shmckpt_consumer_heartbeat_age_seconds",
				 &v[i],
				 v[i].mono_ns > v[i].prod_hb
					 ? (double)(v[i].mono_ns - v[i].prod_hb) /
						   1e9
					 : 0);
	prom_head("shmckpt_flusher_heartbeat_age_seconds", "gauge",
		  "Time since the flusher's heartbeat.");
	for (size_t i = 0; i < n; i++)
		if (v[i].flush_hb)
			prom_val("shmckpt_flusher_heartbeat_age_seconds", &v[i],
				 v[i].mono_ns > v[i].flush_hb
					 ? (double)(v[i].mono_ns - v[i].flush_hb) /
						   1e9
					 : 0);
	prom_hist("shmckpt_datasync_duration_seconds",
		  "One slot write plus fdatasync (the I/O). Buckets from the "
		  "region's log-linear histogram.", v, n, H_SYNC);
	prom_hist("shmckpt_flush_duration_seconds",
		  "Snapshot encode start to durable published.", v, n,
		  H_FLUSH);
	prom_hist("shmckpt_durable_lag_seconds",
		  "Oldest epoch of a write first read to durable published.",
		  v, n, H_LAG);
}

/* ------------------------------------------------------------------------
 * Streams and the main loop
 * ------------------------------------------------------------------------ */

struct stream_ref {
	char name[CKPT_NAME_MAX + 1];
	struct sample prev;
	int have_prev;
	int seen; /* in the current sample */
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct stream_ref *)a)->name,
		      ((const struct stream_ref *)b)->name);
}

/* Add every stream that has a region under @prefix and is not in the list
 * yet (the list keeps the previous samples for rates). */
static int scan_all(const char *prefix, struct stream_ref **list, size_t *n,
		    size_t *cap)
{
	size_t plen = strlen(prefix) - 1; /* without the leading '/' */
	struct dirent *e;
	DIR *d = opendir("/dev/shm");

	if (!d) {
		cli_err(CMD, "/dev/shm: %s", strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		const char *nm = e->d_name + plen;
		size_t i;

		if (strncmp(e->d_name, prefix + 1, plen) != 0 ||
		    ckpt__check_name(nm) < 0)
			continue;
		for (i = 0; i < *n; i++)
			if (!strcmp((*list)[i].name, nm))
				break;
		if (i < *n)
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 16;
			struct stream_ref *nl = realloc(*list, nc * sizeof(**list));
			if (!nl) {
				closedir(d);
				cli_err(CMD, "out of memory");
				return -1;
			}
			*list = nl;
			*cap = nc;
		}
		memset(&(*list)[*n], 0, sizeof(**list));
		snprintf((*list)[*n].name, sizeof((*list)[*n].name), "%s", nm);
		(*n)++;
	}
	closedir(d);
	qsort(*list, *n, sizeof(**list), name_cmp);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt stat --dir DIR [STREAM... | --all] [--json | --prometheus]\n"
"                    [--watch SECONDS [--count N]]\n"
"\n"
"Print the live counters of streams under checkpoint directory DIR, read\n"
"from their shared-memory regions (/dev/shm/shmckpt.<uid>.<dirhash>.<name>)\n"
"read-only and without any lock: stat never disturbs the stream.\n"
"\n"
"  --dir DIR        the checkpoint directory the streams were opened with\n"
"  STREAM...        stream names; --all: every stream of DIR with a region\n"
"  --json           one JSON object per stream per sample, one per line\n"
"                   (JSON Lines; docs/TOOLS.md lists the fields)\n"
"  --prometheus     Prometheus text exposition format 0.0.4\n"
"  --watch SECONDS  sample every SECONDS (e.g. 1, 0.5) until SIGINT; after\n"
"                   the first sample print per-second rates (text: one row\n"
"                   per stream; JSON: a \"rates\" member)\n"
"  --count N        with --watch: stop after N samples\n"
"  --help           this text\n"
"\n"
"Latency percentiles come from the region's log-linear histograms (four\n"
"buckets per octave: within 25%%).  docs/TRACING.md explains every line.\n"
"\n"
"Exit: 0 success, 1 a stream could not be read, 64 usage error.\n");
}

int cmd_stat_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "watch", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	int all = 0, out = OUT_TEXT, c, rc = CLI_OK;
	double watch = 0;
	long long count = 0, v;
	char prefix[128], absdir[CKPT_DIR_MAX];
	struct stream_ref *list = NULL;
	struct sample *cur = NULL;
	size_t n = 0, cap = 0;
	struct sigaction sa;
	uint64_t next_ns;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'a':
			all = 1;
			break;
		case 'j':
			out = OUT_JSON;
			break;
		case 'p':
			out = OUT_PROM;
			break;
		case 'w': {
			char *end;
			errno = 0;
			watch = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(watch > 0) ||
			    watch > 86400) {
				cli_err(CMD, "--watch: seconds in (0, 86400]");
				return CLI_USAGE;
			}
			break;
		}
		case 'c':
			if (cli_parse_ll(optarg, 1, 1000000000, &v)) {
				cli_err(CMD, "--count: 1..1000000000");
				return CLI_USAGE;
			}
			count = v;
			break;
		case 'h':
			usage(stdout);
			return CLI_OK;
		default:
			usage(stderr);
			return CLI_USAGE;
		}
	}
	if (!dir) {
		cli_err(CMD, "--dir DIR is required (shmckpt stat --help)");
		return CLI_USAGE;
	}
	if (all == (optind < argc)) {
		cli_err(CMD, "name the streams or give --all (not both)");
		return CLI_USAGE;
	}
	if (count && !watch) {
		cli_err(CMD, "--count needs --watch");
		return CLI_USAGE;
	}
	if (watch && out == OUT_PROM) {
		cli_err(CMD, "--watch with --prometheus: a scraper computes "
			"rates itself (rate()); scrape single samples instead");
		return CLI_USAGE;
	}
	for (int i = optind; i < argc; i++)
		if (ckpt__check_name(argv[i]) < 0) {
			cli_err(CMD, "'%s': %s", argv[i], ckpt_last_error());
			return CLI_USAGE;
		}
	if (ckpt__absdir(dir, absdir, sizeof(absdir)) < 0 ||
	    ckpt__region_prefix(absdir, prefix, sizeof(prefix)) < 0) {
		cli_err(CMD, "%s", ckpt_last_error());
		return CLI_FAIL;
	}
	if (!all) {
		cap = n = (size_t)(argc - optind);
		list = calloc(n, sizeof(*list));
		if (!list) {
			cli_err(CMD, "out of memory");
			return CLI_FAIL;
		}
		for (size_t i = 0; i < n; i++)
			snprintf(list[i].name, sizeof(list[i].name), "%s",
				 argv[optind + (int)i]);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (watch)
		cli_catch_signals();

	next_ns = ckpt__mono_ns();
	for (long long iter = 0; !cli_stop; iter++) {
		size_t ok = 0;
		int any_rates = 0;

		if (all && scan_all(prefix, &list, &n, &cap) < 0) {
			rc = CLI_FAIL;
			break;
		}
		free(cur);
		cur = calloc(n ? n : 1, sizeof(*cur));
		if (!cur) {
			cli_err(CMD, "out of memory");
			rc = CLI_FAIL;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			struct stream_ref *r = &list[i];
			char shm[320];
			int ret;

			r->seen = 0;
			snprintf(shm, sizeof(shm), "%s%s", prefix, r->name);
			ret = read_region(shm, r->name, &cur[ok]);
			if (ret < 0) {
				/* with --all a region may vanish between
				 * the scan and the read: not an error */
				if (all && ret == -ENOENT)
					continue;
				cli_err(CMD, "stream '%s': %s", r->name,
					ret == -ENOENT ? "no region (is the "
							 "stream open, or "
							 "another --dir?)"
						       : ckpt_last_error());
				rc = CLI_FAIL;
				r->have_prev = 0;
				continue;
			}
			derive(&cur[ok], r->have_prev ? &r->prev : NULL);
			r->seen = 1;
			ok++;
		}
		/* print */
		if (out == OUT_PROM) {
			prom_all(cur, ok);
		} else {
			size_t k = 0;
			for (size_t i = 0; i < n; i++) {
				struct stream_ref *r = &list[i];
				struct rates rt;
				char shm[320];

				if (!r->seen)
					continue;
				snprintf(shm, sizeof(shm), "%s%s", prefix,
					 r->name);
				if (r->have_prev)
					rates_of(&cur[k], &r->prev, &rt);
				if (out == OUT_JSON) {
					json_sample(&cur[k], shm,
						    r->have_prev ? &rt : NULL);
				} else if (r->have_prev) {
					if (!any_rates &&
					    (n > 1 || iter % 20 == 1))
						text_rates_header();
					any_rates = 1;
					text_rates(&cur[k], &rt);
				} else {
					text_sample(&cur[k], shm);
				}
				r->prev = cur[k];
				r->have_prev = 1;
				k++;
			}
			if (out == OUT_TEXT && all && !ok && !watch)
				fprintf(stderr, "shmckpt stat: no stream of "
					"%s has a region\n", absdir);
		}
		fflush(stdout);
		if (!watch || (count && iter + 1 >= count))
			break;
		/* every interval from the first, not from the last print */
		next_ns += (uint64_t)(watch * 1e9);
		{
			struct timespec ts = {
				.tv_sec = (time_t)(next_ns / 1000000000ull),
				.tv_nsec = (long)(next_ns % 1000000000ull),
			};
			while (!cli_stop &&
			       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					       &ts, NULL) == EINTR)
				;
		}
		if (ckpt__mono_ns() > next_ns + (uint64_t)(watch * 1e9))
			next_ns = ckpt__mono_ns(); /* fell behind: resync */
	}
	free(cur);
	free(list);
	return rc;
}
