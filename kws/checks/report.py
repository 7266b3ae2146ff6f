"""reports/<model>/report.md: the numbers a person picks a keyword spotter by, with pictures.

Inputs are the results of the other stages (`kws.checks.evaluate`, `kws.checks.verify`, `kws.checks.streameval`)
and what training left behind (the run's metrics.csv, the lever sweep's results.json); the
report only draws and tabulates them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from kws.atomic import atomic_open, atomic_path
from kws.checks.streameval import stored_text, thresholds_text


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, from a confusion matrix (rows: true class, columns: answer); NaN if 0/0."""
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / c.sum(0), tp / c.sum(1)


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _figure().close(fig)


def plot_confusion(confusion, classes, path: Path, title: str):
    plt = _figure()
    c = np.asarray(confusion)
    frac = c / np.maximum(c.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if c[i, j]:
                ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(xlabel="answer of the integer model", ylabel="true class", title=title)
    fig.tight_layout()
    _save(fig, path)


def plot_training(metrics_csv: Path, path: Path, title: str):
    rows = list(csv.DictReader(Path(metrics_csv).read_text().splitlines()))
    plt = _figure()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [int(r["epoch"]) for r in rows]
    a1.plot(ep, [float(r["loss"]) for r in rows])
    a1.set(xlabel="epoch", ylabel="training loss", title=title)
    for key in ("val_float", "val_int"):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
        if pts:
            a2.plot(*zip(*pts), label=key)
    a2.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1), title="accuracy")
    if a2.get_legend_handles_labels()[0]:      # a run with no validation rows has none
        a2.legend()
    fig.tight_layout()
    _save(fig, path)


def _interval(acc: dict, kind: str) -> str:
    lo, hi = acc.get(f"interval_{kind}") or (float("nan"),) * 2
    return "-" if np.isnan(lo) else f"{lo:.4f}..{hi:.4f}"


