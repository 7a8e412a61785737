/*
 * fuzz_region.c - region attach/validate over arbitrary bytes.
 *
 * The input is a whole region image (header + ring), copied into a buffer
 * of exactly its size so that ASan sees any read past the "mapping".
 * ckpt__region_validate must refuse anything it cannot vouch for; what it
 * accepts must be safe to read: a reader pulls every epoch (invariants in
 * fz_read_all), and a producer's attach-time scan runs over the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ckpt__region_t rg;
	ckpt__rd_t rd;
	unsigned nepochs;
	void *map;
	int ret;

	/* 8-aligned like a mapping (the header's words are read atomically);
	 * malloc's alignment is enough and keeps ASan's redzone at the end */
	map = malloc(size ? size : 1);
	if (!map)
		return 0;
	memcpy(map, data, size);

	ret = ckpt__region_validate(map, size, NULL, &rg);
	FZ_CHECK(ret == 0 || ret == CKPT_ECORRUPT || ret == CKPT_EVERSION ||
			 ret == -EAGAIN,
		 "validate returned %d", ret);
	if (ret == 0 && !fz_known_bug(rg.hdr->prod.commit_pos, rg.cap)) {
		const struct ckpt_region *h = map;
		/* what validate vouched for */
		FZ_CHECK(rg.cap >= CKPT_RING_MIN && rg.cap <= CKPT_RING_MAX &&
				 !(rg.cap & (rg.cap - 1)) &&
				 CKPT_REGION_HDR_SIZE + rg.cap == size &&
				 rg.ring == (uint8_t *)map + CKPT_REGION_HDR_SIZE,
			 "geometry");
		FZ_CHECK(memchr(h->id.name, 0, sizeof(h->id.name)) != NULL,
			 "accepted name is not terminated");
		/* with the right name it passes, with another it is ESTREAM */
		FZ_CHECK(ckpt__region_validate(map, size, h->id.name, NULL) == 0,
			 "own name refused");
		/* longer than any stream name: never the region's own */
		char other[CKPT_NAME_MAX + 2];
		memset(other, 'x', CKPT_NAME_MAX + 1);
		other[CKPT_NAME_MAX + 1] = '\0';
		FZ_CHECK(ckpt__region_validate(map, size, other, NULL) ==
				 CKPT_ESTREAM,
			 "another stream's name accepted");

		ckpt__rd_init(&rd, &rg);
		ret = fz_read_all(&rd, &rg, &nepochs);
#ifdef FZ_VERBOSE
		fprintf(stderr, "region: %u epochs, ret %d %s\n", nepochs,
			ret, ret < 0 ? ckpt_last_error() : "");
#endif
		ckpt__rd_free(&rd);

		ckpt__producer_t pr;
		ret = ckpt__prod_init(&pr, &rg, CKPT_FULL_EAGAIN, 0, 0);
		FZ_CHECK(ret == 0 || ret == CKPT_ECORRUPT, "prod_init: %d",
			 ret);
	}
	free(map);
	return 0;
}
