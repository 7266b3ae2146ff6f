/*
 * test_proto.c: host test of the protocol's frame decoder and dispatcher (kws_proto.c).
 *
 *   cc -std=c99 -I<dir with model_data.h> -Ifirmware/kernel -Ifirmware/protocol \
 *      firmware/protocol/test_proto.c firmware/protocol/kws_proto.c firmware/kernel/kws_model.c
 *   ./a.out            -> "ok: N checks" and exit 0, or "FAIL ..." lines and exit 1
 *
 * Needs a model_data.h with KWS_N_IN >= 2 (tests/test_protocol.py generates one). The
 * expected scores come from calling kws_step() directly on a second state: the kernel's own
 * exactness is tested elsewhere (test_kernel.c); here, the protocol's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_proto.h"

static int checks, failures;

#define CHECK(cond, ...)                                            \
    do {                                                            \
        checks++;                                                   \
        if (!(cond)) {                                              \
            failures++;                                             \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            printf(__VA_ARGS__);                                    \
            printf("\n");                                           \
        }                                                           \
    } while (0)

/* ---- the port, for the host ------------------------------------------------------------------ */

static uint32_t fake_cycles = 1000;
void kws_th_timer_start(void) {}
uint32_t kws_th_timer_stop(void) { return fake_cycles++; }
uint16_t kws_th_stack_peak(void) { return 123; }
uint32_t kws_th_f_cpu(void) { return 16000000UL; }
uint32_t kws_th_baud(void) { return 115200UL; }
uint8_t kws_th_caps(void) { return KWS_CAP_TIMER; }

/* ---- helpers --------------------------------------------------------------------------------- */

static kws_proto P;

typedef struct { uint8_t b[4096]; size_t n; } buf_t;

static void put(uint8_t byte, void *ctx)
{
    buf_t *o = ctx;
    if (o->n < sizeof o->b)
        o->b[o->n++] = byte;
}

/* a request frame: 0x00, COBS(type seq len payload crc), 0x00 */
static size_t make_frame(uint8_t *out, uint8_t type, uint8_t seq, const uint8_t *payload,
                         size_t plen)
{
    uint8_t raw[600];
    uint16_t crc;
    size_t n;
    raw[0] = type;
    raw[1] = seq;
    raw[2] = (uint8_t)plen;
    if (plen)
        memcpy(raw + 3, payload, plen);
    crc = kws_crc16(0xFFFF, raw, (uint16_t)(3 + plen));
    raw[3 + plen] = (uint8_t)(crc >> 8);
    raw[4 + plen] = (uint8_t)crc;
    out[0] = 0;
    n = kws_cobs_encode(raw, (uint16_t)(plen + 5), out + 1);
    out[1 + n] = 0;
    return n + 2;
}

static size_t cobs_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        size_t k;
        if (code == 0)
            return (size_t)-1;
        for (k = 1; k < code; k++) {
            if (i >= n || in[i] == 0)
                return (size_t)-1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n)
            out[o++] = 0;
    }
    return o;
}

typedef struct {
    int n;           /* replies */
    uint8_t type, seq, len;
    uint8_t payload[300];
    int bad;         /* a reply that did not decode */
    buf_t raw;       /* every byte emitted */
} replies_t;

/* feed bytes; collect and decode every reply (the last one is kept) */
static void feed(const uint8_t *bytes, size_t n, replies_t *r)
{
    size_t i;
    memset(r, 0, sizeof *r);
    for (i = 0; i < n; i++) {
        if (kws_proto_feed(&P, bytes[i])) {
            buf_t one;
            uint8_t dec[600];
            size_t m;
            one.n = 0;
            kws_proto_emit(&P, put, &one);
            memcpy(r->raw.b + r->raw.n, one.b, one.n);
            r->raw.n += one.n;
            r->n++;
            /* one reply = 0x00 cobs 0x00 */
            if (one.n < 3 || one.b[0] != 0 || one.b[one.n - 1] != 0) {
                r->bad++;
                continue;
            }
            m = cobs_decode(one.b + 1, one.n - 2, dec);
            if (m == (size_t)-1 || m < 5 || kws_crc16(0xFFFF, dec, (uint16_t)m) != 0 ||
                dec[2] != m - 5) {
                r->bad++;
                continue;
            }
            r->type = dec[0];
            r->seq = dec[1];
            r->len = dec[2];
            memcpy(r->payload, dec + 3, dec[2]);
        }
    }
}

