"""Properties of the host side of the serial protocol (kws.link.protocol, firmware/PROTOCOL.md),
with hypothesis and, where the space is small enough, exhaustively:

- COBS: decode(encode(x)) == x for any bytes, no 0x00 in the encoding, at most one byte
  added per 254; the optional final 0x01 block after a full block decodes the same; frames
  survive the stream reader whatever the read boundaries.
- CRC-16/CCITT-FALSE (poly 0x1021 = (x + 1)(x^15 + x^14 + x^13 + x^12 + x^4 + x^3 + x^2 + x + 1),
  the second factor primitive): its Hamming distance is 4 for codewords up to 32767 bits, so
  in any frame up to 4095 bytes it catches EVERY error of 1, 2 or 3 bits, every error of an
  odd number of bits (the x + 1 factor) and every burst of up to 16 bits. Our frames are at
  most 260 bytes (2080 bits). Shown here for every frame length up to 260 bytes from the
  CRC's linearity (exhaustive over the error's position), then through the decoder:
  single-bit errors exhaustively over several frames (the raw frame and its COBS bytes on
  the wire), double-bit errors exhaustively over short frames, and random ones on random
  frames. On the wire a flipped COBS code byte moves or splits the frame instead; nothing
  guarantees those in theory (each broken piece passes with odds of about 2^-16 and must
  also match its len byte), which the wire-level checks here cover for the frames they use.
- The decoders, fed any bytes (random, or valid frames damaged), raise nothing but
  ProtocolError, and whatever decodes is a frame that encodes back to the same bytes.
"""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kws.link import protocol as P

MAX_FRAME = P.OVERHEAD + P.MAX_PAYLOAD  # 260 bytes
FAST = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def flip(data: bytes, *bits: int) -> bytes:
    b = bytearray(data)
    for bit in bits:
        b[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(b)


def frames_from_wire(wire: bytes) -> list[P.Frame]:
    return [i for i in P.FrameReader().feed(wire) if isinstance(i, P.Frame)]


def raw_rejected(raw: bytes) -> bool:
    """The decoder refuses a damaged raw frame (sent with a correct COBS encoding)."""
    try:
        P.decode_frame(P.cobs_encode(raw))
    except P.ProtocolError:
        return True
    return False


# --- COBS -------------------------------------------------------------------------------------

# bytes with many zeros, runs of non-zero bytes around the 254-byte block limit, or anything
runs = st.lists(st.tuples(st.integers(0, 600), st.booleans()), max_size=5).map(
    lambda parts: b"".join(bytes((i % 255) + 1 for i in range(n)) + (b"\0" if z else b"")
                           for n, z in parts))
cobs_data = st.one_of(st.binary(max_size=1100), runs,
                      st.lists(st.sampled_from([0, 0, 1, 0xFF]), max_size=600).map(bytes))


def ends_in_full_block(enc: bytes) -> bool:
    i = last = 0
    while i < len(enc):
        last = enc[i]
        i += enc[i]
    return last == 0xFF


@FAST
@given(cobs_data)
def test_cobs_round_trip(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert len(data) + 1 <= len(enc) <= len(data) + len(data) // 254 + 1
    assert P.cobs_decode(enc) == data
    if ends_in_full_block(enc):  # "an encoder may or may not add a final 0x01 block"
        assert P.cobs_decode(enc + b"\x01") == data


def test_cobs_block_boundaries_exhaustive():
    """Every length 0..600 of non-zero bytes, each followed or not by a zero."""
    for n in range(601):
        for tail in (b"", b"\0", b"\0\0"):
            data = bytes((i % 255) + 1 for i in range(n)) + tail
            assert P.cobs_decode(P.cobs_encode(data)) == data


frame_args = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=P.MAX_PAYLOAD))


