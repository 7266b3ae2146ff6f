"""A long, seeded test stream: held-out words over background noise, every word's time known.

Every few seconds a held-out clip, at the level it was recorded at: mostly keywords, some
other words (the `_unknown_` class: a detector that fires on those makes false accepts).
Under and between them, the background-noise recordings (only the stretch of each that the
data split reserves for testing: no noise heard in training), at a stated SNR per word. For every placed clip the stream records its sample
position and the voiced part inside it (frames within 30 dB of the clip's loudest), which is
what the scoring compares detections with.

Same data, same settings, same seed -> the same samples, bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kws.data.dataset import BACKGROUND, SILENCE, UNKNOWN, background_files
from kws.data.tasks import keyword_words
from kws.errors import KwsError


@dataclass(frozen=True)
class StreamSpec:
    seconds: float = 3600.0
    seed: int = 0
    snrs_db: tuple[float, ...] = (5.0, 10.0, 20.0)   # each word at one of these, at random
    gap_s: tuple[float, float] = (2.0, 6.0)           # noise only between two words
    unknown_frac: float = 0.25                        # share of placed words that are not keywords


@dataclass
class Event:
    word: str          # the clip's class: a keyword or "_unknown_"
    clip: str          # file, relative to the data folder
    start_s: float     # where the 1 s clip starts in the stream
    voice_start_s: float
    voice_end_s: float
    snr_db: float


def voiced_span(audio: np.ndarray, sample_rate: int, floor_db: float = 30.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within `floor_db` of the clip's loudest."""
    n = sample_rate // 100
    frames = audio[:len(audio) // n * n].reshape(-1, n)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20)) if rms.max() > 0 else [0]
    return int(loud[0] * n), int((loud[-1] + 1) * n)


def noise_stretches(data_dir: Path, sample_rate: int, val_pct: float, test_pct: float,
                    split: str = "testing"):
    """One split's stretch of each background recording: the same cut as the silence crops
    and the training noise (training | validation | testing, in that order)."""
    from kws.data.audio import load_audio

    out = []
    for f in background_files(Path(data_dir)):     # WAV or FLAC
        a = load_audio(f, sample_rate, None)
        cut = {"validation": (1 - (val_pct + test_pct) / 100, 1 - test_pct / 100),
               "testing": (1 - test_pct / 100, 1.0)}[split]
        lo, hi = (int(len(a) * c) for c in cut)
        if hi - lo >= sample_rate:
            out.append((f.name, a[lo:hi].astype(np.float64)))
    if not out:
        raise KwsError(f"{data_dir}/{BACKGROUND}: no background recordings for the noise bed")
    return out


def _noise_piece(stretches, n: int, rng) -> np.ndarray:
    """n samples of one background recording's testing stretch from a random offset (looped)."""
    _, rec = stretches[rng.integers(len(stretches))]
    start = int(rng.integers(len(rec)))
    return np.resize(np.roll(rec, -start), n)


def make_stream(keyword_clips, unknown_clips, stretches, spec: StreamSpec,
                sample_rate: int = 16000) -> tuple[np.ndarray, list[Event]]:
    """keyword_clips / unknown_clips: lists of (name, word, audio 1 s float). Returns the
    stream (float32) and its events in time order.

    Words keep the level they were recorded at. Each word owns the noise from the middle of
    the gap before it to the middle of the gap after it: one recording at the level that
    gives the word its SNR (speech RMS over the voiced part against noise RMS), joined to its
    neighbours with 10 ms cross-fades.
    """
    if not keyword_clips:
        raise KwsError("no held-out keyword clips to build a stream from")
    rng = np.random.default_rng([spec.seed, 7])
    n = int(round(spec.seconds * sample_rate))
    order = {"kw": rng.permutation(len(keyword_clips)), "unk": rng.permutation(len(unknown_clips))}
    used = {"kw": 0, "unk": 0}
    placed = []                                # (start sample, name, word, clip, snr)
    t = int(rng.uniform(*spec.gap_s) * sample_rate)
    while t + sample_rate <= n:
        kind = "unk" if unknown_clips and rng.random() < spec.unknown_frac else "kw"
        pool = keyword_clips if kind == "kw" else unknown_clips
        if used[kind] == len(pool):            # every clip used once: a new shuffle
            order[kind], used[kind] = rng.permutation(len(pool)), 0
        name, word, clip = pool[order[kind][used[kind]]]
        used[kind] += 1
        clip = np.asarray(clip, np.float64)
        if t + len(clip) > n:
            break
        placed.append((t, name, word, clip, float(rng.choice(spec.snrs_db))))
        t += len(clip) + int(rng.uniform(*spec.gap_s) * sample_rate)

    audio = np.zeros(n)
    fade = sample_rate // 100
    ramp = np.linspace(0.0, 1.0, 2 * fade)
    events: list[Event] = []
    for i, (t, name, word, clip, snr) in enumerate(placed):
        lo = 0 if i == 0 else (placed[i - 1][0] + len(placed[i - 1][3]) + t) // 2
        hi = n if i == len(placed) - 1 else (t + len(clip) + placed[i + 1][0]) // 2
        a, b = voiced_span(clip, sample_rate)
        speech = np.sqrt(np.mean(clip[a:b] ** 2))
        lo_f, hi_f = max(lo - fade, 0), min(hi + fade, n)
        noise = _noise_piece(stretches, hi_f - lo_f, rng)
        noise *= speech / (np.sqrt(np.mean(noise ** 2)) + 1e-12) / 10 ** (snr / 20)
        if lo_f > 0:
            noise[:2 * fade] *= ramp
        if hi_f < n:
            noise[-2 * fade:] *= ramp[::-1]
        audio[lo_f:hi_f] += noise
        audio[t:t + len(clip)] += clip
        events.append(Event(word, name, t / sample_rate, (t + a) / sample_rate,
                            (t + b) / sample_rate, snr))
    return np.clip(audio, -1.0, 1.0).astype(np.float32), events


def _name(path, roots) -> str:
    """A clip's name relative to its data folder (the folder's name first if there are more)."""
    for root in roots:
        if Path(path).resolve().is_relative_to(Path(root).resolve()):
            rel = str(Path(path).resolve().relative_to(Path(root).resolve()))
            return rel if len(roots) == 1 else f"{Path(root).name}/{rel}"
    return str(path)


def stream_from_folder(model, data_dir: Path, spec: StreamSpec, split: str = "testing"):
    """The stream for a shipped model from the speakers of one split of a Speech Commands
    folder (`testing`: held out; `validation`: for choosing a threshold), over that split's
    stretch of the noise recordings."""
    from kws.frontend.cache import load_clip_audio
    from kws.checks.evaluate import data_config_for, split_clips

    from kws.checks.evaluate import folders

    dataset, clips = split_clips(model, data_dir, split)
    cfg = data_config_for(model, data_dir)
    audio, clips = load_clip_audio(clips, model.features, skip_bad=True)[:2]
    named = [(_name(c.path, dataset.roots), c.word, a) for c, a in zip(clips, audio)]
    targets = keyword_words(model.classes)     # other words, keywords of other tasks too,
    keywords = [(p, w, a) for p, w, a in named if w in targets]   # are distractors
    unknown = [(p, UNKNOWN, a) for p, w, a in named if w not in targets and w != SILENCE]
    noisy = [d for d in folders(data_dir) if (d / BACKGROUND).is_dir()] or folders(data_dir)
    stretches = noise_stretches(noisy[0], model.features.sample_rate, cfg.val_pct, cfg.test_pct,
                                split)
    audio, events = make_stream(keywords, unknown, stretches, spec, model.features.sample_rate)
    info = {"spec": asdict(spec), "split": split, "noise": [name for name, _ in stretches],
            "keyword_clips": len(keywords), "unknown_clips": len(unknown)}
    return audio, events, info
