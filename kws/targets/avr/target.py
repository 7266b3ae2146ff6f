"""The AVR target (ATmega328P boards: Uno, Nano, Pro Mini): avr-gcc through
firmware/ports/avr/avr.mk, avr-nm, avrdude through the bootloader, simavr (kws-sim).

Board profiles are firmware/ports/avr/avr.mk's (BOARDS); the cycle counter is Timer1 at the
CPU clock, extended by its overflow count (firmware/ports/avr/template.ino).
"""

from __future__ import annotations

import os
import re

from kws.paths import FIRMWARE
from kws.targets.base import Firmware, Target
from kws.targets.elf import model_symbol_sizes as elf_symbol_sizes

_OVERFLOW = re.compile(r"region `?text'? overflowed by (\d+) bytes")


def model_symbol_sizes(elf: str | os.PathLike) -> dict[str, int]:
    """Sizes of the model's data symbols (kws_W1, kws_W1_mask, ..., kws_params) in an ELF,
    from `avr-nm --size-sort -S` (the names IntModel.firmware_arrays uses, prefixed kws_)."""
    return elf_symbol_sizes(elf, "avr-nm", "gcc-avr")


class AvrTarget(Target):
    name = "avr"
    profiles = ("uno", "nano", "nano-old", "pro-mini-16", "pro-mini-8")   # avr.mk BOARDS
    boot_wait = 3.0   # a real Uno resets when the port opens; optiboot waits ~1 s
    cycle_counter = "Timer1 at F_CPU with its overflows (template.ino), exact in kws-sim"
    sim_profile = "uno"
    sketch_template = FIRMWARE / "ports" / "avr" / "template.ino"

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
