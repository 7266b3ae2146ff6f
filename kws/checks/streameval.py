"""`kws eval --stream`: misses and false accepts per hour on a long seeded stream.

The integer model listens to the stream exactly as the board does (the window schedule of
`kws.detect.windows`, the front end of `kws stream`), and the detector is `kws.detect.detector.Detector`.

Scoring. A detection at time t was made from the audio of [t - span, t] (its window, and the
earlier windows its smoothing averaged). It is a hit if a keyword event of the same word, not
yet claimed, has voiced audio inside that span; otherwise it is a false accept (so is a second
detection of a word already detected). A keyword event that no detection claims is a miss.
Misses are counted per keyword event, false accepts per hour of stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kws.data.dataset import KEYWORDS
from kws.data.tasks import keyword_words

FA_TARGET = 2.0      # false accepts per hour (the goal), at...
MISS_TARGET = 0.10   # ...at most this miss rate
THRESHOLDS = np.round(np.concatenate([np.arange(0.20, 0.90, 0.02), np.arange(0.90, 0.996, 0.005),
                                      [0.997, 0.998, 0.999, 0.9995, 0.9999]]), 4)


@dataclass
class Score:
    events: dict[str, int] = field(default_factory=dict)       # keyword -> events in the stream
    misses: dict[str, int] = field(default_factory=dict)
    false_accepts: dict[str, int] = field(default_factory=dict)
    fa_on_words: int = 0     # false accepts that overlap some placed word (the rest: noise only)
    by_snr: dict[float, list[int]] = field(default_factory=dict)   # SNR -> [keywords, misses]

    def summary(self, hours: float) -> dict:
        n, m, fa = (sum(d.values()) for d in (self.events, self.misses, self.false_accepts))
        per = {w: {"events": self.events[w], "misses": self.misses[w],
                   "miss_rate": self.misses[w] / self.events[w] if self.events[w] else None,
                   "false_accepts": self.false_accepts[w],
                   "fa_per_hour": self.false_accepts[w] / hours} for w in self.events}
        return {"events": n, "misses": m, "miss_rate": m / n if n else None,
                "false_accepts": fa, "fa_per_hour": fa / hours,
                "fa_on_words": self.fa_on_words, "fa_in_noise": fa - self.fa_on_words,
                "per_keyword": per,
                "miss_rate_by_snr": {snr: {"events": k, "misses": lost, "miss_rate": lost / k}
                                     for snr, (k, lost) in sorted(self.by_snr.items())}}


def score_detections(events, detections, span_s: float, keywords=KEYWORDS) -> Score:
    """events: objects with word, voice_start_s, voice_end_s; detections: (time_s, word)."""
    s = Score({w: 0 for w in keywords}, {w: 0 for w in keywords}, {w: 0 for w in keywords})
    for e in events:
        if e.word in s.events:
            s.events[e.word] += 1
    claimed: set[int] = set()
    for t, word in sorted(detections):
        lo = t - span_s
        hits = [i for i, e in enumerate(events) if e.word == word and i not in claimed
                and e.voice_end_s > lo and e.voice_start_s < t]
        if hits:
            claimed.add(hits[0])
            continue
        s.false_accepts[word] += 1
        s.fa_on_words += any(e.voice_end_s > lo and e.voice_start_s < t for e in events)
    for i, e in enumerate(events):
        if e.word in s.misses:
            missed = i not in claimed
            s.misses[e.word] += missed
            k, m = s.by_snr.get(e.snr_db, (0, 0))
            s.by_snr[e.snr_db] = [k + 1, m + missed]
    return s


def stream_scores(model, audio: np.ndarray, schedule) -> tuple[np.ndarray, np.ndarray]:
    """Pooled integer scores of every window of the stream, and each window's end time (s)."""
    from kws.checks.stream import FrameMaker
    from kws.detect.windows import run_windows

    cfg = model.features
    maker = FrameMaker(cfg)
    step = cfg.hop_length * 500
    feats = np.concatenate([maker.push(audio[i:i + step]) for i in range(0, len(audio), step)])
    xq = model.quantize(feats)
    pooled = run_windows(model.int_model, xq, schedule)
    ends = schedule.end_frames(len(pooled))
    return pooled, (ends * cfg.hop_length + cfg.win_length) / cfg.sample_rate


