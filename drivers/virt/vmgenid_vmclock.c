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
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/ktime.h>
#include <linux/major.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/pm.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/security.h>
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
	 * How long a hypervisor may leave seq_count odd before a check gives
	 * up for now: its updates take microseconds, and the check spins.
	 * Readers of /dev/vmclock0 wait as long as ptp_vmclock lets them.
	 */
	VMCLOCK_SEQ_TIMEOUT_MS = 10,
	VMCLOCK_READ_TIMEOUT_MS = 100,
	/*
	 * After acting on a change, the next notification is acted on no
	 * sooner than this: a hypervisor that flaps the counter or rings
	 * nonstop gets at most 1000 / VMCLOCK_RESEED_GAP_MS reseeds a second,
	 * and the last change is still caught.
	 */
	VMCLOCK_RESEED_GAP_MS = 50,
	/*
	 * Each uevent wakes udev and whatever its rules run, so a flapping
	 * counter must not send one per reseed: after a uevent, the next waits
	 * this long and then carries the newest generation. A restored guest
	 * sees one change, so it still gets one uevent per restore.
	 */
	VMCLOCK_UEVENT_GAP_MS = MSEC_PER_SEC,
	/* Notify mode's safety net: one cheap read a second. */
	VMCLOCK_BACKSTOP_MS = MSEC_PER_SEC,
	/*
	 * More notifications than this in a second is a storm: stop listening
	 * and poll for VMCLOCK_STORM_HOLD_S seconds (vmclock_gen_watch_storm()).
	 */
	VMCLOCK_STORM_NOTIFIES = 100,
	VMCLOCK_STORM_HOLD_S = 10,
	VMCLOCK_POLL_MIN_MS = 10,
	VMCLOCK_POLL_MAX_MS = 60 * MSEC_PER_SEC,
	/* Documentation/admin-guide/devices.txt: char 1:9 is /dev/urandom. */
	VMCLOCK_URANDOM_MINOR = 9,
};

/* A field is there only if size covers it: the structure grows at its end. */
#define VMCLOCK_HAS(clk, field) \
	(le32_to_cpu((clk)->size) >= offsetofend(struct vmclock_abi, field))

struct vmclock_gen {
	struct device *dev;		/* our own device: sysfs, uevents */
	struct acpi_device *adev;	/* the vmclock device */
	struct device *owner;		/* its platform device, that others bind */
	const struct vmclock_abi *clk;
	struct resource res;
	size_t len;			/* of clk that size and res cover */
	bool notify;			/* the hypervisor notifies */

	/* How this kernel reseeds: see "Where kernels differ". */
	bool sync;
	void (*add_vmfork)(const void *buf, size_t len);
	struct file *urandom;

	struct delayed_work check_work;	/* polls, backstop, deferred checks */
	struct mutex check_lock;	/* the check, and what it reports */
	bool seq_stuck, reseed_failed;	/* said so already */
	unsigned long next_kick;	/* jiffies; see VMCLOCK_RESEED_GAP_MS */
	unsigned long next_uevent;	/* jiffies; see VMCLOCK_UEVENT_GAP_MS */
	bool uevent_pending;
	u64 generation, restores;	/* sysfs, READ_ONCE */

	struct mutex notify_lock;	/* the handler, and what a storm does */
	bool listening, stopped, arm_failed;
	atomic_t notifies;		/* in the current window */
	atomic_t received;		/* since probe, for debugfs */
	unsigned long window_start, storm_until;	/* jiffies */

