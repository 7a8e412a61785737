/*
 * io.c - choosing and opening a backend, and the checks every backend shares.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "io_private.h"

size_t ckpt__io_max_write = CKPT__IO_MAX_WRITE_DEFAULT;

/*
 * *why must be a static sentence (the caller keeps the pointer, e.g. in a
 * status block), so each errno that io_uring_setup is known to return when
 * io_uring is unavailable gets its own string.
 */
static const char *uring_why(int err)
{
	switch (err) {
	case -EPERM: /* seccomp (Docker, containerd), io_uring_disabled=2 */
		return "io_uring unavailable (Operation not permitted): "
		       "using pwrite+fdatasync";
	case -ENOSYS: /* old kernel, gVisor, seccomp returning ENOSYS */
		return "io_uring unavailable (Function not implemented): "
		       "using pwrite+fdatasync";
	case -EACCES: /* SELinux/LSM denial */
		return "io_uring unavailable (Permission denied): "
		       "using pwrite+fdatasync";
	case -EOPNOTSUPP: /* kernel without IORING_OP_WRITE/FSYNC */
		return "io_uring unavailable (Operation not supported): "
		       "using pwrite+fdatasync";
	case -ENOMEM: /* RLIMIT_MEMLOCK too small on kernels before 5.12 */
		return "io_uring unavailable (Cannot allocate memory): "
		       "using pwrite+fdatasync";
	case -EINVAL:
		return "io_uring unavailable (Invalid argument): "
		       "using pwrite+fdatasync";
	case -EMFILE:
	case -ENFILE:
		return "io_uring unavailable (Too many open files): "
		       "using pwrite+fdatasync";
	}
	return "io_uring unavailable: using pwrite+fdatasync";
}

/* SHMCKPT_BACKEND only decides for AUTO: an explicit choice in the options
 * is the program's, the variable is the operator's default. */
static int env_backend(int *kind, const char **why)
{
	const char *v = getenv("SHMCKPT_BACKEND");

	if (!v || !*v || strcmp(v, "auto") == 0)
		return 0;
	if (strcmp(v, "fallback") == 0) {
		*kind = CKPT_BACKEND_FALLBACK;
		*why = "SHMCKPT_BACKEND=fallback: using pwrite+fdatasync";
		return 0;
	}
	if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0) {
		*kind = CKPT_BACKEND_URING;
		return 0;
	}
	/* A typo silently ignored would leave the operator believing the
	 * override took effect. */
	return ckpt__fail(-EINVAL,
			  "SHMCKPT_BACKEND='%s': expected fallback, uring or auto",
			  v);
}

int ckpt__io_open(int kind, struct ckpt_fault_plan *fault, unsigned depth,
		  ckpt__io_t **out, const char **why)
{
	const char *sentence = NULL;
	ckpt__io_t *io = NULL;
	int ret;

	*out = NULL;
	if (why)
		*why = NULL;
	if (depth == 0 || depth > CKPT__IO_MAX_DEPTH)
		return ckpt__fail(-EINVAL, "I/O depth %u is outside [1, %u]",
				  depth, CKPT__IO_MAX_DEPTH);
	switch (kind) {
	case CKPT_BACKEND_AUTO:
		ret = env_backend(&kind, &sentence);
		if (ret < 0)
			return ret;
		break;
	case CKPT_BACKEND_URING:
	case CKPT_BACKEND_FALLBACK:
		break;
	default:
		return ckpt__fail(-EINVAL, "unknown I/O backend %d", kind);
	}

	if (kind == CKPT_BACKEND_AUTO) {
		ret = ckpt__uring_open(depth, &io);
		if (ret < 0) {
			sentence = uring_why(ret);
			ckpt__log(CKPT_LOG_INFO, "%s", sentence);
			ret = ckpt__fallback_open(depth, &io);
		}
	} else if (kind == CKPT_BACKEND_URING) {
		ret = ckpt__uring_open(depth, &io);
	} else {
		ret = ckpt__fallback_open(depth, &io);
	}
	if (ret < 0)
		return ret;

	if (fault) {
		ret = ckpt__fault_open(fault, io, depth, &io);
		if (ret < 0)
			return ret;
	}
	*out = io;
	if (why)
		*why = sentence;
	return 0;
}

