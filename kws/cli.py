"""The `kws` command line. Every subcommand has --help; errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from kws.data.tasks import TASK_NAMES
from kws.errors import KwsError

DEFAULT_CONFIG = "configs/default.yaml"


def _config(args):
    """The config named by --config (defaults if the default file is absent), with overrides."""
    from kws.config import Config, load_config

    path = getattr(args, "config", None)
    config = load_config(path) if path and (path != DEFAULT_CONFIG or Path(path).exists()) \
        else Config()
    return _overridden(config, args)


def _overridden(config, args):
    """The config with the command line's --task, --keywords and --split."""
    overrides = {k: getattr(args, k) for k in ("task", "split") if getattr(args, k, None)}
    if getattr(args, "keywords", None):
        overrides["keywords"] = tuple(w.strip() for w in args.keywords.split(",") if w.strip())
    if overrides:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **overrides))
    return config


DATA_HELP = ("a Speech Commands folder (default: the downloaded archive in data/, else the "
             "project's dev clips; see README: Data)")


def _data_folders(args) -> list[Path]:
    """--data (repeatable), else the discovery rule of kws.data.dataset.find_data."""
    from kws.data.dataset import find_data

    return find_data(args.data)


def _data_folder(args) -> Path:
    """The one folder a command judges on: --data, else the discovery rule."""
    return _data_folders(args)[0]


