// SPDX-License-Identifier: GPL-2.0
/*
 * host-test: unit tests of the vmclock ABI header and of vmclock-emu, run on
 * the host. Prints KTAP: the plan, then one result per test; exits 1 if a
 * test failed or the count does not match the plan.
 *
 * usage: host-test PATH_TO_VMCLOCK_EMU
 */
#define _GNU_SOURCE
#include <endian.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/vmclock-abi.h>

enum { PAGE_BYTES = 4096, PAGE_OFFSET = 2 * PAGE_BYTES, RAM_BYTES = 16 * PAGE_BYTES,
       PLAN = 24 };

static const char *emu;
static char ram[] = "/tmp/vmgen-host-test.XXXXXX";
static int failures, ran;

static void result(const char *name, int ok, const char *why)
{
	printf("%sok %d %s\n", ok ? "" : "not ", ++ran, name);
	if (!ok) {
		printf("# %s\n", why);
		failures++;
	}
}

/* Run vmclock-emu with the RAM file and page offset; returns its status. */
static int run_emu(const char *args)
{
	char *cmd;
	int st;

	if (asprintf(&cmd, "%s --ram %s --offset %d %s >/dev/null 2>&1", emu,
		     ram, PAGE_OFFSET, args) < 0)
		return -1;
	st = system(cmd);
	free(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static struct vmclock_abi *page(void)
{
	static struct vmclock_abi snap;
	int fd = open(ram, O_RDONLY);

	if (fd < 0 || pread(fd, &snap, sizeof(snap), PAGE_OFFSET) != sizeof(snap))
		memset(&snap, 0, sizeof(snap));
	if (fd >= 0)
		close(fd);
	return &snap;
}

static void test_abi_layout(void)
{
	static const struct { const char *name; size_t off, want; } f[] = {
		{ "magic", offsetof(struct vmclock_abi, magic), 0 },
		{ "size", offsetof(struct vmclock_abi, size), 4 },
		{ "version", offsetof(struct vmclock_abi, version), 8 },
		{ "counter_id", offsetof(struct vmclock_abi, counter_id), 10 },
		{ "time_type", offsetof(struct vmclock_abi, time_type), 11 },
		{ "seq_count", offsetof(struct vmclock_abi, seq_count), 12 },
		{ "disruption_marker", offsetof(struct vmclock_abi, disruption_marker), 16 },
		{ "flags", offsetof(struct vmclock_abi, flags), 24 },
		{ "clock_status", offsetof(struct vmclock_abi, clock_status), 34 },
		{ "tai_offset_sec", offsetof(struct vmclock_abi, tai_offset_sec), 36 },
		{ "counter_period_shift", offsetof(struct vmclock_abi, counter_period_shift), 39 },
		{ "counter_value", offsetof(struct vmclock_abi, counter_value), 40 },
		{ "time_sec", offsetof(struct vmclock_abi, time_sec), 72 },
		{ "time_maxerror_nanosec", offsetof(struct vmclock_abi, time_maxerror_nanosec), 96 },
		{ "vm_generation_counter", offsetof(struct vmclock_abi, vm_generation_counter), 104 },
	};
	char why[128] = "";
	size_t i;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i].off != f[i].want)
			snprintf(why, sizeof(why), "%s at %zu, expected %zu",
				 f[i].name, f[i].off, f[i].want);
	if (sizeof(struct vmclock_abi) != 112)
		snprintf(why, sizeof(why), "sizeof %zu, expected 112",
			 sizeof(struct vmclock_abi));
	result("abi: field offsets and size", !why[0], why);
	result("abi: magic is \"VCLK\" little-endian",
	       !memcmp(&(uint32_t){ htole32(VMCLOCK_MAGIC) }, "VCLK", 4),
	       "VMCLOCK_MAGIC does not spell VCLK");
	result("abi: generation and notification flags are bits 8 and 9",
	       VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT == 0x100 &&
	       VMCLOCK_FLAG_NOTIFICATION_PRESENT == 0x200, "wrong flag values");
}

