// SPDX-License-Identifier: GPL-2.0
/*
 * vmgen-reader: read getrandom() in the guest and say which VM generation
 * the kernel had acknowledged when each sample was taken.
 *
 *   vmgen-reader [--interval-ms N]   one line per sample, forever:
 *                                    "SEQ GENERATION HEX"
 *   vmgen-reader --once BYTES        print BYTES random bytes as hex, exit
 *   vmgen-reader --samples N [--path P]
 *                                    print N samples, one per line, each
 *                                    from its own call of output path P:
 *                                    getrandom (default), urandom, uuid
 *                                    (get_random_bytes()), udp (the batched
 *                                    get_random_u32(), through the ephemeral
 *                                    ports of four UDP binds) or aslr (the
 *                                    batched get_random_u64(), through where
 *                                    exec places a new program's stack)
 *   vmgen-reader --on-restore --samples N --path P[,P...]
 *                                    wait until the hypervisor moves the
 *                                    VM generation counter, then sample as
 *                                    --samples does (see wait_for_restore())
 *   vmgen-reader --after-reseed MS --samples N [--path P]
 *                                    wait until the hypervisor updates the
 *                                    page, then until the driver's
 *                                    generation changes or MS ms pass, then
 *                                    sample
 *   vmgen-reader --big-read MB [--path getrandom|urandom]
 *                                    read MB megabytes in one call that
 *                                    waits near its end, print "waiting",
 *                                    and once the counter moves, a hash of
 *                                    the call's last 64 KB (see big_read())
 *   vmgen-reader --reseed            force a crng reseed now (root), exit
 *   vmgen-reader --quiesce OFFSET    wait for 4 s of uptime, reseed, then, if
 *                                    OFFSET >= 0, wait until the kernel
 *                                    reseeds on its own schedule:
 *                                    OFFSET is where the crng's generation is
 *                                    in the vDSO's data page ([vvar]), which
 *                                    kernels with the vDSO's getrandom() have
 *   vmgen-reader --rate MS           call getrandom(32) for MS ms, print the
 *                                    calls per second, exit (make bench)
 *
 * --reseed lets a test take a snapshot right after a reseed: 6.1 reseeds on
 * use once the key is older than uptime/2 (first two minutes) or 60 s, and
 * a test that wants to show clones *would* share output must read before
 * that happens on its own. Later kernels also reseed from delayed work whose
 * time RNDRESEEDCRNG leaves as it was: --quiesce waits for that one, after
 * which the next is the same interval away. In the first two minutes that
 * interval is uptime/2 in whole seconds, and never under one: a guest
 * booted under --icount quiesces within 4 s of uptime, where the next
 * reseed would come a second later, inside the window a test samples.
 * From 4 s on it is at least two.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <linux/random.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <endian.h>
#include <linux/vmclock-abi.h>

#define GEN_PATH "/sys/bus/platform/devices/vmgenid_vmclock/generation"

#define USAGE "usage: vmgen-reader [--interval-ms N] | --once BYTES (1..4096) |" \
	      " --samples N [--path getrandom|urandom|uuid|udp|aslr]" \
	      " [--on-restore | --after-reseed MS] |" \
	      " --big-read MB [--path getrandom|urandom] | --reseed | --quiesce OFFSET |" \
	      " --rate MS\n"

enum { SAMPLE_BYTES = 16, MAX_ONCE = 4096, EXIT_USAGE = 2, RATE_BYTES = 32,
       RATE_BATCH = 256, MAX_SAMPLES = 100000, UDP_BINDS = 4, MAX_BIG_MB = 256,
       TAIL_BYTES = 65536, QUIESCE_MS = 150000, MAX_VVAR_OFFSET = 4 * 4096 - 8,
       QUIET_UPTIME_S = 4 };

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


/* The port the kernel picks for a UDP socket bound to port 0, or -1. */
static int udp_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/*
 * Where exec put the stack of a fresh copy of this program: the kernel draws
 * it with get_random_long(), the batched get_random_u64() on 64-bit.
 */
static int exec_stack(char *out, size_t len)
{
	int pipefd[2], status;
	ssize_t n;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		execl("/proc/self/exe", "vmgen-reader", "--stack-address", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	n = pid < 0 ? -1 : read(pipefd[0], out, len - 1);
	close(pipefd[0]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) || n <= 0)
		return -1;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return 0;
}