def _int_list(text: str) -> list[int]:
    """`2` or `2,3`: one or more positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, e.g. 2 or 2,3")
    return values


def _add_task_options(p):
    p.add_argument("--task", choices=TASK_NAMES, help="override data.task")
    p.add_argument("--keywords", metavar="WORD,...",
                   help="override data.keywords (the words of --task wake), e.g. stop")


def _add_data_options(p):
    p.add_argument("--data", action="append", type=Path,
                   help=DATA_HELP + "; give it twice for two folders that form one data set")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    _add_task_options(p)
    p.add_argument("--split", choices=["auto", "official", "speakers"],
                   help="override data.split (see README: Splits)")


# --- kws data ------------------------------------------------------------------------------

def cmd_data_download(args):
    from kws.data.download import download

    folder = download(args.version, args.dest)
    print(f"ready: {folder}")


def cmd_data_stats(args):
    from kws.data.dataset import format_stats, load_dataset

    dataset = load_dataset(_data_folders(args), _config(args).data)
    print(format_stats(dataset.stats()))


def cmd_data_sentences(args):
    from kws.data.sentences import make_sentences

    make_sentences(args.out, args.minutes, seed=args.seed)


def cmd_data_synth(args):
    from kws.data.synth import synthesize_corpus

    synthesize_corpus(args.out, args.clips, seed=args.seed, workers=args.workers)


# --- kws features ----------------------------------------------------------------------------

def cmd_features(args):
    import numpy as np

    from kws.frontend.cache import compute_features
    from kws.data.dataset import SPLITS, load_dataset
    from kws.frontend.features import norm_stats

    config = _config(args)
    dataset = load_dataset(_data_folders(args), config.data)
    start = time.perf_counter()
    fs = compute_features(dataset.clips, dataset.root, config.features, args.cache_dir,
                          skip_bad=args.skip_bad)
    seconds = time.perf_counter() - start
    source = "read from cache" if fs.from_cache else f"computed in {seconds:.1f} s"
    print(f"{len(fs.clips)} clips -> features {tuple(fs.features.shape)} ({source})")
    if fs.cache_file:
        print(f"cache: {fs.cache_file}")
    for split in SPLITS:
        print(f"  {split:<11} {sum(c.split == split for c in fs.clips):>6} clips")
    if fs.bad:
        print(f"skipped {len(fs.bad)} bad file(s):")
        for path, reason in fs.bad:
            print(f"  {reason}")
    train = np.array([c.split == "training" for c in fs.clips])
    if train.any():
        mean, std = norm_stats(fs.features[train])
        print(f"per-bin normalisation (training split): mean {mean.min():.2f}..{mean.max():.2f},"
              f" std {std.min():.2f}..{std.max():.2f}")


# --- kws train / eval ------------------------------------------------------------------------

def cmd_train(args):
    from kws.config import load_config
    from kws.training.ship import ship
    from kws.training.train import train

    config = _overridden(load_config(args.config), args)
    name = args.name or Path(args.config).stem
    run_dir = args.run_dir or Path("runs") / name
    result = train(config, run_dir, resume=args.resume)
    best = result["best"]
    print(f"best epoch {best['epoch']}: validation accuracy "
          + ", ".join(f"{k[4:]} {best[k]:.4f}" for k in ("val_float", "val_int") if k in best))
    print(f"run folder: {run_dir} (config.yaml, metrics.csv, curves.png, checkpoint.pt)")
    if config.model.arch == "fastgrnn" and config.train.epochs_quant == 0:
        print("no quantisation-aware epochs: a pre-training run, not shipped")
    elif config.model.arch == "fastgrnn":
        doc = ship(result, config, name, args.out or Path("models") / name)
        print(f"shipped {args.out or Path('models') / name}: {doc['bytes']['total']} bytes, "
              f"hash {doc['hash'][:16]}")


def cmd_eval(args):
    import json

    from kws.atomic import atomic_open
    from kws.checks.evaluate import evaluate, format_report
    from kws.quant.modelfile import load_model
    from kws.checks.report import write_report

    model = load_model(args.model)
    data = _data_folders(args)        # several --data: one data set (a stream over all)
    args.data = data[0]
    from kws.detect.detector import load_settings
    stored = load_settings(model)     # not given: listen the way the model is set up to
    args.instances = args.instances or [stored.instances]
    args.smooth = args.smooth or [stored.smooth_windows]
    report = evaluate(args.model, data, split=args.split, skip_bad=args.skip_bad)
    print(format_report(report))
    device = stream = None
    if args.board:
        from kws.checks.verify import format_summary, verify
        device = verify(model, args.data, board=args.board, boards=args.boards,
                        split=args.split, progress=True)
        print(format_summary(device))
    if args.stream:
        from kws.checks.streameval import evaluate_stream, format_stream_report
        from kws.data.streamgen import StreamSpec
        out = (args.out or Path("reports") / model.name)
        stream = evaluate_stream(model, data, StreamSpec(seconds=args.hours * 3600,
                                                              seed=args.seed),
                                 instances=args.instances, smooth=args.smooth, out_dir=out,
                                 negatives=args.negatives or (),
                                 per_keyword=args.per_keyword)
        args.instances = stream["schedule"]["instances"]        # the pair chosen on
        args.smooth = stream["detector"]["smooth_windows"]       # the validation speakers
        print(format_stream_report(stream))
        from kws.detect.detector import DetectorSettings, save_settings
        save_settings(args.model, DetectorSettings(
            threshold=stream["operating_point"]["threshold"], instances=args.instances,
            thresholds=stream["operating_point"].get("thresholds", {}),
            smooth_windows=args.smooth, chosen_by="kws eval --stream (validation speakers' stream"
                      + (" + keyword-free audio)" if args.negatives else ")")))
    if not args.stream:                 # without a stream to choose on: the first of each
        args.instances, args.smooth = args.instances[0], args.smooth[0]
    if args.negatives:
        from kws.checks.streameval import format_negatives_report, negatives_curve
        # after --stream chose the threshold on the validation speakers: the testing ones
        report["negatives"] = negatives_curve(model, args.negatives, instances=args.instances,
                                              smooth=args.smooth,
                                              side="testing" if args.stream else None)
        print(format_negatives_report(report["negatives"]))
    if args.json:
        with atomic_open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    path = write_report(args.out or Path("reports") / model.name, report, device, stream,
                        run_dir=model.doc.get("training", {}).get("run_dir"),
                        sweep_results=Path("runs/levers/results.json"))
    print(f"report: {path}")
    if device and device["mismatched_frames"]:
        raise SystemExit(1)


def cmd_mine(args):
    from kws.checks.mine import format_mined, mine
    from kws.quant.modelfile import load_model

    model = load_model(args.model)
    out = args.out or Path("data/mined") / model.name
    doc = mine(model, args.negatives, out, windows=args.windows, min_score=args.min_score,
               instances=args.instances)
    print(format_mined(doc))
    print(f"wrote {out} (train on it with train.hard_negative_dirs: [{out}])")


def cmd_sweep(args):
    from kws.training.sweep import run_cv, run_sweep, stall_problems

    if args.folds:
        only = [int(f) for f in args.only_folds.split(",")] if args.only_folds else None
        rows = run_cv(args.configs, args.out, args.folds, only, args.teacher_config or (),
                      args.judge, args.negatives or (), args.fa_threshold)
        print((args.out / "cv_table.md").read_text())
        print(f"{len(rows)} configs, {args.folds}-fold speaker cross-validation")
        if args.sizes:
            from kws.training.sweep import plot_size_curve
            plot_size_curve(rows, args.out / "size_curve.png")
            print(f"picture: {args.out / 'size_curve.png'}")
    else:
        rows = run_sweep(args.configs, args.out)
        print((args.out / "table.md").read_text())
        print(f"{len(rows)} configs; picture: {args.out / 'tradeoff.png'}")
    problems = stall_problems(rows, sizes=args.sizes)
    if problems:
        raise KwsError("stalled training (kws/training/stability.py):\n  "
                       + "\n  ".join(problems))


# --- kws export / build / flash ---------------------------------------------------------------

def cmd_export(args):
    from kws.codegen.export import export
    from kws.quant.modelfile import load_model

    model = load_model(args.model)
    from kws.detect.detector import settings_hash

    sketch = export(model, args.out, args.name, budget=args.budget)
    print(f"sketch: {sketch} ({model.int_model.n_bytes()} model bytes, hash {model.hash[:16]}, "
          f"listening settings hash {settings_hash(model)[:16]})")


def board_default_model(args, board: str) -> None:
    """`--model` (and `--budget`) left out: the board profile's default (kws.targets)."""
    from kws.targets import target_for

    if args.model is None:
        folder, budget = target_for(board).default_model(board)
        args.model = Path(folder)
        if getattr(args, "budget", 0) is None:
            args.budget = budget
        print(f"model: {folder} (the {board} profile's default; --model to choose another)",
              file=sys.stderr)
    if getattr(args, "budget", 0) is None:
        args.budget = 1024


