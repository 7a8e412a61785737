/*
 * slotfile.h - a stream's two slot files on disk (private).
 *
 * <dir>/<stream>/slot-0 and slot-1 are created together, each with a blank
 * (epoch 0) header, preallocated with written zeros, fsync'd, renamed into
 * place, and the directory fsync'd: after that, only in-place overwrites and
 * fdatasync.  Writes alternate: never into the slot that holds the newest
 * durable snapshot.
 */
#ifndef CKPT_CORE_SLOTFILE_H
#define CKPT_CORE_SLOTFILE_H

#include <stdint.h>

#include "slot.h"
#include "snapshot.h"

#define CKPT_SLOT_INITIAL (64u * 1024u) /* preallocated bytes per slot */

typedef struct ckpt__slots {
	int fd[2]; /* O_RDWR, or -1 */
	uint64_t size[2]; /* file sizes (capacity) */
	int valid[2]; /* verified at open */
	int64_t epoch[2];
	uint64_t seq[2];
	int newest; /* index of the newest valid slot */
	uint64_t next_seq; /* seq for the next write */
	int err[2]; /* why a slot is invalid */
	char why[2][160];
} ckpt__slots_t;

/*
 * Open (creating when absent) the slot files of stream @name in @sdirfd,
 * verify both, and load the newest valid one into @snap.  @reset blanks
 * both first.  Returns 0, or CKPT_ECORRUPT when slots exist and none is
 * valid (the message names each slot's problem), or -errno.
 */
int ckpt__slots_open(int sdirfd, const char *name, int reset,
		     ckpt__slots_t *sl, ckpt__snap_t *snap);
/* The same, trusting no slot whose epoch is above @trust_max: such a slot
 * counts as invalid (and so is the next one written).  Recovery uses it
 * when the previous flusher failed on I/O: its last write may sit in the
 * page cache unsynced, and verify like a good one. */
int ckpt__slots_open_bounded(int sdirfd, const char *name, int reset,
			     int64_t trust_max, ckpt__slots_t *sl,
			     ckpt__snap_t *snap);
void ckpt__slots_close(ckpt__slots_t *sl);

/* Replace both slots with blank ones (new files, renamed into place: a
 * flusher still holding the old ones writes into those, never into the
 * new).  0 or -errno. */
int ckpt__slots_reset(int sdirfd, const char *name);

/* Slot a new snapshot goes to: never the newest valid one. */
static inline int ckpt__slots_target(const ckpt__slots_t *sl)
{
	return sl->newest < 0 ? 0 : 1 - sl->newest;
}

#endif
