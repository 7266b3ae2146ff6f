"""`kws verify`: stream held-out clips through a board, frame by frame, and check every score
vector against the Python integer model (`IntModel.run`), bit for bit.

    r = verify("models/default", "data/sc", board="sim", boards=2, max_clips=200)
    r["mismatched_frames"] == 0

The host computes and quantises the features exactly as the integer reference does
(kws.cache.compute_features, ShippedModel.quantize) and sends int8 frames; each clip starts
with RESET. With several boards, clips are shared out as the boards become free. A board that
fails mid-run (no reply, port gone) stops the run with `error` set and the results so far.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from kws.errors import KwsError


def _select(clips: list, max_clips: int | None) -> list:
    """At most max_clips clips, evenly spaced over the sorted list (so every class is in)."""
    if max_clips is None or max_clips >= len(clips):
        return clips
    if max_clips < 1:
        raise KwsError(f"--max-clips {max_clips}: expected at least 1")
    idx = np.unique(np.linspace(0, len(clips) - 1, max_clips).round().astype(int))
    return [clips[i] for i in idx]


def _stream(board, x: np.ndarray, order: list[int], lock: threading.Lock, got: dict,
            cycles: dict, stop: threading.Event, errors: list, tick) -> None:
    """One board's worker: take the next clip, RESET, every frame INFER, store the scores."""
    try:
        while not stop.is_set():
            with lock:
                if not order:
                    return
                i = order.pop(0)
            board.reset()
            k = board.identity.max_frames
            scores, cyc = [], []
            for t in range(0, x.shape[1], k):
                r = board.infer(x[i, t:t + k])
                scores.append(r.scores)
                cyc.append(r.cycles)
            got[i] = np.concatenate(scores)
            cycles[i] = np.concatenate(cyc)
            tick(x.shape[1])
    except KwsError as e:
        errors.append(str(e))
        stop.set()


