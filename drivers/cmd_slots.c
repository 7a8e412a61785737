/*
 * cmd_slots.c - 'shmckpt inspect', 'verify' and 'dump': a stream's two slot
 * files, judged exactly as recovery judges them (ckpt__slot_decode: the
 * XXH3-128 and every structural check, a repeated key included), read-only;
 * and 'drop-region', which gives the shared-memory ring up in favour of
 * those slots once they are judged so.
 *
 * Which slot is "newest" when one is damaged: the one whose header claims
 * the higher (epoch, seq), as recovery orders valid slots.  A damaged slot's
 * claim is read from its raw header when the header can be read at all
 * (the file holds 4096 bytes, the magic matches, the format version is one
 * this build knows and the stream name is ours); a slot whose claim cannot
 * be read (missing, short, foreign, another format, wrong magic) is presumed
 * newest, because nothing rules out that it held the newest snapshot.  A
 * tie goes to the valid slot.  So "verify" says 0 only when the slot
 * recovery would use is, as far as anything on disk can tell, the newest
 * one written.  docs/TOOLS.md states the same rule.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "ckpt_kafka.h"
#include "internal.h"
#include "lock.h"
#include "region.h"
#include "ring.h"
#include "shmckpt.h"
#include "slot.h"
#include "snapshot.h"

#define EXIT_VERIFY_FALLBACK 1
#define EXIT_VERIFY_NONE 2
/* Slot files are read whole; this only refuses absurd sizes early. */
#define SLOT_READ_MAX ((size_t)1 << 40)
#define META_TEXT_MAX 4096 /* meta bytes shown by inspect's text output */

struct slot_view {
	int present; /* the file could be opened */
	int valid;
	int err; /* why not valid */
	char why[512];
	uint64_t file_size;
	ckpt__slot_info_t info; /* valid slots */
	ckpt__snap_t *snap; /* valid slots: the decoded snapshot */
	int claim_ok; /* the header's claims could be read */
	uint32_t c_version;
	int64_t c_epoch;
	uint64_t c_seq, c_time, c_body_len;
};

struct stream_view {
	const char *name;
	char absdir[CKPT_DIR_MAX];
	struct slot_view s[2];
	int newest; /* by the rule above; -1 none */
	int use; /* the slot recovery would load; -1 none */
	pid_t writer, flusher; /* lock holders (0 none) */
};

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t ld32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The raw claims of a header that failed verification (FORMAT.md offsets). */
static void read_claim(struct slot_view *v, const unsigned char *b,
		       size_t len, const char *name)
{
	uint32_t nl;

	if (len < CKPT_SLOT_HDR_SIZE || memcmp(b, "SHMCKSLT", 8) != 0)
		return;
	v->c_version = ld32(b + 8);
	if (v->c_version == 0 || v->c_version > CKPT_SLOT_FORMAT_VERSION)
		return; /* another layout: its fields may be elsewhere */
	nl = ld32(b + 76);
	if (nl != strlen(name) || memcmp(b + 80, name, nl) != 0)
		return; /* not a claim about this stream */
	v->c_epoch = (int64_t)ld64(b + 16);
	v->c_seq = ld64(b + 24);
	v->c_time = ld64(b + 32);
	v->c_body_len = ld64(b + 40);
	v->claim_ok = 1;
}

static void load_slot(int sdirfd, const char *name, int i, struct slot_view *v)
{
	char path[16];
	void *buf = NULL;
	size_t len = 0;
	int ret;

	memset(v, 0, sizeof(*v));
	snprintf(path, sizeof(path), "slot-%d", i);
	ret = ckpt__slot_read_file(sdirfd, path, SLOT_READ_MAX, &buf, &len);
	if (ret < 0) {
		v->err = ret;
		snprintf(v->why, sizeof(v->why), "%s",
			 ret == -ENOENT ? "missing" : ckpt_last_error());
		return;
	}
	v->present = 1;
	v->file_size = len;
	v->snap = ckpt__snap_new();
	if (!v->snap) {
		v->err = -ENOMEM;
		snprintf(v->why, sizeof(v->why), "out of memory");
		free(buf);
		return;
	}
	/* decode, not only verify: recovery refuses a slot that verifies
	 * but repeats a key, and so must we */
	ret = ckpt__slot_decode(buf, len, name, v->snap, &v->info);
	if (ret == 0) {
		v->valid = 1;
		v->claim_ok = 1;
		v->c_version = v->info.format_version;
		v->c_epoch = v->info.epoch;
		v->c_seq = v->info.seq;
		v->c_time = v->info.time_ns;
		v->c_body_len = v->info.image_len - CKPT_SLOT_HDR_SIZE;
	} else {
		v->err = ret;
		snprintf(v->why, sizeof(v->why), "%s", ckpt_last_error());
		ckpt__snap_free(v->snap);
		v->snap = NULL;
		read_claim(v, buf, len, name);
	}
	free(buf);
}

/* 1 if slot a's claim ranks above slot b's (the rule at the top). */
static int claims_newer(const struct slot_view *a, const struct slot_view *b)
{
	if (!a->claim_ok || !b->claim_ok)
		return !a->claim_ok && b->claim_ok;
	if (a->c_epoch != b->c_epoch)
		return a->c_epoch > b->c_epoch;
	if (a->c_seq != b->c_seq)
		return a->c_seq > b->c_seq;
	return a->valid && !b->valid; /* a tie goes to the valid slot */
}