def detections_at(detector_args: dict, posteriors: np.ndarray, times: np.ndarray, threshold: float,
                  thresholds: dict | None = None):
    """Replay the detector over precomputed window posteriors at one threshold (or at
    per-keyword `thresholds`)."""
    from kws.detect.detector import Detector

    det = Detector(**dict(detector_args, threshold=threshold, thresholds=thresholds))
    return [(d.time_s, d.word) for p, t in zip(posteriors, times)
            if (d := det.decide(p, t)) is not None]


def det_curve(events, posteriors, times, detector_args: dict, span_s: float, hours: float,
              thresholds=THRESHOLDS) -> list[dict]:
    rows = []
    for th in thresholds:
        s = score_detections(events, detections_at(detector_args, posteriors, times, th), span_s,
                             keyword_words(detector_args["classes"]))
        summ = s.summary(hours)
        rows.append({"threshold": float(th), "miss_rate": summ["miss_rate"],
                     "fa_per_hour": summ["fa_per_hour"],
                     "per_keyword": {w: (v["miss_rate"], v["fa_per_hour"])
                                     for w, v in summ["per_keyword"].items()}})
    return rows


def choose_operating_point(curve: list[dict]) -> dict:
    """Fewest misses with at most FA_TARGET false accepts per hour; if no threshold gets
    there, the fewest false accepts (then fewest misses)."""
    ok = [r for r in curve if r["fa_per_hour"] <= FA_TARGET]
    if ok:
        best = min(ok, key=lambda r: (r["miss_rate"], -r["threshold"]))
    else:
        best = min(curve, key=lambda r: (r["fa_per_hour"], r["miss_rate"]))
    met = best["fa_per_hour"] <= FA_TARGET and best["miss_rate"] <= MISS_TARGET
    return {"threshold": best["threshold"], "miss_rate": best["miss_rate"],
            "fa_per_hour": best["fa_per_hour"], "goal_met": met}


def keyword_thresholds(curve: list[dict], events, fa_target: float = FA_TARGET
                       ) -> dict[str, float] | None:
    """Per-keyword thresholds from one stream's DET curve: the fewest misses in all with at
    most `fa_target` false accepts per hour summed over the keywords (None when no choice
    gets there). A keyword's misses and false accepts at each threshold are read from the
    curve's rows, made with one threshold for all: with others' thresholds they change (a
    silenced keyword leaves its windows to the next best), so `_per_keyword_point` replays
    the choice. Solved by a
    Lagrangian sweep: for each price of a false accept, every keyword takes the threshold
    with the fewest misses + price x false accepts per hour (the higher one on a tie)."""
    words = list(curve[0]["per_keyword"])
    counts = {w: sum(e.word == w for e in events) for w in words}
    misses = np.array([[r["per_keyword"][w][0] * counts[w] if counts[w] else 0.0
                        for w in words] for r in curve])
    fas = np.array([[r["per_keyword"][w][1] for w in words] for r in curve])
    cols = np.arange(len(words))
    best = None
    for price in np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 281)]):
        rows = (misses + price * fas - 1e-9 * np.arange(len(curve))[:, None]).argmin(0)
        m, fa = misses[rows, cols].sum(), fas[rows, cols].sum()
        if fa <= fa_target + 1e-9 and (best is None or m < best[0]):
            best = (m, {w: float(curve[i]["threshold"]) for w, i in zip(words, rows)})
    return None if best is None else best[1]


