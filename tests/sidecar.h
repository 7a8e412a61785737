/*
 * sidecar.h - run the shmckptd sidecar from a test (tests/test_sidecar_*).
 *
 * The daemon is the one built beside the test: <O>/tests/test_x runs
 * <O>/bin/shmckptd, so the ASan suite runs the ASan daemon.  Builds that
 * make tests only (the TSan one) have no daemon: the tests skip, saying so.
 * Its stderr goes to a log file the test reads (and prints on failure).
 */
#ifndef CKPT_TEST_SIDECAR_H
#define CKPT_TEST_SIDECAR_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"
#include "regionmap.h"
#include "testutil.h"

static char sc_bin[PATH_MAX];

/* Find <O>/bin/shmckptd, or skip the test saying why. */
static inline const char *sc_daemon(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		tu_skip("cannot find this program's path (/proc/self/exe)");
	self[n] = '\0';
	/* <O>/tests/test_x -> <O>/bin/shmckptd */
	snprintf(sc_bin, sizeof(sc_bin), "%s/../bin/shmckptd",
		 dirname(self));
	if (access(sc_bin, X_OK) != 0)
		tu_skip("%s is not built (this build makes tests only, e.g. "
			"TSan: 'make O=<build> tools' builds it)", sc_bin);
	return sc_bin;
}

/* In a child: die with the test process, so that a failed test (cmocka
 * leaves by longjmp, a timeout kills it) leaves no consumer or sidecar
 * behind.  Call again after a change of credentials, which clears it. */
static inline void sc_die_with(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
}

/* fork(), the child tied to the test process by sc_die_with. */
static inline pid_t sc_fork(void)
{
	pid_t parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		abort();
	}
	if (pid == 0)
		sc_die_with(parent);
	return pid;
}

/* Start the sidecar on @dir (stderr appended to @log), with @extra
 * arguments (NULL-terminated list, may be NULL).  Returns its pid. */
static inline pid_t sc_start(const char *dir, const char *log,
			     const char *const *extra)
{
	const char *argv[32];
	int n = 0;
	pid_t pid;

	argv[n++] = sc_bin;
	argv[n++] = "--dir";
	argv[n++] = dir;
	argv[n++] = "--scan-ms";
	argv[n++] = "20";
	for (; extra && *extra && n < 30; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	pid = sc_fork(); /* the death signal survives the exec */
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0600);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execv(sc_bin, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	return pid;
}

/* SIGTERM it and wait: its exit status (raw wait status). */
static inline int sc_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	return tu_wait(pid);
}

/* Occurrences of @needle in the log. */
static inline int sc_log_count(const char *log, const char *needle)
{
	char line[2048];
	int n = 0;
	FILE *f = fopen(log, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Remove the log of a test that passed (kept with CKPT_TEST_KEEP_LOGS=1,
 * and its path printed). */
static inline void sc_log_done(const char *log)
{
	const char *k = getenv("CKPT_TEST_KEEP_LOGS");
	if (k && *k && strcmp(k, "0")) {
		printf("sidecar log kept: %s\n", log);
		return;
	}
	unlink(log);
}

/* Print the last @lines lines of the log (for a failure). */
static inline void sc_log_tail(const char *log, int lines)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "tail -n %d '%s' >&2", lines, log);
	fflush(NULL);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log at %s)\n", log);
}

/* The flusher page of @dir/@name, read-only (white-box): who flushes it
 * and how far.  Unmap with rm_unmap. */
static inline struct ckpt_region *sc_map(const char *dir, const char *name,
					 size_t *len)
{
	return rm_map(dir, name, 0, len);
}

static inline uint32_t sc_flusher_pid(const struct ckpt_region *h)
{
	return __atomic_load_n(&h->flush.flusher_pid, __ATOMIC_ACQUIRE);
}

static inline int64_t sc_durable(const struct ckpt_region *h)
{
	return (int64_t)__atomic_load_n(&h->flush.durable_epoch,
					__ATOMIC_ACQUIRE);
}

static inline int64_t sc_committed(const struct ckpt_region *h)
{
	(void)__atomic_load_n(&h->prod.commit_pos, __ATOMIC_ACQUIRE);
	return (int64_t)__atomic_load_n(&h->prod.committed_epoch,
					__ATOMIC_RELAXED);
}

/* Sleep @ns nanoseconds. */
static inline void sc_nap(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull),
			       (long)(ns % 1000000000ull) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A kill delay: 1 in 8 none, else log-uniform 2^minshift .. 2^(maxshift+1)
 * microseconds. */
static inline uint64_t sc_delay(uint64_t *rs, unsigned minshift,
				unsigned maxshift, int *none)
{
	*none = tu_rand(rs) % 8 == 0;
	if (*none)
		return 0;
	uint64_t base = 1000ull << (minshift +
				    tu_rand(rs) % (maxshift - minshift + 1));
	return base + tu_rand(rs) % base;
}

#endif
