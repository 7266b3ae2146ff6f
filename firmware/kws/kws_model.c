/*
 * kws_model.c: one FastGRNN step, exactly kws/arith.py (the NumPy reference IntModel.run).
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
 */
#define KWS_MODEL_DATA_IMPL
#include "kws_model.h"

#include "kws_port.h"

#if defined(__GNUC__)
#define KWS_INLINE static inline __attribute__((always_inline))
#else
#define KWS_INLINE static inline
#endif

#define ONE ((int32_t)1 << KWS_QH)

/* hidden units per pass of W2 and U2 (two int32 buffers of this size on the stack); the
 * buffers also hold W1 . x and U1 . h, so they are at least as long as the ranks */
#define KWS_BLOCK KWS_MAX2(8, KWS_MAX2(KWS_RANK_W, KWS_RANK_U))

/* ---- compile-time checks of what the generated header promises ---------------------------- */
#if KWS_WEIGHT_BITS != 8 && KWS_WEIGHT_BITS != 4
#error "KWS_WEIGHT_BITS must be 8 or 4"
#endif
#if KWS_QH != 14 || KWS_QA != 11
#error "this kernel is written for QH = 14 and QA = 11 (kws/arith.py)"
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

/* ---- the two primitives of kws/arith.py ----------------------------------------------------- */

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
KWS_INLINE int16_t rsr_sat16(int32_t v, int s)
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
KWS_INLINE int16_t rsr14_sat16(int32_t v)
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
KWS_INLINE int16_t rsr14_small(int32_t v)
{
    int16_t hi;
    uint8_t lo;
    split14(v, &hi, &lo);
    return (int16_t)(hi * 4 + lo);
}

/* a * b for 0 <= a <= 65535 and int16 b: four 8x8 multiplies inline on AVR (libgcc's
 * __usmulhisi3 is the same arithmetic plus a call) */
KWS_INLINE int32_t mul_us16(uint16_t a, int16_t b)
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
    do
        *out++ = dot_x(w, m, sparse, v, cols);
    while (--rows);
}

KWS_INLINE void mat_h(kws_vals *w, kws_mask *m, int sparse, const int16_t *v, kws_idx cols,
                      kws_idx rows, int32_t *out)
{
#ifdef KWS_ASM
    if (!sparse) {
        mat_h_asm(&w->p, v, cols, rows, out);
        return;
    }
#endif
    do
        *out++ = dot_h(w, m, sparse, v, cols);
    while (--rows);
}

/* ---- the step ------------------------------------------------------------------------------- */

#define STREAM(VALUES, MASK, w, m) \
    vals_init(&w, VALUES);         \
    mask_init(&m, MASK)

void kws_reset(kws_state *s)
{
    kws_idx i;
    for (i = 0; i < KWS_HIDDEN; i++)
        s->h[i] = 0;
}

#if defined(__GNUC__)
__attribute__((noinline))  /* one call per frame: keep the timed region a plain call */
#endif
void kws_step(kws_state *s, const int8_t x[KWS_N_IN], int32_t scores[KWS_N_CLASSES])
{
    int16_t tw[KWS_RANK_W], tu[KWS_RANK_U];
    /* static: on AVR a stack frame over 63 bytes makes every access to it slower */
    static int32_t acc[KWS_BLOCK], acc2[KWS_BLOCK];
    kws_vals w, w2;
    kws_mask m, m2;
    kws_idx r, r0;
    uint16_t zeta = (uint16_t)(KWS_READ_U8(kws_params + 7) | KWS_READ_U8(kws_params + 8) << 8);
    uint16_t nu = (uint16_t)(KWS_READ_U8(kws_params + 9) | KWS_READ_U8(kws_params + 10) << 8);

    STREAM(kws_W1, KWS_W1_MASK_PTR, w, m);
    mat_x(&w, &m, KWS_W1_SPARSE, x, KWS_N_IN, KWS_RANK_W, acc);
    for (r = 0; r < KWS_RANK_W; r++)
        tw[r] = rsr_sat16(acc[r], KWS_SHIFT_TW);

    STREAM(kws_U1, KWS_U1_MASK_PTR, w, m);
    mat_h(&w, &m, KWS_U1_SPARSE, s->h, KWS_HIDDEN, KWS_RANK_U, acc);
    for (r = 0; r < KWS_RANK_U; r++)
        tu[r] = rsr_sat16(acc[r], KWS_SHIFT_TU);

    /* rows of W2 and U2 give hidden units, each of which then needs only its own old h:
     * in place, KWS_BLOCK units at a time */
    STREAM(kws_W2, KWS_W2_MASK_PTR, w, m);
    STREAM(kws_U2, KWS_U2_MASK_PTR, w2, m2);
    for (r0 = 0; r0 < KWS_HIDDEN; r0 += KWS_BLOCK) {
        kws_idx nb = KWS_HIDDEN - r0 < KWS_BLOCK ? KWS_HIDDEN - r0 : KWS_BLOCK;
        const int32_t *pw = acc, *pu = acc2;
        const uint8_t *pbz = kws_bz + r0, *pbc = kws_bc + r0;
        int16_t *h = s->h + r0;
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

    STREAM(kws_Wc, KWS_WC_MASK_PTR, w, m);
    mat_h(&w, &m, KWS_WC_SPARSE, s->h, KWS_HIDDEN, KWS_N_CLASSES, scores);
    for (r = 0; r < KWS_N_CLASSES; r++)
        scores[r] += bias_value((int8_t)KWS_READ_U8(kws_bcls + r), KWS_SHIFT_BCLS);
}

int kws_check_params(void)
{
#define KWS_CHECK_SHIFT(i, v)                        \
    if ((int8_t)KWS_READ_U8(kws_params + i) != (v)) \
        return 1 + i
    KWS_CHECK_SHIFT(0, KWS_SHIFT_TW);
    KWS_CHECK_SHIFT(1, KWS_SHIFT_TU);
    KWS_CHECK_SHIFT(2, KWS_SHIFT_PW);
    KWS_CHECK_SHIFT(3, KWS_SHIFT_PU);
    KWS_CHECK_SHIFT(4, KWS_SHIFT_BZ);
    KWS_CHECK_SHIFT(5, KWS_SHIFT_BC);
    KWS_CHECK_SHIFT(6, KWS_SHIFT_BCLS);
    if ((KWS_READ_U8(kws_params + 7) | KWS_READ_U8(kws_params + 8) << 8) != KWS_ZETA)
        return 8;
    if ((KWS_READ_U8(kws_params + 9) | KWS_READ_U8(kws_params + 10) << 8) != KWS_NU)
        return 10;
    return 0;
}
