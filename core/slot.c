/*
 * slot.c - the slot image, format version 1 (docs/FORMAT.md, "Slot files",
 * says the same byte by byte for other implementations).
 *
 * Image = a 4096-byte header + a body of sections.  Everything is
 * little-endian at fixed offsets; the XXH3-128 at header offset 256 covers
 * header bytes [0, 256) and then the whole body.  Header bytes after the
 * hash must be zero so that nothing unverified can hide there.
 *
 * A slot file is untrusted input: verification checks every length and
 * count against the buffer before using it, and decoding walks the body
 * with the very same checks (one walker for both), so the two cannot
 * drift apart.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"
#include "layout.h"
#include "slot.h"

#define SLOT_MAGIC "SHMCKSLT"

/* The header as laid out on disk (fields little-endian).  Never read or
 * written through this struct: it is here so that the compiler checks the
 * offsets that docs/FORMAT.md promises. */
struct slot_hdr {
	char magic[8];
	uint32_t format_version;
	uint32_t header_size;
	int64_t epoch;
	uint64_t seq;
	uint64_t time_ns;
	uint64_t body_len;
	uint64_t nkeys;
	uint64_t noffsets;
	uint64_t meta_len;
	uint32_t flags;
	uint32_t name_len;
	char name[CKPT_NAME_MAX];
	unsigned char reserved[48];
	unsigned char hash[16];
};

#define H(f) offsetof(struct slot_hdr, f)
_Static_assert(H(magic) == 0, "slot header layout");
_Static_assert(H(format_version) == 8, "slot header layout");
_Static_assert(H(header_size) == 12, "slot header layout");
_Static_assert(H(epoch) == 16, "slot header layout");
_Static_assert(H(seq) == 24, "slot header layout");
_Static_assert(H(time_ns) == 32, "slot header layout");
_Static_assert(H(body_len) == 40, "slot header layout");
_Static_assert(H(nkeys) == 48, "slot header layout");
_Static_assert(H(noffsets) == 56, "slot header layout");
_Static_assert(H(meta_len) == 64, "slot header layout");
_Static_assert(H(flags) == 72, "slot header layout");
_Static_assert(H(name_len) == 76, "slot header layout");
_Static_assert(H(name) == 80, "slot header layout");
_Static_assert(H(reserved) == 208, "slot header layout");
_Static_assert(H(hash) == 256, "slot header layout");
_Static_assert(sizeof(struct slot_hdr) == 272, "slot header layout");
_Static_assert(CKPT_NAME_MAX == 128, "the v1 header holds 128 name bytes");

#define RESERVED_LEN (H(hash) - H(reserved))
#define HASH_OFF H(hash)
#define HASH_END (HASH_OFF + 16)

/* Section types of format version 1, in the order they must appear. */
enum { SEC_OFFSETS = 1, SEC_META = 2, SEC_KV = 3, SEC_LAST = SEC_KV };
#define SEC_HDR 16u /* u32 type, u32 reserved, u64 len */
#define OFF_HDR 16u /* u16 topic_len, u16 0, i32 partition, i64 next */
#define KV_HDR 8u /* u32 klen, u32 vlen */

static const char *const sec_name[] = { "?", "OFFSETS", "META", "KV" };

static inline uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

static inline uint16_t ld16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}

static inline uint32_t ld32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t ld64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline void st16(unsigned char *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static inline void st32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void st64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* Index of the first nonzero byte in [p, p+n), or n. */
static size_t first_nonzero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return i;
	return n;
}

