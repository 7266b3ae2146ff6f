"""The Arm Cortex-M target: arm-none-eabi-gcc through firmware/ports/arm/arm.mk, sizes from
the ELF (arm-none-eabi-size, -nm), QEMU for the simulated boards (kws.targets.arm.qemuboard).

Profiles: kws.targets.arm.profiles. The MPS2 machines (mps2-an386: Cortex-M4, mps2-an385:
Cortex-M3) and the micro:bit are built and simulated; the real boards (nano33ble: nRF52840,
uno-r4: RA4M1, pico: RP2040) are built (.elf, .bin, .hex; the Pico also a .uf2 holding its
boot2 and image from 0x10000000) and flashed with their usual uploader (kws.targets.arm.upload:
bossac, dfu-util, picotool or the RPI-RP2 drive); no simulator runs them. Their per-frame
count is CPU cycles: DWT CYCCNT on the M4 boards, SysTick (24 bits) on the Pico's M0+.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from kws.errors import KwsError
from kws.paths import FIRMWARE
from kws.targets.arm.profiles import PROFILES, ArmProfile
from kws.targets.arm.qemuboard import ICOUNT_SHIFT, QEMU, QemuBoard
from kws.targets.arm.uf2 import write_uf2
from kws.targets import base
from kws.targets.base import Firmware, Target
from kws.targets.elf import model_symbol_sizes

ARM_MK = FIRMWARE / "ports" / "arm" / "arm.mk"
_SIZE_RE = re.compile(r"size: flash (\d+) / (\d+) bytes .*ram (\d+) / (\d+) bytes")
_OVERFLOW = re.compile(r"flash over by (\d+) bytes")


def profile(name: str) -> ArmProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KwsError(f"unknown Arm board profile {name!r}; one of: "
                       f"{', '.join(PROFILES)}") from None


def make_args(p: ArmProfile, *, sim: bool = False, sketch=None) -> list[str]:
    """arm.mk's variables for a board profile (sim: the QEMU build, -icount and semihosting)."""
    if p.machine is None:
        ide = (f"; the sketch folder {sketch} uses only the Arduino API: open it in the "
               f"Arduino IDE with {p.arduino_core}, pick the {p.board} and upload"
               if sketch is not None and p.arduino_core else "")
        raise KwsError(
            f"building firmware for {p.name} ({p.board}, {p.chip}) with kws is not supported "
            "yet: the profile names no machine of the Cortex-M port (firmware/ports/arm/: "
            f"board_<machine>.c and ld/<machine>.ld; boards with one: "
            f"{', '.join(n for n, q in PROFILES.items() if q.machine)}){ide}")
    args = [f"BOARD={p.name}", f"CPU={p.cpu}", f"MACHINE={p.machine}", f"F_CPU={p.f_cpu}",
            f"BAUD={p.baud}", f"FLASH_MAX={p.flash}", f"RAM_MAX={p.ram}"]
    return args + ([f"ICOUNT_SHIFT={ICOUNT_SHIFT}", "SEMIHOSTING=1"] if sim else [])


def _no_simulator(p: ArmProfile) -> str:
    same = [n for n, q in PROFILES.items() if q.qemu and q.cpu == p.cpu]
    return (f"{p.name} has no simulator (simulated: "
            f"{', '.join(n for n, q in PROFILES.items() if q.qemu)}"
            + (f"; {same[0]} runs {p.cpu} code" if same else "") + ")")


def run_make(args: list[str], what: str) -> str:
    if shutil.which("arm-none-eabi-gcc") is None:
        raise KwsError(f"cannot build {what}: arm-none-eabi-gcc is missing: install "
                       "gcc-arm-none-eabi and libnewlib-arm-none-eabi (make setup)")
    # the Pico's boot2 CRC step: this interpreter and this package's boot2.py
    from kws.targets.arm import boot2

    return base.run_make(ARM_MK, [*args, f"PYTHON={sys.executable}",
                                  f"BOOT2_PY={Path(boot2.__file__).resolve()}"], what)


