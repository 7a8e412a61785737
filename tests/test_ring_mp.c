/*
 * test_ring_mp.c - one writer process, one reader process, 1 M epochs.
 *
 * The writer commits random epochs (tests/deltagen.h: every delta type,
 * empty keys, values and epochs, sizes up to 4 KiB) through a 256 KiB ring,
 * so the ring wraps over a thousand times and the writer meets
 * backpressure (CKPT_FULL_WAIT).  The reader, in another process,
 * regenerates every epoch from the seed and checks it: number consecutive,
 * delta count, XXH3 of the contents.  It releases space the way a flusher
 * does (ckpt_reader_durable), now and then after a pause, so the ring
 * really fills.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "deltagen.h"
#include "regionmap.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "mp"
#define RING (256u * 1024u)

static int writer_main(const char *dir, uint64_t seed, int64_t n)
{
	dg_epoch_t *g = malloc(sizeof(*g));
	ckpt_stream_t *s;
	ckpt_opts_t o;
	int ret;

	dg_opts(&o, RING);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0) {
		fprintf(stderr, "writer: open: %s: %s\n", ckpt_strerror(ret),
			ckpt_last_error());
		return 1;
	}
	for (int64_t e = 1; e <= n; e++) {
		int64_t c;
		dg_gen(seed, e, g);
		ret = dg_stage(s, g);
		if (ret < 0) {
			fprintf(stderr, "writer: epoch %lld stage: %s: %s\n",
				(long long)e, ckpt_strerror(ret),
				ckpt_last_error());
			return 1;
		}
		/* an empty epoch reserved nothing: its seal may wait */
		while ((c = ckpt_commit(s)) == -EAGAIN && g->n == 0)
			;
		if (c != e) {
			fprintf(stderr, "writer: commit of %lld returned %lld: %s\n",
				(long long)e, (long long)c, ckpt_last_error());
			return 1;
		}
	}
	ret = ckpt_close(s);
	free(g);
	return ret < 0;
}

static int reader_main(const char *dir, uint64_t seed, int64_t n)
{
	dg_epoch_t *g = malloc(sizeof(*g));
	ckpt_reader_t *r;
	ckpt_epoch_t ep;
	int64_t last = 0;
	uint64_t end = 0, released, releases = 0;
	int ret;

	ret = ckpt_reader_open(dir, NAME, 0, &r);
	if (ret < 0) {
		fprintf(stderr, "reader: open: %s: %s\n", ckpt_strerror(ret),
			ckpt_last_error());
		return 1;
	}
	released = end;
	while (last < n) {
		ret = ckpt_reader_next(r, &ep);
		if (ret < 0) {
			fprintf(stderr, "reader: after epoch %lld: %s: %s\n",
				(long long)last, ckpt_strerror(ret),
				ckpt_last_error());
			return 1;
		}
		if (ret == 0) {
			if (end != released) { /* caught up: flush the rest */
				ckpt_reader_durable(r, last, end);
				released = end;
			}
			continue;
		}
		if (ep.epoch != last + 1) {
			fprintf(stderr, "reader: epoch %lld after %lld\n",
				(long long)ep.epoch, (long long)last);
			return 1;
		}
		dg_gen(seed, ep.epoch, g);
		const char *why = dg_check(&ep, g);
		if (why) {
			fprintf(stderr, "reader: %s\n", why);
			return 1;
		}
		last = ep.epoch;
		end = ep.end_pos;
		if (end - released >= RING / 2) {
			/* now and then a slow "flush", so the writer fills
			 * the ring and must wait */
			if (++releases % 16 == 0)
				usleep(500);
			ret = ckpt_reader_durable(r, last, end);
			if (ret < 0) {
				fprintf(stderr, "reader: durable: %s\n",
					ckpt_last_error());
				return 1;
			}
			released = end;
		}
	}
	ckpt_reader_durable(r, last, end);
	if (ckpt_reader_durable_epoch(r) != n) {
		fprintf(stderr, "reader: durable epoch %lld != %lld\n",
			(long long)ckpt_reader_durable_epoch(r), (long long)n);
		return 1;
	}
	ckpt_reader_close(r);
	free(g);
	return 0;
}

static void test_mp_million(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("ring-mp");
	uint64_t seed = tu_seed("test_ring_mp");
	int64_t n = (int64_t)tu_scaled(1000000);
	ckpt_stream_t *s;
	ckpt_opts_t o;
	pid_t wpid, rpid;
	int wst = -1, rst = -1;
	uint64_t t0 = tu_now_ns();

	/* create the stream, so that the reader can attach at once */
	dg_opts(&o, RING);
	assert_int_equal(ckpt_open(dir, NAME, &o, &s), 0);
	assert_int_equal(ckpt_close(s), 0);

	fflush(NULL);
	rpid = fork();
	assert_true(rpid >= 0);
	if (rpid == 0)
		_exit(reader_main(dir, seed, n));
	wpid = fork();
	assert_true(wpid >= 0);
	if (wpid == 0)
		_exit(writer_main(dir, seed, n));

	/* if one side fails, the other would wait for ever: stop it */
	while (wst == -1 || rst == -1) {
		int st;
		pid_t p = wait(&st);
		if (p < 0)
			break;
		if (p == wpid)
			wst = st;
		else if (p == rpid)
			rst = st;
		if (p == wpid && st != 0 && rst == -1)
			kill(rpid, SIGKILL);
		if (p == rpid && st != 0 && wst == -1)
			kill(wpid, SIGKILL);
	}
	assert_int_equal(wst, 0);
	assert_int_equal(rst, 0);

	size_t len;
	struct ckpt_region *h = rm_map(dir, NAME, 0, &len);
	double secs = (double)(tu_now_ns() - t0) / 1e9;
	printf("%lld epochs in %.2f s: %llu records, %llu ring bytes "
	       "(%llu laps of %u), %llu backpressure events, %llu eagain\n",
	       (long long)n, secs, (unsigned long long)h->prod.records,
	       (unsigned long long)h->prod.bytes,
	       (unsigned long long)(h->prod.bytes / RING), RING,
	       (unsigned long long)h->prod.backpressure_events,
	       (unsigned long long)h->prod.eagain);
	assert_int_equal(h->prod.commits, (uint64_t)n);
	assert_int_equal(h->prod.committed_epoch, (uint64_t)n);
	assert_int_equal(h->flush.release_pos, h->prod.commit_pos);
	/* the ring wrapped many times and the writer had to wait */
	assert_true(h->prod.bytes / RING >= (uint64_t)n / 4000);
	assert_true(h->prod.backpressure_events > 0);
	rm_unmap(h, len);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mp_million),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
