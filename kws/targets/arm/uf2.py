"""UF2 files (Microsoft's USB flashing format, github.com/microsoft/uf2): what a board in its
USB bootloader takes as a file copy (the Raspberry Pi Pico's BOOTSEL drive).

    write_uf2(bin_bytes, "fw.uf2", base=0x10000000, family=RP2040_FAMILY)
    read_uf2(Path("fw.uf2").read_bytes())   # -> [(address, payload, family), ...], checked

A file is a sequence of 512-byte blocks, each: 8 little-endian words (magic 0x0A324655,
magic 0x9E5D5157, flags, target address, payload size, block number, number of blocks,
family id when flag 0x2000 is set), 476 data bytes (the payload first, zeros after) and the
end magic 0x0AB16F30. Like uf2conv.py, every block carries 256 bytes (the last one padded).
"""

from __future__ import annotations

import os
import struct

from kws.atomic import atomic_open
from kws.errors import KwsError

MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY_ID = 0x00002000
BLOCK = 512
DATA = 476
PAYLOAD = 256
RP2040_FAMILY = 0xE48BFF56
RP2040_FLASH_BASE = 0x10000000


def uf2_bytes(image: bytes, base: int, family: int, payload: int = PAYLOAD) -> bytes:
    """The UF2 blocks of a flash image that starts at byte address `base`."""
    if not image:
        raise KwsError("UF2: empty image")
    if base % payload:
        raise KwsError(f"UF2: base 0x{base:08x} is not aligned to {payload} bytes")
    n = (len(image) + payload - 1) // payload
    out = bytearray()
    for i in range(n):
        chunk = image[i * payload:(i + 1) * payload].ljust(payload, b"\0")
        out += struct.pack("<8I", MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID,
                           base + i * payload, payload, i, n, family)
        out += chunk.ljust(DATA, b"\0")
        out += struct.pack("<I", MAGIC_END)
    return bytes(out)


def write_uf2(image: bytes, path: str | os.PathLike, base: int, family: int) -> None:
    with atomic_open(path, "wb") as f:
        f.write(uf2_bytes(image, base, family))


def read_uf2(data: bytes) -> list[tuple[int, bytes, int | None]]:
    """The blocks of a UF2 file as (target address, payload, family id or None), after checking
    every magic number, the block numbering and the payload sizes."""
    if not data or len(data) % BLOCK:
        raise KwsError(f"UF2: {len(data)} bytes is not a whole number of {BLOCK}-byte blocks")
    blocks, total = [], len(data) // BLOCK
    for i in range(total):
        b = data[i * BLOCK:(i + 1) * BLOCK]
        m0, m1, flags, addr, size, no, count, fam = struct.unpack_from("<8I", b)
        (end,) = struct.unpack_from("<I", b, BLOCK - 4)
        if (m0, m1, end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise KwsError(f"UF2: block {i}: bad magic numbers")
        if no != i or count != total:
            raise KwsError(f"UF2: block {i}: numbered {no} of {count}, expected {i} of {total}")
        if size > DATA:
            raise KwsError(f"UF2: block {i}: payload of {size} bytes (at most {DATA})")
        blocks.append((addr, b[32:32 + size], fam if flags & FLAG_FAMILY_ID else None))
    return blocks
