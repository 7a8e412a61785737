/*
 * bench_compare.c - commit latency and throughput of shmckpt against what
 * users run today, same workload, same run, same timer.
 *
 * Workloads (one "commit" = one batch's checkpoint):
 *   b1    1 offset + 1 put (16 B key, 16 B value)
 *   b100  1 offset + 100 puts (16 B / 16 B)
 * Keys cycle over a fixed key space (1024 keys for b1, 4096 for b100), so
 * the state, and with it every snapshot, stays the same size.
 *
 * Methods:
 *   shmckpt      ckpt_offset + ckpt_put... + ckpt_commit, the in-process
 *                flusher writing snapshots to the same disk meanwhile
 *                (CKPT_FLUSHER_THREAD, backend AUTO, ring 64 MiB,
 *                CKPT_FULL_WAIT: a full ring shows up as latency here).
 *   fdatasync    serialize the batch, pwrite it in place into a
 *                preallocated file, fdatasync.
 *   rename       serialize, write a tmp file, fsync, close, rename over the
 *                checkpoint, fsync the directory (Kafka Streams'
 *                .checkpoint, Structured Streaming's offset log).
 *   kafka_sync   rd_kafka_commit(sync) of the one offset to the group
 *                coordinator of librdkafka's mock cluster (a Kafka-protocol
 *                broker on loopback, in this process); the batch's puts
 *                travel as the offset's commit metadata, so one round trip
 *                carries what shmckpt's commit carries.
 *   kafka_async  rd_kafka_commit(async): latency of the call; the acks are
 *                counted by offset_commit_cb (durable/s = acks/s) with at
 *                most 1000 commits outstanding.
 *   queue        Spark Streaming's CheckpointWriter: the batch thread
 *                serializes and appends to an unbounded queue; one writer
 *                thread pwrites + fdatasyncs each entry.  Latency is the
 *                enqueue; durable/s the writer's rate; what is left in the
 *                queue at the end is printed (bench-memory shows where that
 *                leads).
 * The file baselines write only the batch's own bytes (an 24 B header +
 * 40 B per put): the least they could write.  shmckpt's flusher writes the
 * whole snapshot.
 *
 * Timing: lfence;rdtsc;lfence around each commit (calibrated against
 * CLOCK_MONOTONIC), its own cost included.  shmckpt: warm-up, then timed
 * commits back to back, then an untimed run for calls/s; durable/s is the
 * epochs of that run over the time until the last is durable.  The others
 * run for --seconds each (default 10; CKPT_BENCH_SECONDS).
 *
 * Directory: CKPT_BENCH_DIR, else $TMPDIR, /var/tmp, /tmp: the first that
 * is not tmpfs (a real disk); its file system type is printed.
 *
 * Output: a table per workload, perf/results/compare.csv (one row per
 * workload and method), and, last, one JSON line with the key ratios
 * (method p50 / shmckpt p50): vs_fdatasync, vs_kafka_sync (goals >= 1000
 * and >= 500, BRIEF) and the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"

#define NAME "compare"
#define KAFKA_WINDOW 1000 /* async commits outstanding at most */
#define ACK_RING 65536 /* send stamps of async commits, by offset */

static double tick_ns = 1.0;

