/*
 * recover.c - what ckpt_open does after taking the writer lock and the
 * region: newest valid slot, plus a replay of the committed epochs still in
 * shared memory after it (R3 on the same boot); then, in
 * CKPT_FLUSHER_THREAD mode, hand the stream to this process's flusher.
 *
 * Why the replay is sound: ring space is released only after a snapshot
 * covering it is durable, so the ring holds every committed epoch after
 * the region's durable epoch; and the newest valid slot holds at least
 * that durable epoch (it was written and synced before being published).
 * Epochs the slot already holds are skipped by number.  If the slot is
 * older than what the region says was durable (the newest slot damaged or
 * deleted), the epochs in between exist nowhere: recovery refuses rather
 * than hand back a state that mixes two histories.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "flusher.h"
#include "internal.h"
#include "lock.h"
#include "probes.h"
#include "reader.h"
#include "stream.h"

int ckpt__recover(const char *absdir, const char *name, int sdirfd,
		  ckpt__region_t *rg, int reset, int release,
		  ckpt__snap_t **snapp, ckpt__slots_t *slots, ckpt__rd_t *rd)
{
	struct ckpt_region_flush *f = &rg->hdr->flush;
	uint64_t rel0, durable_end;
	int64_t dur0, slot_epoch;
	int failed0;
	ckpt__snap_t *snap;
	ckpt_epoch_t ep;
	ckpt_delta_t d;
	int ret;

	snap = ckpt__snap_new();
	if (!snap)
		return -ENOMEM;
	/* Before the slots: a flusher elsewhere (a sidecar) may publish a
	 * newer durable epoch while we read them, but the ring bytes from
	 * rel0 on stay intact - only the producer (our caller, blocked in
	 * ckpt_open) overwrites them.  Pairs with publish_durable's
	 * release stores. */
	dur0 = (int64_t)ckpt__load_acquire(&f->durable_epoch);
	rel0 = ckpt__load_acquire(&f->release_pos);
	/* A flusher that failed on I/O may have left its last write in the
	 * page cache, unsynced: it verifies like a good slot and would be
	 * lost at a power cut.  Trust nothing past what it published; the
	 * ring still holds those epochs (never released). */
	failed0 = !reset && ckpt__load_acquire(&f->error) != 0;

	ret = ckpt__slots_open_bounded(sdirfd, name, reset,
				       failed0 ? dur0 : INT64_MAX, slots, snap);
	if (ret < 0)
		goto fail_snap;
	slot_epoch = ckpt__snap_epoch(snap);
	if (dur0 > slot_epoch) {
		ret = ckpt__fail(CKPT_ECORRUPT,
				 "the slot files hold epoch %lld, but epoch "
				 "%lld was made durable (slot-0: %s; slot-1: "
				 "%s): epochs %lld..%lld exist nowhere; restore "
				 "the slot files, or open with CKPT_O_RESET",
				 (long long)slot_epoch, (long long)dur0,
				 slots->valid[0] ? "valid" : slots->why[0],
				 slots->valid[1] ? "valid" : slots->why[1],
				 (long long)slot_epoch + 1, (long long)dur0);
		goto fail_slots;
	}

	ckpt__rd_init(rd, rg);
	rd->rpos = rel0;
	durable_end = rel0;
	for (;;) {
		ret = ckpt__rd_next(rd, &ep);
		if (ret == 0)
			break;
		if (ret < 0) {
			if (ret == CKPT_ECORRUPT)
				ret = ckpt__fail(CKPT_ECORRUPT,
						 "region of stream %s is damaged "
						 "(%s); the slots hold epoch "
						 "%lld: " CKPT__RING_DAMAGED_HINT,
						 name, ckpt_last_error(),
						 (long long)slot_epoch, absdir, name);
			goto fail_rd;
		}
		if (ep.epoch <= slot_epoch) {
			durable_end = ep.end_pos; /* in the slot already */
			continue;
		}
		if (ep.epoch != ckpt__snap_epoch(snap) + 1) {
			ret = ckpt__fail(CKPT_ECORRUPT,
					 "the ring's next epoch is %lld but the "
					 "snapshot is at epoch %lld",
					 (long long)ep.epoch,
					 (long long)ckpt__snap_epoch(snap));
			goto fail_rd;
		}
		while ((ret = ckpt_epoch_next(&ep, &d)) > 0) {
			ret = ckpt__snap_apply(snap, &d);
			if (ret < 0)
				goto fail_rd;
		}
		ckpt__snap_set_epoch(snap, ep.epoch);
	}
	/* The slot may be newer than the region's durable epoch (a flusher
	 * died between its datasync and its publish; or the region is new):
	 * it is durable, so say so, and free the ring space it covers. */
	if (release && slot_epoch > dur0) {
		/* its writer may have died between write and datasync (a
		 * SIGKILL mid-flight): make it durable before saying so */
		if (fdatasync(slots->fd[slots->newest]) < 0) {
			ret = ckpt__fail(-errno, "slot-%d (epoch %lld) could not "
					 "be made durable: %s", slots->newest,
					 (long long)slot_epoch, strerror(errno));
			goto fail_rd;
		}
		ckpt__publish_durable(f, slot_epoch, durable_end);
	}
	CKPT_PROBE3(recovery, name, slot_epoch, ckpt__snap_epoch(snap));
	*snapp = snap;
	return 0;
fail_rd:
	ckpt__rd_free(rd);
fail_slots:
	ckpt__slots_close(slots);
fail_snap:
	ckpt__snap_free(snap);
	return ret;
}

