/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-2-Clause) */
/*
 * vmclock: a page of guest memory through which a hypervisor tells its guest
 * how the CPU counter relates to real time, and when the guest has been
 * disrupted (live-migrated, or loaded from a snapshot).
 *
 * The page is described to the guest by firmware: on ACPI systems a device
 * with _HID "AMZNC10C" and _CID "VMCLOCK" whose _CRS holds one memory range.
 * All multi-byte fields are little-endian.
 *
 * Update protocol (hypervisor side).  The fields after @seq_count are
 * protected by it, like a seqcount:
 *
 *   1. seq_count |= 1;                (an update is in progress)
 *   2. write fence (release);
 *   3. update fields (for a snapshot restore: disruption_marker and
 *      vm_generation_counter);
 *   4. write fence (release);
 *   5. seq_count += 1;                (even again, and different)
 *   6. if VMCLOCK_FLAG_NOTIFICATION_PRESENT is set, notify the guest (ACPI
 *      Notify on the device, typically raised through a Generic Event
 *      Device).  A notification is due each time seq_count becomes even.
 *
 * Read protocol (guest side):
 *
 *   do {
 *           seq = seq_count & ~1;     (an odd value never matches below)
 *           read fence (acquire);
 *           copy the fields;
 *           read fence;
 *   } while (seq_count != seq);
 *
 * A guest must bound that loop: a hypervisor that stops halfway leaves
 * seq_count odd forever.
 *
 * A field is present only if the structure's @size covers it, so the
 * structure can grow at its end without a new @version.
 */

#ifndef __VMCLOCK_ABI_H__
#define __VMCLOCK_ABI_H__

#include <linux/const.h>
#include <linux/types.h>

struct vmclock_abi {
	/* Constant after the guest boots. */
	__le32 magic;
#define VMCLOCK_MAGIC	0x4b4c4356	/* "VCLK" */
	__le32 size;		/* Size of the region holding this structure */
	__le16 version;		/* 1 */
	__u8 counter_id;	/* The CPU counter the time fields refer to */
#define VMCLOCK_COUNTER_ARM_VCNT	0
#define VMCLOCK_COUNTER_X86_TSC		1
#define VMCLOCK_COUNTER_INVALID		0xff
	__u8 time_type;		/* Time scale of time_sec/time_frac_sec */
#define VMCLOCK_TIME_UTC			0	/* Since 1970-01-01 00:00:00z */
#define VMCLOCK_TIME_TAI			1	/* Since 1970-01-01 00:00:00z */
#define VMCLOCK_TIME_MONOTONIC			2	/* Since an undefined epoch */
#define VMCLOCK_TIME_INVALID_SMEARED		3	/* Not supported */
#define VMCLOCK_TIME_INVALID_MAYBE_SMEARED	4	/* Not supported */

	/* Everything below is protected by seq_count. */
	__le32 seq_count;	/* Odd while the hypervisor is updating */

	/*
	 * Moves to a new, never repeated value whenever the CPU counter is
	 * disrupted (live migration, snapshot restore): calibrations of the
	 * counter against outside references are stale.
	 */
	__le64 disruption_marker;

	__le64 flags;
#define VMCLOCK_FLAG_TAI_OFFSET_VALID		_BITULL(0)
	/* Maintenance that will disrupt the counter is coming. */
#define VMCLOCK_FLAG_DISRUPTION_SOON		_BITULL(1)
#define VMCLOCK_FLAG_DISRUPTION_IMMINENT	_BITULL(2)
#define VMCLOCK_FLAG_PERIOD_ESTERROR_VALID	_BITULL(3)
#define VMCLOCK_FLAG_PERIOD_MAXERROR_VALID	_BITULL(4)
#define VMCLOCK_FLAG_TIME_ESTERROR_VALID	_BITULL(5)
#define VMCLOCK_FLAG_TIME_MAXERROR_VALID	_BITULL(6)
	/* Time computed from this page never goes backwards. */
#define VMCLOCK_FLAG_TIME_MONOTONIC		_BITULL(7)
	/* vm_generation_counter is maintained by the hypervisor. */
#define VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT	_BITULL(8)
	/* The hypervisor notifies the guest each time seq_count turns even. */
#define VMCLOCK_FLAG_NOTIFICATION_PRESENT	_BITULL(9)

	__u8 pad[2];
	__u8 clock_status;
#define VMCLOCK_STATUS_UNKNOWN		0
#define VMCLOCK_STATUS_INITIALIZING	1
#define VMCLOCK_STATUS_SYNCHRONIZED	2
#define VMCLOCK_STATUS_FREERUNNING	3
#define VMCLOCK_STATUS_UNRELIABLE	4

	/*
	 * The time in this page is never smeared; this is a hint for a guest
	 * that wants to offer a smeared clock of its own.
	 */
	__u8 leap_second_smearing_hint;
#define VMCLOCK_SMEARING_STRICT		0
#define VMCLOCK_SMEARING_NOON_LINEAR	1
#define VMCLOCK_SMEARING_UTC_SLS	2
	__le16 tai_offset_sec;	/* Two's complement */
	__u8 leap_indicator;
#define VMCLOCK_LEAP_NONE	0x00	/* No leap second nearby */
#define VMCLOCK_LEAP_PRE_POS	0x01	/* Positive leap second at month end */
#define VMCLOCK_LEAP_PRE_NEG	0x02	/* Negative leap second at month end */
#define VMCLOCK_LEAP_POS	0x03	/* During 23:59:60 */
#define VMCLOCK_LEAP_POST_POS	0x04
#define VMCLOCK_LEAP_POST_NEG	0x05

	/*
	 * The counter period is in units of 1/2^(64 + counter_period_shift)
	 * of a second; counter_value is the counter at the time below.
	 */
	__u8 counter_period_shift;
	__le64 counter_value;
	__le64 counter_period_frac_sec;
	__le64 counter_period_esterror_rate_frac_sec;
	__le64 counter_period_maxerror_rate_frac_sec;

	/* Time, in the scale given by time_type. */
	__le64 time_sec;
	__le64 time_frac_sec;		/* Units of 1/2^64 of a second */
	__le64 time_esterror_nanosec;
	__le64 time_maxerror_nanosec;

	/*
	 * Moves to a new value each time the VM is loaded from a snapshot
	 * (but not on live migration).  It is neither secret nor unique: two
	 * VMs restored from one snapshot may see the same value.
	 */
	__le64 vm_generation_counter;
};

#endif /* __VMCLOCK_ABI_H__ */
