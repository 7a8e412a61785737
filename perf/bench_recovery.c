/*
 * bench_recovery.c - recovery of a large snapshot from the page cache:
 * read the slot file, verify it (XXH3-128 + every length) and load it into
 * a snapshot.  Goal (BRIEF): 1 GiB loaded and verified in <= 2 s.
 *
 * A snapshot of about --bytes image bytes (default 1 GiB: ~7.9 M keys of
 * 16 B with 112 B values, 136 B per entry in the image) is built, encoded,
 * written to a file under $TMPDIR (or /tmp) and left in the page cache.
 * Then, --reps times (default 3):
 *   read_s    ckpt__slot_read_file (open, fstat, malloc, read)
 *   verify_s  ckpt__slot_verify alone (hash + structure), for the split
 *   decode_s  ckpt__slot_decode (verify again, then load every entry)
 *   total_s   read_s + decode_s: what recovery costs
 *   open_s    the whole of ckpt_open on the same slot (region, lock,
 *             slots, one verified load, flusher start)
 * and the raw XXH3-128 over the same image, for the hashing floor.
 *
 * The first repetition also pays the first touch of fresh memory (read
 * buffer, table, arena), which on a VM whose memory the host backs lazily
 * costs more than everything else; the JSON line reports the best
 * repetition and the CSV keeps every one.
 *
 * Output: a line per repetition, perf/results/recovery.csv (one row per
 * repetition; CKPT_RESULTS=dir writes it elsewhere), and, last, one JSON
 * line with the best repetition:
 *   {"bench":"recovery","bytes":…,"seconds":total_s,"open_seconds":…,
 *    "verify_gbps":bytes/verify_s/1e9,"xxh3_gbps":bytes/xxh3_s/1e9}
 * The decoded snapshot is compared with the original once, untimed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "benchutil.h"
#include "shmckpt.h"
#include "slot.h"
#include "snapshot.h"

#define KEY_LEN 16
#define VAL_LEN 112
#define ENTRY (8 + KEY_LEN + VAL_LEN) /* bytes per key in the image */

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_recovery: %s: %s (%s)\n", what,
		ckpt_strerror(ret), ckpt_last_error());
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_recovery [--bytes N] [--reps R]\n"
			"  (env CKPT_BENCH_BYTES, CKPT_BENCH_REPS, "
			"CKPT_RESULTS)\n");
	exit(2);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *env = getenv("CKPT_BENCH_BYTES");
	uint64_t bytes = env ? strtoull(env, NULL, 0) : (1ull << 30);
	unsigned reps = getenv("CKPT_BENCH_REPS") ?
				(unsigned)atoi(getenv("CKPT_BENCH_REPS")) : 3;
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[4096], path[4200];
	unsigned char key[KEY_LEN], val[VAL_LEN];
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bytes") && i + 1 < argc)
			bytes = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = (unsigned)atoi(argv[++i]);
		else
			usage();
	}
	if (bytes < CKPT_SLOT_HDR_SIZE + 16 + ENTRY || reps < 1)
		usage();

	/* Build. */
	uint64_t nkeys = (bytes - CKPT_SLOT_HDR_SIZE - 16) / ENTRY;
	ckpt__snap_t *s = ckpt__snap_new();
	double t0 = now_s();
	if (!s)
		die("snap_new", -ENOMEM);
	ret = ckpt__snap_reserve(s, (size_t)nkeys,
				 (size_t)nkeys * (KEY_LEN + VAL_LEN));
	if (ret < 0)
		die("reserve", ret);
	for (uint64_t i = 0; i < nkeys; i++) {
		uint64_t h = mix(i + 1);
		memcpy(key, &i, 8);
		memcpy(key + 8, &h, 8);
		/* Values differ per key but cost little to make. */
		for (size_t j = 0; j < VAL_LEN; j += 8) {
			uint64_t w = h + j;
			memcpy(val + j, &w, 8);
		}
		ckpt_delta_t d = { .type = CKPT_D_PUT, .key = key,
				   .klen = KEY_LEN, .val = val,
				   .vlen = VAL_LEN };
		ret = ckpt__snap_apply(s, &d);
		if (ret < 0)
			die("put", ret);
	}
	for (int p = 0; p < 16; p++) {
		ckpt_delta_t d = { .type = CKPT_D_OFFSET, .topic = "events",
				   .topic_len = 6, .partition = p,
				   .offset = 1000000 + p };
		ret = ckpt__snap_apply(s, &d);
		if (ret < 0)
			die("offset", ret);
	}
	ckpt__snap_set_epoch(s, 123456);
	double t_build = now_s() - t0;

	/* Encode and write. */
	size_t cap = ckpt__slot_image_size(s);
	unsigned char *img = malloc(cap);
	if (!img)
		die("malloc image", -ENOMEM);
	t0 = now_s();
	ssize_t ilen = ckpt__slot_encode(s, "bench", 1, 0, img, cap);
	double t_encode = now_s() - t0;
	if (ilen < 0)
		die("encode", (int)ilen);
	/* Again into the same, now resident, buffer: what a flusher that
	 * keeps its buffer pays per write (the first pass also paid the
	 * buffer's page faults). */
	t0 = now_s();
	ilen = ckpt__slot_encode(s, "bench", 1, 0, img, cap);
	double t_encode2 = now_s() - t0;
	if (ilen < 0)
		die("encode", (int)ilen);
	snprintf(dir, sizeof(dir), "%s/ckpt-bench-recovery-XXXXXX", tmp);
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	/* laid out as stream "bench" of checkpoint directory @dir, so that
	 * ckpt_open can recover it too: slot-0 the image, slot-1 blank */
	snprintf(path, sizeof(path), "%s/bench", dir);
	if (mkdir(path, 0700) < 0)
		die("mkdir", -errno);
	snprintf(path, sizeof(path), "%s/bench/slot-0", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create slot file", -errno);
	ret = write_all(fd, img, (size_t)ilen);
	if (ret < 0)
		die("write slot file", ret);
	close(fd);
	{
		static unsigned char blank[CKPT_SLOT_HDR_SIZE];
		snprintf(path, sizeof(path), "%s/bench/slot-1", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || ckpt__slot_encode_blank("bench", blank,
						      sizeof(blank)) < 0 ||
		    write_all(fd, blank, sizeof(blank)) < 0)
			die("write blank slot", -EIO);
		close(fd);
	}

	/* Raw hash speed over the same bytes: the floor for verification. */
	double t_xxh3 = 1e9;
	for (unsigned r = 0; r < reps; r++) {
		t0 = now_s();
		XXH128_hash_t h = XXH3_128bits(img, (size_t)ilen);
		double t = now_s() - t0;
		if (h.low64 == 42 && h.high64 == 42)
			printf(" "); /* keep the call */
		if (t < t_xxh3)
			t_xxh3 = t;
	}
	free(img);

	printf("bench_recovery: %llu keys of %d+%d B, image %zd bytes "
	       "(%.2f GiB); build %.2f s, encode %.2f s cold, %.2f s "
	       "(%.2f GB/s) into a resident buffer\n",
	       (unsigned long long)nkeys, KEY_LEN, VAL_LEN, ilen,
	       (double)ilen / (1u << 30), t_build, t_encode, t_encode2,
	       (double)ilen / t_encode2 / 1e9);

	char csvpath[4096];
	snprintf(csvpath, sizeof(csvpath), "%s/recovery.csv", res);
	mkdir(res, 0755);
	FILE *csv = fopen(csvpath, "w");
	if (csv)
		fprintf(csv, "rep,bytes,nkeys,read_s,verify_s,decode_s,"
			     "total_s,xxh3_s\n");
	else
		fprintf(stderr, "bench_recovery: cannot write %s\n", csvpath);

	snprintf(path, sizeof(path), "%s/bench", dir);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/recovery.csv", res);
	double best_total = 1e9, best_verify = 1e9;
	ckpt__snap_t *d = ckpt__snap_new();
	if (dfd < 0 || !d)
		die("open dir", -errno);
	for (unsigned r = 0; r < reps; r++) {
		ckpt__slot_info_t info;
		void *buf;
		size_t len;

		ckpt__snap_clear(d); /* untimed: recovery starts empty */
		t0 = now_s();
		ret = ckpt__slot_read_file(dfd, "slot-0", (size_t)ilen, &buf,
					   &len);
		double t_read = now_s() - t0;
		if (ret < 0)
			die("read_file", ret);
		t0 = now_s();
		ret = ckpt__slot_verify(buf, len, "bench", &info);
		double t_verify = now_s() - t0;
		if (ret < 0)
			die("verify", ret);
		t0 = now_s();
		ret = ckpt__slot_decode(buf, len, "bench", d, &info);
		double t_decode = now_s() - t0;
		if (ret < 0)
			die("decode", ret);
		free(buf);
		double total = t_read + t_decode;
		printf("  rep %u: read %.3f s, verify %.3f s (%.2f GB/s), "
		       "decode %.3f s; recovery %.3f s (goal <= 2 s per GiB)\n",
		       r, t_read, t_verify, (double)ilen / t_verify / 1e9,
		       t_decode, total);
		if (csv)
			fprintf(csv, "%u,%zd,%llu,%.6f,%.6f,%.6f,%.6f,%.6f\n",
				r, ilen, (unsigned long long)nkeys, t_read,
				t_verify, t_decode, total, t_xxh3);
		if (total < best_total)
			best_total = total;
		if (t_verify < best_verify)
			best_verify = t_verify;
	}
	/* The whole of ckpt_open on it: region, lock, both slots opened,
	 * the newest read, verified and loaded once, the flusher started. */
	double best_open = 1e9;
	for (unsigned r = 0; r < reps; r++) {
		ckpt_stream_t *st;
		const void *v;
		size_t vlen;

		t0 = now_s();
		ret = ckpt_open(dir, "bench", NULL, &st);
		double t_open = now_s() - t0;
		if (ret < 0)
			die("ckpt_open", ret);
		uint64_t k0 = 0, h0 = mix(1); /* the first key built above */
		memcpy(key, &k0, 8);
		memcpy(key + 8, &h0, 8);
		if (ckpt_recovered_epoch(st) != ckpt__snap_epoch(s) ||
		    ckpt_get(st, key, KEY_LEN, &v, &vlen) < 0 ||
		    vlen != VAL_LEN)
			die("ckpt_open recovered something else", -EINVAL);
		ret = ckpt_close(st);
		if (ret < 0)
			die("ckpt_close", ret);
		printf("  rep %u: ckpt_open %.3f s (goal <= 2 s per GiB)\n", r,
		       t_open);
		if (csv)
			fprintf(csv, "open%u,%zd,%llu,,,,%.6f,%.6f\n", r, ilen,
				(unsigned long long)nkeys, t_open, t_xxh3);
		if (t_open < best_open)
			best_open = t_open;
	}
	if (csv)
		fclose(csv);
	if (!ckpt__snap_equal(s, d)) {
		fprintf(stderr, "bench_recovery: decoded snapshot differs\n");
		return 1;
	}
	printf("  raw XXH3-128 %.3f s (%.2f GB/s); decoded state equals the "
	       "original; results in %s\n", t_xxh3,
	       (double)ilen / t_xxh3 / 1e9, path);

	unlinkat(dfd, "slot-0", 0);
	unlinkat(dfd, "slot-1", 0);
	unlinkat(dfd, "lock", 0);
	close(dfd);
	snprintf(path, sizeof(path), "%s/bench", dir);
	rmdir(path);
	rmdir(dir);
	ckpt__snap_free(d);
	ckpt__snap_free(s);

	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"recovery\",\"bytes\":%zd,\"seconds\":%.3f,"
	       "\"open_seconds\":%.3f,\"verify_gbps\":%.2f,"
	       "\"xxh3_gbps\":%.2f}\n",
	       ilen, best_total, best_open, (double)ilen / best_verify / 1e9,
	       (double)ilen / t_xxh3 / 1e9);
	return 0;
}
