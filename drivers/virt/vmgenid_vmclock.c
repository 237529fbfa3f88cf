// SPDX-License-Identifier: GPL-2.0
/*
 * A vmclock hypervisor moves vm_generation_counter each time it loads the VM
 * from a snapshot, so every clone would otherwise go on serving the random
 * bytes of its siblings. This driver exists for shepherding that change to
 * random.c, and to userspace the way vmgenid did. It never binds the vmclock
 * device, which ptp_vmclock may own: it watches the page beside it.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/acpi.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/major.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/pm.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/timex.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <asm/archrandom.h>
#include <asm/barrier.h>

#include <uapi/linux/random.h>
#include <uapi/linux/vmclock-abi.h>

static_assert(offsetof(struct vmclock_abi, seq_count) == 12);
static_assert(offsetof(struct vmclock_abi, flags) == 24);
static_assert(offsetof(struct vmclock_abi, vm_generation_counter) == 104);
static_assert(sizeof(struct vmclock_abi) == 112);

enum {
	VMCLOCK_ABI_VERSION = 1,
	/*
	 * How long a hypervisor may hold seq_count odd: its updates take
	 * microseconds. The check gives up sooner than a reader of
	 * /dev/vmclock0, as ptp_vmclock lets one wait, and tries again later.
	 */
	VMCLOCK_CHECK_WAIT_MS = 10,
	VMCLOCK_READ_WAIT_MS = 100,
	/*
	 * After a change, the next check waits this long: a hypervisor that
	 * flaps the counter gets at most 1000 / VMCLOCK_RESEED_GAP_MS reseeds
	 * a second from this driver, and its last value is still caught.
	 */
	VMCLOCK_RESEED_GAP_MS = 50,
	/* Each uevent makes udev run its rules: at most one a second. */
	VMCLOCK_UEVENT_GAP_MS = MSEC_PER_SEC,
	/* With notifications, one cheap read a second all the same. */
	VMCLOCK_BACKSTOP_MS = MSEC_PER_SEC,
	VMCLOCK_POLL_MIN_MS = 10,
	VMCLOCK_POLL_MAX_MS = 60 * MSEC_PER_SEC,
	/* Documentation/admin-guide/devices.txt: char 1:9 is /dev/urandom. */
	VMCLOCK_URANDOM_MINOR = 9,
};

/* A field is there only if size covers it: the structure grows at its end. */
#define VMCLOCK_HAS(clk, field) \
	(le32_to_cpu((clk)->size) >= offsetofend(struct vmclock_abi, field))

struct vmclock_gen {
	struct device *dev;		/* ours: sysfs, uevents, /dev/vmclock0 */
	struct device *owner;		/* the vmclock device, that others bind */
	struct acpi_device *adev;
	const struct vmclock_abi *clk;
	struct resource res;
	size_t len;			/* of clk that size and res cover */
	bool notify;			/* mode, from the flags at probe */

	/* How this kernel reseeds: see "Where kernels differ". */
	bool sync;
	void (*add_vmfork)(const void *buf, size_t len);
	struct file *urandom;

	struct delayed_work work;	/* every check runs here */
	unsigned long next_check;	/* jiffies: no check before */
	wait_queue_head_t wait;		/* /dev/vmclock0 pollers */

	/* Written under lock, read by sysfs: whole even on 32-bit. */
	atomic64_t generation, restores;

	/* Under lock: the check's state, and the device's. */
	struct mutex lock;
	unsigned long next_uevent;	/* jiffies: VMCLOCK_UEVENT_GAP_MS */
	bool uevent_due, stuck, failed;
	bool offered, gone;
	struct miscdevice misc;
};

static unsigned int poll_interval_ms = 100;

static int poll_interval_set(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, VMCLOCK_POLL_MIN_MS,
				     VMCLOCK_POLL_MAX_MS);
}

static const struct kernel_param_ops poll_interval_ops = {
	.set = poll_interval_set,
	.get = param_get_uint,
};

/*
 * A poll is one read of a cache line the hypervisor rarely writes, so the
 * cost is the wakeup: ten a second bound how long an unpatched kernel
 * serves a restored clone's old key to one tick no person would notice.
 */
module_param_cb(poll_interval_ms, &poll_interval_ops, &poll_interval_ms, 0444);
MODULE_PARM_DESC(poll_interval_ms,
		 "Poll interval without notifications, 10..60000 ms (default 100)");

/* Checks, and the creation of our device, run one at a time. */
static struct workqueue_struct *vmclock_gen_wq;

