"""Features of a list of clips, computed once and cached on disk.

The cache key covers the feature config and the exact file list: each clip's path relative to
the data folder, its crop offset, and the file's size and modification time. Change a file,
add one, or change a feature parameter and the key changes. Files are written to a temp file
and renamed, so a killed run never leaves a half cache; a cache file that is damaged anyway
(truncated, a flipped byte: the zip CRC catches it, or not matching its clips and config) is
reported in one line on stderr and computed again, never used.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kws.atomic import atomic_open, atomic_path
from kws.data.audio import BadAudio, load_audio
from kws.config import FeatureConfig
from kws.data.dataset import Clip
from kws.frontend.features import features_batch

CACHE_VERSION = 1


@dataclass
class FeatureSet:
    """Features [N, frames, n_mels] of `clips`; `bad` lists (path, reason) of skipped files."""

    features: np.ndarray
    clips: list[Clip]
    bad: list[tuple[str, str]] = field(default_factory=list)
    cache_file: Path | None = None
    from_cache: bool = False


def cache_key(clips: list[Clip], root: Path, cfg: FeatureConfig) -> str:
    """One key per file list and feature config, whoever asks (`kws features`, training,
    evaluation) and whether or not bad files may be skipped: a cache that had to skip files
    lists them, and a caller that may not skip gets the error it would have got."""
    h = hashlib.sha1(f"v{CACHE_VERSION} {cfg.digest()}\n".encode())
    for c in clips:
        st = c.path.stat()
        h.update(f"{_rel(c.path, root)}\t{c.offset}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def readable_audio(clips: list[Clip], cfg: FeatureConfig, skip_bad: bool, bad: list,
                   progress: bool = True, desc: str = "reading audio"):
    """(clip, audio) of each readable clip, in order; a bad file raises, or with `skip_bad`
    is appended to `bad` as (path, reason) and skipped."""
    for c in tqdm(clips, desc=desc, unit="clip", disable=None if progress else True,
                  leave=False):  # None: no bar when stderr is not a terminal
        try:
            a = load_audio(c.path, cfg.sample_rate, cfg.clip_samples, c.offset)
        except BadAudio as e:
            if not skip_bad:
                raise BadAudio(f"{e} (use --skip-bad to skip bad files)") from None
            bad.append((str(c.path), str(e)))
            continue
        yield c, a


def _none_readable(clips: list[Clip], kept: list, bad: list) -> None:
    if clips and not kept:
        raise BadAudio(f"none of the {len(clips)} audio files could be read (the first: "
                       f"{bad[0][1]})")


def load_clip_audio(clips: list[Clip], cfg: FeatureConfig, skip_bad: bool = False,
                    progress: bool = True) -> tuple[np.ndarray, list[Clip], list[tuple[str, str]]]:
    """Audio [N, clip_samples] of the readable clips; bad files raise, or are skipped if asked."""
    bad = []
    pairs = list(readable_audio(clips, cfg, skip_bad, bad, progress))
    kept = [c for c, _ in pairs]
    _none_readable(clips, kept, bad)
    empty = np.zeros((0, cfg.clip_samples), np.float32)
    return (np.stack([a for _, a in pairs]) if pairs else empty), kept, bad


def compute_features(clips: list[Clip], root: Path, cfg: FeatureConfig,
                     cache_dir: Path | None = None, skip_bad: bool = False,
                     progress: bool = True) -> FeatureSet:
    """Features of `clips`, from the cache in `cache_dir` when it holds them."""
    root = Path(root)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{cache_key(clips, root, cfg)}.npz"
        if path.exists():
            cached = _read(path, clips, root, cfg)
            if cached is not None:
                if cached.bad and not skip_bad:
                    raise BadAudio(f"{cached.bad[0][1]} (use --skip-bad to skip bad files)")
                return cached
    features, kept, bad = _features_in_chunks(clips, cfg, skip_bad, progress)
    if path is not None:
        with atomic_open(path, "wb") as f:
            np.savez(f, features=features, kept=np.array([_id(c, root) for c in kept]),
                     bad=json.dumps(bad), config=json.dumps(cfg.settings()))
    return FeatureSet(features, kept, bad, path, False)


CHUNK = 2048  # clips read and transformed at a time: memory stays ~features + one chunk


def _features_in_chunks(clips: list[Clip], cfg: FeatureConfig, skip_bad: bool, progress: bool):
    """Features of the readable clips, a chunk of audio at a time, so that a full archive
    (105k clips: 6.8 GB of float audio) never sits in memory at once."""
    features = np.empty((len(clips), cfg.n_frames, cfg.n_mels), np.float32)
    kept, bad, chunk = [], [], []
    for c, a in readable_audio(clips, cfg, skip_bad, bad, progress, desc="features"):
        kept.append(c)
        chunk.append(a)
        if len(chunk) == CHUNK or len(kept) + len(bad) == len(clips):
            features[len(kept) - len(chunk):len(kept)] = features_batch(np.stack(chunk), cfg)
            chunk = []
    if chunk:   # the last clips were followed by bad ones
        features[len(kept) - len(chunk):len(kept)] = features_batch(np.stack(chunk), cfg)
    _none_readable(clips, kept, bad)
    return features[:len(kept)], kept, bad


def _read(path: Path, clips: list[Clip], root: Path, cfg: FeatureConfig) -> FeatureSet | None:
    """The cached features, or None (with a one-line warning) if the file is damaged."""
    try:
        with np.load(path) as z:
            features, kept_ids = z["features"], [str(i) for i in z["kept"]]
            bad, config = json.loads(str(z["bad"])), json.loads(str(z["config"]))
        ids = [_id(c, root) for c in clips]
        by_id = dict(zip(ids, clips))
        kept_set, bad_paths = set(kept_ids), {b[0] for b in bad}
        if kept_ids != [i for i in ids if i in kept_set]:  # every kept clip, in order
            raise ValueError("its clip list is not the data's")
        lost = [i for i, c in zip(ids, clips) if i not in kept_set and str(c.path) not in bad_paths]
        if lost:                                          # and every other one listed as bad
            raise ValueError(f"lacks clip {lost[0]}")
        if config != json.loads(json.dumps(cfg.settings())):
            raise ValueError("made with other feature settings")
        want = (len(kept_ids), cfg.n_frames, cfg.n_mels)
        if features.dtype != np.float32 or features.shape != want:
            raise ValueError(f"features {features.dtype} {features.shape}, expected float32 {want}")
        if not np.isfinite(features).all():
            raise ValueError("features hold NaN or infinity")
    except Exception as e:  # zip, npy, JSON and pickle errors of a damaged file, and the above
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"kws: warning: {path}: damaged feature cache ({reason}); computing it again",
              file=sys.stderr)
        return None
    return FeatureSet(features, [by_id[i] for i in kept_ids], [tuple(b) for b in bad], path, True)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _id(c: Clip, root: Path) -> str:
    return f"{_rel(c.path, root)}@{c.offset}"


# --- the training audio: int16 on disk, memory-mapped -------------------------------------------

PCM_SCALE = 32768.0  # soundfile's float of 16-bit PCM is int16 / 32768: exact round trip


def cached_audio(clips: list[Clip], root: Path, cfg: FeatureConfig, cache_dir: Path | None,
                 skip_bad: bool = True, progress: bool = True
                 ) -> tuple[np.ndarray, list[Clip], list[tuple[str, str]]]:
    """The clips' audio as an int16 array [N, clip_samples] memory-mapped from
    `cache_dir/audio-<key>.npy` (the feature cache's key), so a training set of 100k clips
    (3.2 GB) is paged in by the OS, not held in RAM, and is read once, not at every run.
    Audio of 16-bit files comes back exactly (`to_float`). Without a cache folder: in RAM."""
    if cache_dir is None:
        audio, kept, bad = load_clip_audio(clips, cfg, skip_bad, progress)
        return to_pcm(audio), kept, bad
    key = cache_key(clips, root, cfg)
    path = Path(cache_dir) / f"audio-{key}.npy"
    meta = path.with_suffix(".json")
    ids = [_id(c, root) for c in clips]
    if path.exists() and meta.exists():
        try:
            doc = json.loads(meta.read_text())
            by_id = dict(zip(ids, clips))
            kept = [by_id[i] for i in doc["kept"]]
            audio = np.load(path, mmap_mode="r")
            if audio.dtype != np.int16 or audio.shape[1:] != (cfg.clip_samples,) \
                    or audio.shape[0] < len(kept):
                raise ValueError(f"holds {audio.dtype} {audio.shape}")
            bad = [tuple(b) for b in doc["bad"]]
            if bad and not skip_bad:
                raise BadAudio(f"{bad[0][1]} (use --skip-bad to skip bad files)")
            return audio[:len(kept)], kept, bad
        except BadAudio:
            raise
        except Exception as e:  # a damaged or foreign file: computed again
            print(f"kws: warning: {path}: damaged audio cache ({str(e).splitlines()[0]}); "
                  "reading the clips again", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept, bad = [], []
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16,
                                        shape=(len(clips), cfg.clip_samples))
        for c, a in readable_audio(clips, cfg, skip_bad, bad, progress):
            out[len(kept)] = to_pcm(a)
            kept.append(c)
        out.flush()
        del out
        _none_readable(clips, kept, bad)
    with atomic_open(meta, "w") as f:
        json.dump({"kept": [_id(c, root) for c in kept], "bad": bad}, f)
    return np.load(path, mmap_mode="r")[:len(kept)], kept, bad


def to_pcm(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(audio) * PCM_SCALE), -32768, 32767).astype(np.int16)


def to_float(pcm: np.ndarray) -> np.ndarray:
    return (np.asarray(pcm, np.float32) / np.float32(PCM_SCALE)).astype(np.float32)
