"""`kws stream`: live keyword spotting. Audio (a microphone or a WAV) becomes one feature frame
every hop, the board steps the model on it, and a detector turns the scores into detections.

The board's state is carried across frames, as on a device listening for hours; the Python
integer model runs beside it on the same int8 frames, so every frame is also a bit-exact check.

Detector: the softmax of each frame's scores is averaged over the last `smooth` frames
(posterior smoothing); a keyword is detected when its smoothed posterior reaches `threshold`,
and then no detection is made for `refractory_s` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.arith import QH
from kws.dataset import KEYWORDS
from kws.errors import KwsError
from kws.features import log_mel_frames


@dataclass
class Detection:
    time_s: float      # end of the frame that fired, from the start of the stream
    word: str
    score: float       # smoothed posterior


class Detector:
    def __init__(self, classes: list[str], score_exponent: int, hop_s: float, smooth: int = 5,
                 threshold: float = 0.7, refractory_s: float = 1.0):
        self.classes, self.hop_s = classes, hop_s
        self.scale = 2.0 ** -(score_exponent + QH)   # integer scores -> real logits
        self.keywords = [i for i, c in enumerate(classes) if c in KEYWORDS]
        self.threshold = threshold
        self.refractory = round(refractory_s / hop_s)   # in frames: no float drift
        self.window: deque = deque(maxlen=smooth)
        self.frame, self.last = 0, -(10 ** 9)

    def push(self, scores: np.ndarray) -> Detection | None:
        """Feed one frame's integer scores; returns a detection or None."""
        logits = np.asarray(scores, np.float64) * self.scale
        p = np.exp(logits - logits.max())
        self.window.append(p / p.sum())
        self.frame += 1
        smoothed = np.mean(self.window, axis=0)
        best = max(self.keywords, key=lambda i: smoothed[i])
        if smoothed[best] >= self.threshold and self.frame - self.last >= self.refractory:
            self.last = self.frame
            return Detection(round(self.frame * self.hop_s, 3), self.classes[best],
                             float(smoothed[best]))
        return None


class FrameMaker:
    """Streaming front end: audio chunks in, feature frames out, exactly `log_mel`'s windows
    (a frame every `hop_length` samples from the stream start)."""

    def __init__(self, cfg):
        self.cfg, self.buffer = cfg, np.zeros(0, np.float64)

    def push(self, audio: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, np.float64)])
        n = 0 if len(self.buffer) < cfg.win_length else \
            1 + (len(self.buffer) - cfg.win_length) // cfg.hop_length
        if n == 0:
            return np.zeros((0, cfg.n_mels), np.float32)
        starts = np.arange(n) * cfg.hop_length
        frames = log_mel_frames(self.buffer[starts[:, None] + np.arange(cfg.win_length)], cfg)
        self.buffer = self.buffer[n * cfg.hop_length:]
        return frames


def wav_chunks(path: Path, sample_rate: int, hop: int, realtime: bool):
    """A WAV in hop-sized chunks, paced at real time unless `realtime` is False."""
    from kws.audio import load_audio

    audio = load_audio(path, sample_rate, None)
    start = time.monotonic()
    for i in range(0, len(audio), hop):
        if realtime:
            time.sleep(max(0.0, start + i / sample_rate - time.monotonic()))
        yield audio[i:i + hop]


def mic_chunks(sample_rate: int, hop: int, device=None):
    """Microphone audio through PortAudio (sounddevice), hop-sized chunks."""
    import queue

    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio missing
        raise KwsError(f"no audio input: {e} (install libportaudio2)") from None
    q: queue.Queue = queue.Queue()
    try:
        stream = sd.InputStream(samplerate=sample_rate, channels=1, blocksize=hop,
                                dtype="float32", device=device,
                                callback=lambda data, *_: q.put(data[:, 0].copy()))
    except (sd.PortAudioError, ValueError) as e:
        raise KwsError(f"cannot open the microphone ({e}); list devices with "
                       "`python -m sounddevice` and pass --device") from None
    with stream:
        while True:
            yield q.get()


def stream(model, board, chunks, threshold: float = 0.7, smooth: int = 5,
           refractory_s: float = 1.0, on_detection=print) -> dict:
    """Run `chunks` of audio through the board; returns a summary. Ctrl-C ends it cleanly."""
    cfg, im = model.features, model.int_model
    hop_s = cfg.hop_length / cfg.sample_rate
    detectors = {who: Detector(model.classes, im.exponents["Wc"], hop_s, smooth, threshold,
                               refractory_s) for who in ("board", "python")}
    maker, h = FrameMaker(cfg), None
    board.reset()
    frames = mismatches = 0
    found: dict[str, list[Detection]] = {"board": [], "python": []}
    try:
        for chunk in chunks:
            for feat in maker.push(chunk):
                x = model.quantize(feat[None])[0]
                got = board.infer(x).scores[0]
                want, states = im.run(x[None, None], h0=h, return_state=True)
                h = states[:, -1]
                frames += 1
                mismatches += int(not np.array_equal(got, want[0, 0]))
                for who, scores in (("python", want[0, 0]), ("board", got)):
                    d = detectors[who].push(scores)
                    if d:
                        found[who].append(d)
                        if who == "board":
                            agree = any(abs(p.time_s - d.time_s) < 1e-9 and p.word == d.word
                                        for p in found["python"])
                            on_detection(f"{d.time_s:8.2f} s  {d.word:<6} {d.score:.2f}"
                                         f"  (python: {'same' if agree else 'differs'})")
    except KeyboardInterrupt:
        pass
    return {"frames": frames, "seconds": round(frames * hop_s, 2), "mismatched_frames": mismatches,
            "detections": [d.__dict__ for d in found["board"]],
            "python_detections": [d.__dict__ for d in found["python"]]}
