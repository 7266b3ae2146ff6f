"""The end of `make demo` (`kws summary build/demo`): the demo's report, written after verify so
that it holds the device's figures, and a last screen that says what the run was.

It only reads what the demo's steps left in the folder:

    build/demo/model/       the shipped demo model (model.json: data, epochs, bytes)
    build/demo/run/         its training run (config.yaml, metrics.csv, curves.png)
    build/demo/eval.json    `kws eval --json`: float and integer accuracy, confusion matrix
    build/demo/verify.json  `kws verify --json`: frames, mismatches, cycles, flash and RAM
    build/demo/fw/          the firmware `kws build` made

and writes build/demo/report/ (report.md, report.json, pictures).
"""

from __future__ import annotations

import json
from pathlib import Path

from kws.errors import KwsError

SHIPPED = Path("models/default")
SHIPPED_REPORT = Path("docs/report/report.md")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise KwsError(f"no {path}: run `make demo` (it writes it)") from None
    except ValueError as e:
        raise KwsError(f"{path}: not JSON ({e})") from None


def _data_text(data) -> str:
    """What the model was trained on, from model.json's training.data (a folder or a list)."""
    folders = [data] if isinstance(data, str) else list(data or [])
    texts = []
    for folder in folders:
        manifest = Path(folder) / "corpus.json"       # written by `kws data synth`
        if manifest.is_file():
            s = json.loads(manifest.read_text()).get("summary") or {}
            texts.append(f"{folder}: synthetic espeak-ng voices only ({s.get('clips', '?'):,} "
                         f"clips, {s.get('speakers', '?')} voices, no human speech)")
        else:
            texts.append(f"{folder}: recorded speech")
    return "; ".join(texts) or "unknown data"


def _epochs_text(run_dir: Path, epochs: int | None) -> str:
    """'15 epochs (12 float, 3 quantisation-aware)' from the run's config.yaml."""
    import yaml

    text = f"{epochs} epochs"
    try:
        train = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("train", {})
    except (OSError, yaml.YAMLError):
        return text
    parts = [(train.get(k) or 0, what) for k, what in
             (("epochs_dense", "dense"), ("epochs_sparsify", "sparsifying"),
              ("epochs_sparse", "sparse"), ("epochs_quant", "quantisation-aware"))]
    parts = [f"{n} {what}" for n, what in parts if n]
    return text + (f" ({', '.join(parts)})" if parts else "")


def _train_seconds(run_dir: Path) -> float | None:
    import csv

    try:
        rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
        return sum(float(r["seconds"]) for r in rows)
    except (OSError, KeyError, ValueError):
        return None


def write_demo_report(demo: Path) -> Path:
    """The demo's report.md in demo/report/, with the device's figures from verify.json."""
    from kws.checks.report import write_report

    acc, device = _read_json(demo / "eval.json"), _read_json(demo / "verify.json")
    return write_report(demo / "report", acc, device, run_dir=demo / "run")


def summary(demo: Path, shipped: Path = SHIPPED) -> str:
    """The demo's last screen: what was trained on what, the accuracy in context,
    bit-exactness, cycles, flash and RAM, and where the report and pictures are."""
    from kws.targets.build import format_size

    demo = Path(demo)
    model = _read_json(demo / "model" / "model.json")
    acc, dev = _read_json(demo / "eval.json"), _read_json(demo / "verify.json")
    training = model.get("training", {})
    run_dir = Path(training.get("run_dir") or demo / "run")
    arch = model.get("model", {})
    seconds = _train_seconds(run_dir)
    lines = ["", "=" * 100, "make demo: done", "=" * 100,
             f"trained   {demo / 'model'}: FastGRNN, hidden {arch.get('hidden')}, "
             f"{model['bytes']['total']:,} bytes",
             f"          on {_data_text(training.get('data'))}",
             f"          {_epochs_text(run_dir, training.get('epochs'))}"
             + (f", {seconds / 60:.1f} min" if seconds else "")]
    held_out = " held-out" if acc["split"] in ("testing", "validation") else ""
    lines.append(f"accuracy  {100 * acc['accuracy_int']:.1f} % integer model, "
                 f"{100 * acc['accuracy_float']:.1f} % float, on {acc['n_clips']:,}{held_out} "
                 f"clips ({acc['split']} split of {acc['data']}: {acc['split_rule']})")
    per_class = acc.get("per_class_accuracy") or {}
    if per_class:
        worst = sorted((v, k) for k, v in per_class.items() if v is not None)[:3]
        lines.append("          weakest: " + ", ".join(f"{k} {100 * v:.0f} %" for v, k in worst))
    context = "          = a short run on synthetic voices only, not a trained keyword spotter"
    shipped_doc = Path(shipped) / "model.json"
    if shipped_doc.is_file():
        m = json.loads(shipped_doc.read_text())
        real = (m.get("metrics") or {}).get("testing_int")
        epochs = (m.get("training") or {}).get("epochs")
        if real is not None:
            context += (f";\n          the shipped model ({shipped}, {epochs} epochs on recorded "
                        f"speech): {100 * real:.1f} % on held-out speakers")
    lines += [context, f"          (see {SHIPPED_REPORT})"]
    boards = f"{dev['boards']} simulated board{'s' if dev['boards'] > 1 else ''}" \
        if dev["board"] == "sim" else f"{dev['boards']} board(s) at {dev['board']}"
    verdict = "every frame bit-exact" if dev["mismatched_frames"] == 0 and dev["complete"] \
        else f"{dev['mismatched_frames']:,} MISMATCHED frames" + \
        ("" if dev["complete"] else f", stopped: {dev['error']}")
    lines.append(f"device    {dev['frames']:,} frames of {dev['clips']:,} clips on {boards}, "
                 f"compared with the Python integer model: {dev['mismatched_frames']:,} "
                 f"mismatches ({verdict})")
    c = dev.get("cycles_per_frame")
    if c:
        f_cpu = dev["device"]["f_cpu"]
        lines.append(f"          {c['median']:,.0f} cycles per frame (median; "
                     f"{dev['ms_per_frame']:.2f} ms at {f_cpu / 1e6:g} MHz)")
    if dev.get("firmware"):
        lines.append(f"          {format_size(dev['firmware'])}"
                     + (f", peak stack {dev['stack_peak']} bytes" if dev.get("stack_peak")
                        else ""))
    report = demo / "report"
    pictures = ", ".join(p.name for p in sorted(report.glob("*.png")))
    lines += [f"report    {report / 'report.md'}" + (f" ({pictures})" if pictures else ""),
              f"          training curves {run_dir / 'curves.png'}; "
              f"data {demo / 'eval.json'}, {demo / 'verify.json'}"]
    hexes = sorted((demo / "fw").glob("*/*.hex"))
    if hexes:
        lines.append(f"          firmware {hexes[0]}")
    return "\n".join(lines)
