/*
 * test_tools.c - the stat / inspect / verify / dump subcommands of the built
 * 'shmckpt' binary, and the USDT probes (issue 5, acceptance item 5).
 *
 * The binary is found next to this test: <O>/tests/test_tools ->
 * <O>/bin/shmckpt.  Streams are made through the public API (core/shmckpt.h)
 * in this process: a CKPT_FLUSHER_THREAD stream kept open while the tool
 * reads it (its flusher is alive), and a CKPT_FLUSHER_EXTERNAL stream closed
 * before (its region stays, nobody flushes it).
 *
 * Outputs are checked by real parsers, never by string matching alone:
 *   - JSON: python3's json module.
 *   - Prometheus: 'promtool check metrics' (Debian package 'prometheus')
 *     and, in addition, the parser of the official Python client
 *     (prometheus_client.parser, Debian package 'python3-prometheus-client',
 *     run with /usr/bin/python3 where Debian installs it), which also checks
 *     each histogram: cumulative buckets, le increasing, +Inf == _count.
 *     Each one that is installed runs; the case skips (naming both
 *     packages) only when neither is.
 * A probe firing needs 'perf probe' with uprobes (root or
 * perf_event_paranoid <= 1 and tracefs); the case skips with perf's own
 * reason where the machine does not allow it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "kafka_int.h"
#include "lock.h"
#include "region.h"
#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define LIVE "live.0"	  /* THREAD flusher, open while the tool reads */
#define PARKED "parked-1" /* EXTERNAL, closed: region stays, no flusher */
#define SLOTS "slots.2"	  /* two durable snapshots, then closed */
#define DROP "drop.3"	  /* a damaged ring over good slots */
#define DROPF "dropfail.4" /* a flusher failed on its third datasync */
#define NLIVE 300
#define NPARKED 40

static char bin[PATH_MAX];   /* <O>/bin/shmckpt */
static char self[PATH_MAX];  /* this test */
static char *dir;	     /* the test's checkpoint directory */
static char *work;	     /* scratch files */
static const char *py;	     /* python3 for JSON, NULL if none */

/* Skip one case, saying why (tu_skip would end the whole program). */
#define CASE_SKIP(...)                                  \
	do {                                            \
		printf("SKIP: " __VA_ARGS__);           \
		printf("\n");                          \
		fflush(stdout);                         \
		skip();                                 \
	} while (0)
#define NEED_PYTHON()                                                      \
	do {                                                               \
		if (!py)                                                   \
			CASE_SKIP("python3 not installed: the JSON outputs " \
				  "need a real parser (Debian: python3)"); \
	} while (0)

/* ------------------------------------------------------------------------
 * Running programs
 * ------------------------------------------------------------------------ */

/* Run @argv with stdin from @in, stdout to @out, stderr to @err (NULL:
 * /dev/null).  Returns the exit status, or 128 + signal. */
static int run(const char *in, const char *out, const char *err,
	       const char *const argv[])
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		int fi = open(in ? in : "/dev/null", O_RDONLY);
		int fo = open(out ? out : "/dev/null",
			      O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int fe = open(err ? err : "/dev/null",
			      O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fi < 0 || fo < 0 || fe < 0)
			_exit(126);
		dup2(fi, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	st = tu_wait(pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	fclose(f);
	return buf;
}

static void show(const char *what, const char *path)
{
	char *s = slurp(path);
	fprintf(stderr, "---- %s (%s) ----\n%s\n", what, path, s);
	free(s);
}

static char *wpath(const char *name)
{
	static char buf[8][PATH_MAX];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, PATH_MAX, "%s/%s", work, name);
	return p;
}

/* shmckpt ARGS... > out 2> err; returns the exit code. */
#define TOOL(out, err, ...)                                                \
	run(NULL, out, err, (const char *const[]){ bin, __VA_ARGS__, NULL })

/* python3 -c CODE ARGS... < in: 0 when the script's checks held. */
static int python(const char *interp, const char *in, const char *code,
		  const char *a1, const char *a2)
{
	char *out = wpath("py.out");
	int rc = run(in, out, out,
		     (const char *const[]){ (char *)interp, "-c", (char *)code,
				      (char *)(a1 ? a1 : ""),
				      (char *)(a2 ? a2 : ""), NULL });
	if (rc != 0)
		show("python", out);
	return rc;
}

static int have_module(const char *interp, const char *mod)
{
	char code[128];

	if (interp[0] == '/' && access(interp, X_OK) != 0)
		return 0;
	snprintf(code, sizeof(code), "import %s", mod);
	return run(NULL, NULL, NULL,
		   (const char *const[]){ (char *)interp, "-c", code, NULL }) == 0;
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

static ckpt_stream_t *live;

static void commit_some(ckpt_stream_t *s, int n, int64_t *last)
{
	for (int i = 0; i < n; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%03d", i % 64);
		assert_int_equal(ckpt_offset(s, "events", 3, 1000 + i), 0);
		assert_int_equal(ckpt_put(s, k, strlen(k), "v", 1), 0);
		*last = ckpt_commit(s);
		assert_true(*last > 0);
	}
}

static int setup(void **state)
{
	ckpt_opts_t o;
	ckpt_stream_t *s;
	int64_t e;

	(void)state;
	dir = tu_mkdtemp("tools");
	work = tu_mkdtemp("tools-work");

	ckpt_opts_init(&o);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, PARKED, &o, &s), 0);
	commit_some(s, NPARKED, &e);
	assert_int_equal(ckpt_close(s), 0);

	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, LIVE, &o, &live), 0);
	commit_some(live, NLIVE / 2, &e);
	assert_int_equal(ckpt_wait_durable(live, e, 10000), 0);
	commit_some(live, NLIVE / 2, &e);
	assert_int_equal(ckpt_wait_durable(live, e, 10000), 0);
	/* the flusher releases the ring just after it publishes durable */
	for (int i = 0; i < 1000; i++) {
		ckpt_status_t st;
		assert_int_equal(ckpt_status(live, &st), 0);
		if (st.ring_used == 0)
			break;
		usleep(1000);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ckpt_close(live);
	tu_rmdir(dir);
	tu_rmdir(work);
	return 0;
}

