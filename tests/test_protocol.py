"""The serial protocol (firmware/PROTOCOL.md): the firmware's frame decoder and dispatcher
compiled on the host (firmware/protocol/test_proto.c, under the sanitizers), and the host
side (kws.link.protocol): CRC-16, COBS, frames, the stream reader, payloads."""

import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kws.link import protocol as P
from kws.paths import firmware_module
from kws.data.dataset import TASKS
from kws.errors import KwsError
from kws.codegen.export import model_header
from kws.targets.avr.simboard import REPO

PROTO = REPO / "firmware" / "protocol"
KERNEL = REPO / "firmware" / "kernel"
CFLAGS = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pedantic"]


golden = firmware_module("tests/golden.py")


def sanitizers(cc):
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    probe = subprocess.run([cc, *flags, "-x", "c", "-", "-o", "/dev/null"],
                           input="int main(void){return 0;}", capture_output=True, text=True)
    return flags if probe.returncode == 0 else []


def run_c_test(tmp_path, im, classes, name, cc="gcc", defines=()):
    case = tmp_path / name
    case.mkdir()
    (case / "model_data.h").write_text(
        model_header(im, name=name, model_hash="0123456789abcdef" * 4, classes=classes))
    exe = case / "test_proto"
    cmd = [cc, *CFLAGS, *sanitizers(cc), *defines, f"-I{case}", f"-I{KERNEL}", f"-I{PROTO}",
           str(PROTO / "test_proto.c"), str(PROTO / "kws_proto.c"), str(KERNEL / "kws_model.c"),
           "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ok: "), r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


# --- the firmware side, on the host -----------------------------------------------------------

def test_c_protocol_valid_frames_garbage_crc_duplicates(tmp_path):
    """Valid frames of every command, resync after garbage, every single-bit error refused,
    a resent request answered from the cache without stepping, bad requests refused,
    200 kB of random bytes: only well-formed replies (ASan + UBSan watching)."""
    out = run_c_test(tmp_path, golden.random_model(0), list(TASKS["v2-12"].classes), "dense8")
    assert int(out.split()[1]) > 1000  # checks run


def test_c_protocol_other_shapes(tmp_path):
    """int4 sparse with 7 classes; 3 frames per request; 35 long class names (the IDENTIFY
    reply's name list is cut to fit one frame)."""
    sparse = golden.random_model(3, 4, hidden=17, rank_w=5, rank_u=3, n_classes=7,
                                 density=dict.fromkeys(("W1", "W2", "U1", "U2"), 0.25))
    run_c_test(tmp_path, sparse, [f"c{i}" for i in range(7)], "sparse4")
    run_c_test(tmp_path, golden.random_model(0), [f"w{i}" for i in range(12)], "frames3",
               defines=["-DKWS_PROTO_MAX_FRAMES=3"])
    words = [f"{w}_keyword" for w in TASKS["35"].classes]
    assert len(",".join(words)) > P.MAX_PAYLOAD - 38
    run_c_test(tmp_path, golden.random_model(4, n_classes=35), words, "classes35")
    if shutil.which("clang"):
        run_c_test(tmp_path, sparse, [f"c{i}" for i in range(7)], "clang", cc="clang")


# --- CRC and COBS -------------------------------------------------------------------------------

def test_crc16_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1       # the catalogue's check value
    assert P.crc16(b"") == 0xFFFF
    raw = P.frame_bytes(P.T_INFER, 7, bytes(range(40)))
    assert P.crc16(raw) == 0                     # big-endian CRC appended: residue 0


COBS_CASES = [b"", b"\0", b"\0\0", b"\x11\0", b"\x11\x22\0\x33", bytes(range(1, 254)),
              bytes(range(1, 255)), bytes(range(1, 256)), bytes(range(1, 255)) + b"\0",
              bytes(range(1, 255)) * 3, b"\0" * 300, bytes(range(256)) * 2]


def test_cobs_round_trip_and_known_encodings():
    assert P.cobs_encode(b"") == b"\x01"
    assert P.cobs_encode(b"\0") == b"\x01\x01"
    assert P.cobs_encode(b"\x11\x22\0\x33") == b"\x03\x11\x22\x02\x33"
    assert P.cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))
    assert P.cobs_encode(bytes(range(1, 256))) == b"\xff" + bytes(range(1, 255)) + b"\x02\xff"
    for data in COBS_CASES:
        enc = P.cobs_encode(data)
        assert 0 not in enc and len(enc) <= len(data) + len(data) // 254 + 1
        assert P.cobs_decode(enc) == data
    rng = random.Random(0)
    for _ in range(300):
        data = bytes(rng.choice([0, rng.randrange(256)]) for _ in range(rng.randrange(600)))
        assert P.cobs_decode(P.cobs_encode(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800))
