"""Live streaming: the front end, the detector, and the board beside the Python model."""

from pathlib import Path

import numpy as np
import pytest

from kws.data.audio import load_audio, write_wav
from kws.config import FeatureConfig
from kws.frontend.features import clip_features
from kws.checks.stream import FrameMaker, stream, wav_chunks
from kws.detect.detector import Detector
from tests.conftest import SC_MINI

CFG = FeatureConfig(hop_length=320)


@pytest.mark.parametrize("frontend", ["log_mel", "pcen"])
def test_streaming_front_end_equals_the_reference_whatever_the_chunks(frontend):
    from dataclasses import replace
    cfg = replace(CFG, frontend=frontend)
    audio = load_audio(sorted((SC_MINI / "yes").glob("*.wav"))[0])
    maker = FrameMaker(cfg)
    sizes = [1, 7, 320, 333, 1000, 5]
    out, i, k = [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        out.append(maker.push(audio[i:i + n]))
        i, k = i + n, k + 1
    frames = np.concatenate(out)
    assert frames.shape == (cfg.n_frames, 32)
    np.testing.assert_array_equal(frames, clip_features(audio, cfg))


def test_detector_smooths_thresholds_and_waits_out_the_refractory_period():
    classes = ["yes", "no", "_silence_", "_unknown_"]
    # scale 1: pooled scores are real logits; a window every 0.5 s
    d = Detector(classes, scale=1.0, window_s=1.0, stride_s=0.5, smooth=3, threshold=0.8,
                 refractory_s=2.0)
    quiet, yes = np.array([0, 0, 5, 0]), np.array([6, 0, 0, 0])
    events = [d.push(s, 0.5 * i) for i, s in enumerate([quiet] + [yes] * 8)]
    fired = [(i, e.word) for i, e in enumerate(events) if e]
    # window 3 is the first whose 3-window mean posterior of "yes" reaches 0.8; then 4
    # windows (2 s) of silence from the detector before it may fire again, at window 7
    assert fired == [(3, "yes"), (7, "yes")]
    assert events[3].time_s == pytest.approx(1.5)
    d2 = Detector(classes, 1.0, 1.0, 0.5, 1, 0.5, 0.0)
    assert d2.push(np.array([0, 0, 9, 9]), 0.0) is None  # silence and unknown never fire


def _correct_clips(model, words):
    """Per word, the first mini-corpus clip the integer model gets right as a clip."""
    out = {}
    for word in words:
        for path in sorted((SC_MINI / word).glob("*.wav")):
            audio = load_audio(path)
            x = model.quantize(clip_features(audio, model.features)[None])
            pooled = model.int_model.run(x)[0, -model.pool_frames:].sum(0)
            if model.classes[int(pooled.argmax())] == word:
                out[word] = audio
                break
    assert len(out) == len(words), "the mini corpus has no correctly classified clip"
    return out


def three_keywords_wav(path, model, snr_db: float = 30.0):
    """A 10 s WAV of "yes", "go", "stop" (clips the integer model gets right) at 1.3, 4.1 and
    7.7 s (not aligned with the windows) in white noise; returns the words and each one's
    voiced span (s)."""
    from kws.data.streamgen import voiced_span

    words = ("yes", "go", "stop")
    clips = _correct_clips(model, words)
    noise = load_audio(SC_MINI / "_background_noise_" / "white_noise.wav", 16000, None)
    sr, starts = 16000, (1.3, 4.1, 7.7)
    audio = np.zeros(10 * sr, np.float32)
    voiced = []
    for word, t in zip(words, starts):
        clip, i = clips[word], round(t * sr)
        audio[i:i + sr] += clip
        a, b = voiced_span(clip, sr)
        voiced.append(((i + a) / sr, (i + b) / sr))
    speech = np.sqrt(np.mean(np.concatenate([clips[w] for w in words]) ** 2))
    bed = np.resize(noise, len(audio))
    audio += bed * speech / np.sqrt(np.mean(bed ** 2)) / 10 ** (snr_db / 20)
    write_wav(path, audio)
    return words, voiced


def pin_edges(stamps, pin: str = "PB5"):
    """(level, cycle) of every change of an output pin the simulator saw."""
    return [(s.value, s.cycle) for s in stamps if s.reg == pin]


def frame_of_cycle(stamps, cycle: int) -> int:
    """The LISTEN frame (0, 1, ...) whose request a cycle falls in: after the end of that
    frame's timed region (GPIOR0 = 2; the first one is the boot calibration) and before the
    next frame's start (GPIOR0 = 1)."""
    ends = [s.cycle for s in stamps if s.reg == "GPIOR0" and s.value == 2][1:]
    starts = [s.cycle for s in stamps if s.reg == "GPIOR0" and s.value == 1][1:]
    for f, end in enumerate(ends):
        if end < cycle and (f + 1 >= len(starts) or cycle < starts[f + 1]):
            return f
    raise AssertionError(f"cycle {cycle} is in no frame's reply")


def test_three_keywords_in_noise_are_detected_on_the_board_at_their_times(tmp_path):
    """A WAV of three keywords separated by noise, streamed through the simulated board's
    LISTEN schedule: the board detects exactly these words, each inside the windows that
    hold it, with its own detector (decisions equal to the Python detector's on every window,
    at the command line's threshold, which overrides detector.json's and is sent to it), every
    window is bit-exact, and its detection pin (LED_BUILTIN: PB5 on the Uno) goes high on each
    detection and low when the refractory period is over: the simulator sees the port writes."""
    from kws.checks.boards import open_boards
    from kws.detect.detector import load_settings, q15_threshold
    from kws.quant.modelfile import load_model
    from kws.detect.windows import Schedule

    model = load_model("models/default")
    wav = tmp_path / "three.wav"
    words, voiced = three_keywords_wav(wav, model)
    sr = 16000
    lines, notes = [], []
    with open_boards("sim", model, 1) as boards:
        r = stream(model, boards[0], wav_chunks(wav, sr, 320, realtime=False), threshold=0.6,
                   on_detection=lines.append, on_note=notes.append)
        settings = boards[0].detect()
        stamps = boards[0].owner.stamps()
    schedule = Schedule.for_model(model, r["instances"])
    assert r["frames"] == 1 + (10 * sr - 400) // 320
    assert r["windows"] == schedule.n_windows(r["frames"]) and r["mismatched_windows"] == 0
    assert r["board_decides"] and r["mismatched_decisions"] == 0
    assert r["detections"] == r["python_detections"]
    assert [d["word"] for d in r["detections"]] == list(words)
    window_s = ((schedule.period - 1) * 320 + 400) / sr
    for d, (on, off) in zip(r["detections"], voiced):
        # fired by a window that holds the word's voiced part (whole or in part)
        assert on < d["time_s"] < off + window_s, (d, on, off)
    assert len(lines) == 3 and all("same" in ln for ln in lines)
    # the command line's threshold: said, and sent to the board, which decided with it
    stored = load_settings(model).threshold
    assert notes[0] == f"threshold 0.6 from the command line, overriding {stored} of detector.json"
    assert "sent to the board" in notes[1]
    assert settings.overridden == 1 and settings.thresholds[0] == q15_threshold(0.6)
    # every frame steps each running instance: the board's cycle count shows it
    assert r["cycles_per_frame"]["max"] > 1.8 * r["cycles_per_frame"]["min"]
    # the pin: high at each detection's frame, low r["refractory_windows"] windows later
    edges = pin_edges(stamps)
    assert [level for level, _ in edges] == [1, 0] * 3, edges
    frames = [round(d["time_s"] * sr - 400) // 320 for d in r["detections"]]
    rises = [frame_of_cycle(stamps, c) for level, c in edges if level == 1]
    falls = [frame_of_cycle(stamps, c) for level, c in edges if level == 0]
    assert rises == frames
    assert falls == [f + r["refractory_windows"] * schedule.stride for f in frames]
    assert not pin_edges(stamps, "PB4") and {s.reg for s in stamps if s.reg[0] == "P"} == {"PB5"}


@pytest.mark.parametrize("instances", [1, 2, 5])
def test_tail_silence_lets_every_window_that_starts_in_the_audio_end(instances):
    """`kws stream --wav` pads the file: every window that starts while the audio lasts ends
    (so the last word gets all its windows), even for a file shorter than one window."""
    from kws.checks.stream import tail_silence
    from kws.detect.windows import Schedule

    schedule = Schedule(period=50, instances=instances, pool=3)
    for n in [0, 1, 399, 400, 401, 4000, 15999, 16000, 16001, 16080, 16400, 24321, 160000]:
        pad = tail_silence(n, CFG, schedule)
        frames = 1 + (n + pad - CFG.win_length) // CFG.hop_length
        touched = 1 + max(0, -(-(n - CFG.win_length) // CFG.hop_length))  # frames with audio
        starts = range(0, touched, schedule.stride)
        assert schedule.n_windows(frames) == len(starts) >= 1, n
        assert pad < (schedule.period + 1) * CFG.hop_length + CFG.win_length
        assert tail_silence(n + pad, CFG, schedule) >= 0


def test_a_wav_shorter_than_a_window_still_gets_a_verdict(tmp_path):
    """`kws stream --wav` of one keyword clip cut to 0.6 s (less than a 1 s window), on the
    simulated board: it is padded, says so, gets its windows, and the keyword is detected."""
    import subprocess
    import sys

    from kws.quant.modelfile import load_model

    model = load_model("models/default")
    clip = _correct_clips(model, ["yes"])["yes"]
    wav = tmp_path / "short.wav"
    write_wav(wav, clip[:9600])
    r = subprocess.run([sys.executable, "-m", "kws", "stream", "--wav", str(wav), "--fast",
                        "--threshold", "0.5", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # 30 frames touch the audio: windows start at frames 0 and 25, so 75 frames are needed
    assert "0.60 s, padded with 0.91 s of silence" in r.stdout
    import json
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames"] == 75 and s["windows"] == 2 and s["mismatched_windows"] == 0
    assert [d["word"] for d in s["detections"]] == ["yes"], r.stdout