/* ------------------------------------------------------------------------
 * stat
 * ------------------------------------------------------------------------ */

static const char PY_STAT_JSON[] =
	"import json,sys\n"
	"pid=int(sys.argv[1]); docs=[json.loads(l) for l in sys.stdin if l.strip()]\n"
	"by={d['stream']:d for d in docs}\n"
	"assert set(by)=={'live.0','parked-1'}, sorted(by)\n"
	"l=by['live.0']; p=by['parked-1']\n"
	"assert l['epochs']=={'committed':300,'durable':300}, l['epochs']\n"
	"assert l['commits']==300 and l['records']==600, (l['commits'],l['records'])\n"
	"assert l['health']=='healthy', (l['health'],l['why'])\n"
	"assert l['flusher']['pid']==pid and l['flusher']['alive'], l['flusher']\n"
	"assert l['consumer']['pid']==pid and l['consumer']['alive'], l['consumer']\n"
	"assert l['flush']['flushes']>=2 and l['flush']['epochs_coalesced']==300\n"
	"assert l['flush']['epochs_per_flush_max']>=1\n"
	"assert abs(l['flush']['epochs_per_flush_mean']-300/l['flush']['flushes'])<0.01\n"
	"for h in ('datasync','flush','durable_lag'):\n"
	"  x=l['latency_us'][h]; assert x['count']==l['flush']['flushes'], (h,x)\n"
	"  assert 0<=x['p50']<=x['p99']<=x['p999'], (h,x)\n"
	"assert l['ring']['used']==0 and l['ring']['capacity']>0\n"
	"assert l['ring']['high_water']>0\n"
	"assert l['errors']['code']==0 and l['errors']['message'] is None\n"
	"assert l['backend'] in ('io_uring','fallback'), l['backend']\n"
	"assert p['health']=='noflusher' and p['flusher']['pid'] is None, p\n"
	"assert p['epochs']=={'committed':40,'durable':0}, p['epochs']\n"
	"assert p['ring']['used']>0 and p['consumer']['pid'] is None\n"
	"assert p['flusher_mode']=='external' and l['flusher_mode']=='thread'\n"
	"assert 'rates' not in l\n";

/* --json: JSON Lines, one object per stream, parsed by python's json. */
static void test_stat_json(void **state)
{
	char pid[16], *out = wpath("stat.json"), *err = wpath("stat.err");

	(void)state;
	NEED_PYTHON();
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all", "--json"),
			 0);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_int_equal(python(py, out, PY_STAT_JSON, pid, NULL), 0);

	/* named streams give the same; the order is the command line's */
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, PARKED, LIVE,
			      "--json"), 0);
	assert_int_equal(python(py, out, PY_STAT_JSON, pid, NULL), 0);
}

static const char PY_WATCH_JSON[] =
	"import json,sys\n"
	"docs=[json.loads(l) for l in sys.stdin if l.strip()]\n"
	"assert len(docs)==6, len(docs)\n"
	"for i,d in enumerate(docs):\n"
	"  assert ('rates' in d)==(i>=2), (i,d.get('rates'))\n"
	"r=[d for d in docs[2:] if d['stream']=='live.0'][0]['rates']\n"
	"assert r['commits_per_s']>=0 and r['flushes_per_s']>=0, r\n";

/* --watch: a sample per interval; from the second, rates. */
static void test_stat_watch(void **state)
{
	char *out = wpath("watch.json"), *err = wpath("watch.err");

	(void)state;
	NEED_PYTHON();
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all", "--json",
			      "--watch", "0.2", "--count", "3"), 0);
	assert_int_equal(python(py, out, PY_WATCH_JSON, NULL, NULL), 0);
	/* text: the full block first, then one row per stream */
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, LIVE, "--watch",
			      "0.1", "--count", "2"), 0);
	{
		char *s = slurp(out);
		assert_non_null(strstr(s, "stream live.0"));
		assert_non_null(strstr(s, "commits/s"));
		free(s);
	}
}

