/*
 * recover.c - what ckpt_open does after taking the lock and the region.
 * (Slot recovery and the flusher arrive with the durable snapshots.)
 */
#include "internal.h"
#include "stream.h"

int ckpt__stream_recover(ckpt_stream_t *s)
{
	s->recovered_epoch = s->pr.epoch;
	return 0;
}

void ckpt__stream_stop(ckpt_stream_t *s, int *err)
{
	(void)s;
	*err = 0;
}
