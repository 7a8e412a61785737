/*
 * shmckptd.c - the sidecar: one process, one flusher thread, one io_uring,
 * serving every CKPT_FLUSHER_EXTERNAL stream under the directories it is
 * given (docs/SIDECAR.md).
 *
 * Discovery is a rescan of /dev/shm every --scan-ms (100 ms): a stream's
 * region is "/shmckpt.<uid>.<dirhash>.<stream>", so the regions of a
 * directory are the names with its <dirhash>.  The main thread owns a table
 * of the names it has seen and what it decided about each:
 *
 *   SERVED   handed to the flusher (core/flusher.c) with its flusher lock;
 *            checked every scan: region replaced or removed, stream failed,
 *            consumer gone (writer lock free) and everything durable
 *   IDLE     nothing to do (consumer gone, all durable; or not ready):
 *            re-examined when its lock file changes, at least every second
 *   OTHER    another flusher holds the flusher lock: re-examined each second
 *   IGNORED  a region of an in-process-flusher stream: never ours
 *   REFUSED  foreign uid, unknown layout, damaged, failed earlier: logged
 *            once, re-examined only when the region is replaced
 *   WAIT     being created, or a transient error: re-examined soon
 *
 * The rest (reading rings, coalescing, writing slots, publishing durable
 * epochs, releasing ring space) is the very code of the in-process flusher.
 * Why a kill of either side loses nothing (R3, R4) is argued in
 * docs/SIDECAR.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "fault.h"
#include "flusher.h"
#include "internal.h"
#include "layout.h"
#include "lock.h"
#include "region.h"
#include "shmckpt.h"

#define SHM_DIR "/dev/shm"
#define SHM_PREFIX "shmckpt." /* in /dev/shm, without the leading '/' */
#define MAX_DIRS 64
#define NBUCKETS 1024u
#define SEC_NS 1000000000ull
#define RECHECK_NS SEC_NS /* IDLE and OTHER: full look at least this often */
#define RETRY_NS (SEC_NS / 10) /* WAIT after a transient error */
#define GONE_REMOVE_MS 1000 /* bound of a removal the main loop waits for */
#define CREATE_GRACE_NS (2 * SEC_NS) /* a new stream's slots may not exist yet */

#define EXIT_USAGE 64

enum { L_ERROR = CKPT_LOG_ERROR, L_WARN = CKPT_LOG_WARN, L_INFO = CKPT_LOG_INFO,
       L_DEBUG = CKPT_LOG_DEBUG };

enum ent_state { E_NEW, E_SERVED, E_IDLE, E_OTHER, E_IGNORED, E_REFUSED,
		 E_WAIT };

struct sdir {
	char abs[CKPT_DIR_MAX]; /* realpath of --dir */
	char hash[17]; /* 16 hex digits of its region names */
};

struct ent {
	struct ent *next; /* hash chain */
	const struct sdir *d;
	unsigned uid; /* from the region's name */
	char name[CKPT_NAME_MAX + 1];
	int state;
	int seen; /* found by the current scan */
	dev_t dev; /* the region file examined last */
	ino_t ino;
	uint64_t since; /* when that file was first seen (monotonic ns) */
	struct timespec lock_mtime, lock_ctime; /* lock file, at that time */
	uint64_t next_exam; /* monotonic ns */
	int said; /* code whose refusal was logged (log once) */
	int failed_here; /* refused as failed: looked at again each second,
			  * for its consumer's request to retry */
	int retrying; /* taking it again on that request (for the log) */
	/* SERVED */
	ckpt__fstream_t *fs;
	ckpt__region_t *rg; /* the flusher's (own_region); ours to read */
	int sdirfd;
	pid_t writer; /* consumer pid seen last, 0 gone */
	int unlinked; /* its name was removed from /dev/shm under us */
};

static struct sdir dirs[MAX_DIRS];
static int ndirs;
static struct ent *tab[NBUCKETS];
static ckpt__flusher_t *fl;
static int log_level = L_INFO;
static int journal; /* stderr is the journal: "<N>" priority prefixes */
static unsigned nserved;

/* ------------------------------------------------------------------------
 * Logging: one line per event on stderr
 * ------------------------------------------------------------------------ */