static void test_emu_init(void)
{
	struct vmclock_abi *p;

	result("emu: init exits 0", run_emu("init --counter 7") == 0, "non-zero exit");
	p = page();
	result("emu: init writes a valid page",
	       le32toh(p->magic) == VMCLOCK_MAGIC && le16toh(p->version) == 1 &&
	       le32toh(p->size) == PAGE_BYTES && le32toh(p->seq_count) == 0 &&
	       le64toh(p->vm_generation_counter) == 7,
	       "magic, version, size, seq or counter wrong");
	result("emu: init sets both flags",
	       le64toh(p->flags) == (VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT |
				     VMCLOCK_FLAG_NOTIFICATION_PRESENT),
	       "flags wrong");
	run_emu("init --no-notify --no-gen-counter --magic 0x1234 --version 9 --size 64");
	p = page();
	result("emu: init writes the bad values asked for",
	       !le64toh(p->flags) && le32toh(p->magic) == 0x1234 &&
	       le16toh(p->version) == 9 && le32toh(p->size) == 64,
	       "overrides not written");
}

static void test_emu_bump(void)
{
	struct vmclock_abi before, *p;
	uint64_t seen[32];
	int i, j, distinct = 1;

	run_emu("init --counter 41");
	before = *page();
	result("emu: bump exits 0", run_emu("bump") == 0, "non-zero exit");
	p = page();
	result("emu: increment bump adds one to the counter",
	       le64toh(p->vm_generation_counter) == 42, "counter not 42");
	result("emu: bump leaves seq_count even and two higher",
	       le32toh(p->seq_count) == le32toh(before.seq_count) + 2,
	       "seq_count not advanced by 2");
	result("emu: bump moves the disruption marker",
	       le64toh(p->disruption_marker) == le64toh(before.disruption_marker) + 1,
	       "marker unchanged");
	for (i = 0; i < 32; i++) {
		run_emu("bump --strategy random");
		seen[i] = le64toh(page()->vm_generation_counter);
		for (j = 0; j < i; j++)
			distinct &= seen[i] != seen[j];
	}
	result("emu: random bumps never repeat a value (32 bumps)", distinct,
	       "a value repeated");
	run_emu("bump --counter 77");
	result("emu: bump --counter sets the value asked for",
	       le64toh(page()->vm_generation_counter) == 77, "counter not 77");
}

static void test_emu_faults(void)
{
	struct vmclock_abi *p;

	run_emu("init --counter 10");
	result("emu: begin exits 0", run_emu("begin") == 0, "non-zero exit");
	p = page();
	result("emu: begin moves the counter and leaves seq_count odd",
	       le64toh(p->vm_generation_counter) == 11 && (le32toh(p->seq_count) & 1),
	       "counter not 11 or seq_count even");
	run_emu("finish");
	p = page();
	result("emu: finish makes seq_count even, counter kept",
	       le32toh(p->seq_count) == 2 && le64toh(p->vm_generation_counter) == 11,
	       "seq_count not 2 or counter moved");
	result("emu: flap without --ring exits 0",
	       run_emu("flap --rate 200 --seconds 1") == 0, "non-zero exit");
	p = page();
	result("emu: flap moves the counter rate x seconds times",
	       le64toh(p->vm_generation_counter) == 211 && le32toh(p->seq_count) == 402,
	       "counter or seq_count wrong");
	result("emu: flap and storm refuse a zero or huge rate",
	       run_emu("flap --rate 0 --seconds 1") == 2 &&
	       run_emu("storm --rate 1000000 --seconds 1") == 2 &&
	       run_emu("storm --rate 10 --seconds 0") == 2, "wrong exit");
	result("emu: storm without a doorbell fails",
	       run_emu("storm --rate 10 --seconds 1") == 1, "wrong exit");
}

static void test_emu_usage(void)
{
	result("emu: unknown command exits 2", run_emu("explode") == 2, "wrong exit");
	result("emu: unknown strategy exits 2",
	       run_emu("bump --strategy sideways") == 2, "wrong exit");
	result("emu: bad number exits 2", run_emu("init --counter 12x") == 2,
	       "wrong exit");
	result("emu: ring without a doorbell fails", run_emu("ring") == 1,
	       "wrong exit");
}

int main(int argc, char **argv)
{
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: host-test PATH_TO_VMCLOCK_EMU\n");
		return 2;
	}
	emu = argv[1];
	fd = mkstemp(ram);
	if (fd < 0 || ftruncate(fd, RAM_BYTES)) {
		perror("host-test: temporary RAM file");
		return 1;
	}
	close(fd);
	printf("KTAP version 1\n1..%d\n", PLAN);
	test_abi_layout();
	test_emu_init();
	test_emu_bump();
	test_emu_usage();
	test_emu_faults();
	unlink(ram);
	if (ran != PLAN)
		printf("# planned %d tests, ran %d\n", PLAN, ran);
	return failures || ran != PLAN ? 1 : 0;
}
