/*
 * fallback.c - the portable backend: pwrite, then fdatasync, both done at
 * submit; reap only hands back what already finished.
 *
 * It is what runs wherever io_uring is refused (container seccomp profiles,
 * old kernels), so it keeps the same contract: a short write is a failure,
 * and after a failed fdatasync nothing is retried.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "io_private.h"

struct fb {
	struct ckpt__io io;
	struct ckpt__io_op *head, *tail; /* finished, not yet reaped (FIFO) */
};

static int fb_write(struct ckpt__io_op *op)
{
	const char *p = op->buf;
	size_t left = op->len;
	uint64_t off = op->off;

	while (left > 0) {
		size_t n = left < ckpt__io_max_write ? left : ckpt__io_max_write;
		ssize_t w = pwrite(op->fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue; /* nothing was written: same call again */
			return -errno;
		}
		/*
		 * Per contract a short count is a failure, not something to
		 * continue: on a regular file it means a limit was hit
		 * (RLIMIT_FSIZE, a quota, ENOSPC after a partial block), and
		 * the next write would only report the same thing later.
		 */
		if ((size_t)w < n) {
			op->short_write = 1;
			return -EIO;
		}
		p += n;
		off += n;
		left -= n;
	}
	return 0;
}

static int fb_submit(ckpt__io_t *io, struct ckpt__io_op *op)
{
	struct fb *fb = (struct fb *)io;
	int ret;

	ret = fb_write(op);
	if (ret < 0) {
		op->failed_phase = CKPT_IO_WRITE;
	} else {
		/* EINTR (NFS waits can be interrupted) reported no outcome, so
		 * asking again is not retry-and-trust; EIO is final. */
		do
			ret = CKPT__ERR(fdatasync(op->fd));
		while (ret == -EINTR);
		if (ret < 0)
			op->failed_phase = CKPT_IO_SYNC;
	}
	op->res = ret;
	op->done_ns = ckpt__mono_ns();
	/* The failure is the op's result, delivered by reap: submit itself
	 * succeeded in starting (and finishing) it. */
	op->ckpt__next = NULL;
	if (fb->tail)
		fb->tail->ckpt__next = op;
	else
		fb->head = op;
	fb->tail = op;
	return 0;
}

static int fb_reap(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		   int64_t wait_ns)
{
	struct fb *fb = (struct fb *)io;
	int n = 0;

	(void)wait_ns; /* every op is finished by the time submit returns */
	while (n < max && fb->head) {
		struct ckpt__io_op *op = fb->head;

		fb->head = op->ckpt__next;
		if (!fb->head)
			fb->tail = NULL;
		op->ckpt__next = NULL;
		done[n++] = op;
	}
	return n;
}

static int fb_grow(ckpt__io_t *io, int fd, uint64_t old_size,
		   uint64_t new_size)
{
	(void)io;
	return ckpt__io_zero_fill(fd, old_size, new_size);
}

static void fb_close(ckpt__io_t *io)
{
	free(io);
}

static const struct ckpt__io_vt fb_vt = {
	.submit = fb_submit,
	.reap = fb_reap,
	.grow = fb_grow,
	.close = fb_close,
};

int ckpt__fallback_open(unsigned depth, ckpt__io_t **out)
{
	struct fb *fb = calloc(1, sizeof(*fb));

	if (!fb)
		return ckpt__fail(-ENOMEM, "allocating the fallback I/O backend");
	fb->io.vt = &fb_vt;
	fb->io.name = "fallback";
	fb->io.depth = depth;
	*out = &fb->io;
	return 0;
}
