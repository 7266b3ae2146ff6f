/*
 * Host test of the C detector (firmware/kernel/kws_detect.c) against golden vectors from the
 * Python detector (kws.detect.detector.Detector), written by firmware/tests/golden_detect.py
 * next to the model_data.h and kws_config.h this file is compiled with:
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -I<case> -Ifirmware/kernel \
 *      firmware/tests/test_detect.c firmware/kernel/kws_detect.c -o test_detect
 *   ./test_detect <case>/golden.bin
 *
 * golden.bin, little endian: "KWSD", int32 n_classes, n_windows; then per window: int32
 * pooled[n_classes], uint16 posteriors[n_classes] (Q15), then the decision: fired, best,
 * windows, led (u8 each), fired_sum, best_sum (u32). Every value must match; the first
 * difference is reported. Exit 0: all equal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_detect.h"

static FILE *golden;

static void read_exact(unsigned char *buf, size_t n, const char *what)
{
    if (fread(buf, 1, n, golden) != n) {
        fprintf(stderr, "test_detect: golden file truncated (reading %s)\n", what);
        exit(2);
    }
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int main(int argc, char **argv)
{
    unsigned char b[16];
    long n_classes, n_windows, w, i;
    static kws_detect d;
    int32_t pooled[KWS_N_CLASSES];
    uint16_t post[KWS_N_CLASSES];
    kws_decision dec;
    int fired_windows = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: test_detect golden.bin\n");
        return 2;
    }
    golden = fopen(argv[1], "rb");
    if (!golden) {
        perror(argv[1]);
        return 2;
    }
    read_exact(b, 12, "header");
    if (memcmp(b, "KWSD", 4) != 0) {
        fprintf(stderr, "test_detect: %s is not a detector golden file\n", argv[1]);
        return 2;
    }
    n_classes = (long)(int32_t)le32(b + 4);
    n_windows = (long)(int32_t)le32(b + 8);
    if (n_classes != KWS_N_CLASSES) {
        fprintf(stderr, "test_detect: golden file is for %ld classes, built for %d\n", n_classes,
                (int)KWS_N_CLASSES);
        return 2;
    }
    kws_detect_init(&d);
    for (w = 0; w < n_windows; w++) {
        for (i = 0; i < n_classes; i++) {
            read_exact(b, 4, "pooled");
            pooled[i] = (int32_t)le32(b);
        }
        kws_detect_posteriors(pooled, post);
        for (i = 0; i < n_classes; i++) {
            unsigned want;
            read_exact(b, 2, "posteriors");
            want = (unsigned)(b[0] | b[1] << 8);
            if (post[i] != want) {
                printf("MISMATCH window %ld: posterior[%ld] = %u, reference %u\n", w, i,
                       (unsigned)post[i], want);
                return 1;
            }
        }
        fired_windows += kws_detect_window(&d, pooled, &dec);
        read_exact(b, 12, "decision");
        if (dec.fired != b[0] || dec.best != b[1] || dec.windows != b[2] || dec.led != b[3] ||
            dec.fired_sum != le32(b + 4) || dec.best_sum != le32(b + 8)) {
            printf("MISMATCH window %ld: fired %u (sum %lu) best %u (sum %lu) windows %u led %u, "
                   "reference fired %u (sum %lu) best %u (sum %lu) windows %u led %u\n", w,
                   (unsigned)dec.fired, (unsigned long)dec.fired_sum, (unsigned)dec.best,
                   (unsigned long)dec.best_sum, (unsigned)dec.windows, (unsigned)dec.led,
                   (unsigned)b[0], (unsigned long)le32(b + 4), (unsigned)b[1],
                   (unsigned long)le32(b + 8), (unsigned)b[2], (unsigned)b[3]);
            return 1;
        }
    }
    printf("ok: %ld windows, %d detections, %d classes, smoothing %d, refractory %d\n", n_windows,
           fired_windows, (int)KWS_N_CLASSES, (int)KWS_DET_SMOOTH, (int)KWS_DET_REFRACTORY);
    return 0;
}
