"""`kws stream`: live keyword spotting. Audio (a microphone or a WAV) becomes one feature frame
every hop, the board steps the model on it, and a detector turns the scores into detections.

The board listens with the stream schedule of `kws.detect.windows` (staggered windows one clip
long, LISTEN in firmware/PROTOCOL.md), as a device does for hours, and decides on every window
with its own detector (firmware/kernel/kws_detect.c, driving its detection pin); the Python
integer model and detector (`kws.detect.detector.Detector`) run beside it on the same int8
frames, so every window and every decision is also a bit-exact check.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kws.detect.detector import Detection, Detector, posteriors  # noqa: F401
from kws.errors import KwsError
from kws.frontend.features import frame_features


class FrameMaker:
    """Streaming front end: audio chunks in, feature frames out, exactly `clip_features`'
    windows (a frame every `hop_length` samples from the stream start), with a PCEN front
    end's smoother carried from chunk to chunk."""

    def __init__(self, cfg):
        self.cfg, self.buffer, self.state = cfg, np.zeros(0, np.float64), None

    def push(self, audio: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, np.float64)])
        n = 0 if len(self.buffer) < cfg.win_length else \
            1 + (len(self.buffer) - cfg.win_length) // cfg.hop_length
        if n == 0:
            return np.zeros((0, cfg.n_mels), np.float32)
        starts = np.arange(n) * cfg.hop_length
        frames, self.state = frame_features(
            self.buffer[starts[:, None] + np.arange(cfg.win_length)], cfg, self.state)
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


def board_detector(model, board, detector, on_note=print) -> bool:
    """Make the board's detector decide as `detector` (the Python one) does: refuse a board
    built with other listening settings (its settings hash) or another smoothing length (that
    is compiled: rebuild), and send it the thresholds and refractory period when they differ
    from what it holds (a --threshold or --refractory from the command line). False: the
    firmware does not decide (an older export); the host then decides for it."""
    from kws.detect.detector import settings_hash

    if not board.decides:
        on_note("the board's firmware does not decide (exported before the on-board detector): "
                "the host decides on its windows")
        return False
    have = board.detect()
    stored = settings_hash(model)
    if not stored.startswith(have.settings_hash):
        raise KwsError(f"the board at {board.url} was built with other listening settings "
                       f"(settings hash {have.settings_hash}, {model.folder}/detector.json has "
                       f"{stored[:16]}): build and flash it again (kws build, kws flash)")
    if have.smooth != detector.smooth:
        raise KwsError(f"the board sums the posteriors of {have.smooth} window(s), compiled from "
                       f"detector.json; smoothing over {detector.smooth} needs smooth_windows "
                       f"{detector.smooth} in detector.json and a new build (kws build)")
    want = [int(t) for t in detector.q15]
    if have.thresholds != want or have.refractory != detector.refractory:
        got = board.detect(detector.refractory, want)
        if got.thresholds != want or got.refractory != detector.refractory:
            raise KwsError(f"{board.url}: the board did not take the detector settings")
        on_note(f"sent to the board: refractory {detector.refractory} windows, thresholds "
                + ", ".join(f"{detector.classes[i]} {want[i]}" for i in detector.keywords)
                + " (Q15); it keeps them until it boots again")
    return True


def _spread(cycles: list[int]) -> dict | None:
    return ({"min": int(min(cycles)), "median": float(np.median(cycles)),
             "max": int(max(cycles))} if cycles else None)


def _same(decision, board_decision) -> bool:
    b = board_decision
    return b is not None and (decision.best, decision.best_sum, decision.fired,
                              decision.fired_sum, decision.windows, decision.led) == \
        (b.best, b.best_sum, b.fired, b.fired_sum, b.windows, b.led)


