/*
 * fuzz_ring.c - the ring reader over arbitrary ring bytes.
 *
 * The region header is valid and built here (a 64 KiB ring); the input
 * supplies the ring's contents and the release/commit positions (see the
 * format in fuzz_common.h).  Whatever the ring holds, the reader must not
 * crash, read outside the mapping, loop, or hand out an epoch that breaks
 * the invariants fz_read_all() checks.
 *
 * The seal's XXH3-64 would stop the fuzzer at "hash mismatch" almost
 * always, so FZR_FIX_SEALS rewrites every seal found on the walk (start,
 * body length, record count, hash) before reading: the parser behind the
 * hash is reached too.  FZR_ROUND_TRIP then lets the real producer take the
 * ring over at that position (the attach-time scan of ckpt__prod_init runs
 * over the same garbage), write a few epochs, and checks the reader gets
 * back exactly what was written: wrap and padding at every ring offset.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#define SEAL_LEN ((uint32_t)sizeof(struct ckpt_rec_seal))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ckpt_region *region; /* one zeroed mapping, reused */
static const size_t region_len = CKPT_REGION_HDR_SIZE + FZ_RING;

static uint8_t *ring_of(struct ckpt_region *h)
{
	return (uint8_t *)h + CKPT_REGION_HDR_SIZE;
}

/* Walk the ring from @pos as the reader's first pass does (by lengths),
 * up to @limit bytes; at each seal, if @fix, make the seal describe the
 * records since the last one and hash them.  Returns the position just
 * past the last seal reached (@pos if none). */
static uint64_t walk(uint8_t *ring, uint64_t pos, uint64_t limit, int fix)
{
	const uint64_t mask = FZ_RING - 1;
	uint64_t start = pos, last = pos;
	uint64_t left = limit < FZ_RING ? limit : FZ_RING;
	uint32_t nrec = 0;

	/* by bytes left, not by end position: positions may be anywhere,
	 * up to the top of the 64-bit range */
	while (left >= 8) {
		struct ckpt_rec_hdr h;
		memcpy(&h, ring + (pos & mask), sizeof(h));
		if (h.len < 8 || h.len % 8 || (h.len & CKPT_REC_BUSY) ||
		    (pos & mask) + h.len > FZ_RING || h.len > left)
			break;
		left -= h.len;
		if (h.type == CKPT_R_SEAL && h.len == SEAL_LEN) {
			if (fix) {
				struct ckpt_rec_seal s;
				uint64_t body = pos - start, off = start & mask;
				uint64_t first = body < FZ_RING - off
							 ? body
							 : FZ_RING - off;
				memcpy(&s, ring + (pos & mask), sizeof(s));
				s.start_pos = start;
				s.body_len = body;
				s.nrec = nrec;
				s.reserved = 0;
				s.hash = ckpt__epoch_hash(ring + off, first,
							  ring, body - first);
				memcpy(ring + (pos & mask), &s, sizeof(s));
			}
			pos += h.len;
			last = start = pos;
			nrec = 0;
			continue;
		}
		if (h.type != CKPT_R_PAD)
			nrec++;
		pos += h.len;
	}
	return last;
}