	/* /dev/vmclock0, while no other driver offers it. */
	struct miscdevice misc;
	struct mutex misc_lock;		/* whether it is offered */
	bool misc_up, misc_dead;
	wait_queue_head_t disrupt_wait;
	struct notifier_block bus_nb;
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
 * cost is the wakeup, not the read. 100 ms bounds how long a restored clone
 * of an unpatched kernel can serve its siblings' random bytes to one tick a
 * human would not notice, at ten wakeups a second of an otherwise idle guest.
 */
module_param_cb(poll_interval_ms, &poll_interval_ops, &poll_interval_ms, 0444);
MODULE_PARM_DESC(poll_interval_ms,
		 "Poll interval without notifications, 10..60000 ms (default 100)");

/*
 * Where kernels differ, in one place.
 *
 * - With random.c.patch (CONFIG_RANDOM_VMGEN), random.c checks the counter
 *   before every output and reseeds itself; the driver registers it, with
 *   the value it read, and calls random_vmgen_notify() for the vmfork chain.
 * - Otherwise add_vmfork_randomness() reseeds and runs the chain, where it
 *   is exported: only with CONFIG_VMGENID=m, up to at least 6.12. It is
 *   looked up at run time, so that one module binary loads either way.
 * - Otherwise, as on Debian's 6.1 and 6.12, RNDRESEEDCRNG on /dev/urandom
 *   reseeds, and nothing can run the vmfork chain.
 * - From 6.11 the vDSO's getrandom() keeps state in userspace, renewed when
 *   the crng's generation moves, which every reseed above does. With the
 *   6.12 series the vDSO reads the counter itself, from the page whose
 *   physical address the driver registers.
 * - From 6.13, ptp_vmclock and vmclock-abi.h are upstream; the driver never
 *   binds the device, so it is the same beside it or alone.
 * - struct platform_driver's .remove returns int before 6.11 and void after:
 *   the driver has none, devm undoes everything.
 */
#if IS_ENABLED(CONFIG_RANDOM_VMGEN)
static void vmclock_gen_unregister_sync(void *unused)
{
	random_unregister_vmgen();
}

/* random.c starts from @seen: a restore since that read still reseeds. */
static int vmclock_gen_register_sync(struct vmclock_gen *vg, u64 seen)
{
	int ret = random_register_vmgen(&vg->clk->vm_generation_counter, seen,
					vg->clk, vg->res.start, vg->len);

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
static int vmclock_gen_register_sync(struct vmclock_gen *vg, u64 seen)
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
 * base key and bumps the generation every per-CPU and batched output path
 * checks. add_device_randomness() alone would wait for the next scheduled
 * reseed, up to a minute. /dev/urandom is opened at probe, in the loading
 * process and its mounts, not from the worker that reseeds; the ioctl goes
 * through the LSM hook as userspace's would.
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
	    iminor(inode) != VMCLOCK_URANDOM_MINOR) {
		dev_err(vg->dev, "/dev/urandom is not the random device\n");
		filp_close(filp, NULL);
		return -ENODEV;
	}
	vg->urandom = filp;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_close_urandom, filp);
}

static int vmclock_gen_force_reseed(struct vmclock_gen *vg)
{
	return security_file_ioctl(vg->urandom, RNDRESEEDCRNG, 0) ?:
	       vfs_ioctl(vg->urandom, RNDRESEEDCRNG, 0);
}

/**
 * vmclock_gen_read() - Copy the vmclock structure under its seq_count.
 * @vg: driver state
 * @snap: where to put a consistent copy
 *
 * The hypervisor holds seq_count odd while it updates the page. Retry until
 * a copy is bracketed by two equal, even reads of seq_count, but only for
 * VMCLOCK_SEQ_TIMEOUT_MS: a hypervisor that stops halfway must not hang us.
 * What size does not cover reads as zero.
 *
 * Context: Process context.
 * Return: 0, or -ETIMEDOUT if no consistent copy could be taken in time.
 */
static int vmclock_gen_read(struct vmclock_gen *vg, struct vmclock_abi *snap)
{
	ktime_t deadline = ktime_add_ms(ktime_get(), VMCLOCK_SEQ_TIMEOUT_MS);
	const struct vmclock_abi *clk = vg->clk;
	u32 seq;

	memset(snap, 0, sizeof(*snap));
	for (;;) {
		/* An odd value never matches the second read below. */
		seq = le32_to_cpu(READ_ONCE(clk->seq_count)) & ~1U;
		/* Pairs with the hypervisor's fence after it makes seq odd. */
		virt_rmb();
		memcpy(snap, clk, vg->len);
		/* Pairs with its fence before seq becomes even again. */
		virt_rmb();
		if (seq == le32_to_cpu(READ_ONCE(clk->seq_count)))
			return 0;
		if (ktime_after(ktime_get(), deadline))
			return -ETIMEDOUT;
		cpu_relax();
	}
}

