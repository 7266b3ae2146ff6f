"""The detector and its settings: window outputs in, detections out, and the one owner of the
model folder's detector.json (the listening settings).

    s = load_settings(model)           # DetectorSettings: threshold, instances, smoothing, ...
    save_settings(folder, s)            # what `kws eval --stream` chose
    settings_hash(model)                # sha256 of the settings, reported beside the model hash

The settings decide the firmware's stream schedule (its `instances`: kws.codegen builds the
sketch with them), the board's own detector (firmware/kernel/kws_detect.c, compiled with
`Detector.constants()`) and the detector of `kws stream` / `kws eval --stream` (threshold,
per-keyword thresholds, smoothing, refractory period). The `Detector` decides in integers
only, exactly as the board does (module kws.detect.posterior for the softmax). The model hash
(kws.quant.modelfile) covers the integer model only, as it always has (the board reports it;
changing it would change every shipped model's identity); the settings have their own hash,
the "listening settings hash", printed beside it and reported by the board (DETECT).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws.data.tasks import keyword_indices
from kws.errors import KwsError
from kws.detect.posterior import ONE, Posterior

FILE = "detector.json"


@dataclass(frozen=True)
class DetectorSettings:
    threshold: float = 0.7        # a keyword fires when its smoothed posterior reaches this
    instances: int = 2            # K: windows in flight (kws.detect.windows.Schedule)
    smooth_windows: int = 1       # posteriors averaged over the last N windows
    refractory_s: float = 1.0     # after a detection, nothing fires for this long
    chosen_by: str = ""           # where the values came from (not hashed)
    thresholds: dict = field(default_factory=dict)   # per keyword, overriding `threshold`

    def hashed(self) -> dict:
        """The fields that change behaviour, canonical (per-keyword thresholds only when there
        are some, so the hash of settings without them is what it always was)."""
        out = {"threshold": float(self.threshold), "instances": int(self.instances),
               "smooth_windows": int(self.smooth_windows),
               "refractory_s": float(self.refractory_s)}
        if self.thresholds:
            out["thresholds"] = {str(k): float(v) for k, v in sorted(self.thresholds.items())}
        return out


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
            chosen_by=str(doc.get("chosen_by", "")),
            thresholds={str(k): float(v) for k, v in doc.get("thresholds", {}).items()})
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
    doc = dataclasses.asdict(settings)
    if not doc["thresholds"]:       # files without per-keyword thresholds stay as they were
        del doc["thresholds"]
    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return path


def settings_hash(model) -> str:
    """sha256 of the canonical listening settings (the defaults when there is no file)."""
    return hash_of(load_settings(model))


def hash_of(settings: DetectorSettings) -> str:
    blob = json.dumps(settings.hashed(), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --- the detector ------------------------------------------------------------------------------

NONE = 0xFF              # no class (the firmware's KWS_DET_NONE)
NEVER = 0xFFFF           # a Q15 threshold no posterior reaches
SINCE_MAX = 0xFFFF       # the windows-since-the-last-detection counter saturates here


def q15_threshold(threshold: float) -> int:
    """The integer threshold T with p / 32768 >= threshold <=> p >= T for every Q15 posterior p
    (ceil(threshold * 32768): the multiplication by a power of two is exact); NEVER above 1."""
    t = math.ceil(float(threshold) * ONE)
    return NEVER if t > ONE else max(t, 0)


@dataclass
class Detection:
    time_s: float      # end of the window that fired, from the start of the stream
    word: str
    score: float       # smoothed posterior


@dataclass(frozen=True)
class Decision:
    """What the detector made of one window (the board reports the same fields, LISTEN)."""
    best: int          # keyword with the highest smoothed sum (first of equals)
    best_sum: int      # its sum of Q15 posteriors over the last `windows` windows
    fired: int         # keyword that fired, or NONE
    fired_sum: int     # its sum (0 if none)
    windows: int       # windows in the sums: min(windows seen, smooth)
    led: int           # the detection pin: 1 from a detection until the refractory period ends


def posteriors(pooled: np.ndarray, scale: float) -> np.ndarray:
    """Q15 posteriors [windows, classes] (int64) of pooled integer scores whose logits are
    pooled * scale: the integer softmax of kws.detect.posterior, as the board computes it."""
    return Posterior.for_scale(scale)(pooled)


class Detector:
    """Window outputs in, detections out (the same code for `kws stream` and `kws eval --stream`),
    in integers only, as firmware/kernel/kws_detect.c decides on the board:

    - each window's Q15 posterior (kws.detect.posterior) is summed over the last `smooth`
      windows (fewer at the start: m = windows so far), per class;
    - keyword k reaches its threshold t_k when sum_k >= T_k * m, T_k = ceil(t_k * 32768)
      (`q15_threshold`): exactly "mean posterior >= t_k" for the Q15 posteriors;
    - the keyword that fires is the one with the highest sum among those that reach their
      threshold (first of equals), unless fewer than `refractory` windows
      (round(refractory_s / stride_s)) have ended since the last detection;
    - the detection pin (`Decision.led`) is on from a detection until the refractory period
      (at least one window) is over.

    Against the float detector it replaces: the mean of float posteriors compared with a
    float threshold becomes the same comparison on Q15 posteriors (rounding: see
    kws.detect.posterior); with one threshold for all keywords the rule is the old one
    (the best keyword fires if it reaches the threshold).
    """

    def __init__(self, classes: list[str], scale: float, window_s: float, stride_s: float,
                 smooth: int = 1, threshold: float = 0.7, refractory_s: float = 1.0,
                 thresholds: dict | None = None):
        self.classes, self.scale = list(classes), scale
        self.window_s, self.stride_s = window_s, stride_s
        self.keywords = keyword_indices(classes)
        if len(classes) >= NONE:
            raise KwsError(f"{len(classes)} classes: the detector handles at most {NONE - 1}")
        unknown = set(thresholds or {}) - {classes[i] for i in self.keywords}
        if unknown:
            raise KwsError(f"thresholds for {', '.join(sorted(unknown))}: not keywords of "
                           f"this model ({', '.join(classes[i] for i in self.keywords)})")
        if not 1 <= int(smooth) <= 255:
            raise KwsError(f"smoothing over {smooth} windows: expected 1 .. 255")
        self.threshold = threshold
        self.thresholds = {c: float((thresholds or {}).get(c, threshold)) for c in
                           (classes[i] for i in self.keywords)}
        self.q15 = np.array([q15_threshold(self.thresholds[c]) if c in self.thresholds
                             else NEVER for c in classes], np.int64)
        self.refractory = round(refractory_s / stride_s)
        if not 0 <= self.refractory < SINCE_MAX:
            raise KwsError(f"refractory period of {self.refractory} windows: expected "
                           f"0 .. {SINCE_MAX - 1}")
        self.smooth = int(smooth)
        self.posterior = Posterior.for_scale(scale)
        self.recent: deque = deque(maxlen=self.smooth)
        self.since = SINCE_MAX
        self.last: Decision | None = None     # the last window's decision
        self.best: Detection | None = None    # the highest keyword score so far, fired or not

    @staticmethod
    def args_for(model, schedule, **kw) -> dict:
        """Constructor arguments for a shipped model listening with `schedule`."""
        cfg = model.features
        return dict(classes=model.classes,
                    scale=2.0 ** -model.int_model.score_q() / schedule.pool,
                    window_s=((schedule.period - 1) * cfg.hop_length + cfg.win_length)
                    / cfg.sample_rate,
                    stride_s=schedule.stride * cfg.hop_length / cfg.sample_rate, **kw)

    def constants(self) -> dict[str, int | str]:
        """The values firmware/kernel/kws_detect.c is compiled with (kws_config.h)."""
        flags = [1 if i in self.keywords else 0 for i in range(len(self.classes))]
        return {"KWS_DET_SMOOTH": self.smooth, "KWS_DET_REFRACTORY": self.refractory,
                "KWS_DET_THRESHOLDS": "{ " + ", ".join(str(int(t)) for t in self.q15) + " }",
                "KWS_DET_KEYWORDS": "{ " + ", ".join(map(str, flags)) + " }",
                **self.posterior.constants()}

    def reset(self) -> None:
        """Listening anew (LISTEN's RESET flag): no history, no refractory period."""
        self.recent.clear()
        self.since = SINCE_MAX
        self.last = None

    def push(self, pooled: np.ndarray, time_s: float) -> Detection | None:
        """Feed one window's pooled integer scores; returns a detection or None."""
        return self.decide(self.posterior(np.asarray(pooled)[None])[0], time_s)

    def decide(self, p: np.ndarray, time_s: float) -> Detection | None:
        """Feed one window's Q15 posteriors (`posteriors`); returns a detection or None."""
        self.recent.append(np.asarray(p, np.int64))
        m = len(self.recent)
        sums = np.sum(self.recent, axis=0)
        best = fired = NONE
        for i in self.keywords:
            if best == NONE or sums[i] > sums[best]:
                best = i
            if sums[i] >= self.q15[i] * m and (fired == NONE or sums[i] > sums[fired]):
                fired = i
        if self.since < SINCE_MAX:
            self.since += 1
        if fired != NONE and self.since < self.refractory:
            fired = NONE
        if fired != NONE:
            self.since = 0
        led = int(self.since < max(self.refractory, 1))
        self.last = Decision(best, int(sums[best]) if best != NONE else 0, fired,
                             int(sums[fired]) if fired != NONE else 0, m, led)
        if best == NONE:
            return None
        score = float(sums[best]) / m / ONE
        if self.best is None or score > self.best.score:
            self.best = Detection(round(time_s, 3), self.classes[best], score)
        if fired == NONE:
            return None
        return Detection(round(time_s, 3), self.classes[fired], float(sums[fired]) / m / ONE)


def detector_for(model, schedule, settings: DetectorSettings | None = None, **overrides
                 ) -> Detector:
    """The detector of a shipped model listening with `schedule`, with its stored settings
    (detector.json) unless `settings` is given; `overrides`: threshold, smooth, refractory_s.
    A threshold given here is every keyword's (the per-keyword ones of the settings go)."""
    s = settings or load_settings(model)
    kw = dict(smooth=s.smooth_windows, threshold=s.threshold, refractory_s=s.refractory_s,
              thresholds=s.thresholds)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("threshold") is not None and "thresholds" not in overrides:
        kw["thresholds"] = {}
    return Detector(**Detector.args_for(model, schedule, **kw))
