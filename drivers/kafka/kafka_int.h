/*
 * kafka_int.h - private helpers of the Kafka driver (ckpt__kafka_ prefix).
 */
#ifndef CKPT_KAFKA_INT_H
#define CKPT_KAFKA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt_kafka.h"

/* Record the details of a failure for ckpt_kafka_last_error(); returns
 * @code. */
int ckpt__kafka_fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Name of a gap policy ("fail", "earliest", "latest"); -1 from the parser
 * for an unknown name. */
const char *ckpt__kafka_policy_name(int policy);
int ckpt__kafka_policy_parse(const char *name);

/*
 * A new gap record: the gaps of @old (len @olen, may be empty), at most 15
 * of them, the newest kept, plus @g.  *out is malloc'd NUL-terminated text,
 * *outlen its length without the NUL.  0, -ENOMEM, or -EINVAL (@old is not
 * a gap record: it is then replaced, its lost total restarted).
 */
int ckpt__kafka_gaps_append(const void *old, size_t olen, const char *topic,
			    const ckpt_kafka_gap_t *g, char **out,
			    size_t *outlen);

#define CKPT_KAFKA_GAPS_KEPT 16

uint64_t ckpt__kafka_now_ns(void);

#endif
