/*
 * make-seeds.c - write the seed corpora of the fuzz targets.
 *
 *   make-seeds CORPUS_DIR      writes the seeds under CORPUS_DIR/<target>
 *
 * Seeds are real: rings written by the library's own producer into a
 * region built as create() builds one, so every seal and hash is right and
 * the fuzzer starts from inputs that reach the end of the reader.
 * Deterministic but for one clock the library stamps itself: the blank
 * slot's time (under its hash); the producer's heartbeat is zeroed here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#ifdef FZ_HAVE_SLOT
#include "slot.h"
#include "snapshot.h"
#endif

static const char *outdir;

static void put_file(const char *target, const char *name, const void *a,
		     size_t alen, const void *b, size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen ||
	    (blen && fwrite(b, 1, blen, f) != blen) || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "make-seeds: %s: %d (%s)\n", what, ret,
		ckpt_last_error());
	exit(1);
}

/* A region (cap FZ_RING) whose ring starts at @release, with @nepochs
 * epochs of every delta type written by the producer. */
static struct ckpt_region *build(uint64_t release, unsigned nepochs,
				 unsigned lim, ckpt__region_t *rg)
{
	size_t len = CKPT_REGION_HDR_SIZE + FZ_RING;
	struct ckpt_region *h = aligned_alloc(4096, len);
	ckpt__producer_t pr;
	int ret;

	if (!h)
		exit(1);
	memset(h, 0, len);
	fz_region_init(h, FZ_RING, fz_limits[lim].max_key,
		       fz_limits[lim].max_value, fz_limits[lim].max_meta);
	h->prod.commit_pos = release;
	h->flush.release_pos = release;
	ret = ckpt__region_validate(h, len, FZ_NAME, rg);
	if (ret < 0)
		die("validate", ret);
	ret = ckpt__prod_init(&pr, rg, CKPT_FULL_EAGAIN, 0, 0);
	if (ret < 0)
		die("prod_init", ret);
	for (unsigned e = 0; e < nepochs; e++) {
		char key[16], val[40];
		size_t kl = (size_t)snprintf(key, sizeof(key), "key-%u", e);
		size_t vl = (size_t)snprintf(val, sizeof(val), "value-%u", e);
		if (kl > rg->max_key)
			kl = rg->max_key;
		if (vl > rg->max_value)
			vl = rg->max_value;
		if (e % 4 == 3) { /* an empty epoch now and then */
			if (ckpt__prod_commit(&pr) < 0)
				die("commit", -1);
			continue;
		}
		if ((ret = ckpt__prod_offset(&pr, "orders", (int32_t)e,
					     1000 + e)) < 0 ||
		    (ret = ckpt__prod_kv(&pr, CKPT_R_PUT, key, kl, val, vl)) <
			    0 ||
		    (ret = ckpt__prod_kv(&pr, CKPT_R_DEL, "gone", 1, NULL, 0)) <
			    0 ||
		    (rg->max_meta &&
		     (ret = ckpt__prod_kv(&pr, CKPT_R_META, "m", 1, NULL, 0)) <
			     0))
			die("stage", ret);
		if (ckpt__prod_commit(&pr) < 0)
			die("commit", -1);
	}
	return h;
}

/* fuzz_ring seed: control header + ring bytes from release's offset,
 * through commit_pos and its terminator. */
static void ring_seed(const char *name, uint64_t release, unsigned nepochs,
		      unsigned lim, uint8_t flags, uint16_t nrt)
{
	ckpt__region_t rg;
	struct ckpt_region *h = build(release, nepochs, lim, &rg);
	uint64_t commit = h->prod.commit_pos, n = commit - release + 8;
	uint8_t hdr[FZR_HDR], *body = malloc(n);
	uint32_t used = (uint32_t)(commit - release);

	if (n > FZ_RING)
		n = FZ_RING;
	for (uint64_t i = 0; i < n; i++)
		body[i] = rg.ring[(release + i) & rg.mask];
	memcpy(hdr, &release, 8);
	memcpy(hdr + 8, &used, 4);
	hdr[12] = flags;
	hdr[13] = (uint8_t)lim;
	memcpy(hdr + 14, &nrt, 2);
	put_file("fuzz_ring", name, hdr, sizeof(hdr), body, n);
	free(body);
	free(h);
}

