/*
 * fuzz_dump.c - the dump of an arbitrary slot: verify it, decode it into a
 * snapshot, visit every key, value, offset and the metadata, re-encode it.
 *
 * Input: a slot image followed by one control byte (as fuzz_slot, so the
 * two share seeds):
 *   bit 0     rewrite the XXH3-128 so that it matches (else the fuzzer
 *             stops at "hash mismatch" and never reaches the body);
 *   bit 1     verify against the stream name "fuzz" instead of none;
 *   bit 2     fail snapshot allocations during decode after (ctl >> 3)
 *             successful ones (ckpt__snap_fail_alloc_after): -ENOMEM must
 *             leave an empty snapshot, never half of one.
 *
 * Two oracles that fuzz_slot does not have:
 *
 * 1. A second reader of the format, written here from docs/FORMAT.md
 *    ("Slot files") alone: spec_check() walks the image with the
 *    documented rules in the documented order and says what verify must
 *    return.  The library and the document must agree on every input:
 *    a disagreement is a bug in one of them.  It also collects the
 *    entries, so the decoded snapshot is compared entry by entry with the
 *    bytes of the image, and repeated keys (which only decode refuses)
 *    are found by sorting.
 *
 * 2. What a dump does: every entry visited (counts, limits, lookups by
 *    key agree with the visit, an early stop stops), then re-encoded: the
 *    new image has the predicted size, is byte-identical when encoded
 *    twice, passes both the library's verify and spec_check, describes
 *    the same slot (epoch, seq, time, counts, name) and decodes to an
 *    equal snapshot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL /* XXH3_state_t on the stack, as core/slot.c */
#include <xxhash.h>

#include "internal.h"
#include "slot.h"
#include "snapshot.h"

#define FZ_CHECK(cond, ...)                                                \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz invariant failed: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                      \
			fprintf(stderr, "\n  last error: %s\n",            \
				ckpt_last_error());                        \
			abort();                                           \
		}                                                          \
	} while (0)

/*
 * Known bugs, reported to the lead (tests/fuzz/crashes/README.md):
 *  4. a slot whose name field holds a NUL byte inside its name_len bytes
 *     ("fu\0z", name_len 4) verifies as stream "fu": core/slot.c checks
 *     the name only up to its first NUL.
 * Until fixed, spec_check() follows the library there so that fuzzing
 * goes on behind it; 0 makes the reproducer in crashes/fuzz_dump/ fail.
 */
#ifndef FZ_SKIP_KNOWN_BUGS
#define FZ_SKIP_KNOWN_BUGS 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------
 * docs/FORMAT.md, "Slot files", version 1, read independently
 * ------------------------------------------------------------------------ */

#define HDR 4096u
#define OFF_FORMAT_VERSION 8
#define OFF_HEADER_SIZE 12
#define OFF_EPOCH 16
#define OFF_SEQ 24
#define OFF_TIME 32
#define OFF_BODY_LEN 40
#define OFF_NKEYS 48
#define OFF_NOFFSETS 56
#define OFF_META_LEN 64
#define OFF_FLAGS 72
#define OFF_NAME_LEN 76
#define OFF_NAME 80
#define OFF_RESERVED 208
#define OFF_HASH 256
#define HASH_END 272

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

static int all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void image_hash(const uint8_t *b, uint64_t body_len, uint8_t out[16])
{
	XXH3_state_t st;
	XXH128_canonical_t c;

	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, b, OFF_HASH);
	XXH3_128bits_update(&st, b + HDR, (size_t)body_len);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	memcpy(out, c.digest, 16);
}

/* One entry of the body: where its bytes are in the image. */
struct sent {
	const uint8_t *a; /* key, or topic */
	size_t alen;
	const uint8_t *b; /* value; NULL for offsets */
	size_t blen;
	int32_t partition;
	int64_t next;
};

struct spec {
	uint64_t body_len, nkeys, noffsets, meta_len, seq, time_ns;
	int64_t epoch;
	char name[CKPT_NAME_MAX + 1];
	unsigned empty_sections; /* present with len 0: the encoder omits */
	const uint8_t *meta;
	struct sent *kv, *off; /* malloc'd, nkeys / noffsets of them */
	size_t nkv, noff;
	int repeats; /* a key or a (topic, partition) appears twice */
};

static void spec_free(struct spec *sp)
{
	free(sp->kv);
	free(sp->off);
	memset(sp, 0, sizeof(*sp));
}

