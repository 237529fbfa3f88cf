// SPDX-License-Identifier: GPL-2.0
/*
 * Does a restored guest hand out bytes from the snapshot's crng state? This
 * test reads getrandom(32) in a tight loop across a restore. It tags every
 * sample with the hypervisor's vm_generation_counter, read from the vmclock
 * page through /dev/mem *before* the getrandom() call, so a sample tagged
 * with the new value was certainly produced after the vCPU resumed.
 *
 * Like vmgen_restore it is one half of a pair: the host snapshots the VM
 * while this loops and restores clones. One guest cannot see its siblings,
 * so the verdict (how many post-restore samples two clones share) is the
 * host's. A kernel that checks the counter on every output shares none; one
 * that waits for a notification or a poll shares those of its window.
 *
 *   VMGEN_RESTORE_TIMEOUT=N  seconds to wait for a restore; skip without it
 *   VMGEN_READY_FILE=PATH    created once the loop runs: snapshot now
 *   VMGEN_SAMPLES_FILE=PATH  where the post-restore samples go, one line
 *                            each: "MICROSECONDS-SINCE-FIRST HEX64" (the
 *                            first 8 of the 32 bytes; a chance match of two
 *                            64-bit values is negligible at these counts)
 *   VMGEN_STALE_MS=N         how long to sample after the restore (1000)
 *   VMGEN_STALE_EVERY=N      keep the first post-restore result and every
 *                            Nth after it (1): the same calls in every
 *                            clone, so that clones stay comparable
 *   VMGEN_STALE_VDSO=1       call the vDSO's getrandom() (Linux 6.11 and
 *                            later), found as ../vDSO finds it, instead of
 *                            the syscall: its per-thread state goes to the
 *                            kernel only when the kernel's RNG reseeds
 *   VMGEN_STALE_RATE_MS=N    instead, print calls per second of
 *                            getrandom(32) over N ms, and exit
 *
 * It needs root (the physical address in /proc/iomem and /dev/mem), the
 * vmclock page's device in /proc/iomem, and STRICT_DEVMEM to allow the page
 * (it is not System RAM and no driver claims it exclusively). The header
 * comes from the kernel tree: run "make headers_install" first, as for any
 * selftest that uses new uapi.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <linux/random.h>
#include <linux/vmclock-abi.h>

#include "../kselftest.h"
#include "vmgen.h"

/* The vDSO's getrandom() came in 6.11, with ../vDSO/vdso_call.h. */
#if __has_include("../vDSO/vdso_call.h")
#define HAVE_VDSO_GETRANDOM
#include "../vDSO/parse_vdso.h"
#include "../vDSO/vdso_config.h"
#include "../vDSO/vdso_call.h"
#endif

#define SAMPLE_BYTES	32
#define MAX_SAMPLES	1000000
#define DEFAULT_MS	1000
#define SYNC_WAIT_MS	2000
#define IOMEM_NAME	"AMZNC10C"

struct sample {
	unsigned long long t_ns;
	unsigned long long head;	/* the first 8 of the SAMPLE_BYTES bytes */
};

#ifdef HAVE_VDSO_GETRANDOM
/* The vDSO's getrandom() and one state for it, when VMGEN_STALE_VDSO=1. */
static struct {
	ssize_t (*fn)(void *buf, size_t len, unsigned long flags, void *state,
		      size_t state_len);
	struct vgetrandom_opaque_params params;
	void *state;
} vdso;

static void vdso_init(void)
{
	unsigned long ehdr = getauxval(AT_SYSINFO_EHDR);
	ssize_t ret;

	if (!ehdr)
		ksft_exit_skip("no vDSO (AT_SYSINFO_EHDR)\n");
	vdso_init_from_sysinfo_ehdr(ehdr);
	vdso.fn = (__typeof__(vdso.fn))vdso_sym(versions[VDSO_VERSION],
						names[VDSO_NAMES][6]);
	if (!vdso.fn)
		ksft_exit_skip("no %s in the vDSO\n", names[VDSO_NAMES][6]);
	ret = VDSO_CALL(vdso.fn, 5, NULL, 0, 0, &vdso.params, ~0UL);
	if (ret)
		ksft_exit_skip("vDSO getrandom() parameters: %zd\n", ret);
	vdso.state = mmap(NULL, vdso.params.size_of_opaque_state, vdso.params.mmap_prot,
			  vdso.params.mmap_flags, -1, 0);
	if (vdso.state == MAP_FAILED)
		ksft_exit_fail_msg("vDSO getrandom() state: %s\n", strerror(errno));
}

