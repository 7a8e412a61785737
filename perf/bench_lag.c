/*
 * bench_lag.c - durable lag under slow storage: how long after its commit
 * an epoch becomes durable, when every write takes a latency drawn from a
 * heavy-tailed distribution (the fault backend, iouring/fault.h).
 *
 * One stream, the in-process flusher (CKPT_FLUSHER_THREAD, backend AUTO),
 * its fault plan injecting write latency.  The main thread commits one
 * epoch (1 offset + 1 put, 16 B key / 16 B value) on every 1 ms tick
 * (absolute deadlines; a missed tick is skipped, not made up in a burst)
 * and records when each commit returned.  A poller thread reads
 * ckpt_durable_epoch every 100 us and stamps every epoch that became
 * durable since its last look.  lag = durable time - commit time.  Epochs
 * of the first second are warm-up and left out of the figures (they are in
 * the CSV).  After the last commit, ckpt_wait_durable waits for it.
 *
 * Latency plans (milliseconds: min, max, mean of a shifted exponential
 * clipped at max, as iouring/fault.h draws it):
 *   default   25, 500, 65      the brief's distribution scaled by 1/40;
 *                              40 s of commits (~600 writes)
 *   --slow    1000, 20000, 2600 the brief's (S3 as users saw it); 600 s
 *   --lat MIN,MAX,MEAN and --seconds S override either.
 *   (env: CKPT_BENCH_SLOW=1, CKPT_BENCH_LAT=MIN,MAX,MEAN,
 *   CKPT_BENCH_SECONDS, CKPT_RESULTS, CKPT_BENCH_DIR)
 *
 * Write latency.  The fault backend draws op n's latency as the n-th
 * sample of a generator seeded by plan.seed (nothing else draws from it
 * when no torn write is planned), so replaying the sampler for the
 * stats.ops ops the flusher submitted gives the exact injected latency of
 * every write: write_ms_mean/p99 are those.  The real write + fdatasync
 * comes on top; flush_ms_mean is the measured time between two advances of
 * the durable epoch, i.e. one whole flush cycle as the consumer sees it.
 *
 * Goal (BRIEF): lag p99 <= one write latency + one flush.  Checked as
 * lag_p99 <= write_ms_p99 + flush_ms_mean (and printed against the plan's
 * max too).  Why that is the bound: an epoch committed while write k is in
 * flight waits for the rest of write k, then for write k+1 that carries it.
 *
 * Output: a summary, perf/results/lag.csv (epoch,commit_ms,durable_ms,
 * lag_ms,warmup; times from the first commit) and, last, one JSON line.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "benchutil.h"
#include "shmckpt.h"

#define NAME "lag"
#define TICK_NS 1000000ull /* one commit per ms */
#define POLL_NS 100000L /* the poller's period */
#define WARMUP_NS 1000000000ull

static void die(const char *what, int64_t ret)
{
	fprintf(stderr, "bench_lag: %s: %s (%s)\n", what,
		ckpt_strerror((int)ret), ckpt_last_error());
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_lag [--slow] [--lat MIN_MS,MAX_MS,MEAN_MS] "
		"[--seconds S]\n"
		"  default: --lat 25,500,65 --seconds 40; --slow: the brief's "
		"1000,20000,2600 for 600 s\n"
		"  (env CKPT_BENCH_SLOW=1, CKPT_BENCH_LAT, CKPT_BENCH_SECONDS, "
		"CKPT_RESULTS, CKPT_BENCH_DIR)\n");
	exit(2);
}

