/*
 * bench_recovery_sizes.c - recovery time against snapshot size, from the
 * page cache (warm) and, where the machine lets us drop caches, from disk
 * (cold); with the rate at which recovery hashes next to raw XXH3-128.
 *
 * Sizes: 1, 4, 16, 64, 256 and 1024 MiB of slot image (up to --max-bytes),
 * 16 B keys with 112 B values (136 B per entry in the image), like
 * bench_recovery.  For each size a snapshot is built, encoded and written
 * as slot-0 of its own stream (slot-1 blank) in a directory on a real disk,
 * then freed: recovery starts from the files alone.
 *
 * Per size:
 *   cold_s     as root with a writable /proc/sys/vm/drop_caches: sync,
 *              drop caches, then the whole of ckpt_open (region, lock, both
 *              slots read and verified, the state loaded, the flusher
 *              started).  Otherwise skipped, and the reason printed.
 *   warm_s     ckpt_open again with the slot in the page cache: the best of
 *              --reps (default 3); the median is in the CSV.
 *   read_s, verify_s  the split: ckpt__slot_read_file, then
 *              ckpt__slot_verify alone (XXH3-128 over the image + every
 *              length), best of --reps.  verify_gbps = bytes / verify_s.
 *   xxh3_gbps  raw XXH3_128bits over the same image in memory, best of 3.
 * Each open is checked: recovered epoch and one key.
 * Goal (BRIEF): 1 GiB loaded and verified in <= 2 s from the page cache.
 *
 * Options: --max-bytes N (default 1 GiB), --reps R (default 3); env
 * CKPT_BENCH_MAX_BYTES, CKPT_BENCH_REPS, CKPT_BENCH_DIR (default: the first
 * of $TMPDIR, /var/tmp, /tmp that is not tmpfs), CKPT_RESULTS.
 *
 * Output: a table, perf/results/recovery_sizes.csv (one row per size) and,
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

#include <xxhash.h>

#include "region.h"
#include "benchutil.h"
#include "shmckpt.h"
#include "slot.h"
#include "snapshot.h"

#define KEY_LEN 16
#define VAL_LEN 112
#define ENTRY (8 + KEY_LEN + VAL_LEN)
#define EPOCH 4242
#define MAXSIZES 16

static void __attribute__((noreturn)) die(const char *what, int ret)
{
	fprintf(stderr, "bench_recovery_sizes: %s: %s (%s)\n", what,
		ckpt_strerror(ret), ckpt_last_error());
	exit(1);
}

static void make_key(unsigned char *key, uint64_t i)
{
	uint64_t h = mix(i + 1);
	memcpy(key, &i, 8);
	memcpy(key + 8, &h, 8);
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

/* Drop the page cache: 0, or -errno with *why set. */
static int drop_caches(const char **why)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);

	if (fd < 0) {
		*why = errno == EACCES || errno == EPERM ?
			       "not allowed to write /proc/sys/vm/drop_caches "
			       "(needs root)" :
		       errno == EROFS ? "/proc/sys is read-only here (a "
					"container)" :
					"cannot open /proc/sys/vm/drop_caches";
		return -errno;
	}
	sync();
	if (write(fd, "3\n", 2) != 2) {
		int e = errno;
		close(fd);
		*why = "writing /proc/sys/vm/drop_caches failed";
		return -e;
	}
	close(fd);
	return 0;
}

struct size_res {
	uint64_t bytes, nkeys;
	char name[32];
	double build_s, cold_s, warm_best, warm_median, read_s, verify_s,
		xxh3_s;
};

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Build, encode and lay out stream @r->name under @dir; raw XXH3 timed. */
static void make_slot(const char *dir, struct size_res *r)
{
	unsigned char key[KEY_LEN], val[VAL_LEN];
	char path[2048];
	double t0 = now_s();
	ckpt__snap_t *s = ckpt__snap_new();
	int ret;

	r->nkeys = (r->bytes - CKPT_SLOT_HDR_SIZE - 64) / ENTRY;
	if (!s)
		die("snap_new", -ENOMEM);
	ret = ckpt__snap_reserve(s, (size_t)r->nkeys,
				 (size_t)r->nkeys * (KEY_LEN + VAL_LEN));
	if (ret < 0)
		die("reserve", ret);
	for (uint64_t i = 0; i < r->nkeys; i++) {
		make_key(key, i);
		for (size_t j = 0; j < VAL_LEN; j += 8) {
			uint64_t w = i * 31 + j;
			memcpy(val + j, &w, 8);
		}
		ckpt_delta_t d = { .type = CKPT_D_PUT, .key = key,
				   .klen = KEY_LEN, .val = val,
				   .vlen = VAL_LEN };
		if ((ret = ckpt__snap_apply(s, &d)) < 0)
			die("put", ret);
	}
	ckpt_delta_t od = { .type = CKPT_D_OFFSET, .topic = "events",
			    .topic_len = 6, .partition = 0, .offset = 99 };
	if ((ret = ckpt__snap_apply(s, &od)) < 0)
		die("offset", ret);
	ckpt__snap_set_epoch(s, EPOCH);
	size_t cap = ckpt__slot_image_size(s);
	unsigned char *img = malloc(cap);
	if (!img)
		die("malloc", -ENOMEM);
	ssize_t ilen = ckpt__slot_encode(s, r->name, 1, 0, img, cap);
	if (ilen < 0)
		die("encode", (int)ilen);
	ckpt__snap_free(s);
	r->bytes = (uint64_t)ilen;

	r->xxh3_s = 1e9;
	for (int i = 0; i < 3; i++) {
		double h0 = now_s();
		XXH128_hash_t h = XXH3_128bits(img, (size_t)ilen);
		double t = now_s() - h0;
		if (h.low64 == 42 && h.high64 == 42)
			printf(" "); /* keep the call */
		if (t < r->xxh3_s)
			r->xxh3_s = t;
	}

	snprintf(path, sizeof(path), "%s/%s", dir, r->name);
	if (mkdir(path, 0700) < 0)
		die("mkdir", -errno);
	snprintf(path, sizeof(path), "%s/%s/slot-0", dir, r->name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, img, (size_t)ilen) < 0 || fsync(fd) < 0)
		die("write slot-0", -errno);
	close(fd);
	free(img);
	{
		static unsigned char blank[CKPT_SLOT_HDR_SIZE];
		snprintf(path, sizeof(path), "%s/%s/slot-1", dir, r->name);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 ||
		    ckpt__slot_encode_blank(r->name, blank, sizeof(blank)) < 0 ||
		    write_all(fd, blank, sizeof(blank)) < 0 || fsync(fd) < 0)
			die("write blank slot", -EIO);
		close(fd);
	}
	r->build_s = now_s() - t0;
}

