/*
 * kws_proto.c: frame decoder and command dispatcher of the firmware's serial protocol.
 * The wire format and every payload are in firmware/PROTOCOL.md; keep the two in step.
 *
 * Robustness rules the code keeps (the fuzzer checks them):
 *  - every byte sequence is valid input: nothing is read or written outside p->rx / p->tx /
 *    p->err, whatever arrives; a frame longer than the buffer is consumed to its delimiter
 *    and answered with KWS_E_OVERFLOW;
 *  - a 0x00 byte always ends the frame in progress, so the receiver is back in step after
 *    any garbage at the next delimiter;
 *  - a frame that repeats the last valid request (same type, seq, len and CRC) gets the
 *    cached reply again and changes nothing (the model is not stepped twice);
 *  - errors in broken frames are answered from a separate buffer: the cached reply survives.
 */
#include "kws_proto.h"

#include "kws_port.h"

#ifndef KWS_MODEL_HASH_BYTES
#define KWS_MODEL_HASH_BYTES {0}
#endif

static const uint8_t kws_proto_hash[KWS_PROTO_HASH_BYTES] KWS_PROGMEM = KWS_MODEL_HASH_BYTES;
static const char kws_proto_classes[] KWS_PROGMEM = KWS_CLASS_LIST;
#ifdef KWS_PROTO_DETECT
static const uint8_t kws_proto_settings_hash[KWS_PROTO_SETTINGS_HASH_BYTES] KWS_PROGMEM =
    KWS_SETTINGS_HASH_BYTES;
#endif

/* ---- CRC-16/CCITT-FALSE --------------------------------------------------------------------- */

/* Byte-wise poly 0x1021 without a table (the shifts are the polynomial's terms). */
uint16_t kws_crc16_byte(uint16_t crc, uint8_t b)
{
    uint8_t x = (uint8_t)((crc >> 8) ^ b);
    x ^= (uint8_t)(x >> 4);
    return (uint16_t)((crc << 8) ^ ((uint16_t)x << 12) ^ ((uint16_t)x << 5) ^ x);
}

uint16_t kws_crc16(uint16_t crc, const uint8_t *data, uint16_t n)
{
    while (n--)
        crc = kws_crc16_byte(crc, *data++);
    return crc;
}

/* ---- COBS ------------------------------------------------------------------------------------ */

uint16_t kws_cobs_encode(const uint8_t *in, uint16_t n, uint8_t *out)
{
    uint16_t i = 0, o = 0;
    for (;;) {
        uint16_t j = i;
        while (j < n && in[j] != 0 && j - i < 254)
            j++;
        uint8_t code = (uint8_t)(j - i + 1);
        out[o++] = code;
        while (i < j)
            out[o++] = in[i++];
        if (j == n)
            return o;
        if (code != 0xFF)
            i = j + 1; /* in[j] is the zero the block's code implies; a full block implies none */
    }
}

void kws_proto_emit(const kws_proto *p, kws_proto_put put, void *ctx)
{
    const uint8_t *in = p->out;
    uint16_t n = p->out_len, i = 0;
    if (!in || !n)
        return;
    put(0, ctx); /* leading delimiter: ends any garbage the host has buffered */
    for (;;) {
        uint16_t j = i;
        while (j < n && in[j] != 0 && j - i < 254)
            j++;
        uint8_t code = (uint8_t)(j - i + 1);
        put(code, ctx);
        while (i < j)
            put(in[i++], ctx);
        if (j == n)
            break;
        if (code != 0xFF)
            i = j + 1;
    }
    put(0, ctx);
}

/* ---- little-endian packing ------------------------------------------------------------------- */

static uint8_t *put_u16(uint8_t *d, uint16_t v)
{
    d[0] = (uint8_t)v;
    d[1] = (uint8_t)(v >> 8);
    return d + 2;
}

