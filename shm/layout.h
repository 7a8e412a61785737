/*
 * layout.h - the shared-memory region of a stream, byte for byte.
 *
 * This is a wire format: another process (maybe another build, maybe another
 * language) maps the same bytes.  Every field has a fixed size and offset,
 * asserted below, little-endian as the host (regions never leave the host).
 * docs/FORMAT.md describes the same layout in prose.  Change anything here
 * and CKPT_LAYOUT_VERSION must change.
 *
 *   0      page 0: identity, written once by the creator, then read-only
 *   4096   page 1: written only by the producer (the stream's writer)
 *   8192   page 2: written only by the flusher (the reader)
 *   12288  page 3: latency histograms, written only by the flusher
 *   16384  the ring: ring_capacity bytes, a power of two
 *
 * Single-writer pages keep the producer's and the flusher's stores on
 * different cache lines (and pages), so neither slows the other.
 */
#ifndef CKPT_SHM_LAYOUT_H
#define CKPT_SHM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_REGION_MAGIC 0x74706b636d687300ULL /* "\0shmckpt" LE */
#define CKPT_LAYOUT_VERSION 1u
#define CKPT_REGION_HDR_SIZE 16384u
#define CKPT_CACHELINE 64
#define CKPT_DIR_MAX 2048 /* longest checkpoint directory path stored */

/* Ring positions and epoch numbers never exceed 2^62: an honest producer
 * would need centuries to get there, and with that bound no sum of a
 * position and a length (or an epoch and one) can wrap.  A region or a
 * slot claiming more is damaged. */
#define CKPT_POS_MAX (1ull << 62)
#define CKPT_EPOCH_MAX ((int64_t)1 << 62)

/* Ring geometry limits. */
#define CKPT_RING_MIN (64u * 1024u)
#define CKPT_RING_MAX (1024ull * 1024u * 1024u)
#define CKPT_RING_DEFAULT (8u * 1024u * 1024u)

/* Page 0: identity.  layout_version is stored last, with release. */
struct ckpt_region_id {
	uint64_t magic; /* 0  CKPT_REGION_MAGIC */
	uint32_t layout_version; /* 8  CKPT_LAYOUT_VERSION, written last */
	uint32_t header_size; /* 12 CKPT_REGION_HDR_SIZE */
	uint64_t region_size; /* 16 header_size + ring_capacity */
	uint64_t ring_offset; /* 24 == header_size */
	uint64_t ring_capacity; /* 32 power of two */
	uint32_t creator_uid; /* 40 */
	uint32_t max_key; /* 44 */
	uint32_t max_value; /* 48 */
	uint32_t max_meta; /* 52 */
	uint64_t created_ns; /* 56 CLOCK_REALTIME at creation */
	uint32_t name_len; /* 64 */
	uint32_t dir_len; /* 68 */
	uint32_t flusher_mode; /* 72 enum ckpt_flusher the creator asked for */
	uint32_t reserved0; /* 76 */
	char name[136]; /* 80  stream name, NUL-padded */
	char dir[CKPT_DIR_MAX]; /* 216 absolute checkpoint dir, NUL-padded */
	uint8_t pad[4096 - 216 - CKPT_DIR_MAX];
};

/* Page 1: producer-written.  Line 0 is the one readers poll. */
struct ckpt_region_prod {
	/* line 0 */
	uint64_t commit_pos; /* ring position after the newest seal; release */
	uint64_t committed_epoch; /* epoch of that seal */
	uint8_t pad0[CKPT_CACHELINE - 16];
	/* line 1: owner */
	uint32_t owner_pid; /* pid of the writer that holds the lock, 0 none */
	uint32_t owner_generation; /* bumped at each ckpt_open */
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, refreshed every 4096 commits */
	uint32_t flusher_mode; /* enum ckpt_flusher of the newest open;
				* release (a sidecar serves only 1) */
	uint32_t reserved1;
	uint8_t pad1[CKPT_CACHELINE - 24];
	/* line 2-3: counters (single writer: the producer) */
	uint64_t commits;
	uint64_t records;
	uint64_t bytes; /* ring bytes written, seals and padding included */
	uint64_t backpressure_events; /* stages that found the ring full */
	uint64_t eagain; /* -EAGAIN returned to the caller */
	uint64_t wait_ns; /* time spent waiting for room */
	uint64_t used_hwm; /* high-water mark of ring bytes in use */
	uint64_t torn_discarded; /* half-written records found at attach */
	uint64_t uncommitted_discarded; /* whole records of an unsealed epoch */
	uint8_t pad2[2 * CKPT_CACHELINE - 72];
	uint8_t pad[4096 - 4 * CKPT_CACHELINE];
};

