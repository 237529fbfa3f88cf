// SPDX-License-Identifier: GPL-2.0
/*
 * A vmclock hypervisor moves vm_generation_counter each time the VM is loaded
 * from a snapshot, so every clone would otherwise go on serving the random
 * bytes of its siblings. This driver exists for shepherding that change to
 * random.c, and for telling userspace about it the way vmgenid did.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/acpi.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/ktime.h>
#include <linux/major.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/pm.h>
#include <linux/random.h>
#include <linux/security.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/timex.h>
#include <linux/workqueue.h>
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
	 * How long a hypervisor may leave seq_count odd before we give up for
	 * now. Its updates take microseconds; we spin in a kworker meanwhile.
	 */
	VMCLOCK_SEQ_TIMEOUT_MS = 10,
	/*
	 * After acting on a change, the next notification is acted on no
	 * sooner than this: a hypervisor that flaps the counter or rings
	 * nonstop gets at most 1000 / VMCLOCK_RESEED_GAP_MS reseeds a
	 * second, and every change is still caught by the next one.
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
	 * and poll for VMCLOCK_STORM_HOLD_S seconds (see vmclock_gen_watch_storm()).
	 */
	VMCLOCK_STORM_NOTIFIES = 100,
	VMCLOCK_STORM_HOLD_S = 10,
	VMCLOCK_POLL_DEFAULT_MS = 100,
	VMCLOCK_POLL_MIN_MS = 10,
	VMCLOCK_POLL_MAX_MS = 60 * MSEC_PER_SEC,
	/* Documentation/admin-guide/devices.txt: char 1:9 is /dev/urandom. */
	VMCLOCK_URANDOM_MINOR = 9,
};

enum vmclock_gen_mode {
	VMCLOCK_MODE_AUTO,
	VMCLOCK_MODE_NOTIFY,
	VMCLOCK_MODE_POLL,
};

static const char * const vmclock_gen_mode_names[] = {
	[VMCLOCK_MODE_AUTO] = "auto",
	[VMCLOCK_MODE_NOTIFY] = "notify",
	[VMCLOCK_MODE_POLL] = "poll",
};

/* A field is there only if size covers it: the structure grows at its end. */
#define VMCLOCK_HAS(clk, field) \
	(le32_to_cpu((clk)->size) >= offsetofend(struct vmclock_abi, field))

typedef void (*vmclock_gen_vmfork_t)(const void *buf, size_t len);

struct vmclock_gen {
	struct device *dev;
	const struct vmclock_abi *clk;
	size_t len;		/* of clk that size and the resource cover */
	struct delayed_work check_work;
	enum vmclock_gen_mode mode;
	vmclock_gen_vmfork_t add_vmfork;
	struct file *urandom;		/* neither sync nor add_vmfork */
	bool sync;
	struct mutex check_lock;	/* the check, and what it reports */
	bool seq_stuck;
	bool reseed_failed;
	unsigned long next_kick;	/* jiffies; see VMCLOCK_RESEED_GAP_MS */
	unsigned long next_uevent;	/* jiffies; see VMCLOCK_UEVENT_GAP_MS */
	bool uevent_pending;
	/* The notify handler, and what a storm does to it. */
	struct mutex notify_lock;	/* armed and dead */
	bool notify_armed;
	bool notify_dead;		/* torn down: never arm again */
	bool arm_failed;		/* said so already */
	atomic_t notifies;		/* in the current window */
	atomic_t received;		/* since probe, for debugfs */
	unsigned long window_start;	/* jiffies */
	unsigned long storm_until;	/* jiffies */
	atomic64_t generation;
	atomic64_t restores;
};

static enum vmclock_gen_mode vmclock_mode_param = VMCLOCK_MODE_AUTO;
static unsigned int poll_interval_ms = VMCLOCK_POLL_DEFAULT_MS;

static int vmclock_mode_set(const char *val, const struct kernel_param *kp)
{
	int ret = sysfs_match_string(vmclock_gen_mode_names, val);

	if (ret < 0)
		return -EINVAL;
	vmclock_mode_param = ret;
	return 0;
}

