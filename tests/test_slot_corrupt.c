/*
 * test_slot_corrupt.c - R7 at ckpt_open: damaged slot files, end to end.
 *
 * A stream is built through the public API so that slot-0 and slot-1 hold
 * two valid snapshots of different epochs; the stream is closed (its
 * region removed), and the slot files are saved.  Then, case after case,
 * the files are restored and damaged - one byte changed somewhere inside an
 * image (header + body_len), or the file truncated inside its image - and
 * ckpt_open must:
 *   - older slot damaged:  recover the newest epoch, exactly;
 *   - newest slot damaged: fall back to the older epoch, exactly (never the
 *     damaged one, never a mix of the two);
 *   - both damaged:        refuse with CKPT_ECORRUPT naming both slots, and
 *     start empty only when asked (CKPT_O_RESET).
 * A change past the image's end (the preallocated tail) or a truncation
 * that keeps the whole image is no damage (docs/FORMAT.md).  A slot file of
 * another stream copied in is refused and the other slot used.
 *
 * Each case recovers from the slot files alone: the stream's region is
 * removed before every open, as after a reboot.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "region.h"
#include "shmckpt.h"
#include "testutil.h"

#define NAME "corrupt-7"
#define OTHER "other-3"

/* Header offsets from docs/FORMAT.md, restated: the test follows the
 * document, not slot.c. */
enum { O_VERSION = 8, O_EPOCH = 16, O_SEQ = 24, O_BODYLEN = 40, O_HASH = 256,
       HDR = 4096 };

/* ------------------------------------------------------------------------
 * The expected state: a small model the test keeps per epoch.
 * ------------------------------------------------------------------------ */

#define NK 48 /* keys "key-00".."key-47" */
#define VMAX 96
#define NT 5 /* offsets: orders/0..3, audit/0 */
#define MMAX 200
#define MAXE 32

struct model {
	int64_t epoch;
	uint8_t present[NK];
	uint8_t vlen[NK];
	uint8_t val[NK][VMAX];
	uint8_t has_off[NT];
	int64_t off[NT];
	size_t mlen;
	uint8_t meta[MMAX];
};

static const char *topic_of(int t)
{
	return t < 4 ? "orders" : "audit";
}

static int32_t part_of(int t)
{
	return t < 4 ? t : 0;
}

static void key_of(int i, char k[8])
{
	snprintf(k, 8, "key-%02d", i);
}

static int idx_of(const void *key, size_t klen)
{
	char k[8];
	for (int i = 0; i < NK; i++) {
		key_of(i, k);
		if (klen == strlen(k) && memcmp(k, key, klen) == 0)
			return i;
	}
	return -1;
}

/* Stage one random epoch on @s and apply it to @m; commit it. */
static void random_epoch(ckpt_stream_t *s, struct model *m, uint64_t *rs)
{
	int nput = 3 + (int)(tu_rand(rs) % 4);
	int ndel = (int)(tu_rand(rs) % 3);
	int noff = 1 + (int)(tu_rand(rs) % 3);
	char k[8];

	for (int j = 0; j < nput; j++) {
		int i = (int)(tu_rand(rs) % NK);
		uint8_t v[VMAX];
		size_t vl = 1 + (size_t)(tu_rand(rs) % VMAX);
		for (size_t b = 0; b < vl; b++)
			v[b] = (uint8_t)tu_rand(rs);
		key_of(i, k);
		assert_int_equal(ckpt_put(s, k, strlen(k), v, vl), 0);
		m->present[i] = 1;
		m->vlen[i] = (uint8_t)vl;
		memcpy(m->val[i], v, vl);
	}
	for (int j = 0; j < ndel; j++) {
		int i = (int)(tu_rand(rs) % NK);
		key_of(i, k);
		assert_int_equal(ckpt_del(s, k, strlen(k)), 0);
		m->present[i] = 0;
	}
	for (int j = 0; j < noff; j++) {
		int t = (int)(tu_rand(rs) % NT);
		int64_t o = (int64_t)(tu_rand(rs) >> 4);
		assert_int_equal(ckpt_offset(s, topic_of(t), part_of(t), o), 0);
		m->has_off[t] = 1;
		m->off[t] = o;
	}
	if (tu_rand(rs) % 2) {
		m->mlen = 1 + (size_t)(tu_rand(rs) % MMAX);
		for (size_t b = 0; b < m->mlen; b++)
			m->meta[b] = (uint8_t)tu_rand(rs);
		assert_int_equal(ckpt_meta(s, m->meta, m->mlen), 0);
	}
	int64_t e = ckpt_commit(s);
	assert_int_equal(e, m->epoch + 1);
	m->epoch = e;
}