/* Lock holders, read-only (core/lock.c's lock file: a byte lock per kind,
 * the holder's pid as text in a 32-byte field per kind).  Never creates
 * the file. */
static pid_t lock_holder(int sdirfd, int kind)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = kind, .l_len = 1 };
	char buf[33] = { 0 };
	pid_t pid = 0;
	int fd = openat(sdirfd, "lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return 0;
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
		pid = -1; /* held, pid unknown */
		if (pread(fd, buf, 32, kind * 32) > 0 &&
		    strtol(buf, NULL, 10) > 0)
			pid = (pid_t)strtol(buf, NULL, 10);
	}
	close(fd);
	return pid;
}

/* Fill *sv.  0, or -1 after printing why (no stream directory). */
static int analyse(const char *cmd, const char *dir, const char *name,
		   struct stream_view *sv)
{
	int sdirfd;

	memset(sv, 0, sizeof(*sv));
	sv->name = name;
	sv->newest = sv->use = -1;
	if (ckpt__absdir(dir, sv->absdir, sizeof(sv->absdir)) < 0) {
		cli_err(cmd, "%s", ckpt_last_error());
		return -1;
	}
	sdirfd = ckpt__stream_dir(sv->absdir, name, 0);
	if (sdirfd < 0) {
		cli_err(cmd, "%s", sdirfd == -ENOENT
				   ? "no such stream (no stream directory)"
				   : ckpt_last_error());
		if (sdirfd == -ENOENT)
			fprintf(stderr, "  looked for %s/%s/\n", sv->absdir,
				name);
		return -1;
	}
	sv->writer = lock_holder(sdirfd, CKPT_LOCK_WRITER);
	sv->flusher = lock_holder(sdirfd, CKPT_LOCK_FLUSHER);
	for (int i = 0; i < 2; i++)
		load_slot(sdirfd, name, i, &sv->s[i]);
	close(sdirfd);

	sv->newest = claims_newer(&sv->s[1], &sv->s[0]) ? 1 : 0;
	/* recovery: the valid slot with the higher (epoch, seq) */
	for (int i = 0; i < 2; i++) {
		const struct slot_view *a = &sv->s[i], *b = &sv->s[1 - i];
		if (a->valid && (!b->valid || a->c_epoch > b->c_epoch ||
				 (a->c_epoch == b->c_epoch && a->c_seq > b->c_seq)))
			sv->use = i;
	}
	if (sv->use < 0 && sv->s[0].valid)
		sv->use = 0; /* both valid and equal */
	return 0;
}

static void release(struct stream_view *sv)
{
	for (int i = 0; i < 2; i++)
		ckpt__snap_free(sv->s[i].snap);
}

static void warn_open(const struct stream_view *sv)
{
	if (sv->writer || sv->flusher)
		fprintf(stderr, "note: stream '%s' is open (writer pid %d, "
			"flusher pid %d): a slot being written may read as "
			"damaged until the write ends\n", sv->name,
			(int)sv->writer, (int)sv->flusher);
}

/* ------------------------------------------------------------------------
 * Byte strings: UTF-8 check, JSON string, base64, hex
 * ------------------------------------------------------------------------ */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF. */
static int utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* JSON string of valid UTF-8 bytes (NUL and controls escaped). */
static void json_utf8(FILE *f, const unsigned char *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		switch (c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

static void base64(FILE *f, const unsigned char *p, size_t n)
{
	static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				 "0123456789+/";
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		fputc(tb[v >> 18], f);
		fputc(tb[(v >> 12) & 63], f);
		fputc(tb[(v >> 6) & 63], f);
		fputc(tb[v & 63], f);
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		fprintf(f, "%c%c==", tb[v >> 18], tb[(v >> 12) & 63]);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fprintf(f, "%c%c%c=", tb[v >> 18], tb[(v >> 12) & 63],
			tb[(v >> 6) & 63]);
	}
}

/* Informational text (a message, a path) as a plain JSON string: bytes
 * that are not valid UTF-8 become '?'. */
static void json_text(FILE *f, const char *s)
{
	size_t n = strlen(s);
	char *t;

	if (utf8_valid((const unsigned char *)s, n) || !(t = strdup(s))) {
		json_utf8(f, (const unsigned char *)s, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] >= 0x80)
			t[i] = '?';
	json_utf8(f, (const unsigned char *)t, n);
	free(t);
}

/* The documented encoding of arbitrary bytes (docs/TOOLS.md):
 * {"utf8":"..."} when the bytes are valid UTF-8, else {"base64":"..."}. */
static void json_bytes(FILE *f, const void *vp, size_t n)
{
	const unsigned char *p = vp;

	if (utf8_valid(p, n)) {
		fputs("{\"utf8\":", f);
		json_utf8(f, p, n);
	} else {
		fputs("{\"base64\":\"", f);
		base64(f, p, n);
		fputc('"', f);
	}
	fputc('}', f);
}

/* Printable text: valid UTF-8 without controls other than \n and \t. */
static int printable(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7f)
			return 0;
	return utf8_valid(p, n);
}

