"""A simulated Arduino board: the firmware runs on simavr, its UART0 appears as a pty.

    fw = ensure_built("firmware/examples/echo", board="uno")   # make, only what is stale
    with SimBoard(fw.elf, freq=fw.f_cpu) as board:
        port = serial.Serial(board.port, fw.baud, timeout=2)    # like a real board
        ...
        board.stamps()    # cycle stamps of the firmware's writes to GPIOR0/1/2

The bridge (`build/sim/kws-sim`, from firmware/sim/kws_sim.c) is cycle accurate: the
difference between two GPIOR stamps is the exact number of AVR cycles between the two
writes. It runs about 7-9x faster than a real 16 MHz board. Unlike a real Uno, opening the
port does not reset the board, and nothing printed before the port is opened can be read
(pyserial's open() flushes input): sync with a command instead.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kws.errors import KwsError

REPO = Path(__file__).resolve().parent.parent
AVR_MK = REPO / "firmware" / "avr.mk"
SIM_BIN = REPO / "build" / "sim" / "kws-sim"
BUILD_SIM_HINT = "run `make -f firmware/avr.mk sim`"

_SIZE_RE = re.compile(r"size: flash (\d+) / (\d+) bytes .*ram (\d+) / (\d+) bytes")


@dataclass(frozen=True)
class Stamp:
    """One simulator event: reg is "GPIOR0".."GPIOR2" (value = the byte written) or "HOST"
    (value = number of bytes that arrived from the host); cycle is the AVR cycle count."""

    reg: str
    value: int
    cycle: int


@dataclass(frozen=True)
class Firmware:
    """A built sketch and what the board profile says about it."""

    elf: Path
    hex: Path
    sim: Path | None
    board: str
    baud: int
    f_cpu: int
    flash: int        # bytes used (.text + .data)
    flash_max: int    # bytes available to the sketch on this board
    ram: int          # static RAM (.data + .bss + .noinit)
    ram_max: int


def _make(args: list[str], what: str) -> str:
    cmd = ["make", "--no-print-directory", "-s", "-f", str(AVR_MK), *args]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise KwsError(f"cannot build {what}: `make` is not installed") from e
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise KwsError(f"building {what} failed ({' '.join(cmd)}):\n{tail}")
    return r.stdout


def board_info(board: str = "uno") -> tuple[int, int]:
    """(serial baud, F_CPU in Hz) of a board profile in firmware/avr.mk."""
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
    build = Path(build).resolve() if build else REPO / "build" / "fw" / f"{name}-{board}"
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
    """The simulator bridge as a subprocess; `.port` is its pty, for pyserial."""

    def __init__(
        self,
        elf: str | os.PathLike,
        *,
        sim: str | os.PathLike = SIM_BIN,
        mcu: str = "atmega328p",
        freq: int = 16_000_000,
        realtime: bool = False,
        wait_input: bool = False,
        start_timeout: float = 10.0,
    ):
        self.elf = Path(elf)
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
        if not self.elf.is_file():
            raise KwsError(
                f"firmware {self.elf} not found: build it first "
                "(make -f firmware/avr.mk SKETCH=... BUILD=...)"
            )
        self._tmp = tempfile.mkdtemp(prefix="kws-sim-")
        cmd = [str(self.sim), "--mcu", self.mcu, "--freq", str(self.freq),
               "--stamps", self._path("stamps.txt")]
        if self.realtime:
            cmd.append("--realtime")
        if self.wait_input:
            cmd.append("--wait-input")
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