static const char PY_PROM[] =
	"import sys\n"
	"from prometheus_client.parser import text_string_to_metric_families\n"
	"fams={f.name:f for f in text_string_to_metric_families(sys.stdin.read())}\n"
	"def one(name,stream):\n"
	"  v=[s.value for s in fams[name].samples if s.labels.get('stream')==stream]\n"
	"  assert len(v)==1,(name,stream,v); return v[0]\n"
	"assert fams['shmckpt_commits'].type=='counter'\n"
	"assert one('shmckpt_commits','live.0')==300\n"
	"assert one('shmckpt_committed_epoch','parked-1')==40\n"
	"assert one('shmckpt_durable_epoch','live.0')==300\n"
	"assert one('shmckpt_flusher_up','live.0')==1\n"
	"hs=[f for f in fams.values() if f.type=='histogram']\n"
	"assert len(hs)==3, [f.name for f in hs]\n"
	"for f in hs:\n"
	"  for st in ('live.0','parked-1'):\n"
	"    b=[(float(s.labels['le']),s.value) for s in f.samples\n"
	"       if s.name.endswith('_bucket') and s.labels['stream']==st]\n"
	"    les=[x for x,_ in b]; vals=[v for _,v in b]\n"
	"    assert les==sorted(les) and len(set(les))==len(les), (f.name,st)\n"
	"    assert les[-1]==float('inf'), (f.name,st)\n"
	"    assert vals==sorted(vals), (f.name,st,'not cumulative')\n"
	"    cnt=[s.value for s in f.samples if s.name.endswith('_count') and s.labels['stream']==st]\n"
	"    assert cnt==[vals[-1]], (f.name,st,cnt,vals[-1])\n"
	"  live=[s.value for s in f.samples if s.name.endswith('_count') and s.labels['stream']=='live.0']\n"
	"  assert live[0]>=2, (f.name,live)\n"
	"print('prometheus_client: %d families ok' % len(fams))\n";

/* --prometheus: checked by promtool and/or the Python client's parser. */
static void test_stat_prometheus(void **state)
{
	char *out = wpath("stat.prom"), *err = wpath("stat.prom.err");
	char *chk = wpath("promtool.out");
	const char *pyprom = NULL;
	int parsers = 0;

	(void)state;
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all",
			      "--prometheus"), 0);

	if (run(NULL, NULL, NULL,
		(const char *const[]){ "promtool", "--version", NULL }) == 0) {
		int rc = run(out, chk, chk,
			     (const char *const[]){ "promtool", "check", "metrics",
					      NULL });
		if (rc != 0) {
			show("promtool check metrics", chk);
			show("stat --prometheus", out);
		}
		assert_int_equal(rc, 0);
		printf("promtool check metrics: ok\n");
		parsers++;
	}
	/* Debian's python3-prometheus-client installs for /usr/bin/python3 */
	if (have_module("/usr/bin/python3", "prometheus_client"))
		pyprom = "/usr/bin/python3";
	else if (have_module("python3", "prometheus_client"))
		pyprom = "python3";
	if (pyprom) {
		assert_int_equal(python(pyprom, out, PY_PROM, NULL, NULL), 0);
		printf("prometheus_client parser (%s): ok\n", pyprom);
		parsers++;
	}
	if (!parsers)
		CASE_SKIP("no Prometheus parser: install Debian's 'prometheus' "
			  "(promtool) or 'python3-prometheus-client'");
}

/* stat maps read-only and writes nothing: the region of a stream nobody
 * touches is byte for byte the same after. */
static void test_stat_writes_nothing(void **state)
{
	char shm[320], path[400], *before, *after;
	char *out = wpath("nothing.out");
	struct stat st;

	(void)state;
	assert_int_equal(ckpt__region_name(dir, PARKED, shm, sizeof(shm)), 0);
	snprintf(path, sizeof(path), "/dev/shm%s", shm);
	before = slurp(path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(TOOL(out, NULL, "stat", "--dir", dir, PARKED), 0);
	assert_int_equal(TOOL(out, NULL, "stat", "--dir", dir, PARKED,
			      "--prometheus"), 0);
	after = slurp(path);
	assert_memory_equal(before, after, (size_t)st.st_size);
	free(before);
	free(after);
}

/* A damaged region among good ones: that stream fails with a clear
 * message (exit 1), the others are still reported. */
static void test_stat_bad_region(void **state)
{
	char prefix[128], shm[320], *out = wpath("bad.json"),
					*err = wpath("bad.err"), *e;
	int fd;

	(void)state;
	NEED_PYTHON();
	assert_int_equal(ckpt__region_prefix(dir, prefix, sizeof(prefix)), 0);
	snprintf(shm, sizeof(shm), "%sbogus", prefix);
	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0600), 0);
	assert_int_equal(ftruncate(fd, CKPT_REGION_HDR_SIZE + CKPT_RING_MIN), 0);
	assert_int_equal(pwrite(fd, "not a region", 12, 0), 12);
	close(fd);

	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all", "--json"),
			 1);
	e = slurp(err);
	assert_non_null(strstr(e, "bogus"));
	assert_non_null(strstr(e, "magic"));
	free(e);
	{
		static const char two[] =
			"import json,sys\n"
			"d=[json.loads(l)['stream'] for l in sys.stdin]\n"
			"assert sorted(d)==['live.0','parked-1'], d\n";
		assert_int_equal(python(py, out, two, NULL, NULL), 0);
	}
	shm_unlink(shm);
}

