/*
 * kws_model.c: one FastGRNN step, exactly kws/quant/arith.py (the NumPy reference IntModel.run).
 *
 *   tw  = sat16(rsr(W1 . x, TW))          t = the low-rank intermediates, Q11
 *   tu  = sat16(rsr(U1 . h, TU))
 *   pre = rsr(W2 . tw, PW) + rsr(U2 . tu, PU)
 *   z   = clamp((pre + bz' + ONE) >> 1, 0, ONE)
 *   c   = clamp(pre + bc', -ONE, ONE)
 *   g   = rsr(ZETA * (ONE - z), 14) + NU
 *   h'  = sat16(rsr(z * h + g * c, 14))
 *   out = Wc . h' + bcls'                 b' = rsr(b, SHIFT_B)
 *
 * rsr(v, s) = (v + 2^(s-1)) >> s for s > 0 (round half up), v * 2^-s for s <= 0.
 *
 * C details that the exactness relies on (all true of gcc/clang on AVR, ARM and x86):
 *  - `>>` of a negative int is an arithmetic (sign-propagating) shift: implementation-defined
 *    in C99, arithmetic in gcc. rsr is written as t = v >> (s-1); (t >> 1) + (t & 1), which
 *    equals (v + 2^(s-1)) >> s without the addition that could overflow int32.
 *  - Left shifts of negative values are undefined in C99, so they are multiplications.
 *  - int8/int16 conversions of out-of-range values wrap modulo 2^n (gcc's definition).
 *  - Accumulators are int32. kws.intmodel.check_no_overflow proves from the weights that no
 *    sum of the reference leaves int32; every partial sum here is bounded by the same sums of
 *    absolute values. A left-shifted tw/tu is clamped to int16 before the shift (the same
 *    result after sat16, and no int32 overflow).
 *
 * Weights: row-major, int8 or int4 (two per byte, low nibble first, the stream crossing row
 * boundaries); a sparse matrix stores a row-major bitmask (LSB first) and only its non-zero
 * values. Per matrix, model_data.h says which (KWS_<M>_SPARSE, KWS_WEIGHT_BITS); only the code
 * a model needs is compiled in. Every array is read through KWS_READ_U8 (lpm on AVR).
 *
 * On AVR (unless KWS_NO_ASM), dense int8 matrices go through inline assembly, the same
 * arithmetic bit for bit (the C below stays the definition):
 *  - W1 . x, U1 . h and Wc . h' in blocks of 3 or 2 rows that share every vector element
 *    loaded into registers; tw, tu and the class biases are finished in registers.
 *  - W2 and U2 (the ranks' vectors tw, tu held in registers, the weights offset to unsigned)
 *    and the gates of all hidden units: three loops over the units.
 * The shipped shape (hidden 24, ranks 6/6, 912 MACs) takes about 19,300 cycles a step, from
 * about 27,600 with one row at a time and the gates in C. Shapes, shifts or formats outside
 * a kernel's range use the row kernels and C; each kernel says what it takes.
 *
 * On Cortex-M cores with the DSP extension (M4, M7, M33; unless KWS_NO_DSP) the dense int8
 * rows use SXTB16 + SMLAD, four multiply-accumulates in two instructions, in C with ACLE
 * intrinsics or inline asm (the section "Cortex-M DSP extension" below); M0, M0+ and M3 run
 * the C.
 */
#define KWS_MODEL_DATA_IMPL
#include "kws_model.h"

#include "kws_port.h"

#if defined(__GNUC__)
#define KWS_INLINE static inline __attribute__((always_inline))
/* helpers of one arithmetic (or one path) only: unused in the other's build */
#define KWS_INLINE_MAYBE static inline __attribute__((always_inline, unused))
#else
#define KWS_INLINE static inline
#define KWS_INLINE_MAYBE static inline
#endif

#if KWS_STATE_BITS == 16
#define ONE ((int32_t)1 << KWS_QH)
#endif

/* hidden units per pass of W2 and U2 (two int32 buffers of this size on the stack); the
 * buffers also hold W1 . x and U1 . h, so they are at least as long as the ranks */
#define KWS_BLOCK KWS_MAX2(8, KWS_MAX2(KWS_RANK_W, KWS_RANK_U))

/* ---- compile-time checks of what the generated header promises ---------------------------- */
#if KWS_WEIGHT_BITS != 8 && KWS_WEIGHT_BITS != 4
#error "KWS_WEIGHT_BITS must be 8 or 4"
#endif
#if KWS_STATE_BITS == 16
#if KWS_QH != 14 || KWS_QA != 11
#error "this kernel is written for QH = 14 and QA = 11 (kws/quant/arith.py)"
#endif
#elif KWS_STATE_BITS == 8
#if KWS_QT != 4 || KWS_QS != 6 || KWS_QG != 7
#error "the int8-state kernel is written for QT = 4, QS = 6 and QG = 7 (kws/quant/arith.py)"
#endif
#if KWS_ZETA < 0 || KWS_ZETA > 127 || KWS_NU < 0 || KWS_NU > 127 || KWS_SHIFT_PW != KWS_SHIFT_PU
#error "int8 state: ZETA and NU in [0, 127], one shift for W2 and U2"
#endif
#else
#error "KWS_STATE_BITS must be 16 or 8"
#endif
#if KWS_N_IN < 1 || KWS_HIDDEN < 1 || KWS_RANK_W < 1 || KWS_RANK_U < 1 || KWS_N_CLASSES < 1
#error "every dimension must be at least 1"
#endif
/* tw/tu: left shifts up to 16 after clamping to int16 stay inside int32 */
#if KWS_SHIFT_TW < -16 || KWS_SHIFT_TW > 31 || KWS_SHIFT_TU < -16 || KWS_SHIFT_TU > 31
#error "tw/tu shift out of the supported range [-16, 31]"
#endif
#if KWS_SHIFT_PW < -31 || KWS_SHIFT_PW > 31 || KWS_SHIFT_PU < -31 || KWS_SHIFT_PU > 31 || \
    KWS_SHIFT_BZ < -31 || KWS_SHIFT_BZ > 31 || KWS_SHIFT_BC < -31 || KWS_SHIFT_BC > 31 || \
    KWS_SHIFT_BCLS < -31 || KWS_SHIFT_BCLS > 31
#error "shift out of the supported range [-31, 31]"
#endif

#define KWS_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define KWS_MAX_DIM \
    KWS_MAX2(KWS_MAX2(KWS_MAX2(KWS_N_IN, KWS_HIDDEN), KWS_MAX2(KWS_RANK_W, KWS_RANK_U)), \
             KWS_N_CLASSES)

/* loop counters: one byte on AVR when every dimension fits */
#if KWS_MAX_DIM > 255
typedef uint16_t kws_idx;
#else
typedef uint8_t kws_idx;
#endif

/* ---- the two primitives of kws/quant/arith.py ----------------------------------------------------- */

/* v >> s for a constant s >= 0, arithmetic. On AVR, gcc shifts an int32 by a constant other
 * than 8, 16, 24 with a loop of ~6 cycles a bit; moving whole bytes first (the empty asm
 * keeps gcc from folding the shifts back into one) makes a shift by 13 ~6x faster. */
#if defined(__AVR__)
#define KWS_OPAQUE(v) __asm__("" : "+r"(v))
#else
#define KWS_OPAQUE(v) ((void)0)
#endif
KWS_INLINE int32_t asr(int32_t v, int s)
{
    if (s >= 16) {
        v >>= 16;
        KWS_OPAQUE(v);
        s -= 16;
    }
    if (s >= 8) {
        v >>= 8;
        KWS_OPAQUE(v);
        s -= 8;
    }
    return s ? v >> s : v;
}

/* rshift_round(v, s) for a constant s (the branches fold away). Every value shifted here is a
 * row sum of at most 255 products |w v| <= 2^22 (or an int8 bias), so |v| < 2^30 and
 * v + 2^(s-1) cannot overflow; with longer rows, t = v >> (s-1); (t >> 1) + (t & 1) is the
 * same without the addition. */
KWS_INLINE int32_t rsr(int32_t v, int s)
{
    if (s > 0) {
#if KWS_MAX_DIM <= 255
        return asr(v + ((int32_t)1 << (s - 1)), s);
#else
        int32_t t = asr(v, s - 1);
        return (t >> 1) + (t & 1);
#endif
    }
    return v * ((int32_t)1 << -s);
}

KWS_INLINE int16_t sat16(int32_t v)
{
    return v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t)v;
}

/* sat16(rsr(v, s)), with the clamp before a left shift so it cannot overflow */
KWS_INLINE_MAYBE int16_t rsr_sat16(int32_t v, int s)
{
    if (s < 0)
        v = sat16(v);
    return sat16(rsr(v, s));
}

/* rsr(v, 14) for |v| <= 2^30, from bytes: u = v + 2^13 (no overflow), then
 * u >> 14 = 4 * (u >> 16) + bits 15..14 of u. hi is the top half of u, signed. */
KWS_INLINE void split14(int32_t v, int16_t *hi, uint8_t *lo)
{
    uint32_t u = (uint32_t)v + 8192u;
    *hi = (int16_t)(uint16_t)(u >> 16);
    *lo = (uint8_t)((uint8_t)(u >> 8) >> 6);
}

/* sat16(rsr(v, 14)) for |v| <= 2^30 */
KWS_INLINE_MAYBE int16_t rsr14_sat16(int32_t v)
{
    int16_t hi;
    uint8_t lo;
    split14(v, &hi, &lo);
    if (hi > 8191)
        return 32767;
    if (hi < -8192)
        return -32768;
    return (int16_t)(hi * 4 + lo);  /* in [-32768, 32767]: fits a 16-bit int */
}

/* rsr(v, 14) for 0 <= v <= 2^28: at most 2^14 */
KWS_INLINE_MAYBE int16_t rsr14_small(int32_t v)
{
    int16_t hi;
    uint8_t lo;
    split14(v, &hi, &lo);
    return (int16_t)(hi * 4 + lo);
}

/* a * b for 0 <= a <= 65535 and int16 b: four 8x8 multiplies inline on AVR (libgcc's
 * __usmulhisi3 is the same arithmetic plus a call) */
KWS_INLINE_MAYBE int32_t mul_us16(uint16_t a, int16_t b)
{
#if defined(__AVR__) && !defined(KWS_NO_ASM)
    int32_t r;
    uint8_t zero = 0;
    __asm__("mul   %A[a], %A[b]\n\t"
            "movw  %A[r], r0\n\t"
            "mulsu %B[b], %B[a]\n\t"
            "movw  %C[r], r0\n\t"
            "mul   %B[a], %A[b]\n\t"
            "add   %B[r], r0\n\t"
            "adc   %C[r], r1\n\t"
            "adc   %D[r], %[zero]\n\t"
            "mulsu %B[b], %A[a]\n\t"
            "sbc   %D[r], %[zero]\n\t"
            "add   %B[r], r0\n\t"
            "adc   %C[r], r1\n\t"
            "adc   %D[r], %[zero]\n\t"
            "clr   __zero_reg__\n\t"
            : [r] "=&r"(r)
            : [a] "a"(a), [b] "a"(b), [zero] "r"(zero)
            : "r0");
    return r;
#else
    return (int32_t)a * b;
#endif
}

/* b' = rsr(b, s) of an int8 bias; a left shift by k >= 5 moves whole bytes first */
KWS_INLINE int32_t bias_value(int8_t b, int s)
{
    int32_t t;
    if (s > -5)
        return rsr(b, s);
    if (s <= -12) {
        t = (int32_t)b * 65536;
        KWS_OPAQUE(t);
        return s >= -16 ? asr(t, 16 + s) : t * ((int32_t)1 << (-s - 16));
    }
    t = (int32_t)b * 256;
    KWS_OPAQUE(t);
    return s >= -8 ? asr(t, 8 + s) : t * ((int32_t)1 << (-s - 8));
}

/* ---- weight streams ------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;     /* next byte of values */
#if KWS_WEIGHT_BITS == 4
    uint8_t byte;         /* the current byte when its high nibble is next */
    uint8_t high;         /* 1: the high nibble of `byte` is next */
#endif
} kws_vals;

typedef struct {
    const uint8_t *p;     /* next mask byte */
    uint8_t byte;         /* remaining bits of the current mask byte */
    uint8_t left;         /* how many */
} kws_mask;

KWS_INLINE void vals_init(kws_vals *w, const uint8_t *p)
{
    w->p = p;
#if KWS_WEIGHT_BITS == 4
    w->byte = 0;
    w->high = 0;
#endif
}

KWS_INLINE void mask_init(kws_mask *m, const uint8_t *p)
{
    m->p = p;
    m->byte = 0;
    m->left = 0;
}

KWS_INLINE int8_t next_value(kws_vals *w)
{
#if KWS_WEIGHT_BITS == 8
    return (int8_t)KWS_READ_U8(w->p++);
#else
    if (w->high) {
        w->high = 0;
        return (int8_t)((int8_t)w->byte >> 4);
    }
    w->byte = KWS_READ_U8(w->p++);
    w->high = 1;
    return (int8_t)((int8_t)(uint8_t)(w->byte << 4) >> 4);
#endif
}

KWS_INLINE uint8_t next_bit(kws_mask *m)
{
    uint8_t b;
    if (m->left == 0) {
        m->byte = KWS_READ_U8(m->p++);
        m->left = 8;
    }
    m->left--;
    b = m->byte & 1u;
    m->byte >>= 1;
    return b;
}

/* ---- one row of a matrix times a vector ----------------------------------------------------- */

/* int8 inputs: the product of two int8 fits int16 (a 1-cycle-class multiply on AVR) */
KWS_INLINE int32_t dot_x(kws_vals *w, kws_mask *m, int sparse, const int8_t *v, kws_idx n)
{
    int32_t acc = 0;
    do {
        if (!sparse || next_bit(m)) {
            int16_t p = (int16_t)((int16_t)next_value(w) * *v);
            acc += p;
        }
        v++;
    } while (--n);
    return acc;
}

