/*
 * region.c - create, attach and validate a stream's shared-memory region.
 *
 * Shared memory is untrusted input: everything read from the identity page
 * is checked before it is used to compute an address.  A region is created
 * 0600 by the stream's writer (who holds the writer lock, so creators never
 * race); the layout version is stored last, with release, so an attacher
 * that sees it also sees the rest of the page (STYLE: "version written
 * last").
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "atomic.h"
#include "internal.h"
#include "region.h"

int ckpt__absdir(const char *dir, char *buf, size_t cap)
{
	char tmp[PATH_MAX];

	if (!dir || !*dir)
		return ckpt__fail(-EINVAL, "checkpoint directory is empty");
	if (!realpath(dir, tmp))
		return ckpt__fail(-errno, "checkpoint directory '%s': %s", dir,
				  ckpt_strerror(-errno));
	if (strlen(tmp) >= cap || strlen(tmp) >= CKPT_DIR_MAX)
		return ckpt__fail(-ENAMETOOLONG,
				  "checkpoint directory path longer than %d",
				  CKPT_DIR_MAX - 1);
	strcpy(buf, tmp);
	return 0;
}

int ckpt__region_prefix(const char *dir, char *buf, size_t cap)
{
	char abs[CKPT_DIR_MAX];
	int ret = ckpt__absdir(dir, abs, sizeof(abs));
	int n;

	if (ret < 0)
		return ret;
	n = snprintf(buf, cap, "/shmckpt.%u.%016llx.", (unsigned)geteuid(),
		     (unsigned long long)XXH3_64bits(abs, strlen(abs)));
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int ckpt__region_name(const char *dir, const char *name, char *buf,
		      size_t cap)
{
	int ret = ckpt__region_prefix(dir, buf, cap);
	size_t n;

	if (ret < 0)
		return ret;
	n = strlen(buf);
	if (n + strlen(name) + 1 > cap)
		return -ENAMETOOLONG;
	strcpy(buf + n, name);
	return 0;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

int ckpt__region_validate(const void *map, size_t len, const char *name,
			  ckpt__region_t *rg)
{
	const struct ckpt_region *h = map;
	struct ckpt_region_id id;
	uint32_t ver;
	uint64_t cap, commit, release;
	char nm[CKPT_NAME_MAX + 1];

	if (len < CKPT_REGION_HDR_SIZE)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region is %zu bytes, smaller than its %u-byte "
				  "header (truncated?)",
				  len, CKPT_REGION_HDR_SIZE);
	/* The version first: its creator stores it last, with release, so
	 * a region seen with version 0 is still being made (its magic may
	 * not be there yet); pairs with the store_release in create(). */
	ver = ckpt__load_acquire(&h->id.layout_version);
	if (ver == 0)
		return ckpt__fail(-EAGAIN, "region is still being created");
	/* Everything else is checked on a private copy: another process can
	 * rewrite the page between a check and a use, so a field is never
	 * read from the mapping twice (a length checked once, then used
	 * from a second read, would index anywhere). */
	memcpy(&id, &h->id, sizeof(id));
	if (id.magic != CKPT_REGION_MAGIC)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region does not start with the shmckpt magic");
	if (ver != CKPT_LAYOUT_VERSION)
		return ckpt__fail(CKPT_EVERSION,
				  "region has layout version %u; this build "
				  "reads version %u only (drain it with the build "
				  "that made it, or remove it to discard it)",
				  ver, CKPT_LAYOUT_VERSION);
	cap = id.ring_capacity;
	if (id.header_size != CKPT_REGION_HDR_SIZE ||
	    id.ring_offset != CKPT_REGION_HDR_SIZE || !is_pow2(cap) ||
	    cap < CKPT_RING_MIN || cap > CKPT_RING_MAX)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region geometry is invalid (header %u, ring at "
				  "%llu, capacity %llu)",
				  id.header_size,
				  (unsigned long long)id.ring_offset,
				  (unsigned long long)cap);
	if (id.region_size != CKPT_REGION_HDR_SIZE + cap ||
	    id.region_size != len)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region is %zu bytes but its header says %llu "
				  "(truncated?)",
				  len, (unsigned long long)id.region_size);
	if (id.max_key == 0 || id.max_key > 65536 ||
	    id.max_value > (16u << 20) || id.max_meta > (16u << 20))
		return ckpt__fail(CKPT_ECORRUPT, "region limits are invalid");
	if (id.name_len == 0 || id.name_len > CKPT_NAME_MAX ||
	    id.name[id.name_len] != '\0' ||
	    memchr(id.name, 0, id.name_len) ||
	    id.dir_len >= CKPT_DIR_MAX || id.dir[id.dir_len] != '\0')
		return ckpt__fail(CKPT_ECORRUPT, "region name or dir is invalid");
	memcpy(nm, id.name, id.name_len);
	nm[id.name_len] = '\0';
	if (ckpt__check_name(nm) < 0)
		return ckpt__fail(CKPT_ECORRUPT, "region name is invalid");
	if (name && strcmp(nm, name) != 0)
		return ckpt__fail(CKPT_ESTREAM,
				  "region belongs to stream '%s', not '%s'", nm,
				  name);
	/* A live region moves under us: release first, then commit, makes
	 * release <= commit hold by construction (both only grow, and
	 * release never passes commit); the distance may still look too
	 * large if both moved a lot between the loads, so look again. */
	for (int tries = 0;; tries++) {
		release = ckpt__load_acquire(&h->flush.release_pos);
		commit = ckpt__load_acquire(&h->prod.commit_pos);
		if (tries == 3 || (release <= commit && commit - release <= cap))
			break;
	}
	if (release > commit || commit - release > cap ||
	    commit > CKPT_POS_MAX ||
	    (commit | release) % CKPT_REC_ALIGN)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region ring positions are inconsistent "
				  "(released %llu, committed %llu, capacity %llu)",
				  (unsigned long long)release,
				  (unsigned long long)commit,
				  (unsigned long long)cap);
	if (rg) {
		rg->hdr = (struct ckpt_region *)(uintptr_t)map;
		rg->ring = (uint8_t *)(uintptr_t)map + CKPT_REGION_HDR_SIZE;
		rg->cap = cap;
		rg->mask = cap - 1;
		rg->map_len = len;
		rg->max_key = id.max_key;
		rg->max_value = id.max_value;
		rg->max_meta = id.max_meta;
		_Static_assert(sizeof(rg->name) > CKPT_NAME_MAX, "name fits");
		memcpy(rg->name, nm, id.name_len + 1);
	}
	return 0;
}

