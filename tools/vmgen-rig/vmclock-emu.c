// SPDX-License-Identifier: GPL-2.0
/*
 * vmclock-emu: the hypervisor half of a vmclock device, for QEMU guests whose
 * RAM is a shared file. It writes the vmclock page straight into that file
 * and rings the guest through a doorbell socket (a spare UART wired to a
 * Generic Event Device by the rig's SSDT).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmclock-abi.h>

_Static_assert(offsetof(struct vmclock_abi, seq_count) == 12, "vmclock ABI");
_Static_assert(offsetof(struct vmclock_abi, flags) == 24, "vmclock ABI");
_Static_assert(offsetof(struct vmclock_abi, vm_generation_counter) == 104,
	       "vmclock ABI");
_Static_assert(sizeof(struct vmclock_abi) == 112, "vmclock ABI");

enum { EXIT_USAGE = 2, PAGE_BYTES = 4096, MAX_RATE = 100000, MAX_SECONDS = 600 };

struct opts {
	const char *ram;
	const char *doorbell;
	unsigned long long offset;
	unsigned long long counter;
	int counter_set;	/* bump, begin: --counter N instead of the strategy */
	const char *strategy;
	int no_gen;
	int no_notify;
	long long magic;	/* -1: the real one */
	long long version;
	long long size;
	int ring;
	int clock;		/* bump, begin: refresh the time fields */
	unsigned long long rate;	/* flap, storm: per second */
	unsigned long long seconds;
};

static void usage(FILE *f)
{
	fputs("usage: vmclock-emu --ram FILE --offset ADDR COMMAND [options]\n"
	      "\n"
	      "commands:\n"
	      "  init    write a fresh vmclock page\n"
	      "          --counter N        initial vm_generation_counter (0)\n"
	      "          --no-gen-counter   clear VM_GEN_COUNTER_PRESENT\n"
	      "          --no-notify        clear NOTIFICATION_PRESENT\n"
	      "          --magic X --version V --size S   write bad values\n"
	      "  bump    move the counter as a hypervisor does after a restore\n"
	      "          --strategy increment|random  (increment)\n"
	      "          --counter N                to N instead\n"
	      "          --clock                    also refresh the time fields from\n"
	      "                                     the host's clock, as a hypervisor\n"
	      "                                     does at each restore\n"
	      "          --ring                     ring the doorbell afterwards\n"
	      "  begin   start an update and stop halfway: counter moved,\n"
	      "          seq_count left odd (--strategy, --counter as for bump)\n"
	      "  finish  complete it: seq_count even again\n"
	      "  flap    bump --rate times a second for --seconds (--ring: each)\n"
	      "  storm   ring --rate times a second for --seconds, counter alone\n"
	      "  ring    ring the doorbell once\n"
	      "  show    print the page\n"
	      "\n"
	      "common: --doorbell SOCK (unix socket of the doorbell UART)\n",
	      f);
}

static int parse_ull(const char *s, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return (errno || !*s || *end) ? -1 : 0;
}

static struct vmclock_abi *map_page(const struct opts *o)
{
	void *p;
	int fd;

	if (o->offset % PAGE_BYTES) {
		fprintf(stderr, "vmclock-emu: offset %#llx is not page aligned\n",
			o->offset);
		return NULL;
	}
	fd = open(o->ram, O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "vmclock-emu: %s: %s\n", o->ram, strerror(errno));
		return NULL;
	}
	p = mmap(NULL, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 (off_t)o->offset);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "vmclock-emu: mmap %s at %#llx: %s\n", o->ram,
			o->offset, strerror(errno));
		return NULL;
	}
	return p;
}

static int cmd_init(struct vmclock_abi *clk, const struct opts *o)
{
	uint64_t flags = VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT |
			 VMCLOCK_FLAG_NOTIFICATION_PRESENT;

	if (o->no_gen)
		flags &= ~(uint64_t)VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT;
	if (o->no_notify)
		flags &= ~(uint64_t)VMCLOCK_FLAG_NOTIFICATION_PRESENT;

	memset(clk, 0, PAGE_BYTES);
	clk->magic = htole32(o->magic < 0 ? VMCLOCK_MAGIC : (uint32_t)o->magic);
	clk->size = htole32(o->size < 0 ? PAGE_BYTES : (uint32_t)o->size);
	clk->version = htole16(o->version < 0 ? 1 : (uint16_t)o->version);
	clk->counter_id = VMCLOCK_COUNTER_INVALID;
	clk->time_type = VMCLOCK_TIME_UTC;
	clk->clock_status = VMCLOCK_STATUS_UNKNOWN;
	clk->flags = htole64(flags);
	clk->vm_generation_counter = htole64(o->counter);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return 0;
}