static void __attribute__((noreturn)) die(const char *what, int ret)
{
	fprintf(stderr, "bench_compare: %s: %s (%s)\n", what,
		ckpt_strerror(ret), ckpt_last_error());
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	if (cpu >= 0)
		CPU_SET(cpu, &set);
	else
		for (long i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* ------------------------------------------------------------------------
 * Samples and results
 * ------------------------------------------------------------------------ */

struct lat {
	uint64_t *v; /* ticks */
	size_t n, cap;
};

static void lat_init(struct lat *l, size_t cap)
{
	l->v = malloc(cap * sizeof(*l->v));
	if (!l->v)
		die("malloc samples", -ENOMEM);
	l->n = 0;
	l->cap = cap;
}

static inline void lat_add(struct lat *l, uint64_t t)
{
	if (l->n < l->cap)
		l->v[l->n++] = t;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct result {
	const char *workload, *method;
	size_t n;
	double p50, p90, p99, p999, max; /* ns */
	double calls_per_s, durable_per_s;
	char note[256];
};

#define MAX_RESULTS 16
static struct result results[MAX_RESULTS];
static int nresults;

static double quant_ns(const struct lat *l, double q)
{
	size_t i = (size_t)(q * (double)l->n);
	if (l->n == 0)
		return 0;
	return (double)l->v[i < l->n ? i : l->n - 1] * tick_ns;
}

static struct result *finish(struct lat *l, const char *workload,
			     const char *method)
{
	struct result *r = &results[nresults++];

	qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
	memset(r, 0, sizeof(*r));
	r->workload = workload;
	r->method = method;
	r->n = l->n;
	r->p50 = quant_ns(l, 0.50);
	r->p90 = quant_ns(l, 0.90);
	r->p99 = quant_ns(l, 0.99);
	r->p999 = quant_ns(l, 0.999);
	r->max = l->n ? (double)l->v[l->n - 1] * tick_ns : 0;
	free(l->v);
	l->v = NULL;
	return r;
}

static const struct result *find(const char *workload, const char *method)
{
	for (int i = 0; i < nresults; i++)
		if (!strcmp(results[i].workload, workload) &&
		    !strcmp(results[i].method, method))
			return &results[i];
	return NULL;
}

static const char *fmt_ns(char *buf, size_t n, double ns)
{
	if (ns < 1e4)
		snprintf(buf, n, "%.0f ns", ns);
	else if (ns < 1e7)
		snprintf(buf, n, "%.1f us", ns / 1e3);
	else
		snprintf(buf, n, "%.1f ms", ns / 1e6);
	return buf;
}

/* ------------------------------------------------------------------------
 * The workload
 * ------------------------------------------------------------------------ */

struct workload {
	const char *name, *what;
	int puts; /* per commit */
	uint64_t keyspace;
	/* shmckpt */
	uint64_t warmup, timed, untimed;
	/* queue */
	uint64_t queue_commits;
};

static const struct workload workloads[] = {
	{ "b1", "1 offset + 1 put (16 B / 16 B) per commit", 1, 1024, 200000,
	  2000000, 10000000, 200000 },
	{ "b100", "1 offset + 100 puts (16 B / 16 B) per commit", 100, 4096,
	  20000, 200000, 1000000, 20000 },
};

static inline void make_key(unsigned char *key, uint64_t k)
{
	memcpy(key, &k, 8);
	memset(key + 8, 'k', 8);
}

static inline void make_val(unsigned char *val, uint64_t e)
{
	memcpy(val, &e, 8);
	memset(val + 8, 'v', 8);
}

/* The batch's own bytes, as a file baseline or a Kafka commit carries
 * them: epoch, next offset, count, then per put klen, key, vlen, value. */
static size_t serialize(unsigned char *buf, const struct workload *w,
			uint64_t e)
{
	unsigned char *p = buf;
	uint32_t n = (uint32_t)w->puts, kl = 16, vl = 16;

	memcpy(p, &e, 8);
	p += 8;
	memcpy(p, &e, 8); /* next offset */
	p += 8;
	memcpy(p, &n, 4);
	p += 4;
	memset(p, 0, 4);
	p += 4;
	for (int i = 0; i < w->puts; i++) {
		memcpy(p, &kl, 4);
		make_key(p + 4, (e * (uint64_t)w->puts + (uint64_t)i) %
					w->keyspace);
		memcpy(p + 20, &vl, 4);
		make_val(p + 24, e);
		p += 40;
	}
	return (size_t)(p - buf);
}

static size_t serialized_max(const struct workload *w)
{
	return 24 + 40 * (size_t)w->puts;
}

/* ------------------------------------------------------------------------
 * shmckpt
 * ------------------------------------------------------------------------ */

static inline void shm_commit(ckpt_stream_t *s, const struct workload *w,
			      int64_t e, unsigned char *key, unsigned char *val)
{
	int ret = ckpt_offset(s, "t", 0, e);

	if (ret < 0)
		die("ckpt_offset", ret);
	make_val(val, (uint64_t)e);
	for (int i = 0; i < w->puts; i++) {
		make_key(key, ((uint64_t)e * (uint64_t)w->puts + (uint64_t)i) %
				      w->keyspace);
		ret = ckpt_put(s, key, 16, val, 16);
		if (ret < 0)
			die("ckpt_put", ret);
	}
	int64_t got = ckpt_commit(s);
	if (got != e)
		die("ckpt_commit", (int)got);
}

static void run_shmckpt(const struct workload *w, const char *dir)
{
	unsigned char key[16], val[16];
	char sname[64];
	ckpt_stream_t *s;
	ckpt_status_t st;
	ckpt_opts_t o;
	struct lat l;
	int64_t e = 0;
	int ret;

	snprintf(sname, sizeof(sname), "cmp-%s", w->name);
	ckpt_opts_init(&o);
	o.ring_size = 64ull << 20;
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 30000;
	o.flags = CKPT_O_RESET;
	ret = ckpt_open(dir, sname, &o, &s);
	if (ret < 0)
		die("ckpt_open", ret);
	/* the flusher thread exists now, with the default affinity; keep
	 * the committing thread on CPU 0 so the flusher gets the other */
	pin(0);
	for (uint64_t i = 0; i < w->warmup; i++)
		shm_commit(s, w, ++e, key, val);
	lat_init(&l, w->timed);
	for (uint64_t i = 0; i < w->timed; i++) {
		uint64_t t0 = tsc();
		shm_commit(s, w, ++e, key, val);
		lat_add(&l, tsc() - t0);
	}
	int64_t first = e;
	uint64_t w0 = mono_ns();
	for (uint64_t i = 0; i < w->untimed; i++)
		shm_commit(s, w, ++e, key, val);
	uint64_t w1 = mono_ns();
	ret = ckpt_wait_durable(s, e, 60000);
	uint64_t w2 = mono_ns();
	if (ret < 0)
		die("ckpt_wait_durable", ret);
	ckpt_status(s, &st);
	pin(-1);

	struct result *r = finish(&l, w->name, "shmckpt");
	r->calls_per_s = (double)w->untimed / ((double)(w1 - w0) / 1e9);
	r->durable_per_s = (double)(e - first) / ((double)(w2 - w0) / 1e9);
	snprintf(r->note, sizeof(r->note),
		 "backend %s; %llu flushes for %lld epochs; ring full %llu "
		 "times", st.backend, (unsigned long long)st.flushes,
		 (long long)e, (unsigned long long)st.backpressure_events);

	ret = ckpt_close(s);
	if (ret < 0)
		die("ckpt_close", ret);
	char abs[CKPT_DIR_MAX];
	if (ckpt__absdir(dir, abs, sizeof(abs)) == 0)
		ckpt__region_unlink(abs, sname);
}

/* ------------------------------------------------------------------------
 * File baselines
 * ------------------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n, off_t off)
{
	const unsigned char *b = p;

	while (n) {
		ssize_t r = off >= 0 ? pwrite(fd, b, n, off) : write(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		b += r;
		n -= (size_t)r;
		if (off >= 0)
			off += r;
	}
	return 0;
}

/* A preallocated file: zeros written and fsync'd once, then overwritten in
 * place, as shmckpt's slots are. */
static int prealloc(const char *path, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	void *z = calloc(1, len);

	if (fd < 0 || !z || write_all(fd, z, len, 0) < 0 || fsync(fd) < 0)
		die("preallocate a file", -errno);
	free(z);
	return fd;
}

static void run_fdatasync(const struct workload *w, const char *dir,
			  double seconds)
{
	char path[4200];
	unsigned char *buf = malloc(serialized_max(w));
	struct lat l;
	uint64_t e = 0;

	snprintf(path, sizeof(path), "%s/inplace-%s", dir, w->name);
	int fd = prealloc(path, 1 << 20);
	lat_init(&l, 2000000);
	uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), w0 = mono_ns();
	while (mono_ns() < end) {
		uint64_t t0 = tsc();
		size_t n = serialize(buf, w, ++e);
		if (write_all(fd, buf, n, 0) < 0 || fdatasync(fd) < 0)
			die("write + fdatasync", -errno);
		lat_add(&l, tsc() - t0);
	}
	double el = (double)(mono_ns() - w0) / 1e9;
	close(fd);
	unlink(path);
	free(buf);
	struct result *r = finish(&l, w->name, "fdatasync");
	r->calls_per_s = r->durable_per_s = (double)e / el;
	snprintf(r->note, sizeof(r->note), "pwrite %zu B at offset 0 + "
		 "fdatasync", serialized_max(w));
}

static void run_rename(const struct workload *w, const char *dir,
		       double seconds)
{
	char tmp[4200], dst[4200];
	unsigned char *buf = malloc(serialized_max(w));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct lat l;
	uint64_t e = 0;

	if (dfd < 0 || !buf)
		die("open dir", -errno);
	snprintf(tmp, sizeof(tmp), "%s/.checkpoint-%s.tmp", dir, w->name);
	snprintf(dst, sizeof(dst), "%s/.checkpoint-%s", dir, w->name);
	lat_init(&l, 2000000);
	uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), w0 = mono_ns();
	while (mono_ns() < end) {
		uint64_t t0 = tsc();
		size_t n = serialize(buf, w, ++e);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0600);
		if (fd < 0 || write_all(fd, buf, n, -1) < 0 || fsync(fd) < 0 ||
		    close(fd) < 0 || rename(tmp, dst) < 0 || fsync(dfd) < 0)
			die("tmp + fsync + rename + dir fsync", -errno);
		lat_add(&l, tsc() - t0);
	}
	double el = (double)(mono_ns() - w0) / 1e9;
	close(dfd);
	unlink(dst);
	free(buf);
	struct result *r = finish(&l, w->name, "rename");
	r->calls_per_s = r->durable_per_s = (double)e / el;
	snprintf(r->note, sizeof(r->note), "write %zu B to a tmp file, fsync, "
		 "rename, fsync dir", serialized_max(w));
}

