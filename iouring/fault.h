/*
 * fault.h - a fault-injecting I/O backend for tests, benchmarks and the demo.
 *
 * Point ckpt_opts_t.fault (or the @fault argument of ckpt__io_open) at a
 * struct ckpt_fault_plan and the chosen backend is wrapped: its name becomes
 * "fault+io_uring" or "fault+fallback".
 *
 * How it works.  A submitted op is only queued, with a due time of
 * submit_ns + a latency drawn from the plan.  Reap waits (at most its
 * wait_ns) for the earliest due time, then executes the due ops on the real
 * backend (write + fdatasync) and injects the planned faults.  Bytes thus
 * reach a file only when an op executes, after its latency: until then the
 * file keeps its old contents, so at a power cut "the files hold exactly
 * what was datasync'd" holds by construction (plus, with @torn, one torn
 * prefix).
 *
 * Numbering.  Ops are numbered 1, 2, 3 ... in submission order, and grows
 * 1, 2, 3 ... in call order, over every handle opened with the same plan.
 * A "*_at" field of 0 means never; a "*_count" of 0 means 1 and UINT64_MAX
 * means every op from "*_at" on.
 *
 * Recording.  With @record set, every write, datasync and grow that
 * reaches a file is reported in order (struct ckpt_fault_rec); without it
 * nothing changes.
 *
 * Threads.  A handle is used by one thread (the flusher).  Another thread
 * may cut the power (ckpt__fault_powercut) and read the counters
 * (ckpt__fault_stats) at any moment; nothing else in the plan may change
 * while a handle is open.
 *
 * Usage: zero the plan, set the fields, pass it; it must outlive every
 * handle opened with it.
 */
#ifndef CKPT_IOURING_FAULT_H
#define CKPT_IOURING_FAULT_H

#include <stdint.h>

/* Counters kept by the wrapper (updated atomically; read them with
 * ckpt__fault_stats). */
struct ckpt_fault_stats {
	uint64_t ops; /* ops submitted */
	uint64_t writes_ok; /* ops executed in full and completed with 0 */
	uint64_t grows; /* ckpt__io_grow calls */
	uint64_t eio_write; /* ops failed with EIO in the write phase */
	uint64_t eio_sync; /* ops whose data was written, then EIO on sync */
	uint64_t short_writes; /* ops cut short (a prefix written) */
	uint64_t enospc_grow; /* grows failed with ENOSPC */
	uint64_t cut_ops; /* ops failed because the power was cut */
	uint64_t torn; /* torn writes (0 or 1) */
	uint64_t torn_op; /* number of the torn op */
	uint64_t torn_bytes; /* prefix of it that reached the file */
	uint64_t max_inflight; /* most ops in flight on one handle */
};

/*
 * One record of the recorder (ckpt_fault_plan.record).
 *
 * The sequence of an op is WRITE then SYNC, both with the op's number:
 * - WRITE: bytes [off, off + len) of the file are being written with
 *   @data (valid during the call only: copy what you keep).  Issued just
 *   before the bytes go to the inner backend, so from here until its SYNC
 *   the file may hold any mix of old and new bytes.  A short write
 *   (short_write_at) records the prefix it really writes.  An op failed
 *   with eio_write_at, or lost to a power cut, writes nothing and records
 *   nothing; the torn prefix of a power cut is a WRITE with @torn = 1 and
 *   no SYNC ever.
 * - SYNC: the op completed; @res 0 means the bytes of its WRITE are on
 *   stable storage (written and fdatasync'd).  @res < 0 (a real error, or
 *   eio_sync_at) means they may or may not be: the WRITE stays unsynced.
 * - GROW: ckpt__io_grow ran on the inner backend: zeros over [off, off +
 *   len) (off = the old size), then fdatasync; @res as for SYNC (< 0: the
 *   file may be anything from its old size to the new, zeros past the old
 *   end).  A grow refused by the plan (enospc_grow_at, a power cut) writes
 *   nothing and records nothing.
 *
 * @dev and @ino name the file (fstat of @fd when recording: descriptors
 * are reused, inodes of open files are not).  Records come from the thread
 * that uses the handle, while it executes the op (write, sync) or the grow:
 * the recorder must be quick, must not call back into the backend, and,
 * with several handles on one plan, must serialise itself.
 */
enum ckpt_fault_rec_kind {
	CKPT_FAULT_REC_WRITE = 1,
	CKPT_FAULT_REC_SYNC = 2,
	CKPT_FAULT_REC_GROW = 3,
};