static void test_stat_usage(void **state)
{
	char *out = wpath("u.out"), *err = wpath("u.err"), *s;

	(void)state;
	assert_int_equal(TOOL(out, err, "stat", "--help"), 0);
	s = slurp(out);
	assert_non_null(strstr(s, "usage: shmckpt stat"));
	free(s);
	assert_int_equal(TOOL(out, err, "stat", "--all"), 64); /* no --dir */
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir), 64);
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all", LIVE),
			 64);
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "a/b"), 64);
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all",
			      "--watch", "0"), 64);
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--all",
			      "--prometheus", "--watch", "1"), 64);
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "--bogus"), 64);
	/* a stream without a region: failure, said plainly */
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, "absent"), 1);
	s = slurp(err);
	assert_non_null(strstr(s, "absent"));
	assert_non_null(strstr(s, "no region"));
	free(s);
	/* text */
	assert_int_equal(TOOL(out, err, "stat", "--dir", dir, LIVE), 0);
	s = slurp(out);
	assert_non_null(strstr(s, "health       healthy"));
	assert_non_null(strstr(s, "committed 300  durable 300"));
	free(s);
}

/* ------------------------------------------------------------------------
 * Slots: verify, inspect, dump
 * ------------------------------------------------------------------------ */

/* The stream SLOTS: two durable snapshots (epochs 1 and 3), closed.  The
 * newest (epoch 3) holds a non-UTF-8 key, the empty key, a value with NUL
 * bytes, two offsets and a gap record as metadata. */
static const char GAP_TOPIC[] = "Retention";

static void make_slots(int64_t *older, int64_t *newer)
{
	ckpt_opts_t o;
	ckpt_stream_t *s;
	ckpt_kafka_gap_t g = { .partition = 0, .checkpointed = 120,
			       .earliest = 5000, .resumed = 5000, .lost = 4880,
			       .policy = CKPT_KAFKA_GAP_EARLIEST,
			       .when_unix = 1700000000 };
	char *rec;
	size_t rlen;
	int64_t e;

	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, SLOTS, &o, &s), 0);
	assert_int_equal(ckpt_put(s, "a", 1, "1", 1), 0);
	*older = ckpt_commit(s);
	assert_int_equal(ckpt_wait_durable(s, *older, 10000), 0);

	assert_int_equal(ckpt_put(s, "utf8-\xc3\xa9", 7, "caf\xc3\xa9", 5), 0);
	assert_int_equal(ckpt_put(s, "\xff\xfe\x00k", 4, "bin", 3), 0);
	assert_int_equal(ckpt_put(s, "", 0, "empty key", 9), 0);
	assert_int_equal(ckpt_put(s, "nul", 3, "x\0y", 3), 0);
	assert_int_equal(ckpt_offset(s, GAP_TOPIC, 0, 5000), 0);
	assert_int_equal(ckpt_offset(s, "b-topic", 7, 42), 0);
	assert_true(ckpt_commit(s) > 0);
	assert_int_equal(ckpt__kafka_gaps_append(NULL, 0, GAP_TOPIC, &g, &rec,
						 &rlen), 0);
	assert_int_equal(ckpt_meta(s, rec, rlen), 0);
	free(rec);
	assert_int_equal(ckpt_del(s, "a", 1), 0);
	assert_int_equal(ckpt_put(s, "a2", 2, "2", 1), 0);
	e = ckpt_commit(s);
	assert_true(e > 0);
	assert_int_equal(ckpt_wait_durable(s, e, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);
	*newer = e;
}

static char *slot_path(int i)
{
	static char p[2][PATH_MAX];
	snprintf(p[i], PATH_MAX, "%s/%s/slot-%d", dir, SLOTS, i);
	return p[i];
}

static uint64_t hdr64(int i, int off)
{
	unsigned char b[8];
	uint64_t v = 0;
	int fd = open(slot_path(i), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, off), 8);
	close(fd);
	for (int k = 7; k >= 0; k--)
		v = v << 8 | b[k];
	return v;
}

