"""A faulty serial line (kws.link.faultproxy) between the host and a simulated board: at 1 % and
5 % byte errors `kws verify` accepts no wrong score vector and says how many retries it took;
a reply lost after the board stepped is answered from its cache (the model steps once); a
link cut mid-clip or a vanished port stops the run with a one-line error and the results so
far; a silent port, a slow board, a garbling line (wrong baud) and stale replies, on a pty."""

import json
import os
import random
import select
import shutil
import struct
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from kws.link import protocol as P
from kws.checks.boards import open_boards
from kws.link.board import Board, _consensus, fault_counters
from kws.targets.build import sim_firmware as build_sim_firmware
from kws.errors import KwsError
from kws.link.faultproxy import TO_BOARD, TO_HOST, FaultProxy, Faults, Injector
from kws.checks.verify import format_summary, verify
from test_protocol import golden
from test_verify import make_model

SC_MINI = Path(__file__).parent / "fixtures" / "sc_mini"
needs_avr = pytest.mark.skipif(shutil.which("avr-gcc") is None, reason="avr-gcc not installed")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    model = make_model(tmp / "model")
    return model, build_sim_firmware(model, out_dir=tmp / "fw")


# --- the fault model --------------------------------------------------------------------------

def test_faults_parse():
    assert Faults.parse("0.03") == Faults(0.01, 0.01, 0.01)
    assert Faults.parse(0.03).rate == pytest.approx(0.03)
    assert Faults.parse("flip=0.02, drop=0.001") == Faults(0.02, 0.001, 0.0)
    for bad in ("lots", "flip=x", "bend=0.1", "-0.1", "1.5", "flip=0.6,drop=0.6"):
        with pytest.raises(KwsError, match="--faults"):
            Faults.parse(bad)


def test_injector_is_seeded_counts_its_faults_and_ignores_chunking():
    data = bytes(random.Random(0).randrange(256) for _ in range(200_000))
    a = Injector(Faults.parse(0.05), "s")
    whole = a.apply(data)
    b = Injector(Faults.parse(0.05), "s")
    cuts = sorted(random.Random(1).sample(range(1, len(data)), 300))
    parts = b"".join(b.apply(data[i:j]) for i, j in zip([0] + cuts, cuts + [len(data)]))
    assert parts == whole and a.counters() == b.counters()
    assert Injector(Faults.parse(0.05), "other").apply(data) != whole
    c = a.counters()
    assert c["bytes"] == len(data) and c["faults"] == c["flipped"] + c["dropped"] + c["inserted"]
    for kind in ("flipped", "dropped", "inserted"):          # ~3333 each
        assert 3000 < c[kind] < 3700
    assert len(whole) == len(data) - c["dropped"] + c["inserted"]
    assert Injector(Faults(), 0).apply(data) == data