/* Write a few epochs with the real producer and read them back. */
static void round_trip(ckpt__region_t *rg, ckpt__rd_t *rd, const uint8_t *in,
		       size_t inlen, unsigned nrt)
{
	ckpt__producer_t pr;
	uint8_t key[64], val[512];
	int ret;

	/* everything read so far is durable: the producer gets the ring */
	__atomic_store_n(&rg->hdr->flush.release_pos, rd->rpos,
			 __ATOMIC_RELEASE);
	rg->hdr->prod.committed_epoch =
		rd->last_epoch > 0 ? (uint64_t)rd->last_epoch : 0;
	ret = ckpt__prod_init(&pr, rg, CKPT_FULL_EAGAIN, 0, 0);
	FZ_CHECK(ret == 0, "prod_init on a consistent region: %d", ret);

	for (unsigned e = 0; e < nrt; e++) {
		/* sizes from the input, so the wrap falls everywhere */
		uint8_t b0 = inlen ? in[(e * 3) % inlen] : 0;
		uint8_t b1 = inlen ? in[(e * 3 + 1) % inlen] : 0;
		uint8_t b2 = inlen ? in[(e * 3 + 2) % inlen] : 0;
		size_t klen = 1 + b0 % sizeof(key), vlen = (size_t)b1 * 2;
		unsigned nput = 1 + b2 % 5;
		int64_t epoch;

		if (klen > rg->max_key)
			klen = rg->max_key;
		if (vlen > rg->max_value)
			vlen = rg->max_value;
		memset(key, 'k', sizeof(key));
		memset(val, (int)e, sizeof(val));
		ret = ckpt__prod_offset(&pr, "topic", (int32_t)e, (int64_t)b0);
		FZ_CHECK(ret == 0, "prod_offset: %d", ret);
		for (unsigned i = 0; i < nput; i++) {
			key[0] = (uint8_t)i;
			ret = ckpt__prod_kv(&pr, CKPT_R_PUT, key, klen, val,
					    vlen);
			FZ_CHECK(ret == 0, "prod_kv: %d", ret);
		}
		epoch = ckpt__prod_commit(&pr);
		FZ_CHECK(epoch > 0, "prod_commit: %lld", (long long)epoch);

		ckpt_epoch_t ep;
		ckpt_delta_t d;
		ret = ckpt__rd_next(rd, &ep);
		FZ_CHECK(ret == 1, "reading back epoch %lld: %d",
			 (long long)epoch, ret);
		FZ_CHECK(ep.epoch == epoch && ep.ndeltas == 1 + nput,
			 "epoch %lld with %u deltas read back as %lld with %u",
			 (long long)epoch, 1 + nput, (long long)ep.epoch,
			 ep.ndeltas);
		FZ_CHECK(ckpt_epoch_next(&ep, &d) == 1 &&
				 d.type == CKPT_D_OFFSET && d.topic_len == 5 &&
				 !memcmp(d.topic, "topic", 5) &&
				 d.partition == (int32_t)e && d.offset == b0,
			 "offset delta read back differs");
		for (unsigned i = 0; i < nput; i++) {
			key[0] = (uint8_t)i;
			FZ_CHECK(ckpt_epoch_next(&ep, &d) == 1 &&
					 d.type == CKPT_D_PUT &&
					 d.klen == klen && d.vlen == vlen &&
					 !memcmp(d.key, key, klen) &&
					 (!vlen || !memcmp(d.val, val, vlen)),
				 "put %u read back differs", i);
		}
		FZ_CHECK(ckpt_epoch_next(&ep, &d) == 0, "extra delta");
		FZ_CHECK(ckpt__rd_next(rd, &ep) == 0, "more than was written");
		/* durable: release it, as ckpt_reader_durable does */
		__atomic_store_n(&rg->hdr->flush.release_pos, ep.end_pos,
				 __ATOMIC_RELEASE);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t mask = FZ_RING - 1;
	ckpt__region_t rg;
	ckpt__rd_t rd;
	uint64_t release, commit;
	uint32_t used;
	uint8_t flags;
	const struct fz_limits *lim;
	unsigned nrt, nepochs = 0;
	int ret;

	if (size < FZR_HDR)
		return 0;
	if (!region) {
		region = aligned_alloc(4096, region_len);
		if (!region)
			abort();
	}
	memset(region, 0, region_len);
	release = fz_le64(data) & ~(uint64_t)7;
	used = fz_le32(data + 8);
	flags = data[12];
	lim = &fz_limits[data[13] % 4];
	nrt = (unsigned)(data[14] | data[15] << 8) % 8;
	fz_region_init(region, FZ_RING, lim->max_key, lim->max_value,
		       lim->max_meta);

	/* the ring's contents, from release_pos's offset on */
	size_t n = size - FZR_HDR < FZ_RING ? size - FZR_HDR : FZ_RING;
	size_t off = release & mask, first = n < FZ_RING - off ? n : FZ_RING - off;
	memcpy(ring_of(region) + off, data + FZR_HDR, first);
	memcpy(ring_of(region), data + FZR_HDR + first, n - first);

	if (flags & FZR_RAW_COMMIT)
		commit = release + used;
	else
		commit = release + (((uint64_t)used % (FZ_RING + 8)) & ~7ull);
	if (flags & FZR_FIX_SEALS)
		walk(ring_of(region), release,
		     commit >= release ? commit - release : 0, 1);
	if (flags & FZR_AUTO_COMMIT)
		commit = walk(ring_of(region), release, FZ_RING, 0);
	region->prod.commit_pos = commit;
	region->flush.release_pos = release;
	region->prod.committed_epoch = fz_le64(data) >> 56;

	ret = ckpt__region_validate(region, region_len, FZ_NAME, &rg);
	if (ret < 0) {
		/* only the positions can be wrong: we built the rest */
		FZ_CHECK(ret == CKPT_ECORRUPT &&
				 (release > commit || commit - release > FZ_RING ||
				  commit % 8 || commit > CKPT_POS_MAX),
			 "valid header refused: %d", ret);
		return 0;
	}

	if (fz_known_bug(commit, FZ_RING))
		return 0;

	if (flags & FZR_ATTACH_FIRST) {
		/* a writer taking over after a crash scans past commit_pos;
		 * it may only write past commit_pos, never below it */
		static uint8_t before[FZ_RING];
		ckpt__producer_t pr;
		memcpy(before, ring_of(region), FZ_RING);
		ret = ckpt__prod_init(&pr, &rg, CKPT_FULL_EAGAIN, 0, 0);
		FZ_CHECK(ret == 0 || ret == CKPT_ECORRUPT, "prod_init: %d",
			 ret);
		for (uint64_t p = release; p != commit; p++)
			FZ_CHECK(ring_of(region)[p & mask] == before[p & mask],
				 "attach changed committed byte at %llu",
				 (unsigned long long)p);
	}

	ckpt__rd_init(&rd, &rg);
	FZ_CHECK(rd.rpos == release, "reader starts at %llu, not %llu",
		 (unsigned long long)rd.rpos, (unsigned long long)release);
	ret = fz_read_all(&rd, &rg, &nepochs);
#ifdef FZ_VERBOSE
	fprintf(stderr, "ring: release %llu commit %llu: %u epochs, ret %d %s\n",
		(unsigned long long)release, (unsigned long long)commit,
		nepochs, ret, ret < 0 ? ckpt_last_error() : "");
#endif
	/* A clean walk to commit_pos in a region with room left below the
	 * bounds (positions and epochs stop at 2^62, which an honest
	 * producer needs centuries to reach; the nrt < 8 epochs it adds
	 * must stay under them): the producer must be able to take over and
	 * be read back exactly. */
	if (ret == 0 && (flags & FZR_ROUND_TRIP) && nrt &&
	    commit < CKPT_POS_MAX - 16 * (uint64_t)FZ_RING &&
	    rd.last_epoch <= CKPT_EPOCH_MAX - 8)
		round_trip(&rg, &rd, data + FZR_HDR, size - FZR_HDR, nrt);
	ckpt__rd_free(&rd);
	return 0;
}
