// SPDX-License-Identifier: GPL-2.0
/*
 * vmclock-client: a reader of /dev/vmclockN, used the way AWS-LC's snapshot
 * detector uses it: map the page read-only, read vm_generation_counter under
 * seq_count each time it checks, and poll() for a wakeup.
 *
 *   vmclock-client [--device PATH] --watch SECONDS
 *
 * Reads the page once with read() (which also tells the driver what this
 * file has seen) and maps it. Then it waits up to SECONDS for the counter to
 * move: asleep in poll() if the device can wake it, else checking the
 * mapping every 10 ms (POLLHUP: the hypervisor does not notify). Prints
 *
 *   start: counter A, poll armed|hup
 *   moved: A -> B, woken by poll|seen in the mapping
 *   read: counter B          what read() returns afterwards
 *
 * and exits 0; 1 if the counter did not move, 2 on bad usage, 3 if the
 * device misbehaved (a failed read or map, or read() and the mapping
 * disagreeing).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmclock-abi.h>

enum { EXIT_NOMOVE = 1, EXIT_USAGE = 2, EXIT_DEVICE = 3, TICK_MS = 10 };

static const char *path = "/dev/vmclock0";

/* The counter under seq_count, as the vmclock ABI asks. */
static unsigned long long counter(const volatile struct vmclock_abi *clk)
{
	unsigned long long gen;
	unsigned int seq;

	do {
		seq = le32toh(clk->seq_count);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		gen = le64toh(clk->vm_generation_counter);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((seq & 1) || seq != le32toh(clk->seq_count));
	return gen;
}

/* The counter in a copy of the page that read() returns, or -1. */
static long long read_counter(int fd)
{
	struct vmclock_abi page;

	if (pread(fd, &page, sizeof(page), 0) != sizeof(page)) {
		fprintf(stderr, "vmclock-client: read %s: %s\n", path, strerror(errno));
		return -1;
	}
	return (long long)le64toh(page.vm_generation_counter);
}

/* poll()'s answer within timeout_ms: POLLIN, POLLHUP, or 0. */
static int poll_says(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	return (p.revents & POLLHUP) ? POLLHUP : (p.revents & POLLIN) ? POLLIN : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "watch", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	const volatile struct vmclock_abi *clk;
	unsigned long long gen0, gen = 0;
	long watch_s = 0, ticks;
	const char *how = NULL;
	long long copy;
	int c, fd, hup;
	char *end;
	void *map;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'd') {
			path = optarg;
		} else if (c == 'w') {
			watch_s = strtol(optarg, &end, 10);
			if (*end || watch_s <= 0)
				watch_s = -1;
		} else {
			fputs("usage: vmclock-client [--device PATH] --watch SECONDS\n",
			      c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : EXIT_USAGE;
		}
	}
	if (watch_s <= 0) {
		fputs("usage: vmclock-client [--device PATH] --watch SECONDS\n", stderr);
		return EXIT_USAGE;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "vmclock-client: %s: %s\n", path, strerror(errno));
		return EXIT_DEVICE;
	}
	copy = read_counter(fd);
	map = mmap(NULL, sysconf(_SC_PAGESIZE), PROT_READ, MAP_SHARED, fd, 0);
	if (copy < 0 || map == MAP_FAILED) {
		if (map == MAP_FAILED)
			fprintf(stderr, "vmclock-client: mmap %s: %s\n", path, strerror(errno));
		return EXIT_DEVICE;
	}
	clk = map;
	gen0 = counter(clk);
	hup = poll_says(fd, 0) == POLLHUP;
	printf("start: counter %llu, poll %s\n", gen0, hup ? "hup" : "armed");
	fflush(stdout);
	if (!hup && poll_says(fd, watch_s * 1000) == POLLIN) {
		gen = counter(clk);
		how = "woken by poll";
	}
	for (ticks = watch_s * 1000 / TICK_MS; hup && ticks > 0; ticks--) {
		usleep(TICK_MS * 1000);
		gen = counter(clk);
		if (gen != gen0) {
			how = "seen in the mapping";
			break;
		}
	}
	if (!how || gen == gen0) {
		printf("moved: no\n");
		return EXIT_NOMOVE;
	}
	printf("moved: %llu -> %llu, %s\n", gen0, gen, how);
	copy = read_counter(fd);
	printf("read: counter %lld\n", copy);
	return copy == (long long)counter(clk) ? 0 : EXIT_DEVICE;
}
