/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the vmgen selftests: where vmgenid_vmclock's device
 * lives in sysfs (its own, whichever driver owns the vmclock device),
 * reading its attributes, and listening for its uevents.
 */
#ifndef VMGEN_SELFTEST_H
#define VMGEN_SELFTEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

#define VMGEN_DEV	"/sys/bus/platform/devices/vmgenid_vmclock"
#define VMGEN_DRIVER	VMGEN_DEV "/driver"
#define VMGEN_ATTR(a)	VMGEN_DEV "/" a
#define VMGEN_UEVENT_BUF 4096

/* vmgenid_vmclock is loaded and watching a vmclock device. */
static inline bool vmgen_bound(void)
{
	char link[256];
	ssize_t n = readlink(VMGEN_DRIVER, link, sizeof(link) - 1);

	if (n < 0)
		return false;
	link[n] = '\0';
	return !!strstr(link, "/vmgenid_vmclock");
}

/* Read a decimal attribute; -1 on error. */
static inline long long vmgen_read_ull(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

/* A socket receiving kernel uevents (group 1), as udevd does. */
static inline int vmgen_uevent_socket(void)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		.nl_groups = 1,
	};
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
			NETLINK_KOBJECT_UEVENT);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Wait up to @timeout_ms for a uevent with NEW_VMGENID=1 from the vmclock
 * device. Returns 1 and fills @generation (-1 if the variable is missing),
 * 0 on timeout, -1 on error.
 */
static inline long long vmgen_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static inline int vmgen_wait_uevent(int fd, int timeout_ms,
				    long long *generation)
{
	long long deadline = vmgen_now_ms() + timeout_ms;
	char buf[VMGEN_UEVENT_BUF];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline - vmgen_now_ms();
		bool ours = false, new_gen = false;
		ssize_t n;
		char *s;
		int r;

		if (left <= 0)
			return 0;
		r = poll(&p, 1, (int)left);
		if (r <= 0)
			return r;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return -1;
		buf[n] = '\0';
		*generation = -1;
		/* "action@devpath\0KEY=VALUE\0..." */
		for (s = buf; s < buf + n; s += strlen(s) + 1) {
			if (!strncmp(s, "DEVPATH=", 8) && strstr(s, "/vmgenid_vmclock"))
				ours = true;
			else if (!strcmp(s, "NEW_VMGENID=1"))
				new_gen = true;
			else if (!strncmp(s, "VMCLOCK_GENERATION=", 19))
				*generation = strtoll(s + 19, NULL, 10);
		}
		if (ours && new_gen)
			return 1;
	}
}

#endif /* VMGEN_SELFTEST_H */
