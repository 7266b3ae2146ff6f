"""`kws verify`: stream held-out clips through a board, frame by frame, and check every score
vector against the Python integer model (`IntModel.run`), bit for bit.

    r = verify("models/default", "data/sc", board="sim", boards=2, max_clips=200)
    r["mismatched_frames"] == 0

The host computes and quantises the features exactly as the integer reference does
(kws.frontend.cache.compute_features, ShippedModel.quantize) and sends int8 frames; each clip starts
with RESET. With several boards, clips are shared out as the boards become free. A board that
fails mid-run (no reply, port gone, link cut) or Ctrl-C stops the run: `error` names the clip
and frame reached, `interrupted` is set, and the report holds the clips finished so far.

A noisy line (`faults`: simulated boards behind kws.link.faultproxy, seeded): kws.link.board resends
what is lost or damaged and accepts only frames that pass the CRC, seq, type and step-counter
checks. A CRC-16 still lets about 1 in 65,536 random corruptions through: at 5 % byte errors
(a few hundred tries per frame) that is a fair chance over a long run, on the board's side
(it executes a damaged request) as on ours. So on a noisy line (`confirm`, the default with
faults) each clip is run twice and its score vectors are accepted only if both runs agree bit
for bit; runs that disagree, or lose the board's step count (StateError), are run again (up
to MAX_RUNS). This compares the device with itself, never with the reference, so a
deterministic firmware bug still shows as mismatched frames.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from kws.errors import KwsError

MAX_RUNS = 6          # runs of one clip on a noisy line before giving up on it
MAX_EVENTS = 20       # restarts and disagreements described in the report


def _select(clips: list, max_clips: int | None) -> list:
    """At most max_clips clips, evenly spaced over the sorted list (so every class is in)."""
    if max_clips is None or max_clips >= len(clips):
        return clips
    if max_clips < 1:
        raise KwsError(f"--max-clips {max_clips}: expected at least 1")
    idx = np.unique(np.linspace(0, len(clips) - 1, max_clips).round().astype(int))
    return [clips[i] for i in idx]


class _Stopped(Exception):
    """Another board failed or Ctrl-C: abandon the clip in progress."""


def _run_clip(board, clip: np.ndarray, where: dict, stop: threading.Event):
    """RESET, then every frame of one clip [frames, n_in] through INFER; (scores, cycles)."""
    board.reset()
    k = board.identity.max_frames
    scores, cyc = [], []
    for t in range(0, clip.shape[0], k):
        if stop.is_set():
            raise _Stopped
        where["frame"] = t
        r = board.infer(clip[t:t + k])
        scores.append(r.scores)
        cyc.append(r.cycles)
    return np.concatenate(scores), np.concatenate(cyc)


def _stream(board, x: np.ndarray, order: list[int], lock: threading.Lock, got: dict,
            cycles: dict, stop: threading.Event, errors: list, tick, confirm: bool,
            tally: dict) -> None:
    """One board's worker: take the next clip, run it (twice or more with `confirm`), store
    the scores; on a KwsError record where it happened and stop every worker."""
    from kws.link.board import StateError

    where = {"clip_index": None, "frame": 0, "board": board.url}
    try:
        while not stop.is_set():
            with lock:
                if not order:
                    return
                i = order.pop(0)
            where.update(clip_index=i, frame=0)
            runs: list = []
            for n in range(MAX_RUNS):
                try:
                    s, c = _run_clip(board, x[i], where, stop)
                except StateError as e:
                    if not confirm:
                        raise
                    with lock:
                        tally["restarts"] += 1
                        _event(tally, "restart", i, where["frame"], str(e))
                    continue
                with lock:
                    tally["runs"] += 1
                if not confirm or any(np.array_equal(s, r) for r in runs):
                    break
                if runs:
                    t = int(np.flatnonzero((s != runs[-1]).any(axis=1))[0])
                    with lock:
                        tally["disagreements"] += 1
                        _event(tally, "disagreement", i, t, "two runs differ from this frame on")
                runs.append(s)
            else:
                raise KwsError(f"{MAX_RUNS} runs of the clip gave no two equal results: the "
                               "line is too noisy, or the board is not deterministic")
            got[i] = s
            cycles[i] = c
            tick(x.shape[1])
    except _Stopped:
        return
    except KwsError as e:
        with lock:
            errors.append({**where, "message": str(e)})
        stop.set()
    except Exception as e:  # noqa: BLE001 - a bug: still stop the run and keep the results
        with lock:
            errors.append({**where, "message": f"internal error: {e!r}"})
        stop.set()


def _event(tally: dict, what: str, clip_index: int, frame: int, detail: str) -> None:
    if len(tally["events"]) < MAX_EVENTS:
        tally["events"].append({"what": what, "clip_index": int(clip_index),
                                "frame": int(frame), "detail": detail})


def verify(model_dir, data_dir, board: str = "sim", boards: int = 1, split: str = "testing",
           max_clips: int | None = None, *, baud: int | None = None, cache_dir=None,
           progress: bool = False, fw=None, build_dir=None, timeout: float | None = None,
           retries: int = 4, faults=None, fault_seed: int = 0, cut_after: int | None = None,
           cut: str = "silent", confirm: bool | None = None, profile: str = "uno") -> dict:
    """Stream the clips of `split` (held-out speakers by default) through `board` ("sim" or
    serial URLs, comma-separated) and compare every frame; returns the report (module doc).
    `fw`: an already built kws.targets.base.Firmware for the simulated boards.
    `faults` (a rate such as 0.05, or "flip=..,drop=..,insert=..") / `cut_after` (bytes):
    each simulated board behind a kws.link.faultproxy.FaultProxy seeded `fault_seed` (+ board
    index); `confirm`: accept a clip only when two runs agree (default: with faults)."""
    from kws.checks.boards import open_boards
    from kws.link.board import fault_counters
    from kws.frontend.cache import compute_features
    from kws.checks.evaluate import split_clips
    from kws.targets.build import firmware_size
    from kws.link.faultproxy import Faults
    from kws.quant.modelfile import ShippedModel, load_model

    if boards < 1:
        raise KwsError(f"--boards {boards}: expected at least 1")
    if faults is not None:
        faults = Faults.parse(faults)
    if timeout is not None and not timeout > 0:
        raise KwsError(f"--timeout {timeout}: expected seconds > 0")
    if retries < 0:
        raise KwsError(f"--retries {retries}: expected 0 or more")
    if cut_after is not None and cut_after < 1:
        raise KwsError(f"--fault-cut {cut_after}: expected a number of bytes, at least 1")
    if confirm is None:
        confirm = faults is not None and faults.rate > 0
    shipped = model_dir if isinstance(model_dir, ShippedModel) else load_model(model_dir)
    data_dir = Path(data_dir)
    dataset, clips = split_clips(shipped, data_dir, split)
    clips = _select(clips, max_clips)
    got: dict[int, np.ndarray] = {}
    cycles: dict[int, np.ndarray] = {}
    errors: list[dict] = []
    tally: dict = {"runs": 0, "disagreements": 0, "restarts": 0, "events": []}
    lock, stop = threading.Lock(), threading.Event()
    bar = None

    def tick(n: int) -> None:
        if bar is not None:
            with lock:
                bar.update(n)

    # the boards first: a wrong port or model fails before the features are computed
    with open_boards(board, shipped, boards, baud=baud, fw=fw, build_dir=build_dir,
                     profile=profile,
                     timeout=timeout, retries=retries, faults=faults, fault_seed=fault_seed,
                     cut_after=cut_after, cut=cut) as bset:
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
                                                          errors, tick, confirm, tally),
                                    daemon=True)
                   for b in bset]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:               # keep what is done; the CLI still writes it
            stop.set()
            for t in threads:
                t.join(5)
            errors.insert(0, {"clip_index": None, "frame": None, "board": None,
                              "message": "interrupted (Ctrl-C)"})
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        stats = []
        if not errors:
            try:
                stats = [b.stats() for b in bset]
            except KwsError as e:
                errors.append({"clip_index": None, "frame": None, "board": None,
                               "message": f"STATS after the last clip: {e}"})
        link: dict = {}
        for b in bset:
            for k, v in b.link_counters().items():
                link[k] = max(link.get(k, 0), v) if k == "max_tries" else link.get(k, 0) + v
        injected = _sum_faults([fault_counters(b) for b in bset])
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
    stopped_at = None
    if errors and errors[0]["clip_index"] is not None:
        e = errors[0]
        i = e["clip_index"]
        stopped_at = {"clip": _rel(fs.clips[i].path, dataset.root), "clip_index": int(i),
                      "frame": int(e["frame"]), "board": e["board"]}
    report = {
        "model": shipped.name, "model_hash": shipped.hash, "model_bytes": shipped.n_bytes,
        "data": str(data_dir), "split": split, "split_rule": dataset.split_source,
        "board": board, "boards": len(threads),
        "complete": not errors and len(done) == len(x),
        "interrupted": bool(errors),
        "error": _error_text(errors[0], stopped_at, len(x), x.shape[1]) if errors else None,
        "stopped_at": stopped_at,
        "clips": len(done), "clips_planned": int(len(x)),
        "frames": n_frames, "frames_per_clip": int(x.shape[1]),
        "mismatched_frames": int(mismatched), "first_mismatch": first,
        # what the board counts per frame: "cycles", or "instructions" (exact) on QEMU
        "counter": getattr(firmware, "counter", "cycles"),
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
        "retries": int(link.get("resends", 0)),
        "link": link,
        "faults": injected,
        "confirm": {"enabled": bool(confirm), **tally},
        # the size of the firmware a user flashes (kws build), not of the simulator's build
        "firmware": firmware_size(shipped, profile) if firmware is not None else None,
    }
    return report


def _error_text(e: dict, at: dict | None, n_clips: int, n_frames: int) -> str:
    """One line: where the run stopped, then why."""
    if at is None:
        return e["message"]
    return (f"at clip {at['clip']} (index {at['clip_index']} of {n_clips} clips), frame "
            f"{at['frame']} of {n_frames}: {e['message']}")


def _sum_faults(counters: list) -> dict | None:
    """The fault proxies' counters, added up over the boards (rates and seed from the first)."""
    counters = [c for c in counters if c]
    if not counters:
        return None
    out = dict(counters[0])
    for c in counters[1:]:
        for k in ("bytes", "flipped", "dropped", "inserted", "faults"):
            out[k] += c[k]
        for d in ("to_board", "to_host"):
            out[d] = {k: out[d][k] + c[d][k] for k in out[d]}
    out["seeds"] = [c["seed"] for c in counters]
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def format_summary(r: dict) -> str:
    """One screen: what ran, the verdict, the figures."""
    from kws.targets.build import format_size

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
    if c and r.get("counter", "cycles") == "instructions":
        lines.append(f"instructions per frame (exact, QEMU -icount): min {c['min']}, median "
                     f"{c['median']:.0f}, max {c['max']} (QEMU is not cycle accurate: at one "
                     f"instruction per cycle, an estimate, {r['ms_per_frame']:.2f} ms at "
                     f"{r['device']['f_cpu'] / 1e6:g} MHz)")
    elif c:
        lines.append(f"cycles per frame: min {c['min']}, median {c['median']:.0f}, max {c['max']}"
                     f" ({r['ms_per_frame']:.2f} ms at {r['device']['f_cpu'] / 1e6:g} MHz)")
    if r["device_accuracy"] is not None:
        lines.append(f"accuracy: device {r['device_accuracy']:.4f}, integer reference "
                     f"{r['reference_accuracy']:.4f}")
    if r["firmware"]:
        fw = r["firmware"]
        lines.append(f"firmware: {format_size(fw)}"
                     + (f", peak stack {r['stack_peak']} bytes" if r["stack_peak"] else ""))
    link = r["link"]
    if r["frames_per_second"]:
        lines.append(f"harness: {r['frames_per_second']:.0f} frames/s, {r['seconds']:.1f} s; "
                     f"retries {r.get('retries', link.get('resends', 0))}")
    if link.get("resends") or link.get("damaged_replies") or link.get("link_errors"):
        lines.append(
            f"link: {link.get('requests', 0)} requests, {link.get('resends', 0)} retries "
            f"(the most for one request: {link.get('max_tries', 0) - 1}); timeouts "
            f"{link.get('timeouts', 0)} ({link.get('silent_timeouts', 0)} silent), damaged "
            f"replies {link.get('damaged_replies', 0)}, damaged requests reported by the board "
            f"{link.get('link_errors', 0)}, stale replies dropped {link.get('stale_replies', 0)}"
            f", replies voted from damaged copies {link.get('reconstructed', 0)}")
    f = r.get("faults")
    if f:
        lines.append(
            f"faults injected (seed {f['seed']}): {f['faults']} in {f['bytes']} bytes "
            f"({f['flipped']} flipped, {f['dropped']} dropped, {f['inserted']} inserted; "
            f"rate {f['rate']:.3g})" + (f"; link cut after {f['cut_at']} bytes"
                                          if f.get("cut_at") is not None else ""))
    cf = r.get("confirm")
    if cf and cf["enabled"]:
        lines.append(f"confirmed: every clip run until two runs agree: {cf['runs']} runs, "
                     f"{cf['disagreements']} disagreements, {cf['restarts']} restarts "
                     "(step counter lost)")
        for e in cf.get("events", [])[:5]:
            lines.append(f"  {e['what']}: clip index {e['clip_index']}, frame {e['frame']}: "
                         f"{e['detail']}")
    m = r["first_mismatch"]
    if m:
        lines += [f"FIRST MISMATCH: clip {m['clip']} (#{m['clip_index']}), frame {m['frame']}",
                  f"  expected {m['expected']}", f"  got      {m['got']}"]
    if r["error"]:
        lines.append(f"STOPPED: {r['error']}")
        lines.append(f"kept: the {r['clips']} clips finished before it")
    verdict = "OK: every frame bit-exact" if r["complete"] and not r["mismatched_frames"] \
        else "FAILED"
    lines.append(verdict)
    return "\n".join(lines)
