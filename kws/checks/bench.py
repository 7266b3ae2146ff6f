"""`make bench`: measure, then write bench/results.json and a table in bench/README.md.

Each stage of the pipeline adds its entries here. An entry records the value, its unit, the
command that measured it and the config, so every figure quoted in a note can be reproduced.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from kws.atomic import atomic_open
from kws.config import FeatureConfig
from kws.errors import KwsError

DEV_DATA = Path("../shared/data/speech_commands_dev")
SYNTH_DATA = Path("data/synth")
MODEL = Path("models/default")
WAKE_MODEL = Path("models/wake_stop")          # entries prefixed "wake_stop."
OTHER_ARITH = Path("models/default_int16")    # entries prefixed "int16state.": the shipped
                                              # recipe in the int16-state arithmetic
NEGATIVES = [Path("../shared/data/negatives/speech"), Path("../shared/data/negatives/wakewords")]
SENTENCES = Path("data/sentences")   # `make sentences`: synthetic, beside the real ones


def default_bench_data() -> Path:
    for candidate in (DEV_DATA, SYNTH_DATA):
        if candidate.is_dir():
            return candidate
    raise KwsError(f"no clips to benchmark: neither {DEV_DATA} nor {SYNTH_DATA} exists "
                   "(run `make demo` to make the synthetic corpus, or pass --data)")


def _best_time(fn, repeats: int = 3) -> float:
    """The fastest of a few runs: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_features(data: Path, n_clips: int, cfg: FeatureConfig) -> dict:
    """Clips/s of the batched torch path (all cores, and one) and of a per-clip librosa loop
    (one core) on the same audio, best of three runs each."""
    import librosa
    import torch

    from kws.frontend.cache import load_clip_audio
    from kws.data.dataset import load_dataset
    from kws.frontend.features import features_batch

    clips = load_dataset(data).clips
    step = max(1, len(clips) // n_clips)
    audio, _, _ = load_clip_audio(clips[::step][:n_clips], cfg, skip_bad=True, progress=False)
    margin = (cfg.n_fft - cfg.win_length) // 2

    def librosa_loop():
        for clip in audio:
            mel = librosa.feature.melspectrogram(
                y=np.pad(clip, margin), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                hop_length=cfg.hop_length, win_length=cfg.win_length, window="hann",
                center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                htk=True, norm=None)
            np.log(np.maximum(mel, cfg.log_floor))

    threads = torch.get_num_threads()
    batched_all = _best_time(lambda: features_batch(audio, cfg))
    torch.set_num_threads(1)
    batched_one = _best_time(lambda: features_batch(audio, cfg))
    torch.set_num_threads(threads)
    looped = _best_time(librosa_loop)

    n = len(audio)
    command = f"kws bench --data {data} --clips {n_clips}"
    what = f"{n} clips, hop {cfg.hop_length}, best of 3"
    return {
        "feature_clips_per_s_batched": _entry(n / batched_all, "clips/s", command,
                                              f"torch.stft batches, {threads} threads; {what}"),
        "feature_clips_per_s_batched_1_thread": _entry(n / batched_one, "clips/s", command,
                                                       f"torch.stft batches, 1 thread; {what}"),
        "feature_clips_per_s_librosa": _entry(n / looped, "clips/s", command,
                                              f"librosa melspectrogram per clip; {what}"),
        "feature_throughput_ratio": _entry(looped / batched_all, "x", command,
                                           "batched (all threads) / librosa loop"),
        "feature_throughput_ratio_1_thread": _entry(looped / batched_one, "x", command,
                                                    "batched (1 thread) / librosa loop"),
    }


def bench_model(model: Path, data: Path, max_clips: int = 200, boards=(1, 2)) -> dict:
    """The shipped model on the simulated board: bytes, cycles per frame (median, min, max)
    and per MAC, and the harness throughput with each count of simulated `boards` (every frame
    compared, 0 mismatches)."""
    from kws.quant.modelfile import load_model
    from kws.checks.verify import verify

    shipped = load_model(model)
    out = {"model_bytes": _entry(shipped.n_bytes, "bytes", f"kws eval --model {model}",
                                 "every array the firmware stores (= ELF symbol sizes)")}
    for n in boards:
        r = verify(model, data, board="sim", boards=n, max_clips=max_clips,
                   cache_dir=Path("data/cache"))
        if r["mismatched_frames"] or not r["complete"]:
            raise KwsError(f"bench: verify on {n} board(s) failed: "
                           f"{r['error'] or r['first_mismatch']}")
        cmd = (f"kws verify --model {model} --data {data} --board sim --boards {n} "
               f"--max-clips {max_clips}")
        out[f"harness_frames_per_s_{n}_boards"] = _entry(
            r["frames_per_second"], "frames/s", cmd, f"{r['frames']} frames, 0 mismatches")
    fw = r.get("firmware") or {}   # kws.targets.build.firmware_size: the uno build a user flashes
    if fw.get("flash") is not None:
        out["device_flash"] = _entry(fw["flash"], "bytes", cmd,
                                     f".text + .data of the {fw['board']} build (kws build)")
    if fw.get("ram") is not None and r.get("stack_peak") is not None:
        out["device_ram_static"] = _entry(fw["ram"], "bytes", cmd,
                                          f".data + .bss of the {fw['board']} build (kws build)")
        out["device_stack_peak"] = _entry(r["stack_peak"], "bytes", cmd,
                                          "painted-stack high-water mark after the run")
        out["device_ram_total"] = _entry(fw["ram"] + r["stack_peak"], "bytes", cmd,
                                         "static RAM + peak stack (budget 1,024)")
    cycles = r["cycles_per_frame"]["median"]
    macs = shipped.int_model.macs_per_frame()
    out["device_cycles_per_frame"] = _entry(
        cycles, "cycles", cmd, "Timer1 around kws_step, simulated ATmega328P at 16 MHz, median")
    for k in ("min", "max"):
        out[f"device_cycles_per_frame_{k}"] = _entry(
            r["cycles_per_frame"][k], "cycles", cmd,
            f"Timer1 around kws_step, simulated ATmega328P at 16 MHz, {k}")
    out["device_cycles_per_mac"] = _entry(cycles / macs, "cycles", cmd,
                                          f"median cycles / {macs} stored weights")
    return out


def bench_other_arithmetic(model: Path, data: Path) -> dict:
    """The shipped recipe in the other arithmetic (model.state_bits) on the simulated Uno:
    bytes, cycles per frame (min, median, max) and per stored weight, flash, RAM and stack,
    0 mismatches; its held-out accuracy when the data is the dev clips."""
    from kws.checks.evaluate import evaluate

    out = {k: v for k, v in bench_model(model, data, boards=(2,)).items()
           if not k.startswith("harness_")}
    if Path(data) == DEV_DATA:
        e = evaluate(model, data)
        out["accuracy_int_heldout"] = _entry(
            e["accuracy_int"], "fraction", f"kws eval --model {model} --data {data}",
            f"{e['n_clips']} held-out clips ({e['split_rule']})")
    return out


def bench_listen(model: Path, data: Path, n_clips: int = 24) -> dict:
    """The board listening and deciding (LISTEN, kws_detect.c): held-out keyword clips one
    after another through a simulated board at the model's stored settings; cycles per frame
    (every instance's step; on a window's last frame the detector too), the detector's own
    cost, the stack after listening and deciding, and the board's decisions = Python's."""
    from kws.checks.boards import open_boards
    from kws.checks.stream import audio_chunks, stream
    from kws.data.audio import load_audio
    from kws.data.dataset import load_dataset
    from kws.data.tasks import keyword_words
    from kws.quant.modelfile import load_model
    from kws.targets.build import firmware_size

    shipped = load_model(model)
    sr = shipped.features.sample_rate
    words = keyword_words(shipped.classes)
    clips = [c for c in load_dataset(data).clips if c.split == "testing" and c.word in words
             and not c.offset]
    clips = sorted(clips, key=lambda c: str(c.path))[:: max(1, len(clips) // n_clips)][:n_clips]
    gap = np.zeros(sr // 2, np.float32)
    audio = np.concatenate([x for c in clips for x in (load_audio(c.path, sr, sr), gap)])
    with open_boards("sim", shipped, 1) as boards:
        r = stream(shipped, boards[0], audio_chunks(audio, sr, shipped.features.hop_length,
                                                    realtime=False),
                   on_detection=lambda line: None, on_note=lambda note: None)
        stack = boards[0].stats().stack_peak
    if r["mismatched_windows"] or r["mismatched_decisions"] or \
            r["detections"] != r["python_detections"]:
        raise KwsError(f"bench: the board's windows or decisions differ from Python's: {r}")
    cmd = (f"kws bench --data {data} (kws stream --model {model} --board sim --wav "
           f"<{len(clips)} held-out keyword clips> --fast)")
    what = (f"{r['frames']} frames, {r['windows']} windows, {len(r['detections'])} detections "
            f"at threshold {r['threshold']}; board = Python on every window and decision")
    size = firmware_size(shipped, "uno")
    ends, steady = r["cycles_window_end"], r["cycles_steady"]
    return {
        "device_listen_cycles_per_frame": _entry(
            r["cycles_per_frame"]["median"], "cycles", cmd,
            f"Timer1 around LISTEN: {r['instances']} instances' kws_step, median; {what}"),
        "device_listen_cycles_window_end_max": _entry(
            ends["max"], "cycles", cmd, "the costliest frame: a window ends, the detector "
            "decides (softmax, smoothing, thresholds)"),
        "device_detector_cycles": _entry(
            ends["median"] - steady["median"], "cycles", cmd,
            "median window-end frame - median other frame (the detector + pooled copy)"),
        "device_stack_peak_listen": _entry(stack, "bytes", cmd,
                                           "painted-stack high-water mark after listening"),
        "device_ram_total_listen": _entry(size["ram"] + stack, "bytes", cmd,
                                          "static RAM of the uno build + peak stack after "
                                          "listening and deciding (budget 1,024)"),
    }


# Cycles per instruction assumed for the cycle estimates of the Arm boards: integer code on
# Cortex-M0+/M3/M4 runs most instructions in 1 cycle, loads and taken branches in 2 (or more).
# QEMU counts instructions exactly but not cycles: these figures are estimates.
ARM_CPI = (1.0, 1.5)
# which simulated core stands for each real board (kws.targets.arm.profiles)
ARM_SIMULATED = {"mps2-an386": ("nano33ble", "uno-r4"), "mps2-an385": (),
                 "mps2-m0plus": ("pico",), "microbit": ("microbit",)}


def bench_arm(model: Path, data: Path, max_clips: int = 50) -> dict:
    """The model on the simulated Cortex-M boards (QEMU): instructions per frame (exact,
    -icount), flash and static RAM of the `kws build` firmware, peak stack; and for each real
    Arm board the time per frame its clock gives at ARM_CPI, labelled an estimate."""
    from kws.checks.verify import verify
    from kws.quant.modelfile import load_model
    from kws.targets.arm.profiles import PROFILES

    shipped = load_model(model)
    hop_ms = shipped.features.hop_length / shipped.features.sample_rate * 1000
    out = {}
    for prof, boards in ARM_SIMULATED.items():
        r = verify(model, data, board="sim", boards=1, max_clips=max_clips, profile=prof,
                   cache_dir=Path("data/cache"))
        if r["mismatched_frames"] or not r["complete"]:
            raise KwsError(f"bench: verify on {prof} failed: "
                           f"{r['error'] or r['first_mismatch']}")
        cmd = (f"kws verify --model {model} --data {data} --board sim --profile {prof} "
               f"--max-clips {max_clips}")
        p = PROFILES[prof]
        insns = r["cycles_per_frame"]["median"]
        out[f"arm_{prof}_instructions_per_frame"] = _entry(
            insns, "instructions", cmd, f"{p.cpu} code on QEMU {p.qemu} -icount: exact, "
            f"median of {r['frames']} frames, 0 mismatches")
        fw = r["firmware"]
        out[f"arm_{prof}_flash"] = _entry(fw["flash"], "bytes", cmd,
                                          f".text + .ARM.exidx + .data of the {prof} build")
        out[f"arm_{prof}_ram_static"] = _entry(fw["ram"], "bytes", cmd,
                                               f".data + .bss of the {prof} build")
        out[f"arm_{prof}_stack_peak"] = _entry(r["stack_peak"], "bytes", cmd,
                                               "painted-stack high-water mark after the run")
        lo, hi = (insns * c for c in ARM_CPI)
        out[f"arm_{prof}_cycles_estimate"] = _entry(
            (lo + hi) / 2, "cycles", cmd, f"ESTIMATE: instructions x CPI {ARM_CPI[0]:g}-"
            f"{ARM_CPI[1]:g} = {lo:,.0f}-{hi:,.0f} cycles (QEMU is not cycle accurate)")
        for b in boards:
            f = PROFILES[b].f_cpu
            out[f"arm_{b}_ms_per_frame_estimate"] = _entry(
                (lo + hi) / 2 / f * 1000, "ms", cmd,
                f"ESTIMATE: {prof} instructions x CPI {ARM_CPI[0]:g}-{ARM_CPI[1]:g} at "
                f"{f / 1e6:g} MHz = {lo / f * 1000:.3f}-{hi / f * 1000:.3f} ms "
                f"({shipped.n_bytes} B model; a frame every {hop_ms:g} ms in real time)")
    return out


def bench_accuracy(model: Path, data: Path) -> dict:
    """Held-out accuracy (float, integer), the integer reference's speed, the streaming
    figures (1 h seeded stream over the model's training folders, followed by the testing
    speakers of the keyword-free audio when it is there) and the recorded training time."""
    import csv

    from kws.checks.evaluate import evaluate
    from kws.quant.modelfile import load_model
    from kws.checks.streameval import evaluate_stream, thresholds_text
    from kws.data.streamgen import StreamSpec
    from kws.detect.detector import load_settings

    shipped = load_model(model)
    cmd = f"kws eval --model {model} --data {data}"
    r = evaluate(model, data)
    out = {"accuracy_int_heldout": _entry(r["accuracy_int"], "fraction", cmd,
                                          f"{r['n_clips']} held-out clips ({r['split_rule']})"),
           "accuracy_float_heldout": _entry(r["accuracy_float"], "fraction", cmd,
                                            f"the same {r['n_clips']} clips, float model")}
    x = np.random.default_rng(0).integers(-128, 128, (1000, 49, shipped.int_model.n_in))
    t = _best_time(lambda: shipped.int_model.run(x))
    out["intref_clips_per_s"] = _entry(1000 / t, "clips/s", "kws bench",
                                       "IntModel.run, batch of 1000 clips x 49 frames, best of 3")
    trained_on = shipped.doc.get("training", {}).get("data") or [str(data)]
    trained_on = [trained_on] if isinstance(trained_on, str) else trained_on
    folders = [Path(d) for d in trained_on] if all(Path(d).is_dir() for d in trained_on) \
        else [data]
    negatives = [n for n in NEGATIVES if n.is_dir()] if all(n.is_dir() for n in NEGATIVES) \
        else []
    from kws.data.sentences import MANIFEST
    if (SENTENCES / MANIFEST).is_file():
        negatives.append(SENTENCES)
    listen = load_settings(shipped)          # the model's windows in flight and smoothing
    s = evaluate_stream(shipped, folders, StreamSpec(), instances=listen.instances,
                        smooth=listen.smooth_windows, negatives=negatives,
                        per_keyword=bool(listen.thresholds))   # as the model listens
    scmd = (f"kws eval --model {model} " + " ".join(f"--data {d}" for d in folders)
            + f" --stream --instances {listen.instances} --smooth {listen.smooth_windows}"
            + (" --per-keyword" if listen.thresholds else "")
            + "".join(f" --negatives {n}" for n in negatives))
    p = s["operating_point"]
    neg = s["stream"].get("negatives")
    what = (f"{s['hours']:.2f} h held-out stream, {s['at_operating_point']['events']} keywords"
            + (f" (incl. {neg['minutes']:.0f} min of keyword-free speech, testing speakers)"
               if neg else "")
            + (f", thresholds per keyword ({thresholds_text(p['thresholds'])})"
               if p.get("thresholds") else f", threshold {p['threshold']}")
            + " chosen on validation speakers")
    out["stream_fa_per_hour"] = _entry(p["fa_per_hour"], "per hour", scmd, what)
    out["stream_miss_rate"] = _entry(p["miss_rate"], "fraction", scmd, what)
    metrics = Path(shipped.doc.get("training", {}).get("run_dir", "")) / "metrics.csv"
    if metrics.is_file():
        rows = list(csv.DictReader(metrics.read_text().splitlines()))
        out["training_seconds"] = _entry(
            sum(float(row["seconds"]) for row in rows), "s", "make train (last step)",
            f"{len(rows)} epochs, from {metrics}")
    return out


QUOTED = [  # published figures: quoted, not measured here
    "FastGRNN paper (Kusupati et al., NeurIPS 2018): 92.10 % on Google-12 (v0.01, ~22k "
    "training clips) at 5.5 KB; 537 ms per clip on a 48 MHz Cortex-M0+.",
    "TensorFlow Lite Micro micro_speech: 18.8 KB model, 4 classes (yes, no, silence, unknown).",
]


def _entry(value: float, unit: str, command: str, what: str) -> dict:
    return {"value": round(float(value), 3), "unit": unit, "command": command, "what": what}


def run_benchmarks(out: Path, data: Path | None = None, n_clips: int = 1000) -> dict:
    """Run every benchmark, merge into `out` (entries of other stages are kept), write both files."""
    import torch

    data = data or default_bench_data()
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("entries", {})
    results["machine"] = {
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform()}
    results["generated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    from kws.config import load_config

    features = load_config("configs/default.yaml").features
    results["entries"].update(bench_features(Path(data), n_clips, features))
    for model, prefix in ((MODEL, ""), (WAKE_MODEL, "wake_stop.")):
        if not (model / "model.json").exists():
            continue
        entries = bench_model(model, Path(data))
        entries.update(bench_listen(model, Path(data)))
        if prefix == "" and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
            entries.update(bench_arm(model, Path(data)))
        if Path(data) == DEV_DATA:
            entries.update(bench_accuracy(model, Path(data)))
        results["entries"].update({prefix + k: v for k, v in entries.items()})
    if (OTHER_ARITH / "model.json").exists():
        results["entries"].update({"int16state." + k: v for k, v in
                                   bench_other_arithmetic(OTHER_ARITH, Path(data)).items()})
    results["quoted_not_measured"] = QUOTED
    with atomic_open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with atomic_open(out.parent / "README.md", "w") as f:
        f.write(format_table(results))
    print(format_table(results))
    return results


def format_table(results: dict) -> str:
    lines = ["# Benchmarks", "",
             f"Written by `make bench` on {results['generated']} "
             f"({results['machine']['cpu_count']} CPUs). Raw figures: `results.json`.", "",
             "| measure | value | unit | what | command |", "|---|---:|---|---|---|"]
    for name, e in results["entries"].items():
        lines.append(f"| {name} | {e['value']:g} | {e['unit']} | {e['what']} | `{e['command']}` |")
    lines += ["", "Reference figures, **quoted from their publications, not measured here**:", ""]
    lines += [f"- {q}" for q in results.get("quoted_not_measured", QUOTED)]
    return "\n".join(lines) + "\n"