/*
 * Where kernels differ, in one place.
 *
 * - With random.c.patch (CONFIG_RANDOM_VMGEN), random.c reads the counter
 *   before every output and keys the crng anew itself; the driver registers
 *   it, and calls random_vmgen_notify() for the vmfork chain.
 * - Otherwise add_vmfork_randomness() reseeds and runs the chain, where it
 *   is exported: only with CONFIG_VMGENID=m, up to at least 7.3. It is
 *   looked up at run time, so that one module binary loads either way.
 * - Otherwise, as on Debian's 6.1, 6.12 and 7.x, the RNDRESEEDCRNG ioctl
 *   of /dev/urandom reseeds, and nothing can run the vmfork chain.
 * - From 6.11 the vDSO's getrandom() keeps state in userspace, renewed when
 *   the crng's generation moves, which every reseed above does. With the
 *   6.12 series the vDSO reads the counter itself.
 * - From 6.13, ptp_vmclock and vmclock-abi.h are upstream; the driver never
 *   binds the device, so it is the same beside it or alone. From 7.0
 *   ptp_vmclock reads the counter too, and wakes its readers on a change,
 *   but reseeds nothing.
 * - 7.3 no longer declares vfs_ioctl(), so the ioctl is called through
 *   f_op, and warns on system_wq, so the driver has a workqueue of its own.
 * - Before 6.12, misc_deregister() leaves a dynamic minor behind, and from
 *   6.3 vm_flags is written through helpers; vmclock_gen_offer() and
 *   vmclock_gen_misc_mmap() need neither difference.
 */

/*
 * Whether the page is the hypervisor's alone, whole and page-aligned: only
 * such a page is offered as /dev/vmclock0 and handed to the vDSO.
 */
static bool vmclock_gen_whole_page(const struct vmclock_gen *vg)
{
	return PAGE_ALIGNED(vg->res.start) && resource_size(&vg->res) >= PAGE_SIZE &&
	       le32_to_cpu(vg->clk->size) >= PAGE_SIZE;
}

#if IS_ENABLED(CONFIG_RANDOM_VMGEN)
static void vmclock_gen_unregister_sync(void *unused)
{
	random_unregister_vmgen();
}

/* random.c reads the counter itself, and reseeds as it registers it. */
static int vmclock_gen_register_sync(struct vmclock_gen *vg)
{
	int ret = random_register_vmgen(&vg->clk->vm_generation_counter, vg->clk, vg->len,
					vmclock_gen_whole_page(vg) ? vg->res.start : 0);

	if (ret) {
		dev_err(vg->dev, "cannot register with random.c: %pe\n", ERR_PTR(ret));
		return ret;
	}
	vg->sync = true;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_unregister_sync, NULL);
}

static void vmclock_gen_sync_notify(void)
{
	random_vmgen_notify();
}
#else
static int vmclock_gen_register_sync(struct vmclock_gen *vg)
{
	return 0;
}

static void vmclock_gen_sync_notify(void)
{
}
#endif

#if IS_ENABLED(CONFIG_VMGENID)
static void vmclock_gen_put_vmfork(void *unused)
{
	symbol_put(add_vmfork_randomness);
}

static int vmclock_gen_get_vmfork(struct vmclock_gen *vg)
{
	vg->add_vmfork = symbol_get(add_vmfork_randomness);
	if (!vg->add_vmfork)
		return 0;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_put_vmfork, NULL);
}
#else
static int vmclock_gen_get_vmfork(struct vmclock_gen *vg)
{
	return 0;
}
#endif

/*
 * Without either, the strongest thing an unpatched kernel lets a module do
 * is what RNDRESEEDCRNG does for root: crng_reseed(), which extracts the
 * input pool (with our seed, RDSEED/RDRAND and the cycle counter) into a new
 * base key and moves the generation that every per-CPU and batched output
 * path checks. add_device_randomness() alone would wait for the next
 * scheduled reseed, up to a minute. The file is opened at probe, in the
 * loading process's mounts; the ioctl runs with the kernel's credentials,
 * from the driver's work.
 */
static void vmclock_gen_close_urandom(void *filp)
{
	filp_close(filp, NULL);
}

static int vmclock_gen_open_urandom(struct vmclock_gen *vg)
{
	struct file *filp = filp_open("/dev/urandom", O_RDONLY, 0);
	struct inode *inode;

	if (IS_ERR(filp)) {
		dev_err(vg->dev, "cannot open /dev/urandom to reseed: %pe\n", filp);
		return PTR_ERR(filp);
	}
	inode = file_inode(filp);
	if (!S_ISCHR(inode->i_mode) || imajor(inode) != MEM_MAJOR ||
	    iminor(inode) != VMCLOCK_URANDOM_MINOR || !filp->f_op->unlocked_ioctl) {
		dev_err(vg->dev, "/dev/urandom is not the random device\n");
		filp_close(filp, NULL);
		return -ENODEV;
	}
	vg->urandom = filp;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_close_urandom, filp);
}

/* How this kernel reseeds: see "Where kernels differ" above. */
static int vmclock_gen_pick_reseed(struct vmclock_gen *vg)
{
	int ret = vmclock_gen_register_sync(vg);

	if (ret || vg->sync)
		return ret;
	ret = vmclock_gen_get_vmfork(vg);
	if (ret || vg->add_vmfork)
		return ret;
	return vmclock_gen_open_urandom(vg);
}

