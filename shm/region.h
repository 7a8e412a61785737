/*
 * region.h - a stream's shared-memory region: naming, create, attach,
 * validate (private to the library).
 *
 * Region name: "/shmckpt.<uid>.<dirhash>.<stream>", where <dirhash> is 16
 * hex digits of XXH3-64 over the absolute checkpoint directory, so that the
 * same stream name under two directories gets two regions and a sidecar
 * serving one directory finds its regions by prefix.
 */
#ifndef CKPT_SHM_REGION_H
#define CKPT_SHM_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

typedef struct ckpt__region {
	struct ckpt_region *hdr; /* the mapping; NULL when not mapped */
	uint8_t *ring; /* hdr + ring_offset */
	uint64_t cap; /* ring capacity (validated) */
	uint64_t mask; /* cap - 1 */
	size_t map_len;
	uint32_t max_key, max_value, max_meta; /* validated copies */
	/* validated copy of the stream name, NUL-terminated */
	char name[sizeof(((struct ckpt_region_id *)0)->name)];
} ckpt__region_t;

struct ckpt__region_geom {
	uint64_t ring_size;
	uint32_t max_key, max_value, max_meta;
	uint32_t flusher_mode;
};

/* "/shmckpt.<uid>.<dirhash>." for @dir (made absolute). 0 or -errno. */
int ckpt__region_prefix(const char *dir, char *buf, size_t cap);
/* Full region name of stream @name under @dir.  0 or -errno. */
int ckpt__region_name(const char *dir, const char *name, char *buf,
		      size_t cap);

/*
 * Attach the region of @dir/@name, creating it with @geom when absent and
 * @create is set.  The caller must hold the stream's writer lock when it
 * creates (so no two creators race).  *created says which happened.
 * Validation as ckpt__region_attach.  0 or an error.
 */
int ckpt__region_open(const char *absdir, const char *name,
		      const struct ckpt__region_geom *geom, int create,
		      ckpt__region_t *rg, int *created);

/*
 * Map an existing region and validate everything in its identity page:
 * owner uid and mode 0600 (CKPT_EFOREIGN), magic (CKPT_ECORRUPT), layout
 * version (CKPT_EVERSION; 0 means "still being made": -EAGAIN), sizes and
 * offsets against the file's real size (CKPT_ECORRUPT), stream name
 * (CKPT_ESTREAM), ring positions (CKPT_ECORRUPT).  -ENOENT if absent.
 */
int ckpt__region_attach(const char *absdir, const char *name,
			ckpt__region_t *rg);

/* Validate an already mapped region of @len bytes (also what the fuzz
 * target drives).  @name may be NULL to skip the name check. */
int ckpt__region_validate(const void *map, size_t len, const char *name,
			  ckpt__region_t *rg);

void ckpt__region_unmap(ckpt__region_t *rg);
int ckpt__region_unlink(const char *absdir, const char *name);

/* Absolute, normalised form of @dir (realpath).  0 or -errno. */
int ckpt__absdir(const char *dir, char *buf, size_t cap);

#endif
