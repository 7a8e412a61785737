/*
 * bench_flush.c - flush throughput with a large state: snapshot bytes made
 * durable per second by the flusher, against the device's own sequential
 * write rate measured in the same run.
 *
 * State: about --bytes of snapshot image (default 128 MiB: 16 B keys with
 * 112 B values, 136 B per entry in the image), built in memory, encoded and
 * written as the stream's slot-0 (slot-1 blank), then recovered by
 * ckpt_open (in-process flusher, backend AUTO).  The main thread then
 * commits one put (an existing key, same size) every millisecond, so the
 * flusher always has news when a write completes and writes back to back:
 * each cycle encodes the whole snapshot (XXH3-128 included) into its image
 * buffer and writes + fdatasyncs it into the slot that is not the newest.
 * The first two flushes (each slot's first write may grow it) are warm-up.
 *
 * Figures, over --seconds (default 15) after warm-up:
 *   flush_mbps     image bytes made durable / wall time (region counter
 *                  bytes_written, so exactly what reached the slots)
 *   device_mbps    sequential O_DIRECT writes of 4 MiB blocks into a file
 *                  of the same directory (1 GiB or 3 s, then fdatasync),
 *                  measured before and after the flusher run; the higher
 *                  of the two is used (the smaller fraction)
 *   buffered_mbps  pwrite of one image-sized buffer + fdatasync into a
 *                  preallocated file, best of 3: the ceiling of the
 *                  flusher's own way of writing, without the encode
 *   fraction       flush_mbps / device_mbps
 * and where a flush cycle goes: the mean write + fdatasync time and the
 * mean whole cycle (encode start to durable) from the region's counters.
 *
 * Options: --bytes N, --seconds S (env CKPT_BENCH_BYTES,
 * CKPT_BENCH_SECONDS); CKPT_BENCH_DIR picks the directory (default: the
 * first of $TMPDIR, /var/tmp, /tmp that is not tmpfs), CKPT_RESULTS where
 * results go.
 *
 * Output: a summary, perf/results/flush.csv (one row per measurement) and,
 * last, one JSON line.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"
#include "slot.h"
#include "snapshot.h"

#define NAME "flush"
#define KEY_LEN 16
#define VAL_LEN 112
#define ENTRY (8 + KEY_LEN + VAL_LEN)
#define DIRECT_BLOCK (4u << 20)
#define DIRECT_MAX (1ull << 30)

static void __attribute__((noreturn)) die(const char *what, int ret)
{
	fprintf(stderr, "bench_flush: %s: %s (%s)\n", what, ckpt_strerror(ret),
		ckpt_last_error());
	exit(1);
}

static void make_kv(unsigned char *key, unsigned char *val, uint64_t i,
		    uint64_t salt)
{
	uint64_t h = mix(i + 1);

	memcpy(key, &i, 8);
	memcpy(key + 8, &h, 8);
	for (size_t j = 0; j < VAL_LEN; j += 8) {
		uint64_t w = h + j + salt;
		memcpy(val + j, &w, 8);
	}
}

static int write_all(int fd, const void *p, size_t n, off_t off)
{
	const unsigned char *b = p;

	while (n) {
		ssize_t r = pwrite(fd, b, n > (1u << 30) ? (1u << 30) : n, off);
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

/* Sequential O_DIRECT writes: bytes per second (0 if O_DIRECT is refused,
 * with *why set). */
static double device_rate(const char *dir, const char **why)
{
	char path[4200];
	void *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/direct-probe", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		*why = "O_DIRECT refused by the file system";
		return 0;
	}
	if (posix_memalign(&buf, 4096, DIRECT_BLOCK))
		die("posix_memalign", -ENOMEM);
	for (size_t i = 0; i < DIRECT_BLOCK; i++)
		((unsigned char *)buf)[i] = (unsigned char)(i * 131u + 7u);
	uint64_t done = 0;
	double t0 = now_s();
	while (done < DIRECT_MAX && now_s() - t0 < 3.0) {
		ssize_t r = pwrite(fd, buf, DIRECT_BLOCK, (off_t)done);
		if (r != (ssize_t)DIRECT_BLOCK) {
			*why = "O_DIRECT write failed";
			close(fd);
			unlink(path);
			free(buf);
			return 0;
		}
		done += DIRECT_BLOCK;
	}
	if (fdatasync(fd) < 0)
		die("fdatasync", -errno);
	double el = now_s() - t0;
	close(fd);
	unlink(path);
	free(buf);
	return (double)done / el;
}