static int map_fd(int fd, const char *absdir, const char *name,
		  ckpt__region_t *rg)
{
	struct stat st;
	void *map;
	int ret;

	(void)absdir;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != geteuid())
		return ckpt__fail(CKPT_EFOREIGN,
				  "region of stream '%s' belongs to uid %u, not "
				  "to us (uid %u)",
				  name, (unsigned)st.st_uid, (unsigned)geteuid());
	/* Empty: between its creator's shm_open and ftruncate, when its
	 * fchmod to 0600 may not have happened yet either - so before the
	 * mode is judged. */
	if (st.st_size == 0)
		return ckpt__fail(-EAGAIN, "region of stream '%s' is still "
				  "being created", name);
	if ((st.st_mode & 07777) != 0600)
		return ckpt__fail(CKPT_EFOREIGN,
				  "region of stream '%s' has mode %04o, not 0600",
				  name, (unsigned)(st.st_mode & 07777));
	if (st.st_size < (off_t)CKPT_REGION_HDR_SIZE ||
	    (uint64_t)st.st_size > CKPT_REGION_HDR_SIZE + CKPT_RING_MAX)
		return ckpt__fail(CKPT_ECORRUPT,
				  "region of stream '%s' is %lld bytes: not a "
				  "region (truncated?)",
				  name, (long long)st.st_size);
	/* MAP_POPULATE: fault every page in now, at open, not one at a
	 * time inside commits (a fault is microseconds: it was most of the
	 * hot path's p99 during a ring's first lap) */
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED)
		return ckpt__fail(-errno, "mmap of region '%s': %s", name,
				  ckpt_strerror(-errno));
	ret = ckpt__region_validate(map, (size_t)st.st_size, name, rg);
	if (ret < 0)
		munmap(map, (size_t)st.st_size);
	return ret;
}