static void hexdump(const unsigned char *p, size_t n, const char *indent)
{
	for (size_t i = 0; i < n; i += 16) {
		printf("%s%06zx ", indent, i);
		for (size_t j = 0; j < 16; j++) {
			if (i + j < n)
				printf(" %02x", p[i + j]);
			else
				printf("   ");
		}
		printf("  ");
		for (size_t j = 0; j < 16 && i + j < n; j++)
			putchar(p[i + j] >= 0x20 && p[i + j] < 0x7f ? p[i + j]
								    : '.');
		putchar('\n');
	}
}

static const char *iso_time(char *buf, size_t n, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	char b[32];

	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, n, "?");
		return buf;
	}
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03uZ", b, (unsigned)(ns / 1000000 % 1000));
	return buf;
}

static const char *code_name(int code)
{
	switch (code) {
	case CKPT_ECORRUPT: return "CKPT_ECORRUPT";
	case CKPT_EVERSION: return "CKPT_EVERSION";
	case CKPT_EFOREIGN: return "CKPT_EFOREIGN";
	case CKPT_ESTREAM: return "CKPT_ESTREAM";
	default: return ckpt_strerror(code);
	}
}

/* ------------------------------------------------------------------------
 * Gap records (drivers/kafka/gap.c: JSON, one gap object per line)
 * ------------------------------------------------------------------------ */

struct gaps {
	int n;
	int64_t lost_total;
	ckpt_kafka_gap_t *g;
	char (*topic)[256];
};

