/*
 * bench_streams.c - many streams, one flusher: snapshots made durable per
 * second with the io_uring backend against the pwrite+fdatasync fallback.
 *
 * N streams (default 1, 8 and 64) are opened in this process with
 * CKPT_FLUSHER_THREAD and the same options, so one flusher thread serves
 * them all through one backend (opts.backend = CKPT_BACKEND_URING, then
 * CKPT_BACKEND_FALLBACK).  The directory is a real file system (not
 * tmpfs): CKPT_BENCH_DIR, else $TMPDIR, /var/tmp, /tmp, the first that is
 * not tmpfs/ramfs; its type is printed.
 *
 * Load.  One producer thread makes a pass over the streams every 250 us
 * (absolute deadlines; an overrun skips passes) and commits one epoch
 * (1 offset + 4 puts of 16 B/16 B over 64 keys of its own, so the snapshot
 * stays ~3 KiB) to every stream with fewer than WINDOW (256) epochs not yet
 * durable.  A write takes longer than a pass, so a stream always has a new
 * epoch when its previous write completes and the flusher never idles for
 * want of work, while it applies only a few epochs per snapshot: the
 * figure is the flusher's write path, not its ring-draining speed.
 * (Committing only when the stream is caught up would not do: the flusher
 * takes every committed epoch into the write it submits, so at completion
 * it would find nothing new and sleep its idle poll, flush_interval_us =
 * 1 ms, before the producer's next epoch: that measured the poll.)
 *
 * Metric: sum over streams of ckpt_status().flushes, after 1 s of warm-up,
 * over --seconds (default 10 s for 64 streams, 5 s for 1 and 8), per
 * second.  The ratio is io_uring / fallback at the largest stream count.
 *
 * In-flight probe (64 streams, 2 s, io_uring): the same load with a fault
 * plan of a fixed 20 ms latency per op; the plan's max_inflight counts the
 * ops the flusher had submitted and not yet reaped at once, i.e. whether
 * it keeps one write per stream in flight or one at a time.
 *
 * Output: a line per run, perf/results/streams.csv (one row per run) and,
 * last, one JSON line:
 *   {"bench":"streams","streams":64,"uring_per_s":…,"fallback_per_s":…,
 *    "ratio":…}
 * Options: --streams N (only that count), --seconds S, --no-probe
 * (env CKPT_BENCH_STREAMS, CKPT_BENCH_SECONDS, CKPT_RESULTS,
 * CKPT_BENCH_DIR).
 */
#include <errno.h>
#include <ftw.h>
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

#define MAXS 1024
#define PERIOD_NS 250000ull /* one epoch per stream per pass */
#define WINDOW 256 /* at most so many epochs not yet durable per stream */
#define PUTS 4
#define KEYS 64
#define WARMUP_S 1.0

static void die(const char *what, int64_t ret)
{
	fprintf(stderr, "bench_streams: %s: %s (%s)\n", what,
		ckpt_strerror((int)ret), ckpt_last_error());
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_streams [--streams N] [--seconds S] "
			"[--no-probe]\n"
			"  (env CKPT_BENCH_STREAMS, CKPT_BENCH_SECONDS, "
			"CKPT_RESULTS, CKPT_BENCH_DIR)\n");
	exit(2);
}

struct run {
	int backend;
	int nstreams;
	double seconds;
	struct ckpt_fault_plan *fault;
	/* out */
	char backend_name[16];
	uint64_t flushes, commits, errors, bp;
	uint64_t min_fl, max_fl; /* per stream, over the measured window */
	double elapsed, per_s;
};

static ckpt_stream_t *S[MAXS];
static int64_t committed[MAXS];
static uint64_t fl0[MAXS];

static void one_epoch(int i, uint64_t *seq)
{
	char key[16], val[16];
	int ret;

	ret = ckpt_offset(S[i], "events", i, committed[i] + 1);
	if (ret < 0)
		die("offset", ret);
	for (int p = 0; p < PUTS; p++) {
		uint64_t k = (*seq)++ % KEYS;
		memset(key, 'k', sizeof(key));
		memcpy(key, &k, sizeof(k));
		memset(val, 'v', sizeof(val));
		memcpy(val, seq, sizeof(*seq));
		ret = ckpt_put(S[i], key, 16, val, 16);
		if (ret < 0)
			die("put", ret);
	}
	int64_t e = ckpt_commit(S[i]);
	if (e < 0)
		die("commit", e);
	committed[i] = e;
}