static uint8_t *put_u32(uint8_t *d, uint32_t v)
{
    d[0] = (uint8_t)v;
    d[1] = (uint8_t)(v >> 8);
    d[2] = (uint8_t)(v >> 16);
    d[3] = (uint8_t)(v >> 24);
    return d + 4;
}

/* ---- replies --------------------------------------------------------------------------------- */

/* Header and CRC around a payload already at buf + 3; returns the frame length. */
static uint16_t seal(uint8_t *buf, uint8_t type, uint8_t seq, uint16_t plen)
{
    uint16_t crc;
    buf[0] = type;
    buf[1] = seq;
    buf[2] = (uint8_t)plen;
    crc = kws_crc16(0xFFFF, buf, (uint16_t)(KWS_PROTO_HEADER + plen));
    buf[KWS_PROTO_HEADER + plen] = (uint8_t)(crc >> 8); /* big endian: the CRC of the */
    buf[KWS_PROTO_HEADER + plen + 1] = (uint8_t)crc;    /* whole frame is then 0 */
    return (uint16_t)(plen + KWS_PROTO_OVERHEAD);
}

static uint16_t error_frame(kws_proto *p, uint8_t *buf, uint8_t seq, uint8_t code, uint8_t type)
{
    p->stats.errors++;
    buf[KWS_PROTO_HEADER] = code;
    buf[KWS_PROTO_HEADER + 1] = type;
    return seal(buf, KWS_T_ERROR, seq, 2);
}

/* A broken frame: answer from p->err (seq and type as received, if there were any). */
static int link_error(kws_proto *p, uint8_t code)
{
    uint8_t seq = p->rx_len >= 2 ? p->rx[1] : 0;
    uint8_t type = p->rx_len >= 1 ? p->rx[0] : 0;
    if (code == KWS_E_CRC)
        p->stats.crc_errors++;
    else
        p->stats.bad_frames++;
    p->err_len = error_frame(p, p->err, seq, code, type);
    p->out = p->err;
    p->out_len = p->err_len;
    return 1;
}

static uint16_t do_identify(kws_proto *p)
{
    uint8_t *d = p->tx + KWS_PROTO_HEADER, *q;
    uint16_t i, n = (uint16_t)(KWS_PROTO_IDENT_MAX - KWS_PROTO_IDENT_FIXED);
    d[0] = KWS_PROTO_VERSION;
    d[1] = KWS_FW_VERSION_MAJOR;
    d[2] = KWS_FW_VERSION_MINOR;
    d[3] = (uint8_t)(kws_th_caps() | (KWS_PROTO_INFER_HIDDEN <= KWS_PROTO_MAX_PAYLOAD
                                          ? KWS_CAP_HIDDEN : 0));
#ifdef KWS_PROTO_LISTEN
    d[3] |= KWS_CAP_LISTEN;
#endif
#ifdef KWS_PROTO_DETECT
    d[3] |= KWS_CAP_DETECT;
#endif
    for (i = 0; i < KWS_PROTO_HASH_BYTES; i++)
        d[4 + i] = KWS_READ_U8(&kws_proto_hash[i]);
    d[20] = KWS_N_IN;
    d[21] = KWS_HIDDEN;
    d[22] = KWS_N_CLASSES;
    d[23] = KWS_PROTO_MAX_FRAMES;
    q = put_u32(d + 24, kws_th_f_cpu());
    q = put_u32(q, kws_th_baud());
    q = put_u16(q, (uint16_t)KWS_MODEL_BYTES);
    q[0] = (uint8_t)KWS_SCORE_Q;
    q[1] = (uint8_t)KWS_QX;
    q[2] = (uint8_t)kws_check_params();
    q[3] = (uint8_t)n;
    for (i = 0; i < n; i++)
        d[KWS_PROTO_IDENT_FIXED + i] = KWS_READ_U8(&kws_proto_classes[i]);
    return (uint16_t)(KWS_PROTO_IDENT_FIXED + n);
}

