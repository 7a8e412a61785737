/*
 * test_upgrade.c - R8 through the public API: a stream whose slots were
 * written by an older release opens and carries on; a slot written by a
 * newer build is refused with CKPT_EVERSION and left as it was, never
 * rolled back past (falling back to the other, older slot would silently
 * lose what the newer build made durable).
 *
 * Run from the repository root (make test does): it reads tests/golden/.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "shmckpt.h"
#include "testutil.h"

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out;
	ssize_t n;

	if (in < 0)
		tu_skip("SKIP: %s not found: run from the repository root",
			from);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

static size_t slurp(const char *path, unsigned char **out)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*out = malloc((size_t)st.st_size);
	assert_non_null(*out);
	assert_int_equal(read(fd, *out, (size_t)st.st_size), st.st_size);
	close(fd);
	return (size_t)st.st_size;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	close(fd);
}

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8); /* little-endian hosts only, as the format */
	return v;
}

static int count_offsets(void *arg, const char *topic, int32_t partition,
			 int64_t next)
{
	(void)topic;
	(void)partition;
	(void)next;
	++*(int *)arg;
	return 0;
}

/* A release's stream directory, as it left it: the golden v1 slot. */
static void test_older_release_opens(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("upgrade-old");
	char path[4200];
	ckpt_stream_t *s;
	const void *v;
	size_t vlen;
	int64_t next;

	snprintf(path, sizeof(path), "%s/golden-stream", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/golden-stream/slot-0", dir);
	copy_file("tests/golden/slot-v1.bin", path);
	snprintf(path, sizeof(path), "%s/golden-stream/slot-1", dir);
	copy_file("tests/golden/slot-v1-blank.bin", path);

	assert_int_equal(ckpt_open(dir, "golden-stream", NULL, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), 42);
	assert_int_equal(ckpt_get(s, "", 0, &v, &vlen), 0); /* the empty key */
	assert_int_equal(vlen, 9);
	assert_memory_equal(v, "empty key", 9);
	int n = 0;
	assert_int_equal(ckpt_foreach_offset(s, count_offsets, &n), 0);
	assert_int_equal(n, 3); /* as tests/golden/README says */
	/* and it carries on: epochs continue, the new snapshot is durable */
	assert_int_equal(ckpt_offset(s, "upgraded", 0, 1), 0);
	assert_int_equal(ckpt_commit(s), 43);
	assert_int_equal(ckpt_wait_durable(s, 43, 10000), 0);
	assert_int_equal(ckpt_close(s), 0);
	assert_int_equal(ckpt_open(dir, "golden-stream", NULL, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), 43);
	assert_int_equal(ckpt_get(s, "", 0, &v, &vlen), 0);
	assert_int_equal(ckpt_get_offset(s, "upgraded", 0, &next), 0);
	assert_int_equal(next, 1);
	assert_int_equal(ckpt_close(s), 0);
	tu_rmdir(dir);
}

/* Make @img (a v1 image) what a newer build would write: format version
 * 2, with the frame every version keeps (XXH3-128 at 256 over header
 * bytes [0, 256) and the body) intact. */
static void make_v2(unsigned char *img)
{
	XXH3_state_t *st = XXH3_createState();
	XXH128_canonical_t c;
	uint32_t two = 2;

	assert_non_null(st);
	memcpy(img + 8, &two, 4);
	XXH3_128bits_reset(st);
	XXH3_128bits_update(st, img, 256);
	XXH3_128bits_update(st, img + 4096, (size_t)ld64(img + 40));
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	memcpy(img + 256, c.digest, 16);
}

static void test_newer_build_refused(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp("upgrade-new");
	char p0[4200], p1[4200];
	unsigned char *a, *b, *after;
	ckpt_stream_t *s = NULL;
	size_t la, lb, lafter;

	/* two valid slots: epoch 1 and epoch 2 */
	assert_int_equal(ckpt_open(dir, "st", NULL, &s), 0);
	for (int64_t e = 1; e <= 2; e++) {
		assert_int_equal(ckpt_put(s, "k", 1, &e, sizeof(e)), 0);
		assert_int_equal(ckpt_commit(s), e);
		assert_int_equal(ckpt_wait_durable(s, e, 10000), 0);
	}
	assert_int_equal(ckpt_close(s), 0);
	snprintf(p0, sizeof(p0), "%s/st/slot-0", dir);
	snprintf(p1, sizeof(p1), "%s/st/slot-1", dir);
	la = slurp(p0, &a);
	lb = slurp(p1, &b);
	/* the newer build rewrote the newest one */
	int newest_is_0 = (int64_t)ld64(a + 16) > (int64_t)ld64(b + 16);
	unsigned char *nimg = newest_is_0 ? a : b;
	const char *npath = newest_is_0 ? p0 : p1;
	assert_int_equal((int64_t)ld64(nimg + 16), 2);
	make_v2(nimg);
	spit(npath, nimg, newest_is_0 ? la : lb);

	s = NULL; /* on failure, ckpt_open leaves *out untouched */
	int ret = ckpt_open(dir, "st", NULL, &s);
	if (ret != CKPT_EVERSION)
		fail_msg("open of a stream whose newest slot is version 2: %s "
			 "(%s), not CKPT_EVERSION", ckpt_strerror(ret),
			 ckpt_last_error());
	assert_null(s);
	assert_non_null(strstr(ckpt_last_error(), "newer"));
	/* left exactly as it was */
	lafter = slurp(npath, &after);
	assert_int_equal(lafter, newest_is_0 ? la : lb);
	assert_memory_equal(after, nimg, lafter);
	free(after);

	/* the same byte changed by damage (no valid frame) is damage: the
	 * older slot is used */
	uint32_t three = 3;
	memcpy(nimg + 8, &three, 4);
	spit(npath, nimg, newest_is_0 ? la : lb);
	assert_int_equal(ckpt_open(dir, "st", NULL, &s), 0);
	assert_int_equal(ckpt_recovered_epoch(s), 1);
	assert_int_equal(ckpt_close(s), 0);
	free(a);
	free(b);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_older_release_opens),
		cmocka_unit_test(test_newer_build_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
