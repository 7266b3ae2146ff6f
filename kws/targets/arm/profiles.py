"""The Cortex-M board profiles, as data: the one source arm.mk gets its values from (the
target passes them on the make command line) and the CLI's --board / --profile choices.

`machine` names the port's machine support in firmware/ports/arm/ (board_<machine>.c, its
UART and counter, and ld/<machine>.ld); a profile without one has no firmware yet. `qemu`:
the QEMU machine that simulates it (`qemu-system-arm -M ...`).

Every profile is built by `kws build --board <name>`. The MPS2 machines and the micro:bit are
also simulated; the real boards (nano33ble: board_nrf52.c, uno-r4: board_ra4m1.c, pico:
board_rp2040.c + its boot2) are built and checked structurally (tests/test_arm_boards.py),
and `kws flash` runs their usual uploader (kws.targets.arm.upload), but no test here runs
them. `flash_base`: where the image starts (after the Arduino bootloader: 0x10000 on the
nRF52840, 0x4000 on the RA4M1; the Pico's boot2 at 0x10000000, its vector table at
0x10000100).

Figures of the real boards are their data sheets' and the Arduino cores' (flash: what a
sketch may use beside the bootloader; RAM: the chip's SRAM).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArmProfile:
    name: str        # what a user types: --board / --profile
    board: str       # the board, in words
    chip: str
    cpu: str         # -mcpu=
    f_cpu: int       # Hz
    flash: int       # bytes a firmware may use
    ram: int         # bytes of SRAM
    led: str         # the on-board LED
    uart: str        # the serial port the firmware speaks on
    machine: str | None = None   # firmware/ports/arm/board_<machine>.c
    qemu: str | None = None      # qemu-system-arm -M <qemu>
    baud: int = 115200
    flash_base: int = 0          # where the image goes in the address space
    uf2_family: int | None = None   # a .uf2 is written too (kws.targets.arm.uf2), this family
    arduino_core: str | None = None  # the Arduino IDE's boards package for the sketch folder
    drive: str | None = None     # flashed by copying the .hex (.uf2) onto this USB drive
    uploader: str | None = None  # the board's usual upload tool (kws.targets.arm.upload)
    # the model `kws build / verify` take when none is given, and the budget it is built with:
    # the 1 KB default everywhere, the 5.5 KB model where RAM and speed allow (README)
    model: str = "models/default"
    budget: int = 1024


PROFILES: dict[str, ArmProfile] = {p.name: p for p in (
    ArmProfile("mps2-an386", "Arm MPS2 FPGA board, AN386 image (QEMU)", "Cortex-M4 FPGA image",
               "cortex-m4", 25_000_000, 4 << 20, 4 << 20,
               "FPGAIO LED0 (0x40028000)", "UART0, CMSDK APB UART at 0x40004000",
               machine="mps2", qemu="mps2-an386"),
    ArmProfile("mps2-an385", "Arm MPS2 FPGA board, AN385 image (QEMU)", "Cortex-M3 FPGA image",
               "cortex-m3", 25_000_000, 4 << 20, 4 << 20,
               "FPGAIO LED0 (0x40028000)", "UART0, CMSDK APB UART at 0x40004000",
               machine="mps2", qemu="mps2-an385"),
    # The Pico's core has no QEMU machine with a CMSDK UART: its ARMv6-M code (no divide, no
    # Thumb-2) runs on the AN385 machine, which executes the same instructions; the counts
    # are then those of a Cortex-M0+ running this firmware.
    ArmProfile("mps2-m0plus", "Cortex-M0+ code on the MPS2 AN385 machine (QEMU)",
               "Cortex-M3 FPGA image running ARMv6-M code", "cortex-m0plus", 25_000_000,
               4 << 20, 4 << 20, "FPGAIO LED0 (0x40028000)",
               "UART0, CMSDK APB UART at 0x40004000", machine="mps2", qemu="mps2-an385"),
    # A real Cortex-M0 core in QEMU, and a board the same firmware runs on (copy the .hex to
    # its MICROBIT drive); 16 KB of RAM.
    ArmProfile("microbit", "BBC micro:bit v1", "nRF51822", "cortex-m0", 16_000_000,
               256 << 10, 16 << 10, "LED matrix (row 1 P0.13, column 1 P0.04)",
               "UART0: TX P0.24, RX P0.25 (USB through the interface chip)",
               machine="nrf51", qemu="microbit", drive="MICROBIT"),
    ArmProfile("nano33ble", "Arduino Nano 33 BLE (Sense)", "nRF52840", "cortex-m4",
               64_000_000, 983_040, 256 << 10, "D13 = P0.13",
               "Serial1: UART0, TX D1 = P1.03, RX D0 = P1.10 (Serial is USB CDC)",
               machine="nrf52", flash_base=0x10000, uploader="bossac",
               model="models/default_5k", budget=8192,
               arduino_core="Arduino Mbed OS Nano Boards (arduino:mbed_nano)"),
    ArmProfile("uno-r4", "Arduino Uno R4 Minima / WiFi", "Renesas RA4M1", "cortex-m4",
               48_000_000, 245_760, 32 << 10, "D13 = P111",
               "Serial1: SCI2, TX D1 = P302, RX D0 = P301 (Serial is USB)",
               machine="ra4m1", flash_base=0x4000, uploader="dfu-util",
               model="models/default_5k", budget=8192,
               arduino_core="Arduino UNO R4 Boards (arduino:renesas_uno)"),
    ArmProfile("pico", "Raspberry Pi Pico", "RP2040", "cortex-m0plus",
               125_000_000, (2 << 20) - 256, 264 << 10, "GP25",
               "UART0: TX GP0, RX GP1", machine="rp2040", flash_base=0x10000000,
               uf2_family=0xE48BFF56, drive="RPI-RP2", uploader="picotool",
               model="models/default_5k", budget=8192,
               arduino_core="Arduino Mbed OS RP2040 Boards (arduino:mbed_rp2040)"),
)}