static int vmclock_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", vmclock_gen_mode_names[vmclock_mode_param]);
}

static const struct kernel_param_ops vmclock_mode_ops = {
	.set = vmclock_mode_set,
	.get = vmclock_mode_get,
};
module_param_cb(mode, &vmclock_mode_ops, NULL, 0444);
MODULE_PARM_DESC(mode, "How to watch the counter: auto (default), notify or poll");

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
 * can serve its siblings' random bytes to one tick a human would not notice,
 * at ten wakeups a second of an otherwise idle guest.
 */
module_param_cb(poll_interval_ms, &poll_interval_ops, &poll_interval_ms, 0444);
MODULE_PARM_DESC(poll_interval_ms,
		 "Poll interval in poll mode, 10..60000 ms (default 100)");

/*
 * random.c exports add_vmfork_randomness() only when CONFIG_VMGENID=m (6.1 up
 * to at least 6.12), and Debian builds vmgenid in. Look for it at run time
 * instead of linking against it, so one module binary loads either way.
 */
static vmclock_gen_vmfork_t vmclock_gen_get_vmfork(void)
{
#if IS_ENABLED(CONFIG_VMGENID)
	return symbol_get(add_vmfork_randomness);
#else
	return NULL;
#endif
}

static void vmclock_gen_put_vmfork(void *unused)
{
#if IS_ENABLED(CONFIG_VMGENID)
	symbol_put(add_vmfork_randomness);
#endif
}

#if IS_ENABLED(CONFIG_RANDOM_VMGEN)
/*
 * With random.c.patch applied, random.c checks the counter itself on every
 * output path and reseeds before handing out a byte; we only make sure a
 * restore is acted on when nothing asks for random bytes, run the vmfork
 * chain, and tell userspace. random.c starts from the value we read, so a
 * restore between that read and the registration still reseeds.
 */
static void vmclock_gen_unregister_sync(void *unused)
{
	random_unregister_vmgen();
}

static int vmclock_gen_register_sync(struct vmclock_gen *vg, u64 seen)
{
	int ret = random_register_vmgen(&vg->clk->vm_generation_counter, seen,
					vg->clk, vg->len);

	if (ret) {
		dev_err(vg->dev, "cannot register with random.c: %pe\n",
			ERR_PTR(ret));
		return ret;
	}
	vg->sync = true;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_unregister_sync,
					NULL);
}

static void vmclock_gen_sync_check(void)
{
	random_vmgen_notify();
}
#else
static int vmclock_gen_register_sync(struct vmclock_gen *vg, u64 seen)
{
	return 0;
}

static void vmclock_gen_sync_check(void)
{
}
#endif

