/*
 * board_mps2.c: the Arm MPS2 boards (AN385 Cortex-M3, AN386 Cortex-M4) as QEMU models them
 * (-M mps2-an385 / mps2-an386): the CMSDK APB UART0 and timer 0, both on the 25 MHz SYSCLK.
 *
 * UART0 (0x40004000): 1-byte receive buffer; QEMU holds further input back until DATA is
 * read, so nothing is lost. Waiting for input sleeps: RX interrupt enabled in the UART and
 * the NVIC but masked by PRIMASK, so WFI wakes on it without entering a handler.
 * Timer 0 (0x40000000): counts down from 0xFFFFFFFF at 25 MHz; arm_ticks() is its complement.
 * With QEMU's -icount shift=S, virtual time advances 2^S ns per instruction and the timer
 * reads are exact (QEMU ends a translation block at an I/O access), so
 * instructions = ticks * 1e9 / (25 MHz * 2^S), rounded (25.6 ticks per instruction at S=10).
 */
#include <stdint.h>

#include "arm_board.h"

#define MPS2_SYSCLK 25000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40004000u
#define UART_DATA REG(UART0_BASE + 0x00)
#define UART_STATE REG(UART0_BASE + 0x04)
#define UART_CTRL REG(UART0_BASE + 0x08)
#define UART_INTSTATUS REG(UART0_BASE + 0x0C)
#define UART_BAUDDIV REG(UART0_BASE + 0x10)
#define UART_STATE_TXFULL 0x01u
#define UART_STATE_RXFULL 0x02u
#define UART_CTRL_TXEN 0x01u
#define UART_CTRL_RXEN 0x02u
#define UART_CTRL_RXINTEN 0x08u
#define UART_INT_RX 0x02u
#define UART0_RX_IRQ 0 /* mps2-an385/an386: UART0 RX is external interrupt 0 */

#define TIMER0_BASE 0x40000000u
#define TIMER_CTRL REG(TIMER0_BASE + 0x00)
#define TIMER_VALUE REG(TIMER0_BASE + 0x04)
#define TIMER_RELOAD REG(TIMER0_BASE + 0x08)

#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ICPR0 REG(0xE000E280u)

void arm_board_init(uint32_t baud)
{
    UART_BAUDDIV = MPS2_SYSCLK / baud >= 16 ? MPS2_SYSCLK / baud : 16;
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1u; /* enable, no interrupt, internal clock */
}

int arm_uart_available(void) { return (UART_STATE & UART_STATE_RXFULL) != 0; }

void arm_uart_wait(void)
{
    while (!(UART_STATE & UART_STATE_RXFULL)) {
        UART_INTSTATUS = UART_INT_RX; /* write 1 to clear */
        NVIC_ICPR0 = 1u << UART0_RX_IRQ;
        if (UART_STATE & UART_STATE_RXFULL) break; /* arrived while clearing */
        __asm__ volatile("wfi" ::: "memory");
    }
}

uint8_t arm_uart_getc(void)
{
    arm_uart_wait();
    return (uint8_t)UART_DATA;
}

void arm_uart_putc(uint8_t b)
{
    while (UART_STATE & UART_STATE_TXFULL) {
    }
    UART_DATA = b;
}

uint32_t arm_ticks(void) { return ~TIMER_VALUE; }

uint32_t arm_count_between(uint32_t a, uint32_t b)
{
    uint32_t ticks = b - a;
#if defined(KWS_ICOUNT_SHIFT)
    const uint64_t per = (uint64_t)MPS2_SYSCLK << KWS_ICOUNT_SHIFT; /* ticks*1e9 per insn */
    return (uint32_t)(((uint64_t)ticks * 1000000000u + per / 2) / per);
#else
    return ticks;
#endif
}

uint32_t arm_f_cpu(void) { return MPS2_SYSCLK; }

/* The FPGA I/O block's LED register (user LED 0), which QEMU's MPS2 machines model. */
#define MPS2_FPGAIO_LED (*(volatile uint32_t *)0x40028000u)

void arm_board_led(uint8_t on) { MPS2_FPGAIO_LED = on ? 1u : 0u; }
