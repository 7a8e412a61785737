/*
 * make-golden.c - writes the golden slot files of format version 1.
 *
 * Run once, when a format version is introduced; never as part of the
 * tests (tests/test_slot.c reads the committed files and asserts their
 * content, which is what keeps old slot files readable, R8).  See README.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"
#include "snapshot.h"

static void must(int ret, const char *what)
{
	if (ret < 0) {
		fprintf(stderr, "make-golden: %s: %s (%s)\n", what,
			ckpt_strerror(ret), ckpt_last_error());
		exit(1);
	}
}

static void put(ckpt__snap_t *s, const void *k, size_t kl, const void *v,
		size_t vl)
{
	ckpt_delta_t d = { .type = CKPT_D_PUT, .key = k, .klen = kl,
			   .val = v, .vlen = vl };
	must(ckpt__snap_apply(s, &d), "put");
}

static void off(ckpt__snap_t *s, const char *t, int32_t p, int64_t n)
{
	ckpt_delta_t d = { .type = CKPT_D_OFFSET, .topic = t,
			   .topic_len = strlen(t), .partition = p,
			   .offset = n };
	must(ckpt__snap_apply(s, &d), "offset");
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "make-golden: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static const unsigned char bin_key[] = { 0xff, 0x00, 0xfe, 0x80 };
	static const unsigned char bin_val[] = { 0x00, 0x01, 0x02 };
	static const char meta[] = "{\"job\":\"golden\",\"version\":1}";
	unsigned char longv[300];
	char path[4096];
	const char *dir = argc > 1 ? argv[1] : "tests/golden";
	ckpt__snap_t *s = ckpt__snap_new();
	ckpt_delta_t md = { .type = CKPT_D_META, .val = meta,
			    .vlen = sizeof(meta) - 1 };

	for (size_t i = 0; i < sizeof(longv); i++)
		longv[i] = (unsigned char)(i * 7);
	off(s, "orders", 0, 1000);
	off(s, "orders", 3, 12345678901LL);
	off(s, "payments.eu", 1, 0);
	put(s, "", 0, "empty key", 9);
	put(s, "alpha", 5, "1", 1);
	put(s, bin_key, sizeof(bin_key), bin_val, sizeof(bin_val));
	put(s, "k-empty-value", 13, "", 0);
	put(s, "long", 4, longv, sizeof(longv));
	must(ckpt__snap_apply(s, &md), "meta");
	ckpt__snap_set_epoch(s, 42);

	size_t cap = ckpt__slot_image_size(s);
	void *buf = malloc(cap);
	ssize_t n = ckpt__slot_encode(s, "golden-stream", 7,
				      1700000000123456789ULL, buf, cap);
	must((int)n, "encode");
	snprintf(path, sizeof(path), "%s/slot-v1.bin", dir);
	write_file(path, buf, (size_t)n);

	n = ckpt__slot_encode_blank("golden-stream", buf, cap);
	must((int)n, "encode blank");
	snprintf(path, sizeof(path), "%s/slot-v1-blank.bin", dir);
	write_file(path, buf, (size_t)n);

	free(buf);
	ckpt__snap_free(s);
	return 0;
}
