/*
 * bench_commit.c - the hot path: one commit of 1 offset + 1 put (16 B key,
 * 16 B value), with a reader draining and releasing on the other core.
 *
 * The writer thread is pinned to CPU 0, the reader to CPU 1 (it releases
 * ring space with ckpt_reader_durable after each batch, as a flusher does).
 * Latency: each of 5 M commits (after 1 M of warm-up) is timed with
 * lfence;rdtsc;lfence on both sides, calibrated against CLOCK_MONOTONIC, and
 * kept in a histogram of TSC ticks.  Throughput: 20 M more commits, untimed,
 * over the wall clock.  Ring 64 MiB.
 *
 * Output: a table, perf/results/commit.csv (the latency histogram), and,
 * last, one JSON line.  The figures include the timer's own cost (printed
 * as "timer overhead"): nothing is subtracted.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"

#define NAME "commit"
#define RING (64ull << 20)
#define WARMUP 1000000ull
#define TIMED 5000000ull
#define UNTIMED 20000000ull
#define HBINS 65536 /* ticks; slower commits go to the last bin (and max) */

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_commit: %s: %s (%s)\n", what, ckpt_strerror(ret),
		ckpt_last_error());
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		fprintf(stderr, "bench_commit: cannot pin to CPU %d; "
				"running unpinned\n", cpu);
}

struct shared {
	const char *dir;
	int64_t target; /* the reader stops after this epoch */
	int64_t read; /* epochs read */
	uint64_t releases;
	int ready;
};

static void *reader(void *arg)
{
	struct shared *sh = arg;
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	int64_t last = 0;
	uint64_t end = 0, released = 0;
	int batch = 0, ret;

	pin(1);
	ret = ckpt_reader_open(sh->dir, NAME, 0, &r);
	if (ret < 0)
		die("reader open", ret);
	__atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
	for (;;) {
		ret = ckpt_reader_next(r, &ep);
		if (ret < 0)
			die("reader_next", ret);
		if (ret > 0) {
			while (ckpt_epoch_next(&ep, &d) == 1)
				; /* a flusher would apply them */
			last = ep.epoch;
			end = ep.end_pos;
			if (++batch < 256)
				continue;
		}
		batch = 0;
		if (end != released) {
			ckpt_reader_durable(r, last, end);
			released = end;
			sh->releases++;
		}
		__atomic_store_n(&sh->read, last, __ATOMIC_RELEASE);
		if (last >= __atomic_load_n(&sh->target, __ATOMIC_ACQUIRE))
			break;
		if (ret == 0) {
			/* caught up: idle a little, as a flusher does
			 * (flush_interval_us), rather than spin on the
			 * producer's commit_pos line and steal it from the
			 * writer at every commit */
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
		}
	}
	ckpt_reader_close(r);
	return NULL;
}

static inline void one_commit(ckpt_stream_t *s, int64_t e, char *key,
			      const char *val)
{
	memcpy(key, &e, sizeof(e));
	if (ckpt_offset(s, "t", 0, e) < 0)
		die("offset", -EAGAIN);
	if (ckpt_put(s, key, 16, val, 16) < 0)
		die("put", -EAGAIN);
	if (ckpt_commit(s) != e)
		die("commit", -EAGAIN);
}

static uint64_t hist[HBINS];

static double pct(uint64_t n, double q, double tick_ns)
{
	uint64_t want = (uint64_t)(q * (double)n), acc = 0;
	for (size_t i = 0; i < HBINS; i++) {
		acc += hist[i];
		if (acc > want)
			return (double)i * tick_ns;
	}
	return (double)(HBINS - 1) * tick_ns;
}

