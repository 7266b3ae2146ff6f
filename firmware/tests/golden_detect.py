"""Golden vectors for the host C test of the detector (firmware/tests/test_detect.c).

For each case, a folder with a `model_data.h` of the case's class count (the detector needs
only KWS_N_CLASSES from it), the `kws_config.h` a sketch gets (kws.codegen.export.config_header
with the case's Detector: its exp2 table, shifts, thresholds, smoothing, refractory period) and
`golden.bin`: window outputs and, per window, what the Python detector
(kws.detect.detector.Detector) makes of them: the Q15 posteriors and the decision.

    .venv/bin/python firmware/tests/golden_detect.py OUT_DIR    # OUT_DIR/<case>/ per case

Inputs: synthetic logits (noise, keyword bursts of 1-6 windows, near ties), rows at the
extremes (int32 limits, all equal, gaps either side of the softmax's clamp), and the shipped
model's pooled scores on the test clips (models/default on tests/fixtures/sc_mini, if both
are there). Cases: the shipped settings; smoothing with per-keyword thresholds and a
refractory period; long smoothing without one; a huge and a tiny score scale; no keywords.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kws.codegen.export import config_header, model_header  # noqa: E402
from kws.detect.detector import Detector  # noqa: E402
from kws.quant.intmodel import IntModel  # noqa: E402

I32 = (-(1 << 31), (1 << 31) - 1)
SHIPPED_CLASSES = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                   "_silence_", "_unknown_"]


def class_model(n_classes: int) -> IntModel:
    """The smallest integer model with n_classes outputs (for its model_data.h)."""
    shapes = {"W1": (1, 1), "W2": (1, 1), "U1": (1, 1), "U2": (1, 1), "Wc": (n_classes, 1),
              "bz": (1,), "bc": (1,), "bcls": (n_classes,)}
    arrays = {k: np.ones(s, np.int64) for k, s in shapes.items()}
    return IntModel(1, 1, 1, 1, n_classes, 5, 8, arrays, dict.fromkeys(shapes, 7), 9000, 300)


def synthetic(det: Detector, seed: int, n: int = 300) -> np.ndarray:
    """Pooled scores [n, classes]: noise logits with keyword bursts, near ties, extremes."""
    rng = np.random.default_rng(seed)
    c = len(det.classes)
    logits = rng.normal(0, 2.5, (n, c))
    kws = det.keywords or list(range(c))
    for start in rng.integers(0, n - 8, n // 12):
        logits[start:start + rng.integers(1, 7), rng.choice(kws)] += rng.uniform(2, 14)
    pooled = np.clip(np.round(logits / det.scale), *I32).astype(np.int64)
    ties = pooled[::17].copy()
    ties[:, :2] = ties[:, :1].max(axis=1, keepdims=True)
    post = det.posterior
    edge = []
    for d in ((post.clamp << post.shift_r) + (1 << post.shift_r) - 1,
              (post.clamp + 1) << post.shift_r, 1, (1 << 32) - 1):
        if d <= (1 << 32) - 1:
            row = np.full(c, I32[1] - d)
            row[0] = I32[1]
            edge.append(row)
    edge += [np.full(c, I32[0]), np.full(c, I32[1]), np.where(np.arange(c) % 2, I32[0], I32[1])]
    return np.concatenate([pooled, ties, np.array(edge, np.int64), pooled[:40]])


def shipped_windows() -> np.ndarray | None:
    """models/default's pooled scores on the test clips, one after another (None without)."""
    clips = sorted((REPO / "tests" / "fixtures" / "sc_mini").glob("[a-z]*/*.wav"))
    if not (REPO / "models" / "default" / "model.json").exists() or not clips:
        return None
    from kws.codegen.export import clip_frames
    from kws.detect.windows import Schedule, run_windows
    from kws.quant.modelfile import load_model

    model = load_model(REPO / "models" / "default")
    x = clip_frames(model, clips[:60]).reshape(-1, model.int_model.n_in)
    return run_windows(model.int_model, x, Schedule.for_model(model, 2))


def cases() -> list[tuple[str, Detector, np.ndarray]]:
    shipped_scale = 2.0 ** -(4 + 15) / 5     # models/default: Wc exponent 4, QH 15, pool 5
    kw = dict(window_s=1.0, stride_s=0.25)
    real = shipped_windows()
    out = []
    d = Detector(SHIPPED_CLASSES, shipped_scale, smooth=1, threshold=0.985, refractory_s=1.0, **kw)
    out.append(("shipped", d, synthetic(d, 0) if real is None else
                np.concatenate([real, synthetic(d, 0)])))
    d = Detector(SHIPPED_CLASSES, shipped_scale, smooth=3, threshold=0.6, refractory_s=0.75,
                 thresholds={"yes": 0.45, "go": 0.3, "stop": 1.0}, **kw)
    out.append(("smooth3", d, synthetic(d, 1) if real is None else
                np.concatenate([synthetic(d, 1), real])))
    d = Detector(SHIPPED_CLASSES, shipped_scale, smooth=7, threshold=0.2, refractory_s=0.0, **kw)
    out.append(("smooth7", d, synthetic(d, 2)))
    d = Detector(["yes", "no", "_silence_", "_unknown_"], 1.0, smooth=2, threshold=0.5,
                 refractory_s=0.5, **kw)
    out.append(("scale1", d, synthetic(d, 3)))
    d = Detector(SHIPPED_CLASSES, 1e-9, smooth=1, threshold=0.25, refractory_s=0.25, **kw)
    out.append(("tinyscale", d, synthetic(d, 4)))
    d = Detector(["_silence_", "_unknown_", "_background_"], shipped_scale, threshold=0.5, **kw)
    out.append(("nokeyword", d, synthetic(d, 5)))
    return out


def expected(det: Detector, pooled: np.ndarray):
    """Per window: the Q15 posteriors and the Python detector's decision."""
    det.reset()
    post = det.posterior(pooled)
    decisions = []
    for p in post:
        det.decide(p, 0.0)
        decisions.append(det.last)
    return post, decisions


def write_case(folder: Path, det: Detector, pooled: np.ndarray, name: str = "case") -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = len(det.classes)
    (folder / "model_data.h").write_text(model_header(class_model(c), name=name,
                                                      model_hash="golden", classes=det.classes))
    (folder / "kws_config.h").write_text(config_header(detector=det, settings_hash="ab" * 32))
    post, decisions = expected(det, pooled)
    with open(folder / "golden.bin", "wb") as f:
        f.write(b"KWSD" + struct.pack("<2i", c, len(pooled)))
        for row, p, dec in zip(pooled, post, decisions):
            f.write(row.astype("<i4").tobytes() + p.astype("<u2").tobytes())
            f.write(struct.pack("<BBBBII", dec.fired, dec.best, dec.windows, dec.led,
                                dec.fired_sum, dec.best_sum))
    return folder / "golden.bin"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: golden_detect.py OUT_DIR", file=sys.stderr)
        return 2
    for name, det, pooled in cases():
        write_case(Path(argv[0]) / name, det, pooled, name)
        print(name, len(pooled))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