static uint16_t do_stats(kws_proto *p)
{
    uint8_t *q = p->tx + KWS_PROTO_HEADER;
    q = put_u32(q, p->stats.last_cycles);
    q = put_u32(q, p->stats.inferences);
    q = put_u32(q, p->stats.frames_ok);
    q = put_u16(q, p->stats.crc_errors);
    q = put_u16(q, p->stats.bad_frames);
    q = put_u16(q, p->stats.duplicates);
    q = put_u16(q, p->stats.errors);
    q = put_u16(q, kws_th_stack_peak());
    q = put_u16(q, p->t);
    q = put_u16(q, (uint16_t)KWS_PROTO_RX_MAX);
    put_u16(q, (uint16_t)KWS_PROTO_TX_MAX);
    return KWS_PROTO_STATS_PAYLOAD;
}

/* INFER: payload = flags, then k frames of KWS_N_IN int8. Returns the reply payload length,
 * or 0 with *code set when the request is not valid (nothing is stepped then). */
static uint16_t do_infer(kws_proto *p, uint16_t plen, uint8_t *code)
{
    const uint8_t *in = p->rx + KWS_PROTO_HEADER;
    uint8_t flags, k, f;
    uint8_t *cyc, *sc;
    uint16_t frames_bytes, n, i;
    if (plen < 1 + KWS_N_IN) {
        *code = KWS_E_ARG;
        return 0;
    }
    flags = in[0];
    frames_bytes = (uint16_t)(plen - 1);
    k = (uint8_t)(frames_bytes / KWS_N_IN);
    n = (uint16_t)(KWS_PROTO_INFER_FIXED + k * KWS_PROTO_INFER_PER_FRAME +
                   ((flags & KWS_F_HIDDEN) ? 2 * KWS_HIDDEN : 0));
    if ((flags & ~KWS_F_KNOWN) || frames_bytes % KWS_N_IN || k > KWS_PROTO_MAX_FRAMES ||
        n > KWS_PROTO_MAX_PAYLOAD) {
        *code = KWS_E_ARG;
        return 0;
    }
    if (flags & KWS_F_RESET) {
        kws_reset(&p->model);
        p->t = 0;
    }
    cyc = p->tx + KWS_PROTO_HEADER + KWS_PROTO_INFER_FIXED;
    sc = cyc + 4 * k;
    for (f = 0; f < k; f++) {
        uint32_t cycles;
        /* int8 frames straight from the receive buffer (int8_t and uint8_t share a layout) */
        const int8_t *x = (const int8_t *)(in + 1 + (uint16_t)f * KWS_N_IN);
        kws_th_timer_start();
        kws_step(&p->model, x, p->scores);
        cycles = kws_th_timer_stop();
        p->stats.last_cycles = cycles;
        p->stats.inferences++;
        p->t++;
        cyc = put_u32(cyc, cycles);
        for (i = 0; i < KWS_N_CLASSES; i++)
            sc = put_u32(sc, (uint32_t)p->scores[i]);
    }
    if (flags & KWS_F_HIDDEN)
        for (i = 0; i < KWS_HIDDEN; i++)
            sc = put_u16(sc, (uint16_t)p->model.h[i]);
    p->tx[KWS_PROTO_HEADER] = k;
    p->tx[KWS_PROTO_HEADER + 1] = flags;
    put_u16(p->tx + KWS_PROTO_HEADER + 2, p->t);
    return n;
}

#ifdef KWS_PROTO_LISTEN
/* LISTEN: payload = flags (KWS_F_RESET: start listening anew), one frame of KWS_N_IN int8.
 * Every running instance steps; the reply carries the pooled scores of a window that ended
 * and, on a board that decides, the detector's decision on it (timed with the steps). */
