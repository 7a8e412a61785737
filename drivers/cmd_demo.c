/*
 * cmd_demo.c - 'shmckpt demo' (what 'make demo' runs): the seeds' stories,
 * end to end, on a machine with no Kafka, in about a minute.
 *
 *   1. slow storage (P1): 1 ms batches against a store whose writes take
 *      1-20 s (mean 2.6 s): memory stays flat, the commit latency does not
 *      move, epochs coalesce.  Run first, before any Kafka thread, so that
 *      the process's memory is the checkpoint layer's alone.
 *   2. crashes (P3, P5): the embedded Kafka and a producer; the reference
 *      consumer in a child process, SIGKILLed at random moments and
 *      restarted; its state is then checked against an oracle computed
 *      independently from the topic.
 *   3. the retention gap (P4, SPARK-12693): the log is pruned past the
 *      checkpoint while the consumer is stopped; the default refuses with
 *      its message, --on-gap earliest resumes and records the loss.
 *
 * Exit 0 only when every check holds.
 */
#include "cli.h"
#include "ckpt_kafka_ref.h"
#include "fault.h"
#include "region.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct demo {
	char dir[4096];
	uint64_t rng, seed;
	int kills;
	int slow_s;
	int verbose;
	int keep;
	int checks, failed;
	char report[8192];
	size_t rlen;
};

__attribute__((format(printf, 2, 3))) static void
rep(struct demo *d, const char *fmt, ...)
{
	va_list ap;
	if (d->rlen >= sizeof(d->report) - 1)
		return;
	va_start(ap, fmt);
	d->rlen += (size_t)vsnprintf(d->report + d->rlen,
				     sizeof(d->report) - d->rlen, fmt, ap);
	va_end(ap);
	if (d->rlen > sizeof(d->report) - 1)
		d->rlen = sizeof(d->report) - 1;
}

