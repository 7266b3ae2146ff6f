"""`kws stream`: live keyword spotting. Audio (a microphone or a WAV) becomes one feature frame
every hop, the board steps the model on it, and a detector turns the scores into detections.

The board listens with the stream schedule of `kws.detect.windows` (staggered windows one clip
long, LISTEN in firmware/PROTOCOL.md), as a device does for hours; the Python integer model
runs the same schedule beside it on the same int8 frames, so every window is also a
bit-exact check. The detector (`Detector`) turns window outputs into detections.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kws.detect.detector import Detection, Detector, posteriors  # noqa: F401
from kws.errors import KwsError
from kws.frontend.features import log_mel_frames


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
    from kws.data.audio import load_audio

    return audio_chunks(load_audio(path, sample_rate, None), sample_rate, hop, realtime)


def tail_silence(n_samples: int, cfg, schedule) -> int:
    """Samples of silence to append to a recording of `n_samples` so that every window of
    `schedule` that starts in it also ends: the last word gets all the windows it would get in
    an endless stream, and a recording shorter than one window gets at least one."""
    hop, win = cfg.hop_length, cfg.win_length
    frames = 1 + max(0, -(-(n_samples - win) // hop))      # frames that touch every sample
    last_start = (frames - 1) // schedule.stride * schedule.stride
    needed = (last_start + schedule.period - 1) * hop + win
    return max(0, needed - n_samples)


def padded_wav(path: Path, cfg, schedule) -> tuple[np.ndarray, int]:
    """A WAV at the model's sample rate with `tail_silence` zeros at the end, and their
    number."""
    from kws.data.audio import load_audio

    audio = load_audio(path, cfg.sample_rate, None)
    pad = tail_silence(len(audio), cfg, schedule)
    return np.concatenate([audio, np.zeros(pad, audio.dtype)]), pad


def audio_chunks(audio: np.ndarray, sample_rate: int, hop: int, realtime: bool):
    """Audio in hop-sized chunks, paced at real time unless `realtime` is False."""
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


def stream(model, board, chunks, threshold: float | None = None, smooth: int = 1,
           refractory_s: float = 1.0, instances: int | None = None,
           on_detection=print) -> dict:
    """Run `chunks` of audio through the board's stream schedule (LISTEN) with the Python
    integer model beside it; returns a summary. Ctrl-C ends it cleanly. threshold and
    instances default to the model folder's detector.json (`kws eval --stream`)."""
    from kws.detect.detector import stored_settings
    from kws.detect.windows import Schedule, WindowRunner

    stored = stored_settings(model)
    threshold = stored["threshold"] if threshold is None else threshold
    schedule = Schedule.for_model(model, instances or stored["instances"])
    cfg = model.features
    args = Detector.args_for(model, schedule, smooth=smooth, threshold=threshold,
                             refractory_s=refractory_s)
    detectors = {who: Detector(**args) for who in ("board", "python")}
    runner, maker = WindowRunner(model.int_model, schedule), FrameMaker(cfg)
    frames = windows = mismatches = 0
    cycles: list[int] = []
    found: dict[str, list[Detection]] = {"board": [], "python": []}
    try:
        for chunk in chunks:
            for feat in maker.push(chunk):
                x = model.quantize(feat[None])[0]
                got = board.listen(x, reset=frames == 0)
                want = runner.push(x)
                frames += 1
                cycles.append(got.cycles)
                if want is None and got.pooled is None:
                    continue
                windows += 1
                if want is None or got.pooled is None or not np.array_equal(want, got.pooled):
                    mismatches += 1
                    continue
                t = ((frames - 1) * cfg.hop_length + cfg.win_length) / cfg.sample_rate
                for who, pooled in (("python", want), ("board", got.pooled)):
                    d = detectors[who].push(pooled, t)
                    if d:
                        found[who].append(d)
                        if who == "board":
                            agree = any(abs(p.time_s - d.time_s) < 1e-9 and p.word == d.word
                                        for p in found["python"])
                            on_detection(f"{d.time_s:8.2f} s  {d.word:<6} {d.score:.2f}"
                                         f"  (python: {'same' if agree else 'differs'})")
    except KeyboardInterrupt:
        pass
    return {"frames": frames, "seconds": round(frames * cfg.hop_length / cfg.sample_rate, 2),
            "windows": windows, "mismatched_windows": mismatches,
            "threshold": threshold, "instances": schedule.instances,
            "cycles_per_frame": ({"min": int(min(cycles)), "median": float(np.median(cycles)),
                                  "max": int(max(cycles))} if cycles else None),
            "detections": [d.__dict__ for d in found["board"]],
            "best": detectors["board"].best.__dict__ if detectors["board"].best else None,
            "python_detections": [d.__dict__ for d in found["python"]]}