/* 1 and *gs filled if @meta is a gap record, else 0. */
static int gaps_parse(const void *meta, size_t len, struct gaps *gs)
{
	const char *p = meta, *end = p + len;
	int n, k = 0;

	memset(gs, 0, sizeof(*gs));
	n = ckpt_kafka_gaps_parse(meta, len, NULL, 0, &gs->lost_total);
	if (n <= 0)
		return 0;
	gs->g = calloc((size_t)n, sizeof(*gs->g));
	gs->topic = calloc((size_t)n, sizeof(*gs->topic));
	if (!gs->g || !gs->topic ||
	    ckpt_kafka_gaps_parse(meta, len, gs->g, n, NULL) != n) {
		free(gs->g);
		free(gs->topic);
		return 0;
	}
	gs->n = n;
	/* the topic is not in ckpt_kafka_gap_t: take it from each gap line,
	 * in the same order the parser reads them */
	for (; p < end && k < n; p++) {
		static const char key[] = "\n{\"topic\":\"";
		size_t kl = sizeof(key) - 1, t = 0;
		if ((size_t)(end - p) < kl || memcmp(p, key, kl) != 0)
			continue;
		for (p += kl; p < end && *p != '"' && t < 255; p++)
			gs->topic[k][t++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
		k++;
	}
	return 1;
}

static void gaps_free(struct gaps *gs)
{
	free(gs->g);
	free(gs->topic);
}

static const char *policy_name(int p)
{
	return p == CKPT_KAFKA_GAP_EARLIEST ? "earliest"
	       : p == CKPT_KAFKA_GAP_LATEST ? "latest"
	       : p == CKPT_KAFKA_GAP_FAIL   ? "fail"
					    : "?";
}

/* ------------------------------------------------------------------------
 * Options shared by the three commands
 * ------------------------------------------------------------------------ */

struct opts {
	const char *dir, *stream;
	int json;
	int yes, dry_run; /* drop-region only */
};

/* 0, 1 (--help printed), or -1 (usage error printed). */
static int parse(const char *cmd, int argc, char **argv, struct opts *o,
		 void (*usage)(FILE *))
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "stream", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "yes", no_argument, NULL, 'y' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 's': o->stream = optarg; break;
		case 'j': o->json = 1; break;
		case 'y': o->yes = 1; break;
		case 'n': o->dry_run = 1; break;
		case 'h': usage(stdout); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		cli_err(cmd, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if ((o->yes || o->dry_run) && strcmp(cmd, "drop-region") != 0) {
		cli_err(cmd, "--yes and --dry-run are options of drop-region "
			"only");
		return -1;
	}
	if (!o->dir || !o->stream) {
		cli_err(cmd, "--dir DIR and --stream NAME are required "
			"(shmckpt %s --help)", cmd);
		return -1;
	}
	if (ckpt__check_name(o->stream) < 0) {
		cli_err(cmd, "--stream: %s", ckpt_last_error());
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * inspect
 * ------------------------------------------------------------------------ */

/* The start of inspect's and drop-region's JSON object: stream and dir. */
static void json_head(const struct stream_view *sv)
{
	printf("{\"stream\":");
	json_utf8(stdout, (const unsigned char *)sv->name, strlen(sv->name));
	printf(",\"dir\":");
	json_text(stdout, sv->absdir);
}

static void inspect_text_slot(const struct stream_view *sv, int i)
{
	const struct slot_view *v = &sv->s[i];
	char t[64], tail[96] = "";
	const void *meta = NULL;
	size_t mlen = 0;
	struct gaps gs;

	if (i == sv->use)
		snprintf(tail, sizeof(tail), " (newest valid: recovery loads "
			 "it)");
	else if (i == sv->newest && !v->valid)
		snprintf(tail, sizeof(tail), " (newest by its header claim)");
	if (v->valid)
		printf("slot-%d  valid%s\n", i, tail);
	else
		printf("slot-%d  INVALID%s: %s [%s]\n", i, tail, v->why,
		       code_name(v->err));
	if (v->present)
		printf("  file        %" PRIu64 " bytes\n", v->file_size);
	if (!v->claim_ok) {
		if (v->present)
			printf("  header      unreadable: no claim of epoch or "
			       "seq\n");
		return;
	}
	printf("  %-11s epoch %" PRId64 ", seq %" PRIu64 ", format version "
	       "%u\n", v->valid ? "holds" : "claims", v->c_epoch, v->c_seq,
	       v->c_version);
	printf("  written     %s (%" PRIu64 " ns)\n",
	       iso_time(t, sizeof(t), v->c_time), v->c_time);
	printf("  image       %" PRIu64 " bytes (header %u + body %" PRIu64
	       ")\n", CKPT_SLOT_HDR_SIZE + v->c_body_len, CKPT_SLOT_HDR_SIZE,
	       v->c_body_len);
	if (!v->valid)
		return;
	printf("  counts      %" PRIu64 " keys, %" PRIu64 " offsets, %" PRIu64
	       " bytes of metadata\n",
	       v->info.nkeys, v->info.noffsets, v->info.meta_len);
	ckpt__snap_get_meta(v->snap, &meta, &mlen);
	if (gaps_parse(meta, mlen, &gs)) {
		printf("  gaps        %d recorded, %" PRId64 " records lost in "
		       "all\n", gs.n, gs.lost_total);
		for (int k = 0; k < gs.n; k++) {
			const ckpt_kafka_gap_t *g = &gs.g[k];
			iso_time(t, sizeof(t), (uint64_t)g->when_unix *
						       1000000000ull);
			printf("    %s [%d]: checkpointed %" PRId64 ", earliest "
			       "%" PRId64 ", resumed %" PRId64 ", lost %" PRId64
			       " (policy %s, %s)\n",
			       gs.topic[k][0] ? gs.topic[k] : "?", g->partition,
			       g->checkpointed, g->earliest, g->resumed, g->lost,
			       policy_name(g->policy), t);
		}
		gaps_free(&gs);
	} else {
		printf("  gaps        none recorded\n");
	}
	if (mlen) {
		size_t shown = mlen > META_TEXT_MAX ? META_TEXT_MAX : mlen;
		const unsigned char *m = meta;
		if (printable(m, mlen)) {
			printf("  meta (text)\n    ");
			for (size_t k = 0; k < shown; k++) {
				putchar(m[k]);
				if (m[k] == '\n')
					fputs("    ", stdout);
			}
			putchar('\n');
		} else {
			printf("  meta (hex)\n");
			hexdump(m, shown, "    ");
		}
		if (shown < mlen)
			printf("    ... %zu more bytes (shmckpt dump shows all)\n",
			       mlen - shown);
	}
}

static void inspect_json_slot(const struct stream_view *sv, int i)
{
	const struct slot_view *v = &sv->s[i];
	const void *meta = NULL;
	size_t mlen = 0;
	struct gaps gs;
	char t[64];

	printf("{\"slot\":%d,\"file\":\"slot-%d\",\"present\":%s", i, i,
	       v->present ? "true" : "false");
	if (v->present)
		printf(",\"file_size\":%" PRIu64, v->file_size);
	printf(",\"valid\":%s,\"error\":", v->valid ? "true" : "false");
	if (v->valid) {
		printf("null,\"error_code\":null");
	} else {
		json_text(stdout, v->why);
		printf(",\"error_code\":");
		json_utf8(stdout, (const unsigned char *)code_name(v->err),
			  strlen(code_name(v->err)));
	}
	printf(",\"newest\":%s,\"recovery_uses\":%s",
	       i == sv->newest ? "true" : "false",
	       i == sv->use ? "true" : "false");
	if (!v->claim_ok) {
		printf(",\"header\":null}");
		return;
	}
	printf(",\"header\":{\"format_version\":%u,\"epoch\":%" PRId64
	       ",\"seq\":%" PRIu64 ",\"time_ns\":%" PRIu64 ",\"time\":\"%s\""
	       ",\"image_size\":%" PRIu64 "}",
	       v->c_version, v->c_epoch, v->c_seq, v->c_time,
	       iso_time(t, sizeof(t), v->c_time),
	       CKPT_SLOT_HDR_SIZE + v->c_body_len);
	if (!v->valid) {
		putchar('}');
		return;
	}
	printf(",\"nkeys\":%" PRIu64 ",\"noffsets\":%" PRIu64
	       ",\"meta_len\":%" PRIu64 ",\"meta\":",
	       v->info.nkeys, v->info.noffsets, v->info.meta_len);
	ckpt__snap_get_meta(v->snap, &meta, &mlen);
	if (mlen)
		json_bytes(stdout, meta, mlen);
	else
		printf("null");
	printf(",\"gaps\":");
	if (gaps_parse(meta, mlen, &gs)) {
		printf("{\"lost_total\":%" PRId64 ",\"gaps\":[", gs.lost_total);
		for (int k = 0; k < gs.n; k++) {
			const ckpt_kafka_gap_t *g = &gs.g[k];
			printf("%s{\"topic\":", k ? "," : "");
			json_utf8(stdout, (const unsigned char *)gs.topic[k],
				  strlen(gs.topic[k]));
			printf(",\"partition\":%d,\"checkpointed\":%" PRId64
			       ",\"earliest\":%" PRId64 ",\"resumed\":%" PRId64
			       ",\"lost\":%" PRId64 ",\"policy\":\"%s\","
			       "\"when\":%" PRId64 "}",
			       g->partition, g->checkpointed, g->earliest,
			       g->resumed, g->lost, policy_name(g->policy),
			       g->when_unix);
		}
		printf("]}");
		gaps_free(&gs);
	} else {
		printf("null");
	}
	putchar('}');
}

static void inspect_usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt inspect --dir DIR --stream NAME [--json]\n"
"\n"
"Show both slot files of stream NAME under DIR: valid or why not (the\n"
"check that failed), the epoch, seq, time written and format version\n"
"(claimed by the header when the slot is damaged), image and file size,\n"
"key/offset/metadata counts, the retention gaps the Kafka driver recorded,\n"
"and the metadata (text when printable, else hex).  Read-only.\n"
"\n"
"  --json   one JSON object (docs/TOOLS.md)\n"
"\n"
"Exit: 0 the slots were inspected (valid or not: 'shmckpt verify' judges),\n"
"1 no stream directory or unreadable, 64 usage error.\n");
}

int cmd_inspect_main(int argc, char **argv)
{
	struct stream_view sv;
	struct opts o;
	int ret = parse("inspect", argc, argv, &o, inspect_usage);

	if (ret)
		return ret > 0 ? CLI_OK : CLI_USAGE;
	if (analyse("inspect", o.dir, o.stream, &sv) < 0)
		return CLI_FAIL;
	warn_open(&sv);
	if (o.json) {
		json_head(&sv);
		printf(",\"writer_pid\":%d,\"flusher_pid\":%d", (int)sv.writer,
		       (int)sv.flusher);
		printf(",\"newest\":%d,\"recovery_uses\":", sv.newest);
		if (sv.use >= 0)
			printf("%d", sv.use);
		else
			printf("null");
		printf(",\"slots\":[");
		inspect_json_slot(&sv, 0);
		putchar(',');
		inspect_json_slot(&sv, 1);
		printf("]}\n");
	} else {
		printf("stream %s in %s/%s/\n", o.stream, sv.absdir, o.stream);
		for (int i = 0; i < 2; i++)
			inspect_text_slot(&sv, i);
		if (sv.use < 0)
			printf("recovery: no valid slot: a restart refuses to "
			       "start\n");
		else
			printf("recovery: loads slot-%d (epoch %" PRId64 ")%s\n",
			       sv.use, sv.s[sv.use].c_epoch,
			       sv.use != sv.newest ? ", falling back from the "
						     "damaged newer slot"
						   : "");
	}
	release(&sv);
	return CLI_OK;
}

/* ------------------------------------------------------------------------
 * verify
 * ------------------------------------------------------------------------ */

static void verify_usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt verify --dir DIR --stream NAME\n"
"\n"
"Verify both slot files of stream NAME exactly as recovery does, and say\n"
"whether the newest slot is valid.  'Newest' is the slot whose header\n"
"claims the higher (epoch, seq), even when it is damaged; a slot whose\n"
"header cannot be read at all (missing, short, bad magic, other format or\n"
"stream) is presumed newest; a tie goes to the valid slot.  Read-only.\n"
"\n"
"Exit: 0 the newest slot is valid\n"
"      1 the newest slot is damaged but the older one is valid (recovery\n"
"        falls back to it: the epochs after it must come from the ring)\n"
"      2 no valid slot (no stream directory included): recovery refuses\n"
"     64 usage error\n");
}