/* int16 vectors (tw, tu, h) */
KWS_INLINE int32_t dot_h(kws_vals *w, kws_mask *m, int sparse, const int16_t *v, kws_idx n)
{
    int32_t acc = 0;
    do {
        if (!sparse || next_bit(m))
            acc += (int32_t)next_value(w) * *v;
        v++;
    } while (--n);
    return acc;
}

/* ---- Cortex-M DSP extension (M4, M7, M33): dense int8 rows with SXTB16 + SMLAD ------------
 * On cores with __ARM_FEATURE_DSP (not M0/M0+/M3; KWS_NO_DSP turns it off) every dense int8
 * row goes through two instructions that do four multiply-accumulates: SXTB16 sign-extends
 * bytes 0 and 2 (or, rotated, 1 and 3) of a word of four weights into two int16 halves, and
 * SMLAD adds both halves' 16 x 16 products to a 32-bit sum. The vector is packed once per
 * matrix in the order SXTB16 unpacks the weights: elements 4q..4q+3 become the two words
 * (v[4q], v[4q+2]) and (v[4q+1], v[4q+3]), low half first (int8 vectors sign-extended, int16
 * vectors as they are); rows go in pairs that share the vector's loads, and the last
 * cols % 4 elements of a row are summed in C. mps2-an386 (QEMU), the shipped shape: 5,967 ->
 * about 3,070 instructions a step with int8 state, 6,533 -> about 3,820 with int16 state.
 * Exact: the products are the C path's (int8 x int8 or int8 x int16, |w v| <= 2^22, exact in
 * a 16 x 16 -> 32 multiply) and only the order of the additions differs. Every partial sum in
 * any order is bounded by the row's sum of |w v|, which check_no_overflow keeps inside int32
 * (the int8 state: < 2^23), so no sum wraps and the row sum is the C path's, bit for bit; the
 * roundings and shifts after it are the C path's own code. Weights are read with memcpy
 * (unaligned word loads, which v7E-M does in one ldr). int4 and sparse rows stay in C. */
#if defined(__ARM_FEATURE_DSP) && !defined(KWS_NO_DSP) && KWS_WEIGHT_BITS == 8
#define KWS_DSP 1
#include <string.h>
/* SXTB16 and SMLAD through arm_acle.h's __sxtb16 and __smlad where the compiler should have
 * them (gcc 10 and later, clang; checked with gcc 12 only), which gcc schedules better (3,072
 * against 3,310 instructions a step for the shipped model); else, or with KWS_DSP_ASM, as
 * inline asm (both tested) */
#if !defined(KWS_DSP_ASM) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define KWS_DSP_ACLE 1
#include <arm_acle.h>
#endif

/* words of a packed vector of at most KWS_MAX_DIM elements (+1: the array is never empty) */
#define KWS_PACKED(n) (2 * ((n) / 4) + 1)

KWS_INLINE int32_t load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* bytes 0 and 2 of x, each sign-extended into an int16 half */
KWS_INLINE int32_t sxtb16(int32_t x)
{
#ifdef KWS_DSP_ACLE
    return __sxtb16(x);
#else
    int32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
#endif
}