static int vmclock_gen_reseed(struct vmclock_gen *vg,
			      const struct vmclock_abi *snap)
{
	/*
	 * Every clone of one snapshot may see the same counter (Firecracker
	 * increments it), so the counter alone separates nothing. The cycle
	 * counter and the wall clock differ between clones only by how each
	 * resumed; the rest of the page carries whatever the hypervisor writes
	 * for each restore. Unless the CPU has an RNG for crng_reseed() to
	 * draw on, that is all that tells clones apart.
	 */
	struct {
		unsigned long cycles;
		u64 real_ns;
		struct vmclock_abi page;
	} seed = { .cycles = random_get_entropy(), .real_ns = ktime_get_real_ns(),
		   .page = *snap };
	int ret = 0;

	if (vg->add_vmfork) {
		vg->add_vmfork(&seed, sizeof(seed));
	} else {
		add_device_randomness(&seed, sizeof(seed));
		if (vg->sync)
			vmclock_gen_sync_notify();
		else
			ret = vg->urandom->f_op->unlocked_ioctl(vg->urandom,
								 RNDRESEEDCRNG, 0);
	}
	memzero_explicit(&seed, sizeof(seed));
	return ret;
}

/**
 * vmclock_gen_read() - Copy part of the vmclock page under its seq_count.
 * @vg: driver state
 * @dst: where to put the copy
 * @off: where in the page to start
 * @len: how many bytes to copy
 * @wait_ms: how long the hypervisor may hold seq_count odd
 *
 * The hypervisor holds seq_count odd while it updates the page. Retry until
 * a copy is bracketed by two equal, even reads of seq_count, but only for
 * @wait_ms: a hypervisor that stops halfway must not hang the guest.
 *
 * Context: Process context.
 * Return: the even seq_count the copy is consistent with, or -ETIMEDOUT.
 */
static s64 vmclock_gen_read(const struct vmclock_gen *vg, void *dst, size_t off,
			    size_t len, unsigned int wait_ms)
{
	ktime_t deadline = ktime_add_ms(ktime_get(), wait_ms);
	const struct vmclock_abi *clk = vg->clk;
	u32 seq;

	for (;;) {
		/* An odd value never matches the second read below. */
		seq = le32_to_cpu(READ_ONCE(clk->seq_count)) & ~1U;
		/* Pairs with the hypervisor's fence after it makes seq odd. */
		virt_rmb();
		memcpy(dst, (const u8 *)clk + off, len);
		/* Pairs with its fence before seq becomes even again. */
		virt_rmb();
		if (seq == le32_to_cpu(READ_ONCE(clk->seq_count)))
			return seq;
		if (ktime_after(ktime_get(), deadline))
			return -ETIMEDOUT;
		cpu_relax();
	}
}

static void vmclock_gen_uevent(struct vmclock_gen *vg)
{
	char genvar[sizeof("VMCLOCK_GENERATION=18446744073709551615")];
	/* The variable vmgenid sent in 6.8, our counter, the terminator. */
	char *envp[3] = { "NEW_VMGENID=1", genvar, NULL };

	snprintf(genvar, sizeof(genvar), "VMCLOCK_GENERATION=%llu",
		 (u64)atomic64_read(&vg->generation));
	kobject_uevent_env(&vg->dev->kobj, KOBJ_CHANGE, envp);
	vg->uevent_due = false;
	vg->next_uevent = jiffies + msecs_to_jiffies(VMCLOCK_UEVENT_GAP_MS);
}

/*
 * Jiffies until @next, but never more than @gap_ms: after a long quiet
 * spell a wrapped jiffies would otherwise turn a short wait into weeks.
 */
static unsigned long vmclock_gen_until(unsigned long next, unsigned int gap_ms)
{
	unsigned long now = jiffies;

	if (!time_before(now, next))
		return 0;
	return min(next - now, msecs_to_jiffies(gap_ms));
}

/* Jiffies until the next check may run, whatever wakes it. */
static unsigned long vmclock_gen_wait(struct vmclock_gen *vg)
{
	return vmclock_gen_until(READ_ONCE(vg->next_check),
				 max_t(unsigned int, READ_ONCE(poll_interval_ms),
				       VMCLOCK_RESEED_GAP_MS));
}

/* No check for @ms: a kick waits too, so a storm cannot hurry a retry. */
static unsigned long vmclock_gen_defer(struct vmclock_gen *vg, unsigned int ms)
{
	unsigned long delay = msecs_to_jiffies(ms);

	WRITE_ONCE(vg->next_check, jiffies + delay);
	return delay;
}

/*
 * Called with lock held. One change of the counter gives one reseed, then
 * one uevent, however many notifications and polls see it; a value the crng
 * could not be reseeded for is not adopted, and the next check tries again.
 * Returns the jiffies until the next check.
 */