int cmd_verify_main(int argc, char **argv)
{
	struct stream_view sv;
	struct opts o;
	int ret = parse("verify", argc, argv, &o, verify_usage), rc;

	if (ret)
		return ret > 0 ? CLI_OK : CLI_USAGE;
	if (o.json) {
		cli_err("verify", "--json is not an option of verify (its answer "
			"is the exit code; shmckpt inspect --json has details)");
		return CLI_USAGE;
	}
	if (analyse("verify", o.dir, o.stream, &sv) < 0)
		return EXIT_VERIFY_NONE;
	warn_open(&sv);
	for (int i = 0; i < 2; i++) {
		const struct slot_view *v = &sv.s[i];
		if (v->valid)
			printf("slot-%d: valid, epoch %" PRId64 ", seq %" PRIu64
			       "\n", i, v->c_epoch, v->c_seq);
		else if (v->claim_ok)
			printf("slot-%d: INVALID (claims epoch %" PRId64
			       ", seq %" PRIu64 "): %s\n", i, v->c_epoch,
			       v->c_seq, v->why);
		else
			printf("slot-%d: INVALID (no readable claim): %s\n", i,
			       v->why);
	}
	if (sv.use < 0) {
		printf("no valid slot: recovery refuses to start\n");
		rc = EXIT_VERIFY_NONE;
	} else if (sv.use == sv.newest) {
		printf("ok: newest slot-%d is valid (epoch %" PRId64 ")\n",
		       sv.use, sv.s[sv.use].c_epoch);
		rc = CLI_OK;
	} else {
		printf("fallback: newest slot-%d is damaged; recovery loads "
		       "slot-%d (epoch %" PRId64 ")\n",
		       sv.newest, sv.use, sv.s[sv.use].c_epoch);
		rc = EXIT_VERIFY_FALLBACK;
	}
	release(&sv);
	return rc;
}

/* ------------------------------------------------------------------------
 * dump
 * ------------------------------------------------------------------------ */

struct kv {
	const unsigned char *k, *v;
	size_t kl, vl;
};
struct off {
	char *topic;
	int32_t part;
	int64_t next;
};
struct collect {
	struct kv *kv;
	struct off *off;
	size_t n, cap;
	int oom;
};

