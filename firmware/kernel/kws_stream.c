/* kws_stream.c: the listening schedule (see kws_stream.h and kws/detect/windows.py). */
#include "kws_stream.h"

void kws_stream_reset(kws_stream *s)
{
    s->pos = 0;
    s->running = 0;
}

int kws_stream_step(kws_stream *s, const int8_t x[KWS_N_IN], int32_t pooled[KWS_N_CLASSES])
{
    int32_t scores[KWS_N_CLASSES];
    uint8_t k, i, ended = 0;
    if (s->pos % KWS_STREAM_STRIDE == 0) {           /* a window starts: its instance restarts */
        k = (uint8_t)(s->pos / KWS_STREAM_STRIDE);
        kws_reset(&s->inst[k]);
        for (i = 0; i < KWS_N_CLASSES; i++)
            s->pooled[k][i] = 0;
        if (k >= s->running)
            s->running = (uint8_t)(k + 1);
    }
    for (k = 0; k < s->running; k++) {
        /* this frame's place in instance k's window, which started at frame k * STRIDE */
        uint16_t start = (uint16_t)(k * KWS_STREAM_STRIDE);
        uint16_t p = s->pos >= start ? (uint16_t)(s->pos - start)
                                     : (uint16_t)(s->pos + KWS_STREAM_PERIOD - start);
        kws_step(&s->inst[k], x, scores);
        if (p >= KWS_STREAM_PERIOD - KWS_STREAM_POOL)
            for (i = 0; i < KWS_N_CLASSES; i++)
                s->pooled[k][i] += scores[i];
        if (p == KWS_STREAM_PERIOD - 1) {
            for (i = 0; i < KWS_N_CLASSES; i++)
                pooled[i] = s->pooled[k][i];
            ended = 1;
        }
    }
    s->pos = (uint16_t)(s->pos + 1 == KWS_STREAM_PERIOD ? 0 : s->pos + 1);
    return ended;
}
