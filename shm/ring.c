/*
 * ring.c - the lock-free single-producer ring: staging, sealing, reading.
 *
 * The producer writes records directly into the ring past commit_pos, where
 * no reader looks, then seals the epoch and moves commit_pos with one
 * release store.  That store is the whole synchronisation on the hot path:
 * no system call, no lock, no read-modify-write.  The producer reads the
 * flusher's release_pos only when its cached copy says the ring is full.
 *
 * The reader finds an epoch's seal by its record lengths, copies the epoch
 * out of shared memory, then verifies and parses only the copy: a process
 * scribbling over the ring cannot change what was verified.
 */
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL /* the seal's hash is on the hot path: inline it */
#include <xxhash.h>

#include "atomic.h"
#include "internal.h"
#include "probes.h"
#include "ring.h"

#define ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)
#define SEAL_LEN ((uint32_t)sizeof(struct ckpt_rec_seal))

uint64_t ckpt__epoch_hash(const uint8_t *a, size_t alen, const uint8_t *b,
			  size_t blen)
{
	uint64_t h = XXH3_64bits(a, alen);
	return blen ? XXH3_64bits_withSeed(b, blen, h) : h;
}

static inline struct ckpt_rec_hdr *at(const ckpt__producer_t *pr,
				      uint64_t pos)
{
	return (struct ckpt_rec_hdr *)(void *)(pr->ring + (pos & pr->mask));
}

/* ------------------------------------------------------------------ */
/* producer                                                            */
/* ------------------------------------------------------------------ */

int ckpt__prod_init(ckpt__producer_t *pr, ckpt__region_t *rg, int full_policy,
		    uint32_t full_wait_ms, int64_t min_epoch)
{
	struct ckpt_region *h = rg->hdr;
	uint64_t commit, release;
	int64_t epoch;

	memset(pr, 0, sizeof(*pr));
	pr->ring = rg->ring;
	pr->cap = rg->cap;
	pr->mask = rg->mask;
	pr->p = &h->prod;
	pr->f = &h->flush;
	pr->max_key = rg->max_key;
	pr->max_value = rg->max_value;
	pr->max_meta = rg->max_meta;
	pr->full_policy = full_policy;
	pr->full_wait_ns = (uint64_t)full_wait_ms * 1000000ull;

	/* We hold the writer lock: nobody else moves commit_pos.  Pairs with
	 * the flusher's store_release of release_pos. */
	commit = ckpt__load_relaxed(&h->prod.commit_pos);
	release = ckpt__load_acquire(&h->flush.release_pos);
	if (release > commit || commit - release > pr->cap ||
	    (commit | release) % 8 || commit > CKPT_POS_MAX)
		return ckpt__fail(CKPT_ECORRUPT,
				  "ring positions inconsistent at attach");
	epoch = (int64_t)ckpt__load_relaxed(&h->prod.committed_epoch);
	/* A writer killed between its store of committed_epoch and that of
	 * commit_pos leaves committed_epoch one ahead of the ring.  The seal
	 * that ends at commit_pos is the truth (it is whole: commit_pos is
	 * stored after it); committed_epoch only counts when that seal was
	 * already overwritten (everything released, then a dead writer's
	 * unsealed records over it). */
	/* A real seal never wraps (records are contiguous); in a damaged
	 * ring the bytes before commit_pos may, so check the seal lies inside
	 * the ring before reading it. */
	if (commit >= SEAL_LEN &&
	    ((commit - SEAL_LEN) & pr->mask) + SEAL_LEN <= pr->cap) {
		const struct ckpt_rec_seal *sl =
			(const void *)(pr->ring + ((commit - SEAL_LEN) & pr->mask));
		if (sl->h.len == SEAL_LEN && sl->h.type == CKPT_R_SEAL &&
		    sl->start_pos + sl->body_len + SEAL_LEN == commit &&
		    sl->epoch && sl->epoch <= (uint64_t)CKPT_EPOCH_MAX)
			epoch = (int64_t)sl->epoch;
	}
	if (epoch < 0 || epoch > CKPT_EPOCH_MAX || min_epoch > CKPT_EPOCH_MAX)
		return ckpt__fail(CKPT_ECORRUPT, "committed epoch %lld (or "
				  "recovered %lld) is out of range",
				  (long long)epoch, (long long)min_epoch);
	pr->epoch = epoch > min_epoch ? epoch : min_epoch;
	ckpt__store_relaxed(&h->prod.committed_epoch, (uint64_t)pr->epoch);

	/* A previous writer may have died mid-epoch.  Every record is
	 * followed by a zero length word (the terminator publish() leaves),
	 * so what lies between commit_pos and the first zero is exactly what
	 * it staged and never sealed: whole records, maybe a last one still
	 * BUSY (half-written).  Count them, then drop them: the write
	 * position restarts at commit_pos. */
	for (uint64_t pos = commit, end = release + pr->cap; pos + 8 <= end;) {
		/* pairs with the dead writer's store_release in publish() */
		uint32_t len = ckpt__load_acquire(&at(pr, pos)->len);
		uint8_t type = at(pr, pos)->type;
		if (len == 0)
			break;
		if (len & CKPT_REC_BUSY) {
			ckpt__count_add(&h->prod.torn_discarded, 1);
			break;
		}
		if (len % 8 || pos + len > end || (pos & pr->mask) + len > pr->cap ||
		    type < CKPT_R_OFFSET || type > CKPT_R_PAD)
			break; /* not ours: garbage ends the walk */
		if (type != CKPT_R_PAD)
			ckpt__count_add(&h->prod.uncommitted_discarded, 1);
		pos += len;
	}
	if (commit - release + 8 <= pr->cap)
		at(pr, commit)->len = 0; /* our own terminator */
	pr->wpos = commit;
	pr->epoch_start = commit;
	pr->release_cache = release;
	return 0;
}