static int collect_kv(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	struct collect *c = arg;
	if (c->n == c->cap) {
		c->oom = 1;
		return 1;
	}
	c->kv[c->n++] = (struct kv){ key, val, klen, vlen };
	return 0;
}

static int collect_off(void *arg, const char *topic, int32_t partition,
		       int64_t next)
{
	struct collect *c = arg;
	struct off *o;

	if (c->n == c->cap) {
		c->oom = 1;
		return 1;
	}
	o = &c->off[c->n];
	o->topic = strdup(topic);
	if (!o->topic) {
		c->oom = 1;
		return 1;
	}
	o->part = partition;
	o->next = next;
	c->n++;
	return 0;
}

static int bytes_cmp(const unsigned char *a, size_t al,
		     const unsigned char *b, size_t bl)
{
	int r = memcmp(a, b, al < bl ? al : bl);
	return r ? r : (al > bl) - (al < bl);
}

static int kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	return bytes_cmp(x->k, x->kl, y->k, y->kl);
}

static int off_cmp(const void *a, const void *b)
{
	const struct off *x = a, *y = b;
	int r = strcmp(x->topic, y->topic);
	return r ? r : (x->part > y->part) - (x->part < y->part);
}

static void dump_usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt dump --dir DIR --stream NAME [--json]\n"
"\n"
"Print the newest valid slot of stream NAME as one JSON object (the only\n"
"format; --json may be given for clarity): stream, slot, epoch, seq,\n"
"time, offsets (sorted by topic, partition), metadata and state (every\n"
"key and value, sorted by key bytes).  Topics, keys, values and metadata\n"
"are byte strings encoded as {\"utf8\": \"...\"} when they are valid UTF-8,\n"
"else {\"base64\": \"...\"} (RFC 4648, padded); docs/TOOLS.md.  This is the\n"
"durable state: epochs committed but still in the ring are not in it.\n"
"Read-only.\n"
"\n"
"Exit: 0 dumped, 1 no valid slot or no stream, 64 usage error.\n");
}

int cmd_dump_main(int argc, char **argv)
{
	struct stream_view sv;
	struct collect c = { 0 };
	const struct slot_view *v;
	const void *meta = NULL;
	size_t mlen = 0;
	struct opts o;
	char t[64];
	int ret = parse("dump", argc, argv, &o, dump_usage), rc = CLI_OK;

	if (ret)
		return ret > 0 ? CLI_OK : CLI_USAGE;
	if (analyse("dump", o.dir, o.stream, &sv) < 0)
		return CLI_FAIL;
	if (sv.use < 0) {
		cli_err("dump", "stream '%s' has no valid slot: slot-0: %s; "
			"slot-1: %s", o.stream, sv.s[0].why, sv.s[1].why);
		release(&sv);
		return CLI_FAIL;
	}
	warn_open(&sv);
	v = &sv.s[sv.use];

	/* collect everything before printing, so that a failure prints
	 * nothing rather than half a document */
	c.cap = ckpt__snap_noffsets(v->snap);
	c.off = calloc(c.cap ? c.cap : 1, sizeof(*c.off));
	if (c.off)
		ckpt__snap_foreach_offset(v->snap, collect_off, &c);
	if (!c.off || c.oom) {
		cli_err("dump", "out of memory");
		rc = CLI_FAIL;
		goto out;
	}
	{
		struct collect k = { 0 };
		k.cap = ckpt__snap_nkeys(v->snap);
		k.kv = calloc(k.cap ? k.cap : 1, sizeof(*k.kv));
		if (k.kv)
			ckpt__snap_foreach_kv(v->snap, collect_kv, &k);
		if (!k.kv || k.oom) {
			free(k.kv);
			cli_err("dump", "out of memory");
			rc = CLI_FAIL;
			goto out;
		}
		qsort(c.off, c.n, sizeof(*c.off), off_cmp);
		qsort(k.kv, k.n, sizeof(*k.kv), kv_cmp);

		printf("{\"stream\":");
		json_utf8(stdout, (const unsigned char *)o.stream,
			  strlen(o.stream));
		printf(",\"slot\":%d,\"epoch\":%" PRId64 ",\"seq\":%" PRIu64
		       ",\"time_ns\":%" PRIu64 ",\"time\":\"%s\""
		       ",\"format_version\":%u,\n\"offsets\":[",
		       sv.use, v->c_epoch, v->c_seq, v->c_time,
		       iso_time(t, sizeof(t), v->c_time), v->c_version);
		for (size_t i = 0; i < c.n; i++) {
			printf("%s\n{\"topic\":", i ? "," : "");
			json_bytes(stdout, c.off[i].topic,
				   strlen(c.off[i].topic));
			printf(",\"partition\":%d,\"next_offset\":%" PRId64 "}",
			       c.off[i].part, c.off[i].next);
		}
		printf("],\n\"metadata\":");
		ckpt__snap_get_meta(v->snap, &meta, &mlen);
		if (meta && mlen)
			json_bytes(stdout, meta, mlen);
		else
			printf("null");
		printf(",\n\"state\":[");
		for (size_t i = 0; i < k.n; i++) {
			printf("%s\n{\"key\":", i ? "," : "");
			json_bytes(stdout, k.kv[i].k, k.kv[i].kl);
			printf(",\"value\":");
			json_bytes(stdout, k.kv[i].v, k.kv[i].vl);
			putchar('}');
		}
		printf("]}\n");
		free(k.kv);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_err("dump", "writing the output: %s", strerror(errno));
		rc = CLI_FAIL;
	}
out:
	for (size_t i = 0; i < c.n; i++)
		free(c.off[i].topic);
	free(c.off);
	release(&sv);
	return rc;
}