/* bytes 1 and 3 of x, the same (SXTB16 with ROR #8: inline asm always, ACLE has no rotation) */
KWS_INLINE int32_t sxtb16_odd(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* acc + lo(a) lo(b) + hi(a) hi(b), signed 16 x 16 products, 32-bit sum */
KWS_INLINE int32_t smlad(int32_t a, int32_t b, int32_t acc)
{
#ifdef KWS_DSP_ACLE
    return __smlad(a, b, acc);
#else
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#endif
}

/* p[0 .. 2 quads): v[0 .. 4 quads) packed for smlad (int8 vector) */
KWS_INLINE void pack_x(int32_t *p, const int8_t *v, kws_idx quads)
{
    do {
        int32_t x = load32(v);
        *p++ = sxtb16(x);
        *p++ = sxtb16_odd(x);
        v += 4;
    } while (--quads);
}

/* the same for an int16 vector (tw, tu, h of the int16-state arithmetic) */
KWS_INLINE_MAYBE void pack_h(int32_t *p, const int16_t *v, kws_idx quads)
{
    do {
        *p++ = (int32_t)((uint32_t)(uint16_t)v[0] | (uint32_t)(uint16_t)v[2] << 16);
        *p++ = (int32_t)((uint32_t)(uint16_t)v[1] | (uint32_t)(uint16_t)v[3] << 16);
        v += 4;
    } while (--quads);
}

/* the first 4 * quads weights of a row (wp) . the packed vector p: two SMLADs per word */
KWS_INLINE int32_t dot_dsp(const uint8_t *wp, const int32_t *p, kws_idx quads)
{
    int32_t acc = 0;
    do {
        int32_t w = load32(wp);
        acc = smlad(sxtb16(w), p[0], acc);
        acc = smlad(sxtb16_odd(w), p[1], acc);
        wp += 4;
        p += 2;
    } while (--quads);
    return acc;
}

/* the same for two rows at once (wp and wp + cols), sharing the loads of the packed vector */
KWS_INLINE void dot2_dsp(const uint8_t *wp, kws_idx cols, const int32_t *p, kws_idx quads,
                         int32_t *out)
{
    int32_t a0 = 0, a1 = 0;
    do {
        int32_t w0 = load32(wp), w1 = load32(wp + cols), lo = p[0], hi = p[1];
        a0 = smlad(sxtb16(w0), lo, a0);
        a0 = smlad(sxtb16_odd(w0), hi, a0);
        a1 = smlad(sxtb16(w1), lo, a1);
        a1 = smlad(sxtb16_odd(w1), hi, a1);
        wp += 4;
        p += 2;
    } while (--quads);
    out[0] = a0;
    out[1] = a1;
}

/* out[r] = the first 4 * (cols / 4) weights of each of `rows` rows . the packed vector p, two
 * rows at a time (the caller adds the last cols % 4 products); 0 when cols < 4 */
KWS_INLINE void mat_dsp(const uint8_t *wp, const int32_t *p, kws_idx cols, kws_idx rows,
                        int32_t *out)
{
    if (cols < 4) {
        while (rows--)
            *out++ = 0;
        return;
    }
    for (; rows >= 2; rows -= 2) {
        dot2_dsp(wp, cols, p, (kws_idx)(cols / 4), out);
        wp += 2 * cols;
        out += 2;
    }
    if (rows)
        *out = dot_dsp(wp, p, (kws_idx)(cols / 4));
}

/* one dense int8 row . v (int8), p = v packed; the stream moves past the row (W2, U2 of the
 * int8 state, one hidden unit at a time) */
KWS_INLINE_MAYBE int32_t row_x_dsp(kws_vals *w, const int32_t *p, const int8_t *v, kws_idx cols)
{
    const uint8_t *wp = w->p;
    int32_t acc = cols >= 4 ? dot_dsp(wp, p, (kws_idx)(cols / 4)) : 0;
    kws_idx j;
    for (j = (kws_idx)(cols & ~3u); j < cols; j++)
        acc += (int16_t)((int16_t)(int8_t)wp[j] * v[j]);
    w->p = wp + cols;
    return acc;
}
#endif

/* ---- AVR: the dense int8 rows in assembly (lpm, muls/mulsu, 24-bit sums) ------------------
 * Same results as dot_x / dot_h (tested on the simulated board against the C path, built with
 * -DKWS_NO_ASM). Sums fit 24 bits: |w x| <= 2^14 and rows are at most 255 long; for int16
 * vectors w * v = 256 * (w * hi(v)) + w * lo(v), each part summed on its own in 24 bits. */
#if defined(__AVR__) && !defined(KWS_NO_ASM) && KWS_WEIGHT_BITS == 8 && \
    KWS_N_IN <= 255 && KWS_HIDDEN <= 255 && KWS_RANK_W <= 255 && KWS_RANK_U <= 255
#define KWS_ASM 1

/* acc (24 bits) += r1:r0, the signed product of the multiply just before: the multiply leaves
 * the product's sign in C, so `sbc` takes 65536 off first (sign extension), then the two
 * bytes are added as unsigned (AVR201). zero: a register holding 0 (r1 is busy). */
#define KWS_ADD16(acc) \
    "sbc  %C[" acc "], %[zero]\n\t" \
    "add  %A[" acc "], r0\n\t" \
    "adc  %B[" acc "], r1\n\t" \
    "adc  %C[" acc "], %[zero]\n\t"

/* 11 cycles: int8 weight (flash) x int8 input */
#define KWS_MAC8 \
    "lpm  %[w], Z+\n\t" \
    "ld   %[lo], X+\n\t" \
    "muls %[w], %[lo]\n\t" \
    KWS_ADD16("a")

/* 19 cycles: int8 weight (flash) x int16 (lo byte unsigned, hi byte signed) */
#define KWS_MAC16 \
    "lpm  %[w], Z+\n\t" \
    "ld   %[lo], X+\n\t" \
    "ld   %[hi], X+\n\t" \
    "mulsu %[w], %[lo]\n\t" \
    KWS_ADD16("a") \
    "muls %[w], %[hi]\n\t" \
    KWS_ADD16("b")

/* a row of `cols` MACs (a compile-time constant: fully unrolled, no loop counter), then
 * a (24 bits) sign-extended to 32 */
#define KWS_MAC_ROW(MAC) \
    ".rept %[cols]\n\t" \
    MAC \
    ".endr\n\t" \
    "clr __zero_reg__\n\t" \
    "clr  %D[a]\n\t" \
    "sbrc %C[a], 7\n\t" \
    "com  %D[a]\n\t"

/* every row: a = 0 (and b = 0), X = the vector */
#define KWS_ROW_START \
    "0: movw %A[xp], %A[v]\n\t" \
    "clr  %A[a]\n\t" \
    "clr  %B[a]\n\t" \
    "clr  %C[a]\n\t"

/* out[row] = a, through X; next row (rjmp: the loop is longer than a branch reaches) */
#define KWS_ROW_END \
    "movw %A[xp], %A[o]\n\t" \
    "st   X+, %A[a]\n\t" \
    "st   X+, %B[a]\n\t" \
    "st   X+, %C[a]\n\t" \
    "st   X+, %D[a]\n\t" \
    "movw %A[o], %A[xp]\n\t" \
    "dec  %[rows]\n\t" \
    "breq 4f\n\t" \
    "rjmp 0b\n\t" \
    "4:\n\t"

/* out[r] = row r . x for `rows` rows of `cols` (a constant) int8 weights at *pw (advanced
 * past them). Macros, not functions: `cols` must reach the assembler as a number. */
#define mat_x_asm(pw, x, cols, rows, out)                                                  \
    do {                                                                                   \
        int32_t a_;                                                                        \
        uint8_t w_, lo_, zero_ = 0, rows_ = (rows);                                        \
        int32_t *o_ = (out);                                                               \
        const void *xp_;                                                                   \
        __asm__ __volatile__(KWS_ROW_START KWS_MAC_ROW(KWS_MAC8) KWS_ROW_END               \
                             : [a] "=&r"(a_), [w] "=&d"(w_), [lo] "=&d"(lo_),              \
                               [rows] "+r"(rows_), "+z"(*(pw)), [xp] "=&x"(xp_),           \
                               [o] "+r"(o_)                                                \
                             : [v] "r"(x), [cols] "i"(cols), [zero] "r"(zero_)             \
                             : "r0", "memory");                                           \
    } while (0)

/* the same for an int16 vector: a + 256 b, b's bytes added to a's upper three */
#define mat_h_asm(pw, v, cols, rows, out)                                                  \
    do {                                                                                   \
        int32_t a_;                                                                        \
        __int24 b_;                                                                        \
        uint8_t w_, lo_, hi_, zero_ = 0, rows_ = (rows);                                   \
        int32_t *o_ = (out);                                                               \
        const void *xp_;                                                                   \
        __asm__ __volatile__(KWS_ROW_START                                                 \
                             "clr  %A[b]\n\t"                                              \
                             "clr  %B[b]\n\t"                                              \
                             "clr  %C[b]\n\t"                                              \
                             KWS_MAC_ROW(KWS_MAC16)                                        \
                             "add  %B[a], %A[b]\n\t"                                       \
                             "adc  %C[a], %B[b]\n\t"                                       \
                             "adc  %D[a], %C[b]\n\t"                                       \
                             KWS_ROW_END                                                   \
                             : [a] "=&r"(a_), [b] "=&r"(b_), [w] "=&a"(w_),                \
                               [lo] "=&a"(lo_), [hi] "=&a"(hi_), [rows] "+r"(rows_),       \
                               "+z"(*(pw)), [xp] "=&x"(xp_), [o] "+r"(o_)                  \
                             : [v] "r"(v), [cols] "i"(cols), [zero] "r"(zero_)             \
                             : "r0", "memory");                                           \
    } while (0)
#endif

/* out[r] = row r of the matrix . v for `rows` rows (the stream moves past them) */
KWS_INLINE void mat_x(kws_vals *w, kws_mask *m, int sparse, const int8_t *v, kws_idx cols,
                      kws_idx rows, int32_t *out)
{
#ifdef KWS_ASM
    if (!sparse) {
        mat_x_asm(&w->p, v, cols, rows, out);
        return;
    }
#endif
#ifdef KWS_DSP
    if (!sparse) {
        int32_t p[KWS_PACKED(KWS_MAX_DIM)];
        kws_idx r, j;
        if (cols >= 4)
            pack_x(p, v, (kws_idx)(cols / 4));
        mat_dsp(w->p, p, cols, rows, out);
        for (r = 0; r < rows; r++) {
            const uint8_t *wp = w->p + r * cols;
            for (j = (kws_idx)(cols & ~3u); j < cols; j++)
                out[r] += (int16_t)((int16_t)(int8_t)wp[j] * v[j]);
        }
        w->p += rows * cols;
        return;
    }
#endif
    do
        *out++ = dot_x(w, m, sparse, v, cols);
    while (--rows);
}

KWS_INLINE_MAYBE void mat_h(kws_vals *w, kws_mask *m, int sparse, const int16_t *v, kws_idx cols,
                      kws_idx rows, int32_t *out)
{
#ifdef KWS_ASM
    if (!sparse) {
        mat_h_asm(&w->p, v, cols, rows, out);
        return;
    }
#endif
#ifdef KWS_DSP
    if (!sparse) {
        int32_t p[KWS_PACKED(KWS_MAX_DIM)];
        kws_idx r, j;
        if (cols >= 4)
            pack_h(p, v, (kws_idx)(cols / 4));
        mat_dsp(w->p, p, cols, rows, out);
        for (r = 0; r < rows; r++) {
            const uint8_t *wp = w->p + r * cols;
            for (j = (kws_idx)(cols & ~3u); j < cols; j++)
                out[r] += (int32_t)(int8_t)wp[j] * v[j];
        }
        w->p += rows * cols;
        return;
    }
#endif
    do
        *out++ = dot_h(w, m, sparse, v, cols);
    while (--rows);
}

/* ---- AVR: dense rows in blocks (W1 . x, U1 . h, Wc . h') -------------------------------------
 * The row kernels above load every vector element once per row. These take 3 (or 2) rows at
 * once and walk Z down a block of columns (adiw to the next row, back up to the next
 * columns), so each element loaded into registers serves every row of the block. They also
 * finish the rows in registers: rsr_sat16 into tw / tu, or the class bias as the start value
 * of the sums, so nothing is left for C. */
#if defined(KWS_ASM)
/* which matrices can use them (the others use the row kernels) */
#define KWS_X3 (!KWS_W1_SPARSE && KWS_N_IN % 8 == 0 && KWS_N_IN <= 63 && KWS_RANK_W >= 3)
#define KWS_H2 (KWS_HIDDEN % 3 == 0 && KWS_HIDDEN <= 31)

/* b' = rsr(b, s) of an int8 bias in register b (destroyed), added to the 24-bit d2:d1:d0 (s:
 * an asm operand; |b'| <= 127 * 2^15). s >= 8: 0; 1..7: (b + 2^(s-1)) >> s in 16 bits;
 * -7..0: b << -s in 16 bits; -15..-8: b << (-s - 8) added at byte 1 (-9 in 4 cycles; from
 * -12 on, the first 4 bits by swap). t1, t2: temporaries; b and t1 upper registers. */
#define KWS_BIAS_ADD(s, b, t1, t2, d0, d1, d2)                                             \
    ".if " s " >= 8\n\t"                                                                   \
    ".elseif " s " >= 1\n\t"                                                               \
    "mov  " t1 ", " b "\n\t"                                                               \
    "lsl  " t1 "\n\t"                                                                      \
    "sbc  " t1 ", " t1 "\n\t"                                                              \
    "subi " b ", lo8(-(1 << (" s " - 1)))\n\t"                                             \
    "sbci " t1 ", 0xff\n\t"                                                                \
    ".rept " s "\n\t"                                                                      \
    "asr  " t1 "\n\t"                                                                      \
    "ror  " b "\n\t"                                                                       \
    ".endr\n\t"                                                                            \
    "add  " d0 ", " b "\n\t"                                                               \
    "adc  " d1 ", " t1 "\n\t"                                                              \
    "adc  " d2 ", " t1 "\n\t"                                                              \
    ".elseif " s " >= -7\n\t"                                                              \
    "mov  " t1 ", " b "\n\t"                                                               \
    "lsl  " t1 "\n\t"                                                                      \
    "sbc  " t1 ", " t1 "\n\t"                                                              \
    "mov  " t2 ", " t1 "\n\t"                                                              \
    ".rept -(" s ")\n\t"                                                                   \
    "lsl  " b "\n\t"                                                                       \
    "rol  " t1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "add  " d0 ", " b "\n\t"                                                               \
    "adc  " d1 ", " t1 "\n\t"                                                              \
    "adc  " d2 ", " t2 "\n\t"                                                              \
    ".elseif " s " == -9\n\t"                                                              \
    "lsl  " b "\n\t"                                                                       \
    "sbc  " t1 ", " t1 "\n\t"                                                              \
    "add  " d1 ", " b "\n\t"                                                               \
    "adc  " d2 ", " t1 "\n\t"                                                              \
    ".elseif " s " <= -12\n\t"   /* b << 4 by a nibble swap, then the rest */              \
    "swap " b "\n\t"                                                                       \
    "mov  " t1 ", " b "\n\t"                                                               \
    "andi " b ", 0xf0\n\t"                                                                 \
    "andi " t1 ", 0x0f\n\t"                                                                \
    "sbrc " t1 ", 3\n\t"                                                                   \
    "ori  " t1 ", 0xf0\n\t"                                                                \
    ".rept -12 - (" s ")\n\t"                                                              \
    "lsl  " b "\n\t"                                                                       \
    "rol  " t1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "add  " d1 ", " b "\n\t"                                                               \
    "adc  " d2 ", " t1 "\n\t"                                                              \
    ".else\n\t"                                                                            \
    "mov  " t1 ", " b "\n\t"                                                               \
    "lsl  " t1 "\n\t"                                                                      \
    "sbc  " t1 ", " t1 "\n\t"                                                              \
    ".rept -8 - (" s ")\n\t"                                                               \
    "lsl  " b "\n\t"                                                                       \
    "rol  " t1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "add  " d1 ", " b "\n\t"                                                               \
    "adc  " d2 ", " t1 "\n\t"                                                              \
    ".endif\n\t"

/* out of range of int16: store 0x7fff, or 0x8000 when sign (a register) is negative, via
 * r21:r20; then skip the normal store at label 6 (which jumps on to 8) */
#define KWS_ST16_SAT(sign)  \
    "ldi  r21, 0x7f\n\t"    \
    "ldi  r20, 0xff\n\t"    \
    "sbrs " sign ", 7\n\t"  \
    "rjmp 7f\n\t"           \
    "ldi  r21, 0x80\n\t"    \
    "ldi  r20, 0x00\n\t"    \
    "7:\n\t"                \
    "st   Y+, r20\n\t"      \
    "st   Y+, r21\n\t"      \
    "rjmp 8f\n\t"

/* int8 x int8, 3 rows x 8 columns: x in r16..r23, w in r24; row sums (24 bits) in
 * r2:r3:r4, r5:r6:r7, r8:r9:r10; r11 zero; r12 column-group count, r13 block count.
 * 9 cycles a MAC (lpm, muls, AVR201's sign-extended 24-bit add), + 16 per 24 for the loads
 * and 6 for the moves of Z. Through Y (saved): raw = 1: the sums as int32; raw = 0: int16
 * rsr_sat16(sum, s), 0 <= s <= 15, the rounding being the sums' start value. */
#define KWS_XMAC(x, a0, a1, a2) \
    "lpm  r24, Z+\n\t"          \
    "muls r24, " x "\n\t"       \
    "sbc  " a2 ", r11\n\t"      \
    "add  " a0 ", r0\n\t"       \
    "adc  " a1 ", r1\n\t"       \
    "adc  " a2 ", r11\n\t"
#define KWS_XROW(a0, a1, a2)                                                               \
    KWS_XMAC("r16", a0, a1, a2) KWS_XMAC("r17", a0, a1, a2) KWS_XMAC("r18", a0, a1, a2)    \
    KWS_XMAC("r19", a0, a1, a2) KWS_XMAC("r20", a0, a1, a2) KWS_XMAC("r21", a0, a1, a2)    \
    KWS_XMAC("r22", a0, a1, a2) KWS_XMAC("r23", a0, a1, a2)
#define KWS_XOUT(a0, a1, a2)                                                               \
    ".if %[raw] & 1\n\t"     /* 1, 3: int32 */                                             \
    "st   Y+, " a0 "\n\t"                                                                  \
    "st   Y+, " a1 "\n\t"                                                                  \
    "st   Y+, " a2 "\n\t"                                                                  \
    "clr  r24\n\t"                                                                         \
    "sbrc " a2 ", 7\n\t"                                                                   \
    "com  r24\n\t"                                                                         \
    "st   Y+, r24\n\t"                                                                     \
    ".elseif %[raw] == 2\n\t" /* int8: sat8(rsr(sum, s)) (the int8-state tw, tu) */         \
    ".if %[s] >= 8\n\t"                                                                    \
    ".rept %[s] - 8\n\t"                                                                   \
    "asr  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "mov  r24, " a1 "\n\t"                                                                 \
    "lsl  r24\n\t"                                                                         \
    "sbc  r24, r24\n\t"                                                                    \
    "cp   r24, " a2 "\n\t"                                                                 \
    "mov  r24, " a1 "\n\t"                                                                 \
    ".else\n\t"                                                                            \
    ".rept %[s]\n\t"                                                                       \
    "asr  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    "ror  " a0 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "mov  r24, " a0 "\n\t"                                                                 \
    "lsl  r24\n\t"                                                                         \
    "sbc  r24, r24\n\t"                                                                    \
    "cp   r24, " a1 "\n\t"                                                                 \
    "cpc  r24, " a2 "\n\t"                                                                 \
    "mov  r24, " a0 "\n\t"                                                                 \
    ".endif\n\t"                                                                           \
    "breq 6f\n\t"                                                                          \
    "ldi  r24, 0x7f\n\t"                                                                   \
    "sbrc " a2 ", 7\n\t"                                                                   \
    "ldi  r24, 0x80\n\t"                                                                   \
    "6:\n\t"                                                                               \
    "st   Y+, r24\n\t"                                                                     \
    ".elseif %[s] >= 8\n\t"   /* sum >> 8 fits int16 */                                    \
    ".rept %[s] - 8\n\t"                                                                   \
    "asr  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "st   Y+, " a1 "\n\t"                                                                  \
    "st   Y+, " a2 "\n\t"                                                                  \
    ".else\n\t"                                                                            \
    ".rept %[s]\n\t"                                                                       \
    "asr  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    "ror  " a0 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "mov  r24, " a1 "\n\t"    /* int16 when a2 is a1's sign extension */                   \
    "lsl  r24\n\t"                                                                         \
    "sbc  r24, r24\n\t"                                                                    \
    "cp   r24, " a2 "\n\t"                                                                 \
    "breq 6f\n\t"                                                                          \
    KWS_ST16_SAT(a2)                                                                       \
    "6:\n\t"                                                                               \
    "st   Y+, " a0 "\n\t"                                                                  \
    "st   Y+, " a1 "\n\t"                                                                  \
    "8:\n\t"                                                                               \
    ".endif\n\t"
/* a0 = the rounding 2^(s-1) (bytes r24, r25: 0 if raw or s = 0) */
#define KWS_XSTART(a0, a1, a2) \
    "mov  " a0 ", r24\n\t"     \
    "mov  " a1 ", r25\n\t"     \
    "clr  " a2 "\n\t"

#define mat_x3_asm(wsym, v, ncols, nblk, out, raw_, s_) \
    mat_x3b_asm(wsym, v, ncols, nblk, out, raw_, s_, kws_params)
/* raw_ = 3: as 1, each row's sum starting from a 24-bit value of the RAM table bsym (3 bytes
 * a row: the int8-state class biases) */
#define mat_x3b_asm(wsym, v, ncols, nblk, out, raw_, s_, bsym)                             \
    do {                                                                                   \
        const void *v_ = (v);                                                              \
        void *o_ = (out);                                                                  \
        __asm__ __volatile__(                                                              \
            "push r28\n\t"                                                                 \
            "push r29\n\t"                                                                 \
            "movw r28, r30\n\t"                                                            \
            "ldi  r30, lo8(%[wm])\n\t"                                                     \
            "ldi  r31, hi8(%[wm])\n\t"                                                     \
            "clr  r11\n\t"                                                                 \
            "ldi  r24, %[nb]\n\t"                                                          \
            "mov  r13, r24\n\t"                                                            \
            ".if %[raw] == 3\n\t"                                                         \
            "ldi  r24, lo8(%[bp])\n\t"                                                     \
            "ldi  r25, hi8(%[bp])\n\t"                                                     \
            ".endif\n\t"                                                                   \
            "0:\n\t"                                                                       \
            ".if %[raw] == 3\n\t"    /* start values from the table (Z, then r14:r15) */  \
            "movw r14, r30\n\t"                                                            \
            "movw r30, r24\n\t"                                                            \
            "ld   r2, Z+\n\t" "ld   r3, Z+\n\t" "ld   r4, Z+\n\t"                           \
            "ld   r5, Z+\n\t" "ld   r6, Z+\n\t" "ld   r7, Z+\n\t"                           \
            "ld   r8, Z+\n\t" "ld   r9, Z+\n\t" "ld   r10, Z+\n\t"                          \
            "movw r24, r30\n\t"                                                            \
            "movw r30, r14\n\t"                                                            \
            "movw r14, r24\n\t"                                                            \
            ".else\n\t"                                                                    \
            "ldi  r24, lo8(%[rnd])\n\t"                                                    \
            "ldi  r25, hi8(%[rnd])\n\t"                                                    \
            KWS_XSTART("r2", "r3", "r4") KWS_XSTART("r5", "r6", "r7")                      \
            KWS_XSTART("r8", "r9", "r10")                                                  \
            ".endif\n\t"                                                                   \
            "ldi  r24, %[cols] / 8\n\t"                                                    \
            "mov  r12, r24\n\t"                                                            \
            "1:\n\t"                                                                       \
            "ld   r16, X+\n\t" "ld   r17, X+\n\t" "ld   r18, X+\n\t" "ld   r19, X+\n\t"    \
            "ld   r20, X+\n\t" "ld   r21, X+\n\t" "ld   r22, X+\n\t" "ld   r23, X+\n\t"    \
            KWS_XROW("r2", "r3", "r4")                                                     \
            "adiw r30, %[cols] - 8\n\t"                                                    \
            KWS_XROW("r5", "r6", "r7")                                                     \
            "adiw r30, %[cols] - 8\n\t"                                                    \
            KWS_XROW("r8", "r9", "r10")                                                    \
            "subi r30, lo8(2 * %[cols])\n\t"                                               \
            "sbci r31, hi8(2 * %[cols])\n\t"                                               \
            "dec  r12\n\t"                                                                 \
            "breq 2f\n\t"                                                                  \
            "rjmp 1b\n\t"                                                                  \
            "2:\n\t"                                                                       \
            "subi r30, lo8(-2 * %[cols])\n\t"  /* Z: the next block's first row */         \
            "sbci r31, hi8(-2 * %[cols])\n\t"                                              \
            "sbiw r26, %[cols]\n\t"            /* X: back to x[0] */                       \
            "clr  __zero_reg__\n\t"                                                        \
            KWS_XOUT("r2", "r3", "r4") KWS_XOUT("r5", "r6", "r7") KWS_XOUT("r8", "r9", "r10")\
            ".if %[raw] == 3\n\t"                                                         \
            "movw r24, r14\n\t"                                                            \
            ".endif\n\t"                                                                   \
            "dec  r13\n\t"                                                                 \
            "breq 3f\n\t"                                                                  \
            "rjmp 0b\n\t"                                                                  \
            "3:\n\t"                                                                       \
            "pop  r29\n\t"                                                                 \
            "pop  r28\n\t"                                                                 \
            : "+z"(o_), "+x"(v_)                                                           \
            : [wm] "i"(wsym), [cols] "i"(ncols), [nb] "i"(nblk), [raw] "i"(raw_),          \
              [s] "i"(s_), [rnd] "i"((raw_) & 1 || (s_) < 1 ? 0 : 1 << ((s_) - 1)),            \
              [bp] "i"(bsym)                                                               \
            : "r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12",   \
              "r13", "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24", "r25", \
              "memory");                                                                   \
    } while (0)

/* int8 x int16, 2 rows x 3 columns: v[j] = 256 hi + lo in r16:r19, r17:r20, r18:r21
 * (mulsu wants r16..r23), w in r22; per row two 24-bit sums, a of w lo and b of w hi:
 * r2..r4 + 256 r5..r7 and r8..r10 + 256 r11..r13; r14:r15 zero; r23 column-group count;
 * r24:r25 the class bias pointer (mode 2) or the rounding (mode 1). 15 cycles a MAC (lpm,
 * mulsu + add, muls + add), + 12 per 6 for the loads and 4 for Z; the column loop is
 * unrolled twice when it can be (6 columns). The row is a + 256 b, out through Y (saved):
 *   mode 0: int32;  mode 1: int16 rsr_sat16(row, s), 0 <= s <= 15 (rounding in a's start);
 *   mode 2: int32 row + rsr(bias[r], s), -15 <= s (the bias is a's start value). */
#define KWS_HMAC(lo, hi, a0, a1, a2, b0, b1, b2) \
    "lpm  r22, Z+\n\t"                          \
    "mulsu r22, " lo "\n\t"                     \
    "sbc  " a2 ", r14\n\t"                      \
    "add  " a0 ", r0\n\t"                       \
    "adc  " a1 ", r1\n\t"                       \
    "adc  " a2 ", r14\n\t"                      \
    "muls r22, " hi "\n\t"                      \
    "sbc  " b2 ", r14\n\t"                      \
    "add  " b0 ", r0\n\t"                       \
    "adc  " b1 ", r1\n\t"                       \
    "adc  " b2 ", r14\n\t"
#define KWS_HROW(a0, a1, a2, b0, b1, b2)             \
    KWS_HMAC("r16", "r19", a0, a1, a2, b0, b1, b2) \
    KWS_HMAC("r17", "r20", a0, a1, a2, b0, b1, b2) \
    KWS_HMAC("r18", "r21", a0, a1, a2, b0, b1, b2)
/* the row a + 256 b into a0, a1, a2, b2: the top byte is b2 + carry + a2's sign extension */
#define KWS_HSUM(a0, a1, a2, b0, b1, b2) \
    "sbrc " a2 ", 7\n\t"                 \
    "dec  " b2 "\n\t"                    \
    "add  " a1 ", " b0 "\n\t"            \
    "adc  " a2 ", " b1 "\n\t"            \
    "adc  " b2 ", r14\n\t"
#define KWS_HOUT(a0, a1, a2, b0, b1, b2)                                                   \
    KWS_HSUM(a0, a1, a2, b0, b1, b2)                                                       \
    ".if %[mode] != 1\n\t"                                                                 \
    "st   Y+, " a0 "\n\t"                                                                  \
    "st   Y+, " a1 "\n\t"                                                                  \
    "st   Y+, " a2 "\n\t"                                                                  \
    "st   Y+, " b2 "\n\t"                                                                  \
    ".elseif %[s] >= 8\n\t"   /* (row >> 8) >> (s - 8), 24 bits, to int16 */               \
    ".rept %[s] - 8\n\t"                                                                   \
    "asr  " b2 "\n\t"                                                                      \
    "ror  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "mov  r20, " a2 "\n\t"                                                                 \
    "lsl  r20\n\t"                                                                         \
    "sbc  r20, r20\n\t"                                                                    \
    "cp   r20, " b2 "\n\t"                                                                 \
    "breq 6f\n\t"                                                                          \
    KWS_ST16_SAT(b2)                                                                       \
    "6:\n\t"                                                                               \
    "st   Y+, " a1 "\n\t"                                                                  \
    "st   Y+, " a2 "\n\t"                                                                  \
    "8:\n\t"                                                                               \
    ".else\n\t"               /* row >> s, 32 bits, to int16 */                            \
    ".rept %[s]\n\t"                                                                       \
    "asr  " b2 "\n\t"                                                                      \
    "ror  " a2 "\n\t"                                                                      \
    "ror  " a1 "\n\t"                                                                      \
    "ror  " a0 "\n\t"                                                                      \
    ".endr\n\t"                                                                            \
    "mov  r20, " a1 "\n\t"                                                                 \
    "lsl  r20\n\t"                                                                         \
    "sbc  r20, r20\n\t"                                                                    \
    "cp   r20, " a2 "\n\t"                                                                 \
    "cpc  r20, " b2 "\n\t"                                                                 \
    "breq 6f\n\t"                                                                          \
    KWS_ST16_SAT(b2)                                                                       \
    "6:\n\t"                                                                               \
    "st   Y+, " a0 "\n\t"                                                                  \
    "st   Y+, " a1 "\n\t"                                                                  \
    "8:\n\t"                                                                               \
    ".endif\n\t"

#define mat_h2_asm(wsym, v, ncols, nblk, out, mode_, s_, bsym)                             \
    do {                                                                                   \
        const void *v_ = (v);                                                              \
        void *o_ = (out);                                                                  \
        __asm__ __volatile__(                                                              \
            "push r28\n\t"                                                                 \
            "push r29\n\t"                                                                 \
            "movw r28, r30\n\t"                                                            \
            "ldi  r30, lo8(%[wm])\n\t"                                                     \
            "ldi  r31, hi8(%[wm])\n\t"                                                     \
            "clr  r14\n\t"                                                                 \
            "clr  r15\n\t"                                                                 \
            "ldi  r24, lo8(%[bp])\n\t"                                                     \
            "ldi  r25, hi8(%[bp])\n\t"                                                     \
            "0:\n\t"                                                                       \
            "movw r2, r14\n\t" "movw r4, r14\n\t" "movw r6, r14\n\t"                       \
            "movw r8, r14\n\t" "movw r10, r14\n\t" "movw r12, r14\n\t"                     \
            ".if %[mode] == 1 && %[s] >= 9\n\t"                                            \
            "ldi  r16, hi8(%[rnd])\n\t"                                                    \
            "mov  r3, r16\n\t"                                                             \
            "mov  r9, r16\n\t"                                                             \
            ".elseif %[mode] == 1 && %[s] >= 1\n\t"                                        \
            "ldi  r16, %[rnd]\n\t"                                                         \
            "mov  r2, r16\n\t"                                                             \
            "mov  r8, r16\n\t"                                                             \
            ".elseif %[mode] == 2\n\t"    /* this block's two biases, Z to bcls and back */ \
            "movw r16, r30\n\t"                                                            \
            "movw r30, r24\n\t"                                                            \
            "lpm  r18, Z+\n\t"                                                             \
            "lpm  r19, Z+\n\t"                                                             \
            "movw r24, r30\n\t"                                                            \
            "movw r30, r16\n\t"                                                            \
            KWS_BIAS_ADD("%[s]", "r18", "r20", "r21", "r2", "r3", "r4")                    \
            KWS_BIAS_ADD("%[s]", "r19", "r20", "r21", "r8", "r9", "r10")                   \
            ".endif\n\t"                                                                   \
            "ldi  r23, %[cols] / (3 * %[u])\n\t"                                           \
            "1:\n\t"                                                                       \
            ".rept %[u]\n\t"                                                               \
            "ld   r16, X+\n\t" "ld   r19, X+\n\t" "ld   r17, X+\n\t"                       \
            "ld   r20, X+\n\t" "ld   r18, X+\n\t" "ld   r21, X+\n\t"                       \
            KWS_HROW("r2", "r3", "r4", "r5", "r6", "r7")                                   \
            "adiw r30, %[cols] - 3\n\t"                                                    \
            KWS_HROW("r8", "r9", "r10", "r11", "r12", "r13")                               \
            "sbiw r30, %[cols]\n\t"                                                        \
            ".endr\n\t"                                                                    \
            "dec  r23\n\t"                                                                 \
            "breq 2f\n\t"                                                                  \
            "rjmp 1b\n\t"                                                                  \
            "2:\n\t"                                                                       \
            "adiw r30, %[cols]\n\t"            /* Z: the next block's first row */         \
            "sbiw r26, 2 * %[cols]\n\t"        /* X: back to v[0] */                       \
            "clr  __zero_reg__\n\t"                                                        \
            KWS_HOUT("r2", "r3", "r4", "r5", "r6", "r7")                                   \
            KWS_HOUT("r8", "r9", "r10", "r11", "r12", "r13")                               \
            "cpi  r30, lo8(%[wend])\n\t"       /* the end of the block rows */             \
            "brne 4f\n\t"                                                                  \
            "cpi  r31, hi8(%[wend])\n\t"                                                   \
            "breq 3f\n\t"                                                                  \
            "4:\n\t"                                                                       \
            "rjmp 0b\n\t"                                                                  \
            "3:\n\t"                                                                       \
            "pop  r29\n\t"                                                                 \
            "pop  r28\n\t"                                                                 \
            : "+z"(o_), "+x"(v_)                                                           \
            : [wm] "i"(wsym), [wend] "i"((wsym) + 2 * (nblk) * (ncols)), [cols] "i"(ncols),\
              [u] "i"((ncols) % 6 == 0 ? 2 : 1), [mode] "i"(mode_), [s] "i"(s_),           \
              [bp] "i"(bsym), [rnd] "i"((mode_) == 1 && (s_) >= 1 ? 1 << ((s_) - 1) : 0)  \
            : "r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12",   \
              "r13", "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", \
              "r24", "r25", "memory");                                                     \
    } while (0)
#else
#define KWS_X3 0
#define KWS_H2 0
#endif

/* ---- AVR: the recurrent half (W2, U2, the gates) in assembly -------------------------------
 * For dense int8 W2 / U2 whose ranks fit the registers (<= 6) and the usual shifts. Three
 * passes over the hidden units, through one static buffer:
 *
 *   pass A (W2, tw in registers): buf[r] = ((rsr(W2[r] . tw, PW) + ONE) << PU) + 2^(PU-1)
 *   pass B (U2, tu in registers): p[r] = (buf[r] + U2[r] . tu) >> PU
 *                                      = rsr(W2[r] . tw, PW) + rsr(U2[r] . tu, PU) + ONE
 *                                      = pre + ONE          (3 bytes, packed in place)
 *   gate: z, c, g, h' of every unit from p[r], bz[r], bc[r], h[r] (h in place)
 *
 * Pass B starts each row's sum from pass A's value, scaled so that one shift by PU rounds
 * U2 . tu and leaves W2's part exact: no separate shift, add and store of `pre`. (Both
 * passes also carry the correction C_tu of the unsigned weights below: pass A subtracts it,
 * pass B's products add it back.)
 *
 * Unsigned weights. A MAC of an int8 weight w and an int16 v = 256 hi + lo (lo unsigned) takes
 * two multiplies, and a signed product needs a sign extension (sbc, one cycle) before it is
 * added. Here each weight is flipped to w' = w + 128 (subi, one cycle) instead, which is
 * 1..255 because the model's weights are within +-127 (kws.intmodel.IntModel refuses -128):
 * w' lo is unsigned, and w' hi is negative exactly when hi is, whatever the weight. So both
 * products are added as plain unsigned 16-bit numbers (3 cycles each, 14 per MAC with the
 * weight's lpm) and each row sum is off by a constant of the vector alone:
 *
 *   sum_j w'_j v_j (the products added as unsigned) = sum_j w_j v_j + C,
 *   C = 128 sum_j v_j + 2^24 #{j: v_j < 0} = 128 D,  D = sum_j (v_j mod 2^16 + 2^16 [v_j < 0])
 *
 * Pass A computes D of tw and of tu, and starts its sums from
 *   K = 2^(PW-1) - C_tw + 2^PW (ONE - C_tu / 2^PU)
 * (rounding, its own correction, and pass B's, moved ahead of pass B's shift where it is
 * exact: C_tu is a multiple of 2^7 >= 2^PU). Everything is modulo 2^32, exact because every
 * true value fits int32 (the bounds are checked at compile time below).
 *
 * Registers of passes A and B (none is left for C: pointers and constants are "i" operands):
 *   r2..r7 lo bytes of the vector     r16..r21 hi bytes (mulsu wants r16..r23)
 *   r22 w'   r23:r8:r9 sum a (the w' lo products, 24 bits)   r10:r11:r12 sum b (w' hi)
 *   r13 zero   r14, r24:r25, r15: K (bytes 0..3, pass A)   X buf   Y p (pass B)   Z weights
 * The row is a + 256 b: r23, r8 + r10, r9 + r11, r12 (+ carries). */
#if KWS_STATE_BITS == 16 && defined(KWS_ASM) && !KWS_W2_SPARSE && !KWS_U2_SPARSE && \
    KWS_RANK_W <= 6 && \
    KWS_RANK_U <= 6 && KWS_SHIFT_PW >= 1 && KWS_SHIFT_PW <= 7 && KWS_SHIFT_PU >= 1 && \
    KWS_SHIFT_PU <= 7 && KWS_SHIFT_BZ >= -15 && KWS_SHIFT_BC >= -15 && KWS_HIDDEN <= 63
/* bounds of true values: |W2 . tw|, |U2 . tu|, C_tu, pass A's and pass B's sums */
#define KWS_REC_W2MAX (KWS_RANK_W * 127L * 32768L)
#define KWS_REC_U2MAX (KWS_RANK_U * 127L * 32768L)
#define KWS_REC_CU (128L * KWS_RANK_U * 131072L)
#define KWS_REC_AMAX \
    (KWS_REC_W2MAX + (1L << (14 + KWS_SHIFT_PW)) + ((KWS_REC_CU >> KWS_SHIFT_PU) << KWS_SHIFT_PW))
#define KWS_REC_BMAX \
    ((((KWS_REC_W2MAX >> KWS_SHIFT_PW) + 1 + 16384) << KWS_SHIFT_PU) + 64 + KWS_REC_U2MAX)
#if KWS_REC_AMAX < 0x7fff0000L && KWS_REC_BMAX < 0x7fff0000L
#define KWS_REC_ASM 1
/* |b'| of a bias after its shift (at most 127 * 2^15 here) */
#define KWS_REC_BIAS(s) ((s) > 0 ? 64L : 127L << ((s) <= 0 ? -(s) : 0))
/* 1: p + bias always fits 24 bits (else pass B saturates p to +-2^22: the same z and c,
 * since |bias| <= 2^22 - 2^15) */
#define KWS_REC_FITS24                                                                     \
    ((KWS_REC_W2MAX >> KWS_SHIFT_PW) + (KWS_REC_U2MAX >> KWS_SHIFT_PU) + 16386L +          \
     KWS_MAX2(KWS_REC_BIAS(KWS_SHIFT_BZ), KWS_REC_BIAS(KWS_SHIFT_BC)) < 0x800000L)

static uint8_t kws_buf[4 * KWS_HIDDEN];  /* pass A's values, then pass B's p (3 bytes each) */

/* vector element j < n (an int16 at X) into lo, hi; D (r12:r11:r10) += v mod 2^16 + 2^16 [v < 0] */
#define KWS_VLOAD(n, j, lo, hi) \
    ".if " n " > " #j "\n\t"   \
    "ld   " lo ", X+\n\t"      \
    "ld   " hi ", X+\n\t"      \
    "add  r10, " lo "\n\t"     \
    "adc  r11, " hi "\n\t"     \
    "adc  r12, r13\n\t"        \
    "sbrc " hi ", 7\n\t"       \
    "inc  r12\n\t"             \
    ".endif\n\t"
#define KWS_VLOAD6(n)                                                                      \
    "clr  r10\n\t"                                                                         \
    "clr  r11\n\t"                                                                         \
    "clr  r12\n\t"                                                                         \
    KWS_VLOAD(n, 0, "r2", "r16") KWS_VLOAD(n, 1, "r3", "r17") KWS_VLOAD(n, 2, "r4", "r18")  \
    KWS_VLOAD(n, 3, "r5", "r19") KWS_VLOAD(n, 4, "r6", "r20") KWS_VLOAD(n, 5, "r7", "r21")

/* 14 cycles: a += w' lo, b += w' hi (both as unsigned 16-bit numbers), w' = w + 128 */
#define KWS_VMAC(j, lo, hi)    \
    ".if %[n] > " #j "\n\t"    \
    "lpm  r22, Z+\n\t"         \
    "subi r22, 0x80\n\t"       \
    "mul  r22, " lo "\n\t"     \
    "add  r23, r0\n\t"         \
    "adc  r8, r1\n\t"          \
    "adc  r9, r13\n\t"         \
    "mulsu " hi ", r22\n\t"    \
    "add  r10, r0\n\t"         \
    "adc  r11, r1\n\t"         \
    "adc  r12, r13\n\t"        \
    ".endif\n\t"
/* a row: the sums a + 256 b into r12:r9:r8:r23 (a is unsigned: no sign extension) */
#define KWS_VROW                                                                           \
    KWS_VMAC(0, "r2", "r16") KWS_VMAC(1, "r3", "r17") KWS_VMAC(2, "r4", "r18")             \
    KWS_VMAC(3, "r5", "r19") KWS_VMAC(4, "r6", "r20") KWS_VMAC(5, "r7", "r21")             \
    "add  r8, r10\n\t"                                                                     \
    "adc  r9, r11\n\t"                                                                     \
    "adc  r12, r13\n\t"

#define KWS_REC_CLOBBERS                                                                   \
    "r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "r13",      \
    "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24", "r25",    \
    "memory"

/* pass A, one row: t = K + W2[r] . tw; buf[r] = ((t >> PW) << PU) + 2^(PU-1), both shifts in
 * one (right by PW - PU, clear the low PU bits; or clear the low PW bits, shift left) */
#define KWS_PASS_A_ROW         \
    "mov  r23, r14\n\t"        \
    "clr  r8\n\t"              \
    "clr  r9\n\t"              \
    "movw r10, r24\n\t"        \
    "mov  r12, r15\n\t"        \
    KWS_VROW                   \
    ".if %[pw] >= %[pu]\n\t"   \
    ".rept %[pw] - %[pu]\n\t"  \
    "asr  r12\n\t"             \
    "ror  r9\n\t"              \
    "ror  r8\n\t"              \
    "ror  r23\n\t"             \
    ".endr\n\t"                \
    "andi r23, %[mu]\n\t"      \
    ".else\n\t"                \
    "andi r23, %[mw]\n\t"      \
    ".rept %[pu] - %[pw]\n\t"  \
    "lsl  r23\n\t"             \
    "rol  r8\n\t"              \
    "rol  r9\n\t"              \
    "rol  r12\n\t"             \
    ".endr\n\t"                \
    ".endif\n\t"               \
    "ori  r23, %[rb]\n\t"      \
    "st   X+, r23\n\t"         \
    "st   X+, r8\n\t"          \
    "st   X+, r9\n\t"          \
    "st   X+, r12\n\t"

KWS_INLINE void kws_rec_pass_a(const int16_t *tw, const int16_t *tu)
{
    __asm__ __volatile__(
        "clr  r13\n\t"
        "movw r8, r26\n\t"      /* tw, for later */
        /* D of tu -> M = D_tu << (7 - PU + PW) = 2^PW C_tu / 2^PU, in r15:r25:r24:r14 */
        "movw r26, r30\n\t"
        KWS_VLOAD6("%[nu]")
        "clr  r23\n\t"
        ".if %[e] >= 8\n\t"
        "mov  r23, r12\n\t"
        "mov  r12, r11\n\t"
        "mov  r11, r10\n\t"
        "clr  r10\n\t"
        ".endif\n\t"
        ".rept %[e] %% 8\n\t"
        "lsl  r10\n\t"
        "rol  r11\n\t"
        "rol  r12\n\t"
        "rol  r23\n\t"
        ".endr\n\t"
        "mov  r14, r10\n\t"
        "mov  r24, r11\n\t"
        "mov  r25, r12\n\t"
        "mov  r15, r23\n\t"
        /* tw into the registers; M += 128 D_tw = (D << 8) >> 1 */
        "movw r26, r8\n\t"
        KWS_VLOAD6("%[n]")
        "clr  r23\n\t"
        "lsr  r12\n\t"
        "ror  r11\n\t"
        "ror  r10\n\t"
        "ror  r23\n\t"
        "add  r14, r23\n\t"
        "adc  r24, r10\n\t"
        "adc  r25, r11\n\t"
        "adc  r15, r12\n\t"
        /* K = 2^(PW-1) + 2^PW ONE - M */
        "ldi  r22, lo8(%[k0])\n\t"
        "ldi  r23, hi8(%[k0])\n\t"
        "ldi  r30, hlo8(%[k0])\n\t"
        "ldi  r31, hhi8(%[k0])\n\t"
        "sub  r22, r14\n\t"
        "sbc  r23, r24\n\t"
        "sbc  r30, r25\n\t"
        "sbc  r31, r15\n\t"
        "mov  r14, r22\n\t"
        "mov  r24, r23\n\t"
        "mov  r25, r30\n\t"
        "mov  r15, r31\n\t"
        "ldi  r26, lo8(%[buf])\n\t"
        "ldi  r27, hi8(%[buf])\n\t"
        "ldi  r30, lo8(%[wm])\n\t"
        "ldi  r31, hi8(%[wm])\n\t"
        "0:\n\t"
        KWS_PASS_A_ROW
        ".if %[h] %% 2 == 0\n\t"  /* two rows a loop */
        KWS_PASS_A_ROW
        ".endif\n\t"
        "cpi  r26, lo8(%[end])\n\t"   /* the buffer is < 256 bytes: the low byte decides */
        "breq 1f\n\t"
        "rjmp 0b\n\t"
        "1:\n\t"
        "clr  __zero_reg__\n\t"
        : "+x"(tw), "+z"(tu)
        : [n] "i"(KWS_RANK_W), [nu] "i"(KWS_RANK_U), [buf] "i"(kws_buf),
          [end] "i"(kws_buf + 4 * KWS_HIDDEN), [wm] "i"(kws_W2), [pw] "i"(KWS_SHIFT_PW),
          [pu] "i"(KWS_SHIFT_PU), [mu] "i"(0xff & ~((1 << KWS_SHIFT_PU) - 1)),
          [mw] "i"(0xff & ~((1 << KWS_SHIFT_PW) - 1)), [rb] "i"(1 << (KWS_SHIFT_PU - 1)),
          [e] "i"(7 - KWS_SHIFT_PU + KWS_SHIFT_PW), [h] "i"(KWS_HIDDEN),
          [k0] "i"((1L << (KWS_SHIFT_PW - 1)) + (1L << (14 + KWS_SHIFT_PW)))
        : KWS_REC_CLOBBERS);
}

/* pass B, one row: p = (buf[r] + U2[r] . tu) >> PU (the start value is pass A's), out
 * through Y as 3 bytes; saturated to +-2^22 when it might not fit */
#define KWS_PASS_B_ROW         \
    "ld   r23, X+\n\t"         \
    "movw r8, r14\n\t"         \
    "ld   r10, X+\n\t"         \
    "ld   r11, X+\n\t"         \
    "ld   r12, X+\n\t"         \
    KWS_VROW                   \
    ".rept %[pu]\n\t"          \
    "asr  r12\n\t"             \
    "ror  r9\n\t"              \
    "ror  r8\n\t"              \
    "ror  r23\n\t"             \
    ".endr\n\t"                \
    ".if %[fits] == 0\n\t"     \
    "mov  r24, r9\n\t"         \
    "subi r24, 0xc0\n\t"       \
    "mov  r25, r12\n\t"        \
    "sbci r25, 0xff\n\t"       \
    "tst  r25\n\t"             \
    "brne 2f\n\t"              \
    "cpi  r24, 0x80\n\t"       \
    "brlo 3f\n\t"              \
    "2:\n\t"                   \
    "ldi  r24, 0x40\n\t"       \
    "sbrc r12, 7\n\t"          \
    "ldi  r24, 0xc0\n\t"       \
    "mov  r9, r24\n\t"         \
    "clr  r8\n\t"              \
    "clr  r23\n\t"             \
    "3:\n\t"                   \
    ".endif\n\t"               \
    "st   Y+, r23\n\t"         \
    "st   Y+, r8\n\t"          \
    "st   Y+, r9\n\t"

KWS_INLINE void kws_rec_pass_b(const int16_t *tu)
{
    __asm__ __volatile__(
        "push r28\n\t"
        "push r29\n\t"
        "clr  r13\n\t"
        "clr  r14\n\t"         /* r15:r14 = 0, to clear a1:a2 */
        "clr  r15\n\t"
        KWS_VLOAD6("%[n]")
        "ldi  r26, lo8(%[buf])\n\t"
        "ldi  r27, hi8(%[buf])\n\t"
        "movw r28, r26\n\t"
        "ldi  r30, lo8(%[wm])\n\t"
        "ldi  r31, hi8(%[wm])\n\t"
        "0:\n\t"
        KWS_PASS_B_ROW
        ".if %[h] %% 2 == 0\n\t"
        KWS_PASS_B_ROW
        ".endif\n\t"
        "cpi  r26, lo8(%[end])\n\t"
        "breq 1f\n\t"
        "rjmp 0b\n\t"
        "1:\n\t"
        "pop  r29\n\t"
        "pop  r28\n\t"
        "clr  __zero_reg__\n\t"
        : "+x"(tu)
        : [n] "i"(KWS_RANK_U), [buf] "i"(kws_buf), [end] "i"(kws_buf + 4 * KWS_HIDDEN),
          [wm] "i"(kws_U2), [pu] "i"(KWS_SHIFT_PU), [h] "i"(KWS_HIDDEN),
          [fits] "i"(KWS_REC_FITS24)
        : KWS_REC_CLOBBERS, "r30", "r31");
}

/* The gate of every unit (about 130 cycles each), h updated in place, from p = pre + ONE:
 *   z = clamp(p + bz', 0, 2 ONE) >> 1       c = clamp(p + bc', 0, 2 ONE) - ONE
 *       (branch-free: cpse / sbrc skip a movw of 0 or 0x8000)
 *   g = ZETA + NU - ((4 ZETA z + 32764) >> 16)    (= rsr(ZETA (ONE - z), 14) + NU; the
 *       shift is the choice of bytes; when ZETA = ONE, 4 ZETA would not fit 16 bits:
 *       ((ZETA z + 8191) << 2) >> 16)
 *   h' = sat16((g c + z h + 8192) >> 14)          (8 multiplies into one 32-bit sum)
 * Registers: r2:r3 = 0, r4:r5 = 0x8000, r7:r6 4 ZETA (or ZETA), r9:r8 kws_bc - kws_bz - 1,
 * r11:r10 ZETA + NU, r19:r21:r20 z (p + bz'), r18:r17:r16 c (p + bc') then h, r19:r18 g,
 * r23:r22:r25:r24 the products; X p, Y h (saved: it may be the frame pointer), Z bz. */
KWS_INLINE void kws_rec_gate(int16_t *h)
{
    __asm__ __volatile__(
        "push r28\n\t"
        "push r29\n\t"
        "movw r28, r30\n\t"
        "clr  r2\n\t"
        "clr  r3\n\t"
        "clr  r4\n\t"
        "ldi  r24, 0x80\n\t"
        "mov  r5, r24\n\t"
        "ldi  r24, lo8(%[zeta])\n\t"
        "mov  r6, r24\n\t"
        "ldi  r24, hi8(%[zeta])\n\t"
        "mov  r7, r24\n\t"
        "ldi  r24, lo8(%[bc])\n\t"
        "ldi  r25, hi8(%[bc])\n\t"
        "subi r24, lo8(%[bz] + 1)\n\t"
        "sbci r25, hi8(%[bz] + 1)\n\t"
        "movw r8, r24\n\t"
        "ldi  r24, lo8(%[k])\n\t"
        "ldi  r25, hi8(%[k])\n\t"
        "movw r10, r24\n\t"
        "ldi  r26, lo8(%[buf])\n\t"
        "ldi  r27, hi8(%[buf])\n\t"
        "ldi  r30, lo8(%[bz])\n\t"
        "ldi  r31, hi8(%[bz])\n\t"
        "0:\n\t"
        "ld   r20, X+\n\t"
        "ld   r21, X+\n\t"
        "ld   r19, X+\n\t"
        "movw r16, r20\n\t"
        "mov  r18, r19\n\t"
        /* + bz'; + bc' (Z moves to bc[r] and back to bz[r + 1]) */
        "lpm  r24, Z+\n\t"
        KWS_BIAS_ADD("%[sbz]", "r24", "r25", "r22", "r20", "r21", "r19")
        "add  r30, r8\n\t"
        "adc  r31, r9\n\t"
        "lpm  r24, Z\n\t"
        "sub  r30, r8\n\t"
        "sbc  r31, r9\n\t"
        KWS_BIAS_ADD("%[sbc]", "r24", "r25", "r22", "r16", "r17", "r18")
        /* z: clamp to [0, 0x8000], halve */
        "cpse r19, r2\n\t"
        "movw r20, r4\n\t"
        "sbrc r19, 7\n\t"
        "movw r20, r2\n\t"
        "sbrc r21, 7\n\t"
        "movw r20, r4\n\t"
        "lsr  r21\n\t"
        "ror  r20\n\t"
        /* c: clamp to [0, 0x8000], - ONE */
        "cpse r18, r2\n\t"
        "movw r16, r4\n\t"
        "sbrc r18, 7\n\t"
        "movw r16, r2\n\t"
        "sbrc r17, 7\n\t"
        "movw r16, r4\n\t"
        "subi r17, 0x40\n\t"
        /* g = ZETA + NU - q: r19:r18; q = bytes 2..3 of 4 ZETA z + 32764 (r23:r22:r25:r24) */
        "mul  r20, r6\n\t"
        "movw r24, r0\n\t"
        "mul  r21, r7\n\t"
        "movw r22, r0\n\t"
        "mul  r20, r7\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        "mul  r21, r6\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        ".if %[z4]\n\t"
        "subi r24, 0x04\n\t"
        "sbci r25, 0x80\n\t"
        "sbci r22, 0xff\n\t"
        "sbci r23, 0xff\n\t"
        ".else\n\t"
        "subi r24, 0x01\n\t"
        "sbci r25, 0xe0\n\t"
        "sbci r22, 0xff\n\t"
        "sbci r23, 0xff\n\t"
        "lsl  r25\n\t"
        "rol  r22\n\t"
        "rol  r23\n\t"
        "lsl  r25\n\t"
        "rol  r22\n\t"
        "rol  r23\n\t"
        ".endif\n\t"
        "movw r18, r10\n\t"
        "sub  r18, r22\n\t"
        "sbc  r19, r23\n\t"
        /* S = g c + z h + 8192 (g unsigned, c and h signed, z <= ONE) */
        "mul  r18, r16\n\t"
        "movw r24, r0\n\t"
        "mulsu r17, r19\n\t"
        "movw r22, r0\n\t"
        "mulsu r17, r18\n\t"
        "sbc  r23, r2\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        "mul  r19, r16\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        "ld   r16, Y\n\t"
        "ldd  r17, Y+1\n\t"
        "mul  r20, r16\n\t"
        "add  r24, r0\n\t"
        "adc  r25, r1\n\t"
        "adc  r22, r2\n\t"
        "adc  r23, r2\n\t"
        "mulsu r17, r20\n\t"
        "sbc  r23, r2\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        "mulsu r17, r21\n\t"
        "add  r22, r0\n\t"
        "adc  r23, r1\n\t"
        "mul  r21, r16\n\t"
        "add  r25, r0\n\t"
        "adc  r22, r1\n\t"
        "adc  r23, r2\n\t"
        "subi r25, 0xe0\n\t"
        "sbci r22, 0xff\n\t"
        "sbci r23, 0xff\n\t"
        /* h' = S >> 14 = bytes 2..3 of S << 2, unless S >> 14 leaves int16 (top byte of S
         * outside [-32, 31]) */
        "mov  r18, r23\n\t"
        "subi r18, 0xe0\n\t"
        "cpi  r18, 0x40\n\t"
        "brsh 8f\n\t"
        "lsl  r25\n\t"
        "rol  r22\n\t"
        "rol  r23\n\t"
        "lsl  r25\n\t"
        "rol  r22\n\t"
        "rol  r23\n\t"
        "9:\n\t"
        "st   Y+, r22\n\t"
        "st   Y+, r23\n\t"
        "cpi  r26, lo8(%[end])\n\t"
        "breq 7f\n\t"
        "rjmp 0b\n\t"
        "8:\n\t"
        "sbrc r23, 7\n\t"
        "rjmp 6f\n\t"
        "ldi  r22, 0xff\n\t"
        "ldi  r23, 0x7f\n\t"
        "rjmp 9b\n\t"
        "6:\n\t"
        "movw r22, r4\n\t"
        "rjmp 9b\n\t"
        "7:\n\t"
        "pop  r29\n\t"
        "pop  r28\n\t"
        "clr  __zero_reg__\n\t"
        : "+z"(h)
        : [zeta] "i"(KWS_ZETA < 16384 ? 4L * KWS_ZETA : KWS_ZETA), [z4] "i"(KWS_ZETA < 16384),
          [k] "i"(KWS_ZETA + (long)KWS_NU), [bz] "i"(kws_bz), [bc] "i"(kws_bc), [buf] "i"(kws_buf),
          [end] "i"(kws_buf + 3 * KWS_HIDDEN), [sbz] "i"(KWS_SHIFT_BZ), [sbc] "i"(KWS_SHIFT_BC)
        : "r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "r13",
          "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24", "r25",
          "r26", "r27", "memory");
}
#endif /* bounds */
#endif /* KWS_REC_ASM conditions */

/* ---- the step ------------------------------------------------------------------------------- */

#define STREAM(VALUES, MASK, w, m) \
    vals_init(&w, VALUES);         \
    mask_init(&m, MASK)

#if KWS_STATE_BITS == 16
void kws_reset(kws_state *s)
{
    kws_idx i;
    for (i = 0; i < KWS_HIDDEN; i++)
        s->h[i] = 0;
}

#ifndef KWS_REC_ASM
/* the recurrent half in C: pre, the gates and h' of every hidden unit. A function of its
 * own: inlined, the row kernels' asm next to the gate arithmetic can run out of registers
 * (avr-gcc 5.4: "impossible constraints") for some shifts, e.g. PU = 0 with hidden 33. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void kws_rec_c(const int16_t *tw, const int16_t *tu, int16_t *hs, int32_t *acc)
{
    static int32_t acc2[KWS_BLOCK];
    kws_vals w, w2;
    kws_mask m, m2;
    kws_idx r0;
    uint16_t zeta = (uint16_t)(KWS_READ_U8(kws_params + 7) | KWS_READ_U8(kws_params + 8) << 8);
    uint16_t nu = (uint16_t)(KWS_READ_U8(kws_params + 9) | KWS_READ_U8(kws_params + 10) << 8);

    /* rows of W2 and U2 give hidden units, each of which then needs only its own old h:
     * in place, KWS_BLOCK units at a time */
    STREAM(kws_W2, KWS_W2_MASK_PTR, w, m);
    STREAM(kws_U2, KWS_U2_MASK_PTR, w2, m2);
    for (r0 = 0; r0 < KWS_HIDDEN; r0 += KWS_BLOCK) {
        kws_idx nb = KWS_HIDDEN - r0 < KWS_BLOCK ? KWS_HIDDEN - r0 : KWS_BLOCK;
        const int32_t *pw = acc, *pu = acc2;
        const uint8_t *pbz = kws_bz + r0, *pbc = kws_bc + r0;
        int16_t *h = hs + r0;
        mat_h(&w, &m, KWS_W2_SPARSE, tw, KWS_RANK_W, nb, acc);
        mat_h(&w2, &m2, KWS_U2_SPARSE, tu, KWS_RANK_U, nb, acc2);
        do {
            int32_t pre = rsr(*pw++, KWS_SHIFT_PW) + rsr(*pu++, KWS_SHIFT_PU);
            int32_t zz = pre + bias_value((int8_t)KWS_READ_U8(pbz), KWS_SHIFT_BZ) + ONE;
            int32_t cc = pre + bias_value((int8_t)KWS_READ_U8(pbc), KWS_SHIFT_BC);
            /* z = clamp(zz >> 1, 0, ONE), c = clamp(cc, -ONE, ONE) */
            int16_t z = (int16_t)(zz <= 0 ? 0 : zz >= 2 * ONE ? ONE : (uint16_t)zz >> 1);
            int16_t c = (int16_t)(cc <= -ONE ? -ONE : cc >= ONE ? ONE : cc);
            /* zeta, nu in [0, ONE]: g in [0, 2 ONE] fits uint16 */
            uint16_t g = (uint16_t)(rsr14_small(mul_us16(zeta, (int16_t)(ONE - z))) + nu);
            /* |z h| <= 2^29, |g c| <= 2^29 */
            *h = rsr14_sat16(mul_us16((uint16_t)z, *h) + mul_us16(g, c));
            h++;
            pbz++;
            pbc++;
        } while (--nb);
    }
}
#endif

