/*
 * board_nrf52.c: the nRF52840 (Cortex-M4F, 64 MHz) of the Arduino Nano 33 BLE (Sense), bare
 * metal behind the Arduino bootloader (ld/nrf52.ld: the image starts at 0x10000).
 * Not simulated: built and checked structurally (tests/test_arm_boards.py) only.
 *
 * Registers (nRF52840 Product Specification, the chapters named):
 * - CLOCK (0x40000000, "CLOCK - Clock control"): TASKS_HFCLKSTART, EVENTS_HFCLKSTARTED: the 64 MHz
 *   crystal oscillator (HFXO) replaces the RC oscillator, so the UART's baud rate is accurate.
 * - UART0 (0x40002000, "UART - Universal asynchronous receiver/transmitter", the legacy UART,
 *   deprecated but present, same layout as the nRF51's): nrf_uart.c, shared with the micro:bit;
 *   PSEL.TXD/RXD = pin | port << 5 with CONNECT (bit 31) 0. Serial1's pins: TX D1 = P1.03,
 *   RX D0 = P1.10 (the profile's; Arduino's Nano 33 BLE pin map).
 * - GPIO P0 (0x50000000, "GPIO - General purpose input/output"): DIRSET, OUTSET, OUTCLR; the LED
 *   on D13 = P0.13 is lit by a high level (the Arduino core's LED_BUILTIN, digitalWrite(HIGH) =
 *   on).
 * - Cortex-M4 core (Armv7-M ARM): VTOR (0xE000ED08) points at this image's vector table (the
 *   bootloader's own is at 0); NVIC ICER/ICPR drop what the bootloader enabled (USB); DEMCR TRCENA
 *   + DWT CTRL CYCCNTENA: the cycle counter, at the CPU clock.
 */
#include <stdint.h>

#include "arm_board.h"
#include "nrf_uart.h"

#define NRF52_HZ 64000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define CLOCK_HFCLKSTART REG(0x40000000u)
#define CLOCK_HFCLKSTARTED REG(0x40000100u)

#define PSEL(port, pin) ((uint32_t)(pin) | ((uint32_t)(port) << 5))

#define P0_OUTSET REG(0x50000508u)
#define P0_OUTCLR REG(0x5000050Cu)
#define P0_DIRSET REG(0x50000518u)
#define LED_PIN 13

#define SCB_VTOR REG(0xE000ED08u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define NVIC_ICER(n) REG(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n) REG(0xE000E280u + 4u * (n))

void arm_board_init(uint32_t baud)
{
    SCB_VTOR = (uint32_t)(uintptr_t)arm_vectors;
    NVIC_ICER(0) = NVIC_ICER(1) = 0xFFFFFFFFu;
    NVIC_ICPR(0) = NVIC_ICPR(1) = 0xFFFFFFFFu;
    CLOCK_HFCLKSTARTED = 0;
    CLOCK_HFCLKSTART = 1;
    while (!CLOCK_HFCLKSTARTED) {
    }
    nrf_uart_start(PSEL(1, 3), PSEL(1, 10), baud); /* TX P1.03 = D1, RX P1.10 = D0 */
    P0_OUTCLR = 1u << LED_PIN;
    P0_DIRSET = 1u << LED_PIN;
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
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
