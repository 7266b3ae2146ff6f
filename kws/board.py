"""A board running the kws firmware, over any pyserial URL, speaking firmware/PROTOCOL.md.

    with Board("/dev/ttyACM0", 115200).open(model) as board:   # refuses another model's board
        board.reset()
        r = board.infer(frame)              # InferReply: scores [1, classes], cycles, t
        board.stats()                       # Stats: cycles, stack, error counters

    with open_boards("sim", model, n=2) as boards:   # simulated boards (firmware built first)
        ...

The URL may be a device (`/dev/ttyUSB0`), a pty path (the simulated board) or anything
`serial.serial_for_url` takes (`socket://host:port`). Stop and wait: one request in flight.
A reply that is lost, late or damaged is asked for again with the same sequence number; the
board answers a repeat from its cache without stepping the model twice. Every failure is a
KwsError that names the port.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from kws import protocol as P
from kws.errors import KwsError

REPO = Path(__file__).resolve().parent.parent
SIM_BAUD = 1_000_000  # the simulated board's link: exact at 16 MHz (U2X, UBRR 1)
BOOT_WAIT_DEVICE = 3.0  # a real Uno resets when the port opens; optiboot waits ~1 s


class Board(AbstractContextManager):
    """The host end of one board. `timeout`: seconds to wait for each reply; `retries`: how
    many times a request is sent again after silence or a damaged frame."""

    def __init__(self, url: str, baud: int = 115200, *, timeout: float = 1.0, retries: int = 4,
                 boot_wait: float | None = None, owner=None):
        self.url, self.baud = str(url), int(baud)
        self.timeout, self.retries = float(timeout), int(retries)
        is_device = self.url.startswith("/dev/tty") and not self.url.startswith("/dev/pts")
        self.boot_wait = BOOT_WAIT_DEVICE if boot_wait is None and is_device else (boot_wait or 0)
        self.owner = owner              # e.g. the SimBoard process, closed with us
        self.port = None
        self.reader = P.FrameReader()
        self._pending: list = []        # decoded items not yet consumed
        self._last = None               # (type, seq, wire bytes) of the last request
        self.seq = int.from_bytes(os.urandom(1), "little")
        self.identity: P.Identity | None = None
        self.t = 0                      # frames stepped since the last reset, as we count them
        # link counters (host side)
        self.requests = self.resends = self.timeouts = self.damaged = self.link_errors = 0
        self.stale = 0

    # -- connection ----------------------------------------------------------------------------

    def open(self, model=None) -> "Board":
        """Open the port and identify the board; with a model (ShippedModel), refuse a board
        that runs another one."""
        import serial

        if self.port is None:
            try:
                self.port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.05,
                                                  write_timeout=max(self.timeout, 1.0))
            except (serial.SerialException, OSError, ValueError) as e:
                self.close()
                raise KwsError(f"cannot open {self.url}: {e}") from None
        try:
            self.identity = self._handshake()
            if model is not None:
                check_identity(self.identity, model, self.url)
        except BaseException:
            self.close()
            raise
        return self

    def _handshake(self) -> P.Identity:
        """IDENTIFY until the board answers (a real board may still be in its bootloader)."""
        deadline = time.monotonic() + self.boot_wait
        while True:
            try:
                reply = self.request(P.T_IDENTIFY, retries=0 if self.boot_wait else None,
                                     timeout=0.3 if self.boot_wait else None)
                break
            except KwsError:
                if time.monotonic() >= deadline:
                    if self.boot_wait:
                        raise self._silence_error(self.retries + 1) from None
                    raise
        ident = P.parse_identify(reply.payload)
        if ident.protocol != P.PROTOCOL_VERSION:
            raise KwsError(f"{self.url}: firmware speaks protocol version {ident.protocol}, "
                           f"this kws speaks {P.PROTOCOL_VERSION}: rebuild and flash it")
        return ident

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001 - a vanished port cannot be closed twice
                pass
            self.port = None
        if self.owner is not None:
            self.owner.close()
            self.owner = None

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------

    def _silence_error(self, tries: int) -> KwsError:
        hint = ""
        if self.owner is not None:
            try:
                self.owner.check()
            except KwsError as e:
                return KwsError(f"{self.url}: {e}")
        else:
            hint = (f": is it the right port, at {self.baud} baud, running the kws firmware "
                    "(kws build, kws flash)?")
        return KwsError(f"no valid reply from the board at {self.url} after {tries} "
                        f"tr{'y' if tries == 1 else 'ies'}{hint}")

    def _port_error(self, what: str, e: Exception) -> KwsError:
        if self.owner is not None:          # a simulated board: say why it went away
            try:
                self.owner.check()
            except KwsError as died:
                return KwsError(f"{self.url}: {died}")
        return KwsError(f"{self.url}: {what} failed ({e}): was the board unplugged?")

    def _write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as e:
            raise self._port_error("write", e) from None

    def _read_item(self, deadline: float):
        """The next Frame or ProtocolError from the line, or None at the deadline."""
        import serial

        while True:
            if self._pending:
                return self._pending.pop(0)
            if time.monotonic() >= deadline:
                return None
            try:
                data = self.port.read(self.port.in_waiting or 1)
            except (serial.SerialException, OSError) as e:
                raise self._port_error("read", e) from None
            if data:
                self._pending.extend(self.reader.feed(data))

    def request(self, type_: int, payload: bytes = b"", *, retries: int | None = None,
                timeout: float | None = None) -> P.Frame:
        """Send one request and return its reply frame (type_ | T_REPLY, same seq)."""
        if self.port is None:
            raise KwsError(f"{self.url}: board not open")
        retries = self.retries if retries is None else retries
        timeout = self.timeout if timeout is None else timeout
        self.seq = (self.seq + 1) & 0xFF
        self._last = (type_, self.seq, P.encode_frame(type_, self.seq, payload))
        self.requests += 1
        return self._exchange(*self._last, retries, timeout)

    def repeat_last(self) -> P.Frame:
        """Send the last request again, byte for byte (same seq): the board must answer from
        its cache without acting twice. For tests of exactly that."""
        if self._last is None:
            raise KwsError(f"{self.url}: no request to repeat")
        return self._exchange(*self._last, self.retries, self.timeout)

    def _exchange(self, type_: int, seq: int, wire: bytes, retries: int,
                  timeout: float) -> P.Frame:
        for attempt in range(retries + 1):
            if attempt:
                self.resends += 1
            self._write(wire)
            deadline = time.monotonic() + timeout
            while True:
                item = self._read_item(deadline)
                if item is None:
                    self.timeouts += 1
                    break                               # silence: send again
                if isinstance(item, P.ProtocolError):
                    self.damaged += 1                   # a damaged reply, ours most likely
                    break
                if item.type == P.T_ERROR:
                    code, _ = P.parse_error(item.payload) if len(item.payload) == 2 else (0, 0)
                    if code in P.LINK_ERRORS or item.seq != seq:
                        self.link_errors += 1           # the board got a damaged frame
                        break
                    raise KwsError(f"{self.url}: the board refused {P.TYPE_NAMES.get(type_)} "
                                   f"({P.error_text(code)}): firmware and host disagree; "
                                   "rebuild the firmware with this kws")
                if item.seq != seq or item.type != (type_ | P.T_REPLY):
                    self.stale += 1                     # a late reply to an earlier request
                    continue
                return item
        raise self._silence_error(retries + 1)

    # -- commands ---------------------------------------------------------------------------------

    def identify(self) -> P.Identity:
        self.identity = P.parse_identify(self.request(P.T_IDENTIFY).payload)
        return self.identity

    def reset(self) -> None:
        self.request(P.T_RESET)
        self.t = 0

    def infer(self, frames: np.ndarray, *, reset: bool = False,
              hidden: bool = False) -> P.InferReply:
        """Step the model over int8 frames [k, n_in] (or one frame [n_in]); k at most the
        board's frames per request. Checks the board stepped exactly k frames."""
        ident = self._ident()
        x = np.asarray(frames)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != ident.n_in or not 1 <= len(x) <= ident.max_frames:
            raise KwsError(f"{self.url}: INFER takes 1..{ident.max_frames} frames of "
                           f"{ident.n_in} values, not {x.shape}")
        flags = (P.F_RESET if reset else 0) | (P.F_HIDDEN if hidden else 0)
        reply = self.request(P.T_INFER, P.infer_payload(x, flags))
        r = P.parse_infer(reply.payload, ident.n_classes, ident.hidden)
        want_t = (0 if reset else self.t) + len(x)
        if len(r.scores) != len(x) or r.t != (want_t & 0xFFFF):
            raise KwsError(f"{self.url}: the board stepped to frame {r.t} with {len(r.scores)} "
                           f"score vectors, expected frame {want_t} with {len(x)}")
        self.t = want_t
        return r

    def stats(self) -> P.Stats:
        return P.parse_stats(self.request(P.T_STATS).payload)

    def link_counters(self) -> dict:
        return {"requests": self.requests, "resends": self.resends, "timeouts": self.timeouts,
                "damaged_replies": self.damaged, "link_errors": self.link_errors,
                "stale_replies": self.stale}

    def _ident(self) -> P.Identity:
        if self.identity is None:
            self.identify()
        return self.identity