@FAST
@given(st.lists(frame_args, max_size=6), st.binary(max_size=40), st.data())
def test_frames_through_the_reader_any_read_boundaries(frames, garbage, data):
    wire = garbage + b"".join(P.encode_frame(*f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    reader, items = P.FrameReader(), []
    for a, b in zip([0, *cuts], [*cuts, len(wire)]):
        items += reader.feed(wire[a:b])
    got = [i for i in items if isinstance(i, P.Frame)]
    # the leading garbage may (rarely) decode as a frame of its own; the frames follow it
    assert got[len(got) - len(frames):] == [P.Frame(*f) for f in frames]
    assert all(isinstance(i, (P.Frame, P.ProtocolError)) for i in items)


# --- CRC-16/CCITT-FALSE ----------------------------------------------------------------------

def syndromes(n_bytes: int) -> list[int]:
    """The CRC residue a single flipped bit leaves in a valid frame of n_bytes, for each of
    its n_bytes * 8 positions, counted from the frame's end. The CRC is linear: for frames
    of one length, crc(frame ^ e) == crc(frame) ^ crc0(e) (crc0: initial value 0), and a
    valid frame's crc is 0, so an error pattern e goes unseen iff crc0(e) == 0, and
    crc0(e) is the xor of its bits' syndromes (leading zero bytes do not change crc0, so a
    bit's syndrome depends only on its distance from the end)."""
    out = []
    for i in range(n_bytes):                   # byte i from the end
        for k in range(8):                     # bit k from that byte's LSB
            out.append(P.crc16(bytes([1 << k]) + bytes(i), crc=0))
    return out


@FAST
@given(frame_args, st.binary(min_size=1, max_size=MAX_FRAME))
def test_crc_is_linear(args, noise):
    raw = P.frame_bytes(*args)
    e = noise[:len(raw)].rjust(len(raw), b"\0")
    bad = bytes(a ^ b for a, b in zip(raw, e))
    assert P.crc16(raw) == 0
    assert P.crc16(bad) == P.crc16(e, crc=0)   # what syndromes() relies on


def test_crc_catches_every_1_2_3_bit_error_and_16_bit_burst_in_any_frame_length():
    """Exhaustive over positions, for every frame of up to 260 bytes: all single-bit
    syndromes non-zero (1-bit errors) and pairwise distinct (2-bit errors: s_i ^ s_j != 0),
    each of odd weight (the x + 1 factor: an odd number of flipped bits never cancels, so
    3-bit errors too); and each of the 2^16 - 1 burst patterns within 16 bits leaves a
    non-zero residue at the frame's end, hence anywhere (x is invertible modulo the poly)."""
    s = syndromes(MAX_FRAME)
    assert all(s)
    assert len(set(s)) == len(s) == 8 * MAX_FRAME
    assert all(bin(v).count("1") % 2 == 1 for v in s)
    assert all(P.crc16(b.to_bytes(2, "big"), crc=0) for b in range(1, 1 << 16))
    # the same thing, computed as the firmware's check does: a whole frame's residue
    raw = P.frame_bytes(P.T_INFER, 1, bytes(range(P.MAX_PAYLOAD)))
    assert len(raw) == MAX_FRAME
    for bit in (0, 1, 7, 8, 1000, 8 * MAX_FRAME - 1):
        assert P.crc16(flip(raw, bit)) == s[8 * MAX_FRAME - 1 - bit]


SAMPLE_FRAMES = [
    P.frame_bytes(P.T_STATS, 0),                                        # 5 bytes, no payload
    P.frame_bytes(P.T_ERROR, 200, bytes([P.E_CRC, P.T_INFER])),         # 7 bytes
    P.frame_bytes(P.T_INFER, 7, P.infer_payload(np.arange(-16, 16), P.F_HIDDEN)),  # 38
    P.frame_bytes(P.T_INFER | P.T_REPLY, 9, bytes(56)),                 # zeros: many COBS blocks
    P.frame_bytes(P.T_IDENTIFY | P.T_REPLY, 255, bytes(range(1, 120))),
    P.frame_bytes(P.T_INFER, 128, bytes(range(1, 256))),                # 260: a full COBS block
]


@pytest.mark.parametrize("raw", SAMPLE_FRAMES, ids=lambda r: f"{len(r)}B")
def test_every_single_bit_error_is_caught_by_the_decoder(raw):
    """Every bit of the raw frame (COBS-encoded correctly afterwards): a CRC error; every bit
    of its wire bytes (0x00 COBS 0x00, the delimiters included): no frame comes out."""
    for bit in range(8 * len(raw)):
        with pytest.raises(P.ProtocolError, match="CRC"):
            P.decode_frame(P.cobs_encode(flip(raw, bit)))
    wire = b"\0" + P.cobs_encode(raw) + b"\0"
    for bit in range(8 * len(wire)):
        assert frames_from_wire(flip(wire, bit)) == [], bit
    assert frames_from_wire(wire) == [P.Frame(raw[0], raw[1], raw[3:-2])]


@pytest.mark.parametrize("raw", SAMPLE_FRAMES[:3], ids=lambda r: f"{len(r)}B")
def test_every_double_bit_error_in_short_frames_is_caught(raw):
    """All pairs of bits: in the raw frame of 5, 7 and 38 bytes (48,376 pairs), and in the
    wire bytes of the 5- and 7-byte frames."""
    n = 8 * len(raw)
    for a, b in itertools.combinations(range(n), 2):
        assert raw_rejected(flip(raw, a, b)), (a, b)
    if len(raw) <= 7:
        wire = b"\0" + P.cobs_encode(raw) + b"\0"
        for a, b in itertools.combinations(range(8 * len(wire)), 2):
            assert frames_from_wire(flip(wire, a, b)) == [], (a, b)


@settings(deadline=None, max_examples=300)
@given(frame_args, st.data())
def test_random_double_bit_errors_are_caught(args, data):
    raw = P.frame_bytes(*args)
    a, b = data.draw(st.lists(st.integers(0, 8 * len(raw) - 1), min_size=2, max_size=2,
                              unique=True))
    assert raw_rejected(flip(raw, a, b))
    c = data.draw(st.integers(0, 8 * len(raw) - 1).filter(lambda c: c not in (a, b)))
    assert raw_rejected(flip(raw, a, b, c))              # and 3 bits
    wire = P.encode_frame(*args)
    a, b = data.draw(st.lists(st.integers(8, 8 * len(wire) - 9), min_size=2, max_size=2,
                              unique=True))
    assert P.Frame(args[0], args[1], args[2]) not in frames_from_wire(flip(wire, a, b))


# --- the decoders on any bytes ---------------------------------------------------------------

def decoders(n_classes: int, hidden: int):
    return (P.cobs_decode, P.decode_frame, P.parse_identify, P.parse_stats, P.parse_error,
            lambda d: P.parse_infer(d, n_classes, hidden))


def only_protocol_errors(data: bytes, n_classes: int = 12, hidden: int = 24) -> None:
    for fn in decoders(n_classes, hidden):
        try:
            fn(data)
        except P.ProtocolError:
            pass                                 # anything else propagates: a failure


@settings(deadline=None, max_examples=400)
@given(st.binary(max_size=1200), st.integers(1, 64), st.integers(0, 64))
def test_decoders_on_random_bytes_raise_only_protocol_errors(data, n_classes, hidden):
    only_protocol_errors(data, n_classes, hidden)
    try:
        f = P.decode_frame(data)
    except P.ProtocolError:
        return
    # whatever decodes is a frame that encodes back to the same raw bytes
    assert P.frame_bytes(f.type, f.seq, f.payload) == P.cobs_decode(data)


# damaged valid traffic: frames and payloads that get past the CRC with contents of any size
damage = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "zero"]),
                            st.integers(0, 10_000), st.integers(0, 255)), max_size=4)


