/*
 * stream.h - the stream handle behind ckpt_stream_t (private).
 */
#ifndef CKPT_CORE_STREAM_H
#define CKPT_CORE_STREAM_H

#include "layout.h"
#include "region.h"
#include "ring.h"
#include "shmckpt.h"

struct ckpt__flusher;
struct ckpt__fstream;
struct ckpt__snap;

struct ckpt_stream {
	ckpt__producer_t pr; /* hot: first */
	ckpt__region_t rg;
	int sdirfd; /* <dir>/<name>/ */
	int lockfd; /* holds the writer lock */
	ckpt_opts_t opts;
	int64_t recovered_epoch;
	struct ckpt__snap *snap; /* recovered state (the flusher's, in
				  * THREAD mode: read-only until 1st commit) */
	struct ckpt__flusher *fl; /* CKPT_FLUSHER_THREAD */
	struct ckpt__fstream *fs; /* our stream inside fl */
	uint64_t bp_seen; /* backpressure_events at the last ckpt_status */
	char name[CKPT_NAME_MAX + 1];
	char absdir[CKPT_DIR_MAX];
};

/* Fill defaults into a copy of the caller's options and check them. */
int ckpt__opts_resolve(const ckpt_opts_t *in, ckpt_opts_t *out);

/* Defined by recovery (core/recover.c): load the newest valid slot and
 * replay the region's committed epochs; start the flusher if asked. */
int ckpt__stream_recover(ckpt_stream_t *s);
/* Stop flushing (waiting, bounded, for the last commit to be durable).
 * Returns 1 when this process's own flusher made every epoch the stream
 * committed durable, by its own account; 0 otherwise. */
int ckpt__stream_stop(ckpt_stream_t *s, int *err);

#endif