struct visit {
	const struct model *m;
	int n;
	int bad;
};

static int kv_fn(void *arg, const void *key, size_t klen, const void *val,
		 size_t vlen)
{
	struct visit *v = arg;
	int i = idx_of(key, klen);
	v->n++;
	if (i < 0 || !v->m->present[i] || v->m->vlen[i] != vlen ||
	    memcmp(v->m->val[i], val, vlen) != 0)
		v->bad++;
	return 0;
}

static int off_fn(void *arg, const char *topic, int32_t partition,
		  int64_t next)
{
	struct visit *v = arg;
	int hit = 0;
	v->n++;
	for (int t = 0; t < NT; t++)
		if (strcmp(topic, topic_of(t)) == 0 &&
		    partition == part_of(t) && v->m->has_off[t] &&
		    v->m->off[t] == next)
			hit = 1;
	if (!hit)
		v->bad++;
	return 0;
}

/* The recovered state of @s is exactly @m: every key, offset, the
 * metadata, nothing more. */
static void expect_state(ckpt_stream_t *s, const struct model *m,
			 const char *what)
{
	int nkeys = 0, noffs = 0;
	char k[8];
	const void *val, *blob;
	size_t vlen, blen;
	int64_t next;

	if (ckpt_recovered_epoch(s) != m->epoch)
		fail_msg("%s: recovered epoch %lld, expected %lld", what,
			 (long long)ckpt_recovered_epoch(s),
			 (long long)m->epoch);
	for (int i = 0; i < NK; i++) {
		int ret;
		key_of(i, k);
		ret = ckpt_get(s, k, strlen(k), &val, &vlen);
		if (!m->present[i]) {
			if (ret != -ENOENT)
				fail_msg("%s: %s: got %d, expected -ENOENT",
					 what, k, ret);
			continue;
		}
		nkeys++;
		if (ret != 0 || vlen != m->vlen[i] ||
		    memcmp(val, m->val[i], vlen) != 0)
			fail_msg("%s: epoch %lld: %s differs (ret %d)", what,
				 (long long)m->epoch, k, ret);
	}
	for (int t = 0; t < NT; t++) {
		int ret = ckpt_get_offset(s, topic_of(t), part_of(t), &next);
		if (!m->has_off[t]) {
			assert_int_equal(ret, -ENOENT);
			continue;
		}
		noffs++;
		if (ret != 0 || next != m->off[t])
			fail_msg("%s: offset %s/%d differs", what, topic_of(t),
				 part_of(t));
	}
	assert_int_equal(ckpt_get_meta(s, &blob, &blen), 0);
	if (blen != m->mlen || (blen && memcmp(blob, m->meta, blen) != 0))
		fail_msg("%s: metadata differs (%zu bytes, expected %zu)", what,
			 blen, m->mlen);
	if (!m->mlen)
		assert_null(blob);

	struct visit v = { m, 0, 0 };
	assert_int_equal(ckpt_foreach_kv(s, kv_fn, &v), 0);
	if (v.n != nkeys || v.bad)
		fail_msg("%s: foreach_kv saw %d keys (%d wrong), expected %d",
			 what, v.n, v.bad, nkeys);
	struct visit w = { m, 0, 0 };
	assert_int_equal(ckpt_foreach_offset(s, off_fn, &w), 0);
	if (w.n != noffs || w.bad)
		fail_msg("%s: foreach_offset saw %d (%d wrong), expected %d",
			 what, w.n, w.bad, noffs);
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

static ckpt_opts_t opts(unsigned flags)
{
	ckpt_opts_t o;
	ckpt_opts_init(&o);
	o.ring_size = 64 * 1024;
	o.max_key = 64;
	o.max_value = 1024;
	o.max_meta = 1024;
	o.flags = flags;
	return o;
}

static ckpt_stream_t *open_ok(const char *dir, const char *name)
{
	ckpt_opts_t o = opts(0);
	ckpt_stream_t *s = NULL;
	int ret = ckpt_open(dir, name, &o, &s);
	if (ret < 0)
		fail_msg("open %s: %s: %s", name, ckpt_strerror(ret),
			 ckpt_last_error());
	return s;
}

static void wait_durable(ckpt_stream_t *s, int64_t e)
{
	/* 60 s: a guard against a hang, not a timing assertion */
	int ret = ckpt_wait_durable(s, e, 60000);
	if (ret < 0)
		fail_msg("wait_durable(%lld): %s", (long long)e,
			 ckpt_strerror(ret));
}

struct file {
	char path[512];
	unsigned char *buf;
	size_t size; /* file size */
	size_t img; /* header + body_len */
	int64_t epoch;
	uint64_t seq;
};

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t ld32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void load_file(struct file *f, const char *dir, const char *name,
		      int i)
{
	struct stat st;
	int fd;

	snprintf(f->path, sizeof(f->path), "%s/%s/slot-%d", dir, name, i);
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("%s: %s", f->path, strerror(errno));
	assert_int_equal(fstat(fd, &st), 0);
	f->size = (size_t)st.st_size;
	assert_true(f->size >= HDR);
	f->buf = malloc(f->size);
	assert_non_null(f->buf);
	assert_int_equal(pread(fd, f->buf, f->size, 0), (ssize_t)f->size);
	close(fd);
	assert_memory_equal(f->buf, "SHMCKSLT", 8);
	f->epoch = (int64_t)ld64(f->buf + O_EPOCH);
	f->seq = ld64(f->buf + O_SEQ);
	f->img = HDR + (size_t)ld64(f->buf + O_BODYLEN);
	assert_true(f->img <= f->size);
}

/* Put @src's bytes into file @path, whatever it holds now. */
static void write_file(const char *path, const unsigned char *buf,
		       size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

static void flip_byte(const char *path, size_t pos, uint8_t x)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)pos), 1);
	b ^= x;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)pos), 1);
	close(fd);
}

