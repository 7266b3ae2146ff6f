"""`kws eval`: accuracy of a shipped model on any Speech Commands folder, float and integer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kws.frontend.cache import compute_features
from kws.config import DataConfig
from kws.data.dataset import load_dataset
from kws.data.tasks import task_of_classes
from kws.errors import KwsError
from kws.quant.modelfile import ShippedModel, load_model


def float_model(shipped: ShippedModel):
    from kws.training.model import FastGRNN

    a = shipped.doc["model"]
    m = FastGRNN(a["n_in"], a["hidden"], a["rank_w"], a["rank_u"], a["n_classes"],
                 weight_bits=a["weight_bits"], qx=a["qx"])
    m.load_float_weights({k: torch.from_numpy(v) for k, v in shipped.float_weights().items()})
    return m.eval()


def folders(data) -> list[Path]:
    """A data folder, or several that form one data set, as a list."""
    return [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])]


def data_config_for(shipped: ShippedModel, data) -> DataConfig:
    """The training split settings on the training folders (so `testing` means the held-out
    speakers); otherwise the folder's own official split. Every clip of a class counts."""
    try:
        task = task_of_classes(shipped.classes)
    except ValueError as e:
        raise KwsError(f"{shipped.folder}: {e}") from None
    stored = shipped.doc.get("training", {}).get("data_config")
    trained_on = shipped.doc.get("training", {}).get("data") or []
    trained_on = [trained_on] if isinstance(trained_on, str) else trained_on
    if stored and all(d.resolve() in [Path(t).resolve() for t in trained_on]
                      for d in folders(data)):
        # one of the training folders: the split is a function of the speaker alone, so the
        # held-out speakers of this folder are the same with or without the others
        return DataConfig(**dict(stored, unknown_pct=None))
    return DataConfig(task=task.name, keywords=task.chosen, unknown_pct=None)


def split_clips(shipped: ShippedModel, data, split: str):
    """(dataset, clips of `split`) of a data folder (or a list of them), labelled for the
    model's task."""
    dataset = load_dataset(folders(data), data_config_for(shipped, data))
    name = ", ".join(map(str, folders(data)))
    if list(dataset.task.classes) != shipped.classes:
        raise KwsError(f"{name}: task classes differ from the model's")
    clips = dataset.clips if split == "all" else dataset.split(split)
    if not clips:
        raise KwsError(f"{name}: no clips in split {split!r} ({dataset.split_source})")
    return dataset, clips


