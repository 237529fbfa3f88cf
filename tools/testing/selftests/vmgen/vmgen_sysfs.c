// SPDX-License-Identifier: GPL-2.0
/*
 * The sysfs ABI of vmgenid_vmclock, checked without a restore: the
 * attributes, their permissions, that an unprivileged reader can use them,
 * and that nothing changes while the VM is not restored.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "vmgen.h"

#define NOBODY 65534
#define POLL_INTERVAL "/sys/module/vmgenid_vmclock/parameters/poll_interval_ms"

static const char * const attrs[] = { "generation", "restores", "mode" };

/*
 * Why the tests cannot run here, or NULL. Each test skips from its own
 * body: the 6.1 harness runs the body even after a FIXTURE_SETUP() skips.
 */
static const char *missing(void)
{
	if (!vmgen_bound())
		return "vmgenid_vmclock is not watching a vmclock device here";
	return NULL;
}

TEST(attributes_are_world_readable_and_read_only)
{
	struct stat st;
	size_t i;

	if (missing())
		SKIP(return, "%s", missing());
	for (i = 0; i < ARRAY_SIZE(attrs); i++) {
		char path[128];

		snprintf(path, sizeof(path), VMGEN_DEV "/%s", attrs[i]);
		ASSERT_EQ(0, stat(path, &st)) TH_LOG("%s: %s", path, strerror(errno));
		EXPECT_TRUE(S_ISREG(st.st_mode));
		EXPECT_EQ(0444, st.st_mode & 07777)
			TH_LOG("%s is %o", path, st.st_mode & 07777);
		/* kernfs refuses writes to an attribute without a store op. */
		EXPECT_EQ(-1, open(path, O_WRONLY));
		EXPECT_EQ(EACCES, errno);
	}
}

TEST(values_are_well_formed)
{
	char mode[16] = "";
	int fd;

	if (missing())
		SKIP(return, "%s", missing());
	fd = open(VMGEN_ATTR("mode"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_LT(0, read(fd, mode, sizeof(mode) - 1));
	close(fd);
	EXPECT_TRUE(!strcmp(mode, "notify\n") || !strcmp(mode, "poll\n"))
		TH_LOG("mode is '%s'", mode);
	EXPECT_LE(0, vmgen_read_ull(VMGEN_ATTR("generation")));
	EXPECT_LE(0, vmgen_read_ull(VMGEN_ATTR("restores")));
}

/*
 * Without a restore, two reads a few poll intervals apart agree, and no
 * NEW_VMGENID uevent arrives in between.
 */
TEST(no_change_without_restore)
{
	long long interval, gen, restores, seen;
	int fd;

	if (missing())
		SKIP(return, "%s", missing());
	interval = vmgen_read_ull(POLL_INTERVAL);
	gen = vmgen_read_ull(VMGEN_ATTR("generation"));
	restores = vmgen_read_ull(VMGEN_ATTR("restores"));
	fd = vmgen_uevent_socket();
	ASSERT_LE(0, fd) TH_LOG("uevent socket: %s", strerror(errno));
	if (interval < 100)
		interval = 100;
	EXPECT_EQ(0, vmgen_wait_uevent(fd, 5 * interval, &seen))
		TH_LOG("NEW_VMGENID uevent (generation %lld) without a restore",
		       seen);
	close(fd);
	EXPECT_EQ(gen, vmgen_read_ull(VMGEN_ATTR("generation")));
	EXPECT_EQ(restores, vmgen_read_ull(VMGEN_ATTR("restores")));
}

/*
 * An unprivileged process can open the generation attribute and arm
 * poll() on it; with no restore pending, poll() reports nothing.
 */
TEST(unprivileged_poll_arms)
{
	pid_t pid;
	int status;

	if (missing())
		SKIP(return, "%s", missing());
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct pollfd p = { .events = POLLPRI | POLLERR };
		char buf[32];

		if (!getuid() && (setgid(NOBODY) || setuid(NOBODY)))
			_exit(2);
		p.fd = open(VMGEN_ATTR("generation"), O_RDONLY);
		if (p.fd < 0 || read(p.fd, buf, sizeof(buf)) <= 0)
			_exit(3);
		_exit(poll(&p, 1, 200) == 0 ? 0 : 4);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child failed at step %d (2 setuid, 3 open/read, 4 poll)",
		       WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
