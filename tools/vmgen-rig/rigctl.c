// SPDX-License-Identifier: GPL-2.0
/*
 * rigctl: talk to a rig guest from the host, over the unix sockets QEMU
 * exposes: HMP commands to the monitor, shell commands to the guest agent
 * listening on the guest's second UART.
 *
 * Agent protocol, one exchange at a time: the host sends "ID COMMAND\n"; the
 * guest answers "@@VMGEN-BEGIN ID\n", the output, "\n@@VMGEN-END ID RC\n".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 2, EXIT_TIMEOUT = 124, CHUNK = 4096 };

struct buf {
	char *data;
	size_t len;
};

static int timeout_ms = 30000;

static void usage(FILE *f)
{
	fputs("usage: rigctl [--timeout SEC] hmp SOCK COMMAND...\n"
	      "       rigctl [--timeout SEC] exec SOCK COMMAND...\n"
	      "\n"
	      "hmp   run a QEMU monitor command, print its answer\n"
	      "exec  run a shell command in the guest, print its output and\n"
	      "      exit with its status (124 on timeout)\n", f);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "rigctl: %s: path too long\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "rigctl: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Where @needle first is in @b from offset @from on; NULL if it is not. */
static char *find(const struct buf *b, size_t from, const char *needle)
{
	if (!b->data || from > b->len)
		return NULL;
	return memmem(b->data + from, b->len - from, needle, strlen(needle));
}

/*
 * Read until @needle shows up after @from; 0 found, -1 error, 1 timeout.
 * What the guest prints is bytes, NULs included: every search is bounded
 * by the length read, never by a NUL.
 */
static int read_until(int fd, struct buf *b, const char *needle, size_t from,
		      long long deadline)
{
	while (!find(b, from, needle)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long long left = deadline - now_ms();
		char *more;
		ssize_t n;

		if (left <= 0)
			return 1;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "rigctl: poll: %s\n", strerror(errno));
			return -1;
		}
		if (n <= 0)
			continue;
		more = realloc(b->data, b->len + CHUNK + 1);
		if (!more)
			return -1;
		b->data = more;
		n = read(fd, b->data + b->len, CHUNK);
		if (n <= 0) {
			fprintf(stderr, "rigctl: connection closed\n");
			return -1;
		}
		b->len += (size_t)n;
		b->data[b->len] = '\0';
	}
	return 0;
}

static char *join(int argc, char **argv)
{
	size_t len = 1;
	char *s;
	int i;

	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = calloc(1, len);
	for (i = 0; s && i < argc; i++) {
		if (strchr(argv[i], '\n')) {
			fprintf(stderr, "rigctl: newline in command\n");
			free(s);
			return NULL;
		}
		strcat(s, argv[i]);
		if (i + 1 < argc)
			strcat(s, " ");
	}
	return s;
}

static int hmp(int fd, const char *cmd)
{
	long long deadline = now_ms() + timeout_ms;
	static const char prompt[] = "(qemu) ";
	struct buf b = { 0 };
	char *answer, *close_at;
	size_t start;
	int ret;

	ret = read_until(fd, &b, prompt, 0, deadline);
	if (ret)
		goto out;
	start = b.len;
	if (write_all(fd, cmd, strlen(cmd)) || write_all(fd, "\r\n", 2)) {
		ret = -1;
		goto out;
	}
	ret = read_until(fd, &b, prompt, start, deadline);
	if (ret)
		goto out;
	/* Skip the echoed command line; drop the closing prompt. */
	close_at = find(&b, start, prompt);
	answer = find(&b, start, "\r\n");
	answer = answer && answer < close_at ? answer + 2 : b.data + start;
	for (char *p = answer; p < close_at; p++)
		if (*p != '\r')
			putchar(*p);
out:
	free(b.data);
	if (ret > 0)
		fprintf(stderr, "rigctl: monitor timed out on '%s'\n", cmd);
	return ret ? (ret > 0 ? EXIT_TIMEOUT : EXIT_FAILURE) : 0;
}

static int agent_exec(int fd, const char *cmd)
{
	long long deadline = now_ms() + timeout_ms;
	char begin[64], end[64], *req, *out, *tail;
	struct buf b = { 0 };
	unsigned int id;
	int ret, rc = EXIT_FAILURE;

	id = (unsigned int)getpid() ^ (unsigned int)now_ms();
	snprintf(begin, sizeof(begin), "@@VMGEN-BEGIN %u\n", id);
	snprintf(end, sizeof(end), "\n@@VMGEN-END %u ", id);
	if (asprintf(&req, "%u %s\n", id, cmd) < 0)
		return EXIT_FAILURE;
	ret = write_all(fd, req, strlen(req));
	free(req);
	if (!ret)
		ret = read_until(fd, &b, end, 0, deadline);
	if (!ret)
		ret = read_until(fd, &b, "\n", (size_t)(find(&b, 0, end) - b.data) +
				 strlen(end), deadline);
	if (ret) {
		if (ret > 0)
			fprintf(stderr, "rigctl: guest timed out on '%s'\n", cmd);
		free(b.data);
		return ret > 0 ? EXIT_TIMEOUT : EXIT_FAILURE;
	}
	out = find(&b, 0, begin);
	tail = find(&b, 0, end);
	if (out && out + strlen(begin) <= tail) {
		out += strlen(begin);
		fwrite(out, 1, (size_t)(tail - out), stdout);
		rc = atoi(tail + strlen(end));
	} else {
		fprintf(stderr, "rigctl: garbled answer from guest\n");
	}
	free(b.data);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	char *cmd, *end;
	int c, fd, ret;

	while ((c = getopt_long(argc, argv, "+ht:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 't':
			timeout_ms = (int)(strtod(optarg, &end) * 1000);
			if (*end || timeout_ms <= 0) {
				fprintf(stderr, "rigctl: bad timeout '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 3 || (strcmp(argv[optind], "hmp") &&
				  strcmp(argv[optind], "exec"))) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = join(argc - optind - 2, argv + optind + 2);
	if (!cmd)
		return EXIT_USAGE;
	fd = connect_unix(argv[optind + 1]);
	if (fd < 0) {
		free(cmd);
		return EXIT_FAILURE;
	}
	if (!strcmp(argv[optind], "hmp"))
		ret = hmp(fd, cmd);
	else
		ret = agent_exec(fd, cmd);
	close(fd);
	free(cmd);
	fflush(stdout);
	return ret;
}