/* ------------------------------------------------------------------------
 * drop-region
 * ------------------------------------------------------------------------ */

static void drop_usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt drop-region --dir DIR --stream NAME (--yes | --dry-run)\n"
"                           [--json]\n"
"\n"
"Give up the damaged shared-memory region (the ring) of stream NAME and\n"
"keep its slot files: the next open recovers the newest valid slot and goes\n"
"on from there.  What is lost is exactly the epochs the ring held after\n"
"that slot; the report says which, and which of them had been reported\n"
"durable (their slot is the damaged one).  This is the way out when\n"
"ckpt_open fails with CKPT_ECORRUPT naming the ring and the slots are good;\n"
"CKPT_O_RESET, by contrast, discards the slots too.\n"
"\n"
"It takes the stream's writer and flusher locks first, so no consumer and\n"
"no sidecar can open or serve the stream meanwhile, and refuses:\n"
"  - while a process has the stream open, or a flusher (a shmckptd\n"
"    sidecar) serves it;\n"
"  - when no slot is valid (the ring may hold the only copy: see\n"
"    'shmckpt inspect');\n"
"  - when the region is not damaged (its ring replays cleanly: a plain\n"
"    open recovers every epoch, so there is nothing to drop);\n"
"  - when the region records that its flusher failed after writing the\n"
"    slot the next open would load, before making it durable (only the\n"
"    region knows not to trust that slot).\n"
"\n"
"  --yes      do it\n"
"  --dry-run  only say what would be dropped\n"
"  --json     one JSON object (docs/TOOLS.md)\n"
"\n"
"Exit: 0 dropped (or, with --dry-run, would be), 1 refused or failed,\n"
"64 usage error.\n");
}

/* Take lock @kind of the stream, or say who holds it.  fd or -1. */
static int drop_lock(const char *cmd, int sdirfd, int kind, const char *name)
{
	pid_t holder = 0;
	int fd = ckpt__lock(sdirfd, kind, &holder);

	if (fd == -EBUSY)
		cli_err(cmd, kind == CKPT_LOCK_WRITER
				     ? "stream '%s' is open by pid %d: stop that "
				       "process first"
				     : "stream '%s' is flushed by pid %d (a "
				       "shmckptd sidecar?): stop it, or let it "
				       "finish with the stream first",
			name, (int)holder);
	else if (fd < 0)
		cli_err(cmd, "cannot take the stream's %s lock: %s",
			kind == CKPT_LOCK_WRITER ? "writer" : "flusher",
			ckpt_strerror(fd));
	return fd < 0 ? -1 : fd;
}

/* Does the region's ring replay cleanly from release_pos to commit_pos? */
static int ring_replays(ckpt__region_t *rg, char *why, size_t n)
{
	ckpt__rd_t rd;
	ckpt_epoch_t ep;
	int ret;

	ckpt__rd_init(&rd, rg);
	while ((ret = ckpt__rd_next(&rd, &ep)) > 0)
		;
	if (ret < 0)
		snprintf(why, n, "%s", ckpt_last_error());
	ckpt__rd_free(&rd);
	return ret == 0;
}

