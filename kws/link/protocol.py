"""The host side of the firmware's serial protocol (firmware/PROTOCOL.md): COBS, CRC-16,
frames and payloads. No I/O here (that is kws.link.board).

    wire = encode_frame(T_INFER, seq, bytes([flags]) + frame.tobytes())
    reader = FrameReader()
    for item in reader.feed(received_bytes):     # Frame, or ProtocolError for a broken one
        ...

The decoders raise only ProtocolError (a KwsError), whatever bytes they are given.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from kws.errors import KwsError

PROTOCOL_VERSION = 1

# frame types
T_IDENTIFY, T_RESET, T_INFER, T_STATS, T_LISTEN, T_DETECT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
T_REPLY, T_ERROR = 0x80, 0xFF
TYPE_NAMES = {T_IDENTIFY: "IDENTIFY", T_RESET: "RESET", T_INFER: "INFER", T_STATS: "STATS",
              T_LISTEN: "LISTEN", T_DETECT: "DETECT", T_ERROR: "ERROR"}

# ERROR codes
E_CRC, E_COBS, E_SHORT, E_LENGTH, E_OVERFLOW, E_TYPE, E_ARG = range(1, 8)
ERROR_NAMES = {E_CRC: "CRC error", E_COBS: "bad COBS framing", E_SHORT: "frame too short",
               E_LENGTH: "length byte does not match", E_OVERFLOW: "frame too long",
               E_TYPE: "unknown command", E_ARG: "bad arguments"}
LINK_ERRORS = frozenset({E_CRC, E_COBS, E_SHORT, E_LENGTH, E_OVERFLOW})  # resend these

# INFER flags, DETECT flags, IDENTIFY capabilities
F_RESET, F_HIDDEN = 0x01, 0x02
F_SET = 0x01
CAP_TIMER, CAP_HIDDEN, CAP_STACK, CAP_LISTEN, CAP_DETECT = 0x01, 0x02, 0x04, 0x08, 0x10
NO_CLASS = 0xFF          # a LISTEN decision's "no keyword"

HEADER, OVERHEAD, MAX_PAYLOAD, HASH_BYTES = 3, 5, 255, 16
SETTINGS_HASH_BYTES = 8  # the listening-settings-hash prefix DETECT reports
LISTEN_FIXED, LISTEN_DECISION, DETECT_FIXED = 8, 12, 12
# the longest COBS-encoded frame: OVERHEAD + MAX_PAYLOAD bytes, plus one code byte per 254
MAX_ENCODED = OVERHEAD + MAX_PAYLOAD + (OVERHEAD + MAX_PAYLOAD) // 254 + 1

# The ids the firmware shares, in one place: kws.codegen.protoids writes them into
# firmware/protocol/kws_proto_ids.h (tests/test_protocol.py checks the committed file).
# (section, C format, [(C name, value, comment)]); the payload sizes follow _IDENT / _STATS.
C_IDS = (
    ("protocol version (IDENTIFY byte 0)", "d", [("KWS_PROTO_VERSION", PROTOCOL_VERSION, "")]),
    ("frame types (byte 0). A reply's type is the request's | KWS_T_REPLY.", "x", [
        ("KWS_T_IDENTIFY", T_IDENTIFY, ""), ("KWS_T_RESET", T_RESET, ""),
        ("KWS_T_INFER", T_INFER, ""), ("KWS_T_STATS", T_STATS, ""),
        ("KWS_T_LISTEN", T_LISTEN, ""), ("KWS_T_DETECT", T_DETECT, ""),
        ("KWS_T_REPLY", T_REPLY, ""),
        ("KWS_T_ERROR", T_ERROR, "")]),
    ("ERROR reply codes (payload byte 0)", "d", [
        ("KWS_E_CRC", E_CRC, "CRC-16 of the frame is wrong"),
        ("KWS_E_COBS", E_COBS, "the COBS encoding is broken (a block runs past the delimiter)"),
        ("KWS_E_SHORT", E_SHORT, "fewer than 5 decoded bytes"),
        ("KWS_E_LENGTH", E_LENGTH, "the len byte does not match the payload bytes received"),
        ("KWS_E_OVERFLOW", E_OVERFLOW,
         "longer than the largest request: the receive buffer is full"),
        ("KWS_E_TYPE", E_TYPE, "unknown command"),
        ("KWS_E_ARG", E_ARG, "payload size or flags not valid for the command")]),
    ("INFER request flags (payload byte 0)", "x", [
        ("KWS_F_RESET", F_RESET, "h = 0 before the first frame"),
        ("KWS_F_HIDDEN", F_HIDDEN, "append the hidden state after the last frame")]),
    ("DETECT request flags (payload byte 0)", "x", [
        ("KWS_F_SET", F_SET, "the refractory period and thresholds that follow replace the "
                             "board's")]),
    ("IDENTIFY capability bits", "x", [
        ("KWS_CAP_TIMER", CAP_TIMER, "cycles are measured (kws_th_timer_*), not 0"),
        ("KWS_CAP_HIDDEN", CAP_HIDDEN, "KWS_F_HIDDEN fits into a reply"),
        ("KWS_CAP_STACK", CAP_STACK, "STATS reports a stack high-water mark"),
        ("KWS_CAP_LISTEN", CAP_LISTEN, "LISTEN runs the stream schedule (kws_stream.h)"),
        ("KWS_CAP_DETECT", CAP_DETECT,
         "the board decides (kws_detect.h): LISTEN replies carry decisions, DETECT works")]),
    ("sizes", "d", [
        ("KWS_PROTO_HEADER", HEADER, "type, seq, len"),
        ("KWS_PROTO_OVERHEAD", OVERHEAD, "header + CRC-16"),
        ("KWS_PROTO_MAX_PAYLOAD", MAX_PAYLOAD, ""),
        ("KWS_PROTO_HASH_BYTES", HASH_BYTES, "the model-hash prefix IDENTIFY reports"),
        ("KWS_PROTO_SETTINGS_HASH_BYTES", SETTINGS_HASH_BYTES,
         "the listening-settings-hash prefix DETECT reports"),
        ("KWS_PROTO_LISTEN_FIXED", LISTEN_FIXED, "LISTEN reply before the pooled scores"),
        ("KWS_PROTO_LISTEN_DECISION", LISTEN_DECISION,
         "LISTEN reply: the detector's decision after the pooled scores"),
        ("KWS_PROTO_DETECT_FIXED", DETECT_FIXED, "DETECT reply before the thresholds")]),
)


class ProtocolError(KwsError):
    """A frame or payload that does not decode: bad framing, CRC, length or contents."""


# --- CRC-16/CCITT-FALSE -----------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final xor
    (crc16(b"123456789") == 0x29B1)."""
    t = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
    return crc


