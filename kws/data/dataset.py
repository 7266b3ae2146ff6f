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

Several folders form one data set (`load_dataset([dev, extra])`): one split rule for all of
them (`auto` picks `speakers` if any folder is a test-set layout without lists), and since the
split is a function of the speaker id, a speaker found in two folders lands on the same side.
Audio may be WAV or FLAC.

Cross-validation (`data.folds = k`, `data.fold = i`): the rule's `testing` speakers are left
out entirely (the final test, touched once); every other speaker falls in one of k buckets by a
second salted hash; bucket `i` becomes this fold's `testing` (the clips a recipe is scored on),
the other buckets keep their `training` / `validation` side. Every speaker is scored in
exactly one fold, the folds do not depend on the task or the word, and the same names always
give the same folds.

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
from kws.data.audio import audio_files
from kws.data.tasks import (BACKGROUND, KEYWORDS, SILENCE, TASKS, UNKNOWN,  # noqa: F401
                            WORDS_35, Task)
from kws.errors import KwsError

SPLITS = ("training", "validation", "testing")


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
FOLD_SALT = "kws-fold:"              # cross-validation buckets: independent of both


def fold_of(speaker: str, folds: int) -> int:
    """The cross-validation bucket (0 .. folds-1) of a speaker."""
    return int(hashlib.sha1((FOLD_SALT + speaker).encode()).hexdigest(), 16) % folds


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
# Where the data is: one rule for every command

DOWNLOADED = ("data/speech_commands_v0.02", "data/speech_commands_v0.01",
              "data/speech_commands_test_set_v0.02")  # where `kws data download` extracts
DEV_CLIPS = "../shared/data/speech_commands_dev"      # the team's machines only


def find_data(given=None, configured=(), fallback: str = "") -> list[Path]:
    """The data folders a command works on, in this order:

    1. `given` (`--data` / `DATA=`): those folders, which must exist;
    2. `configured` (a config's `train.data`): used when every folder of it exists;
    3. the real archive where `kws data download` puts it (complete extractions only);
    4. the project's dev clips, where the team's machines keep them;
    5. `fallback` (a config's `train.fallback_data`, the synthetic corpus);
    6. else a one-line error naming the next command to run.
    """
    from kws.data.download import MARKER

    if given:
        folders = [Path(g) for g in (given if isinstance(given, (list, tuple)) else [given])]
        for f in folders:
            if not f.is_dir():
                raise KwsError(f"no data folder at {f} (get Speech Commands with `kws data "
                               "download --version v0.02`, or make a synthetic corpus with "
                               "`kws data synth --out data/synth`)")
        return folders
    configured = [Path(c) for c in (configured if isinstance(configured, (list, tuple))
                                    else [configured]) if c]
    if configured and all(c.is_dir() for c in configured):
        return configured
    for d in DOWNLOADED:
        if (Path(d) / MARKER).exists():
            return [Path(d)]
    for d in (DEV_CLIPS, fallback):
        if d and Path(d).is_dir():
            return [Path(d)]
    raise KwsError("no data: run `kws data download --version v0.02` (about 2.3 GB) or "
                   "`kws data synth --out data/synth`, or pass --data FOLDER (make: DATA=)")


# ---------------------------------------------------------------------------------------------
# Loading

class Dataset:
    """All clips of one or more folders, labelled for one task."""

    def __init__(self, roots: list[Path], task: Task, clips: list[Clip], split_source: str):
        self.roots, self.task, self.clips, self.split_source = roots, task, clips, split_source
        self.root = roots[0]  # the first folder: relative names in reports and caches

    def from_root(self, clips: list[Clip], root: Path) -> list[Clip]:
        """The clips that live under `root` (one of the data set's folders)."""
        root = Path(root).resolve()
        return [c for c in clips if c.path.resolve().is_relative_to(root)]

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
            "root": ", ".join(str(r) for r in self.roots), "task": self.task.name, "split_source": self.split_source,
            "counts": counts,
            "speakers": {s: len(speakers[s]) for s in SPLITS},
            "clips": {s: sum(counts[k][s] for k in counts) for s in SPLITS},
        }


def load_dataset(roots: str | Path | list, config: DataConfig = DataConfig()) -> Dataset:
    """Find every clip under `roots` (a folder or a list), split it, label it for `config.task`."""
    roots = [Path(r) for r in (roots if isinstance(roots, (list, tuple)) else [roots])]
    if not roots:
        raise KwsError("no data folder given")
    for root in roots:
        if not root.is_dir():
            raise KwsError(f"no data folder at {root} (get Speech Commands with `kws data "
                           "download`, or make a synthetic corpus with `kws data synth`)")
    task = config.vocabulary()
    lists = {root: _read_lists(root) for root in roots}
    mode = _split_mode(roots, config, lists)
    words = []
    for root in roots:
        found = _scan(root, config, lists[root], mode)
        if not found:
            raise KwsError(f"{root}: no word folders with audio files: not a Speech Commands "
                           "layout")
        words += found
    rule = _describe_rule(roots, config, lists, mode)
    if config.folds:
        words = _fold_split(words, config)
        rule += f"; fold {config.fold} of {config.folds} (its testing speakers left out)"

    clips = [c for c in words if task.label(c.word) is not None]
    if task.label(SILENCE) is not None and not any(c.word == SILENCE for c in clips):
        noisy = [root for root in roots if background_files(root)]
        if noisy:  # the first folder with background recordings gives the crops
            clips += _silence_crops(noisy[0], clips, config)
    clips = _limit_unknown(clips, task, config)
    clips.sort(key=lambda c: (SPLITS.index(c.split), c.word, str(c.path), c.offset))
    return Dataset(roots, task, clips, rule)


