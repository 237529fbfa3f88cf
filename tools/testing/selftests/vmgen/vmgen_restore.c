// SPDX-License-Identifier: GPL-2.0
/*
 * What a guest sees across a restore from a snapshot. This test is one half
 * of a pair: it arms its watchers and waits, and the hypervisor side (the
 * vmgen rig, or a person driving Firecracker) snapshots the VM while it
 * waits, then restores it once or as several clones.
 *
 *   VMGEN_RESTORE_TIMEOUT=N  seconds to wait for a restore; without it the
 *                            test skips, as no restore is coming
 *   VMGEN_READY_FILE=PATH    created once every watcher is armed: the
 *                            moment the host may snapshot
 *
 * After the restore it checks the uevent, the unprivileged poll() wakeup and
 * the counters, then prints one getrandom(), /dev/urandom and random/uuid
 * sample, read first thing after the restore. Comparing those across
 * clones, or across two restores of one snapshot, is the host's half: one
 * guest cannot see its siblings.
 */
#define _GNU_SOURCE
#include <sys/random.h>
#include <sys/wait.h>

#include "../kselftest.h"
#include "vmgen.h"

#define NOBODY 65534
#define SAMPLE_BYTES 32

enum { CHILD_WOKE, CHILD_SETUP, CHILD_TIMEOUT };

/*
 * An unprivileged child that reads the generation attribute (arming sysfs
 * poll), tells the parent through @ready, then waits for the restore.
 */
static pid_t spawn_poller(int ready, int timeout_ms)
{
	pid_t pid = fork();
	struct pollfd p = { .events = POLLPRI | POLLERR };
	char buf[32];

	if (pid)
		return pid;
	if (!getuid() && (setgid(NOBODY) || setuid(NOBODY)))
		_exit(CHILD_SETUP);
	p.fd = open(VMGEN_ATTR("generation"), O_RDONLY);
	if (p.fd < 0 || read(p.fd, buf, sizeof(buf)) <= 0)
		_exit(CHILD_SETUP);
	if (write(ready, "x", 1) != 1)
		_exit(CHILD_SETUP);
	_exit(poll(&p, 1, timeout_ms) == 1 ? CHILD_WOKE : CHILD_TIMEOUT);
}

static void hex(const unsigned char *b, size_t len, char *out)
{
	size_t i;

	for (i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void print_samples(void)
{
	unsigned char buf[SAMPLE_BYTES];
	char text[2 * SAMPLE_BYTES + 1] = "";
	int fd;

	if (getrandom(buf, sizeof(buf), 0) == sizeof(buf)) {
		hex(buf, sizeof(buf), text);
		ksft_print_msg("sample getrandom=%s\n", text);
	}
	fd = open("/dev/urandom", O_RDONLY);
	if (fd >= 0 && read(fd, buf, sizeof(buf)) == sizeof(buf)) {
		hex(buf, sizeof(buf), text);
		ksft_print_msg("sample urandom=%s\n", text);
	}
	if (fd >= 0)
		close(fd);
	fd = open("/proc/sys/kernel/random/uuid", O_RDONLY);
	memset(text, 0, sizeof(text));
	if (fd >= 0 && read(fd, text, sizeof(text) - 1) > 0) {
		text[strcspn(text, "\n")] = '\0';
		ksft_print_msg("sample uuid=%s\n", text);
	}
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	const char *env = getenv("VMGEN_RESTORE_TIMEOUT");
	const char *ready_file = getenv("VMGEN_READY_FILE");
	long long gen0, restores0, ev_gen = -1;
	int timeout_ms, sock, pipefd[2], status, got;
	char byte;
	pid_t pid;

	ksft_print_header();
	if (!env || atoi(env) <= 0)
		ksft_exit_skip("no restore is coming: set VMGEN_RESTORE_TIMEOUT %s\n",
			       "and restore the VM while this waits");
	if (!vmgen_bound())
		ksft_exit_skip("vmgenid_vmclock is not watching a vmclock device here\n");
	timeout_ms = atoi(env) * 1000;
	ksft_set_plan(5);

	gen0 = vmgen_read_ull(VMGEN_ATTR("generation"));
	restores0 = vmgen_read_ull(VMGEN_ATTR("restores"));
	sock = vmgen_uevent_socket();
	if (sock < 0 || pipe(pipefd))
		ksft_exit_fail_msg("uevent socket or pipe: %s\n", strerror(errno));
	pid = spawn_poller(pipefd[1], timeout_ms);
	if (pid < 0 || read(pipefd[0], &byte, 1) != 1)
		ksft_exit_fail_msg("unprivileged poller did not start\n");

	ksft_print_msg("waiting up to %d s for a restore (generation %lld)\n",
		       timeout_ms / 1000, gen0);
	fflush(stdout);
	if (ready_file)
		close(open(ready_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));

	got = vmgen_wait_uevent(sock, timeout_ms, &ev_gen);
	if (got == 1)
		print_samples();
	ksft_test_result(got == 1, "NEW_VMGENID=1 uevent received\n");
	ksft_test_result(got == 1 &&
			 ev_gen == vmgen_read_ull(VMGEN_ATTR("generation")),
			 "uevent VMCLOCK_GENERATION=%lld matches sysfs generation\n",
			 ev_gen);
	ksft_test_result(vmgen_read_ull(VMGEN_ATTR("generation")) != gen0,
			 "generation moved from %lld\n", gen0);
	ksft_test_result(vmgen_read_ull(VMGEN_ATTR("restores")) == restores0 + 1,
			 "restores went up by exactly one\n");

	/* sysfs_notify() came before the uevent: give the poller 5 s. */
	for (int i = 0; i < 50 && !waitpid(pid, &status, WNOHANG); i++)
		usleep(100000);
	if (kill(pid, SIGKILL) == 0)
		waitpid(pid, &status, 0);
	ksft_test_result(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_WOKE,
			 "unprivileged poll() on generation woke up\n");
	ksft_finished();
}
