/*
 * kws_proto.h: the serial protocol of the keyword-spotter firmware (firmware/PROTOCOL.md).
 *
 * Portable C99 (no floats, no malloc, no Arduino headers): the frame decoder (COBS + CRC-16)
 * and the command dispatcher, compiled into the sketch for the device and on the host for
 * tests and fuzzing. Everything board-specific (serial I/O, the cycle timer, the stack) is
 * the port's: the sketch implements the kws_th_* functions below and moves the bytes
 * (the MLPerf Tiny split between th_ "test harness" port functions and the portable part).
 *
 *   static kws_proto p;
 *   kws_proto_init(&p);
 *   for each byte b received:
 *       if (kws_proto_feed(&p, b))          // a complete frame: a reply is ready
 *           kws_proto_emit(&p, put, ctx);   // its COBS bytes, delimiters included
 *
 * One request at a time (stop and wait): a reply is produced for every non-empty frame, and
 * the host sends its next request only after reading the reply.
 */
#ifndef KWS_PROTO_H
#define KWS_PROTO_H

#include <stdint.h>

/* Build options of the sketch (kws.codegen.export writes kws_config.h beside this file), seen by
 * every translation unit that includes this header, so the struct layout agrees. */
#if defined(__has_include)
#if __has_include("kws_config.h")
#include "kws_config.h"
#endif
#endif

#include "kws_model.h"

/* LISTEN (the stream schedule of kws_stream.h) when the sketch's kws_config.h defines it */
#if defined(KWS_STREAM_INSTANCES)
#include "kws_stream.h"
#define KWS_PROTO_LISTEN 1
/* DETECT (the detector of kws_detect.h deciding on every window) when kws_config.h has its
 * constants too */
#if defined(KWS_DET_SMOOTH)
#include "kws_detect.h"
#define KWS_PROTO_DETECT 1
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The ids and sizes the host shares (types, errors, flags, capabilities, sizes): generated
 * from kws/link/protocol.py, their one source (kws.codegen.protoids). */
#include "kws_proto_ids.h"

#define KWS_FW_VERSION_MAJOR 1
#define KWS_FW_VERSION_MINOR 0

#define KWS_F_KNOWN (KWS_F_RESET | KWS_F_HIDDEN)  /* the INFER flags this firmware knows */

/* Frames per INFER request (the port may raise it; RAM grows by KWS_N_IN per frame). */
#ifndef KWS_PROTO_MAX_FRAMES
#define KWS_PROTO_MAX_FRAMES 1
#endif

#define KWS_PROTO_MIN2(a, b) ((a) < (b) ? (a) : (b))
#define KWS_PROTO_MAX2(a, b) ((a) > (b) ? (a) : (b))

/* the longest request: INFER's (or DETECT's, setting a threshold per class) */
#define KWS_PROTO_DETECT_SET (3 + 2 * KWS_N_CLASSES)
#ifdef KWS_PROTO_DETECT
#define KWS_PROTO_RX_MAX (KWS_PROTO_OVERHEAD + \
    KWS_PROTO_MAX2(1 + KWS_PROTO_MAX_FRAMES * KWS_N_IN, KWS_PROTO_DETECT_SET))
#else
#define KWS_PROTO_RX_MAX (KWS_PROTO_OVERHEAD + 1 + KWS_PROTO_MAX_FRAMES * KWS_N_IN)
#endif
/* INFER reply payload: frames, flags, t (u16), per frame cycles (u32) and scores (int32) */
#define KWS_PROTO_INFER_FIXED 4
#define KWS_PROTO_INFER_PER_FRAME (4 + 4 * KWS_N_CLASSES)
#define KWS_PROTO_INFER_SCORES (KWS_PROTO_INFER_FIXED + \
                                KWS_PROTO_MAX_FRAMES * KWS_PROTO_INFER_PER_FRAME)
#define KWS_PROTO_INFER_HIDDEN (KWS_PROTO_INFER_SCORES + 2 * KWS_HIDDEN)
/* IDENTIFY reply payload: KWS_PROTO_IDENT_FIXED, then the class names (as many as fit) */
/* LISTEN reply payload: ended, flags, frame within the period (u16), cycles (u32), then the
 * ended window's pooled scores (int32 each) and, on a board that decides, the decision
 * (KWS_PROTO_LISTEN_DECISION bytes) */
#ifdef KWS_PROTO_DETECT
#define KWS_PROTO_LISTEN_MAX (KWS_PROTO_LISTEN_FIXED + 4 * KWS_N_CLASSES + \
                              KWS_PROTO_LISTEN_DECISION)
#define KWS_PROTO_DETECT_MAX (KWS_PROTO_DETECT_FIXED + 2 * KWS_N_CLASSES)
#else
#define KWS_PROTO_LISTEN_MAX (KWS_PROTO_LISTEN_FIXED + 4 * KWS_N_CLASSES)
#define KWS_PROTO_DETECT_MAX 0
#endif
#if KWS_PROTO_DETECT_MAX > KWS_PROTO_MAX_PAYLOAD || KWS_PROTO_DETECT_SET > KWS_PROTO_MAX_PAYLOAD
#error "DETECT does not fit a frame: too many classes"
#endif

#if KWS_PROTO_INFER_SCORES > KWS_PROTO_MAX_PAYLOAD
#error "INFER reply does not fit a frame: lower KWS_PROTO_MAX_FRAMES (or fewer classes)"
#endif
#if KWS_PROTO_RX_MAX - KWS_PROTO_OVERHEAD > KWS_PROTO_MAX_PAYLOAD
#error "INFER request does not fit a frame: lower KWS_PROTO_MAX_FRAMES"
#endif