/* The whole of ckpt_open, checked; seconds. */
static double timed_open(const char *dir, const struct size_res *r)
{
	unsigned char key[KEY_LEN];
	ckpt_stream_t *st;
	const void *v;
	size_t vlen;
	double t0 = now_s();
	int ret = ckpt_open(dir, r->name, NULL, &st);
	double t = now_s() - t0;

	if (ret < 0)
		die("ckpt_open", ret);
	make_key(key, r->nkeys - 1);
	if (ckpt_recovered_epoch(st) != EPOCH ||
	    ckpt_get(st, key, KEY_LEN, &v, &vlen) < 0 || vlen != VAL_LEN)
		die("ckpt_open recovered something else", -EINVAL);
	if ((ret = ckpt_close(st)) < 0)
		die("ckpt_close", ret);
	return t;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_recovery_sizes [--max-bytes N] "
			"[--reps R]\n  (env CKPT_BENCH_MAX_BYTES, "
			"CKPT_BENCH_REPS, CKPT_BENCH_DIR, CKPT_RESULTS)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *res = getenv("CKPT_RESULTS") ? getenv("CKPT_RESULTS")
						 : "perf/results";
	uint64_t maxb = getenv("CKPT_BENCH_MAX_BYTES") ?
				strtoull(getenv("CKPT_BENCH_MAX_BYTES"), NULL,
					 0) :
				(1ull << 30);
	int reps = getenv("CKPT_BENCH_REPS") ? atoi(getenv("CKPT_BENCH_REPS"))
					     : 3;
	char dir[1024], path[2048], abs[CKPT_DIR_MAX];
	struct size_res rs[MAXSIZES];
	const char *cold_why = NULL;
	struct statfs sf;
	int n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc)
			maxb = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else
			usage();
	}
	if (maxb < (1u << 20) || reps < 1 || reps > 50)
		usage();

	snprintf(dir, sizeof(dir), "%s/shmckpt-bench-recsizes-XXXXXX",
		 pick_base());
	if (!mkdtemp(dir))
		die("mkdtemp", -errno);
	if (statfs(dir, &sf) != 0)
		die("statfs", -errno);
	if (ckpt__absdir(dir, abs, sizeof(abs)) < 0)
		die("absdir", -errno);
	printf("bench recovery_sizes: ckpt_open against snapshot size, warm "
	       "(page cache) and cold (from disk)\n");
	printf("  directory      %s (%s)\n", dir, fs_name((long)sf.f_type));
	fflush(stdout);

	memset(rs, 0, sizeof(rs));
	for (uint64_t b = 1ull << 20; b <= maxb && n < MAXSIZES; b *= 4) {
		rs[n].bytes = b;
		snprintf(rs[n].name, sizeof(rs[n].name), "rs-%llum",
			 (unsigned long long)(b >> 20));
		make_slot(dir, &rs[n]);
		printf("  built          %-8s %9llu keys, image %llu bytes in "
		       "%.1f s\n", rs[n].name, (unsigned long long)rs[n].nkeys,
		       (unsigned long long)rs[n].bytes, rs[n].build_s);
		fflush(stdout);
		n++;
	}

	/* Cold first, for every size: nothing of the files is cached. */
	int cold = 1;
	for (int i = 0; i < n; i++) {
		rs[i].cold_s = -1;
		if (!cold)
			continue;
		if (drop_caches(&cold_why) < 0) {
			cold = 0;
			printf("  cold           skipped: %s\n", cold_why);
			continue;
		}
		rs[i].cold_s = timed_open(dir, &rs[i]);
	}

	for (int i = 0; i < n; i++) {
		struct size_res *r = &rs[i];
		double t[50];

		r->read_s = r->verify_s = 1e9;
		for (int k = 0; k < reps; k++) {
			ckpt__slot_info_t info;
			void *buf;
			size_t len;
			snprintf(path, sizeof(path), "%s/%s", dir, r->name);
			int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd < 0)
				die("open dir", -errno);
			double t0 = now_s();
			int ret = ckpt__slot_read_file(dfd, "slot-0",
						       (size_t)r->bytes, &buf,
						       &len);
			double tr = now_s() - t0;
			close(dfd);
			if (ret < 0)
				die("read_file", ret);
			t0 = now_s();
			ret = ckpt__slot_verify(buf, len, r->name, &info);
			double tv = now_s() - t0;
			free(buf);
			if (ret < 0)
				die("verify", ret);
			if (tr < r->read_s)
				r->read_s = tr;
			if (tv < r->verify_s)
				r->verify_s = tv;
			t[k] = timed_open(dir, r);
		}
		qsort(t, (size_t)reps, sizeof(double), cmp_d);
		r->warm_best = t[0];
		r->warm_median = t[reps / 2];
	}

	printf("\n  %-10s %11s %11s %11s %11s %11s %12s %10s\n", "size",
	       "cold", "warm", "warm med", "read", "verify", "verify GB/s",
	       "XXH3 GB/s");
	for (int i = 0; i < n; i++) {
		const struct size_res *r = &rs[i];
		char cs[32];
		if (r->cold_s >= 0)
			snprintf(cs, sizeof(cs), "%.1f ms", r->cold_s * 1e3);
		else
			snprintf(cs, sizeof(cs), "skipped");
		printf("  %6.0f MiB %11s %8.1f ms %8.1f ms %8.1f ms %8.1f ms "
		       "%12.2f %10.2f\n", (double)r->bytes / 1048576.0, cs,
		       r->warm_best * 1e3, r->warm_median * 1e3,
		       r->read_s * 1e3, r->verify_s * 1e3,
		       (double)r->bytes / r->verify_s / 1e9,
		       (double)r->bytes / r->xxh3_s / 1e9);
	}
	printf("  cold/warm: the whole of ckpt_open (best of %d warm); read and"
	       " verify: the split, best of %d\n", reps, reps);
	if (!cold)
		printf("  cold runs skipped: %s\n", cold_why);

	const struct size_res *big = &rs[n - 1];
	int gib = big->bytes >= (1ull << 30) - (1u << 20);
	if (gib)
		printf("  goal (BRIEF): 1 GiB loaded and verified in <= 2 s from"
		       " the page cache: %.3f s, %s\n", big->warm_best,
		       big->warm_best <= 2.0 ? "met" : "MISSED");

	mkdir(res, 0755);
	snprintf(path, sizeof(path), "%s/recovery_sizes.csv", res);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "bytes,nkeys,cold_open_s,warm_open_best_s,"
			   "warm_open_median_s,read_s,verify_s,verify_gbps,"
			   "xxh3_gbps,fs\n");
		for (int i = 0; i < n; i++) {
			const struct size_res *r = &rs[i];
			fprintf(f, "%llu,%llu,", (unsigned long long)r->bytes,
				(unsigned long long)r->nkeys);
			if (r->cold_s >= 0)
				fprintf(f, "%.6f,", r->cold_s);
			else
				fprintf(f, ",");
			fprintf(f, "%.6f,%.6f,%.6f,%.6f,%.3f,%.3f,%s\n",
				r->warm_best, r->warm_median, r->read_s,
				r->verify_s,
				(double)r->bytes / r->verify_s / 1e9,
				(double)r->bytes / r->xxh3_s / 1e9,
				fs_name((long)sf.f_type));
		}
		fclose(f);
		printf("  results        %s\n", path);
	} else {
		fprintf(stderr, "bench_recovery_sizes: cannot write %s\n", path);
	}

	for (int i = 0; i < n; i++)
		ckpt__region_unlink(abs, rs[i].name);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	char cold_json[64];
	if (big->cold_s >= 0)
		snprintf(cold_json, sizeof(cold_json), "%.3f", big->cold_s);
	else
		snprintf(cold_json, sizeof(cold_json), "null");
	fflush(stdout);
	fflush(stderr);
	printf("{\"bench\":\"recovery_sizes\",\"sizes\":%d,"
	       "\"max_bytes\":%llu,\"warm_s\":%.3f,\"cold_s\":%s,"
	       "\"verify_gbps\":%.2f,\"xxh3_gbps\":%.2f,\"cold\":\"%s\","
	       "\"goal_met\":%s}\n",
	       n, (unsigned long long)big->bytes, big->warm_best, cold_json,
	       (double)big->bytes / big->verify_s / 1e9,
	       (double)big->bytes / big->xxh3_s / 1e9,
	       cold ? "measured" : cold_why,
	       gib ? (big->warm_best <= 2.0 ? "true" : "false") : "null");
	return 0;
}
