/*
 * board_nrf51.c: the nRF51822 (Cortex-M0, 16 MHz) of the BBC micro:bit v1, as QEMU models it
 * (-M microbit): UART0 and TIMER0. The same firmware runs on a real micro:bit v1, whose
 * interface chip bridges UART0 (TX P0.24, RX P0.25) to USB.
 *
 * UART0 (0x40002000): nrf_uart.c, shared with the nRF52, on P0.24 / P0.25.
 * TIMER0 (0x40008000): 32-bit timer at 16 MHz, read through a capture task. Under QEMU's
 * -icount shift=S, instructions = ticks * 1e9 / (16 MHz * 2^S) (16.384 ticks each at S=10).
 */
#include <stdint.h>

#include "arm_board.h"
#include "nrf_uart.h"

#define NRF51_HZ 16000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define TIMER0_BASE 0x40008000u
#define TIMER_START REG(TIMER0_BASE + 0x000)
#define TIMER_CAPTURE0 REG(TIMER0_BASE + 0x040)
#define TIMER_MODE REG(TIMER0_BASE + 0x504)
#define TIMER_BITMODE REG(TIMER0_BASE + 0x508)
#define TIMER_PRESCALER REG(TIMER0_BASE + 0x510)
#define TIMER_CC0 REG(TIMER0_BASE + 0x540)


void arm_board_init(uint32_t baud)
{
    nrf_uart_start(24, 25, baud); /* TX P0.24, RX P0.25 */
    TIMER_MODE = 0;      /* timer */
    TIMER_BITMODE = 3;   /* 32 bit */
    TIMER_PRESCALER = 0; /* 16 MHz */
    TIMER_START = 1;
}

uint32_t arm_ticks(void)
{
    TIMER_CAPTURE0 = 1;
    return TIMER_CC0;
}

uint32_t arm_count_between(uint32_t a, uint32_t b)
{
    uint32_t ticks = b - a;
#if defined(KWS_ICOUNT_SHIFT)
    const uint64_t per = (uint64_t)NRF51_HZ << KWS_ICOUNT_SHIFT; /* ticks*1e9 per insn */
    return (uint32_t)(((uint64_t)ticks * 1000000000u + per / 2) / per);
#else
    return ticks;
#endif
}

uint32_t arm_f_cpu(void) { return NRF51_HZ; }

/* The micro:bit's LEDs are a row/column matrix: not driven yet (the decision is still
 * reported over the link). */
void arm_board_led(uint8_t on) { (void)on; }