def cmd_build(args):
    from kws.targets.build import build, firmware_size, format_size
    from kws.quant.modelfile import load_model

    board_default_model(args, args.board)
    model = load_model(args.model)
    fw = build(model, args.board, args.out, args.name, budget=args.budget)
    print(f"{fw.hex}: {format_size(firmware_size(model, args.board, fw))}")
    if fw.hex.with_suffix(".uf2").exists():    # the Pico: flashed by copying this file
        print(f"{fw.hex.with_suffix('.uf2')}: the same image as UF2 (kws flash, or a copy onto "
              "the board's drive)")


def cmd_flash(args):
    from kws.targets import target_for

    print("flashed: " + " ".join(target_for(args.board).flash(args.hex, args.board, args.port)))


# --- kws verify -------------------------------------------------------------------------------

def cmd_verify(args):
    import json

    from kws.atomic import atomic_open
    from kws.checks.verify import format_summary, verify

    board_default_model(args, args.profile)
    report = verify(args.model, _data_folder(args), board=args.board, boards=args.boards,
                    split=args.split, max_clips=args.max_clips, baud=args.baud,
                    cache_dir=args.cache_dir, progress=sys.stderr.isatty(),
                    timeout=args.timeout, retries=args.retries, faults=args.faults,
                    fault_seed=args.fault_seed, cut_after=args.fault_cut,
                    cut=args.fault_cut_mode, confirm=args.confirm, profile=args.profile)
    print(format_summary(report))
    if args.json:   # also (above all) when the run stopped: the results so far
        with atomic_open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if report["error"]:
        raise KwsError(f"verify stopped after {report['clips']} of {report['clips_planned']} "
                       f"clips: {report['error']}"
                       + (f" (results so far in {args.json})" if args.json else ""))
    if report["mismatched_frames"]:
        m = report["first_mismatch"]
        raise KwsError(f"{report['mismatched_frames']} of {report['frames']} frames differ from "
                       f"the integer reference; the first: clip {m['clip']} frame {m['frame']}")