static ssize_t random_bytes(void *buf, size_t len)
{
	if (vdso.fn)
		return VDSO_CALL(vdso.fn, 5, buf, len, 0, vdso.state,
				 vdso.params.size_of_opaque_state);
	return getrandom(buf, len, 0);
}
#else
static void vdso_init(void)
{
	ksft_exit_skip("built without the vDSO selftests' getrandom() helpers\n");
}

static ssize_t random_bytes(void *buf, size_t len)
{
	return getrandom(buf, len, 0);
}
#endif

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* The vmclock page's physical address, from /proc/iomem; 0 if absent. */
static unsigned long long find_page(void)
{
	unsigned long long start = 0, end;
	char line[256];
	FILE *f = fopen("/proc/iomem", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, IOMEM_NAME) &&
		    sscanf(line, " %llx-%llx", &start, &end) == 2)
			break;
		start = 0;
	}
	fclose(f);
	return start;
}

static const struct vmclock_abi *map_page(void)
{
	unsigned long long phys = find_page();
	long pg = sysconf(_SC_PAGESIZE);
	unsigned long long base = phys & ~(unsigned long long)(pg - 1);
	void *p;
	int fd;

	if (!phys)
		ksft_exit_skip("no %s resource in /proc/iomem (not root, or no vmclock device)\n",
			       IOMEM_NAME);
	fd = open("/dev/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		ksft_exit_skip("/dev/mem: %s\n", strerror(errno));
	p = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, (off_t)base);
	close(fd);
	if (p == MAP_FAILED)
		ksft_exit_skip("mmap of the vmclock page at %#llx: %s\n", base,
			       strerror(errno));
	return (const struct vmclock_abi *)((char *)p + (phys - base));
}

/*
 * The hypervisor owns the page: every read is a fresh load (READ_ONCE() in
 * the kernel), and the counter is taken between two equal, even seq_counts
 * (odd means an update is in flight), as the vmclock ABI asks.
 */
