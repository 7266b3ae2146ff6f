/*
 * nrf_uart.c: UART0 of the nRF51 / nRF52 (nrf_uart.h), the arm_board.h UART of both boards.
 *
 * Registers (nRF51 Reference Manual and nRF52840 Product Specification, "UART"): the nRF52's
 * UARTE0 shares the address, so ENABLE is cleared first (whatever a bootloader left); PSEL.RTS
 * and PSEL.CTS disconnected, CONFIG 0 (no parity, no flow control); ENABLE = 4. A byte waits in
 * RXD when EVENTS_RXDRDY is set; the event is cleared before RXD is read (Nordic's order).
 * Waiting sleeps: the RXDRDY interrupt is enabled in the UART and the NVIC but masked by
 * PRIMASK, so WFI wakes on it without a handler.
 */
#include <stdint.h>

#include "arm_board.h"
#include "nrf_uart.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40002000u
#define UART_STARTRX REG(UART0_BASE + 0x000)
#define UART_STARTTX REG(UART0_BASE + 0x008)
#define UART_RXDRDY REG(UART0_BASE + 0x108)
#define UART_TXDRDY REG(UART0_BASE + 0x11C)
#define UART_INTENSET REG(UART0_BASE + 0x304)
#define UART_ENABLE REG(UART0_BASE + 0x500)
#define UART_PSELRTS REG(UART0_BASE + 0x508)
#define UART_PSELTXD REG(UART0_BASE + 0x50C)
#define UART_PSELCTS REG(UART0_BASE + 0x510)
#define UART_PSELRXD REG(UART0_BASE + 0x514)
#define UART_RXD REG(UART0_BASE + 0x518)
#define UART_TXD REG(UART0_BASE + 0x51C)
#define UART_BAUDRATE REG(UART0_BASE + 0x524)
#define UART_CONFIG REG(UART0_BASE + 0x56C)
#define UART_INT_RXDRDY (1u << 2)
#define UART0_IRQ 2

#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ICPR0 REG(0xE000E280u)

/* BAUDRATE register values of the two manuals' tables; they differ at 921600 only */
static uint32_t baud_register(uint32_t baud)
{
    static const uint32_t rates[][2] = {
        {9600, 0x00275000u},   {19200, 0x004EA000u},  {38400, 0x009D5000u},
        {57600, 0x00EBF000u},  {115200, 0x01D7E000u}, {230400, 0x03AFB000u},
#if defined(KWS_MACHINE_NRF52)
        {460800, 0x075F7000u}, {921600, 0x0EBED000u}, {1000000, 0x10000000u},
#else
        {460800, 0x075F7000u}, {921600, 0x0EBEDFA4u}, {1000000, 0x10000000u},
#endif
    };
    uint32_t i;
    for (i = 0; i < sizeof rates / sizeof rates[0] - 1; i++)
        if (baud <= rates[i][0]) break;
    return rates[i][1];
}

void nrf_uart_start(uint32_t psel_txd, uint32_t psel_rxd, uint32_t baud)
{
    UART_ENABLE = 0;
    UART_PSELTXD = psel_txd;
    UART_PSELRXD = psel_rxd;
    UART_PSELRTS = UART_PSELCTS = 0xFFFFFFFFu;
    UART_CONFIG = 0;
    UART_BAUDRATE = baud_register(baud);
    UART_ENABLE = 4;
    UART_INTENSET = UART_INT_RXDRDY;
    NVIC_ISER0 = 1u << UART0_IRQ;
    UART_STARTTX = 1;
    UART_STARTRX = 1;
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
