"""A simulated Cortex-M board: the firmware runs on qemu-system-arm, its UART0 appears as a pty
(QEMU's UART on a Unix socket, bridged to a pty by kws.targets.arm.ptybridge).

    with QemuBoard(fw.elf, "mps2-an386") as board:
        port = serial.Serial(board.port, fw.baud, timeout=2)    # like a real board

QEMU runs with `-icount shift=ICOUNT_SHIFT`: virtual time advances 2^shift ns per guest
instruction, so the firmware's timer reads count instructions exactly (firmware/ports/arm/
board_mps2.c). QEMU is not cycle accurate: the counts are instructions, not cycles.
Semihosting is on, so a firmware fault (startup.c) ends QEMU with an error the host sees.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kws.errors import KwsError
from kws.targets.arm.ptybridge import PtyBridge

QEMU = "qemu-system-arm"
ICOUNT_SHIFT = 10   # 1024 ns per instruction: 25.6 ticks of the 25 MHz timer (arm.mk too)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies, so no QEMU outlives a killed host."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def qemu_command(elf, machine: str, uart_socket, icount_shift: int = ICOUNT_SHIFT) -> list[str]:
    """QEMU for a firmware: the machine's first UART on a Unix socket that QEMU listens on,
    the machine stopped until a client connects (wait=on)."""
    return [QEMU, "-M", machine, "-display", "none", "-monitor", "none",
            "-chardev", f"socket,id=uart0,path={uart_socket},server=on,wait=on",
            "-serial", "chardev:uart0", "-icount", f"shift={icount_shift}",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


class QemuBoard:
    """qemu-system-arm as a subprocess; `.port` is the pty of the machine's first UART."""

    def __init__(self, elf: str | os.PathLike, machine: str, *,
                 icount_shift: int = ICOUNT_SHIFT, start_timeout: float = 10.0):
        self.elf = Path(elf)
        self.machine = machine
        self.icount_shift = int(icount_shift)
        self.start_timeout = start_timeout
        self.port: str | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self._bridge: PtyBridge | None = None
        self._log_text = ""

    def start(self) -> "QemuBoard":
        if self.proc is not None:
            return self
        if shutil.which(QEMU) is None:
            raise KwsError(f"{QEMU} is missing: install qemu-system-arm (make setup)")
        if not self.elf.is_file():
            raise KwsError(f"firmware {self.elf} not found: build it first (kws build)")
        self._tmp = tempfile.mkdtemp(prefix="kws-qemu-")
        with open(self._log_path(), "wb") as log:
            self.proc = subprocess.Popen(
                qemu_command(self.elf, self.machine, self._path("uart.sock"),
                             self.icount_shift),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
        try:
            self._bridge = PtyBridge(self._connect()).start()
        except BaseException:
            self.close()
            raise
        self.port = self._bridge.port
        return self

    def _connect(self) -> socket.socket:
        """The UART socket, once QEMU listens on it (it prints nothing before it does)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self._path("uart.sock"))
                return sock
            except OSError:
                sock.close()
            if self.proc.poll() is not None:
                raise KwsError(f"{QEMU} failed to start (exit {self.proc.returncode}): "
                               f"{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise KwsError(f"{QEMU} did not open its UART socket within "
                               f"{self.start_timeout} s: {self.log_tail()}")
            time.sleep(0.01)

    def close(self, timeout: float = 5.0) -> int | None:
        """Stop QEMU (SIGTERM, then SIGKILL after `timeout`); returns its exit code."""
        p = self.proc
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._tmp:
            self._log_text = self.log()
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return p.returncode if p else None

    def __enter__(self) -> "QemuBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def check(self) -> None:
        """Raise KwsError if QEMU is not running (a firmware fault ends it with exit 1)."""
        if self.proc is None:
            raise KwsError("simulator not started")
        rc = self.proc.poll()
        if rc is not None:
            raise KwsError(f"{QEMU} exited ({rc}): {self.log_tail()}")

    def log(self) -> str:
        if not self._tmp:
            return self._log_text
        try:
            return Path(self._log_path()).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 6) -> str:
        lines = [ln for ln in self.log().splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(no output)"

    def _path(self, name: str) -> str:
        return os.path.join(self._tmp, name)

    def _log_path(self) -> str:
        return self._path("qemu.log")