/* t[i] = sat16(rsr(a[i], shift)), n >= 1 rows (tw, tu) */
KWS_INLINE void rows_to_t(int16_t *t, const int32_t *a, kws_idx n, int shift)
{
    do
        *t++ = rsr_sat16(*a++, shift);
    while (--n);
}

/* Which rows the AVR block kernels take (the others: the row kernels above, or C), and
 * whether they finish the rows themselves (tw, tu, class biases in registers). */
#if KWS_X3
#define KWS_W1_DONE (KWS_RANK_W / 3 * 3)
#define KWS_W1_FOLD (KWS_SHIFT_TW >= 0 && KWS_SHIFT_TW <= 15)
#else
#define KWS_W1_DONE 0
#define KWS_W1_FOLD 0
#endif
#if KWS_H2 && !KWS_U1_SPARSE
#define KWS_U1_DONE (KWS_RANK_U / 2 * 2)
#define KWS_U1_FOLD (KWS_SHIFT_TU >= 0 && KWS_SHIFT_TU <= 15)
#else
#define KWS_U1_DONE 0
#define KWS_U1_FOLD 0
#endif
#if KWS_H2 && !KWS_WC_SPARSE
#define KWS_WC_DONE (KWS_N_CLASSES / 2 * 2)
#define KWS_WC_FOLD (KWS_SHIFT_BCLS >= -15)
#else
#define KWS_WC_DONE 0
#define KWS_WC_FOLD 0
#endif
/* the class rows whose bias the kernel added */
#define KWS_WC_BIASED (KWS_WC_FOLD ? KWS_WC_DONE : 0)
#if (KWS_W1_DONE && !KWS_W1_FOLD) || KWS_W1_DONE < KWS_RANK_W || \
    (KWS_U1_DONE && !KWS_U1_FOLD) || KWS_U1_DONE < KWS_RANK_U || !defined(KWS_REC_ASM)
