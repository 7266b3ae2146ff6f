"""`kws mine`: hard negatives. The model listens to the training speakers' side of keyword-free
audio (running speech, other wake words) with the board's window schedule; the windows it
scores highest on a keyword are false accepts in the making. They are written as 1 s FLAC clips
for the next training run (`train.hard_negative_dirs`), labelled _unknown_ / _background_.

    kws mine --model models/wake_stop --negatives FOLDER ... --out data/mined/wake_stop-1

The set is a function of the model (its hash), the files and the settings: the same inputs
give the same clips, and a folder already mined with them is kept as it is (`mined.json`).
Only the `training` side of kws.data.dataset.negative_split is listened to, so the speakers
that false accepts are counted on stay unseen.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

MANIFEST = "mined.json"
VERSION = 2          # of the mining rule: a folder mined by another version is mined again


def mine(model, folders, out: Path, windows: int = 1000, min_score: float = 0.1,
         instances: int | None = None, progress=print) -> dict:
    """Write up to `windows` non-overlapping one-clip windows whose keyword posterior is
    highest (at least `min_score`) into `out`; returns the manifest."""
    import soundfile as sf

    from kws.atomic import atomic_open
    from kws.checks.streameval import negative_audio, stream_scores
    from kws.detect.detector import Detector, load_settings, posteriors
    from kws.detect.posterior import ONE
    from kws.detect.windows import Schedule
    from kws.frontend.cache import to_pcm
    from kws.data.tasks import keyword_indices

    out = Path(out)
    sr, n = model.features.sample_rate, model.features.clip_samples
    instances = instances or load_settings(model).instances
    audio, files, bounds = negative_audio(folders, sr, "training")
    key = {"version": VERSION, "model": model.name, "model_hash": model.hash, "side": "training",
           "files": [str(f) for f in files], "windows": windows, "min_score": min_score,
           "instances": instances}
    done = _read_manifest(out)
    if done is not None and {k: done.get(k) for k in key} == key:
        progress(f"{out}: already mined with this model and these files "
                 f"({len(done['clips'])} clips)")
        return done
    schedule = Schedule.for_model(model, instances)
    det_args = Detector.args_for(model, schedule)
    pooled, times = stream_scores(model, audio, schedule)
    post = posteriors(pooled, det_args["scale"])
    words = keyword_indices(model.classes)
    score = post[:, words].max(1) / ONE        # Q15 posteriors (the board's) as fractions
    best = np.array(words)[post[:, words].argmax(1)]
    starts = np.clip(np.round(times * sr).astype(np.int64) - n, 0, None)
    chosen: list[int] = []
    taken = np.zeros(len(audio) // max(n // 2, 1) + 2, bool)   # half-clip cells in use
    for i in np.argsort(-score, kind="stable"):
        if score[i] < min_score or len(chosen) >= windows:
            break
        cells = range(starts[i] // (n // 2), (starts[i] + n - 1) // (n // 2) + 1)
        if any(taken[c] for c in cells):
            continue                       # overlaps a window already chosen
        taken[list(cells)] = True
        chosen.append(int(i))
    tmp_dir = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    clips = []
    for rank, i in enumerate(chosen):
        k = int(np.searchsorted(bounds, starts[i], side="right") - 1)
        name = f"{rank:05d}_{files[k].stem}_{int((starts[i] - bounds[k]) * 1000 // sr)}ms.flac"
        sf.write(tmp_dir / name, to_pcm(audio[starts[i]:starts[i] + n]), sr, subtype="PCM_16")
        clips.append({"file": name, "source": str(files[k]),   # where the window begins
                      "start_s": round(float(starts[i] - bounds[k]) / sr, 3),
                      "stream_sample": int(starts[i]),   # in the files one after another
                      "word": model.classes[best[i]], "score": round(float(score[i]), 4)})
    doc = dict(key, clips=clips, hours=round(len(audio) / sr / 3600, 4),
               windows_scored=int(len(score)),
               above_min_score=int((score >= min_score).sum()))
    with atomic_open(tmp_dir / MANIFEST, "w") as f:
        json.dump(doc, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)      # the manifest is written last: a folder
    tmp_dir.rename(out)                         # without one was never finished
    return doc


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def format_mined(doc: dict) -> str:
    words = {}
    for c in doc["clips"]:
        words[c["word"]] = words.get(c["word"], 0) + 1
    top = doc["clips"][:1]
    return (f"mined {len(doc['clips'])} windows of {doc['windows_scored']} "
            f"({doc['hours'] * 60:.1f} min of training-side keyword-free audio, "
            f"{doc['above_min_score']} at or above {doc['min_score']}): "
            + ", ".join(f"{w} {k}" for w, k in sorted(words.items(), key=lambda kv: -kv[1]))
            + (f"; highest {top[0]['score']}" if top else ""))
