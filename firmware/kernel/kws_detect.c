/* kws_detect.c: the detector (see kws_detect.h, kws/detect/detector.py, kws/detect/posterior.py). */
#include "kws_detect.h"

#include "kws_port.h"

static const uint16_t kws_det_exp2[1 << KWS_DET_EXP2_BITS] KWS_PROGMEM = KWS_DET_EXP2_TABLE;
static const uint16_t kws_det_thresholds[KWS_N_CLASSES] KWS_PROGMEM = KWS_DET_THRESHOLDS;
static const uint8_t kws_det_keywords[KWS_N_CLASSES] KWS_PROGMEM = KWS_DET_KEYWORDS;

void kws_detect_reset(kws_detect *d)
{
    d->head = 0;
    d->count = 0;
    d->since = KWS_DET_SINCE_MAX;
}

void kws_detect_init(kws_detect *d)
{
    uint8_t i;
    for (i = 0; i < KWS_N_CLASSES; i++)
        d->thr[i] = KWS_READ_U16(&kws_det_thresholds[i]);
    d->refractory = KWS_DET_REFRACTORY;
    kws_detect_reset(d);
}

/* e = 2^15 * 2^(-gap): the gap d = max - pooled in log2 units, v / 2^EXP2_BITS */
static uint16_t gap_exp(uint32_t d)
{
    uint32_t dr = d >> KWS_DET_SHIFT_R, v;
    if (dr > KWS_DET_CLAMP)
        return 0;
    v = (dr * KWS_DET_MULT + (1UL << (KWS_DET_SHIFT_S - 1))) >> KWS_DET_SHIFT_S;
    return (uint16_t)(KWS_READ_U16(&kws_det_exp2[v & ((1U << KWS_DET_EXP2_BITS) - 1)]) >>
                      (uint8_t)(v >> KWS_DET_EXP2_BITS));
}

void kws_detect_posteriors(const int32_t pooled[KWS_N_CLASSES], uint16_t post[KWS_N_CLASSES])
{
    int32_t top = pooled[0];
    uint32_t total = 0;
    uint8_t i;
    for (i = 1; i < KWS_N_CLASSES; i++)
        if (pooled[i] > top)
            top = pooled[i];
    for (i = 0; i < KWS_N_CLASSES; i++) {
        /* top - pooled[i] in 0 .. 2^32 - 1: exact in unsigned arithmetic */
        post[i] = gap_exp((uint32_t)top - (uint32_t)pooled[i]);
        total += post[i];
    }
    /* total >= 32768 (the top class has e = 32768); e * 2^15 + total / 2 < 2^31 */
    for (i = 0; i < KWS_N_CLASSES; i++)
        post[i] = (uint16_t)(((uint32_t)post[i] * KWS_DET_ONE + total / 2) / total);
}

int kws_detect_window(kws_detect *d, const int32_t pooled[KWS_N_CLASSES], kws_decision *out)
{
    uint8_t i, k, best = KWS_DET_NONE, fired = KWS_DET_NONE;
    uint32_t best_sum = 0, fired_sum = 0;
    uint16_t lit;
    kws_detect_posteriors(pooled, d->post[d->head]);
    d->head = (uint8_t)(d->head + 1 == KWS_DET_SMOOTH ? 0 : d->head + 1);
    if (d->count < KWS_DET_SMOOTH)
        d->count++;
    for (i = 0; i < KWS_N_CLASSES; i++) {
        uint32_t sum = 0;
        if (!KWS_READ_U8(&kws_det_keywords[i]))
            continue;
        for (k = 0; k < d->count; k++)  /* the filled slots: all of them once count = SMOOTH */
            sum += d->post[k][i];
        if (best == KWS_DET_NONE || sum > best_sum) {
            best = i;
            best_sum = sum;
        }
        if (sum >= (uint32_t)d->thr[i] * d->count && (fired == KWS_DET_NONE || sum > fired_sum)) {
            fired = i;
            fired_sum = sum;
        }
    }
    if (d->since < KWS_DET_SINCE_MAX)
        d->since++;
    if (fired != KWS_DET_NONE && d->since < d->refractory) {
        fired = KWS_DET_NONE;
        fired_sum = 0;
    }
    if (fired != KWS_DET_NONE)
        d->since = 0;
    lit = d->refractory ? d->refractory : 1;
    out->best = best;
    out->best_sum = best == KWS_DET_NONE ? 0 : best_sum;
    out->fired = fired;
    out->fired_sum = fired_sum;
    out->windows = d->count;
    out->led = (uint8_t)(d->since < lit);
    return fired != KWS_DET_NONE;
}