static int name_byte_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int spec_walk(const uint8_t *body, uint64_t len, struct spec *sp)
{
	uint64_t at = 0;
	uint32_t last = 0;

	while (at < len) {
		if (len - at < 16)
			return CKPT_ECORRUPT;
		uint32_t type = le32(body + at);
		uint64_t slen = le64(body + at + 8);
		uint64_t rest = len - at - 16;
		if (type < 1 || type > 3 || type <= last ||
		    le32(body + at + 4) != 0 || slen > rest ||
		    pad8(slen) > rest)
			return CKPT_ECORRUPT;
		const uint8_t *pl = body + at + 16;
		if (!all_zero(pl + slen, pad8(slen) - slen))
			return CKPT_ECORRUPT;
		if (slen == 0)
			sp->empty_sections++;
		for (uint64_t e = 0; type != 2 && e < slen;) {
			const uint8_t *p = pl + e;
			uint64_t n;
			if (type == 1) { /* OFFSETS */
				if (slen - e < 16)
					return CKPT_ECORRUPT;
				uint16_t tlen = le16(p);
				int32_t part = (int32_t)le32(p + 4);
				int64_t next = (int64_t)le64(p + 8);
				n = 16 + (uint64_t)tlen;
				if (tlen < 1 || tlen > 249 || le16(p + 2) ||
				    part < 0 || next < 0 || pad8(n) > slen - e ||
				    memchr(p + 16, 0, tlen) ||
				    !all_zero(p + n, pad8(n) - n))
					return CKPT_ECORRUPT;
				if (sp->noff < sp->noffsets)
					sp->off[sp->noff] = (struct sent){
						p + 16, tlen, NULL, 0, part, next
					};
				sp->noff++;
			} else { /* KV */
				if (slen - e < 8)
					return CKPT_ECORRUPT;
				uint32_t klen = le32(p), vlen = le32(p + 4);
				n = 8 + (uint64_t)klen + vlen;
				if (klen > 65536 || vlen > 16777216 ||
				    pad8(n) > slen - e ||
				    !all_zero(p + n, pad8(n) - n))
					return CKPT_ECORRUPT;
				if (sp->nkv < sp->nkeys)
					sp->kv[sp->nkv] = (struct sent){
						p + 8, klen, p + 8 + klen, vlen,
						0, 0
					};
				sp->nkv++;
			}
			e += pad8(n);
		}
		if (type == 2) {
			if (slen > 16777216)
				return CKPT_ECORRUPT;
			sp->meta = pl;
			sp->meta_len = slen;
		}
		last = type;
		at += 16 + pad8(slen);
	}
	return 0;
}

static int cmp_sent(const void *x, const void *y)
{
	const struct sent *a = x, *b = y;
	size_t n = a->alen < b->alen ? a->alen : b->alen;
	int c = n ? memcmp(a->a, b->a, n) : 0;
	if (c)
		return c;
	if (a->alen != b->alen)
		return a->alen < b->alen ? -1 : 1;
	return a->partition < b->partition ? -1 : a->partition > b->partition;
}

static int has_repeats(struct sent *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_sent);
	for (size_t i = 1; i < n; i++)
		if (!cmp_sent(&v[i - 1], &v[i]))
			return 1;
	return 0;
}

/* What ckpt__slot_verify must return for @b, by "Verifying an image". */
static int spec_check(const uint8_t *b, size_t len, const char *want,
		      struct spec *sp)
{
	uint8_t h[16];
	uint32_t ver, name_len;
	uint64_t meta_hdr;
	int ret;

