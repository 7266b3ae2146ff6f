"""The fuzzer's seed corpus: what a host sends a board, from kws.protocol's own encoder, so
the firmware's decoder and the host's encoder are fuzzed from the same bytes.

    .venv/bin/python firmware/fuzz/seeds.py firmware/fuzz/corpus          # (re)write seed-*.bin
    .venv/bin/python firmware/fuzz/seeds.py --check firmware/fuzz/corpus  # exit 1 if stale

Each file is one session from boot (libFuzzer's unit): valid requests of every command (every
INFER flag, 1 to 4 frames), a host session with retries, resent requests (the cached reply),
bad requests (ERROR 6 and 7) and damaged frames (ERROR 1 to 5), garbage, empty frames. All
INFER frames have 32 int8 bins: every fuzz configuration's model has n_in = 32.
Other files in the folder (regress-*.bin: crash reproducers) are left alone.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kws import protocol as P  # noqa: E402

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
            enc(0x00, 1), enc(0x05, 2), enc(0x55, 3), enc(P.T_INFER | P.T_REPLY, 4),
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
    return {f"seed-{name}.bin": data for name, data in out.items()}


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
