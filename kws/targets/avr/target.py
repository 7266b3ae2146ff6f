"""The AVR target (ATmega328P boards: Uno, Nano, Pro Mini): avr-gcc through
firmware/ports/avr/avr.mk, avr-nm, avrdude through the bootloader, simavr (kws-sim).

Board profiles are firmware/ports/avr/avr.mk's (BOARDS); the cycle counter is Timer1 at the
CPU clock, extended by its overflow count (firmware/ports/avr/template.ino).
"""

from __future__ import annotations

import os
import re
import subprocess

from kws.errors import KwsError
from kws.targets.base import Firmware, Target

_OVERFLOW = re.compile(r"region `?text'? overflowed by (\d+) bytes")


def model_symbol_sizes(elf: str | os.PathLike) -> dict[str, int]:
    """Sizes of the model's data symbols (kws_W1, kws_W1_mask, ..., kws_params) in an ELF,
    from `avr-nm --size-sort -S` (the names IntModel.firmware_arrays uses, prefixed kws_)."""
    from kws.quant.intmodel import BIASES, MATRICES

    try:
        r = subprocess.run(["avr-nm", "--size-sort", "-S", str(elf)], capture_output=True,
                           text=True)
    except FileNotFoundError as e:
        raise KwsError("avr-nm is missing: install gcc-avr (make setup)") from e
    if r.returncode != 0:
        raise KwsError(f"avr-nm {elf}: {r.stderr.strip()}")
    names = {f"kws_{m}" for m in MATRICES} | {f"kws_{m}_mask" for m in MATRICES} \
        | {f"kws_{b}" for b in BIASES} | {"kws_params"}
    sizes = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names and parts[2] in "rRdDtT":
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


class AvrTarget(Target):
    name = "avr"
    profiles = ("uno", "nano", "nano-old", "pro-mini-16", "pro-mini-8")   # avr.mk BOARDS
    boot_wait = 3.0   # a real Uno resets when the port opens; optiboot waits ~1 s
    cycle_counter = "Timer1 at F_CPU with its overflows (template.ino), exact in kws-sim"
    sim_profile = "uno"

    def profile_info(self, profile: str) -> tuple[int, int]:
        from kws.targets.avr.simboard import board_info

        return board_info(profile)

    def flash_max(self, profile: str) -> int:
        from kws.targets.avr.simboard import _make

        return int(_make([f"BOARD={profile}", "print-FLASH_MAX"],
                         f"board profile {profile}").split()[0])

    def compile(self, sketch, out, profile: str, *, sim: bool = False) -> Firmware:
        from kws.targets.avr import simboard

        return simboard.ensure_built(sketch, out, board=profile, sim=sim)

    def explain_build_error(self, message: str) -> str | None:
        m = _OVERFLOW.search(message)
        return m[1] if m else None

    def symbol_sizes(self, elf) -> dict[str, int]:
        return model_symbol_sizes(elf)

    def flash(self, hex_path, profile: str, port: str | None = None) -> list[str]:
        from kws.targets.avr.flash import flash

        return flash(hex_path, profile, port)

    def simulate(self, fw: Firmware):
        from kws.targets.avr.simboard import SimBoard

        return SimBoard(fw.elf, freq=fw.f_cpu).start()