def stream(model, board, chunks, threshold: float | None = None, smooth: int | None = None,
           refractory_s: float | None = None, instances: int | None = None,
           on_detection=print, on_note=print) -> dict:
    """Run `chunks` of audio through the board's stream schedule (LISTEN) with the Python
    integer model and detector beside it; returns a summary. Ctrl-C ends it cleanly.
    threshold, smoothing, refractory period and instances default to the model folder's
    detector.json (kws.detect.detector); a threshold or refractory period given here overrides
    it, visibly (on_note), and is sent to the board, which decides on every window
    (kws_detect.c): its decisions are compared with Python's, window by window."""
    from kws.detect.detector import NONE, Detection, detector_for, load_settings
    from kws.detect.posterior import ONE
    from kws.detect.windows import Schedule, WindowRunner

    settings = load_settings(model)
    schedule = Schedule.for_model(model, instances or settings.instances)
    cfg = model.features
    python = detector_for(model, schedule, settings, threshold=threshold, smooth=smooth,
                          refractory_s=refractory_s)
    for what, given, stored in (("threshold", threshold, settings.threshold),
                                ("refractory period (s)", refractory_s, settings.refractory_s),
                                ("smoothing (windows)", smooth, settings.smooth_windows)):
        if given is not None and given != stored:
            on_note(f"{what} {given} from the command line, overriding {stored} of "
                    "detector.json")
    if threshold is not None and settings.thresholds:
        on_note(f"threshold {threshold} for every keyword: detector.json's own for "
                + ", ".join(f"{w} {t}" for w, t in sorted(settings.thresholds.items()))
                + " not used")
    decides = board_detector(model, board, python, on_note)
    host = None if decides else detector_for(model, schedule, settings, threshold=threshold,
                                              smooth=smooth, refractory_s=refractory_s)
    runner, maker = WindowRunner(model.int_model, schedule), FrameMaker(cfg)
    frames = windows = mismatches = bad_decisions = 0
    cycles: list[int] = []
    ends: list[int] = []        # cycles of the frames that end a window (the detector's too)
    steady: list[int] = []      # of the others once every instance runs
    found: dict[str, list[Detection]] = {"board": [], "python": []}
    best = None
    try:
        for chunk in chunks:
            for feat in maker.push(chunk):
                x = model.quantize(feat[None])[0]
                got = board.listen(x, reset=frames == 0)
                want = runner.push(x)
                frames += 1
                cycles.append(got.cycles)
                if got.pooled is not None:
                    ends.append(got.cycles)
                elif frames > schedule.period:
                    steady.append(got.cycles)
                if want is None and got.pooled is None:
                    continue
                windows += 1
                if want is None or got.pooled is None or not np.array_equal(want, got.pooled):
                    mismatches += 1
                    continue
                t = ((frames - 1) * cfg.hop_length + cfg.win_length) / cfg.sample_rate
                mine = python.push(want, t)
                if mine:
                    found["python"].append(mine)
                if decides:
                    dec = got.decision
                    if not _same(python.last, dec):
                        bad_decisions += 1
                    theirs = None
                    if dec is not None and dec.best != NONE:
                        score = dec.best_sum / max(dec.windows, 1) / ONE
                        if best is None or score > best.score:
                            best = Detection(round(t, 3), model.classes[dec.best], score)
                    if dec is not None and dec.fired != NONE:
                        theirs = Detection(round(t, 3), model.classes[dec.fired],
                                           dec.fired_sum / max(dec.windows, 1) / ONE)
                else:
                    theirs = host.push(got.pooled, t)
                    best = host.best
                if theirs:
                    found["board"].append(theirs)
                    agree = any(abs(p.time_s - theirs.time_s) < 1e-9 and p.word == theirs.word
                                for p in found["python"])
                    on_detection(f"{theirs.time_s:8.2f} s  {theirs.word:<6} {theirs.score:.2f}"
                                 f"  (python: {'same' if agree else 'differs'})")
    except KeyboardInterrupt:
        pass
    return {"frames": frames, "seconds": round(frames * cfg.hop_length / cfg.sample_rate, 2),
            "windows": windows, "mismatched_windows": mismatches,
            "board_decides": decides, "mismatched_decisions": bad_decisions,
            "threshold": python.threshold, "thresholds": python.thresholds,
            "smooth_windows": python.smooth, "refractory_windows": python.refractory,
            "instances": schedule.instances,
            "cycles_per_frame": _spread(cycles),
            "cycles_window_end": _spread(ends),     # steps of every instance + the detector
            "cycles_steady": _spread(steady),       # steps of every instance
            "detections": [d.__dict__ for d in found["board"]],
            "best": best.__dict__ if best else None,
            "python_detections": [d.__dict__ for d in found["python"]]}
