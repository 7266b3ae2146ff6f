"""A faulty serial line for tests: a proxy between the host and a (simulated) board that flips,
drops and inserts bytes at set rates, in both directions, from a seeded RNG.

    proxy = FaultProxy(sim.port, Faults.parse("0.01"), seed=1).start()   # sim.port: a pty
    board = Board(proxy.port, baud, owner=proxy)      # the host talks to proxy.port (a pty)
    ...
    proxy.counters()   # bytes passed and faults injected, per direction and in total
    proxy.close()

The proxy opens the board's port (`upstream`, a tty or pty path) and offers a new pty
(`.port`) to the host; a thread moves the bytes, damaging them on the way. Each byte that
passes, in each direction, independently: is dropped (probability `drop`), has one random
bit flipped (`flip`), or gets a random byte inserted before it (`insert`). A direction's
faults depend only on the seed and the position in its byte stream, not on how the bytes
happened to be chunked.

`cut_after=N`: after N bytes (both directions together) the link is cut: `cut="silent"`
drops everything from then on, as a broken wire would (the host sees silence);
`cut="close"` closes the host's side of the line, as an unplugged USB adapter would (the
host's reads and writes fail).
"""

from __future__ import annotations

import errno
import os
import random
import select
import threading
import tty
from dataclasses import dataclass

from kws.errors import KwsError

TO_BOARD, TO_HOST = "to_board", "to_host"


@dataclass(frozen=True)
class Faults:
    """Per-byte probabilities of each kind of fault."""

    flip: float = 0.0
    drop: float = 0.0
    insert: float = 0.0

    @property
    def rate(self) -> float:
        return self.flip + self.drop + self.insert

    @classmethod
    def parse(cls, spec) -> "Faults":
        """"0.05": 5 % of bytes damaged, a third each flipped, dropped and inserted;
        "flip=0.01,drop=0.002,insert=0.002": each rate on its own."""
        if isinstance(spec, Faults):
            return spec
        if isinstance(spec, (int, float)):
            r = float(spec)
            f = cls(r / 3, r / 3, r / 3)
        else:
            text = str(spec).strip()
            try:
                if "=" not in text:
                    r = float(text)
                    f = cls(r / 3, r / 3, r / 3)
                else:
                    kw = {}
                    for part in text.split(","):
                        k, v = part.split("=", 1)
                        k = k.strip()
                        if k not in ("flip", "drop", "insert"):
                            raise ValueError(k)
                        kw[k] = float(v)
                    f = cls(**kw)
            except ValueError:
                raise KwsError(f"--faults {spec!r}: expected a rate (0.05) or "
                               "flip=R,drop=R,insert=R") from None
        if min(f.flip, f.drop, f.insert) < 0 or f.rate >= 1:
            raise KwsError(f"--faults {spec!r}: rates must be >= 0 and sum to less than 1")
        return f


class Injector:
    """The faults of one direction: a seeded RNG drawn once per byte, and counters."""

    def __init__(self, faults: Faults, seed):
        self.faults = faults
        self.rng = random.Random(seed)
        self.bytes = self.flipped = self.dropped = self.inserted = 0

    def apply(self, data: bytes) -> bytes:
        f = self.faults
        if f.rate == 0:
            self.bytes += len(data)
            return bytes(data)
        p_drop, p_flip, p_any = f.drop, f.drop + f.flip, f.rate
        rnd = self.rng.random
        out = bytearray()
        for b in data:
            u = rnd()
            if u >= p_any:
                out.append(b)
            elif u < p_drop:
                self.dropped += 1
            elif u < p_flip:
                out.append(b ^ (1 << self.rng.randrange(8)))
                self.flipped += 1
            else:
                out.append(self.rng.randrange(256))
                out.append(b)
                self.inserted += 1
        self.bytes += len(data)
        return bytes(out)

    def counters(self) -> dict:
        return {"bytes": self.bytes, "flipped": self.flipped, "dropped": self.dropped,
                "inserted": self.inserted,
                "faults": self.flipped + self.dropped + self.inserted}


def _set_raw(fd: int) -> None:
    try:
        tty.setraw(fd)
    except Exception:  # noqa: BLE001 - not a tty (a pipe in a test): nothing to set
        pass