static int vmclock_gen_reseed(struct vmclock_gen *vg,
			      const struct vmclock_abi *snap)
{
	/*
	 * Every clone of one snapshot may see the same counter (Firecracker
	 * increments it), so the counter alone separates nothing. The cycle
	 * counter and the wall clock at detection differ between clones only
	 * by how each resumed; the rest of the page carries whatever the
	 * hypervisor writes for each restore. Unless the CPU has an RNG for
	 * crng_reseed() to draw on, that is all that tells clones apart.
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
			ret = vmclock_gen_force_reseed(vg);
	}
	memzero_explicit(&seed, sizeof(seed));
	if (!ret)
		dev_info_ratelimited(vg->dev, "VM generation %llu: crng reseeded\n",
				     le64_to_cpu(snap->vm_generation_counter));
	return ret;
}

static void vmclock_gen_uevent(struct vmclock_gen *vg)
{
	char genvar[sizeof("VMCLOCK_GENERATION=18446744073709551615")];
	/* The variables vmgenid sent in 6.8, our counter, the terminator. */
	char *envp[3] = { "NEW_VMGENID=1", genvar, NULL };

	snprintf(genvar, sizeof(genvar), "VMCLOCK_GENERATION=%llu", vg->generation);
	kobject_uevent_env(&vg->dev->kobj, KOBJ_CHANGE, envp);
	vg->uevent_pending = false;
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

/*
 * Called with check_lock, so never concurrently with itself: one change of
 * the counter gives one reseed and one uevent, however many notifications
 * and polls saw it. The uevent goes out now, or at the end of the gap after
 * the last one: *@uevent_in says when, 0 if none is pending.
 */
static int vmclock_gen_check(struct vmclock_gen *vg, unsigned long *uevent_in)
{
	struct vmclock_abi snap;
	u64 generation;
	int ret;

	ret = vmclock_gen_read(vg, &snap);
	if (ret) {
		/* Once per episode, however long the hypervisor takes. */
		if (!vg->seq_stuck)
			dev_warn(vg->dev, "seq_count stays odd; retrying every %u ms\n",
				 READ_ONCE(poll_interval_ms));
		vg->seq_stuck = true;
		goto out;
	}
	if (vg->seq_stuck)
		dev_info(vg->dev, "seq_count is even again\n");
	vg->seq_stuck = false;

	generation = le64_to_cpu(snap.vm_generation_counter);
	if (generation == vg->generation)
		goto out;
	WRITE_ONCE(vg->next_kick, jiffies + msecs_to_jiffies(VMCLOCK_RESEED_GAP_MS));
	/*
	 * generation is the value the crng was reseeded for: one that could
	 * not be is not adopted, and the next check tries again.
	 */
	ret = vmclock_gen_reseed(vg, &snap);
	if (ret) {
		if (!vg->reseed_failed)
			dev_warn(vg->dev, "VM generation %llu: input mixed but crng not reseeded (%pe); retrying every %u ms\n",
				 generation, ERR_PTR(ret), READ_ONCE(poll_interval_ms));
		vg->reseed_failed = true;
		goto out;
	}
	vg->reseed_failed = false;
	/* Publish before telling anyone, so readers of sysfs see it. */
	WRITE_ONCE(vg->generation, generation);
	WRITE_ONCE(vg->restores, vg->restores + 1);
	vg->uevent_pending = true;
	sysfs_notify(&vg->dev->kobj, NULL, "generation");
out:
	*uevent_in = 0;
	if (vg->uevent_pending) {
		*uevent_in = vmclock_gen_until(vg->next_uevent, VMCLOCK_UEVENT_GAP_MS);
		if (!*uevent_in)
			vmclock_gen_uevent(vg);
	}
	return ret;
}

static int vmclock_gen_act(struct vmclock_gen *vg, unsigned long *uevent_in)
{
	int ret;

	mutex_lock(&vg->check_lock);
	ret = vmclock_gen_check(vg, uevent_in);
	mutex_unlock(&vg->check_lock);
	return ret;
}

/*
 * Check now, or at the end of the gap after the last change: a storm of
 * notifications collapses into one pending check.
 */
static void vmclock_gen_kick(struct vmclock_gen *vg)
{
	mod_delayed_work(system_wq, &vg->check_work,
			 vmclock_gen_until(READ_ONCE(vg->next_kick),
					   VMCLOCK_RESEED_GAP_MS));
}

/*
 * ACPI runs this from its notify workqueue, in process context, and calls
 * every handler installed on the device, ptp_vmclock's too. Act on the
 * change right here, as vmgenid does, not one work item later. Within the
 * gap after the last change, or once notifications come faster than a
 * hypervisor has reason to send them, check_work takes over.
 */
static void vmclock_gen_notify(acpi_handle handle, u32 event, void *data)
{
	struct vmclock_gen *vg = data;
	unsigned long uevent_in;

	atomic_inc(&vg->received);
	wake_up_interruptible(&vg->disrupt_wait);
	if (atomic_inc_return(&vg->notifies) > VMCLOCK_STORM_NOTIFIES ||
	    vmclock_gen_until(READ_ONCE(vg->next_kick), VMCLOCK_RESEED_GAP_MS) ||
	    vmclock_gen_act(vg, &uevent_in) || uevent_in)
		vmclock_gen_kick(vg);
}

/*
 * Called with notify_lock held. A failure is reported once per episode: a
 * re-arm after a storm is retried every poll interval until it works.
 */
static int vmclock_gen_listen(struct vmclock_gen *vg)
{
	acpi_status status;

	status = acpi_install_notify_handler(vg->adev->handle, ACPI_DEVICE_NOTIFY,
					     vmclock_gen_notify, vg);
	if (ACPI_FAILURE(status)) {
		if (!vg->arm_failed)
			dev_err(vg->dev, "cannot install notify handler: %s\n",
				acpi_format_exception(status));
		vg->arm_failed = true;
		return -ENODEV;
	}
	vg->arm_failed = false;
	vg->listening = true;
	atomic_set(&vg->notifies, 0);
	vg->window_start = jiffies;
	return 0;
}

/*
 * Called with notify_lock held. Returns once no call of the handler is
 * running or queued: ACPICA waits for its notify workqueue to drain.
 */
static void vmclock_gen_unlisten(struct vmclock_gen *vg)
{
	acpi_remove_notify_handler(vg->adev->handle, ACPI_DEVICE_NOTIFY,
				   vmclock_gen_notify);
	vg->listening = false;
}

/*
 * ACPICA queues one call per Notify for every installed handler, on a
 * workqueue that an interrupt storm can starve: the queue, and the guest's
 * memory, grow for as long as the storm lasts. Without our handler, nothing
 * is queued for it. So above VMCLOCK_STORM_NOTIFIES a second, stop listening
 * and poll instead, and listen again VMCLOCK_STORM_HOLD_S seconds later.
 */
static void vmclock_gen_watch_storm(struct vmclock_gen *vg)
{
	unsigned long now = jiffies;
	unsigned int n;

	mutex_lock(&vg->notify_lock);
	if (vg->stopped)
		goto out;
	if (vg->listening) {
		if (time_before(now, vg->window_start + HZ))
			goto out;
		n = atomic_xchg(&vg->notifies, 0);
		vg->window_start = now;
		if (n <= VMCLOCK_STORM_NOTIFIES)
			goto out;
		dev_warn(vg->dev, "%u notifications in a second: polling for %u s instead\n",
			 n, VMCLOCK_STORM_HOLD_S);
		vmclock_gen_unlisten(vg);
		vg->storm_until = now + VMCLOCK_STORM_HOLD_S * HZ;
	} else if (time_after_eq(now, vg->storm_until) && !vmclock_gen_listen(vg)) {
		dev_info(vg->dev, "listening to notifications again\n");
	}
out:
	mutex_unlock(&vg->notify_lock);
}

/*
 * Without notifications, during a storm, and while seq_count stays odd, the
 * check comes back every poll interval; with notifications, every second
 * too: one the hypervisor fails to send must not leave a restore unnoticed.
 */
static void vmclock_gen_work(struct work_struct *work)
{
	struct vmclock_gen *vg = container_of(to_delayed_work(work),
					      struct vmclock_gen, check_work);
	unsigned int next_ms = VMCLOCK_BACKSTOP_MS;
	unsigned long delay, uevent_in;
	bool polling = !vg->notify;

	if (vg->notify) {
		vmclock_gen_watch_storm(vg);
		polling = !READ_ONCE(vg->listening);
	}
	if (vmclock_gen_act(vg, &uevent_in) || polling)
		next_ms = READ_ONCE(poll_interval_ms);
	delay = msecs_to_jiffies(next_ms);
	if (uevent_in)
		delay = min(delay, uevent_in);
	queue_delayed_work(system_wq, &vg->check_work, delay);
}

/* Teardown: remove the handler if a storm has not, and never listen again. */
static void vmclock_gen_stop_notify(void *data)
{
	struct vmclock_gen *vg = data;

	mutex_lock(&vg->notify_lock);
	if (vg->listening)
		vmclock_gen_unlisten(vg);
	vg->stopped = true;
	mutex_unlock(&vg->notify_lock);
}

static void vmclock_gen_cancel_work(void *data)
{
	struct vmclock_gen *vg = data;

	cancel_delayed_work_sync(&vg->check_work);
}

static int vmclock_gen_start_notify(struct vmclock_gen *vg)
{
	int ret;

	mutex_lock(&vg->notify_lock);
	ret = vmclock_gen_listen(vg);
	mutex_unlock(&vg->notify_lock);
	if (ret)
		return ret;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_stop_notify, vg);
}