	memset(sp, 0, sizeof(*sp));
	/* 1-5: frame */
	if (len < HDR || memcmp(b, "SHMCKSLT", 8) != 0)
		return CKPT_ECORRUPT;
	ver = le32(b + OFF_FORMAT_VERSION);
	if (ver == 0)
		return CKPT_ECORRUPT;
	if (ver > 1) {
		/* the frame every version keeps: newer if it checks out,
		 * damaged if not */
		uint64_t fh = le32(b + OFF_HEADER_SIZE), fb = le64(b + OFF_BODY_LEN);
		XXH3_state_t *st;
		XXH128_canonical_t c;
		int same;
		if (fh < HASH_END || fh > len || fb > len - fh)
			return CKPT_ECORRUPT;
		st = XXH3_createState();
		if (!st)
			abort();
		XXH3_128bits_reset(st);
		XXH3_128bits_update(st, b, OFF_HASH);
		XXH3_128bits_update(st, b + fh, (size_t)fb);
		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
		XXH3_freeState(st);
		same = !memcmp(c.digest, b + OFF_HASH, 16);
		return same ? CKPT_EVERSION : CKPT_ECORRUPT;
	}
	sp->body_len = le64(b + OFF_BODY_LEN);
	if (le32(b + OFF_HEADER_SIZE) != HDR || sp->body_len > len - HDR)
		return CKPT_ECORRUPT;
	/* 6: hash */
	image_hash(b, sp->body_len, h);
	if (memcmp(h, b + OFF_HASH, 16) != 0)
		return CKPT_ECORRUPT;
	/* 7: header fields */
	sp->epoch = (int64_t)le64(b + OFF_EPOCH);
	name_len = le32(b + OFF_NAME_LEN);
	if (!all_zero(b + HASH_END, HDR - HASH_END) || le32(b + OFF_FLAGS) ||
	    !all_zero(b + OFF_RESERVED, OFF_HASH - OFF_RESERVED) ||
	    sp->epoch < 0 || sp->epoch > ((int64_t)1 << 62) ||
	    (sp->epoch == 0 && sp->body_len) ||
	    name_len < 1 || name_len > CKPT_NAME_MAX ||
	    !all_zero(b + OFF_NAME + name_len, CKPT_NAME_MAX - name_len))
		return CKPT_ECORRUPT;
	memcpy(sp->name, b + OFF_NAME, name_len);
	sp->name[name_len] = '\0';
	for (uint32_t i = 0; i < name_len; i++)
		if (!name_byte_ok(b[OFF_NAME + i]))
			return CKPT_ECORRUPT;
	if (!strcmp(sp->name, ".") || !strcmp(sp->name, ".."))
		return CKPT_ECORRUPT;
	/* 8: stream */
	if (want && strcmp(want, sp->name) != 0)
		return CKPT_ESTREAM;
	/* 9: counts bounded by the body */
	sp->nkeys = le64(b + OFF_NKEYS);
	sp->noffsets = le64(b + OFF_NOFFSETS);
	meta_hdr = le64(b + OFF_META_LEN);
	sp->seq = le64(b + OFF_SEQ);
	sp->time_ns = le64(b + OFF_TIME);
	if (sp->nkeys > sp->body_len / 8 || sp->noffsets > sp->body_len / 24 ||
	    meta_hdr > sp->body_len)
		return CKPT_ECORRUPT;
	/* 10: the body; bounded by 9, so a wrong count cannot make us
	 * allocate more than the body could hold */
	sp->kv = calloc(sp->nkeys + 1, sizeof(*sp->kv));
	sp->off = calloc(sp->noffsets + 1, sizeof(*sp->off));
	FZ_CHECK(sp->kv && sp->off, "out of memory");
	ret = spec_walk(b + HDR, sp->body_len, sp);
	if (ret < 0)
		return ret;
	/* 11: counts */
	if (sp->nkv != sp->nkeys || sp->noff != sp->noffsets ||
	    sp->meta_len != meta_hdr)
		return CKPT_ECORRUPT;
	sp->repeats = has_repeats(sp->kv, sp->nkv) ||
		      has_repeats(sp->off, sp->noff);
	return 0;
}

/* ------------------------------------------------------------------------
 * The dump: visit everything, then re-encode
 * ------------------------------------------------------------------------ */

struct visit {
	const ckpt__snap_t *s;
	size_t n, stop_at;
	uint64_t rec_bytes;
};

static int visit_kv(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	struct visit *v = arg;
	const void *val2;
	size_t vlen2;

	FZ_CHECK(klen <= CKPT__SNAP_KEY_MAX && vlen <= CKPT__SNAP_VAL_MAX,
		 "visited key %zu / value %zu bytes over the limits", klen,
		 vlen);
	FZ_CHECK(ckpt__snap_get(v->s, key, klen, &val2, &vlen2) == 0 &&
			 vlen2 == vlen && (!vlen || !memcmp(val, val2, vlen)),
		 "a visited key is not found with its value");
	v->rec_bytes += pad8(8 + (uint64_t)klen + vlen);
	return ++v->n == v->stop_at ? 7 : 0;
}

static int visit_offset(void *arg, const char *topic, int32_t partition,
			int64_t next)
{
	struct visit *v = arg;
	size_t tlen = strnlen(topic, CKPT_TOPIC_MAX + 1);
	int64_t next2;

	FZ_CHECK(tlen >= 1 && tlen <= CKPT_TOPIC_MAX && partition >= 0 &&
			 next >= 0,
		 "visited offset: topic of %zu bytes, partition %d, next %lld",
		 tlen, (int)partition, (long long)next);
	FZ_CHECK(ckpt__snap_get_offset(v->s, topic, tlen, partition,
				       &next2) == 0 &&
			 next2 == next,
		 "a visited offset is not found with its value");
	v->rec_bytes += pad8(16 + (uint64_t)tlen);
	return ++v->n == v->stop_at ? 7 : 0;
}

