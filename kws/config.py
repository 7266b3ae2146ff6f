"""Experiment configuration: typed dataclasses loaded strictly from YAML.

A config file has one section per pipeline stage. Unknown keys and wrong types are errors that
name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kws.data.tasks import Task, make_task
from kws.errors import KwsError


FRONTENDS = ("log_mel", "pcen")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel (or PCEN) front end. One second of 16 kHz audio gives 98 frames of 32 bins."""

    sample_rate: int = 16000
    clip_samples: int = 16000      # clips are padded (at the end) or cropped to this
    win_length: int = 400          # 25 ms
    hop_length: int = 160          # 10 ms
    n_fft: int = 512
    n_mels: int = 32
    fmin: float = 20.0
    fmax: float = 8000.0
    log_floor: float = 1e-6        # log(max(mel_power, floor)); audio is in [-1, 1]
    # "log_mel", or "pcen": per-channel energy normalisation of the mel power (Wang et al.
    # 2017), a causal smoother per bin whose state a stream carries on (kws/frontend/features.py)
    frontend: str = "log_mel"
    pcen_time_s: float = 0.4       # the smoother's time constant
    pcen_gain: float = 0.98        # alpha: how far the smoothed energy divides out
    pcen_bias: float = 2.0         # delta
    pcen_power: float = 0.5        # r: the root compression
    pcen_eps: float = 1e-4         # the most gain: ~50 dB under loud speech (mel power ~20)

    def __post_init__(self):
        _positive(self, "features", "sample_rate", "clip_samples", "n_fft", "n_mels")
        if not self.log_floor > 0:
            raise KwsError("features.log_floor must be > 0")
        if not 0 < self.win_length <= self.n_fft:
            raise KwsError(f"features.win_length must be in (0, n_fft={self.n_fft}]")
        if self.hop_length <= 0 or self.clip_samples < self.win_length:
            raise KwsError("features: hop_length must be > 0 and clip_samples >= win_length")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise KwsError("features: need 0 <= fmin < fmax <= sample_rate / 2")
        if self.frontend not in FRONTENDS:
            raise KwsError(f"features.frontend must be one of {', '.join(FRONTENDS)}, "
                           f"not {self.frontend!r}")
        if not (self.pcen_time_s > 0 and 0 <= self.pcen_gain <= 1 and self.pcen_bias >= 0
                and 0 < self.pcen_power <= 1 and self.pcen_eps > 0):
            raise KwsError("features: pcen needs time_s > 0, 0 <= gain <= 1, bias >= 0, "
                           "0 < power <= 1, eps > 0")

    @property
    def n_frames(self) -> int:
        """Frames per clip: no centring, so only whole windows count."""
        return 1 + (self.clip_samples - self.win_length) // self.hop_length

    def settings(self) -> dict:
        """The fields that shape the features: a log-mel config leaves out the PCEN fields, so
        its caches and keys stay what they were before PCEN existed."""
        fields = dataclasses.asdict(self)
        if self.frontend == "log_mel":
            fields = {k: v for k, v in fields.items()
                      if k != "frontend" and not k.startswith("pcen_")}
        return fields

    def digest(self) -> str:
        """A short hash of every field: part of every cache key that depends on features."""
        blob = json.dumps(self.settings(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


@dataclass(frozen=True)
class DataConfig:
    """Which task and which split rule. Percentages follow TensorFlow's speech_commands recipe."""

    task: str = "v2-12"            # "v2-12" (10 words + _silence_ + _unknown_), "35" or "wake"
    keywords: tuple[str, ...] = ()  # task wake: the words it listens for (+ _background_)
    split: str = "auto"            # "auto", "official" or "speakers": see kws/data/dataset.py
    val_pct: float = 10.0          # speaker-hash split for folders without list files
    test_pct: float = 10.0
    silence_pct: float = 10.0      # silence crops made per split, as % of the keyword clips
    unknown_pct: float | None = 10.0  # unknown clips kept per split (subsampled if more); null: all
    seed: int = 0
    folds: int = 0                 # cross-validation: k speaker folds (0: off; kws/data/dataset.py)
    fold: int = 0                  # ... and which one is this run's `testing` split

    def __post_init__(self):
        try:
            self.vocabulary()
        except ValueError as e:
            raise KwsError(str(e)) from None
        if self.split not in ("auto", "official", "speakers"):
            raise KwsError(f"data.split must be auto, official or speakers, not {self.split!r}")
        if not (0 <= self.val_pct and 0 <= self.test_pct and self.val_pct + self.test_pct < 100):
            raise KwsError("data.val_pct and data.test_pct must be >= 0 and sum to < 100")
        if self.folds == 1 or self.folds < 0 or not 0 <= self.fold < max(self.folds, 1):
            raise KwsError(f"data.folds must be 0 (off) or >= 2 and data.fold in [0, folds), "
                           f"not folds {self.folds}, fold {self.fold}")

    def vocabulary(self) -> Task:
        """The task: its classes and how a word is labelled (kws.data.tasks)."""
        return make_task(self.task, self.keywords)


@dataclass(frozen=True)
class ModelConfig:
    """FastGRNN shape, compression and number formats (see kws/training/model.py, kws/quant/arith.py)."""

    arch: str = "fastgrnn"         # "fastgrnn" or "gru" (float baseline / teacher)
    hidden: int = 24
    rank_w: int = 6
    rank_u: int = 6
    weight_bits: int = 8           # 8, or 4 (packed two per byte)
    weight_scale: str = "max"      # a matrix's power-of-two scale: max (no clipping) or mse
    state_bits: int = 16           # the arithmetic (kws/quant/arith.py): 16 (int16 state) or 8
    qx: int = 5                    # fractional bits of the int8 input (normalised features)
    density: dict = field(default_factory=dict)  # factor -> fraction of weights kept, e.g. W1: 0.5
    pool_frames: int = 1           # the clip decision: mean of the last N frames' scores
    budget_bytes: int = 1024       # `kws train` refuses to ship a model over this

    def __post_init__(self):
        _positive(self, "model", "hidden", "rank_w", "rank_u", "pool_frames", "budget_bytes")
        if self.arch not in ("fastgrnn", "gru"):
            raise KwsError(f"model.arch must be fastgrnn or gru, not {self.arch!r}")
        if self.weight_bits not in (4, 8):
            raise KwsError("model.weight_bits must be 4 or 8")
        if self.weight_scale not in ("max", "mse"):
            raise KwsError(f"model.weight_scale must be max or mse, not {self.weight_scale!r}")
        if self.state_bits not in (16, 8):
            raise KwsError("model.state_bits must be 16 or 8")
        for k, v in self.density.items():
            if k not in ("W1", "W2", "U1", "U2", "Wc") or not isinstance(v, (int, float)) \
                    or not 0 < v <= 1:
                raise KwsError(f"model.density.{k}: factors are W1 W2 U1 U2 Wc, values in (0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """The three compression phases of the paper, then quantisation-aware epochs."""

    # the folders to train on (one data set, split by speaker across them) when they all
    # exist; else the downloaded archive, the dev clips, the fallback (kws.data.dataset.find_data)
    data: str | tuple[str, ...] = "../shared/data/speech_commands_dev"
    fallback_data: str = "data/synth"
    seed: int = 0
    device: str = "auto"           # auto (a CUDA device when there is one), cpu or cuda
    batch_size: int = 64
    lr: float = 0.01
    lr_final: float = 0.0005       # cosine decay to this over all epochs
    weight_decay: float = 0.0
    epochs_dense: int = 40
    epochs_sparsify: int = 20      # iterative hard thresholding down to model.density
    epochs_sparse: int = 20        # training on the fixed support
    epochs_quant: int = 20         # integer arithmetic forward, straight-through gradients
    gates_on_validation: bool = False  # at the first of them, fix the integer sigmoid(zeta),
                                   # sigmoid(nu) at the neighbours best on validation (no oscillation)
    # augmentation, applied to the audio of each training batch
    shift_ms: float = 100.0        # random time shift up to +- this
    noise_prob: float = 0.8        # probability of mixing in background noise ...
    snr_db: tuple[float, float] = (0.0, 20.0)  # ... at a uniformly drawn SNR
    gain_db: tuple[float, float] = (-10.0, 10.0)
    speed: tuple[float, float] = (1.0, 1.0)  # speed perturbation: resample by a factor in here
    rir_prob: float = 0.0          # probability of reverberation with a room impulse response
    rir_dirs: tuple[str, ...] = ()  # folders of impulse responses (WAV/FLAC, any rate)
    noise_dirs: tuple[str, ...] = ()  # more noise recordings, beside the data's own background
    class_balance: float = 0.0     # loss weight of a class ~ (its clips)^-class_balance (1: equal)
    sample_balance: float = 0.0    # epochs drawn so a class, and a word within it, weigh ~ n^(1-b)
    other_share: float = 1.0       # ... the other-words class (_unknown_) this many times more
    word_prior: str = "equal"      # ... and within it each word: "equal" (alike), or
                                   # "first_folder": as often as among the training clips of
                                   # train.data's first folder (an official test set: digits)
    negative_dirs: tuple[str, ...] = ()  # keyword-free speech: 1 s crops become `_unknown_`
    negative_clips: int = 0        # ... this many crops, from the `training` side of its speakers
    negative_share: float = 0.0    # with drawn epochs: crops + mined clips get this part of
                                   # _unknown_ (0: one word among the others)
    hard_negative_dirs: tuple[str, ...] = ()  # `kws mine` folders: every clip is `_unknown_`
    cut_prob: float = 0.0          # a keyword clip becomes a stream cut (kws/training/cuts.py)
    cut_keep: tuple[float, float] = (0.5, 0.9)  # ... labelled by the voiced fraction it keeps
    spec_mask_bins: int = 0        # SpecAugment: one frequency mask up to this wide
    spec_mask_frames: int = 0      # and one time mask up to this long
    mixup_alpha: float = 0.0       # mixup: windows blended in pairs, lam ~ Beta(a, a) (0: off)
    smooth_float: bool = False     # float phases use sigmoid/tanh; quant uses quantSigm/Tanh
    init_from: str = ""            # a run folder whose best model starts this one (fine-tuning)
    teacher: str | tuple[str, ...] = ""  # a run folder of a float teacher for distillation,
                                   # or several: their softened outputs are averaged
    distill_weight: float = 0.0
    distill_temperature: float = 2.0

    def __post_init__(self):
        _positive(self, "train", "batch_size", "lr", "distill_temperature")
        for key in ("epochs_dense", "epochs_sparsify", "epochs_sparse", "epochs_quant",
                    "spec_mask_bins", "spec_mask_frames", "lr_final", "weight_decay",
                    "shift_ms", "mixup_alpha"):
            if getattr(self, key) < 0:
                raise KwsError(f"train.{key} must be >= 0, not {getattr(self, key)}")
        if not 0 <= self.cut_keep[0] <= self.cut_keep[1] <= 1:
            raise KwsError(f"train.cut_keep is [low, high] in [0, 1], not {self.cut_keep}")
        for key in ("noise_prob", "distill_weight", "rir_prob", "class_balance", "cut_prob",
                    "sample_balance"):
            if not 0 <= getattr(self, key) <= 1:
                raise KwsError(f"train.{key} must be in [0, 1], not {getattr(self, key)}")
        if self.word_prior not in ("equal", "first_folder"):
            raise KwsError(f"train.word_prior must be equal or first_folder, not "
                           f"{self.word_prior!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise KwsError(f"train.device must be auto, cpu or cuda, not {self.device!r}")
        if not 0 <= self.negative_share < 1:
            raise KwsError(f"train.negative_share must be in [0, 1), not {self.negative_share}")
        if self.other_share <= 0:
            raise KwsError(f"train.other_share must be > 0, not {self.other_share}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise KwsError(f"train.speed is a range of factors 0 < low <= high, not {self.speed}")
        if self.negative_clips < 0 or (self.negative_clips and not self.negative_dirs):
            raise KwsError("train.negative_clips needs train.negative_dirs (and is >= 0)")
        if self.rir_prob > 0 and not self.rir_dirs:
            raise KwsError("train.rir_prob > 0 needs train.rir_dirs (folders of impulse responses)")
        for key in ("snr_db", "gain_db"):
            lo, hi = getattr(self, key)
            if lo > hi:
                raise KwsError(f"train.{key} is a range [low, high], not [{lo}, {hi}]")


def _positive(section, name: str, *keys: str) -> None:
    for key in keys:
        if not getattr(section, key) > 0:
            raise KwsError(f"{name}.{key} must be > 0, not {getattr(section, key)}")


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.model.pool_frames > self.features.n_frames:
            raise KwsError(f"model.pool_frames {self.model.pool_frames} is more than the "
                           f"{self.features.n_frames} frames of a clip")


_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _check_type(value, hint, where: str):
    """Return `value` converted to `hint` if it is a lossless match, else raise naming `where`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except KwsError:
                pass
        raise KwsError(f"config key {where!r}: {value!r} is not of type {hint}")
    if hint is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, dict):
            return _from_dict(hint, value, where)
        raise KwsError(f"config section {where!r}: expected a mapping of keys, got "
                       f"{type(value).__name__} {value!r}")
    elif origin in (list, tuple):
        args = typing.get_args(hint)
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        item = args[0] if args else typing.Any
        if isinstance(value, (list, tuple)) and (not fixed or len(value) == len(args)):
            return origin(_check_type(v, args[i] if fixed else item, f"{where}[{i}]")
                          for i, v in enumerate(value))
        size = f"{len(args)} " if fixed else ""
        raise KwsError(f"config key {where!r}: expected a list of {size}"
                       f"{getattr(item, '__name__', item)}, got {type(value).__name__} {value!r}")
    elif hint is typing.Any:
        return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_FLOAT.match(value):
            return float(value)  # PyYAML reads 1e-3 (no dot) as a string
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise KwsError(f"config key {where!r}: expected {name}, got {type(value).__name__} {value!r}")


def _from_dict(cls, data: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in known:
            if not where:
                raise KwsError(f"unknown config section {str(key)!r} (sections: "
                               f"{', '.join(sorted(known))})")
            raise KwsError(f"unknown config key {f'{where}.{key}'!r} in section {where!r} "
                           f"(its keys: {', '.join(sorted(known))})")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict, cls=Config):
    """Build a config dataclass from plain data, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise KwsError(f"a config must be a mapping of sections (features:, data:, ...), "
                       f"not a {type(data).__name__}")
    return _from_dict(cls, data)


def load_config(path: str | Path, cls=Config):
    """Read a YAML config file; a missing file, bad YAML or a bad key is a one-line KwsError.

    A config may start from another: `base: other.yaml` (a path relative to this file's
    folder) reads that one first, then this file's sections are laid over it key by key
    (a list or a value replaces the base's; a section is merged). Bases may chain."""
    path = Path(path)
    data = _read_config(path, ())
    try:
        return config_from_dict(data, cls)
    except KwsError as e:
        raise KwsError(f"{path}: {e}") from None


def _read_config(path: Path, chain: tuple[Path, ...]) -> dict:
    """The plain data of one config file with its `base:` chain resolved."""
    try:
        text = path.read_text()
    except OSError as e:
        where = f" (the base of {chain[-1]})" if chain else ""
        raise KwsError(f"cannot read config {path}{where}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise KwsError(f"{path}: not a text file (a config is YAML)") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except KwsError as e:
        raise KwsError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise KwsError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise KwsError(f"{path}: base: is the path of another config file, not {base!r}")
    base_path = path.parent / base
    if base_path.resolve() in {p.resolve() for p in (*chain, path)}:
        raise KwsError(f"{path}: base: {base} leads back to itself "
                       f"({' -> '.join(str(p) for p in (*chain, path, base_path))})")
    return _laid_over(_read_config(base_path, (*chain, path)), data, path)


def _laid_over(base: dict, over: dict, path: Path) -> dict:
    """`over`'s sections on top of `base`'s: section keys merge, anything else replaces."""
    if not isinstance(base, dict):
        raise KwsError(f"{path}: its base is not a mapping of sections")
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class _StrictLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error, not "the last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise KwsError(f"key {key_node.value!r} given twice (line "
                                   f"{key_node.start_mark.line + 1})")
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """'line L column C: problem' of a YAML error, on one line."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1} column {mark.column + 1}: {problem}" if mark else problem


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)
