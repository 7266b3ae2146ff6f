"""Live streaming: the front end, the detector, and the board beside the Python model."""

from pathlib import Path

import numpy as np
import pytest

from kws.audio import load_audio, write_wav
from kws.config import FeatureConfig
from kws.features import log_mel
from kws.stream import Detector, FrameMaker, stream, wav_chunks
from tests.conftest import SC_MINI

CFG = FeatureConfig(hop_length=320)


def test_streaming_front_end_equals_the_reference_whatever_the_chunks():
    audio = load_audio(sorted((SC_MINI / "yes").glob("*.wav"))[0])
    maker = FrameMaker(CFG)
    sizes = [1, 7, 320, 333, 1000, 5]
    out, i, k = [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        out.append(maker.push(audio[i:i + n]))
        i, k = i + n, k + 1
    frames = np.concatenate(out)
    assert frames.shape == (CFG.n_frames, 32)
    np.testing.assert_array_equal(frames, log_mel(audio, CFG))


def test_detector_smooths_thresholds_and_waits_out_the_refractory_period():
    classes = ["yes", "no", "_silence_", "_unknown_"]
    d = Detector(classes, score_exponent=-14, hop_s=0.02, smooth=3, threshold=0.8,
                 refractory_s=0.1)  # scores are real logits (scale 2**0)
    quiet, yes = np.array([0, 0, 5, 0]), np.array([6, 0, 0, 0])
    events = [d.push(s) for s in [quiet, yes, yes, yes, yes, yes, yes, yes, yes]]
    fired = [(i, e.word) for i, e in enumerate(events) if e]
    # frame 3 is the first whose 3-frame mean posterior of "yes" reaches 0.8; then 5 frames
    # (0.1 s) of silence from the detector before it may fire again, at frame 8
    assert fired == [(3, "yes"), (8, "yes")]
    assert events[3].time_s == pytest.approx(0.08)
    d2 = Detector(classes, -14, 0.02, 1, 0.5, 0.0)
    assert d2.push(np.array([0, 0, 9, 9])) is None  # silence and unknown never fire


def test_wav_stream_through_the_simulated_board_matches_python(tmp_path):
    """A WAV of three keywords separated by noise, streamed without resets: every frame's
    board scores equal the Python integer model's, and both detectors agree."""
    from kws.board import open_boards
    from kws.modelfile import load_model

    model = load_model("models/default")
    noise = load_audio(SC_MINI / "_background_noise_" / "white_noise.wav", 16000, None)
    parts = []
    for word in ("yes", "go", "stop"):
        parts += [0.02 * noise[:16000], load_audio(sorted((SC_MINI / word).glob("*.wav"))[0])]
    wav = tmp_path / "three.wav"
    write_wav(wav, np.concatenate(parts + [0.02 * noise[:16000]]))
    lines = []
    with open_boards("sim", model, 1) as boards:
        r = stream(model, boards[0], wav_chunks(wav, 16000, 320, realtime=False),
                   on_detection=lines.append)
    assert r["frames"] == 1 + (7 * 16000 - 400) // 320
    assert r["mismatched_frames"] == 0
    assert r["detections"] == r["python_detections"]
    assert len(lines) == len(r["detections"]) and all("same" in ln for ln in lines)