def speaker_interval(correct: np.ndarray, speakers: list[str], level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of an accuracy, resampling speakers (not clips) with replacement:
    one speaker's clips are not independent trials, so clips would give too narrow a range.
    Seeded: the same answers give the same interval."""
    if len(correct) == 0:
        return float("nan"), float("nan")
    names, index = np.unique(np.asarray(speakers), return_inverse=True)
    hits = np.bincount(index, weights=np.asarray(correct, np.float64), minlength=len(names))
    counts = np.bincount(index, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(n_boot, len(names)))
    acc = hits[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(acc, tail)), float(np.percentile(acc, 100 - tail))


def evaluate(model_dir: Path, data, split: str = "testing", skip_bad: bool = False) -> dict:
    """Clip accuracy of a shipped model on one split of a data folder (or several)."""
    shipped = load_model(model_dir)
    dataset, clips = split_clips(shipped, data, split)
    fs = compute_features(clips, dataset.root, shipped.features, Path("data/cache"), skip_bad)
    y = dataset.labels(fs.clips)
    pool = shipped.pool_frames
    pred_int = shipped.int_model.run(shipped.quantize(fs.features))[:, -pool:].mean(1).argmax(1)
    with torch.no_grad():
        x = torch.from_numpy((fs.features - shipped.mean) / shipped.std)
        pred_float = float_model(shipped)(x)[:, -pool:].mean(1).argmax(1).numpy()
    n = len(shipped.classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y, pred_int), 1)
    per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, c in enumerate(shipped.classes)}
    speakers = [c.speaker for c in fs.clips]
    return {
        "model": shipped.name, "model_hash": shipped.hash,
        "data": ", ".join(map(str, folders(data))),
        "split": split, "split_rule": dataset.split_source,
        "n_clips": int(len(y)), "skipped_bad": len(fs.bad),
        "accuracy_float": float((pred_float == y).mean()),
        "accuracy_int": float((pred_int == y).mean()),
        "interval_float": speaker_interval(pred_float == y, speakers),
        "interval_int": speaker_interval(pred_int == y, speakers),
        "speakers": len(set(speakers)),
        "model_bytes": shipped.n_bytes,
        "per_class_accuracy": per_class,
        "classes": shipped.classes,
        "confusion_matrix": confusion.tolist(),
        "other_words": other_words(fs.clips, y, pred_int, shipped.classes, dataset.task.other),
    }


def other_words(clips, y: np.ndarray, pred: np.ndarray, classes: list[str],
                other: str | None) -> dict[str, dict]:
    """The other class (`_unknown_`) word by word: its clips, how many the model got right,
    and what it heard the others as ({word: {"clips", "correct", "heard_as": {class: n}}})."""
    if other is None:
        return {}
    k = classes.index(other)
    out: dict[str, dict] = {}
    for clip, truth, guess in zip(clips, y, pred):
        if truth != k:
            continue
        row = out.setdefault(clip.word, {"clips": 0, "correct": 0, "heard_as": {}})
        row["clips"] += 1
        if guess == k:
            row["correct"] += 1
        else:
            row["heard_as"][classes[guess]] = row["heard_as"].get(classes[guess], 0) + 1
    return dict(sorted(out.items()))


def pooled_other_words(reports: list[dict]) -> dict[str, dict]:
    """`other_words` of several reports (the folds of a cross-validation), added up."""
    out: dict[str, dict] = {}
    for r in reports:
        for word, row in r.get("other_words", {}).items():
            acc = out.setdefault(word, {"clips": 0, "correct": 0, "heard_as": {}})
            acc["clips"] += row["clips"]
            acc["correct"] += row["correct"]
            for c, n in row["heard_as"].items():
                acc["heard_as"][c] = acc["heard_as"].get(c, 0) + n
    return dict(sorted(out.items()))


def format_other_words(words: dict[str, dict], top: int = 3) -> list[str]:
    """One line a word, the worst heard first: clips, accuracy, what it was heard as."""
    lines = []
    for word, row in sorted(words.items(), key=lambda t: (t[1]["correct"] / t[1]["clips"], t[0])):
        heard = sorted(row["heard_as"].items(), key=lambda t: (-t[1], t[0]))[:top]
        lines.append(f"  {word:<22}{row['clips']:>5}  {row['correct'] / row['clips']:.2f}"
                     + (f"  heard as {', '.join(f'{c} {n}' for c, n in heard)}" if heard else ""))
    return lines


def _interval(r: dict, kind: str) -> str:
    lo, hi = r.get(f"interval_{kind}", (float("nan"),) * 2)
    return f"[95 % {lo:.4f}..{hi:.4f}, {r.get('speakers', '?')} speakers]"


def format_report(r: dict) -> str:
    lines = [f"model {r['model']} ({r['model_bytes']} bytes, hash {r['model_hash'][:16]})",
             f"data {r['data']} split {r['split']} [{r['split_rule']}]: {r['n_clips']} clips"
             + (f", {r['skipped_bad']} bad skipped" if r["skipped_bad"] else ""),
             f"accuracy_float {r['accuracy_float']:.4f} {_interval(r, 'float')}   "
             f"accuracy_int {r['accuracy_int']:.4f} {_interval(r, 'int')}",
             "", "confusion matrix (rows: true class, columns: integer model's answer)"]
    names = [c.strip("_")[:5] for c in r["classes"]]
    lines.append(" " * 8 + "".join(f"{n:>6}" for n in names) + "   acc")
    for name, row, acc in zip(names, r["confusion_matrix"], r["per_class_accuracy"].values()):
        lines.append(f"{name:<8}" + "".join(f"{v:>6}" for v in row)
                     + (f"  {acc:.2f}" if acc is not None else "     -"))
    if r.get("other_words"):
        lines += ["", "the other class word by word (clips, integer accuracy, heard as)"]
        lines += format_other_words(r["other_words"])
    return "\n".join(lines)