static void do_run(const char *base, struct run *r)
{
	char dir[4096], name[32];
	ckpt_status_t st;
	ckpt_opts_t o;
	uint64_t seq = 0, commits = 0;
	int ret;

	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-streams-XXXXXX", base);
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	ckpt_opts_init(&o);
	o.backend = r->backend;
	o.fault = r->fault;
	o.ring_size = 1u << 20;
	o.max_key = 256;
	o.max_value = 256;
	o.max_meta = 256;
	o.full_policy = CKPT_FULL_EAGAIN;
	for (int i = 0; i < r->nstreams; i++) {
		snprintf(name, sizeof(name), "s%03d", i);
		ret = ckpt_open(dir, name, &o, &S[i]);
		if (ret < 0)
			die("open", ret);
		committed[i] = 0;
	}

	uint64_t t0 = mono_ns(), tw = t0 + (uint64_t)(WARMUP_S * 1e9);
	uint64_t tend = tw + (uint64_t)(r->seconds * 1e9), tm = 0, tick = t0;
	int measuring = 0;
	for (;;) {
		uint64_t now;

		for (int i = 0; i < r->nstreams; i++) {
			if (committed[i] - ckpt_durable_epoch(S[i]) >= WINDOW)
				continue;
			one_epoch(i, &seq);
			commits++;
		}
		now = mono_ns();
		if (!measuring && now >= tw) {
			for (int i = 0; i < r->nstreams; i++) {
				ckpt_status(S[i], &st);
				fl0[i] = st.flushes;
			}
			tm = mono_ns();
			commits = 0;
			measuring = 1;
		} else if (measuring && now >= tend) {
			break;
		}
		/* next pass on the next period boundary; an overrun skips
		 * passes instead of bursting */
		tick += PERIOD_NS;
		if (now > tick)
			tick += (now - tick) / PERIOD_NS * PERIOD_NS + PERIOD_NS;
		struct timespec ts = { (time_t)(tick / 1000000000ull),
				       (long)(tick % 1000000000ull) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				       NULL) == EINTR)
			;
	}
	r->elapsed = (double)(mono_ns() - tm) / 1e9;
	r->flushes = r->errors = r->bp = 0;
	r->min_fl = UINT64_MAX;
	r->max_fl = 0;
	for (int i = 0; i < r->nstreams; i++) {
		ckpt_status(S[i], &st);
		uint64_t d = st.flushes - fl0[i];
		r->flushes += d;
		r->errors += st.flush_errors;
		r->bp += st.backpressure_events;
		if (d < r->min_fl)
			r->min_fl = d;
		if (d > r->max_fl)
			r->max_fl = d;
		if (i == 0)
			snprintf(r->backend_name, sizeof(r->backend_name),
				 "%s", st.backend);
		if (st.health == CKPT_FAILED)
			fprintf(stderr, "bench_streams: stream %d failed: %s\n",
				i, st.why);
	}
	r->commits = commits;
	r->per_s = (double)r->flushes / r->elapsed;
	for (int i = 0; i < r->nstreams; i++) {
		ret = ckpt_close(S[i]);
		if (ret < 0)
			fprintf(stderr, "bench_streams: close: %s (%s)\n",
				ckpt_strerror(ret), ckpt_last_error());
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	int only = getenv("CKPT_BENCH_STREAMS") ?
			   atoi(getenv("CKPT_BENCH_STREAMS")) : 0;
	double seconds = getenv("CKPT_BENCH_SECONDS") ?
				 atof(getenv("CKPT_BENCH_SECONDS")) : 0;
	int probe = 1;
	char path[4200];
	struct statfs sf;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--streams") && i + 1 < argc)
			only = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--no-probe"))
			probe = 0;
		else
			usage();
	}
	if (only < 0 || only > MAXS || seconds < 0)
		usage();

	const char *base = pick_base();
	if (statfs(base, &sf) != 0)
		die("statfs", -errno);
	printf("bench streams: N streams, one in-process flusher; every "
	       "%llu us each stream commits 1 offset + %d puts (16 B/16 B) "
	       "unless %d epochs are not yet durable\n",
	       PERIOD_NS / 1000, PUTS, WINDOW);
	printf("  directory      %s (%s%s)\n", base, fs_name((long)sf.f_type),
	       is_ramfs((long)sf.f_type) ? ": NOT a real disk, figures "
					   "mean little" : "");

	int counts[3] = { 1, 8, 64 }, nc = 3;
	if (only) {
		counts[0] = only;
		nc = 1;
	}
	struct run runs[6];
	int nr = 0;
	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/streams.csv", res);
	FILE *f = fopen(path, "w");
	if (f)
		fprintf(f, "streams,backend,seconds,flushes,per_s,"
			   "min_per_stream,max_per_stream,commits,"
			   "flush_errors,backpressure\n");
	else
		fprintf(stderr, "bench_streams: cannot write %s\n", path);
	printf("  %-7s %-9s %8s %10s %12s %18s %10s\n", "streams", "backend",
	       "seconds", "flushes", "flushes/s", "per stream min-max",
	       "commits");
	for (int c = 0; c < nc; c++) {
		for (int b = 0; b < 2; b++) {
			struct run *r = &runs[nr++];
			memset(r, 0, sizeof(*r));
			r->backend = b == 0 ? CKPT_BACKEND_URING
					    : CKPT_BACKEND_FALLBACK;
			r->nstreams = counts[c];
			r->seconds = seconds > 0 ? seconds
				     : counts[c] >= 64 ? 10 : 5;
			do_run(base, r);
			printf("  %-7d %-9s %8.2f %10llu %12.0f %8llu-%-9llu "
			       "%10llu%s\n",
			       r->nstreams, r->backend_name, r->elapsed,
			       (unsigned long long)r->flushes, r->per_s,
			       (unsigned long long)r->min_fl,
			       (unsigned long long)r->max_fl,
			       (unsigned long long)r->commits,
			       r->errors ? "  (flush errors!)" : "");
			fflush(stdout);
			if (f)
				fprintf(f, "%d,%s,%.3f,%llu,%.1f,%llu,%llu,"
					   "%llu,%llu,%llu\n",
					r->nstreams, r->backend_name,
					r->elapsed,
					(unsigned long long)r->flushes,
					r->per_s,
					(unsigned long long)r->min_fl,
					(unsigned long long)r->max_fl,
					(unsigned long long)r->commits,
					(unsigned long long)r->errors,
					(unsigned long long)r->bp);
		}
		printf("  %-7d ratio io_uring/fallback %.2f (goal >= 2 at 64)\n",
		       counts[c], runs[nr - 2].per_s / runs[nr - 1].per_s);
	}
	if (f)
		fclose(f);

	uint64_t probe_inflight = 0;
	if (probe) {
		struct ckpt_fault_plan plan;
		struct ckpt_fault_stats fst;
		struct run pr;

		memset(&plan, 0, sizeof(plan));
		plan.lat_min_us = plan.lat_max_us = 20000;
		memset(&pr, 0, sizeof(pr));
		pr.backend = CKPT_BACKEND_URING;
		pr.nstreams = only ? only : 64;
		pr.seconds = 2;
		pr.fault = &plan;
		do_run(base, &pr);
		ckpt__fault_stats(&plan, &fst);
		probe_inflight = fst.max_inflight;
		printf("  probe          %d streams, fixed 20 ms per op (%s): "
		       "max %llu ops in flight, %.0f flushes/s (%.0f if all "
		       "%d overlap, %.0f if serial)\n",
		       pr.nstreams, pr.backend_name,
		       (unsigned long long)fst.max_inflight, pr.per_s,
		       pr.nstreams / 0.020, pr.nstreams, 1 / 0.020);
	}
	printf("  raw            %s\n", path);

	struct run *u = &runs[nr - 2], *fb = &runs[nr - 1];
	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"streams\",\"streams\":%d,\"uring_per_s\":%.0f,"
	       "\"fallback_per_s\":%.0f,\"ratio\":%.2f,\"fs\":\"%s\","
	       "\"probe_max_inflight\":%llu}\n",
	       u->nstreams, u->per_s, fb->per_s, u->per_s / fb->per_s,
	       fs_name((long)sf.f_type), (unsigned long long)probe_inflight);
	return 0;
}
