/*
 * uring.c - the io_uring backend: one ring for every file of the flusher.
 *
 * An op is a chain of SQEs linked with IOSQE_IO_LINK: one IORING_OP_WRITE
 * per piece of at most ckpt__io_max_write bytes (one piece for anything up
 * to 1 GiB), then IORING_OP_FSYNC with IORING_FSYNC_DATASYNC.  The link makes
 * the kernel skip the datasync (-ECANCELED) when a write fails or comes back
 * short, so a failed op never spends a flush.  An op completes when every
 * CQE of its chain has been seen: finishing it at the first error would hand
 * the buffer back to the caller while the kernel may still be reading it.
 *
 * A short write is final (-EIO, short_write=1), not continued: on a regular
 * file the kernel only stops early at a limit (RLIMIT_FSIZE, quota, no
 * space) that the next write would hit too, and pieces are small enough
 * (<= 1 GiB < MAX_RW_COUNT) that the kernel's own per-call cap never cuts
 * a legitimate write.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "io_private.h"

/* user_data = slot << 16 | SYNC_BIT | piece: the slot finds the op, the
 * piece tells how many bytes its write had to return. */
#define UD_SYNC 0x8000u
#define UD_PIECE_MASK 0x7fffu
#define UD_PROBE UINT64_MAX

struct slot {
	struct ckpt__io_op *op; /* NULL when free */
	unsigned pending; /* CQEs still to see */
	size_t piece_len; /* ckpt__io_max_write when the op was issued */
	int next_free;
};

struct ur {
	struct ckpt__io io;
	struct io_uring ring;
	unsigned entries; /* SQ size: the longest chain that fits */
	struct slot *slots; /* depth of them */
	int free_head;
	struct ckpt__io_op *head, *tail; /* finished, not yet reaped (FIFO) */
	unsigned owed; /* SQEs in the SQ ring the kernel has not accepted */
	uint64_t accepted, seen; /* SQEs accepted, CQEs seen: the kernel
				  * still owes accepted - seen CQEs */
	int broken; /* hard io_uring_enter error, 0 while healthy */
};

/*
 * Hand the kernel every SQE prepared so far.  -EAGAIN (no memory for
 * requests now) and -EBUSY (completions backed up) leave them in the SQ
 * ring: they are already committed to, since liburing published the ring
 * tail, and must be retried, never abandoned.
 */
static int ur_flush(struct ur *ur)
{
	while (ur->owed > 0) {
		int ret = io_uring_submit(&ur->ring);

		if (ret > 0) {
			unsigned n = (unsigned)ret < ur->owed ? (unsigned)ret
							     : ur->owed;
			ur->owed -= n;
			ur->accepted += n;
			continue;
		}
		if (ret == -EINTR)
			continue;
		if (ret == 0 || ret == -EAGAIN || ret == -EBUSY)
			return -EAGAIN;
		ur->broken = ret;
		return ckpt__fail(ret, "io_uring_enter (submit): %s",
				  strerror(-ret));
	}
	return 0;
}

/* First failure wins, except that a cancellation only records that the
 * chain was cut: the failure that cut it (which may be reaped after the
 * cancelled fsync) is the one to report. */
static void ur_record(struct ckpt__io_op *op, int res, int phase, int shrt)
{
	if (op->res == 0 || (op->res == -ECANCELED && res != -ECANCELED)) {
		op->res = res;
		op->failed_phase = phase;
		op->short_write = shrt;
	}
}

static void ur_cqe(struct ur *ur, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	unsigned idx = (unsigned)(ud >> 16);
	struct slot *s;
	struct ckpt__io_op *op;

	ur->seen++;
	if (ud == UD_PROBE || idx >= ur->io.depth || !ur->slots[idx].op) {
		ckpt__log(CKPT_LOG_ERROR, "io_uring: stray completion %llx",
			  (unsigned long long)ud);
		return;
	}
	s = &ur->slots[idx];
	op = s->op;
	if (ud & UD_SYNC) {
		if (cqe->res < 0)
			ur_record(op, cqe->res, CKPT_IO_SYNC, 0);
	} else {
		size_t piece = ud & UD_PIECE_MASK;
		size_t want = op->len - piece * s->piece_len;

		if (want > s->piece_len)
			want = s->piece_len;
		if (cqe->res < 0)
			ur_record(op, cqe->res, CKPT_IO_WRITE, 0);
		else if ((size_t)cqe->res < want)
			ur_record(op, -EIO, CKPT_IO_WRITE, 1);
	}
	if (--s->pending > 0)
		return;
	op->done_ns = ckpt__mono_ns();
	op->ckpt__next = NULL;
	if (ur->tail)
		ur->tail->ckpt__next = op;
	else
		ur->head = op;
	ur->tail = op;
	s->op = NULL;
	s->next_free = ur->free_head;
	ur->free_head = (int)idx;
}

