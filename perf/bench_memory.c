/*
 * bench_memory.c - resident memory over time under slow storage: shmckpt
 * against a queue-per-batch writer (Spark Streaming's CheckpointWriter,
 * problem P1 of the brief), side by side in one run.
 *
 * Storage: every write takes a latency drawn from the brief's distribution
 * (1-20 s, mean 2.6 s: a shifted exponential clipped at 20 s, as
 * iouring/fault.h draws it), then a real write + fdatasync on a real disk.
 * Load: one batch every 1 ms (absolute deadlines; a missed tick is skipped,
 * never made up), each 1 offset + 1 put (16 B / 16 B) over 16 keys, so the
 * state itself never grows.
 *
 * Two child processes run at once, so that each one's RSS is its own and
 * the run takes its duration once:
 *   shmckpt  ckpt_open with the in-process flusher and a fault plan with
 *            that latency (default 8 MiB ring, CKPT_FULL_EAGAIN: a batch
 *            refused for a full ring would be counted and reported).  The
 *            pages of the stream's shared-memory region are touched once
 *            before the start, so that the configured ring is resident
 *            from t = 0 (otherwise its pages are first touched over the
 *            first ~80 s at this rate: configured memory, not growth; the
 *            CSV keeps the shared part apart either way).
 *   queue    the batch thread applies the batch to a snapshot, serializes
 *            it (the same slot image shmckpt writes, ~4.7 KiB) and appends
 *            it to an unbounded queue; one writer thread takes each entry,
 *            sleeps a latency drawn from the same distribution (same
 *            sampler, same seed), then pwrites + fdatasyncs it.
 * The parent samples VmRSS, RssAnon and RssShmem of both from /proc every
 * second.  Growth after warm-up (default 30 s): total = highest RSS after
 * warm-up minus RSS at the end of warm-up; rate = least-squares slope of
 * RSS over the samples after warm-up, in MiB per minute.
 * Goal (BRIEF): shmckpt total growth after warm-up <= 1 MiB.
 *
 * Safety: the queue stops growing at --queue-cap MiB (default 8192) and
 * says so; 10 minutes need about 3 GiB.
 *
 * Options: --seconds S (default 180; CKPT_BENCH_SECONDS), --warmup S
 * (default 30; CKPT_BENCH_WARMUP), --lat MIN,MAX,MEAN in ms (default
 * 1000,20000,2600; CKPT_BENCH_LAT), --queue-cap MiB.  CKPT_BENCH_DIR picks
 * the directory, CKPT_RESULTS where results go.
 *
 * Output: a summary, perf/results/memory.csv (t_s, rss_shmckpt_mib,
 * rss_queue_mib, then the anon/shmem parts), perf/results/memory.png
 * (gnuplot, perf/plot-memory.gp; skipped with a note without gnuplot) and,
 * last, one JSON line.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"
#include "slot.h"
#include "snapshot.h"

#define NAME "mem"
#define TICK_NS 1000000ull
#define KEYS 16
#define SEED 0x5eed0f5107ull

static void __attribute__((noreturn)) die(const char *what, int ret)
{
	fprintf(stderr, "bench_memory[%d]: %s: %s (%s)\n", (int)getpid(), what,
		ckpt_strerror(ret), ckpt_last_error());
	exit(1);
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull),
			       (long)(t % 1000000000ull) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static int write_all(int fd, const void *p, size_t n, off_t off)
{
	const unsigned char *b = p;

	while (n) {
		ssize_t r = pwrite(fd, b, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		b += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* What both children share: the plan and the start protocol. */
struct child {
	const char *dir;
	struct ckpt_fault_plan plan;
	double seconds;
	uint64_t queue_cap;
	int report_fd; /* child -> parent: "ready\n", then one report line */
	int go_fd; /* parent -> child: a byte to start, EOF to exit */
};

static void child_ready_and_wait(struct child *c)
{
	char b;

	if (write(c->report_fd, "ready\n", 6) != 6)
		_exit(1);
	if (read(c->go_fd, &b, 1) != 1)
		_exit(1);
}

