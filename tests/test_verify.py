"""`kws verify` end to end on simulated boards: real clips streamed frame by frame through the
protocol firmware and compared with the integer reference; the hash handshake; a resent
request answered from the cache without stepping the model twice."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kws.link import protocol as P
from kws.checks.boards import open_boards
from kws.targets.build import sim_firmware as build_sim_firmware
from kws.config import FeatureConfig
from kws.data.dataset import TASKS
from kws.errors import KwsError
from kws.quant.modelfile import load_model, save_model
from kws.checks.verify import format_summary, verify
from test_protocol import golden

SC_MINI = Path(__file__).parent / "fixtures" / "sc_mini"
CLIPS = sorted(SC_MINI.glob("*/*.wav"))
JSON_KEYS = {"clips", "frames", "mismatched_frames", "first_mismatch", "cycles_per_frame",
             "device_accuracy", "frames_per_second"}

pytestmark = pytest.mark.skipif(shutil.which("avr-gcc") is None, reason="avr-gcc not installed")


def make_model(folder, seed=0):
    """A random v2-12 model (20 ms frames, 49 per clip) normalised on the fixture clips."""
    from kws.data.audio import load_audio
    from kws.frontend.features import clip_features

    cfg = FeatureConfig(hop_length=320)
    feats = np.stack([clip_features(load_audio(p), cfg) for p in CLIPS[::4]]).reshape(-1, 32)
    save_model(folder, f"rand{seed}", golden.random_model(seed), cfg,
               list(TASKS["v2-12"].classes), feats.mean(0), feats.std(0) + 1e-3, 3, {}, {}, {})
    return load_model(folder)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    model = make_model(tmp / "model")
    fw = build_sim_firmware(model, out_dir=tmp / "fw")
    return model, fw


def test_verify_held_out_clips_on_two_simulated_boards(sim, tmp_path):
    model, fw = sim
    r = verify(model, SC_MINI, board="sim", boards=2, split="testing", fw=fw)
    print("\n" + format_summary(r))
    assert JSON_KEYS <= set(r)
    assert r["complete"] and r["error"] is None and r["boards"] == 2
    assert r["clips"] == r["clips_planned"] >= 10 and r["frames"] == 49 * r["clips"]
    assert r["mismatched_frames"] == 0 and r["first_mismatch"] is None
    c = r["cycles_per_frame"]
    assert 10_000 < c["min"] <= c["median"] <= c["max"] < 1.02 * c["min"]
    assert r["device_accuracy"] == r["reference_accuracy"]
    assert r["frames_per_second"] > 50 and r["link"]["resends"] == 0
    assert r["stack_peak"] > 0 and r["device"]["baud"] == fw.baud == 1_000_000
    json.dumps(r)  # serialisable as is
    assert "OK: every frame bit-exact" in format_summary(r)


def test_verify_on_a_pro_mini_8mhz_profile(sim, tmp_path):
    """The simulated board runs at the profile's F_CPU: same cycles, twice the time."""
    model, fw = sim
    uno = verify(model, SC_MINI, board="sim", max_clips=2, fw=fw)
    r = verify(model, SC_MINI, board="sim", max_clips=2, profile="pro-mini-8",
               build_dir=tmp_path / "pm8")
    assert r["mismatched_frames"] == 0 and r["device"]["f_cpu"] == 8_000_000
    assert uno["device"]["f_cpu"] == 16_000_000
    assert r["cycles_per_frame"] == uno["cycles_per_frame"]
    assert r["ms_per_frame"] == pytest.approx(2 * uno["ms_per_frame"])


def test_verify_reports_the_first_diverging_frame(sim, monkeypatch):
    """A reference that differs from frame 7 of the second clip on: counted and reported."""
    model, fw = sim
    run = model.int_model.run

    def wrong(x, *a, **k):
        out = run(x, *a, **k).copy()
        out[1, 7:, 3] += 1
        return out

    monkeypatch.setattr(model.int_model, "run", wrong)
    r = verify(model, SC_MINI, board="sim", split="testing", max_clips=3, fw=fw)
    assert r["clips"] == 3 and r["mismatched_frames"] == 49 - 7
    m = r["first_mismatch"]
    assert (m["clip_index"], m["frame"]) == (1, 7) and m["clip"].endswith(".wav")
    assert m["got"][3] == m["expected"][3] - 1
    text = format_summary(r)
    assert "FIRST MISMATCH" in text and text.endswith("FAILED")


def test_board_with_another_model_is_refused(sim, tmp_path):
    model, fw = sim
    other = make_model(tmp_path / "other", seed=1)
    assert other.hash != model.hash
    with pytest.raises(KwsError) as e:
        open_boards("sim", other, fw=fw)
    msg = str(e.value)
    assert "runs another model" in msg and model.hash[:32] in msg and other.hash in msg


def test_resent_request_does_not_step_the_model_twice(sim):
    model, fw = sim
    x = golden.inputs(3, 32, n_seq=1, n_frames=40)[0, 8:12]
    want = model.int_model.run(x[None])[0]
    with open_boards("sim", model, fw=fw) as (board,):
        board.reset()
        first = board.infer(x[0])
        again = P.parse_infer(board.repeat_last().payload, 12, 24)     # the same seq
        assert again.t == first.t == 1
        np.testing.assert_array_equal(again.scores, first.scores)
        np.testing.assert_array_equal(first.scores[0], want[0])
        for t in (1, 2, 3):                       # the state advanced once per frame
            np.testing.assert_array_equal(board.infer(x[t]).scores[0], want[t])
        board.repeat_last()
        s = board.stats()
        assert (s.inferences, s.duplicates, s.t) == (4, 2, 4)
        board.reset()
        board.repeat_last()                       # a repeated RESET: still reset, once
        assert board.infer(x[0]).t == 1


def test_several_frames_per_request(sim, tmp_path):
    model, _ = sim
    fw = build_sim_firmware(model, out_dir=tmp_path / "fw2", max_frames=2)
    r = verify(model, SC_MINI, board="sim", split="validation", max_clips=4, fw=fw)
    assert r["device"]["frames_per_request"] == 2
    assert r["clips"] == 4 and r["frames"] == 4 * 49 and r["mismatched_frames"] == 0


def test_board_that_does_not_answer(tmp_path):
    """A port with nothing behind it: a clear error naming port and baud, no hang."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        from kws.link.board import Board

        with pytest.raises(KwsError, match=r"no valid reply .* after 2 tries.*57600 baud"):
            Board(os.ttyname(slave), 57600, timeout=0.2, retries=1).open()
    finally:
        os.close(master)
        os.close(slave)


def test_link_cut_mid_clip_stops_with_the_results_so_far(sim, monkeypatch):
    """The simulated board dies in the middle of the third clip: a clear error, the two
    finished clips kept and compared."""
    from kws.link.board import Board

    model, fw = sim
    infer, calls = Board.infer, []

    def dying(self, *a, **k):
        calls.append(1)
        if len(calls) == 2 * 49 + 10:
            self.owner.proc.kill()
            self.owner.proc.wait()
        return infer(self, *a, **k)

    monkeypatch.setattr(Board, "infer", dying)
    r = verify(model, SC_MINI, board="sim", split="testing", max_clips=5, fw=fw, timeout=0.3,
               retries=1)
    assert not r["complete"] and "simulator died" in r["error"]
    assert r["clips"] == 2 and r["frames"] == 98 and r["mismatched_frames"] == 0
    assert "STOPPED: " in format_summary(r) and format_summary(r).endswith("FAILED")