static unsigned long vmclock_gen_check(struct vmclock_gen *vg)
{
	unsigned int poll_ms = READ_ONCE(poll_interval_ms);
	unsigned long next = msecs_to_jiffies(vg->notify ? VMCLOCK_BACKSTOP_MS : poll_ms);
	unsigned long wait = vmclock_gen_wait(vg);
	struct vmclock_abi snap = { };
	u64 generation;
	bool changed;
	int ret;

	if (wait)
		return wait;
	if (vmclock_gen_read(vg, &snap, 0, vg->len, VMCLOCK_CHECK_WAIT_MS) < 0) {
		if (!vg->stuck)
			dev_warn(vg->dev, "seq_count stays odd; retrying every %u ms\n", poll_ms);
		vg->stuck = true;
		return vmclock_gen_defer(vg, poll_ms);
	}
	if (vg->stuck)
		dev_info(vg->dev, "seq_count is even again\n");
	vg->stuck = false;

	generation = le64_to_cpu(snap.vm_generation_counter);
	changed = generation != atomic64_read(&vg->generation);
	/* failed: a change, or the probe, still waits for its reseed. */
	if (changed || vg->failed) {
		vmclock_gen_defer(vg, VMCLOCK_RESEED_GAP_MS);
		ret = vmclock_gen_reseed(vg, &snap);
		if (ret) {
			if (!vg->failed)
				dev_warn(vg->dev, "VM generation %llu: crng not reseeded (%pe); retrying every %u ms\n",
					 generation, ERR_PTR(ret), poll_ms);
			vg->failed = true;
			return vmclock_gen_defer(vg, poll_ms);
		}
		vg->failed = false;
	}
	if (changed) {
		atomic64_set(&vg->generation, generation);
		atomic64_inc(&vg->restores);
		vg->uevent_due = true;
		dev_info_ratelimited(vg->dev, "VM generation %llu: crng reseeded\n",
				     generation);
		sysfs_notify(&vg->dev->kobj, NULL, "generation");
	}
	if (vg->uevent_due) {
		wait = vmclock_gen_until(vg->next_uevent, VMCLOCK_UEVENT_GAP_MS);
		if (!wait)
			vmclock_gen_uevent(vg);
		else
			next = min(next, wait);
	}
	return next;
}

/*
 * Every check runs here: after a notification, every poll interval without
 * notifications, and once a second with them, so that a notification the
 * hypervisor fails to send does not leave a restore unnoticed.
 */
static void vmclock_gen_work(struct work_struct *work)
{
	struct vmclock_gen *vg = container_of(to_delayed_work(work),
					      struct vmclock_gen, work);
	unsigned long next = 0;

	mutex_lock(&vg->lock);
	if (!vg->gone)
		next = vmclock_gen_check(vg);
	mutex_unlock(&vg->lock);
	if (next)
		queue_delayed_work(vmclock_gen_wq, &vg->work, next);
}

/* Check now, or once the last check's wait is over. */
static void vmclock_gen_kick(struct vmclock_gen *vg)
{
	mod_delayed_work(vmclock_gen_wq, &vg->work, vmclock_gen_wait(vg));
}

/*
 * ACPI calls this from its notify workqueue, and every other handler on the
 * device with it (ptp_vmclock's too), so it only passes the news on.
 */
static void vmclock_gen_notify(acpi_handle handle, u32 event, void *data)
{
	struct vmclock_gen *vg = data;

	wake_up_interruptible(&vg->wait);
	vmclock_gen_kick(vg);
}

/* Returns once no call of the handler is running or queued. */
static void vmclock_gen_unlisten(void *data)
{
	struct vmclock_gen *vg = data;

	mutex_lock(&vg->lock);
	if (vg->notify && !vg->gone)
		acpi_remove_notify_handler(vg->adev->handle, ACPI_DEVICE_NOTIFY,
					   vmclock_gen_notify);
	mutex_unlock(&vg->lock);
}

static int vmclock_gen_listen(struct vmclock_gen *vg)
{
	acpi_status status;

	status = acpi_install_notify_handler(vg->adev->handle, ACPI_DEVICE_NOTIFY,
					     vmclock_gen_notify, vg);
	if (ACPI_FAILURE(status)) {
		dev_err(vg->dev, "cannot install notify handler: %s\n",
			acpi_format_exception(status));
		return -ENODEV;
	}
	return devm_add_action_or_reset(vg->dev, vmclock_gen_unlisten, vg);
}

static void vmclock_gen_stop_work(void *data)
{
	struct vmclock_gen *vg = data;

	cancel_delayed_work_sync(&vg->work);
}

/*
 * /dev/vmclock0, for vmclock's own userspace readers (AWS-LC's snapshot
 * detector, for one), as ptp_vmclock offers it: read() a consistent copy
 * under seq_count, mmap() the page read-only, poll() for a change of
 * seq_count since this file last read, or POLLHUP if the hypervisor does
 * not notify or the device is gone. Offered only while no driver is bound
 * to the vmclock device, and withdrawn when one binds, before its probe
 * registers its own.
 */
struct vmclock_gen_file {
	struct vmclock_gen *vg;
	atomic_t seq;			/* seq_count as this file last read it */
};

