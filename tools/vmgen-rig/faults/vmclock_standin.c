// SPDX-License-Identifier: GPL-2.0
/*
 * Test only: a stand-in for ptp_vmclock (Linux 6.13 and later), which owns
 * the vmclock ACPI device wherever it is loaded. Like it, this binds the
 * device, installs an ACPI notify handler when the hypervisor advertises
 * notifications, and registers /dev/vmclockN with N from an IDA, failing
 * its probe if that name is taken. It offers no PTP clock. The rig loads it
 * beside vmgenid_vmclock, in either order, to show that neither is in the
 * other's way; "notifications" in its device's sysfs folder counts the calls
 * of its handler.
 */

#include <linux/acpi.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/platform_device.h>

#include <uapi/linux/vmclock-abi.h>

static DEFINE_IDA(standin_ida);

struct standin {
	struct miscdevice misc;
	char name[16];
	int index;
	atomic_t notifications;
};

static const struct file_operations standin_fops = {
	.owner = THIS_MODULE,
};

static void standin_notify(acpi_handle handle, u32 event, void *data)
{
	struct standin *st = data;

	atomic_inc(&st->notifications);
}

static void standin_remove_notify(void *data)
{
	acpi_remove_notify_handler(ACPI_HANDLE((struct device *)data),
				   ACPI_DEVICE_NOTIFY, standin_notify);
}

static void standin_put_index(void *data)
{
	struct standin *st = data;

	ida_free(&standin_ida, st->index);
}

static void standin_deregister(void *data)
{
	misc_deregister(data);
}

static int standin_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct resource *res = platform_get_resource(pdev, IORESOURCE_MEM, 0);
	const struct vmclock_abi *clk;
	struct standin *st;
	int ret;

	st = devm_kzalloc(dev, sizeof(*st), GFP_KERNEL);
	if (!st || !res)
		return -ENODEV;
	clk = devm_memremap(dev, res->start, resource_size(res), MEMREMAP_WB);
	if (IS_ERR(clk))
		return PTR_ERR(clk);
	platform_set_drvdata(pdev, st);
	if (le64_to_cpu(clk->flags) & VMCLOCK_FLAG_NOTIFICATION_PRESENT) {
		if (ACPI_FAILURE(acpi_install_notify_handler(ACPI_HANDLE(dev),
							     ACPI_DEVICE_NOTIFY,
							     standin_notify, st)))
			return -ENODEV;
		ret = devm_add_action_or_reset(dev, standin_remove_notify, dev);
		if (ret)
			return ret;
	}
	st->index = ida_alloc(&standin_ida, GFP_KERNEL);
	if (st->index < 0)
		return st->index;
	ret = devm_add_action_or_reset(dev, standin_put_index, st);
	if (ret)
		return ret;
	snprintf(st->name, sizeof(st->name), "vmclock%d", st->index);
	st->misc.minor = MISC_DYNAMIC_MINOR;
	st->misc.name = st->name;
	st->misc.fops = &standin_fops;
	st->misc.parent = dev;
	ret = misc_register(&st->misc);
	if (ret) {
		dev_err(dev, "cannot register /dev/%s: %pe\n", st->name, ERR_PTR(ret));
		return ret;
	}
	ret = devm_add_action_or_reset(dev, standin_deregister, &st->misc);
	if (ret)
		return ret;
	dev_info(dev, "vmclock_standin bound, /dev/%s (test only)\n", st->name);
	return 0;
}

static ssize_t notifications_show(struct device *dev,
				  struct device_attribute *attr, char *buf)
{
	struct standin *st = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%d\n", atomic_read(&st->notifications));
}
static DEVICE_ATTR_RO(notifications);

static struct attribute *standin_attrs[] = {
	&dev_attr_notifications.attr,
	NULL
};
ATTRIBUTE_GROUPS(standin);

static const struct acpi_device_id standin_ids[] = {
	{ "AMZNC10C", 0 },
	{ "VMCLOCK", 0 },
	{ }
};
MODULE_DEVICE_TABLE(acpi, standin_ids);

static struct platform_driver standin_driver = {
	.probe = standin_probe,
	.driver = {
		.name = "vmclock_standin",
		.acpi_match_table = standin_ids,
		.dev_groups = standin_groups,
	},
};
module_platform_driver(standin_driver);

MODULE_DESCRIPTION("Test only: hold the vmclock device as ptp_vmclock does");
MODULE_LICENSE("GPL");