static void vmclock_gen_remove_debugfs(void *dir)
{
	debugfs_remove_recursive(dir);
}

/*
 * How many notifications reached the handler: not an ABI, but the only way
 * to tell, in a test or on a misbehaving host, whether the hypervisor's
 * notifications arrive at all, and how many a storm delivers.
 */
static int vmclock_gen_debugfs(struct vmclock_gen *vg)
{
	struct dentry *dir = debugfs_create_dir(KBUILD_MODNAME, NULL);

	debugfs_create_atomic_t("notifications", 0444, dir, &vg->received);
	return devm_add_action_or_reset(vg->dev, vmclock_gen_remove_debugfs, dir);
}

/*
 * /dev/vmclock0, for vmclock's own userspace readers (AWS-LC's snapshot
 * detector, for one), as ptp_vmclock (Linux 6.13 and later) offers it:
 * read() a consistent copy under seq_count, mmap() the page read-only,
 * poll() for a change of seq_count since this file last read, or POLLHUP
 * if the hypervisor does not notify. Offered only while no driver is bound
 * to the vmclock device, and withdrawn when one binds, before its probe
 * registers a /dev/vmclock0 of its own.
 */
struct vmclock_gen_file {
	struct vmclock_gen *vg;
	atomic_t seq;			/* seq_count as this file last read it */
};