static void flip(int i, off_t off)
{
	unsigned char c;
	int fd = open(slot_path(i), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static int verify(void)
{
	return TOOL(wpath("verify.out"), wpath("verify.err"), "verify", "--dir",
		    dir, "--stream", SLOTS);
}

/* verify's exit codes on slots damaged by hand. */
static void test_verify(void **state)
{
	int64_t older, newer, rec;
	int newest, other;
	ckpt_stream_t *s;
	char *out;

	(void)state;
	make_slots(&older, &newer);
	/* the newest by the header's (epoch, seq): FORMAT.md offsets */
	newest = (int64_t)hdr64(1, 16) > (int64_t)hdr64(0, 16) ? 1 : 0;
	other = 1 - newest;
	assert_int_equal((int64_t)hdr64(newest, 16), newer);
	/* epoch 1, or 2 if the flusher wrote epoch 2 on its own */
	older = (int64_t)hdr64(other, 16);
	assert_true(older >= 1 && older < newer);
	assert_int_equal(verify(), 0);

	/* one byte of the newest slot's body: 1, recovery falls back */
	flip(newest, 4096 + 20);
	assert_int_equal(verify(), 1);
	out = slurp(wpath("verify.out"));
	assert_non_null(strstr(out, "hash mismatch"));
	assert_non_null(strstr(out, "fallback"));
	free(out);
	flip(newest, 4096 + 20); /* undone */
	assert_int_equal(verify(), 0);

	/* the newest slot's magic: its claim is unreadable, it is presumed
	 * the newest: still 1 */
	flip(newest, 0);
	assert_int_equal(verify(), 1);
	flip(newest, 0);

	/* the older slot damaged: the newest is valid, 0 */
	flip(other, 4096 + 4);
	assert_int_equal(verify(), 0);

	/* both: 2 */
	flip(newest, 4096 + 20);
	assert_int_equal(verify(), 2);
	out = slurp(wpath("verify.out"));
	assert_non_null(strstr(out, "no valid slot"));
	free(out);
	flip(other, 4096 + 4);

	/* usage: 64; no such stream: 2 */
	assert_int_equal(TOOL(NULL, NULL, "verify", "--dir", dir), 64);
	assert_int_equal(TOOL(NULL, NULL, "verify", "--dir", dir, "--stream",
			      "../x"), 64);
	assert_int_equal(TOOL(NULL, NULL, "verify", "--stream", SLOTS), 64);
	assert_int_equal(TOOL(NULL, NULL, "verify", "--dir", dir, "--stream",
			      SLOTS, "extra"), 64);
	assert_int_equal(TOOL(NULL, NULL, "verify", "--dir", dir, "--stream",
			      "absent"), 2);
	assert_int_equal(TOOL(NULL, NULL, "verify", "--help"), 0);

	/* what verify said (newest damaged, older valid) is what recovery
	 * does: it loads the older epoch */
	assert_int_equal(verify(), 1);
	assert_int_equal(ckpt_open(dir, SLOTS, NULL, &s), 0);
	rec = ckpt_recovered_epoch(s);
	assert_int_equal(rec, older);
	ckpt_close(s);
}

static const char PY_DUMP[] =
	"import json,sys,base64\n"
	"d=json.load(sys.stdin)\n"
	"def dec(o):\n"
	"  assert len(o)==1, o\n"
	"  return o['utf8'].encode('utf-8') if 'utf8' in o else base64.b64decode(o['base64'],validate=True)\n"
	"assert d['stream']=='slots.2' and d['epoch']==int(sys.argv[1]), d['epoch']\n"
	"kv={dec(e['key']):dec(e['value']) for e in d['state']}\n"
	"want={b'utf8-\\xc3\\xa9':b'caf\\xc3\\xa9', b'\\xff\\xfe\\x00k':b'bin',\n"
	"      b'':b'empty key', b'nul':b'x\\x00y', b'a2':b'2'}\n"
	"assert kv==want, kv\n"
	"keys=[dec(e['key']) for e in d['state']]; assert keys==sorted(keys)\n"
	"bin=[e for e in d['state'] if dec(e['key'])==b'\\xff\\xfe\\x00k'][0]\n"
	"assert 'base64' in bin['key'] and 'utf8' in bin['value'], bin\n"
	"uk=[e for e in d['state'] if dec(e['key'])==b'utf8-\\xc3\\xa9'][0]\n"
	"assert uk['key']=={'utf8':'utf8-\\u00e9'}, uk\n"
	"offs=[(dec(o['topic']),o['partition'],o['next_offset']) for o in d['offsets']]\n"
	"assert offs==[(b'Retention',0,5000),(b'b-topic',7,42)], offs\n"
	"m=dec(d['metadata']); assert m.startswith(b'{\"shmckpt_kafka_gaps\":1'), m\n";

static const char PY_INSPECT[] =
	"import json,sys\n"
	"d=json.load(sys.stdin); e=int(sys.argv[1])\n"
	"u=d['recovery_uses']; s=d['slots'][u]\n"
	"assert s['valid'] and s['header']['epoch']==e and s['newest'], s\n"
	"assert s['nkeys']==5 and s['noffsets']==2, s\n"
	"g=s['gaps']; assert g['lost_total']==4880, g\n"
	"assert g['gaps']==[{'topic':'Retention','partition':0,'checkpointed':120,'earliest':5000,'resumed':5000,'lost':4880,'policy':'earliest','when':1700000000}], g\n"
	"o=d['slots'][1-u]; assert o['valid'] and o['header']['epoch']<e and o['gaps'] is None, o\n";

static void test_dump_inspect(void **state)
{
	char *out = wpath("dump.json"), *err = wpath("dump.err"), *s;
	char ep[32];
	int64_t older, newer;

	(void)state;
	NEED_PYTHON();
	/* test_verify made the stream; make it again (fresh slots) */
	{
		char cmd[PATH_MAX + 32], shm[320];
		if (ckpt__region_name(dir, SLOTS, shm, sizeof(shm)) == 0)
			shm_unlink(shm);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", dir, SLOTS);
		assert_int_equal(system(cmd), 0);
	}
	make_slots(&older, &newer);
	snprintf(ep, sizeof(ep), "%lld", (long long)newer);

	assert_int_equal(TOOL(out, err, "dump", "--dir", dir, "--stream", SLOTS,
			      "--json"), 0);
	assert_int_equal(python(py, out, PY_DUMP, ep, NULL), 0);

	assert_int_equal(TOOL(out, err, "inspect", "--dir", dir, "--stream",
			      SLOTS, "--json"), 0);
	assert_int_equal(python(py, out, PY_INSPECT, ep, NULL), 0);

	assert_int_equal(TOOL(out, err, "inspect", "--dir", dir, "--stream",
			      SLOTS), 0);
	s = slurp(out);
	assert_non_null(strstr(s, "gaps        1 recorded, 4880 records lost"));
	assert_non_null(strstr(s, "Retention [0]: checkpointed 120"));
	assert_non_null(strstr(s, "meta (text)"));
	assert_non_null(strstr(s, "recovery: loads slot-"));
	free(s);

	/* errors: no stream 1, usage 64 */
	assert_int_equal(TOOL(out, err, "dump", "--dir", dir, "--stream",
			      "absent"), 1);
	assert_int_equal(TOOL(out, err, "inspect", "--dir", dir, "--stream",
			      "absent"), 1);
	assert_int_equal(TOOL(out, err, "dump", "--dir", dir), 64);
	assert_int_equal(TOOL(out, err, "inspect", "--stream", SLOTS), 64);
	assert_int_equal(TOOL(out, err, "dump", "--help"), 0);
	assert_int_equal(TOOL(out, err, "inspect", "--help"), 0);
}

/* ------------------------------------------------------------------------
 * USDT probes
 * ------------------------------------------------------------------------ */

static void test_probes_present(void **state)
{
	static const char *const names[] = { "commit",	      "backpressure",
					     "flush_start",   "datasync_done",
					     "flush_done",    "recovery" };
	char *out = wpath("readelf.out"), *s;

	(void)state;
#if defined(__has_include)
#if !__has_include(<sys/sdt.h>)
	CASE_SKIP("built without <sys/sdt.h> (Debian: systemtap-sdt-dev): "
		  "no probes compiled in");
#endif
#endif
	if (run(NULL, out, NULL, (const char *const[]){ "readelf", "-n", bin, NULL }))
		CASE_SKIP("readelf not available (Debian: binutils)");
	s = slurp(out);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "Provider: shmckpt\n    Name: %s\n",
			 names[i]);
		if (!strstr(s, want))
			fprintf(stderr, "probe %s missing in %s\n", names[i],
				bin);
		assert_non_null(strstr(s, want));
	}
	free(s);
}

