/*
 * lock.h - the stream directory and its two locks (private).
 *
 * <dir>/<stream>/lock holds two OFD locks, which the kernel releases when
 * the holder dies (no stale lock after a SIGKILL), which conflict between
 * open file descriptions even inside one process, and which work over NFS:
 *   byte 0: the writer (one producer per stream, R9)
 *   byte 1: the flusher (one reader that releases ring space)
 * The holder's pid is written as text at offset 0 (writer) / 32 (flusher),
 * because OFD locks do not report the holder's pid.
 */
#ifndef CKPT_CORE_LOCK_H
#define CKPT_CORE_LOCK_H

#include <sys/types.h>

enum ckpt__lock_kind { CKPT_LOCK_WRITER = 0, CKPT_LOCK_FLUSHER = 1 };

/* Open (creating 0700 if @create) the stream directory <absdir>/<name>,
 * refusing a symlink or a directory of another uid.  Returns a dirfd or an
 * error. */
int ckpt__stream_dir(const char *absdir, const char *name, int create);

/* Take lock @kind of the stream whose directory is @sdirfd.  Returns the
 * lock's fd (close it to release), -EBUSY (*holder = pid) or -errno. */
int ckpt__lock(int sdirfd, int kind, pid_t *holder);

/* Holder of lock @kind: pid, 0 if free, or -errno. */
int ckpt__lock_holder(int sdirfd, int kind);

#endif