/* ------------------------------------------------------------------------
 * Spark Streaming's CheckpointWriter: a queue per batch, one writer
 * ------------------------------------------------------------------------ */

struct qitem {
	struct qitem *next;
	size_t len;
	unsigned char data[];
};

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qitem *head, *tail;
	size_t depth, bytes;
	int stop;
	int fd;
	uint64_t written;
	uint64_t last_ns; /* when the newest write completed */
};

static void *queue_writer(void *arg)
{
	struct queue *q = arg;

	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->stop) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		struct qitem *it = q->head;
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
		q->depth--;
		q->bytes -= it->len;
		pthread_mutex_unlock(&q->mu);
		if (write_all(q->fd, it->data, it->len, 0) < 0 ||
		    fdatasync(q->fd) < 0)
			die("queue writer: write + fdatasync", -errno);
		free(it);
		__atomic_store_n(&q->last_ns, mono_ns(), __ATOMIC_RELAXED);
		__atomic_add_fetch(&q->written, 1, __ATOMIC_RELAXED);
	}
}

static void run_queue(const struct workload *w, const char *dir,
		      double seconds)
{
	char path[4200];
	struct queue q = { .mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER };
	pthread_t th;
	struct lat l;
	uint64_t e = 0;

	snprintf(path, sizeof(path), "%s/queue-%s", dir, w->name);
	q.fd = prealloc(path, 1 << 20);
	if (pthread_create(&th, NULL, queue_writer, &q) != 0)
		die("pthread_create", -EAGAIN);
	lat_init(&l, w->queue_commits);
	uint64_t w0 = mono_ns();
	for (uint64_t i = 0; i < w->queue_commits; i++) {
		uint64_t t0 = tsc();
		struct qitem *it = malloc(sizeof(*it) + serialized_max(w));
		if (!it)
			die("malloc", -ENOMEM);
		it->len = serialize(it->data, w, ++e);
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
		lat_add(&l, tsc() - t0);
	}
	uint64_t w1 = mono_ns();
	/* let the writer work for the same time as the other baselines */
	struct timespec ts = { (time_t)seconds,
			       (long)((seconds - (double)(time_t)seconds) *
				      1e9) };
	nanosleep(&ts, NULL);
	pthread_mutex_lock(&q.mu);
	q.stop = 1;
	size_t depth = q.depth, bytes = q.bytes;
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
	pthread_join(th, NULL);
	uint64_t w2 = mono_ns();
	while (q.head) {
		struct qitem *it = q.head;
		q.head = it->next;
		free(it);
	}
	close(q.fd);
	unlink(path);

	struct result *r = finish(&l, w->name, "queue");
	r->calls_per_s = (double)w->queue_commits / ((double)(w1 - w0) / 1e9);
	/* over the writer's busy time: it may have emptied the queue early */
	uint64_t busy = q.depth ? w2 - w0 : (q.last_ns > w0 ? q.last_ns - w0
							     : w2 - w0);
	r->durable_per_s = (double)q.written / ((double)busy / 1e9);
	snprintf(r->note, sizeof(r->note),
		 "%llu enqueued, %llu written in %.1f s; %zu left queued "
		 "(%.1f MiB of data)", (unsigned long long)w->queue_commits,
		 (unsigned long long)q.written, (double)(w2 - w0) / 1e9, depth,
		 (double)bytes / 1048576.0);
}