static void request(uint8_t type, uint8_t seq, const uint8_t *payload, size_t plen, replies_t *r)
{
    uint8_t f[700];
    size_t n = make_frame(f, type, seq, payload, plen);
    feed(f, n, r);
}

static int32_t i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static uint32_t u32(const uint8_t *p) { return (uint32_t)i32(p); }
static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void random_frame(int8_t *x, unsigned seed)
{
    int i;
    srand(seed);
    for (i = 0; i < KWS_N_IN; i++)
        x[i] = (int8_t)((rand() % 256) - 128);
}

/* INFER of one frame; check scores against ref (stepped here too), t and cycles */
static void infer_checked(uint8_t seq, const int8_t *x, kws_state *ref, uint16_t want_t,
                          uint8_t flags)
{
    uint8_t payload[1 + KWS_N_IN];
    int32_t want[KWS_N_CLASSES];
    replies_t r;
    int i, same = 1;
    payload[0] = flags;
    memcpy(payload + 1, x, KWS_N_IN);
    request(KWS_T_INFER, seq, payload, sizeof payload, &r);
    if (flags & KWS_F_RESET)
        kws_reset(ref);
    kws_step(ref, x, want);
    /* (an error reply may come first: for garbage that our leading 0x00 ended) */
    CHECK(r.n >= 1 && !r.bad, "a good reply (%d, bad %d)", r.n, r.bad);
    CHECK(r.type == (KWS_T_INFER | KWS_T_REPLY) && r.seq == seq, "type %02x seq %u", r.type,
          r.seq);
    CHECK(r.payload[0] == 1 && r.payload[1] == flags, "frames %u flags %u", r.payload[0],
          r.payload[1]);
    CHECK(u16(r.payload + 2) == want_t, "t %u, want %u", u16(r.payload + 2), want_t);
    for (i = 0; i < KWS_N_CLASSES; i++)
        same &= i32(r.payload + 8 + 4 * i) == want[i];
    CHECK(same, "scores of frame t=%u equal kws_step's", want_t);
    if (flags & KWS_F_HIDDEN) {
        int h_same = 1;
        CHECK(r.len == 8 + 4 * KWS_N_CLASSES + 2 * KWS_HIDDEN, "len %u with hidden", r.len);
        for (i = 0; i < KWS_HIDDEN; i++)
            h_same &= (int16_t)u16(r.payload + 8 + 4 * KWS_N_CLASSES + 2 * i) == ref->h[i];
        CHECK(h_same, "hidden state equals kws_step's");
    } else {
        CHECK(r.len == 8 + 4 * KWS_N_CLASSES, "len %u", r.len);
    }
}

