"""`kws sweep`: train several configs, then one table and one accuracy-vs-bytes picture.

Each config trains into `<out>/<name>/run` and ships into `<out>/<name>/model` (both resumable:
a finished run is reused, not retrained). Every model is then evaluated on the validation and
test splits of its own data, float and integer, and the results go to `<out>/table.md`,
`<out>/results.json` and `<out>/tradeoff.png`.

With `folds=k` (`kws sweep --folds 5`) it is a speaker cross-validation instead, the way
recipes are decided: every config is retrained k times (`data.folds`, `data.fold`; the final
test speakers are left out of all of them, see kws/data/dataset.py) into `<out>/<name>/fold<i>/`,
and scored on the fold's held-out speakers of the judge folder only (default: the config's
first data folder, the one with an official test set's distribution). A config with a float
teacher gets one teacher per fold, trained from each of `teacher_configs` on that fold's
training speakers, so no teacher has heard the speakers its student is scored on (several
configs: an ensemble, whose softened outputs the student learns from). The table gives the
fold mean and standard deviation, and per-class accuracies pooled over the folds: every fold
with a finished model, not only those this sweep trained (`--only-folds` shares the folds
between processes; the last to finish writes the row of all of them). With
`negatives` (folders of keyword-free audio) it also gives each fold model's false accepts per
hour on the held-out side of those recordings (`kws.data.dataset.negative_side`: the speakers
no `train.negative_dirs` crop came from) at one threshold, 2 windows in flight, no smoothing:
the listening cost of a recipe beside its clip accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

from kws.atomic import atomic_open, atomic_path
from kws.config import load_config
from kws.errors import KwsError


def _fastgrnn_config(path: Path):
    config = load_config(path)
    if config.model.arch != "fastgrnn":
        raise KwsError(f"{path}: a sweep compares shipped FastGRNN models only")
    return config


def n_classes(config) -> int:
    return len(config.data.vocabulary().classes)


def run_sweep(configs: list[Path], out: Path, progress=print) -> list[dict]:
    from kws.checks.evaluate import evaluate
    from kws.training.stability import run_problems
    from kws.training.ship import ship
    from kws.training.train import resolve_data, train

    rows = []
    for path in configs:
        name, config = Path(path).stem, _fastgrnn_config(path)
        folder = Path(out) / name
        model_dir = folder / "model"
        if not (model_dir / "model.json").exists():
            progress(f"== {name}: training")
            result = train(config, folder / "run", resume=True, progress=lambda *_: None)
            ship(result, config, name, model_dir)
        data = resolve_data(config)
        row = {"name": name, "config": str(path),
               "problems": run_problems(run_history(folder / "run"), n_classes(config))}
        for split in ("validation", "testing"):
            r = evaluate(model_dir, data, split=split)
            row.update(bytes=r["model_bytes"], **{f"{split}_float": r["accuracy_float"],
                                                  f"{split}_int": r["accuracy_int"],
                                                  f"{split}_clips": r["n_clips"]})
        rows.append(row)
        progress(f"== {name}: {row['bytes']} bytes, validation int {row['validation_int']:.4f},"
                 f" test int {row['testing_int']:.4f}")
    write_results(rows, Path(out))
    return rows


def run_history(run_dir: Path) -> list[dict]:
    """The per-epoch rows a run wrote (`metrics.csv`); empty when there are none."""
    import csv

    try:
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def stall_problems(rows: list[dict], sizes: bool = False) -> list[str]:
    """Every stalled run of a sweep's rows (their `problems`), and with `sizes` (the configs
    are one recipe at several budgets) every model below a smaller one (kws.training.stability)."""
    from kws.training.stability import size_problems

    out = [f"{r['name']}: {p}" for r in rows for p in r.get("problems", [])]
    if sizes:
        out += size_problems(rows, "int_mean" if "int_mean" in rows[0] else "validation_int")
    return out


def fold_config(config, folds: int, fold: int, teacher: str | tuple[str, ...] | None = None):
    """`config` as fold `fold` of a `folds`-fold cross-validation (with its fold's teacher,
    or teachers). `{fold}` in `train.init_from` and `train.hard_negative_dirs` becomes the
    fold's number: a fold's fine-tuning starts from that fold's model and learns from the
    windows that model false-accepted (`kws mine`), never from another fold's."""
    from kws.training.train import replace

    t, k = config.train, str(fold)
    train = {"init_from": t.init_from.replace("{fold}", k),
             "hard_negative_dirs": tuple(d.replace("{fold}", k) for d in t.hard_negative_dirs)}
    if teacher:
        train["teacher"] = teacher
    return replace(config, data={"folds": folds, "fold": fold}, train=train)