static void check(struct demo *d, int ok, const char *what)
{
	d->checks++;
	if (!ok)
		d->failed++;
	rep(d, "  [%s] %s\n", ok ? "ok" : "FAIL", what);
	printf("  check: %s: %s\n", what, ok ? "ok" : "FAILED");
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct demo *d)
{
	uint64_t z = (d->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A "Field:  N kB" line of /proc/self/status, in KiB (-1 if absent).
 * RssAnon is the process's private memory (heap, stacks): what a queue
 * per batch would grow.  RssShmem counts the pages of the shared-memory
 * ring that were touched so far; it is bounded by the ring's fixed size
 * and reaches it on the ring's first lap, so it is reported apart. */
static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static long minflt(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_minflt : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- 1. slow storage ---- */

struct slow_run {
	uint64_t p50, p99, max;
	long rss_warm, rss_end; /* RssAnon, KiB */
	long shm_end; /* RssShmem, KiB: ring pages touched */
	long faults; /* minor page faults of the committing thread */
	int64_t committed, durable, durable_during;
	uint64_t flushes, backpressure, wait_ms;
	int wait_rc;
	char backend[32];
	int err;
};

/* @seconds of 1 ms batches (1 offset + 1 put of 16 B each) on one stream. */
static int slow_run(struct demo *d, const char *name, struct ckpt_fault_plan *plan,
		    int seconds, struct slow_run *r)
{
	ckpt_opts_t o;
	ckpt_stream_t *s;
	ckpt_status_t st;
	int64_t last = 0;
	uint64_t *lat, n = 0, cap = (uint64_t)seconds * 1000 + 16, t_end, next;
	char key[32], val[32];
	int rc;

	memset(r, 0, sizeof(*r));
	lat = malloc(cap * sizeof(*lat));
	if (!lat)
		return -ENOMEM;
	memset(lat, 0, cap * sizeof(*lat)); /* resident now, not during the run */
	ckpt_opts_init(&o);
	o.fault = plan;
	o.flags = CKPT_O_RESET;
	rc = ckpt_open(d->dir, name, &o, &s);
	if (rc < 0) {
		free(lat);
		fprintf(stderr, "demo: open %s: %s (%s)\n", name,
			ckpt_strerror(rc), ckpt_last_error());
		return rc;
	}
	r->faults = minflt();
	next = now_ns();
	t_end = next + (uint64_t)seconds * 1000000000ull;
	while (n < cap) {
		uint64_t t0, t1, now = now_ns();
		if (now >= t_end)
			break;
		if (now < next) {
			struct timespec ts = { 0, (long)(next - now) };
			nanosleep(&ts, NULL);
		}
		next += 1000000; /* one batch a millisecond */
		/* 16-byte key and value, as the brief's figures use */
		snprintf(key, sizeof(key), "key-%012" PRIu64, n % 1000);
		snprintf(val, sizeof(val), "val-%012" PRIu64, n % UINT64_C(1000000000000));
		t0 = now_ns();
		rc = ckpt_offset(s, "Experience", 0, (int64_t)n + 1);
		if (rc >= 0)
			rc = ckpt_put(s, key, 16, val, 16);
		if (rc >= 0) {
			int64_t e = ckpt_commit(s);
			rc = e < 0 ? (int)e : 0;
			if (e > 0)
				last = e;
		}
		t1 = now_ns();
		if (rc < 0) {
			/* Visible backpressure (a full ring) is allowed;
			 * anything else is an error. */
			ckpt_abort(s);
			if (rc != -EAGAIN) {
				r->err = rc;
				break;
			}
			continue;
		}
		lat[n++] = t1 - t0;
		if (n == 1000)
			r->rss_warm = status_kib("RssAnon");
	}
	r->rss_end = status_kib("RssAnon");
	r->shm_end = status_kib("RssShmem");
	r->faults = minflt() - r->faults;
	ckpt_status(s, &st);
	r->committed = st.committed_epoch;
	r->durable_during = st.durable_epoch;
	/* Nothing is dropped: the newest epoch becomes durable, carried by
	 * a handful of writes however many epochs were committed. */
	{
		uint64_t w0 = now_ns();
		r->wait_rc = last ? ckpt_wait_durable(s, last, 25000) : 0;
		r->wait_ms = (now_ns() - w0) / 1000000;
	}
	ckpt_status(s, &st);
	r->durable = st.durable_epoch;
	r->flushes = st.flushes;
	r->backpressure = st.backpressure_events;
	snprintf(r->backend, sizeof(r->backend), "%s", st.backend);
	qsort(lat, n, sizeof(*lat), cmp_u64);
	if (n) {
		r->p50 = lat[n / 2];
		r->p99 = lat[n * 99 / 100];
		r->max = lat[n - 1];
	}
	free(lat);
	/* Close waits (bounded) for the last write; the slow store may still
	 * be writing: that is what it is. */
	ckpt_close(s);
	return r->err;
}

static void demo_slow(struct demo *d)
{
	struct ckpt_fault_plan plan;
	struct slow_run fast, slow;
	char what[256];
	int rc1, rc2;

	printf("\n== 1. slow storage: 1 ms batches, writes of 1-20 s (mean 2.6 s) ==\n");
	memset(&plan, 0, sizeof(plan));
	plan.lat_min_us = 1000000;
	plan.lat_max_us = 20000000;
	plan.lat_mean_us = 2600000;
	plan.seed = d->rng;
	rc1 = slow_run(d, "demo.fast", NULL, d->slow_s / 2 > 2 ? d->slow_s / 2 : 2,
		       &fast);
	rc2 = slow_run(d, "demo.slow", &plan, d->slow_s, &slow);
	rep(d, "\n1. Slow storage (P1): %d s of 1 ms batches, 1 offset + 1 put each\n",
	    d->slow_s);
	rep(d, "   %-20s %10s %9s %12s %8s %13s\n", "", "commit p50", "p99",
	    "heap growth", "epochs", "durable then");
	rep(d, "   %-20s %8" PRIu64 "ns %7" PRIu64 "ns %8ld KiB %8" PRId64
	    " %13" PRId64 "\n", "local disk", fast.p50, fast.p99,
	    fast.rss_end - fast.rss_warm, fast.committed, fast.durable_during);
	rep(d, "   %-20s %8" PRIu64 "ns %7" PRIu64 "ns %8ld KiB %8" PRId64
	    " %13" PRId64 "\n", "store of mean 2.6 s", slow.p50, slow.p99,
	    slow.rss_end - slow.rss_warm, slow.committed, slow.durable_during);
	rep(d, "   (heap: RssAnon from 1 s into the run to its end.  The ring is fixed\n"
	    "   shared memory, %ld KiB resident at the end.  The committing thread\n"
	    "   took %ld and %ld minor page faults%s)\n",
	    slow.shm_end, fast.faults, slow.faults,
	    fast.faults + slow.faults > 0 ?
		    ": first touches of\n   ring pages, which is what p99 is "
		    "made of in a run this short." :
		    ".");
	rep(d, "   slow store (%s): durable epoch %" PRId64 " when the run ended;\n"
	    "   all %" PRId64 " durable %" PRIu64 " ms later, carried by %" PRIu64
	    " snapshot writes (coalesced);\n   %" PRIu64 " full-ring events\n",
	    slow.backend, slow.durable_during, slow.committed, slow.wait_ms,
	    slow.flushes, slow.backpressure);
	check(d, rc1 == 0 && rc2 == 0, "every commit succeeded on both stores");
	snprintf(what, sizeof(what),
		 "memory flat under slow storage (growth %ld KiB <= 1024 KiB)",
		 slow.rss_end - slow.rss_warm);
	check(d, slow.rss_end - slow.rss_warm <= 1024, what);
	snprintf(what, sizeof(what),
		 "hot path unchanged (p50 %" PRIu64 " vs %" PRIu64
		 " ns; p99 %" PRIu64 " vs %" PRIu64 " ns)",
		 slow.p50, fast.p50, slow.p99, fast.p99);
	/* What this catches is a commit that waits for the store (a lock
	 * held across a write, a synchronous flush): milliseconds.  The
	 * slack absorbs page-fault and scheduler noise in the p99 of a
	 * 10 s run. */
	check(d, slow.p50 <= 2 * fast.p50 + 200 &&
			 slow.p99 <= 3 * fast.p99 + 20000,
	      what);
	snprintf(what, sizeof(what),
		 "nothing dropped, writes coalesce: %" PRId64 " epochs durable "
		 "after %" PRIu64 " writes", slow.durable, slow.flushes);
	check(d, slow.wait_rc == 0 && slow.durable == slow.committed &&
			 slow.committed > 0 &&
			 slow.flushes * 10 < (uint64_t)slow.committed, what);
}

/* ---- Kafka parts ---- */

static pid_t spawn_consume(struct demo *d, const char *bootstrap,
			   const char *group, const char *topic,
			   const char *on_gap, const char *exit_idle,
			   const char *log, int *out)
{
	char *argv[24];
	int i = 0, pfd[2] = { -1, -1 };
	pid_t pid;

	argv[i++] = (char *)"shmckpt";
	argv[i++] = (char *)"consume";
	argv[i++] = (char *)"--bootstrap";
	argv[i++] = (char *)bootstrap;
	argv[i++] = (char *)"--dir";
	argv[i++] = d->dir;
	argv[i++] = (char *)"--group";
	argv[i++] = (char *)group;
	argv[i++] = (char *)"--topic";
	argv[i++] = (char *)topic;
	argv[i++] = (char *)"--assign";
	argv[i++] = (char *)"--batch-ms";
	argv[i++] = (char *)"50";
	if (on_gap) {
		argv[i++] = (char *)"--on-gap";
		argv[i++] = (char *)on_gap;
	}
	if (exit_idle) {
		argv[i++] = (char *)"--exit-idle-ms";
		argv[i++] = (char *)exit_idle;
	}
	if (d->verbose)
		argv[i++] = (char *)"--verbose";
	argv[i] = NULL;
	/* @out: its stdout comes back through a pipe, for the lines saying
	 * which checkpoint it resumed from; else both go to @log. */
	if (out && pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		/* async-signal-safe only: this process runs threads */
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || dup2(out ? pfd[1] : fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execv(cli_self(), argv);
		_exit(127);
	}
	if (out) {
		close(pfd[1]);
		if (pid < 0)
			close(pfd[0]);
		else
			*out = pfd[0];
	}
	return pid;
}

/*
 * Read a consumer's stdout until it printed its @nparts "assigned" lines
 * ("assigned demo.Experience.2: checkpoint offset 1234, ..."); describe
 * them in @desc ("0:1234 1:1170 2:none", the seeds' "Read offset ranges")
 * and sum the offsets into *sum.  0, or -1 if it ended or said nothing for
 * a minute.
 */
static int read_resumed(int fd, int nparts, char *desc, size_t n,
			int64_t *sum)
{
	char buf[8192];
	size_t len = 0, dl = 0;
	int seen = 0;
	uint64_t deadline = now_ns() + 60000000000ull;

	*sum = 0;
	desc[0] = '\0';
	while (seen < nparts) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *nl;
		ssize_t r;
		if (now_ns() > deadline)
			return -1;
		if (poll(&p, 1, 1000) <= 0)
			continue;
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			char name[256], off[32];
			const char *dot;
			*nl = '\0';
			if (sscanf(buf, "assigned %255[^:]: checkpoint offset %31[^,]",
				   name, off) == 2) {
				seen++;
				dot = strrchr(name, '.');
				if (strcmp(off, "none"))
					*sum += strtoll(off, NULL, 10);
				if (dl + 40 < n)
					dl += (size_t)snprintf(desc + dl, n - dl,
							       "%s%s:%s",
							       dl ? " " : "",
							       dot ? dot + 1 : name,
							       off);
			}
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
	}
	return 0;
}

static int wait_status(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

static void print_file(const char *path, const char *indent)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		printf("%s%s", indent, line);
	fclose(f);
}

static void demo_crashes(struct demo *d, ckpt_kafka_mock_t *m)
{
	const char *bs = ckpt_kafka_mock_bootstrap(m);
	char log[4200], what[512], why[1024], desc[256];
	ckpt_kafka_agg_t *oracle = ckpt_kafka_agg_new(), *got = ckpt_kafka_agg_new();
	int64_t records = 0, next_sum = 0, c1 = 0, s1 = 0, c2 = 0, s2 = 0;
	int64_t resumed = 0, prev = 0;
	int i, st = -1, bad_exit = 0, no_start = 0, backwards = 0, fd = -1;
	size_t bad = 0;
	uint64_t t0 = now_ns();
	pid_t pid;
	int rc = -1;

	printf("\n== 2. crashes: SIGKILL the consumer %d times while records flow ==\n",
	       d->kills);
	snprintf(log, sizeof(log), "%s/consumer.log", d->dir);
	if (!oracle || !got || ckpt_kafka_mock_topic(m, "Experience", 3) < 0 ||
	    ckpt_kafka_mock_produce_start(m, "Experience", 1000, 50, 0) < 0) {
		check(d, 0, "embedded Kafka and producer start");
		goto out;
	}
	for (i = 0; i < d->kills; i++) {
		unsigned ms = 100 + (unsigned)(rnd(d) % 900);
		pid = spawn_consume(d, bs, "demo", "Experience", NULL, NULL, log,
				    &fd);
		if (pid < 0) {
			no_start++;
			continue;
		}
		/* The kill comes at a random moment after the consumer
		 * resumed from its checkpoint: mid-stream. */
		if (read_resumed(fd, 3, desc, sizeof(desc), &resumed) < 0) {
			no_start++;
			snprintf(desc, sizeof(desc), "(none: it did not start, see consumer.log)");
		} else {
			backwards += resumed < prev;
			prev = resumed;
			usleep(ms * 1000);
		}
		kill(pid, SIGKILL);
		st = wait_status(pid);
		close(fd);
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
			bad_exit++;
		printf("  start %d resumed at offsets %s; SIGKILL after %u ms "
		       "(%" PRIu64 " records produced)\n",
		       i + 1, desc, ms, ckpt_kafka_mock_produced(m));
	}
	printf("  producer stopped at %" PRId64 " records; the last consumer drains\n",
	       ckpt_kafka_mock_produce_stop(m));
	pid = spawn_consume(d, bs, "demo", "Experience", NULL, "1500", log, &fd);
	if (pid > 0) {
		if (read_resumed(fd, 3, desc, sizeof(desc), &resumed) == 0) {
			backwards += resumed < prev;
			printf("  last start resumed at offsets %s\n", desc);
		}
		st = wait_status(pid);
		close(fd);
	}
	rc = ckpt_kafka_ref_oracle(bs, "Experience", oracle, &records, NULL, 60000);
	if (rc == 0)
		rc = ckpt_kafka_ref_load(d->dir, "demo", "Experience", 3, got,
					 &next_sum);
	if (rc < 0)
		printf("  error: %s\n", ckpt_kafka_last_error());
	ckpt_kafka_agg_totals(oracle, &c1, &s1);
	ckpt_kafka_agg_totals(got, &c2, &s2);
	bad = ckpt_kafka_agg_diff(got, oracle, why, sizeof(why));
	if (bad)
		printf("  differences: %s\n", why);
	rep(d, "\n2. Crashes (P3, P5): %d SIGKILLs at random moments, restarts, %.1f s\n",
	    d->kills, (double)(now_ns() - t0) / 1e9);
	rep(d, "   topic Experience (3 partitions, 50 keys): %" PRId64
	    " records; oracle count %" PRId64 " sum %" PRId64 "\n",
	    records, c1, s1);
	rep(d, "   checkpointed state:                        count %" PRId64
	    " sum %" PRId64 ", next offsets %" PRId64 "\n", c2, s2, next_sum);
	check(d, !bad_exit && !no_start,
	      "each consumer resumed from its checkpoint and died by SIGKILL");
	check(d, !backwards, "no restart resumed behind the one before it");
	check(d, pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "the last consumer exited 0");
	snprintf(what, sizeof(what),
		 "state equals the oracle for every key (%zu keys, %zu differ)",
		 ckpt_kafka_agg_keys(oracle), bad);
	check(d, rc == 0 && !bad && records > 0, what);
	check(d, rc == 0 && next_sum == records && c2 == records,
	      "offsets at the log end, every record counted exactly once");
out:
	ckpt_kafka_agg_free(oracle);
	ckpt_kafka_agg_free(got);
}

/* The first line of @path that contains @needle, into @out ("" if none). */
static void find_line(const char *path, const char *needle, char *out,
		      size_t n)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, n, "%s", line);
			break;
		}
	fclose(f);
}