static int region_count(const char *dir)
{
	char prefix[128];
	struct dirent *e;
	DIR *d;
	int n = 0;

	assert_int_equal(ckpt__region_prefix(dir, prefix, sizeof(prefix)), 0);
	d = opendir("/dev/shm");
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix + 1, strlen(prefix) - 1) == 0)
			n++;
	closedir(d);
	return n;
}

/* "slot-1", "slot 1", "slot1", "slot[1]", "slot_1": the message names it */
static int names_slot(const char *msg, int i)
{
	const char *p = msg;
	while ((p = strstr(p, "slot"))) {
		p += 4;
		const char *q = p;
		while (*q == '-' || *q == ' ' || *q == '_' || *q == '[' ||
		       *q == '#')
			q++;
		if (*q == '0' + i && !(q[1] >= '0' && q[1] <= '9'))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The fixture: one stream, two valid slots of different epochs.
 * ------------------------------------------------------------------------ */

static char *dir;
static struct model models[MAXE + 1];
static struct file slot[2]; /* saved pristine copies */
static int newest, older; /* indexes into slot[] */
static struct file foreign[2];
static int foreign_newest;
static uint64_t seed;

static int setup(void **state)
{
	(void)state;
	ckpt_stream_t *s;
	struct model m;
	uint64_t rs;

	seed = tu_seed("test_slot_corrupt");
	rs = seed;
	dir = tu_mkdtemp("slotcorrupt");
	memset(&m, 0, sizeof(m));
	models[0] = m;

	s = open_ok(dir, NAME);
	for (int e = 1; e <= 4; e++) {
		random_epoch(s, &m, &rs);
		models[e] = m;
	}
	wait_durable(s, 4);
	for (int e = 5; e <= 8; e++) {
		random_epoch(s, &m, &rs);
		models[e] = m;
	}
	wait_durable(s, 8);
	assert_int_equal(ckpt_close(s), 0);

	/* another stream, with epochs beyond ours: its slots must tempt */
	struct model om;
	memset(&om, 0, sizeof(om));
	s = open_ok(dir, OTHER);
	for (int e = 1; e <= 12; e++) {
		random_epoch(s, &om, &rs);
		wait_durable(s, e);
	}
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);

	for (int i = 0; i < 2; i++) {
		load_file(&slot[i], dir, NAME, i);
		load_file(&foreign[i], dir, OTHER, i);
	}
	newest = slot[1].epoch > slot[0].epoch ||
			 (slot[1].epoch == slot[0].epoch &&
			  slot[1].seq > slot[0].seq);
	older = 1 - newest;
	foreign_newest = foreign[1].epoch > foreign[0].epoch;
	printf("slots: slot-%d epoch %lld seq %llu image %zu of %zu bytes; "
	       "slot-%d epoch %lld seq %llu image %zu of %zu bytes\n", newest,
	       (long long)slot[newest].epoch,
	       (unsigned long long)slot[newest].seq, slot[newest].img,
	       slot[newest].size, older, (long long)slot[older].epoch,
	       (unsigned long long)slot[older].seq, slot[older].img,
	       slot[older].size);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {
		free(slot[i].buf);
		free(foreign[i].buf);
	}
	tu_rmdir(dir);
	return 0;
}

static void restore(void)
{
	for (int i = 0; i < 2; i++)
		write_file(slot[i].path, slot[i].buf, slot[i].size);
	tu_unlink_regions(dir);
}

/* Open; expect success with exactly the state of epoch @e. */
static void expect_recovers(int64_t e, const char *what)
{
	ckpt_opts_t o = opts(0);
	ckpt_stream_t *s = NULL;
	int ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		fail_msg("%s: open: %s: %s (expected epoch %lld)", what,
			 ckpt_strerror(ret), ckpt_last_error(), (long long)e);
	expect_state(s, &models[e], what);
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);
}

