"""`make flash`: upload a built sketch to a real board through its bootloader with avrdude.

    flash(hex_path, board="uno")                 # finds the Arduino by USB VID/PID
    flash(hex_path, board="nano-old", port="/dev/ttyUSB0")

The programmer is always `arduino` (optiboot and the old ATmegaBOOT speak STK500v1); the baud
rate is the board profile's (firmware/avr.mk: uno/nano 115200, nano-old/pro-mini 57600).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kws.errors import KwsError

AVRDUDE_CONF = "/etc/avrdude.conf"

# USB VID:PID of Arduino boards and of the USB-serial chips on clones and FTDI adapters
KNOWN_USB = {
    (0x2341, None): "Arduino",            # Arduino LLC/SA: Uno, Nano Every, Mega, ...
    (0x2A03, None): "Arduino (.org)",
    (0x1A86, 0x7523): "CH340 (Nano/Uno clone)",
    (0x1A86, 0x5523): "CH341",
    (0x0403, 0x6001): "FTDI FT232R (Nano, Pro Mini adapter)",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x10C4, 0xEA60): "CP210x",
}


def avrdude_command(hex_path: str | Path, port: str, board: str = "uno",
                    avrdude: str = "avrdude") -> list[str]:
    """The avrdude command line that flashes `hex_path` through the board's bootloader."""
    from kws.simboard import board_info

    baud, _ = board_info(board)
    return [avrdude, "-C", AVRDUDE_CONF, "-p", "atmega328p", "-c", "arduino", "-P", str(port),
            "-b", str(baud), "-D", "-U", f"flash:w:{hex_path}:i"]


def _describe(p) -> str:
    vid_pid = f" [{p.vid:04x}:{p.pid:04x}]" if p.vid is not None else ""
    return f"{p.device} ({p.description}){vid_pid}"


def arduino_ports(ports=None) -> list:
    """Serial ports whose USB VID/PID looks like an Arduino or a USB-serial adapter."""
    if ports is None:
        from serial.tools import list_ports
        ports = list_ports.comports()
    return [p for p in ports if p.vid is not None and
            ((p.vid, p.pid) in KNOWN_USB or (p.vid, None) in KNOWN_USB)]


def find_port(ports=None) -> str:
    """The one attached Arduino's port, or a KwsError that says how to choose."""
    if ports is None:
        from serial.tools import list_ports
        ports = list_ports.comports()
    found = arduino_ports(ports)
    if len(found) == 1:
        return found[0].device
    seen = ", ".join(_describe(p) for p in ports) or "none"
    if not found:
        raise KwsError("no Arduino found on USB (serial ports: " + seen + "); connect one, or "
                       "name the port: make flash PORT=/dev/ttyACM0, or use the simulated "
                       "board: BOARD=sim")
    raise KwsError("several boards found: " + ", ".join(_describe(p) for p in found)
                   + "; choose one with PORT=...")


def flash(hex_path: str | Path, board: str = "uno", port: str | None = None,
          avrdude: str = "avrdude", dry_run: bool = False) -> list[str]:
    """Upload with avrdude; returns the command. `dry_run`: only build the command."""
    hex_path = Path(hex_path)
    if not hex_path.is_file():
        raise KwsError(f"{hex_path} not found: build the firmware first (kws build)")
    cmd = avrdude_command(hex_path, port or find_port(), board, avrdude)
    if dry_run:
        return cmd
    if shutil.which(avrdude) is None:
        raise KwsError("avrdude is not installed (make setup installs it)")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-6:])
        raise KwsError(f"avrdude failed (is the board on {cmd[8]} and is it a {board}?):\n{tail}")
    return cmd