def plot_det(curve: list[dict], point: dict, path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 5))
    for w in curve[0]["per_keyword"]:
        ax.plot([r["per_keyword"][w][1] for r in curve],
                [100 * r["per_keyword"][w][0] for r in curve], lw=0.8, alpha=0.45, label=w)
    ax.plot([r["fa_per_hour"] for r in curve], [100 * r["miss_rate"] for r in curve], "k-",
            lw=2.2, label="all keywords")
    ax.plot([point["fa_per_hour"]], [100 * point["miss_rate"]], "o", ms=9, mfc="none", mec="r",
            mew=2, label=f"operating point (threshold {point['threshold']:.3f})")
    ax.axvline(FA_TARGET, color="r", ls=":", lw=1)
    ax.axhline(100 * MISS_TARGET, color="r", ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, max(max(r["fa_per_hour"] for r in curve), 10) * 1.2)
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("misses (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def evaluate_stream(model, data_dir, spec, instances=2, smooth=1, refractory_s: float = 1.0,
                    out_dir=None, negatives=(), per_keyword: bool = False) -> dict:
    """The streaming evaluation of a shipped model. The threshold is chosen on a stream of
    the validation speakers (`choose_operating_point`); the figures are those of a stream of
    the held-out test speakers at that threshold, with its DET curve (det.png in out_dir).

    `instances` (windows in flight) and `smooth` (windows averaged) may be lists: every pair
    is tried on the validation stream, and the one whose operating point is best (fewest
    misses within the false-accept goal; then fewer instances, less smoothing) is the one
    judged on the test stream. Give only instance counts that fit the board's RAM.

    With `negatives` (folders of keyword-free audio: running speech, other wake words), each
    stream is followed by that split's speakers of them (kws.data.dataset.negative_split:
    validation for choosing, testing for judging), so false accepts per hour count real
    running speech as a wake-word user hears it.

    With `per_keyword`, each pair is also tried with a threshold per keyword
    (`keyword_thresholds` on the validation curve, replayed on the validation stream), and
    those compete with the single threshold by the same rank."""
    import time
    from pathlib import Path

    from kws.checks.evaluate import folders

    t0 = time.perf_counter()
    sr = model.features.sample_rate
    audio, events, info, hours = {}, {}, {}, {}
    for split in ("validation", "testing"):
        audio[split], events[split], info[split] = _stream_audio(model, data_dir, spec, split,
                                                                 negatives)
        hours[split] = len(audio[split]) / sr / 3600
    candidates = []
    for k in _values(instances):
        heard = _scores(model, audio["validation"], k)     # once per count, for every smoothing
        for m in _values(smooth):
            curve, (det_args, span, post, times, _) = _listen(
                model, heard, events["validation"], m, refractory_s, hours["validation"])
            single = choose_operating_point(curve)
            candidates.append(dict(single, instances=k, smooth=m))
            if per_keyword:
                point = _per_keyword_point(curve, events["validation"], hours["validation"],
                                           (det_args, span, post, times), single["threshold"],
                                           keyword_words(model.classes))
                if point:
                    candidates.append(dict(point, instances=k, smooth=m))
    point = min(candidates, key=_rank)
    k, m = point["instances"], point["smooth"]
    curve, (det_args, span, post, times, schedule) = _listen(
        model, _scores(model, audio["testing"], k), events["testing"], m, refractory_s,
        hours["testing"])
    dets = detections_at(det_args, post, times, point["threshold"], point.get("thresholds"))
    final = score_detections(events["testing"], dets, span,
                             keyword_words(model.classes)).summary(hours["testing"])
    on_test = {"threshold": point["threshold"], "miss_rate": final["miss_rate"],
               "fa_per_hour": final["fa_per_hour"]}
    if point.get("thresholds"):
        on_test["thresholds"] = point["thresholds"]
    on_test["goal_met"] = (final["fa_per_hour"] <= FA_TARGET and final["miss_rate"] <= MISS_TARGET)
    result = {
        "model": model.name, "model_hash": model.hash,
        "data": ", ".join(str(d) for d in folders(data_dir)),
        "hours": round(hours["testing"], 4), "stream": info["testing"],
        "fa_in_negatives": _fa_after(dets, info["testing"].get("negatives")),
        "schedule": {"window_frames": schedule.period, "instances": k,
                     "stride_frames": schedule.stride, "pool_frames": schedule.pool,
                     "steps_per_frame": k},
        "detector": {"smooth_windows": m, "refractory_s": refractory_s,
                     "span_s": round(span, 4)},
        "chosen_on_validation": dict(point, hours=round(hours["validation"], 4)),
        "candidates_on_validation": candidates,
        "operating_point": on_test, "at_operating_point": final,
        "det_curve": [{k: r[k] for k in ("threshold", "miss_rate", "fa_per_hour")}
                      for r in curve],
        "seconds_to_run": round(time.perf_counter() - t0, 1),
    }
    if out_dir is not None:
        plot_det(curve, on_test, Path(out_dir) / "det.png",
                 f"{model.name}: {hours['testing']:.2f} h held-out stream, "
                 f"{final['events']} keywords")
    return result