static void ur_drain_cq(struct ur *ur)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&ur->ring, &cqe) == 0) {
		ur_cqe(ur, cqe);
		io_uring_cqe_seen(&ur->ring, cqe);
	}
}

/* Submit what we owe, tolerating transient refusals for a moment: completed
 * CQEs are moved out of the way (that is what -EBUSY asks for). */
static int ur_flush_patiently(struct ur *ur)
{
	for (int tries = 0; tries < 100; tries++) {
		struct timespec ts = { 0, 100 * 1000 };
		int ret = ur_flush(ur);

		if (ret != -EAGAIN)
			return ret;
		ur_drain_cq(ur);
		nanosleep(&ts, NULL);
	}
	return -EAGAIN;
}

static int ur_submit(ckpt__io_t *io, struct ckpt__io_op *op)
{
	struct ur *ur = (struct ur *)io;
	size_t mw = ckpt__io_max_write;
	size_t pieces = op->len == 0 ? 1 : (op->len - 1) / mw + 1;
	unsigned need;
	int idx, ret;

	if (ur->broken)
		return ckpt__fail(ur->broken, "io_uring ring unusable since: %s",
				  strerror(-ur->broken));
	if (pieces + 1 > ur->entries)
		return ckpt__fail(-EINVAL,
				  "I/O op of %zu bytes needs %zu SQEs; the "
				  "ring has %u", op->len, pieces + 1,
				  ur->entries);
	need = (unsigned)pieces + 1;
	/* A chain must go to the kernel in one piece: a link cut at the end
	 * of a submission would let the datasync run before the last write. */
	if (io_uring_sq_space_left(&ur->ring) < need) {
		ret = ur_flush_patiently(ur);
		if (ret < 0 && ret != -EAGAIN)
			return ret;
		if (io_uring_sq_space_left(&ur->ring) < need)
			return -EAGAIN;
	}
	idx = ur->free_head;
	if (idx < 0) /* io.c bounds ops in flight by depth: cannot happen */
		return ckpt__fail(-EAGAIN, "io_uring: no free slot");

	for (unsigned i = 0; i < need; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ur->ring);

		if (!sqe) {
			/* Not reachable after the space check; should it ever
			 * be, withdraw the half-built chain: SQEs are only
			 * visible to the kernel once submit publishes the
			 * tail, so rewinding liburing's private tail is safe. */
			ur->ring.sq.sqe_tail -= i;
			return ckpt__fail(-EAGAIN, "io_uring: SQ ring full");
		}
		if (i + 1 < need) {
			size_t at = (size_t)i * mw;
			size_t n = op->len - at < mw ? op->len - at : mw;

			io_uring_prep_write(sqe, op->fd,
					    (const char *)op->buf + at,
					    (unsigned)n, op->off + at);
			sqe->flags |= IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, (uint64_t)idx << 16 | i);
		} else {
			io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
			io_uring_sqe_set_data64(sqe,
						(uint64_t)idx << 16 | UD_SYNC);
		}
	}
	ur->free_head = ur->slots[idx].next_free;
	ur->slots[idx].op = op;
	ur->slots[idx].pending = need;
	ur->slots[idx].piece_len = mw;
	ur->owed += need;

	/* From here the op is started whatever happens: its SQEs are
	 * published.  A refusal now is retried by reap; a hard error makes
	 * reap fail. */
	ret = ur_flush_patiently(ur);
	if (ret == -EAGAIN)
		ckpt__log(CKPT_LOG_WARN, "io_uring: submission deferred "
			  "(kernel busy); reap will retry");
	return 0;
}

static int ur_reap(ckpt__io_t *io, struct ckpt__io_op **done, int max,
		   int64_t wait_ns)
{
	struct ur *ur = (struct ur *)io;
	uint64_t deadline = ckpt__mono_ns() + (uint64_t)wait_ns;
	int n = 0;

	if (ur->owed > 0 && !ur->broken)
		ur_flush(ur);
	ur_drain_cq(ur);
	while (!ur->head && wait_ns > 0) {
		uint64_t now = ckpt__mono_ns();
		uint64_t left = deadline > now ? deadline - now : 0;
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		int ret;

		if (left == 0)
			break;
		if (ur->owed > 0 && !ur->broken) {
			/* Waiting in the kernel would submit behind our back
			 * and skew the owed count: poll instead. */
			struct timespec nap = { 0, left < 100000 ? (long)left
								 : 100000 };
			if (ur_flush(ur) == -EAGAIN)
				nanosleep(&nap, NULL);
			ur_drain_cq(ur);
			continue;
		}
		if (ur->accepted == ur->seen)
			break; /* nothing the kernel could complete */
		ts.tv_sec = (long long)(left / 1000000000u);
		ts.tv_nsec = (long long)(left % 1000000000u);
		ret = io_uring_wait_cqe_timeout(&ur->ring, &cqe, &ts);
		if (ret == -ETIME)
			break;
		if (ret < 0 && ret != -EINTR)
			return ckpt__fail(ret, "io_uring wait for completions: %s",
					  strerror(-ret));
		ur_drain_cq(ur);
	}
	while (n < max && ur->head) {
		struct ckpt__io_op *op = ur->head;

		ur->head = op->ckpt__next;
		if (!ur->head)
			ur->tail = NULL;
		op->ckpt__next = NULL;
		done[n++] = op;
	}
	if (n == 0 && ur->broken)
		return ckpt__fail(ur->broken, "io_uring ring unusable since: %s",
				  strerror(-ur->broken));
	return n;
}

