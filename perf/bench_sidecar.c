/*
 * bench_sidecar.c - the hot path with the shmckptd sidecar flushing, next
 * to the same with the in-process flusher thread.
 *
 * One commit = 1 offset + 1 put (16 B key, 16 B value), keys cycling over
 * 1000 so that the state stays small.  For each mode: 200 k commits of
 * warm-up, then 2 M commits each timed with lfence;rdtsc;lfence
 * (calibrated against CLOCK_MONOTONIC; the timer's cost is included, not
 * subtracted), then 10 M untimed for throughput, then the time until the
 * last epoch is durable.  The committing thread is pinned to CPU 0; the
 * flusher (thread or sidecar process) has the other core.  Ring 64 MiB,
 * CKPT_FULL_WAIT: a full ring waits, and the waits are counted.
 *
 * The sidecar is <build>/bin/shmckptd, found next to this program's
 * directory (<build>/perf/bench_sidecar).  Output: a table,
 * perf/results/sidecar.csv (percentiles per mode), and one JSON line.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"

#define RING (64ull << 20)
#define WARMUP 200000ull
#define TIMED 2000000ull
#define UNTIMED 10000000ull
#define HBINS 65536 /* ns; slower commits go to the last bin */

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_sidecar: %s: %s (%s)\n", what,
		ckpt_strerror(ret), ckpt_last_error());
	exit(1);
}

static double ns_per_tick(void)
{
	uint64_t t0 = tsc(), n0 = mono_ns(), t1, n1;
	do {
		t1 = tsc();
		n1 = mono_ns();
	} while (n1 - n0 < 200000000ull);
	return (double)(n1 - n0) / (double)(t1 - t0);
}

struct result {
	double p50, p99, p999, max_ns, per_s, durable_ms;
	uint64_t waits;
};

static uint64_t hist[HBINS];

static double pct(double q)
{
	uint64_t want = (uint64_t)(q * (double)TIMED), acc = 0;
	for (unsigned b = 0; b < HBINS; b++) {
		acc += hist[b];
		if (acc > want)
			return b;
	}
	return HBINS - 1;
}

static inline int64_t one(ckpt_stream_t *s, uint64_t i)
{
	char key[16], val[16];
	int64_t e;

	memset(key, 'k', sizeof(key));
	memcpy(key, &(uint64_t){ i % 1000 }, 8);
	memset(val, 'v', sizeof(val));
	memcpy(val, &i, 8);
	ckpt_offset(s, "t", 0, (int64_t)i);
	ckpt_put(s, key, sizeof(key), val, sizeof(val));
	e = ckpt_commit(s);
	if (e < 0)
		die("commit", (int)e);
	return e;
}

static void run(ckpt_stream_t *s, double tick, struct result *r)
{
	uint64_t i = 0, mx = 0, t0, w0;
	int64_t e = 0;
	ckpt_status_t st;

	memset(hist, 0, sizeof(hist));
	for (; i < WARMUP; i++)
		one(s, i);
	ckpt_status(s, &st);
	w0 = st.backpressure_events;
	for (uint64_t k = 0; k < TIMED; k++, i++) {
		uint64_t a = tsc();
		one(s, i);
		uint64_t d = (uint64_t)((double)(tsc() - a) * tick);
		hist[d < HBINS ? d : HBINS - 1]++;
		if (d > mx)
			mx = d;
	}
	t0 = mono_ns();
	for (uint64_t k = 0; k < UNTIMED; k++, i++)
		e = one(s, i);
	uint64_t t1 = mono_ns();
	int ret = ckpt_wait_durable(s, e, 60000);
	if (ret < 0)
		die("wait_durable", ret);
	uint64_t t2 = mono_ns();
	ckpt_status(s, &st);
	r->p50 = pct(0.50);
	r->p99 = pct(0.99);
	r->p999 = pct(0.999);
	r->max_ns = (double)mx;
	r->per_s = (double)UNTIMED / ((double)(t1 - t0) / 1e9);
	r->durable_ms = (double)(t2 - t1) / 1e6;
	r->waits = st.backpressure_events - w0;
}