def _per_keyword_point(curve, events, hours, heard, threshold, words) -> dict | None:
    """Per-keyword thresholds for one validation stream, replayed on it: `keyword_thresholds`
    within a false-accept budget that starts at FA_TARGET and shrinks until the replay keeps
    to FA_TARGET (a keyword that a higher threshold silences can leave its windows to another,
    which the curve's rows do not count). None when even the smallest budget does not."""
    det_args, span, post, times = heard
    for budget in np.linspace(FA_TARGET, 0.0, 9):
        chosen = keyword_thresholds(curve, events, budget)
        if not chosen:
            continue
        s = score_detections(events, detections_at(det_args, post, times, threshold, chosen),
                             span, words).summary(hours)
        if s["fa_per_hour"] <= FA_TARGET:
            return {"threshold": threshold, "thresholds": chosen, "miss_rate": s["miss_rate"],
                    "fa_per_hour": s["fa_per_hour"],
                    "goal_met": s["miss_rate"] <= MISS_TARGET}
    return None


def _values(x) -> list[int]:
    return [int(v) for v in (x if isinstance(x, (list, tuple)) else [x])]


def _rank(point: dict) -> tuple:
    """Operating points, best first: within the false-accept goal the fewest misses, else the
    fewest false accepts; then the simpler listening (one threshold for all keywords, fewer
    instances, less smoothing)."""
    simpler = (bool(point.get("thresholds")), point["instances"], point["smooth"])
    if point["fa_per_hour"] <= FA_TARGET:
        return (0, point["miss_rate"], *simpler)
    return (1, point["fa_per_hour"], point["miss_rate"], *simpler)


def _stream_audio(model, data_dir, spec, split: str, negatives):
    """One split's stream (and its keyword-free audio after it): (audio, events, info)."""
    from kws.data.streamgen import stream_from_folder

    audio, events, info = stream_from_folder(model, data_dir, spec, split)
    if negatives:
        sr = model.features.sample_rate
        neg, files, _ = negative_audio(negatives, sr, split)
        info["negatives"] = {"files": len(files), "starts_s": round(len(audio) / sr, 3),
                             "minutes": round(len(neg) / sr / 60, 2)}
        audio = np.concatenate([audio, neg])
    return audio, events, info


def _scores(model, audio, instances: int):
    """(schedule, pooled scores, window end times) of a stream heard with `instances`."""
    from kws.detect.windows import Schedule

    schedule = Schedule.for_model(model, instances)
    return (schedule, *stream_scores(model, audio, schedule))


def _listen(model, heard, events, smooth: int, refractory_s: float, hours: float):
    """The DET curve of one stream's window scores (`_scores`) with `smooth`, and what it
    was computed from: (curve, (detector args, span, posteriors, times, schedule))."""
    from kws.detect.detector import Detector, posteriors

    schedule, pooled, times = heard
    det_args = Detector.args_for(model, schedule, smooth=smooth, refractory_s=refractory_s)
    span = det_args["window_s"] + (smooth - 1) * det_args["stride_s"]
    post = posteriors(pooled, det_args["scale"])
    curve = det_curve(events, post, times, det_args, span, hours)
    return curve, (det_args, span, post, times, schedule)