# --- COBS ---------------------------------------------------------------------------------------

def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no 0x00 byte (no delimiter added)."""
    out = bytearray()
    n, i = len(data), 0
    while True:
        j = data.find(0, i, min(n, i + 254))
        if j < 0:
            j = min(n, i + 254)
        code = j - i + 1
        out.append(code)
        out += data[i:j]
        if j == n:
            return bytes(out)
        i = j + 1 if code != 0xFF else j


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; ProtocolError for a zero byte or a block past the end."""
    out = bytearray()
    n, i = len(data), 0
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ProtocolError("COBS: block runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError("COBS: zero byte inside a frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        base = self.type & ~T_REPLY if self.type != T_ERROR else self.type
        return TYPE_NAMES.get(base, f"0x{self.type:02x}") + (
            " reply" if self.type & T_REPLY and self.type != T_ERROR else "")


def frame_bytes(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """The unencoded frame: type, seq, len, payload, CRC-16 (big endian)."""
    if not (0 <= type_ <= 255 and 0 <= seq <= 255):
        raise ProtocolError(f"type {type_} / seq {seq} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD}")
    raw = bytes((type_, seq, len(payload))) + bytes(payload)
    return raw + crc16(raw).to_bytes(2, "big")


def encode_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """On the wire: 0x00, COBS(frame), 0x00 (the leading delimiter ends any garbage)."""
    return b"\0" + cobs_encode(frame_bytes(type_, seq, payload)) + b"\0"


def decode_frame(encoded: bytes) -> Frame:
    """One COBS-encoded frame without its delimiters -> Frame, or ProtocolError."""
    raw = cobs_decode(bytes(encoded))
    if len(raw) < OVERHEAD:
        raise ProtocolError(f"frame of {len(raw)} bytes, at least {OVERHEAD}")
    if crc16(raw) != 0:
        raise ProtocolError(f"CRC error in a {len(raw)}-byte frame")
    if raw[2] != len(raw) - OVERHEAD:
        raise ProtocolError(f"length byte {raw[2]}, payload {len(raw) - OVERHEAD} bytes")
    return Frame(raw[0], raw[1], raw[HEADER:-2])


class FrameReader:
    """Splits a byte stream at 0x00 delimiters and decodes each frame. Bytes before the
    first delimiter seen are dropped only if they do not decode (they may be a frame whose
    leading delimiter was lost). An over-long run without a delimiter is dropped. An error
    for a frame that did not decode keeps its bytes in `error.raw` (damaged copies of one
    reply can be combined, kws.link.board)."""

    def __init__(self, max_encoded: int = 4 * MAX_ENCODED):
        self.buf = bytearray()
        self.max_encoded = max_encoded
        self.overlong = False

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        out: list[Frame | ProtocolError] = []
        self.buf += data
        while True:
            k = self.buf.find(0)
            if k < 0:
                if len(self.buf) > self.max_encoded:
                    self.buf.clear()
                    self.overlong = True
                return out
            chunk = bytes(self.buf[:k])
            del self.buf[:k + 1]
            if self.overlong:
                self.overlong = False
                e = ProtocolError("over-long frame dropped")
                e.raw = chunk
                out.append(e)
                continue
            if not chunk:
                continue                 # empty frame between two delimiters
            try:
                out.append(decode_frame(chunk))
            except ProtocolError as e:
                e.raw = chunk
                out.append(e)

    def clear(self) -> None:
        self.buf.clear()
        self.overlong = False


# --- payloads -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    protocol: int
    firmware: str
    caps: int
    hash_prefix: str          # hex, HASH_BYTES bytes
    n_in: int
    hidden: int
    n_classes: int
    max_frames: int
    f_cpu: int
    baud: int
    model_bytes: int
    score_q: int
    qx: int
    params_check: int         # 0: the kernel's compiled constants equal its parameter block
    classes: list[str] = field(default_factory=list)

    def matches(self, model_hash: str) -> bool:
        return model_hash.lower().startswith(self.hash_prefix)


@dataclass(frozen=True)
class InferReply:
    t: int                    # frames stepped since the last reset (after this request)
    flags: int
    cycles: np.ndarray        # [k] per frame
    scores: np.ndarray        # [k, n_classes] int64
    hidden: np.ndarray | None  # [hidden] int64 after the last frame, if asked


@dataclass(frozen=True)
class Stats:
    last_cycles: int
    inferences: int
    frames_ok: int
    crc_errors: int
    bad_frames: int
    duplicates: int
    errors: int
    stack_peak: int
    t: int
    rx_max: int
    tx_max: int


_IDENT = struct.Struct("<BBBB16sBBBBIIHBBBB")
_STATS = struct.Struct("<IIIHHHHHHHH")
C_IDS += (("payload sizes (kws/link/protocol.py _IDENT, _STATS)", "d", [
    ("KWS_PROTO_IDENT_FIXED", _IDENT.size, "IDENTIFY reply before the class names"),
    ("KWS_PROTO_STATS_PAYLOAD", _STATS.size, "STATS reply")]),)


def parse_identify(payload: bytes) -> Identity:
    if len(payload) < _IDENT.size:
        raise ProtocolError(f"IDENTIFY reply of {len(payload)} bytes, at least {_IDENT.size}")
    (proto, major, minor, caps, hash_, n_in, hidden, n_classes, max_frames, f_cpu, baud,
     model_bytes, score_q, qx, params_check, n_names) = _IDENT.unpack_from(payload)
    names = payload[_IDENT.size:]
    if len(names) != n_names:
        raise ProtocolError(f"IDENTIFY: {n_names} bytes of class names announced, "
                            f"{len(names)} sent")
    classes = names.decode("ascii", "replace").split(",") if names else []
    return Identity(proto, f"{major}.{minor}", caps, hash_.hex(), n_in, hidden, n_classes,
                    max_frames, f_cpu, baud, model_bytes, score_q, qx, params_check, classes)


def parse_infer(payload: bytes, n_classes: int, hidden: int) -> InferReply:
    if len(payload) < 4:
        raise ProtocolError(f"INFER reply of {len(payload)} bytes")
    k, flags, t = payload[0], payload[1], int.from_bytes(payload[2:4], "little")
    want = 4 + k * (4 + 4 * n_classes) + (2 * hidden if flags & F_HIDDEN else 0)
    if k < 1 or len(payload) != want:
        raise ProtocolError(f"INFER reply: {len(payload)} bytes for {k} frame(s), "
                            f"expected {want}")
    cycles = np.frombuffer(payload, "<u4", k, 4).astype(np.int64)
    scores = np.frombuffer(payload, "<i4", k * n_classes, 4 + 4 * k).astype(np.int64)
    h = None
    if flags & F_HIDDEN:
        h = np.frombuffer(payload, "<i2", hidden, 4 + 4 * k + 4 * k * n_classes).astype(np.int64)
    return InferReply(t, flags, cycles, scores.reshape(k, n_classes), h)


@dataclass(frozen=True)
class BoardDecision:
    """The board's detector on a window that ended (kws.detect.detector.Decision's fields)."""
    best: int
    best_sum: int
    fired: int            # NO_CLASS: nothing fired
    fired_sum: int
    windows: int
    led: int


@dataclass
class ListenReply:
    pos: int                      # the frame's place in the schedule's period
    cycles: int                   # of every instance's step on this frame (and the detector's)
    pooled: np.ndarray | None     # [classes] int64 when a window ended at this frame
    decision: BoardDecision | None = None   # when a window ended, on a board that decides


def parse_listen(payload: bytes, n_classes: int, decides: bool = False) -> ListenReply:
    """`decides`: the board has the detector (CAP_DETECT): a window's reply ends with its
    decision."""
    ended = payload[0] if payload else None
    want = LISTEN_FIXED + (4 * n_classes + (LISTEN_DECISION if decides else 0)) * (ended or 0)
    if ended not in (0, 1) or len(payload) != want:
        raise ProtocolError(f"LISTEN reply of {len(payload)} bytes")
    pooled = decision = None
    if ended:
        pooled = np.frombuffer(payload, "<i4", n_classes, LISTEN_FIXED).astype(np.int64)
        if decides:
            o = LISTEN_FIXED + 4 * n_classes
            fired, best, windows, led, fired_sum, best_sum = struct.unpack_from(
                "<BBBBII", payload, o)
            decision = BoardDecision(best, best_sum, fired, fired_sum, windows, led)
    return ListenReply(int.from_bytes(payload[2:4], "little"),
                       int.from_bytes(payload[4:8], "little"), pooled, decision)


@dataclass(frozen=True)
class DetectSettings:
    """The board's detector settings (DETECT reply)."""
    smooth: int                   # windows summed (compiled)
    overridden: int               # 1: the host replaced the compiled thresholds / refractory
    refractory: int               # windows
    settings_hash: str            # hex, SETTINGS_HASH_BYTES bytes: the compiled settings'
    thresholds: list[int]         # Q15 per class (0xFFFF: never)


def detect_payload(refractory: int, thresholds) -> bytes:
    """DETECT request that replaces the board's refractory period and thresholds."""
    t = [int(x) for x in thresholds]
    if not 0 <= int(refractory) <= 0xFFFE or any(not 0 <= x <= 0xFFFF for x in t):
        raise ProtocolError("DETECT: refractory 0..65534, thresholds 0..65535")
    return struct.pack(f"<BH{len(t)}H", F_SET, int(refractory), *t)


def parse_detect(payload: bytes, n_classes: int) -> DetectSettings:
    if len(payload) != DETECT_FIXED + 2 * n_classes:
        raise ProtocolError(f"DETECT reply of {len(payload)} bytes, expected "
                            f"{DETECT_FIXED + 2 * n_classes}")
    smooth, over, refractory = struct.unpack_from("<BBH", payload)
    h = payload[4:4 + SETTINGS_HASH_BYTES].hex()
    thr = list(struct.unpack_from(f"<{n_classes}H", payload, DETECT_FIXED))
    return DetectSettings(smooth, over, refractory, h, thr)


def parse_stats(payload: bytes) -> Stats:
    if len(payload) != _STATS.size:
        raise ProtocolError(f"STATS reply of {len(payload)} bytes, expected {_STATS.size}")
    return Stats(*_STATS.unpack(payload))


def parse_error(payload: bytes) -> tuple[int, int]:
    """(code, the request type the board saw)."""
    if len(payload) != 2:
        raise ProtocolError(f"ERROR reply of {len(payload)} bytes, expected 2")
    return payload[0], payload[1]


def error_text(code: int) -> str:
    return ERROR_NAMES.get(code, f"error code {code}")


def infer_payload(frames: np.ndarray, flags: int = 0) -> bytes:
    """INFER request payload: flags, then int8 frames [k, n_in] (or one frame [n_in])."""
    x = np.asarray(frames)
    if x.size and (x.min() < -128 or x.max() > 127):
        raise ProtocolError("INFER frames must be int8 (-128..127)")
    return bytes((flags,)) + x.astype(np.int8).tobytes()
