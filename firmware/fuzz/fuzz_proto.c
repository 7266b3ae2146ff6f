/*
 * fuzz_proto.c: libFuzzer target for the firmware's serial protocol (firmware/PROTOCOL.md).
 *
 * One input is every byte a board receives from boot on. Each byte goes to kws_proto_feed()
 * as the sketch gives it, and every reply is taken out with kws_proto_emit(). The code under
 * test is the real decoder and dispatcher (firmware/protocol/kws_proto.c), the real kernel
 * (firmware/kernel/kws_model.c with a generated model_data.h) and the real stream schedule
 * behind LISTEN (firmware/kernel/kws_stream.c, with the configuration's generated kws_config.h:
 * every fuzz configuration defines KWS_STREAM_*) and the detector that decides on its windows
 * (firmware/kernel/kws_detect.c: KWS_DET_* in every configuration too), built with
 * -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all (firmware/fuzz/Makefile).
 *
 * On top of the sanitizers, this file keeps its own model of the protocol, written from
 * PROTOCOL.md (its own COBS decoder and bitwise CRC, not the firmware's), and abort()s
 * ("INVARIANT ...") when the firmware differs from it:
 *  - a reply exactly for every non-empty frame, none for other bytes;
 *  - every reply a well-formed wire frame: 0x00, COBS with no 0x00 inside, 0x00; CRC 0;
 *    len = payload bytes; no longer than the buffer it came from (tx: KWS_PROTO_TX_MAX,
 *    err: KWS_PROTO_ERR_MAX), and p->out points at one of the two;
 *  - the reply the spec asks for, byte for byte: link errors (codes 1-5, the seq and type
 *    as received), IDENTIFY's fields (capability bit 3 with LISTEN), INFER's t, cycles and
 *    scores (a second kws_state stepped here with kws_step), LISTEN's ended, pos, cycles and
 *    pooled scores (the schedule written again here from PROTOCOL.md and kws/detect/windows.py's
 *    WindowRunner: K kws_state copies, a frame counter, int64 pooled sums) and decision (the
 *    detector written again from PROTOCOL.md and kws/detect/detector.py: a 64-bit softmax, a
 *    shifted history), DETECT's settings, STATS's counters, ERROR 6 and 7 for bad requests;
 *  - the detection pin (kws_th_detect_pin) is set once per window that ends, to the
 *    decision's level, and never otherwise;
 *  - LISTEN's state is its own: INFER and RESET leave it alone, LISTEN leaves INFER's state
 *    and t alone; a bad LISTEN (ERROR 7) does not reset or step it;
 *  - a resent request (type, seq, len and CRC of the last valid one) gets the cached reply
 *    again byte for byte and steps nothing: the model states, t, the schedule's place and
 *    inferences do not move;
 *  - bytes other than delimiters never touch the reply buffers, a damaged frame never
 *    touches the cached reply (tx), a valid request never touches err;
 *  - after every reply the firmware's model state, t, counters, LISTEN schedule (place in
 *    the period, instances running, their states and pooled sums) and detector (history,
 *    windows since a detection, thresholds, refractory period) equal the model's.
 * The struct is malloc'ed at its exact size and the padding after its last buffer (err) is
 * poisoned, so ASan sees a write past any end of the reply buffers.
 *
 * A custom mutator runs libFuzzer's own mutations, then, for most inputs, re-seals frames
 * (len and CRC recomputed, COBS encoded again), inserts a fresh valid request, a run of
 * LISTEN requests (long enough to end windows of the shipped 50-frame schedule) or resends a
 * frame, so that mutated requests get past the CRC into the dispatcher; the rest stay
 * damaged on purpose.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "kws_proto.h"

/* LISTEN: compiled into the firmware when kws_config.h defines the schedule. Every fuzz
 * configuration does (firmware/fuzz/models.py); -DFUZZ_NO_LISTEN builds the harness for a
 * firmware without it (LISTEN is then an unknown command). */
#if defined(KWS_STREAM_INSTANCES)
#define REF_LISTEN 1
#define REF_K KWS_STREAM_INSTANCES
#define REF_P KWS_STREAM_PERIOD
#define REF_S (KWS_STREAM_PERIOD / KWS_STREAM_INSTANCES) /* stride: one window ends every S */
#define REF_POOL KWS_STREAM_POOL
#ifndef KWS_PROTO_LISTEN
#error "kws_config.h defines a stream schedule but kws_proto.h does not compile LISTEN"
#endif
#elif !defined(FUZZ_NO_LISTEN)
#error "every fuzz configuration defines a KWS_STREAM_* schedule (firmware/fuzz/models.py)"
#endif

/* The detector (LISTEN's decisions, DETECT): compiled in when kws_config.h has its constants
 * too. Every fuzz configuration does (models.py: detectors). */
#if defined(REF_LISTEN) && defined(KWS_DET_SMOOTH)
#define REF_DETECT 1
#ifndef KWS_PROTO_DETECT
#error "kws_config.h defines the detector but kws_proto.h does not compile DETECT"
#endif
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* the longest reply on the wire: delimiters, COBS code bytes (one per 254) */
#define WIRE_MAX (KWS_PROTO_TX_MAX + KWS_PROTO_TX_MAX / 254 + 3)
#define N_CLASS_NAMES KWS_PROTO_MIN2(sizeof(KWS_CLASS_LIST) - 1, \
                                     KWS_PROTO_MAX_PAYLOAD - KWS_PROTO_IDENT_FIXED)

/* where we are, for the report of a broken invariant */
static size_t at_byte, at_frame;

static void fail(int line, const char *cond, const char *what)
{
    fprintf(stderr, "INVARIANT fuzz_proto.c:%d: %s (%s) at input byte %zu, frame %zu\n", line,
            what, cond, at_byte, at_frame);
    abort();
}