def test_proxy_damages_both_directions_and_cuts(tmp_path):
    """Bytes through a proxy in front of a pty: both directions damaged at the set rate,
    the same faults for the same seed; after cut_after bytes nothing passes."""
    def run(seed, cut_after=None):
        master, slave = os.openpty()
        tty.setraw(slave)
        proxy = FaultProxy(os.ttyname(slave), 0.1, seed=seed, cut_after=cut_after).start()
        host = os.open(proxy.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(host)
        try:
            msg = bytes(range(256)) * 20
            os.write(host, msg)
            to_board = _read_for(master, 0.5)
            os.write(master, msg)
            to_host = _read_for(host, 0.5)
            return to_board, to_host, proxy.counters()
        finally:
            proxy.close()
            for fd in (host, master, slave):
                os.close(fd)

    up, down, c = run(7)
    assert up != down and 0 < len(up) and 0 < len(down)
    assert c[TO_BOARD]["bytes"] == c[TO_HOST]["bytes"] == 5120
    assert 350 < c[TO_BOARD]["faults"] < 680 and 350 < c[TO_HOST]["faults"] < 680
    assert (up, down) == run(7)[:2]                                    # seeded
    up, down, c = run(7, cut_after=5120 + 100)
    assert c["cut_at"] == 5220 and len(down) < 150 and c[TO_HOST]["bytes"] == 100


def _read_for(fd, seconds):
    out, end = bytearray(), time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            out += os.read(fd, 65536)
    return bytes(out)


def test_consensus_rebuilds_a_frame_from_damaged_copies():
    rng = np.random.default_rng(0)
    inj = Injector(Faults.parse(0.05), 3)
    done = 0
    for _ in range(200):
        payload = bytes(rng.integers(0, 256, 56, dtype=np.uint8))
        wire = P.encode_frame(0x83, 9, payload)
        good, copies = wire[1:-1], []
        while len(copies) < 7:
            copies += [c for c in inj.apply(wire).split(b"\0")
                       if c and c != good and abs(len(c) - len(good)) <= 2]
        voted = _consensus(copies, len(good))
        if voted == good:
            done += 1
        elif voted is not None:   # wrong: it must not decode either (it may, 1 in 65536)
            with pytest.raises(P.ProtocolError):
                P.decode_frame(voted)
    assert done >= 170
    assert _consensus([good, good[:20] + b"x" + good[21:], good[:30] + good[31:]],
                      len(good)) == good


# --- verify over a faulty line -----------------------------------------------------------------

@needs_avr
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_verify_accepts_no_wrong_result_on_a_noisy_line(sim, rate):
    model, fw = sim
    r = verify(model, SC_MINI, board="sim", split="all", max_clips=20, fw=fw, faults=rate,
               fault_seed=1)
    text = format_summary(r)
    print("\n" + text)
    assert r["complete"] and r["error"] is None and not r["interrupted"]
    assert r["clips"] == 20 and r["frames"] == 20 * 49
    assert r["mismatched_frames"] == 0 and r["first_mismatch"] is None   # none accepted wrong
    f = r["faults"]
    assert f["rate"] == pytest.approx(rate) and f["seed"] == 1
    assert f["to_board"]["faults"] > 0 and f["to_host"]["faults"] > 0
    assert f["faults"] > rate * f["bytes"] * 0.8
    link = r["link"]
    assert r["retries"] == link["resends"] > 0 and link["damaged_replies"] > 0
    assert link["link_errors"] > 0                      # the board saw damaged requests too
    assert r["confirm"]["enabled"] and r["confirm"]["runs"] >= 40
    assert r["device_errors"]["crc_errors"] + r["device_errors"]["bad_frames"] > 0
    assert r["device_errors"]["duplicates"] > 0         # resends answered from the cache
    assert f"retries {r['retries']}" in text and "faults injected (seed 1)" in text
    assert text.endswith("OK: every frame bit-exact")
    json.dumps(r)


@needs_avr
def test_confirm_reruns_a_clip_whose_runs_disagree_or_lose_the_step_count(sim, monkeypatch):
    """What a CRC-16 collision would do, made to happen: a wrong score vector accepted once
    (the second run disagrees, a third settles it) and a lost step count (the clip restarts).
    Without confirm the wrong vector is accepted, and the comparison with the reference
    shows it."""
    import dataclasses

    from kws.link.board import StateError

    model, fw = sim
    infer, calls = Board.infer, []

    def flaky(self, *a, **k):
        calls.append(1)
        r = infer(self, *a, **k)
        if len(calls) == 10:                            # clip 0, run 1, frame 9: wrong
            scores = r.scores.copy()
            scores[0, 2] += 1
            return dataclasses.replace(r, scores=scores)
        if len(calls) == 3 * 49 + 20:                   # clip 1, first run: step count lost
            raise StateError("the board stepped to frame 99 (made up)")
        return r

    monkeypatch.setattr(Board, "infer", flaky)
    r = verify(model, SC_MINI, board="sim", split="all", max_clips=3, fw=fw, confirm=True)
    cf = r["confirm"]
    assert r["complete"] and r["mismatched_frames"] == 0
    assert (cf["disagreements"], cf["restarts"], cf["runs"]) == (1, 1, 3 + 2 + 2)
    assert [(e["what"], e["clip_index"], e["frame"]) for e in cf["events"]] == \
        [("disagreement", 0, 9), ("restart", 1, 19)]
    calls.clear()
    r = verify(model, SC_MINI, board="sim", split="all", max_clips=3, fw=fw)
    assert not r["confirm"]["enabled"] and r["complete"] and r["confirm"]["runs"] == 3
    assert r["mismatched_frames"] == 1 and r["first_mismatch"]["frame"] == 9


@needs_avr
def test_the_model_steps_once_per_frame_under_faults(sim):
    """Resends are answered from the board's cache: after a noisy run the board has stepped
    exactly the frames asked for, whatever was lost."""
    model, fw = sim
    x = golden.inputs(3, 32, n_seq=1, n_frames=60)[0]
    want = model.int_model.run(x[None])[0]
    with open_boards("sim", model, fw=fw, faults=0.05, fault_seed=3) as (board,):
        board.reset()
        for t in range(60):
            np.testing.assert_array_equal(board.infer(x[t]).scores[0], want[t])
        s = board.stats()
        assert (s.inferences, s.t) == (60, 60)
        assert s.duplicates > 0 and s.crc_errors + s.bad_frames > 0
        assert board.link_counters()["resends"] > 60
        assert fault_counters(board)["faults"] > 0


class _DropWindow(Injector):
    """Passes bytes untouched, except the next `drop` bytes, which it drops."""

    def __init__(self):
        super().__init__(Faults(), 0)
        self.drop = 0

    def apply(self, data: bytes) -> bytes:
        n = min(self.drop, len(data))
        self.drop -= n
        self.dropped += n
        self.bytes += len(data)
        return bytes(data[n:])


@needs_avr
def test_a_reply_lost_after_the_board_stepped_is_answered_from_the_cache(sim):
    model, fw = sim
    x = golden.inputs(3, 32, n_seq=1, n_frames=40)[0, :3]
    want = model.int_model.run(x[None])[0]
    with open_boards("sim", model, fw=fw, faults=0) as (board,):
        proxy = board.owner
        proxy.inject[TO_HOST] = lost = _DropWindow()
        board.reset()
        before = board.link_counters()
        lost.drop = 64                                  # the whole INFER reply, 64 bytes
        r = board.infer(x[0])
        np.testing.assert_array_equal(r.scores[0], want[0])
        assert r.t == 1 and lost.dropped == 64
        after = board.link_counters()
        assert after["resends"] - before["resends"] == 1
        assert after["timeouts"] - before["timeouts"] == 1
        for t in (1, 2):                                # the state advanced once per frame
            np.testing.assert_array_equal(board.infer(x[t]).scores[0], want[t])
        s = board.stats()
        assert (s.inferences, s.duplicates, s.t) == (3, 1, 3)


# --- the line goes away --------------------------------------------------------------------

@needs_avr
def test_link_cut_mid_clip_stops_with_a_clear_error_and_the_results_so_far(sim):
    model, fw = sim
    # 1 clip of 49 frames is ~ 49 x (41 + 64) + 2 x 16 bytes: cut in the middle of the 4th
    r = verify(model, SC_MINI, board="sim", split="all", max_clips=8, fw=fw,
               cut_after=int(3.5 * 49 * 105))
    assert not r["complete"] and r["interrupted"]
    at = r["stopped_at"]
    assert at["clip_index"] == 3 and 10 < at["frame"] < 40 and at["clip"].endswith(".wav")
    assert r["error"].startswith(f"at clip {at['clip']} (index 3 of 8 clips), frame "
                                 f"{at['frame']} of 49: ")
    assert "no valid reply" in r["error"] and "cut the link" in r["error"]
    assert "\n" not in r["error"]
    assert r["clips"] == 3 and r["frames"] == 3 * 49 and r["mismatched_frames"] == 0
    assert r["faults"]["cut_at"] == int(3.5 * 49 * 105)
    text = format_summary(r)
    assert "STOPPED: at clip" in text and "kept: the 3 clips" in text
    assert text.endswith("FAILED")


@needs_avr
def test_cli_link_cut_exits_nonzero_and_writes_the_json_so_far(sim, tmp_path, monkeypatch,
                                                               capsys):
    import kws.targets.build
    from kws.cli import main

    model, fw = sim
    monkeypatch.setattr(kws.targets.build, "sim_firmware", lambda *a, **k: fw)
    out = tmp_path / "out"
    out.mkdir()
    # 1 % byte errors, each clip run twice: ~24,000 bytes a clip; cut in the 4th
    rc = main(["verify", "--model", str(model.folder), "--data", str(SC_MINI), "--split", "all",
               "--max-clips", "6", "--faults", "0.01", "--fault-seed", "2",
               "--fault-cut", "80000", "--cache-dir", str(tmp_path / "c"),
               "--json", str(out / "v.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("kws: error: verify stopped after ")
    assert ", frame " in err and "cut the link" in err and str(out / "v.json") in err
    r = json.loads((out / "v.json").read_text())
    assert r["interrupted"] and not r["complete"] and 1 <= r["clips"] < 6
    assert r["frames"] == 49 * r["clips"] and r["mismatched_frames"] == 0
    assert r["stopped_at"]["clip_index"] is not None and r["retries"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["v.json"]      # no temp file left


@needs_avr
def test_port_that_vanishes_mid_run(sim):
    model, fw = sim
    r = verify(model, SC_MINI, board="sim", split="all", max_clips=4, fw=fw,
               cut_after=int(1.5 * 49 * 105), cut="close")
    assert not r["complete"] and r["clips"] == 1 and r["stopped_at"]["clip_index"] == 1
    assert ("read failed" in r["error"] or "write failed" in r["error"])
    assert "cut the link" in r["error"] and "\n" not in r["error"]


def test_faults_need_a_simulated_board():
    with pytest.raises(KwsError, match="simulated boards only"):
        open_boards("/dev/ttyACM0", None, faults=0.01)


# --- a pty pretending to be a board ----------------------------------------------------------

_IDENT = struct.Struct("<BBBB16sBBBBIIHBBBB")
IDENT_PAYLOAD = _IDENT.pack(1, 1, 0, 0, bytes(16), 32, 24, 12, 1, 16_000_000, 115200, 983,
                            16, 5, 0, 0)


class FakeBoard:
    """A thread on a pty answering IDENTIFY after `delay` s; `garbage`: answer every frame
    with random bytes instead; `stale`: send a valid reply with the previous seq first;
    `mute`: read, never answer."""

    def __init__(self, delay=0.0, garbage=False, stale=False, mute=False):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.delay, self.garbage, self.stale, self.mute = delay, garbage, stale, mute
        self.frames = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        reader, rng = P.FrameReader(), random.Random(0)
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for item in reader.feed(data):
                if self.mute:
                    continue
                if self.garbage:    # what a wrong baud makes of a reply: zeros come often
                    os.write(self.master, bytes(rng.choice((0, rng.randrange(256)))
                                                for _ in range(30)))
                    continue
                if isinstance(item, P.ProtocolError):
                    continue
                self.frames += 1
                time.sleep(self.delay)
                out = b""
                if self.stale:
                    out += P.encode_frame(item.type | P.T_REPLY, (item.seq - 1) & 0xFF, b"old")
                out += P.encode_frame(item.type | P.T_REPLY, item.seq, IDENT_PAYLOAD)
                os.write(self.master, out)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def fake():
    boards = []

    def make(**kw):
        boards.append(FakeBoard(**kw))
        return boards[-1]

    yield make
    for b in boards:
        b.close()


def test_silent_port_times_out_with_a_hint_about_port_and_baud(fake):
    board = fake(mute=True)                           # nobody answers
    start = time.monotonic()
    with pytest.raises(KwsError) as e:
        Board(board.port, 57600, timeout=0.3, retries=1).open()
    msg = str(e.value)
    assert "no valid reply from the board at " + board.port in msg
    assert "after 2 tries" in msg and "57600 baud" in msg and "right port" in msg
    assert time.monotonic() - start < 2


def test_garbage_from_the_port_is_a_clear_baud_error(fake):
    board = fake(garbage=True)
    start = time.monotonic()
    with pytest.raises(KwsError, match=r"answers, but with garbage: 40 tries .* is the baud "
                                       r"rate right \(this end: 9600 baud\)"):
        Board(board.port, 9600, timeout=0.5).open()
    assert time.monotonic() - start < 20


def test_a_slow_board_still_works(fake):
    """A reply later than the first wait (0.25 s on a clean line): the try is repeated, the
    late reply accepted, and the next request waits long enough from the start."""
    board = fake(delay=0.4)
    with Board(board.port, 115200, timeout=1.0) as b:
        b.open()
        assert b.identity.n_classes == 12 and b.identity.baud == 115200
        first = b.link_counters()
        b.identify()
        c = b.link_counters()
    assert first["timeouts"] == 1 and first["resends"] == 1
    assert c["timeouts"] == 1 and c["requests"] == 2 and c["stale_replies"] == 1


def test_a_reply_with_an_older_seq_is_dropped(fake):
    board = fake(stale=True)
    with Board(board.port, 115200, timeout=1.0) as b:
        b.open()
        b.identify()
        c = b.link_counters()
    assert c["stale_replies"] == 2 and c["resends"] == 0 and b.identity.n_in == 32