# --- kws stream -------------------------------------------------------------------------------

def cmd_stream(args):
    import json

    from kws.checks.boards import open_boards
    from kws.quant.modelfile import load_model
    from kws.checks.stream import audio_chunks, mic_chunks, padded_wav, stream
    from kws.detect.detector import stored_settings
    from kws.detect.windows import Schedule

    model = load_model(args.model)
    cfg = model.features
    if args.wav:
        schedule = Schedule.for_model(model, stored_settings(model)["instances"])
        audio, pad = padded_wav(args.wav, cfg, schedule)
        hop_s = cfg.hop_length / cfg.sample_rate
        print(f"{args.wav}: {(len(audio) - pad) / cfg.sample_rate:.2f} s, padded with "
              f"{pad / cfg.sample_rate:.2f} s of silence at the end so that its last word gets "
              f"every window ({schedule.period * hop_s:.2f} s windows, one every "
              f"{schedule.stride * hop_s:.2f} s)")
        chunks = audio_chunks(audio, cfg.sample_rate, cfg.hop_length, realtime=not args.fast)
    else:
        chunks = mic_chunks(cfg.sample_rate, cfg.hop_length, args.device)
    print(f"listening for {', '.join(c for c in model.classes if not c.startswith('_'))} "
          "(Ctrl-C ends)")
    with open_boards(args.board, model, 1) as boards:
        summary = stream(model, boards[0], chunks, threshold=args.threshold,
                         smooth=args.smooth, refractory_s=args.refractory)
    print(f"{summary['frames']} frames ({summary['seconds']} s), "
          f"{len(summary['detections'])} detections at threshold {summary['threshold']}, "
          f"board vs python: {summary['mismatched_windows']} of {summary['windows']} "
          "windows differ" + (f", {summary['mismatched_decisions']} decisions differ"
                              if summary["board_decides"] else " (the host decided)"))
    best = summary["best"]
    if best and not summary["detections"]:
        print(f"no keyword reached the threshold {summary['threshold']}; the highest keyword "
              f"score: {best['word']} "
              f"{best['score']:.2f} (window ending at {best['time_s']:.2f} s)")
    if args.json:
        from kws.atomic import atomic_open
        with atomic_open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if summary["mismatched_windows"]:
        raise KwsError(f"{summary['mismatched_windows']} windows differ from the integer model")
    if summary["mismatched_decisions"]:
        raise KwsError(f"{summary['mismatched_decisions']} of the board's decisions differ "
                       "from the Python detector's")


# --- kws summary ----------------------------------------------------------------------------

def cmd_summary(args):
    from kws.checks.demo import summary, write_demo_report

    write_demo_report(args.folder)
    print(summary(args.folder))


# --- kws bench -------------------------------------------------------------------------------

def cmd_bench(args):
    from kws.checks.bench import run_benchmarks

    run_benchmarks(args.out, args.data, args.clips)