/* ------------------------------------------------------------------------ */

/* What the fixture must have produced for the cases to mean anything. */
static void test_fixture(void **state)
{
	(void)state;
	/* closing a thread-flushed stream whose last epoch is durable gives
	 * its region back (reopened below from the slots alone) */
	assert_int_equal(region_count(dir), 0);
	assert_int_equal(slot[newest].epoch, 8);
	/* 4 was durable when 8 was written, and a write never goes to the
	 * slot with the newest durable snapshot */
	assert_true(slot[older].epoch >= 4 && slot[older].epoch < 8);
	assert_true(slot[0].size >= 64 * 1024 && slot[1].size >= 64 * 1024);
	restore();
	expect_recovers(slot[newest].epoch, "pristine");
}

enum { C_OLD_FLIP, C_OLD_TRUNC, C_NEW_FLIP, C_NEW_TRUNC, C_BOTH, C_BENIGN,
       C_N };

/* A position inside image @f: half uniform, a quarter in the hashed
 * header fields, a quarter in the body. */
static size_t pick_pos(const struct file *f, uint64_t *rs)
{
	uint64_t r = tu_rand(rs);
	size_t body = f->img - HDR;
	if (r % 4 == 0)
		return (size_t)(tu_rand(rs) % (O_HASH + 16));
	if (r % 4 == 1 && body)
		return HDR + (size_t)(tu_rand(rs) % body);
	return (size_t)(tu_rand(rs) % f->img);
}

static size_t pick_len(const struct file *f, uint64_t *rs)
{
	uint64_t r = tu_rand(rs) % 8;
	if (r == 0)
		return 0;
	if (r == 1)
		return f->img - 1 - (size_t)(tu_rand(rs) % 8);
	return (size_t)(tu_rand(rs) % f->img);
}

