"""Deciding on the board: the simulated board's detector (firmware/kernel/kws_detect.c) against
the Python one on a stream with known answers, its settings (compiled from detector.json,
identified by the settings hash, thresholds replaceable over DETECT), and the detection pin of
the board profile."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from kws.errors import KwsError
from kws.link import protocol as P
from kws.targets.avr.simboard import AVR_MK, REPO, SimBoard
from tests.test_stream import frame_of_cycle, pin_edges, three_keywords_wav


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """models/default with other listening settings: smoothing over 2 windows, 1.5 s (3 windows)
    of refractory period, threshold 0.6,
    "go" at 0.45 and "stop" just above the highest posterior "stop" gets in any one window of
    this stream (so no smoothed pair of windows reaches it), whatever model ships."""
    from kws.checks.streameval import stream_scores
    from kws.data.audio import load_audio
    from kws.detect.detector import ONE, Detector, posteriors, q15_threshold
    from kws.detect.windows import Schedule
    from kws.quant.modelfile import load_model

    folder = tmp_path_factory.mktemp("tuned") / "tuned"
    shutil.copytree(REPO / "models" / "default", folder)
    model = load_model(folder)
    wav = folder / "three.wav"
    words, voiced = three_keywords_wav(wav, model)
    schedule = Schedule.for_model(model, 2)
    pooled, _ = stream_scores(model, load_audio(wav, 16000, None), schedule)
    scale = Detector.args_for(model, schedule, smooth=2, refractory_s=1.5)["scale"]
    stop_max = int(np.max(posteriors(pooled, scale)[:, model.classes.index("stop")]))
    stop = (stop_max + 1) / ONE       # q15_threshold(stop) == stop_max + 1: never reached
    assert stop_max > q15_threshold(0.6) and stop < 1, stop_max   # "stop" is heard at 0.6
    (folder / "detector.json").write_text(json.dumps(
        {"threshold": 0.6, "instances": 2, "smooth_windows": 2, "refractory_s": 1.5,
         "chosen_by": "tests/test_board_detect.py", "thresholds": {"go": 0.45, "stop": stop}}))
    return load_model(folder), wav, words


def test_board_decides_with_its_compiled_settings_as_python_does(tuned):
    """Compiled smoothing (2 windows) and per-keyword thresholds: the board's decision on every
    window is Python's, the words it detects are the known ones minus "stop" (held back by its
    own threshold), nothing is sent to it (it already holds detector.json's settings), and its
    static RAM and peak stack after listening stay within 1,024 bytes."""
    from kws.checks.boards import open_boards
    from kws.checks.stream import stream, wav_chunks
    from kws.detect.detector import load_settings, q15_threshold, settings_hash

    model, wav, words = tuned
    notes = []
    with open_boards("sim", model, 1) as boards:
        board = boards[0]
        before = board.detect()
        r = stream(model, board, wav_chunks(wav, 16000, 320, realtime=False),
                   on_detection=lambda line: None, on_note=notes.append)
        stack, ram = board.stats().stack_peak, boards.firmware.ram
    # listening and deciding (2 windows of history) within the Uno's budget for model state
    assert 0 < stack and ram + stack <= 1024, (ram, stack)
    assert before.smooth == 2 and before.overridden == 0 and before.refractory == 3
    assert settings_hash(model).startswith(before.settings_hash)
    assert len(before.settings_hash) == 2 * P.SETTINGS_HASH_BYTES
    q = dict(zip(model.classes, before.thresholds))
    stop = load_settings(model).thresholds["stop"]
    assert (q["yes"], q["go"], q["stop"], q["_silence_"]) == \
        (q15_threshold(0.6), q15_threshold(0.45), q15_threshold(stop), 0xFFFF)
    assert notes == []
    assert r["board_decides"] and r["mismatched_windows"] == 0 and r["mismatched_decisions"] == 0
    assert r["detections"] == r["python_detections"]
    assert [d["word"] for d in r["detections"]] == ["yes", "go"]
    # what held "stop" back is its own threshold: at the others' 0.6 it fires
    from dataclasses import replace

    from kws.checks.streameval import stream_scores
    from kws.data.audio import load_audio
    from kws.detect.detector import detector_for, load_settings
    from kws.detect.windows import Schedule

    schedule = Schedule.for_model(model, 2)
    pooled, times = stream_scores(model, load_audio(wav, 16000, None), schedule)
    settings = load_settings(model)
    for thresholds, want in ((settings.thresholds, ["yes", "go"]),
                             ({"go": 0.45}, ["yes", "go", "stop"])):
        det = detector_for(model, schedule, replace(settings, thresholds=thresholds))
        assert [d.word for p, t in zip(pooled, times) if (d := det.push(p, t))] == want


def test_the_board_refuses_other_settings_and_a_smoothing_it_was_not_built_with(tuned, tmp_path):
    """detector.json changed after the build: the board's settings hash no longer matches and
    `kws stream` says to rebuild; a --smooth it was not built with is refused the same way (it
    is compiled); DETECT requests it cannot take are refused (ERROR 7)."""
    from kws.checks.boards import open_boards
    from kws.checks.stream import stream, wav_chunks

    model, wav, words = tuned
    path = model.folder / "detector.json"
    text = path.read_text()
    with open_boards("sim", model, 1) as boards:
        board = boards[0]
        with pytest.raises(KwsError, match="compiled from detector.json.*new build"):
            stream(model, board, wav_chunks(wav, 16000, 320, realtime=False), smooth=3,
                   on_note=lambda n: None)
        try:
            path.write_text(text.replace('"threshold": 0.6', '"threshold": 0.7'))
            with pytest.raises(KwsError, match="built with other listening settings"):
                stream(model, board, wav_chunks(wav, 16000, 320, realtime=False),
                       on_note=lambda n: None)
        finally:
            path.write_text(text)
        n = len(model.classes)
        for bad in (bytes([P.F_SET, 2, 0]),                              # no thresholds
                    bytes([0x02, 2, 0]) + bytes(2 * n),                   # unknown flag
                    bytes([P.F_SET, 0xFF, 0xFF]) + bytes(2 * n),          # refractory 65535
                    bytes([P.F_SET, 2, 0]) + bytes(2 * n + 1)):           # one byte too many
            with pytest.raises(KwsError, match="refused DETECT"):
                board.request(P.T_DETECT, bad)
        assert board.detect().overridden == 0                  # nothing was taken
        got = board.detect(5, list(range(1000, 1000 + n)))
        assert (got.overridden, got.refractory, got.thresholds) == \
            (1, 5, list(range(1000, 1000 + n)))


def test_the_detection_pin_is_the_board_profile_s(tuned, tmp_path):
    """Every profile of avr.mk drives LED_BUILTIN unless it says otherwise, and a build with
    another pin (DETECT_PIN=7: PD7 on the Uno) drives that one: the simulator sees PD7 go
    high on the detection, and never PB5."""
    from kws.checks.boards import open_boards
    from kws.checks.stream import stream, wav_chunks
    from kws.codegen.export import export
    from kws.link.board import Board
    from kws.targets.avr.target import AvrTarget

    for profile in AvrTarget.profiles:
        r = subprocess.run(["make", "-s", "-f", str(AVR_MK), f"BOARD={profile}",
                            "print-DETECT_PIN"], capture_output=True, text=True, cwd=REPO)
        assert r.stdout.strip() == "LED_BUILTIN", (profile, r.stdout, r.stderr)
    model, wav, words = tuned
    sketch = export(model, tmp_path / "src", "pin7", baud=1_000_000)
    build = tmp_path / "build"
    r = subprocess.run(["make", "-s", "-f", str(AVR_MK), f"SKETCH={sketch}", f"BUILD={build}",
                        "BOARD=uno", "DETECT_PIN=7", "all"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "-DKWS_DETECT_PIN=7" in (build / "flags.txt").read_text()
    with SimBoard(build / "pin7.elf") as sim:
        board = Board(sim.port, 1_000_000).open(model)
        try:
            audio = wav_chunks(wav, 16000, 320, realtime=False)
            short = (c for i, c in zip(range(150), audio))   # 3 s: "yes" only
            s = stream(model, board, short, on_detection=lambda line: None,
                       on_note=lambda n: None)
        finally:
            board.close()
        stamps = sim.stamps()
    assert [d["word"] for d in s["detections"]] == ["yes"] and s["mismatched_decisions"] == 0
    edges = pin_edges(stamps, "PD7")
    assert edges and edges[0][0] == 1 and not pin_edges(stamps, "PB5")
    frame = round(s["detections"][0]["time_s"] * 16000 - 400) // 320
    assert frame_of_cycle(stamps, edges[0][1]) == frame


def test_a_board_that_does_not_decide_gets_the_host_s_decisions(tmp_path):
    """A firmware exported before the on-board detector (no DETECT capability): `kws stream`
    says so and decides on the board's windows itself, with the same detector."""
    from kws.checks.stream import stream, wav_chunks
    from kws.detect.windows import Schedule, WindowRunner
    from kws.quant.modelfile import load_model

    model = load_model(REPO / "models" / "default")

    class OldBoard:              # LISTEN without decisions, no DETECT
        url, decides = "old-board", False

        def __init__(self):
            self.runner = WindowRunner(model.int_model, Schedule.for_model(model, 2))

        def listen(self, x, reset=False):
            return P.ListenReply(0, 1, self.runner.push(x))

        def detect(self, *args):
            raise AssertionError("DETECT sent to a board without it")

    words, _ = three_keywords_wav(tmp_path / "three.wav", model)
    notes = []
    r = stream(model, OldBoard(), wav_chunks(tmp_path / "three.wav", 16000, 320, realtime=False),
               threshold=0.6, on_detection=lambda line: None, on_note=notes.append)
    assert "does not decide" in notes[-1] and not r["board_decides"]
    assert r["mismatched_windows"] == 0 and r["mismatched_decisions"] == 0
    assert r["detections"] == r["python_detections"]
    assert [d["word"] for d in r["detections"]] == list(words)
