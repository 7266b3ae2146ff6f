/*
 * board_rp2040.c: the RP2040 (Cortex-M0+, 125 MHz) of the Raspberry Pi Pico, bare metal:
 * boot2_rp2040.c (first 256 bytes of flash) sets up execute-in-place and starts this image,
 * whose vector table is at 0x10000100 (ld/rp2040.ld). Not simulated: built and checked
 * structurally (tests/test_arm_boards.py) only.
 *
 * Registers (RP2040 datasheet; section numbers of that document):
 * - RESETS (0x4000C000, 2.14): IO_BANK0 (bit 5), PADS_BANK0 (8), PLL_SYS (12), UART0 (22)
 *   taken out of reset through the atomic clear alias (+0x3000, 2.1.2), RESET_DONE polled.
 * - XOSC (0x40024000, 2.16): the Pico's 12 MHz crystal; CTRL FREQ_RANGE 1-15 MHz (0xAA0),
 *   ENABLE 0xFAB; STARTUP DELAY 47 (x 256 cycles, about 1 ms); STATUS.STABLE (bit 31).
 * - PLL_SYS (0x40028000, 2.18): REFDIV 1, FBDIV 125 (VCO 1500 MHz), power up (PWR.PD,
 *   VCOPD cleared), CS.LOCK, POSTDIV1 6, POSTDIV2 2 (PRIM), POSTDIVPD cleared: 125 MHz.
 * - CLOCKS (0x40008000, 2.15): clk_ref from XOSC (CTRL.SRC 2), clk_sys kept on clk_ref
 *   while PLL_SYS is set up, then AUXSRC pll_sys and SRC aux (glitchless; SELECTED polled);
 *   clk_peri (UART clock) from clk_sys, ENABLE.
 * - IO_BANK0 (0x40014000, 2.19.6): GPIO0/1 FUNCSEL 2 (UART0 TX/RX), GPIO25 FUNCSEL 5 (SIO).
 * - UART0 (PL011, 0x40034000, 4.2): IBRD/FBRD = clk_peri * 4 / baud in 64ths (written before
 *   LCR_H, which latches them), LCR_H 8N1 with FIFOs, CR UARTEN/TXE/RXE; FR.RXFE, FR.TXFF
 *   polled. Waiting for input spins.
 * - SIO (0xD0000000, 2.3.1): GPIO_OE_SET/OUT_SET/OUT_CLR for the LED on GP25 (lit high).
 * - Counter: the M0+ has no DWT cycle counter; SysTick (0xE000E010, Armv6-M ARM) counts
 *   clk_sys cycles down from 2^24 - 1 (CLKSOURCE = processor clock). arm_ticks() is its
 *   complement and a difference is taken modulo 2^24: exact for intervals below 2^24 cycles
 *   (134 ms at 125 MHz, beyond any frame the firmware computes; a frame longer than that
 *   would be reported modulo 2^24).
 */
#include <stdint.h>

#include "arm_board.h"

#define RP2040_HZ 125000000u

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RESETS_RESET_CLR REG(0x4000C000u + 0x3000u)
#define RESETS_RESET_SET REG(0x4000C000u + 0x2000u)
#define RESETS_DONE REG(0x4000C008u)
#define RESET_IO_BANK0 (1u << 5)
#define RESET_PADS_BANK0 (1u << 8)
#define RESET_PLL_SYS (1u << 12)
#define RESET_UART0 (1u << 22)

#define XOSC_CTRL REG(0x40024000u)
#define XOSC_STATUS REG(0x40024004u)
#define XOSC_STARTUP REG(0x4002400Cu)

#define PLL_CS REG(0x40028000u)
#define PLL_PWR REG(0x40028004u)
#define PLL_FBDIV REG(0x40028008u)
#define PLL_PRIM REG(0x4002800Cu)
#define PLL_PWR_PD (1u << 0)
#define PLL_PWR_POSTDIVPD (1u << 3)
#define PLL_PWR_VCOPD (1u << 5)

#define CLK_REF_CTRL REG(0x40008030u)
#define CLK_REF_DIV REG(0x40008034u)
#define CLK_REF_SELECTED REG(0x40008038u)
#define CLK_SYS_CTRL REG(0x4000803Cu)
#define CLK_SYS_DIV REG(0x40008040u)
#define CLK_SYS_SELECTED REG(0x40008044u)
#define CLK_PERI_CTRL REG(0x40008048u)

#define GPIO_CTRL(n) REG(0x40014004u + 8u * (n))
#define SIO_OUT_SET REG(0xD0000014u)
#define SIO_OUT_CLR REG(0xD0000018u)
#define SIO_OE_SET REG(0xD0000024u)
#define LED_BIT (1u << 25)