def _fold_split(clips: list[Clip], config: DataConfig) -> list[Clip]:
    """Cross-validation: drop the held-out test speakers, bucket `fold` becomes `testing`."""
    out = []
    for c in clips:
        if c.split == "testing":
            continue
        if fold_of(c.speaker, config.folds) == config.fold:
            c = Clip(c.path, c.word, c.speaker, "testing", c.offset)
        out.append(c)
    return out


def _split_mode(roots: list[Path], config: DataConfig, lists: dict) -> str:
    """`speakers` or `official` for the whole data set."""
    if config.split != "auto":
        return config.split
    if any((root / UNKNOWN).is_dir() and lists[root] is None for root in roots):
        return "speakers"
    return "official"


def _describe_rule(roots: list[Path], config: DataConfig, lists: dict, mode: str) -> str:
    return "; ".join(dict.fromkeys(_split_rule(root, config, lists[root], mode)
                                   for root in roots))


def _split_rule(root: Path, config: DataConfig, lists: dict | None, mode: str) -> str:
    """Which of the rules in the module docstring applies to `root`, as a readable phrase."""
    test_set_layout = (root / UNKNOWN).is_dir()
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
          mode: str) -> list[Clip]:
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND or folder.name.startswith("."):
            continue
        for path in audio_files(folder):
            if folder.name == SILENCE:
                speaker, word = f"{SILENCE}{path.stem}", SILENCE
            else:
                speaker, prefix = speaker_of(path, folder.name == UNKNOWN)
                word = prefix or folder.name
            if mode == "speakers":
                split = which_set(SPEAKER_SALT + speaker, config.val_pct, config.test_pct)
            elif lists is not None:
                split = lists.get(f"{folder.name}/{path.name}", "training")
            elif (root / UNKNOWN).is_dir():  # the published test set: all of it is testing
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
    from kws.data.audio import audio_length

    noise_files = background_files(root)
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


NEGATIVE_SALT = "kws-negatives:"


def negative_speaker(path: Path) -> str:
    """The speaker of a keyword-free recording: LibriSpeech's `<speaker>-<chapter>-<n>` and
    the synthetic sentences' `sent-<talker>-<k>` (kws.data.sentences) give theirs; any other
    file is its own speaker."""
    m = re.match(r"^(\d+)-\d+-\d+$", path.stem)
    if m:
        return f"librispeech-{m[1]}"
    m = re.match(r"^sent-([0-9a-f]{8})-\d+$", path.stem)
    return f"sentences-{m[1]}" if m else path.stem


def _negative_bucket(path: Path) -> int:
    digest = hashlib.sha1((NEGATIVE_SALT + negative_speaker(Path(path))).encode()).hexdigest()
    return int(digest, 16) % 10000


def negative_side(path: Path, train_pct: float = 50.0) -> str:
    """`training` or `heldout` for a keyword-free recording, by a salted hash of its speaker:
    the part training may use (as `_unknown_` crops) and the part false accepts are counted
    on. The same file always lands on the same side."""
    return "training" if _negative_bucket(path) < train_pct * 100 else "heldout"


def negative_split(path: Path) -> str:
    """`training` (the training side, 50 %), else `validation` or `testing` (25 % each, the
    two halves of the held-out side): a detector's threshold is chosen on the validation
    speakers' false accepts and judged on the testing speakers'."""
    bucket = _negative_bucket(path)
    return "training" if bucket < 5000 else "validation" if bucket < 7500 else "testing"


def background_files(root: Path) -> list[Path]:
    """The long background-noise recordings of a data folder (WAV or FLAC)."""
    folder = Path(root) / BACKGROUND
    if not folder.is_dir():
        return []
    return audio_files(folder)


def _limit_unknown(clips: list[Clip], task: Task, config: DataConfig) -> list[Clip]:
    """Keep at most `unknown_pct` % unknown clips per split (seeded choice), as TensorFlow does.
    (The clips of the task's `other` class: _unknown_, or a wake task's _background_ words.)"""
    if task.other is None or config.unknown_pct is None:
        return clips
    unknown_index = task.classes.index(task.other)
    keep = [c for c in clips if task.label(c.word) != unknown_index or c.word == SILENCE]
    for s, split in enumerate(SPLITS):
        pool = [c for c in clips if c.split == split and c.word != SILENCE
                and task.label(c.word) == unknown_index]
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