#define KWS_NEED_ACC 1
#else
#define KWS_NEED_ACC 0
#endif

#if defined(__GNUC__)
__attribute__((noinline))  /* one call per frame: keep the timed region a plain call */
#endif
void kws_step(kws_state *s, const int8_t x[KWS_N_IN], int32_t scores[KWS_N_CLASSES])
{
    int16_t tw[KWS_RANK_W], tu[KWS_RANK_U];
#if KWS_NEED_ACC
    /* static: on AVR a stack frame over 63 bytes makes every access to it slower */
    static int32_t acc[KWS_BLOCK];
#endif
    kws_vals w;
    kws_mask m;

    /* tw = sat16(rsr(W1 . x, TW)) */
    STREAM(kws_W1, KWS_W1_MASK_PTR, w, m);
#if KWS_W1_DONE && KWS_W1_FOLD
    mat_x3_asm(kws_W1, x, KWS_N_IN, KWS_W1_DONE / 3, tw, 0, KWS_SHIFT_TW);
#elif KWS_W1_DONE
    mat_x3_asm(kws_W1, x, KWS_N_IN, KWS_W1_DONE / 3, acc, 1, 0);
    rows_to_t(tw, acc, KWS_W1_DONE, KWS_SHIFT_TW);
#endif
#if KWS_W1_DONE < KWS_RANK_W
#if KWS_W1_DONE
    w.p += KWS_W1_DONE * KWS_N_IN;
#endif
    mat_x(&w, &m, KWS_W1_SPARSE, x, KWS_N_IN, KWS_RANK_W - KWS_W1_DONE, acc);
    rows_to_t(tw + KWS_W1_DONE, acc, KWS_RANK_W - KWS_W1_DONE, KWS_SHIFT_TW);
#endif

    /* tu = sat16(rsr(U1 . h, TU)) */
    STREAM(kws_U1, KWS_U1_MASK_PTR, w, m);
#if KWS_U1_DONE && KWS_U1_FOLD
    mat_h2_asm(kws_U1, s->h, KWS_HIDDEN, KWS_U1_DONE / 2, tu, 1, KWS_SHIFT_TU, kws_bcls);
#elif KWS_U1_DONE
    mat_h2_asm(kws_U1, s->h, KWS_HIDDEN, KWS_U1_DONE / 2, acc, 0, 0, kws_bcls);
    rows_to_t(tu, acc, KWS_U1_DONE, KWS_SHIFT_TU);
#endif
#if KWS_U1_DONE < KWS_RANK_U
#if KWS_U1_DONE
    w.p += KWS_U1_DONE * KWS_HIDDEN;
#endif
    mat_h(&w, &m, KWS_U1_SPARSE, s->h, KWS_HIDDEN, KWS_RANK_U - KWS_U1_DONE, acc);
    rows_to_t(tu + KWS_U1_DONE, acc, KWS_RANK_U - KWS_U1_DONE, KWS_SHIFT_TU);
#endif

    /* pre, the gates, h' (in place) */
#ifdef KWS_REC_ASM
    kws_rec_pass_a(tw, tu);
    kws_rec_pass_b(tu);
    kws_rec_gate(s->h);
#else
    kws_rec_c(tw, tu, s->h, acc);
#endif

    /* scores = Wc . h' + bcls' */
    STREAM(kws_Wc, KWS_WC_MASK_PTR, w, m);
#if KWS_WC_DONE && KWS_WC_FOLD
    mat_h2_asm(kws_Wc, s->h, KWS_HIDDEN, KWS_WC_DONE / 2, scores, 2, KWS_SHIFT_BCLS, kws_bcls);
#elif KWS_WC_DONE
    mat_h2_asm(kws_Wc, s->h, KWS_HIDDEN, KWS_WC_DONE / 2, scores, 0, 0, kws_bcls);
#endif
#if KWS_WC_DONE < KWS_N_CLASSES
#if KWS_WC_DONE
    w.p += KWS_WC_DONE * KWS_HIDDEN;
#endif
    mat_h(&w, &m, KWS_WC_SPARSE, s->h, KWS_HIDDEN, KWS_N_CLASSES - KWS_WC_DONE,
          scores + KWS_WC_DONE);
#endif
#if KWS_WC_BIASED < KWS_N_CLASSES
    {
        kws_idx k;
        for (k = KWS_WC_BIASED; k < KWS_N_CLASSES; k++)
            scores[k] += bias_value((int8_t)KWS_READ_U8(kws_bcls + k), KWS_SHIFT_BCLS);
    }
#endif
}

