/*
 * io_private.h - what the backends behind io.h share: the vtable, the
 * common handle header, and helpers used by more than one backend.
 *
 * io.c owns the parts every backend must get right the same way (the
 * -EAGAIN bound on ops in flight, resetting an op's outputs, the in-flight
 * count); a backend only starts, finishes and grows.
 */
#ifndef CKPT_IOURING_IO_PRIVATE_H
#define CKPT_IOURING_IO_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"

struct ckpt__io_vt {
	/* Start @op; io.c already checked the depth and reset the outputs.
	 * 0 = started (it will be reaped exactly once), else -errno. */
	int (*submit)(ckpt__io_t *io, struct ckpt__io_op *op);
	/* Finished ops, up to @max, waiting at most @wait_ns for the first.
	 * The backend sets res, failed_phase, short_write and done_ns. */
	int (*reap)(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		    int64_t wait_ns);
	int (*grow)(ckpt__io_t *io, int fd, uint64_t old_size,
		    uint64_t new_size);
	void (*close)(ckpt__io_t *io);
};

/* The first member of every backend's handle. */
struct ckpt__io {
	const struct ckpt__io_vt *vt;
	const char *name;
	unsigned depth;
	unsigned inflight; /* submitted, not yet reaped */
};

/* Bounds of @depth in ckpt__io_open. */
#define CKPT__IO_MAX_DEPTH 4096u

/*
 * The largest single write either backend issues.  Linux caps one
 * read/write at MAX_RW_COUNT (2 GiB - 4 KiB) and returns a short count
 * beyond it, which the contract would have to call a failure; so larger ops
 * are issued as consecutive writes of at most this many bytes, each of which
 * must complete in full.  1 GiB keeps the common large snapshot (<= 1 GiB)
 * in one write.  A variable, not a constant, so that tests can make it small
 * and exercise the split path without gigabytes of I/O.
 */
extern size_t ckpt__io_max_write;
#define CKPT__IO_MAX_WRITE_DEFAULT ((size_t)1 << 30)

int ckpt__uring_open(unsigned depth, ckpt__io_t **out);
int ckpt__fallback_open(unsigned depth, ckpt__io_t **out);
/* Takes ownership of @inner (closes it on failure too). */
int ckpt__fault_open(struct ckpt_fault_plan *plan, ckpt__io_t *inner,
		     unsigned depth, ckpt__io_t **out);

/* Write zeros over [@old_size, @new_size) of @fd, then fdatasync: what
 * ckpt__io_grow means for the real backends.  0 or -errno. */
int ckpt__io_zero_fill(int fd, uint64_t old_size, uint64_t new_size);

#endif
