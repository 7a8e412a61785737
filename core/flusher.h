/*
 * flusher.h - drain rings, coalesce epochs into a snapshot, write slots
 * (private).  The same code runs as a thread in the consumer's process and
 * inside the shmckptd sidecar.
 *
 * Per stream it holds: the materialized snapshot, a private copy of at most
 * one epoch (the reader's buffer), and the encoded image of at most one
 * write in flight.  That is all the memory it ever takes (R5): however many
 * epochs are committed while a write is in flight, the next write carries
 * only the newest snapshot.
 */
#ifndef CKPT_CORE_FLUSHER_H
#define CKPT_CORE_FLUSHER_H

#include <stdint.h>

#include "layout.h"
#include "ring.h"
#include "slotfile.h"
#include "snapshot.h"

struct ckpt_fault_plan;
typedef struct ckpt__flusher ckpt__flusher_t;
typedef struct ckpt__fstream ckpt__fstream_t;

/* What a flusher needs to serve one stream; it takes ownership of all of
 * it (the region mapping only when @own_region). */
struct ckpt__fstream_init {
	const char *name;
	ckpt__region_t *rg; /* mapping of the stream's region */
	int own_region; /* unmap (and free rg) at removal */
	ckpt__snap_t *snap; /* recovered state, epochs replayed */
	ckpt__slots_t *slots; /* open slot files (copied) */
	ckpt__rd_t *rd; /* read position after the replay (copied) */
	int flockfd; /* the flusher lock, closed at removal (-1: none) */
};

/* Start a flusher thread with its own I/O backend.  *why (may be NULL)
 * gets a sentence when AUTO fell back from io_uring.  0 or -errno. */
int ckpt__flusher_start(int backend, struct ckpt_fault_plan *fault,
			uint32_t interval_us, ckpt__flusher_t **out,
			const char **why);
/* Stop: every stream still attached is removed first (as by
 * ckpt__flusher_remove with @timeout_ms); then frees. */
void ckpt__flusher_stop(ckpt__flusher_t *fl, int timeout_ms);
const char *ckpt__flusher_backend(const ckpt__flusher_t *fl);
/* Streams attached (for the sidecar's accounting). */
unsigned ckpt__flusher_nstreams(ckpt__flusher_t *fl);

/* Hand a stream to the flusher.  0 or -ENOMEM (then nothing was taken). */
int ckpt__flusher_add(ckpt__flusher_t *fl, const struct ckpt__fstream_init *in,
		      ckpt__fstream_t **out);
/*
 * Take a stream back: waits until epoch @until is durable (at most
 * @timeout_ms, -1 no bound; never abandoning a write in flight) or the
 * stream failed.  @until < 0 waits for the region's committed_epoch (a
 * sidecar, which has no other word for it); the producer's own process
 * passes the epoch it last committed, which shared memory cannot alter.
 * Frees everything it owned, the snapshot included.  Returns 0 (@until is
 * durable), the stream's error, or -ETIMEDOUT.
 */
int ckpt__flusher_remove(ckpt__flusher_t *fl, ckpt__fstream_t *fs,
			 int timeout_ms, int64_t until);
/* Like remove, but without waiting for anything but a write in flight
 * (a sidecar dropping a stream that failed, or shutting down hard). */
int ckpt__flusher_drop(ckpt__flusher_t *fl, ckpt__fstream_t *fs);
/* 1 once the stream failed (I/O error, damaged region): it is no longer
 * flushed; its error is in the region.  Any thread. */
int ckpt__fstream_failed(const ckpt__fstream_t *fs);
/* The error that failed it, 0 if none: the flusher's own copy, which
 * nothing in shared memory can overwrite.  Any thread. */
int ckpt__fstream_error(const ckpt__fstream_t *fs);

/*
 * Recover stream @name: newest valid slot (in @sdirfd) plus a replay of the
 * committed epochs in region @rg.  On success *snap (owned by the caller),
 * *slots (open) and *rd (positioned after the replay) are what
 * ckpt__flusher_add takes.  @reset blanks the slots first.  With @release
 * (the caller holds the flusher lock), a slot found newer than the
 * region's durable epoch is published durable at once.
 */
int ckpt__recover(const char *absdir, const char *name, int sdirfd,
		  ckpt__region_t *rg, int reset,
		  int release, ckpt__snap_t **snap, ckpt__slots_t *slots,
		  ckpt__rd_t *rd);

/* The process-wide flusher threads of CKPT_FLUSHER_THREAD streams: one per
 * (backend, fault plan, interval), shared by every stream that asks. */
int ckpt__flusher_get(int backend, struct ckpt_fault_plan *fault,
		      uint32_t interval_us, ckpt__flusher_t **out);
void ckpt__flusher_put(ckpt__flusher_t *fl);

/* The status sentence in the flusher page, under its seqlock (why_seq):
 * written by the flusher only, read by anyone without a torn view. */
void ckpt__why_set(struct ckpt_region_flush *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void ckpt__why_get(const struct ckpt_region_flush *f, char *out, size_t cap);

/* Wake every waiter of ckpt_wait_durable on @f (any process). */
void ckpt__durable_wake(struct ckpt_region_flush *f);

#endif
