"""A board running the kws firmware, over any pyserial URL, speaking firmware/PROTOCOL.md.

    with Board("/dev/ttyACM0", 115200).open(model) as board:   # refuses another model's board
        board.reset()
        r = board.infer(frame)              # InferReply: scores [1, classes], cycles, t
        board.stats()                       # Stats: cycles, stack, error counters

    with open_boards("sim", model, n=2, sim=sim) as boards:   # simulated boards running a
        ...                     # firmware built by the caller (kws.targets.build.simulation)
        ...

The URL may be a device (`/dev/ttyUSB0`), a pty path (the simulated board) or anything
`serial.serial_for_url` takes (`socket://host:port`). Stop and wait: one request in flight.
A reply that is lost, late or damaged is asked for again with the same sequence number; the
board answers a repeat from its cache without stepping the model twice. Every failure is a
KwsError that names the port.

What is accepted: a frame that decodes (COBS, CRC-16, length byte), has this request's seq and
its reply type, and (INFER) the frame count and step counter t the host expects. Anything
else is dropped: a reply with another seq (a late answer to an earlier request) is stale.

Retries and timeouts: a try waits a retransmission timeout learnt from the replies seen so
far (smoothed round trip + 4 deviations, as TCP does; before the first reply: 4x the bytes'
time on the wire at the baud + 20 ms), at most `timeout`. On a clean line it waits at least
CLEAN_RTO: silence there means a slow or busy board more likely than a lost frame. Once the
line has shown damage (a frame that does not decode, or an ERROR reply for a damaged request)
it counts as noisy for the next NOISY_REQUESTS requests, and the floor is MIN_RTO: a lost
delimiter then costs milliseconds, not a second. A damaged reply, or an ERROR reply to our
seq saying the board got our frame damaged, is answered with a resend at once. After a try
with no byte at all the next wait doubles, up to `timeout`, so a slow board is still heard.
The request fails after `retries` + 1 silent tries in a row of which the last waited the
full `timeout` (the port is silent: wrong port, board not running, cable cut), after
GARBLED_LIMIT tries in a row that brought bytes but not one valid frame (wrong baud), or
after `max_attempts` tries.

Damaged copies: the board answers every repeat of a request from its cache, byte for byte, so
on a noisy line the damaged replies to one request are copies of the same frame with different
damage. When the reply's length is known (INFER, STATS), the copies of about that length are
aligned and combined by majority vote (3 to 7 of them); the result must still decode and pass
every check above. At 5 % byte errors that needs ~4 copies where an undamaged one takes ~26.
"""

from __future__ import annotations

import os
import select
import time
from collections import Counter
from contextlib import AbstractContextManager
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from kws.link import protocol as P
from kws.errors import KwsError

BOOT_WAIT_DEVICE = 3.0  # default wait after opening a device (callers pass their target's)
CLEAN_RTO = 0.25        # the wait for a reply on a line that has shown no damage (s)
NOISY_REQUESTS = 100    # requests after the last damaged frame during which the line is noisy
MIN_RTO = 0.002         # the shortest wait for a reply on a noisy line (s)
FIRST_SLACK = 0.02      # added to the wire time before any round trip was measured (USB)
GARBLED_LIMIT = 40      # tries in a row with bytes but no valid frame: not our baud/protocol
MAX_ATTEMPTS = 20_000   # tries of one request, whatever happens (5 % byte errors: ~220)


class StateError(KwsError):
    """The board's step counter is not where the host expects it (a frame stepped twice or
    skipped): on a clean line a firmware bug; on a noisy one, a damaged request that passed
    the CRC. The state is lost: reset before going on."""


def _consensus(copies: list[bytes], length: int) -> bytes | None:
    """Majority vote over damaged copies of one COBS-encoded frame of `length` bytes: each is
    aligned to the copy closest to that length (difflib), which then takes, position by
    position, the byte (or the absence of one) that more than half of the copies have, and any
    insertion that more than half of them have; None where a position has no such majority
    (fewer wrong frames put to the CRC)."""
    base = min(copies, key=lambda c: abs(len(c) - length))
    n = len(copies)
    votes = [Counter({b: 1}) for b in base]
    inserts = [Counter() for _ in range(len(base) + 1)]
    for c in copies:
        if c is base:
            continue
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, base, c, autojunk=False).get_opcodes():
            if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
                for k in range(i2 - i1):
                    votes[i1 + k][c[j1 + k]] += 1
            elif tag == "delete":
                for k in range(i1, i2):
                    votes[k][None] += 1
            elif tag == "insert":
                inserts[i1][c[j1:j2]] += 1
    out = bytearray()
    for j in range(len(base) + 1):
        if inserts[j]:
            extra, count = inserts[j].most_common(1)[0]
            if 2 * count > n:
                out += extra
        if j < len(base):
            b, count = votes[j].most_common(1)[0]
            if 2 * count <= n:
                return None
            if b is not None:
                out.append(b)
    return bytes(out)