static ssize_t vmclock_gen_misc_read(struct file *fp, char __user *buf,
				     size_t count, loff_t *ppos)
{
	struct vmclock_gen_file *fst = fp->private_data;
	ktime_t deadline = ktime_add_ms(ktime_get(), VMCLOCK_READ_TIMEOUT_MS);
	const struct vmclock_abi *clk = fst->vg->clk;
	u32 seq, last;

	if (*ppos >= PAGE_SIZE)
		return 0;
	count = min_t(size_t, count, PAGE_SIZE - *ppos);
	last = atomic_read(&fst->seq);
	for (;;) {
		seq = le32_to_cpu(READ_ONCE(clk->seq_count)) & ~1U;
		/* As in vmclock_gen_read(). */
		virt_rmb();
		if (copy_to_user(buf, (const char *)clk + *ppos, count))
			return -EFAULT;
		/* As in vmclock_gen_read(). */
		virt_rmb();
		/* Another read of this file may have seen a newer seq_count. */
		if (seq == le32_to_cpu(READ_ONCE(clk->seq_count)) &&
		    (atomic_try_cmpxchg(&fst->seq, &last, seq) || last == seq))
			break;
		if (ktime_after(ktime_get(), deadline))
			return -ETIMEDOUT;
		cpu_relax();
	}
	*ppos += count;
	return count;
}

