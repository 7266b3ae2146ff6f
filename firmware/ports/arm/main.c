/*
 * main.c: the keyword-spotter firmware for Cortex-M boards: the serial protocol of
 * firmware/PROTOCOL.md (firmware/protocol/kws_proto.c) around the portable C kernel
 * (firmware/kernel/kws_model.c), both compiled unchanged from the sketch folder kws export
 * writes. This file is the port (the kws_th_* functions of kws_proto.h) and the main loop;
 * the machine's UART and counter are behind arm_board.h.
 *
 * Interrupts stay masked (PRIMASK) all the time: input is polled, sleeping in WFI.
 * Counter: around each kws_step(), what arm_count_between() counts (instructions under QEMU
 * -icount, exact; arm_board.h), minus the cost of the measurement itself, calibrated at boot.
 * Stack: the .stack section is painted at reset (startup.c); the peak is the deepest word no
 * longer painted.
 */
#include <stdint.h>

#include "arm_board.h"
#include "kws_config.h"
#include "kws_proto.h"

#if defined(KWS_CONFIG_BAUD)
#define KWS_SERIAL_BAUD KWS_CONFIG_BAUD
#elif defined(KWS_BAUD)
#define KWS_SERIAL_BAUD KWS_BAUD
#else
#define KWS_SERIAL_BAUD 115200
#endif

extern uint32_t _sstack[], _estack[];

static kws_proto proto;
static uint32_t timer_t0, timer_overhead;

/* ---- the port: kws_th_* (declared in kws_proto.h) ---------------------------------------- */

__attribute__((noinline)) void kws_th_timer_start(void) { timer_t0 = arm_ticks(); }

__attribute__((noinline)) uint32_t kws_th_timer_stop(void)
{
    uint32_t n = arm_count_between(timer_t0, arm_ticks());
    return n > timer_overhead ? n - timer_overhead : 0;
}

uint16_t kws_th_stack_peak(void)
{
    const uint32_t *p = _sstack;
    uint32_t bytes;
    while (p < _estack && *p == ARM_STACK_CANARY) p++;
    bytes = (uint32_t)((const uint8_t *)_estack - (const uint8_t *)p);
    return bytes > 0xFFFFu ? 0xFFFFu : (uint16_t)bytes;
}

uint32_t kws_th_f_cpu(void) { return arm_f_cpu(); }
uint32_t kws_th_baud(void) { return KWS_SERIAL_BAUD; }
uint8_t kws_th_caps(void) { return KWS_CAP_TIMER | KWS_CAP_STACK; }
void kws_th_detect_pin(uint8_t on) { arm_board_led(on); }

/* ---- the loop ------------------------------------------------------------------------------ */

static void put_byte(uint8_t b, void *ctx)
{
    (void)ctx;
    arm_uart_putc(b);
}

int main(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
    arm_board_init(KWS_SERIAL_BAUD);
    timer_overhead = 0;
    kws_th_timer_start(); /* calibration: the measurement with nothing in it */
    timer_overhead = kws_th_timer_stop();
    kws_proto_init(&proto);
    for (;;) {
        uint8_t c = arm_uart_getc();
        if (kws_proto_feed(&proto, c)) kws_proto_emit(&proto, put_byte, 0);
    }
}