static ssize_t vmclock_gen_misc_read(struct file *fp, char __user *buf,
				     size_t count, loff_t *ppos)
{
	struct vmclock_gen_file *fst = fp->private_data;
	void *copy;
	s64 seq;

	if (READ_ONCE(fst->vg->gone))
		return -ENODEV;
	if (*ppos >= PAGE_SIZE)
		return 0;
	count = min_t(size_t, count, PAGE_SIZE - *ppos);
	copy = kmalloc(count, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	seq = vmclock_gen_read(fst->vg, copy, *ppos, count, VMCLOCK_READ_WAIT_MS);
	if (seq >= 0 && copy_to_user(buf, copy, count))
		seq = -EFAULT;
	kfree(copy);
	if (seq < 0)
		return seq;
	atomic_set(&fst->seq, seq);
	*ppos += count;
	return count;
}

static __poll_t vmclock_gen_misc_poll(struct file *fp, poll_table *wait)
{
	struct vmclock_gen_file *fst = fp->private_data;
	const struct vmclock_abi *clk = fst->vg->clk;

	/* Queued first: detaching sets gone, then wakes the queue. */
	poll_wait(fp, &fst->vg->wait, wait);
	if (READ_ONCE(fst->vg->gone))
		return EPOLLHUP | EPOLLERR;
	/* No notification will ever come: say so rather than sleep. */
	if (!(le64_to_cpu(READ_ONCE(clk->flags)) & VMCLOCK_FLAG_NOTIFICATION_PRESENT))
		return EPOLLHUP;
	if (atomic_read(&fst->seq) != le32_to_cpu(READ_ONCE(clk->seq_count)))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

/* The hypervisor's page: mprotect() must not make it writable either. */
static int vmclock_gen_mprotect(struct vm_area_struct *vma, unsigned long start,
				unsigned long end, unsigned long newflags)
{
	return newflags & VM_WRITE ? -EACCES : 0;
}

static const struct vm_operations_struct vmclock_gen_vm_ops = {
	.mprotect = vmclock_gen_mprotect,
};

static int vmclock_gen_misc_mmap(struct file *fp, struct vm_area_struct *vma)
{
	struct vmclock_gen_file *fst = fp->private_data;

	if (READ_ONCE(fst->vg->gone))
		return -ENODEV;
	if ((vma->vm_flags & (VM_READ | VM_WRITE)) != VM_READ)
		return -EROFS;
	if (vma->vm_end - vma->vm_start != PAGE_SIZE || vma->vm_pgoff)
		return -EINVAL;
	vma->vm_ops = &vmclock_gen_vm_ops;
	/* io_remap_pfn_range() maps it decrypted, as memremap() did. */
	return io_remap_pfn_range(vma, vma->vm_start, PHYS_PFN(fst->vg->res.start),
				  PAGE_SIZE, vma->vm_page_prot) ? -EAGAIN : 0;
}

static int vmclock_gen_misc_open(struct inode *inode, struct file *fp)
{
	struct vmclock_gen *vg = container_of(fp->private_data,
					      struct vmclock_gen, misc);
	struct vmclock_gen_file *fst = kzalloc(sizeof(*fst), GFP_KERNEL);

	if (!fst)
		return -ENOMEM;
	fst->vg = vg;
	fp->private_data = fst;
	return 0;
}

static int vmclock_gen_misc_release(struct inode *inode, struct file *fp)
{
	kfree(fp->private_data);
	return 0;
}

static const struct file_operations vmclock_gen_misc_fops = {
	.owner = THIS_MODULE,
	.open = vmclock_gen_misc_open,
	.release = vmclock_gen_misc_release,
	.read = vmclock_gen_misc_read,
	.poll = vmclock_gen_misc_poll,
	.mmap = vmclock_gen_misc_mmap,
};

/* Offer /dev/vmclock0 or withdraw it; called with lock held. */
static void vmclock_gen_offer(struct vmclock_gen *vg, bool offer)
{
	int ret;

	if (offer == vg->offered || (offer && (vg->gone || !vg->misc.fops)))
		return;
	if (!offer) {
		misc_deregister(&vg->misc);
		vg->offered = false;
		return;
	}
	/* A minor kept from an earlier offer is no longer reserved for us. */
	vg->misc.minor = MISC_DYNAMIC_MINOR;
	ret = misc_register(&vg->misc);
	if (ret)
		dev_warn(vg->dev, "cannot offer /dev/vmclock0: %pe\n", ERR_PTR(ret));
	vg->offered = !ret;
}

/*
 * The bus notifier (below) acts on the device vmclock_gen_current names.
 * Drivers bind the vmclock device under its device lock and report it to
 * the notifier before their probe runs, so the lock order is: the owner's
 * device lock, vmclock_gen_current_lock, then a driver's own lock.
 */
static struct vmclock_gen *vmclock_gen_current;
static DEFINE_MUTEX(vmclock_gen_current_lock);

static void vmclock_gen_unpublish(void *data)
{
	struct vmclock_gen *vg = data;

	mutex_lock(&vmclock_gen_current_lock);
	vmclock_gen_current = NULL;
	mutex_unlock(&vmclock_gen_current_lock);
	mutex_lock(&vg->lock);
	vmclock_gen_offer(vg, false);
	mutex_unlock(&vg->lock);
}

/*
 * Make the device known to the notifier, and offer /dev/vmclock0 unless
 * the vmclock device has a driver, which then offers /dev/vmclockN: the
 * owner's device lock keeps a driver from binding between the two.
 */
static int vmclock_gen_publish(struct vmclock_gen *vg)
{
	int ret = devm_add_action_or_reset(vg->dev, vmclock_gen_unpublish, vg);

	if (ret)
		return ret;
	/* mmap() hands out whole pages. */
	if (vmclock_gen_whole_page(vg)) {
		vg->misc.name = "vmclock0";
		vg->misc.parent = vg->dev;
		vg->misc.fops = &vmclock_gen_misc_fops;
	}
	device_lock(vg->owner);
	mutex_lock(&vmclock_gen_current_lock);
	vmclock_gen_current = vg;
	mutex_lock(&vg->lock);
	if (vg->owner->driver)
		dev_info(vg->dev, "%s is bound to %s, which offers /dev/vmclockN\n",
			 dev_name(vg->owner), vg->owner->driver->name);
	else
		vmclock_gen_offer(vg, true);
	mutex_unlock(&vg->lock);
	mutex_unlock(&vmclock_gen_current_lock);
	device_unlock(vg->owner);
	return 0;
}

static void vmclock_gen_put_adev(void *adev)
{
	acpi_dev_put(adev);
}

static void vmclock_gen_put_owner(void *owner)
{
	put_device(owner);
}

/*
 * _CRS holds exactly one memory range, the page, which ACPI enumeration
 * made the vmclock device's resource.
 */
static int vmclock_gen_resource(struct vmclock_gen *vg)
{
	struct platform_device *owner = to_platform_device(vg->owner);
	struct resource *res = platform_get_resource(owner, IORESOURCE_MEM, 0);

	if (!res || platform_get_resource(owner, IORESOURCE_MEM, 1)) {
		dev_err(vg->dev, "%s: expected one memory range\n", dev_name(vg->owner));
		return -ENODEV;
	}
	vg->res = *res;
	if (resource_size(res) < offsetofend(struct vmclock_abi, flags)) {
		dev_err(vg->dev, "%pR is too small for a vmclock\n", res);
		return -ENODEV;
	}
	return 0;
}

/*
 * Check what firmware and the hypervisor handed us before trusting any of
 * it. The constant fields are read once; flags is taken from a consistent
 * copy, as it may change under seq_count. A page without the counter is a
 * clock for ptp_vmclock, not a device for this driver.
 */
static int vmclock_gen_validate(struct vmclock_gen *vg, struct vmclock_abi *snap)
{
	const struct vmclock_abi *clk = vg->clk;
	u32 magic = le32_to_cpu(READ_ONCE(clk->magic));
	u32 size = le32_to_cpu(READ_ONCE(clk->size));
	u16 version = le16_to_cpu(READ_ONCE(clk->version));
	struct device *dev = vg->dev;

	if (magic != VMCLOCK_MAGIC) {
		dev_err(dev, "bad magic %#010x (expected %#010x)\n", magic, VMCLOCK_MAGIC);
		return -ENODEV;
	}
	if (version != VMCLOCK_ABI_VERSION) {
		dev_err(dev, "unsupported version %u (expected %u)\n",
			version, VMCLOCK_ABI_VERSION);
		return -ENODEV;
	}
	if (size > resource_size(&vg->res)) {
		dev_err(dev, "size %u exceeds the %llu-byte resource\n",
			size, (unsigned long long)resource_size(&vg->res));
		return -ENODEV;
	}
	if (!VMCLOCK_HAS(clk, flags)) {
		dev_err(dev, "size %u does not cover the flags\n", size);
		return -ENODEV;
	}
	vg->len = min_t(size_t, size, sizeof(*snap));
	if (vmclock_gen_read(vg, snap, 0, vg->len, VMCLOCK_CHECK_WAIT_MS) < 0) {
		dev_err(dev, "seq_count stayed odd for %d ms at probe\n",
			VMCLOCK_CHECK_WAIT_MS);
		return -ENODEV;
	}
	if (!VMCLOCK_HAS(clk, vm_generation_counter) ||
	    !(le64_to_cpu(snap->flags) & VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT)) {
		dev_info(dev, "no VM generation counter (flags %#llx, size %u): nothing to watch\n",
			 le64_to_cpu(snap->flags), size);
		return -ENODEV;
	}
	return 0;
}

/* The vmclock device our device was created for, and its page. */
static int vmclock_gen_map(struct vmclock_gen *vg, struct vmclock_abi *snap)
{
	struct device *owner = *(struct device **)dev_get_platdata(vg->dev);
	void *clk;
	int ret;

	vg->owner = get_device(owner);
	ret = devm_add_action_or_reset(vg->dev, vmclock_gen_put_owner, owner);
	if (ret)
		return ret;
	vg->adev = acpi_dev_get(ACPI_COMPANION(owner));
	if (!vg->adev)
		return -ENODEV;
	ret = devm_add_action_or_reset(vg->dev, vmclock_gen_put_adev, vg->adev);
	if (!ret)
		ret = vmclock_gen_resource(vg);
	if (ret)
		return ret;
	/*
	 * Shared with the hypervisor: decrypted on SEV and TDX guests. Not
	 * requested: ptp_vmclock maps the same page.
	 */
	clk = devm_memremap(vg->dev, vg->res.start, resource_size(&vg->res),
			    MEMREMAP_WB | MEMREMAP_DEC);
	if (IS_ERR(clk)) {
		dev_err(vg->dev, "cannot map %pR: %pe\n", &vg->res, clk);
		return PTR_ERR(clk);
	}
	vg->clk = clk;
	return vmclock_gen_validate(vg, snap);
}

/* Whether crng_reseed() has a CPU RNG (RDSEED, RDRAND, ...) to draw on. */
static bool vmclock_gen_cpu_rng(void)
{
	unsigned long v;

	return arch_get_random_seed_longs(&v, 1) || arch_get_random_longs(&v, 1);
}

static int vmclock_gen_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct vmclock_abi snap = { };
	struct vmclock_gen *vg;
	int ret;

	vg = devm_kzalloc(dev, sizeof(*vg), GFP_KERNEL);
	if (!vg)
		return -ENOMEM;
	vg->dev = dev;
	mutex_init(&vg->lock);
	init_waitqueue_head(&vg->wait);
	INIT_DELAYED_WORK(&vg->work, vmclock_gen_work);
	/* Neither gap applies yet; 0 is not "long ago" while jiffies wraps. */
	vg->next_check = jiffies;
	vg->next_uevent = jiffies;
	platform_set_drvdata(pdev, vg);

	ret = vmclock_gen_map(vg, &snap);
	if (ret)
		return ret;
	atomic64_set(&vg->generation, le64_to_cpu(snap.vm_generation_counter));
	vg->notify = le64_to_cpu(snap.flags) & VMCLOCK_FLAG_NOTIFICATION_PRESENT;
	ret = vmclock_gen_pick_reseed(vg);
	if (ret)
		return ret;
	/*
	 * The VM may have been restored before the driver loaded, which the
	 * counter cannot tell from a boot: reseed, so that no output from
	 * here on comes from a key a snapshot held. Nothing is announced.
	 * ENODATA: the crng is not ready yet, so no key to replace either.
	 */
	ret = vmclock_gen_reseed(vg, &snap);
	vg->failed = ret && ret != -ENODATA;
	if (vg->failed)
		dev_warn(dev, "crng not reseeded at probe (%pe); retrying every %u ms\n",
			 ERR_PTR(ret), poll_interval_ms);

	ret = devm_add_action_or_reset(dev, vmclock_gen_stop_work, vg);
	if (!ret && vg->notify)
		ret = vmclock_gen_listen(vg);
	if (!ret)
		ret = vmclock_gen_publish(vg);
	if (ret)
		return ret;
	/* Catch a change that came before the handler was in place. */
	vmclock_gen_kick(vg);

	if (!vmclock_gen_cpu_rng())
		dev_warn(dev, "no CPU RNG: clones of one snapshot are told apart only by the cycle counter at each reseed and what the hypervisor writes for each restore\n");
	dev_info(dev, "%s: VM generation %llu, %s mode, reseed via %s\n",
		 dev_name(vg->owner), (u64)atomic64_read(&vg->generation),
		 vg->notify ? "notify" : "poll",
		 vg->sync ? "random.c generation check" :
		 vg->add_vmfork ? "add_vmfork_randomness" :
		 "RNDRESEEDCRNG; the vmfork notifier chain (WireGuard) is not run on this kernel");
	return 0;
}

static int vmclock_gen_resume(struct device *dev)
{
	vmclock_gen_kick(dev_get_drvdata(dev));
	return 0;
}

static DEFINE_SIMPLE_DEV_PM_OPS(vmclock_gen_pm, NULL, vmclock_gen_resume);

static ssize_t generation_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct vmclock_gen *vg = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%llu\n", (u64)atomic64_read(&vg->generation));
}
static DEVICE_ATTR_RO(generation);