def fold_teachers(teacher_configs, out: Path, folds: int, fold: int, progress=print):
    """The run folders of fold `fold`'s teachers, each trained on that fold's training
    speakers when it is not there yet (`<out>/teacher-<config name>/fold<k>`). A teacher
    config that distils itself learns from the teachers listed before it. One teacher: its
    folder (a string, as a config writes it); several: a tuple (an ensemble)."""
    from kws.training.train import train

    done: list[str] = []
    for path in teacher_configs:
        folder = out / f"teacher-{Path(path).stem}" / f"fold{fold}"
        if not (folder / "best.pt").exists():
            tconf = load_config(path)
            if tconf.train.distill_weight > 0 and not done:
                raise KwsError(f"teacher {path} distils: list its own teacher's config first")
            progress(f"== teacher {Path(path).stem}, fold {fold}")
            tconf = fold_config(tconf, folds, fold,
                                (done[0] if len(done) == 1 else tuple(done))
                                if tconf.train.distill_weight > 0 else None)
            train(tconf, folder, resume=True, progress=lambda *_: None)
        done.append(str(folder))
    return done[0] if len(done) == 1 else tuple(done)


def fold_false_accepts(model_dir: Path, negatives, threshold: float) -> dict:
    """False accepts per hour of one fold model on the held-out side of `negatives`, cached
    beside the model (`negatives.json`, keyed by the model's hash and the folders)."""
    from kws.checks.streameval import negatives_curve
    from kws.quant.modelfile import load_model

    model = load_model(model_dir)
    cache = Path(model_dir).parent / "negatives.json"
    key = {"model_hash": model.hash, "folders": sorted(str(f) for f in negatives)}
    try:
        doc = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        doc = {}
    if {k: doc.get(k) for k in key} != key:
        r = negatives_curve(model, list(negatives), instances=2, smooth=1, side="heldout")
        doc = dict(key, hours=r["hours"],
                   curve={str(row["threshold"]): row["fa_per_hour"] for row in r["curve"]})
        with atomic_open(cache, "w") as f:
            json.dump(doc, f, indent=1)
    return {"hours": doc["hours"], "fa_per_hour": fa_at(doc["curve"], threshold)}


def fa_at(curve: dict[str, float], threshold: float) -> float:
    """The false accepts per hour at `threshold` of a curve {threshold: FA/h}."""
    for th, fa in curve.items():
        if abs(float(th) - threshold) < 1e-9:
            return fa
    raise KwsError(f"threshold {threshold} is not on the false-accept curve (it has "
                   f"{min(map(float, curve))}..{max(map(float, curve))} in fixed steps)")


