/*
 * board_ra4m1.c: the Renesas RA4M1 (Cortex-M4, 48 MHz) of the Arduino Uno R4 Minima / WiFi,
 * bare metal behind the Arduino bootloader (ld/ra4m1.ld: the image starts at 0x4000).
 * Not simulated: built and checked structurally (tests/test_arm_boards.py) only.
 *
 * Registers (RA4M1 Group User's Manual: Hardware, R01UH0887, the chapters named):
 * - Clocks ("Clock Generation Circuit", 0x4001E000): PRCR (0x4001E3FE, key 0xA5 in the high byte,
 *   PRC0 opens the clock registers), HOCOCR (start HOCO), OSCSF.HOCOSF (stable), MEMWAIT = 1
 *   (flash wait state, required above 32 MHz), SCKDIVCR (ICLK /1, PCLKA /1, PCLKB /2, PCLKC /1,
 *   PCLKD /1, FCLK /2), SCKSCR = 0 (HOCO). The HOCO frequency itself is set by the option-setting
 *   memory, OFS1.HOCOFRQ1 at 0x404 ("Option-Setting Memory"), which lies in the bootloader's
 *   flash: Arduino's bootloader sets 48 MHz (its USB needs it). It is read, not assumed: the clock
 *   reported (IDENTIFY) and the baud divisor follow it; above 48 MHz ICLK is halved.
 * - SCI2 ("Serial Communications Interface", 0x40070040; SCI clock PCLKB): MSTPCRB bit 29
 *   (0x40047000, "Low Power Modes") leaves module stop; asynchronous 8N1 (SMR = CKS),
 *   SEMR.ABCS/BGDM and BRR from PCLKB (the manual's BRR formulas: BRR = PCLK / (8 * 2^(2 CKS) *
 *   baud) - 1 at ABCS = BGDM = 1), polled: SSR.TDRE before writing TDR, SSR.RDRF before reading
 *   RDR; overrun/framing/parity flags cleared by writing 0 (a set ORER stops reception). Serial1
 *   pins: RX D0 = P301 (RXD2), TX D1 = P302 (TXD2), PSEL 0b00100 (SCI0/2/4/6/8) in P301PFS/P302PFS
 *   ("I/O Ports": 0x40040800 + 0x40 * port + 4 * pin), writable after PWPR.B0WI = 0, PFSWE = 1
 *   (0x40040D03).
 * - LED D13 = P111 on the Minima (Arduino variants/MINIMA), lit high: P111PFS made a plain output
 *   (the bootloader leaves it a PWM pin), then PORT1 PCNTR3 (0x40040028: POSR low half, PORR high
 *   half). On the Uno R4 WiFi D13 is P102 and P111 is D6: the LED stays dark there and D6 follows
 *   the detection instead.
 * - Cortex-M4 core: VTOR = this image's vector table, NVIC ICER/ICPR clear what the bootloader
 *   enabled (USB), DWT CYCCNT (DEMCR.TRCENA, DWT_CTRL.CYCCNTENA): CPU cycles.
 * Waiting for input spins (no WFI: the SCI's receive interrupt would need an ICU event link).
 */
#include <stdint.h>

#include "arm_board.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define REG16(addr) (*(volatile uint16_t *)(addr))
#define REG8(addr) (*(volatile uint8_t *)(addr))

#define SCKDIVCR REG32(0x4001E020u)
#define SCKSCR REG8(0x4001E026u)
#define MEMWAIT REG8(0x4001E031u)
#define HOCOCR REG8(0x4001E036u)
#define OSCSF REG8(0x4001E03Cu)
#define PRCR REG16(0x4001E3FEu)
#define MSTPCRB REG32(0x40047000u)
#define MSTPB_SCI2 (1u << 29)

#define SCI2_BASE 0x40070040u
#define SCI_SMR REG8(SCI2_BASE + 0)
#define SCI_BRR REG8(SCI2_BASE + 1)
#define SCI_SCR REG8(SCI2_BASE + 2)
#define SCI_TDR REG8(SCI2_BASE + 3)
#define SCI_SSR REG8(SCI2_BASE + 4)
#define SCI_RDR REG8(SCI2_BASE + 5)
#define SCI_SEMR REG8(SCI2_BASE + 7)
#define SCR_TE 0x20u
#define SCR_RE 0x10u
#define SSR_TDRE 0x80u
#define SSR_RDRF 0x40u
#define SSR_ERRORS 0x38u /* ORER, FER, PER */
#define SEMR_RXDESEL 0x80u /* start bit: a falling edge on RXD (not a low level) */
#define SEMR_BGDM 0x40u
#define SEMR_ABCS 0x10u

#define PWPR REG8(0x40040D03u)
#define PFS(port, pin) REG32(0x40040800u + 0x40u * (port) + 4u * (pin))
#define PFS_PSEL(x) ((uint32_t)(x) << 24)
#define PFS_PMR (1u << 16)
#define PFS_PDR (1u << 2)
#define PORT1_PCNTR3 REG32(0x40040028u)
#define LED_BIT (1u << 11) /* P111 */

