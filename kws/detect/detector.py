"""The detector and its settings: window outputs in, detections out, and the one owner of the
model folder's detector.json (the listening settings).

    s = load_settings(model)           # DetectorSettings: threshold, instances, smoothing, ...
    save_settings(folder, s)            # what `kws eval --stream` chose
    settings_hash(model)                # sha256 of the settings, reported beside the model hash

The settings decide the firmware's stream schedule (its `instances`: kws.codegen builds the
sketch with them) and the detector of `kws stream` / `kws eval --stream` (threshold, smoothing,
refractory period). The model hash (kws.quant.modelfile) covers the integer model only, as it
always has (the board reports it; changing it would change every shipped model's identity);
the settings have their own hash, the "listening settings hash", printed beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.data.tasks import keyword_indices
from kws.errors import KwsError
from kws.quant.arith import QH

FILE = "detector.json"


@dataclass(frozen=True)
class DetectorSettings:
    threshold: float = 0.7        # a keyword fires when its smoothed posterior reaches this
    instances: int = 2            # K: windows in flight (kws.detect.windows.Schedule)
    smooth_windows: int = 1       # posteriors averaged over the last N windows
    refractory_s: float = 1.0     # after a detection, nothing fires for this long
    chosen_by: str = ""           # where the values came from (not hashed)

    def hashed(self) -> dict:
        """The fields that change behaviour, canonical."""
        return {"threshold": float(self.threshold), "instances": int(self.instances),
                "smooth_windows": int(self.smooth_windows),
                "refractory_s": float(self.refractory_s)}


DEFAULTS = DetectorSettings()
DEFAULT_SETTINGS = {"threshold": DEFAULTS.threshold, "instances": DEFAULTS.instances}


def _path(model) -> Path | None:
    folder = model if isinstance(model, (str, Path)) else getattr(model, "folder", None)
    return Path(folder) / FILE if folder else None


def load_settings(model) -> DetectorSettings:
    """The listening settings of a model (a ShippedModel or its folder): its detector.json,
    written by `kws eval --stream`, else the defaults."""
    path = _path(model)
    if path is None or not path.exists():
        return DEFAULTS
    try:
        doc = json.loads(path.read_text())
        return DetectorSettings(
            threshold=float(doc["threshold"]), instances=int(doc["instances"]),
            smooth_windows=int(doc.get("smooth_windows", DEFAULTS.smooth_windows)),
            refractory_s=float(doc.get("refractory_s", DEFAULTS.refractory_s)),
            chosen_by=str(doc.get("chosen_by", "")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KwsError(f"{path}: not a readable detector file ({e})") from None


def stored_settings(model) -> dict:
    """The listening settings chosen by `kws eval --stream` (the model folder's
    detector.json), or the defaults when there are none: threshold and instances."""
    s = load_settings(model)
    return {"threshold": s.threshold, "instances": s.instances}


def save_settings(folder, settings: DetectorSettings) -> Path:
    """Write a model folder's detector.json."""
    from kws.atomic import atomic_open

    path = Path(folder) / FILE
    with atomic_open(path, "w") as f:
        json.dump(dataclasses.asdict(settings), f, indent=1)
    return path


def settings_hash(model) -> str:
    """sha256 of the canonical listening settings (the defaults when there is no file)."""
    blob = json.dumps(load_settings(model).hashed(), sort_keys=True,
                      separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --- the detector ------------------------------------------------------------------------------

@dataclass
class Detection:
    time_s: float      # end of the window that fired, from the start of the stream
    word: str
    score: float       # smoothed posterior


def posteriors(pooled: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over classes of pooled integer scores [windows, classes] times `scale`."""
    logits = np.asarray(pooled, np.float64) * scale
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


class Detector:
    """Window outputs in, detections out (the same code for `kws stream` and `kws eval --stream`).

    Each window's posterior (softmax of its mean pooled scores) is averaged over the last
    `smooth` windows; a keyword fires when its average reaches `threshold`, and then nothing
    fires for `refractory_s` (counted in windows, so no float drift).
    """

    def __init__(self, classes: list[str], scale: float, window_s: float, stride_s: float,
                 smooth: int = 1, threshold: float = 0.7, refractory_s: float = 1.0):
        self.classes, self.scale = classes, scale
        self.window_s, self.stride_s = window_s, stride_s
        self.keywords = keyword_indices(classes)
        self.threshold = threshold
        self.refractory = round(refractory_s / stride_s)
        self.recent: deque = deque(maxlen=smooth)
        self.n, self.last = 0, -(10 ** 9)
        self.best: Detection | None = None   # the highest keyword score so far, fired or not

    @staticmethod
    def args_for(model, schedule, **kw) -> dict:
        """Constructor arguments for a shipped model listening with `schedule`."""
        cfg = model.features
        return dict(classes=model.classes,
                    scale=2.0 ** -(model.int_model.exponents["Wc"] + QH) / schedule.pool,
                    window_s=((schedule.period - 1) * cfg.hop_length + cfg.win_length)
                    / cfg.sample_rate,
                    stride_s=schedule.stride * cfg.hop_length / cfg.sample_rate, **kw)

    def push(self, pooled: np.ndarray, time_s: float) -> Detection | None:
        """Feed one window's pooled integer scores; returns a detection or None."""
        return self.decide(posteriors(np.asarray(pooled)[None], self.scale)[0], time_s)

    def decide(self, p: np.ndarray, time_s: float) -> Detection | None:
        self.recent.append(p)
        self.n += 1
        smoothed = np.mean(self.recent, axis=0)
        best = max(self.keywords, key=lambda i: smoothed[i])
        if self.best is None or smoothed[best] > self.best.score:
            self.best = Detection(round(time_s, 3), self.classes[best], float(smoothed[best]))
        if smoothed[best] >= self.threshold and self.n - self.last >= self.refractory:
            self.last = self.n
            return Detection(round(time_s, 3), self.classes[best], float(smoothed[best]))
        return None
