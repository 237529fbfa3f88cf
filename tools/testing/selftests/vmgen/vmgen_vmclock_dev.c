// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/vmclock0, as ptp_vmclock (Linux 6.13 and later) offers it and as
 * vmgenid_vmclock offers it where no other driver does: read() returns a
 * consistent copy of the vmclock page, mmap() maps exactly that one page
 * read-only, and poll() reports POLLHUP when the hypervisor does not notify,
 * and nothing while seq_count has not moved since this file last read.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <sys/mman.h>
#include <linux/vmclock-abi.h>

#include "../kselftest_harness.h"
#include "vmgen.h"

#define DEVICE "/dev/vmclock0"

FIXTURE(dev) {
	int fd;
	int err;	/* why open() failed */
	long page;
};

FIXTURE_SETUP(dev)
{
	self->page = sysconf(_SC_PAGESIZE);
	self->fd = open(DEVICE, O_RDONLY | O_CLOEXEC);
	self->err = errno;
}

FIXTURE_TEARDOWN(dev)
{
	if (self->fd >= 0)
		close(self->fd);
}

TEST_F(dev, read_returns_the_page)
{
	struct vmclock_abi clk;
	char tail;

	/* The 6.1 harness runs a test body even after its setup skips. */
	if (self->fd < 0)
		SKIP(return, "%s: %s", DEVICE, strerror(self->err));
	ASSERT_EQ(sizeof(clk), pread(self->fd, &clk, sizeof(clk), 0));
	EXPECT_EQ(VMCLOCK_MAGIC, le32toh(clk.magic));
	EXPECT_EQ(1, le16toh(clk.version));
	EXPECT_LE(le32toh(clk.size), self->page);
	EXPECT_EQ(0, le32toh(clk.seq_count) & 1);
	/* The device is one page long. */
	EXPECT_EQ(0, pread(self->fd, &tail, 1, self->page));
}

TEST_F(dev, mmap_maps_one_page_read_only)
{
	const struct vmclock_abi *clk;
	void *p;

	/* The 6.1 harness runs a test body even after its setup skips. */
	if (self->fd < 0)
		SKIP(return, "%s: %s", DEVICE, strerror(self->err));
	p = mmap(NULL, self->page, PROT_READ, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	clk = p;
	EXPECT_EQ(VMCLOCK_MAGIC, le32toh(clk->magic));
	munmap(p, self->page);

	EXPECT_EQ(MAP_FAILED, mmap(NULL, self->page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE, self->fd, 0));
	EXPECT_EQ(EROFS, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 2 * self->page, PROT_READ, MAP_SHARED,
				   self->fd, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, self->page, PROT_READ, MAP_SHARED,
				   self->fd, self->page));
	EXPECT_EQ(EINVAL, errno);
}

/* Whether /dev/vmclock0 is vmgenid_vmclock's, not another driver's. */
static bool node_is_ours(void)
{
	char link[256];
	ssize_t n = readlink("/sys/class/misc/vmclock0/device", link, sizeof(link) - 1);

	if (n < 0)
		return false;
	link[n] = '\0';
	return !strcmp(strrchr(link, '/') ? strrchr(link, '/') + 1 : link, "vmgenid_vmclock");
}

/* Not even a file open for writing can make the hypervisor's page writable. */
TEST_F(dev, mapping_cannot_become_writable)
{
	int flags[] = { MAP_SHARED, MAP_PRIVATE };
	int fd;
	void *p;

	/* The 6.1 harness runs a test body even after its setup skips. */
	if (self->fd < 0)
		SKIP(return, "%s: %s", DEVICE, strerror(self->err));
	/* Mainline's ptp_vmclock leaves VM_MAYWRITE set on its mapping. */
	if (!node_is_ours())
		SKIP(return, "%s is another driver's", DEVICE);
	fd = open(DEVICE, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("%s read-write: %s", DEVICE, strerror(errno));
	for (int i = 0; i < 2; i++) {
		p = mmap(NULL, self->page, PROT_READ, flags[i], fd, 0);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(-1, mprotect(p, self->page, PROT_READ | PROT_WRITE));
		EXPECT_EQ(EACCES, errno);
		munmap(p, self->page);
	}
	close(fd);
}

TEST_F(dev, poll_says_whether_the_hypervisor_notifies)
{
	struct pollfd p = { .events = POLLIN };
	struct vmclock_abi clk;

	/* The 6.1 harness runs a test body even after its setup skips. */
	if (self->fd < 0)
		SKIP(return, "%s: %s", DEVICE, strerror(self->err));
	/* A read tells the driver what this file has seen. */
	ASSERT_EQ(sizeof(clk), pread(self->fd, &clk, sizeof(clk), 0));
	p.fd = self->fd;
	if (le64toh(clk.flags) & VMCLOCK_FLAG_NOTIFICATION_PRESENT) {
		EXPECT_EQ(0, poll(&p, 1, 200)) TH_LOG("revents %#x", p.revents);
	} else {
		ASSERT_EQ(1, poll(&p, 1, 200));
		EXPECT_TRUE(p.revents & POLLHUP);
	}
}

TEST_HARNESS_MAIN