static int parse_lat(const char *s, double *mn, double *mx, double *mean)
{
	return sscanf(s, "%lf,%lf,%lf", mn, mx, mean) == 3 && *mn >= 0 &&
			       *mx > *mn && *mean > *mn && *mean < *mx ?
		       0 :
		       -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* q-quantile of a sorted array (nearest rank). */
static uint64_t quant(const uint64_t *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(q * (double)n);
	return v[i < n ? i : n - 1];
}

struct poll_ctx {
	ckpt_stream_t *s;
	uint64_t *durable_ns; /* [epoch - 1] */
	size_t cap;
	int64_t target; /* stop once this epoch is durable (0: not set) */
	int stop;
	int64_t seen;
	uint64_t advances;
};

static void *poller(void *arg)
{
	struct poll_ctx *pc = arg;
	struct timespec ts = { 0, POLL_NS };

	for (;;) {
		int64_t d = ckpt_durable_epoch(pc->s);

		if (d > pc->seen) {
			uint64_t t = mono_ns();

			for (int64_t e = pc->seen + 1; e <= d; e++)
				if ((size_t)(e - 1) < pc->cap)
					pc->durable_ns[e - 1] = t;
			pc->seen = d;
			pc->advances++;
		}
		int64_t tg = __atomic_load_n(&pc->target, __ATOMIC_ACQUIRE);
		if ((tg && pc->seen >= tg) ||
		    __atomic_load_n(&pc->stop, __ATOMIC_ACQUIRE))
			break;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	int slow = getenv("CKPT_BENCH_SLOW") && atoi(getenv("CKPT_BENCH_SLOW"));
	const char *lat_s = getenv("CKPT_BENCH_LAT");
	double seconds = getenv("CKPT_BENCH_SECONDS") ?
				 atof(getenv("CKPT_BENCH_SECONDS")) : 0;
	double mn = 25, mx = 500, mean = 65;
	char dir[4096], path[4200], key[16], val[16];
	struct ckpt_fault_plan plan;
	struct ckpt_fault_stats fst;
	struct poll_ctx pc = { 0 };
	ckpt_status_t st;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	pthread_t th;
	struct statfs sf;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--slow"))
			slow = 1;
		else if (!strcmp(argv[i], "--lat") && i + 1 < argc)
			lat_s = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else
			usage();
	}
	if (slow) {
		mn = 1000;
		mx = 20000;
		mean = 2600;
	}
	if (lat_s && parse_lat(lat_s, &mn, &mx, &mean) < 0)
		usage();
	if (seconds <= 0)
		seconds = slow ? 600 : 40;
	if (seconds < 2)
		usage();

	const char *base = pick_base();
	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-lag-XXXXXX", base);
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	if (statfs(dir, &sf) != 0)
		die("statfs", -errno);

	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = (uint64_t)(mn * 1000);
	plan.lat_max_us = (uint64_t)(mx * 1000);
	plan.lat_mean_us = (uint64_t)(mean * 1000);
	plan.seed = 0x1a6b3c4d5e6f7081ull;

	ckpt_opts_init(&o);
	o.fault = &plan;
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 60000;
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		die("open", ret);

	size_t cap = (size_t)(seconds * 1000.0) + 16;
	uint64_t *commit_ns = calloc(cap, sizeof(uint64_t));
	pc.durable_ns = calloc(cap, sizeof(uint64_t));
	if (!commit_ns || !pc.durable_ns)
		die("calloc", -ENOMEM);
	pc.s = s;
	pc.cap = cap;
	pc.seen = ckpt_durable_epoch(s);
	if (pthread_create(&th, NULL, poller, &pc) != 0)
		die("pthread_create", -EAGAIN);

	memset(key, 'k', sizeof(key));
	memset(val, 'v', sizeof(val));
	uint64_t t0 = mono_ns(), tick = t0, end = t0 + (uint64_t)(seconds * 1e9);
	uint64_t skipped = 0;
	int64_t last = 0;
	size_t n = 0;
	while (n < cap) {
		uint64_t e = (uint64_t)n + 1;
		memcpy(key, &e, sizeof(e)); /* a new key per epoch */
		ret = ckpt_offset(s, "events", 0, (int64_t)e);
		if (ret < 0)
			die("offset", ret);
		ret = ckpt_put(s, key, 16, val, 16);
		if (ret < 0)
			die("put", ret);
		int64_t ep = ckpt_commit(s);
		uint64_t now = mono_ns();
		if (ep < 0)
			die("commit", ep);
		if ((uint64_t)ep != e)
			die("commit: epochs do not start at 1", -EPROTO);
		commit_ns[n++] = now;
		last = ep;
		tick += TICK_NS;
		if (tick >= end)
			break;
		if (now > tick + TICK_NS) { /* overslept: skip, no burst */
			skipped += (now - tick) / TICK_NS;
			tick += (now - tick) / TICK_NS * TICK_NS;
		}
		struct timespec ts = { (time_t)(tick / 1000000000ull),
				       (long)(tick % 1000000000ull) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				       NULL) == EINTR)
			;
	}
	uint64_t t_last = mono_ns();
	__atomic_store_n(&pc.target, last, __ATOMIC_RELEASE);
	ret = ckpt_wait_durable(s, last, (int)(mx * 4) + 10000);
	if (ret < 0) {
		__atomic_store_n(&pc.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		die("wait_durable(last)", ret);
	}
	pthread_join(th, NULL);
	double drain_ms = (double)(mono_ns() - t_last) / 1e6;

	ret = ckpt_status(s, &st);
	if (ret < 0)
		die("status", ret);
	ckpt__fault_stats(&plan, &fst);

	/* Lags, warm-up left out. */
	uint64_t *lag = malloc(n * sizeof(uint64_t));
	size_t nl = 0;
	double lag_sum = 0;
	if (!lag)
		die("malloc", -ENOMEM);
	for (size_t i = 0; i < n; i++) {
		if (commit_ns[i] - t0 < WARMUP_NS)
			continue;
		uint64_t d = pc.durable_ns[i] - commit_ns[i];
		lag[nl++] = d;
		lag_sum += (double)d;
	}
	qsort(lag, nl, sizeof(uint64_t), cmp_u64);

	/* Injected write latencies: replay the sampler for every op. */
	struct ckpt__fault_lat fl;
	uint64_t rng = plan.seed;
	if (ckpt__fault_lat_init(&fl, &plan) < 0)
		die("fault_lat_init", -EINVAL);
	/* wseq: in op order, 2 * n + 2 of them (for the ideal below, which
	 * may need more writes than the flusher submitted); wl: the first
	 * fst.ops, sorted. */
	size_t nseq = 2 * n + 2 > fst.ops ? 2 * n + 2 : fst.ops;
	uint64_t *wseq = malloc(nseq * sizeof(uint64_t));
	uint64_t *wl = malloc((fst.ops + 1) * sizeof(uint64_t));
	double wsum = 0;
	if (!wl || !wseq)
		die("malloc", -ENOMEM);
	for (size_t i = 0; i < nseq; i++)
		wseq[i] = ckpt__fault_lat_sample(&fl, &rng);
	for (uint64_t i = 0; i < fst.ops; i++) {
		wl[i] = wseq[i];
		wsum += (double)wl[i];
	}
	qsort(wl, fst.ops, sizeof(uint64_t), cmp_u64);
	double w_mean = fst.ops ? wsum / (double)fst.ops / 1e3 : 0;
	double w_p50 = (double)quant(wl, fst.ops, 0.50) / 1e3;
	double w_p99 = (double)quant(wl, fst.ops, 0.99) / 1e3;
	double w_max = fst.ops ? (double)wl[fst.ops - 1] / 1e3 : 0;

	/* Flush cycles: intervals between distinct durable times (after
	 * warm-up); each is one write completing. */
	uint64_t prev = 0, nint = 0;
	double isum = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t d = pc.durable_ns[i];
		if (d == prev)
			continue;
		if (prev && prev - t0 >= WARMUP_NS) {
			isum += (double)(d - prev);
			nint++;
		}
		prev = d;
	}
	double flush_mean = nint ? isum / (double)nint / 1e6 : 0;

	/*
	 * The flusher's own share: with one stream and one write in flight,
	 * the j-th advance of the durable epoch is op j completing, so
	 * cycle_j - injected_j = turnaround (apply, encode, submit) + the real
	 * write + fdatasync + the poller's delay.  Only when every op was
	 * seen as its own advance (else the pairing is off).
	 */
	uint64_t *ovh = malloc((n + 1) * sizeof(uint64_t));
	size_t novh = 0, nadv = 0;
	if (!ovh)
		die("malloc", -ENOMEM);
	prev = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t d = pc.durable_ns[i];
		if (d == prev)
			continue;
		if (prev && prev - t0 >= WARMUP_NS && nadv < fst.ops) {
			int64_t x = (int64_t)(d - prev) -
				    (int64_t)wseq[nadv] * 1000;
			ovh[novh++] = x > 0 ? (uint64_t)x : 0;
		}
		prev = d;
		nadv++;
	}
	if (nadv != fst.ops || st.flush_errors)
		novh = 0;
	qsort(ovh, novh, sizeof(uint64_t), cmp_u64);
	double ovh_p50 = (double)quant(ovh, novh, 0.50) / 1e6;
	double ovh_p99 = (double)quant(ovh, novh, 0.99) / 1e6;

	/*
	 * The ideal: the same latencies, one write in flight, zero overhead,
	 * an epoch every ms.  Write k runs [T_k, T_k + L_k); an epoch
	 * committed in it rides write k + 1 and is durable at T_k+2.  What
	 * the design allows with these latencies; the measured lag minus this
	 * is what the implementation adds.
	 */
	uint64_t *ideal = malloc((n + 1) * sizeof(uint64_t));
	size_t nid = 0, k = 0;
	uint64_t Tk = 0; /* us */
	if (!ideal)
		die("malloc", -ENOMEM);
	for (size_t i = 0; i < n && k + 1 < nseq; i++) {
		uint64_t t = (uint64_t)i * 1000;
		while (k + 1 < nseq && t >= Tk + wseq[k])
			Tk += wseq[k++];
		if (k + 1 >= nseq)
			break;
		if (t * 1000 >= WARMUP_NS)
			ideal[nid++] = Tk + wseq[k] + wseq[k + 1] - t;
	}
	qsort(ideal, nid, sizeof(uint64_t), cmp_u64);
	double ideal_p50 = (double)quant(ideal, nid, 0.50) / 1e3;
	double ideal_p99 = (double)quant(ideal, nid, 0.99) / 1e3;

	double p50 = (double)quant(lag, nl, 0.50) / 1e6;
	double p99 = (double)quant(lag, nl, 0.99) / 1e6;
	double p999 = (double)quant(lag, nl, 0.999) / 1e6;
	double lmax = nl ? (double)lag[nl - 1] / 1e6 : 0;
	double lmean = nl ? lag_sum / (double)nl / 1e6 : 0;
	double epw = st.flushes ? (double)n / (double)st.flushes : 0;
	double goal = w_p99 + flush_mean, goal_max = mx + flush_mean;

	printf("bench lag: 1 epoch per ms (1 offset + 1 put, 16 B/16 B), "
	       "%.0f s, in-process flusher, backend %s\n",
	       seconds, st.backend);
	printf("  directory      %s (%s)\n", dir, fs_name((long)sf.f_type));
	printf("  plan           write latency min %.0f ms, max %.0f ms, "
	       "mean %.0f ms (shifted exponential, clipped)\n",
	       mn, mx, mean);
	printf("  commits        %zu epochs (%llu ticks skipped), %.0f "
	       "epochs/s; warm-up %.0f s left out; last drained in %.0f ms\n",
	       n, (unsigned long long)skipped,
	       (double)n / ((double)(t_last - t0) / 1e9), WARMUP_NS / 1e9,
	       drain_ms);
	printf("  writes         %llu flushes (status), %llu ops submitted, "
	       "%llu ok, %llu errors; max in flight %llu; "
	       "%.1f epochs per write\n",
	       (unsigned long long)st.flushes, (unsigned long long)fst.ops,
	       (unsigned long long)fst.writes_ok,
	       (unsigned long long)st.flush_errors,
	       (unsigned long long)fst.max_inflight, epw);
	printf("  injected       write mean %.1f ms, p50 %.1f, p99 %.1f, "
	       "max %.1f ms (replayed per op)\n",
	       w_mean, w_p50, w_p99, w_max);
	printf("  flush cycle    %.1f ms mean between durable advances "
	       "(%llu intervals, %llu advances seen)\n",
	       flush_mean, (unsigned long long)nint,
	       (unsigned long long)pc.advances);
	printf("  lag            p50 %.1f ms, p99 %.1f, p99.9 %.1f, max %.1f, "
	       "mean %.1f ms over %zu epochs\n",
	       p50, p99, p999, lmax, lmean, nl);
	printf("  ideal          p50 %.1f ms, p99 %.1f ms: the same "
	       "latencies back to back, one write in flight, zero overhead\n",
	       ideal_p50, ideal_p99);
	printf("  overhead       p50 %.2f ms, p99 %.2f ms per flush cycle "
	       "beyond its injected latency (%zu cycles)\n",
	       ovh_p50, ovh_p99, novh);
	printf("  goal           p99 %.1f <= write p99 %.1f + flush %.1f = "
	       "%.1f ms: %s  (vs plan max: %.1f ms: %s)\n",
	       p99, w_p99, flush_mean, goal, p99 <= goal ? "met" : "MISSED",
	       goal_max, p99 <= goal_max ? "met" : "MISSED");
	printf("  ring           %llu backpressure events, health %d%s%s\n",
	       (unsigned long long)st.backpressure_events, st.health,
	       st.why[0] ? ": " : "", st.why);

	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/lag.csv", res);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "epoch,commit_ms,durable_ms,lag_ms,warmup\n");
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%zu,%.3f,%.3f,%.3f,%d\n", i + 1,
				(double)(commit_ns[i] - t0) / 1e6,
				(double)(pc.durable_ns[i] - t0) / 1e6,
				(double)(pc.durable_ns[i] - commit_ns[i]) / 1e6,
				commit_ns[i] - t0 < WARMUP_NS);
		fclose(f);
		printf("  raw            %s\n", path);
	} else {
		fprintf(stderr, "bench_lag: cannot write %s\n", path);
	}

	ret = ckpt_close(s);
	if (ret < 0)
		fprintf(stderr, "bench_lag: close: %s (%s)\n",
			ckpt_strerror(ret), ckpt_last_error());
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(lag);
	free(wl);
	free(wseq);
	free(ovh);
	free(ideal);
	free(commit_ns);
	free(pc.durable_ns);

	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"lag\",\"write_ms_mean\":%.1f,\"write_ms_p99\":%.1f,"
	       "\"flush_ms_mean\":%.1f,\"lag_p50_ms\":%.1f,\"lag_p99_ms\":%.1f,"
	       "\"lag_max_ms\":%.1f,\"epochs_per_write\":%.1f,"
	       "\"lag_ideal_p99_ms\":%.1f,\"overhead_ms_p99\":%.2f,"
	       "\"goal_ms\":%.1f,\"goal_met\":%s,\"goal_max_ms\":%.1f,"
	       "\"goal_max_met\":%s}\n",
	       w_mean, w_p99, flush_mean, p50, p99, lmax, epw, ideal_p99,
	       ovh_p99, goal, p99 <= goal ? "true" : "false", goal_max,
	       p99 <= goal_max ? "true" : "false");
	return 0;
}