/* How long an in-process open waits for a sidecar to hand over. */
#define HANDOVER_NS (10ull * 1000000000ull)

int ckpt__stream_recover(ckpt_stream_t *s)
{
	struct ckpt_region_prod *p = &s->rg.hdr->prod;
	struct ckpt__fstream_init in;
	ckpt__slots_t slots;
	ckpt__rd_t rd;
	ckpt__snap_t *snap = NULL;
	int thread = s->opts.flusher == CKPT_FLUSHER_THREAD;
	int flockfd = -1, ret;
	pid_t holder = 0;

	if (s->opts.flags & CKPT_O_NOSLOTS) {
		/* producer only: state lives wherever the caller's own
		 * flusher keeps it */
		s->recovered_epoch = 0;
		s->snap = ckpt__snap_new();
		return s->snap ? 0 : -ENOMEM;
	}
	if (thread) {
		/* A sidecar serving the stream (it was opened with an
		 * external flusher before) hands it over once what is
		 * committed is durable: wait for that, bounded. */
		uint64_t until = ckpt__mono_ns() + HANDOVER_NS;
		while ((ret = ckpt__lock(s->sdirfd, CKPT_LOCK_FLUSHER,
					 &holder)) == -EBUSY &&
		       ckpt__mono_ns() < until)
			usleep(10000);
		if (ret == -EBUSY)
			return ckpt__fail(-EBUSY, "stream %s is flushed by pid "
					  "%d (a shmckptd sidecar?), which did "
					  "not hand it over in 10 s: open it "
					  "with CKPT_FLUSHER_EXTERNAL, or stop "
					  "that flusher", s->name, (int)holder);
		if (ret < 0)
			return ret;
		flockfd = ret;
	}
	/* (CKPT_O_RESET blanked the slots already, before the region.)  A
	 * sidecar writing the slots while we read them can tear both reads;
	 * its publishes bump the futex word, so when one happened during a
	 * failed read, read again (a few times at most). */
	for (int tries = 0;; tries++) {
		uint32_t w0 = ckpt__load_acquire(&s->rg.hdr->flush.durable_futex);
		ret = ckpt__recover(s->absdir, s->name, s->sdirfd, &s->rg, 0,
				    thread, &snap, &slots, &rd);
		if (thread || ret != CKPT_ECORRUPT || tries == 3 ||
		    ckpt__load_acquire(&s->rg.hdr->flush.durable_futex) == w0)
			break;
	}
	if (ret < 0)
		goto fail_lock;
	s->recovered_epoch = ckpt__snap_epoch(snap);
	/* epochs continue across restarts, also when the region is new */
	if (s->pr.epoch < s->recovered_epoch) {
		s->pr.epoch = s->recovered_epoch;
		/* we are the producer; pairs with readers' acquire of
		 * commit_pos, which is stored after this at the next commit */
		ckpt__store_relaxed(&p->committed_epoch,
				    (uint64_t)s->recovered_epoch);
	}
	if (!thread) {
		/* An open after a failure is the request to retry, as it is
		 * in-process: the stream waits for a flusher now (a sidecar
		 * takes a stream that is no longer FAILED) instead of
		 * answering CKPT_EFAILED.  Only from FAILED, so a sidecar
		 * that took it meanwhile is never overwritten; the error word
		 * stays (recovery distrusts by it until a new write). */
		uint32_t failed = CKPT_FAILED;
		__atomic_compare_exchange_n(&s->rg.hdr->flush.health, &failed,
					    (uint32_t)CKPT_NOFLUSHER, 0,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
		/* a sidecar flushes: keep the recovered state for the
		 * accessors, and nothing else */
		ckpt__rd_free(&rd);
		ckpt__slots_close(&slots);
		s->snap = snap;
		return 0;
	}
	ret = ckpt__flusher_get(s->opts.backend, s->opts.fault,
				s->opts.flush_interval_us, &s->fl);
	if (ret < 0) {
		ckpt__fail(ret, "cannot start the flusher: %s",
			   ckpt_strerror(ret));
		goto fail_all;
	}
	memset(&in, 0, sizeof(in));
	in.name = s->name;
	in.rg = &s->rg;
	in.own_region = 0;
	in.snap = snap;
	in.slots = &slots;
	in.rd = &rd;
	in.flockfd = flockfd;
	ret = ckpt__flusher_add(s->fl, &in, &s->fs);
	if (ret < 0) {
		ckpt__flusher_put(s->fl);
		s->fl = NULL;
		goto fail_all;
	}
	/* the flusher owns snap now; it only reads it until the first commit
	 * (nothing new to apply), which is as long as the accessors use it */
	s->snap = snap;
	return 0;
fail_all:
	ckpt__rd_free(&rd);
	ckpt__slots_close(&slots);
	ckpt__snap_free(snap);
fail_lock:
	if (flockfd >= 0)
		close(flockfd);
	return ret;
}

int ckpt__stream_stop(ckpt_stream_t *s, int *err)
{
	int all_durable = 0;

	*err = 0;
	if (s->fl) {
		/* pr.epoch: what this process committed, by its own count */
		*err = ckpt__flusher_remove(s->fl, s->fs, 10000, s->pr.epoch);
		all_durable = *err == 0;
		ckpt__flusher_put(s->fl);
		s->fl = NULL;
		s->fs = NULL;
		s->snap = NULL; /* freed with the stream by the flusher */
	} else if (s->snap) {
		ckpt__snap_free(s->snap);
		s->snap = NULL;
	}
	return all_durable;
}
