/*
 * board_nrf51.c: the nRF51822 (Cortex-M0, 16 MHz) of the BBC micro:bit v1, as QEMU models it
 * (-M microbit): UART0 and TIMER0. The same firmware runs on a real micro:bit v1, whose
 * interface chip bridges UART0 (TX P0.24, RX P0.25) to USB.
 *
 * UART0 (0x40002000): started once, 8N1 at the requested baud (the nearest BAUDRATE
 * value). A byte waits in RXD when EVENTS_RXDRDY is set; the event is cleared before RXD is
 * read (Nordic's order). Waiting sleeps: the RXDRDY interrupt is enabled in the UART and the
 * NVIC but masked by PRIMASK, so WFI wakes on it without a handler.
 * TIMER0 (0x40008000): 32-bit timer at 16 MHz, read through a capture task. Under QEMU's
 * -icount shift=S, instructions = ticks * 1e9 / (16 MHz * 2^S) (16.384 ticks each at S=10).
 */
#include <stdint.h>

#include "arm_board.h"

#define NRF51_HZ 16000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40002000u
#define UART_STARTRX REG(UART0_BASE + 0x000)
#define UART_STARTTX REG(UART0_BASE + 0x008)
#define UART_RXDRDY REG(UART0_BASE + 0x108)
#define UART_TXDRDY REG(UART0_BASE + 0x11C)
#define UART_INTENSET REG(UART0_BASE + 0x304)
#define UART_ENABLE REG(UART0_BASE + 0x500)
#define UART_PSELTXD REG(UART0_BASE + 0x50C)
#define UART_PSELRXD REG(UART0_BASE + 0x514)
#define UART_RXD REG(UART0_BASE + 0x518)
#define UART_TXD REG(UART0_BASE + 0x51C)
#define UART_BAUDRATE REG(UART0_BASE + 0x524)
#define UART_INT_RXDRDY (1u << 2)
#define UART0_IRQ 2

#define TIMER0_BASE 0x40008000u
#define TIMER_START REG(TIMER0_BASE + 0x000)
#define TIMER_CAPTURE0 REG(TIMER0_BASE + 0x040)
#define TIMER_MODE REG(TIMER0_BASE + 0x504)
#define TIMER_BITMODE REG(TIMER0_BASE + 0x508)
#define TIMER_PRESCALER REG(TIMER0_BASE + 0x510)
#define TIMER_CC0 REG(TIMER0_BASE + 0x540)

#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ICPR0 REG(0xE000E280u)

/* BAUDRATE register values of the nRF51 reference manual */
static uint32_t baud_register(uint32_t baud)
{
    static const uint32_t rates[][2] = {
        {9600, 0x00275000u},   {19200, 0x004EA000u},  {38400, 0x009D5000u},
        {57600, 0x00EBF000u},  {115200, 0x01D7E000u}, {230400, 0x03AFB000u},
        {460800, 0x075F7000u}, {921600, 0x0EBEDFA4u}, {1000000, 0x10000000u},
    };
    uint32_t i;
    for (i = 0; i < sizeof rates / sizeof rates[0] - 1; i++)
        if (baud <= rates[i][0]) break;
    return rates[i][1];
}

void arm_board_init(uint32_t baud)
{
    UART_PSELTXD = 24;
    UART_PSELRXD = 25;
    UART_BAUDRATE = baud_register(baud);
    UART_ENABLE = 4;
    UART_INTENSET = UART_INT_RXDRDY;
    NVIC_ISER0 = 1u << UART0_IRQ;
    UART_STARTTX = 1;
    UART_STARTRX = 1;
    TIMER_MODE = 0;      /* timer */
    TIMER_BITMODE = 3;   /* 32 bit */
    TIMER_PRESCALER = 0; /* 16 MHz */
    TIMER_START = 1;
}

int arm_uart_available(void) { return UART_RXDRDY != 0; }

void arm_uart_wait(void)
{
    while (!UART_RXDRDY) {
        NVIC_ICPR0 = 1u << UART0_IRQ;
        if (UART_RXDRDY) break; /* arrived while clearing */
        __asm__ volatile("wfi" ::: "memory");
    }
}

uint8_t arm_uart_getc(void)
{
    arm_uart_wait();
    UART_RXDRDY = 0;
    return (uint8_t)UART_RXD;
}

void arm_uart_putc(uint8_t b)
{
    UART_TXDRDY = 0;
    UART_TXD = b;
    while (!UART_TXDRDY) {
    }
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
