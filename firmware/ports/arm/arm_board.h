/*
 * arm_board.h: what the Cortex-M port (main.c) needs from a machine: a UART and a counter.
 * One board_<machine>.c implements it (arm.mk: MACHINE): board_mps2.c, the Arm MPS2 FPGA
 * boards as QEMU models them (CMSDK APB UART0 and timer 0), board_nrf51.c, the BBC
 * micro:bit v1's nRF51822 (UART0, TIMER0), and the real boards, not simulated: board_nrf52.c
 * (Arduino Nano 33 BLE), board_ra4m1.c (Arduino Uno R4), board_rp2040.c (Raspberry Pi Pico).
 *
 * Counter: arm_count_between(a, b) turns two arm_ticks() readings into what the firmware
 * reports per frame. Built for QEMU with -icount (KWS_ICOUNT_SHIFT defined: one instruction
 * every 2^shift ns of virtual time) it is the exact number of instructions executed in
 * between; otherwise it is the timer's ticks (CPU cycles where the timer runs at F_CPU: the
 * DWT cycle counter of the M4 boards, SysTick at clk_sys on the Pico's M0+).
 */
#ifndef ARM_BOARD_H
#define ARM_BOARD_H

#include <stdint.h>

#define ARM_STACK_CANARY 0xC5C5C5C5u

#if defined(KWS_MACHINE_MPS2) || defined(KWS_MACHINE_NRF51)
#define ARM_N_IRQ 32
#elif defined(KWS_MACHINE_NRF52)
#define ARM_N_IRQ 48 /* nRF52840: interrupts 0..47 */
#elif defined(KWS_MACHINE_RA4M1)
#define ARM_N_IRQ 32 /* RA4M1: 32 ICU event links (IELSR0..31) */
#elif defined(KWS_MACHINE_RP2040)
#define ARM_N_IRQ 32 /* RP2040: 26 used of the M0+'s 32 */
#else
#error "arm_board.h: no machine (arm.mk passes -DKWS_MACHINE_<name>)"
#endif

void arm_board_init(uint32_t baud);
/* Sleep (WFI) until a received byte is waiting; the next received byte (waits first). */
void arm_uart_wait(void);
int arm_uart_available(void);
uint8_t arm_uart_getc(void);
void arm_uart_putc(uint8_t b);
/* A free-running tick count, and the count (instructions or cycles) between two of them. */
uint32_t arm_ticks(void);
uint32_t arm_count_between(uint32_t a, uint32_t b);
/* The CPU clock in Hz (what IDENTIFY reports). */
uint32_t arm_f_cpu(void);
/* The detection output: on (1) or off (0). */
void arm_board_led(uint8_t on);

__attribute__((noreturn)) void arm_stop(uint32_t reason);

/* The vector table (startup.c): a board behind a bootloader points VTOR at it. */
typedef void (*arm_vector)(void);
extern const arm_vector arm_vectors[16 + ARM_N_IRQ];

#endif /* ARM_BOARD_H */