/* Append @text to the report, wrapped at about 76 columns after @indent. */
static void rep_wrapped(struct demo *d, const char *indent, const char *text)
{
	const char *at = text;
	while (*at) {
		size_t len = strlen(at), cut = len;
		if (len > 76) {
			cut = 76;
			while (cut > 20 && at[cut] != ' ')
				cut--;
		}
		rep(d, "%s%.*s\n", indent, (int)cut, at);
		at += cut;
		while (*at == ' ')
			at++;
	}
}

static void demo_gap(struct demo *d, ckpt_kafka_mock_t *m)
{
	const char *bs = ckpt_kafka_mock_bootstrap(m);
	char log1[4200], log2[4200], log3[4200], what[512], name[CKPT_NAME_MAX + 1];
	char refusal[2048], resumed[2048], want[256];
	ckpt_kafka_agg_t *a = ckpt_kafka_agg_new();
	ckpt_kafka_gap_t g[2];
	int64_t lo = -1, hi = -1, total = 0, first_next = -1;
	ckpt_stream_t *s;
	const void *meta;
	size_t mlen;
	int st0, st1, st2, ngaps = -1, named, ok0;

	printf("\n== 3. retention gap (SPARK-12693) ==\n");
	snprintf(log1, sizeof(log1), "%s/gap-first.log", d->dir);
	snprintf(log2, sizeof(log2), "%s/gap-refused.log", d->dir);
	snprintf(log3, sizeof(log3), "%s/gap-earliest.log", d->dir);
	if (!a || ckpt_kafka_mock_topic(m, "Retention", 1) < 0 ||
	    ckpt_kafka_mock_produce_n(m, "Retention", 10, 200) < 0) {
		rep(d, "\n3. Retention gap (P4, SPARK-12693)\n");
		check(d, 0, "topic Retention with 200 records");
		ckpt_kafka_agg_free(a);
		return;
	}
	st0 = wait_status(spawn_consume(d, bs, "demo", "Retention", NULL, "2000",
					log1, NULL));
	if (ckpt_kafka_ref_load(d->dir, "demo", "Retention", 1, a, &first_next) < 0)
		first_next = -1;
	ckpt_kafka_agg_free(a);
	printf("  the consumer checkpointed offset %" PRId64 " and stopped (exit %d)\n",
	       first_next, WIFEXITED(st0) ? WEXITSTATUS(st0) : -1);
	ok0 = WIFEXITED(st0) && WEXITSTATUS(st0) == 0 && first_next == 200;
	if (ckpt_kafka_mock_produce_n(m, "Retention", 10, 100) < 0 ||
	    ckpt_kafka_mock_prune(m, "Retention", 0, 250, &lo) < 0 ||
	    ckpt_kafka_mock_watermarks(m, "Retention", 0, &lo, &hi) < 0) {
		printf("  error: %s\n", ckpt_kafka_last_error());
		rep(d, "\n3. Retention gap (P4, SPARK-12693)\n");
		check(d, 0, "prune the log while the consumer is stopped");
		return;
	}
	printf("  while it was down: 100 more records, then retention deleted "
	       "the log up to offset %" PRId64 "\n", lo);
	st1 = wait_status(spawn_consume(d, bs, "demo", "Retention", NULL, "2000",
					log2, NULL));
	printf("  restart with the default policy (--on-gap fail): exit %d\n",
	       WIFEXITED(st1) ? WEXITSTATUS(st1) : -1);
	print_file(log2, "    | ");
	st2 = wait_status(spawn_consume(d, bs, "demo", "Retention", "earliest",
					"2000", log3, NULL));
	printf("  restart with --on-gap earliest: exit %d\n",
	       WIFEXITED(st2) ? WEXITSTATUS(st2) : -1);
	print_file(log3, "    | ");
	if (ckpt_kafka_stream_name(name, sizeof(name), "demo", "Retention", 0) >= 0 &&
	    ckpt_open(d->dir, name, NULL, &s) == 0) {
		if (ckpt_get_meta(s, &meta, &mlen) == 0)
			ngaps = ckpt_kafka_gaps_parse(meta, mlen, g, 2, &total);
		ckpt_close(s);
	}
	find_line(log2, "retention gap", refusal, sizeof(refusal));
	find_line(log3, "retention gap", resumed, sizeof(resumed));
	snprintf(want, sizeof(want),
		 "checkpointed offset 200 is no longer in the log; earliest "
		 "available offset is %" PRId64 ", so %" PRId64 " records",
		 lo, lo - 200);
	named = strstr(refusal, "topic Retention partition 0") &&
		strstr(refusal, want);
	rep(d, "\n3. Retention gap (P4, SPARK-12693): checkpoint at 200, log "
	    "pruned to %" PRId64 "..%" PRId64 " while the consumer was stopped\n",
	    lo, hi);
	check(d, ok0, "a consumer checkpoints all 200 records and stops");
	rep_wrapped(d, "   | ", refusal[0] ? refusal : "(no refusal printed)");
	rep_wrapped(d, "   | ", resumed[0] ? resumed : "(no gap line printed)");
	check(d, WIFEXITED(st1) && WEXITSTATUS(st1) == 1 && named,
	      "default policy refuses (exit 1), naming topic, partition, "
	      "offsets and records lost");
	check(d, WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
	      "--on-gap earliest resumes (exit 0)");
	snprintf(what, sizeof(what),
		 "gap recorded in the checkpoint: %d gap, %" PRId64
		 " records lost (expected %" PRId64 ")",
		 ngaps, total, lo - 200);
	check(d, ngaps == 1 && total == lo - 200 && g[0].checkpointed == 200 &&
			 g[0].earliest == lo, what);
}

