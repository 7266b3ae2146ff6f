"""`make flash`: upload a built sketch to a real board through its bootloader with avrdude.

    flash(hex_path, board="uno")                 # finds the Arduino by USB VID/PID
    flash(hex_path, board="nano-old", port="/dev/ttyUSB0")
    flash(hex_path, board="sim")                 # the simulated Uno, through optiboot

The programmer is always `arduino` (optiboot and the old ATmegaBOOT speak STK500v1); the baud
rate is the board profile's (firmware/ports/avr/avr.mk: uno/nano 115200, nano-old/pro-mini 57600).

The simulated board (`board="sim"`, flash_sim) goes through the same path as a real Uno: the
simulator (firmware/ports/avr/sim/kws_sim.c --boot) runs optiboot, the real avrdude writes the sketch
through the simulator's pty and reads it back to verify it, optiboot's watchdog reset starts
the sketch, and flash() then checks that it answers IDENTIFY. A pty has no DTR line, so
instead of avrdude's reset pulse the simulator is started in the bootloader just before
avrdude and held in reset until avrdude's first byte (kws-sim --wait-input).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
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
    from kws.targets.avr.simboard import board_info

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


SIM_BOARD = "uno"   # the simulated board is an Uno: optiboot at 115200 baud


def avrdude_counts(output: str) -> dict[str, int]:
    """Bytes avrdude reports as written and verified ({"written": n, "verified": n})."""
    out = {}
    for what in ("written", "verified"):
        m = re.findall(rf"(\d+) bytes of flash {what}", output)
        if m:
            out[what] = int(m[-1])
    return out


@dataclass
class SimFlash:
    """A simulated board flashed by avrdude. `sim` (kws.targets.avr.simboard.SimBoard) is still running
    the application: talk to it with kws.link.board.Board(sim.port, baud, owner=sim), or close()."""

    cmd: list[str]          # the avrdude command line
    output: str             # avrdude's messages (stderr)
    sim: object             # kws.targets.avr.simboard.SimBoard
    seconds: float          # avrdude's run time
    written: int | None     # bytes avrdude wrote ...
    verified: int | None    # ... and read back and compared

    def close(self) -> None:
        self.sim.close()

    def __enter__(self) -> "SimFlash":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_avrdude(avrdude: str) -> None:
    if shutil.which(avrdude) is None:
        raise KwsError("avrdude is not installed (make setup installs it)")


def flash_sim(hex_path: str | Path, *, avrdude: str = "avrdude", boot: str | Path | None = None,
              app_timeout: float = 5.0, avrdude_timeout: float = 120.0,
              dump_flash: str | Path | None = None) -> SimFlash:
    """Flash a simulated Uno the way flash() flashes a real one: start the simulator with the
    bootloader (default kws.targets.avr.simboard.optiboot_hex()) and an erased application flash, run
    avrdude_command() on its pty (with avrdude's read-back verification), then wait until
    the bootloader has started the application. Returns a SimFlash whose simulator is still
    running; the caller closes it. `dump_flash`: the simulator writes its flash there when
    it is closed."""
    from kws.targets.avr.simboard import SimBoard, optiboot_hex

    hex_path = Path(hex_path)
    if not hex_path.is_file():
        raise KwsError(f"{hex_path} not found: build the firmware first (kws build)")
    _check_avrdude(avrdude)
    boot = Path(boot) if boot is not None else optiboot_hex()
    # --wait-input: in reset until avrdude's first byte (where a real Uno gets the DTR pulse)
    sim = SimBoard(None, boot=boot, wait_input=True, dump_flash=dump_flash).start()
    try:
        cmd = avrdude_command(hex_path, sim.port, SIM_BOARD, avrdude)
        t0 = time.monotonic()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=avrdude_timeout)
        except subprocess.TimeoutExpired:
            raise KwsError(f"avrdude did not finish within {avrdude_timeout} s on the simulated "
                           f"board: {sim.log_tail()}") from None
        seconds = time.monotonic() - t0
        if r.returncode != 0:
            tail = "\n".join(r.stderr.strip().splitlines()[-8:])
            raise KwsError(f"avrdude failed on the simulated board ({sim.port}):\n{tail}\n"
                           f"simulator: {sim.log_tail()}")
        sim.wait_app(app_timeout)
        counts = avrdude_counts(r.stderr)
        return SimFlash(cmd, r.stderr, sim, seconds, counts.get("written"),
                        counts.get("verified"))
    except BaseException:
        sim.close()
        raise


def flash(hex_path: str | Path, board: str = "uno", port: str | None = None,
          avrdude: str = "avrdude", dry_run: bool = False) -> list[str]:
    """Upload with avrdude; returns the command. `dry_run`: only build the command.
    `board="sim"`: flash a simulated Uno through optiboot (flash_sim) and check that the
    sketch answers IDENTIFY afterwards; the simulated board is gone when this returns."""
    hex_path = Path(hex_path)
    if not hex_path.is_file():
        raise KwsError(f"{hex_path} not found: build the firmware first (kws build)")
    if board == "sim":
        if port:
            raise KwsError("the simulated board has no port to choose: drop PORT=... "
                           "or BOARD=sim")
        if dry_run:
            return avrdude_command(hex_path, "<simulator pty>", SIM_BOARD, avrdude)
        from kws.link.board import Board
        from kws.targets.avr.simboard import board_info

        baud, _ = board_info(SIM_BOARD)
        done = flash_sim(hex_path, avrdude=avrdude)
        # the Board owns the simulator now: closing it stops the simulator
        with Board(done.sim.port, baud, timeout=1.0, owner=done.sim) as b:
            b.open()
        return done.cmd
    cmd = avrdude_command(hex_path, port or find_port(), board, avrdude)
    if dry_run:
        return cmd
    _check_avrdude(avrdude)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-6:])
        raise KwsError(f"avrdude failed (is the board on {cmd[8]} and is it a {board}?):\n{tail}")
    return cmd
