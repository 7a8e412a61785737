/*
 * error.c - names of return codes and the thread-local detail message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[1024];

int ckpt__fail(int code, const char *fmt, ...)
{
	char buf[sizeof(last_error)];
	va_list ap;

	/* via a copy: callers may pass ckpt_last_error() itself as an
	 * argument, to wrap the detail a lower layer left */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(last_error, buf, sizeof(buf));
	return code;
}

void ckpt__clear_error(void)
{
	last_error[0] = '\0';
}

const char *ckpt_last_error(void)
{
	return last_error;
}

const char *ckpt_strerror(int code)
{
	static _Thread_local char buf[96];

	switch (code) {
	case 0:
		return "success";
	case CKPT_ECORRUPT:
		return "checkpoint data failed verification";
	case CKPT_EVERSION:
		return "unknown layout or format version";
	case CKPT_EFOREIGN:
		return "region or file owned by another user or with unsafe mode";
	case CKPT_ESTREAM:
		return "checkpoint belongs to another stream";
	case CKPT_EFAILED:
		return "stream failed on I/O; durable epoch no longer advances";
	case CKPT_EGAP:
		return "checkpointed offsets are no longer in the log";
	case CKPT_ECLOSED:
		return "flusher stopped or stream closed";
	}
	if (code < 0 && code > -4096) {
		/* strerror_r (GNU) may return a static string or fill buf */
		const char *s = strerror_r(-code, buf, sizeof(buf));
		return s;
	}
	snprintf(buf, sizeof(buf), "unknown error %d", code);
	return buf;
}