struct ckpt_fault_rec {
	int kind; /* enum ckpt_fault_rec_kind */
	int res; /* SYNC, GROW: 0 or -errno; WRITE: 0 */
	uint64_t num; /* op number (WRITE, SYNC) or grow number (GROW) */
	int fd;
	int torn; /* WRITE: the torn prefix of a power cut */
	uint64_t dev, ino;
	uint64_t off, len;
	const void *data; /* WRITE only, else NULL */
};

struct ckpt_fault_plan {
	/*
	 * Latency of every op, in microseconds.
	 * - all 0: none (ops execute at the next reap);
	 * - lat_min_us == lat_max_us (or lat_max_us 0): fixed at lat_min_us;
	 * - lat_mean_us 0: uniform in [lat_min_us, lat_max_us];
	 * - else lat_min_us + an exponential, clipped at lat_max_us, whose
	 *   scale is solved so that the mean after clipping is lat_mean_us
	 *   (which must lie strictly between min and max).  The heavy right
	 *   tail is what slow object stores show: 1-20 s with a mean of 2.6 s
	 *   is { 1000000, 20000000, 2600000 }.
	 */
	uint64_t lat_min_us, lat_max_us, lat_mean_us;
	uint64_t seed; /* of the latency and torn-prefix generator */

	/* The op's write fails with EIO: nothing of it reaches the file. */
	uint64_t eio_write_at, eio_write_count;
	/* The op's data is written, then its datasync fails with EIO (what a
	 * kernel does when writeback fails: the new bytes may be readable
	 * now and gone after a crash; the caller must not trust them). */
	uint64_t eio_sync_at, eio_sync_count;
	/* The op's write comes back short: the first half (rounded down to
	 * 512 bytes) is written and synced, the op fails with -EIO,
	 * short_write = 1. */
	uint64_t short_write_at, short_write_count;
	/* ckpt__io_grow fails with ENOSPC without writing anything. */
	uint64_t enospc_grow_at, enospc_grow_count;

	/*
	 * Power cut.  From the cut on nothing reaches any file: every op in
	 * flight or submitted later completes (at once, without waiting for
	 * its latency) with res -EIO, failed_phase CKPT_IO_WRITE; grows fail
	 * with -EIO.  The cut happens when the first op numbered
	 * @powercut_at_op or later is due to execute (it and every op still
	 * queued are lost; with a fixed latency that is op @powercut_at_op
	 * itself), or when another thread calls ckpt__fault_powercut().
	 * Ops queued when a handle is closed are dropped the same way: they
	 * never reach the files.
	 * With @torn, the op in flight at the cut (op @powercut_at_op, or for
	 * ckpt__fault_powercut the queued op due first) first gets a random
	 * prefix of its data written: a multiple of 512 bytes, smaller than
	 * the op, possibly 0.  The prefix is written without fdatasync: it
	 * models sectors that reached the platter before power failed.
	 */
	uint64_t powercut_at_op;
	int torn;
	int powercut; /* set by ckpt__fault_powercut; read atomically */

	/*
	 * Recorder (optional; NULL changes nothing).  Called with every write
	 * and datasync that reaches (or may have reached) a file, in the
	 * order they happen, so that a test can rebuild every state the
	 * files pass through (tests/test_crash_states.c).  See struct
	 * ckpt_fault_rec for what each call says.
	 */
	void (*record)(void *arg, const struct ckpt_fault_rec *r);
	void *record_arg;

	/* Private to the wrapper. */
	int ckpt__executing;
	int ckpt__torn_done;
	struct ckpt_fault_stats stats;
};

/*
 * Cut the power, from any thread.  On return no op executes any more: no
 * full write reaches a file after this call.  With @torn set, the one torn
 * prefix is written by the flusher's handle at its next call (reap, submit,
 * grow or close), so tear the flusher down before reading the files.
 */
void ckpt__fault_powercut(struct ckpt_fault_plan *plan);

/* A consistent-enough copy of the counters (each field read atomically). */
void ckpt__fault_stats(const struct ckpt_fault_plan *plan,
		       struct ckpt_fault_stats *out);

/* The latency sampler, exposed so that its distribution can be tested
 * without sleeping. */
struct ckpt__fault_lat {
	int kind; /* 0 none, 1 fixed, 2 uniform, 3 clipped shifted exponential */
	uint64_t min_us, max_us;
	double theta_us; /* scale of the exponential */
};
/* 0, or -EINVAL (with ckpt_last_error) for an impossible latency plan. */
int ckpt__fault_lat_init(struct ckpt__fault_lat *lat,
			 const struct ckpt_fault_plan *plan);
/* One latency in microseconds; @rng is splitmix64 state. */
uint64_t ckpt__fault_lat_sample(const struct ckpt__fault_lat *lat,
				uint64_t *rng);

#endif
