"""Features of a list of clips, computed once and cached on disk.

The cache key covers the feature config and the exact file list: each clip's path relative to
the data folder, its crop offset, and the file's size and modification time. Change a file,
add one, or change a feature parameter and the key changes. Files are written to a temp file
and renamed, so a killed run never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kws.atomic import atomic_open
from kws.audio import BadAudio, load_audio
from kws.config import FeatureConfig
from kws.dataset import Clip
from kws.features import log_mel_batch

CACHE_VERSION = 1


@dataclass
class FeatureSet:
    """Features [N, frames, n_mels] of `clips`; `bad` lists (path, reason) of skipped files."""

    features: np.ndarray
    clips: list[Clip]
    bad: list[tuple[str, str]] = field(default_factory=list)
    cache_file: Path | None = None
    from_cache: bool = False


def cache_key(clips: list[Clip], root: Path, cfg: FeatureConfig, skip_bad: bool) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION} {cfg.digest()} skip_bad={skip_bad}\n".encode())
    for c in clips:
        st = c.path.stat()
        h.update(f"{_rel(c.path, root)}\t{c.offset}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_clip_audio(clips: list[Clip], cfg: FeatureConfig, skip_bad: bool = False,
                    progress: bool = True) -> tuple[np.ndarray, list[Clip], list[tuple[str, str]]]:
    """Audio [N, clip_samples] of the readable clips; bad files raise, or are skipped if asked."""
    audio, kept, bad = [], [], []
    for c in tqdm(clips, desc="reading audio", unit="clip", disable=not progress, leave=False):
        try:
            audio.append(load_audio(c.path, cfg.sample_rate, cfg.clip_samples, c.offset))
            kept.append(c)
        except BadAudio as e:
            if not skip_bad:
                raise BadAudio(f"{e} (use --skip-bad to skip bad files)") from None
            bad.append((str(c.path), str(e)))
    empty = np.zeros((0, cfg.clip_samples), np.float32)
    return (np.stack(audio) if audio else empty), kept, bad


def compute_features(clips: list[Clip], root: Path, cfg: FeatureConfig,
                     cache_dir: Path | None = None, skip_bad: bool = False,
                     progress: bool = True) -> FeatureSet:
    """Features of `clips`, from the cache in `cache_dir` when it holds them."""
    root = Path(root)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{cache_key(clips, root, cfg, skip_bad)}.npz"
        if path.exists():
            return _read(path, clips, root)
    audio, kept, bad = load_clip_audio(clips, cfg, skip_bad, progress)
    features = log_mel_batch(audio, cfg)
    if path is not None:
        with atomic_open(path, "wb") as f:
            np.savez(f, features=features, kept=np.array([_id(c, root) for c in kept]),
                     bad=json.dumps(bad), config=json.dumps(cfg.__dict__))
    return FeatureSet(features, kept, bad, path, False)


def _read(path: Path, clips: list[Clip], root: Path) -> FeatureSet:
    with np.load(path) as z:
        features, kept_ids, bad = z["features"], list(z["kept"]), json.loads(str(z["bad"]))
    by_id = {_id(c, root): c for c in clips}
    return FeatureSet(features, [by_id[i] for i in kept_ids], [tuple(b) for b in bad], path, True)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _id(c: Clip, root: Path) -> str:
    return f"{_rel(c.path, root)}@{c.offset}"
