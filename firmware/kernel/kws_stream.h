/*
 * kws_stream.h: the listening schedule of an endless stream (kws/detect/windows.py, bit for bit).
 *
 * The model was trained on one-clip sequences that start from h = 0, so the board listens in
 * windows of that length: KWS_STREAM_INSTANCES copies of the state run side by side, staggered
 * by KWS_STREAM_STRIDE frames. At frame j * STRIDE, instance j mod INSTANCES restarts (h = 0,
 * pooled scores = 0); it steps on every frame of its window of KWS_STREAM_PERIOD frames and
 * sums the scores of the last KWS_STREAM_POOL; when the window ends, that sum is the output.
 * One window ends every STRIDE frames (after the first PERIOD).
 *
 *   kws_stream s;
 *   kws_stream_reset(&s);
 *   for each frame x:
 *       if (kws_stream_step(&s, x, pooled))   // 1: a window ended, pooled = its score sums
 *           ...                                // class = argmax; posterior = softmax(pooled / POOL)
 *
 * The constants come from the generated kws_config.h (kws.windows.Schedule.constants);
 * Schedule.check_pool_fits proves from the weights that the int32 pooled sums cannot overflow.
 */
#ifndef KWS_STREAM_H
#define KWS_STREAM_H

#include <stdint.h>

#include "kws_config.h"
#include "kws_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(KWS_STREAM_INSTANCES) || !defined(KWS_STREAM_PERIOD) || \
    !defined(KWS_STREAM_STRIDE) || !defined(KWS_STREAM_POOL)
#error "kws_config.h must define the KWS_STREAM_* schedule (kws export writes it)"
#endif
#if KWS_STREAM_INSTANCES < 1 || KWS_STREAM_STRIDE * KWS_STREAM_INSTANCES != KWS_STREAM_PERIOD || \
    KWS_STREAM_POOL < 1 || KWS_STREAM_POOL > KWS_STREAM_PERIOD || KWS_STREAM_PERIOD > 65535 || \
    KWS_STREAM_INSTANCES > 255
#error "inconsistent KWS_STREAM_* schedule"
#endif

typedef struct kws_stream {
    kws_state inst[KWS_STREAM_INSTANCES];
    int32_t pooled[KWS_STREAM_INSTANCES][KWS_N_CLASSES];
    uint16_t pos;     /* frame index modulo KWS_STREAM_PERIOD */
    uint8_t running;  /* instances started so far (all of them after the first period) */
} kws_stream;

/* Start listening anew: no instance running, the next frame is frame 0. */
void kws_stream_reset(kws_stream *s);

/* One frame through every running instance. Returns 1 when a window ended at this frame
 * and writes its pooled score sums to `pooled`; 0 otherwise (pooled untouched). */
int kws_stream_step(kws_stream *s, const int8_t x[KWS_N_IN], int32_t pooled[KWS_N_CLASSES]);

#ifdef __cplusplus
}
#endif

#endif /* KWS_STREAM_H */