static void region_seed(const char *name, uint64_t release, unsigned nepochs,
			uint32_t version)
{
	ckpt__region_t rg;
	struct ckpt_region *h = build(release, nepochs, 0, &rg);
	h->id.layout_version = version;
	h->prod.heartbeat_ns = 0; /* a clock: keep the seed reproducible */
	put_file("fuzz_region", name, h, CKPT_REGION_HDR_SIZE + FZ_RING, NULL,
		 0);
	free(h);
}

#ifdef FZ_HAVE_SLOT
/* fuzz_slot / fuzz_dump seed: a slot image and its control byte (the two
 * targets read the same input format). */
static void slot_seed(const char *target, const char *name, unsigned nkeys,
		      unsigned noffsets, const char *meta, uint8_t ctl)
{
	ckpt__snap_t *s = ckpt__snap_new();
	unsigned char *img;
	ssize_t n;

	if (!s)
		exit(1);
	for (unsigned i = 0; i < noffsets; i++) {
		ckpt_delta_t d = { .type = CKPT_D_OFFSET, .topic = "orders",
				   .topic_len = 6, .partition = (int32_t)i,
				   .offset = 1000 + i };
		if (ckpt__snap_apply(s, &d) < 0)
			die("snap_apply", -1);
	}
	for (unsigned i = 0; i < nkeys; i++) {
		char key[16], val[32];
		ckpt_delta_t d = { .type = CKPT_D_PUT, .key = key, .val = val };
		d.klen = (size_t)snprintf(key, sizeof(key), "key-%u", i);
		d.vlen = (size_t)snprintf(val, sizeof(val), "value-%u", i * 7);
		if (ckpt__snap_apply(s, &d) < 0)
			die("snap_apply", -1);
	}
	if (meta) {
		ckpt_delta_t d = { .type = CKPT_D_META, .val = meta,
				   .vlen = strlen(meta) };
		if (ckpt__snap_apply(s, &d) < 0)
			die("snap_apply", -1);
	}
	ckpt__snap_set_epoch(s, nkeys + noffsets ? 42 : 0);
	img = malloc(ckpt__slot_image_size(s) + CKPT_SLOT_HDR_SIZE);
	if (!img)
		exit(1);
	if (nkeys + noffsets || meta)
		n = ckpt__slot_encode(s, FZ_NAME, 7, 1700000000000000000ull,
				      img, ckpt__slot_image_size(s));
	else
		n = ckpt__slot_encode_blank(FZ_NAME, img, CKPT_SLOT_HDR_SIZE);
	if (n < 0)
		die("slot_encode", (int)n);
	put_file(target, name, img, (size_t)n, &ctl, 1);
	free(img);
	ckpt__snap_free(s);
}

/* A slot image written byte by byte from docs/FORMAT.md, for shapes the
 * encoder never writes (present empty sections, a repeated key).  The hash
 * is left zero: give it control bit 0 so that the target computes it. */
static void raw_slot_seed(const char *target, const char *name, int64_t epoch,
			  const void *body, size_t body_len, uint64_t nkeys,
			  uint64_t noffsets, uint64_t meta_len, uint8_t ctl)
{
	unsigned char h[CKPT_SLOT_HDR_SIZE];
	uint32_t u32;
	uint64_t u64;

	memset(h, 0, sizeof(h));
	memcpy(h, "SHMCKSLT", 8);
	u32 = 1, memcpy(h + 8, &u32, 4); /* format_version */
	u32 = CKPT_SLOT_HDR_SIZE, memcpy(h + 12, &u32, 4);
	memcpy(h + 16, &epoch, 8);
	u64 = 3, memcpy(h + 24, &u64, 8); /* seq */
	u64 = 1700000000000000000ull, memcpy(h + 32, &u64, 8);
	u64 = body_len, memcpy(h + 40, &u64, 8);
	memcpy(h + 48, &nkeys, 8);
	memcpy(h + 56, &noffsets, 8);
	memcpy(h + 64, &meta_len, 8);
	u32 = (uint32_t)strlen(FZ_NAME), memcpy(h + 76, &u32, 4);
	memcpy(h + 80, FZ_NAME, strlen(FZ_NAME));
	unsigned char *img = malloc(sizeof(h) + body_len + 1);
	if (!img)
		exit(1);
	memcpy(img, h, sizeof(h));
	memcpy(img + sizeof(h), body, body_len);
	img[sizeof(h) + body_len] = ctl;
	put_file(target, name, img, sizeof(h) + body_len + 1, NULL, 0);
	free(img);
}

