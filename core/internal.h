/*
 * internal.h - helpers shared inside the library (ckpt__ prefix, never
 * exported: the version script keeps only ckpt_ symbols).
 */
#ifndef CKPT_CORE_INTERNAL_H
#define CKPT_CORE_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "shmckpt.h"

/* Wrap a system call's result the liburing/libuv way. */
#define CKPT__ERR(ret) ((ret) < 0 ? -errno : (ret))

/* Appended to errors that mean the region (the ring) is damaged; a
 * format: the arguments are the absolute checkpoint dir and the stream. */
#define CKPT__RING_DAMAGED_HINT                                              \
	"'shmckpt drop-region --dir %s --stream %s --yes' gives up the ring " \
	"and keeps the slots, losing only the epochs the ring alone held; "   \
	"CKPT_O_RESET starts over"

/* Record the details of a failure for ckpt_last_error(); returns @code so
 * that callers can write: return ckpt__fail(-EBUSY, "held by %d", pid); */
int ckpt__fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void ckpt__clear_error(void);

/* 0 if @name is a valid stream name, else -EINVAL with a message. */
int ckpt__check_name(const char *name);

uint64_t ckpt__mono_ns(void);
uint64_t ckpt__real_ns(void);

/* Logging for the library's background threads (stderr, one line). */
enum { CKPT_LOG_ERROR = 0, CKPT_LOG_WARN = 1, CKPT_LOG_INFO = 2, CKPT_LOG_DEBUG = 3 };
void ckpt__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Override SHMCKPT_LOG (error|warn|info|debug; default warn). */
void ckpt__log_set_level(int level);

#endif