static uint16_t do_listen(kws_proto *p, uint16_t plen, uint8_t *code)
{
    const uint8_t *in = p->rx + KWS_PROTO_HEADER;
    uint8_t *d = p->tx + KWS_PROTO_HEADER, *q;
    uint32_t cycles;
    uint8_t i, ended;
#ifdef KWS_PROTO_DETECT
    kws_decision dec;
#endif
    if (plen != 1 + KWS_N_IN || (in[0] & ~KWS_F_RESET)) {
        *code = KWS_E_ARG;
        return 0;
    }
    if (in[0] & KWS_F_RESET) {
        kws_stream_reset(&p->listen);
#ifdef KWS_PROTO_DETECT
        kws_detect_reset(&p->detect);
#endif
    }
    d[2] = (uint8_t)p->listen.pos;   /* the frame's place in the period, before stepping */
    d[3] = (uint8_t)(p->listen.pos >> 8);
    kws_th_timer_start();
    ended = (uint8_t)kws_stream_step(&p->listen, (const int8_t *)(in + 1), p->scores);
#ifdef KWS_PROTO_DETECT
    if (ended)
        kws_detect_window(&p->detect, p->scores, &dec);
#endif
    cycles = kws_th_timer_stop();
    p->stats.last_cycles = cycles;
    p->stats.inferences++;
    d[0] = ended;
    d[1] = in[0];
    q = put_u32(d + 4, cycles);
    if (!ended)
        return KWS_PROTO_LISTEN_FIXED;
    for (i = 0; i < KWS_N_CLASSES; i++)
        q = put_u32(q, (uint32_t)p->scores[i]);
#ifdef KWS_PROTO_DETECT
    q[0] = dec.fired;
    q[1] = dec.best;
    q[2] = dec.windows;
    q[3] = dec.led;
    q = put_u32(q + 4, dec.fired_sum);
    put_u32(q, dec.best_sum);
    kws_th_detect_pin(dec.led);
#endif
    return KWS_PROTO_LISTEN_MAX;
}
#endif

#ifdef KWS_PROTO_DETECT
/* DETECT: no payload (read the settings), or KWS_F_SET, the refractory period (u16, windows,
 * at most 65534) and a Q15 threshold (u16) per class, which replace the board's until it
 * boots again. The reply: the settings in force. */
static uint16_t do_detect(kws_proto *p, uint16_t plen, uint8_t *code)
{
    const uint8_t *in = p->rx + KWS_PROTO_HEADER;
    uint8_t *d = p->tx + KWS_PROTO_HEADER, *q;
    uint8_t i;
    if (plen) {
        uint16_t refractory;
        if (plen != KWS_PROTO_DETECT_SET || in[0] != KWS_F_SET) {
            *code = KWS_E_ARG;
            return 0;
        }
        refractory = (uint16_t)(in[1] | in[2] << 8);
        if (refractory >= KWS_DET_SINCE_MAX) {
            *code = KWS_E_ARG;
            return 0;
        }
        p->detect.refractory = refractory;
        for (i = 0; i < KWS_N_CLASSES; i++)
            p->detect.thr[i] = (uint16_t)(in[3 + 2 * i] | in[4 + 2 * i] << 8);
        p->overridden = 1;
    }
    d[0] = KWS_DET_SMOOTH;
    d[1] = p->overridden;
    put_u16(d + 2, p->detect.refractory);
    for (i = 0; i < KWS_PROTO_SETTINGS_HASH_BYTES; i++)
        d[4 + i] = KWS_READ_U8(&kws_proto_settings_hash[i]);
    q = d + KWS_PROTO_DETECT_FIXED;
    for (i = 0; i < KWS_N_CLASSES; i++)
        q = put_u16(q, p->detect.thr[i]);
    return KWS_PROTO_DETECT_MAX;
}
#endif