/* Damage slot @i (flip or truncate); returns 1 if the damage may read as
 * a newer format version rather than as corruption. */
static int damage(int i, int trunc, uint64_t *rs, char *what, size_t cap)
{
	const struct file *f = &slot[i];
	if (trunc) {
		size_t len = pick_len(f, rs);
		assert_int_equal(truncate(f->path, (off_t)len), 0);
		snprintf(what, cap, "slot-%d (epoch %lld) truncated to %zu of "
			 "%zu", i, (long long)f->epoch, len, f->img);
		return 0;
	}
	size_t pos = pick_pos(f, rs);
	uint8_t x = (uint8_t)(1 + tu_rand(rs) % 255);
	flip_byte(f->path, pos, x);
	snprintf(what, cap, "slot-%d (epoch %lld) byte %zu ^= 0x%02x", i,
		 (long long)f->epoch, pos, x);
	if (pos >= O_VERSION && pos < O_VERSION + 4) {
		unsigned char v[4];
		memcpy(v, f->buf + O_VERSION, 4);
		v[pos - O_VERSION] ^= x;
		return ld32(v) > 1;
	}
	return 0;
}

static void both_damaged(uint64_t *rs, int *nversion)
{
	char w0[128], w1[128], what[300];
	ckpt_opts_t o = opts(0);
	ckpt_stream_t *s = NULL;
	int ret, ver;

	ver = damage(0, (int)(tu_rand(rs) % 2), rs, w0, sizeof(w0));
	ver |= damage(1, (int)(tu_rand(rs) % 2), rs, w1, sizeof(w1));
	snprintf(what, sizeof(what), "%s, %s", w0, w1);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret >= 0)
		fail_msg("%s: both slots damaged, open succeeded with epoch "
			 "%lld", what, (long long)ckpt_recovered_epoch(s));
	/* a version field changed upward may be refused as unknown
	 * version instead of as damage */
	if (!(ret == CKPT_ECORRUPT || (ver && ret == CKPT_EVERSION)))
		fail_msg("%s: open returned %d (%s), expected CKPT_ECORRUPT: %s",
			 what, ret, ckpt_strerror(ret), ckpt_last_error());
	*nversion += ret == CKPT_EVERSION;
	if (!names_slot(ckpt_last_error(), 0) ||
	    !names_slot(ckpt_last_error(), 1))
		fail_msg("%s: message does not name both slots: '%s'", what,
			 ckpt_last_error());
	tu_unlink_regions(dir);

	/* starting over is explicit */
	o = opts(CKPT_O_RESET);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret < 0)
		fail_msg("%s: open with CKPT_O_RESET: %s: %s", what,
			 ckpt_strerror(ret), ckpt_last_error());
	expect_state(s, &models[0], "after CKPT_O_RESET");
	assert_int_equal(ckpt_close(s), 0);
	tu_unlink_regions(dir);
}

