/*
 * boot2_rp2040.c: the RP2040's second-stage boot, the first 256 bytes of flash (0x10000000).
 * The bootrom copies them to SRAM (0x20041F00), checks the CRC-32 in the last 4 bytes (added
 * by kws/targets/arm/boot2.py, arm.mk) and jumps to the first byte in Thumb state. The code
 * must therefore be position independent (it is: PC-relative literals and branches only) and
 * at most 252 bytes (boot2.py refuses more).
 *
 * RP2040 datasheet: 2.8.1 (boot sequence, boot2), 4.10 (SSI, the DW_apb_ssi at 0x18000000).
 * It sets the flash interface up for execute-in-place with the standard 03h read command,
 * which every SPI flash answers: SSI disabled (SSIENR), SCK = clk_sys / 4 (BAUDR: 31.25 MHz
 * once clk_sys is 125 MHz, within the 03h command's 50 MHz), CTRLR0: standard SPI frame
 * format, 32-bit data frames (DFS_32 = 31), EEPROM-read transfer mode (TMOD = 3); CTRLR1 = 0
 * (one frame a read); SPI_CTRLR0: XIP command 03h, an 8-bit instruction (INST_L = 2) and a
 * 24-bit address (ADDR_L = 6 nibbles), both sent in standard SPI (TRANS_TYPE = 0); SSI enabled.
 * Then VTOR (0xE000ED08) = 0x10000100, the image's vector table, and the initial stack pointer
 * and reset vector are taken from it.
 */
#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

#define SSI_CTRLR0 REG(0x18000000u)
#define SSI_CTRLR1 REG(0x18000004u)
#define SSI_SSIENR REG(0x18000008u)
#define SSI_BAUDR REG(0x18000014u)
#define SSI_SPI_CTRLR0 REG(0x180000F4u)
#define VTOR REG(0xE000ED08u)
#define IMAGE 0x10000100u

__attribute__((noreturn, used)) void rp2040_boot2(void)
{
    const volatile uint32_t *image = (const volatile uint32_t *)IMAGE;
    SSI_SSIENR = 0;
    SSI_BAUDR = 4;
    SSI_CTRLR0 = (31u << 16) | (3u << 8);
    SSI_CTRLR1 = 0;
    SSI_SPI_CTRLR0 = (0x03u << 24) | (2u << 8) | (6u << 2);
    SSI_SSIENR = 1;
    VTOR = IMAGE;
    __asm__ volatile("msr msp, %0\n\tbx %1" : : "r"(image[0]), "r"(image[1]) : "memory");
    __builtin_unreachable();
}
