/*
 * lock.c - stream directory and single-writer / single-flusher locks.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "lock.h"

int ckpt__stream_dir(const char *absdir, const char *name, int create)
{
	struct stat st;
	int dfd, sfd;

	dfd = open(absdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return ckpt__fail(-errno, "checkpoint directory '%s': %s",
				  absdir, ckpt_strerror(-errno));
	if (create && mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
		int e = -errno;
		close(dfd);
		return ckpt__fail(e, "creating %s/%s: %s", absdir, name,
				  ckpt_strerror(e));
	}
	/* O_NOFOLLOW: a symlink planted as <dir>/<stream> is not followed */
	sfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0) {
		int e = -errno;
		close(dfd);
		if (e == -ELOOP || e == -ENOTDIR)
			return ckpt__fail(CKPT_EFOREIGN,
					  "%s/%s is not a directory (symlink?)",
					  absdir, name);
		return ckpt__fail(e, "stream directory %s/%s: %s", absdir,
				  name, ckpt_strerror(e));
	}
	close(dfd);
	if (fstat(sfd, &st) < 0) {
		int e = -errno;
		close(sfd);
		return e;
	}
	if (st.st_uid != geteuid()) {
		close(sfd);
		return ckpt__fail(CKPT_EFOREIGN,
				  "stream directory %s/%s belongs to uid %u",
				  absdir, name, (unsigned)st.st_uid);
	}
	return sfd;
}

static int open_lockfile(int sdirfd)
{
	int fd = openat(sdirfd, "lock",
			O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat st;

	if (fd < 0)
		return ckpt__fail(-errno, "lock file: %s", ckpt_strerror(-errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid()) {
		close(fd);
		return ckpt__fail(CKPT_EFOREIGN,
				  "lock file is not a regular file of ours");
	}
	if ((st.st_mode & 07777) != 0600)
		(void)fchmod(fd, 0600);
	return fd;
}

static pid_t read_pid(int fd, int kind)
{
	char buf[33] = { 0 };
	ssize_t n = pread(fd, buf, 32, kind * 32);
	return n > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
}

int ckpt__lock(int sdirfd, int kind, pid_t *holder)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = kind, .l_len = 1 };
	char buf[32];
	int fd = open_lockfile(sdirfd);

	if (fd < 0)
		return fd;
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno;
		if (e == EAGAIN || e == EACCES) {
			/* the holder may not have written its pid yet */
			pid_t pid = 0;
			for (int i = 0; i < 100 && pid <= 0; i++) {
				pid = read_pid(fd, kind);
				if (pid <= 0)
					usleep(1000);
			}
			if (holder)
				*holder = pid;
			close(fd);
			return ckpt__fail(-EBUSY, "stream is locked by %s pid %d",
					  kind == CKPT_LOCK_WRITER ? "writer"
								   : "flusher",
					  (int)pid);
		}
		close(fd);
		return ckpt__fail(-e, "locking stream: %s", ckpt_strerror(-e));
	}
	memset(buf, ' ', sizeof(buf));
	int n = snprintf(buf, sizeof(buf), "%d", (int)getpid());
	buf[n] = ' ';
	buf[31] = '\n';
	if (pwrite(fd, buf, 32, kind * 32) != 32) {
		int e = errno ? -errno : -EIO;
		close(fd);
		return ckpt__fail(e, "writing pid to lock file: %s",
				  ckpt_strerror(e));
	}
	return fd;
}

int ckpt__lock_holder(int sdirfd, int kind)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = kind, .l_len = 1 };
	int fd = open_lockfile(sdirfd), ret;

	if (fd < 0)
		return fd;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		ret = -errno;
	else
		ret = fl.l_type == F_UNLCK ? 0 : (int)read_pid(fd, kind);
	close(fd);
	return ret;
}
