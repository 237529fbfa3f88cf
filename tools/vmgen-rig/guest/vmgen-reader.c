// SPDX-License-Identifier: GPL-2.0
/*
 * vmgen-reader: read getrandom() in the guest and say which VM generation
 * the kernel had acknowledged when each sample was taken.
 *
 *   vmgen-reader [--interval-ms N]   one line per sample, forever:
 *                                    "SEQ GENERATION HEX"
 *   vmgen-reader --once BYTES        print BYTES random bytes as hex, exit
 *   vmgen-reader --reseed            force a crng reseed now (root), exit
 *   vmgen-reader --rate MS           call getrandom(32) for MS ms, print the
 *                                    calls per second, exit (make bench)
 *
 * --reseed lets a test take a snapshot right after a reseed: 6.1 reseeds on
 * use once the key is older than uptime/2 (first two minutes) or 60 s, and
 * a test that wants to show clones *would* share output must read before
 * that happens on its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define GEN_PATH "/sys/bus/platform/devices/AMZNC10C:00/generation"

#define USAGE "usage: vmgen-reader [--interval-ms N] | --once BYTES (1..4096) |" \
	      " --reseed | --rate MS\n"

enum { SAMPLE_BYTES = 16, MAX_ONCE = 4096, EXIT_USAGE = 2, RATE_BYTES = 32,
       RATE_BATCH = 256 };

static int print_random(size_t len)
{
	unsigned char buf[MAX_ONCE];
	size_t i;

	if (getrandom(buf, len, 0) != (ssize_t)len) {
		fprintf(stderr, "vmgen-reader: getrandom: %s\n", strerror(errno));
		return -1;
	}
	for (i = 0; i < len; i++)
		printf("%02x", buf[i]);
	putchar('\n');
	return 0;
}
/*
 * getrandom(32) calls per second over @ms. The clock is read once per batch
 * so that it costs next to nothing against the calls being counted.
 */
static int print_rate(long ms)
{
	unsigned char buf[RATE_BYTES];
	struct timespec t0, t;
	unsigned long long calls = 0;
	double secs;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (i = 0; i < RATE_BATCH; i++)
			if (getrandom(buf, sizeof(buf), 0) != sizeof(buf))
				return -1;
		calls += RATE_BATCH;
		clock_gettime(CLOCK_MONOTONIC, &t);
		secs = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
	} while (secs * 1000 < ms);
	printf("%.0f\n", calls / secs);
	return 0;
}


static int reseed(void)
{
	int fd = open("/dev/urandom", O_RDONLY), ret;
	char byte;

	/* The ioctl fails with ENODATA until the crng is initialised. */
	if (getrandom(&byte, 1, 0) != 1)
		return -1;
	ret = fd < 0 ? -1 : ioctl(fd, RNDRESEEDCRNG);
	if (ret)
		fprintf(stderr, "vmgen-reader: RNDRESEEDCRNG: %s\n", strerror(errno));
	if (fd >= 0)
		close(fd);
	return ret;
}

static void read_generation(char *out, size_t len)
{
	int fd = open(GEN_PATH, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, out, len - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0) {
		snprintf(out, len, "-");
		return;
	}
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "once", required_argument, NULL, 'o' },
		{ "reseed", no_argument, NULL, 'r' },
		{ "rate", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	long interval_ms = 20, once = 0, rate_ms;
	unsigned long long seq;
	char gen[32], *end;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			interval_ms = strtol(optarg, &end, 10);
			if (*end || interval_ms < 0)
				goto usage;
			break;
		case 'o':
			once = strtol(optarg, &end, 10);
			if (*end || once <= 0 || once > MAX_ONCE)
				goto usage;
			break;
		case 'R':
			rate_ms = strtol(optarg, &end, 10);
			if (*end || rate_ms <= 0)
				goto usage;
			return print_rate(rate_ms) ? EXIT_FAILURE : 0;
		case 'r':
			return reseed() ? EXIT_FAILURE : 0;
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		default:
			goto usage;
		}
	}
	if (once)
		return print_random((size_t)once) ? EXIT_FAILURE : 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (seq = 0;; seq++) {
		struct timespec ts = { interval_ms / 1000,
				       (interval_ms % 1000) * 1000000 };

		read_generation(gen, sizeof(gen));
		printf("%llu %s ", seq, gen);
		if (print_random(SAMPLE_BYTES))
			return EXIT_FAILURE;
		nanosleep(&ts, NULL);
	}
usage:
	fputs(USAGE, stderr);
	return EXIT_USAGE;
}
