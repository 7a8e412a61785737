/*
 * io.h - the flusher's I/O backends (private to the library).
 *
 * One operation = write @len bytes at @off, then make them durable
 * (fdatasync semantics).  It completes once, with res 0 (all bytes written
 * and synced) or -errno; a short write is a failure (-EIO, short=1).  Never
 * retry-and-trust: after a failed datasync the caller must treat the data as
 * lost (the kernel may have dropped the dirty pages).
 *
 * Backends: "io_uring" (write + fdatasync linked, many ops in flight on one
 * ring), "fallback" (pwrite + fdatasync, done synchronously at submit), and
 * "fault" (wraps either and injects latency, EIO, ENOSPC, short and torn
 * writes and power cuts; iouring/fault.h).
 */
#ifndef CKPT_IOURING_IO_H
#define CKPT_IOURING_IO_H

#include <stddef.h>
#include <stdint.h>

struct ckpt_fault_plan;

typedef struct ckpt__io ckpt__io_t;

enum ckpt__io_phase { CKPT_IO_WRITE = 1, CKPT_IO_SYNC = 2 };

struct ckpt__io_op {
	/* in */
	int fd;
	const void *buf;
	size_t len;
	uint64_t off;
	void *user;
	/* out, valid once reaped */
	int res; /* 0 or -errno */
	int failed_phase; /* enum ckpt__io_phase when res < 0 */
	int short_write; /* 1 if the write returned fewer bytes */
	uint64_t submit_ns, done_ns; /* CLOCK_MONOTONIC */
	/* private to the backend */
	struct ckpt__io_op *ckpt__next;
	uint64_t ckpt__due_ns;
};

/*
 * Open a backend.  @kind is enum ckpt_backend (AUTO tries io_uring and falls
 * back when it is unavailable: EPERM, ENOSYS, EACCES...; the environment
 * variable SHMCKPT_BACKEND=fallback|uring overrides AUTO).  @fault, when not
 * NULL, wraps the chosen backend with fault injection.  @depth bounds the
 * ops in flight.  *why (may be NULL) receives a static sentence when AUTO
 * fell back.  0 or -errno.
 */
int ckpt__io_open(int kind, struct ckpt_fault_plan *fault, unsigned depth,
		  ckpt__io_t **out, const char **why);
void ckpt__io_close(ckpt__io_t *io);

/* "io_uring", "fallback", "fault+io_uring", "fault+fallback" */
const char *ckpt__io_name(const ckpt__io_t *io);

/* Start @op (memory owned by the caller until reaped).  0 or -errno (then
 * the op was not started: -EAGAIN if @depth ops are in flight). */
int ckpt__io_submit(ckpt__io_t *io, struct ckpt__io_op *op);

/* Collect up to @max finished ops into @done, waiting at most @wait_ns for
 * the first (0: do not wait).  Returns the count (>= 0) or -errno. */
int ckpt__io_reap(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		  int64_t wait_ns);

/* Ops submitted and not yet reaped. */
unsigned ckpt__io_inflight(const ckpt__io_t *io);

/* Synchronously extend file @fd from @old_size to @new_size with zeros
 * written (not holes), then fdatasync.  0, -ENOSPC, -EIO ... On failure the
 * file may be longer than @old_size but bytes before @old_size are intact. */
int ckpt__io_grow(ckpt__io_t *io, int fd, uint64_t old_size,
		  uint64_t new_size);

#endif