def verify(model_dir, data_dir, board: str = "sim", boards: int = 1, split: str = "testing",
           max_clips: int | None = None, *, baud: int | None = None, cache_dir=None,
           progress: bool = False, fw=None, build_dir=None, timeout: float | None = None,
           retries: int = 4) -> dict:
    """Stream the clips of `split` (held-out speakers by default) through `board` ("sim" or
    serial URLs, comma-separated) and compare every frame; returns the report (module doc).
    `fw`: an already built kws.simboard.Firmware for the simulated boards."""
    from kws.board import open_boards
    from kws.cache import compute_features
    from kws.evaluate import split_clips
    from kws.modelfile import ShippedModel, load_model

    if boards < 1:
        raise KwsError(f"--boards {boards}: expected at least 1")
    shipped = model_dir if isinstance(model_dir, ShippedModel) else load_model(model_dir)
    data_dir = Path(data_dir)
    dataset, clips = split_clips(shipped, data_dir, split)
    clips = _select(clips, max_clips)
    got: dict[int, np.ndarray] = {}
    cycles: dict[int, np.ndarray] = {}
    errors: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    bar = None

    def tick(n: int) -> None:
        if bar is not None:
            with lock:
                bar.update(n)

    # the boards first: a wrong port or model fails before the features are computed
    with open_boards(board, shipped, boards, baud=baud, fw=fw, build_dir=build_dir,
                     timeout=timeout, retries=retries) as bset:
        ident = bset[0].identity
        fs = compute_features(clips, dataset.root, shipped.features,
                              Path(cache_dir) if cache_dir else None, progress=progress)
        y = dataset.labels(fs.clips)
        im = shipped.int_model
        x = shipped.quantize(fs.features)                   # int8 values [clips, frames, n_in]
        expected = im.run(x)                                # [clips, frames, classes]

        order = list(range(len(x)))
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=x.shape[0] * x.shape[1], desc="verify", unit="frame", leave=False)
        start = time.perf_counter()
        threads = [threading.Thread(target=_stream, args=(b, x, order, lock, got, cycles, stop,
                                                          errors, tick), daemon=True)
                   for b in bset]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            for t in threads:
                t.join(5)
            raise
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        stats = []
        if not errors:
            try:
                stats = [b.stats() for b in bset]
            except KwsError as e:
                errors.append(str(e))
        link = {}
        for b in bset:
            for k, v in b.link_counters().items():
                link[k] = link.get(k, 0) + v
        firmware = bset.firmware

    done = sorted(got)
    n_frames = len(done) * x.shape[1]
    mismatched, first = 0, None
    for i in done:
        bad = np.flatnonzero((got[i] != expected[i]).any(axis=1))
        mismatched += len(bad)
        if len(bad) and first is None:
            t = int(bad[0])
            first = {"clip": _rel(fs.clips[i].path, dataset.root), "clip_index": int(i),
                     "offset": int(fs.clips[i].offset), "frame": t,
                     "expected": expected[i, t].tolist(), "got": got[i][t].tolist()}
    all_cycles = np.concatenate([cycles[i] for i in done]) if done else np.zeros(0, np.int64)
    pool = shipped.pool_frames
    if done:
        dev = np.stack([got[i] for i in done])
        pred_dev = dev[:, -pool:].mean(1).argmax(1)
        pred_ref = expected[done][:, -pool:].mean(1).argmax(1)
        acc_dev = float((pred_dev == y[done]).mean())
        acc_ref = float((pred_ref == y[done]).mean())
    else:
        acc_dev = acc_ref = None
    med = float(np.median(all_cycles)) if len(all_cycles) else None
    report = {
        "model": shipped.name, "model_hash": shipped.hash, "model_bytes": shipped.n_bytes,
        "data": str(data_dir), "split": split, "split_rule": dataset.split_source,
        "board": board, "boards": len(threads),
        "complete": not errors and len(done) == len(x),
        "error": errors[0] if errors else None,
        "clips": len(done), "clips_planned": int(len(x)),
        "frames": n_frames, "frames_per_clip": int(x.shape[1]),
        "mismatched_frames": int(mismatched), "first_mismatch": first,
        "cycles_per_frame": ({"min": int(all_cycles.min()), "median": med,
                              "max": int(all_cycles.max())} if med is not None else None),
        "ms_per_frame": med / ident.f_cpu * 1000 if med is not None and ident.f_cpu else None,
        "device_accuracy": acc_dev, "reference_accuracy": acc_ref,
        "frames_per_second": n_frames / seconds if seconds > 0 else None,
        "seconds": seconds,
        "device": {"firmware": ident.firmware, "f_cpu": ident.f_cpu, "baud": ident.baud,
                   "frames_per_request": ident.max_frames},
        "stack_peak": max((s.stack_peak for s in stats), default=None),
        "device_errors": {"crc_errors": sum(s.crc_errors for s in stats),
                          "bad_frames": sum(s.bad_frames for s in stats),
                          "duplicates": sum(s.duplicates for s in stats)} if stats else None,
        "link": link,
        "firmware": ({"flash": firmware.flash, "flash_max": firmware.flash_max,
                      "ram": firmware.ram, "ram_max": firmware.ram_max}
                     if firmware is not None else None),
    }
    return report


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def format_summary(r: dict) -> str:
    """One screen: what ran, the verdict, the figures."""
    c = r["cycles_per_frame"]
    lines = [
        f"model {r['model']} ({r['model_bytes']} bytes, hash {r['model_hash'][:16]}) on "
        f"{r['boards']} {'simulated ' if r['board'] == 'sim' else ''}board"
        f"{'s' if r['boards'] > 1 else ''} ({r['device']['f_cpu'] / 1e6:g} MHz, "
        f"{r['device']['baud']} baud)",
        f"data {r['data']} split {r['split']} [{r['split_rule']}]",
        f"clips {r['clips']}/{r['clips_planned']}, frames {r['frames']}: "
        f"mismatched frames {r['mismatched_frames']}",
    ]
    if c:
        lines.append(f"cycles per frame: min {c['min']}, median {c['median']:.0f}, max {c['max']}"
                     f" ({r['ms_per_frame']:.2f} ms at {r['device']['f_cpu'] / 1e6:g} MHz)")
    if r["device_accuracy"] is not None:
        lines.append(f"accuracy: device {r['device_accuracy']:.4f}, integer reference "
                     f"{r['reference_accuracy']:.4f}")
    if r["firmware"]:
        fw = r["firmware"]
        lines.append(f"firmware: flash {fw['flash']} / {fw['flash_max']} bytes, static RAM "
                     f"{fw['ram']} / {fw['ram_max']} bytes"
                     + (f", peak stack {r['stack_peak']} bytes" if r["stack_peak"] else ""))
    if r["frames_per_second"]:
        link = r["link"]
        lines.append(f"harness: {r['frames_per_second']:.0f} frames/s, {r['seconds']:.1f} s; "
                     f"resends {link.get('resends', 0)}")
    m = r["first_mismatch"]
    if m:
        lines += [f"FIRST MISMATCH: clip {m['clip']} (#{m['clip_index']}), frame {m['frame']}",
                  f"  expected {m['expected']}", f"  got      {m['got']}"]
    if r["error"]:
        lines.append(f"STOPPED: {r['error']}")
    verdict = "OK: every frame bit-exact" if r["complete"] and not r["mismatched_frames"] \
        else "FAILED"
    lines.append(verdict)
    return "\n".join(lines)