/* ------------------------------------------------------------------------
 * Kafka: librdkafka's mock cluster and a consumer in a group
 * ------------------------------------------------------------------------ */

struct kafka {
	rd_kafka_t *host; /* owns the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_t *rk; /* the consumer */
	char bootstrap[64];
	/* async acks */
	uint64_t *sent; /* [offset % ACK_RING] send stamp */
	struct lat ack;
	uint64_t acked, ack_errors, base;
	int last_err;
};

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			     rd_kafka_topic_partition_list_t *offsets,
			     void *opaque)
{
	struct kafka *k = opaque;
	uint64_t now = tsc();

	(void)rk;
	if (!k->sent || !offsets || offsets->cnt < 1 ||
	    offsets->elems[0].offset < (int64_t)k->base)
		return; /* a sync commit: rd_kafka_commit returned its error */
	if (err || offsets->elems[0].err) {
		k->ack_errors++;
		k->last_err = err ? err : offsets->elems[0].err;
		k->acked++;
		return;
	}
	int64_t off = offsets->elems[0].offset;
	lat_add(&k->ack, now - k->sent[(uint64_t)off % ACK_RING]);
	k->acked++;
}

static void kconf(rd_kafka_conf_t *c, const char *name, const char *val)
{
	char es[512];

	if (rd_kafka_conf_set(c, name, val, es, sizeof(es)) !=
	    RD_KAFKA_CONF_OK) {
		fprintf(stderr, "bench_compare: kafka conf %s=%s: %s\n", name,
			val, es);
		exit(1);
	}
}