static void expect_error(const replies_t *r, uint8_t code, const char *what)
{
    CHECK(r->n == 1 && !r->bad && r->type == KWS_T_ERROR && r->len == 2 && r->payload[0] == code,
          "%s: replies %d, type %02x, code %u (want %u)", what, r->n, r->type, r->payload[0],
          code);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_crc_and_cobs(void)
{
    const uint8_t check[] = "123456789";
    uint8_t in[1000], enc[1100], dec[1100];
    size_t n, m, t;
    CHECK(kws_crc16(0xFFFF, check, 9) == 0x29B1, "CRC-16/CCITT-FALSE check value %04x",
          kws_crc16(0xFFFF, check, 9));
    for (t = 0; t < 400; t++) {
        size_t i;
        n = t < 300 ? t : 200 + (size_t)(rand() % 800);
        for (i = 0; i < n; i++) { /* zeros, long runs without zeros, and random bytes */
            int v = rand();
            if (t % 3 == 0)
                in[i] = (uint8_t)(v % 7 == 0 ? 0 : v);
            else if (t % 3 == 1)
                in[i] = (uint8_t)(1 + i % 255);
            else
                in[i] = (uint8_t)v;
        }
        m = kws_cobs_encode(in, (uint16_t)n, enc);
        CHECK(m <= n + n / 254 + 1, "COBS overhead: %zu bytes for %zu", m, n);
        CHECK(memchr(enc, 0, m) == NULL, "no zero in the encoding (n=%zu)", n);
        CHECK(cobs_decode(enc, m, dec) == n && memcmp(in, dec, n) == 0, "round trip n=%zu", n);
    }
}

static void test_identify(void)
{
    replies_t r;
    const char *classes = KWS_CLASS_LIST;
    size_t nc = strlen(classes);
    if (nc > KWS_PROTO_MAX_PAYLOAD - KWS_PROTO_IDENT_FIXED) /* cut to fit one frame */
        nc = KWS_PROTO_MAX_PAYLOAD - KWS_PROTO_IDENT_FIXED;
    kws_proto_init(&P);
    request(KWS_T_IDENTIFY, 7, NULL, 0, &r);
    CHECK(r.n == 1 && !r.bad && r.type == (KWS_T_IDENTIFY | KWS_T_REPLY) && r.seq == 7,
          "identify reply");
    CHECK(r.payload[0] == KWS_PROTO_VERSION && r.payload[20] == KWS_N_IN &&
          r.payload[21] == KWS_HIDDEN && r.payload[22] == KWS_N_CLASSES &&
          r.payload[23] == KWS_PROTO_MAX_FRAMES, "shape fields");
    CHECK(u32(r.payload + 24) == 16000000UL && u32(r.payload + 28) == 115200UL, "f_cpu, baud");
    CHECK(u16(r.payload + 32) == KWS_MODEL_BYTES && r.payload[34] == KWS_SCORE_Q &&
          r.payload[35] == KWS_QX && r.payload[36] == 0, "bytes, score q, qx, params check");
    CHECK(r.payload[37] == nc && r.len == 38 + nc &&
          memcmp(r.payload + 38, classes, nc) == 0, "class names");
    {
        const uint8_t want[] = KWS_MODEL_HASH_BYTES;
        CHECK(memcmp(r.payload + 4, want, 16) == 0, "model hash bytes");
    }
}

static void test_infer_reset_duplicate(void)
{
    kws_state ref;
    int8_t x[KWS_N_IN];
    uint8_t f[300], payload[1 + KWS_N_IN];
    size_t n;
    replies_t r, again;
    uint32_t inferences;
    kws_proto_init(&P);
    kws_reset(&ref);
    random_frame(x, 1);
    infer_checked(1, x, &ref, 1, 0);
    random_frame(x, 2);
    infer_checked(2, x, &ref, 2, KWS_F_HIDDEN);

    /* a resent request (same seq, same bytes): the same reply, the model not stepped */
    random_frame(x, 3);
    payload[0] = 0;
    memcpy(payload + 1, x, KWS_N_IN);
    n = make_frame(f, KWS_T_INFER, 3, payload, sizeof payload);
    feed(f, n, &r);
    kws_step(&ref, x, P.scores); /* ref follows the one step */
    inferences = P.stats.inferences;
    feed(f, n, &again);
    CHECK(again.n == 1 && again.raw.n == r.raw.n && memcmp(again.raw.b, r.raw.b, r.raw.n) == 0,
          "a duplicate gets the cached reply byte for byte");
    CHECK(P.stats.inferences == inferences && P.t == 3, "a duplicate does not step the model");
    CHECK(P.stats.duplicates == 1, "one duplicate counted");
    random_frame(x, 4);
    infer_checked(4, x, &ref, 4, 0);
    /* the same seq with other bytes is a new request (seq wrapped, or a new host session) */
    infer_checked(4, x, &ref, 5, KWS_F_HIDDEN);

    /* STATS */
    request(KWS_T_STATS, 30, NULL, 0, &r);
    CHECK(r.n == 1 && r.type == (KWS_T_STATS | KWS_T_REPLY) && r.len == KWS_PROTO_STATS_PAYLOAD,
          "stats reply");
    CHECK(u32(r.payload) == fake_cycles - 1 && u32(r.payload + 4) == 5 &&
          u32(r.payload + 8) == 7 && u16(r.payload + 16) == 1 && u16(r.payload + 20) == 123 &&
          u16(r.payload + 22) == 5 && u16(r.payload + 24) == KWS_PROTO_RX_MAX &&
          u16(r.payload + 26) == KWS_PROTO_TX_MAX, "stats fields: cycles %u inferences %u "
          "frames %u dups %u stack %u t %u", u32(r.payload), u32(r.payload + 4),
          u32(r.payload + 8), u16(r.payload + 16), u16(r.payload + 20), u16(r.payload + 22));

    /* RESET, and INFER's reset flag */
    request(KWS_T_RESET, 5, NULL, 0, &r);
    CHECK(r.n == 1 && r.type == (KWS_T_RESET | KWS_T_REPLY) && r.len == 0, "reset reply");
    kws_reset(&ref);
    random_frame(x, 5);
    infer_checked(6, x, &ref, 1, 0);
    infer_checked(7, x, &ref, 1, KWS_F_RESET);
    infer_checked(8, x, &ref, 2, 0);
}

static void test_errors_and_resync(void)
{
    kws_state ref;
    int8_t x[KWS_N_IN];
    uint8_t f[700], payload[300], junk[600];
    size_t n, i;
    replies_t r;
    kws_proto_init(&P);
    kws_reset(&ref);
    random_frame(x, 10);
    payload[0] = 0;
    memcpy(payload + 1, x, KWS_N_IN);

    /* CRC error: every single-bit flip of a valid frame is refused; the state is untouched */
    n = make_frame(f, KWS_T_INFER, 9, payload, 1 + KWS_N_IN);
    for (i = 8; i < 8 * (n - 1); i++) {
        uint8_t g[700];
        memcpy(g, f, n);
        g[i / 8] ^= (uint8_t)(1u << (i % 8));
        feed(g, n, &r);
        CHECK(r.n >= 1 && r.type == KWS_T_ERROR, "bit %zu flipped: an error reply", i);
    }
    CHECK(P.stats.inferences == 0, "no inference from a corrupted frame");
    CHECK(P.stats.crc_errors > 0 && P.stats.frames_ok == 0, "CRC errors counted");
    infer_checked(9, x, &ref, 1, 0); /* the good frame afterwards works */

    /* an error between a request and its resend does not lose the cached reply */
    {
        replies_t first, second;
        uint8_t bad[700];
        random_frame(x, 11);
        memcpy(payload + 1, x, KWS_N_IN);
        n = make_frame(f, KWS_T_INFER, 10, payload, 1 + KWS_N_IN);
        feed(f, n, &first);
        memcpy(bad, f, n);
        bad[5] ^= 0x40;
        feed(bad, n, &r);
        CHECK(r.n == 1 && r.type == KWS_T_ERROR, "corrupted resend: an error reply");
        feed(f, n, &second);
        CHECK(second.raw.n == first.raw.n && !memcmp(second.raw.b, first.raw.b, first.raw.n),
              "resend after an error: cached reply");
        kws_step(&ref, x, P.scores);
    }

    /* garbage without zeros, then the delimiter of the next frame: one error reply for the
     * garbage, then the frame is answered (resynchronised) */
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(1 + rand() % 255);
    feed(junk, 37, &r);
    CHECK(r.n == 0, "no reply before a delimiter");
    random_frame(x, 12);
    memcpy(payload + 1, x, KWS_N_IN);
    infer_checked(11, x, &ref, 3, 0);

    /* garbage with zeros in it: replies are errors only, never a step */
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(rand() % 4 == 0 ? 0 : rand());
    {
        uint32_t before = P.stats.inferences;
        feed(junk, sizeof junk, &r);
        CHECK(r.bad == 0, "every reply to garbage is a well-formed frame");
        CHECK(P.stats.inferences == before, "garbage does not step the model");
    }
    random_frame(x, 13);
    infer_checked(12, x, &ref, 4, 0);

    /* too long: consumed to its delimiter, answered with OVERFLOW */
    for (i = 0; i < 400; i++)
        junk[i] = (uint8_t)(1 + i % 200);
    junk[400] = 0;
    feed(junk, 401, &r);
    expect_error(&r, KWS_E_OVERFLOW, "400-byte frame");
    n = make_frame(f, KWS_T_INFER, 13, payload, 250); /* valid framing, oversized payload */
    feed(f, n, &r);
    expect_error(&r, KWS_E_OVERFLOW, "250-byte payload");

    /* short, broken COBS, wrong length byte */
    {
        uint8_t s[] = {0, 3, 1, 2, 0};
        uint8_t c[] = {0, 9, 1, 2, 0};
        uint8_t raw[8] = {KWS_T_STATS, 14, 3, 0, 0}, enc[20];
        uint16_t crc = kws_crc16(0xFFFF, raw, 3);
        feed(s, sizeof s, &r);
        expect_error(&r, KWS_E_SHORT, "3-byte frame");
        feed(c, sizeof c, &r);
        expect_error(&r, KWS_E_COBS, "block past the delimiter");
        raw[3] = (uint8_t)(crc >> 8);
        raw[4] = (uint8_t)crc;
        enc[0] = 0;
        n = kws_cobs_encode(raw, 5, enc + 1);
        enc[n + 1] = 0;
        feed(enc, n + 2, &r);
        expect_error(&r, KWS_E_LENGTH, "len byte 3, no payload");
        CHECK(r.seq == 14, "the error carries the frame's seq");
    }

    /* valid frames, bad requests: unknown type, payload where none belongs, bad INFER */
    request(0x55, 20, NULL, 0, &r);
    expect_error(&r, KWS_E_TYPE, "unknown type");
    request(KWS_T_RESET, 21, payload, 1, &r);
    expect_error(&r, KWS_E_ARG, "RESET with a payload");
    request(KWS_T_INFER, 22, payload, KWS_N_IN, &r);
    expect_error(&r, KWS_E_ARG, "INFER one byte short");
    request(KWS_T_INFER, 23, payload, 1 + KWS_N_IN / 2, &r);
    expect_error(&r, KWS_E_ARG, "INFER half a frame");
    request(KWS_T_INFER, 23, payload, 2 + KWS_PROTO_MAX_FRAMES * KWS_N_IN, &r);
    expect_error(&r, KWS_E_OVERFLOW, "INFER one byte longer than the receive buffer");
    payload[0] = 0x80;
    request(KWS_T_INFER, 24, payload, 1 + KWS_N_IN, &r);
    expect_error(&r, KWS_E_ARG, "INFER unknown flag");
    payload[0] = 0;
    request(KWS_T_INFER, 25, payload, 1, &r);
    expect_error(&r, KWS_E_ARG, "INFER without a frame");
    CHECK(P.stats.inferences == 4, "bad requests do not step the model (%u)",
          (unsigned)P.stats.inferences);

    /* empty frames (0x00 0x00) are ignored */
    {
        uint8_t z[] = {0, 0, 0, 0};
        feed(z, sizeof z, &r);
        CHECK(r.n == 0, "no reply to empty frames");
    }
    random_frame(x, 14);
    infer_checked(26, x, &ref, 5, 0);
}

static void test_random_bytes(void)
{
    /* a long random stream: never a malformed reply (the sanitizers watch the memory) */
    static uint8_t junk[200000];
    size_t i;
    replies_t r;
    kws_state ref;
    int8_t x[KWS_N_IN];
    kws_proto_init(&P);
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(rand() % 16 == 0 ? 0 : rand());
    for (i = 0; i < sizeof junk; i += 1000) {
        feed(junk + i, 1000, &r);
        CHECK(r.bad == 0, "replies to random bytes are well formed");
    }
    request(KWS_T_RESET, 99, NULL, 0, &r);
    kws_reset(&ref);
    random_frame(x, 20);
    infer_checked(100, x, &ref, 1, 0);
}

int main(void)
{
    srand(1);
    test_crc_and_cobs();
    test_identify();
    test_infer_reset_duplicate();
    test_errors_and_resync();
    test_random_bytes();
    if (failures) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok: %d checks\n", checks);
    return 0;
}