static void __attribute__((format(printf, 2, 3), noreturn))
child_report_and_exit(struct child *c, const char *fmt, ...)
{
	char line[512], b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (write(c->report_fd, line, strlen(line)) < 0)
		_exit(1);
	/* stay resident until the parent has taken its last sample */
	while (read(c->go_fd, &b, 1) > 0)
		;
	_exit(0);
}

static inline void make_kv(unsigned char *key, unsigned char *val, uint64_t e)
{
	uint64_t k = e % KEYS;

	memcpy(key, &k, 8);
	memset(key + 8, 'k', 8);
	memcpy(val, &e, 8);
	memset(val + 8, 'v', 8);
}

/* Read one byte of every page of this stream's shared-memory mappings:
 * the configured ring becomes resident now rather than over the run. */
static size_t touch_region(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	size_t pages = 0;
	long psz = sysconf(_SC_PAGESIZE);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		size_t l = strlen(line);
		if (l && line[l - 1] == '\n')
			line[--l] = '\0';
		if (!strstr(line, "/dev/shm/shmckpt.") || l < 4 ||
		    strcmp(line + l - 4, "." NAME) ||
		    sscanf(line, "%lx-%lx", &a, &b) != 2)
			continue;
		for (unsigned long p = a; p < b; p += (unsigned long)psz) {
			(void)*(volatile const unsigned char *)p;
			pages++;
		}
	}
	fclose(f);
	return pages;
}

static void run_shmckpt(struct child *c)
{
	unsigned char key[16], val[16];
	uint64_t refused = 0, missed = 0;
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t o;
	int64_t e = 0;
	int ret;

	ckpt_opts_init(&o);
	o.fault = &c->plan;
	o.full_policy = CKPT_FULL_EAGAIN;
	o.flags = CKPT_O_RESET;
	ret = ckpt_open(c->dir, NAME, &o, &s);
	if (ret < 0)
		die("ckpt_open", ret);
	size_t pages = touch_region();
	child_ready_and_wait(c);

	uint64_t t0 = mono_ns(), next = t0 + TICK_NS;
	uint64_t end = t0 + (uint64_t)(c->seconds * 1e9) + 500000000ull;
	while (next < end) {
		sleep_until(next);
		uint64_t now = mono_ns();
		/* skip missed ticks: a stall is not made up in a burst */
		while (next + TICK_NS <= now) {
			next += TICK_NS;
			missed++;
		}
		next += TICK_NS;
		make_kv(key, val, (uint64_t)e + 1);
		if ((ret = ckpt_offset(s, "t", 0, e + 1)) < 0 ||
		    (ret = ckpt_put(s, key, 16, val, 16)) < 0) {
			if (ret != -EAGAIN)
				die("stage", ret);
			ckpt_abort(s);
			refused++;
			continue;
		}
		int64_t got = ckpt_commit(s);
		if (got < 0)
			die("ckpt_commit", (int)got);
		e = got;
	}
	ckpt_status(s, &st);
	/* Leave without ckpt_close: it would wait up to 10 s for a write of
	 * up to 20 s; the region goes now, the directory with the parent. */
	char abs[CKPT_DIR_MAX];
	if (ckpt__absdir(c->dir, abs, sizeof(abs)) == 0)
		ckpt__region_unlink(abs, NAME);
	child_report_and_exit(
		c, "shmckpt committed=%lld durable=%lld flushes=%llu "
		   "refused=%llu missed_ticks=%llu backpressure=%llu ring=%llu "
		   "ring_used=%llu touched_pages=%zu backend=%s\n",
		(long long)st.committed_epoch, (long long)st.durable_epoch,
		(unsigned long long)st.flushes, (unsigned long long)refused,
		(unsigned long long)missed,
		(unsigned long long)st.backpressure_events,
		(unsigned long long)st.ring_capacity,
		(unsigned long long)st.ring_used, pages, st.backend);
}

/* ---- the queue-per-batch writer (Spark Streaming's CheckpointWriter) --- */

struct qitem {
	struct qitem *next;
	size_t len;
	unsigned char data[];
};

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qitem *head, *tail;
	uint64_t depth, bytes, written;
	int fd;
	struct ckpt__fault_lat lat;
	uint64_t rng;
};

