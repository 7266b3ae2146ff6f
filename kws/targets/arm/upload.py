"""`kws flash` for the real Cortex-M boards: each board's usual uploader, run the way the
Arduino core runs it (its platform.txt / boards.txt), or an error that says what to install and
the command to run.

    upload(PROFILES["nano33ble"], "build/fw/kws_sketch-nano33ble/kws_sketch.hex", "/dev/ttyACM0")

- nano33ble: a 1200-baud "touch" on its serial port starts the bootloader, then
  `bossac --port=<port> -U -i -e -w <name>.bin -R` (ArduinoCore-mbed platform.txt; bossac must
  be Arduino's fork of BOSSA, which knows the nRF52840). The .bin is the image from 0x10000.
- uno-r4: the Minima: the touch, then `dfu-util --device 0x2341:0x0069,:0x0369 -D <name>.bin
  -a0 -Q` (ArduinoCore-renesas platform.txt; boards.txt: vid 0x2341, pid 0x0069 running,
  0x0369 in the bootloader, interface 0; -Q is the option of the core's own dfu-util: with
  upstream or Debian's dfu-util 0.11, which lacks it, -R instead); the WiFi (USB pid 0x1002,
  through its ESP32-S3 bridge): the touch, then `bossac --port=<port> -U -e -w <name>.bin -R`.
- pico: `picotool load -x <name>.uf2` when picotool is installed, else the .uf2 copied onto
  the RPI-RP2 drive the Pico shows while BOOTSEL is held at plug-in (kws.targets.arm.drive).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from kws.errors import KwsError
from kws.targets.arm.profiles import ArmProfile

ARDUINO_VID = 0x2341
R4_MINIMA_PID, R4_MINIMA_DFU_PID, R4_WIFI_PID = 0x0069, 0x0369, 0x1002
BOSSA_HELP = ("Arduino's fork of BOSSA (github.com/arduino/BOSSA releases; `arduino-cli core "
              "install {core}` also puts it in ~/.arduino15/packages/arduino/tools/bossac/)")


def bossac_command(bin_path, port: str, *, nrf52: bool) -> list[str]:
    return ["bossac", f"--port={port}", "-U", *(["-i"] if nrf52 else []), "-e", "-w",
            str(bin_path), "-R"]


def dfu_util_command(bin_path, finish: str = "-Q") -> list[str]:
    return ["dfu-util", "--device", f"0x{ARDUINO_VID:04x}:0x{R4_MINIMA_PID:04x},"
            f":0x{R4_MINIMA_DFU_PID:04x}", "-D", str(bin_path), "-a0", finish]


def picotool_command(uf2_path) -> list[str]:
    return ["picotool", "load", "-x", str(uf2_path)]


def touch_1200(port: str) -> bool:
    """Open and close `port` at 1200 baud: an Arduino core's request to start the bootloader.
    False when the port cannot be opened (the board may already be in its bootloader)."""
    try:
        import serial

        with serial.serial_for_url(port, baudrate=1200) as s:
            s.dtr = False
    except Exception:
        return False
    return True


def _wait_for_port(port: str, gone: float = 2.0, back: float = 8.0) -> None:
    """After the touch the board re-enumerates: wait (at most `gone` s) for its port to go,
    then (at most `back` s) for it to come back."""
    for seconds, present in ((gone, False), (back, True)):
        end = time.monotonic() + seconds
        while time.monotonic() < end and os.path.exists(port) != present:
            time.sleep(0.1)


def _usb_pid(port: str) -> int | None:
    try:
        from serial.tools import list_ports

        return next((p.pid for p in list_ports.comports() if p.device == port), None)
    except Exception:
        return None


def _find_port(port: str | None, required: bool) -> str | None:
    """`port`, else the one Arduino on USB (by VID); None when there is none and it is not
    `required` (a board already in its bootloader)."""
    if port:
        return port
    from kws.targets.avr.flash import find_port

    try:
        return find_port()
    except KwsError as e:
        if required:
            raise KwsError(f"{e}; for an Arm board: kws flash --board B --hex F --port "
                           "/dev/ttyACM0") from None
        return None


def dfu_util_finish_flag() -> str:
    """-Q where the installed dfu-util has it (the Arduino core's dfu-util 0.11.0-arduino5,
    which its platform.txt uses), else -R (upstream and Debian dfu-util 0.11: reset after)."""
    try:
        r = subprocess.run(["dfu-util", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "-Q"
    return "-Q" if re.search(r"(^|\s)-Q\b", r.stdout + r.stderr) else "-R"


def _run(cmd: list[str], p: ArmProfile) -> list[str]:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-8:])
        raise KwsError(f"{cmd[0]} failed for the {p.board} ({' '.join(cmd)}):\n{tail}")
    return cmd


def _missing(tool: str, p: ArmProfile, cmd: list[str], how: str, before: str) -> KwsError:
    return KwsError(f"flashing the {p.board} needs {tool}, which is not installed: install "
                    f"{how}, then {before}run: {' '.join(cmd)}")


def upload(p: ArmProfile, hex_path, port: str | None = None) -> list[str]:
    """Flash the firmware built for real board `p` (its .hex given; the .bin / .uf2 beside it
    are what the uploaders take); returns the command run."""
    hex_path = Path(hex_path)
    image = hex_path.with_suffix(".uf2" if p.uploader == "picotool" else ".bin")
    if not image.is_file():
        raise KwsError(f"no firmware {image}: build it first (kws build --board {p.name})")
    core = (p.arduino_core or "").rsplit("(", 1)[-1].rstrip(")")
    if p.uploader == "picotool":
        cmd = picotool_command(image)
        if shutil.which("picotool"):
            return _run(cmd, p)
        from kws.targets.arm.drive import copy_to_drive, find_drive

        if port or find_drive(p.drive):
            return copy_to_drive(image, p.drive, port)
        raise KwsError(f"cannot flash the {p.board}: picotool is not installed and no "
                       f"{p.drive} drive is mounted. Either hold BOOTSEL while plugging the "
                       f"Pico in, then copy the .uf2 onto the {p.drive} drive it shows: "
                       f"cp {image} /media/$USER/{p.drive}/ (or `kws flash --port "
                       f"<drive folder>`); or install picotool (apt install picotool) and, "
                       f"with the Pico in BOOTSEL mode, run: {' '.join(cmd)}")
    if p.uploader == "bossac":   # the Nano 33 BLE
        dev = _find_port(port, required=shutil.which("bossac") is not None)
        cmd = bossac_command(image, dev or "/dev/ttyACM0", nrf52=True)
        if not shutil.which("bossac"):
            raise _missing("bossac", p, cmd, BOSSA_HELP.format(core=core),
                           "start the bootloader (double-tap reset, or open the port at 1200 "
                           "baud) and ")
        if touch_1200(dev):
            _wait_for_port(dev)
        return _run(cmd, p)
    if p.uploader == "dfu-util":   # the Uno R4: the Minima by DFU, the WiFi by bossac
        dev = _find_port(port, required=False)
        if dev is not None and _usb_pid(dev) == R4_WIFI_PID:
            cmd = bossac_command(image, dev, nrf52=False)
            if not shutil.which("bossac"):
                raise _missing("bossac", p, cmd, BOSSA_HELP.format(core=core),
                               "open the port at 1200 baud (starts the bootloader) and ")
            if touch_1200(dev):
                _wait_for_port(dev)
            return _run(cmd, p)
        if not shutil.which("dfu-util"):
            raise _missing("dfu-util", p, dfu_util_command(image, "-R"),
                           "dfu-util (apt install dfu-util; the Arduino core's own dfu-util "
                           "takes -Q where Debian's takes -R)",
                           "start the bootloader (double-tap reset: the LED fades in and "
                           "out) and ")
        cmd = dfu_util_command(image, dfu_util_finish_flag())
        if dev is not None and touch_1200(dev):
            time.sleep(1.5)    # the bootloader re-enumerates as the DFU device
        return _run(cmd, p)
    raise KwsError(f"{p.name} has no uploader")