int ckpt__region_attach(const char *absdir, const char *name,
			ckpt__region_t *rg)
{
	char shm[320];
	int fd, ret;

	ret = ckpt__region_name(absdir, name, shm, sizeof(shm));
	if (ret < 0)
		return ret;
	/* glibc's shm_open adds O_NOFOLLOW and O_CLOEXEC itself */
	fd = shm_open(shm, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
	if (fd < 0)
		return ckpt__fail(-errno, "region of stream '%s': %s", name,
				  ckpt_strerror(-errno));
	ret = map_fd(fd, absdir, name, rg);
	close(fd);
	return ret;
}

static int create(const char *shm, const char *absdir, const char *name,
		  const struct ckpt__region_geom *g, ckpt__region_t *rg)
{
	size_t len = CKPT_REGION_HDR_SIZE + g->ring_size;
	struct ckpt_region *h;
	int fd, ret;

	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      0600);
	if (fd < 0)
		return -errno;
	/* 0600 whatever the umask */
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)len) < 0) {
		ret = ckpt__fail(-errno, "creating region '%s': %s", shm,
				 ckpt_strerror(-errno));
		goto fail;
	}
	h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		 fd, 0);
	if (h == MAP_FAILED) {
		ret = ckpt__fail(-errno, "mmap of new region '%s': %s", shm,
				 ckpt_strerror(-errno));
		goto fail;
	}
	/* ftruncate gave zeros; fill the identity page, version last */
	h->id.magic = CKPT_REGION_MAGIC;
	h->id.header_size = CKPT_REGION_HDR_SIZE;
	h->id.region_size = len;
	h->id.ring_offset = CKPT_REGION_HDR_SIZE;
	h->id.ring_capacity = g->ring_size;
	h->id.creator_uid = (uint32_t)geteuid();
	h->id.max_key = g->max_key;
	h->id.max_value = g->max_value;
	h->id.max_meta = g->max_meta;
	h->id.created_ns = ckpt__real_ns();
	h->id.name_len = (uint32_t)strlen(name);
	memcpy(h->id.name, name, h->id.name_len);
	h->id.dir_len = (uint32_t)strlen(absdir);
	memcpy(h->id.dir, absdir, h->id.dir_len);
	h->id.flusher_mode = g->flusher_mode;
	/* the creating open's mode, before anyone can attach; each later
	 * open stores its own */
	h->prod.flusher_mode = g->flusher_mode;
	/* pairs with the load_acquire in ckpt__region_validate */
	ckpt__store_release(&h->id.layout_version, CKPT_LAYOUT_VERSION);
	close(fd);
	return ckpt__region_validate(h, len, name, rg);
fail:
	close(fd);
	shm_unlink(shm);
	return ret;
}

static int region_size0(const char *shm)
{
	struct stat st;
	int fd = shm_open(shm, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	int zero;

	if (fd < 0)
		return 0;
	zero = fstat(fd, &st) == 0 && st.st_size == 0;
	close(fd);
	return zero;
}

int ckpt__region_open(const char *absdir, const char *name,
		      const struct ckpt__region_geom *geom, int create_ok,
		      ckpt__region_t *rg, int *created)
{
	char shm[320];
	int ret;

	*created = 0;
	ret = ckpt__region_name(absdir, name, shm, sizeof(shm));
	if (ret < 0)
		return ret;
	for (int tries = 0; tries < 100; tries++) {
		ret = ckpt__region_attach(absdir, name, rg);
		if (ret == -EAGAIN && create_ok)
			/* we hold the writer lock, so nobody is creating it:
			 * empty, or without its version, it is damaged (or its
			 * creator died half way, before any commit) */
			return ckpt__fail(CKPT_ECORRUPT, "region of stream "
					  "'%s' %s: damaged, or left half-made; "
					  "remove it or open with CKPT_O_RESET",
					  name, region_size0(shm)
						  ? "is 0 bytes (truncated?)"
						  : "has layout version 0");
		if (ret != -ENOENT || !create_ok)
			return ret;
		ret = create(shm, absdir, name, geom, rg);
		if (ret == 0) {
			*created = 1;
			return 0;
		}
		if (ret != -EEXIST)
			return ret;
	}
	return ckpt__fail(-EAGAIN, "region '%s' keeps appearing and vanishing",
			  shm);
}

void ckpt__region_unmap(ckpt__region_t *rg)
{
	if (rg->hdr)
		munmap(rg->hdr, rg->map_len);
	rg->hdr = NULL;
	rg->ring = NULL;
}

int ckpt__region_unlink(const char *absdir, const char *name)
{
	char shm[320];
	int ret = ckpt__region_name(absdir, name, shm, sizeof(shm));
	if (ret < 0)
		return ret;
	return shm_unlink(shm) < 0 ? -errno : 0;
}