/* The child of test_probe_fires: commit @n epochs to stream "probe". */
static int child_commit(const char *d, int n)
{
	ckpt_stream_t *s;
	ckpt_opts_t o;

	ckpt_opts_init(&o);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	if (ckpt_open(d, "probe", &o, &s) < 0)
		return 1;
	for (int i = 0; i < n; i++)
		if (ckpt_commit(s) <= 0)
			return 1;
	ckpt_close(s);
	return 0;
}

#define FIRE_N 25

/* Count the commit probe's hits in a child committing FIRE_N epochs, with
 * perf: >= 0, or -1 with *why set when perf cannot trace here. */
static int fire_with_perf(const char *d, char *why, size_t n)
{
	char *out = wpath("perf.out"), *stat_out = wpath("perf.stat");
	char event[128] = "", cache[PATH_MAX], *s, *p;
	int rc, fired = -1;

	if (run(NULL, NULL, NULL, (const char *const[]){ "perf", "version",
							 NULL })) {
		snprintf(why, n, "perf not installed (Debian: linux-perf)");
		return -1;
	}
	/* perf's build-id cache goes to the scratch directory */
	snprintf(cache, sizeof(cache), "%s/perf-cache", work);
	setenv("PERF_BUILDID_DIR", cache, 1);
	rc = run(NULL, out, out,
		 (const char *const[]){ "perf", "probe", "-x", self, "-a",
					"%sdt_shmckpt:commit", NULL });
	s = slurp(out);
	/* "Added new event:\n  sdt_shmckpt:commit   (on %commit in ...)";
	 * a leftover event of the same name makes it commit_1: use the
	 * name perf gives */
	p = strstr(s, "Added new event");
	if (rc != 0 || !p ||
	    sscanf(p, "Added new event:%*[ \n]%127s", event) != 1) {
		char *nl = strchr(s, '\n');
		if (nl)
			*nl = '\0';
		snprintf(why, n, "perf probe cannot add a uprobe (%s)", s);
		free(s);
		return -1;
	}
	free(s);
	rc = run(NULL, NULL, stat_out,
		 (const char *const[]){ "perf", "stat", "-x", ",", "-e", event,
					"--", self, "--child-commit", d, "25",
					NULL });
	run(NULL, NULL, NULL,
	    (const char *const[]){ "perf", "probe", "-d", event, NULL });
	s = slurp(stat_out);
	/* CSV: "<count>,,<event>,..." */
	for (p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strstr(p, event) && sscanf(p, "%d,", &fired) == 1)
			break;
	if (rc != 0 || fired < 0)
		show("perf stat", stat_out);
	assert_int_equal(rc, 0);
	assert_true(fired >= 0);
	printf("perf stat: %s fired %d times for %d commits\n", event, fired,
	       FIRE_N);
	free(s);
	return fired;
}

/* The same with bpftrace. */
static int fire_with_bpftrace(const char *d, char *why, size_t n)
{
	char *out = wpath("bpftrace.out"), prog[PATH_MAX + 64],
	     cmd[2 * PATH_MAX + 64], *s, *p;
	int rc, fired = -1;

	if (run(NULL, NULL, NULL, (const char *const[]){ "bpftrace", "--version",
							 NULL })) {
		snprintf(why, n, "bpftrace not installed (Debian: bpftrace)");
		return -1;
	}
	snprintf(prog, sizeof(prog),
		 "usdt:%s:shmckpt:commit { @c = count(); }", self);
	snprintf(cmd, sizeof(cmd), "%s --child-commit %s %d", self, d, FIRE_N);
	rc = run(NULL, out, out,
		 (const char *const[]){ "bpftrace", "-e", prog, "-c", cmd,
					NULL });
	s = slurp(out);
	p = strstr(s, "@c: ");
	if (rc != 0 || !p || sscanf(p, "@c: %d", &fired) != 1) {
		char *nl = strchr(s, '\n');
		if (nl)
			*nl = '\0';
		snprintf(why, n, "bpftrace cannot attach (%s)", s);
		free(s);
		return -1;
	}
	free(s);
	printf("bpftrace: usdt shmckpt:commit fired %d times for %d commits\n",
	       fired, FIRE_N);
	return fired;
}