def write_report(out_dir: Path, acc: dict, device: dict | None = None,
                 stream: dict | None = None, run_dir: Path | None = None,
                 sweep_results: Path | None = None) -> Path:
    """Write report.md, report.json and the pictures into out_dir; returns report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = acc["classes"]
    conf = np.array(acc["confusion_matrix"])
    prec, rec = precision_recall(conf)
    plot_confusion(conf, classes, out_dir / "confusion.png",
                   f"{acc['model']}: {acc['n_clips']} clips, split {acc['split']}")
    md = [f"# {acc['model']}: evaluation report", "",
          f"Model hash `{acc['model_hash'][:16]}`, **{acc['model_bytes']} bytes** on the device. "
          f"Data `{acc['data']}`, split `{acc['split']}` ({acc['split_rule']}): "
          f"{acc['n_clips']} clips.", "",
          "## Accuracy", "",
          f"95 % intervals: bootstrap over the {acc.get('speakers', '?')} speakers (seeded; "
          "each `_silence_` crop counts as one).", "",
          "| | accuracy | 95 % interval |", "|---|---:|---:|",
          f"| float model (PyTorch) | {acc['accuracy_float']:.4f} | {_interval(acc, 'float')} |",
          f"| integer model (Python reference) | {acc['accuracy_int']:.4f} | "
          f"{_interval(acc, 'int')} |"]
    if device:
        md.append(f"| on the device ({device['board']}, {device['clips']} clips) | "
                  f"{device['device_accuracy']:.4f} | |")
    else:
        md.append("| on the device | not measured (`kws eval --board sim\\|PORT`) | |")
    if device:
        cyc = device.get("cycles_per_frame") or {}
        md += ["", f"Device: {device['frames']} frames, **{device['mismatched_frames']} "
               f"mismatched** against the integer reference; cycles per frame min "
               f"{cyc.get('min')} / median {cyc.get('median')} / max {cyc.get('max')}"
               + (f"; peak stack {device['stack_peak']} bytes" if device.get("stack_peak") else "")
               + "."]
        if device.get("firmware"):
            from kws.targets.build import format_size

            md += ["", f"Firmware: {format_size(device['firmware'])}."]
    md += ["", "## Per class", "", "| class | clips | precision | recall |", "|---|---:|---:|---:|"]
    for i, c in enumerate(classes):
        fmt = lambda v: "-" if np.isnan(v) else f"{v:.2f}"  # noqa: E731
        md.append(f"| {c} | {int(conf[i].sum())} | {fmt(prec[i])} | {fmt(rec[i])} |")
    md += ["", "![confusion matrix](confusion.png)"]
    if stream:
        p, f = stream["operating_point"], stream["at_operating_point"]
        v = stream["chosen_on_validation"]
        md += ["", "## Continuous stream", "",
               f"{stream['hours']:.2f} h of held-out speakers over held-out background noise "
               f"(SNR {'/'.join(str(int(s)) for s in stream['stream']['spec']['snrs_db'])} dB, "
               f"seed {stream['stream']['spec']['seed']}), {f['events']} keywords among other "
               f"words. The model listens as the board does: {stream['schedule']['instances']} "
               f"instances, {stream['schedule']['window_frames']}-frame windows, one ending "
               f"every {stream['schedule']['stride_frames']} frames.", "",
               (f"Thresholds per keyword **{thresholds_text(p['thresholds'])}**"
                if p.get("thresholds") else f"Threshold **{p['threshold']:.3f}**")
               + f", chosen on {v['hours']:.2f} h of validation "
               f"speakers (fewest misses at <= 2 false accepts per hour). On the held-out "
               f"stream: **{100 * p['miss_rate']:.1f} % misses, {p['fa_per_hour']:.2f} false "
               f"accepts per hour** (goal <= 2 / h at <= 10 %: "
               f"{'met' if p['goal_met'] else 'not met'}).", "",
               "| keyword | events | misses | false accepts / h |", "|---|---:|---:|---:|"]
        for w, r in f["per_keyword"].items():
            md.append(f"| {w} | {r['events']} | {100 * (r['miss_rate'] or 0):.1f} % | "
                      f"{r['fa_per_hour']:.2f} |")
        by_snr = f.get("miss_rate_by_snr") or {}
        if by_snr:
            md += ["", "Misses by the noise a keyword was placed in: " + ", ".join(
                f"{float(snr):g} dB SNR {100 * r['miss_rate']:.1f} % ({r['misses']} of "
                f"{r['events']})" for snr, r in by_snr.items()) + "."]
        md += ["", "![DET curve](det.png)"]
    neg = acc.get("negatives")
    if neg:
        at = neg["at_stored_threshold"]
        md += ["", "## False accepts on audio without keywords", "",
               f"{neg['hours'] * 60:.1f} minutes of real audio with no keyword ({neg['files']} "
               f"files: {', '.join(f'`{f}`' for f in neg['folders'])}), one file after the "
               "other, listened to as the board does; every detection is a false accept.", "",
               f"At the model's {stored_text(neg)}: **{at['false_accepts']} "
               f"false accepts, {at['fa_per_hour']:.1f} per hour** ("
               + ", ".join(f"{w} {n}" for w, n in sorted(at["per_keyword"].items(),
                                                        key=lambda kv: -kv[1]) if n) + ").", "",
               "| threshold | false accepts / h |", "|---:|---:|"]
        for row in neg["curve"]:
            if row["threshold"] in (0.5, 0.7, 0.9, 0.95, 0.98, 0.985, 0.99, 0.995):
                md.append(f"| {row['threshold']:.3f} | {row['fa_per_hour']:.1f} |")
    if run_dir and (Path(run_dir) / "metrics.csv").exists():
        plot_training(Path(run_dir) / "metrics.csv", out_dir / "training.png",
                      f"training of {acc['model']}")
        md += ["", "## Training", "", f"From `{run_dir}/metrics.csv`.", "",
               "![training curves](training.png)"]
    if sweep_results and Path(sweep_results).exists():
        from kws.training.sweep import plot_tradeoff

        rows = json.loads(Path(sweep_results).read_text())
        plot_tradeoff(rows, out_dir / "tradeoff.png")
        md += ["", "## Accuracy vs bytes", "",
               f"Every config trained by `make levers` ({len(rows)}, `{sweep_results}`).", "",
               "![accuracy vs bytes](tradeoff.png)"]
    with atomic_open(out_dir / "report.json", "w") as fh:
        json.dump({"accuracy": acc, "device": device, "stream": stream}, fh, indent=1)
    with atomic_open(out_dir / "report.md", "w") as fh:
        fh.write("\n".join(md) + "\n")
    return out_dir / "report.md"