/* The decoded snapshot is exactly the image's entries. */
static void check_content(const ckpt__snap_t *s, const struct spec *sp)
{
	const void *meta;
	size_t mlen;

	FZ_CHECK(ckpt__snap_nkeys(s) == sp->nkv &&
			 ckpt__snap_noffsets(s) == sp->noff &&
			 ckpt__snap_epoch(s) == sp->epoch,
		 "snapshot has %zu keys, %zu offsets, epoch %lld; the image "
		 "%zu, %zu, %lld",
		 ckpt__snap_nkeys(s), ckpt__snap_noffsets(s),
		 (long long)ckpt__snap_epoch(s), sp->nkv, sp->noff,
		 (long long)sp->epoch);
	for (size_t i = 0; i < sp->nkv; i++) {
		const void *val;
		size_t vlen;
		const struct sent *e = &sp->kv[i];
		FZ_CHECK(ckpt__snap_get(s, e->a, e->alen, &val, &vlen) == 0 &&
				 vlen == e->blen &&
				 (!vlen || !memcmp(val, e->b, vlen)),
			 "key %zu of the image is not in the snapshot", i);
	}
	for (size_t i = 0; i < sp->noff; i++) {
		int64_t next;
		const struct sent *e = &sp->off[i];
		FZ_CHECK(ckpt__snap_get_offset(s, (const char *)e->a, e->alen,
					       e->partition, &next) == 0 &&
				 next == e->next,
			 "offset %zu of the image is not in the snapshot", i);
	}
	ckpt__snap_get_meta(s, &meta, &mlen);
	FZ_CHECK(mlen == sp->meta_len &&
			 (!mlen || !memcmp(meta, sp->meta, mlen)),
		 "metadata of %zu bytes, the image has %llu", mlen,
		 (unsigned long long)sp->meta_len);
}

static void visit_all(const ckpt__snap_t *s, const struct spec *sp)
{
	struct visit v = { .s = s };
	uint64_t kv_rec, off_rec;
	int ret;

	ret = ckpt__snap_foreach_kv(s, visit_kv, &v);
	FZ_CHECK(ret == 0 && v.n == sp->nkv, "visited %zu of %zu keys (%d)",
		 v.n, sp->nkv, ret);
	kv_rec = v.rec_bytes;
	v = (struct visit){ .s = s };
	ret = ckpt__snap_foreach_offset(s, visit_offset, &v);
	FZ_CHECK(ret == 0 && v.n == sp->noff, "visited %zu of %zu offsets (%d)",
		 v.n, sp->noff, ret);
	off_rec = v.rec_bytes;
	{
		uint64_t k, o;
		ckpt__snap_record_bytes(s, &k, &o);
		FZ_CHECK(k == kv_rec && o == off_rec,
			 "record bytes %llu/%llu, visited %llu/%llu",
			 (unsigned long long)k, (unsigned long long)o,
			 (unsigned long long)kv_rec,
			 (unsigned long long)off_rec);
	}
	/* a dump that stops early (a pager closed, a write failed) */
	if (sp->nkv) {
		v = (struct visit){ .s = s, .stop_at = 1 };
		ret = ckpt__snap_foreach_kv(s, visit_kv, &v);
		FZ_CHECK(ret == 7 && v.n == 1, "early stop: %d after %zu", ret,
			 v.n);
	}
	if (sp->noff) {
		v = (struct visit){ .s = s, .stop_at = 1 };
		ret = ckpt__snap_foreach_offset(s, visit_offset, &v);
		FZ_CHECK(ret == 7 && v.n == 1, "early stop: %d after %zu", ret,
			 v.n);
	}
}