def check_identity(ident: P.Identity, model, url: str) -> None:
    """Refuse a board whose model is not `model` (a ShippedModel)."""
    if not ident.matches(model.hash):
        raise KwsError(
            f"the board at {url} runs another model: its hash starts {ident.hash_prefix}, "
            f"model {model.name!r} has hash {model.hash}; build and flash this model's "
            "firmware (kws build --model ..., kws flash)")
    im = model.int_model
    if (ident.n_in, ident.hidden, ident.n_classes) != (im.n_in, im.hidden, im.n_classes):
        raise KwsError(f"the board at {url} reports shape in {ident.n_in}, hidden "
                       f"{ident.hidden}, classes {ident.n_classes}; the model has {im.n_in}, "
                       f"{im.hidden}, {im.n_classes}")
    if ident.params_check != 0:
        raise KwsError(f"the board at {url} reports a parameter block that differs from its "
                       f"compiled constants (byte {ident.params_check - 1}): rebuild it")


# --- simulated boards ------------------------------------------------------------------------

def build_sim_firmware(model, *, baud: int = SIM_BAUD, out_dir=None, max_frames: int = 1):
    """The protocol firmware for `model`, built for the simulated Uno at `baud`."""
    from kws.export import build

    if out_dir is None:
        out_dir = REPO / "build" / "sim-fw" / f"{model.hash[:16]}-{baud}-{max_frames}"
    return build(model, "uno", out_dir, sim=True, baud=baud, max_frames=max_frames, budget=None)