class ArmTarget(Target):
    name = "arm"
    profiles = tuple(PROFILES)
    boot_wait = 2.0
    cycle_counter = ("instructions per frame, exact, under QEMU -icount (QEMU is not cycle "
                     "accurate: cycles on a real core differ); on hardware: CPU cycles (DWT "
                     "CYCCNT on the Nano 33 BLE and Uno R4, SysTick on the Pico, exact below "
                     "2^24 cycles a frame; the micro:bit: TIMER0 at 16 MHz)")
    sim_profile = "mps2-an386"
    # the Arduino-API main for the real boards' IDE; arm.mk builds main.c instead (ARDUINO=1:
    # the .ino on the MPS2 board's minimal Arduino API)
    sketch_template = FIRMWARE / "ports" / "arm" / "arduino" / "template.ino"

    def profile_info(self, name: str) -> tuple[int, int]:
        p = profile(name)
        return p.baud, p.f_cpu

    def flash_max(self, name: str) -> int:
        return profile(name).flash

    def default_model(self, name: str) -> tuple[str, int]:
        p = profile(name)
        return p.model, p.budget

    def compile(self, sketch, out, name: str, *, sim: bool = False) -> Firmware:
        p = profile(name)
        sketch, out = Path(sketch).resolve(), Path(out).resolve()
        if sim and p.qemu is None:
            raise KwsError(_no_simulator(p))
        jobs = os.cpu_count() or 1
        text = run_make([f"-j{jobs}", f"SKETCH={sketch}", f"BUILD={out}",
                         *make_args(p, sim=sim, sketch=sketch), "all"],
                        f"sketch {sketch.name} for {p.name}")
        m = _SIZE_RE.search(text)
        if not m:
            raise KwsError(f"no size report from arm.mk for {sketch.name}: {text.strip()!r}")
        if p.uf2_family is not None:     # a board that is flashed by a file copy (the Pico)
            write_uf2((out / f"{sketch.name}.bin").read_bytes(), out / f"{sketch.name}.uf2",
                      p.flash_base, p.uf2_family)
        return Firmware(elf=out / f"{sketch.name}.elf", hex=out / f"{sketch.name}.hex",
                        sim=Path(shutil.which(QEMU) or QEMU) if sim else None, board=p.name,
                        baud=p.baud, f_cpu=p.f_cpu, flash=int(m[1]), flash_max=int(m[2]),
                        ram=int(m[3]), ram_max=int(m[4]),
                        counter="instructions" if sim else "cycles")

    def explain_build_error(self, message: str) -> str | None:
        m = _OVERFLOW.search(message)
        return m[1] if m else None

    def symbol_sizes(self, elf) -> dict[str, int]:
        return model_symbol_sizes(elf, "arm-none-eabi-nm", "gcc-arm-none-eabi")

    def flash(self, hex_path, name: str, port: str | None = None) -> list[str]:
        """A real board: its usual uploader (kws.targets.arm.upload: bossac, dfu-util,
        picotool, else the Pico's RPI-RP2 drive) or an error naming what to install and run; a
        board with a USB drive (micro:bit): the .hex copied onto it (`port`: the drive's
        folder, else the mounted one)."""
        p = profile(name) if name != "sim" else None
        if p is not None and p.uploader:
            from kws.targets.arm.upload import upload

            return upload(p, hex_path, port)
        if p is not None and p.drive:
            from kws.targets.arm.drive import copy_to_drive

            return copy_to_drive(hex_path, p.drive, port)
        raise KwsError(f"{'the simulated Arm boards' if p is None else p.name} cannot be "
                       "flashed: they run in QEMU; run the firmware with "
                       "`kws verify --board sim --profile mps2-an386`")

    def simulate(self, fw: Firmware):
        p = profile(fw.board)
        if p.qemu is None:
            raise KwsError(_no_simulator(p))
        return QemuBoard(fw.elf, p.qemu).start()