/**
 * vmclock_gen_read() - Copy the vmclock structure under its seq_count.
 * @vg: driver state
 * @snap: where to put a consistent copy
 *
 * The hypervisor holds seq_count odd while it updates the page. Retry until
 * a copy is bracketed by two equal, even reads of seq_count, but only for
 * VMCLOCK_SEQ_TIMEOUT_MS: a hypervisor that stops halfway must not hang us.
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

/*
 * Without random.c.patch or add_vmfork_randomness(), the strongest thing an
 * unpatched kernel lets a module do is what RNDRESEEDCRNG does for root:
 * crng_reseed(), which extracts the input pool (with our seed, RDSEED/RDRAND
 * and the cycle counter) into a new base key and bumps the generation every
 * per-CPU and batched output path checks. add_device_randomness() alone
 * would wait for the next scheduled reseed, up to a minute. /dev/urandom is
 * opened at probe, from the loading process and its mounts, not from the
 * kworker that reseeds; the ioctl goes through the LSM hook as userspace's
 * would. The vmfork notifier chain is out of reach this way.
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
	int ret;

	if (vg->sync) {
		/* One reseed per change: random.c's, if it has not happened. */
		add_device_randomness(&seed, sizeof(seed));
		vmclock_gen_sync_check();
		ret = 0;
	} else if (vg->add_vmfork) {
		vg->add_vmfork(&seed, sizeof(seed));
		ret = 0;
	} else {
		add_device_randomness(&seed, sizeof(seed));
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

	snprintf(genvar, sizeof(genvar), "VMCLOCK_GENERATION=%llu",
		 (u64)atomic64_read(&vg->generation));
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
 * Send the uevent now, or at the end of the gap after the last one; returns
 * the jiffies until then, or 0 if none is pending. Called with check_lock.
 */
static unsigned long vmclock_gen_announce(struct vmclock_gen *vg)
{
	unsigned long wait;

	if (!vg->uevent_pending)
		return 0;
	wait = vmclock_gen_until(vg->next_uevent, VMCLOCK_UEVENT_GAP_MS);
	if (!wait)
		vmclock_gen_uevent(vg);
	return wait;
}

/*
 * Called with check_lock, so never concurrently with itself: one change of
 * the counter gives one reseed and one uevent, however many notifications
 * and polls saw it.
 */
static int vmclock_gen_check(struct vmclock_gen *vg)
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
		return ret;
	}
	if (vg->seq_stuck)
		dev_info(vg->dev, "seq_count is even again\n");
	vg->seq_stuck = false;
	if (!(le64_to_cpu(snap.flags) & VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT))
		return 0;

	generation = le64_to_cpu(snap.vm_generation_counter);
	if (generation == atomic64_read(&vg->generation))
		return 0;

	WRITE_ONCE(vg->next_kick,
		   jiffies + msecs_to_jiffies(VMCLOCK_RESEED_GAP_MS));
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
		return ret;
	}
	vg->reseed_failed = false;
	/* Publish before telling anyone, so readers of sysfs see it. */
	atomic64_set(&vg->generation, generation);
	atomic64_inc(&vg->restores);
	vg->uevent_pending = true;
	sysfs_notify(&vg->dev->kobj, NULL, "generation");
	return 0;
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

/* Check, and send a uevent that is due; what is left goes to check_work. */
static int vmclock_gen_act(struct vmclock_gen *vg, unsigned long *uevent_in)
{
	int ret;

	mutex_lock(&vg->check_lock);
	ret = vmclock_gen_check(vg);
	*uevent_in = vmclock_gen_announce(vg);
	mutex_unlock(&vg->check_lock);
	return ret;
}

/*
 * ACPI runs this from its notify workqueue, in process context: act on the
 * change right here, as vmgenid does, not one work item later. Within the
 * gap after the last change, or once notifications come faster than a
 * hypervisor has reason to send them, check_work takes over.
 */
static void vmclock_gen_notify(acpi_handle handle, u32 event, void *data)
{
	struct vmclock_gen *vg = data;
	unsigned long uevent_in;

	atomic_inc(&vg->received);
	if (atomic_inc_return(&vg->notifies) > VMCLOCK_STORM_NOTIFIES ||
	    vmclock_gen_until(READ_ONCE(vg->next_kick), VMCLOCK_RESEED_GAP_MS) ||
	    vmclock_gen_act(vg, &uevent_in) || uevent_in)
		vmclock_gen_kick(vg);
}

/*
 * Called with notify_lock held. A failure is reported once per episode: a
 * re-arm after a storm is retried every poll interval until it works.
 */
static int vmclock_gen_install(struct vmclock_gen *vg)
{
	acpi_status status;

	status = acpi_install_notify_handler(ACPI_HANDLE(vg->dev),
					     ACPI_DEVICE_NOTIFY,
					     vmclock_gen_notify, vg);
	if (ACPI_FAILURE(status)) {
		if (!vg->arm_failed)
			dev_err(vg->dev, "cannot install notify handler: %s\n",
				acpi_format_exception(status));
		vg->arm_failed = true;
		return -ENODEV;
	}
	vg->arm_failed = false;
	vg->notify_armed = true;
	atomic_set(&vg->notifies, 0);
	vg->window_start = jiffies;
	return 0;
}

/*
 * Called with notify_lock held. Returns once no dispatch of the handler is
 * running or queued: ACPICA waits for its notify workqueue to drain.
 */