def run_cv(configs: list[Path], out: Path, folds: int = 5, only: list[int] | None = None,
           teacher_configs=(), judge: Path | None = None,
           negatives=(), fa_threshold: float = 0.985, progress=print) -> list[dict]:
    """The k-fold speaker cross-validation of each config (module doc); returns table rows."""
    import numpy as np

    from kws.checks.evaluate import evaluate, pooled_other_words
    from kws.training.ship import ship
    from kws.training.stability import run_problems
    from kws.training.train import resolve_data, train

    out = Path(out)
    if isinstance(teacher_configs, (str, Path)):
        teacher_configs = [teacher_configs]
    todo = list(range(folds)) if only is None else only
    rows = []
    for path in configs:
        name, config = Path(path).stem, _fastgrnn_config(path)
        if config.train.distill_weight > 0 and not teacher_configs:
            raise KwsError(f"{path} distils from a teacher: give its config (--teacher-config) so "
                           "that every fold trains its own")
        folder = out / name
        for fold in todo:
            teacher = (fold_teachers(teacher_configs, out, folds, fold, progress)
                       if config.train.distill_weight > 0 else None)
            cfg = fold_config(config, folds, fold, teacher)
            model_dir = folder / f"fold{fold}" / "model"
            if not (model_dir / "model.json").exists():
                progress(f"== {name}, fold {fold}: training")
                result = train(cfg, folder / f"fold{fold}" / "run", resume=True,
                               progress=lambda *_: None)
                ship(result, cfg, name, model_dir)
        scores = []
        for fold in scored_folds(folder, folds, todo):
            cfg = fold_config(config, folds, fold)
            model_dir = folder / f"fold{fold}" / "model"
            judged_on = Path(judge) if judge else resolve_data(cfg)[0]
            r = evaluate(model_dir, judged_on, split="testing")
            r["fold"] = fold
            r["problems"] = [f"fold {fold}: {p}" for p in run_problems(
                run_history(folder / f"fold{fold}" / "run"), n_classes(cfg))]
            if negatives:
                r["negatives"] = fold_false_accepts(model_dir, negatives, fa_threshold)
            scores.append(r)
            progress(f"== {name}, fold {fold}: int {r['accuracy_int']:.4f} float "
                     f"{r['accuracy_float']:.4f} on {r['n_clips']} clips of {judged_on}"
                     + (f"; {r['negatives']['fa_per_hour']:.0f} false accepts/h at "
                        f"{fa_threshold}" if negatives else ""))
        ints = np.array([r["accuracy_int"] for r in scores])
        floats = np.array([r["accuracy_float"] for r in scores])
        confusion = np.sum([r["confusion_matrix"] for r in scores], axis=0)
        per_class = {c: float(confusion[i, i] / max(1, confusion[i].sum()))
                     for i, c in enumerate(scores[0]["classes"])}
        rows.append({"name": name, "config": str(path), "bytes": scores[0]["model_bytes"],
                     "folds": [r["fold"] for r in scores], "int_mean": float(ints.mean()),
                     "int_std": float(ints.std(ddof=1)) if len(ints) > 1 else 0.0,
                     "float_mean": float(floats.mean()),
                     "float_std": float(floats.std(ddof=1)) if len(floats) > 1 else 0.0,
                     "int_per_fold": ints.round(4).tolist(),
                     "clips": int(sum(r["n_clips"] for r in scores)),
                     "worst_class": min(per_class, key=per_class.get),
                     "per_class": per_class,
                     "other_words": pooled_other_words(scores),
                     "problems": [p for r in scores for p in r["problems"]]})
        if negatives:
            fa = [r["negatives"]["fa_per_hour"] for r in scores]
            rows[-1].update(fa_threshold=fa_threshold, fa_per_fold=[round(f, 1) for f in fa],
                            fa_per_hour=float(np.mean(fa)),
                            fa_hours=scores[0]["negatives"]["hours"])
    write_cv_results(merged_rows(out / "cv_results.json", rows), out)
    return rows


def scored_folds(folder: Path, folds: int, trained: list[int]) -> list[int]:
    """The folds a config's row pools: those just trained and every other fold of `folds`
    with a finished model in `folder`, so that sweeps over disjoint `--only-folds` (several
    processes sharing the work) end with one row over all of them."""
    done = {k for k in range(folds)
            if (Path(folder) / f"fold{k}" / "model" / "model.json").exists()}
    return sorted(done | set(trained))


def merged_rows(path: Path, rows: list[dict]) -> list[dict]:
    """The rows already in `path` (earlier sweeps into the same folder, e.g. with another
    teacher), with `rows` replacing those of the same config name and the new ones after."""
    try:
        old = json.loads(Path(path).read_text()) if Path(path).exists() else []
    except json.JSONDecodeError:
        old = []
    names = {r["name"] for r in rows}
    return [r for r in old if r.get("name") not in names] + rows