int cmd_drop_region_main(int argc, char **argv)
{
	const char *cmd = "drop-region";
	char absdir[CKPT_DIR_MAX], rwhy[512] = "", ferr[160] = "";
	struct stream_view sv;
	ckpt__region_t rg;
	struct opts o;
	int64_t committed = -1, durable = -1, slot_epoch;
	int ret = parse(cmd, argc, argv, &o, drop_usage), sdirfd;
	int wlock, flock = -1, present, damaged, rc = CLI_FAIL;

	if (ret)
		return ret > 0 ? CLI_OK : CLI_USAGE;
	if (o.yes == o.dry_run) {
		cli_err(cmd, "say --yes to drop the region, or --dry-run to "
			"see what would be dropped");
		return CLI_USAGE;
	}
	/* Both locks before looking at anything: ckpt_open takes the writer
	 * lock before it attaches or creates the region, and a flusher (in
	 * a consumer or a sidecar) holds the other while it writes slots. */
	if (ckpt__absdir(o.dir, absdir, sizeof(absdir)) < 0) {
		cli_err(cmd, "%s", ckpt_last_error());
		return CLI_FAIL;
	}
	sdirfd = ckpt__stream_dir(absdir, o.stream, 0);
	if (sdirfd < 0) {
		cli_err(cmd, "%s", sdirfd == -ENOENT
				   ? "no such stream (no stream directory)"
				   : ckpt_last_error());
		return CLI_FAIL;
	}
	wlock = drop_lock(cmd, sdirfd, CKPT_LOCK_WRITER, o.stream);
	if (wlock >= 0)
		flock = drop_lock(cmd, sdirfd, CKPT_LOCK_FLUSHER, o.stream);
	close(sdirfd);
	if (wlock < 0 || flock < 0)
		goto out_locks;
	if (analyse(cmd, o.dir, o.stream, &sv) < 0)
		goto out_locks;
	if (sv.use < 0) {
		cli_err(cmd, "no valid slot: the region may hold the only copy "
			"of the stream's state; refusing (shmckpt inspect "
			"--dir %s --stream %s says why each slot is invalid)",
			o.dir, o.stream);
		goto out;
	}
	slot_epoch = sv.s[sv.use].c_epoch;

	ret = ckpt__region_attach(sv.absdir, o.stream, &rg);
	present = ret != -ENOENT;
	damaged = ret < 0 && present;
	if (damaged)
		snprintf(rwhy, sizeof(rwhy), "%s", ckpt_last_error());
	if (ret == 0) {
		int err = (int)ckpt__load_acquire(&rg.hdr->flush.error);
		/* read after attach checked the positions; reported only */
		committed = (int64_t)ckpt__load_acquire(
			&rg.hdr->prod.committed_epoch);
		durable = (int64_t)ckpt__load_acquire(
			&rg.hdr->flush.durable_epoch);
		damaged = !ring_replays(&rg, rwhy, sizeof(rwhy));
		if (err)
			snprintf(ferr, sizeof(ferr), "%s", ckpt_strerror(err));
		ckpt__region_unmap(&rg);
		if (!damaged && durable > slot_epoch) {
			cli_err(cmd, "the region of stream '%s' is not damaged, "
				"but the slots are behind it: epochs %" PRId64
				"..%" PRId64 " were made durable and their slot "
				"is damaged or gone; restore the slot files "
				"(dropping the ring would not bring them back)",
				o.stream, slot_epoch + 1, durable);
			goto out;
		}
		if (!damaged) {
			cli_err(cmd, "the region of stream '%s' is not damaged: "
				"its ring replays cleanly to epoch %" PRId64
				", which the next open recovers; nothing to "
				"drop", o.stream, committed);
			goto out;
		}
		/* recover.c distrusts a slot newer than durable_epoch when
		 * the flusher failed (its datasync may have failed): that
		 * knowledge lives in the region only */
		if (ferr[0] && slot_epoch > durable) {
			cli_err(cmd, "the region records that its flusher failed "
				"(%s) with epoch %" PRId64 " durable; slot-%d "
				"(epoch %" PRId64 ") was written but never made "
				"durable, and without the region the next open "
				"would trust it; refusing (CKPT_O_RESET starts "
				"over)", ferr, durable, sv.use, slot_epoch);
			goto out;
		}
	}
	if (present && o.yes) {
		ret = ckpt__region_unlink(sv.absdir, o.stream);
		if (ret < 0 && ret != -ENOENT) {
			cli_err(cmd, "removing the region: %s",
				ckpt_strerror(ret));
			goto out;
		}
	}
	rc = CLI_OK;
	if (o.json) {
		json_head(&sv);
		printf(",\"region\":\"%s\"", !present ? "absent"
					    : committed < 0 ? "unreadable"
							    : "damaged");
		if (rwhy[0]) {
			printf(",\"region_error\":");
			json_text(stdout, rwhy);
		}
		printf(",\"committed_epoch\":");
		committed >= 0 ? printf("%" PRId64, committed) : printf("null");
		printf(",\"durable_epoch\":");
		durable >= 0 ? printf("%" PRId64, durable) : printf("null");
		printf(",\"slot\":%d,\"slot_epoch\":%" PRId64, sv.use,
		       slot_epoch);
		printf(",\"epochs_dropped\":");
		committed >= 0 ? printf("%" PRId64, committed > slot_epoch
						    ? committed - slot_epoch
						    : 0)
			       : printf("null");
		printf(",\"durable_dropped\":");
		durable >= 0 ? printf("%" PRId64, durable > slot_epoch
						  ? durable - slot_epoch
						  : 0)
			     : printf("null");
		printf(",\"dropped\":%s}\n", present && o.yes ? "true" : "false");
	} else {
		const char *verb = o.yes ? "dropped" : "would drop";
		if (!present)
			printf("stream %s has no region: nothing to drop; the next "
			       "open recovers slot-%d (epoch %" PRId64 ")\n",
			       o.stream, sv.use, slot_epoch);
		else if (committed < 0)
			printf("%s the region of stream %s, which is unreadable "
			       "(%s): whatever it held after epoch %" PRId64
			       " is lost; the next open recovers slot-%d "
			       "(epoch %" PRId64 ")\n", verb, o.stream, rwhy,
			       slot_epoch, sv.use, slot_epoch);
		else {
			printf("%s the damaged region of stream %s (%s)\n", verb,
			       o.stream, rwhy);
			if (committed > slot_epoch)
				printf("  epochs %" PRId64 "..%" PRId64 " (%" PRId64
				       ") are lost", slot_epoch + 1, committed,
				       committed - slot_epoch);
			if (committed > slot_epoch && durable > slot_epoch)
				printf(": %" PRId64 "..%" PRId64 " had been "
				       "reported durable, but their slot is "
				       "damaged", slot_epoch + 1, durable);
			else if (committed > slot_epoch)
				printf(": committed, never made durable");
			if (committed > slot_epoch)
				printf("\n");
			printf("  the next open recovers slot-%d (epoch %" PRId64
			       ")\n", sv.use, slot_epoch);
		}
	}
out:
	release(&sv);
out_locks:
	if (flock >= 0)
		close(flock);
	if (wlock >= 0)
		close(wlock);
	return rc;
}
