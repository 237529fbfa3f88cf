// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only: bind the vmclock ACPI device and do nothing with it, standing
 * in for ptp_vmclock (mainline 6.13+), which claims the same IDs. make
 * faults loads it before vmgenid_vmclock to see what the shim does when
 * another driver owns the device.
 */

#include <linux/acpi.h>
#include <linux/module.h>
#include <linux/platform_device.h>

static int vmclock_squatter_probe(struct platform_device *pdev)
{
	dev_info(&pdev->dev, "vmclock_squatter bound (test only)\n");
	return 0;
}

static const struct acpi_device_id vmclock_squatter_ids[] = {
	{ "AMZNC10C", 0 },
	{ "VMCLOCK", 0 },
	{ }
};
MODULE_DEVICE_TABLE(acpi, vmclock_squatter_ids);

static struct platform_driver vmclock_squatter_driver = {
	.probe = vmclock_squatter_probe,
	.driver = {
		.name = "vmclock_squatter",
		.acpi_match_table = vmclock_squatter_ids,
	},
};
module_platform_driver(vmclock_squatter_driver);

MODULE_DESCRIPTION("Test only: hold the vmclock device as another driver would");
MODULE_LICENSE("GPL");