static void *queue_writer(void *arg)
{
	struct queue *q = arg;

	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (!q->head)
			pthread_cond_wait(&q->cv, &q->mu);
		struct qitem *it = q->head;
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
		pthread_mutex_unlock(&q->mu);

		uint64_t us = ckpt__fault_lat_sample(&q->lat, &q->rng);
		struct timespec ts = { (time_t)(us / 1000000),
				       (long)(us % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		if (write_all(q->fd, it->data, it->len, 0) < 0 ||
		    fdatasync(q->fd) < 0)
			die("queue writer: write + fdatasync", -errno);
		pthread_mutex_lock(&q->mu);
		q->depth--;
		q->bytes -= it->len;
		q->written++;
		pthread_mutex_unlock(&q->mu);
		free(it);
	}
	return NULL;
}

static void run_queue(struct child *c)
{
	unsigned char key[16], val[16];
	struct queue q = { .mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER };
	uint64_t missed = 0, capped = 0, enq = 0, e = 0;
	char path[4200];
	pthread_t th;
	int ret;

	ret = ckpt__fault_lat_init(&q.lat, &c->plan);
	if (ret < 0)
		die("latency plan", ret);
	q.rng = c->plan.seed;
	ckpt__snap_t *snap = ckpt__snap_new();
	if (!snap)
		die("snap_new", -ENOMEM);
	snprintf(path, sizeof(path), "%s/queue-checkpoint", c->dir);
	q.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (q.fd < 0)
		die("open", -errno);
	{
		/* preallocated, as shmckpt's slots are */
		static unsigned char zero[64 << 10];
		if (write_all(q.fd, zero, sizeof(zero), 0) < 0 ||
		    fsync(q.fd) < 0)
			die("preallocate", -errno);
	}
	if (pthread_create(&th, NULL, queue_writer, &q) != 0)
		die("pthread_create", -EAGAIN);
	child_ready_and_wait(c);

	uint64_t t0 = mono_ns(), next = t0 + TICK_NS;
	uint64_t end = t0 + (uint64_t)(c->seconds * 1e9) + 500000000ull;
	while (next < end) {
		sleep_until(next);
		uint64_t now = mono_ns();
		while (next + TICK_NS <= now) {
			next += TICK_NS;
			missed++;
		}
		next += TICK_NS;
		e++;
		make_kv(key, val, e);
		ckpt_delta_t d1 = { .type = CKPT_D_OFFSET, .topic = "t",
				    .topic_len = 1, .partition = 0,
				    .offset = (int64_t)e };
		ckpt_delta_t d2 = { .type = CKPT_D_PUT, .key = key, .klen = 16,
				    .val = val, .vlen = 16 };
		if (ckpt__snap_apply(snap, &d1) < 0 ||
		    ckpt__snap_apply(snap, &d2) < 0)
			die("snap_apply", -ENOMEM);
		ckpt__snap_set_epoch(snap, (int64_t)e);
		if (q.bytes >= c->queue_cap) { /* racy read: a bound, no more */
			capped++;
			continue;
		}
		size_t cap = ckpt__slot_image_size(snap);
		struct qitem *it = malloc(sizeof(*it) + cap);
		if (!it)
			die("malloc", -ENOMEM);
		ssize_t len = ckpt__slot_encode(snap, NAME, e, 0, it->data,
						cap);
		if (len < 0)
			die("encode", (int)len);
		it->len = (size_t)len;
		it->next = NULL;
		pthread_mutex_lock(&q.mu);
		if (q.tail)
			q.tail->next = it;
		else
			q.head = it;
		q.tail = it;
		q.depth++;
		q.bytes += it->len;
		pthread_cond_signal(&q.cv);
		pthread_mutex_unlock(&q.mu);
		enq++;
	}
	pthread_mutex_lock(&q.mu);
	uint64_t depth = q.depth, bytes = q.bytes, written = q.written;
	pthread_mutex_unlock(&q.mu);
	child_report_and_exit(
		c, "queue enqueued=%llu written=%llu queued=%llu "
		   "queued_bytes=%llu capped=%llu missed_ticks=%llu "
		   "item_bytes=%zu\n",
		(unsigned long long)enq, (unsigned long long)written,
		(unsigned long long)depth, (unsigned long long)bytes,
		(unsigned long long)capped, (unsigned long long)missed,
		ckpt__slot_image_size(snap));
}

/* ---- the parent ---- */

struct kid {
	pid_t pid;
	int report_fd, go_fd;
	char report[512];
};

static void start_child(struct kid *k, struct child *c,
			void (*fn)(struct child *))
{
	int rp[2], gp[2];

	if (pipe(rp) < 0 || pipe(gp) < 0)
		die("pipe", -errno);
	fflush(NULL);
	k->pid = fork();
	if (k->pid < 0)
		die("fork", -errno);
	if (k->pid == 0) {
		close(rp[0]);
		close(gp[1]);
		c->report_fd = rp[1];
		c->go_fd = gp[0];
		fn(c);
		_exit(0);
	}
	close(rp[1]);
	close(gp[0]);
	k->report_fd = rp[0];
	k->go_fd = gp[1];
}

/* One line from the child (blocking). */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return n ? 0 : -1;
}