def open_sim_board(fw, model=None, *, timeout: float = 2.0, retries: int = 4) -> Board:
    """Start a simulated board running `fw` (kws.simboard.Firmware) and connect to it."""
    from kws.simboard import SimBoard

    sim = SimBoard(fw.elf, freq=fw.f_cpu).start()
    board = Board(sim.port, fw.baud, timeout=timeout, retries=retries, owner=sim)
    return board.open(model)


class BoardSet(AbstractContextManager, list):
    """Boards closed together."""

    firmware = None

    def close(self) -> None:
        for b in self:
            b.close()

    def __exit__(self, *exc) -> None:
        self.close()


def open_boards(spec: str, model, n: int = 1, *, baud: int | None = None,
                timeout: float | None = None, retries: int = 4, fw=None,
                build_dir=None, max_frames: int = 1) -> BoardSet:
    """`spec` "sim": n simulated boards (the firmware is built first, or `fw` used);
    otherwise one or more serial URLs separated by commas (`n` must not exceed them)."""
    boards = BoardSet()
    try:
        if spec == "sim":
            if fw is None:
                fw = build_sim_firmware(model, baud=baud or SIM_BAUD, out_dir=build_dir,
                                        max_frames=max_frames)
            boards.firmware = fw
            for _ in range(max(1, n)):
                boards.append(open_sim_board(fw, model, timeout=timeout or 2.0, retries=retries))
        else:
            urls = [u for u in spec.split(",") if u]
            if n > len(urls):
                raise KwsError(f"{n} boards asked for, {len(urls)} port(s) given: --boards N "
                               "runs N simulated boards; for real boards list the ports, "
                               "comma-separated")
            for url in urls:
                boards.append(Board(url, baud or 115200, timeout=timeout or 1.0,
                                    retries=retries).open(model))
    except BaseException:
        boards.close()
        raise
    return boards