static void kafka_start(struct kafka *k)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	char es[512];

	memset(k, 0, sizeof(*k));
	kconf(c, "log_level", "3");
	k->host = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof(es));
	if (!k->host) {
		fprintf(stderr, "bench_compare: rd_kafka_new: %s\n", es);
		exit(1);
	}
	k->mc = rd_kafka_mock_cluster_new(k->host, 1);
	if (!k->mc) {
		fprintf(stderr, "bench_compare: mock cluster did not start\n");
		exit(1);
	}
	snprintf(k->bootstrap, sizeof(k->bootstrap), "%s",
		 rd_kafka_mock_cluster_bootstraps(k->mc));
	if (rd_kafka_mock_topic_create(k->mc, "t", 1, 1)) {
		fprintf(stderr, "bench_compare: create topic failed\n");
		exit(1);
	}

	c = rd_kafka_conf_new();
	kconf(c, "bootstrap.servers", k->bootstrap);
	kconf(c, "group.id", "bench-compare");
	kconf(c, "enable.auto.commit", "false");
	kconf(c, "enable.auto.offset.store", "false");
	kconf(c, "auto.offset.reset", "earliest");
	kconf(c, "log_level", "3");
	rd_kafka_conf_set_offset_commit_cb(c, offset_commit_cb);
	rd_kafka_conf_set_opaque(c, k);
	k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, es, sizeof(es));
	if (!k->rk) {
		fprintf(stderr, "bench_compare: consumer: %s\n", es);
		exit(1);
	}
	rd_kafka_poll_set_consumer(k->rk);
	rd_kafka_topic_partition_list_t *sub =
		rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, "t", RD_KAFKA_PARTITION_UA);
	if (rd_kafka_subscribe(k->rk, sub)) {
		fprintf(stderr, "bench_compare: subscribe failed\n");
		exit(1);
	}
	rd_kafka_topic_partition_list_destroy(sub);

	/* wait for the group to assign us the partition */
	uint64_t deadline = mono_ns() + 60000000000ull;
	for (;;) {
		rd_kafka_topic_partition_list_t *a = NULL;
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 100);
		if (m)
			rd_kafka_message_destroy(m);
		if (rd_kafka_assignment(k->rk, &a) == 0 && a) {
			int cnt = a->cnt;
			rd_kafka_topic_partition_list_destroy(a);
			if (cnt > 0)
				break;
		}
		if (mono_ns() > deadline) {
			fprintf(stderr, "bench_compare: no partition assigned "
					"within 60 s\n");
			exit(1);
		}
	}
}

