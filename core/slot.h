/*
 * slot.h - the slot file format (private to the library; docs/FORMAT.md has
 * the same in prose for other implementations).
 *
 * A slot image = a 4096-byte header + a body.  The header carries magic,
 * format version, stream name, epoch, write sequence, time, sizes, and the
 * XXH3-128 of the whole snapshot (header bytes before the hash field, then
 * the body).  A slot file is preallocated and may be larger than the image
 * it holds; bytes past the image are ignored.
 */
#ifndef CKPT_CORE_SLOT_H
#define CKPT_CORE_SLOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot.h"

#define CKPT_SLOT_HDR_SIZE 4096u
#define CKPT_SLOT_FORMAT_VERSION 1u

typedef struct ckpt__slot_info {
	uint32_t format_version;
	int64_t epoch; /* 0: a blank slot (created, never written) */
	uint64_t seq; /* write sequence: newer writes have larger seq */
	uint64_t time_ns; /* CLOCK_REALTIME when encoded */
	uint64_t image_len; /* header + body bytes */
	uint64_t nkeys, noffsets, meta_len;
	char name[CKPT_NAME_MAX + 1];
	uint8_t hash[16]; /* XXH3-128, canonical (big-endian) form */
} ckpt__slot_info_t;

/* Exact size of the image that ckpt__slot_encode would produce. */
size_t ckpt__slot_image_size(const ckpt__snap_t *s);

/* Encode @s for stream @name into @buf (>= ckpt__slot_image_size bytes).
 * Returns the image length or -ENOBUFS / -EINVAL. */
ssize_t ckpt__slot_encode(const ckpt__snap_t *s, const char *name,
			  uint64_t seq, uint64_t time_ns, void *buf,
			  size_t cap);

/* Encode a blank slot header (epoch 0, no body) into @buf (>= 4096). */
ssize_t ckpt__slot_encode_blank(const char *name, void *buf, size_t cap);

/*
 * Verify an image read from a slot file (@len bytes, may exceed the image).
 * Checks magic, format version (older versions accepted, newer refused with
 * CKPT_EVERSION), stream name == @name (CKPT_ESTREAM; @name NULL skips),
 * every length and count against @len, and the XXH3-128.  Fills *info.
 * Returns 0, CKPT_ECORRUPT, CKPT_EVERSION or CKPT_ESTREAM; ckpt_last_error()
 * says which check failed.
 */
int ckpt__slot_verify(const void *buf, size_t len, const char *name,
		      ckpt__slot_info_t *info);

/* Verify, then load the image into @s (cleared first).  Same errors plus
 * -ENOMEM. */
int ckpt__slot_decode(const void *buf, size_t len, const char *name,
		      ckpt__snap_t *s, ckpt__slot_info_t *info);

/* Read slot file @path whole into a malloc'd buffer (O_NOFOLLOW|O_CLOEXEC),
 * refusing files over @max_len.  0 or -errno. */
int ckpt__slot_read_file(int dirfd, const char *path, size_t max_len,
			 void **buf, size_t *len);

#endif
