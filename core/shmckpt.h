/*
 * shmckpt.h - checkpoints for stream consumers, committed to POSIX shared
 * memory in nanoseconds and made durable in the background.
 *
 * A consumer opens a *stream* (one checkpoint domain, e.g. one Kafka
 * partition), stages *deltas* (offsets, key/value puts and deletes, metadata)
 * and commits them as an *epoch*.  Commits go to a lock-free ring in POSIX
 * shared memory; a *flusher* (a thread of this process, or the shmckptd
 * sidecar) drains the ring, coalesces epochs into one snapshot and writes it
 * into one of two alternating slot files, verified by XXH3-128.
 *
 * Conventions
 *   - Every call returns >= 0 on success and a negative code on failure:
 *     either -errno (-EINVAL, -EBUSY, ...) or one of the CKPT_E* codes below,
 *     which lie far below every errno.  ckpt_strerror() names both.
 *   - ckpt_last_error() returns a thread-local sentence with the details of
 *     the last failure in this thread (which pid holds a lock, which check a
 *     slot failed), for logs and error messages.
 *   - Stream names match [A-Za-z0-9._-]{1,128} and are not "." or "..".
 *
 * Caveats
 *   - Threads: a stream handle has one producer.  ckpt_offset/put/del/meta/
 *     commit/abort on one handle must not run concurrently; different handles
 *     may be used from different threads freely.  ckpt_durable_epoch(),
 *     ckpt_wait_durable() and ckpt_status() may be called from any thread.
 *   - fork: a handle must not be used in the child of a fork; the child does
 *     not hold the stream's lock (it is tied to the parent's open file
 *     description only while the parent keeps it) and has no flusher thread.
 *     Open the stream again in the child if it needs one: it gets a
 *     flusher thread of its own.  (Forking while a flusher thread is
 *     inside malloc is safe with glibc's allocator, whose locks are reset
 *     in the child; under a sanitizer's allocator, wait until the parent's
 *     epochs are durable first.)
 *   - The hot path (ckpt_offset/put/del/meta/commit) makes no system call and
 *     takes no lock while the ring has room.  When the ring is full it waits
 *     or fails as ckpt_opts_t.full_policy says; that is the only time it may
 *     sleep.
 */
#ifndef SHMCKPT_H
#define SHMCKPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0

#define CKPT_NAME_MAX 128 /* longest stream name, in bytes */
#define CKPT_TOPIC_MAX 249 /* longest topic name (Kafka's own limit) */

/* Error codes that are not errno values (compare: MDB_KEYEXIST = -30799). */
#define CKPT_ECORRUPT (-30900) /* data failed verification (slot or ring) */
#define CKPT_EVERSION (-30901) /* unknown layout or format version */
#define CKPT_EFOREIGN (-30902) /* region/file owned by another uid or mode */
#define CKPT_ESTREAM (-30903) /* slot or region belongs to another stream */
#define CKPT_EFAILED (-30904) /* stream failed on I/O; durable epoch frozen */
#define CKPT_EGAP (-30905) /* checkpointed offsets no longer in the log */
#define CKPT_ECLOSED (-30906) /* flusher stopped or stream closed */
#define CKPT_ELAST (-30906)

/* Name of a return code: -errno or CKPT_E*.  Never NULL; static storage. */
const char *ckpt_strerror(int code);

/* Details of the last failure of a ckpt_ call in this thread ("" if none). */
const char *ckpt_last_error(void);

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

enum ckpt_full_policy {
	CKPT_FULL_EAGAIN = 0, /* ring full: return -EAGAIN at once */
	CKPT_FULL_WAIT = 1, /* wait up to full_wait_ms, then -EAGAIN */
};

enum ckpt_flusher {
	CKPT_FLUSHER_THREAD = 0, /* a flusher thread in this process */
	CKPT_FLUSHER_EXTERNAL = 1, /* shmckptd (or another reader) flushes */
};

enum ckpt_backend {
	CKPT_BACKEND_AUTO = 0, /* io_uring, else pwrite+fdatasync */
	CKPT_BACKEND_URING = 1, /* io_uring only; fail if unavailable */
	CKPT_BACKEND_FALLBACK = 2, /* pwrite + fdatasync */
};

