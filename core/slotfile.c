/*
 * slotfile.c - a stream's two slot files: create, verify, pick the newest.
 *
 * The files are untrusted input: each is opened O_NOFOLLOW (a symlink
 * planted under a slot's name is refused), must be a regular file of our
 * uid, and only the image its header claims is read - after checking that
 * claim against the file's real size - and then verified whole (slot.c)
 * before a byte of it is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "slotfile.h"

static const char *const slot_path[2] = { "slot-0", "slot-1" };
static const char *const slot_tmp[2] = { "slot-0.tmp", "slot-1.tmp" };

static uint64_t ld64le(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Make slot @i a blank, preallocated slot: written in full under a
 * temporary name, fsync'd, then renamed over the slot.  A crash leaves
 * either the old file or the whole new one, never half of one.  The
 * caller fsyncs the directory once for both slots.
 */
static int create_blank(int sdirfd, const char *name, int i)
{
	unsigned char *buf;
	int fd, ret;

	(void)unlinkat(sdirfd, slot_tmp[i], 0);
	fd = openat(sdirfd, slot_tmp[i],
		    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ckpt__fail(-errno, "%s: create: %s", slot_tmp[i],
				  strerror(errno));
	buf = calloc(1, CKPT_SLOT_INITIAL);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	/* 0600 whatever the umask was */
	if (fchmod(fd, 0600) < 0) {
		ret = ckpt__fail(-errno, "%s: fchmod: %s", slot_tmp[i],
				 strerror(errno));
		goto out;
	}
	ret = (int)ckpt__slot_encode_blank(name, buf, CKPT_SLOT_INITIAL);
	if (ret < 0)
		goto out;
	/* written zeros, not a hole: later overwrites then need no new
	 * blocks, so a full disk cannot fail them half way */
	ret = write_all(fd, buf, CKPT_SLOT_INITIAL, 0);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (ret < 0) {
		ret = ckpt__fail(ret, "%s: write: %s", slot_tmp[i],
				 strerror(-ret));
		goto out;
	}
	if (renameat(sdirfd, slot_tmp[i], sdirfd, slot_path[i]) < 0)
		ret = ckpt__fail(-errno, "%s: rename: %s", slot_path[i],
				 strerror(errno));
out:
	free(buf);
	close(fd);
	if (ret < 0)
		(void)unlinkat(sdirfd, slot_tmp[i], 0);
	return ret;
}

static void set_invalid(ckpt__slots_t *sl, int i, int err)
{
	sl->valid[i] = 0;
	sl->err[i] = err;
	snprintf(sl->why[i], sizeof(sl->why[i]), "%s", ckpt_last_error());
}

/*
 * Open slot @i (refusing a symlink, a non-file, another uid's file) into
 * sl->fd[i] and sl->size[i].  0, 1 when the file is absent, or an error
 * that makes the slot invalid.
 */
static int open_slot(int sdirfd, ckpt__slots_t *sl, int i)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO planted under the slot's name must not hang us */
	fd = openat(sdirfd, slot_path[i],
		    O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		return ckpt__fail(errno == ELOOP ? CKPT_EFOREIGN : -errno,
				  "%s: open: %s", slot_path[i],
				  errno == ELOOP ? "is a symlink"
						 : strerror(errno));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ckpt__fail(CKPT_EFOREIGN, "%s is not a regular file",
				  slot_path[i]);
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		return ckpt__fail(CKPT_EFOREIGN, "%s is owned by uid %u, not %u",
				  slot_path[i], (unsigned)st.st_uid,
				  (unsigned)geteuid());
	}
	(void)fcntl(fd, F_SETFL, 0); /* back to blocking I/O */
	sl->fd[i] = fd;
	sl->size[i] = (uint64_t)st.st_size;
	return 0;
}

/*
 * Read from open slot @i the image its header claims into *img (the
 * caller frees).  0, or an error that makes the slot invalid.
 */