#define KWS_PROTO_INFER_MAX KWS_PROTO_MIN2(KWS_PROTO_INFER_HIDDEN, KWS_PROTO_MAX_PAYLOAD)
/* the class-name list is truncated to what fits (sizeof a string literal counts its NUL) */
#define KWS_PROTO_IDENT_MAX \
    KWS_PROTO_MIN2(KWS_PROTO_IDENT_FIXED + sizeof(KWS_CLASS_LIST) - 1, KWS_PROTO_MAX_PAYLOAD)
#define KWS_PROTO_TX_MAX (KWS_PROTO_OVERHEAD + \
    KWS_PROTO_MAX2(KWS_PROTO_MAX2(KWS_PROTO_INFER_MAX, KWS_PROTO_IDENT_MAX), \
                   KWS_PROTO_MAX2(KWS_PROTO_MAX2(KWS_PROTO_STATS_PAYLOAD, KWS_PROTO_LISTEN_MAX), \
                                  KWS_PROTO_DETECT_MAX)))
#define KWS_PROTO_ERR_MAX (KWS_PROTO_OVERHEAD + 2)

typedef struct kws_proto_stats {
    uint32_t last_cycles; /* of the last kws_step (kws_th_timer_stop) */
    uint32_t inferences;  /* kws_step calls since boot */
    uint32_t frames_ok;   /* frames with a valid CRC and length */
    uint16_t crc_errors;  /* frames with a CRC error */
    uint16_t bad_frames;  /* COBS errors, short, bad length, overflow */
    uint16_t duplicates;  /* resent requests answered from the cache */
    uint16_t errors;      /* ERROR replies sent, any code */
} kws_proto_stats;

typedef struct kws_proto {
    kws_state model;
    uint16_t t; /* frames stepped since the last reset */
    kws_proto_stats stats;
    /* receiver: COBS decoder state, decoded bytes and their running CRC */
    uint16_t rx_len;
    uint16_t rx_crc;
    uint8_t cobs_left;  /* data bytes left in the current COBS block */
    uint8_t cobs_code;  /* the current block's code byte; 0 before the first */
    uint8_t rx_status;  /* 0, or KWS_E_OVERFLOW while the frame is too long */
    uint8_t rx_any;     /* a byte arrived since the last delimiter */
    /* the last valid request (for duplicates) and its reply */
    uint8_t have_last, last_type, last_seq, last_len;
    uint16_t last_crc;
    uint16_t tx_len;
    uint16_t err_len;
    const uint8_t *out; /* what kws_proto_emit sends: tx or err */
    uint16_t out_len;
    int32_t scores[KWS_N_CLASSES];
#ifdef KWS_PROTO_LISTEN
    kws_stream listen; /* LISTEN's instances; INFER's state is `model`, separate */
#endif
#ifdef KWS_PROTO_DETECT
    kws_detect detect;    /* decides on every window LISTEN ends */
    uint8_t overridden;   /* the host replaced the compiled thresholds (DETECT) */
#endif
    uint8_t rx[KWS_PROTO_RX_MAX];
    uint8_t tx[KWS_PROTO_TX_MAX];
    uint8_t err[KWS_PROTO_ERR_MAX]; /* replies to broken frames: the cached reply survives */
} kws_proto;

typedef void (*kws_proto_put)(uint8_t byte, void *ctx);

/* Boot: zero state, statistics and the receiver. */
void kws_proto_init(kws_proto *p);

/* One received byte. Returns 1 when it completed a non-empty frame: a reply is ready. */
int kws_proto_feed(kws_proto *p, uint8_t byte);

/* The ready reply, COBS encoded between two 0x00 delimiters, one byte at a time. */
void kws_proto_emit(const kws_proto *p, kws_proto_put put, void *ctx);

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of data,
 * continuing from crc (pass 0xFFFF to start). */
uint16_t kws_crc16(uint16_t crc, const uint8_t *data, uint16_t n);
uint16_t kws_crc16_byte(uint16_t crc, uint8_t b);

/* COBS encode n bytes (n <= 65535) into out (room for n + n / 254 + 2 bytes), with no
 * delimiter; returns the encoded length. For host tests and tools. */
uint16_t kws_cobs_encode(const uint8_t *in, uint16_t n, uint8_t *out);

/* ---- the port (implemented by the board layer, or by a host test) ------------------------- */

/* Around each kws_step: start a cycle count; stop it and return the cycles in between (the
 * port subtracts its own overhead). A port without a timer returns 0. */
void kws_th_timer_start(void);
uint32_t kws_th_timer_stop(void);
/* Peak stack use in bytes so far (0 if unknown). */
uint16_t kws_th_stack_peak(void);
/* F_CPU in Hz and the serial baud rate, for IDENTIFY; and KWS_CAP_* bits the port offers. */
uint32_t kws_th_f_cpu(void);
uint32_t kws_th_baud(void);
uint8_t kws_th_caps(void);
#ifdef KWS_PROTO_DETECT
/* After every window LISTEN ends: the detector's pin (1 from a detection until the refractory
 * period is over; kws_decision.led). The port drives its detection pin (an LED) with it. */
void kws_th_detect_pin(uint8_t on);
#endif

#ifdef __cplusplus
}
#endif

#endif /* KWS_PROTO_H */