static __poll_t vmclock_gen_misc_poll(struct file *fp, poll_table *wait)
{
	struct vmclock_gen_file *fst = fp->private_data;
	struct vmclock_gen *vg = fst->vg;

	/* No notification will ever come: say so rather than sleep. */
	if (!vg->notify)
		return EPOLLHUP;
	poll_wait(fp, &vg->disrupt_wait, wait);
	if (atomic_read(&fst->seq) != le32_to_cpu(READ_ONCE(vg->clk->seq_count)))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

static int vmclock_gen_misc_mmap(struct file *fp, struct vm_area_struct *vma)
{
	struct vmclock_gen *vg = ((struct vmclock_gen_file *)fp->private_data)->vg;

	if ((vma->vm_flags & (VM_READ | VM_WRITE)) != VM_READ)
		return -EROFS;
	if (vma->vm_end - vma->vm_start != PAGE_SIZE || vma->vm_pgoff)
		return -EINVAL;
	/* io_remap_pfn_range() maps it decrypted, as memremap() did. */
	return io_remap_pfn_range(vma, vma->vm_start, vg->res.start >> PAGE_SHIFT,
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

/* Offer /dev/vmclock0 or withdraw it; called with misc_lock held. */
static void vmclock_gen_offer(struct vmclock_gen *vg, bool offer)
{
	int ret;

	if (offer == vg->misc_up || (offer && vg->misc_dead))
		return;
	if (!offer) {
		misc_deregister(&vg->misc);
		vg->misc_up = false;
		dev_info(vg->dev, "%s has a driver: /dev/vmclock0 is left to it\n",
			 dev_name(vg->owner));
		return;
	}
	ret = misc_register(&vg->misc);
	if (ret)
		dev_warn(vg->dev, "cannot offer /dev/vmclock0: %pe\n", ERR_PTR(ret));
	vg->misc_up = !ret;
}

static int vmclock_gen_bus_event(struct notifier_block *nb, unsigned long action,
				 void *data)
{
	struct vmclock_gen *vg = container_of(nb, struct vmclock_gen, bus_nb);

	if (data != vg->owner)
		return NOTIFY_DONE;
	mutex_lock(&vg->misc_lock);
	if (action == BUS_NOTIFY_BIND_DRIVER)
		vmclock_gen_offer(vg, false);
	else if (action == BUS_NOTIFY_UNBOUND_DRIVER ||
		 action == BUS_NOTIFY_DRIVER_NOT_BOUND)
		vmclock_gen_offer(vg, true);
	mutex_unlock(&vg->misc_lock);
	return NOTIFY_DONE;
}

static void vmclock_gen_stop_misc(void *data)
{
	struct vmclock_gen *vg = data;

	bus_unregister_notifier(&platform_bus_type, &vg->bus_nb);
	mutex_lock(&vg->misc_lock);
	vmclock_gen_offer(vg, false);
	vg->misc_dead = true;
	mutex_unlock(&vg->misc_lock);
}

/*
 * The bus notifier goes first: a driver that binds while we look is then
 * either seen bound below, or reported to the notifier, which waits for
 * misc_lock. Binding happens under the device lock.
 */
static int vmclock_gen_start_misc(struct vmclock_gen *vg)
{
	int ret;

	/* mmap() hands out whole pages. */
	if (!VMCLOCK_HAS(vg->clk, vm_generation_counter) ||
	    le32_to_cpu(vg->clk->size) < PAGE_SIZE || resource_size(&vg->res) < PAGE_SIZE)
		return 0;
	vg->misc.minor = MISC_DYNAMIC_MINOR;
	vg->misc.name = "vmclock0";
	vg->misc.fops = &vmclock_gen_misc_fops;
	vg->misc.parent = vg->dev;
	vg->bus_nb.notifier_call = vmclock_gen_bus_event;
	ret = bus_register_notifier(&platform_bus_type, &vg->bus_nb);
	if (ret)
		return ret;
	ret = devm_add_action_or_reset(vg->dev, vmclock_gen_stop_misc, vg);
	if (ret)
		return ret;
	device_lock(vg->owner);
	mutex_lock(&vg->misc_lock);
	if (vg->owner->driver)
		dev_info(vg->dev, "%s is bound to %s, which offers /dev/vmclockN\n",
			 dev_name(vg->owner), vg->owner->driver->name);
	else
		vmclock_gen_offer(vg, true);
	mutex_unlock(&vg->misc_lock);
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

static const struct acpi_device_id vmclock_gen_acpi_ids[] = {
	{ "AMZNC10C", 0 },	/* Firecracker's _HID */
	{ "VMCLOCK", 0 },	/* the _CID for every vmclock */
	{ }
};
MODULE_DEVICE_TABLE(acpi, vmclock_gen_acpi_ids);

static int vmclock_gen_find(struct vmclock_gen *vg)
{
	const struct acpi_device_id *id;
	int ret;

	for (id = vmclock_gen_acpi_ids; id->id[0] && !vg->adev; id++)
		vg->adev = acpi_dev_get_first_match_dev(id->id, NULL, -1);
	if (!vg->adev)
		return -ENODEV;
	ret = devm_add_action_or_reset(vg->dev, vmclock_gen_put_adev, vg->adev);
	if (ret)
		return ret;
	vg->owner = get_device(acpi_get_first_physical_node(vg->adev));
	if (!vg->owner) {
		dev_err(vg->dev, "%s has no device\n", dev_name(&vg->adev->dev));
		return -ENODEV;
	}
	return devm_add_action_or_reset(vg->dev, vmclock_gen_put_owner, vg->owner);
}

/* _CRS holds exactly one memory range: the page. */
static int vmclock_gen_resource(struct vmclock_gen *vg)
{
	struct resource_entry *entry;
	LIST_HEAD(list);
	int n = 0, ret;

	ret = acpi_dev_get_resources(vg->adev, &list, NULL, NULL);
	if (ret < 0)
		return ret;
	list_for_each_entry(entry, &list, node) {
		if (resource_type(entry->res) != IORESOURCE_MEM)
			continue;
		vg->res = *entry->res;
		n++;
	}
	acpi_dev_free_resource_list(&list);
	if (n != 1) {
		dev_err(vg->dev, "%s: expected one memory range, found %d\n",
			dev_name(vg->owner), n);
		return -ENODEV;
	}
	if (resource_size(&vg->res) < offsetofend(struct vmclock_abi, flags)) {
		dev_err(vg->dev, "%pR is too small for a vmclock\n", &vg->res);
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
	if (vmclock_gen_read(vg, snap)) {
		dev_err(dev, "seq_count stayed odd for %d ms at probe\n",
			VMCLOCK_SEQ_TIMEOUT_MS);
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

static int vmclock_gen_map(struct vmclock_gen *vg, struct vmclock_abi *snap)
{
	void *clk;
	int ret;

	ret = vmclock_gen_find(vg);
	if (ret)
		return ret;
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

/* How this kernel reseeds: see "Where kernels differ" above. */
static int vmclock_gen_pick_reseed(struct vmclock_gen *vg, u64 seen)
{
	int ret = vmclock_gen_register_sync(vg, seen);

	if (ret || vg->sync)
		return ret;
	ret = vmclock_gen_get_vmfork(vg);
	if (ret || vg->add_vmfork)
		return ret;
	return vmclock_gen_open_urandom(vg);
}

/* Whether crng_reseed() has a CPU RNG (RDSEED, RDRAND, ...) to draw on. */
static bool vmclock_gen_cpu_rng(void)
{
	unsigned long v;

	return arch_get_random_seed_longs(&v, 1) || arch_get_random_longs(&v, 1);
}

static int __init vmclock_gen_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct vmclock_abi snap;
	struct vmclock_gen *vg;
	int ret;

	vg = devm_kzalloc(dev, sizeof(*vg), GFP_KERNEL);
	if (!vg)
		return -ENOMEM;
	vg->dev = dev;
	mutex_init(&vg->check_lock);
	mutex_init(&vg->notify_lock);
	mutex_init(&vg->misc_lock);
	init_waitqueue_head(&vg->disrupt_wait);
	INIT_DELAYED_WORK(&vg->check_work, vmclock_gen_work);
	/* Neither gap applies yet; 0 is not "long ago" while jiffies wraps. */
	vg->next_kick = jiffies;
	vg->next_uevent = jiffies;
	platform_set_drvdata(pdev, vg);

	ret = vmclock_gen_map(vg, &snap);
	if (ret)
		return ret;
	vg->generation = le64_to_cpu(snap.vm_generation_counter);
	vg->notify = le64_to_cpu(snap.flags) & VMCLOCK_FLAG_NOTIFICATION_PRESENT;
	ret = vmclock_gen_pick_reseed(vg, vg->generation);
	if (ret)
		return ret;
	/* Like vmgenid: what the page holds now is mixed in, not credited. */
	add_device_randomness(&snap, sizeof(snap));

	ret = devm_add_action_or_reset(dev, vmclock_gen_cancel_work, vg);
	if (!ret)
		ret = vmclock_gen_debugfs(vg);
	if (!ret && vg->notify)
		ret = vmclock_gen_start_notify(vg);
	if (!ret)
		ret = vmclock_gen_start_misc(vg);
	if (ret)
		return ret;
	/* Catch a change that happened before the handler was in place. */
	vmclock_gen_kick(vg);

	if (!vmclock_gen_cpu_rng())
		dev_warn(dev, "no CPU RNG: clones of one snapshot are told apart only by the cycle counter at each reseed and what the hypervisor writes for each restore\n");
	dev_info(dev, "%s: VM generation %llu, %s mode, reseed via %s\n",
		 dev_name(vg->owner), vg->generation, vg->notify ? "notify" : "poll",
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

	return sysfs_emit(buf, "%llu\n", READ_ONCE(vg->generation));
}
static DEVICE_ATTR_RO(generation);

static ssize_t restores_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	struct vmclock_gen *vg = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%llu\n", READ_ONCE(vg->restores));
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
 * For our own device, not the vmclock device: the IDs above only make udev
 * load this module when the vmclock device appears, ptp_vmclock with it.
 */
static struct platform_driver vmclock_gen_driver = {
	.driver = {
		.name = KBUILD_MODNAME,
		.dev_groups = vmclock_gen_groups,
		.pm = pm_sleep_ptr(&vmclock_gen_pm),
	},
};

static struct platform_device *vmclock_gen_pdev;

static int __init vmclock_gen_init(void)
{
	vmclock_gen_pdev = platform_create_bundle(&vmclock_gen_driver,
						  vmclock_gen_probe, NULL, 0, NULL, 0);
	return PTR_ERR_OR_ZERO(vmclock_gen_pdev);
}
module_init(vmclock_gen_init);

static void __exit vmclock_gen_exit(void)
{
	platform_device_unregister(vmclock_gen_pdev);
	platform_driver_unregister(&vmclock_gen_driver);
}
module_exit(vmclock_gen_exit);

MODULE_DESCRIPTION("Reseed the RNG when the vmclock VM generation counter changes");
MODULE_LICENSE("GPL");