static int read_image(const ckpt__slots_t *sl, int i, void **img,
		      size_t *len)
{
	unsigned char hdr[CKPT_SLOT_HDR_SIZE];
	uint64_t claimed, want;
	unsigned char *b;
	int fd = sl->fd[i];
	ssize_t n;

	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n < 0)
		return ckpt__fail(-errno, "%s: read: %s", slot_path[i],
				  strerror(errno));
	if ((size_t)n < sizeof(hdr))
		return ckpt__fail(CKPT_ECORRUPT, "%s is %llu bytes, shorter "
				  "than the %u-byte header", slot_path[i],
				  (unsigned long long)sl->size[i],
				  CKPT_SLOT_HDR_SIZE);
	/* body_len (offset 40) is not trusted yet: it only bounds the read,
	 * and a claim past the file's end reads what is there, which then
	 * fails verification with a precise message */
	claimed = ld64le(hdr + 40);
	want = sl->size[i];
	if (claimed <= want - CKPT_SLOT_HDR_SIZE)
		want = CKPT_SLOT_HDR_SIZE + claimed;
	if (want > SIZE_MAX / 2)
		return ckpt__fail(CKPT_ECORRUPT, "%s: image of %llu bytes is "
				  "too large", slot_path[i],
				  (unsigned long long)want);
	b = malloc((size_t)want);
	if (!b)
		return ckpt__fail(-ENOMEM, "%s: no memory for %llu bytes",
				  slot_path[i], (unsigned long long)want);
	memcpy(b, hdr, sizeof(hdr));
	for (size_t got = sizeof(hdr); got < want;) {
		size_t chunk = (size_t)want - got;
		if (chunk > (1u << 30))
			chunk = 1u << 30;
		n = pread(fd, b + got, chunk, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(b);
			return ckpt__fail(-e, "%s: read: %s", slot_path[i],
					  strerror(e));
		}
		if (n == 0) {
			want = got; /* shrank under us: verify judges */
			break;
		}
		got += (size_t)n;
	}
	*img = b;
	*len = (size_t)want;
	return 0;
}

/* What open slot @i's header claims, unverified: only to order the work
 * (-1 when it cannot even be read). */
static void claim_of(const ckpt__slots_t *sl, int i, int64_t *epoch,
		     uint64_t *seq)
{
	unsigned char h[48];

	*epoch = -1;
	*seq = 0;
	if (sl->fd[i] >= 0 &&
	    pread(sl->fd[i], h, sizeof(h), 0) == (ssize_t)sizeof(h)) {
		*epoch = (int64_t)ld64le(h + 16);
		*seq = ld64le(h + 24);
	}
}

int ckpt__slots_open(int sdirfd, const char *name, int reset,
		     ckpt__slots_t *sl, ckpt__snap_t *snap)
{
	return ckpt__slots_open_bounded(sdirfd, name, reset, INT64_MAX, sl,
					snap);
}