/* pwrite of @len bytes + fdatasync into a preallocated file, best of 3:
 * the flusher's way of writing without its encode. */
static double buffered_rate(const char *dir, const void *img, size_t len)
{
	char path[4200];
	double best = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/buffered-probe", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, img, len, 0) < 0 || fsync(fd) < 0)
		die("buffered probe", -errno);
	for (int r = 0; r < 3; r++) {
		double t0 = now_s();
		if (write_all(fd, img, len, 0) < 0 || fdatasync(fd) < 0)
			die("buffered probe", -errno);
		double rate = (double)len / (now_s() - t0);
		if (rate > best)
			best = rate;
	}
	close(fd);
	unlink(path);
	return best;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_flush [--bytes N] [--seconds S]\n"
			"  (env CKPT_BENCH_BYTES, CKPT_BENCH_SECONDS, "
			"CKPT_BENCH_DIR, CKPT_RESULTS)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	uint64_t bytes = getenv("CKPT_BENCH_BYTES") ?
				 strtoull(getenv("CKPT_BENCH_BYTES"), NULL, 0) :
				 (128ull << 20);
	double seconds = getenv("CKPT_BENCH_SECONDS") ?
				 atof(getenv("CKPT_BENCH_SECONDS")) : 15;
	unsigned char key[KEY_LEN], val[VAL_LEN];
	char dir[1024], path[2048], abs[CKPT_DIR_MAX];
	const char *why = NULL;
	struct statfs sf;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bytes") && i + 1 < argc)
			bytes = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else
			usage();
	}
	if (bytes < (1u << 20) || seconds < 1)
		usage();

	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-flush-XXXXXX",
		 pick_base());
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	if (statfs(dir, &sf) != 0)
		die("statfs", -errno);
	printf("bench flush: flusher throughput with a large state against "
	       "the device's sequential write rate\n");
	printf("  directory      %s (%s)\n", dir, fs_name((long)sf.f_type));
	fflush(stdout);

	double dev1 = device_rate(dir, &why);
	printf("  device         %.0f MB/s sequential O_DIRECT (4 MiB "
	       "blocks), before%s%s\n", dev1 / 1e6, why ? ": " : "",
	       why ? why : "");
	fflush(stdout);

	/* Build the state and lay it out as stream NAME's slot-0. */
	uint64_t nkeys = (bytes - CKPT_SLOT_HDR_SIZE - 64) / ENTRY;
	double t0 = now_s();
	ckpt__snap_t *s = ckpt__snap_new();
	if (!s)
		die("snap_new", -ENOMEM);
	ret = ckpt__snap_reserve(s, (size_t)nkeys,
				 (size_t)nkeys * (KEY_LEN + VAL_LEN));
	if (ret < 0)
		die("reserve", ret);
	for (uint64_t i = 0; i < nkeys; i++) {
		make_kv(key, val, i, 0);
		ckpt_delta_t d = { .type = CKPT_D_PUT, .key = key,
				   .klen = KEY_LEN, .val = val,
				   .vlen = VAL_LEN };
		if ((ret = ckpt__snap_apply(s, &d)) < 0)
			die("put", ret);
	}
	ckpt_delta_t od = { .type = CKPT_D_OFFSET, .topic = "t", .topic_len = 1,
			    .partition = 0, .offset = 1 };
	if ((ret = ckpt__snap_apply(s, &od)) < 0)
		die("offset", ret);
	ckpt__snap_set_epoch(s, 1);
	size_t cap = ckpt__slot_image_size(s);
	unsigned char *img = malloc(cap);
	if (!img)
		die("malloc", -ENOMEM);
	ssize_t ilen = ckpt__slot_encode(s, NAME, 1, 0, img, cap);
	if (ilen < 0)
		die("encode", (int)ilen);
	/* the encode a flusher pays per write, into a resident buffer */
	double te = now_s();
	if (ckpt__slot_encode(s, NAME, 1, 0, img, cap) != ilen)
		die("encode", -EINVAL);
	double t_encode = now_s() - te;
	snprintf(path, sizeof(path), "%s/" NAME, dir);
	if (mkdir(path, 0700) < 0)
		die("mkdir", -errno);
	snprintf(path, sizeof(path), "%s/" NAME "/slot-0", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, img, (size_t)ilen, 0) < 0 || fsync(fd) < 0)
		die("write slot-0", -errno);
	close(fd);
	{
		static unsigned char blank[CKPT_SLOT_HDR_SIZE];
		snprintf(path, sizeof(path), "%s/" NAME "/slot-1", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 ||
		    ckpt__slot_encode_blank(NAME, blank, sizeof(blank)) < 0 ||
		    write_all(fd, blank, sizeof(blank), 0) < 0 || fsync(fd) < 0)
			die("write blank slot", -EIO);
		close(fd);
	}
	double buf_rate = buffered_rate(dir, img, (size_t)ilen);
	free(img);
	ckpt__snap_free(s);
	printf("  state          %llu keys of %d+%d B, image %zd bytes (%.1f "
	       "MiB); built in %.1f s; encode %.3f s (%.0f MB/s)\n",
	       (unsigned long long)nkeys, KEY_LEN, VAL_LEN, ilen,
	       (double)ilen / 1048576.0, now_s() - t0, t_encode,
	       (double)ilen / t_encode / 1e6);
	printf("  buffered       %.0f MB/s: pwrite of one image + fdatasync, "
	       "best of 3 (the flusher's way of writing, no encode)\n",
	       buf_rate / 1e6);
	fflush(stdout);

	/* The flusher at work. */
	ckpt_stream_t *st;
	ckpt_opts_t o;
	ckpt_opts_init(&o);
	o.full_policy = CKPT_FULL_WAIT;
	o.full_wait_ms = 60000;
	double to = now_s();
	ret = ckpt_open(dir, NAME, &o, &st);
	if (ret < 0)
		die("ckpt_open", ret);
	double t_open = now_s() - to;
	if (ckpt_recovered_epoch(st) != 1)
		die("recovered another epoch", -EINVAL);
	ckpt__region_t rg;
	if (ckpt__absdir(dir, abs, sizeof(abs)) < 0 ||
	    (ret = ckpt__region_attach(abs, NAME, &rg)) < 0)
		die("region attach", ret);
	struct ckpt_region_flush *fp = &rg.hdr->flush;
	struct ckpt_region_stats *sp = &rg.hdr->stats;

	uint64_t e = 1, i = 0, f0 = 0, b0 = 0, s0 = 0, fl0 = 0;
	double m0 = 0, end = 0, tick = now_s();
	int measuring = 0;
	for (;;) {
		tick += 0.001;
		double wait = tick - now_s();
		if (wait > 0) {
			struct timespec ts = { 0, (long)(wait * 1e9) };
			nanosleep(&ts, NULL);
		}
		make_kv(key, val, (i++ * 7919) % nkeys, e);
		if ((ret = ckpt_put(st, key, KEY_LEN, val, VAL_LEN)) < 0)
			die("ckpt_put", ret);
		int64_t got = ckpt_commit(st);
		if (got < 0)
			die("ckpt_commit", (int)got);
		e = (uint64_t)got;
		uint64_t flushes = __atomic_load_n(&fp->flushes,
						   __ATOMIC_RELAXED);
		if (!measuring && flushes >= 2) {
			measuring = 1;
			m0 = now_s();
			end = m0 + seconds;
			f0 = flushes;
			b0 = __atomic_load_n(&fp->bytes_written,
					     __ATOMIC_RELAXED);
			s0 = __atomic_load_n(&sp->sync_ns_sum,
					     __ATOMIC_RELAXED);
			fl0 = __atomic_load_n(&sp->flush_ns_sum,
					      __ATOMIC_RELAXED);
		}
		if (measuring && now_s() >= end)
			break;
		if (!measuring && now_s() - tick > 120)
			die("no flush within 120 s", -ETIMEDOUT);
	}
	/* count what completed inside the window only */
	uint64_t f1 = __atomic_load_n(&fp->flushes, __ATOMIC_RELAXED);
	uint64_t b1 = __atomic_load_n(&fp->bytes_written, __ATOMIC_RELAXED);
	uint64_t s1 = __atomic_load_n(&sp->sync_ns_sum, __ATOMIC_RELAXED);
	uint64_t fl1 = __atomic_load_n(&sp->flush_ns_sum, __ATOMIC_RELAXED);
	double m1 = now_s();
	ckpt_status_t status;
	ckpt_status(st, &status);
	ckpt__region_unmap(&rg);
	ret = ckpt_close(st);
	if (ret < 0)
		fprintf(stderr, "bench_flush: ckpt_close: %s\n",
			ckpt_strerror(ret));
	ckpt__region_unlink(abs, NAME);

	double dev2 = device_rate(dir, &why);
	printf("  device         %.0f MB/s sequential O_DIRECT, after\n",
	       dev2 / 1e6);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	uint64_t nf = f1 - f0;
	double flush_rate = (double)(b1 - b0) / (m1 - m0);
	double dev = dev1 > dev2 ? dev1 : dev2;
	double io_ms = nf ? (double)(s1 - s0) / (double)nf / 1e6 : 0;
	double cyc_ms = nf ? (double)(fl1 - fl0) / (double)nf / 1e6 : 0;
	double frac = dev > 0 ? flush_rate / dev : 0;
	printf("  flusher        backend %s; ckpt_open (recovery) %.2f s; %llu"
	       " flushes in %.1f s, %llu epochs committed\n", status.backend,
	       t_open, (unsigned long long)nf, m1 - m0,
	       (unsigned long long)e);
	printf("  per flush      %.1f ms in all (encode start -> durable), of "
	       "which %.1f ms write + fdatasync\n", cyc_ms, io_ms);
	printf("  throughput     %.0f MB/s of snapshot made durable = %.0f%% "
	       "of the device's %.0f MB/s (%.0f%% of buffered write + "
	       "fdatasync)\n", flush_rate / 1e6, 100 * frac, dev / 1e6,
	       buf_rate > 0 ? 100 * flush_rate / buf_rate : 0);

	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/flush.csv", res);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "what,mb_per_s,detail\n");
		fprintf(f, "device_direct_before,%.1f,4 MiB O_DIRECT blocks\n",
			dev1 / 1e6);
		fprintf(f, "device_direct_after,%.1f,4 MiB O_DIRECT blocks\n",
			dev2 / 1e6);
		fprintf(f, "buffered_write_fdatasync,%.1f,%zd B per write\n",
			buf_rate / 1e6, ilen);
		fprintf(f, "encode,%.1f,%zd B in %.4f s\n",
			(double)ilen / t_encode / 1e6, ilen, t_encode);
		fprintf(f, "flusher,%.1f,%llu flushes of %zd B; %.1f ms per "
			   "cycle; %.1f ms write+fdatasync; backend %s\n",
			flush_rate / 1e6, (unsigned long long)nf, ilen, cyc_ms,
			io_ms, status.backend);
		fclose(f);
		printf("  results        %s\n", path);
	} else {
		fprintf(stderr, "bench_flush: cannot write %s\n", path);
	}

	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"flush\",\"image_bytes\":%zd,\"flush_mbps\":%.0f,"
	       "\"device_mbps\":%.0f,\"fraction\":%.3f,"
	       "\"buffered_mbps\":%.0f,\"encode_mbps\":%.0f,"
	       "\"flush_ms\":%.1f,\"io_ms\":%.1f,\"fs\":\"%s\","
	       "\"backend\":\"%s\"}\n",
	       ilen, flush_rate / 1e6, dev / 1e6, frac, buf_rate / 1e6,
	       (double)ilen / t_encode / 1e6, cyc_ms, io_ms,
	       fs_name((long)sf.f_type), status.backend);
	return 0;
}