static void vmclock_gen_uninstall(struct vmclock_gen *vg)
{
	acpi_remove_notify_handler(ACPI_HANDLE(vg->dev), ACPI_DEVICE_NOTIFY,
				   vmclock_gen_notify);
	vg->notify_armed = false;
}

/*
 * ACPICA queues one dispatch per Notify for every installed handler, on a
 * workqueue that the interrupt storm itself starves (the GED runs _EVT in a
 * SCHED_FIFO thread): the queue, and the guest's memory, grow for as long
 * as the storm lasts. Without a handler, nothing is queued. So above
 * VMCLOCK_STORM_NOTIFIES a second, stop listening and poll instead, and
 * listen again VMCLOCK_STORM_HOLD_S seconds later. Runs from check_work only.
 */
static void vmclock_gen_watch_storm(struct vmclock_gen *vg)
{
	unsigned long now = jiffies;
	unsigned int n;

	mutex_lock(&vg->notify_lock);
	if (vg->notify_dead)
		goto out;
	if (vg->notify_armed) {
		if (time_before(now, vg->window_start + HZ))
			goto out;
		n = atomic_xchg(&vg->notifies, 0);
		vg->window_start = now;
		if (n <= VMCLOCK_STORM_NOTIFIES)
			goto out;
		dev_warn(vg->dev, "%u notifications in a second: polling for %u s instead\n",
			 n, VMCLOCK_STORM_HOLD_S);
		vmclock_gen_uninstall(vg);
		vg->storm_until = now + VMCLOCK_STORM_HOLD_S * HZ;
	} else if (time_after_eq(now, vg->storm_until) && !vmclock_gen_install(vg)) {
		dev_info(vg->dev, "listening to notifications again\n");
	}
out:
	mutex_unlock(&vg->notify_lock);
}

/*
 * Poll mode, a stuck seq_count and notify mode during a storm come back
 * every poll interval. Notify mode comes back too, more slowly: a
 * notification the hypervisor fails to send must not leave a restore
 * unnoticed for longer than VMCLOCK_BACKSTOP_MS.
 */
static void vmclock_gen_work(struct work_struct *work)
{
	struct vmclock_gen *vg = container_of(to_delayed_work(work),
					      struct vmclock_gen, check_work);
	unsigned int next_ms = VMCLOCK_BACKSTOP_MS;
	unsigned long delay, uevent_in;
	bool polling = vg->mode == VMCLOCK_MODE_POLL;

	if (vg->mode == VMCLOCK_MODE_NOTIFY) {
		vmclock_gen_watch_storm(vg);
		polling = !READ_ONCE(vg->notify_armed);
	}
	if (vmclock_gen_act(vg, &uevent_in) || polling)
		next_ms = READ_ONCE(poll_interval_ms);
	delay = msecs_to_jiffies(next_ms);
	if (uevent_in)
		delay = min(delay, uevent_in);
	queue_delayed_work(system_wq, &vg->check_work, delay);
}

/* Teardown: remove the handler if a storm has not, and never re-arm. */
static void vmclock_gen_remove_notify(void *data)
{
	struct vmclock_gen *vg = data;

	mutex_lock(&vg->notify_lock);
	if (vg->notify_armed)
		vmclock_gen_uninstall(vg);
	vg->notify_dead = true;
	mutex_unlock(&vg->notify_lock);
}