/* A probe fires where the machine allows tracing: perf, else bpftrace. */
static void test_probe_fires(void **state)
{
	char d[PATH_MAX], why1[300] = "", why2[300] = "";
	int fired;

	(void)state;
#if defined(__has_include)
#if !__has_include(<sys/sdt.h>)
	CASE_SKIP("built without <sys/sdt.h>: no probe to fire");
#endif
#endif
	snprintf(d, sizeof(d), "%s/probe-dir", work);
	mkdir(d, 0700);
	fired = fire_with_perf(d, why1, sizeof(why1));
	tu_unlink_regions(d);
	if (fired < 0) {
		fired = fire_with_bpftrace(d, why2, sizeof(why2));
		tu_unlink_regions(d);
	}
	if (fired < 0)
		CASE_SKIP("tracing not permitted or not available here: %s; %s",
			  why1, why2);
	assert_int_equal(fired, FIRE_N);
}

/* ------------------------------------------------------------------------
 * drop-region
 * ------------------------------------------------------------------------ */

static const char PY_DROP[] =
	"import json, sys\n"
	"d = json.load(sys.stdin)\n"
	"slot = int(sys.argv[1])\n"
	"assert d['stream'] == 'drop.3', d\n"
	"assert d['region'] == 'damaged' and d['dropped'] is False, d\n"
	"assert 'hash mismatch' in d['region_error'], d\n"
	"assert d['durable_dropped'] == 0, d\n"
	"assert d['slot_epoch'] == slot, d\n"
	"assert d['committed_epoch'] == slot + 4, d\n"
	"assert d['epochs_dropped'] == 4, d\n";

static int region_exists(const char *name)
{
	char p[PATH_MAX];
	rm_path(dir, name, p, sizeof(p));
	return access(p, F_OK) == 0;
}

static void flip_drop_slot(int i, off_t off)
{
	char p[PATH_MAX];
	unsigned char c;
	int fd;

	snprintf(p, sizeof(p), "%s/%s/slot-%d", dir, DROP, i);
	fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

/* A damaged ring over good slots: ckpt_open refuses and names the way
 * out; drop-region takes it, losing exactly the epochs never durable. */
static void test_drop_region(void **state)
{
	(void)state;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t durable, last, next = -1;
	size_t len;
	char arg[24], want[64], *out, *err, *txt;

	/* five durable epochs; a clean close gives the region back */
	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, DROP, &o, &s), 0);
	commit_some(s, 5, &durable);
	assert_int_equal(ckpt_wait_durable(s, durable, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);
	/* four more that nobody flushes: they live in the ring only */
	ckpt_opts_init(&o);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, DROP, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), durable);
	commit_some(s, 4, &last);
	assert_int_equal(last, durable + 4);
	assert_int_equal(ckpt_close(s), 0);
	/* a byte of the first ring epoch changes under its seal */
	struct ckpt_region *h = rm_map(dir, DROP, 1, &len);
	rm_ring(h)[(h->flush.release_pos + 24) & (h->id.ring_capacity - 1)] ^=
		0x5a;
	rm_unmap(h, len);

	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, DROP, &o, &s), CKPT_ECORRUPT);
	printf("open: %s\n", ckpt_last_error());
	snprintf(want, sizeof(want), "--stream %s --yes", DROP);
	assert_non_null(strstr(ckpt_last_error(), "shmckpt drop-region --dir"));
	assert_non_null(strstr(ckpt_last_error(), want));

	out = wpath("drop.out");
	err = wpath("drop.err");
	/* neither --yes nor --dry-run: a usage error, nothing done */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROP), 64);
	assert_true(region_exists(DROP));
	/* refused while a flusher (a sidecar) holds the stream */
	{
		char sd[PATH_MAX];
		pid_t holder = 0;
		snprintf(sd, sizeof(sd), "%s/%s", dir, DROP);
		int sfd = open(sd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(sfd >= 0);
		int lfd = ckpt__lock(sfd, CKPT_LOCK_FLUSHER, &holder);
		assert_true(lfd >= 0);
		assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
				      "--stream", DROP, "--yes"), 1);
		txt = slurp(err);
		assert_non_null(strstr(txt, "is flushed by pid"));
		free(txt);
		close(lfd);
		close(sfd);
		assert_true(region_exists(DROP));
	}
	/* --dry-run says what would go, and leaves it */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROP, "--dry-run", "--json"), 0);
	snprintf(arg, sizeof(arg), "%lld", (long long)durable);
	if (py)
		assert_int_equal(python(py, out, PY_DROP, arg, NULL), 0);
	assert_true(region_exists(DROP));
	/* --yes drops it, naming the lost epochs */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROP, "--yes"), 0);
	txt = slurp(out);
	printf("drop-region: %s", txt);
	snprintf(want, sizeof(want), "epochs %lld..%lld (4) are lost: committed",
		 (long long)durable + 1, (long long)last);
	assert_non_null(strstr(txt, want));
	free(txt);
	assert_false(region_exists(DROP));

	/* the next open starts from the slot: exactly epoch 5 */
	ckpt_opts_init(&o);
	assert_int_equal(ckpt_open(dir, DROP, &o, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), durable);
	assert_int_equal(ckpt_get_offset(s, "events", 3, &next), 0);
	assert_int_equal(next, 1000 + 4);
	assert_int_equal(ckpt_close(s), 0);

	/* refused on a region that is not damaged: a plain open recovers
	 * every epoch in it */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", PARKED, "--dry-run"), 1);
	txt = slurp(err);
	assert_non_null(strstr(txt, "is not damaged"));
	free(txt);
	assert_true(region_exists(PARKED));

	/* refused while a process has the stream open */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", LIVE, "--yes"), 1);
	txt = slurp(err);
	assert_non_null(strstr(txt, "is open by pid"));
	free(txt);
	assert_true(region_exists(LIVE));

	/* refused when no slot is valid: the ring may hold the only copy */
	ckpt_opts_init(&o);
	o.flusher = CKPT_FLUSHER_EXTERNAL;
	assert_int_equal(ckpt_open(dir, DROP, &o, &s), 0);
	commit_some(s, 1, &last);
	assert_int_equal(ckpt_close(s), 0);
	flip_drop_slot(0, 100);
	flip_drop_slot(1, 100);
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROP, "--yes"), 1);
	txt = slurp(err);
	assert_non_null(strstr(txt, "no valid slot"));
	free(txt);
	assert_true(region_exists(DROP));
	tu_unlink_regions(dir); /* what this test left */
}

