"""The fuzzer's seed corpus: what a host sends a board, from kws.link.protocol's own encoder, so
the firmware's decoder and the host's encoder are fuzzed from the same bytes.

    .venv/bin/python firmware/fuzz/seeds.py firmware/fuzz/corpus          # (re)write seed-*.bin
    .venv/bin/python firmware/fuzz/seeds.py --check firmware/fuzz/corpus  # exit 1 if stale

Each file is one session from boot (libFuzzer's unit): valid requests of every command (every
INFER flag, 1 to 4 frames), a host session with retries, resent requests (the cached reply),
bad requests (ERROR 6 and 7) and damaged frames (ERROR 1 to 5), garbage, empty frames; LISTEN
(every fuzz configuration compiles it, firmware/fuzz/models.py): from boot, with RESET, 76
frames (two windows end even with the shipped 50-frame schedule, a window-ending frame
resent), resends, interleaved with INFER and RESET (separate states), bad flags and lengths;
DETECT (every fuzz configuration compiles the detector): reads, replacements, bad requests, and
a LISTEN run whose windows fire at thresholds of 0, then LISTEN RESET.
All INFER and LISTEN frames have 32 int8 bins: every fuzz configuration's model has n_in = 32.
Other files in the folder (regress-*.bin: crash reproducers) are left alone.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kws.link import protocol as P  # noqa: E402

N_IN = 32


def _frames(rng: random.Random, k: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(k * N_IN))


def _flip(wire: bytes, bit: int) -> bytes:
    b = bytearray(wire)
    b[1 + bit // 8] ^= 1 << (bit % 8)  # inside the COBS bytes, not the leading delimiter
    return bytes(b)


def _ends_in_full_block(rng: random.Random) -> bytes:
    """COBS of a 260-byte frame whose last 254 bytes have no zero: it ends in a full block
    (code 0xFF), after which an encoder may add a final 0x01 block (PROTOCOL.md)."""
    while True:
        payload = b"\1\1\0" + bytes(rng.randrange(1, 256) for _ in range(252))
        raw = P.frame_bytes(P.T_INFER, 24, payload)
        if 0 not in raw[6:]:
            enc = P.cobs_encode(raw)
            assert enc[-255] == 0xFF and P.cobs_decode(enc + b"\1") == raw
            return enc


def seeds() -> dict[str, bytes]:
    rng = random.Random(20240501)
    enc = P.encode_frame
    x1, x2 = _frames(rng, 1), _frames(rng, 1)
    infer = enc(P.T_INFER, 40, b"\0" + x1)
    out = {
        # one valid request of each command
        "identify": enc(P.T_IDENTIFY, 1),
        "reset": enc(P.T_RESET, 2),
        "stats": enc(P.T_STATS, 3),
        "infer": infer,
        "infer-reset": enc(P.T_INFER, 5, bytes([P.F_RESET]) + x1),
        "infer-hidden": enc(P.T_INFER, 6, bytes([P.F_HIDDEN]) + x1),
        "infer-reset-hidden": enc(P.T_INFER, 7, bytes([P.F_RESET | P.F_HIDDEN]) + x1),
        "infer-extremes": enc(P.T_INFER, 8, b"\0" + bytes([0x80, 0x7F, 0x00, 0xFF] * 8)),
        # several frames per request (valid with KWS_PROTO_MAX_FRAMES >= k, else ERROR 7 or 5)
        "infer-k2": enc(P.T_INFER, 9, b"\0" + _frames(rng, 2)),
        "infer-k3-hidden": enc(P.T_INFER, 10, bytes([P.F_HIDDEN]) + _frames(rng, 3)),
        "infer-k4": enc(P.T_INFER, 11, bytes([P.F_RESET]) + _frames(rng, 4)),
        "infer-k4-hidden": enc(P.T_INFER, 12, bytes([P.F_HIDDEN]) + _frames(rng, 4)),
        # a host session: IDENTIFY (repeated, as after a board reset), RESET, a stream of
        # INFER with seq wrapping through 255 -> 0, STATS
        "session": (enc(P.T_IDENTIFY, 254) * 2 + enc(P.T_RESET, 255)
                    + b"".join(enc(P.T_INFER, s % 256, bytes([P.F_RESET if s == 0 else 0])
                                   + _frames(rng, 1)) for s in range(256, 262))
                    + enc(P.T_INFER, 6, bytes([P.F_HIDDEN]) + x2) + enc(P.T_STATS, 7)),
        # resent requests: the cached reply, nothing stepped twice; a damaged copy in between
        # does not evict the cache; the same seq with other bytes is a new request
        "resend-infer": infer * 3 + enc(P.T_STATS, 41),
        "resend-after-damage": infer + _flip(infer, 20) + infer + enc(P.T_STATS, 41),
        "resend-reset": enc(P.T_INFER, 1, b"\0" + x1) + enc(P.T_RESET, 2) * 2 + enc(P.T_STATS, 3),
        "same-seq-new-bytes": infer + enc(P.T_INFER, 40, b"\0" + x2) + infer,
        "resend-error": enc(0x55, 9) * 2 + enc(P.T_STATS, 10) * 2,
        # valid frames, bad requests: ERROR 6 (type) and 7 (arguments)
        "bad-requests": b"".join([
            enc(0x00, 1), enc(0x05, 2), enc(0x06, 2), enc(0x55, 3), enc(P.T_INFER | P.T_REPLY, 4),
            enc(P.T_ERROR, 5, bytes([1, 3])),
            enc(P.T_IDENTIFY, 6, b"\0"), enc(P.T_RESET, 7, b"\x01"), enc(P.T_STATS, 8, b"xy"),
            enc(P.T_INFER, 9), enc(P.T_INFER, 10, b"\0"), enc(P.T_INFER, 11, x1),
            enc(P.T_INFER, 12, b"\0" + x1[:N_IN // 2]), enc(P.T_INFER, 13, b"\x04" + x1),
            enc(P.T_INFER, 14, b"\x80" + x1), enc(P.T_INFER, 15, b"\0" + x1 + b"\x01")]),
        # damaged frames: ERROR 1 to 5, then a good one (back in step)
        "link-errors": b"".join([
            b"\0\x03\x01\x02\0",                            # 3 bytes: short
            b"\0\x09\x01\x02\0",                            # block past the delimiter: COBS
            b"\0" + P.cobs_encode(bytes([P.T_STATS, 14, 3]) + P.crc16(
                bytes([P.T_STATS, 14, 3])).to_bytes(2, "big")) + b"\0",  # len 3, no payload
            _flip(enc(P.T_STATS, 15), 9),                   # CRC
            b"\0" + bytes(range(1, 201)) * 2 + b"\0",       # 400 bytes: overflow
            enc(P.T_STATS, 16)]),
        "empty-frames": b"\0\0\0" + enc(P.T_IDENTIFY, 17) + b"\0\0",
        "garbage-then-frame": b"\x13\x37garbage\xff" + enc(P.T_STATS, 18),
        "unterminated": enc(P.T_RESET, 19) + b"\x05\x01\x02",
        "no-leading-delimiter": enc(P.T_STATS, 20)[1:] + enc(P.T_IDENTIFY, 21)[1:],
        # the longest frames: 255 payload bytes (too long for the receive buffer), with COBS
        # full blocks, and the optional final 0x01 block after a full block
        "max-payload": enc(P.T_INFER, 22, bytes(range(1, 256))) + enc(P.T_STATS, 23),
        "full-block-final-01": b"\0" + _ends_in_full_block(rng) + b"\x01\0",
        "bitflips": infer + b"".join(_flip(infer, b) for b in (0, 7, 8, 15, 16, 100, 300)),
    }
    out.update(_listen_seeds(rng))
    out.update(_detect_seeds(rng))
    return {f"seed-{name}.bin": data for name, data in out.items()}


# the longest stream of LISTEN requests in one seed: two windows of the shipped schedule end
# (P 50, K 2: frames 49 and 74), under libFuzzer's -max_len of 4096 bytes
LISTEN_RUN = 76


def _listen(seq: int, frame: bytes, flags: int = 0) -> bytes:
    return P.encode_frame(P.T_LISTEN, seq % 256, bytes([flags]) + frame)


def _listen_seeds(rng: random.Random) -> dict[str, bytes]:
    enc = P.encode_frame
    x = [_frames(rng, 1) for _ in range(LISTEN_RUN)]
    run = [_listen(100 + i, x[i], P.F_RESET if i == 0 else 0) for i in range(LISTEN_RUN)]
    # resend the frames that end the shipped schedule's windows (49, 74) and one that does not
    windows = b"".join(f * (2 if i in (3, 49, 74) else 1) for i, f in enumerate(run))
    y = [_frames(rng, 1) for _ in range(8)]
    extremes = [bytes([0x7F, 0x80] * (N_IN // 2)), bytes([0x80] * N_IN), bytes([0x7F] * N_IN)]
    return {
        # one LISTEN with RESET: frame 0, nothing ended (a window of 1 frame would)
        "listen-reset": _listen(1, y[0], P.F_RESET),
        # from boot without RESET: boot is a reset too (frames 0, 1, 2)
        "listen-boot": b"".join(_listen(2 + i, y[i]) for i in range(3)) + enc(P.T_STATS, 9),
        # windows end (every P / K frames after the first P), resends in between
        "listen-windows": windows + enc(P.T_STATS, 200),
        # extreme frames: the largest scores, pooled over whole windows
        "listen-extremes": b"".join(_listen(30 + i, extremes[i % 3], P.F_RESET if i == 0 else 0)
                                    for i in range(12)),
        # a resent LISTEN (RESET or not) is not stepped again; the same seq with another
        # frame is a new request; a LISTEN RESET later starts over at frame 0
        "listen-resend": (_listen(50, y[1], P.F_RESET) * 2 + _listen(51, y[2]) * 3
                          + _listen(51, y[3]) + _listen(52, y[4]) + _listen(53, y[5], P.F_RESET)
                          + _listen(53, y[5], P.F_RESET) + enc(P.T_STATS, 54)),
        # LISTEN's state is its own: INFER (with and without RESET) and RESET do not touch it,
        # LISTEN RESET does not touch INFER's t; IDENTIFY announces LISTEN (capability bit 3)
        "listen-vs-infer": b"".join([
            enc(P.T_IDENTIFY, 60), _listen(61, y[0], P.F_RESET), _listen(62, y[1]),
            enc(P.T_INFER, 63, bytes([P.F_RESET]) + y[2]), enc(P.T_RESET, 64),
            _listen(65, y[3]), enc(P.T_INFER, 66, b"\0" + y[4]), _listen(67, y[5], P.F_RESET),
            enc(P.T_INFER, 68, bytes([P.F_HIDDEN]) + y[6]), _listen(69, y[7]),
            enc(P.T_RESET, 70), _listen(71, y[0]), enc(P.T_STATS, 72)]),
        # bad LISTEN requests (ERROR 7, nothing reset or stepped, even with the RESET bit),
        # between valid ones: flags other than bit 0, no frame, part of one, one byte more,
        # two frames (too long for a 1-frame receive buffer: ERROR 5 there)
        "listen-bad": b"".join([
            _listen(80, y[0], P.F_RESET), _listen(81, y[1]),
            _listen(82, y[2], P.F_HIDDEN), _listen(83, y[2], P.F_RESET | P.F_HIDDEN),
            _listen(84, y[2], 0x80), _listen(85, y[2], 0xFE),
            enc(P.T_LISTEN, 86), enc(P.T_LISTEN, 87, bytes([P.F_RESET])),
            enc(P.T_LISTEN, 88, bytes([P.F_RESET]) + y[2][:N_IN - 1]),
            enc(P.T_LISTEN, 89, bytes([P.F_RESET]) + y[2] + b"\x01"),
            enc(P.T_LISTEN, 90, bytes([P.F_RESET]) + y[2] + y[3]),
            _listen(91, y[4]), enc(P.T_STATS, 92)]),
    }


# DETECT requests are for the 12 classes of models/default (the `shipped` and `frames4`
# configurations; `names35` answers them with ERROR 7)
N_CLASSES = 12


def _detect_set(seq: int, refractory: int, thresholds, flags: int = P.F_SET) -> bytes:
    payload = bytes([flags]) + refractory.to_bytes(2, "little") + b"".join(
        t.to_bytes(2, "little") for t in thresholds)
    return P.encode_frame(P.T_DETECT, seq % 256, payload)


def _detect_seeds(rng: random.Random) -> dict[str, bytes]:
    enc = P.encode_frame
    zeros = [0] * N_CLASSES
    set1 = _detect_set(151, 1, zeros)
    x = [_frames(rng, 1) for _ in range(LISTEN_RUN + 1)]
    return {
        # read, replace (and the resent replacement: the cache), read again; bad requests
        # (ERROR 7, nothing changes): another flag, refractory 65535, too short, one byte more;
        # IDENTIFY announces DETECT (capability bit 4)
        "detect": b"".join([
            enc(P.T_DETECT, 150), set1, set1, enc(P.T_DETECT, 152),
            _detect_set(153, 1, zeros, flags=0), _detect_set(154, 0xFFFF, zeros),
            enc(P.T_DETECT, 155, bytes([P.F_SET, 1, 0])),
            enc(P.T_DETECT, 156, bytes([P.F_SET, 1, 0]) + bytes(2 * N_CLASSES + 1)),
            _detect_set(157, 3, [32768] * N_CLASSES), enc(P.T_IDENTIFY, 158),
            enc(P.T_STATS, 159)]),
        # thresholds 0 (the best keyword fires on every window the refractory period allows)
        # and 1 window of refractory period: both windows of the shipped schedule (frames 49
        # and 74) fire, the pin goes on; LISTEN RESET forgets the history and the refractory
        # period; the settings stay
        "detect-listen": b"".join(
            [_detect_set(160, 1, zeros)]
            + [_listen(161 + i, x[i], P.F_RESET if i == 0 else 0) for i in range(LISTEN_RUN - 1)]
            + [_listen(240, x[LISTEN_RUN - 1], P.F_RESET), _listen(241, x[LISTEN_RUN]),
               enc(P.T_DETECT, 242)]),
    }


def main(argv: list[str]) -> int:
    check = argv[:1] == ["--check"]
    argv = argv[1:] if check else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    want = seeds()
    if check:
        have = {f.name: f.read_bytes() for f in folder.glob("seed-*.bin")}
        if have != want:
            stale = sorted(set(have) ^ set(want)
                           | {k for k in want if have.get(k, want[k]) != want[k]})
            print(f"{folder}: seed corpus out of date ({', '.join(stale)}): run "
                  f"make -C firmware/fuzz corpus", file=sys.stderr)
            return 1
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("seed-*.bin"):
        if f.name not in want:
            f.unlink()
    for name, data in want.items():
        (folder / name).write_bytes(data)
    print(f"{len(want)} seeds, {sum(map(len, want.values()))} bytes in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
