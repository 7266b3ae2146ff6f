"""Speech Commands on disk: find the clips, give each a speaker and a split, map words to classes.

Layouts read (detected per folder, so they can be mixed):

- the full archive (v0.01 / v0.02): one folder per word, `<speaker>_nohash_<k>.wav`, a
  `_background_noise_/` folder, and optionally `validation_list.txt` / `testing_list.txt`;
- the published test set (`speech_commands_test_set_v0.02`): keyword folders plus
  `_silence_/` (1 s noise crops, no speaker) and `_unknown_/` (`<word>_<speaker>_nohash_<k>.wav`).

Splits (`DataConfig.split`), always by speaker, so a speaker never crosses splits:

- `official`: the list files when present; else, for the published test-set layout, every clip
  is `testing` (that is what the folder is); else TensorFlow's `which_set` hash rule.
- `speakers`: the project's own speaker-disjoint split of any folder: the same hash rule on a
  salted speaker id, with `val_pct` / `test_pct`. Use it to train on a folder that is itself
  one official split (such as a part of the published test set).
- `auto` (default): `official`, except `speakers` for the test-set layout without lists.

Silence: the `_silence_/` clips when present; otherwise 1 s crops of the background-noise
recordings, each recording cut in time into training / validation / testing stretches so no
noise sample is shared between splits.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.config import DataConfig
from kws.errors import KwsError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN, BACKGROUND = "_silence_", "_unknown_", "_background_noise_"
WORDS_35 = KEYWORDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual")
SPLITS = ("training", "validation", "testing")


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]

    def label(self, word: str) -> int | None:
        """Class index of a word, or None if the task does not use it."""
        if word in self.classes:
            return self.classes.index(word)
        if UNKNOWN in self.classes and word not in (SILENCE, BACKGROUND):
            return self.classes.index(UNKNOWN)
        return None


TASKS = {
    "v2-12": Task("v2-12", KEYWORDS + (SILENCE, UNKNOWN)),
    "35": Task("35", WORDS_35),
}


@dataclass(frozen=True)
class Clip:
    """One labelled second of audio: a file, or a crop of a long recording at `offset`."""

    path: Path
    word: str
    speaker: str
    split: str
    offset: int = 0


# ---------------------------------------------------------------------------------------------
# Split rule

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # TensorFlow's constant; part of the published rule


SPEAKER_SALT = "kws-speaker-split:"  # the `speakers` rule: independent of the official split


def which_set(speaker: str, val_pct: float = 10.0, test_pct: float = 10.0) -> str:
    """TensorFlow's split rule on a speaker id (the file name up to `_nohash_`)."""
    digest = hashlib.sha1(speaker.encode()).hexdigest()
    pct = (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if pct < val_pct:
        return "validation"
    if pct < val_pct + test_pct:
        return "testing"
    return "training"


_NAME = re.compile(r"^(?P<speaker>.+?)_nohash_\d+$")


def speaker_of(path: Path, in_unknown_folder: bool = False) -> tuple[str, str | None]:
    """(speaker, word) from a file name; the word only for `<word>_<speaker>_nohash_<k>`."""
    m = _NAME.match(path.stem)
    if not m:
        return path.stem, None  # not a Speech Commands name: each file its own speaker
    speaker = m["speaker"]
    if in_unknown_folder and "_" in speaker:
        word, speaker = speaker.split("_", 1)
        return speaker, word
    return speaker, None


# ---------------------------------------------------------------------------------------------
# Loading

class Dataset:
    """All clips of one folder, labelled for one task."""

    def __init__(self, root: Path, task: Task, clips: list[Clip], split_source: str):
        self.root, self.task, self.clips, self.split_source = root, task, clips, split_source

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def labels(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.task.label(c.word) for c in clips], dtype=np.int64)

    def stats(self) -> dict:
        """Per-class, per-split clip counts and speakers per split."""
        counts = {cls: dict.fromkeys(SPLITS, 0) for cls in self.task.classes}
        speakers = defaultdict(set)
        for c in self.clips:
            counts[self.task.classes[self.task.label(c.word)]][c.split] += 1
            if c.word != SILENCE:
                speakers[c.split].add(c.speaker)
        return {
            "root": str(self.root), "task": self.task.name, "split_source": self.split_source,
            "counts": counts,
            "speakers": {s: len(speakers[s]) for s in SPLITS},
            "clips": {s: sum(counts[k][s] for k in counts) for s in SPLITS},
        }


def load_dataset(root: str | Path, config: DataConfig = DataConfig()) -> Dataset:
    """Find every clip under `root`, split it and label it for `config.task`."""
    root = Path(root)
    if not root.is_dir():
        raise KwsError(f"no data folder at {root} (get Speech Commands with `kws data download`,"
                       " or make a synthetic corpus with `kws data synth`)")
    task = TASKS[config.task]
    lists = _read_lists(root)
    rule = _split_rule(root, config, lists)
    words = _scan(root, config, lists, rule)
    if not words:
        raise KwsError(f"{root}: no word folders with .wav files: not a Speech Commands layout")

    clips = [c for c in words if task.label(c.word) is not None]
    if SILENCE in task.classes and not any(c.word == SILENCE for c in clips):
        clips += _silence_crops(root, clips, config)
    clips = _limit_unknown(clips, task, config)
    clips.sort(key=lambda c: (SPLITS.index(c.split), c.word, str(c.path), c.offset))
    return Dataset(root, task, clips, rule)


