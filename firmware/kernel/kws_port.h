/*
 * kws_port.h: where the model's constant arrays live and how the kernel reads them.
 *
 * AVR (ATmega328P): the arrays are in flash (PROGMEM) and read with pgm_read_byte (lpm).
 * Anywhere else (host tests, Cortex-M): ordinary const data, read by plain dereference.
 * A port may predefine KWS_PROGMEM, KWS_READ_U8 and KWS_READ_U16 to override them.
 * KWS_READ_U8_STORED reads a byte as it is stored, never as the compiler knows it: the
 * parameter check compares the stored block against the compiled constants, and a plain read
 * of const data lets an optimising compiler fold that comparison away (gcc -O2 on Arm did).
 */
#ifndef KWS_PORT_H
#define KWS_PORT_H

#include <stdint.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>
#ifndef KWS_PROGMEM
#define KWS_PROGMEM PROGMEM
#endif
#ifndef KWS_READ_U8
#define KWS_READ_U8(ptr) pgm_read_byte(ptr)
#endif
#ifndef KWS_READ_U16
#define KWS_READ_U16(ptr) pgm_read_word(ptr)
#endif
#ifndef KWS_READ_U8_STORED
#define KWS_READ_U8_STORED(ptr) pgm_read_byte(ptr)   /* lpm in asm volatile: never folded */
#endif
#else
#ifndef KWS_PROGMEM
#define KWS_PROGMEM
#endif
#ifndef KWS_READ_U8
#define KWS_READ_U8(ptr) (*(const uint8_t *)(ptr))
#endif
#ifndef KWS_READ_U16
#define KWS_READ_U16(ptr) (*(const uint16_t *)(ptr))
#endif
#ifndef KWS_READ_U8_STORED
#define KWS_READ_U8_STORED(ptr) (*(const volatile uint8_t *)(ptr))
#endif
#endif

/* Kept by the linker even under -flto -Wl,--gc-sections: the model arrays are counted byte
 * for byte against the Python byte count (kws.intmodel.IntModel.n_bytes). */
#if defined(__GNUC__)
#define KWS_KEEP __attribute__((used))
#else
#define KWS_KEEP
#endif

#endif /* KWS_PORT_H */
