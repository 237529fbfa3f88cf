// SPDX-License-Identifier: GPL-2.0
/*
 * cx16-flags: does the x86 emulator running this keep EFLAGS intact across
 * CMPXCHG16B? QEMU's TCG before 8.0 computed the flags that instruction
 * keeps from a stale lazy-flags state at the start of a translation block,
 * so the operand of an ADD before it could land in EFLAGS (TF, IOPL and
 * the reserved bits 22 to 31 included). A guest kernel then takes a debug
 * exception or worse in code such as the slab allocator's fast path; the
 * rig saw it right after restores, which start every vCPU in that state.
 *
 * A system call ends the translation block, so the block after it starts
 * in that state; the ADD leaves a value with high bits in CC_SRC; PUSHF
 * shows what CMPXCHG16B left. Exit 0: intact in every try; 1: corrupted.
 */
#include <stdio.h>
#include <sys/syscall.h>

#define TRIES		1000
#define OPERAND		0xffff9fa826460000UL	/* a kernel pointer's shape */
#define RESERVED	0xffc00000UL		/* EFLAGS bits 22..31 */

int main(void)
{
	static unsigned __int128 mem __attribute__((aligned(16)));
	unsigned long flags, last = 0;
	int bad = 0;

	for (int i = 0; i < TRIES; i++) {
		register unsigned long one asm("r8") = 1;
		register unsigned long op asm("r9") = OPERAND;
		unsigned long nr = SYS_getpid;

		asm volatile("syscall\n\t"
			     "add %%r9, %%r8\n\t"
			     "lock cmpxchg16b %[m]\n\t"
			     "pushfq\n\t"
			     "popq %[f]"
			     : [f] "=r"(flags), [m] "+m"(mem), "+a"(nr), "+r"(one)
			     : "r"(op), "d"(0UL), "b"(0UL), "c"(0UL)
			     : "r11", "cc", "memory");
		if (flags & RESERVED) {
			bad++;
			last = flags;
		}
	}
	printf("cx16-flags: %d of %d tries corrupted EFLAGS%s", bad, TRIES,
	       bad ? "" : "\n");
	if (bad)
		printf(" (last %#lx)\n", last);
	return bad ? 1 : 0;
}
