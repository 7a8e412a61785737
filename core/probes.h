/*
 * probes.h - USDT probes (sys/sdt.h, from systemtap-sdt-dev): a nop in
 * the code and a note in the binary until a tracer attaches, so they cost
 * nothing on the hot path and make no system call.  docs/TRACING.md lists
 * them with perf and bpftrace one-liners.  Provider: shmckpt.
 *
 *   commit(epoch, ring_bytes)           an epoch sealed (ckpt_commit)
 *   backpressure(ring_needed_bytes)     the ring was full
 *   flush_start(stream, epoch, bytes)   a slot write submitted
 *   datasync_done(stream, epoch, res, io_ns)   its write+fdatasync ended
 *   flush_done(stream, epoch, epochs)   the epoch published durable
 *   recovery(stream, slot_epoch, epoch) ckpt_open recovered a stream
 */
#ifndef CKPT_CORE_PROBES_H
#define CKPT_CORE_PROBES_H

#if defined(__has_include)
#if __has_include(<sys/sdt.h>)
#include <sys/sdt.h>
#define CKPT_HAVE_SDT 1
#endif
#endif

#ifdef CKPT_HAVE_SDT
#define CKPT_PROBE1(n, a) DTRACE_PROBE1(shmckpt, n, a)
#define CKPT_PROBE2(n, a, b) DTRACE_PROBE2(shmckpt, n, a, b)
#define CKPT_PROBE3(n, a, b, c) DTRACE_PROBE3(shmckpt, n, a, b, c)
#define CKPT_PROBE4(n, a, b, c, d) DTRACE_PROBE4(shmckpt, n, a, b, c, d)
#else
#define CKPT_PROBE1(n, a) ((void)(a))
#define CKPT_PROBE2(n, a, b) ((void)(a), (void)(b))
#define CKPT_PROBE3(n, a, b, c) ((void)(a), (void)(b), (void)(c))
#define CKPT_PROBE4(n, a, b, c, d) ((void)(a), (void)(b), (void)(c), (void)(d))
#endif

#endif