/* Make room for @need bytes past wpos.  Slow path: only when the cached
 * release position says the ring is full. */
static int __attribute__((noinline)) wait_room(ckpt__producer_t *pr,
					       uint64_t end)
{
	uint64_t deadline = 0, t0 = 0;
	int spins = 0;

	ckpt__count_add(&pr->p->backpressure_events, 1);
	CKPT_PROBE1(backpressure, end - pr->wpos);
	for (;;) {
		/* pairs with the flusher's store_release of release_pos in
		 * ckpt_reader_durable(): space it frees is no longer read */
		uint64_t rel = ckpt__load_acquire(&pr->f->release_pos);
		if (CKPT_UNLIKELY(rel < pr->release_cache || rel > pr->wpos ||
				  rel % 8)) {
			pr->corrupt = 1;
			return ckpt__fail(CKPT_ECORRUPT,
					  "release position moved backwards, "
					  "past the write position, or off "
					  "alignment");
		}
		pr->release_cache = rel;
		if (end - rel <= pr->cap)
			break;
		if (pr->full_policy != CKPT_FULL_WAIT) {
			ckpt__count_add(&pr->p->eagain, 1);
			return -EAGAIN;
		}
		if (++spins < 64) {
			ckpt__cpu_relax();
			continue;
		}
		uint64_t now = ckpt__mono_ns();
		if (!deadline) {
			t0 = now;
			deadline = now + pr->full_wait_ns;
		}
		if (now >= deadline) {
			ckpt__count_add(&pr->p->wait_ns, now - t0);
			ckpt__count_add(&pr->p->eagain, 1);
			return -EAGAIN;
		}
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	if (t0)
		ckpt__count_add(&pr->p->wait_ns, ckpt__mono_ns() - t0);
	return 0;
}

/* Claim @len contiguous bytes (8-aligned) at the write position, wrapping
 * with a PAD record when they do not fit before the ring's end, and keep
 * @reserve more free for the seal.  Returns the record's address. */
static inline struct ckpt_rec_hdr *claim(ckpt__producer_t *pr, uint32_t len,
					  uint64_t reserve, int *err)
{
	uint64_t off = pr->wpos & pr->mask;
	uint64_t pad = off + len > pr->cap ? pr->cap - off : 0;
	uint64_t end = pr->wpos + pad + len + reserve;

	if (CKPT_UNLIKELY(pr->corrupt)) {
		*err = CKPT_ECORRUPT;
		return NULL;
	}
	if (CKPT_UNLIKELY(end - pr->release_cache > pr->cap)) {
		/* the open epoch can never be released: it cannot fit */
		if (end - pr->epoch_start > pr->cap) {
			*err = ckpt__fail(-ENOBUFS,
					  "open epoch would need %llu bytes; the "
					  "ring holds %llu",
					  (unsigned long long)(end -
							       pr->epoch_start),
					  (unsigned long long)pr->cap);
			return NULL;
		}
		*err = wait_room(pr, end);
		if (*err < 0)
			return NULL;
	}
	if (pad) {
		struct ckpt_rec_hdr *h = at(pr, pr->wpos);
		h->type = CKPT_R_PAD;
		h->flags = 0;
		h->aux = 0;
		/* pairs with the attach-time scan's load_acquire */
		ckpt__store_release(&h->len, (uint32_t)pad);
		pr->wpos += pad;
		at(pr, pr->wpos)->len = 0; /* terminator, as in publish() */
	}
	return at(pr, pr->wpos);
}

/* Claim, mark in progress; the caller fills the body, then publish(). */
static inline struct ckpt_rec_hdr *begin(ckpt__producer_t *pr, uint8_t type,
					  uint64_t len64, uint16_t aux,
					  int *err)
{
	uint32_t len = (uint32_t)ALIGN8(len64);
	struct ckpt_rec_hdr *h = claim(pr, len, CKPT_SEAL_RESERVE, err);
	if (CKPT_UNLIKELY(!h))
		return NULL;
	h->len = len | CKPT_REC_BUSY; /* claimed, in progress */
	h->type = type;
	h->flags = 0;
	h->aux = aux;
	/* zero the alignment tail so the sealed bytes are deterministic */
	memset((uint8_t *)h + len - 8, 0, 8);
	return h;
}

static inline void publish(ckpt__producer_t *pr, struct ckpt_rec_hdr *h)
{
	uint32_t len = h->len & ~CKPT_REC_BUSY;
	/* length last: pairs with the attach-time scan's load_acquire (a
	 * reader below commit_pos is ordered by commit_pos instead) */
	ckpt__store_release(&h->len, len);
	pr->wpos += len;
	pr->nrec++;
	/* terminator: a zero length word after the newest record lets an
	 * attach tell this epoch's records from stale bytes of an older lap.
	 * It lies in the room claim() reserved, never on unreleased data. */
	at(pr, pr->wpos)->len = 0;
}

int ckpt__prod_offset(ckpt__producer_t *pr, const char *topic,
		      int32_t partition, int64_t next)
{
	struct ckpt_rec_hdr *h;
	size_t tlen;
	int ret = 0;

	if (CKPT_UNLIKELY(!topic || partition < 0 || next < 0))
		return ckpt__fail(-EINVAL, "offset needs a topic, partition "
					   ">= 0 and offset >= 0");
	tlen = strnlen(topic, CKPT_TOPIC_MAX + 1);
	if (CKPT_UNLIKELY(tlen == 0 || tlen > CKPT_TOPIC_MAX))
		return ckpt__fail(-EMSGSIZE, "topic name must be 1..%d bytes",
				  CKPT_TOPIC_MAX);
	h = begin(pr, CKPT_R_OFFSET, sizeof(struct ckpt_rec_offset) + tlen,
		  (uint16_t)tlen, &ret);
	if (CKPT_UNLIKELY(!h))
		return ret;
	struct ckpt_rec_offset *r = (struct ckpt_rec_offset *)h;
	r->partition = partition;
	r->zero = 0;
	r->next_offset = next;
	memcpy(r + 1, topic, tlen);
	publish(pr, h);
	return 0;
}

int ckpt__prod_kv(ckpt__producer_t *pr, int type, const void *key,
		  size_t klen, const void *val, size_t vlen)
{
	struct ckpt_rec_hdr *h;
	int ret = 0;

	if (CKPT_UNLIKELY((klen && !key) || (vlen && !val)))
		return ckpt__fail(-EINVAL, "NULL data with a non-zero length");
	if (CKPT_UNLIKELY(type == CKPT_R_META ? klen > pr->max_meta
					      : (klen > pr->max_key ||
						 vlen > pr->max_value)))
		return ckpt__fail(-EMSGSIZE,
				  "delta over the stream's limits (key %zu/%u, "
				  "value %zu/%u, meta %u)",
				  klen, pr->max_key, vlen, pr->max_value,
				  pr->max_meta);
	h = begin(pr, (uint8_t)type,
		  sizeof(struct ckpt_rec_kv) + (uint64_t)klen + vlen, 0, &ret);
	if (CKPT_UNLIKELY(!h))
		return ret;
	struct ckpt_rec_kv *r = (struct ckpt_rec_kv *)h;
	uint8_t *body = (uint8_t *)(r + 1);
	r->klen = (uint32_t)klen;
	r->vlen = (uint32_t)vlen;
	if (klen)
		memcpy(body, key, klen);
	if (vlen)
		memcpy(body + klen, val, vlen);
	publish(pr, h);
	return 0;
}

int64_t ckpt__prod_commit(ckpt__producer_t *pr)
{
	struct ckpt_rec_hdr *h;
	uint64_t start = pr->epoch_start, body, off, first;
	int ret = 0;

	h = claim(pr, SEAL_LEN, 8, &ret); /* 8: room for the terminator */
	if (CKPT_UNLIKELY(!h))
		return ret;
	body = pr->wpos - start;
	off = start & pr->mask;
	first = body < pr->cap - off ? body : pr->cap - off;

	struct ckpt_rec_seal *s = (struct ckpt_rec_seal *)h;
	s->h.len = SEAL_LEN | CKPT_REC_BUSY;
	s->h.type = CKPT_R_SEAL;
	s->h.flags = 0;
	s->h.aux = 0;
	s->nrec = pr->nrec;
	s->reserved = 0;
	s->epoch = (uint64_t)(pr->epoch + 1);
	s->start_pos = start;
	s->body_len = body;
	s->hash = ckpt__epoch_hash(pr->ring + off, first, pr->ring,
				   body - first);
	/* seal complete before it is published: pairs with the attach scan */
	ckpt__store_release(&s->h.len, SEAL_LEN);
	pr->wpos += SEAL_LEN;
	pr->epoch++;
	at(pr, pr->wpos)->len = 0; /* terminator, as in publish() */

	struct ckpt_region_prod *p = pr->p;
	ckpt__store_relaxed(&p->committed_epoch, (uint64_t)pr->epoch);
	/* THE publication: every record of the epoch and its seal become
	 * visible together.  Pairs with the reader's load_acquire of
	 * commit_pos in ckpt__rd_next(). */
	ckpt__store_release(&p->commit_pos, pr->wpos);

	ckpt__count_add(&p->records, pr->nrec);
	ckpt__count_add(&p->bytes, pr->wpos - start);
	uint64_t n = p->commits + 1;
	ckpt__store_relaxed(&p->commits, n);
	if (CKPT_UNLIKELY((n & 255) == 0)) {
		/* every 256 commits, look at the flusher's line: refresh
		 * the cache (fewer slow paths) and the high-water mark.
		 * Pairs with the flusher's store_release of release_pos. */
		uint64_t rel = ckpt__load_acquire(&pr->f->release_pos);
		if (rel > pr->release_cache && rel <= pr->wpos)
			pr->release_cache = rel;
		uint64_t used = pr->wpos - pr->release_cache;
		if (used > p->used_hwm)
			ckpt__store_relaxed(&p->used_hwm, used);
	}
	if (CKPT_UNLIKELY((n & 4095) == 1)) {
		/* amortised heartbeat: a vDSO clock read, no system call */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
		ckpt__store_relaxed(&p->heartbeat_ns,
				    (uint64_t)ts.tv_sec * 1000000000ull +
					    (uint64_t)ts.tv_nsec);
	}
	CKPT_PROBE2(commit, pr->epoch, pr->wpos - start);
	pr->epoch_start = pr->wpos;
	pr->nrec = 0;
	return pr->epoch;
}

void ckpt__prod_abort(ckpt__producer_t *pr)
{
	pr->wpos = pr->epoch_start;
	pr->nrec = 0;
	at(pr, pr->wpos)->len = 0; /* the dropped records are not ours now */
}

/* ------------------------------------------------------------------ */
/* reader                                                              */
/* ------------------------------------------------------------------ */

void ckpt__rd_init(ckpt__rd_t *rd, ckpt__region_t *rg)
{
	memset(rd, 0, sizeof(*rd));
	rd->rg = rg;
	/* pairs with the flusher's store_release of release_pos */
	rd->rpos = ckpt__load_acquire(&rg->hdr->flush.release_pos);
	rd->last_epoch = -1;
}

void ckpt__rd_free(ckpt__rd_t *rd)
{
	free(rd->buf);
	rd->buf = NULL;
	rd->bufcap = 0;
}

static int corrupt(ckpt__rd_t *rd, const char *what, uint64_t pos)
{
	return ckpt__fail(CKPT_ECORRUPT,
			  "ring of stream '%s' damaged at position %llu: %s",
			  rd->rg->name, (unsigned long long)pos, what);
}

/* Validate one record in the private copy.  @pos is its ring position. */
static int check_record(ckpt__rd_t *rd, const uint8_t *r, uint64_t left,
			uint64_t pos, uint32_t *lenp, uint8_t *typep)
{
	const ckpt__region_t *rg = rd->rg;
	struct ckpt_rec_hdr h;

	if (left < sizeof(h))
		return corrupt(rd, "record header cut short", pos);
	memcpy(&h, r, sizeof(h));
	if (h.len & CKPT_REC_BUSY)
		return corrupt(rd, "half-written record below commit position",
			       pos);
	if (h.len < 8 || h.len % 8 || h.len > left ||
	    (pos & rg->mask) + h.len > rg->cap)
		return corrupt(rd, "record length out of bounds", pos);
	/* fields without meaning must be zero: nothing unchecked slips in */
	if (h.flags || (h.aux && h.type != CKPT_R_OFFSET))
		return corrupt(rd, "record header has non-zero reserved bits",
			       pos);
	switch (h.type) {
	case CKPT_R_OFFSET: {
		struct ckpt_rec_offset o;
		if (h.len < sizeof(o))
			return corrupt(rd, "offset record too short", pos);
		memcpy(&o, r, sizeof(o));
		if (h.aux == 0 || h.aux > CKPT_TOPIC_MAX ||
		    sizeof(o) + h.aux > h.len || o.partition < 0 ||
		    o.next_offset < 0 || o.zero)
			return corrupt(rd, "offset record fields invalid", pos);
		/* a producer never writes one (topics are C strings) */
		if (memchr(r + sizeof(o), '\0', h.aux))
			return corrupt(rd, "offset record topic holds a NUL",
				       pos);
		break;
	}
	case CKPT_R_PUT:
	case CKPT_R_DEL:
	case CKPT_R_META: {
		struct ckpt_rec_kv kv;
		if (h.len < sizeof(kv))
			return corrupt(rd, "kv record too short", pos);
		memcpy(&kv, r, sizeof(kv));
		if (sizeof(kv) + (uint64_t)kv.klen + kv.vlen > h.len)
			return corrupt(rd, "kv lengths exceed record", pos);
		if (h.type == CKPT_R_META ? (kv.klen > rg->max_meta || kv.vlen)
					  : (kv.klen > rg->max_key ||
					     kv.vlen > rg->max_value ||
					     (h.type == CKPT_R_DEL && kv.vlen)))
			return corrupt(rd, "kv lengths over the limits", pos);
		break;
	}
	case CKPT_R_PAD:
		if (((pos + h.len) & rg->mask) != 0)
			return corrupt(rd, "padding does not end at the wrap",
				       pos);
		break;
	case CKPT_R_SEAL: {
		struct ckpt_rec_seal sl;
		if (h.len != SEAL_LEN)
			return corrupt(rd, "seal has the wrong length", pos);
		memcpy(&sl, r, sizeof(sl));
		if (sl.reserved)
			return corrupt(rd, "seal has non-zero reserved bits",
				       pos);
		break;
	}
	default:
		return corrupt(rd, "unknown record type", pos);
	}
	*lenp = h.len;
	*typep = h.type;
	return 0;
}

int ckpt__rd_next(ckpt__rd_t *rd, ckpt_epoch_t *ep)
{
	ckpt__region_t *rg = rd->rg;
	uint64_t commit, pos, sealpos, total, off, first;
	struct ckpt_rec_seal seal;
	uint32_t nrec = 0;
	int ret = 0;

	/* pairs with the producer's store_release of commit_pos in
	 * ckpt__prod_commit(): every byte below it is complete */
	commit = ckpt__load_acquire(&rg->hdr->prod.commit_pos);
	if (commit == rd->rpos)
		return 0;
	/* bounds below are written as differences from commit (>= pos),
	 * which cannot wrap whatever a damaged region holds */
	if (commit < rd->rpos || commit - rd->rpos > rg->cap || commit % 8 ||
	    commit > CKPT_POS_MAX)
		return corrupt(rd, "commit position out of range", commit);
	/* rpos came from release_pos (shared memory, read again after the
	 * attach checked it) or from whole records: aligned, or the length
	 * word below would be read across the ring's end */
	if (rd->rpos % CKPT_REC_ALIGN)
		return corrupt(rd, "release position is not aligned", rd->rpos);

	/* 1. find the seal in shared memory, by lengths only */
	pos = rd->rpos;
	for (;;) {
		const struct ckpt_rec_hdr *h =
			(const void *)(rg->ring + (pos & rg->mask));
		uint32_t len = ckpt__load_relaxed(&h->len);
		if (commit - pos < 8)
			return corrupt(rd, "epoch runs past commit position",
				       pos);
		/* say what it is: a BUSY mark below commit_pos is a record
		 * its producer never finished, not merely a bad length */
		if (len & CKPT_REC_BUSY)
			return corrupt(rd, "half-written record below commit "
					   "position", pos);
		if (len < 8 || len % 8 ||
		    (pos & rg->mask) + len > rg->cap || len > commit - pos)
			return corrupt(rd, "record length out of bounds", pos);
		if (ckpt__load_relaxed(&h->type) == CKPT_R_SEAL)
			break;
		pos += len;
	}
	sealpos = pos;
	total = sealpos + SEAL_LEN - rd->rpos;
	if (commit - sealpos < SEAL_LEN || total > rg->cap)
		return corrupt(rd, "seal runs past commit position", sealpos);

	/* 2. copy the epoch out; from here on only the copy is read */
	if (rd->bufcap < total) {
		size_t n = rd->bufcap ? rd->bufcap : 4096;
		while (n < total)
			n *= 2;
		uint8_t *b = realloc(rd->buf, n);
		if (!b)
			return -ENOMEM;
		rd->buf = b;
		rd->bufcap = n;
	}
	off = rd->rpos & rg->mask;
	first = total < rg->cap - off ? total : rg->cap - off;
	memcpy(rd->buf, rg->ring + off, first);
	memcpy(rd->buf + first, rg->ring, total - first);

	/* 3. verify the copy: every record, the seal, the hash */
	for (uint64_t at_ = 0;;) {
		uint32_t len = 0;
		uint8_t type = 0;
		ret = check_record(rd, rd->buf + at_, total - at_,
				   rd->rpos + at_, &len, &type);
		if (ret < 0)
			return ret;
		if (type == CKPT_R_SEAL) {
			if (at_ + len != total)
				return corrupt(rd, "seal moved while copied",
					       rd->rpos + at_);
			break;
		}
		if (type != CKPT_R_PAD)
			nrec++;
		at_ += len;
	}
	memcpy(&seal, rd->buf + total - SEAL_LEN, sizeof(seal));
	uint64_t body = total - SEAL_LEN;
	uint64_t bfirst = body < rg->cap - off ? body : rg->cap - off;
	if (seal.start_pos != rd->rpos || seal.body_len != body ||
	    seal.nrec != nrec)
		return corrupt(rd, "seal does not describe its epoch", sealpos);
	if (seal.epoch == 0 || seal.epoch > (uint64_t)CKPT_EPOCH_MAX ||
	    (rd->last_epoch >= 0 &&
	     seal.epoch != (uint64_t)rd->last_epoch + 1))
		return corrupt(rd, "epoch numbers not consecutive", sealpos);
	if (seal.hash != ckpt__epoch_hash(rd->buf, bfirst, rd->buf + bfirst,
					  body - bfirst))
		return corrupt(rd, "epoch hash mismatch", sealpos);

	ep->epoch = (int64_t)seal.epoch;
	ep->ndeltas = nrec;
	ep->end_pos = rd->rpos + total;
	ep->ckpt__buf = rd->buf;
	ep->ckpt__len = body;
	ep->ckpt__at = 0;
	rd->rpos += total;
	rd->last_epoch = (int64_t)seal.epoch;
	return 1;
}

int ckpt_epoch_next(ckpt_epoch_t *ep, ckpt_delta_t *d)
{
	/* the epoch was verified whole by ckpt__rd_next: lengths are sound */
	while (ep->ckpt__at < ep->ckpt__len) {
		const uint8_t *r = ep->ckpt__buf + ep->ckpt__at;
		struct ckpt_rec_hdr h;
		memcpy(&h, r, sizeof(h));
		ep->ckpt__at += h.len;
		memset(d, 0, sizeof(*d));
		switch (h.type) {
		case CKPT_R_OFFSET: {
			struct ckpt_rec_offset o;
			memcpy(&o, r, sizeof(o));
			d->type = CKPT_D_OFFSET;
			d->partition = o.partition;
			d->offset = o.next_offset;
			d->topic = (const char *)r + sizeof(o);
			d->topic_len = h.aux;
			return 1;
		}
		case CKPT_R_PUT:
		case CKPT_R_DEL:
		case CKPT_R_META: {
			struct ckpt_rec_kv kv;
			memcpy(&kv, r, sizeof(kv));
			const uint8_t *b = r + sizeof(kv);
			if (h.type == CKPT_R_META) {
				d->type = CKPT_D_META;
				d->val = b;
				d->vlen = kv.klen;
			} else {
				d->type = h.type == CKPT_R_PUT ? CKPT_D_PUT
							       : CKPT_D_DEL;
				d->key = b;
				d->klen = kv.klen;
				d->val = b + kv.klen;
				d->vlen = kv.vlen;
			}
			return 1;
		}
		default: /* PAD */
			continue;
		}
	}
	return 0;
}