void ckpt__io_close(ckpt__io_t *io)
{
	if (io)
		io->vt->close(io);
}

const char *ckpt__io_name(const ckpt__io_t *io)
{
	return io->name;
}

int ckpt__io_submit(ckpt__io_t *io, struct ckpt__io_op *op)
{
	int ret;

	if (io->inflight >= io->depth)
		return -EAGAIN; /* routine backpressure: no message */
	if (op->len > 0 && !op->buf)
		return ckpt__fail(-EINVAL, "I/O op of %zu bytes without a buffer",
				  op->len);
	if (op->len > (uint64_t)INT64_MAX ||
	    op->off > (uint64_t)INT64_MAX - op->len)
		return ckpt__fail(-EFBIG, "I/O op at offset %llu + %zu overflows",
				  (unsigned long long)op->off, op->len);
	/* Reset every output now: a reused op must never show the result of
	 * its previous run if a backend forgets a field. */
	op->res = 0;
	op->failed_phase = 0;
	op->short_write = 0;
	op->submit_ns = ckpt__mono_ns();
	op->done_ns = 0;
	op->ckpt__next = NULL;
	op->ckpt__due_ns = 0;
	ret = io->vt->submit(io, op);
	if (ret < 0)
		return ret;
	io->inflight++;
	return 0;
}

int ckpt__io_reap(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		  int64_t wait_ns)
{
	int n;

	if (max <= 0)
		return 0;
	n = io->vt->reap(io, done, max, wait_ns < 0 ? 0 : wait_ns);
	if (n > 0)
		io->inflight -= (unsigned)n;
	return n;
}

unsigned ckpt__io_inflight(const ckpt__io_t *io)
{
	return io->inflight;
}

int ckpt__io_grow(ckpt__io_t *io, int fd, uint64_t old_size,
		  uint64_t new_size)
{
	return io->vt->grow(io, fd, old_size, new_size);
}

/* Never written: the source of every zero that grow writes. */
static char zeros[1 << 20];

int ckpt__io_zero_fill(int fd, uint64_t old_size, uint64_t new_size)
{
	uint64_t pos = old_size;
	int ret;

	if (new_size > (uint64_t)INT64_MAX)
		return ckpt__fail(-EFBIG, "cannot grow a file to %llu bytes",
				  (unsigned long long)new_size);
	/*
	 * Real zeros, not ftruncate or fallocate: a hole or an unwritten
	 * extent would be allocated (and could hit ENOSPC) at the first
	 * overwrite, and converting an unwritten extent is a metadata change
	 * that fdatasync of a later in-place write would have to carry.
	 */
	while (pos < new_size) {
		size_t n = sizeof(zeros);
		ssize_t w;

		if (new_size - pos < n)
			n = (size_t)(new_size - pos);
		w = pwrite(fd, zeros, n, (off_t)pos);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			return ckpt__fail(ret,
					  "writing zeros at %llu to grow fd %d "
					  "to %llu bytes: %s",
					  (unsigned long long)pos, fd,
					  (unsigned long long)new_size,
					  strerror(-ret));
		}
		/* A short count is progress (the next call reports why it
		 * stopped: ENOSPC, EFBIG); zero would loop forever. */
		if (w == 0)
			return ckpt__fail(-EIO,
					  "writing zeros at %llu to grow fd %d: "
					  "no progress",
					  (unsigned long long)pos, fd);
		pos += (uint64_t)w;
	}
	do
		ret = CKPT__ERR(fdatasync(fd));
	while (ret == -EINTR);
	if (ret < 0)
		return ckpt__fail(ret, "fdatasync after growing fd %d to %llu "
				  "bytes: %s", fd,
				  (unsigned long long)new_size, strerror(-ret));
	return 0;
}