static void kafka_stop(struct kafka *k)
{
	rd_kafka_consumer_close(k->rk);
	rd_kafka_destroy(k->rk);
	rd_kafka_mock_cluster_destroy(k->mc);
	rd_kafka_destroy(k->host);
}

/* One offset, the batch's bytes as its commit metadata. */
static rd_kafka_topic_partition_list_t *kafka_list(const struct workload *w)
{
	rd_kafka_topic_partition_list_t *l =
		rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_t *p =
		rd_kafka_topic_partition_list_add(l, "t", 0);

	p->metadata = malloc(serialized_max(w));
	if (!p->metadata)
		die("malloc", -ENOMEM);
	p->metadata_size = 0;
	return l;
}

static void run_kafka_sync(struct kafka *k, const struct workload *w,
			   double seconds)
{
	rd_kafka_topic_partition_list_t *l = kafka_list(w);
	rd_kafka_topic_partition_t *p = &l->elems[0];
	struct lat lt;
	uint64_t e = 0;

	k->sent = NULL;
	lat_init(&lt, 2000000);
	uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), w0 = mono_ns();
	while (mono_ns() < end) {
		uint64_t t0 = tsc();
		p->metadata_size = serialize(p->metadata, w, ++e);
		p->offset = (int64_t)e;
		rd_kafka_resp_err_t err = rd_kafka_commit(k->rk, l, 0);
		if (err) {
			fprintf(stderr, "bench_compare: sync commit: %s\n",
				rd_kafka_err2str(err));
			exit(1);
		}
		lat_add(&lt, tsc() - t0);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
		if (m)
			rd_kafka_message_destroy(m);
	}
	double el = (double)(mono_ns() - w0) / 1e9;
	rd_kafka_topic_partition_list_destroy(l);
	struct result *r = finish(&lt, w->name, "kafka_sync");
	r->calls_per_s = r->durable_per_s = (double)e / el;
	snprintf(r->note, sizeof(r->note), "rd_kafka_commit(sync), %zu B of "
		 "commit metadata, mock broker on %s", serialized_max(w),
		 k->bootstrap);
}

static void run_kafka_async(struct kafka *k, const struct workload *w,
			    double seconds)
{
	rd_kafka_topic_partition_list_t *l = kafka_list(w);
	rd_kafka_topic_partition_t *p = &l->elems[0];
	struct lat lt;
	uint64_t e = 0;

	k->sent = calloc(ACK_RING, sizeof(*k->sent));
	if (!k->sent)
		die("calloc", -ENOMEM);
	k->acked = k->ack_errors = 0;
	lat_init(&lt, 4000000);
	lat_init(&k->ack, 4000000);
	/* serve what the sync run left, then number above it */
	for (int i = 0; i < 10; i++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 1);
		if (m)
			rd_kafka_message_destroy(m);
	}
	uint64_t base = k->base = 100000000ull * (uint64_t)w->puts;
	uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), w0 = mono_ns();
	while (mono_ns() < end) {
		while (e - k->acked >= KAFKA_WINDOW) {
			rd_kafka_message_t *m =
				rd_kafka_consumer_poll(k->rk, 1);
			if (m)
				rd_kafka_message_destroy(m);
		}
		uint64_t t0 = tsc();
		p->metadata_size = serialize(p->metadata, w, ++e);
		p->offset = (int64_t)(base + e);
		k->sent[(base + e) % ACK_RING] = t0;
		rd_kafka_resp_err_t err = rd_kafka_commit(k->rk, l, 1);
		if (err) {
			fprintf(stderr, "bench_compare: async commit: %s\n",
				rd_kafka_err2str(err));
			exit(1);
		}
		lat_add(&lt, tsc() - t0);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
		if (m)
			rd_kafka_message_destroy(m);
	}
	uint64_t deadline = mono_ns() + 30000000000ull;
	while (k->acked < e && mono_ns() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 10);
		if (m)
			rd_kafka_message_destroy(m);
	}
	double el = (double)(mono_ns() - w0) / 1e9;
	rd_kafka_topic_partition_list_destroy(l);
	if (k->ack_errors)
		fprintf(stderr, "bench_compare: %llu async commits failed "
			"(last: %s)\n", (unsigned long long)k->ack_errors,
			rd_kafka_err2str(k->last_err));
	struct lat ack = k->ack;
	k->ack.v = NULL;
	uint64_t acked = k->acked;
	free(k->sent);
	k->sent = NULL;
	qsort(ack.v, ack.n, sizeof(*ack.v), cmp_u64);
	double a50 = quant_ns(&ack, 0.5), a99 = quant_ns(&ack, 0.99);
	free(ack.v);
	struct result *r = finish(&lt, w->name, "kafka_async");
	r->calls_per_s = (double)e / el;
	r->durable_per_s = (double)(acked - k->ack_errors) / el;
	snprintf(r->note, sizeof(r->note), "call only; ack p50 %.1f us, p99 "
		 "%.1f us; <= %d outstanding", a50 / 1e3, a99 / 1e3,
		 KAFKA_WINDOW);
}

