/*
 * Host test of the C kernel against golden vectors from the Python integer reference
 * (IntModel.run), written by firmware/tests/golden.py next to the model_data.h this file is
 * compiled with:
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -I<case> -Ifirmware/kernel \
 *      firmware/tests/test_kernel.c firmware/kernel/kws_model.c -o test_kernel
 *   ./test_kernel <case>/golden.bin
 *
 * golden.bin, little endian: "KWSG", int32 n_in, hidden, n_classes, n_seq, n_frames; then per
 * sequence (the state is reset at its start): int8 x[n_frames][n_in], int16
 * h[n_frames][hidden] (the state after each step), int32 scores[n_frames][n_classes].
 * Every value must match; the first difference is reported. Exit 0: all equal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_model.h"

static FILE *golden;

static void read_exact(void *buf, size_t n, const char *what)
{
    if (fread(buf, 1, n, golden) != n) {
        fprintf(stderr, "test_kernel: golden file truncated (reading %s)\n", what);
        exit(2);
    }
}

static long read_i32(const char *what)
{
    unsigned char b[4];
    read_exact(b, 4, what);
    return (long)(int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                           (uint32_t)b[3] << 24);
}

static int read_i16(void)
{
    unsigned char b[2];
    read_exact(b, 2, "state");
    return (int16_t)(uint16_t)(b[0] | b[1] << 8);
}

int main(int argc, char **argv)
{
    char magic[4];
    long n_in, hidden, n_classes, n_seq, n_frames, seq, t, i;
    static kws_state s;
    int8_t x[KWS_N_IN];
    int32_t scores[KWS_N_CLASSES];
    int bad;

    if (argc != 2) {
        fprintf(stderr, "usage: test_kernel golden.bin\n");
        return 2;
    }
    golden = fopen(argv[1], "rb");
    if (!golden) {
        perror(argv[1]);
        return 2;
    }
    read_exact(magic, 4, "magic");
    if (memcmp(magic, "KWSG", 4) != 0) {
        fprintf(stderr, "test_kernel: %s is not a golden file\n", argv[1]);
        return 2;
    }
    n_in = read_i32("n_in");
    hidden = read_i32("hidden");
    n_classes = read_i32("n_classes");
    n_seq = read_i32("n_seq");
    n_frames = read_i32("n_frames");
    if (n_in != KWS_N_IN || hidden != KWS_HIDDEN || n_classes != KWS_N_CLASSES) {
        fprintf(stderr, "test_kernel: golden file is for another model shape\n");
        return 2;
    }
    bad = kws_check_params();
    if (bad) {
        fprintf(stderr, "test_kernel: kws_params byte %d differs from the compiled constants\n",
                bad - 1);
        return 1;
    }
    for (seq = 0; seq < n_seq; seq++) {
        /* the whole sequence's inputs first, then expected states and scores */
        int8_t *xs = malloc((size_t)(n_frames * n_in));
        if (!xs) {
            fprintf(stderr, "test_kernel: out of memory\n");
            return 2;
        }
        read_exact(xs, (size_t)(n_frames * n_in), "inputs");
        {
            long hpos = ftell(golden), spos = hpos + n_frames * hidden * 2;
            kws_reset(&s);
            for (t = 0; t < n_frames; t++) {
                memcpy(x, xs + t * n_in, (size_t)n_in);
                kws_step(&s, x, scores);
                fseek(golden, hpos + t * hidden * 2, SEEK_SET);
                for (i = 0; i < hidden; i++) {
                    int want = read_i16();
                    if (s.h[i] != want) {
                        printf("MISMATCH seq %ld frame %ld: h[%ld] = %d, reference %d\n",
                               seq, t, i, s.h[i], want);
                        return 1;
                    }
                }
                fseek(golden, spos + t * n_classes * 4, SEEK_SET);
                for (i = 0; i < n_classes; i++) {
                    long want = read_i32("scores");
                    if ((long)scores[i] != want) {
                        printf("MISMATCH seq %ld frame %ld: score[%ld] = %ld, reference %ld\n",
                               seq, t, i, (long)scores[i], want);
                        return 1;
                    }
                }
            }
            fseek(golden, spos + n_frames * n_classes * 4, SEEK_SET);
        }
        free(xs);
    }
    printf("ok: %ld sequences x %ld frames, %d MACs per step, %d model bytes\n", n_seq, n_frames,
           (int)KWS_MACS_PER_STEP, (int)KWS_MODEL_BYTES);
    return 0;
}