/* Remove what the demo made: stream directories and their regions. */
static void cleanup(struct demo *d)
{
	char prefix[256], cmd[4300];
	DIR *dd;
	struct dirent *e;
	if (ckpt__region_prefix(d->dir, prefix, sizeof(prefix)) == 0 &&
	    (dd = opendir("/dev/shm"))) {
		size_t n = strlen(prefix);
		while ((e = readdir(dd))) {
			char nm[300];
			if (strncmp(e->d_name, prefix + 1, n - 1) != 0)
				continue;
			snprintf(nm, sizeof(nm), "/%s", e->d_name);
			shm_unlink(nm);
		}
		closedir(dd);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "demo: could not remove %s\n", d->dir);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt demo [--kills N] [--slow-seconds S] [--seed N] [--keep]\n"
"\n"
"The end-to-end demo ('make demo'): slow storage with flat memory and an\n"
"unchanged hot path; the embedded Kafka with a consumer SIGKILLed and\n"
"restarted, checked against an oracle; the retention gap refused, then\n"
"resumed with --on-gap earliest.  Prints a report; exit 0 only if every\n"
"check holds.\n"
"\n"
"  --kills N          SIGKILLs of the consumer, default 8\n"
"  --slow-seconds S   length of the slow-storage run, default 10\n"
"  --seed N           random seed (kill moments, latencies)\n"
"  --keep             keep the checkpoint directory\n"
"  --verbose          librdkafka and driver logs\n"
"  --help             this text\n");
}

