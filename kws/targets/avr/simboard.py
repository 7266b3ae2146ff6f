"""A simulated Arduino board: the firmware runs on simavr, its UART0 appears as a pty.

    fw = ensure_built("firmware/ports/avr/examples/echo", board="uno")   # make, only what is stale
    with SimBoard(fw.elf, freq=fw.f_cpu) as board:
        port = serial.Serial(board.port, fw.baud, timeout=2)    # like a real board
        ...
        board.stamps()    # cycle stamps of the firmware's writes to GPIOR0/1/2, of output
                          # pin changes ("PB5": the Uno's LED) and of host bytes

The bridge (`build/sim/kws-sim`, from firmware/ports/avr/sim/kws_sim.c) is cycle accurate: the
difference between two GPIOR stamps is the exact number of AVR cycles between the two
writes. It runs about 7-9x faster than a real 16 MHz board. Unlike a real Uno, opening the
port does not reset the board, and nothing printed before the port is opened can be read
(pyserial's open() flushes input): sync with a command instead.

A board with a bootloader, flashed by the real avrdude (what kws.targets.avr.flash.flash_sim does):

    with SimBoard(None, boot=optiboot_hex(), wait_input=True) as board:   # held in reset
        subprocess.run(avrdude_command(app_hex, board.port, "uno"))       # optiboot writes it
        board.wait_app()          # optiboot's watchdog reset started the application
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kws.errors import KwsError
from kws.targets.base import Firmware, run_make  # noqa: F401  (Firmware: built here)

from kws.paths import BUILD, FIRMWARE, REPO  # noqa: F401  (REPO: tests' checkout root)
AVR_MK = FIRMWARE / "ports" / "avr" / "avr.mk"
SIM_BIN = BUILD / "sim" / "kws-sim"
BUILD_SIM_HINT = "run `make -f firmware/ports/avr/avr.mk sim`"
SIM_MAKEFILE = FIRMWARE / "ports" / "avr" / "sim" / "Makefile"

# Optiboot, the Uno's bootloader: Debian's arduino-core-avr ships its source and a hex
DEBIAN_OPTIBOOT_DIR = Path("/usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot")
DEBIAN_OPTIBOOT_HEX = DEBIAN_OPTIBOOT_DIR / "optiboot_atmega328.hex"
BUILT_OPTIBOOT_HEX = BUILD / "sim" / "optiboot_atmega328.hex"
UNO_BOOT_START = 0x7E00     # byte address: BOOTSZ = 256 words, as the Uno's fuses set it
UNO_FLASH_SIZE = 0x8000

_SIZE_RE = re.compile(r"size: flash (\d+) / (\d+) bytes .*ram (\d+) / (\d+) bytes")


@dataclass(frozen=True)
class Stamp:
    """One simulator event: reg is "GPIOR0".."GPIOR2" (value = the byte written), an output
    pin "PB0".."PD7" (value = its new level, stamped when a port write changes it) or "HOST"
    (value = number of bytes that arrived from the host); cycle is the AVR cycle count."""

    reg: str
    value: int
    cycle: int


def _make(args: list[str], what: str) -> str:
    return run_make(AVR_MK, [f"SIM_OUT={SIM_BIN.parent}", *args], what)


def board_info(board: str = "uno") -> tuple[int, int]:
    """(serial baud, F_CPU in Hz) of a board profile in firmware/ports/avr/avr.mk."""
    out = _make([f"BOARD={board}", "print-BAUD", "print-F_CPU_HZ"], f"board profile {board}")
    baud, f_cpu = out.split()
    return int(baud), int(f_cpu)


def ensure_built(
    sketch: str | os.PathLike,
    build: str | os.PathLike | None = None,
    board: str = "uno",
    *,
    sim: bool = True,
    jobs: int | None = None,
) -> Firmware:
    """Build a sketch folder (and the simulator bridge) with make; up-to-date outputs are
    left alone, so this costs ~20 ms when nothing changed."""
    sketch = Path(sketch).resolve()
    name = sketch.name
    if not (sketch / f"{name}.ino").is_file():
        raise KwsError(f"no sketch {sketch / (name + '.ino')}")
    build = Path(build).resolve() if build else BUILD / "fw" / f"{name}-{board}"
    jobs = jobs or os.cpu_count() or 1
    out = _make(
        [f"-j{jobs}", f"SKETCH={sketch}", f"BUILD={build}", f"BOARD={board}", "all"]
        + (["sim"] if sim else []),
        f"sketch {name} for {board}",
    )
    m = _SIZE_RE.search(out)
    if not m:
        raise KwsError(f"no size report from avr.mk for {name}: {out.strip()!r}")
    baud, f_cpu = board_info(board)
    return Firmware(
        elf=build / f"{name}.elf",
        hex=build / f"{name}.hex",
        sim=SIM_BIN if sim else None,
        board=board,
        baud=baud,
        f_cpu=f_cpu,
        flash=int(m[1]),
        flash_max=int(m[2]),
        ram=int(m[3]),
        ram_max=int(m[4]),
    )


# --- Intel hex and the bootloader ------------------------------------------------------------

def read_ihex(path: str | os.PathLike) -> list[tuple[int, bytes]]:
    """The data records of an Intel hex file as (byte address, data), in file order."""
    out, base = [], 0
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            if line[0] != ":":
                raise ValueError
            raw = bytes.fromhex(line[1:])
            if len(raw) < 5 or len(raw) != raw[0] + 5 or sum(raw) & 0xFF:
                raise ValueError
        except ValueError:
            raise KwsError(f"{path}:{n}: not an Intel hex record") from None
        kind, addr, data = raw[3], int.from_bytes(raw[1:3], "big"), raw[4:-1]
        if kind == 0:
            out.append((base + addr, data))
        elif kind == 1:
            break
        elif kind == 2:
            base = int.from_bytes(data, "big") << 4
        elif kind == 4:
            base = int.from_bytes(data, "big") << 16
    return out


def hex_image(path: str | os.PathLike, size: int = UNO_FLASH_SIZE) -> bytes:
    """A flash image of `size` bytes (erased bytes 0xFF) with the hex file's data in it;
    refuses data outside it or written twice."""
    image, used = bytearray(b"\xff" * size), bytearray(size)
    for addr, data in read_ihex(path):
        if addr + len(data) > size:
            raise KwsError(f"{path}: data at 0x{addr:04x}..0x{addr + len(data):04x} is "
                           f"outside the flash (0x{size:04x} bytes)")
        if any(used[addr:addr + len(data)]):
            raise KwsError(f"{path}: data at 0x{addr:04x}..0x{addr + len(data):04x} overlaps "
                           "other data in the same file")
        image[addr:addr + len(data)] = data
        used[addr:addr + len(data)] = b"\x01" * len(data)
    return bytes(image)


def bootloader_problem(path: str | os.PathLike, start: int = UNO_BOOT_START,
                       size: int = UNO_FLASH_SIZE) -> str | None:
    """Why a bootloader hex cannot work on an Uno (None: it fits its boot section)."""
    try:
        hex_image(path, size)
    except KwsError as e:
        return str(e)
    records = read_ihex(path)
    if not records:
        return f"{path} holds no data"
    low = min(a for a, _ in records)
    if low != start:
        return f"{path} starts at 0x{low:04x}, not at the boot section 0x{start:04x}"
    return None


def optiboot_hex() -> Path:
    """The Uno's bootloader (optiboot 4.4, 115200 baud) for `kws-sim --boot`: Debian's
    optiboot_atmega328.hex if it fits the 512-byte boot section, else the same source
    built by firmware/ports/avr/sim/Makefile (`make ... optiboot`). Debian's hex of arduino-core-avr
    1.8.7 (rebuilt with avr-gcc 5.4) has 532 bytes of code: it runs past the end of the
    flash and overlaps its own version word at 0x7FFE, so it cannot work on a chip or here."""
    if DEBIAN_OPTIBOOT_HEX.is_file() and bootloader_problem(DEBIAN_OPTIBOOT_HEX) is None:
        return DEBIAN_OPTIBOOT_HEX
    if not (DEBIAN_OPTIBOOT_DIR / "optiboot.c").is_file():
        raise KwsError(f"no optiboot in {DEBIAN_OPTIBOOT_DIR}: install arduino-core-avr "
                       "(make setup)")
    cmd = ["make", "--no-print-directory", "-s", "-f", str(SIM_MAKEFILE),
           f"SIM_OUT={BUILT_OPTIBOOT_HEX.parent}", "optiboot"]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise KwsError("cannot build optiboot: `make` is not installed") from e
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-10:])
        raise KwsError(f"building optiboot failed ({' '.join(cmd)}):\n{tail}")
    problem = bootloader_problem(BUILT_OPTIBOOT_HEX)
    if problem:
        raise KwsError(f"the optiboot built from {DEBIAN_OPTIBOOT_DIR} does not fit: {problem}")
    return BUILT_OPTIBOOT_HEX


def elf_size(elf: str | os.PathLike) -> dict[str, int]:
    """Flash and static RAM use of an AVR ELF, as the Arduino IDE counts them."""
    try:
        r = subprocess.run(["avr-size", "-A", str(elf)], capture_output=True, text=True)
    except FileNotFoundError as e:
        raise KwsError("avr-size is missing: install gcc-avr (make setup)") from e
    if r.returncode != 0:
        raise KwsError(f"avr-size {elf}: {r.stderr.strip()}")
    sec = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    flash = sum(sec.get(s, 0) for s in (".text", ".data", ".bootloader"))
    ram = sum(sec.get(s, 0) for s in (".data", ".bss", ".noinit"))
    return {"flash": flash, "ram": ram}


class SimBoard:
    """The simulator bridge as a subprocess; `.port` is its pty, for pyserial.

    `boot`: a bootloader hex (e.g. optiboot_hex()): the board starts in it as after a reset
    through its RESET pin, runs in real time, and `elf` (the application already in flash)
    may be None. `dump_flash`: a file that gets the whole flash (raw) when the simulator
    exits. See firmware/ports/avr/sim/kws_sim.c, --boot."""

    def __init__(
        self,
        elf: str | os.PathLike | None,
        *,
        sim: str | os.PathLike = SIM_BIN,
        mcu: str = "atmega328p",
        freq: int = 16_000_000,
        realtime: bool = False,
        wait_input: bool = False,
        start_timeout: float = 10.0,
        boot: str | os.PathLike | None = None,
        dump_flash: str | os.PathLike | None = None,
    ):
        if elf is None and boot is None:
            raise KwsError("SimBoard needs a firmware, a bootloader (boot=...) or both")
        self.elf = Path(elf) if elf is not None else None
        self.boot = Path(boot) if boot is not None else None
        self.dump_flash = Path(dump_flash) if dump_flash is not None else None
        self.sim = Path(sim)
        self.mcu = mcu
        self.freq = int(freq)
        self.realtime = realtime
        self.wait_input = wait_input
        self.start_timeout = start_timeout
        self.port: str | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self._log_text = ""
        self._stamps_text = ""

    # -- life cycle --

    def start(self) -> "SimBoard":
        if self.proc is not None:
            return self
        if not (self.sim.is_file() and os.access(self.sim, os.X_OK)):
            raise KwsError(f"simulator bridge {self.sim} is missing: {BUILD_SIM_HINT}")
        if self.elf is not None and not self.elf.is_file():
            raise KwsError(
                f"firmware {self.elf} not found: build it first "
                "(make -f firmware/ports/avr/avr.mk SKETCH=... BUILD=...)"
            )
        if self.boot is not None and not self.boot.is_file():
            raise KwsError(f"bootloader {self.boot} not found")
        self._tmp = tempfile.mkdtemp(prefix="kws-sim-")
        cmd = [str(self.sim), "--mcu", self.mcu, "--freq", str(self.freq),
               "--stamps", self._path("stamps.txt")]
        if self.realtime:
            cmd.append("--realtime")
        if self.wait_input:
            cmd.append("--wait-input")
        if self.boot is not None:
            cmd += ["--boot", str(self.boot)]
        if self.dump_flash is not None:
            cmd += ["--dump-flash", str(self.dump_flash)]
        if self.elf is not None:
            cmd.append(str(self.elf))
        with open(self._path("sim.log"), "wb") as log:
            # stdin is a pipe we never write: the bridge exits when it closes (if we die).
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        try:
            self.port = self._read_port()
        except BaseException:
            self.close()
            raise
        return self

    def _read_port(self) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(self.start_timeout)
        sel.close()
        line = self.proc.stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line:
            if ready:
                # EOF on stdout: the bridge is exiting (an error before the pty line); let
                # it finish so that its exit code and message are reported, not a timeout
                try:
                    self.proc.wait(self.start_timeout)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                raise KwsError(f"simulator gave no pty within {self.start_timeout} s")
            self.proc.wait()
            raise KwsError(
                f"simulator failed to start (exit {self.proc.returncode}): {self._log_tail()}"
            )
        return line

    def close(self, timeout: float = 5.0) -> int | None:
        """Stop the simulator (SIGTERM, then SIGKILL after `timeout`); returns its exit code."""
        p = self.proc
        if p is not None and p.returncode is None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if p is not None:
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()
        if self._tmp:
            self._log_text = self._read("sim.log")
            self._stamps_text = self._read("stamps.txt")
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return p.returncode if p else None

    def __enter__(self) -> "SimBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- state --

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def check(self) -> None:
        """Raise KwsError if the simulator is not running (crashed, stopped, killed)."""
        if self.proc is None:
            raise KwsError("simulator not started")
        rc = self.proc.poll()
        if rc is not None:
            what = {2: "the firmware crashed", 3: "the firmware stopped"}.get(rc, f"exit {rc}")
            raise KwsError(f"simulator died ({what}): {self._log_tail()}")

    def stamps(self, reg: str | None = None) -> list[Stamp]:
        """Events recorded so far (complete lines only), optionally only those of `reg`."""
        text = self._read("stamps.txt") if self._tmp else self._stamps_text
        out = []
        for line in text.splitlines(keepends=True):
            parts = line.split()
            if not line.endswith("\n") or len(parts) != 3:
                continue
            if reg is None or parts[0] == reg:
                out.append(Stamp(parts[0], int(parts[1]), int(parts[2])))
        return out

    def log(self) -> str:
        """The simulator's stderr: simavr's messages and, after close, a summary line."""
        return self._read("sim.log") if self._tmp else self._log_text

    def log_tail(self, n: int = 6) -> str:
        """The last `n` non-empty lines of log(), joined with " | "."""
        return self._log_tail(n)

    def app_starts(self) -> int:
        """With a bootloader: how many times the CPU has left it for the application."""
        return self.log().count("kws-sim: application started")

    def resets(self) -> int:
        """With a bootloader: resets after the start (e.g. optiboot's watchdog reset)."""
        return self.log().count("kws-sim: reset (")

    def wait_app(self, timeout: float = 5.0, count: int = 1) -> None:
        """With a bootloader: wait until the bootloader has started the application `count`
        times in all (after avrdude, optiboot leaves through a watchdog reset, ~16 ms)."""
        deadline = time.monotonic() + timeout
        while self.app_starts() < count:
            self.check()
            if time.monotonic() >= deadline:
                raise KwsError(f"the bootloader did not start the application within "
                               f"{timeout} s: {self._log_tail()}")
            time.sleep(0.01)

    # -- helpers --

    def _path(self, name: str) -> str:
        return os.path.join(self._tmp, name)

    def _read(self, name: str) -> str:
        try:
            with open(self._path(name), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _log_tail(self, n: int = 6) -> str:
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log())  # simavr colours its errors
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(no output)"
