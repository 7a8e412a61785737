/*
 * fuzz_slot.c - slot image verify and decode over arbitrary bytes.
 *
 * Input: a slot image followed by one control byte.  The image is copied
 * into a buffer of exactly its size (ASan sees any read past it).  Bit 0 of
 * the control byte rewrites the XXH3-128 so that it matches, as a writer
 * would have computed it: without that the fuzzer would stop at "hash
 * mismatch" and never reach the body walker behind it.  Bit 1 verifies
 * against the stream name "fuzz" instead of none.
 *
 * What verify accepts must decode, describe itself truthfully (counts,
 * epoch, name), and survive a round trip: encode the decoded snapshot
 * again, verify and decode that, and get an equal snapshot.
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

/* docs/FORMAT.md, slot header v1: what the hash covers and where it is */
#define FZS_BODY_LEN_OFF 40
#define FZS_HASH_OFF 256

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fix_hash(uint8_t *b, size_t len)
{
	uint64_t body;
	XXH3_state_t st;
	XXH128_canonical_t c;

	if (len < CKPT_SLOT_HDR_SIZE)
		return;
	memcpy(&body, b + FZS_BODY_LEN_OFF, 8);
	if (body > len - CKPT_SLOT_HDR_SIZE)
		return;
	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, b, FZS_HASH_OFF);
	XXH3_128bits_update(&st, b + CKPT_SLOT_HDR_SIZE, (size_t)body);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	memcpy(b + FZS_HASH_OFF, c.digest, 16);
}

static void round_trip(const ckpt__snap_t *s, const ckpt__slot_info_t *info)
{
	size_t n = ckpt__slot_image_size(s);
	uint8_t *img = malloc(n);
	ckpt__snap_t *s2 = ckpt__snap_new();
	ckpt__slot_info_t i2;
	ssize_t got;
	int ret;

	if (!img || !s2)
		goto out;
	got = ckpt__slot_encode(s, info->name, info->seq, info->time_ns, img,
				n);
	FZ_CHECK(got == (ssize_t)n, "encode gave %zd, image size %zu", got, n);
	ret = ckpt__slot_decode(img, n, info->name, s2, &i2);
	FZ_CHECK(ret == 0 || ret == -ENOMEM, "re-encoded image refused: %d",
		 ret);
	if (ret == 0)
		FZ_CHECK(ckpt__snap_equal(s, s2) && i2.epoch == info->epoch &&
				 i2.nkeys == info->nkeys &&
				 i2.noffsets == info->noffsets &&
				 i2.meta_len == info->meta_len,
			 "round trip changed the snapshot");
out:
	ckpt__snap_free(s2);
	free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ckpt__snap_t *snap;
	ckpt__slot_info_t info;
	const char *name;
	uint8_t ctl, *img;
	size_t len;
	int ret;

	if (size < 1)
		return 0;
	if (!snap && !(snap = ckpt__snap_new()))
		abort();
	ctl = data[size - 1];
	len = size - 1;
	img = malloc(len ? len : 1);
	if (!img)
		return 0;
	memcpy(img, data, len);
	if (ctl & 1)
		fix_hash(img, len);
	name = ctl & 2 ? "fuzz" : NULL;

	memset(&info, 0, sizeof(info));
	ret = ckpt__slot_verify(img, len, name, &info);
#ifdef FZ_VERBOSE
	fprintf(stderr, "slot: verify %d (%s) epoch %lld keys %llu\n", ret,
		ret < 0 ? ckpt_last_error() : "ok", (long long)info.epoch,
		(unsigned long long)info.nkeys);
#endif
	FZ_CHECK(ret == 0 || ret == CKPT_ECORRUPT || ret == CKPT_EVERSION ||
			 ret == CKPT_ESTREAM,
		 "verify returned %d", ret);
	if (ret == 0) {
		FZ_CHECK(info.image_len >= CKPT_SLOT_HDR_SIZE &&
				 info.image_len <= len && info.epoch >= 0 &&
				 info.format_version >= 1 &&
				 info.format_version <=
					 CKPT_SLOT_FORMAT_VERSION &&
				 ckpt__check_name(info.name) == 0 &&
				 (!name || !strcmp(name, info.name)),
			 "verified slot describes itself wrongly");

		ckpt__slot_info_t di;
		ret = ckpt__slot_decode(img, len, name, snap, &di);
		/* verify does not see repeated keys; decode does */
		FZ_CHECK(ret == 0 || ret == CKPT_ECORRUPT || ret == -ENOMEM,
			 "decode of a verified slot returned %d", ret);
		if (ret == 0) {
			const void *meta;
			size_t mlen;
			ckpt__snap_get_meta(snap, &meta, &mlen);
			FZ_CHECK(ckpt__snap_nkeys(snap) == info.nkeys &&
					 ckpt__snap_noffsets(snap) ==
						 info.noffsets &&
					 mlen == info.meta_len &&
					 ckpt__snap_epoch(snap) == info.epoch,
				 "decoded snapshot differs from its header");
			round_trip(snap, &info);
		} else {
			FZ_CHECK(ckpt__snap_nkeys(snap) == 0 &&
					 ckpt__snap_epoch(snap) == 0,
				 "failed decode left state behind");
		}
	}
	free(img);
	return 0;
}