static void hex16(const unsigned char h[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* XXH3-128 of header bytes [0, HASH_OFF) and then the body (which starts
 * at @hdr_size), canonical. */
static void frame_hash(const unsigned char *img, uint64_t hdr_size,
		       uint64_t body_len, unsigned char out[16])
{
	XXH3_state_t st;
	XXH128_canonical_t c;

	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, img, HASH_OFF);
	XXH3_128bits_update(&st, img + hdr_size, (size_t)body_len);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	memcpy(out, c.digest, 16);
}

static void image_hash(const unsigned char *img, uint64_t body_len,
		       unsigned char out[16])
{
	XXH3_state_t st;
	XXH128_canonical_t c;

	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, img, HASH_OFF);
	XXH3_128bits_update(&st, img + CKPT_SLOT_HDR_SIZE, (size_t)body_len);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	memcpy(out, c.digest, 16);
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

struct sizes {
	uint64_t off_len; /* OFFSETS payload */
	uint64_t kv_len; /* KV payload */
	uint64_t body_len;
};

/* Empty sections are left out: a reader takes an absent section as empty.
 * The snapshot keeps its record sizes (in the entry layouts below), so
 * this is O(1). */
static void body_sizes(const ckpt__snap_t *s, struct sizes *z)
{
	const void *meta;
	size_t meta_len;

	memset(z, 0, sizeof(*z));
	ckpt__snap_record_bytes(s, &z->kv_len, &z->off_len);
	ckpt__snap_get_meta(s, &meta, &meta_len);
	if (z->off_len)
		z->body_len += SEC_HDR + z->off_len;
	if (meta_len)
		z->body_len += SEC_HDR + pad8(meta_len);
	if (z->kv_len)
		z->body_len += SEC_HDR + z->kv_len;
}

size_t ckpt__slot_image_size(const ckpt__snap_t *s)
{
	struct sizes z;
	body_sizes(s, &z);
	return CKPT_SLOT_HDR_SIZE + (size_t)z.body_len;
}

static unsigned char *put_section(unsigned char *p, uint32_t type,
				  uint64_t len)
{
	st32(p, type);
	st32(p + 4, 0);
	st64(p + 8, len);
	return p + SEC_HDR;
}

/* Zero the padding after @n bytes written at @p; returns the next entry. */
static unsigned char *put_pad(unsigned char *p, uint64_t n)
{
	uint64_t pn = pad8(n);
	memset(p + n, 0, (size_t)(pn - n));
	return p + pn;
}

/* Where encoding writes, and where the image computed from the
 * snapshot's record sizes ends: a record that would cross the end means
 * those sizes are wrong, and must not become a buffer overflow. */
struct cursor {
	unsigned char *p, *end;
};

static int overflow(void)
{
	return ckpt__fail(-EOVERFLOW, "slot: the snapshot's record sizes "
			  "disagree with its entries (a bug)");
}

static int put_offset(void *arg, const char *topic, int32_t partition,
		      int64_t next)
{
	struct cursor *cu = arg;
	unsigned char *p = cu->p;
	size_t tlen = strlen(topic);

	if ((size_t)(cu->end - p) < pad8(OFF_HDR + tlen))
		return overflow();

	st16(p, (uint16_t)tlen);
	st16(p + 2, 0);
	st32(p + 4, (uint32_t)partition);
	st64(p + 8, (uint64_t)next);
	memcpy(p + OFF_HDR, topic, tlen);
	cu->p = put_pad(p, OFF_HDR + tlen);
	return 0;
}

static int put_kv(void *arg, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	struct cursor *cu = arg;
	unsigned char *p = cu->p;

	if ((size_t)(cu->end - p) < pad8(KV_HDR + klen + vlen))
		return overflow();
	st32(p, (uint32_t)klen);
	st32(p + 4, (uint32_t)vlen);
	if (klen)
		memcpy(p + KV_HDR, key, klen);
	if (vlen)
		memcpy(p + KV_HDR + klen, val, vlen);
	cu->p = put_pad(p, KV_HDR + klen + vlen);
	return 0;
}

static void put_header(unsigned char *h, const char *name, int64_t epoch,
		       uint64_t seq, uint64_t time_ns, uint64_t body_len,
		       uint64_t nkeys, uint64_t noffsets, uint64_t meta_len)
{
	size_t name_len = strlen(name);

	memset(h, 0, CKPT_SLOT_HDR_SIZE);
	memcpy(h + H(magic), SLOT_MAGIC, 8);
	st32(h + H(format_version), CKPT_SLOT_FORMAT_VERSION);
	st32(h + H(header_size), CKPT_SLOT_HDR_SIZE);
	st64(h + H(epoch), (uint64_t)epoch);
	st64(h + H(seq), seq);
	st64(h + H(time_ns), time_ns);
	st64(h + H(body_len), body_len);
	st64(h + H(nkeys), nkeys);
	st64(h + H(noffsets), noffsets);
	st64(h + H(meta_len), meta_len);
	st32(h + H(flags), 0);
	st32(h + H(name_len), (uint32_t)name_len);
	memcpy(h + H(name), name, name_len);
	image_hash(h, body_len, h + HASH_OFF);
}

ssize_t ckpt__slot_encode(const ckpt__snap_t *s, const char *name,
			  uint64_t seq, uint64_t time_ns, void *buf,
			  size_t cap)
{
	unsigned char *img = buf, *p;
	int64_t epoch = ckpt__snap_epoch(s);
	const void *meta;
	size_t meta_len;
	struct sizes z;
	int ret = ckpt__check_name(name);

	if (ret < 0)
		return ret;
	body_sizes(s, &z);
	ckpt__snap_get_meta(s, &meta, &meta_len);
	if (epoch < 0 || epoch > CKPT_EPOCH_MAX)
		return ckpt__fail(-EINVAL, "slot: cannot encode %s epoch %lld",
				  epoch < 0 ? "negative" : "above 2^62",
				  (long long)epoch);
	/* Epoch 0 means "nothing committed yet": readers take it as blank. */
	if (epoch == 0 && z.body_len)
		return ckpt__fail(-EINVAL, "slot: a snapshot with content must "
				  "have an epoch >= 1");
	if (cap < CKPT_SLOT_HDR_SIZE + z.body_len)
		return ckpt__fail(-ENOBUFS, "slot: image of %llu bytes does "
				  "not fit a %zu-byte buffer",
				  (unsigned long long)(CKPT_SLOT_HDR_SIZE +
						       z.body_len), cap);

	p = img + CKPT_SLOT_HDR_SIZE;
	if (z.off_len) {
		struct cursor cu = { put_section(p, SEC_OFFSETS, z.off_len), 0 };
		cu.end = cu.p + z.off_len;
		ret = ckpt__snap_foreach_offset(s, put_offset, &cu);
		if (ret < 0 || cu.p != cu.end)
			return ret < 0 ? ret : overflow();
		p = cu.p;
	}
	if (meta_len) {
		p = put_section(p, SEC_META, meta_len);
		memcpy(p, meta, meta_len);
		p = put_pad(p, meta_len);
	}
	if (z.kv_len) {
		struct cursor cu = { put_section(p, SEC_KV, z.kv_len), 0 };
		cu.end = cu.p + z.kv_len;
		ret = ckpt__snap_foreach_kv(s, put_kv, &cu);
		if (ret < 0 || cu.p != cu.end)
			return ret < 0 ? ret : overflow();
	}
	put_header(img, name, epoch, seq, time_ns, z.body_len,
		   ckpt__snap_nkeys(s), ckpt__snap_noffsets(s), meta_len);
	return (ssize_t)(CKPT_SLOT_HDR_SIZE + z.body_len);
}

ssize_t ckpt__slot_encode_blank(const char *name, void *buf, size_t cap)
{
	int ret = ckpt__check_name(name);

	if (ret < 0)
		return ret;
	if (cap < CKPT_SLOT_HDR_SIZE)
		return ckpt__fail(-ENOBUFS, "slot: a blank slot needs %u "
				  "bytes, buffer has %zu", CKPT_SLOT_HDR_SIZE,
				  cap);
	put_header(buf, name, 0, 0, ckpt__real_ns(), 0, 0, 0, 0);
	return CKPT_SLOT_HDR_SIZE;
}

/* ------------------------------------------------------------------------
 * Verification and decoding
 * ------------------------------------------------------------------------ */

struct counts {
	uint64_t nkeys, noffsets, meta_len;
};

#define CORRUPT(...) ckpt__fail(CKPT_ECORRUPT, __VA_ARGS__)

/* Padding bytes [n, pad8(n)) of the entry at @p must be zero: a v1 writer
 * zeroes them, and accepting anything else would let bytes carry meaning
 * that no reader checks. */
static int check_pad(const unsigned char *p, uint64_t n, const char *what,
		     uint64_t at)
{
	size_t bad = first_nonzero(p + n, (size_t)(pad8(n) - n));
	if (bad < pad8(n) - n)
		return CORRUPT("slot %s entry at body offset %llu has nonzero "
			       "padding", what, (unsigned long long)at);
	return 0;
}

static int walk_offsets(const unsigned char *p, uint64_t len, uint64_t base,
			ckpt__snap_t *s, struct counts *c)
{
	uint64_t at = 0;

	while (at < len) {
		const unsigned char *e = p + at;
		uint64_t pos = base + at, n;

		if (len - at < OFF_HDR)
			return CORRUPT("slot OFFSETS entry at body offset %llu "
				       "truncated: %llu bytes left, header "
				       "needs %u", (unsigned long long)pos,
				       (unsigned long long)(len - at), OFF_HDR);
		uint16_t tlen = ld16(e);
		int32_t partition = (int32_t)ld32(e + 4);
		int64_t next = (int64_t)ld64(e + 8);
		if (tlen < 1 || tlen > CKPT_TOPIC_MAX)
			return CORRUPT("slot OFFSETS entry at body offset %llu: "
				       "topic length %u not in 1..%d",
				       (unsigned long long)pos, tlen,
				       CKPT_TOPIC_MAX);
		if (ld16(e + 2) != 0)
			return CORRUPT("slot OFFSETS entry at body offset %llu: "
				       "reserved field not zero",
				       (unsigned long long)pos);
		if (partition < 0 || next < 0)
			return CORRUPT("slot OFFSETS entry at body offset %llu: "
				       "negative partition %d or offset %lld",
				       (unsigned long long)pos, (int)partition,
				       (long long)next);
		n = OFF_HDR + tlen;
		if (pad8(n) > len - at)
			return CORRUPT("slot OFFSETS entry at body offset %llu "
				       "(%llu bytes padded) overruns its "
				       "section", (unsigned long long)pos,
				       (unsigned long long)pad8(n));
		if (memchr(e + OFF_HDR, '\0', tlen))
			return CORRUPT("slot OFFSETS entry at body offset %llu: "
				       "topic contains a NUL byte",
				       (unsigned long long)pos);
		int ret = check_pad(e, n, "OFFSETS", pos);
		if (ret < 0)
			return ret;
		if (s) {
			ckpt_delta_t d = {
				.type = CKPT_D_OFFSET,
				.topic = (const char *)e + OFF_HDR,
				.topic_len = tlen,
				.partition = partition,
				.offset = next,
			};
			ret = ckpt__snap_apply(s, &d);
			if (ret < 0)
				return ret;
		}
		c->noffsets++;
		at += pad8(n);
	}
	return 0;
}

static int walk_kv(const unsigned char *p, uint64_t len, uint64_t base,
		   ckpt__snap_t *s, struct counts *c)
{
	uint64_t at = 0;

	while (at < len) {
		const unsigned char *e = p + at;
		uint64_t pos = base + at, n;

		if (len - at < KV_HDR)
			return CORRUPT("slot KV entry at body offset %llu "
				       "truncated: %llu bytes left, header "
				       "needs %u", (unsigned long long)pos,
				       (unsigned long long)(len - at), KV_HDR);
		uint32_t klen = ld32(e), vlen = ld32(e + 4);
		if (klen > CKPT__SNAP_KEY_MAX || vlen > CKPT__SNAP_VAL_MAX)
			return CORRUPT("slot KV entry at body offset %llu: key "
				       "of %u bytes (max %u) or value of %u "
				       "bytes (max %u)",
				       (unsigned long long)pos, klen,
				       CKPT__SNAP_KEY_MAX, vlen,
				       CKPT__SNAP_VAL_MAX);
		/* No overflow: both lengths are below 2^25. */
		n = KV_HDR + (uint64_t)klen + vlen;
		if (pad8(n) > len - at)
			return CORRUPT("slot KV entry at body offset %llu "
				       "(%llu bytes padded) overruns its "
				       "section", (unsigned long long)pos,
				       (unsigned long long)pad8(n));
		int ret = check_pad(e, n, "KV", pos);
		if (ret < 0)
			return ret;
		if (s) {
			ckpt_delta_t d = {
				.type = CKPT_D_PUT,
				.key = e + KV_HDR,
				.klen = klen,
				.val = e + KV_HDR + klen,
				.vlen = vlen,
			};
			ret = ckpt__snap_apply(s, &d);
			if (ret < 0)
				return ret;
		}
		c->nkeys++;
		at += pad8(n);
	}
	return 0;
}

/*
 * Walk the body's sections, checking every length against @len before
 * using it; load each entry into @s when @s is not NULL.  Sections come in
 * strictly increasing type order, each at most once, and fill the body
 * exactly: there is no place for trailing bytes.
 */
static int walk_body(const unsigned char *body, uint64_t len,
		     ckpt__snap_t *s, struct counts *c)
{
	uint64_t at = 0;
	uint32_t last = 0;
	int ret;

	memset(c, 0, sizeof(*c));
	while (at < len) {
		const unsigned char *h = body + at;
		uint64_t slen, rest;
		uint32_t type;

		if (len - at < SEC_HDR)
			return CORRUPT("slot section header at body offset %llu "
				       "truncated: %llu bytes left of body_len "
				       "%llu", (unsigned long long)at,
				       (unsigned long long)(len - at),
				       (unsigned long long)len);
		type = ld32(h);
		slen = ld64(h + 8);
		rest = len - at - SEC_HDR;
		if (type < 1 || type > SEC_LAST)
			return CORRUPT("slot has unknown section type %u at "
				       "body offset %llu (format version 1 "
				       "knows types 1..3)", type,
				       (unsigned long long)at);
		if (type <= last)
			return CORRUPT("slot section %s at body offset %llu "
				       "out of order or repeated",
				       sec_name[type], (unsigned long long)at);
		if (ld32(h + 4) != 0)
			return CORRUPT("slot section %s at body offset %llu: "
				       "reserved field not zero",
				       sec_name[type], (unsigned long long)at);
		if (slen > rest || pad8(slen) > rest)
			return CORRUPT("slot section %s at body offset %llu: "
				       "length %llu (padded %llu) exceeds the "
				       "%llu bytes left in the body",
				       sec_name[type], (unsigned long long)at,
				       (unsigned long long)slen,
				       (unsigned long long)pad8(slen),
				       (unsigned long long)rest);
		ret = check_pad(h + SEC_HDR, slen, sec_name[type], at);
		if (ret < 0)
			return ret;

		const unsigned char *pl = h + SEC_HDR;
		uint64_t base = at + SEC_HDR;
		switch (type) {
		case SEC_OFFSETS:
			ret = walk_offsets(pl, slen, base, s, c);
			break;
		case SEC_KV:
			ret = walk_kv(pl, slen, base, s, c);
			break;
		case SEC_META:
			c->meta_len = slen;
			if (slen > CKPT__SNAP_META_MAX)
				return CORRUPT("slot META of %llu bytes "
					       "exceeds %u",
					       (unsigned long long)slen,
					       CKPT__SNAP_META_MAX);
			if (s && slen) {
				ckpt_delta_t d = {
					.type = CKPT_D_META,
					.val = pl,
					.vlen = (size_t)slen,
				};
				ret = ckpt__snap_apply(s, &d);
			}
			break;
		}
		if (ret < 0)
			return ret;
		last = type;
		at += SEC_HDR + pad8(slen);
	}
	return 0;
}

/* Header checks that need no hash: enough to know where the hashed bytes
 * are.  Also the version check, which must come first of all: a newer
 * version may lay the header out differently. */
static int check_frame(const unsigned char *b, size_t len, uint64_t *body_len)
{
	uint32_t ver, hsz;

	if (len < CKPT_SLOT_HDR_SIZE)
		return CORRUPT("slot file is %zu bytes, shorter than the "
			       "%u-byte header", len, CKPT_SLOT_HDR_SIZE);
	if (memcmp(b + H(magic), SLOT_MAGIC, 8) != 0)
		return CORRUPT("slot has a bad magic (not a shmckpt slot file)");
	ver = ld32(b + H(format_version));
	if (ver == 0)
		return CORRUPT("slot format version is 0");
	if (ver > CKPT_SLOT_FORMAT_VERSION) {
		/* Every version keeps the frame (magic, version, header_size
		 * at 12, body_len at 40, the hash at 256 over header bytes
		 * [0, 256) and the body): a newer file checks out against
		 * it, a damaged version field does not.  So damage falls
		 * back to the other slot (R7) while a newer build's slot is
		 * refused, never rolled back past (R8). */
		uint64_t fh = ld32(b + H(header_size)), fb = ld64(b + H(body_len));
		unsigned char fhash[16];
		if (fh >= HASH_END && fh <= len && fb <= len - fh) {
			frame_hash(b, fh, fb, fhash);
			if (!memcmp(fhash, b + HASH_OFF, 16))
				return ckpt__fail(CKPT_EVERSION, "slot format "
						  "version %u is newer than "
						  "this build reads (up to %u)",
						  ver, CKPT_SLOT_FORMAT_VERSION);
		}
		return CORRUPT("slot format version %u is unknown and the "
			       "slot's hash does not match: damaged", ver);
	}
	hsz = ld32(b + H(header_size));
	if (hsz != CKPT_SLOT_HDR_SIZE)
		return CORRUPT("slot header_size %u, version 1 has %u", hsz,
			       CKPT_SLOT_HDR_SIZE);
	*body_len = ld64(b + H(body_len));
	if (*body_len > len - CKPT_SLOT_HDR_SIZE)
		return CORRUPT("slot body_len %llu exceeds file size %zu "
			       "(%zu bytes after the header)",
			       (unsigned long long)*body_len, len,
			       len - CKPT_SLOT_HDR_SIZE);
	return 0;
}

static int check_header(const unsigned char *b, uint64_t body_len,
			ckpt__slot_info_t *info)
{
	size_t bad;
	uint32_t name_len = ld32(b + H(name_len));
	uint32_t flags = ld32(b + H(flags));
	int64_t epoch = (int64_t)ld64(b + H(epoch));

	bad = first_nonzero(b + HASH_END, CKPT_SLOT_HDR_SIZE - HASH_END);
	if (bad < CKPT_SLOT_HDR_SIZE - HASH_END)
		return CORRUPT("slot header byte at offset %zu (after the "
			       "hash) is not zero", HASH_END + bad);
	if (flags)
		return CORRUPT("slot has unknown flags 0x%x", flags);
	bad = first_nonzero(b + H(reserved), RESERVED_LEN);
	if (bad < RESERVED_LEN)
		return CORRUPT("slot reserved header byte at offset %zu is "
			       "not zero", H(reserved) + bad);
	if (epoch < 0)
		return CORRUPT("slot epoch %lld is negative", (long long)epoch);
	if (epoch > CKPT_EPOCH_MAX)
		return CORRUPT("slot epoch %lld is above 2^62", (long long)epoch);
	if (epoch == 0 && body_len)
		return CORRUPT("slot of epoch 0 (blank) has a %llu-byte body",
			       (unsigned long long)body_len);
	if (name_len < 1 || name_len > CKPT_NAME_MAX)
		return CORRUPT("slot name_len %u not in 1..%d", name_len,
			       CKPT_NAME_MAX);
	bad = first_nonzero(b + H(name) + name_len, CKPT_NAME_MAX - name_len);
	if (bad < CKPT_NAME_MAX - name_len)
		return CORRUPT("slot name field has a nonzero byte after its "
			       "%u-byte name", name_len);
	if (memchr(b + H(name), '\0', name_len))
		return CORRUPT("slot name field has a NUL inside its %u-byte "
			       "name", name_len);
	memcpy(info->name, b + H(name), name_len);
	info->name[name_len] = '\0';
	if (ckpt__check_name(info->name) < 0)
		return CORRUPT("slot stream name is not valid: %s",
			       ckpt_last_error());
	info->format_version = ld32(b + H(format_version));
	info->epoch = epoch;
	info->seq = ld64(b + H(seq));
	info->time_ns = ld64(b + H(time_ns));
	info->image_len = CKPT_SLOT_HDR_SIZE + body_len;
	info->nkeys = ld64(b + H(nkeys));
	info->noffsets = ld64(b + H(noffsets));
	info->meta_len = ld64(b + H(meta_len));
	memcpy(info->hash, b + HASH_OFF, 16);
	return 0;
}

/*
 * Verify the image and, when @s is not NULL, load it into @s in the same
 * walk (one pass over a 1 GiB body instead of two).  Nothing is loaded
 * before the hash, the header and the stream name have been checked.
 */
static int check_image(const unsigned char *b, size_t len, const char *name,
		       ckpt__slot_info_t *info, ckpt__snap_t *s)
{
	unsigned char hash[16];
	struct counts c;
	uint64_t body_len = 0;
	int ret;

	ret = check_frame(b, len, &body_len);
	if (ret < 0)
		return ret;
	/* The hash before any other field: a damaged file then reads as
	 * damaged, not as whatever its damaged fields happen to say. */
	image_hash(b, body_len, hash);
	if (memcmp(hash, b + HASH_OFF, 16) != 0) {
		char want[33], got[33];
		hex16(b + HASH_OFF, want);
		hex16(hash, got);
		return CORRUPT("slot hash mismatch: stored %s, computed %s",
			       want, got);
	}
	ret = check_header(b, body_len, info);
	if (ret < 0)
		return ret;
	if (name && strcmp(name, info->name) != 0)
		return ckpt__fail(CKPT_ESTREAM, "slot belongs to stream '%s', "
				  "not '%s'", info->name, name);
	/* Bound the counts by what the body could hold before sizing
	 * anything by them (the smallest KV entry is 8 bytes, the smallest
	 * offset 24). */
	if (info->nkeys > body_len / KV_HDR ||
	    info->noffsets > body_len / (OFF_HDR + 8) ||
	    info->meta_len > body_len)
		return CORRUPT("slot header counts (nkeys %llu, noffsets %llu, "
			       "meta_len %llu) cannot fit a %llu-byte body",
			       (unsigned long long)info->nkeys,
			       (unsigned long long)info->noffsets,
			       (unsigned long long)info->meta_len,
			       (unsigned long long)body_len);
	if (s) {
		ret = ckpt__snap_reserve(s, (size_t)info->nkeys,
					 (size_t)body_len);
		if (ret < 0)
			return ret;
	}
	ret = walk_body(b + CKPT_SLOT_HDR_SIZE, body_len, s, &c);
	if (ret < 0)
		return ret;
	if (c.nkeys != info->nkeys || c.noffsets != info->noffsets ||
	    c.meta_len != info->meta_len)
		return CORRUPT("slot header counts (nkeys %llu, noffsets %llu, "
			       "meta_len %llu) differ from the body's (%llu, "
			       "%llu, %llu)",
			       (unsigned long long)info->nkeys,
			       (unsigned long long)info->noffsets,
			       (unsigned long long)info->meta_len,
			       (unsigned long long)c.nkeys,
			       (unsigned long long)c.noffsets,
			       (unsigned long long)c.meta_len);
	return 0;
}

int ckpt__slot_verify(const void *buf, size_t len, const char *name,
		      ckpt__slot_info_t *info)
{
	ckpt__slot_info_t tmp;

	return check_image(buf, len, name, info ? info : &tmp, NULL);
}

int ckpt__slot_decode(const void *buf, size_t len, const char *name,
		      ckpt__snap_t *s, ckpt__slot_info_t *info)
{
	ckpt__slot_info_t tmp;
	int ret;

	if (!info)
		info = &tmp;
	ckpt__snap_clear(s);
	ret = check_image(buf, len, name, info, s);
	if (ret == 0 && (ckpt__snap_nkeys(s) != info->nkeys ||
			 ckpt__snap_noffsets(s) != info->noffsets))
		/* Entries were merged on load: the writer repeated a key. */
		ret = CORRUPT("slot repeats a key or offset: %llu keys and "
			      "%llu offsets stored, %zu and %zu distinct",
			      (unsigned long long)info->nkeys,
			      (unsigned long long)info->noffsets,
			      ckpt__snap_nkeys(s), ckpt__snap_noffsets(s));
	if (ret < 0) {
		/* Never half a snapshot: a failed load leaves it empty. */
		ckpt__snap_clear(s);
		return ret;
	}
	ckpt__snap_set_epoch(s, info->epoch);
	return 0;
}

/* ------------------------------------------------------------------------
 * Reading a slot file
 * ------------------------------------------------------------------------ */

/*
 * Ask for transparent huge pages over the 2 MiB-aligned part of a large
 * buffer before it is first touched: reading 1 GiB into 4 KiB pages costs
 * 2^18 page faults, which measured slower than the copy itself.  A hint:
 * the buffer stays an ordinary malloc'd one (free() releases it).
 */
static void thp_hint(void *p, size_t n)
{
	const uintptr_t huge = 2u << 20;
	uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
	uintptr_t e = ((uintptr_t)p + n) & ~(huge - 1);

	if (n >= 2 * huge && e > a)
		(void)madvise((void *)a, e - a, MADV_HUGEPAGE);
}

int ckpt__slot_read_file(int dirfd, const char *path, size_t max_len,
			 void **buf, size_t *len)
{
	struct stat st;
	unsigned char *b;
	size_t size, got = 0;
	int fd, ret;

	/* O_NONBLOCK: a FIFO planted under the slot's name must not hang
	 * the open; it is refused below as not a regular file. */
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return ckpt__fail(-errno, "slot %s: open: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = ckpt__fail(-errno, "slot %s: fstat: %s", path,
				 strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = ckpt__fail(-EINVAL, "slot %s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max_len) {
		ret = ckpt__fail(-EFBIG, "slot %s is %lld bytes, over the "
				 "%zu-byte limit", path,
				 (long long)st.st_size, max_len);
		goto out;
	}
	size = (size_t)st.st_size;
	b = malloc(size ? size : 1);
	if (!b) {
		ret = ckpt__fail(-ENOMEM, "slot %s: no memory for %zu bytes",
				 path, size);
		goto out;
	}
	thp_hint(b, size);
	/* Up to the size fstat saw: a file that grows meanwhile is being
	 * written, and its old length is as good a view as any. */
	while (got < size) {
		size_t want = size - got;
		ssize_t n = read(fd, b + got, want > (1u << 30) ? (1u << 30) : want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = ckpt__fail(-errno, "slot %s: read: %s", path,
					 strerror(errno));
			free(b);
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: verify judges what is left */
		got += (size_t)n;
	}
	*buf = b;
	*len = got;
	ret = 0;
out:
	close(fd);
	return ret;
}
