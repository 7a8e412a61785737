/*
 * util.c - stream names, clocks and the background threads' log line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int ckpt__check_name(const char *name)
{
	size_t n;

	if (!name)
		return ckpt__fail(-EINVAL, "stream name is NULL");
	n = strnlen(name, CKPT_NAME_MAX + 1);
	if (n == 0)
		return ckpt__fail(-EINVAL, "stream name is empty");
	if (n > CKPT_NAME_MAX)
		return ckpt__fail(-EINVAL,
				  "stream name longer than %d bytes",
				  CKPT_NAME_MAX);
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return ckpt__fail(-EINVAL, "stream name '%s' is reserved", name);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
			continue;
		return ckpt__fail(-EINVAL,
				  "stream name has byte 0x%02x at %zu; allowed: "
				  "[A-Za-z0-9._-]",
				  c, i);
	}
	return 0;
}

uint64_t ckpt__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ckpt__real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cached = -1; /* racy first use is harmless: same value */

void ckpt__log_set_level(int level)
{
	__atomic_store_n(&cached, level, __ATOMIC_RELAXED);
}

static int log_level(void)
{
	int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (level < 0) {
		const char *s = getenv("SHMCKPT_LOG");
		level = CKPT_LOG_WARN;
		if (s && !strcmp(s, "error"))
			level = CKPT_LOG_ERROR;
		else if (s && !strcmp(s, "info"))
			level = CKPT_LOG_INFO;
		else if (s && !strcmp(s, "debug"))
			level = CKPT_LOG_DEBUG;
		__atomic_store_n(&cached, level, __ATOMIC_RELAXED);
	}
	return level;
}

void ckpt__log(int level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	char line[600];
	va_list ap;

	if (level > log_level())
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "shmckpt %s: %s\n", names[level], line);
}