#define PAGE_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static unsigned long long read_counter(const struct vmclock_abi *clk)
{
	unsigned long long gen;
	unsigned int seq;

	do {
		seq = le32toh(PAGE_LOAD(&clk->seq_count));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		gen = le64toh(PAGE_LOAD(&clk->vm_generation_counter));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((seq & 1) || seq != le32toh(PAGE_LOAD(&clk->seq_count)));
	return gen;
}

static bool page_usable(const struct vmclock_abi *clk)
{
	return le32toh(PAGE_LOAD(&clk->magic)) == VMCLOCK_MAGIC &&
	       le32toh(PAGE_LOAD(&clk->size)) >
			offsetof(struct vmclock_abi, vm_generation_counter) &&
	       (le64toh(PAGE_LOAD(&clk->flags)) & VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT);
}

/*
 * Loop until the counter moves, then keep @window_ns worth of samples. Every
 * iteration costs the same before and after the restore. Returns the count;
 * 0 if no restore came within @timeout_ns.
 */
static size_t sample_across_restore(const struct vmclock_abi *clk,
				    struct sample *s, unsigned long long window_ns,
				    unsigned long long timeout_ns, const char *ready_file,
				    unsigned long every, unsigned long long *gen_after)
{
	unsigned long long gen0 = read_counter(clk), start = now_ns(), first = 0, gen;
	unsigned char buf[SAMPLE_BYTES];
	unsigned long calls = 0;
	size_t n = 0;

	for (;;) {
		gen = read_counter(clk);
		if (random_bytes(buf, sizeof(buf)) != sizeof(buf))
			ksft_exit_fail_msg("getrandom: %s\n", strerror(errno));
		if (gen == gen0) {
			if (ready_file) {
				close(open(ready_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
				ready_file = NULL;
			}
			if (now_ns() - start > timeout_ns)
				return 0;
			continue;
		}
		if (calls++ % every)
			continue;
		s[n].t_ns = now_ns();
		memcpy(&s[n].head, buf, sizeof(s[n].head));
		if (!n)
			first = s[n].t_ns;
		if (++n == MAX_SAMPLES || s[n - 1].t_ns - first >= window_ns)
			break;
	}
	*gen_after = gen;
	return n;
}

static int write_samples(const char *path, const struct sample *s, size_t n)
{
	FILE *f = fopen(path, "w");
	size_t i;

	if (!f)
		return -1;
	for (i = 0; i < n; i++)
		fprintf(f, "%llu %016llx\n",
			(s[i].t_ns - s[0].t_ns) / 1000, s[i].head);
	return fclose(f);
}

/* The driver, if bound, must catch up with the counter on its own. */
static bool driver_caught_up(unsigned long long gen)
{
	long long deadline = vmgen_now_ms() + SYNC_WAIT_MS;

	do {
		if (vmgen_read_ull(VMGEN_ATTR("generation")) == (long long)gen)
			return true;
		usleep(10000);
	} while (vmgen_now_ms() < deadline);
	return false;
}

/*
 * Calls of getrandom(32) per second over @ms, the clock read once per batch
 * so that it costs next to nothing against the calls counted.
 */
static void print_rate(long ms)
{
	unsigned long long t0 = now_ns(), calls = 0, t;
	unsigned char buf[SAMPLE_BYTES];
	int i;

	do {
		for (i = 0; i < 256; i++)
			if (random_bytes(buf, sizeof(buf)) != sizeof(buf))
				ksft_exit_fail_msg("getrandom: %s\n", strerror(errno));
		calls += 256;
		t = now_ns();
	} while (t - t0 < ms * 1000000ULL);
	printf("%.0f\n", calls * 1e9 / (t - t0));
	exit(0);
}

int main(void)
{
	const char *env = getenv("VMGEN_RESTORE_TIMEOUT");
	const char *out = getenv("VMGEN_SAMPLES_FILE");
	const char *ms = getenv("VMGEN_STALE_MS");
	const char *every = getenv("VMGEN_STALE_EVERY");
	unsigned long long window_ns = (ms ? strtoull(ms, NULL, 10) : DEFAULT_MS) * 1000000ULL;
	unsigned long nth = every ? strtoul(every, NULL, 10) : 1;
	const struct vmclock_abi *clk;
	unsigned long long gen0, gen = 0;
	struct sample *s;
	size_t n;

	if (getenv("VMGEN_STALE_VDSO") && atoi(getenv("VMGEN_STALE_VDSO")))
		vdso_init();
	if (getenv("VMGEN_STALE_RATE_MS"))
		print_rate(atol(getenv("VMGEN_STALE_RATE_MS")));
	ksft_print_header();
	if (!env || atoi(env) <= 0)
		ksft_exit_skip("no restore is coming: set VMGEN_RESTORE_TIMEOUT %s\n",
			       "and restore the VM while this loops");
	if (!window_ns)
		ksft_exit_fail_msg("VMGEN_STALE_MS must be a positive number\n");
	if (!nth)
		ksft_exit_fail_msg("VMGEN_STALE_EVERY must be a positive number\n");
	clk = map_page();
	if (!page_usable(clk))
		ksft_exit_skip("the vmclock page has no VM generation counter\n");
	s = calloc(MAX_SAMPLES, sizeof(*s));
	if (!s)
		ksft_exit_fail_msg("no memory for %d samples\n", MAX_SAMPLES);
	ksft_set_plan(3);

	gen0 = read_counter(clk);
	ksft_print_msg("sampling getrandom(%d) until the counter leaves %llu\n",
		       SAMPLE_BYTES, gen0);
	fflush(stdout);
	n = sample_across_restore(clk, s, window_ns, atoi(env) * 1000000000ULL,
				  getenv("VMGEN_READY_FILE"), nth, &gen);
	ksft_test_result(n > 0, "counter moved from %llu to %llu\n",
			 gen0, gen);
	if (n)
		ksft_print_msg("%zu samples in %llu ms after the restore\n",
			       n, (s[n - 1].t_ns - s[0].t_ns) / 1000000);
	ksft_test_result(n && (!out || !write_samples(out, s, n)),
			 "post-restore samples recorded%s%s\n",
			 out ? " to " : "", out ? out : "");
	if (vmgen_bound())
		ksft_test_result(n && driver_caught_up(gen),
				 "sysfs generation caught up with the counter\n");
	else
		ksft_test_result_skip("no vmgenid_vmclock driver bound to compare with\n");
	free(s);
	ksft_finished();
}