#define REQUIRE(cond, what)                \
    do {                                   \
        if (!(cond))                       \
            fail(__LINE__, #cond, what);   \
    } while (0)

/* ---- the port ------------------------------------------------------------------------------ */

static uint32_t cycles_next; /* kws_th_timer_stop's answers: 1000, 1001, ... per input */
static int timer_running;

void kws_th_timer_start(void)
{
    REQUIRE(!timer_running, "timer started twice");
    timer_running = 1;
}

uint32_t kws_th_timer_stop(void)
{
    REQUIRE(timer_running, "timer stopped without a start");
    timer_running = 0;
    return cycles_next++;
}

#define STACK_PEAK 77
uint16_t kws_th_stack_peak(void) { return STACK_PEAK; }
uint32_t kws_th_f_cpu(void) { return 16000000UL; }
uint32_t kws_th_baud(void) { return 115200UL; }
uint8_t kws_th_caps(void) { return KWS_CAP_TIMER | KWS_CAP_STACK; }

#ifdef REF_DETECT
static uint32_t pin_calls; /* kws_th_detect_pin calls since boot, and the last level */
static uint8_t pin_level;

void kws_th_detect_pin(uint8_t on)
{
    REQUIRE(on <= 1, "the detection pin's level is 0 or 1");
    pin_calls++;
    pin_level = on;
}
#endif

/* ---- the model's own CRC and COBS (the spec's, written independently of kws_proto.c) ------ */

static uint16_t ref_crc(const uint8_t *d, size_t n)
{
    uint16_t crc = 0xFFFF;
    int k;
    while (n--) {
        crc ^= (uint16_t)(*d++ << 8);
        for (k = 0; k < 8; k++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Decode one frame's COBS bytes (no 0x00 in them) into out (room for n bytes: a frame never
 * decodes longer than it is). *complete = 0 if the last block runs past the end. */
static size_t ref_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, int *complete)
{
    size_t i = 0, o = 0;
    *complete = 1;
    while (i < n) {
        unsigned code = in[i++], k;
        for (k = 1; k < code; k++) {
            if (i >= n) {
                *complete = 0;
                return o;
            }
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n)
            out[o++] = 0; /* the zero a non-full block implies, unless it is the last */
    }
    return o;
}

static size_t ref_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    for (;;) {
        size_t j = i;
        unsigned code;
        while (j < n && in[j] != 0 && j - i < 254)
            j++;
        code = (unsigned)(j - i + 1);
        out[o++] = (uint8_t)code;
        while (i < j)
            out[o++] = in[i++];
        if (j == n)
            return o;
        if (code != 0xFF)
            i = j + 1;
    }
}

/* ---- what the firmware should be doing --------------------------------------------------- */

#ifdef REF_LISTEN
/* LISTEN's schedule as PROTOCOL.md and kws/detect/windows.py (WindowRunner) state it: frame t since
 * listening (re)started; window j covers frames [j S, j S + P) on instance j mod K, which is
 * reset when it starts; a window's output is the sum of its last `pool` frames' scores. */
typedef struct {
    uint32_t t;                           /* frames since the last LISTEN RESET (or boot) */
    kws_state inst[REF_K];
    int64_t pooled[REF_K][KWS_N_CLASSES]; /* the host's sums are int64 */
} ref_listen;

/* instances started after t frames: instance k starts at frame k S */
static unsigned ref_listen_running(const ref_listen *l)
{
    unsigned n = l->t == 0 ? 0 : (l->t - 1) / REF_S + 1;
    return n < REF_K ? n : REF_K;
}
#endif

#ifdef REF_DETECT
static const uint16_t ref_exp2[] = KWS_DET_EXP2_TABLE;
static const uint16_t ref_thresholds[KWS_N_CLASSES] = KWS_DET_THRESHOLDS;
static const uint8_t ref_keyword[KWS_N_CLASSES] = KWS_DET_KEYWORDS;
static const uint8_t ref_settings_hash[KWS_PROTO_SETTINGS_HASH_BYTES] = KWS_SETTINGS_HASH_BYTES;

typedef struct {
    unsigned m;                                   /* windows in the history */
    uint16_t hist[KWS_DET_SMOOTH][KWS_N_CLASSES]; /* Q15 posteriors, oldest first */
    uint16_t thr[KWS_N_CLASSES];
    unsigned refractory;
    unsigned since;                               /* windows since a detection, up to 65535 */
    uint8_t overridden;
    uint32_t pin_calls;                           /* the pin is set once per window that ends */
    uint8_t pin_level;
} ref_detect;
#endif

typedef struct {
    kws_state ref;  /* stepped here with kws_step, frame for frame */
    uint16_t t;
#ifdef REF_LISTEN
    ref_listen ls;  /* LISTEN's own state */
#endif
#ifdef REF_DETECT
    ref_detect det; /* the detector behind LISTEN */
#endif
    kws_proto_stats st;
    int have_last;  /* the last valid request and the wire bytes of its reply */
    uint8_t last_type, last_seq, last_len;
    uint16_t last_crc;
    uint8_t cached[WIRE_MAX];
    size_t cached_n;
} shadow;

typedef struct {
    uint8_t b[WIRE_MAX];
    size_t n;    /* bytes emitted (may exceed the buffer: counted, not stored) */
} wire;

static void put(uint8_t byte, void *ctx)
{
    wire *w = ctx;
    if (w->n < sizeof w->b)
        w->b[w->n] = byte;
    w->n++;
}

static uint8_t *le16(uint8_t *d, uint16_t v)
{
    d[0] = (uint8_t)(v & 0xFF);
    d[1] = (uint8_t)(v >> 8);
    return d + 2;
}

static uint8_t *le32(uint8_t *d, uint32_t v)
{
    le16(d, (uint16_t)(v & 0xFFFF));
    le16(d + 2, (uint16_t)(v >> 16));
    return d + 4;
}

/* a whole frame around payload f[3..3+plen): header and big-endian CRC; returns its length */
static size_t ref_seal(uint8_t *f, uint8_t type, uint8_t seq, size_t plen)
{
    uint16_t crc;
    f[0] = type;
    f[1] = seq;
    f[2] = (uint8_t)plen;
    crc = ref_crc(f, 3 + plen);
    f[3 + plen] = (uint8_t)(crc >> 8);
    f[4 + plen] = (uint8_t)(crc & 0xFF);
    return plen + 5;
}

static size_t ref_error(uint8_t *f, uint8_t seq, uint8_t code, uint8_t type)
{
    f[3] = code;
    f[4] = type;
    return ref_seal(f, KWS_T_ERROR, seq, 2);
}

#ifdef REF_LISTEN
/* One frame through the schedule; returns 1 and the ended window's sums in out, else 0. */
static int ref_listen_step(ref_listen *l, const int8_t *x, int64_t *out)
{
    uint32_t t = l->t;
    unsigned k, i;
    int ended = 0;
    if (t % REF_S == 0) { /* window t / S starts: its instance restarts */
        k = (t / REF_S) % REF_K;
        kws_reset(&l->inst[k]);
        memset(l->pooled[k], 0, sizeof l->pooled[k]);
    }
    for (k = 0; k < REF_K; k++) {
        int32_t scores[KWS_N_CLASSES];
        uint32_t in_window;
        if (t < k * REF_S)
            continue; /* its first window has not started yet */
        in_window = (t - k * REF_S) % REF_P;
        kws_step(&l->inst[k], x, scores);
        if (in_window + REF_POOL >= REF_P) /* the last `pool` frames */
            for (i = 0; i < KWS_N_CLASSES; i++)
                l->pooled[k][i] += scores[i];
        if (in_window == REF_P - 1) {
            REQUIRE(!ended, "one window ends per frame at most");
            memcpy(out, l->pooled[k], sizeof l->pooled[k]);
            ended = 1;
        }
    }
    /* frames t and t - P are the same to the schedule once every instance has started */
    l->t = t + 1 >= 2 * REF_P ? t + 1 - REF_P : t + 1;
    return ended;
}
#endif

#ifdef REF_DETECT
/* The detector as PROTOCOL.md ("Deciding on the board") and kws/detect/detector.py,
 * kws/detect/posterior.py state it, written here without the firmware's ring buffer: the
 * history is kept oldest first and shifted, the softmax is done in 64 bits. */
static void ref_detect_boot(ref_detect *r)
{
    memset(r, 0, sizeof *r);
    memcpy(r->thr, ref_thresholds, sizeof r->thr);
    r->refractory = KWS_DET_REFRACTORY;
    r->since = 0xFFFF;
}

static void ref_posteriors(const int64_t *pooled, uint16_t *post)
{
    int64_t top = pooled[0];
    uint64_t e[KWS_N_CLASSES], total = 0;
    unsigned i;
    for (i = 1; i < KWS_N_CLASSES; i++)
        top = pooled[i] > top ? pooled[i] : top;
    for (i = 0; i < KWS_N_CLASSES; i++) {
        uint64_t dr = (uint64_t)(top - pooled[i]) >> KWS_DET_SHIFT_R;
        uint64_t v = (dr * (uint64_t)KWS_DET_MULT + (1ULL << (KWS_DET_SHIFT_S - 1))) >>
                     KWS_DET_SHIFT_S;
        e[i] = dr > KWS_DET_CLAMP ? 0 : (uint64_t)(ref_exp2[v % (1u << KWS_DET_EXP2_BITS)] >>
                                                   (v >> KWS_DET_EXP2_BITS));
        total += e[i];
    }
    REQUIRE(total >= 32768, "the top class's e is 32768");
    for (i = 0; i < KWS_N_CLASSES; i++)
        post[i] = (uint16_t)((e[i] * 32768 + total / 2) / total);
}

/* One window that ended: its decision's 12 reply bytes into d */
static void ref_decide(ref_detect *r, const int64_t *pooled, uint8_t *d)
{
    unsigned i, j, best = 0xFF, fired = 0xFF, lit;
    uint64_t best_sum = 0, fired_sum = 0;
    if (r->m == KWS_DET_SMOOTH) { /* the oldest goes (a flat view: SMOOTH may be 1) */
        uint16_t *h = &r->hist[0][0];
        memmove(h, h + KWS_N_CLASSES, sizeof r->hist[0] * (KWS_DET_SMOOTH - 1));
    } else
        r->m++;
    ref_posteriors(pooled, r->hist[r->m - 1]);
    for (i = 0; i < KWS_N_CLASSES; i++) {
        uint64_t sum = 0;
        if (!ref_keyword[i])
            continue;
        for (j = 0; j < r->m; j++)
            sum += r->hist[j][i];
        if (best == 0xFF || sum > best_sum) {
            best = i;
            best_sum = sum;
        }
        if (sum >= (uint64_t)r->thr[i] * r->m && (fired == 0xFF || sum > fired_sum)) {
            fired = i;
            fired_sum = sum;
        }
    }
    if (r->since < 0xFFFF)
        r->since++;
    if (fired != 0xFF && r->since < r->refractory) {
        fired = 0xFF;
        fired_sum = 0;
    }
    if (fired != 0xFF)
        r->since = 0;
    lit = r->refractory ? r->refractory : 1;
    d[0] = (uint8_t)fired;
    d[1] = (uint8_t)best;
    d[2] = (uint8_t)r->m;
    d[3] = (uint8_t)(r->since < lit);
    le32(d + 4, (uint32_t)fired_sum);
    le32(d + 8, (uint32_t)best_sum);
    r->pin_calls++;
    r->pin_level = d[3];
}
#endif

/* The reply to a new valid request (type, seq, plen, payload pl) into f; steps the
 * reference model and counts as the firmware should (cycles0: the port's first answer to
 * kws_th_timer_stop for this request). Returns the frame length. */
static size_t ref_dispatch(shadow *s, uint8_t type, uint8_t seq, uint8_t plen, const uint8_t *pl,
                           uint32_t cycles0, uint8_t *f)
{
    uint8_t *d = f + 3;
    static const uint8_t hash[KWS_PROTO_HASH_BYTES] = KWS_MODEL_HASH_BYTES;
    unsigned i;
    switch (type) {
    case KWS_T_IDENTIFY:
        if (plen)
            break;
        d[0] = 1; /* protocol version */
        d[1] = 1; /* firmware 1.0 */
        d[2] = 0;
        d[3] = (uint8_t)(KWS_CAP_TIMER | KWS_CAP_STACK |
                         (4 + KWS_PROTO_MAX_FRAMES * (4 + 4 * KWS_N_CLASSES) +
                              2 * KWS_HIDDEN <= 255 ? KWS_CAP_HIDDEN : 0));
#ifdef REF_LISTEN
        d[3] |= 0x08; /* bit 3: LISTEN */
#endif
#ifdef REF_DETECT
        d[3] |= 0x10; /* bit 4: DETECT, the board decides */
#endif
        memcpy(d + 4, hash, 16);
        d[20] = KWS_N_IN;
        d[21] = KWS_HIDDEN;
        d[22] = KWS_N_CLASSES;
        d[23] = KWS_PROTO_MAX_FRAMES;
        le32(d + 24, 16000000UL);
        le32(d + 28, 115200UL);
        le16(d + 32, KWS_MODEL_BYTES);
        d[34] = KWS_SCORE_Q;
        d[35] = KWS_QX;
        d[36] = 0; /* a generated header: the kernel's shifts equal its parameter block */
        d[37] = (uint8_t)N_CLASS_NAMES;
        memcpy(d + 38, KWS_CLASS_LIST, N_CLASS_NAMES);
        return ref_seal(f, type | KWS_T_REPLY, seq, 38 + N_CLASS_NAMES);
    case KWS_T_RESET:
        if (plen)
            break;
        kws_reset(&s->ref);
        s->t = 0;
        return ref_seal(f, type | KWS_T_REPLY, seq, 0);
    case KWS_T_INFER: {
        unsigned flags, k, n, frame;
        uint8_t *cyc, *sc;
        if (plen < 1 + KWS_N_IN || (plen - 1) % KWS_N_IN)
            break;
        flags = pl[0];
        k = (plen - 1u) / KWS_N_IN;
        n = 4 + k * (4 + 4 * KWS_N_CLASSES) + (flags & KWS_F_HIDDEN ? 2 * KWS_HIDDEN : 0);
        if (flags & ~3u || k > KWS_PROTO_MAX_FRAMES || n > 255)
            break;
        REQUIRE(k >= 1, "an INFER request with no frame passed the checks");
        if (flags & KWS_F_RESET) {
            kws_reset(&s->ref);
            s->t = 0;
        }
        cyc = d + 4;
        sc = cyc + 4 * k;
        for (frame = 0; frame < k; frame++) {
            int32_t scores[KWS_N_CLASSES];
            int8_t x[KWS_N_IN];
            memcpy(x, pl + 1 + frame * KWS_N_IN, KWS_N_IN);
            kws_step(&s->ref, x, scores);
            s->st.last_cycles = cycles0 + frame; /* the port's answers, in order */
            s->st.inferences++;
            s->t++;
            cyc = le32(cyc, s->st.last_cycles);
            for (i = 0; i < KWS_N_CLASSES; i++)
                sc = le32(sc, (uint32_t)scores[i]);
        }
        if (flags & KWS_F_HIDDEN)
            for (i = 0; i < KWS_HIDDEN; i++)
                sc = le16(sc, (uint16_t)s->ref.h[i]);
        REQUIRE((size_t)(sc - d) == n, "the reference INFER reply has the announced size");
        d[0] = (uint8_t)k;
        d[1] = (uint8_t)flags;
        le16(d + 2, s->t);
        return ref_seal(f, type | KWS_T_REPLY, seq, n);
    }
#ifdef REF_LISTEN
    case KWS_T_LISTEN: {
        /* flags (bit 0 RESET, nothing else), then exactly one frame; a bad request changes
         * nothing (not even with the RESET bit) */
        int64_t pooled[KWS_N_CLASSES];
        int8_t x[KWS_N_IN];
        unsigned pos, ended;
        if (plen != 1 + KWS_N_IN || (pl[0] & ~1u))
            break;
        if (pl[0] & 1u) { /* RESET: no instance running, this frame is frame 0 */
            s->ls.t = 0;
#ifdef REF_DETECT
            s->det.m = 0; /* and the detector forgets its history and refractory period */
            s->det.since = 0xFFFF;
#endif
        }
        pos = s->ls.t % REF_P; /* this frame's place in the period */
        memcpy(x, pl + 1, KWS_N_IN);
        ended = (unsigned)ref_listen_step(&s->ls, x, pooled);
        /* one timed region around every instance's step (`cycles`), one count in STATS
         * inferences and last_cycles: what kws_proto.c does (PROTOCOL.md calls inferences
         * "kws_step calls", which LISTEN makes up to K per frame) */
        s->st.last_cycles = cycles0;
        s->st.inferences++;
        d[0] = (uint8_t)ended;
        d[1] = pl[0];
        le16(d + 2, (uint16_t)pos);
        le32(d + 4, cycles0);
        if (!ended)
            return ref_seal(f, type | KWS_T_REPLY, seq, 8);
        for (i = 0; i < KWS_N_CLASSES; i++) {
            REQUIRE(pooled[i] >= INT32_MIN && pooled[i] <= INT32_MAX,
                    "a window's pooled sum fits the reply's int32");
            le32(d + 8 + 4 * i, (uint32_t)(int32_t)pooled[i]);
        }
#ifdef REF_DETECT
        ref_decide(&s->det, pooled, d + 8 + 4 * KWS_N_CLASSES);
        return ref_seal(f, type | KWS_T_REPLY, seq, 8 + 4 * KWS_N_CLASSES + 12);
#else
        return ref_seal(f, type | KWS_T_REPLY, seq, 8 + 4 * KWS_N_CLASSES);
#endif
    }
#endif
#ifdef REF_DETECT
    case KWS_T_DETECT: {
        /* none (read), or SET + refractory (u16, < 65535) + a u16 threshold per class */
        if (plen) {
            unsigned refractory;
            if (plen != 3 + 2 * KWS_N_CLASSES || pl[0] != 0x01)
                break;
            refractory = pl[1] | (unsigned)pl[2] << 8;
            if (refractory == 0xFFFF)
                break;
            s->det.refractory = refractory;
            for (i = 0; i < KWS_N_CLASSES; i++)
                s->det.thr[i] = (uint16_t)(pl[3 + 2 * i] | pl[4 + 2 * i] << 8);
            s->det.overridden = 1;
        }
        d[0] = KWS_DET_SMOOTH;
        d[1] = s->det.overridden;
        le16(d + 2, (uint16_t)s->det.refractory);
        memcpy(d + 4, ref_settings_hash, KWS_PROTO_SETTINGS_HASH_BYTES);
        for (i = 0; i < KWS_N_CLASSES; i++)
            le16(d + 12 + 2 * i, s->det.thr[i]);
        return ref_seal(f, type | KWS_T_REPLY, seq, 12 + 2 * KWS_N_CLASSES);
    }
#endif
    case KWS_T_STATS:
        if (plen)
            break;
        le32(d, s->st.last_cycles);
        le32(d + 4, s->st.inferences);
        le32(d + 8, s->st.frames_ok);
        le16(d + 12, s->st.crc_errors);
        le16(d + 14, s->st.bad_frames);
        le16(d + 16, s->st.duplicates);
        le16(d + 18, s->st.errors);
        le16(d + 20, STACK_PEAK);
        le16(d + 22, s->t);
        le16(d + 24, KWS_PROTO_RX_MAX);
        le16(d + 26, KWS_PROTO_TX_MAX);
        return ref_seal(f, type | KWS_T_REPLY, seq, 28);
    default:
        s->st.errors++;
        return ref_error(f, seq, KWS_E_TYPE, type);
    }
    s->st.errors++;
    return ref_error(f, seq, KWS_E_ARG, type);
}

/* ---- one frame: the firmware's reply against the model's ----------------------------------- */

/* The wire bytes of a reply: 0x00 COBS 0x00, decoded into frame f (returns its length). */
static size_t check_wire(const kws_proto *p, const wire *w, uint8_t *f)
{
    size_t i, m;
    int complete;
    REQUIRE(p->out == p->tx || p->out == p->err, "the reply comes from tx or err");
    REQUIRE(p->out_len >= KWS_PROTO_OVERHEAD, "a reply is a whole frame");
    REQUIRE(p->out_len <= (p->out == p->tx ? KWS_PROTO_TX_MAX : KWS_PROTO_ERR_MAX),
            "the reply fits its buffer");
    REQUIRE(p->out_len <= KWS_PROTO_OVERHEAD + KWS_PROTO_MAX_PAYLOAD, "at most 255 payload bytes");
    REQUIRE(w->n <= WIRE_MAX, "the reply's wire length (COBS: + 1 per 254 bytes + 2)");
    REQUIRE(w->n >= 3 && w->b[0] == 0 && w->b[w->n - 1] == 0, "a reply is 0x00 ... 0x00");
    for (i = 1; i + 1 < w->n; i++)
        REQUIRE(w->b[i] != 0, "no 0x00 inside a COBS-encoded reply");
    m = ref_cobs_decode(w->b + 1, w->n - 2, f, &complete);
    REQUIRE(complete, "the reply's COBS blocks end at the delimiter");
    REQUIRE(m == p->out_len && memcmp(f, p->out, m) == 0, "the wire bytes decode to the buffer");
    REQUIRE(ref_crc(f, m) == 0, "the reply's CRC (the CRC over the whole frame is 0)");
    REQUIRE(f[2] == m - KWS_PROTO_OVERHEAD, "the reply's len byte");
    return m;
}

static void check_state(const kws_proto *p, const shadow *s)
{
    REQUIRE(memcmp(p->model.h, s->ref.h, sizeof s->ref.h) == 0,
            "the model state equals the reference stepped once per new INFER frame");
    REQUIRE(p->t == s->t, "t");
    REQUIRE(p->stats.last_cycles == s->st.last_cycles, "STATS last_cycles");
    REQUIRE(p->stats.inferences == s->st.inferences, "STATS inferences (kws_step calls)");
    REQUIRE(p->stats.frames_ok == s->st.frames_ok, "STATS frames_ok");
    REQUIRE(p->stats.crc_errors == s->st.crc_errors, "STATS crc_errors");
    REQUIRE(p->stats.bad_frames == s->st.bad_frames, "STATS bad_frames");
    REQUIRE(p->stats.duplicates == s->st.duplicates, "STATS duplicates");
    REQUIRE(p->stats.errors == s->st.errors, "STATS errors");
    REQUIRE(!timer_running, "the timer stopped after every step");
#ifdef REF_LISTEN
    {
        unsigned k, i, running = ref_listen_running(&s->ls);
        REQUIRE(p->listen.pos == s->ls.t % REF_P, "LISTEN: the schedule's place in the period");
        REQUIRE(p->listen.running == running, "LISTEN: the instances started");
        for (k = 0; k < running; k++) {
            REQUIRE(memcmp(p->listen.inst[k].h, s->ls.inst[k].h, sizeof s->ls.inst[k].h) == 0,
                    "LISTEN: each running instance's state equals the reference's");
            for (i = 0; i < KWS_N_CLASSES; i++)
                REQUIRE(p->listen.pooled[k][i] == s->ls.pooled[k][i],
                        "LISTEN: each running instance's pooled sums");
        }
    }
#endif
#ifdef REF_DETECT
    {
        unsigned i, j;
        const ref_detect *r = &s->det;
        REQUIRE(p->detect.count == r->m, "DETECT: the windows in the detector's history");
        REQUIRE(p->detect.since == r->since, "DETECT: windows since the last detection");
        REQUIRE(p->detect.refractory == r->refractory, "DETECT: the refractory period");
        REQUIRE(memcmp(p->detect.thr, r->thr, sizeof r->thr) == 0, "DETECT: the thresholds");
        REQUIRE(p->overridden == r->overridden, "DETECT: overridden");
        for (j = 0; j < r->m; j++) { /* the ring, oldest first, ends before head */
            unsigned slot = (p->detect.head + KWS_DET_SMOOTH - r->m + j) % KWS_DET_SMOOTH;
            for (i = 0; i < KWS_N_CLASSES; i++)
                REQUIRE(p->detect.post[slot][i] == r->hist[j][i],
                        "DETECT: the posteriors of the last windows");
        }
        REQUIRE(pin_calls == r->pin_calls && (!pin_calls || pin_level == r->pin_level),
                "the detection pin is set once per window that ends, to the decision's level");
    }
#endif
}

/* The firmware's COBS encoders on any bytes (here: each decoded frame, valid or not, up to
 * the input's length): kws_cobs_encode (host tools) and kws_proto_emit (replies; only ever
 * given frames up to KWS_PROTO_TX_MAX bytes by the firmware, so longer ones are its full
 * blocks' only test). No 0x00 inside, at most 1 byte per 254 added, decodes back. */
#define ENC_MAX 8192
typedef struct {
    uint8_t b[ENC_MAX + ENC_MAX / 254 + 3];
    size_t n;
} big_wire;

static void put_big(uint8_t byte, void *ctx)
{
    big_wire *w = ctx;
    REQUIRE(w->n < sizeof w->b, "kws_proto_emit's output length");
    w->b[w->n++] = byte;
}

static void check_encoders(const uint8_t *d, size_t m)
{
    static big_wire w;
    static uint8_t back[ENC_MAX + ENC_MAX / 254 + 3];
    static kws_proto q;
    size_t e, i;
    int complete;
    if (m == 0 || m > ENC_MAX)
        return;
    e = kws_cobs_encode(d, (uint16_t)m, w.b);
    REQUIRE(e <= m + m / 254 + 1 && memchr(w.b, 0, e) == NULL,
            "kws_cobs_encode: no 0x00, overhead");
    REQUIRE(ref_cobs_decode(w.b, e, back, &complete) == m && complete && !memcmp(back, d, m),
            "kws_cobs_encode decodes back");
    q.out = d;
    q.out_len = (uint16_t)m;
    w.n = 0;
    kws_proto_emit(&q, put_big, &w);
    REQUIRE(w.n >= 3 && w.n <= m + m / 254 + 3 && w.b[0] == 0 && w.b[w.n - 1] == 0,
            "kws_proto_emit: 0x00 ... 0x00, overhead");
    for (i = 1; i + 1 < w.n; i++)
        REQUIRE(w.b[i] != 0, "kws_proto_emit: no 0x00 inside");
    REQUIRE(ref_cobs_decode(w.b + 1, w.n - 2, back, &complete) == m && complete &&
                !memcmp(back, d, m), "kws_proto_emit decodes back");
}

/* The frame chunk[0..n) (its COBS bytes) has just ended; cycles0 is what the timer stub
 * stood at before its delimiter was fed. */
static void on_frame(kws_proto *p, shadow *s, const uint8_t *chunk, size_t n, uint8_t *dec,
                     const uint8_t *tx0, const uint8_t *err0, uint32_t cycles0)
{
    static wire w;
    static uint8_t got[WIRE_MAX], want[KWS_PROTO_OVERHEAD + KWS_PROTO_MAX_PAYLOAD];
    size_t m, got_n, want_n;
    int complete;
    uint8_t code = 0;

    w.n = 0;
    kws_proto_emit(p, put, &w);
    got_n = check_wire(p, &w, got);

    m = ref_cobs_decode(chunk, n, dec, &complete);
    check_encoders(dec, m);
    if (m > KWS_PROTO_RX_MAX)
        code = KWS_E_OVERFLOW;
    else if (!complete)
        code = KWS_E_COBS;
    else if (m < KWS_PROTO_OVERHEAD)
        code = KWS_E_SHORT;
    else if (ref_crc(dec, m) != 0)
        code = KWS_E_CRC;
    else if (dec[2] != m - KWS_PROTO_OVERHEAD)
        code = KWS_E_LENGTH;

    if (code) { /* a damaged frame: ERROR from err, the cached reply untouched */
        if (code == KWS_E_CRC)
            s->st.crc_errors++;
        else
            s->st.bad_frames++;
        s->st.errors++;
        want_n = ref_error(want, m >= 2 ? dec[1] : 0, code, m >= 1 ? dec[0] : 0);
        REQUIRE(p->out == p->err, "a link error is answered from err");
        REQUIRE(memcmp(p->tx, tx0, KWS_PROTO_TX_MAX) == 0, "a damaged frame leaves tx alone");
        REQUIRE(cycles_next == cycles0, "a damaged frame steps nothing");
    } else {
        uint8_t type = dec[0], seq = dec[1], plen = dec[2];
        uint16_t crc = (uint16_t)(dec[m - 2] << 8 | dec[m - 1]);
        s->st.frames_ok++;
        REQUIRE(p->out == p->tx, "a valid request is answered from tx");
        REQUIRE(memcmp(p->err, err0, KWS_PROTO_ERR_MAX) == 0, "a valid request leaves err alone");
        if (s->have_last && type == s->last_type && seq == s->last_seq && plen == s->last_len &&
            crc == s->last_crc) {
            /* a resent request: the cached reply, byte for byte, and nothing executed */
            s->st.duplicates++;
            REQUIRE(w.n == s->cached_n && memcmp(w.b, s->cached, w.n) == 0,
                    "a resent request gets the cached reply byte for byte");
            REQUIRE(memcmp(p->tx, tx0, KWS_PROTO_TX_MAX) == 0, "a resent request leaves tx alone");
            REQUIRE(cycles_next == cycles0, "a resent request does not step the model");
            check_state(p, s);
            return;
        }
        {
            uint32_t before = s->st.inferences;
            want_n = ref_dispatch(s, type, seq, plen, dec + KWS_PROTO_HEADER, cycles0, want);
            REQUIRE(cycles_next - cycles0 == s->st.inferences - before,
                    "a new request steps the model once per INFER frame or LISTEN, else not "
                    "at all");
        }
        s->have_last = 1;
        s->last_type = type;
        s->last_seq = seq;
        s->last_len = plen;
        s->last_crc = crc;
        memcpy(s->cached, w.b, w.n);
        s->cached_n = w.n;
    }
    REQUIRE(got_n == want_n && memcmp(got, want, want_n) == 0,
            "the reply is the one PROTOCOL.md asks for, byte for byte");
    check_state(p, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static shadow s;
    static uint8_t tx0[KWS_PROTO_TX_MAX], err0[KWS_PROTO_ERR_MAX];
    kws_proto *p = malloc(sizeof *p);
    uint8_t *dec = malloc(size + 1);
    size_t start = 0, tail = offsetof(kws_proto, err) + KWS_PROTO_ERR_MAX;
    if (!p || !dec)
        abort();
    memset(&s, 0, sizeof s);
    kws_reset(&s.ref);
#ifdef REF_DETECT
    ref_detect_boot(&s.det);
    pin_calls = 0;
    pin_level = 0;
#endif
    cycles_next = 1000;
    timer_running = 0;
    at_frame = 0;
    kws_proto_init(p);
    ASAN_POISON_MEMORY_REGION((uint8_t *)p + tail, sizeof *p - tail);
    check_state(p, &s);
    memcpy(tx0, p->tx, sizeof tx0);
    memcpy(err0, p->err, sizeof err0);
    for (at_byte = 0; at_byte < size; at_byte++) {
        uint8_t b = data[at_byte];
        uint32_t cycles0;
        int r;
        if (b != 0) {
            REQUIRE(kws_proto_feed(p, b) == 0, "a reply only at a delimiter");
            continue;
        }
        /* everything since the last delimiter went into rx only */
        REQUIRE(memcmp(p->tx, tx0, sizeof tx0) == 0 && memcmp(p->err, err0, sizeof err0) == 0,
                "bytes of a frame do not touch the reply buffers");
        REQUIRE(cycles_next == 1000 + s.st.inferences, "bytes of a frame step nothing");
        cycles0 = cycles_next;
        r = kws_proto_feed(p, 0);
        if (at_byte == start) { /* an empty frame: ignored */
            REQUIRE(r == 0, "no reply to an empty frame");
        } else {
            REQUIRE(r == 1, "a reply to every non-empty frame");
            at_frame++;
            on_frame(p, &s, data + start, at_byte - start, dec, tx0, err0, cycles0);
            memcpy(tx0, p->tx, sizeof tx0);
            memcpy(err0, p->err, sizeof err0);
        }
        start = at_byte + 1;
    }
    ASAN_UNPOISON_MEMORY_REGION((uint8_t *)p + tail, sizeof *p - tail);
    free(dec);
    free(p);
    return 0;
}

/* ---- the custom mutator -------------------------------------------------------------------- */

static uint32_t rnd(uint32_t *s) /* xorshift32 */
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

#define SCRATCH 65536
static uint8_t scratch[SCRATCH], frame_buf[SCRATCH], enc_buf[SCRATCH + SCRATCH / 254 + 2];

/* Re-seal each frame with probability 3/4: decode its COBS (a cut block is taken as it is),
 * then the len byte and the CRC are made right and it is encoded again. */
static size_t reseal(uint8_t *data, size_t size, size_t max_size, uint32_t *rs)
{
    size_t i = 0, o = 0;
    while (i <= size) {
        size_t j = i, m, e;
        int complete;
        while (j < size && data[j] != 0)
            j++;
        m = ref_cobs_decode(data + i, j - i, frame_buf, &complete);
        if (j > i && m >= KWS_PROTO_OVERHEAD && m <= KWS_PROTO_OVERHEAD + KWS_PROTO_MAX_PAYLOAD &&
            rnd(rs) % 4) {
            ref_seal(frame_buf, frame_buf[0], frame_buf[1], m - KWS_PROTO_OVERHEAD);
            e = ref_cobs_encode(frame_buf, m, enc_buf);
        } else {
            memcpy(enc_buf, data + i, j - i);
            e = j - i;
        }
        if (o + e + 1 > max_size)
            return size; /* does not fit: keep the mutated input as it is */
        memcpy(scratch + o, enc_buf, e);
        o += e;
        if (j < size)
            scratch[o++] = 0;
        i = j + 1;
    }
    memcpy(data, scratch, o);
    return o;
}

/* Insert a new valid request (0x00 COBS 0x00) at a delimiter or at the end. */
static size_t insert_request(uint8_t *data, size_t size, size_t max_size, uint32_t *rs)
{
    static const uint8_t types[] = {KWS_T_IDENTIFY, KWS_T_RESET, KWS_T_INFER, KWS_T_INFER,
                                    KWS_T_INFER, KWS_T_STATS, KWS_T_LISTEN, KWS_T_LISTEN,
                                    KWS_T_DETECT, KWS_T_DETECT};
    size_t plen = 0, e, at = size, i, n_zero = 0;
    uint8_t type = types[rnd(rs) % sizeof types], seq = (uint8_t)rnd(rs);
    if (rnd(rs) % 8 == 0)
        type = (uint8_t)rnd(rs);
    if (type == KWS_T_INFER) {
        static const uint8_t flags[] = {0, 0, KWS_F_RESET, KWS_F_HIDDEN, 3, 4, 0x80};
        size_t k = 1 + rnd(rs) % (KWS_PROTO_MAX_FRAMES + 1);
        plen = 1 + k * KWS_N_IN;
        if (plen > KWS_PROTO_MAX_PAYLOAD || rnd(rs) % 8 == 0)
            plen = rnd(rs) % (KWS_PROTO_MAX_PAYLOAD + 1);
        frame_buf[3] = flags[rnd(rs) % sizeof flags];
        for (i = 1; i < plen; i++)
            frame_buf[3 + i] = (uint8_t)rnd(rs);
    } else if (type == KWS_T_LISTEN) {
        static const uint8_t flags[] = {0, 0, 0, KWS_F_RESET, KWS_F_HIDDEN, 3, 0x80};
        plen = 1 + KWS_N_IN;
        if (rnd(rs) % 8 == 0)
            plen = rnd(rs) % (2 + 2 * KWS_N_IN);
        frame_buf[3] = flags[rnd(rs) % sizeof flags];
        for (i = 1; i < plen; i++)
            frame_buf[3 + i] = (uint8_t)rnd(rs);
    } else if (type == KWS_T_DETECT && rnd(rs) % 4) {
        /* SET: a small refractory period, thresholds low enough to fire now and then; now
         * and then one byte off, another flag or refractory 65535 */
        uint32_t r = rnd(rs);
        plen = 3 + 2 * KWS_N_CLASSES;
        if (plen > KWS_PROTO_MAX_PAYLOAD)
            plen = KWS_PROTO_MAX_PAYLOAD;
        frame_buf[3] = r % 16 ? KWS_F_SET : (uint8_t)rnd(rs);
        frame_buf[4] = (uint8_t)(r % 32 ? rnd(rs) % 4 : 0xFF);
        frame_buf[5] = (uint8_t)(r % 32 ? 0 : 0xFF);
        for (i = 6; i + 1 < 3 + plen; i += 2) {
            uint32_t t = rnd(rs) % 3 ? rnd(rs) % 20000 : rnd(rs) % 65536;
            frame_buf[i] = (uint8_t)t;
            frame_buf[i + 1] = (uint8_t)(t >> 8);
        }
        if (r % 7 == 0)
            plen = plen + (r % 3) - 1;
        if (plen > KWS_PROTO_MAX_PAYLOAD)
            plen = KWS_PROTO_MAX_PAYLOAD;
    } else if (rnd(rs) % 8 == 0) {
        plen = rnd(rs) % 4;
        for (i = 0; i < plen; i++)
            frame_buf[3 + i] = (uint8_t)rnd(rs);
    }
    ref_seal(frame_buf, type, seq, plen);
    e = ref_cobs_encode(frame_buf, plen + KWS_PROTO_OVERHEAD, enc_buf + 1);
    enc_buf[0] = 0;
    enc_buf[e + 1] = 0;
    e += 2;
    if (size + e > max_size)
        return size;
    for (i = 0; i < size; i++)
        n_zero += data[i] == 0;
    if (n_zero) { /* after a random delimiter */
        size_t pick = rnd(rs) % n_zero;
        for (i = 0; i < size; i++)
            if (data[i] == 0 && pick-- == 0) {
                at = i + 1;
                break;
            }
    }
    memmove(data + at + e, data + at, size - at);
    memcpy(data + at, enc_buf, e);
    return size + e;
}

/* A run of valid LISTEN requests (the first with RESET half of the time, new seqs, random
 * frames; one resent now and then) at a delimiter or at the end: a window of the shipped
 * schedule only ends after P = 50 frames, more than single insertions ever line up. */
static size_t insert_listen_run(uint8_t *data, size_t size, size_t max_size, uint32_t *rs)
{
#ifdef REF_LISTEN
    size_t n = 1 + rnd(rs) % (REF_P + REF_S), at = size, i, j, e, o = 0, n_zero = 0;
    uint8_t seq = (uint8_t)rnd(rs), reset = (uint8_t)(rnd(rs) % 2);
    for (i = 0; i < size; i++)
        n_zero += data[i] == 0;
    if (n_zero) {
        size_t pick = rnd(rs) % n_zero;
        for (i = 0; i < size; i++)
            if (data[i] == 0 && pick-- == 0) {
                at = i + 1;
                break;
            }
    }
    for (j = 0; j < n; j++) {
        size_t plen = 1 + KWS_N_IN;
        frame_buf[3] = j == 0 ? reset : 0;
        for (i = 1; i < plen; i++)
            frame_buf[3 + i] = (uint8_t)rnd(rs);
        ref_seal(frame_buf, KWS_T_LISTEN, seq++, plen);
        e = ref_cobs_encode(frame_buf, plen + KWS_PROTO_OVERHEAD, enc_buf + 1);
        enc_buf[0] = 0;
        enc_buf[e + 1] = 0;
        e += 2;
        if (rnd(rs) % 16 == 0 && o + 2 * e <= SCRATCH) { /* resent */
            memcpy(scratch + o, enc_buf, e);
            o += e;
        }
        if (o + e > SCRATCH)
            break;
        memcpy(scratch + o, enc_buf, e);
        o += e;
    }
    if (size + o > max_size)
        o = max_size - size; /* cut: the last frame may be left unfinished */
    memmove(data + at + o, data + at, size - at);
    memcpy(data + at, scratch, o);
    return size + o;
#else
    (void)data;
    (void)max_size;
    (void)rs;
    return size;
#endif
}

/* Resend: repeat a random frame (its bytes and the delimiter after it) right after itself. */
static size_t resend(uint8_t *data, size_t size, size_t max_size, uint32_t *rs)
{
    size_t n_zero = 0, i, pick, end = 0, begin;
    for (i = 0; i < size; i++)
        n_zero += data[i] == 0;
    if (!n_zero)
        return size;
    pick = rnd(rs) % n_zero;
    for (i = 0; i < size; i++)
        if (data[i] == 0 && pick-- == 0) {
            end = i; /* the delimiter that ends the frame */
            break;
        }
    begin = end;
    while (begin > 0 && data[begin - 1] != 0)
        begin--;
    if (begin == end || size + (end - begin + 1) > max_size)
        return size;
    memmove(data + end + 1 + (end - begin + 1), data + end + 1, size - end - 1);
    memcpy(data + end + 1, data + begin, end - begin + 1);
    return size + (end - begin + 1);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint32_t rs = seed * 2654435761u + 1u;
    size = LLVMFuzzerMutate(data, size, max_size);
    if (max_size > SCRATCH)
        return size;
    switch (rnd(&rs) % 10) {
    case 0:
    case 1:
        return size; /* as mutated: damaged frames stay damaged */
    case 2:
        return insert_request(data, size, max_size, &rs);
    case 4:
        return insert_listen_run(data, size, max_size, &rs);
    case 3:
        size = reseal(data, size, max_size, &rs);
        return resend(data, size, max_size, &rs);
    default:
        return reseal(data, size, max_size, &rs);
    }
}