def apply_damage(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, value in ops:
        i = where % (len(b) + 1)
        if op == "insert":
            b.insert(i, value)
        elif b and op == "delete":
            del b[i % len(b)]
        elif b and op == "zero":
            b[i % len(b)] = 0
        elif b:
            b[i % len(b)] ^= 1 << (value % 8)
    return bytes(b)


@settings(deadline=None, max_examples=400)
@given(st.lists(frame_args, min_size=1, max_size=4), damage, st.integers(1, 64),
       st.integers(0, 64), st.integers(1, 2000))
def test_decoders_on_damaged_traffic_raise_only_protocol_errors(frames, ops, n_classes, hidden,
                                                                  max_encoded):
    wire = apply_damage(b"".join(P.encode_frame(*f) for f in frames), ops)
    reader = P.FrameReader(max_encoded=max_encoded)
    for i in range(0, len(wire), 7):
        for item in reader.feed(wire[i:i + 7]):
            assert isinstance(item, (P.Frame, P.ProtocolError))
    for chunk in wire.split(b"\0"):
        only_protocol_errors(chunk, n_classes, hidden)
    for _, _, payload in frames:                      # payload parsers on any valid frame
        only_protocol_errors(apply_damage(payload, ops), n_classes, hidden)


@settings(deadline=None, max_examples=200)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=P.MAX_PAYLOAD - 40),
       st.integers(1, 64), st.integers(0, 64))
def test_payload_parsers_on_plausible_payloads(k, flags, rest, n_classes, hidden):
    """Payloads with a plausible head (k frames and flags for INFER; the right size prefix for
    IDENTIFY and STATS): parsed or refused with ProtocolError, never anything else."""
    infer = bytes([k, flags]) + rest
    want = 4 + k * (4 + 4 * n_classes) + (2 * hidden if flags & P.F_HIDDEN else 0)
    exact = infer[:want].ljust(want, b"\x7f")
    for payload in (infer, exact, bytes(38) + rest, bytes(28), bytes([1, 2]) + rest[:1]):
        only_protocol_errors(payload, n_classes, hidden)
    if k >= 1 and len(exact) <= P.MAX_PAYLOAD:
        r = P.parse_infer(exact, n_classes, hidden)
        assert r.scores.shape == (k, n_classes) and len(r.cycles) == k
        assert (r.hidden is not None) == bool(flags & P.F_HIDDEN)