/* Page 2: flusher-written. */
struct ckpt_region_flush {
	/* line 0: what the producer polls when the ring looks full */
	uint64_t release_pos; /* ring space before this is free; release */
	uint64_t durable_epoch; /* newest epoch on stable storage; release */
	uint8_t pad0[CKPT_CACHELINE - 16];
	/* line 1: flusher identity and health */
	uint32_t flusher_pid; /* 0: none attached */
	int32_t error; /* -errno or CKPT_E* that failed the stream, 0 ok */
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC */
	uint32_t health; /* enum ckpt_health */
	uint32_t durable_futex; /* bumped after each durable publish; futex word */
	char backend[16]; /* NUL-padded name of the I/O backend */
	uint32_t why_seq; /* seqlock over why[]: odd while it is rewritten */
	uint8_t pad1[CKPT_CACHELINE - 44];
	/* line 2-3: counters (single writer: the flusher) */
	uint64_t epochs_read;
	uint64_t flushes; /* snapshots made durable */
	uint64_t epochs_coalesced; /* sum over flushes of epochs per flush */
	uint64_t flush_errors;
	uint64_t enospc_retries;
	uint64_t bytes_written;
	uint64_t last_flush_ns; /* duration of the last write + datasync */
	uint64_t corrupt_events;
	uint8_t pad2[2 * CKPT_CACHELINE - 64];
	char why[160]; /* sentence for the status when health != healthy */
	uint8_t pad[4096 - 4 * CKPT_CACHELINE - 160];
};

/* Page 3: flusher-written latency histograms (shm/hist.h has the bucket
 * rule), for profilers: read without locks, each bucket a relaxed load. */
struct ckpt_region_stats {
	uint64_t sync_us[128]; /* 0    one slot write + fdatasync (the I/O) */
	uint64_t flush_us[128]; /* 1024 encode start -> durable published */
	uint64_t lag_us[128]; /* 2048 oldest epoch in a write first read ->
			       * durable published: the durable lag */
	uint64_t last_lag_ns; /* 3072 lag of the newest durable write */
	uint64_t epochs_per_flush_max; /* 3080 most epochs coalesced in one */
	uint64_t sync_ns_sum; /* 3088 sums of what the histograms count, */
	uint64_t flush_ns_sum; /* 3096 in ns, for exact means */
	uint64_t lag_ns_sum; /* 3104 */
	uint8_t pad[4096 - 3112];
};

struct ckpt_region {
	struct ckpt_region_id id;
	struct ckpt_region_prod prod;
	struct ckpt_region_flush flush;
	struct ckpt_region_stats stats;
	/* ring follows at CKPT_REGION_HDR_SIZE */
};