static ssize_t restores_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	struct vmclock_gen *vg = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%llu\n", (u64)atomic64_read(&vg->restores));
}
static DEVICE_ATTR_RO(restores);

static ssize_t mode_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct vmclock_gen *vg = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%s\n", vg->notify ? "notify" : "poll");
}
static DEVICE_ATTR_RO(mode);

static struct attribute *vmclock_gen_attrs[] = {
	&dev_attr_generation.attr,
	&dev_attr_restores.attr,
	&dev_attr_mode.attr,
	NULL
};
ATTRIBUTE_GROUPS(vmclock_gen);

/*
 * For our own device, not the vmclock device: the IDs below only make udev
 * load this module when the vmclock device appears, ptp_vmclock with it.
 */
static struct platform_driver vmclock_gen_driver = {
	.probe = vmclock_gen_probe,
	.driver = {
		.name = KBUILD_MODNAME,
		.dev_groups = vmclock_gen_groups,
		.pm = pm_sleep_ptr(&vmclock_gen_pm),
		.suppress_bind_attrs = true,
		/* vmclock_gen_scan() reads the probe's verdict. */
		.probe_type = PROBE_FORCE_SYNCHRONOUS,
	},
};

static const struct acpi_device_id vmclock_gen_acpi_ids[] = {
	{ "AMZNC10C", 0 },	/* Firecracker's _HID */
	{ "VMCLOCK", 0 },	/* the _CID for every vmclock */
	{ }
};
MODULE_DEVICE_TABLE(acpi, vmclock_gen_acpi_ids);

