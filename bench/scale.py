"""The pipeline at the full archive's scale (issue: "the full data set at scale").

The full Speech Commands v0.02 archive (105,829 clips, 2,618 speakers, 35 words) cannot be
downloaded on the project's machines, so this builds a corpus of the same size and layout from
real clips repeated: every source clip is linked (not copied) under 13 new speaker names, so the
copies split like distinct speakers. Then it times `kws features` and two epochs of `kws train`
(35-word task) and records wall time, time per epoch, peak memory (RSS, from GNU time) and the
cache size on disk into bench/scale.json.

    .venv/bin/python bench/scale.py SOURCE_FOLDER [SOURCE_FOLDER ...] [--clips 105829]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

WORDS_35 = ("yes no up down left right on off stop go zero one two three four five six seven "
            "eight nine bed bird cat dog happy house marvin sheila tree wow backward forward "
            "follow learn visual").split()
NAME = re.compile(r"^(?:(?P<word>[a-z]+)_)?(?P<speaker>[0-9a-f]+)_nohash_(?P<k>\d+)$")


def build_corpus(sources: list[Path], out: Path, n_clips: int) -> dict:
    """Link real clips into `out/<word>/<speaker>r<copy>_nohash_<k>.<ext>` until n_clips."""
    found = []
    for src in sources:
        for f in sorted(src.rglob("*")):
            m = NAME.match(f.stem)
            if not m or f.suffix.lower() not in (".wav", ".flac"):
                continue
            word = m["word"] or f.parent.name
            if word in WORDS_35:
                found.append((word, m["speaker"], m["k"], f))
    if not found:
        raise SystemExit(f"no Speech Commands clips under {sources}")
    made, copy = 0, 0
    while made < n_clips:
        for word, speaker, k, f in found:
            if made == n_clips:
                break
            dst = out / word / f"{speaker}r{copy:02d}_nohash_{k}{f.suffix.lower()}"
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dst)
            made += 1
        copy += 1
    noise = [f for src in sources for f in (src / "_background_noise_").glob("*.wav")]
    for f in noise:
        dst = out / "_background_noise_" / f.name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dst)
    return {"clips": made, "source_clips": len(found), "copies": copy}


def timed(cmd: list[str]) -> dict:
    """Run `cmd` under GNU time; wall seconds, peak RSS (MB) and its output."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)[1])
    return {"seconds": round(wall, 1), "peak_rss_mb": round(rss / 1024), "stdout": p.stdout}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--clips", type=int, default=105_829)
    ap.add_argument("--out", type=Path, default=Path("data/scale"))
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)
    kws = str(Path(sys.executable).with_name("kws"))
    result = {"corpus": build_corpus(args.sources, args.out, args.clips)}
    cache = Path("data/cache")          # the one feature cache every command uses
    started = time.time()
    config = args.out.parent / "scale.yaml"
    config.write_text(
        "# bench/scale.py: the 35-word task at the full archive's size\n"
        "data: {task: '35', split: official, unknown_pct: null}\n"
        "features: {hop_length: 320}\n"
        f"model: {{hidden: 24, rank_w: 6, rank_u: 6, budget_bytes: 1400}}\n"
        f"train: {{data: {str(args.out)!r}, fallback_data: '', epochs_dense: {args.epochs}, "
        "epochs_sparsify: 0, epochs_sparse: 0, epochs_quant: 0, noise_prob: 0.5}\n")
    feats = timed([kws, "features", "--data", str(args.out), "--config", str(config)])
    result["features"] = {k: v for k, v in feats.items() if k != "stdout"}
    result["features"]["summary"] = feats["stdout"].strip().splitlines()[:3]
    run_dir = args.out.parent / "scale_run"
    if (run_dir / "checkpoint.pt").exists():
        (run_dir / "checkpoint.pt").unlink()
    tr = timed([kws, "train", "--config", str(config), "--run-dir", str(run_dir),
                "--name", "scale"])
    epochs = [line for line in tr["stdout"].splitlines() if line.startswith("epoch ")]
    secs = [float(re.search(r"seconds ([\d.]+)", e)[1]) for e in epochs]
    result["train"] = {"seconds": tr["seconds"], "peak_rss_mb": tr["peak_rss_mb"],
                       "epoch_seconds": secs, "epochs": epochs}
    result["cache_mb"] = {p.name: round(p.stat().st_size / 2**20) for p in cache.iterdir()
                          if p.suffix in (".npz", ".npy") and p.stat().st_mtime >= started}
    Path("bench/scale.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