def build_parser() -> argparse.ArgumentParser:
    from kws.targets import board_profiles

    parser = argparse.ArgumentParser(
        prog="kws", description="Tiny keyword spotting for microcontrollers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="get, inspect or synthesise Speech Commands data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = dsub.add_parser("download", help="download and extract a Speech Commands archive")
    p.add_argument("--version", required=True, choices=["v0.02", "v0.01", "test-v0.02"])
    p.add_argument("--dest", type=Path, default=Path("data"), help="default: %(default)s")
    p.set_defaults(func=cmd_data_download)

    p = dsub.add_parser("stats", help="clips per class and split, speakers per split")
    _add_data_options(p)
    p.set_defaults(func=cmd_data_stats)

    p = dsub.add_parser("synth", help="make the offline synthetic corpus (espeak-ng voices)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--clips", type=int, default=7000, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2,
                   help="synthesis processes (default: %(default)s)")
    p.set_defaults(func=cmd_data_synth)

    p = dsub.add_parser("sentences", help="keyword-free synthetic running speech (espeak-ng "
                        "talkers reading sentences): negative audio for false accepts")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--minutes", type=float, default=60.0, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.set_defaults(func=cmd_data_sentences)

    p = sub.add_parser("features", help="compute and cache log-mel features of a data folder")
    _add_data_options(p)
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"),
                   help="default: %(default)s")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable audio files (counted in the summary) instead of failing")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train", help="train a FastGRNN (or GRU baseline) and ship it")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="default: %(default)s")
    p.add_argument("--name", help="model name (default: the config file's stem)")
    p.add_argument("--run-dir", type=Path, help="default: runs/<name>")
    p.add_argument("--out", type=Path, help="shipped model folder (default: models/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    _add_task_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy of a shipped model (float and integer)")
    p.add_argument("--model", required=True, type=Path, help="a models/<name> folder")
    p.add_argument("--data", action="append", type=Path,
                   help=DATA_HELP + "; give it twice for two folders that form one data set "
                        "(clips and stream from both; --board checks the first)")
    p.add_argument("--split", default="testing",
                   help="testing, validation, training or all (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable audio files")
    p.add_argument("--board", help="also run the clips on a board: sim or a serial port")
    p.add_argument("--boards", type=int, default=1,
                   help="simulated boards in parallel (default: %(default)s)")
    p.add_argument("--stream", action="store_true",
                   help="also misses and false accepts per hour on a long seeded stream; "
                        "stores the chosen threshold in the model folder (detector.json)")
    p.add_argument("--hours", type=float, default=1.0, help="stream length (default 1 h)")
    p.add_argument("--negatives", action="append", type=Path, metavar="FOLDER",
                   help="also false accepts per hour on real audio with no keyword (running "
                        "speech, other wake words, noise): every WAV/FLAC under FOLDER, at "
                        "the model's threshold and over thresholds; repeatable. With --stream "
                        "the streams go on into its validation / testing speakers (25 %% "
                        "each), so the threshold is chosen counting running speech too")
    p.add_argument("--seed", type=int, default=0, help="stream seed (default: %(default)s)")
    p.add_argument("--instances", type=_int_list, metavar="N[,N...]",
                   help="staggered windows in flight (model steps per frame; default: the "
                        "model's detector.json, else 2). "
                        "With --stream, several (2,3) are each tried on the validation "
                        "speakers and the best is stored: give counts that fit the board")
    p.add_argument("--smooth", type=_int_list, metavar="N[,N...]",
                   help="posteriors averaged over this many windows (default: the model's "
                        "detector.json, else 1); with "
                        "--stream, several are tried like --instances, the best stored")
    p.add_argument("--per-keyword", action="store_true",
                   help="with --stream, also try a threshold per keyword (chosen on the "
                        "validation speakers for the fewest misses within 2 false accepts "
                        "per hour in all); stored in detector.json when it is better there. "
                        "Needs many hours of validation audio: on 1-1.6 h the held-out false "
                        "accepts came out 2.5-15x those of validation (README)")
    p.add_argument("--out", type=Path, help="report folder (default reports/<model>)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("mine", help="hard negatives: the windows of keyword-free audio a "
                       "model scores highest, as clips to train on")
    p.add_argument("--model", default="models/default", help="default: %(default)s")
    p.add_argument("--negatives", action="append", type=Path, metavar="FOLDER", required=True,
                   help="keyword-free audio (only its training speakers are used); repeatable")
    p.add_argument("--out", type=Path, help="default: data/mined/<model name>")
    p.add_argument("--windows", type=int, default=1000,
                   help="at most this many windows (default: %(default)s)")
    p.add_argument("--min-score", type=float, default=0.1,
                   help="keyword posterior a window needs (default: %(default)s)")
    p.add_argument("--instances", type=int, default=7,
                   help="windows in flight while listening: more finds more positions "
                        "(default: %(default)s, one window every 140 ms at a 20 ms hop)")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser("sweep", help="train several configs; table and accuracy-vs-bytes plot")
    p.add_argument("configs", nargs="+", type=Path, help="FastGRNN config files")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="default: %(default)s")
    p.add_argument("--folds", type=int, default=0,
                   help="k-fold speaker cross-validation instead of one split: every config "
                        "retrained per fold, table of fold mean ± std (default: off)")
    p.add_argument("--only-folds", help="with --folds: run only these folds, e.g. 0,2,4 (to "
                                        "share the work between processes)")
    p.add_argument("--teacher-config", type=Path, action="append",
                   help="with --folds: the float teacher's config, trained once per fold for "
                        "configs that distil; repeat it for an ensemble (the outputs averaged)")
    p.add_argument("--judge", type=Path,
                   help="with --folds: score on this folder's held-out clips (default: the "
                        "config's first data folder)")
    p.add_argument("--negatives", action="append", type=Path, metavar="FOLDER",
                   help="with --folds: also the false accepts per hour of every fold model on "
                        "the held-out speakers of this keyword-free audio (repeatable)")
    p.add_argument("--sizes", action="store_true",
                   help="the configs are one recipe at several budgets: fail when a model "
                        "scores more than 5 points below a smaller one (a stalled run); with "
                        "--folds, the curve in <out>/size_curve.png")
    p.add_argument("--fa-threshold", type=float, default=0.985,
                   help="with --negatives: count false accepts at this threshold "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_sweep)

    for name, func, text in [("export", cmd_export, "write the Arduino sketch folder of a model"),
                             ("build", cmd_build, "export and compile the firmware (avr-gcc; Arm boards: "
                              "arm-none-eabi-gcc)")]:
        p = sub.add_parser(name, help=text)
        if name == "build":
            p.add_argument("--model", type=Path,
                           help="a models/<name> folder (default: the board's: models/default, "
                                "models/default_5k on the Nano 33 BLE, Uno R4 and Pico)")
        else:
            p.add_argument("--model", required=True, type=Path, help="a models/<name> folder")
        p.add_argument("--out", type=Path,
                       default=Path("build/sketch" if name == "export" else "build/fw"),
                       help="output folder (default: %(default)s)")
        p.add_argument("--name", default="kws_sketch", help="sketch name (default: %(default)s)")
        p.add_argument("--budget", type=int, default=1024 if name == "export" else None,
                       help="refuse a bigger model, bytes (default: 1024; with the board's "
                            "default model, its budget)")
        if name == "build":
            p.add_argument("--board", default="uno",
                           choices=board_profiles(),
                           help="board profile (default: %(default)s)")
        p.set_defaults(func=func)

    p = sub.add_parser("flash", help="upload a built .hex (avrdude; nano33ble: bossac; uno-r4: "
                                     "dfu-util / bossac; pico: picotool or its RPI-RP2 drive; "
                                     "micro:bit: a copy onto its drive)")
    p.add_argument("--hex", required=True, type=Path)
    p.add_argument("--board", default="uno",
                   choices=[*board_profiles(), "sim"],
                   help="board profile; sim: a simulated Uno with its bootloader "
                        "(default: %(default)s)")
    p.add_argument("--port", help="default: the one Arduino found by USB VID/PID (micro:bit, "
                                  "pico: its mounted MICROBIT / RPI-RP2 drive)")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("verify", help="stream held-out clips through a board, compare every "
                                      "frame with the integer model")
    p.add_argument("--model", type=Path,
                   help="a models/<name> folder (default: the --profile's, as for kws build)")
    p.add_argument("--data", type=Path, help=DATA_HELP)
    p.add_argument("--board", default="sim",
                   help="sim (simulated boards, firmware built for the model) or a serial port "
                        "/ pyserial URL; several ports comma-separated (default: %(default)s)")
    p.add_argument("--boards", type=int, default=1,
                   help="simulated boards in parallel (default: %(default)s)")
    p.add_argument("--split", default="testing",
                   help="testing, validation, training or all (default: %(default)s)")
    p.add_argument("--max-clips", type=int, help="at most N clips, spread evenly over the split")
    p.add_argument("--profile", default="uno",
                   choices=board_profiles(),
                   help="board profile of the simulated boards (its F_CPU; default: "
                        "%(default)s)")
    p.add_argument("--baud", type=int,
                   help="serial speed (default: 115200 on a port, 1000000 simulated)")
    p.add_argument("--cache-dir", type=Path, default=Path("data/cache"),
                   help="feature cache (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.add_argument("--timeout", type=float,
                   help="the longest wait for one reply, s (default: 1; a noisy line learns a "
                        "shorter one from the round trips)")
    p.add_argument("--retries", type=int, default=4,
                   help="silent tries in a row before a board is given up (default: %(default)s)")
    p.add_argument("--confirm", action=argparse.BooleanOptionalAction, default=None,
                   help="accept a clip only when two runs on the board agree (default: on with "
                        "--faults)")
    g = p.add_argument_group("fault injection (simulated boards: a proxy on the serial line)")
    g.add_argument("--faults", metavar="RATE",
                   help="damage this share of the bytes in both directions, a third each "
                        "flipped (one bit), dropped and inserted: 0.01; or "
                        "flip=R,drop=R,insert=R")
    g.add_argument("--fault-seed", type=int, default=1,
                   help="seed of the faults (board i: seed + i; default: %(default)s)")
    g.add_argument("--fault-cut", type=int, metavar="BYTES",
                   help="cut the line after this many bytes (both directions)")
    g.add_argument("--fault-cut-mode", choices=["silent", "close"], default="silent",
                   help="silent: the wire goes dead; close: the port vanishes (default: "
                        "%(default)s)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("stream", help="live keyword spotting: microphone or WAV -> board")
    p.add_argument("--model", type=Path, default=Path("models/default"),
                   help="a models/<name> folder (default: %(default)s)")
    p.add_argument("--board", default="sim", help="sim or a serial port (default: %(default)s)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--mic", action="store_true", help="the default (or --device) input")
    source.add_argument("--wav", type=Path,
                        help="a WAV file, paced at real time; silence is added at its end so "
                             "that its last word gets every window")
    p.add_argument("--device", help="sounddevice input device (name or number)")
    p.add_argument("--fast", action="store_true", help="a WAV as fast as the board allows")
    p.add_argument("--threshold", type=float,
                   help="every keyword's (default: the model's detector.json, `kws eval "
                        "--stream`, else 0.7); sent to the board, which decides with it")
    p.add_argument("--smooth", type=int,
                   help="windows of posterior smoothing (default: the model's detector.json; "
                        "compiled into the firmware: another value needs a new build)")
    p.add_argument("--refractory", type=float,
                   help="seconds without a detection after one (default: the model's "
                        "detector.json; sent to the board)")
    p.add_argument("--json", type=Path, help="also write the summary as JSON")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("summary", help="the end of `make demo`: its report (with the device's "
                                       "figures) and what the run was, on one screen")
    p.add_argument("folder", type=Path, nargs="?", default=Path("build/demo"),
                   help="the demo's folder: model/, run/, eval.json, verify.json, fw/ "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("bench", help="run the benchmarks and write a JSON of results")
    p.add_argument("--out", type=Path, default=Path("bench/results.json"),
                   help="default: %(default)s")
    p.add_argument("--data", type=Path, default=None,
                   help="clips to time (default: the real dev clips if present, else the "
                        "synthetic corpus)")
    p.add_argument("--clips", type=int, default=1000, help="default: %(default)s")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KwsError as e:
        print(f"kws: {'interrupted' if e.exit_code == 130 else 'error'}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kws: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, permission denied, a file vanished: not a bug in kws
        where = f"{e.filename}: " if e.filename else ""
        print(f"kws: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