/* ckpt_opts_t.flags */
#define CKPT_O_RESET 0x1u /* discard existing slots and region: start empty */
/* Producer only, with CKPT_FLUSHER_EXTERNAL: the slot files are not this
 * stream's durable store (a flusher of your own, built on the reader API
 * below, keeps the snapshots elsewhere).  ckpt_open neither reads nor
 * creates slots; the recovered state is empty and epochs continue from the
 * region's committed epoch. */
#define CKPT_O_NOSLOTS 0x2u

typedef struct ckpt_opts {
	uint64_t ring_size; /* bytes; power of two in [64 KiB, 1 GiB]; default 8 MiB */
	uint32_t max_key; /* longest key; default 4 KiB, at most 64 KiB */
	uint32_t max_value; /* longest value; default 256 KiB, at most 16 MiB */
	uint32_t max_meta; /* longest metadata blob; default 64 KiB, at most 16 MiB */
	int full_policy; /* enum ckpt_full_policy; default CKPT_FULL_EAGAIN */
	uint32_t full_wait_ms; /* bound for CKPT_FULL_WAIT; default 1000 */
	int flusher; /* enum ckpt_flusher; default CKPT_FLUSHER_THREAD */
	int backend; /* enum ckpt_backend; default AUTO (env SHMCKPT_BACKEND) */
	uint32_t flush_interval_us; /* flusher's idle poll bound; default 1000 */
	unsigned flags; /* CKPT_O_* */
	void *fault; /* tests/benchmarks: a fault plan (iouring/fault.h); NULL */
} ckpt_opts_t;

/* Fill *o with the defaults above.  Always call it before setting fields. */
void ckpt_opts_init(ckpt_opts_t *o);

/* ------------------------------------------------------------------------
 * Producer API: open, stage, commit
 * ------------------------------------------------------------------------ */

typedef struct ckpt_stream ckpt_stream_t;

/*
 * Open stream @name under directory @dir (which must exist), creating it
 * when new.  Takes the stream's single-writer lock, creates or attaches its
 * shared-memory region, recovers the newest valid snapshot plus the epochs
 * still committed in the region, and (CKPT_FLUSHER_THREAD) starts flushing.
 *
 * @opts may be NULL for defaults.  On success *out owns the handle; release it
 * with ckpt_close().  On failure *out is untouched.
 *
 * Errors: -EINVAL, CKPT_ENAME-like names are -EINVAL with a message;
 *   -ENOENT (no @dir), -ENAMETOOLONG (path), -EBUSY (another writer holds the
 *   stream; ckpt_last_error() and ckpt_holder_pid() name its pid),
 *   CKPT_EVERSION (region of another layout version), CKPT_EFOREIGN (region
 *   of another uid or mode), CKPT_ECORRUPT (region damaged or every slot
 *   invalid; the message says what was wrong; CKPT_O_RESET starts over),
 *   -ENOMEM, and any -errno of shm_open/mmap/open/mkdir.
 *
 * Opening a stream whose flusher failed (CKPT_EFAILED) is the retry: the
 * open recovers what is durable plus the epochs still in the region, and
 * flushing resumes; a slot the failed write may have left unsynced is not
 * trusted.  With CKPT_FLUSHER_EXTERNAL the stream then waits for the
 * sidecar to take it again (ckpt_status: CKPT_NOFLUSHER, why says after
 * what) instead of reporting the old failure.
 */
int ckpt_open(const char *dir, const char *name, const ckpt_opts_t *opts,
	      ckpt_stream_t **out);

/*
 * Close the handle.  An open (uncommitted) epoch is dropped.  With a flusher
 * thread, close first waits (bounded, 10 s) until the last committed epoch
 * is durable; committed epochs stay in the region either way and are not
 * lost (the next open replays them).  Returns 0, or the flusher's error.
 */
int ckpt_close(ckpt_stream_t *s);

/* pid holding the writer lock of @dir/@name, 0 if none, or -errno. */
int ckpt_holder_pid(const char *dir, const char *name);