/* The flusher failed on a datasync after writing its slot: only the region
 * says not to trust that slot, so drop-region must not remove it. */
static void test_drop_region_failed_flusher(void **state)
{
	(void)state;
	struct ckpt_fault_plan plan;
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int64_t e, durable = 0, failed = 0;
	size_t len;
	char *out = wpath("dropf.out"), *err = wpath("dropf.err"), *txt;

	memset(&plan, 0, sizeof(plan));
	plan.eio_sync_at = 3; /* two good slots, then a failed datasync */
	ckpt_opts_init(&o);
	o.fault = &plan;
	assert_int_equal(ckpt_open(dir, DROPF, &o, &s), 0);
	for (int i = 0; i < 10 && !failed; i++) {
		commit_some(s, 1, &e);
		int ret = ckpt_wait_durable(s, e, 10000);
		if (ret == 0)
			durable = e;
		else if (ret == CKPT_EFAILED)
			failed = e;
		else
			fail_msg("wait_durable: %s", ckpt_strerror(ret));
	}
	assert_true(failed > durable && durable > 0);
	commit_some(s, 3, &e); /* the ring keeps them */
	assert_true(ckpt_close(s) < 0);

	/* the ring is intact: a plain open recovers it all, nothing to drop */
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROPF, "--dry-run"), 1);
	txt = slurp(err);
	assert_non_null(strstr(txt, "is not damaged"));
	free(txt);

	/* damaged too: still refused, the slot of epoch `failed` is not to
	 * be trusted and only the region knows it */
	struct ckpt_region *h = rm_map(dir, DROPF, 1, &len);
	rm_ring(h)[(h->flush.release_pos + 24) & (h->id.ring_capacity - 1)] ^=
		0x5a;
	rm_unmap(h, len);
	assert_int_equal(TOOL(out, err, "drop-region", "--dir", dir,
			      "--stream", DROPF, "--yes"), 1);
	txt = slurp(err);
	printf("refused: %s", txt);
	assert_non_null(strstr(txt, "never made durable"));
	free(txt);
	assert_true(region_exists(DROPF));
	tu_unlink_regions(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stat_json),
		cmocka_unit_test(test_stat_watch),
		cmocka_unit_test(test_stat_prometheus),
		cmocka_unit_test(test_stat_writes_nothing),
		cmocka_unit_test(test_stat_bad_region),
		cmocka_unit_test(test_stat_usage),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_dump_inspect),
		cmocka_unit_test(test_drop_region),
		cmocka_unit_test(test_drop_region_failed_flusher),
		cmocka_unit_test(test_probes_present),
		cmocka_unit_test(test_probe_fires),
	};
	ssize_t n;
	char *slash;

	if (argc == 4 && !strcmp(argv[1], "--child-commit"))
		return child_commit(argv[2], atoi(argv[3]));

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		tu_skip("cannot read /proc/self/exe");
	self[n] = '\0';
	/* <O>/tests/test_tools -> <O>/bin/shmckpt */
	snprintf(bin, sizeof(bin), "%s", self);
	slash = strrchr(bin, '/');
	*slash = '\0';
	slash = strrchr(bin, '/');
	snprintf(slash, sizeof(bin) - (size_t)(slash - bin), "/bin/shmckpt");
	if (access(bin, X_OK) != 0) {
		fprintf(stderr, "%s not built: make tools (same O=)\n", bin);
		return 1;
	}
	py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3"
						   : "python3";
	if (run(NULL, NULL, NULL,
		(const char *const[]){ (char *)py, "-c", "import json", NULL }))
		py = NULL;
	return cmocka_run_group_tests(tests, setup, teardown);
}