def test_cobs_round_trip_property(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert P.cobs_decode(enc) == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_raise_only_protocol_errors(data):
    for fn in (P.cobs_decode, P.decode_frame, P.parse_identify, P.parse_stats, P.parse_error,
               lambda d: P.parse_infer(d, 12, 24)):
        try:
            fn(data)
        except P.ProtocolError:
            pass
    for item in P.FrameReader().feed(data):
        assert isinstance(item, (P.Frame, P.ProtocolError))


def test_frame_round_trip_and_every_bit_error_is_caught():
    payload = P.infer_payload(np.arange(-16, 16), P.F_HIDDEN)
    wire = P.encode_frame(P.T_INFER, 200, payload)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    f = P.decode_frame(wire[1:-1])
    assert (f.type, f.seq, f.payload) == (P.T_INFER, 200, payload)
    body = wire[1:-1]
    for bit in range(8 * len(body)):                 # single-bit errors
        bad = bytearray(body)
        bad[bit // 8] ^= 1 << (bit % 8)
        items = P.FrameReader().feed(b"\0" + bytes(bad) + b"\0")
        assert not any(isinstance(i, P.Frame) for i in items), bit
    rng = random.Random(1)
    for _ in range(2000):                            # double-bit errors
        bad = bytearray(body)
        for bit in rng.sample(range(8 * len(body)), 2):
            bad[bit // 8] ^= 1 << (bit % 8)
        items = P.FrameReader().feed(b"\0" + bytes(bad) + b"\0")
        assert not any(isinstance(i, P.Frame) for i in items)


def test_frame_errors():
    with pytest.raises(P.ProtocolError, match="at least 5"):
        P.decode_frame(P.cobs_encode(b"\x01\x02"))
    raw = bytearray(P.frame_bytes(P.T_STATS, 1))
    raw[0] ^= 4
    with pytest.raises(P.ProtocolError, match="CRC"):
        P.decode_frame(P.cobs_encode(bytes(raw)))
    raw = bytes((P.T_STATS, 1, 3))
    with pytest.raises(P.ProtocolError, match="length byte 3"):
        P.decode_frame(P.cobs_encode(raw + P.crc16(raw).to_bytes(2, "big")))
    with pytest.raises(P.ProtocolError, match="past the end"):
        P.cobs_decode(b"\x05\x01")
    with pytest.raises(P.ProtocolError, match="at most 255"):
        P.frame_bytes(P.T_INFER, 0, bytes(256))
    with pytest.raises(P.ProtocolError, match="int8"):
        P.infer_payload(np.array([200]))
    assert issubclass(P.ProtocolError, KwsError)


def test_reader_resyncs_after_garbage_and_split_reads():
    a = P.encode_frame(P.T_RESET | P.T_REPLY, 1)
    b = P.encode_frame(P.T_STATS | P.T_REPLY, 2, bytes(28))
    stream = b"\x13\x37garbage\xff" + a + b"\x01\x02\x03" + b
    items = []
    reader = P.FrameReader()
    for i in range(0, len(stream), 3):               # arbitrary read boundaries
        items += reader.feed(stream[i:i + 3])
    frames = [i for i in items if isinstance(i, P.Frame)]
    errors = [i for i in items if isinstance(i, P.ProtocolError)]
    assert [(f.type, f.seq) for f in frames] == [(0x82, 1), (0x84, 2)]
    assert len(errors) == 2                           # the two stretches of garbage
    # a run with no delimiter at all is dropped, then the reader is back in step
    reader = P.FrameReader(max_encoded=100)
    assert reader.feed(b"\x07" * 500) == []
    items = reader.feed(b"\0" + a)
    assert isinstance(items[0], P.ProtocolError) and items[1] == P.Frame(0x82, 1, b"")


def test_payload_parsers():
    ident = bytes((1, 1, 0, 7)) + bytes.fromhex("ab" * 16) + bytes((32, 24, 12, 1)) \
        + (16_000_000).to_bytes(4, "little") + (115200).to_bytes(4, "little") \
        + (983).to_bytes(2, "little") + bytes((20, 5, 0, 5)) + b"yes,n"
    i = P.parse_identify(ident)
    assert (i.firmware, i.hash_prefix, i.n_in, i.n_classes, i.f_cpu, i.baud, i.model_bytes,
            i.classes) == ("1.0", "ab" * 16, 32, 12, 16_000_000, 115200, 983, ["yes", "n"])
    assert i.matches("AB" * 32) and not i.matches("ac" * 32)
    with pytest.raises(P.ProtocolError, match="class names"):
        P.parse_identify(ident[:-1])
    scores = np.arange(-6, 6, dtype="<i4")
    payload = bytes((1, P.F_HIDDEN)) + (5).to_bytes(2, "little") + (27000).to_bytes(4, "little") \
        + scores.tobytes() + np.arange(-1, 2, dtype="<i2").tobytes()
    r = P.parse_infer(payload, 12, 3)
    assert r.t == 5 and r.cycles.tolist() == [27000] and r.scores.tolist() == [scores.tolist()]
    assert r.hidden.tolist() == [-1, 0, 1]
    with pytest.raises(P.ProtocolError, match="expected 62"):
        P.parse_infer(payload[:-1], 12, 3)


def test_the_committed_ids_header_is_what_the_one_source_generates():
    """Types, errors, flags, capabilities and sizes are typed once (kws.link.protocol.C_IDS);
    firmware/protocol/kws_proto_ids.h is generated from them, and kws_proto.h defines none
    of them itself."""
    import re

    from kws.codegen.protoids import ids_header

    assert (PROTO / "kws_proto_ids.h").read_text() == ids_header()
    names = {name for _, _, rows in P.C_IDS for name, _, _ in rows}
    defined = set(re.findall(r"^#define (\w+)", (PROTO / "kws_proto.h").read_text(), re.M))
    assert not names & defined
    for name, value in [("KWS_PROTO_HASH_BYTES", P.HASH_BYTES), ("KWS_T_ERROR", P.T_ERROR),
                        ("KWS_PROTO_IDENT_FIXED", 38), ("KWS_PROTO_STATS_PAYLOAD", 28)]:
        assert re.search(rf"^#define {name} (\S+)", ids_header(), re.M)[1] in (str(value),
                                                                              f"0x{value:02X}")


def test_listen_reply_with_a_decision_and_the_detect_payloads_round_trip():
    """A deciding board's LISTEN reply ends with the 12-byte decision (only when a window
    ended); DETECT's request and reply; wrong sizes are ProtocolErrors."""
    import struct

    n = 12
    pooled = np.arange(-6, 6, dtype="<i4")
    head = bytes([1, 0]) + (7).to_bytes(2, "little") + (38817).to_bytes(4, "little")
    decision = struct.pack("<BBBBII", 9, 9, 1, 1, 32700, 32700)
    r = P.parse_listen(head + pooled.tobytes() + decision, n, decides=True)
    assert r.pos == 7 and r.cycles == 38817 and r.pooled.tolist() == list(range(-6, 6))
    assert (r.decision.fired, r.decision.best, r.decision.windows, r.decision.led,
            r.decision.fired_sum, r.decision.best_sum) == (9, 9, 1, 1, 32700, 32700)
    quiet = P.parse_listen(bytes([0, 0, 3, 0]) + bytes(4), n, decides=True)
    assert quiet.pooled is None and quiet.decision is None and quiet.pos == 3
    assert P.parse_listen(head + pooled.tobytes(), n).decision is None   # a board that does not decide
    for bad in (head + pooled.tobytes(), head + pooled.tobytes() + decision[:-1], b""):
        with pytest.raises(P.ProtocolError):
            P.parse_listen(bad, n, decides=True)
    req = P.detect_payload(2, [32277] * 10 + [0xFFFF] * 2)
    assert req[0] == P.F_SET and len(req) == 3 + 2 * n
    assert struct.unpack("<H", req[1:3])[0] == 2
    with pytest.raises(P.ProtocolError):
        P.detect_payload(0xFFFF, [0] * n)
    reply = struct.pack("<BBH", 2, 1, 3) + bytes.fromhex("9c01450d703013f7") + \
        struct.pack(f"<{n}H", *range(n))
    d = P.parse_detect(reply, n)
    assert (d.smooth, d.overridden, d.refractory, d.settings_hash, d.thresholds) == \
        (2, 1, 3, "9c01450d703013f7", list(range(n)))
    with pytest.raises(P.ProtocolError):
        P.parse_detect(reply[:-1], n)