int cmd_demo_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "kills", required_argument, NULL, 'k' },
		{ "slow-seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "keep", no_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo d;
	ckpt_kafka_mock_t *m = NULL;
	const char *tmp = getenv("TMPDIR");
	uint64_t t0 = now_ns();
	long long v;
	int c;

	memset(&d, 0, sizeof(d));
	d.kills = 8;
	d.slow_s = 10;
	d.rng = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (cli_parse_ll(optarg, 1, 1000, &v)) {
				cli_err("demo", "--kills: 1..1000");
				return CLI_USAGE;
			}
			d.kills = (int)v;
			break;
		case 's':
			if (cli_parse_ll(optarg, 2, 600, &v)) {
				cli_err("demo", "--slow-seconds: 2..600");
				return CLI_USAGE;
			}
			d.slow_s = (int)v;
			break;
		case 'S':
			if (cli_parse_ll(optarg, 0, INT64_MAX, &v)) {
				cli_err("demo", "--seed: a non-negative integer");
				return CLI_USAGE;
			}
			d.rng = (uint64_t)v;
			break;
		case 'K': d.keep = 1; break;
		case 'v': d.verbose = 1; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("demo", "unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	d.seed = d.rng;
	snprintf(d.dir, sizeof(d.dir), "%s/shmckpt-demo-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(d.dir)) {
		cli_err("demo", "mkdtemp %s: %s", d.dir, strerror(errno));
		return CLI_FAIL;
	}
	printf("shmckpt demo: seed %" PRIu64 ", checkpoints in %s\n", d.seed,
	       d.dir);

	demo_slow(&d);
	if (ckpt_kafka_mock_start(1, d.verbose, &m) < 0) {
		cli_err("demo", "embedded Kafka: %s", ckpt_kafka_last_error());
		check(&d, 0, "embedded Kafka starts");
	} else {
		printf("\nembedded Kafka (librdkafka mock cluster) at %s\n",
		       ckpt_kafka_mock_bootstrap(m));
		demo_crashes(&d, m);
		demo_gap(&d, m);
		ckpt_kafka_mock_stop(m);
	}

	printf("\n================ shmckpt demo report ================\n%s",
	       d.report);
	printf("\n%d of %d checks hold; %.1f s; seed %" PRIu64 "\n",
	       d.checks - d.failed, d.checks, (double)(now_ns() - t0) / 1e9,
	       d.seed);
	if (d.keep)
		printf("kept %s\n", d.dir);
	else
		cleanup(&d);
	return d.failed ? CLI_FAIL : CLI_OK;
}
