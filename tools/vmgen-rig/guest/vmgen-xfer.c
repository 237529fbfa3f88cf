// SPDX-License-Identifier: GPL-2.0
/*
 * vmgen-xfer: hand a file to the host through guest RAM. The rig reserves a
 * region of guest RAM (memmap=, rig.conf's XFER_GPA and XFER_MB) that the
 * host reads straight from the guest's RAM file, megabytes in milliseconds,
 * where the emulated serial console carries a few kilobytes a second.
 *
 *   vmgen-xfer --at ADDR --size BYTES FILE
 *
 * Writes FILE's bytes into the region behind a header ("VMGENXF1" and the
 * length), and prints the length. The host reads the region only once this
 * has exited, and trusts it only if the header says the same. Exit 1 on any
 * error, which is named.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HEADER = 16, EXIT_USAGE = 2 };

struct header {
	char magic[8];
	uint64_t len;
};

static int fail(const char *what, const char *name)
{
	fprintf(stderr, "vmgen-xfer: %s %s: %s\n", what, name, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	unsigned long long at = 0, size = 0;
	volatile struct header *hdr;
	unsigned char *data, *region;
	struct stat st;
	char *end;
	int c, fd, mem;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'a' || c == 's') {
			errno = 0;
			*(c == 'a' ? &at : &size) = strtoull(optarg, &end, 0);
			if (errno || *end)
				goto usage;
		} else if (c == 'h') {
			puts("usage: vmgen-xfer --at ADDR --size BYTES FILE");
			return 0;
		} else {
			goto usage;
		}
	}
	if (optind != argc - 1 || !size || at % 4096)
		goto usage;
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		return fail("cannot read", argv[optind]);
	if ((unsigned long long)st.st_size > size - HEADER) {
		fprintf(stderr, "vmgen-xfer: %s: %lld bytes, more than the %llu the region holds\n",
			argv[optind], (long long)st.st_size, size - HEADER);
		return 1;
	}
	data = st.st_size ? mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (data == MAP_FAILED)
		return fail("cannot map", argv[optind]);
	mem = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	if (mem < 0)
		return fail("cannot open", "/dev/mem");
	region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem, (off_t)at);
	if (region == MAP_FAILED)
		return fail("cannot map the region of", "/dev/mem");
	hdr = (volatile struct header *)region;
	/* The host trusts a header only with the magic, written last. */
	memset((void *)hdr->magic, 0, sizeof(hdr->magic));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	memcpy(region + HEADER, data, st.st_size);
	hdr->len = st.st_size;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	memcpy((void *)hdr->magic, "VMGENXF1", 8);
	printf("%llu\n", (unsigned long long)st.st_size);
	return 0;
usage:
	fputs("usage: vmgen-xfer --at ADDR --size BYTES FILE\n", stderr);
	return EXIT_USAGE;
}