/* fuzz_dump: the fuzz_slot images, and what only a dump meets. */
static void dump_seeds(void)
{
	/* three sections present but empty: valid, the encoder omits them */
	static const unsigned char empty3[48] = { 1, [16] = 2, [32] = 3 };
	/* KV of two entries with the same key "a": verify passes, decode
	 * refuses */
	static const unsigned char twice[16 + 32] = {
		3, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0, 'a', '1', 0, 0, 0, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0, 'a', '2', 0, 0, 0, 0, 0, 0,
	};
	/* the empty key, a key with NUL and 0xff bytes, an empty value */
	static const unsigned char odd[16 + 48] = {
		3, 0, 0, 0, 0, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 3, 0, 0, 0, 'e', 'm', 'p', 0, 0, 0, 0, 0,
		3, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, '\n', 0, 0, 0, 0, 0,
		1, 0, 0, 0, 0, 0, 0, 0, 'z', 0, 0, 0, 0, 0, 0, 0,
	};

	slot_seed("fuzz_dump", "blank", 0, 0, NULL, 0);
	slot_seed("fuzz_dump", "offsets-kv-meta", 5, 3, "{\"job\":\"fuzz\"}",
		  0);
	slot_seed("fuzz_dump", "kv-only-named", 9, 0, NULL, 2);
	slot_seed("fuzz_dump", "offsets-fix-hash", 0, 4, "m", 3);
	/* decode with the 3rd snapshot allocation failing */
	slot_seed("fuzz_dump", "oom-decode", 40, 6, "meta", 4 | 2 << 3);
	raw_slot_seed("fuzz_dump", "empty-sections", 5, empty3,
		      sizeof(empty3), 0, 0, 0, 1);
	raw_slot_seed("fuzz_dump", "repeated-key", 9, twice, sizeof(twice), 2,
		      0, 0, 1);
	raw_slot_seed("fuzz_dump", "odd-keys", 2, odd, sizeof(odd), 3, 0, 0,
		      3);
}
#endif

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-seeds CORPUS_DIR\n");
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);

	ring_seed("empty", 0, 0, 0, 0, 0);
	ring_seed("three-epochs", 0, 3, 0, 0, 0);
	ring_seed("wrap-pad", FZ_RING - 96, 6, 0, FZR_ROUND_TRIP, 3);
	ring_seed("far-lap", (1ull << 40) + FZ_RING - 200, 8, 0,
		  FZR_ATTACH_FIRST | FZR_ROUND_TRIP, 5);
	ring_seed("tight-limits", 4096, 4, 1, FZR_FIX_SEALS, 0);
	ring_seed("auto-commit", 512, 5, 3, FZR_AUTO_COMMIT | FZR_FIX_SEALS,
		  2);

#ifdef FZ_HAVE_SLOT
	slot_seed("fuzz_slot", "blank", 0, 0, NULL, 0);
	slot_seed("fuzz_slot", "offsets-kv-meta", 5, 3, "{\"job\":\"fuzz\"}",
		  0);
	slot_seed("fuzz_slot", "kv-only-named", 9, 0, NULL, 2);
	slot_seed("fuzz_slot", "offsets-fix-hash", 0, 4, "m", 3);
	dump_seeds();
#endif

	region_seed("fresh", 0, 0, CKPT_LAYOUT_VERSION);
	region_seed("epochs-at-wrap", 3 * (uint64_t)FZ_RING - 160, 5,
		    CKPT_LAYOUT_VERSION);
	return 0;
}