def format_stream_report(r: dict) -> str:
    p, f = r["operating_point"], r["at_operating_point"]
    v = r["chosen_on_validation"]
    lines = [f"stream {r['hours']:.2f} h of held-out speakers (seed {r['stream']['spec']['seed']}, SNR "
             f"{'/'.join(str(int(s)) for s in r['stream']['spec']['snrs_db'])} dB): "
             f"{f['events']} keywords",
             f"schedule: {r['schedule']['instances']} instances x {r['schedule']['window_frames']}"
             f"-frame windows, one every {r['schedule']['stride_frames']} frames, posteriors "
             f"averaged over {r['detector']['smooth_windows']}",
             (f"thresholds per keyword {thresholds_text(v['thresholds'])}" if v.get("thresholds")
              else f"threshold {v['threshold']:.3f}")
             + f", chosen on {v['hours']:.2f} h of validation "
             f"speakers ({100 * v['miss_rate']:.1f} % misses, {v['fa_per_hour']:.2f} FA/h there)",
             f"held-out at that threshold: misses {100 * p['miss_rate']:.1f} %"
             f"  false accepts {p['fa_per_hour']:.2f} / h"
             f"  (goal <= {FA_TARGET:g} / h at <= {100 * MISS_TARGET:g} %: "
             f"{'met' if p['goal_met'] else 'not met'})",
             f"{'keyword':<8}{'events':>8}{'miss %':>8}{'FA':>6}{'FA/h':>7}"]
    tried = r.get("candidates_on_validation") or []
    if len(tried) > 1:
        at = lines.index(next(x for x in lines if x.startswith("threshold")))
        lines[at + 1:at + 1] = ["listening chosen on the validation speakers among: " + ", ".join(
            f"{c['instances']}x/smooth {c['smooth']}"
            + (" per keyword" if c.get("thresholds") else "") + f": {100 * c['miss_rate']:.1f} % at "
            f"{c['fa_per_hour']:.1f} FA/h" for c in tried)]
    for w, v in f["per_keyword"].items():
        lines.append(f"{w:<8}{v['events']:>8}{100 * (v['miss_rate'] or 0):>8.1f}"
                     f"{v['false_accepts']:>6}{v['fa_per_hour']:>7.2f}")
    by_snr = f.get("miss_rate_by_snr") or {}
    if by_snr:
        lines.append("misses by SNR: " + ", ".join(
            f"{float(snr):g} dB {100 * v['miss_rate']:.1f} % ({v['misses']}/{v['events']})"
            for snr, v in by_snr.items()))
    lines.append(f"false accepts: {f['fa_on_words']} during other words, "
                 f"{f['fa_in_noise']} in noise only")
    neg = r["stream"].get("negatives")
    if neg:
        lines.insert(1, f"  of which {neg['minutes']:.1f} min keyword-free audio of "
                        f"{neg['files']} files of held-out speakers "
                        f"({r['fa_in_negatives']} false accepts there)")
    return "\n".join(lines)


def thresholds_text(thresholds: dict) -> str:
    return ", ".join(f"{w} {t:g}" for w, t in thresholds.items())


def _fa_after(detections, negatives: dict | None) -> int | None:
    """Detections inside the appended keyword-free audio (all of them false accepts)."""
    if not negatives:
        return None
    return sum(1 for t, _ in detections if t > negatives["starts_s"])


# --- false accepts on audio that holds no keyword ---------------------------------------------

def negative_files(folders) -> list:
    """Every WAV/FLAC file under `folders` (recursively), sorted by path."""
    from pathlib import Path

    from kws.data.audio import audio_files
    from kws.errors import KwsError

    files = []
    for d in folders:
        if not Path(d).is_dir():
            raise KwsError(f"--negatives: no folder at {d}")
        files += audio_files(d, recursive=True)
    if not files:
        raise KwsError(f"--negatives {', '.join(map(str, folders))}: no WAV or FLAC files")
    return files


def negative_audio(folders, sample_rate: int, side: str = "all", gap_s: float = 0.5):
    """(audio, files, starts): the keyword-free files of one side (`all`, `heldout`, or a
    split of kws.data.dataset.negative_split) one after another, `gap_s` of silence after
    each; starts[k] is the sample where files[k] begins."""
    from kws.data.audio import load_audio
    from kws.data.dataset import negative_side, negative_split
    from kws.errors import KwsError

    files = negative_files(folders)
    if side == "heldout":
        files = [f for f in files if negative_side(f) == "heldout"]
    elif side != "all":
        files = [f for f in files if negative_split(f) == side]
    if not files:
        raise KwsError(f"negatives: no files of the {side} speakers in "
                       f"{', '.join(map(str, folders))}")
    gap = np.zeros(int(gap_s * sample_rate), np.float32)
    parts = [x for f in files for x in (load_audio(f, sample_rate, None), gap)]
    starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])[1::2][:-1]])
    return np.concatenate(parts), files, starts.astype(np.int64)