static void vmclock_gen_cancel_work(void *data)
{
	struct vmclock_gen *vg = data;

	cancel_delayed_work_sync(&vg->check_work);
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

static int vmclock_gen_arm_notify(struct vmclock_gen *vg)
{
	int ret;

	if (!ACPI_HANDLE(vg->dev)) {
		dev_err(vg->dev, "notify mode needs an ACPI companion\n");
		return -ENODEV;
	}
	mutex_lock(&vg->notify_lock);
	ret = vmclock_gen_install(vg);
	mutex_unlock(&vg->notify_lock);
	if (ret)
		return ret;
	return devm_add_action_or_reset(vg->dev, vmclock_gen_remove_notify, vg);
}

/*
 * Check what firmware and the hypervisor handed us before trusting any of
 * it. The constant fields are read once; flags is taken from a consistent
 * copy, as it may change under seq_count. A page without the counter is a
 * clock for ptp_vmclock, not a device for this driver.
 */
static int vmclock_gen_validate(struct vmclock_gen *vg, resource_size_t len,
				struct vmclock_abi *snap)
{
	const struct vmclock_abi *clk = vg->clk;
	u32 magic = le32_to_cpu(READ_ONCE(clk->magic));
	u32 size = le32_to_cpu(READ_ONCE(clk->size));
	u16 version = le16_to_cpu(READ_ONCE(clk->version));
	struct device *dev = vg->dev;

	if (magic != VMCLOCK_MAGIC) {
		dev_err(dev, "bad magic %#010x (expected %#010x)\n",
			magic, VMCLOCK_MAGIC);
		return -ENODEV;
	}
	if (version != VMCLOCK_ABI_VERSION) {
		dev_err(dev, "unsupported version %u (expected %u)\n",
			version, VMCLOCK_ABI_VERSION);
		return -ENODEV;
	}
	if (size > len) {
		dev_err(dev, "size %u exceeds the %llu-byte resource\n",
			size, (unsigned long long)len);
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

static int vmclock_gen_map(struct vmclock_gen *vg, struct platform_device *pdev,
			   resource_size_t *len)
{
	struct resource *res = platform_get_resource(pdev, IORESOURCE_MEM, 0);
	void *clk;

	if (!res || platform_get_resource(pdev, IORESOURCE_MEM, 1)) {
		dev_err(vg->dev, "expected exactly one memory resource\n");
		return -ENODEV;
	}
	*len = resource_size(res);
	if (*len < offsetofend(struct vmclock_abi, flags)) {
		dev_err(vg->dev, "resource %pR too small for a vmclock\n", res);
		return -ENODEV;
	}
	/* Shared with the hypervisor: decrypted on SEV and TDX guests. */
	clk = devm_memremap(vg->dev, res->start, *len, MEMREMAP_WB | MEMREMAP_DEC);
	if (IS_ERR(clk)) {
		dev_err(vg->dev, "cannot map %pR: %pe\n", res, clk);
		return PTR_ERR(clk);
	}
	vg->clk = clk;
	return 0;
}

static enum vmclock_gen_mode vmclock_gen_pick_mode(u64 flags)
{
	if (vmclock_mode_param != VMCLOCK_MODE_AUTO)
		return vmclock_mode_param;
	if (flags & VMCLOCK_FLAG_NOTIFICATION_PRESENT)
		return VMCLOCK_MODE_NOTIFY;
	return VMCLOCK_MODE_POLL;
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
	struct vmclock_abi snap;
	struct vmclock_gen *vg;
	resource_size_t len;
	int ret;

	vg = devm_kzalloc(dev, sizeof(*vg), GFP_KERNEL);
	if (!vg)
		return -ENOMEM;
	vg->dev = dev;

	ret = vmclock_gen_map(vg, pdev, &len);
	if (ret)
		return ret;
	ret = vmclock_gen_validate(vg, len, &snap);
	if (ret)
		return ret;
	platform_set_drvdata(pdev, vg);

	ret = vmclock_gen_register_sync(vg, le64_to_cpu(snap.vm_generation_counter));
	if (ret)
		return ret;
	vg->add_vmfork = vg->sync ? NULL : vmclock_gen_get_vmfork();
	if (vg->add_vmfork) {
		ret = devm_add_action_or_reset(dev, vmclock_gen_put_vmfork, NULL);
		if (ret)
			return ret;
	} else if (!vg->sync) {
		ret = vmclock_gen_open_urandom(vg);
		if (ret)
			return ret;
	}

	/* Like vmgenid: what the page holds now is mixed in, not credited. */
	add_device_randomness(&snap, sizeof(snap));
	atomic64_set(&vg->generation, le64_to_cpu(snap.vm_generation_counter));
	vg->mode = vmclock_gen_pick_mode(le64_to_cpu(snap.flags));
	INIT_DELAYED_WORK(&vg->check_work, vmclock_gen_work);
	mutex_init(&vg->check_lock);
	mutex_init(&vg->notify_lock);
	/* Neither gap applies yet; 0 is not "long ago" while jiffies wraps. */
	vg->next_kick = jiffies;
	vg->next_uevent = jiffies;

	ret = devm_add_action_or_reset(dev, vmclock_gen_cancel_work, vg);
	if (ret)
		return ret;
	ret = vmclock_gen_debugfs(vg);
	if (ret)
		return ret;
	if (vg->mode == VMCLOCK_MODE_NOTIFY) {
		ret = vmclock_gen_arm_notify(vg);
		if (ret)
			return ret;
	}

	/* Catch a change that happened before the handler was in place. */
	vmclock_gen_kick(vg);

	if (!vmclock_gen_cpu_rng())
		dev_warn(dev, "no CPU RNG: clones of one snapshot are told apart only by the cycle counter at each reseed and what the hypervisor writes for each restore\n");
	dev_info(dev, "VM generation %llu, %s mode, reseed via %s\n",
		 le64_to_cpu(snap.vm_generation_counter),
		 vmclock_gen_mode_names[vg->mode],
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

	return sysfs_emit(buf, "%s\n", vmclock_gen_mode_names[vg->mode]);
}
static DEVICE_ATTR_RO(mode);

static struct attribute *vmclock_gen_attrs[] = {
	&dev_attr_generation.attr,
	&dev_attr_restores.attr,
	&dev_attr_mode.attr,
	NULL
};
ATTRIBUTE_GROUPS(vmclock_gen);

static const struct acpi_device_id vmclock_gen_acpi_ids[] = {
	{ "AMZNC10C", 0 },
	{ "VMCLOCK", 0 },
	{ }
};
MODULE_DEVICE_TABLE(acpi, vmclock_gen_acpi_ids);

/*
 * No .remove: devm undoes probe in reverse, notify handler first, then the
 * work, so nothing can requeue it once it is cancelled. (6.1 has an int
 * .remove, mainline a void one; having none builds on both.)
 *
 * ptp_vmclock (mainline 6.13+) binds the same IDs; only one driver gets
 * the device.
 */
static struct platform_driver vmclock_gen_driver = {
	.probe = vmclock_gen_probe,
	.driver = {
		.name = "vmgenid_vmclock",
		.acpi_match_table = vmclock_gen_acpi_ids,
		.dev_groups = vmclock_gen_groups,
		.pm = pm_sleep_ptr(&vmclock_gen_pm),
	},
};

/*
 * Only one driver gets the device. If another (ptp_vmclock, say) already
 * has it, say so: the counter goes unwatched, and nothing else would tell
 * the administrator. A driver that binds after us is not seen here.
 */
static void vmclock_gen_warn_taken(void)
{
	struct acpi_device *adev, *prev = NULL;
	const struct acpi_device_id *id;
	struct device *dev;

	/* Both IDs match one device (its _HID and _CID): warn once. */
	for (id = vmclock_gen_acpi_ids; id->id[0]; id++) {
		adev = acpi_dev_get_first_match_dev(id->id, NULL, -1);
		dev = adev && adev != prev ? acpi_get_first_physical_node(adev) : NULL;
		if (dev) {
			device_lock(dev);
			if (dev->driver && dev->driver != &vmclock_gen_driver.driver)
				pr_warn("%s: bound to %s: the VM generation counter is not watched; unbind it and bind vmgenid_vmclock\n",
					dev_name(dev), dev->driver->name);
			device_unlock(dev);
		}
		acpi_dev_put(prev);
		prev = adev;
	}
	acpi_dev_put(prev);
}

static int __init vmclock_gen_init(void)
{
	int ret = platform_driver_register(&vmclock_gen_driver);

	if (!ret)
		vmclock_gen_warn_taken();
	return ret;
}
module_init(vmclock_gen_init);

static void __exit vmclock_gen_exit(void)
{
	platform_driver_unregister(&vmclock_gen_driver);
}
module_exit(vmclock_gen_exit);

MODULE_DESCRIPTION("Reseed the RNG when the vmclock VM generation counter changes");
MODULE_LICENSE("GPL");
