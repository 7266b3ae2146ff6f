/*
 * startup.c: the vector table and reset handler of the Cortex-M port (firmware/ports/arm/).
 *
 * Plain C99 with GCC attributes, no CMSIS. Reset copies .data from flash, zeroes .bss, paints
 * the stack section (.stack, sections.ld) with a canary for kws_th_stack_peak(), then calls
 * main(). Any fault or unexpected exception stops the core: on the simulated board (QEMU with
 * semihosting) it exits QEMU with an error, which the host sees as a dead board.
 */
#include <stdint.h>

#include "arm_board.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _sstack[], _estack[];

void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((noreturn)) void arm_stop(uint32_t reason)
{
    __asm__ volatile("cpsid i");
#if defined(KWS_SEMIHOSTING)
    {
        /* SYS_EXIT (0x18) with an ADP_Stopped_* reason: QEMU exits (0 only for 0x20026) */
        register uint32_t r0 __asm__("r0") = 0x18;
        register uint32_t r1 __asm__("r1") = reason;
        __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    }
#else
    (void)reason;
#endif
    for (;;) __asm__ volatile("wfi");
}

#if defined(KWS_SEMIHOSTING_STDIO)
/* A host program run on the simulated board (firmware/tests/test_kernel.c, tests/test_arm.py):
 * newlib's rdimon gives it stdio and exit() through semihosting, and its argv is QEMU's
 * -semihosting-config arg=... list (SYS_GET_CMDLINE), split at spaces. */
#include <stdlib.h>
extern void initialise_monitor_handles(void);
int main(int argc, char **argv);

static int main_with_cmdline(void)
{
    static char line[512];
    static char *argv[16];
    uint32_t block[2] = {(uint32_t)(uintptr_t)line, sizeof line - 1};
    int argc = 0;
    char *p = line;
    initialise_monitor_handles();
    {
        register uint32_t r0 __asm__("r0") = 0x15; /* SYS_GET_CMDLINE */
        register uint32_t r1 __asm__("r1") = (uint32_t)(uintptr_t)block;
        __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
        if (r0 != 0) return 2;
    }
    line[block[1] < sizeof line ? block[1] : sizeof line - 1] = 0;
    while (*p && argc < 15) {
        while (*p == ' ') *p++ = 0;
        if (*p) argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    argv[argc] = 0;
    return main(argc, argv);
}
#else
int main(void);
#endif

void Fault_Handler(void)
{
    arm_stop(0x20024); /* ADP_Stopped_InternalError */
}

void Reset_Handler(void)
{
    /* masked from the first instruction: a bootloader may jump here with its interrupts on */
    __asm__ volatile("cpsid i" ::: "memory");
    uint32_t *src = _sidata, *dst = _sdata;
    while (dst < _edata) *dst++ = *src++;
    for (dst = _sbss; dst < _ebss; dst++) *dst = 0;
    /* below the current frame only: Reset_Handler itself runs on this stack */
    {
        uint32_t sp, *p;
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        for (p = _sstack; (uint32_t)(uintptr_t)p < sp - 64; p++) *p = ARM_STACK_CANARY;
    }
#if defined(KWS_SEMIHOSTING_STDIO)
    exit(main_with_cmdline());
#else
    main();
#endif
    arm_stop(0x20026); /* ADP_Stopped_ApplicationExit: main never returns */
}

/* Cortex-M vector table: initial SP, then the 15 system exceptions; the port polls its UART
 * with interrupts masked (PRIMASK), so no external interrupt handler is ever entered. */
__attribute__((used, section(".vectors"))) const arm_vector arm_vectors[16 + ARM_N_IRQ] = {
    (arm_vector)(uintptr_t)_estack,
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMon */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
    /* external interrupts (ARM_N_IRQ of them): never taken, left 0 */
};