def negatives_curve(model, folders, instances: int = 2, smooth: int = 1,
                    refractory_s: float = 1.0, gap_s: float = 0.5, side: str | None = None
                    ) -> dict:
    """False accepts per hour on real audio with no keyword (running speech, other wake words,
    noise): the files one after another with `gap_s` of silence between them, listened to
    with the board's schedule; every detection is a false accept. One row per threshold, and
    the figures at the model's stored threshold (detector.json) — the FA/h a user feels."""
    from kws.detect.detector import Detector, load_settings, posteriors
    from kws.detect.windows import Schedule

    sr = model.features.sample_rate
    # a model that trained on crops of such recordings is judged on the other speakers only
    if side is None:   # `all`, or `heldout` to compare with such a model on the same files
        side = "heldout" if model.doc.get("training", {}).get("negative_dirs") else "all"
    audio, files, _ = negative_audio(folders, sr, side, gap_s)
    hours = len(audio) / sr / 3600
    schedule = Schedule.for_model(model, instances)
    det_args = Detector.args_for(model, schedule, smooth=smooth, refractory_s=refractory_s)
    pooled, times = stream_scores(model, audio, schedule)
    post = posteriors(pooled, det_args["scale"])
    settings = load_settings(model)
    stored, per_keyword = settings.threshold, settings.thresholds

    def row(th, thresholds=None):
        dets = detections_at(det_args, post, times, th, thresholds)
        per = {w: sum(1 for _, d in dets if d == w) for w in keyword_words(model.classes)}
        return {"threshold": float(th), "false_accepts": len(dets),
                "fa_per_hour": len(dets) / hours, "per_keyword": per}

    rows = [row(th) for th in sorted(set(THRESHOLDS.tolist()) | {stored})]
    at_stored = (dict(row(stored, per_keyword), thresholds=per_keyword) if per_keyword
                 else next(r for r in rows if r["threshold"] == stored))
    return {"model": model.name, "model_hash": model.hash,
            "folders": [str(f) for f in folders], "files": len(files), "side": side,
            "hours": round(hours, 4), "windows": int(len(pooled)), "stored_threshold": stored,
            "stored_thresholds": per_keyword,
            "instances": instances, "smooth": smooth, "at_stored_threshold": at_stored,
            "curve": rows}


def format_negatives_report(r: dict) -> str:
    at = r["at_stored_threshold"]
    worst = sorted(at["per_keyword"].items(), key=lambda kv: -kv[1])
    side = {"heldout": " (held-out speakers: the model trained on the others)",
            "testing": " (testing speakers: neither trained on nor used to choose the "
                       "threshold)"}.get(r.get("side"), "")
    lines = [f"negatives: {r['files']} files{side}, {r['hours'] * 60:.1f} min, "
             f"{r['windows']} windows ({r['instances']} in flight, posteriors averaged over "
             f"{r['smooth']})",
             f"at the model's {stored_text(r)}: {at['false_accepts']} false "
             f"accepts = {at['fa_per_hour']:.1f} per hour ("
             + ", ".join(f"{w} {n}" for w, n in worst if n) + ")",
             "threshold  FA/h: " + "  ".join(
                 f"{row['threshold']:.3f} {row['fa_per_hour']:.1f}" for row in r["curve"]
                 if row["threshold"] in (0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995))]
    return "\n".join(lines)


def stored_text(r: dict) -> str:
    """The model's stored threshold(s), as a report names them."""
    if r.get("stored_thresholds"):
        return f"thresholds per keyword ({thresholds_text(r['stored_thresholds'])})"
    return f"threshold {r['stored_threshold']}"