#else
/* ---- the int8-state step (KWS_STATE_BITS == 8, kws/quant/arith.py's second arithmetic) ----
 *
 *   tw  = sat8(rsr(W1 . x, TW))             t: int8, Q4
 *   tu  = sat8(rsr(U1 . h, TU))             h: int8, Q6
 *   pre = rsr(W2 . tw + U2 . tu, PW)        one sum, one rounding (PW == PU), Q7
 *   z   = clamp((pre + bz' + 128) >> 1, 0, 128)
 *   c   = clamp(pre + bc', -128, 127)
 *   g   = rsr(ZETA (128 - z), 7) + NU       ZETA, NU <= 127: g <= 254
 *   h'  = sat8((2 z h + g c + 128) >> 8)    |2 z h + g c| <= 65,280
 *   out = Wc . h' + bcls'
 *
 * Every product is int8 x int8. On AVR the dense rows use the int8 row kernels above
 * (mat_x: lpm, muls, 24-bit sums) and, when the shape allows, the 3-row blocks (mat_x3_asm);
 * the recurrent half (W2, U2 and the gates) is one assembly loop over the hidden units
 * (kws_rec8_asm below). The C here is the definition; on Cortex-M with the DSP extension its
 * dense rows use SMLAD (above). */

KWS_INLINE int8_t sat8(int32_t v)
{
    return (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
}

/* sat8(rsr(v, s)), clamped before a left shift (the same result, no overflow) */
KWS_INLINE int8_t rsr_sat8(int32_t v, int s)
{
    if (s < 0)
        v = sat8(v);
    return sat8(rsr(v, s));
}

/* the gate of one unit from a = W2[r] . tw + U2[r] . tu; returns h' */
KWS_INLINE int8_t gate8(int32_t a, int8_t bz, int8_t bc, int8_t h)
{
    int32_t pre = rsr(a, KWS_SHIFT_PW);
    int32_t zz = pre + bias_value(bz, KWS_SHIFT_BZ) + 128;
    int32_t cc = pre + bias_value(bc, KWS_SHIFT_BC);
    uint8_t z = (uint8_t)(zz <= 0 ? 0 : zz >= 256 ? 128 : (uint16_t)zz >> 1);
    int8_t c = sat8(cc);
    uint8_t g = (uint8_t)((((uint16_t)KWS_ZETA * (uint8_t)(128 - z) + 64u) >> 7) + KWS_NU);
    /* 2 z h + g c + 128: |.| <= 65,408, int32; >> 8 arithmetic */
    int32_t sum = 2 * (int32_t)((int16_t)z * h) + (int32_t)((int16_t)g * c) + 128;
    return sat8(sum >> 8);
}

/* ---- AVR: the recurrent half of the int8-state step in assembly -----------------------------
 * One loop over the hidden units, everything in registers (about 200 cycles a unit):
 *   a   = 2^(PW-1) + (bz' + 128) 2^PW + W2[r] . tw + U2[r] . tu      24 bits
 *   zz  = a >> PW                                 (= rsr(W2 . tw + U2 . tu, PW) + bz' + 128)
 *   z   = zz in [0, 255] ? zz >> 1 : zz < 0 ? 0 : 128
 *   c   = sat8(zz + (bc' - bz' - 128))            (= sat8(pre + bc'))
 *   g   = ((K - ZETA z) << 1) >> 8, K = 128 (ZETA + NU) + 64   (= rsr(ZETA (128 - z), 7) + NU)
 *   h'  = sat8((g c + (2 z h + 128)) >> 8)        (two int16 summed in 16 bits, overflow: V)
 * The start value and bc' - bz' - 128 come from a RAM table (kws_bias8), filled from the
 * stored int8 biases by kws_bias8_fill (kws_reset, and the first step if no reset came before).
 * |a| <= 12 * 127 * 128 + (2^15 + 128) 2^7 + 64 < 2^23, |bc' - bz' - 128| < 2^16 - 128.
 * For dense int8 W2 and U2, ranks <= 6, 1 <= PW <= 7, bias shifts >= -7 (|b'| <= 2^14), the
 * class biases' >= -15 (they fit 24 bits, the start values of the Wc rows: kws_bcls8),
 * hidden <= 42 (the table under 256 bytes). Registers: r16..r21 tw (muls wants r16..r23), r2..r7 tu (moved to r23 for
 * each product), r22 the weight, r8:r9:r10 the sum, r11 zero, r12:r13 the U2 pointer,
 * Z the W2 pointer, X h (in place), Y the bias table (saved: it may be the frame pointer). */
#if defined(KWS_ASM) && !KWS_W2_SPARSE && !KWS_U2_SPARSE && KWS_RANK_W <= 6 && \
    KWS_RANK_U <= 6 && KWS_SHIFT_PW >= 1 && KWS_SHIFT_PW <= 7 && KWS_SHIFT_BZ >= -7 && \
    KWS_SHIFT_BC >= -7 && KWS_SHIFT_BCLS >= -15 && KWS_HIDDEN <= 42
#define KWS_REC8_ASM 1

/* per unit: the sum's start value 2^(PW-1) + (bz' + 128) 2^PW (3 bytes: a >> PW is then zz
 * itself, exactly), and bc' - bz' - 128 (3 bytes: cc = zz + it) */
static uint8_t kws_bias8[6 * KWS_HIDDEN];
static uint8_t kws_bcls8[3 * KWS_N_CLASSES]; /* bcls', 24 bits (|bcls'| <= 127 2^15) */
#if KWS_SHIFT_BCLS >= -15
#define KWS_WC8_BIAS 1
#endif
static uint8_t kws_bias8_ready;

static void kws_bias8_fill(void)
{
    kws_idx r;
    for (r = 0; r < KWS_N_CLASSES; r++) {
        uint32_t b = (uint32_t)bias_value((int8_t)KWS_READ_U8(kws_bcls + r), KWS_SHIFT_BCLS);
        kws_bcls8[3 * r] = (uint8_t)b;
        kws_bcls8[3 * r + 1] = (uint8_t)(b >> 8);
        kws_bcls8[3 * r + 2] = (uint8_t)(b >> 16);
    }
    for (r = 0; r < KWS_HIDDEN; r++) {
        int32_t bz = bias_value((int8_t)KWS_READ_U8(kws_bz + r), KWS_SHIFT_BZ) + 128;
        int32_t bc = bias_value((int8_t)KWS_READ_U8(kws_bc + r), KWS_SHIFT_BC);
        uint32_t start = (uint32_t)(bz * ((int32_t)1 << KWS_SHIFT_PW)) + (1u << (KWS_SHIFT_PW - 1));
        uint32_t d = (uint32_t)(bc - bz);
        uint8_t *t = kws_bias8 + 6 * r;
        t[0] = (uint8_t)start;
        t[1] = (uint8_t)(start >> 8);
        t[2] = (uint8_t)(start >> 16);
        t[3] = (uint8_t)d;
        t[4] = (uint8_t)(d >> 8);
        t[5] = (uint8_t)(d >> 16);
    }
    kws_bias8_ready = 1;
}

/* one product into the 24-bit sum r10:r9:r8 (AVR201: the sign first, then the two bytes) */
#define KWS_R8ADD           \
    "sbc  r10, r11\n\t"     \
    "add  r8, r0\n\t"       \
    "adc  r9, r1\n\t"       \
    "adc  r10, r11\n\t"
#define KWS_R8W(j, reg)            \
    ".if %[rw] > " #j "\n\t"       \
    "lpm  r22, Z+\n\t"             \
    "muls r22, " reg "\n\t"        \
    KWS_R8ADD                      \
    ".endif\n\t"
#define KWS_R8U(j, reg)            \
    ".if %[ru] > " #j "\n\t"       \
    "lpm  r22, Z+\n\t"             \
    "mov  r23, " reg "\n\t"        \
    "muls r22, r23\n\t"            \
    KWS_R8ADD                      \
    ".endif\n\t"
#define KWS_R8LOAD(n, j, reg)      \
    ".if " n " > " #j "\n\t"       \
    "ld   " reg ", X+\n\t"         \
    ".endif\n\t"

static void kws_rec8_asm(const int8_t *tw_, const int8_t *tu, int8_t *h)
{
    register const int8_t *tw __asm__("r22") = tw_;
    if (!kws_bias8_ready)
        kws_bias8_fill();
    __asm__ __volatile__(
        "push r28\n\t"
        "push r29\n\t"
        "clr  r11\n\t"
        /* tu into r2..r7 (X), then tw into r16..r21 (X again) */
        "movw r24, r26\n\t"     /* h */
        "movw r26, r30\n\t"     /* tu */
        KWS_R8LOAD("%[ru]", 0, "r2") KWS_R8LOAD("%[ru]", 1, "r3") KWS_R8LOAD("%[ru]", 2, "r4")
        KWS_R8LOAD("%[ru]", 3, "r5") KWS_R8LOAD("%[ru]", 4, "r6") KWS_R8LOAD("%[ru]", 5, "r7")
        "movw r26, r22\n\t"     /* tw */
        KWS_R8LOAD("%[rw]", 0, "r16") KWS_R8LOAD("%[rw]", 1, "r17") KWS_R8LOAD("%[rw]", 2, "r18")
        KWS_R8LOAD("%[rw]", 3, "r19") KWS_R8LOAD("%[rw]", 4, "r20") KWS_R8LOAD("%[rw]", 5, "r21")
        "movw r26, r24\n\t"     /* X = h */
        "ldi  r28, lo8(%[bt])\n\t"
        "ldi  r29, hi8(%[bt])\n\t"
        "ldi  r30, lo8(%[w2])\n\t"
        "ldi  r31, hi8(%[w2])\n\t"
        "ldi  r24, lo8(%[u2])\n\t"
        "mov  r12, r24\n\t"
        "ldi  r24, hi8(%[u2])\n\t"
        "mov  r13, r24\n\t"
        "0:\n\t"
        "ld   r8, Y+\n\t"
        "ld   r9, Y+\n\t"
        "ld   r10, Y+\n\t"
        KWS_R8W(0, "r16") KWS_R8W(1, "r17") KWS_R8W(2, "r18")
        KWS_R8W(3, "r19") KWS_R8W(4, "r20") KWS_R8W(5, "r21")
        "movw r24, r30\n\t"
        "movw r30, r12\n\t"
        KWS_R8U(0, "r2") KWS_R8U(1, "r3") KWS_R8U(2, "r4")
        KWS_R8U(3, "r5") KWS_R8U(4, "r6") KWS_R8U(5, "r7")
        "movw r12, r30\n\t"
        "movw r30, r24\n\t"
        /* zz = a >> PW = pre + bz' + 128 (r10:r9:r8); z in r24 */
        ".rept %[pw]\n\t"
        "asr  r10\n\t"
        "ror  r9\n\t"
        "ror  r8\n\t"
        ".endr\n\t"
        "mov  r24, r8\n\t"
        "lsr  r24\n\t"
        "mov  r25, r9\n\t"
        "or   r25, r10\n\t"
        "breq 1f\n\t"
        "ldi  r24, 128\n\t"
        "sbrc r10, 7\n\t"
        "clr  r24\n\t"
        "1:\n\t"
        /* cc = zz + (bc' - bz' - 128) (3 bytes) in r14:r23:r22; c = sat8(cc) in r25 */
        "ld   r22, Y+\n\t"
        "ld   r23, Y+\n\t"
        "ld   r14, Y+\n\t"
        "add  r22, r8\n\t"
        "adc  r23, r9\n\t"
        "adc  r14, r10\n\t"
        "mov  r25, r22\n\t"
        "lsl  r25\n\t"
        "sbc  r25, r25\n\t"
        "cp   r25, r23\n\t"
        "cpc  r25, r14\n\t"
        "mov  r25, r22\n\t"
        "breq 2f\n\t"
        "ldi  r25, 0x7f\n\t"
        "sbrc r14, 7\n\t"
        "ldi  r25, 0x80\n\t"
        "2:\n\t"
        /* g = ((K - ZETA z) << 1) >> 8 in r23, K = 128 (ZETA + NU) + 64: the same as
         * rsr(ZETA (128 - z), 7) + NU (0 < K - ZETA z <= 32576) */
        "ldi  r23, %[zeta]\n\t"
        "mul  r24, r23\n\t"
        "ldi  r22, lo8(%[k])\n\t"
        "ldi  r23, hi8(%[k])\n\t"
        "sub  r22, r0\n\t"
        "sbc  r23, r1\n\t"
        "lsl  r22\n\t"
        "rol  r23\n\t"
        /* S = g c + (2 z h + 128): two int16 (|g c| <= 32512, 2 z h + 128 in
         * [-32640, 32640]) added in 16 bits; h' = S >> 8 = r15, unless the sum left int16
         * (V): then +-saturated by the true sign (N xor V) */
        "mov  r22, r25\n\t"
        "mulsu r22, r23\n\t"
        "movw r14, r0\n\t"
        "ld   r22, X\n\t"
        "mov  r23, r24\n\t"
        "mulsu r22, r23\n\t"
        "lsl  r0\n\t"
        "rol  r1\n\t"
        "ldi  r22, 0x80\n\t"
        "add  r0, r22\n\t"
        "adc  r1, r11\n\t"
        "add  r14, r0\n\t"
        "adc  r15, r1\n\t"
        "mov  r23, r15\n\t"
        "brvc 3f\n\t"
        "ldi  r23, 0x7f\n\t"
        "brge 3f\n\t"
        "ldi  r23, 0x80\n\t"
        "3:\n\t"
        "st   X+, r23\n\t"
        "cpi  r28, lo8(%[bend])\n\t"   /* the table is < 256 bytes: the low byte decides */
        "breq 4f\n\t"
        "rjmp 0b\n\t"
        "4:\n\t"
        "pop  r29\n\t"
        "pop  r28\n\t"
        "clr  __zero_reg__\n\t"
        : "+x"(h), "+z"(tu), "+r"(tw)
        : [rw] "i"(KWS_RANK_W), [ru] "i"(KWS_RANK_U), [pw] "i"(KWS_SHIFT_PW),
          [zeta] "i"(KWS_ZETA), [k] "i"(128L * (KWS_ZETA + KWS_NU) + 64),
          [bt] "i"(kws_bias8), [bend] "i"(kws_bias8 + 6 * KWS_HIDDEN), [w2] "i"(kws_W2),
          [u2] "i"(kws_U2)
        : "r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "r13",
          "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r24", "r25", "memory");
}
#endif

void kws_reset(kws_state *s)
{
    kws_idx i;
    for (i = 0; i < KWS_HIDDEN; i++)
        s->h[i] = 0;
#ifdef KWS_REC8_ASM
    kws_bias8_fill();
#endif
}

/* t[i] = sat8(rsr(a[i], shift)), n >= 1 rows (tw, tu) */
KWS_INLINE void rows_to_t8(int8_t *t, const int32_t *a, kws_idx n, int shift)
{
    do
        *t++ = rsr_sat8(*a++, shift);
    while (--n);
}

#ifndef KWS_REC8_ASM
/* the recurrent half in C: W2 . tw + U2 . tu, the gates and h' of every unit, in place */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void kws_rec8_c(const int8_t *tw, const int8_t *tu, int8_t *h)
{
    kws_vals w, w2;
    kws_mask m, m2;
    kws_idx r;
    STREAM(kws_W2, KWS_W2_MASK_PTR, w, m);
    STREAM(kws_U2, KWS_U2_MASK_PTR, w2, m2);
#ifdef KWS_DSP
    if (!KWS_W2_SPARSE && !KWS_U2_SPARSE) {
        int32_t ptw[KWS_PACKED(KWS_RANK_W)], ptu[KWS_PACKED(KWS_RANK_U)];
        if (KWS_RANK_W >= 4)
            pack_x(ptw, tw, KWS_RANK_W / 4);
        if (KWS_RANK_U >= 4)
            pack_x(ptu, tu, KWS_RANK_U / 4);
        for (r = 0; r < KWS_HIDDEN; r++) {
            int32_t a = row_x_dsp(&w, ptw, tw, KWS_RANK_W) + row_x_dsp(&w2, ptu, tu, KWS_RANK_U);
            h[r] = gate8(a, (int8_t)KWS_READ_U8(kws_bz + r), (int8_t)KWS_READ_U8(kws_bc + r),
                         h[r]);
        }
        return;
    }
#endif
    for (r = 0; r < KWS_HIDDEN; r++) {
        int32_t a = dot_x(&w, &m, KWS_W2_SPARSE, tw, KWS_RANK_W) +
                    dot_x(&w2, &m2, KWS_U2_SPARSE, tu, KWS_RANK_U);
        h[r] = gate8(a, (int8_t)KWS_READ_U8(kws_bz + r), (int8_t)KWS_READ_U8(kws_bc + r), h[r]);
    }
}
#endif

#if defined(KWS_ASM)
#define KWS_X3_U1 (!KWS_U1_SPARSE && KWS_HIDDEN % 8 == 0 && KWS_HIDDEN <= 63 && KWS_RANK_U >= 3)
#define KWS_X3_WC (!KWS_WC_SPARSE && KWS_HIDDEN % 8 == 0 && KWS_HIDDEN <= 63 && KWS_N_CLASSES >= 3)
#else
#define KWS_X3_U1 0
#define KWS_X3_WC 0
#endif
#define KWS_BLOCK8 KWS_MAX2(KWS_RANK_W, KWS_RANK_U)
#if KWS_X3_WC && defined(KWS_WC8_BIAS)
#define KWS_WC8_BIASED (KWS_N_CLASSES / 3 * 3)
#else
#define KWS_WC8_BIASED 0
#endif

#if defined(__GNUC__)
__attribute__((noinline))  /* one call per frame: keep the timed region a plain call */
#endif
void kws_step(kws_state *s, const int8_t x[KWS_N_IN], int32_t scores[KWS_N_CLASSES])
{
    int8_t tw[KWS_RANK_W], tu[KWS_RANK_U];
    static int32_t acc[KWS_BLOCK8];
    kws_vals w;
    kws_mask m;
    kws_idx k;

    /* tw = sat8(rsr(W1 . x, TW)) */
    STREAM(kws_W1, KWS_W1_MASK_PTR, w, m);
#if KWS_X3 && KWS_RANK_W % 3 == 0 && KWS_SHIFT_TW >= 0 && KWS_SHIFT_TW <= 15
    mat_x3_asm(kws_W1, x, KWS_N_IN, KWS_RANK_W / 3, tw, 2, KWS_SHIFT_TW);
#else
#if KWS_X3
    mat_x3_asm(kws_W1, x, KWS_N_IN, KWS_RANK_W / 3, acc, 1, 0);
    w.p += KWS_RANK_W / 3 * 3 * KWS_N_IN;
    if (KWS_RANK_W % 3)
        mat_x(&w, &m, 0, x, KWS_N_IN, KWS_RANK_W % 3, acc + KWS_RANK_W / 3 * 3);
#else
    mat_x(&w, &m, KWS_W1_SPARSE, x, KWS_N_IN, KWS_RANK_W, acc);
#endif
    rows_to_t8(tw, acc, KWS_RANK_W, KWS_SHIFT_TW);
#endif

    /* tu = sat8(rsr(U1 . h, TU)) */
    STREAM(kws_U1, KWS_U1_MASK_PTR, w, m);
#if KWS_X3_U1 && KWS_RANK_U % 3 == 0 && KWS_SHIFT_TU >= 0 && KWS_SHIFT_TU <= 15
    mat_x3_asm(kws_U1, s->h, KWS_HIDDEN, KWS_RANK_U / 3, tu, 2, KWS_SHIFT_TU);
#else
#if KWS_X3_U1
    mat_x3_asm(kws_U1, s->h, KWS_HIDDEN, KWS_RANK_U / 3, acc, 1, 0);
    w.p += KWS_RANK_U / 3 * 3 * KWS_HIDDEN;
    if (KWS_RANK_U % 3)
        mat_x(&w, &m, 0, s->h, KWS_HIDDEN, KWS_RANK_U % 3, acc + KWS_RANK_U / 3 * 3);
#else
    mat_x(&w, &m, KWS_U1_SPARSE, s->h, KWS_HIDDEN, KWS_RANK_U, acc);
#endif
    rows_to_t8(tu, acc, KWS_RANK_U, KWS_SHIFT_TU);
#endif

    /* pre, the gates, h' (in place) */
#ifdef KWS_REC8_ASM
    kws_rec8_asm(tw, tu, s->h);
#else
    kws_rec8_c(tw, tu, s->h);
#endif

    /* scores = Wc . h' + bcls' */
    STREAM(kws_Wc, KWS_WC_MASK_PTR, w, m);
#if KWS_X3_WC
#if defined(KWS_WC8_BIAS)
    mat_x3b_asm(kws_Wc, s->h, KWS_HIDDEN, KWS_N_CLASSES / 3, scores, 3, 0, kws_bcls8);
#else
    mat_x3_asm(kws_Wc, s->h, KWS_HIDDEN, KWS_N_CLASSES / 3, scores, 1, 0);
#endif
    w.p += KWS_N_CLASSES / 3 * 3 * KWS_HIDDEN;
    if (KWS_N_CLASSES % 3)
        mat_x(&w, &m, 0, s->h, KWS_HIDDEN, KWS_N_CLASSES % 3, scores + KWS_N_CLASSES / 3 * 3);
#else
    mat_x(&w, &m, KWS_WC_SPARSE, s->h, KWS_HIDDEN, KWS_N_CLASSES, scores);
#endif
#ifdef KWS_REC8_ASM
    /* the class biases of the rows the block kernel did not start from them */
    for (k = KWS_WC8_BIASED; k < KWS_N_CLASSES; k++) {
        const uint8_t *t = kws_bcls8 + 3 * k;
        scores[k] += (int32_t)((uint32_t)t[0] | (uint32_t)t[1] << 8 |
                               (uint32_t)(int32_t)(int8_t)t[2] << 16);
    }
#else
    for (k = 0; k < KWS_N_CLASSES; k++)
        scores[k] += bias_value((int8_t)KWS_READ_U8(kws_bcls + k), KWS_SHIFT_BCLS);
#endif
}
#endif

int kws_check_params(void)
{
#define KWS_CHECK_SHIFT(i, v)                               \
    if ((int8_t)KWS_READ_U8_STORED(kws_params + i) != (v)) \
        return 1 + i
    KWS_CHECK_SHIFT(0, KWS_SHIFT_TW);
    KWS_CHECK_SHIFT(1, KWS_SHIFT_TU);
    KWS_CHECK_SHIFT(2, KWS_SHIFT_PW);
    KWS_CHECK_SHIFT(3, KWS_SHIFT_PU);
    KWS_CHECK_SHIFT(4, KWS_SHIFT_BZ);
    KWS_CHECK_SHIFT(5, KWS_SHIFT_BC);
    KWS_CHECK_SHIFT(6, KWS_SHIFT_BCLS);
#if KWS_STATE_BITS == 8   /* zeta, nu: one byte each */
    if (KWS_READ_U8_STORED(kws_params + 7) != KWS_ZETA)
        return 8;
    if (KWS_READ_U8_STORED(kws_params + 8) != KWS_NU)
        return 9;
#else
    if ((KWS_READ_U8_STORED(kws_params + 7) | KWS_READ_U8_STORED(kws_params + 8) << 8)
        != KWS_ZETA)
        return 8;
    if ((KWS_READ_U8_STORED(kws_params + 9) | KWS_READ_U8_STORED(kws_params + 10) << 8)
        != KWS_NU)
        return 10;
#endif
    return 0;
}