static struct platform_device *vmclock_gen_pdev;
static DEFINE_MUTEX(vmclock_gen_lock);	/* vmclock_gen_pdev */

static int vmclock_gen_match(struct device *dev, const void *unused)
{
	struct acpi_device *adev = ACPI_COMPANION(dev);

	return adev && !acpi_match_device_ids(adev, vmclock_gen_acpi_ids);
}

/*
 * Watch the first vmclock device there is, once: at load, or when one
 * appears later (an SSDT loaded at run time, a _DEP met late). Returns the
 * probe's verdict on it, or 0 if there is none yet.
 */
static int vmclock_gen_scan(void)
{
	struct platform_device *pdev;
	struct device *owner;
	int ret = 0;

	mutex_lock(&vmclock_gen_lock);
	if (vmclock_gen_pdev)
		goto out;
	owner = bus_find_device(&platform_bus_type, NULL, NULL, vmclock_gen_match);
	if (!owner)
		goto out;
	pdev = platform_device_register_data(NULL, KBUILD_MODNAME, PLATFORM_DEVID_NONE,
					     &owner, sizeof(owner));
	put_device(owner);
	if (IS_ERR(pdev)) {
		ret = PTR_ERR(pdev);
	} else if (!platform_get_drvdata(pdev)) {
		/* The probe said why. */
		platform_device_unregister(pdev);
		ret = -ENODEV;
	} else {
		vmclock_gen_pdev = pdev;
	}
out:
	mutex_unlock(&vmclock_gen_lock);
	return ret;
}