#define UART0_BASE 0x40034000u
#define UART_DR REG(UART0_BASE + 0x00)
#define UART_FR REG(UART0_BASE + 0x18)
#define UART_IBRD REG(UART0_BASE + 0x24)
#define UART_FBRD REG(UART0_BASE + 0x28)
#define UART_LCR_H REG(UART0_BASE + 0x2C)
#define UART_CR REG(UART0_BASE + 0x30)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)

#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SYST_MASK 0x00FFFFFFu

static void unreset(uint32_t bits)
{
    RESETS_RESET_CLR = bits;
    while ((RESETS_DONE & bits) != bits) {
    }
}

static void clocks_init(void)
{
    XOSC_CTRL = 0xAA0u;              /* FREQ_RANGE 1-15 MHz */
    XOSC_STARTUP = 47u;
    XOSC_CTRL = 0xAA0u | (0xFABu << 12);
    while (!(XOSC_STATUS & (1u << 31))) {
    }
    CLK_SYS_CTRL &= ~1u;             /* clk_sys from clk_ref while the PLL changes */
    while (!(CLK_SYS_SELECTED & 1u)) {
    }
    CLK_REF_DIV = 1u << 8;
    CLK_REF_CTRL = 2u;               /* clk_ref = XOSC, 12 MHz */
    while (!(CLK_REF_SELECTED & (1u << 2))) {
    }
    RESETS_RESET_SET = RESET_PLL_SYS; /* a clean PLL, whatever ran before */
    unreset(RESET_PLL_SYS);
    PLL_CS = 1u;                      /* REFDIV */
    PLL_FBDIV = 125u;
    PLL_PWR &= ~(PLL_PWR_PD | PLL_PWR_VCOPD);
    while (!(PLL_CS & (1u << 31))) {
    }
    PLL_PRIM = (6u << 16) | (2u << 12);
    PLL_PWR &= ~PLL_PWR_POSTDIVPD;
    CLK_SYS_DIV = 1u << 8;
    CLK_SYS_CTRL = 0u;                /* AUXSRC pll_sys (0), SRC still clk_ref */
    CLK_SYS_CTRL = 1u;                /* SRC aux */
    while (!(CLK_SYS_SELECTED & 2u)) {
    }
    CLK_PERI_CTRL = 0u;               /* stop, then clk_sys (AUXSRC 0), enabled */
    CLK_PERI_CTRL = 1u << 11;
}

void arm_board_init(uint32_t baud)
{
    uint32_t div64;
    clocks_init();
    unreset(RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0);
    div64 = (4u * RP2040_HZ + baud / 2u) / baud; /* (clk_peri / (16 baud)) in 64ths */
    if (div64 < 64u) div64 = 64u;
    if (div64 > 0xFFFFu * 64u) div64 = 0xFFFFu * 64u;
    UART_IBRD = div64 >> 6;
    UART_FBRD = div64 & 63u;
    UART_LCR_H = (3u << 5) | (1u << 4); /* 8 bits, FIFOs on; latches IBRD/FBRD */
    UART_CR = (1u << 9) | (1u << 8) | 1u; /* RXE, TXE, UARTEN */
    GPIO_CTRL(0) = 2u;                   /* GP0 = UART0 TX */
    GPIO_CTRL(1) = 2u;                   /* GP1 = UART0 RX */
    SIO_OUT_CLR = LED_BIT;
    SIO_OE_SET = LED_BIT;
    GPIO_CTRL(25) = 5u;                  /* GP25 = SIO */
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5u;                       /* ENABLE, CLKSOURCE = processor clock */
}

int arm_uart_available(void) { return !(UART_FR & FR_RXFE); }

void arm_uart_wait(void)
{
    while (UART_FR & FR_RXFE) {
    }
}

uint8_t arm_uart_getc(void)
{
    arm_uart_wait();
    return (uint8_t)UART_DR;
}

void arm_uart_putc(uint8_t b)
{
    while (UART_FR & FR_TXFF) {
    }
    UART_DR = b;
}

uint32_t arm_ticks(void) { return SYST_MASK - (SYST_CVR & SYST_MASK); }
uint32_t arm_count_between(uint32_t a, uint32_t b) { return (b - a) & SYST_MASK; }
uint32_t arm_f_cpu(void) { return RP2040_HZ; }

void arm_board_led(uint8_t on)
{
    if (on)
        SIO_OUT_SET = LED_BIT;
    else
        SIO_OUT_CLR = LED_BIT;
}