/*
 * Stage deltas of the open epoch.  Nothing is visible to a reader before
 * ckpt_commit().  Each returns 0, or:
 *   -EMSGSIZE  the delta exceeds max_key/max_value/max_meta/CKPT_TOPIC_MAX;
 *   -ENOBUFS   the open epoch would outgrow the whole ring: it can never be
 *              committed (ckpt_abort() it, or open with a larger ring_size);
 *   -EAGAIN    the ring is full (full_policy); nothing of this delta was
 *              staged, earlier deltas of the epoch stay: retry later;
 *   -EINVAL    NULL pointer with a non-zero length, negative partition/offset;
 *   CKPT_ECORRUPT the region was found damaged.
 * ckpt_offset records that the next offset to consume in @topic/@partition
 * is @next_offset.  Empty keys are allowed.
 */
int ckpt_offset(ckpt_stream_t *s, const char *topic, int32_t partition,
		int64_t next_offset);
int ckpt_put(ckpt_stream_t *s, const void *key, size_t klen, const void *val,
	     size_t vlen);
int ckpt_del(ckpt_stream_t *s, const void *key, size_t klen);
int ckpt_meta(ckpt_stream_t *s, const void *blob, size_t len);

/*
 * Seal the open epoch: every delta staged since the previous commit becomes
 * visible to readers at once, or none does (R1).  Returns the new epoch
 * number (1, 2, 3 ... per stream, continuing across restarts), or -EAGAIN /
 * CKPT_ECORRUPT as above.  An epoch with no delta is allowed.  Space for the
 * seal is reserved when deltas are staged, so a commit after successful
 * stages never fails for lack of room.
 */
int64_t ckpt_commit(ckpt_stream_t *s);

/* Drop the deltas staged since the last commit.  Returns 0. */
int ckpt_abort(ckpt_stream_t *s);

/* ------------------------------------------------------------------------
 * Durability
 * ------------------------------------------------------------------------ */

/* Newest epoch whose snapshot is on stable storage (0: none yet). */
int64_t ckpt_durable_epoch(const ckpt_stream_t *s);

/*
 * Wait until epoch @epoch is durable, at most @timeout_ms (-1: no bound).
 * Returns 0, -ETIMEDOUT, CKPT_EFAILED (the flusher failed: the epoch will
 * not become durable; see ckpt_status; reopening the stream retries), or
 * -EINVAL (epoch never committed).
 */
int ckpt_wait_durable(const ckpt_stream_t *s, int64_t epoch, int timeout_ms);

enum ckpt_health {
	CKPT_HEALTHY = 0, /* flushing keeps up */
	CKPT_BACKPRESSURED = 1, /* the ring filled since the last status
				 * call, is over 3/4 full, or a slot could not
				 * grow (ENOSPC) and is being retried */
	CKPT_FAILED = 2, /* I/O error: durable epoch frozen, see .error */
	CKPT_NOFLUSHER = 3, /* external flusher mode and no flusher attached */
};

typedef struct ckpt_status {
	int health; /* enum ckpt_health */
	int error; /* what stopped flushing (-EIO, CKPT_ECORRUPT ...) or 0;
		    * ENOSPC is retried, so it shows as BACKPRESSURED + why */
	int64_t committed_epoch; /* newest committed epoch */
	int64_t durable_epoch; /* newest durable epoch */
	uint64_t ring_capacity; /* bytes */
	uint64_t ring_used; /* bytes committed or staged, not yet released */
	uint64_t backpressure_events; /* stages that found the ring full at
				       * first look (some found room then) */
	uint64_t flushes; /* snapshots made durable */
	uint64_t flush_errors; /* failed writes or datasyncs */
	uint64_t enospc_retries; /* slot growth refused for space, retried */
	char backend[16]; /* "io_uring", "fallback", "fault(...)" or "" */
	char why[160]; /* a sentence when health != CKPT_HEALTHY */
} ckpt_status_t;

/* Fill *st.  Not for the hot path: it may make a system call.  Returns 0. */
int ckpt_status(ckpt_stream_t *s, ckpt_status_t *st);

/* ------------------------------------------------------------------------
 * Recovered state: what ckpt_open() found (newest valid slot + replay).
 *
 * Valid from ckpt_open() until the first ckpt_commit() on the handle: read it
 * then (load it into your own structures); afterwards these calls return
 * -ESTALE, and pointers they returned must no longer be used.
 * ------------------------------------------------------------------------ */

/* Epoch the recovered state reflects (0 for a new stream). */
int64_t ckpt_recovered_epoch(const ckpt_stream_t *s);

