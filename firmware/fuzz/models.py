"""model_data.h and kws_config.h for each fuzz configuration (firmware/fuzz/Makefile runs
this into build/).

    .venv/bin/python firmware/fuzz/models.py OUT_DIR
        OUT_DIR/<model>/model_data.h            (kws.codegen.export.model_header)
        OUT_DIR/config/<config>/kws_config.h     (kws.codegen.export.config_header)

Models:
  shipped   models/default exactly as `kws export` writes it (its name, hash and classes):
            int8 dense, 32 bins, hidden 24, 12 classes. The `shipped` (1 frame per INFER, as
            on the Uno) and `frames4` (4 frames: a reply with the hidden state no longer fits
            255 bytes) fuzzers use it.
  names35   a random int4 sparse model with 35 classes and long class names (the IDENTIFY
            name list is cut to fit one frame), 32 bins as well, so the seeds fit every
            configuration (firmware/tests/golden.py's random_model).

Configurations: every one compiles LISTEN and the detector (a KWS_STREAM_* schedule and the
KWS_DET_* constants in its kws_config.h, written by the same config_header as a sketch's;
`detectors` for the detector settings):
  shipped   models/default, 1 frame per INFER, the schedule `kws export` builds the sketch with
            (kws.codegen.export.listen_schedule: Schedule.for_model(model, 2): P 50, K 2, pool 5)
  frames4   models/default, 4 frames per INFER, P 3, K 1, pool 3: one instance restarted
            every 3 frames, every frame pooled
  names35   names35, 1 frame per INFER, P 6, K 3, pool 4: a window ends every 2 frames, the
            pooled frames span other instances' restarts
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kws.data.dataset import TASKS  # noqa: E402
from kws.codegen.export import config_header, listen_schedule, model_header  # noqa: E402
from kws.quant.modelfile import load_model  # noqa: E402
from kws.paths import firmware_module  # noqa: E402
from kws.detect.windows import Schedule  # noqa: E402
from kws.detect.detector import (Detector, DetectorSettings, detector_for, hash_of,  # noqa: E402
                                 settings_hash)
from kws.quant.arith import QH  # noqa: E402


def _shipped():
    return load_model(REPO / "models" / "default")


def _names35():
    sparse = dict.fromkeys(("W1", "W2", "U1", "U2"), 0.25)
    return firmware_module("tests/golden.py").random_model(3, 4, hidden=17, rank_w=5, rank_u=3,
                                                           n_classes=35, density=sparse)


def headers() -> dict[str, str]:
    shipped = _shipped()
    out = {"shipped": model_header(shipped.int_model, name=shipped.name,
                                   model_hash=shipped.hash, classes=shipped.classes,
                                   features=shipped.features,
                                   pool_frames=shipped.pool_frames)}
    words = [f"{w}_keyword" for w in TASKS["35"].classes]
    out["names35"] = model_header(_names35(), name="names35",
                                  model_hash="0123456789abcdef" * 4, classes=words)
    return out


def schedules() -> dict[str, Schedule]:
    """The LISTEN schedule of each fuzz configuration."""
    return {"shipped": listen_schedule(_shipped()),
            "frames4": Schedule(period=3, instances=1, pool=3),
            "names35": Schedule(period=6, instances=3, pool=4)}


FRAMES = {"shipped": 1, "frames4": 4, "names35": 1}  # KWS_PROTO_MAX_FRAMES


def detectors() -> dict[str, tuple[Detector, str]]:
    """The detector (and settings hash) each fuzz configuration is built with: shipped, the one
    `kws export` compiles from models/default's detector.json; frames4, smoothing over 3
    windows, a low threshold (0.3, "yes" 0.05) and a refractory period of 2 windows; names35
    (the 35 Speech Commands words as classes: 10 of them keywords), 2 windows, 0.1, none."""
    shipped = _shipped()
    s = schedules()

    def scale(im, schedule):
        return 2.0 ** -(im.exponents["Wc"] + QH) / schedule.pool

    out = {"shipped": (detector_for(shipped, s["shipped"]), settings_hash(shipped))}
    f4 = DetectorSettings(threshold=0.3, smooth_windows=3, refractory_s=2.0,
                          thresholds={"yes": 0.05})
    out["frames4"] = (Detector(shipped.classes, scale(shipped.int_model, s["frames4"]), 1.0, 1.0,
                               smooth=3, threshold=0.3, refractory_s=2.0,
                               thresholds={"yes": 0.05}), hash_of(f4))
    n35 = DetectorSettings(threshold=0.1, smooth_windows=2, refractory_s=0.0)
    out["names35"] = (Detector(list(TASKS["35"].classes), scale(_names35(), s["names35"]), 1.0,
                               1.0, smooth=2, threshold=0.1, refractory_s=0.0), hash_of(n35))
    return out


def configs() -> dict[str, str]:
    """kws_config.h of each fuzz configuration."""
    dets = detectors()
    return {c: config_header(None, FRAMES[c], s, *dets[c]) for c, s in schedules().items()}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:  # keep mtimes: no needless rebuilds
        path.write_text(text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    for name, text in headers().items():
        _write(root / name / "model_data.h", text)
    for name, text in configs().items():
        _write(root / "config" / name / "kws_config.h", text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