static int ur_grow(ckpt__io_t *io, int fd, uint64_t old_size,
		   uint64_t new_size)
{
	(void)io;
	/* Rare (slot creation, a snapshot outgrowing its slot) and must be
	 * complete before the next write is issued: synchronous is right. */
	return ckpt__io_zero_fill(fd, old_size, new_size);
}

static void ur_close(ckpt__io_t *io)
{
	struct ur *ur = (struct ur *)io;

	/*
	 * Ring teardown in the kernel is asynchronous: writes still running
	 * would read caller buffers after we return.  Wait for every CQE the
	 * kernel owes first (SQEs it never accepted die with the ring).
	 */
	if (ur->owed > 0 && !ur->broken)
		ur_flush_patiently(ur);
	while (ur->accepted != ur->seen) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe(&ur->ring, &cqe);

		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			ckpt__log(CKPT_LOG_ERROR, "io_uring close: waiting for "
				  "%llu completions: %s",
				  (unsigned long long)(ur->accepted - ur->seen),
				  strerror(-ret));
			break;
		}
		ur_drain_cq(ur);
	}
	io_uring_queue_exit(&ur->ring);
	free(ur->slots);
	free(ur);
}

static const struct ckpt__io_vt ur_vt = {
	.submit = ur_submit,
	.reap = ur_reap,
	.grow = ur_grow,
	.close = ur_close,
};

/* io_uring_setup may succeed where io_uring_enter or _register are
 * filtered, and old kernels lack IORING_OP_WRITE: prove the whole path
 * before AUTO commits to it. */
static int ur_probe(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int ok, ret;

	if (!p)
		return ckpt__fail(-EOPNOTSUPP, "io_uring: probing opcodes failed");
	ok = io_uring_opcode_supported(p, IORING_OP_WRITE) &&
	     io_uring_opcode_supported(p, IORING_OP_FSYNC) &&
	     io_uring_opcode_supported(p, IORING_OP_NOP);
	io_uring_free_probe(p);
	if (!ok)
		return ckpt__fail(-EOPNOTSUPP,
				  "io_uring: kernel lacks IORING_OP_WRITE/FSYNC");
	sqe = io_uring_get_sqe(ring);
	if (!sqe) /* a fresh ring has room: only a broken liburing gets here */
		return ckpt__fail(-EOPNOTSUPP, "io_uring: no SQE on a new ring");
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, UD_PROBE);
	do
		ret = io_uring_submit_and_wait(ring, 1);
	while (ret == -EINTR);
	if (ret < 0)
		return ckpt__fail(ret, "io_uring: submitting a NOP: %s",
				  strerror(-ret));
	ret = io_uring_peek_cqe(ring, &cqe);
	if (ret < 0)
		return ckpt__fail(ret, "io_uring: no completion for a NOP: %s",
				  strerror(-ret));
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	if (ret < 0)
		return ckpt__fail(ret, "io_uring: NOP failed: %s", strerror(-ret));
	return 0;
}

int ckpt__uring_open(unsigned depth, ckpt__io_t **out)
{
	struct ur *ur = calloc(1, sizeof(*ur));
	unsigned entries = depth * 2 < 16 ? 16 : depth * 2;
	int ret;

	*out = NULL;
	if (!ur)
		return ckpt__fail(-ENOMEM, "allocating the io_uring backend");
	ur->slots = calloc(depth, sizeof(*ur->slots));
	if (!ur->slots) {
		free(ur);
		return ckpt__fail(-ENOMEM, "allocating %u io_uring slots", depth);
	}
	ret = io_uring_queue_init(entries, &ur->ring, 0);
	if (ret < 0) {
		free(ur->slots);
		free(ur);
		return ckpt__fail(ret, "io_uring_queue_init(%u): %s", entries,
				  strerror(-ret));
	}
	ret = ur_probe(&ur->ring);
	if (ret < 0) {
		io_uring_queue_exit(&ur->ring);
		free(ur->slots);
		free(ur);
		return ret;
	}
	ur->entries = ur->ring.sq.ring_entries;
	for (unsigned i = 0; i < depth; i++)
		ur->slots[i].next_free = i + 1 < depth ? (int)i + 1 : -1;
	ur->free_head = 0;
	ur->io.vt = &ur_vt;
	ur->io.name = "io_uring";
	ur->io.depth = depth;
	*out = &ur->io;
	return 0;
}