/* A valid frame in p->rx: answer it into p->tx (the cache). */
static int dispatch(kws_proto *p)
{
    uint8_t type = p->rx[0], seq = p->rx[1], plen = p->rx[2], code = 0;
    uint16_t crc = (uint16_t)((p->rx[p->rx_len - 2] << 8) | p->rx[p->rx_len - 1]);
    uint16_t n = 0;
    p->stats.frames_ok++;
    if (p->have_last && type == p->last_type && seq == p->last_seq && plen == p->last_len &&
        crc == p->last_crc) {
        p->stats.duplicates++;
        p->out = p->tx;
        p->out_len = p->tx_len;
        return 1;
    }
    switch (type) {
    case KWS_T_IDENTIFY:
        if (plen)
            code = KWS_E_ARG;
        else
            n = do_identify(p);
        break;
    case KWS_T_RESET:
        if (plen) {
            code = KWS_E_ARG;
        } else {
            kws_reset(&p->model);
            p->t = 0;
        }
        break;
    case KWS_T_INFER:
        n = do_infer(p, plen, &code);
        break;
#ifdef KWS_PROTO_LISTEN
    case KWS_T_LISTEN:
        n = do_listen(p, plen, &code);
        break;
#endif
#ifdef KWS_PROTO_DETECT
    case KWS_T_DETECT:
        n = do_detect(p, plen, &code);
        break;
#endif
    case KWS_T_STATS:
        if (plen)
            code = KWS_E_ARG;
        else
            n = do_stats(p);
        break;
    default:
        code = KWS_E_TYPE;
    }
    p->tx_len = code ? error_frame(p, p->tx, seq, code, type)
                     : seal(p->tx, (uint8_t)(type | KWS_T_REPLY), seq, n);
    p->have_last = 1;
    p->last_type = type;
    p->last_seq = seq;
    p->last_len = plen;
    p->last_crc = crc;
    p->out = p->tx;
    p->out_len = p->tx_len;
    return 1;
}

/* ---- the receiver ---------------------------------------------------------------------------- */

static void rx_clear(kws_proto *p)
{
    p->rx_len = 0;
    p->rx_crc = 0xFFFF;
    p->cobs_left = 0;
    p->cobs_code = 0;
    p->rx_status = 0;
    p->rx_any = 0;
}

static void rx_put(kws_proto *p, uint8_t b)
{
    if (p->rx_len < KWS_PROTO_RX_MAX) {
        p->rx[p->rx_len++] = b;
        p->rx_crc = kws_crc16_byte(p->rx_crc, b);
    } else {
        p->rx_status = KWS_E_OVERFLOW;
    }
}

void kws_proto_init(kws_proto *p)
{
    uint8_t *b = (uint8_t *)p;
    uint16_t i;
    for (i = 0; i < sizeof *p; i++)
        b[i] = 0;
    kws_reset(&p->model);
#ifdef KWS_PROTO_DETECT
    kws_detect_init(&p->detect);
#endif
    rx_clear(p);
}

int kws_proto_feed(kws_proto *p, uint8_t byte)
{
    int r;
    if (byte != 0) {
        p->rx_any = 1;
        if (p->cobs_left == 0) { /* a code byte: the previous block implied a zero */
            if (p->cobs_code != 0 && p->cobs_code != 0xFF)
                rx_put(p, 0);
            p->cobs_code = byte;
            p->cobs_left = (uint8_t)(byte - 1);
        } else {
            rx_put(p, byte);
            p->cobs_left--;
        }
        return 0;
    }
    /* delimiter: the frame in progress ends here */
    if (!p->rx_any) {
        rx_clear(p);
        return 0; /* empty frame: a flush, no reply */
    }
    if (p->rx_status)
        r = link_error(p, p->rx_status);
    else if (p->cobs_left)
        r = link_error(p, KWS_E_COBS);
    else if (p->rx_len < KWS_PROTO_OVERHEAD)
        r = link_error(p, KWS_E_SHORT);
    else if (p->rx_crc != 0)
        r = link_error(p, KWS_E_CRC);
    else if (p->rx[2] != p->rx_len - KWS_PROTO_OVERHEAD)
        r = link_error(p, KWS_E_LENGTH);
    else
        r = dispatch(p);
    rx_clear(p);
    return r;
}