/* Next offset recorded for @topic/@partition: 0 and *next set, or -ENOENT. */
int ckpt_get_offset(const ckpt_stream_t *s, const char *topic,
		    int32_t partition, int64_t *next);

/* Value of @key: 0 and *val, *vlen set (memory owned by the handle), -ENOENT. */
int ckpt_get(const ckpt_stream_t *s, const void *key, size_t klen,
	     const void **val, size_t *vlen);

/* Metadata blob (NULL/0 if none).  Returns 0. */
int ckpt_get_meta(const ckpt_stream_t *s, const void **blob, size_t *len);

/* Visit every key/value (any order) and every offset; stop when @fn != 0
 * and return that value. */
typedef int (*ckpt_kv_fn)(void *arg, const void *key, size_t klen,
			  const void *val, size_t vlen);
typedef int (*ckpt_offset_fn)(void *arg, const char *topic, int32_t partition,
			      int64_t next_offset);
int ckpt_foreach_kv(const ckpt_stream_t *s, ckpt_kv_fn fn, void *arg);
int ckpt_foreach_offset(const ckpt_stream_t *s, ckpt_offset_fn fn, void *arg);

/* ------------------------------------------------------------------------
 * Reader API: what a flusher uses.  One reader per stream at a time (a
 * second gets -EBUSY).  A reader sees committed epochs only, in order, each
 * whole and verified (its XXH3-64 seal); ring space is released only when
 * the reader says a snapshot covering it is durable.
 * ------------------------------------------------------------------------ */

typedef struct ckpt_reader ckpt_reader_t;

enum ckpt_delta_type {
	CKPT_D_OFFSET = 1,
	CKPT_D_PUT = 2,
	CKPT_D_DEL = 3,
	CKPT_D_META = 4,
};

typedef struct ckpt_delta {
	int type; /* enum ckpt_delta_type */
	int32_t partition; /* OFFSET */
	int64_t offset; /* OFFSET: next offset */
	const char *topic; /* OFFSET: not NUL-terminated */
	size_t topic_len;
	const void *key; /* PUT, DEL */
	size_t klen;
	const void *val; /* PUT: value; META: blob */
	size_t vlen;
} ckpt_delta_t;

typedef struct ckpt_epoch {
	int64_t epoch;
	uint32_t ndeltas;
	uint64_t end_pos; /* ring position just past this epoch */
	/* private: iteration over the reader's copy of the epoch */
	const unsigned char *ckpt__buf;
	size_t ckpt__len;
	size_t ckpt__at;
} ckpt_epoch_t;

/* Reader flags */
#define CKPT_R_NOLOCK 0x1u /* do not take the flusher lock; never release */

/*
 * Attach to the region of @dir/@name (it must exist: a writer created it)
 * and take the stream's flusher lock.  Errors as ckpt_open, plus -ENOENT (no
 * region) and -EBUSY (another flusher; ckpt_last_error() says which pid).
 */
int ckpt_reader_open(const char *dir, const char *name, unsigned flags,
		     ckpt_reader_t **out);
int ckpt_reader_close(ckpt_reader_t *r);

/*
 * Next committed epoch: 1 and *ep filled, 0 if none is committed yet, or
 * CKPT_ECORRUPT (the ring failed verification; ckpt_last_error() says how).
 * The epoch's deltas live in the reader's private copy, valid until the next
 * call; pointers in deltas point into that copy.
 */
int ckpt_reader_next(ckpt_reader_t *r, ckpt_epoch_t *ep);

/* Next delta of *ep: 1 and *d filled, 0 at the end. */
int ckpt_epoch_next(ckpt_epoch_t *ep, ckpt_delta_t *d);

/*
 * Publish @epoch as durable and release the ring space up to @end_pos (the
 * end_pos of that epoch as returned by ckpt_reader_next).  Returns 0, or
 * -EINVAL if @end_pos was not read yet or lies before the released position.
 */
int ckpt_reader_durable(ckpt_reader_t *r, int64_t epoch, uint64_t end_pos);

/* Where the reader starts: released position and durable epoch recorded in
 * the region (what a restarted flusher resumes from). */
int64_t ckpt_reader_durable_epoch(const ckpt_reader_t *r);

#ifdef __cplusplus
}
#endif
#endif /* SHMCKPT_H */
