/*
 * board_nrf52.c: the nRF52840 (Cortex-M4F, 64 MHz) of the Arduino Nano 33 BLE (Sense), bare
 * metal behind the Arduino bootloader (ld/nrf52.ld: the image starts at 0x10000).
 * Not simulated: built and checked structurally (tests/test_arm_boards.py) only.
 *
 * Registers (nRF52840 Product Specification, the chapters named):
 * - CLOCK (0x40000000, "CLOCK - Clock control"): TASKS_HFCLKSTART, EVENTS_HFCLKSTARTED: the 64 MHz
 *   crystal oscillator (HFXO) replaces the RC oscillator, so the UART's baud rate is accurate.
 * - UART0 (0x40002000, "UART - Universal asynchronous receiver/transmitter", the legacy UART,
 *   deprecated but present, same layout as the nRF51's: board_nrf51.c): ENABLE = 4, PSEL.TXD/RXD =
 *   pin | port << 5 with CONNECT (bit 31) 0, PSEL.RTS/CTS disconnected, CONFIG 0 (8N1, no flow
 *   control), BAUDRATE from the spec's table (the nearest listed rate at or above the one asked
 *   for; 921600 differs from the nRF51's). Serial1's pins: TX D1 = P1.03, RX D0 = P1.10 (the
 *   profile's; Arduino's Nano 33 BLE pin map). Waiting for input sleeps (WFI) with the RXDRDY
 *   interrupt enabled in the UART and the NVIC (interrupt 2) but masked by PRIMASK.
 * - GPIO P0 (0x50000000, "GPIO - General purpose input/output"): DIRSET, OUTSET, OUTCLR; the LED
 *   on D13 = P0.13 is lit by a high level (the Arduino core's LED_BUILTIN, digitalWrite(HIGH) =
 *   on).
 * - Cortex-M4 core (Armv7-M ARM): VTOR (0xE000ED08) points at this image's vector table (the
 *   bootloader's own is at 0); NVIC ICER/ICPR drop what the bootloader enabled (USB); DEMCR TRCENA
 *   + DWT CTRL CYCCNTENA: the cycle counter, at the CPU clock.
 */
#include <stdint.h>

#include "arm_board.h"

#define NRF52_HZ 64000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define CLOCK_HFCLKSTART REG(0x40000000u)
#define CLOCK_HFCLKSTARTED REG(0x40000100u)

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
#define PSEL(port, pin) ((uint32_t)(pin) | ((uint32_t)(port) << 5))

#define P0_OUTSET REG(0x50000508u)
#define P0_OUTCLR REG(0x5000050Cu)
#define P0_DIRSET REG(0x50000518u)
#define LED_PIN 13

#define SCB_VTOR REG(0xE000ED08u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ICER(n) REG(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n) REG(0xE000E280u + 4u * (n))

static uint32_t baud_register(uint32_t baud)
{
    static const uint32_t rates[][2] = {
        {9600, 0x00275000u},   {19200, 0x004EA000u},  {38400, 0x009D5000u},
        {57600, 0x00EBF000u},  {115200, 0x01D7E000u}, {230400, 0x03AFB000u},
        {460800, 0x075F7000u}, {921600, 0x0EBED000u}, {1000000, 0x10000000u},
    };
    uint32_t i;
    for (i = 0; i < sizeof rates / sizeof rates[0] - 1; i++)
        if (baud <= rates[i][0]) break;
    return rates[i][1];
}

void arm_board_init(uint32_t baud)
{
    SCB_VTOR = (uint32_t)(uintptr_t)arm_vectors;
    NVIC_ICER(0) = NVIC_ICER(1) = 0xFFFFFFFFu;
    NVIC_ICPR(0) = NVIC_ICPR(1) = 0xFFFFFFFFu;
    CLOCK_HFCLKSTARTED = 0;
    CLOCK_HFCLKSTART = 1;
    while (!CLOCK_HFCLKSTARTED) {
    }
    UART_ENABLE = 0; /* whatever the bootloader left (UARTE0 shares the address) */
    UART_PSELTXD = PSEL(1, 3);
    UART_PSELRXD = PSEL(1, 10);
    UART_PSELRTS = UART_PSELCTS = 0xFFFFFFFFu;
    UART_CONFIG = 0;
    UART_BAUDRATE = baud_register(baud);
    UART_ENABLE = 4;
    UART_INTENSET = UART_INT_RXDRDY;
    NVIC_ISER0 = 1u << UART0_IRQ;
    UART_STARTTX = 1;
    UART_STARTRX = 1;
    P0_OUTCLR = 1u << LED_PIN;
    P0_DIRSET = 1u << LED_PIN;
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
}

int arm_uart_available(void) { return UART_RXDRDY != 0; }

void arm_uart_wait(void)
{
    while (!UART_RXDRDY) {
        NVIC_ICPR(0) = 1u << UART0_IRQ;
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

uint32_t arm_ticks(void) { return DWT_CYCCNT; }
uint32_t arm_count_between(uint32_t a, uint32_t b) { return b - a; }
uint32_t arm_f_cpu(void) { return NRF52_HZ; }

void arm_board_led(uint8_t on)
{
    if (on)
        P0_OUTSET = 1u << LED_PIN;
    else
        P0_OUTCLR = 1u << LED_PIN;
}