_Static_assert(sizeof(struct ckpt_region_id) == 4096, "id page");
_Static_assert(sizeof(struct ckpt_region_prod) == 4096, "producer page");
_Static_assert(sizeof(struct ckpt_region_flush) == 4096, "flusher page");
_Static_assert(sizeof(struct ckpt_region_stats) == 4096, "stats page");
_Static_assert(sizeof(struct ckpt_region) == CKPT_REGION_HDR_SIZE, "header");
_Static_assert(offsetof(struct ckpt_region, stats) == 12288, "stats");
_Static_assert(offsetof(struct ckpt_region_stats, last_lag_ns) == 3072, "lag");
_Static_assert(offsetof(struct ckpt_region_stats, lag_ns_sum) == 3104, "sums");
_Static_assert(offsetof(struct ckpt_region_id, layout_version) == 8, "ver");
_Static_assert(offsetof(struct ckpt_region_id, name) == 80, "name");
_Static_assert(offsetof(struct ckpt_region_id, dir) == 216, "dir");
_Static_assert(offsetof(struct ckpt_region, prod) == 4096, "prod");
_Static_assert(offsetof(struct ckpt_region, flush) == 8192, "flush");
_Static_assert(offsetof(struct ckpt_region_prod, owner_pid) == 64, "owner");
_Static_assert(offsetof(struct ckpt_region_prod, commits) == 128, "pcnt");
_Static_assert(offsetof(struct ckpt_region_prod, flusher_mode) == 80, "pmode");
_Static_assert(offsetof(struct ckpt_region_flush, flusher_pid) == 64, "fl");
_Static_assert(offsetof(struct ckpt_region_flush, backend) == 88, "be");
_Static_assert(offsetof(struct ckpt_region_flush, why_seq) == 104, "wseq");
_Static_assert(offsetof(struct ckpt_region_flush, epochs_read) == 128, "fc");
_Static_assert(offsetof(struct ckpt_region_flush, why) == 256, "why");

/*
 * Ring records.  Every record starts 8-byte aligned with this header; len is
 * the whole record (header included) rounded up to 8.  The producer first
 * stores len | CKPT_REC_BUSY (claimed, in progress), writes the body, then
 * stores len with release: a record whose len has the BUSY bit was left
 * half-written.  A reader reads only up to commit_pos, so it never meets one
 * unless the region is damaged.  After each record the producer stores a
 * zero length word (the terminator), so the records between commit_pos and
 * the first zero are exactly those of the epoch being staged.
 */
#define CKPT_REC_BUSY 0x80000000u
#define CKPT_REC_ALIGN 8u

enum ckpt_rec_type {
	CKPT_R_OFFSET = 1,
	CKPT_R_PUT = 2,
	CKPT_R_DEL = 3,
	CKPT_R_META = 4,
	CKPT_R_SEAL = 5, /* seals an epoch: every record before it, from start */
	CKPT_R_PAD = 6, /* fills the ring's tail up to the wrap */
};

struct ckpt_rec_hdr {
	uint32_t len; /* record bytes incl. header, multiple of 8; BUSY bit */
	uint8_t type; /* enum ckpt_rec_type */
	uint8_t flags; /* 0 */
	uint16_t aux; /* OFFSET: topic length; else 0 */
};

struct ckpt_rec_offset { /* + topic bytes, padded */
	struct ckpt_rec_hdr h;
	int32_t partition;
	uint32_t zero;
	int64_t next_offset;
};

struct ckpt_rec_kv { /* PUT: + key + value; DEL: + key; META: + blob (klen) */
	struct ckpt_rec_hdr h;
	uint32_t klen;
	uint32_t vlen;
};

struct ckpt_rec_seal {
	struct ckpt_rec_hdr h;
	uint32_t nrec; /* records of the epoch, PAD excluded, seal excluded */
	uint32_t reserved;
	uint64_t epoch;
	uint64_t start_pos; /* ring position of the epoch's first byte */
	uint64_t body_len; /* seal position - start_pos (PAD included) */
	uint64_t hash; /* XXH3-64 over the ring bytes [start_pos, seal) */
};

_Static_assert(sizeof(struct ckpt_rec_hdr) == 8, "rec hdr");
_Static_assert(sizeof(struct ckpt_rec_offset) == 24, "rec offset");
_Static_assert(sizeof(struct ckpt_rec_kv) == 16, "rec kv");
_Static_assert(sizeof(struct ckpt_rec_seal) == 48, "rec seal");

/* Room kept free at each stage for the seal, the padding before it (< 48
 * bytes) and the zero terminator after it, so that ckpt_commit never fails
 * for lack of room once its deltas were staged. */
#define CKPT_SEAL_RESERVE (2 * sizeof(struct ckpt_rec_seal) + 8)

#endif