int main(void)
{
	char tmpl[] = "/tmp/shmckpt-bench-commit-XXXXXX";
	const char *res = getenv("CKPT_RESULTS");
	char key[16], val[16], path[512], abs[CKPT_DIR_MAX];
	struct shared sh = { 0 };
	ckpt_stream_t *s;
	ckpt_opts_t o;
	pthread_t th;
	int64_t e = 0;
	int ret;

	if (!res)
		res = "perf/results";
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	sh.dir = tmpl;
	sh.target = INT64_MAX;
	ckpt_opts_init(&o);
	o.ring_size = RING;
	if (getenv("CKPT_BENCH_RING")) /* experiments: another ring size */
		o.ring_size = strtoull(getenv("CKPT_BENCH_RING"), NULL, 0);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 10000;
	ret = ckpt_open(tmpl, NAME, &o, &s);
	if (ret < 0)
		die("open", ret);
	if (pthread_create(&th, NULL, reader, &sh) != 0)
		return 1;
	while (!__atomic_load_n(&sh.ready, __ATOMIC_ACQUIRE))
		sched_yield();
	pin(0);
	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));

	/* calibrate the TSC against CLOCK_MONOTONIC */
	uint64_t n0 = mono_ns(), c0 = tsc();
	struct timespec ts = { 0, 200 * 1000000L };
	nanosleep(&ts, NULL);
	uint64_t n1 = mono_ns(), c1 = tsc();
	double tick_ns = (double)(n1 - n0) / (double)(c1 - c0);

	/* the timer's own cost: an empty timed region */
	uint64_t ovh = UINT64_MAX;
	for (int i = 0; i < 100000; i++) {
		uint64_t a = tsc(), b = tsc();
		if (b - a < ovh)
			ovh = b - a;
	}

	for (uint64_t i = 0; i < WARMUP; i++)
		one_commit(s, ++e, key, val);

	uint64_t maxt = 0;
	for (uint64_t i = 0; i < TIMED; i++) {
		uint64_t t0 = tsc();
		one_commit(s, ++e, key, val);
		uint64_t t = tsc() - t0;
		hist[t < HBINS ? t : HBINS - 1]++;
		if (t > maxt)
			maxt = t;
	}

	uint64_t w0 = mono_ns();
	for (uint64_t i = 0; i < UNTIMED; i++)
		one_commit(s, ++e, key, val);
	uint64_t w1 = mono_ns();
	__atomic_store_n(&sh.target, e, __ATOMIC_RELEASE);
	pthread_join(th, NULL);

	double p50 = pct(TIMED, 0.50, tick_ns), p99 = pct(TIMED, 0.99, tick_ns);
	double p999 = pct(TIMED, 0.999, tick_ns), mx = (double)maxt * tick_ns;
	double cps = (double)UNTIMED / ((double)(w1 - w0) / 1e9);
	ckpt__region_t rg;
	uint64_t bp = 0, wait_ns = 0;
	if (ckpt__absdir(tmpl, abs, sizeof(abs)) == 0 &&
	    ckpt__region_attach(abs, NAME, &rg) == 0) {
		bp = rg.hdr->prod.backpressure_events;
		wait_ns = rg.hdr->prod.wait_ns;
		ckpt__region_unmap(&rg);
	}

	printf("bench commit: 1 offset + 1 put (16 B / 16 B) + commit; ring "
	       "%llu MiB; writer CPU 0, reader CPU 1\n",
	       (unsigned long long)(o.ring_size >> 20));
	printf("  TSC            %.3f GHz (vs CLOCK_MONOTONIC)\n",
	       1.0 / tick_ns);
	printf("  timer overhead %.1f ns (lfence;rdtsc;lfence pair, min; "
	       "included below)\n",
	       (double)ovh * tick_ns);
	printf("  latency over %llu commits (after %llu warm-up):\n",
	       (unsigned long long)TIMED, (unsigned long long)WARMUP);
	printf("    %-8s %10s %10s\n", "", "ns", "goal");
	printf("    %-8s %10.1f %10s\n", "p50", p50, "<= 60");
	printf("    %-8s %10.1f %10s\n", "p99", p99, "<= 300");
	printf("    %-8s %10.1f %10s\n", "p99.9", p999, "");
	printf("    %-8s %10.1f %10s\n", "max", mx, "");
	printf("  throughput     %.2f M commits/s over %llu untimed commits "
	       "(goal >= 5)\n",
	       cps / 1e6, (unsigned long long)UNTIMED);
	printf("  reader         %lld epochs read, %llu releases; writer met "
	       "a full ring %llu times, waited %.1f ms\n",
	       (long long)__atomic_load_n(&sh.read, __ATOMIC_ACQUIRE),
	       (unsigned long long)sh.releases, (unsigned long long)bp,
	       (double)wait_ns / 1e6);

	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/commit.csv", res);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "ticks,ns,count\n");
		for (size_t i = 0; i < HBINS; i++)
			if (hist[i])
				fprintf(f, "%zu,%.2f,%llu\n", i,
					(double)i * tick_ns,
					(unsigned long long)hist[i]);
		fclose(f);
		printf("  histogram      %s\n", path);
	} else {
		fprintf(stderr, "bench_commit: cannot write %s\n", path);
	}

	ckpt_close(s);
	ckpt__region_unlink(abs, NAME);
	snprintf(path, sizeof(path), "%s/%s/lock", tmpl, NAME);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", tmpl, NAME);
	rmdir(path);
	rmdir(tmpl);

	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"commit\",\"p50_ns\":%.1f,\"p99_ns\":%.1f,"
	       "\"p999_ns\":%.1f,\"max_ns\":%.1f,\"commits_per_s\":%.0f}\n",
	       p50, p99, p999, mx, cps);
	return 0;
}
