/*
 * kws_model.h: one FastGRNN step of the keyword spotter, in integers only.
 *
 * Portable C99: no floats, no malloc, no Arduino headers. The same file runs on the host
 * (golden-vector tests), on the ATmega328P (weights in PROGMEM) and on Cortex-M. The model
 * (shapes, formats, shifts, arrays) comes from the generated "model_data.h" (kws.export);
 * the arithmetic is kws/quant/arith.py's, bit for bit (see kws_model.c).
 *
 *   kws_state s;
 *   kws_reset(&s);                      // h = 0
 *   for each 10 ms frame x (KWS_N_IN int8 log-mel bins, quantised by the host):
 *       kws_step(&s, x, scores);        // KWS_N_CLASSES int32 scores, Q(KWS_SCORE_Q)
 *
 * The arithmetic is the model's (KWS_STATE_BITS in model_data.h): int16 state (16) or int8
 * state (8), kws/quant/arith.py; the firmware is generated per model, so a build holds one.
 */
#ifndef KWS_MODEL_H
#define KWS_MODEL_H

#include <stdint.h>

#include "model_data.h"

#ifdef __cplusplus
extern "C" {
#endif

#if KWS_STATE_BITS == 8
typedef struct kws_state {
    int8_t h[KWS_HIDDEN];    /* hidden state, Q6 (the int8-state arithmetic) */
} kws_state;
#else
typedef struct kws_state {
    int16_t h[KWS_HIDDEN];   /* hidden state, Q14 */
} kws_state;
#endif

/* Start a new stream: h = 0. */
void kws_reset(kws_state *s);

/* One frame: update s->h from x and write every class score. */
void kws_step(kws_state *s, const int8_t x[KWS_N_IN], int32_t scores[KWS_N_CLASSES]);

/* 0 when the stored parameter block kws_params (shifts, zeta, nu) equals the constants this
 * kernel was compiled with; otherwise 1 + the index of the first differing byte. */
int kws_check_params(void);

/* The multiply-accumulates of one step that the kernel actually executes (non-zeros). */
#define KWS_MACS_PER_STEP (KWS_W1_NNZ + KWS_W2_NNZ + KWS_U1_NNZ + KWS_U2_NNZ + KWS_WC_NNZ)

#ifdef __cplusplus
}
#endif

#endif /* KWS_MODEL_H */