struct rss {
	double total, anon, shmem; /* MiB */
};

static int read_rss(pid_t pid, struct rss *r)
{
	char path[64], line[256];
	FILE *f;
	int got = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), f)) {
		unsigned long kib;
		if (sscanf(line, "VmRSS: %lu", &kib) == 1) {
			r->total = (double)kib / 1024.0;
			got = 1;
		} else if (sscanf(line, "RssAnon: %lu", &kib) == 1) {
			r->anon = (double)kib / 1024.0;
		} else if (sscanf(line, "RssShmem: %lu", &kib) == 1) {
			r->shmem = (double)kib / 1024.0;
		}
	}
	fclose(f);
	return got ? 0 : -1;
}

/* Growth after warm-up: *total = max(after) - value at warm-up; *slope in
 * MiB per minute by least squares over t >= warmup. */
static void growth(const double *t, const double *v, size_t n, double warmup,
		   double *total, double *slope, double *at_warmup,
		   double *at_end)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0, base = -1, mx = 0;
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		if (t[i] < warmup)
			continue;
		if (base < 0)
			base = v[i];
		if (v[i] > mx)
			mx = v[i];
		sx += t[i];
		sy += v[i];
		sxx += t[i] * t[i];
		sxy += t[i] * v[i];
		m++;
	}
	*at_warmup = base < 0 ? 0 : base;
	*at_end = n ? v[n - 1] : 0;
	*total = base < 0 ? 0 : mx - base;
	double den = (double)m * sxx - sx * sx;
	*slope = m > 1 && den != 0 ? ((double)m * sxy - sx * sy) / den * 60.0
				   : 0;
	if (*slope > -5e-4 && *slope < 5e-4)
		*slope = 0; /* printed as 0.000, not -0.000 */
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_memory [--seconds S] [--warmup S] "
		"[--lat MIN_MS,MAX_MS,MEAN_MS] [--queue-cap MiB]\n"
		"  defaults: 180 s, warm-up 30 s, 1000,20000,2600 ms, 8192 MiB\n"
		"  (env CKPT_BENCH_SECONDS, CKPT_BENCH_WARMUP, CKPT_BENCH_LAT, "
		"CKPT_BENCH_DIR, CKPT_RESULTS)\n");
	exit(2);
}