class Board(AbstractContextManager):
    """The host end of one board. `timeout`: the longest wait for one reply (s); `retries`:
    how many silent tries in a row are tolerated before the board is given up (module doc).
    A damaged reply does not count against `retries`: it is resent at once."""

    def __init__(self, url: str, baud: int = 115200, *, timeout: float = 1.0, retries: int = 4,
                 boot_wait: float | None = None, owner=None,
                 max_attempts: int = MAX_ATTEMPTS, device_boot_wait: float = BOOT_WAIT_DEVICE):
        self.url, self.baud = str(url), int(baud)
        self.timeout, self.retries = float(timeout), int(retries)
        self.max_attempts = int(max_attempts)
        is_device = self.url.startswith("/dev/tty") and not self.url.startswith("/dev/pts")
        self.boot_wait = device_boot_wait if boot_wait is None and is_device else (boot_wait or 0)
        self.owner = owner              # e.g. the SimBoard process, closed with us
        self.port = None
        self._fd: int | None = None     # the port's file descriptor, to wait with select()
        self.reader = P.FrameReader()
        self._pending: list = []        # decoded items not yet consumed
        self._last = None               # (type, seq, wire bytes) of the last request
        self.seq = int.from_bytes(os.urandom(1), "little")
        self.identity: P.Identity | None = None
        self.t = 0                      # frames stepped since the last reset, as we count them
        # link counters (host side)
        self.requests = self.resends = self.timeouts = self.damaged = self.link_errors = 0
        self.stale = self.silent = self.rx_bytes = 0
        self.max_tries = 0              # the most tries one request needed
        self.reconstructed = 0          # replies combined from damaged copies
        self._rtt: dict[int, list[float]] = {}   # request type -> [smoothed rtt, deviation]
        self._garbage = b""             # a sample of undecodable bytes, for the error message
        self._noisy_until = 0           # self.requests below which the line counts as noisy

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
                self._fd = self.port.fileno()
            except Exception:  # noqa: BLE001 - socket:// and friends: read with a timeout
                self._fd = None
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
            self._fd = None
        if self.owner is not None:
            self.owner.close()
            self.owner = None

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------

    def _silence_error(self, tries: int, seconds: float | None = None) -> KwsError:
        hint = ""
        if self.owner is not None:
            try:
                self.owner.check()
            except KwsError as e:
                hint = f": {e}"
        else:
            hint = (f": is it the right port, at {self.baud} baud, running the kws firmware "
                    "(kws build, kws flash)?")
        quiet = f" ({seconds:.1f} s of silence)" if seconds is not None else ""
        return KwsError(f"no valid reply from the board at {self.url} after {tries} "
                        f"tr{'y' if tries == 1 else 'ies'}{quiet}{hint}")

    def _garbled_error(self, tries: int) -> KwsError:
        sample = self._garbage[:12].hex(" ")
        return KwsError(
            f"the board at {self.url} answers, but with garbage: {tries} tries in a row "
            f"without one valid frame ({self.rx_bytes} bytes received, e.g. {sample}): is the "
            f"baud rate right (this end: {self.baud} baud) and does it run the kws firmware "
            "(kws build, kws flash)?")

    def _port_error(self, what: str, e: Exception) -> KwsError:
        if self.owner is not None:          # a simulated board: say why it went away
            try:
                self.owner.check()
            except KwsError as died:
                return KwsError(f"{self.url}: {what} failed ({e}): {died}")
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
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                if self._fd is not None and not self.port.in_waiting:
                    # wait exactly until the deadline (the port's own read timeout is coarser)
                    if not select.select([self._fd], [], [], left)[0]:
                        continue
                data = self.port.read(self.port.in_waiting or 1)
            except (serial.SerialException, OSError, ValueError) as e:
                raise self._port_error("read", e) from None
            if data:
                self.rx_bytes += len(data)
                self._pending.extend(self.reader.feed(data))

    def request(self, type_: int, payload: bytes = b"", *, retries: int | None = None,
                timeout: float | None = None, reply_len: int | None = None) -> P.Frame:
        """Send one request and return its reply frame (type_ | T_REPLY, same seq).
        `reply_len`: the reply's payload length, if known (damaged copies are then combined,
        module doc)."""
        if self.port is None:
            raise KwsError(f"{self.url}: board not open")
        retries = self.retries if retries is None else retries
        timeout = self.timeout if timeout is None else timeout
        self.seq = (self.seq + 1) & 0xFF
        self._last = (type_, self.seq, P.encode_frame(type_, self.seq, payload))
        self.requests += 1
        return self._exchange(*self._last, retries, timeout, reply_len)

    def repeat_last(self) -> P.Frame:
        """Send the last request again, byte for byte (same seq): the board must answer from
        its cache without acting twice. For tests of exactly that."""
        if self._last is None:
            raise KwsError(f"{self.url}: no request to repeat")
        return self._exchange(*self._last, self.retries, self.timeout)

    # -- timing -------------------------------------------------------------------------------

    def _wire_time(self, n_bytes: int) -> float:
        return n_bytes * 10 / self.baud             # 8N1: 10 bits a byte

    def rto(self, type_: int, n_bytes: int = P.MAX_ENCODED, cap: float | None = None) -> float:
        """The first wait for a reply to a request of `type_` (module doc)."""
        cap = self.timeout if cap is None else cap
        est = self._rtt.get(type_)
        if est is None:
            wait = 4 * self._wire_time(n_bytes + P.MAX_ENCODED) + FIRST_SLACK
        else:
            wait = est[0] + max(4 * est[1], MIN_RTO / 2)
        floor = CLEAN_RTO if self.requests >= self._noisy_until else MIN_RTO
        return min(cap, max(floor, wait))

    def _sample(self, type_: int, rtt: float, ambiguous: bool) -> None:
        """A round trip (RFC 6298's smoothing). `ambiguous`: the last try timed out, so the
        reply may answer an earlier one (Karn): used only while there is no estimate yet."""
        est = self._rtt.get(type_)
        if est is None:
            self._rtt[type_] = [rtt, rtt / 2]
        elif not ambiguous:
            est[1] = 0.75 * est[1] + 0.25 * abs(est[0] - rtt)
            est[0] = 0.875 * est[0] + 0.125 * rtt

    def _exchange(self, type_: int, seq: int, wire: bytes, retries: int,
                  timeout: float, reply_len: int | None = None) -> P.Frame:
        want = type_ | P.T_REPLY
        copies: list[bytes] = []        # damaged frames of the reply's encoded length (+-2)
        if reply_len is not None:
            frame_len = P.OVERHEAD + reply_len
            encoded_len = frame_len + 1 + frame_len // 254
        silent = garbled = 0            # tries in a row: with no byte / with no valid frame
        silent_since = None             # when the current run of silent tries began
        timed_out_since = None          # first send of the current run of timeouts
        for attempt in range(self.max_attempts):
            if attempt:
                self.resends += 1
            self.max_tries = max(self.max_tries, attempt + 1)
            wait = min(timeout, self.rto(type_, len(wire), timeout) * 2 ** silent)
            self._write(wire)
            sent = time.monotonic()
            deadline, rx0, valid, outcome = sent + wait, self.rx_bytes, False, None
            while outcome is None:
                item = self._read_item(deadline)
                if item is None:
                    outcome = "timeout"
                elif isinstance(item, P.ProtocolError):
                    self.damaged += 1           # a damaged frame, our reply most likely
                    self._noisy_until = self.requests + NOISY_REQUESTS
                    raw = getattr(item, "raw", b"")
                    if not self._garbage:
                        self._garbage = raw
                    if reply_len is not None and abs(len(raw) - encoded_len) <= 2:
                        copies.append(raw)
                        if len(copies) >= 3:
                            frame = self._combine(copies[-7:], encoded_len, seq, want)
                            if frame is not None:
                                return frame
                    if not self._pending:       # (unless more frames are already here)
                        outcome = "damaged"
                elif item.seq != seq:
                    valid = True
                    self.stale += 1             # a late reply to an earlier request
                elif item.type == P.T_ERROR:
                    valid = True
                    code, _ = P.parse_error(item.payload) if len(item.payload) == 2 else (0, 0)
                    if code not in P.LINK_ERRORS:
                        raise KwsError(
                            f"{self.url}: the board refused {P.TYPE_NAMES.get(type_)} "
                            f"({P.error_text(code)}): firmware and host disagree; rebuild the "
                            "firmware with this kws")
                    self.link_errors += 1       # the board got our frame damaged
                    self._noisy_until = self.requests + NOISY_REQUESTS
                    outcome = "nak"
                elif item.type != want:
                    valid = True
                    self.stale += 1
                else:
                    now = time.monotonic()
                    ambiguous = timed_out_since is not None
                    self._sample(type_, now - (timed_out_since if ambiguous else sent),
                                 ambiguous)
                    return item
            got_bytes = self.rx_bytes > rx0
            garbled = 0 if valid or not got_bytes else garbled + 1
            if garbled >= GARBLED_LIMIT:
                raise self._garbled_error(garbled)
            if outcome == "timeout":
                self.timeouts += 1
                timed_out_since = timed_out_since or sent
                if got_bytes:
                    silent, silent_since = 0, None
                    if not valid:                   # bytes that made no frame: damage
                        self._noisy_until = self.requests + NOISY_REQUESTS
                else:
                    self.silent += 1
                    silent_since = silent_since or sent
                    silent += 1
                    if silent > retries and wait >= timeout:
                        raise self._silence_error(silent, time.monotonic() - silent_since)
            else:
                silent, silent_since, timed_out_since = 0, None, None
        raise KwsError(f"{self.url}: no valid reply to {P.TYPE_NAMES.get(type_)} after "
                       f"{self.max_attempts} tries ({self.damaged} damaged replies, "
                       f"{self.link_errors} requests the board got damaged so far): the line "
                       "is too noisy")

    def _combine(self, copies: list[bytes], encoded_len: int, seq: int,
                 want: int) -> P.Frame | None:
        """The reply voted from damaged copies, if it decodes and is ours."""
        voted = _consensus(copies, encoded_len)
        if voted is None:
            return None
        try:
            frame = P.decode_frame(voted)
        except P.ProtocolError:
            return None
        if frame.seq != seq or frame.type != want:
            return None
        self.reconstructed += 1
        return frame

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
        reply_len = 4 + len(x) * (4 + 4 * ident.n_classes) + (2 * ident.hidden if hidden else 0)
        reply = self.request(P.T_INFER, P.infer_payload(x, flags), reply_len=reply_len)
        r = P.parse_infer(reply.payload, ident.n_classes, ident.hidden)
        want_t = (0 if reset else self.t) + len(x)
        if len(r.scores) != len(x) or r.t != (want_t & 0xFFFF):
            raise StateError(f"{self.url}: the board stepped to frame {r.t} with "
                             f"{len(r.scores)} score vectors, expected frame {want_t} with "
                             f"{len(x)}")
        self.t = want_t
        return r

    def listen(self, frame: np.ndarray, *, reset: bool = False) -> P.ListenReply:
        """One int8 frame [n_in] through the board's stream schedule (firmware/kernel/kws_stream.h);
        reset: start listening anew. The reply has the pooled scores when a window ended."""
        ident = self._ident()
        if not ident.caps & P.CAP_LISTEN:
            raise KwsError(f"{self.url}: this firmware has no LISTEN command (export it again)")
        x = np.asarray(frame).reshape(-1)
        if x.shape != (ident.n_in,):
            raise KwsError(f"{self.url}: LISTEN takes one frame of {ident.n_in} values")
        payload = bytes([P.F_RESET if reset else 0]) + x.astype(np.int8).tobytes()
        return P.parse_listen(self.request(P.T_LISTEN, payload).payload, ident.n_classes,
                              decides=bool(ident.caps & P.CAP_DETECT))

    @property
    def decides(self) -> bool:
        """The firmware runs the detector (LISTEN replies carry its decisions)."""
        return bool(self._ident().caps & P.CAP_DETECT)

    def detect(self, refractory: int | None = None, thresholds=None) -> P.DetectSettings:
        """The board's detector settings (DETECT); with `refractory` (windows) and `thresholds`
        (Q15 per class), replace them first (until the board boots again)."""
        ident = self._ident()
        if not ident.caps & P.CAP_DETECT:
            raise KwsError(f"{self.url}: this firmware does not decide on the board "
                           "(no DETECT command): export it again")
        payload = b"" if refractory is None else P.detect_payload(refractory, thresholds)
        reply = self.request(P.T_DETECT, payload,
                             reply_len=P.DETECT_FIXED + 2 * ident.n_classes)
        return P.parse_detect(reply.payload, ident.n_classes)

    def stats(self) -> P.Stats:
        return P.parse_stats(self.request(P.T_STATS, reply_len=28).payload)

    def link_counters(self) -> dict:
        """Host-side counts since open: requests; resends (= retries: tries after the first);
        timeouts (of which silent: not a byte came); damaged_replies (frames that failed COBS,
        CRC or length here); link_errors (ERROR replies: the board got our frame damaged);
        stale_replies (valid frames for another seq or type, dropped); max_tries (the most
        one request took); reconstructed (replies voted from damaged copies)."""
        return {"requests": self.requests, "resends": self.resends, "timeouts": self.timeouts,
                "silent_timeouts": self.silent, "damaged_replies": self.damaged,
                "link_errors": self.link_errors, "stale_replies": self.stale,
                "max_tries": self.max_tries, "reconstructed": self.reconstructed,
                "bytes_received": self.rx_bytes}

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