/* ------------------------------------------------------------------------ */

static void print_table(const struct workload *w)
{
	const struct result *base = find(w->name, "shmckpt");
	char a[32], b[32], c[32], d[32];

	printf("\n%s: %s\n", w->name, w->what);
	printf("  %-12s %9s %10s %10s %10s %10s %12s %12s %11s\n", "method",
	       "n", "p50", "p99", "p99.9", "max", "calls/s", "durable/s",
	       "p50 ratio");
	for (int i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		if (strcmp(r->workload, w->name))
			continue;
		double rt = base && base->p50 > 0 ? r->p50 / base->p50 : 0;
		printf("  %-12s %9zu %10s %10s %10s %10s %12.0f %12.0f %10.*fx\n",
		       r->method, r->n, fmt_ns(a, sizeof(a), r->p50),
		       fmt_ns(b, sizeof(b), r->p99),
		       fmt_ns(c, sizeof(c), r->p999),
		       fmt_ns(d, sizeof(d), r->max), r->calls_per_s,
		       r->durable_per_s, rt < 10 ? 1 : 0, rt);
	}
	for (int i = 0; i < nresults; i++)
		if (!strcmp(results[i].workload, w->name) && results[i].note[0])
			printf("    %-12s %s\n", results[i].method,
			       results[i].note);
}