/* "key=value" out of a report line, 0 if absent. */
static double field(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	return p ? atof(p + strlen(pat)) : 0;
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	double seconds = getenv("CKPT_BENCH_SECONDS") ?
				 atof(getenv("CKPT_BENCH_SECONDS")) : 180;
	double warmup = getenv("CKPT_BENCH_WARMUP") ?
				atof(getenv("CKPT_BENCH_WARMUP")) : 30;
	const char *lat_s = getenv("CKPT_BENCH_LAT");
	double mn = 1000, mx = 20000, mean = 2600, cap_mib = 8192;
	char dir[1024], path[12000];
	struct child c;
	struct kid ka, kb;
	struct statfs sf;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			warmup = atof(argv[++i]);
		else if (!strcmp(argv[i], "--lat") && i + 1 < argc)
			lat_s = argv[++i];
		else if (!strcmp(argv[i], "--queue-cap") && i + 1 < argc)
			cap_mib = atof(argv[++i]);
		else
			usage();
	}
	if (lat_s && (sscanf(lat_s, "%lf,%lf,%lf", &mn, &mx, &mean) != 3 ||
		      !(mn >= 0 && mx > mn && mean > mn && mean < mx)))
		usage();
	if (seconds < 5 || warmup < 0 || warmup >= seconds - 2 || cap_mib < 1)
		usage();

	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-memory-XXXXXX",
		 pick_base());
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	if (statfs(dir, &sf) != 0)
		die("statfs", -errno);

	memset(&c, 0, sizeof(c));
	c.dir = dir;
	c.seconds = seconds;
	c.queue_cap = (uint64_t)(cap_mib * 1048576.0);
	c.plan.lat_min_us = (uint64_t)(mn * 1000);
	c.plan.lat_max_us = (uint64_t)(mx * 1000);
	c.plan.lat_mean_us = (uint64_t)(mean * 1000);
	c.plan.seed = SEED;
	{
		struct ckpt__fault_lat l;
		if (ckpt__fault_lat_init(&l, &c.plan) < 0)
			usage();
	}

	printf("bench memory: resident memory under slow storage, 1 ms "
	       "batches, %.0f s (warm-up %.0f s)\n", seconds, warmup);
	printf("  storage        every write %.0f-%.0f ms, mean %.0f ms "
	       "(fault plan), then write + fdatasync in %s (%s)\n", mn, mx,
	       mean, dir, fs_name((long)sf.f_type));
	printf("  batch          1 offset + 1 put (16 B / 16 B) over %d keys; "
	       "shmckpt and the queue writer in two processes at once\n",
	       KEYS);
	fflush(stdout);

	start_child(&ka, &c, run_shmckpt);
	start_child(&kb, &c, run_queue);
	if (read_line(ka.report_fd, ka.report, sizeof(ka.report)) < 0 ||
	    read_line(kb.report_fd, kb.report, sizeof(kb.report)) < 0) {
		fprintf(stderr, "bench_memory: a child failed to start\n");
		kill(ka.pid, SIGKILL);
		kill(kb.pid, SIGKILL);
		return 1;
	}

	size_t cap = (size_t)seconds + 2, n = 0;
	double *t = calloc(cap, sizeof(double));
	struct rss *ra = calloc(cap, sizeof(*ra)), *rb = calloc(cap, sizeof(*rb));
	if (!t || !ra || !rb)
		die("calloc", -ENOMEM);
	uint64_t t0 = mono_ns();
	if (write(ka.go_fd, "g", 1) != 1 || write(kb.go_fd, "g", 1) != 1)
		die("start children", -errno);
	for (size_t i = 0; i <= (size_t)seconds && n < cap; i++) {
		sleep_until(t0 + (uint64_t)i * 1000000000ull);
		t[n] = (double)(mono_ns() - t0) / 1e9;
		if (read_rss(ka.pid, &ra[n]) < 0 || read_rss(kb.pid, &rb[n]) < 0)
			break;
		n++;
		if (i % 30 == 0) {
			printf("  t=%4.0f s   shmckpt %7.1f MiB   queue %8.1f "
			       "MiB\n", t[n - 1], ra[n - 1].total,
			       rb[n - 1].total);
			fflush(stdout);
		}
	}
	if (read_line(ka.report_fd, ka.report, sizeof(ka.report)) < 0 ||
	    read_line(kb.report_fd, kb.report, sizeof(kb.report)) < 0)
		fprintf(stderr, "bench_memory: a child sent no report\n");
	close(ka.go_fd);
	close(kb.go_fd);
	int sa = 0, sb = 0;
	waitpid(ka.pid, &sa, 0);
	waitpid(kb.pid, &sb, 0);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (!WIFEXITED(sa) || WEXITSTATUS(sa) || !WIFEXITED(sb) ||
	    WEXITSTATUS(sb) || n < 3) {
		fprintf(stderr, "bench_memory: a child failed (%d, %d) or too "
				"few samples (%zu)\n", sa, sb, n);
		return 1;
	}

	double *va = calloc(n, sizeof(double)), *vb = calloc(n, sizeof(double));
	if (!va || !vb)
		die("calloc", -ENOMEM);
	for (size_t i = 0; i < n; i++) {
		va[i] = ra[i].total;
		vb[i] = rb[i].total;
	}
	double ga, sla, a_w, a_e, gb, slb, b_w, b_e;
	growth(t, va, n, warmup, &ga, &sla, &a_w, &a_e);
	growth(t, vb, n, warmup, &gb, &slb, &b_w, &b_e);

	printf("  children       %s\n                 %s\n", ka.report,
	       kb.report);
	printf("  %-10s %12s %12s %14s %14s\n", "", "RSS@warm-up", "RSS@end",
	       "growth after", "MiB/minute");
	printf("  %-10s %8.1f MiB %8.1f MiB %10.2f MiB %14.3f\n", "shmckpt",
	       a_w, a_e, ga, sla);
	printf("  %-10s %8.1f MiB %8.1f MiB %10.2f MiB %14.3f\n", "queue", b_w,
	       b_e, gb, slb);
	printf("  shmckpt at the end: anon %.1f MiB, shared (its region) %.1f "
	       "MiB\n", ra[n - 1].anon, ra[n - 1].shmem);
	printf("  goal (BRIEF): shmckpt growth after warm-up <= 1 MiB: %.2f "
	       "MiB, %s; the queue grew %.1f MiB/minute\n", ga,
	       ga <= 1.0 ? "met" : "MISSED", slb);
	if (field(kb.report, "capped") > 0)
		printf("  note: the queue reached --queue-cap and stopped "
		       "growing (%.0f batches dropped by the bench)\n",
		       field(kb.report, "capped"));

	mkdir(res, 0755);
	char csv[2048], png[2048];
	snprintf(csv, sizeof(csv), "%s/memory.csv", res);
	snprintf(png, sizeof(png), "%s/memory.png", res);
	FILE *f = fopen(csv, "w");
	if (!f) {
		fprintf(stderr, "bench_memory: cannot write %s\n", csv);
		return 1;
	}
	fprintf(f, "t_s,rss_shmckpt_mib,rss_queue_mib,shmckpt_anon_mib,"
		   "shmckpt_shmem_mib,queue_anon_mib\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", t[i], ra[i].total,
			rb[i].total, ra[i].anon, ra[i].shmem, rb[i].anon);
	fclose(f);
	printf("  results        %s\n", csv);

	/* the plot: gnuplot is optional (make bench installs gnuplot-nox) */
	snprintf(path, sizeof(path),
		 "gnuplot -e \"csv='%s'; png='%s'; warmup=%g; ga=%g; sla=%g; "
		 "slb=%g; secs=%g; lat='%g-%g s, mean %g s'\" "
		 "perf/plot-memory.gp 2>&1", csv, png, warmup, ga, sla, slb,
		 seconds, mn / 1000, mx / 1000, mean / 1000);
	int plotted = 0;
	if (access("perf/plot-memory.gp", R_OK) != 0)
		printf("  plot           skipped: perf/plot-memory.gp not found "
		       "(run from the repository root)\n");
	else if (system("command -v gnuplot >/dev/null 2>&1") != 0)
		printf("  plot           skipped: no gnuplot (apt-get install "
		       "gnuplot-nox)\n");
	else if (system(path) != 0)
		printf("  plot           gnuplot failed: %s\n", path);
	else {
		plotted = 1;
		printf("  plot           %s\n", png);
	}

	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"memory\",\"seconds\":%.0f,\"warmup_s\":%.0f,"
	       "\"shmckpt_growth_mib\":%.2f,\"shmckpt_mib_per_min\":%.3f,"
	       "\"shmckpt_rss_end_mib\":%.1f,\"queue_mib_per_min\":%.1f,"
	       "\"queue_rss_end_mib\":%.1f,\"shmckpt_refused\":%.0f,"
	       "\"shmckpt_flushes\":%.0f,\"queue_written\":%.0f,"
	       "\"queue_backlog\":%.0f,\"plot\":%s,\"goal_met\":%s}\n",
	       seconds, warmup, ga, sla, a_e, slb, b_e,
	       field(ka.report, "refused"), field(ka.report, "flushes"),
	       field(kb.report, "written"), field(kb.report, "queued"),
	       plotted ? "true" : "false", ga <= 1.0 ? "true" : "false");
	return 0;
}