#define SCB_VTOR REG32(0xE000ED08u)
#define DEMCR REG32(0xE000EDFCu)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define NVIC_ICER(n) REG32(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))

static uint32_t iclk_hz = 48000000u;

/* OFS1.HOCOFRQ1 (bits 14:12): 000 24 MHz, 010 32 MHz, 100 48 MHz, 101 64 MHz */
static uint32_t hoco_hz(void)
{
    const volatile uint32_t *ofs1 = (const volatile uint32_t *)0x00000404u;
    __asm__("" : "+r"(ofs1)); /* an address gcc takes for a null-page access (-Warray-bounds) */
    switch ((*ofs1 >> 12) & 7u) {
    case 0: return 24000000u;
    case 2: return 32000000u;
    case 5: return 64000000u;
    default: return 48000000u;
    }
}

static void clock_init(void)
{
    uint32_t hoco = hoco_hz(), ick = hoco > 48000000u ? 1u : 0u; /* ICLK at most 48 MHz */
    iclk_hz = hoco >> ick;
    PRCR = 0xA501u;                      /* PRC0: clock registers writable */
    HOCOCR = 0;                          /* HOCO on (it may already run: the bootloader's) */
    while (!(OSCSF & 1u)) {
    }
    MEMWAIT = iclk_hz > 32000000u ? 1u : 0u;
    /* FCK [30:28] /2, ICK [26:24], PCKA [14:12] = ICK, PCKB [10:8] = ICK + 1, PCKC, PCKD */
    SCKDIVCR = (ick + 1u) << 28 | ick << 24 | ick << 12 | (ick + 1u) << 8 | ick << 4 | ick;
    SCKSCR = 0;                          /* system clock: HOCO */
    PRCR = 0xA500u;
}

static void sci_baud(uint32_t pclk, uint32_t baud)
{
    uint32_t cks, sh;
    for (cks = 0; cks < 4; cks++)
        for (sh = 3; sh <= 5; sh++) { /* 8, 16, 32 base clocks a bit (times 4^CKS) */
            uint32_t div = (baud << sh) << (2u * cks), n = (pclk + div / 2u) / div;
            if (n >= 1u && n <= 256u) {
                SCI_SMR = (uint8_t)cks;
                SCI_SEMR = (uint8_t)(SEMR_RXDESEL | (sh == 3   ? SEMR_ABCS | SEMR_BGDM
                                                     : sh == 4 ? SEMR_ABCS
                                                               : 0u));
                SCI_BRR = (uint8_t)(n - 1u);
                return;
            }
        }
}

void arm_board_init(uint32_t baud)
{
    uint32_t t0;
    SCB_VTOR = (uint32_t)(uintptr_t)arm_vectors;
    NVIC_ICER(0) = 0xFFFFFFFFu;
    NVIC_ICPR(0) = 0xFFFFFFFFu;
    clock_init();
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */

    MSTPCRB &= ~MSTPB_SCI2;
    SCI_SCR = 0;
    PWPR = 0;          /* B0WI = 0, then PFSWE = 1 */
    PWPR = 0x40u;
    PFS(3, 1) = PFS_PSEL(4);           /* P301 = RXD2: select, then hand to the peripheral */
    PFS(3, 1) = PFS_PSEL(4) | PFS_PMR;
    PFS(3, 2) = PFS_PSEL(4);           /* P302 = TXD2 */
    PFS(3, 2) = PFS_PSEL(4) | PFS_PMR;
    PFS(1, 11) = PFS_PDR;              /* P111: GPIO output, low */
    PWPR = 0;
    PWPR = 0x80u;      /* PFSWE = 0, B0WI = 1 */
    PORT1_PCNTR3 = LED_BIT << 16;

    sci_baud(iclk_hz / 2u, baud);      /* PCLKB = ICLK / 2 */
    t0 = DWT_CYCCNT;                   /* one bit time before enabling (the manual's order) */
    while (DWT_CYCCNT - t0 < iclk_hz / baud + 1u) {
    }
    SCI_SCR = SCR_TE | SCR_RE;
}

int arm_uart_available(void)
{
    uint8_t s = SCI_SSR;
    if (s & SSR_ERRORS) SCI_SSR = (uint8_t)~SSR_ERRORS; /* 0 clears; 1 leaves the others */
    return (s & SSR_RDRF) != 0;
}

void arm_uart_wait(void)
{
    while (!arm_uart_available()) {
    }
}

uint8_t arm_uart_getc(void)
{
    arm_uart_wait();
    return SCI_RDR;
}

void arm_uart_putc(uint8_t b)
{
    while (!(SCI_SSR & SSR_TDRE)) {
    }
    SCI_TDR = b;
}

uint32_t arm_ticks(void) { return DWT_CYCCNT; }
uint32_t arm_count_between(uint32_t a, uint32_t b) { return b - a; }
uint32_t arm_f_cpu(void) { return iclk_hz; }

void arm_board_led(uint8_t on) { PORT1_PCNTR3 = on ? LED_BIT : LED_BIT << 16; }