int ckpt__slots_open_bounded(int sdirfd, const char *name, int reset,
			     int64_t trust_max, ckpt__slots_t *sl,
			     ckpt__snap_t *snap)
{
	ckpt__slot_info_t info;
	int absent[2] = { 0, 0 }, made = 0, ret = 0, order[2] = { 0, 1 };
	int64_t ce[2];
	uint64_t cs[2];

	memset(sl, 0, sizeof(*sl));
	sl->fd[0] = sl->fd[1] = -1;
	sl->newest = -1;
	ckpt__snap_clear(snap);

	for (int i = 0; i < 2; i++) {
		struct stat st;
		if (fstatat(sdirfd, slot_path[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return ckpt__fail(-errno, "%s: stat: %s",
						  slot_path[i], strerror(errno));
			absent[i] = 1;
		}
	}
	/* A new stream: both slots made blank.  After a crash between the
	 * two renames of a previous creation (one blank slot present), the
	 * missing one is made below, once the other is verified. */
	if (reset || (absent[0] && absent[1])) {
		for (int i = 0; i < 2; i++) {
			ret = create_blank(sdirfd, name, i);
			if (ret < 0)
				return ret;
			absent[i] = 0;
		}
		made = 1;
	}

	/*
	 * Only the slot whose header claims the newer (epoch, seq) is read
	 * and verified - in one pass with loading it (a 1 GiB snapshot is
	 * hashed once) - and the other only if that fails.  The claims are
	 * untrusted, but they only order the work: a damaged header that
	 * claims more than it has fails verification like any damage.
	 */
	for (int i = 0; i < 2; i++) {
		ret = absent[i] ? 1 : open_slot(sdirfd, sl, i);
		if (ret == 1) {
			absent[i] = 1;
			ckpt__fail(-ENOENT, "%s is missing", slot_path[i]);
			set_invalid(sl, i, -ENOENT);
		} else if (ret < 0) {
			set_invalid(sl, i, ret);
		}
		claim_of(sl, i, &ce[i], &cs[i]);
	}
	if (ce[1] > ce[0] || (ce[1] == ce[0] && cs[1] > cs[0])) {
		order[0] = 1;
		order[1] = 0;
	}
	for (int k = 0; k < 2; k++) {
		int i = order[k];
		void *img = NULL;
		size_t len = 0;

		if (sl->fd[i] < 0)
			continue; /* missing or refused: invalid already */
		ret = 0;
		if (sl->newest < 0 && ce[i] > trust_max)
			ret = ckpt__fail(CKPT_ECORRUPT, "%s claims epoch %lld, "
					 "written by a flusher that then failed "
					 "on I/O (durable was %lld): not "
					 "trusted", slot_path[i],
					 (long long)ce[i], (long long)trust_max);
		else if (sl->newest < 0 &&
			 (ret = read_image(sl, i, &img, &len)) == 0)
			ret = ckpt__slot_decode(img, len, name, snap, &info);
		else if (sl->newest >= 0) /* the older one: its header is enough */
			ret = 2;
		free(img);
		if (ret == -ENOMEM)
			goto out;
		if (ret == CKPT_EVERSION) {
			/* written by a newer build: falling back to the other
			 * slot would silently roll back; refuse (R8) */
			ret = ckpt__fail(CKPT_EVERSION, "%s: %s; open it with "
					 "that newer build", slot_path[i],
					 ckpt_last_error());
			goto out;
		}
		if (ret == 2) {
			sl->epoch[i] = ce[i];
			sl->seq[i] = cs[i];
			snprintf(sl->why[i], sizeof(sl->why[i]),
				 "not verified (the other slot is newer)");
			continue;
		}
		if (ret < 0) {
			set_invalid(sl, i, ret);
			continue;
		}
		sl->valid[i] = 1;
		sl->epoch[i] = info.epoch;
		sl->seq[i] = info.seq;
		sl->newest = i;
	}
	ret = 0;
	if (sl->newest < 0) {
		ret = ckpt__fail(CKPT_ECORRUPT,
				 "no valid slot: slot-0: %s; slot-1: %s",
				 sl->why[0], sl->why[1]);
		goto out;
	}
	if (sl->newest != order[0])
		ckpt__log(CKPT_LOG_WARN, "stream %s: slot-%d is not valid (%s);"
			  " using slot-%d (epoch %lld)", name, order[0],
			  sl->why[order[0]], sl->newest,
			  (long long)sl->epoch[sl->newest]);
	/* seq only breaks ties of equal epochs: above both claims */
	sl->next_seq = (cs[0] > cs[1] ? cs[0] : cs[1]) + 1;
	if (sl->next_seq <= sl->seq[sl->newest])
		sl->next_seq = sl->seq[sl->newest] + 1;
	/* the other slot is missing: make it blank (never the newest) */
	for (int i = 0; i < 2; i++) {
		if (!absent[i])
			continue;
		ret = create_blank(sdirfd, name, i);
		if (ret == 0)
			ret = open_slot(sdirfd, sl, i);
		if (ret != 0) {
			ret = ret > 0 ? -ENOENT : ret;
			goto out;
		}
		made = 1;
	}
	/* a slot we cannot write (a planted symlink, a file of another uid)
	 * would fail the first flush: refuse now, saying why */
	if (sl->fd[1 - sl->newest] < 0) {
		ret = ckpt__fail(sl->err[1 - sl->newest] ? sl->err[1 - sl->newest]
							 : -EBADF,
				 "%s", sl->why[1 - sl->newest]);
		goto out;
	}
	if (made && fsync(sdirfd) < 0) {
		ret = ckpt__fail(-errno, "fsync of the stream directory: %s",
				 strerror(errno));
		goto out;
	}
out:
	if (ret < 0) {
		ckpt__snap_clear(snap);
		ckpt__slots_close(sl);
	}
	return ret;
}

int ckpt__slots_reset(int sdirfd, const char *name)
{
	int ret;

	for (int i = 0; i < 2; i++) {
		ret = create_blank(sdirfd, name, i);
		if (ret < 0)
			return ret;
	}
	if (fsync(sdirfd) < 0)
		return ckpt__fail(-errno, "fsync of the stream directory: %s",
				  strerror(errno));
	return 0;
}

void ckpt__slots_close(ckpt__slots_t *sl)
{
	for (int i = 0; i < 2; i++) {
		if (sl->fd[i] >= 0)
			close(sl->fd[i]);
		sl->fd[i] = -1;
	}
}
