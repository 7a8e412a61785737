/*
 * regionmap.h - map a stream's shared-memory region from a test, to read
 * its counters or to damage it on purpose (white-box: layout.h).
 */
#ifndef CKPT_TEST_REGIONMAP_H
#define CKPT_TEST_REGIONMAP_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"
#include "region.h"

/* "/dev/shm/shmckpt.<uid>.<hash>.<name>" of @dir/@name into @buf. */
static inline void rm_path(const char *dir, const char *name, char *buf,
			   size_t cap)
{
	char shm[320];
	if (ckpt__region_name(dir, name, shm, sizeof(shm)) < 0) {
		fprintf(stderr, "region name of %s/%s failed\n", dir, name);
		abort();
	}
	snprintf(buf, cap, "/dev/shm%s", shm);
}

/* Map the whole region (read-only unless @rw).  Aborts on failure: a test
 * calls it only where the region must exist. */
static inline struct ckpt_region *rm_map(const char *dir, const char *name,
					 int rw, size_t *len)
{
	char shm[320];
	struct stat st;
	void *m;
	int fd;

	if (ckpt__region_name(dir, name, shm, sizeof(shm)) < 0)
		abort();
	fd = shm_open(shm, rw ? O_RDWR : O_RDONLY, 0);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(shm);
		abort();
	}
	m = mmap(NULL, (size_t)st.st_size,
		 rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		perror("mmap region");
		abort();
	}
	*len = (size_t)st.st_size;
	return m;
}

static inline void rm_unmap(struct ckpt_region *h, size_t len)
{
	munmap(h, len);
}

/* The ring bytes of a mapped region. */
static inline uint8_t *rm_ring(struct ckpt_region *h)
{
	return (uint8_t *)h + CKPT_REGION_HDR_SIZE;
}

/* Record header at ring position @pos. */
static inline struct ckpt_rec_hdr *rm_rec(struct ckpt_region *h, uint64_t pos)
{
	return (struct ckpt_rec_hdr *)(void *)(rm_ring(h) +
					       (pos & (h->id.ring_capacity - 1)));
}

#endif