def open_sim_board(sim, model=None, *, timeout: float = 1.0, retries: int = 4,
                   faults=None, fault_seed=0, cut_after: int | None = None,
                   cut: str = "silent") -> Board:
    """Start one simulated board (`sim`: what kws.targets.build.simulation returns: .start()
    gives a running simulator with .port and .close(), .baud its line speed) and connect to it.
    `faults` (a rate, "flip=..,drop=..,insert=..", or kws.link.faultproxy.Faults) or `cut_after`:
    talk to it through a kws.link.faultproxy.FaultProxy (board.owner; .counters())."""
    handle = sim.start()
    owner, port = handle, handle.port
    if faults is not None or cut_after is not None:
        from kws.link.faultproxy import FaultProxy

        try:
            owner = FaultProxy(handle.port, faults or 0, seed=fault_seed, cut_after=cut_after,
                               cut=cut, owner=handle).start()
        except BaseException:
            handle.close()
            raise
        port = owner.port
    board = Board(port, sim.baud, timeout=timeout, retries=retries, owner=owner)
    return board.open(model)


def fault_counters(board: Board) -> dict | None:
    """What the fault proxy in front of `board` injected, or None without one."""
    counters = getattr(board.owner, "counters", None)
    return counters() if callable(counters) else None


class BoardSet(AbstractContextManager, list):
    """Boards closed together."""

    firmware = None

    def close(self) -> None:
        for b in self:
            b.close()

    def __exit__(self, *exc) -> None:
        self.close()


