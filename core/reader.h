/*
 * reader.h - the reader handle behind ckpt_reader_t (private).
 */
#ifndef CKPT_CORE_READER_H
#define CKPT_CORE_READER_H

#include <stdint.h>

#include "layout.h"
#include "region.h"
#include "ring.h"
#include "shmckpt.h"

struct ckpt_reader {
	ckpt__region_t rg;
	ckpt__rd_t rd;
	unsigned flags;
	int sdirfd, lockfd;
	char absdir[CKPT_DIR_MAX];
};

int ckpt__reader_attach(const char *dir, const char *name, unsigned flags,
			ckpt_reader_t **out);
void ckpt__futex_wake(uint32_t *word);
/* Publish @epoch durable and release ring space up to @end_pos. */
void ckpt__publish_durable(struct ckpt_region_flush *f, int64_t epoch,
			   uint64_t end_pos);

#endif