def write_cv_results(rows: list[dict], out: Path):
    with atomic_open(out / "cv_results.json", "w") as f:
        json.dump(rows, f, indent=1)
    classes = list(rows[0]["per_class"]) if rows else []
    listened = any("fa_per_hour" in r for r in rows)   # a column when some row has it
    lines = ["| config | bytes | folds | int mean ± std | float mean ± std | worst class | "
             + ("FA/h (threshold) | " if listened else "")
             + " | ".join(c.strip("_")[:5] for c in classes) + " |",
             "|---|---:|---:|---:|---:|---|" + "---:|" * (len(classes) + listened)]
    for r in rows:
        worst = r["worst_class"]
        fa = (f"{r['fa_per_hour']:.0f} ({r['fa_threshold']}) | " if "fa_per_hour" in r
              else "– | ") if listened else ""
        lines.append(f"| {r['name']} | {r['bytes']} | {len(r['folds'])} | "
                     f"{r['int_mean']:.3f} ± {r['int_std']:.3f} | "
                     f"{r['float_mean']:.3f} ± {r['float_std']:.3f} | "
                     f"{worst} {r['per_class'][worst]:.2f} | " + fa
                     + " | ".join(f"{r['per_class'][c]:.2f}" for c in classes) + " |")
    with atomic_open(out / "cv_table.md", "w") as f:
        f.write("\n".join(lines) + "\n")


def write_results(rows: list[dict], out: Path):
    with atomic_open(out / "results.json", "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| config | bytes | val float | val int | test float | test int |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['bytes']} | {r['validation_float']:.3f} | "
                     f"{r['validation_int']:.3f} | {r['testing_float']:.3f} | "
                     f"{r['testing_int']:.3f} |")
    with atomic_open(out / "table.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    plot_tradeoff(rows, out / "tradeoff.png")


def pareto(points: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """The best accuracy reachable at each size: points no smaller, better model beats."""
    front, best = [], -1.0
    for b, acc, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((b, acc, name))
            best = acc
    return front


def plot_tradeoff(rows: list[dict], path: Path):
    """Every config as a point; lines through the best accuracy at each size (float, int)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for key, marker, colour in (("testing_float", "o", "tab:blue"),
                                ("testing_int", "s", "tab:orange")):
        pts = [(r["bytes"], r[key], r["name"]) for r in rows]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=14,
                   color=colour, alpha=0.35)
        front = pareto(pts)
        ax.plot([p[0] for p in front], [p[1] for p in front], marker=marker, color=colour,
                label=key.replace("testing_", "held-out speakers, ") + " (best at size)")
        if key == "testing_int":
            for b, acc, name in front:
                ax.annotate(name, (b, acc), fontsize=7, xytext=(4, -10),
                            textcoords="offset points")
    ax.axvline(1024, color="grey", lw=0.6)
    ax.set(xscale="log", xlabel="model bytes (as stored on the device)",
           ylabel="accuracy", title="accuracy vs bytes (every config a point)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_size_curve(rows: list[dict], path: Path):
    """One recipe at several budgets (`kws sweep --folds k --sizes`): fold mean ± std of the
    integer accuracy against the model's bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["bytes"])
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.errorbar([r["bytes"] for r in rows], [r["int_mean"] for r in rows],
                yerr=[r["int_std"] for r in rows], marker="s", capsize=3, color="tab:orange",
                label="integer model, fold mean ± std")
    for r in rows:
        ax.annotate(f"{r['name']} {r['int_mean']:.3f} ({len(r['folds'])} folds)",
                    (r["bytes"], r["int_mean"]), fontsize=7, xytext=(5, -11),
                    textcoords="offset points")
    ax.axvline(1024, color="grey", lw=0.6)
    ax.set(xscale="log", xlabel="model bytes (as stored on the device)",
           ylabel="accuracy on held-out speakers' dev clips",
           title="accuracy vs bytes, speaker cross-validation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