static double ratio(const char *wl, const char *method)
{
	const struct result *b = find(wl, "shmckpt"), *r = find(wl, method);
	return b && r && b->p50 > 0 ? r->p50 / b->p50 : 0;
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	double seconds = getenv("CKPT_BENCH_SECONDS") ?
				 atof(getenv("CKPT_BENCH_SECONDS")) : 10;
	char dir[4096], path[4200];
	struct statfs sf;
	struct kafka k;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_compare [--seconds S]  "
					"(per baseline and workload; default 10;"
					" env CKPT_BENCH_SECONDS, "
					"CKPT_BENCH_DIR, CKPT_RESULTS)\n");
			return 2;
		}
	}
	if (seconds <= 0)
		seconds = 10;

	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-compare-XXXXXX",
		 pick_base());
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	if (statfs(dir, &sf) != 0)
		die("statfs", -errno);

	/* calibrate the TSC against CLOCK_MONOTONIC */
	uint64_t n0 = mono_ns(), c0 = tsc();
	struct timespec ts = { 0, 200 * 1000000L };
	nanosleep(&ts, NULL);
	uint64_t n1 = mono_ns(), c1 = tsc();
	tick_ns = (double)(n1 - n0) / (double)(c1 - c0);
	uint64_t ovh = UINT64_MAX;
	for (int i = 0; i < 100000; i++) {
		uint64_t a = tsc(), b = tsc();
		if (b - a < ovh)
			ovh = b - a;
	}

	printf("bench compare: commit latency per batch, shmckpt against "
	       "today's ways, one run\n");
	printf("  directory      %s (%s)\n", dir, fs_name((long)sf.f_type));
	printf("  timer          lfence;rdtsc;lfence, %.3f GHz, overhead "
	       "%.1f ns (included)\n", 1.0 / tick_ns, (double)ovh * tick_ns);
	printf("  baselines      %.1f s each per workload\n", seconds);
	fflush(stdout);

	size_t nw = sizeof(workloads) / sizeof(workloads[0]);
	uint64_t t_start = mono_ns();
	for (size_t i = 0; i < nw; i++) {
		run_shmckpt(&workloads[i], dir);
		run_fdatasync(&workloads[i], dir, seconds);
		run_rename(&workloads[i], dir, seconds);
		run_queue(&workloads[i], dir, seconds / 2);
	}
	kafka_start(&k);
	for (size_t i = 0; i < nw; i++) {
		run_kafka_sync(&k, &workloads[i], seconds);
		run_kafka_async(&k, &workloads[i], seconds / 2);
	}
	kafka_stop(&k);

	for (size_t i = 0; i < nw; i++)
		print_table(&workloads[i]);
	printf("\n  ratio = method p50 / shmckpt p50 in the same workload; "
	       "calls/s: commit calls returned per second; durable/s: batches"
	       " on disk (or acked by the broker) per second\n");

	double vf = ratio("b1", "fdatasync"), vk = ratio("b1", "kafka_sync");
	printf("  goals (BRIEF): p50 >= 1000x lower than write+fdatasync: "
	       "%.0fx, %s; >= 500x lower than a sync Kafka commit: %.0fx, "
	       "%s\n", vf, vf >= 1000 ? "met" : "MISSED", vk,
	       vk >= 500 ? "met" : "MISSED");
	printf("  run took %.0f s\n", (double)(mono_ns() - t_start) / 1e9);

	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/compare.csv", res);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "workload,method,n,p50_ns,p90_ns,p99_ns,p999_ns,"
			   "max_ns,calls_per_s,durable_per_s,p50_ratio,fs\n");
		for (int i = 0; i < nresults; i++) {
			const struct result *r = &results[i];
			fprintf(f, "%s,%s,%zu,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,"
				   "%.1f,%.2f,%s\n", r->workload, r->method,
				r->n, r->p50, r->p90, r->p99, r->p999, r->max,
				r->calls_per_s, r->durable_per_s,
				ratio(r->workload, r->method),
				fs_name((long)sf.f_type));
		}
		fclose(f);
		printf("  results        %s\n", path);
	} else {
		fprintf(stderr, "bench_compare: cannot write %s\n", path);
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	const struct result *s1 = find("b1", "shmckpt");
	const struct result *s100 = find("b100", "shmckpt");
	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"compare\",\"fs\":\"%s\","
	       "\"shmckpt_p50_ns\":%.1f,\"shmckpt_p99_ns\":%.1f,"
	       "\"shmckpt_commits_per_s\":%.0f,"
	       "\"fdatasync_p50_ns\":%.0f,\"rename_p50_ns\":%.0f,"
	       "\"kafka_sync_p50_ns\":%.0f,\"kafka_async_p50_ns\":%.0f,"
	       "\"queue_p50_ns\":%.0f,"
	       "\"vs_fdatasync\":%.0f,\"vs_rename\":%.0f,"
	       "\"vs_kafka_sync\":%.0f,\"vs_kafka_async\":%.1f,"
	       "\"vs_queue\":%.1f,\"b100_shmckpt_p50_ns\":%.1f,"
	       "\"b100_vs_fdatasync\":%.0f,\"b100_vs_kafka_sync\":%.0f,"
	       "\"goal_fdatasync_met\":%s,\"goal_kafka_met\":%s}\n",
	       fs_name((long)sf.f_type), s1 ? s1->p50 : 0, s1 ? s1->p99 : 0,
	       s1 ? s1->calls_per_s : 0,
	       find("b1", "fdatasync") ? find("b1", "fdatasync")->p50 : 0,
	       find("b1", "rename") ? find("b1", "rename")->p50 : 0,
	       find("b1", "kafka_sync") ? find("b1", "kafka_sync")->p50 : 0,
	       find("b1", "kafka_async") ? find("b1", "kafka_async")->p50 : 0,
	       find("b1", "queue") ? find("b1", "queue")->p50 : 0, vf,
	       ratio("b1", "rename"), vk, ratio("b1", "kafka_async"),
	       ratio("b1", "queue"), s100 ? s100->p50 : 0,
	       ratio("b100", "fdatasync"), ratio("b100", "kafka_sync"),
	       vf >= 1000 ? "true" : "false", vk >= 500 ? "true" : "false");
	return 0;
}