def _split_rule(root: Path, config: DataConfig, lists: dict | None) -> str:
    """Which of the rules in the module docstring applies, as a readable phrase."""
    test_set_layout = (root / UNKNOWN).is_dir()
    mode = config.split
    if mode == "auto":
        mode = "speakers" if test_set_layout and lists is None else "official"
    pcts = f"{config.val_pct:g}% validation, {config.test_pct:g}% testing"
    if mode == "speakers":
        return f"speakers ({pcts} of speakers, salted hash)"
    if lists is not None:
        return "official (list files)"
    if test_set_layout:
        return "official (test-set layout: all testing)"
    return f"official (TensorFlow hash rule, {pcts})"


def _read_lists(root: Path) -> dict[str, str] | None:
    """Relative path -> split from the archive's list files, or None when there are none."""
    found = {}
    for split, name in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        f = root / name
        if f.exists():
            for line in f.read_text().split():
                found[line.strip()] = split
    return found or None


def _scan(root: Path, config: DataConfig, lists: dict[str, str] | None,
          rule: str) -> list[Clip]:
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND or folder.name.startswith("."):
            continue
        for path in sorted(folder.glob("*.wav")):
            if folder.name == SILENCE:
                speaker, word = f"{SILENCE}{path.stem}", SILENCE
            else:
                speaker, prefix = speaker_of(path, folder.name == UNKNOWN)
                word = prefix or folder.name
            if rule.startswith("speakers"):
                split = which_set(SPEAKER_SALT + speaker, config.val_pct, config.test_pct)
            elif lists is not None:
                split = lists.get(f"{folder.name}/{path.name}", "training")
            elif "all testing" in rule:
                split = "testing"
            else:
                split = which_set(speaker, config.val_pct, config.test_pct)
            clips.append(Clip(path, word, speaker, split))
    return clips


def _split_size(clips: list[Clip], split: str, pct: float) -> int:
    """TensorFlow's rule: silence and unknown are each `pct` % of the split's keyword clips."""
    n_words = sum(1 for c in clips if c.split == split and c.word not in (SILENCE, UNKNOWN)
                  and c.word in KEYWORDS)
    return int(math.ceil(n_words * pct / 100))


def _silence_crops(root: Path, clips: list[Clip], config: DataConfig) -> list[Clip]:
    """1 s crops of the background recordings, from split-disjoint stretches of each one."""
    from kws.audio import audio_length

    noise_files = sorted((root / BACKGROUND).glob("*.wav"))
    if not noise_files or config.silence_pct <= 0:
        return []
    rng = np.random.default_rng([config.seed, 1])
    lengths = [audio_length(f) for f in noise_files]
    bounds = np.cumsum([0.0, 100 - config.val_pct - config.test_pct,
                        config.val_pct, config.test_pct]) / 100
    crops = []
    for s, split in enumerate(SPLITS):
        for i in range(_split_size(clips, split, config.silence_pct)):
            k = i % len(noise_files)
            lo, hi = int(bounds[s] * lengths[k]), int(bounds[s + 1] * lengths[k]) - 16000
            if hi < lo:
                continue  # recording too short for this split's stretch
            offset = int(rng.integers(lo, hi + 1))
            crops.append(Clip(noise_files[k], SILENCE, f"{SILENCE}{noise_files[k].stem}",
                              split, offset))
    return crops


def _limit_unknown(clips: list[Clip], task: Task, config: DataConfig) -> list[Clip]:
    """Keep at most `unknown_pct` % unknown clips per split (seeded choice), as TensorFlow does."""
    if UNKNOWN not in task.classes or config.unknown_pct is None:
        return clips
    unknown_index = task.classes.index(UNKNOWN)
    keep = [c for c in clips if task.label(c.word) != unknown_index]
    for s, split in enumerate(SPLITS):
        pool = [c for c in clips if c.split == split and task.label(c.word) == unknown_index]
        n = _split_size(clips, split, config.unknown_pct)
        if len(pool) > n:
            rng = np.random.default_rng([config.seed, 2, s])
            pool = [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]
        keep += pool
    return keep


def format_stats(stats: dict) -> str:
    """A plain-text table of `Dataset.stats()`."""
    lines = [f"{stats['root']}  task {stats['task']}  split by {stats['split_source']}",
             f"{'class':<12}" + "".join(f"{s:>12}" for s in SPLITS)]
    for cls, row in stats["counts"].items():
        lines.append(f"{cls:<12}" + "".join(f"{row[s]:>12}" for s in SPLITS))
    lines.append(f"{'total':<12}" + "".join(f"{stats['clips'][s]:>12}" for s in SPLITS))
    lines.append(f"{'speakers':<12}" + "".join(f"{stats['speakers'][s]:>12}" for s in SPLITS))
    empty = [c for c, row in stats["counts"].items() if not any(row.values())]
    if empty:
        lines.append(f"warning: no clips for {', '.join(empty)}")
    return "\n".join(lines)


def speakers_by_split(clips: list[Clip]) -> dict[str, set[str]]:
    out = defaultdict(set)
    for c in clips:
        out[c.split].add(c.speaker)
    return dict(out)