static uint64_t next_counter(uint64_t cur, const char *strategy)
{
	uint64_t v;

	if (!strcmp(strategy, "increment"))
		return cur + 1;
	do {
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			return cur + 1;
	} while (v == cur);
	return v;
}

static int doorbell_open(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path) {
		fprintf(stderr, "vmclock-emu: ringing needs --doorbell SOCK\n");
		return -1;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmclock-emu: %s: path too long\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "vmclock-emu: doorbell %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* One byte is one ring; 0, or -1 if the guest's UART is not taking any. */
static int doorbell_ring(int fd, int flags)
{
	const char byte = '!';

	return send(fd, &byte, 1, flags | MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int ring(const char *path)
{
	int fd = doorbell_open(path), ret;

	if (fd < 0)
		return -1;
	ret = doorbell_ring(fd, 0);
	if (ret)
		fprintf(stderr, "vmclock-emu: doorbell %s: %s\n", path,
			strerror(errno));
	close(fd);
	return ret;
}

/*
 * A hypervisor that stops halfway through an update: seq_count odd, the
 * counter already moved. "finish" completes it.
 */
static void begin_update(struct vmclock_abi *clk, const struct opts *o)
{
	uint32_t seq = le32toh(__atomic_load_n(&clk->seq_count, __ATOMIC_RELAXED));
	uint64_t gen = le64toh(clk->vm_generation_counter);

	__atomic_store_n(&clk->seq_count, htole32(seq | 1), __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	clk->disruption_marker = htole64(le64toh(clk->disruption_marker) + 1);
	clk->vm_generation_counter = htole64(o->counter_set ? o->counter :
					     next_counter(gen, o->strategy));
	if (o->clock) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		clk->time_sec = htole64((uint64_t)ts.tv_sec);
		/* Nanoseconds as a fraction of 2^64. */
		clk->time_frac_sec = htole64((uint64_t)ts.tv_nsec * 18446744073ULL);
	}
}

static void finish_update(struct vmclock_abi *clk)
{
	uint32_t seq = le32toh(__atomic_load_n(&clk->seq_count, __ATOMIC_RELAXED));

	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&clk->seq_count, htole32((seq | 1) + 1),
			 __ATOMIC_RELAXED);
}

/* Firecracker's order: seq odd, fence, marker and counter, fence, seq even. */
static void bump(struct vmclock_abi *clk, const struct opts *o)
{
	begin_update(clk, o);
	finish_update(clk);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * flap: move the counter (and ring, with --ring) o->rate times a second;
 * storm: ring that often with the counter left alone. Both for o->seconds,
 * on absolute deadlines. A ring the guest's UART cannot take yet is dropped
 * (counted), not queued: a storm must not outlast its seconds.
 */
static int storm(struct vmclock_abi *clk, const struct opts *o, int flap)
{
	uint64_t period = 1000000000ULL / o->rate, start = now_ns();
	uint64_t n = o->rate * o->seconds, i, dropped = 0, t;
	struct timespec ts;
	int fd = -1;

	if (!flap || o->ring) {
		fd = doorbell_open(o->doorbell);
		if (fd < 0)
			return -1;
	}
	for (i = 0; i < n; i++) {
		if (flap)
			bump(clk, o);
		if (fd >= 0 && doorbell_ring(fd, MSG_DONTWAIT))
			dropped++;
		t = start + (i + 1) * period;
		ts.tv_sec = t / 1000000000ULL;
		ts.tv_nsec = t % 1000000000ULL;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	if (fd >= 0)
		close(fd);
	printf("%s: %" PRIu64 " in %.1f s, %" PRIu64 " rings dropped\n",
	       flap ? "flaps" : "rings", n, (now_ns() - start) / 1e9, dropped);
	return 0;
}
static void show(const struct vmclock_abi *clk)
{
	printf("magic 0x%08" PRIx32 "\nsize %" PRIu32 "\nversion %u\n"
	       "seq_count %" PRIu32 "\nflags 0x%" PRIx64 "\n"
	       "disruption_marker %" PRIu64 "\nvm_generation_counter %" PRIu64 "\n",
	       le32toh(clk->magic), le32toh(clk->size), le16toh(clk->version),
	       le32toh(clk->seq_count), le64toh(clk->flags),
	       le64toh(clk->disruption_marker),
	       le64toh(clk->vm_generation_counter));
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "ram", required_argument, NULL, 'r' },
		{ "offset", required_argument, NULL, 'o' },
		{ "doorbell", required_argument, NULL, 'd' },
		{ "counter", required_argument, NULL, 'c' },
		{ "strategy", required_argument, NULL, 's' },
		{ "no-gen-counter", no_argument, NULL, 'G' },
		{ "no-notify", no_argument, NULL, 'N' },
		{ "magic", required_argument, NULL, 'm' },
		{ "version", required_argument, NULL, 'v' },
		{ "size", required_argument, NULL, 'z' },
		{ "ring", no_argument, NULL, 'R' },
		{ "clock", no_argument, NULL, 'C' },
		{ "rate", required_argument, NULL, 'f' },
		{ "seconds", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	unsigned long long v = 0;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?')
			return -1;
		if (optarg && strchr("ocmvzft", c) && parse_ull(optarg, &v)) {
			fprintf(stderr, "vmclock-emu: bad number '%s'\n", optarg);
			return -1;
		}
		switch (c) {
		case 'r': o->ram = optarg; break;
		case 'o': o->offset = v; break;
		case 'd': o->doorbell = optarg; break;
		case 'c': o->counter = v; o->counter_set = 1; break;
		case 's': o->strategy = optarg; break;
		case 'G': o->no_gen = 1; break;
		case 'N': o->no_notify = 1; break;
		case 'm': o->magic = (long long)(uint32_t)v; break;
		case 'v': o->version = (long long)(uint16_t)v; break;
		case 'z': o->size = (long long)(uint32_t)v; break;
		case 'R': o->ring = 1; break;
		case 'C': o->clock = 1; break;
		case 'f': o->rate = v; break;
		case 't': o->seconds = v; break;
		}
	}
	if (strcmp(o->strategy, "increment") && strcmp(o->strategy, "random")) {
		fprintf(stderr, "vmclock-emu: unknown strategy '%s'\n", o->strategy);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .strategy = "increment", .magic = -1, .version = -1,
			  .size = -1, .offset = ~0ULL };
	struct vmclock_abi *clk;
	const char *cmd;

	if (parse(argc, argv, &o))
		goto bad_usage;
	if (optind != argc - 1) {
		fprintf(stderr, "vmclock-emu: expected one command\n");
		goto bad_usage;
	}
	cmd = argv[optind];
	if (!strcmp(cmd, "ring"))
		return ring(o.doorbell) ? EXIT_FAILURE : EXIT_SUCCESS;
	if (strcmp(cmd, "init") && strcmp(cmd, "bump") && strcmp(cmd, "show") &&
	    strcmp(cmd, "begin") && strcmp(cmd, "finish") &&
	    strcmp(cmd, "flap") && strcmp(cmd, "storm")) {
		fprintf(stderr, "vmclock-emu: unknown command '%s'\n", cmd);
		goto bad_usage;
	}
	if (!o.ram || o.offset == ~0ULL) {
		fprintf(stderr, "vmclock-emu: %s needs --ram and --offset\n", cmd);
		goto bad_usage;
	}
	clk = map_page(&o);
	if (!clk)
		return EXIT_FAILURE;
	if (!strcmp(cmd, "init"))
		return cmd_init(clk, &o);
	if (!strcmp(cmd, "flap") || !strcmp(cmd, "storm")) {
		if (!o.rate || o.rate > MAX_RATE || !o.seconds || o.seconds > MAX_SECONDS) {
			fprintf(stderr, "vmclock-emu: %s needs --rate 1..%d and --seconds 1..%d\n",
				cmd, MAX_RATE, MAX_SECONDS);
			goto bad_usage;
		}
		return storm(clk, &o, !strcmp(cmd, "flap")) ? EXIT_FAILURE : 0;
	}
	if (!strcmp(cmd, "begin") || !strcmp(cmd, "finish")) {
		if (cmd[0] == 'b')
			begin_update(clk, &o);
		else
			finish_update(clk);
		show(clk);
		return 0;
	}
	if (!strcmp(cmd, "show")) {
		show(clk);
		return 0;
	}
	bump(clk, &o);
	if (o.ring && ring(o.doorbell))
		return EXIT_FAILURE;
	show(clk);
	return 0;

bad_usage:
	usage(stderr);
	return EXIT_USAGE;
}