/* One sample from @path into @out (a line without its newline). */
static int sample(const char *path, char *out, size_t len)
{
	unsigned char b[SAMPLE_BYTES];
	int fd, i, port;
	ssize_t n;

	if (!strcmp(path, "getrandom") || !strcmp(path, "urandom")) {
		if (path[0] == 'g') {
			n = getrandom(b, sizeof(b), 0);
		} else {
			fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
			n = fd < 0 ? -1 : read(fd, b, sizeof(b));
			if (fd >= 0)
				close(fd);
		}
		if (n != sizeof(b))
			return -1;
		for (i = 0; i < SAMPLE_BYTES; i++)
			snprintf(out + 2 * i, len - 2 * i, "%02x", b[i]);
		return 0;
	}
	if (!strcmp(path, "uuid")) {
		fd = open("/proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC);
		n = fd < 0 ? -1 : read(fd, out, len - 1);
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return -1;
		out[strcspn(out, "\n")] = '\0';
		return 0;
	}
	if (!strcmp(path, "aslr"))
		return exec_stack(out, len);
	/* udp: one port is about 15 bits; four make a sample. */
	for (i = 0, *out = '\0'; i < UDP_BINDS; i++) {
		port = udp_port();
		if (port < 0)
			return -1;
		snprintf(out + strlen(out), len - strlen(out), "%s%d", i ? "." : "",
			 port);
	}
	return 0;
}

static int known_path(const char *p, size_t len)
{
	static const char * const paths[] = { "getrandom", "urandom", "uuid", "udp", "aslr" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (len == strlen(paths[i]) && !strncmp(p, paths[i], len))
			return 1;
	return 0;
}

/* The vmclock page, mapped read-only through /dev/mem; NULL if absent. */
static const volatile struct vmclock_abi *map_vmclock(void)
{
	unsigned long long start, end;
	char line[256];
	FILE *f = fopen("/proc/iomem", "r");
	void *p = MAP_FAILED;
	int fd;

	while (f && fgets(line, sizeof(line), f)) {
		if (!strstr(line, "AMZNC10C") ||
		    sscanf(line, " %llx-%llx", &start, &end) != 2)
			continue;
		fd = open("/dev/mem", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, (off_t)start);
			close(fd);
		}
		break;
	}
	if (f)
		fclose(f);
	return p == MAP_FAILED ? NULL : p;
}

/*
 * Wait until vm_generation_counter moves, asking the kernel for no random
 * byte meanwhile, so that the first sample taken after a restore is the
 * guest's first use of @path. The counter is read raw, without seq_count:
 * a restore the hypervisor left mid-update counts. With several paths
 * (comma-separated), the new counter modulo their number picks one, so
 * that clones of one saved guest can each test another path.
 */
static const char *wait_for_restore(char *paths)
{
	const volatile struct vmclock_abi *clk = map_vmclock();
	struct timespec ms = { 0, 1000000 };
	const char *list[8];
	unsigned long long c0, c;
	int n = 0;

	if (!clk) {
		fprintf(stderr, "vmgen-reader: no vmclock page in /proc/iomem or /dev/mem\n");
		return NULL;
	}
	for (char *tok = strtok(paths, ","); tok && n < 8; tok = strtok(NULL, ","))
		list[n++] = tok;
	c0 = le64toh(clk->vm_generation_counter);
	do {
		nanosleep(&ms, NULL);
		c = le64toh(clk->vm_generation_counter);
	} while (c == c0);
	return list[c % n];
}

/* The part of a big read's buffer whose page faults wait for a restore. */
struct big_tail {
	const volatile struct vmclock_abi *clk;
	unsigned long long c0;
	unsigned long start, len;
	int uffd;
};

/*
 * Wait for the kernel's copy to fault in the tail, say so on stdout, wait
 * for the counter to move, then let the copy go on. On an error, the
 * process exits from here: the call would otherwise wait for good.
 */
static void *big_tail_wait(void *arg)
{
	const struct timespec tick = { .tv_nsec = 1000000 };
	struct big_tail *t = arg;
	struct uffdio_copy copy = { .dst = t->start, .len = t->len };
	struct uffd_msg msg;
	void *zero = calloc(1, t->len);
	const char *why = "out of memory";

	if (!zero)
		goto fail;
	why = "no page fault";
	if (read(t->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT)
		goto fail;
	printf("waiting\n");
	fflush(stdout);
	while (le64toh(t->clk->vm_generation_counter) == t->c0)
		nanosleep(&tick, NULL);
	copy.src = (unsigned long)zero;
	why = "UFFDIO_COPY failed";
	if (!ioctl(t->uffd, UFFDIO_COPY, &copy))
		return NULL;
fail:
	fprintf(stderr, "vmgen-reader: big-read: tail: %s\n", why);
	exit(EXIT_FAILURE);
}

/*
 * One read() or getrandom() call of @mb megabytes, certain to be in the
 * middle of generating its bytes when the VM is saved: the copy into the
 * buffer's last TAIL_BYTES and the page before them waits in a userfaultfd
 * page fault until the counter moves, so this guest is then a restored
 * copy. The kernel made the block that faulted before the save; everything
 * after that page, the last TAIL_BYTES, it makes after the restore, and
 * two clones must differ there. Prints "waiting" once the call waits, then
 * an FNV-1a hash of those bytes. getrandom() is the system call, not a vDSO
 * that a newer libc might use, and a fault in the kernel's copy reaches
 * userfaultfd only for root (CAP_SYS_PTRACE).
 */
static int big_read(long mb, const char *path)
{
	size_t len = (size_t)mb << 20, page = (size_t)sysconf(_SC_PAGESIZE);
	struct big_tail t = { .clk = map_vmclock(), .len = TAIL_BYTES + page };
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	unsigned long long h = 0xcbf29ce484222325ULL;
	unsigned char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	pthread_t waiter;
	size_t i;
	ssize_t n;

	t.uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC);
	t.start = (unsigned long)buf + len - t.len;
	reg.range.start = t.start;
	reg.range.len = t.len;
	if (!t.clk || buf == MAP_FAILED || fd < 0 || t.uffd < 0 ||
	    ioctl(t.uffd, UFFDIO_API, &api) || ioctl(t.uffd, UFFDIO_REGISTER, &reg)) {
		fprintf(stderr, "vmgen-reader: big-read: %s\n",
			t.clk ? strerror(errno) : "no vmclock page");
		return -1;
	}
	t.c0 = le64toh(t.clk->vm_generation_counter);
	errno = pthread_create(&waiter, NULL, big_tail_wait, &t);
	if (errno) {
		fprintf(stderr, "vmgen-reader: big-read: %s\n", strerror(errno));
		return -1;
	}
	n = path[0] == 'g' ? syscall(SYS_getrandom, buf, len, 0) : read(fd, buf, len);
	if (n != (ssize_t)len) {
		fprintf(stderr, "vmgen-reader: big-read: %zd of %zu bytes%s%s\n",
			n, len, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
		return -1;
	}
	pthread_join(waiter, NULL);
	for (i = len - TAIL_BYTES; i < len; i++)
		h = (h ^ buf[i]) * 0x100000001b3ULL;
	printf("%016llx\n", h);
	return 0;
}

static void read_generation(char *out, size_t len);
static int reseed(void);

/*
 * Wait, asking the kernel for no random byte, until the hypervisor updates
 * the vmclock page (its disruption_marker moves on every restore, announced
 * or not), then until the driver's generation attribute changes (it
 * reseeded) or @ms milliseconds pass. Under QEMU's -icount both happen at
 * the same virtual instant in every clone of one save, and nothing from
 * outside reaches the guest first.
 */
static int wait_for_reseed(long ms)
{
	const volatile struct vmclock_abi *clk = map_vmclock();
	struct timespec tick = { 0, 1000000 };
	unsigned long long m0;
	char g0[32], g[32];

	if (!clk) {
		fprintf(stderr, "vmgen-reader: no vmclock page in /proc/iomem or /dev/mem\n");
		return -1;
	}
	read_generation(g0, sizeof(g0));
	m0 = clk->disruption_marker;
	while (clk->disruption_marker == m0)
		nanosleep(&tick, NULL);
	while (ms-- > 0) {
		nanosleep(&tick, NULL);
		read_generation(g, sizeof(g));
		if (strcmp(g, g0))
			break;
	}
	return 0;
}

static int print_samples(long n, const char *path)
{
	char line[64];

	while (n--) {
		if (sample(path, line, sizeof(line))) {
			fprintf(stderr, "vmgen-reader: %s: %s\n", path, strerror(errno));
			return -1;
		}
		puts(line);
	}
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

/* The vDSO's data pages: [vvar] in this process, and its size in *len. */
static const volatile unsigned char *vvar_pages(unsigned long *len)
{
	unsigned long start = 0, end = 0;
	char line[256];
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vvar]") && sscanf(line, "%lx-%lx", &start, &end) == 2)
			break;
	if (f)
		fclose(f);
	*len = end - start;
	return (const volatile unsigned char *)start;
}

static int quiesce(long offset)
{
	const volatile unsigned char *vvar;
	struct timespec tick = { 0, 1000000 }, quiet = { QUIET_UPTIME_S, 0 };
	unsigned long long g0;
	unsigned long len;
	long ms;
	int err;

	/* Returns at once if the uptime is past it already. */
	err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &quiet, NULL);
	if (err) {
		fprintf(stderr, "vmgen-reader: clock_nanosleep: %s\n", strerror(err));
		return -1;
	}
	if (reseed())
		return -1;
	if (offset < 0)
		return 0;
	vvar = vvar_pages(&len);
	if (!vvar || (unsigned long)offset + 8 > len) {
		fprintf(stderr, "vmgen-reader: offset %ld is beyond [vvar] (%lu bytes)\n",
			offset, len);
		return -1;
	}
	g0 = *(const volatile unsigned long long *)(vvar + offset);
	for (ms = 0; *(const volatile unsigned long long *)(vvar + offset) == g0; ms++) {
		if (ms == QUIESCE_MS) {
			fprintf(stderr, "vmgen-reader: the crng's generation stayed %llu for %d s\n",
				g0, QUIESCE_MS / 1000);
			return -1;
		}
		nanosleep(&tick, NULL);
	}
	return 0;
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
		{ "quiesce", required_argument, NULL, 'q' },
		{ "rate", required_argument, NULL, 'R' },
		{ "samples", required_argument, NULL, 's' },
		{ "path", required_argument, NULL, 'p' },
		{ "on-restore", no_argument, NULL, 'w' },
		{ "big-read", required_argument, NULL, 'b' },
		{ "after-reseed", required_argument, NULL, 'a' },
		{ "stack-address", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	long interval_ms = 20, once = 0, rate_ms, nsamples = 0, big_mb = 0;
	long reseed_ms = 0, offset;
	char *path = "getrandom";
	int on_restore = 0;
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
		case 'q':
			offset = strtol(optarg, &end, 10);
			if (*end || offset < -1 || offset > MAX_VVAR_OFFSET ||
			    (offset >= 0 && offset % 8))
				goto usage;
			return quiesce(offset) ? EXIT_FAILURE : 0;
		case 's':
			nsamples = strtol(optarg, &end, 10);
			if (*end || nsamples <= 0 || nsamples > MAX_SAMPLES)
				goto usage;
			break;
		case 'p':
			path = optarg;
			for (char *p = path; *p;) {
				size_t len = strcspn(p, ",");

				if (!known_path(p, len))
					goto usage;
				p += len + !!p[len];
			}
			break;
		case 'w':
			on_restore = 1;
			break;
		case 'a':
			reseed_ms = strtol(optarg, &end, 10);
			if (*end || reseed_ms <= 0)
				goto usage;
			break;
		case 'b':
			big_mb = strtol(optarg, &end, 10);
			if (*end || big_mb <= 0 || big_mb > MAX_BIG_MB)
				goto usage;
			break;
		case 'S':
			/* For exec_stack(): a local's address is on the stack. */
			printf("%016lx\n", (unsigned long)&c);
			return 0;
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		default:
			goto usage;
		}
	}
	if (once)
		return print_random((size_t)once) ? EXIT_FAILURE : 0;
	if (((on_restore || reseed_ms) && !nsamples) || (!on_restore && strchr(path, ',')))
		goto usage;
	if (reseed_ms && wait_for_reseed(reseed_ms))
		return EXIT_FAILURE;
	if (on_restore && !(path = (char *)wait_for_restore(path)))
		return EXIT_FAILURE;
	if (big_mb && strcmp(path, "getrandom") && strcmp(path, "urandom"))
		goto usage;
	if (big_mb)
		return big_read(big_mb, path) ? EXIT_FAILURE : 0;
	if (nsamples)
		return print_samples(nsamples, path) ? EXIT_FAILURE : 0;

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