def open_boards(spec: str, model, n: int = 1, *, baud: int | None = None,
                timeout: float | None = None, retries: int = 4, sim=None,
                faults=None, fault_seed=0, cut_after: int | None = None, cut: str = "silent",
                device_boot_wait: float = BOOT_WAIT_DEVICE) -> BoardSet:
    """`spec` "sim": n simulated boards started from `sim` (kws.targets.build.simulation: the
    firmware is built by the caller, never here); otherwise one or more serial URLs separated
    by commas (`n` must not exceed them; `device_boot_wait`: the target's, see Board).
    `faults`, `cut_after`: simulated boards only, each behind its own fault proxy (seeded
    fault_seed, fault_seed + 1, ...; open_sim_board)."""
    if (faults is not None or cut_after is not None) and spec != "sim":
        raise KwsError("fault injection (--faults, --fault-cut) works on simulated boards "
                       "only: use --board sim")
    if spec == "sim" and sim is None:
        raise KwsError("simulated boards need a built firmware: pass sim= "
                       "(kws.targets.build.simulation)")
    boards = BoardSet()
    try:
        if spec == "sim":
            boards.firmware = sim.firmware
            for i in range(max(1, n)):
                boards.append(open_sim_board(
                    sim, model, timeout=timeout or 1.0, retries=retries, faults=faults,
                    fault_seed=(fault_seed + i if isinstance(fault_seed, int) else fault_seed),
                    cut_after=cut_after, cut=cut))
        else:
            urls = [u for u in spec.split(",") if u]
            if n > len(urls):
                raise KwsError(f"{n} boards asked for, {len(urls)} port(s) given: --boards N "
                               "runs N simulated boards; for real boards list the ports, "
                               "comma-separated")
            for url in urls:
                boards.append(Board(url, baud or 115200, timeout=timeout or 1.0,
                                    retries=retries,
                                    device_boot_wait=device_boot_wait).open(model))
    except BaseException:
        boards.close()
        raise
    return boards