static void test_random_damage(void **state)
{
	(void)state;
	uint64_t rs = seed ^ 0x5bd1e995u;
	uint64_t n = tu_scaled(1200);
	uint64_t count[C_N] = { 0 };
	int nversion = 0;
	char what[200];

	if (n < 300)
		n = 300; /* a few hundred even under sanitizers */
	for (uint64_t c = 0; c < n; c++) {
		int kind = (int)(c % C_N);
		restore();
		count[kind]++;
		switch (kind) {
		case C_OLD_FLIP:
		case C_OLD_TRUNC:
			damage(older, kind == C_OLD_TRUNC, &rs, what,
			       sizeof(what));
			expect_recovers(slot[newest].epoch, what);
			break;
		case C_NEW_FLIP:
		case C_NEW_TRUNC:
			damage(newest, kind == C_NEW_TRUNC, &rs, what,
			       sizeof(what));
			expect_recovers(slot[older].epoch, what);
			break;
		case C_BOTH:
			both_damaged(&rs, &nversion);
			break;
		case C_BENIGN: {
			/* past the image: not part of it */
			for (int i = 0; i < 2; i++) {
				const struct file *f = &slot[i];
				size_t tail = f->size - f->img;
				if (!tail)
					continue;
				if (tu_rand(&rs) % 2) {
					size_t pos = f->img +
						     (size_t)(tu_rand(&rs) % tail);
					flip_byte(f->path, pos,
						  (uint8_t)(1 + tu_rand(&rs) % 255));
				} else {
					size_t len = f->img +
						     (size_t)(tu_rand(&rs) % tail);
					assert_int_equal(truncate(f->path,
								  (off_t)len), 0);
				}
			}
			expect_recovers(slot[newest].epoch,
					"bytes past the images changed");
			break;
		}
		}
	}
	restore();
	printf("cases: %llu older damaged, %llu newest damaged, %llu both "
	       "(%d refused as unknown version), %llu past the image\n",
	       (unsigned long long)(count[C_OLD_FLIP] + count[C_OLD_TRUNC]),
	       (unsigned long long)(count[C_NEW_FLIP] + count[C_NEW_TRUNC]),
	       (unsigned long long)count[C_BOTH], nversion,
	       (unsigned long long)count[C_BENIGN]);
}

/* Every byte of the newest slot's header fields and of a stretch of its
 * body, one at a time: falls back each time. */
static void test_newest_header_bytes(void **state)
{
	(void)state;
	size_t body = slot[newest].img - HDR;
	size_t n = O_HASH + 16 + (body < 64 ? body : 64);
	for (size_t k = 0; k < n; k++) {
		size_t pos = k < O_HASH + 16 ? k : HDR + (k - O_HASH - 16);
		char what[96];
		restore();
		flip_byte(slot[newest].path, pos, 0x01);
		snprintf(what, sizeof(what), "newest slot byte %zu ^= 0x01",
			 pos);
		expect_recovers(slot[older].epoch, what);
	}
	restore();
}

static void copy_foreign(int to)
{
	const struct file *f = &foreign[foreign_newest];
	write_file(slot[to].path, f->buf, f->size);
}

static void test_other_stream(void **state)
{
	(void)state;
	ckpt_opts_t o = opts(0);
	ckpt_stream_t *s = NULL;
	int ret;

	/* sanity: the foreign slot is valid and newer - for its stream */
	assert_true(foreign[foreign_newest].epoch > slot[newest].epoch);

	restore();
	copy_foreign(newest);
	expect_recovers(slot[older].epoch, "other stream's slot over newest");

	restore();
	copy_foreign(older);
	expect_recovers(slot[newest].epoch, "other stream's slot over older");

	restore();
	copy_foreign(0);
	copy_foreign(1);
	ret = ckpt_open(dir, NAME, &o, &s);
	if (ret >= 0)
		fail_msg("both slots another stream's: open succeeded with "
			 "epoch %lld", (long long)ckpt_recovered_epoch(s));
	if (ret != CKPT_ECORRUPT && ret != CKPT_ESTREAM)
		fail_msg("both slots another stream's: %d (%s): %s", ret,
			 ckpt_strerror(ret), ckpt_last_error());
	printf("both slots of stream '%s': %s: %s\n", OTHER,
	       ckpt_strerror(ret), ckpt_last_error());
	if (!strstr(ckpt_last_error(), OTHER) &&
	    !strstr(ckpt_last_error(), "stream"))
		fail_msg("message does not say the slots belong to another "
			 "stream: '%s'", ckpt_last_error());
	tu_unlink_regions(dir);
	restore();
	expect_recovers(slot[newest].epoch, "restored");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture),
		cmocka_unit_test(test_random_damage),
		cmocka_unit_test(test_newest_header_bytes),
		cmocka_unit_test(test_other_stream),
	};
	/* a thousand fallbacks, each rightly warned about: keep the log for
	 * real trouble (SHMCKPT_LOG set by the caller wins) */
	setenv("SHMCKPT_LOG", "error", 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}