static void __attribute__((format(printf, 2, 3))) say(int level,
						      const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	static const int prio[] = { 3, 4, 6, 7 }; /* syslog priorities */
	char line[1024], ts[40];
	struct timespec now;
	struct tm tm;
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (journal) { /* the journal stamps time and pid itself */
		fprintf(stderr, "<%d>%s: %s\n", prio[level], names[level], line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ shmckptd[%d] %s: %s\n", ts,
		now.tv_nsec / 1000000, (int)getpid(), names[level], line);
}

/* ------------------------------------------------------------------------
 * The table of region names
 * ------------------------------------------------------------------------ */

static unsigned bucket(const struct sdir *d, unsigned uid, const char *name)
{
	uint32_t h = 2166136261u ^ (uint32_t)(d - dirs) ^ (uid * 31u);
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % NBUCKETS;
}

static struct ent *lookup(const struct sdir *d, unsigned uid, const char *name,
			  int create)
{
	unsigned b = bucket(d, uid, name);
	struct ent *e;

	for (e = tab[b]; e; e = e->next)
		if (e->d == d && e->uid == uid && !strcmp(e->name, name))
			return e;
	if (!create)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->d = d;
	e->uid = uid;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->state = E_NEW;
	e->sdirfd = -1;
	e->next = tab[b];
	tab[b] = e;
	return e;
}

static void forget(struct ent *e)
{
	struct ent **pp = &tab[bucket(e->d, e->uid, e->name)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	free(e);
}

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static int lock_stat(const struct ent *e, struct stat *st)
{
	char p[CKPT_DIR_MAX + CKPT_NAME_MAX + 16];

	snprintf(p, sizeof(p), "%s/%s/lock", e->d->abs, e->name);
	return stat(p, st);
}

static int ts_eq(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Remember the lock file as it is now: a consumer that opens the stream
 * writes its pid there (core/lock.c), which changes it. */
static void note_lock(struct ent *e)
{
	struct stat st;

	if (lock_stat(e, &st) == 0) {
		e->lock_mtime = st.st_mtim;
		e->lock_ctime = st.st_ctim;
	} else {
		memset(&e->lock_mtime, 0, sizeof(e->lock_mtime));
		memset(&e->lock_ctime, 0, sizeof(e->lock_ctime));
	}
}

static int lock_changed(const struct ent *e)
{
	struct stat st;

	if (lock_stat(e, &st) < 0)
		return e->lock_mtime.tv_sec != 0;
	return !ts_eq(&st.st_mtim, &e->lock_mtime) ||
	       !ts_eq(&st.st_ctim, &e->lock_ctime);
}

static int64_t committed_epoch(const struct ckpt_region *h)
{
	/* pairs with the producer's release store of commit_pos, after
	 * which committed_epoch is stored (read it after the acquire) */
	(void)ckpt__load_acquire(&h->prod.commit_pos);
	return (int64_t)ckpt__load_relaxed(&h->prod.committed_epoch);
}

static int64_t durable_epoch(const struct ckpt_region *h)
{
	/* pairs with ckpt__publish_durable's store_release */
	return (int64_t)ckpt__load_acquire(&h->flush.durable_epoch);
}

static int slots_present(int sdirfd)
{
	struct stat st;

	return fstatat(sdirfd, "slot-0", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       fstatat(sdirfd, "slot-1", &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The region file under @e's name is still the one of @st. */
static int same_region(const struct ent *e, const struct stat *st)
{
	char p[sizeof(SHM_DIR) + sizeof(SHM_PREFIX) + 32 + CKPT_NAME_MAX];
	struct stat now;

	snprintf(p, sizeof(p), SHM_DIR "/" SHM_PREFIX "%u.%s.%s", e->uid,
		 e->d->hash, e->name);
	return stat(p, &now) == 0 && now.st_ino == st->st_ino &&
	       now.st_dev == st->st_dev;
}

/* Log a refusal once per (region file, reason); returns E_REFUSED. */
static int refuse(struct ent *e, int level, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(struct ent *e, int level, int code, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	if (e->said == code)
		return E_REFUSED;
	e->said = code;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	say(level, "stream %s in %s: not served: %s", e->name, e->d->abs, why);
	return E_REFUSED;
}

/* ------------------------------------------------------------------------
 * Taking a stream: the pattern of core/recover.c, with the region ours
 * ------------------------------------------------------------------------ */

/*
 * Look at a region that is not served, and serve it if it is ours to
 * serve.  Order matters: the flusher lock is taken only once the region is
 * known to be an external-flusher one (an in-process consumer takes that
 * lock itself, during its ckpt_open, and must never find it held by us),
 * and only once both slot files exist (a consumer that opens a new stream
 * creates them; two creators would race on the renames).
 */
static int examine(struct ent *e, const struct stat *shm_st)
{
	const char *abs = e->d->abs;
	struct ckpt__fstream_init in;
	ckpt__region_t rg, *rgp;
	ckpt__slots_t slots;
	ckpt__rd_t rd;
	ckpt__snap_t *snap = NULL;
	struct ckpt_region *h;
	int64_t committed, durable;
	pid_t holder = 0;
	int ret, sdirfd = -1, flock = -1, writer, err;
	char why[sizeof(((struct ckpt_region_flush *)0)->why)];

	memset(&rg, 0, sizeof(rg));
	ret = ckpt__region_attach(abs, e->name, &rg);
	if (ret == -ENOENT)
		return E_WAIT; /* gone since readdir: the next scan forgets it */
	if (ret == -EAGAIN)
		return E_WAIT; /* its creator is still filling it in */
	if (ret == CKPT_EFOREIGN) /* a file of another uid, or not 0600 */
		return refuse(e, L_WARN, ret, "foreign: %s", ckpt_last_error());
	if (ret == CKPT_EVERSION || ret == CKPT_ECORRUPT ||
	    ret == CKPT_ESTREAM)
		return refuse(e, L_WARN, ret, "%s (%s)", ckpt_last_error(),
			      ckpt_strerror(ret));
	if (ret < 0) {
		refuse(e, L_WARN, ret, "attaching its region: %s (%s); "
		       "retrying", ckpt_last_error(), ckpt_strerror(ret));
		return E_WAIT;
	}
	h = rg.hdr;
	/* the newest open's mode (pairs with ckpt_open's store_release) */
	if (ckpt__load_acquire(&h->prod.flusher_mode) != CKPT_FLUSHER_EXTERNAL) {
		unsigned mode = ckpt__load_acquire(&h->prod.flusher_mode);
		ckpt__region_unmap(&rg);
		if (e->said != 1) {
			e->said = 1;
			say(L_DEBUG, "stream %s in %s: flushed in-process "
			    "(flusher_mode %u): not ours", e->name, abs, mode);
		}
		return E_IGNORED;
	}
	/* A flusher failed it (EIO, a damaged ring...): health FAILED, the
	 * state, not an event, we go by.  Its consumer's next open is the
	 * request to retry, as an in-process reopen retries: that open moves
	 * health from FAILED to NOFLUSHER (core/recover.c).  The error word
	 * under any other health is the mark a retry keeps until its first
	 * write (one that died first leaves it, with health HEALTHY): taking
	 * such a stream is safe, since recovery below distrusts any slot
	 * newer than the durable epoch while the word is set, and our
	 * flusher clears it only after its first write replaced that slot.
	 * Pairs with fail()'s store_release of error, then health, in
	 * core/flusher.c. */
	e->retrying = 0;
	err = ckpt__load_acquire(&h->flush.error);
	if (err) {
		ckpt__why_get(&h->flush, why, sizeof(why));
		if (ckpt__load_acquire(&h->flush.health) == CKPT_FAILED) {
			ckpt__region_unmap(&rg);
			e->failed_here = 1;
			return refuse(e, L_WARN, err, "it failed (%s: %s); its "
				      "durable epoch stays frozen until its "
				      "consumer opens it again (with the "
				      "cause fixed): then it is retried",
				      ckpt_strerror(err), why);
		}
		e->retrying = 1; /* said once, with "serving" */
	}
	e->failed_here = 0;

	ret = ckpt__stream_dir(abs, e->name, 0);
	if (ret < 0) {
		ckpt__region_unmap(&rg);
		if (ret == CKPT_EFOREIGN)
			return refuse(e, L_WARN, ret, "foreign: %s",
				      ckpt_last_error());
		/* a region without its directory: left over, nothing to
		 * write to; look again now and then */
		if (e->said != ret) {
			e->said = ret;
			say(L_DEBUG, "stream %s in %s: %s; idle", e->name, abs,
			    ckpt_last_error());
		}
		return E_IDLE;
	}
	sdirfd = ret;
	writer = ckpt__lock_holder(sdirfd, CKPT_LOCK_WRITER);
	committed = committed_epoch(h);
	durable = durable_epoch(h);
	if (writer <= 0 && committed <= durable) {
		/* consumer gone (or never there) and nothing left to flush */
		close(sdirfd);
		ckpt__region_unmap(&rg);
		return E_IDLE;
	}
	if (!slots_present(sdirfd)) {
		close(sdirfd);
		ckpt__region_unmap(&rg);
		if (writer > 0 && ckpt__mono_ns() - e->since < CREATE_GRACE_NS)
			return E_WAIT; /* its consumer is making them */
		/* a producer-only stream (CKPT_O_NOSLOTS), or one whose
		 * consumer died before its slots existed: not ours (a
		 * consumer that opens it again changes its lock file) */
		if (e->said != 2) {
			e->said = 2;
			say(L_DEBUG, "stream %s in %s: no slot files (a "
			    "producer-only stream?); idle", e->name, abs);
		}
		return E_IDLE;
	}
	ret = ckpt__lock(sdirfd, CKPT_LOCK_FLUSHER, &holder);
	if (ret < 0) {
		close(sdirfd);
		ckpt__region_unmap(&rg);
		if (ret == -EBUSY) {
			if (e->said != ret) {
				e->said = ret;
				say(L_DEBUG, "stream %s in %s: flushed by pid "
				    "%d: not ours while it lasts", e->name, abs,
				    (int)holder);
			}
			return E_OTHER;
		}
		refuse(e, L_WARN, ret, "taking its flusher lock: %s",
		       ckpt_last_error());
		return E_WAIT;
	}
	flock = ret;
	/* The region we mapped is still the one under the name (not one
	 * replaced by a CKPT_O_RESET open since our readdir), and nobody
	 * reopened it in-process meanwhile (that open now waits for the
	 * lock we hold). */
	if (!same_region(e, shm_st)) {
		ret = E_WAIT;
		goto fail;
	}
	if (ckpt__load_acquire(&h->prod.flusher_mode) != CKPT_FLUSHER_EXTERNAL) {
		ret = E_NEW;
		goto fail;
	}

	rgp = malloc(sizeof(*rgp));
	if (!rgp) {
		ret = E_WAIT;
		goto fail;
	}
	*rgp = rg;
	ret = ckpt__recover(abs, e->name, sdirfd, rgp, 0, 1, &snap, &slots,
			    &rd);
	if (ret < 0) {
		int code = ret;
		free(rgp);
		if (code == CKPT_ECORRUPT || code == CKPT_ESTREAM ||
		    code == CKPT_EFOREIGN || code == CKPT_EVERSION) {
			ret = refuse(e, L_ERROR, code, "cannot recover it: %s "
				     "(%s)", ckpt_last_error(),
				     ckpt_strerror(code));
			goto fail;
		}
		refuse(e, L_WARN, code, "recovering it: %s (%s); retrying",
		       ckpt_last_error(), ckpt_strerror(code));
		ret = E_WAIT;
		goto fail;
	}
	memset(&in, 0, sizeof(in));
	in.name = e->name;
	in.rg = rgp;
	in.own_region = 1;
	in.snap = snap;
	in.slots = &slots;
	in.rd = &rd;
	in.flockfd = flock;
	ret = ckpt__flusher_add(fl, &in, &e->fs);
	if (ret < 0) {
		ckpt__rd_free(&rd);
		ckpt__slots_close(&slots);
		ckpt__snap_free(snap);
		free(rgp);
		say(L_ERROR, "stream %s in %s: cannot hand it to the flusher: "
		    "%s", e->name, abs, ckpt_strerror(ret));
		ret = E_WAIT;
		goto fail;
	}
	e->rg = rgp;
	e->sdirfd = sdirfd;
	e->writer = writer > 0 ? writer : 0;
	e->said = 0;
	nserved++;
	char who[32] = "gone";
	if (writer > 0)
		snprintf(who, sizeof(who), "pid %d", (int)writer);
	say(L_INFO, "stream %s in %s: serving: recovered epoch %lld, durable "
	    "%lld, committed %lld, consumer %s%s", e->name, abs,
	    (long long)ckpt__snap_epoch(snap),
	    (long long)durable_epoch(rgp->hdr),
	    (long long)committed_epoch(rgp->hdr), who,
	    e->retrying ? "; retrying after an earlier failure, as its "
			  "consumer asked by opening it again" : "");
	return E_SERVED;
fail:
	close(flock);
	close(sdirfd);
	ckpt__region_unmap(&rg);
	return ret;
}

/* ------------------------------------------------------------------------
 * Letting a stream go
 * ------------------------------------------------------------------------ */

/* Take a served stream back from the flusher: wait (at most @timeout_ms)
 * for durable >= committed, or only for a write in flight (@drop). */
static int release(struct ent *e, int drop, int timeout_ms)
{
	int ret = drop ? ckpt__flusher_drop(fl, e->fs)
		       : ckpt__flusher_remove(fl, e->fs, timeout_ms, -1);

	/* the flusher unmapped and freed the region, closed the slots and
	 * the flusher lock */
	e->fs = NULL;
	e->rg = NULL;
	if (e->sdirfd >= 0)
		close(e->sdirfd);
	e->sdirfd = -1;
	nserved--;
	return ret;
}

/* A served stream failed: say why, stop serving it, serve the others. */
static void drop_failed(struct ent *e)
{
	struct ckpt_region_flush *f = &e->rg->hdr->flush;
	char why[sizeof(f->why)];
	int err = ckpt__load_acquire(&f->error);
	int64_t d = durable_epoch(e->rg->hdr), c = committed_epoch(e->rg->hdr);

	ckpt__why_get(f, why, sizeof(why));
	/* looked at each second from now on, for its consumer's reopen */
	e->failed_here = 1;
	e->next_exam = ckpt__mono_ns() + RECHECK_NS;
	release(e, 1, 0);
	e->said = err ? err : CKPT_EFAILED;
	say(L_ERROR, "stream %s in %s: failed (%s: %s); dropped, durable epoch "
	    "stays %lld of %lld committed; the other streams are served; "
	    "retried when its consumer opens it again", e->name, e->d->abs,
	    ckpt_strerror(err), why, (long long)d, (long long)c);
}

/* ------------------------------------------------------------------------
 * One scan
 * ------------------------------------------------------------------------ */

/* A served stream, once per scan. */
static void check_served(struct ent *e, const struct stat *st, uint64_t now)
{
	struct ckpt_region *h = e->rg->hdr;
	int64_t c, d;
	int writer, ret;

	if (st->st_ino != e->ino || st->st_dev != e->dev) {
		/* Replaced (an open with CKPT_O_RESET, or a new open after
		 * the old region was removed): a consumer has recovered
		 * from the slots and goes on in the new region.  Not one more
		 * write from the old one: it would put the old history into
		 * slots the new one builds on. */
		ret = release(e, 1, 0);
		say(L_INFO, "stream %s in %s: region replaced; old one dropped "
		    "(%s), taking the new one", e->name, e->d->abs,
		    ckpt_strerror(ret));
		e->state = E_NEW;
		e->said = 0;
		e->unlinked = 0;
		return;
	}
	if (ckpt__fstream_failed(e->fs)) {
		drop_failed(e);
		e->state = E_REFUSED;
		return;
	}
	if (ckpt__load_acquire(&h->prod.flusher_mode) != CKPT_FLUSHER_EXTERNAL) {
		/* reopened with a flusher thread of its own, whose open waits
		 * for our lock: hand over once what is committed is durable
		 * (that open commits nothing before it has the lock) */
		ret = release(e, 0, GONE_REMOVE_MS);
		say(L_INFO, "stream %s in %s: reopened with an in-process "
		    "flusher; handed over (%s)", e->name, e->d->abs,
		    ckpt_strerror(ret));
		e->state = E_NEW;
		e->said = 0;
		return;
	}
	writer = ckpt__lock_holder(e->sdirfd, CKPT_LOCK_WRITER);
	if (writer < 0) {
		say(L_DEBUG, "stream %s: writer lock: %s", e->name,
		    ckpt_strerror(writer));
		return;
	}
	if (writer > 0) {
		if (writer != e->writer)
			say(L_INFO, "stream %s in %s: consumer pid %d",
			    e->name, e->d->abs, (int)writer);
		e->writer = writer;
		return;
	}
	c = committed_epoch(h);
	d = durable_epoch(h);
	if (d < c) {
		/* gone, but its last epochs are in the ring only: keep
		 * flushing; they are what R3 promises */
		if (e->writer)
			say(L_INFO, "stream %s in %s: consumer pid %d gone; "
			    "flushing epochs %lld..%lld before going idle",
			    e->name, e->d->abs, (int)e->writer,
			    (long long)d + 1, (long long)c);
		e->writer = 0;
		return;
	}
	/* Everything committed is durable.  A consumer may open again right
	 * now: the removal then waits, bounded, and the next scan takes the
	 * stream back.  Nothing is lost either way: ring space is released
	 * only by durable snapshots. */
	ret = release(e, 0, GONE_REMOVE_MS);
	if (ret == 0) {
		say(L_INFO, "stream %s in %s: idle: consumer gone, epochs "
		    "through %lld durable", e->name, e->d->abs, (long long)c);
		e->state = E_IDLE;
		note_lock(e);
		e->next_exam = now + RECHECK_NS;
	} else if (ret == -ETIMEDOUT) {
		say(L_DEBUG, "stream %s: a consumer came back while we let "
		    "it go; taking it again", e->name);
		e->state = E_WAIT;
		e->next_exam = now;
	} else {
		say(L_ERROR, "stream %s in %s: released with %s",
		    e->name, e->d->abs, ckpt_strerror(ret));
		e->state = E_REFUSED;
	}
}

static void visit(struct ent *e, const struct stat *st, uint64_t now)
{
	int fresh = st->st_ino != e->ino || st->st_dev != e->dev;

	e->seen = 1;
	if (e->state == E_SERVED) {
		check_served(e, st, now);
		if (e->state != E_NEW)
			return;
		fresh = 1; /* replaced: take the new region now */
	}
	if (e->uid != (unsigned)geteuid()) {
		/* named for another user: its stream directory and slots
		 * are that user's, and so is the flushing of it */
		if (fresh || e->state != E_REFUSED) {
			e->said = 0;
			e->state = refuse(e, L_WARN, CKPT_EFOREIGN,
					  "foreign: its region is named for uid "
					  "%u (file owner uid %u), not for us "
					  "(uid %u); run a shmckptd as that user",
					  e->uid, (unsigned)st->st_uid,
					  (unsigned)geteuid());
			e->dev = st->st_dev;
			e->ino = st->st_ino;
		}
		return;
	}
	if (fresh) {
		e->said = 0;
		e->failed_here = 0; /* a new region, a new history */
		e->state = E_NEW;
		e->since = now;
	}
	switch (e->state) {
	case E_REFUSED:
		/* until the region is replaced; a failed one, also each
		 * second (or when the lock file changes: an open), for its
		 * consumer's request to retry */
		if (!e->failed_here ||
		    (now < e->next_exam && !lock_changed(e)))
			return;
		break;
	case E_IGNORED:
		/* in-process for now: each open says its mode, and a
		 * reopen with an external flusher changes the lock file */
	case E_IDLE:
	case E_OTHER:
		if (now < e->next_exam && !lock_changed(e))
			return;
		break;
	case E_WAIT:
		if (now < e->next_exam)
			return;
		break;
	default:
		break;
	}
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	note_lock(e); /* before: a change while we look is seen next time */
	e->state = examine(e, st);
	e->next_exam = now + (e->state == E_WAIT ? RETRY_NS : RECHECK_NS);
	if (e->state == E_WAIT && e->said == 0)
		e->next_exam = now; /* just not ready: look at the next scan */
}

/* "shmckpt.<uid>.<hash>.<name>": the directory, uid and name, or NULL. */
static const struct sdir *parse(const char *fn, unsigned *uid,
				const char **name)
{
	const char *p = fn + sizeof(SHM_PREFIX) - 1;
	unsigned long u = 0;
	int digits = 0;

	if (strncmp(fn, SHM_PREFIX, sizeof(SHM_PREFIX) - 1))
		return NULL;
	for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++)
		u = u * 10 + (unsigned long)(*p - '0');
	if (!digits || *p != '.' || u > UINT_MAX)
		return NULL;
	p++;
	for (int i = 0; i < ndirs; i++)
		if (!strncmp(p, dirs[i].hash, 16) && p[16] == '.') {
			*uid = (unsigned)u;
			*name = p + 17;
			return ckpt__check_name(*name) == 0 ? &dirs[i] : NULL;
		}
	return NULL;
}

/*
 * A served region whose name was removed from /dev/shm (by hand, by a
 * RemoveIPC= of systemd or logind).  While its consumer lives it goes on
 * committing into its mapping, and nobody else can open the stream (the
 * writer lock): keep serving it.  Once the consumer is gone, drop it at
 * once: a new consumer may open the stream any moment, recover from the
 * slots, and must not find this region's history written over them.
 * Returns 1 if it is still served.
 */
static int gone_served(struct ent *e)
{
	int64_t c, d;
	int writer, ret;

	if (ckpt__fstream_failed(e->fs)) {
		drop_failed(e);
		return 0;
	}
	writer = ckpt__lock_holder(e->sdirfd, CKPT_LOCK_WRITER);
	if (writer > 0) {
		if (!e->unlinked)
			say(L_WARN, "stream %s in %s: its region was removed "
			    "from " SHM_DIR " while consumer pid %d runs: still "
			    "served; if that consumer dies, the epochs not yet "
			    "durable are lost (the removal made them "
			    "unreachable)", e->name, e->d->abs, (int)writer);
		e->unlinked = 1;
		return 1;
	}
	c = committed_epoch(e->rg->hdr);
	d = durable_epoch(e->rg->hdr);
	ret = release(e, 1, 0);
	if (d >= c)
		say(L_INFO, "stream %s in %s: region removed; no longer served "
		    "(%s), epochs through %lld durable", e->name, e->d->abs,
		    ckpt_strerror(ret), (long long)d);
	else
		say(L_WARN, "stream %s in %s: region removed; no longer served "
		    "(%s); epochs %lld..%lld were only in it and are lost",
		    e->name, e->d->abs, ckpt_strerror(ret), (long long)d + 1,
		    (long long)c);
	return 0;
}

static void scan(void)
{
	uint64_t now = ckpt__mono_ns();
	struct dirent *de;
	DIR *dp = opendir(SHM_DIR);
	int complete = 1;

	if (!dp) {
		say(L_ERROR, "cannot read " SHM_DIR ": %s", strerror(errno));
		return;
	}
	while ((de = readdir(dp))) {
		const struct sdir *d;
		const char *name;
		struct stat st;
		struct ent *e;
		unsigned uid;

		d = parse(de->d_name, &uid, &name);
		if (!d)
			continue;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone already */
		if (!S_ISREG(st.st_mode))
			continue;
		e = lookup(d, uid, name, 1);
		if (!e) {
			say(L_ERROR, "out of memory: scan cut short");
			complete = 0;
			break;
		}
		visit(e, &st, now);
	}
	closedir(dp);

	/* names that are gone (not after a partial scan: what it did not
	 * reach is not gone) */
	for (unsigned b = 0; b < NBUCKETS; b++) {
		struct ent *e = tab[b], *next;
		for (; e; e = next) {
			next = e->next;
			if (e->seen || !complete) {
				e->seen = 0;
				continue;
			}
			if (e->state == E_SERVED && gone_served(e))
				continue;
			forget(e);
		}
	}
}

/* ------------------------------------------------------------------------
 * Drain, status, main
 * ------------------------------------------------------------------------ */

/* Take every stream back, each waiting for its committed epochs to be
 * durable, all within @ms.  Returns the count that did not make it. */
static int drain(int ms)
{
	uint64_t deadline = ckpt__mono_ns() + (uint64_t)ms * 1000000ull;
	int late = 0;

	for (unsigned b = 0; b < NBUCKETS; b++)
		for (struct ent *e = tab[b]; e; e = e->next) {
			uint64_t now = ckpt__mono_ns();
			int64_t c;
			int ret, left;

			if (e->state != E_SERVED)
				continue;
			if (ckpt__fstream_failed(e->fs)) {
				drop_failed(e);
				e->state = E_REFUSED;
				late++;
				continue;
			}
			left = now >= deadline ? 0
					       : (int)((deadline - now) / 1000000);
			c = committed_epoch(e->rg->hdr);
			ret = release(e, 0, left);
			e->state = E_IDLE;
			if (ret == 0) {
				say(L_INFO, "stream %s in %s: drained: epochs "
				    "through %lld durable", e->name, e->d->abs,
				    (long long)c);
				continue;
			}
			late++;
			say(L_WARN, "stream %s in %s: not drained (%s): the "
			    "epochs after the durable one stay in shared "
			    "memory, where the next flusher or the consumer's "
			    "next open finds them", e->name, e->d->abs,
			    ckpt_strerror(ret));
		}
	return late;
}

static void status(void)
{
	say(L_INFO, "%u streams served with the %s backend", nserved,
	    ckpt__flusher_backend(fl));
	for (unsigned b = 0; b < NBUCKETS; b++)
		for (struct ent *e = tab[b]; e; e = e->next) {
			static const char *const st[] = {
				"new", "served", "idle", "flushed by another",
				"in-process", "refused", "waiting"
			};
			if (e->state == E_SERVED)
				say(L_INFO, "  %s in %s: served, committed %lld, "
				    "durable %lld, consumer %d", e->name,
				    e->d->abs,
				    (long long)committed_epoch(e->rg->hdr),
				    (long long)durable_epoch(e->rg->hdr),
				    (int)e->writer);
			else
				say(L_INFO, "  %s in %s (uid %u): %s", e->name,
				    e->d->abs, e->uid, st[e->state]);
		}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmckptd --dir DIR [--dir DIR ...] [OPTIONS]\n"
		"\n"
		"Flush every stream opened with CKPT_FLUSHER_EXTERNAL under each\n"
		"DIR: one flusher thread and one io_uring for all of them.\n"
		"\n"
		"  --dir DIR          checkpoint directory to serve (repeatable, "
		"up to %d)\n"
		"  --backend B        auto|uring|fallback (default auto: io_uring,\n"
		"                     else pwrite+fdatasync, and the log says so)\n"
		"  --interval-us N    flusher's idle poll bound (default 1000)\n"
		"  --scan-ms N        rescan of /dev/shm for streams (default 100)\n"
		"  --drain-ms N       SIGTERM/SIGINT: wait at most this for every\n"
		"                     committed epoch to be durable (default 10000)\n"
		"  --once             one scan, drain what it found, exit (1 if a\n"
		"                     stream could not be drained)\n"
		"  --log-level L      error|warn|info|debug (default info)\n"
		"  --fault SPEC       tests and demos only: inject storage faults,\n"
		"                     e.g. lat_us=1000:20000,eio_sync_at=5\n"
		"  --help             this text\n"
		"\n"
		"Signals: TERM, INT drain and exit 0; HUP logs every stream's "
		"state.\n"
		"Exit: 0 ok, 1 failure, 64 usage error.  See docs/SIDECAR.md.\n",
		MAX_DIRS);
}

/*
 * --fault SPEC (tests and demos): wrap the backend in the fault injector
 * (iouring/fault.h).  SPEC is comma-separated: lat_us=MIN:MAX[:MEAN],
 * eio_write_at=N, eio_sync_at=N, short_write_at=N, enospc_grow_at=N,
 * seed=N (op numbers count from 1 over every stream).
 */
static struct ckpt_fault_plan fault_plan;

static int parse_fault(const char *spec)
{
	char buf[256], *save = NULL;

	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		return -1;
	for (char *kv = strtok_r(buf, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		unsigned long long a = 0, b = 0, c = 0;
		char *v = strchr(kv, '=');
		if (!v)
			return -1;
		*v++ = '\0';
		if (!strcmp(kv, "lat_us")) {
			int n = sscanf(v, "%llu:%llu:%llu", &a, &b, &c);
			if (n < 2)
				return -1;
			fault_plan.lat_min_us = a;
			fault_plan.lat_max_us = b;
			fault_plan.lat_mean_us = n == 3 ? c : 0;
			continue;
		}
		if (sscanf(v, "%llu", &a) != 1)
			return -1;
		if (!strcmp(kv, "eio_write_at"))
			fault_plan.eio_write_at = a;
		else if (!strcmp(kv, "eio_sync_at"))
			fault_plan.eio_sync_at = a;
		else if (!strcmp(kv, "short_write_at"))
			fault_plan.short_write_at = a;
		else if (!strcmp(kv, "enospc_grow_at"))
			fault_plan.enospc_grow_at = a;
		else if (!strcmp(kv, "seed"))
			fault_plan.seed = a;
		else
			return -1;
	}
	return 0;
}

static int parse_num(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	long interval_us = 1000, scan_ms = 100, drain_ms = 10000;
	int backend = CKPT_BACKEND_AUTO, once = 0, ret, late;
	struct ckpt_fault_plan *fault = NULL;
	const char *why = NULL;
	struct timespec tick;
	sigset_t sigs;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		long n;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--once")) {
			once = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "shmckptd: %s: needs a value (or is "
				"unknown)\n", a);
			usage(stderr);
			return EXIT_USAGE;
		}
		i++;
		if (!strcmp(a, "--dir")) {
			char prefix[128];
			if (ndirs == MAX_DIRS) {
				fprintf(stderr, "shmckptd: at most %d --dir\n",
					MAX_DIRS);
				return EXIT_USAGE;
			}
			if (ckpt__absdir(v, dirs[ndirs].abs,
					 sizeof(dirs[ndirs].abs)) < 0 ||
			    ckpt__region_prefix(v, prefix, sizeof(prefix)) < 0) {
				fprintf(stderr, "shmckptd: --dir %s: %s\n", v,
					ckpt_last_error());
				return 1;
			}
			/* "/shmckpt.<uid>.<hash>." -> "<hash>" */
			const char *h = strrchr(prefix, '.');
			while (h > prefix && h[-1] != '.')
				h--;
			snprintf(dirs[ndirs].hash, sizeof(dirs[ndirs].hash),
				 "%.16s", h);
			for (int j = 0; j < ndirs; j++)
				if (!strcmp(dirs[j].abs, dirs[ndirs].abs))
					ndirs--; /* given twice */
			ndirs++;
		} else if (!strcmp(a, "--backend")) {
			if (!strcmp(v, "auto"))
				backend = CKPT_BACKEND_AUTO;
			else if (!strcmp(v, "uring"))
				backend = CKPT_BACKEND_URING;
			else if (!strcmp(v, "fallback"))
				backend = CKPT_BACKEND_FALLBACK;
			else
				goto bad;
		} else if (!strcmp(a, "--interval-us")) {
			if (parse_num(v, 1, 10000000, &n) < 0)
				goto bad;
			interval_us = n;
		} else if (!strcmp(a, "--scan-ms")) {
			if (parse_num(v, 1, 60000, &n) < 0)
				goto bad;
			scan_ms = n;
		} else if (!strcmp(a, "--drain-ms")) {
			if (parse_num(v, 0, 3600000, &n) < 0)
				goto bad;
			drain_ms = n;
		} else if (!strcmp(a, "--fault")) {
			if (parse_fault(v) < 0)
				goto bad;
			fault = &fault_plan;
		} else if (!strcmp(a, "--log-level")) {
			if (!strcmp(v, "error"))
				log_level = L_ERROR;
			else if (!strcmp(v, "warn"))
				log_level = L_WARN;
			else if (!strcmp(v, "info"))
				log_level = L_INFO;
			else if (!strcmp(v, "debug"))
				log_level = L_DEBUG;
			else
				goto bad;
		} else {
			fprintf(stderr, "shmckptd: unknown option %s\n", a);
			usage(stderr);
			return EXIT_USAGE;
		}
		continue;
bad:
		fprintf(stderr, "shmckptd: %s: bad value '%s'\n", a, v);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!ndirs) {
		fprintf(stderr, "shmckptd: --dir is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	journal = getenv("JOURNAL_STREAM") != NULL;
	ckpt__log_set_level(log_level); /* the flusher's own lines */

	/* Signals are taken synchronously, by the scan loop's wait; the
	 * flusher thread blocks them all itself. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Four descriptors per served stream (directory, flusher lock, two
	 * slots): the usual soft limit of 1024 would cap us near 250. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		say(L_DEBUG, "descriptor limit %llu: about %llu streams",
		    (unsigned long long)rl.rlim_cur,
		    (unsigned long long)rl.rlim_cur / 4);

	ret = ckpt__flusher_start(backend, fault, (uint32_t)interval_us, &fl,
				  &why);
	if (ret < 0) {
		say(L_ERROR, "cannot start the flusher: %s (%s)",
		    ckpt_strerror(ret), ckpt_last_error());
		return 1;
	}
	say(why ? L_WARN : L_INFO, "started: uid %u, %s backend%s%s, scan "
	    "every %ld ms", (unsigned)geteuid(), ckpt__flusher_backend(fl),
	    why ? ": " : "", why ? why : "", scan_ms);
	for (int i = 0; i < ndirs; i++)
		say(L_INFO, "serving %s (regions " SHM_DIR "/" SHM_PREFIX
		    "<uid>.%s.*)", dirs[i].abs, dirs[i].hash);

	tick.tv_sec = scan_ms / 1000;
	tick.tv_nsec = scan_ms % 1000 * 1000000L;
	for (;;) {
		siginfo_t si;
		int sig;

		scan();
		if (once)
			break;
		sig = sigtimedwait(&sigs, &si, &tick);
		if (sig == SIGHUP) {
			status();
		} else if (sig == SIGTERM || sig == SIGINT) {
			say(L_INFO, "%s: draining %u streams (at most %ld ms)",
			    sig == SIGTERM ? "SIGTERM" : "SIGINT", nserved,
			    drain_ms);
			break;
		}
	}
	late = drain((int)drain_ms);
	ckpt__flusher_stop(fl, 0);
	for (unsigned b = 0; b < NBUCKETS; b++)
		while (tab[b])
			forget(tab[b]);
	say(L_INFO, "stopped%s", late ? " (some streams not drained)" : "");
	return once && late ? 1 : 0;
}