class FaultProxy:
    """See the module doc. `owner`: closed with the proxy (e.g. the SimBoard behind it) and
    asked (`check()`) why the board went quiet."""

    def __init__(self, upstream: str, faults: Faults | str | float = Faults(), *, seed=0,
                 cut_after: int | None = None, cut: str = "silent", owner=None):
        if cut not in ("silent", "close"):
            raise KwsError(f"cut mode {cut!r}: expected silent or close")
        self.upstream = str(upstream)
        self.faults = Faults.parse(faults)
        self.seed = seed
        self.cut_after, self.cut_mode = cut_after, cut
        self.owner = owner
        self.inject = {TO_BOARD: Injector(self.faults, f"{seed}:{TO_BOARD}"),
                       TO_HOST: Injector(self.faults, f"{seed}:{TO_HOST}")}
        self.port: str | None = None
        self.cut_at: int | None = None      # bytes passed when the link was cut
        self.error: str | None = None       # why the pump stopped, if it failed
        self._up = self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        if self._thread is not None:
            return self
        try:
            self._up = os.open(self.upstream, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            raise KwsError(f"fault proxy: cannot open {self.upstream}: {e}") from None
        _set_raw(self._up)
        self._master, self._slave = os.openpty()
        _set_raw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="kws-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._lock:
            for name in ("_up", "_master", "_slave", "_wake_r", "_wake_w"):
                fd = getattr(self, name)
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    setattr(self, name, None)
        if self.owner is not None:
            self.owner.close()
            self.owner = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def passed(self) -> int:
        """Bytes that reached the proxy so far, both directions (before faults)."""
        return self.inject[TO_BOARD].bytes + self.inject[TO_HOST].bytes

    def counters(self) -> dict:
        up, down = self.inject[TO_BOARD].counters(), self.inject[TO_HOST].counters()
        total = {k: up[k] + down[k] for k in up}
        return {"rate": self.faults.rate, "flip": self.faults.flip, "drop": self.faults.drop,
                "insert": self.faults.insert, "seed": self.seed, **total,
                TO_BOARD: up, TO_HOST: down, "cut_after": self.cut_after,
                "cut_at": self.cut_at}

    def check(self) -> None:
        """Raise KwsError if the line is down: cut by us, the pump failed, or the board
        behind it died."""
        if self.owner is not None and hasattr(self.owner, "check"):
            self.owner.check()
        if self.cut_at is not None:
            raise KwsError(f"the fault proxy cut the link after {self.cut_at} bytes "
                           f"({self.cut_mode})")
        if self.error:
            raise KwsError(f"fault proxy: {self.error}")

    # -- the pump -------------------------------------------------------------------------------

    def _cut(self) -> None:
        self.cut_at = self.passed
        if self.cut_mode == "close":
            with self._lock:
                for name in ("_master", "_slave"):
                    fd = getattr(self, name)
                    if fd is not None:
                        os.close(fd)
                        setattr(self, name, None)

    def _pump(self) -> None:
        pending = {TO_BOARD: bytearray(), TO_HOST: bytearray()}
        try:
            while not self._stop.is_set():
                master, up = self._master, self._up
                if master is None or up is None:
                    return
                rlist = [self._wake_r, up] + ([master] if self.cut_at is None or
                                              self.cut_mode == "silent" else [])
                wlist = ([up] if pending[TO_BOARD] else []) + \
                    ([master] if pending[TO_HOST] else [])
                r, w, _ = select.select(rlist, wlist, [], 0.5)
                if self._stop.is_set():
                    return
                for fd in r:
                    if fd == self._wake_r:
                        continue
                    direction = TO_BOARD if fd == master else TO_HOST
                    try:
                        data = os.read(fd, 4096)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        if e.errno == errno.EIO and fd == master:
                            continue        # no one has the host side open (yet)
                        raise
                    if not data:
                        continue
                    if self.cut_at is not None:
                        continue            # the wire is cut: everything is lost
                    if self.cut_after is not None:
                        left = self.cut_after - self.passed
                        if left <= len(data):
                            pending[direction] += self.inject[direction].apply(data[:left])
                            self._cut()
                            if self.cut_mode == "close":
                                return
                            continue
                    pending[direction] += self.inject[direction].apply(data)
                for fd in w:
                    direction = TO_BOARD if fd == up else TO_HOST
                    buf = pending[direction]
                    try:
                        n = os.write(fd, buf)
                    except BlockingIOError:
                        continue
                    del buf[:n]
        except OSError as e:
            if not self._stop.is_set():
                self.error = f"{e.strerror or e}"
