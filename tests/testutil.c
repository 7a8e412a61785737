#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region.h"

char *tu_mkdtemp(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (asprintf(&path, "%s/shmckpt-%s-XXXXXX", tmp, tag) < 0)
		abort();
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		abort();
	}
	return path;
}

void tu_unlink_regions(const char *dir)
{
	char prefix[128];
	DIR *d;
	struct dirent *e;
	size_t n;

	if (ckpt__region_prefix(dir, prefix, sizeof(prefix)) < 0)
		return;
	n = strlen(prefix);
	d = opendir("/dev/shm");
	if (!d)
		return;
	while ((e = readdir(d))) {
		char name[300];
		if (strncmp(e->d_name, prefix + 1, n - 1) != 0)
			continue;
		snprintf(name, sizeof(name), "/%s", e->d_name);
		shm_unlink(name);
	}
	closedir(d);
}

void tu_rmdir(char *dir)
{
	char *cmd;
	if (!dir)
		return;
	tu_unlink_regions(dir);
	if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", dir);
		free(cmd);
	}
	free(dir);
}

uint64_t tu_scaled(uint64_t n)
{
	const char *s = getenv("CKPT_TEST_SCALE");
	unsigned long k = s ? strtoul(s, NULL, 10) : 1;
	if (k < 1)
		k = 1;
	n /= k;
	return n ? n : 1;
}

uint64_t tu_seed(const char *test)
{
	const char *s = getenv("CKPT_TEST_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : (tu_now_ns() ^ (uint64_t)getpid());
	fprintf(stderr, "%s: seed %llu (replay with CKPT_TEST_SEED=%llu)\n", test,
		(unsigned long long)seed, (unsigned long long)seed);
	return seed;
}

uint64_t tu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int tu_wait(pid_t pid)
{
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

int tu_wait_bounded(pid_t pid, unsigned secs)
{
	uint64_t t0 = tu_now_ns();
	int st;

	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (tu_now_ns() - t0 > secs * 1000000000ull) {
			kill(pid, SIGKILL);
			tu_wait(pid);
			return -1;
		}
		usleep(1000);
	}
	return st;
}

void tu_skip(const char *fmt, ...)
{
	va_list ap;
	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(CKPT_TEST_SKIP);
}

void tu_child_fail(char *why, size_t cap, int *failed, int code,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	/* pairs with the parent's acquire load of *failed: why is written */
	__atomic_store_n(failed, 1, __ATOMIC_RELEASE);
	_exit(code);
}