static void vmclock_gen_scan_work(struct work_struct *work)
{
	vmclock_gen_scan();
}

static DECLARE_WORK(vmclock_gen_scan_later, vmclock_gen_scan_work);

/*
 * The vmclock device is going away: stop touching its page and its handle
 * now. Our device stays, with the last generation, until the module goes.
 */
static void vmclock_gen_detach(struct vmclock_gen *vg)
{
	vmclock_gen_unlisten(vg);
	mutex_lock(&vg->lock);
	vmclock_gen_offer(vg, false);
	/* Files still open read ENODEV from now on; pollers hear POLLHUP. */
	WRITE_ONCE(vg->gone, true);
	mutex_unlock(&vg->lock);
	wake_up_interruptible(&vg->wait);
	cancel_delayed_work_sync(&vg->work);
	dev_warn(vg->dev, "%s is gone: no longer watching it\n", dev_name(vg->owner));
}

/*
 * Drivers bind the vmclock device under its device lock, and report it here
 * before their probe runs: /dev/vmclock0 is left to them until they unbind.
 */
static int vmclock_gen_bus_event(struct notifier_block *nb, unsigned long action,
				 void *data)
{
	struct device *dev = data;
	struct vmclock_gen *vg;

	if (action == BUS_NOTIFY_ADD_DEVICE) {
		if (vmclock_gen_match(dev, NULL))
			queue_work(vmclock_gen_wq, &vmclock_gen_scan_later);
		return NOTIFY_DONE;
	}
	mutex_lock(&vmclock_gen_current_lock);
	vg = vmclock_gen_current;
	if (vg && dev == vg->owner) {
		if (action == BUS_NOTIFY_DEL_DEVICE) {
			vmclock_gen_detach(vg);
		} else if (action == BUS_NOTIFY_BIND_DRIVER) {
			mutex_lock(&vg->lock);
			if (vg->offered)
				dev_info(vg->dev, "%s has a driver: /dev/vmclock0 is left to it\n",
					 dev_name(dev));
			vmclock_gen_offer(vg, false);
			mutex_unlock(&vg->lock);
		} else if (action == BUS_NOTIFY_UNBOUND_DRIVER ||
			   action == BUS_NOTIFY_DRIVER_NOT_BOUND) {
			mutex_lock(&vg->lock);
			vmclock_gen_offer(vg, true);
			mutex_unlock(&vg->lock);
		}
	}
	mutex_unlock(&vmclock_gen_current_lock);
	return NOTIFY_DONE;
}

static struct notifier_block vmclock_gen_nb = {
	.notifier_call = vmclock_gen_bus_event,
};

static void vmclock_gen_teardown(void)
{
	bus_unregister_notifier(&platform_bus_type, &vmclock_gen_nb);
	flush_work(&vmclock_gen_scan_later);
	platform_device_unregister(vmclock_gen_pdev);	/* NULL is fine */
	vmclock_gen_pdev = NULL;
	platform_driver_unregister(&vmclock_gen_driver);
	destroy_workqueue(vmclock_gen_wq);
}

static int __init vmclock_gen_init(void)
{
	int ret;

	vmclock_gen_wq = alloc_ordered_workqueue(KBUILD_MODNAME, 0);
	if (!vmclock_gen_wq)
		return -ENOMEM;
	ret = platform_driver_register(&vmclock_gen_driver);
	if (ret) {
		destroy_workqueue(vmclock_gen_wq);
		return ret;
	}
	/* Before the scan: a device that appears meanwhile is not missed. */
	ret = bus_register_notifier(&platform_bus_type, &vmclock_gen_nb);
	if (!ret)
		ret = vmclock_gen_scan();
	if (ret)
		vmclock_gen_teardown();
	return ret;
}
module_init(vmclock_gen_init);

static void __exit vmclock_gen_exit(void)
{
	vmclock_gen_teardown();
}
module_exit(vmclock_gen_exit);

MODULE_DESCRIPTION("Reseed the RNG when the vmclock VM generation counter changes");
MODULE_LICENSE("GPL");
