"""`kws sweep`: train several configs, then one table and one accuracy-vs-bytes picture.

Each config trains into `<out>/<name>/run` and ships into `<out>/<name>/model` (both resumable:
a finished run is reused, not retrained). Every model is then evaluated on the validation and
test splits of its own data, float and integer, and the results go to `<out>/table.md`,
`<out>/results.json` and `<out>/tradeoff.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

from kws.atomic import atomic_open, atomic_path
from kws.config import load_config
from kws.errors import KwsError


def run_sweep(configs: list[Path], out: Path, progress=print) -> list[dict]:
    from kws.evaluate import evaluate
    from kws.ship import ship
    from kws.train import resolve_data, train

    rows = []
    for path in configs:
        name = Path(path).stem
        config = load_config(path)
        if config.model.arch != "fastgrnn":
            raise KwsError(f"{path}: a sweep compares shipped FastGRNN models only")
        folder = Path(out) / name
        model_dir = folder / "model"
        if not (model_dir / "model.json").exists():
            progress(f"== {name}: training")
            result = train(config, folder / "run", resume=True, progress=lambda *_: None)
            ship(result, config, name, model_dir)
        data = resolve_data(config)
        row = {"name": name, "config": str(path)}
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