static pid_t start_sidecar(const char *dir)
{
	char self[PATH_MAX], bin[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;
	pid_t pid;

	if (n < 0)
		die("readlink /proc/self/exe", -errno);
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		die("own path", -EINVAL);
	*slash = '\0'; /* <build>/perf */
	snprintf(bin, sizeof(bin), "%s/../bin/shmckptd", self);
	if (access(bin, X_OK) < 0) {
		fprintf(stderr, "bench_sidecar: %s not built (make tools)\n",
			bin);
		exit(1);
	}
	pid = fork();
	if (pid < 0)
		die("fork", -errno);
	if (pid == 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(1, &one); /* the other core, as the flusher thread */
		sched_setaffinity(0, sizeof(one), &one);
		execl(bin, bin, "--dir", dir, "--scan-ms", "20", "--log-level",
		      "warn", (char *)NULL);
		_exit(127);
	}
	return pid;
}

int main(void)
{
	const char *tmp = getenv("CKPT_BENCH_DIR");
	char dir[PATH_MAX], rname[PATH_MAX], cmd[PATH_MAX + 32];
	struct result r[2];
	double tick = ns_per_tick();
	cpu_set_t cpu0;
	ckpt_opts_t o;
	ckpt_stream_t *s;
	pid_t sc;
	int ret;

	if (!tmp)
		tmp = access("/var/tmp", W_OK) == 0 ? "/var/tmp" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/ckpt-bench-sidecar-XXXXXX", tmp);
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	sched_setaffinity(0, sizeof(cpu0), &cpu0);

	ckpt_opts_init(&o);
	o.ring_size = RING;
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 60000;

	/* 1. the in-process flusher thread (it is not pinned: it takes the
	 * other core, as the scheduler sees fit) */
	ret = ckpt_open(dir, "thread", &o, &s);
	if (ret < 0)
		die("open (thread)", ret);
	run(s, tick, &r[0]);
	if ((ret = ckpt_close(s)) < 0)
		die("close", ret);

	/* 2. the sidecar, pinned to the other core */
	sc = start_sidecar(dir);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	ret = ckpt_open(dir, "sidecar", &o, &s);
	if (ret < 0)
		die("open (external)", ret);
	run(s, tick, &r[1]);
	ckpt_status_t st;
	ckpt_status(s, &st);
	if ((ret = ckpt_close(s)) < 0)
		die("close", ret);
	kill(sc, SIGTERM);
	waitpid(sc, NULL, 0);

	printf("bench_sidecar: 1 offset + 1 put (16 B/16 B) per commit, %llu "
	       "timed, %llu untimed; ring 64 MiB, CKPT_FULL_WAIT; %s\n",
	       (unsigned long long)TIMED, (unsigned long long)UNTIMED, dir);
	printf("  %-22s %8s %8s %9s %11s %12s %10s %8s\n", "flusher", "p50 ns",
	       "p99 ns", "p99.9 ns", "max ns", "commits/s", "durable", "waits");
	const char *names[2] = { "in-process thread", "shmckptd sidecar" };
	for (int m = 0; m < 2; m++)
		printf("  %-22s %8.0f %8.0f %9.0f %11.0f %12.0f %7.1f ms %8llu\n",
		       names[m], r[m].p50, r[m].p99, r[m].p999, r[m].max_ns,
		       r[m].per_s, r[m].durable_ms,
		       (unsigned long long)r[m].waits);
	printf("  (durable: from the last of the untimed commits to it being "
	       "durable; waits: commits that found the ring full)\n");
	printf("  the sidecar's backend: %s\n", st.backend);

	mkdir("perf/results", 0755);
	FILE *csv = fopen("perf/results/sidecar.csv", "w");
	if (csv) {
		fprintf(csv, "flusher,p50_ns,p99_ns,p999_ns,max_ns,commits_per_s,"
			     "durable_ms,waits\n");
		for (int m = 0; m < 2; m++)
			fprintf(csv, "%s,%.0f,%.0f,%.0f,%.0f,%.0f,%.1f,%llu\n",
				m ? "sidecar" : "thread", r[m].p50, r[m].p99,
				r[m].p999, r[m].max_ns, r[m].per_s,
				r[m].durable_ms, (unsigned long long)r[m].waits);
		fclose(csv);
	}
	/* an external-flusher stream leaves its region at close */
	if (ckpt__region_name(dir, "sidecar", rname, sizeof(rname)) == 0)
		shm_unlink(rname);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_sidecar: could not remove %s\n", dir);
	fflush(stdout);
	printf("{\"bench\":\"sidecar\",\"thread_p50_ns\":%.0f,"
	       "\"thread_p99_ns\":%.0f,\"sidecar_p50_ns\":%.0f,"
	       "\"sidecar_p99_ns\":%.0f,\"thread_commits_per_s\":%.0f,"
	       "\"sidecar_commits_per_s\":%.0f,\"thread_durable_ms\":%.1f,"
	       "\"sidecar_durable_ms\":%.1f}\n",
	       r[0].p50, r[0].p99, r[1].p50, r[1].p99, r[0].per_s, r[1].per_s,
	       r[0].durable_ms, r[1].durable_ms);
	return 0;
}
