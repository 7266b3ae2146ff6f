/*
 * kws_detect.h: the detector on the device (kws/detect/detector.py and kws/detect/posterior.py,
 * bit for bit): window outputs in, decisions out, integers only.
 *
 * Each window's pooled scores become Q15 posteriors through an integer softmax (a table of
 * 2^(-k / 2^KWS_DET_EXP2_BITS)); the posteriors of the last KWS_DET_SMOOTH windows are summed;
 * keyword k reaches its threshold when sum_k >= T_k * m (m: windows in the sum, T_k Q15); the
 * keyword with the highest sum among those that reach theirs fires, unless fewer than
 * `refractory` windows have ended since the last detection. `led` is on from a detection until
 * the refractory period (at least one window) is over: the port drives its pin with it.
 *
 *   kws_detect d;
 *   kws_detect_init(&d);                       // compiled thresholds and refractory period
 *   when a window ends (kws_stream_step returned 1):
 *       kws_detect_window(&d, pooled, &dec);   // 1: dec.fired is a keyword that fired
 *
 * Every constant comes from the generated kws_config.h (Detector.constants in
 * kws/detect/detector.py); the thresholds and the refractory period are in RAM, so the host
 * may change them (the DETECT command, firmware/PROTOCOL.md).
 */
#ifndef KWS_DETECT_H
#define KWS_DETECT_H

#include <stdint.h>

#include "kws_config.h"
#include "kws_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(KWS_DET_SMOOTH) || !defined(KWS_DET_REFRACTORY) || \
    !defined(KWS_DET_THRESHOLDS) || !defined(KWS_DET_KEYWORDS) || \
    !defined(KWS_DET_EXP2_BITS) || !defined(KWS_DET_EXP2_TABLE) || !defined(KWS_DET_SHIFT_R) || \
    !defined(KWS_DET_MULT) || !defined(KWS_DET_SHIFT_S) || !defined(KWS_DET_CLAMP)
#error "kws_config.h must define the KWS_DET_* detector constants (kws export writes them)"
#endif
#if KWS_DET_SMOOTH < 1 || KWS_DET_SMOOTH > 255 || KWS_N_CLASSES > 254 || \
    KWS_DET_REFRACTORY > 65534 || KWS_DET_SHIFT_R > 31 || KWS_DET_SHIFT_S < 1 || \
    KWS_DET_SHIFT_S > 31 || KWS_DET_EXP2_BITS < 1 || KWS_DET_EXP2_BITS > 12
#error "inconsistent KWS_DET_* detector constants"
#endif

#define KWS_DET_NONE 0xFF        /* no class */
#define KWS_DET_ONE 32768U       /* Q15 1.0 */
#define KWS_DET_SINCE_MAX 0xFFFF /* windows since the last detection: saturates here */

typedef struct kws_detect {
    uint16_t post[KWS_DET_SMOOTH][KWS_N_CLASSES]; /* Q15 posteriors of the last windows */
    uint16_t thr[KWS_N_CLASSES];                  /* Q15 thresholds (0xFFFF: never) */
    uint16_t refractory;                          /* windows */
    uint16_t since;                               /* windows since the last detection */
    uint8_t head;                                 /* next slot of post */
    uint8_t count;                                /* windows in post (at most SMOOTH) */
} kws_detect;

typedef struct kws_decision {
    uint32_t best_sum;  /* sum of the best keyword's posteriors over `windows` windows */
    uint32_t fired_sum; /* the same for the keyword that fired (0: none) */
    uint8_t best;       /* keyword with the highest sum (first of equals) */
    uint8_t fired;      /* keyword that fired, or KWS_DET_NONE */
    uint8_t windows;    /* m: windows in the sums */
    uint8_t led;        /* the detection pin */
} kws_decision;

/* Boot: the compiled thresholds and refractory period, no history. */
void kws_detect_init(kws_detect *d);

/* Listening anew: no history, no refractory period (settings kept). */
void kws_detect_reset(kws_detect *d);

/* Q15 posteriors of one window's pooled scores (the integer softmax). */
void kws_detect_posteriors(const int32_t pooled[KWS_N_CLASSES], uint16_t post[KWS_N_CLASSES]);

/* One window that ended: its decision in *out; returns 1 when a keyword fired. */
int kws_detect_window(kws_detect *d, const int32_t pooled[KWS_N_CLASSES], kws_decision *out);

#ifdef __cplusplus
}
#endif

#endif /* KWS_DETECT_H */