static void reencode(const ckpt__snap_t *s, const struct spec *sp)
{
	size_t n = ckpt__slot_image_size(s);
	uint64_t want = HDR + sp->body_len - 16ull * sp->empty_sections;
	uint8_t *img = malloc(n), *img2 = malloc(n);
	ckpt__snap_t *s2 = ckpt__snap_new();
	ckpt__slot_info_t i2;
	struct spec sp2;
	ssize_t got;
	int ret;

	FZ_CHECK(n == want, "image size %zu, expected %llu", n,
		 (unsigned long long)want);
	if (!img || !img2 || !s2)
		goto out;
	got = ckpt__slot_encode(s, sp->name, sp->seq, sp->time_ns, img, n);
	FZ_CHECK(got == (ssize_t)n, "encode gave %zd, image size %zu", got, n);
	got = ckpt__slot_encode(s, sp->name, sp->seq, sp->time_ns, img2, n);
	FZ_CHECK(got == (ssize_t)n && !memcmp(img, img2, n),
		 "two encodings of one snapshot differ");
	/* the document's reader accepts what the writer writes */
	ret = spec_check(img, n, sp->name, &sp2);
	FZ_CHECK(ret == 0 && !sp2.repeats && sp2.empty_sections == 0,
		 "spec_check refuses the re-encoded image: %d", ret);
	spec_free(&sp2);
	memset(&i2, 0, sizeof(i2));
	ret = ckpt__slot_verify(img, n, sp->name, &i2);
	FZ_CHECK(ret == 0, "re-encoded image does not verify: %d", ret);
	FZ_CHECK(i2.format_version == 1 && i2.epoch == sp->epoch &&
			 i2.seq == sp->seq && i2.time_ns == sp->time_ns &&
			 i2.image_len == n && i2.nkeys == sp->nkeys &&
			 i2.noffsets == sp->noffsets &&
			 i2.meta_len == sp->meta_len &&
			 !strcmp(i2.name, sp->name),
		 "re-encoded image describes another slot");
	ret = ckpt__slot_decode(img, n, sp->name, s2, NULL);
	FZ_CHECK(ret == 0 || ret == -ENOMEM, "re-encoded image refused: %d",
		 ret);
	if (ret == 0)
		FZ_CHECK(ckpt__snap_equal(s, s2),
			 "round trip changed the snapshot");
out:
	ckpt__snap_free(s2);
	free(img2);
	free(img);
}

static void fix_hash(uint8_t *b, size_t len)
{
	uint64_t body;

	if (len < HDR)
		return;
	body = le64(b + OFF_BODY_LEN);
	if (body <= len - HDR)
		image_hash(b, body, b + OFF_HASH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ckpt__snap_t *snap;
	ckpt__slot_info_t info;
	struct spec sp;
	const char *name;
	uint8_t ctl, *img;
	size_t len;
	int ret, want;

	if (size < 1)
		return 0;
	if (!snap && !(snap = ckpt__snap_new()))
		abort();
	ctl = data[size - 1];
	len = size - 1;
	img = malloc(len ? len : 1); /* exactly the image: ASan sees overruns */
	if (!img)
		return 0;
	memcpy(img, data, len);
	if (ctl & 1)
		fix_hash(img, len);
	name = ctl & 2 ? "fuzz" : NULL;

	memset(&info, 0, sizeof(info));
	ret = ckpt__slot_verify(img, len, name, &info);
	want = spec_check(img, len, name, &sp);
#ifdef FZ_VERBOSE
	fprintf(stderr, "dump: verify %d (%s), spec %d\n", ret,
		ret < 0 ? ckpt_last_error() : "ok", want);
#endif
	FZ_CHECK(ret == want,
		 "ckpt__slot_verify returned %d, docs/FORMAT.md says %d", ret,
		 want);
	if (ret == 0) {
		if (ctl & 4)
			ckpt__snap_fail_alloc_after(ctl >> 3);
		ret = ckpt__slot_decode(img, len, name, snap, &info);
		ckpt__snap_fail_alloc_after(-1);
#ifdef FZ_VERBOSE
		fprintf(stderr, "dump: decode %d (%s), %zu keys, %zu offsets, "
			"%u empty sections, repeats %d\n", ret,
			ret < 0 ? ckpt_last_error() : "ok", sp.nkv, sp.noff,
			sp.empty_sections, sp.repeats);
#endif
		if (ret == -ENOMEM) {
			FZ_CHECK(ctl & 4, "decode ran out of memory");
			FZ_CHECK(ckpt__snap_nkeys(snap) == 0 &&
					 ckpt__snap_noffsets(snap) == 0 &&
					 ckpt__snap_epoch(snap) == 0,
				 "failed decode left state behind");
		} else if (sp.repeats) {
			FZ_CHECK(ret == CKPT_ECORRUPT &&
					 ckpt__snap_nkeys(snap) == 0 &&
					 ckpt__snap_epoch(snap) == 0,
				 "a slot that repeats a key decoded: %d", ret);
		} else {
			FZ_CHECK(ret == 0, "decode of a verified slot: %d",
				 ret);
			check_content(snap, &sp);
			visit_all(snap, &sp);
			reencode(snap, &sp);
		}
	}
	spec_free(&sp);
	free(img);
	return 0;
}
