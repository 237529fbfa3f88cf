// SPDX-License-Identifier: GPL-2.0
/*
 * vmgen-kmsg: print the kernel log records whose sequence number is above
 * AFTER, one per line as "SEQ MESSAGE", without clearing anything. Tests
 * remember the last number they saw instead of running dmesg -C, so that
 * nothing printed between two looks is lost.
 *
 *   vmgen-kmsg [AFTER]     AFTER defaults to -1: every record still held
 *
 * Records the ring buffer dropped before they were read are reported as
 * "SEQ (N records lost)".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { RECORD_MAX = 8192, EXIT_USAGE = 2 };

int main(int argc, char **argv)
{
	long long after = -1, seq, expect = -1;
	char rec[RECORD_MAX + 1], *end, *msg;
	int fd;

	if (argc > 2 || (argc == 2 && !strcmp(argv[1], "--help"))) {
		fputs("usage: vmgen-kmsg [AFTER]\n", argc > 2 ? stderr : stdout);
		return argc > 2 ? EXIT_USAGE : 0;
	}
	if (argc == 2) {
		after = strtoll(argv[1], &end, 10);
		if (*end || after < -1) {
			fprintf(stderr, "vmgen-kmsg: bad sequence number '%s'\n", argv[1]);
			return EXIT_USAGE;
		}
	}
	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "vmgen-kmsg: /dev/kmsg: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	for (;;) {
		ssize_t n = read(fd, rec, RECORD_MAX);

		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten; the gap shows below */
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			fprintf(stderr, "vmgen-kmsg: read: %s\n", strerror(errno));
			return EXIT_FAILURE;
		}
		rec[n] = '\0';
		/* "prio,seq,usec,flags[,...];message\n[ KEY=VALUE\n...]" */
		if (sscanf(rec, "%*u,%lld,", &seq) != 1 || !(msg = strchr(rec, ';')))
			continue;
		msg++;
		msg[strcspn(msg, "\n")] = '\0';
		if (expect >= 0 && seq > expect && seq - 1 > after)
			printf("%lld (%lld records lost)\n", seq - 1, seq - expect);
		expect = seq + 1;
		if (seq > after)
			printf("%lld %s\n", seq, msg);
	}
	return fflush(stdout) ? EXIT_FAILURE : 0;
}
