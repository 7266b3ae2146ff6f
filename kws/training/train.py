"""`kws train`: FastGRNN in four phases, one loop.

    dense      float training of the low-rank model
    sparsify   iterative hard thresholding: after every step keep the largest weights of each
               factor, the kept fraction falling linearly to `model.density`
    sparse     training on the fixed support (masks frozen)
    quant      the integer arithmetic in the forward pass, straight-through gradients; the
               exponents are frozen for the second half of the phase

Every epoch: augmented batches (speed perturbation, room impulse responses, time shift,
background noise at a random SNR, gain; optional SpecAugment, class-balanced epochs or loss,
keyword-free speech as extra `_unknown_` clips and distillation from a float teacher), then
validation accuracy of the float and of the integer model. The checkpoint is written
atomically at the end of each epoch; Ctrl-C keeps the last one (the epoch it interrupts is
dropped, never saved half-done), `--resume` continues from it, and a fixed seed gives the same
model as an uninterrupted run. The shipped model is the best integer model on validation,
never chosen on test.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from kws.atomic import atomic_open, atomic_path, ctrl_c_deferred
from kws.frontend.cache import cached_audio, compute_features, to_float
from kws.config import Config, config_to_dict
from kws.data.dataset import Dataset, background_files, find_data, load_dataset
from kws.errors import Interrupted, KwsError
from kws.frontend.features import BatchFeatures, norm_stats
from kws.training.model import FastGRNN, GRUBaseline

PHASES = ("dense", "sparsify", "sparse", "quant")


# --- data ------------------------------------------------------------------------------------

CROPS, MINED = "(keyword-free crops)", "(mined)"   # their sampling groups (words)


def resolve_data(config: Config) -> list[Path]:
    """The training folders: `train.data`, else the rule of `kws.data.dataset.find_data`."""
    return find_data(configured=config.train.data, fallback=config.train.fallback_data)


class TrainingData:
    """Training audio (int16, memory-mapped), clean validation/test features, noise, impulse
    responses, normalisation."""

    def __init__(self, config: Config, data_dirs, cache_dir: Path = Path("data/cache")):
        fc = config.features
        data_dirs = data_dirs if isinstance(data_dirs, (list, tuple)) else [data_dirs]
        self.dataset: Dataset = load_dataset(data_dirs, config.data)
        train = self.dataset.split("training")
        if not train or not self.dataset.split("validation"):
            raise KwsError(f"{', '.join(map(str, data_dirs))}: need clips in both training and "
                           "validation splits")
        # int16, memory-mapped from the cache: a full archive's training set is not held in RAM
        self.audio, kept, _ = cached_audio(train, self.dataset.root, fc, cache_dir)
        self.labels = self.dataset.labels(kept)
        self.words = np.array([c.word for c in kept], dtype=object)  # sampling groups
        # how often each word occurs among the first folder's training clips (train.word_prior)
        self.first_folder_words = Counter(c.word for c in self.dataset.from_root(kept,
                                                                                 data_dirs[0]))
        self.warnings: list[str] = []   # augmentation sources that are missing (train() says)
        crops = self._negative_crops(config, self.warnings)
        mined = self._hard_negatives(config, self.warnings)
        if len(crops) + len(mined):     # keyword-free speech as more `_unknown_` clips
            if self.dataset.task.other is None:
                raise KwsError(f"train.negative_clips / hard_negative_dirs: task "
                               f"{config.data.task} has no class for other words")
            self.audio = np.concatenate([self.audio, crops, mined])
            unknown = self.dataset.task.classes.index(self.dataset.task.other)
            self.labels = np.concatenate([self.labels, np.full(len(crops) + len(mined), unknown)])
            self.words = np.concatenate([self.words, np.array(
                [CROPS] * len(crops) + [MINED] * len(mined), dtype=object)])
        clean = compute_features(self.dataset.clips, self.dataset.root, fc, cache_dir,
                                 skip_bad=True)
        self.bad = clean.bad          # unreadable files, skipped (train() reports them)
        split = np.array([c.split for c in clean.clips])
        self.mean, self.std = norm_stats(clean.features[split == "training"])
        self.eval_sets = {}
        for name in ("validation", "testing"):
            sel = split == name
            self.eval_sets[name] = (self.normalise(clean.features[sel]),
                                    self.dataset.labels([c for c, s in zip(clean.clips, sel) if s]))
        self.noise = self._noise(data_dirs, config, self.warnings)
        self.rirs = self._rirs(config, self.warnings) if config.train.rir_prob > 0 else []

    def normalise(self, features):
        return (features - self.mean) / self.std

    @staticmethod
    def _noise(data_dirs: list[Path], config: Config, warnings: list[str]) -> list[np.ndarray]:
        """The training stretch of each background recording (the same cut as silence crops),
        and the whole of each recording in `train.noise_dirs`."""
        from kws.data.audio import load_audio

        keep = 1 - (config.data.val_pct + config.data.test_pct) / 100
        length = config.features.clip_samples
        out = []
        for f in [f for d in data_dirs for f in background_files(d)]:
            a = load_audio(f, config.features.sample_rate, None)
            if len(a) * keep > length:
                out.append(a[:int(len(a) * keep)])
        for f in _audio_files(config.train.noise_dirs, "train.noise_dirs", warnings):
            a = load_audio(f, config.features.sample_rate, None)
            if len(a) > length:
                out.append(a)
        return out

    @staticmethod
    def _hard_negatives(config: Config, warnings: list[str]) -> np.ndarray:
        """Every clip (int16, padded or cut to one clip) of the `train.hard_negative_dirs`:
        windows of keyword-free audio that an earlier model scored high (`kws mine`)."""
        from kws.data.audio import load_audio
        from kws.frontend.cache import to_pcm

        n = config.features.clip_samples
        files = _audio_files(config.train.hard_negative_dirs, "train.hard_negative_dirs",
                             warnings)
        out = np.empty((len(files), n), np.int16)
        for i, f in enumerate(files):
            out[i] = to_pcm(load_audio(f, config.features.sample_rate, n))
        return out

    @staticmethod
    def _negative_crops(config: Config, warnings: list[str]) -> np.ndarray:
        """`train.negative_clips` seeded 1 s crops (int16) of the `training` side of the
        keyword-free recordings in `train.negative_dirs` (kws.data.dataset.negative_side)."""
        from kws.data.audio import load_audio
        from kws.data.dataset import negative_side
        from kws.frontend.cache import to_pcm

        t, n = config.train, config.features.clip_samples
        if not t.negative_clips:
            return np.zeros((0, n), np.int16)
        if config.data.vocabulary().other is None:
            raise KwsError(f"train.negative_clips: task {config.data.task} has no class for "
                           "other words (_unknown_ or _background_)")
        files = [f for f in _audio_files(t.negative_dirs, "train.negative_dirs", warnings)
                 if negative_side(f) == "training"]
        audio = [a for f in files if len(a := load_audio(f, config.features.sample_rate,
                                                         None)) >= n]
        if not audio:
            warnings.append("train.negative_dirs: no recording of 1 s or more: no crops")
            return np.zeros((0, n), np.int16)
        rng = np.random.default_rng([t.seed, 3])
        out = np.empty((t.negative_clips, n), np.int16)
        for i in range(t.negative_clips):
            a = audio[rng.integers(len(audio))]
            start = int(rng.integers(0, len(a) - n + 1))
            out[i] = to_pcm(a[start:start + n])
        return out

    @staticmethod
    def _rirs(config: Config, warnings: list[str]) -> list[np.ndarray]:
        """Room impulse responses, from the direct sound on, scaled to unit energy."""
        from kws.data.audio import load_audio

        out = []
        files = _audio_files(config.train.rir_dirs, "train.rir_dirs", warnings)
        for f in files:
            h = load_audio(f, config.features.sample_rate, None).astype(np.float64)
            h = h[int(np.argmax(np.abs(h))):]
            energy = float(np.sum(h ** 2))
            if energy > 0:
                out.append(h / math.sqrt(energy))
        if files and not out:
            raise KwsError(f"train.rir_dirs {list(config.train.rir_dirs)}: no impulse responses")
        return out

    def sampling_probs(self, balance: float, other_share: float = 1.0,
                       negative_share: float = 0.0, word_prior: str = "equal") -> np.ndarray:
        """The probability of each training clip in a drawn epoch (`train.sample_balance`,
        `train.other_share`, `train.negative_share`, `train.word_prior`)."""
        other = self.dataset.task.other
        shares = ({self.dataset.task.classes.index(other): other_share}
                  if other is not None else {})
        weights = dict(self.first_folder_words) if word_prior == "first_folder" else None
        p = sampling_probs(self.labels, self.words, balance, shares, weights)
        negative = np.isin(self.words, [CROPS, MINED])
        if negative_share > 0 and negative.any():
            # the keyword-free clips take `negative_share` of their class, the words the rest
            in_class = self.labels == self.labels[negative][0]
            mass, rest = p[negative].sum(), p[in_class & ~negative].sum()
            p[negative] *= negative_share * (mass + rest) / mass
            if rest > 0:
                p[in_class & ~negative] *= (1 - negative_share) * (mass + rest) / rest
        return p

    def class_weights(self, balance: float) -> torch.Tensor:
        """Loss weight per class ~ (clips of the class)^-balance, averaging 1 over the clips."""
        n = len(self.dataset.task.classes)
        counts = np.bincount(self.labels, minlength=n).astype(np.float64)
        w = np.where(counts > 0, np.maximum(counts, 1) ** -balance, 0.0)
        w *= counts.sum() / max(float((w * counts).sum()), 1e-12)
        return torch.tensor(w, dtype=torch.float32)


def sampling_probs(labels: np.ndarray, words: np.ndarray, balance: float,
                   shares: dict[int, float] | None = None,
                   word_weights: dict[str, float] | None = None) -> np.ndarray:
    """The probability of each clip in a drawn epoch, for clips of `labels` (classes) and
    `words` (groups within a class: an unknown word, the keyword-free crops, the mined clips).

    Two levels with one exponent b: a class gets a share ~ (its clips)^(1-b) of the epoch, and
    within the class each word gets a share ~ (its clips)^(1-b); a clip gets its word's share
    evenly. b = 0 is every clip alike (the plain epoch); b = 1 is every class alike and, within
    `_unknown_`, every word alike, whatever the folders over-supply (an official test set is
    not made so: its digits are most of `_unknown_`; `word_weights` below).
    `shares` multiplies the mass of some classes (`train.other_share`: the other-words class,
    whose many words a 1 KB model otherwise under-calls). `word_weights` replaces the word
    level for the words it names (`train.word_prior`): within a class, those words share out
    what they would have had in proportion to their weights; other words keep theirs.
    """
    p = np.zeros(len(labels))
    classes, class_counts = np.unique(labels, return_counts=True)
    class_mass = class_counts.astype(float) ** (1 - balance)
    class_mass *= [(shares or {}).get(int(c), 1.0) for c in classes]
    for c, mass in zip(classes, class_mass / class_mass.sum()):
        in_class = labels == c
        names, counts = np.unique(words[in_class], return_counts=True)
        word_mass = counts.astype(float) ** (1 - balance)
        weights = np.array([(word_weights or {}).get(w, 0.0) for w in names], float)
        if (weights > 0).any():
            known = weights > 0
            word_mass[known] = weights[known] * word_mass[known].sum() / weights[known].sum()
        share = dict(zip(names, mass * word_mass / word_mass.sum() / counts))
        p[in_class] = [share[w] for w in words[in_class]]
    return p / p.sum()


def _audio_files(folders, key: str, warnings: list[str]) -> list[Path]:
    """Every WAV/FLAC file under `folders` (recursively), sorted. A missing folder is skipped
    with a warning (an augmentation source, not the data: training goes on without it)."""
    from kws.data.audio import audio_files

    files = []
    for d in folders:
        if not Path(d).is_dir():
            warnings.append(f"{key}: no folder at {d}: training without it")
            continue
        files += audio_files(d, recursive=True)
    return files


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `audio` `factor` times faster (pitch and tempo together, as Kaldi's speed
    perturbation does), stretched about the middle so a centred word stays centred; the
    length is kept (zeros where the stretched clip does not reach)."""
    n = len(audio)
    mid = (n - 1) / 2
    src = mid + (np.arange(n) - mid) * factor
    return np.interp(src, np.arange(n), audio, left=0.0, right=0.0).astype(audio.dtype)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`audio` in the room of `rir` (direct sound at sample 0), same length and peak."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(audio.astype(np.float64), rir)[:len(audio)]
    peak_in, peak_out = float(np.abs(audio).max()), float(np.abs(wet).max())
    if peak_out > 0:
        wet *= peak_in / peak_out
    return wet.astype(audio.dtype)


class Augmenter:
    """Audio batch -> normalised features with speed, reverberation, shift, noise, gain and
    SpecAugment, in that order, all drawn from the caller's seeded generator."""

    def __init__(self, data: TrainingData, config: Config):
        self.data, self.cfg = data, config.train
        self.sample_rate = config.features.sample_rate
        self.frontend = BatchFeatures(config.features)
        self.mean = torch.from_numpy(data.mean)
        self.std = torch.from_numpy(data.std)
        task = data.dataset.task
        self.words = set(task.keywords)
        self.other = task.classes.index(task.other) if task.other else None
        # stream cuts need neighbours: the clips of the other class
        self.neighbours = (np.flatnonzero(data.labels == self.other)
                           if self.other is not None and self.cfg.cut_prob > 0 else [])

    def __call__(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        return self.batch(idx, rng)[0]

    def batch(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """(features, labels) of the clips `idx`: a stream cut may change a label."""
        cfg, n = self.cfg, len(idx)
        labels = self.data.labels[idx].copy()
        audio = to_float(self.data.audio[idx])
        length = audio.shape[1]
        max_shift = int(cfg.shift_ms * 16)
        speed = cfg.speed != (1.0, 1.0)
        for i in range(n):
            if speed:
                audio[i] = speed_perturb(audio[i], rng.uniform(*cfg.speed))
            if self.data.rirs and rng.random() < cfg.rir_prob:
                audio[i] = reverberate(audio[i], self.data.rirs[rng.integers(len(self.data.rirs))])
            if len(self.neighbours) and labels[i] in self.words and rng.random() < cfg.cut_prob:
                audio[i], labels[i] = self.stream_cut(audio[i], int(labels[i]), rng)
                s = 0                                  # the cut is the shift
            else:
                s = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
            audio[i] = np.roll(audio[i], s)
            if s > 0:
                audio[i, :s] = 0
            elif s < 0:
                audio[i, s:] = 0
            if self.data.noise and rng.random() < cfg.noise_prob:
                rec = self.data.noise[rng.integers(len(self.data.noise))]
                start = rng.integers(0, len(rec) - length)
                noise = rec[start:start + length]
                p_sig = max(float(np.mean(audio[i] ** 2)), 1e-8)
                p_noise = max(float(np.mean(noise ** 2)), 1e-10)
                snr = rng.uniform(*cfg.snr_db)
                audio[i] += noise * math.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
            audio[i] *= 10 ** (rng.uniform(*cfg.gain_db) / 20)
        np.clip(audio, -1, 1, out=audio)
        with torch.no_grad():
            feats = (self.frontend(torch.from_numpy(audio)) - self.mean) / self.std
        for i in range(n):
            if cfg.spec_mask_bins:
                w = rng.integers(0, cfg.spec_mask_bins + 1)
                f0 = rng.integers(0, feats.shape[2] - w + 1)
                feats[i, :, f0:f0 + w] = 0
            if cfg.spec_mask_frames:
                w = rng.integers(0, cfg.spec_mask_frames + 1)
                t0 = rng.integers(0, feats.shape[1] - w + 1)
                feats[i, t0:t0 + w] = 0
        return feats, labels

    def stream_cut(self, clip: np.ndarray, label: int, rng: np.random.Generator):
        """The keyword clip between two neighbours, cut at a drawn offset (kws.training.cuts)."""
        from kws.data.streamgen import voiced_span
        from kws.training.cuts import cut_label, cut_window, draw_offset

        voiced = voiced_span(clip, self.sample_rate)
        before, after = (to_float(self.data.audio[self.neighbours[
            rng.integers(len(self.neighbours))]]) for _ in range(2))
        window, kept = cut_window(clip, before, after, draw_offset(voiced, len(clip), rng),
                                  voiced)
        return window, cut_label(kept, label, self.other, self.cfg.cut_keep)


# --- model -----------------------------------------------------------------------------------

def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator):
    """Mixup on a batch of features (Zhang et al., 2018): each window is blended with another
    of the batch, x = lam * x + (1 - lam) * x[perm], lam ~ Beta(alpha, alpha) once a batch.
    Returns (mixed x, the partners' labels, lam); the loss weighs the two labels by lam and
    1 - lam, and a teacher scores the mixed windows. alpha 0: the batch unchanged, lam 1."""
    if alpha <= 0 or len(x) < 2:
        return x, y, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    return lam * x + (1 - lam) * x[perm], y[perm], lam


def pick_device(name: str) -> torch.device:
    """`train.device`: auto takes a CUDA device when torch sees one, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise KwsError("train.device is cuda, but torch sees no CUDA device (use auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_model(config: Config, n_classes: int):
    m = config.model
    if m.arch == "gru":
        return GRUBaseline(config.features.n_mels, m.hidden, n_classes)
    return FastGRNN(config.features.n_mels, m.hidden, m.rank_w, m.rank_u, n_classes,
                    weight_bits=m.weight_bits, qx=m.qx, state_bits=m.state_bits,
                    weight_scale=m.weight_scale)


def pooled(scores: torch.Tensor, pool_frames: int) -> torch.Tensor:
    """The clip decision: mean of the last `pool_frames` frames' scores."""
    return scores[:, -pool_frames:].mean(1)


def distill_target(teachers, x: torch.Tensor, pool_frames: int, T: float) -> torch.Tensor:
    """What the student learns to match: the teachers' clip decisions softened at
    temperature T, averaged over the teachers (an ensemble)."""
    with torch.no_grad():
        return torch.stack([F.softmax(pooled(t(x), pool_frames) / T, 1)
                            for t in teachers]).mean(0)


def phase_of(epoch: int, config: Config) -> str:
    t = config.train
    if config.model.arch == "gru":
        return "dense"
    edges = np.cumsum([t.epochs_dense, t.epochs_sparsify, t.epochs_sparse, t.epochs_quant])
    return PHASES[int(np.searchsorted(edges, epoch, side="right"))]


def total_epochs(config: Config) -> int:
    t = config.train
    if config.model.arch == "gru":
        return t.epochs_dense
    return t.epochs_dense + t.epochs_sparsify + t.epochs_sparse + t.epochs_quant


def density_at(epoch_in_phase: float, config: Config) -> dict[str, float]:
    frac = min(1.0, epoch_in_phase / max(1, config.train.epochs_sparsify))
    return {k: 1 - (1 - v) * frac for k, v in config.model.density.items()}


@torch.no_grad()
def accuracy(model, x: np.ndarray, y: np.ndarray, pool: int, quant: bool,
             batch: int = 512) -> float:
    if len(y) == 0:
        return float("nan")
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch):
        scores = model(torch.from_numpy(x[i:i + batch]).to(device), quant=quant)
        correct += int((pooled(scores, pool).argmax(1).cpu().numpy() == y[i:i + batch]).sum())
    return correct / len(y)


# --- the loop --------------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: Config, run_dir: Path, data: TrainingData):
        self.config, self.run_dir, self.data = config, Path(run_dir), data
        torch.manual_seed(config.train.seed)
        self.device = pick_device(config.train.device)
        self.model = build_model(config, len(data.dataset.task.classes))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.train.lr,
                                    weight_decay=config.train.weight_decay)
        self.augment = Augmenter(data, config)
        self.class_weights = (data.class_weights(config.train.class_balance)
                              if config.train.class_balance > 0 else None)
        t = config.train
        self.sampling = (data.sampling_probs(t.sample_balance, t.other_share, t.negative_share,
                                             t.word_prior)
                         if t.sample_balance > 0 or t.other_share != 1
                         or t.word_prior != "equal" else None)
        self.teachers = load_teachers(config) if config.train.distill_weight > 0 else []
        self.model.to(self.device)
        for teacher in self.teachers:
            teacher.to(self.device)
        if self.class_weights is not None:
            self.class_weights = self.class_weights.to(self.device)
        if config.train.init_from:
            from kws.config import load_config
            same_features(load_config(Path(config.train.init_from) / "config.yaml"), config,
                          config.train.init_from, "train.init_from")
            load_state(self.model, load_run_model(config.train.init_from, "train.init_from"),
                       "train.init_from")
        self.epoch, self.best, self.history = 0, None, []

    # checkpoints --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"epoch": self.epoch, "model": self.model.state_dict(),
                "opt": self.opt.state_dict(), "best": self.best, "history": self.history,
                "exponents": getattr(self.model, "exponents", None),
                "torch_rng": torch.get_rng_state()}

    def save_checkpoint(self):
        with atomic_path(self.run_dir / "checkpoint.pt") as tmp:
            torch.save(self.state(), tmp)

    def resume(self) -> bool:
        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            return False
        try:
            s = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as e:  # torch raises many kinds for a damaged file
            raise KwsError(f"{path}: cannot resume from a damaged checkpoint "
                           f"({_first_line(e)}); delete it to start the run again") from None
        try:
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["opt"])
            self.epoch, self.best, self.history = int(s["epoch"]), s["best"], list(s["history"])
            if s["exponents"] is not None:
                self.model.exponents = s["exponents"]
            torch.set_rng_state(s["torch_rng"])
        except Exception as e:  # a foreign dict, or a model of another shape
            raise KwsError(f"{path}: checkpoint does not fit this config's model "
                           f"({_first_line(e)}): resume with the run's own config.yaml") from None
        if not 0 <= self.epoch <= total_epochs(self.config) or len(self.history) != self.epoch:
            raise KwsError(f"{path}: checkpoint at epoch {self.epoch} does not fit this config's "
                           f"{total_epochs(self.config)} epochs")
        return True

    # one epoch ------------------------------------------------------------------------------------
    def lr_at(self, epoch: float) -> float:
        t = self.config.train
        frac = epoch / max(1, total_epochs(self.config))
        return t.lr_final + 0.5 * (t.lr - t.lr_final) * (1 + math.cos(math.pi * frac))

    def run_epoch(self) -> dict:
        cfg, model = self.config, self.model
        phase = phase_of(self.epoch, cfg)
        start_of = {p: sum(1 for e in range(self.epoch) if phase_of(e, cfg) == p) for p in PHASES}
        quant = phase == "quant"
        if hasattr(model, "smooth"):
            model.smooth = cfg.train.smooth_float and not quant
        if quant and start_of["quant"] == cfg.train.epochs_quant // 2:
            model.freeze_exponents()
        if quant and cfg.train.gates_on_validation and hasattr(model, "fix_gates"):
            if start_of["quant"] == 0:
                self.choose_gates()
            model.freeze_gates()                 # (again after a resume: not in the state dict)
        rng = np.random.default_rng([cfg.train.seed, self.epoch])
        n = len(self.data.labels)
        order = (rng.choice(n, size=n, p=self.sampling) if self.sampling is not None
                 else rng.permutation(n))
        bs = cfg.train.batch_size
        n_batches = math.ceil(len(order) / bs)
        model.train()
        losses = []
        bar = tqdm(range(n_batches), desc=f"epoch {self.epoch + 1}/{total_epochs(cfg)} {phase}",
                   leave=False, unit="batch", disable=None)  # None: no bar without a terminal
        for b in bar:
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.epoch + b / n_batches)
            idx = order[b * bs:(b + 1) * bs]
            x, y = self.augment.batch(idx, rng)
            x, y = x.to(self.device), torch.from_numpy(y).to(self.device)
            x, y_mix, lam = mixup(x, y, cfg.train.mixup_alpha, rng)
            logits = pooled(model(x, quant=quant), cfg.model.pool_frames)
            loss = lam * self.hard_loss(logits, y) + (1 - lam) * self.hard_loss(logits, y_mix)
            if self.teachers:
                T = cfg.train.distill_temperature
                soft = distill_target(self.teachers, x, cfg.model.pool_frames, T)
                kd = F.kl_div(F.log_softmax(logits / T, 1), soft, reduction="batchmean") * T * T
                loss = (1 - cfg.train.distill_weight) * loss + cfg.train.distill_weight * kd
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.opt.step()
            if phase == "sparsify":
                model.hard_threshold(density_at(start_of["sparsify"] + (b + 1) / n_batches, cfg))
            elif phase in ("sparse", "quant"):
                model.apply_masks()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")
        return self.evaluate(phase, float(np.mean(losses)))

    def hard_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the labels; a window labelled IGNORE teaches nothing (a batch of
        ambiguous cuts only: zero)."""
        if not (y >= 0).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, y, weight=self.class_weights)

    def choose_gates(self):
        """`train.gates_on_validation`: the integer sigmoid(zeta), sigmoid(nu) (each one's two
        rounding neighbours) that score best on validation, fixed for the quantisation-aware
        epochs (the first best on a tie)."""
        xv, yv = self.data.eval_sets["validation"]
        pool, best = self.config.model.pool_frames, None
        for values in self.model.gate_candidates():
            self.model.fix_gates(values)
            acc = accuracy(self.model, xv, yv, pool, True)
            if best is None or acc > best[0]:
                best = (acc, values)
        self.model.fix_gates(best[1])

    def evaluate(self, phase: str, loss: float) -> dict:
        cfg = self.config
        xv, yv = self.data.eval_sets["validation"]
        row = {"epoch": self.epoch + 1, "phase": phase, "loss": round(loss, 4),
               "lr": round(self.lr_at(self.epoch + 1), 6),
               "val_float": round(accuracy(self.model, xv, yv, cfg.model.pool_frames, False), 4)}
        if cfg.model.arch == "fastgrnn":
            row["val_int"] = round(accuracy(self.model, xv, yv, cfg.model.pool_frames, True), 4)
            row["nnz"] = sum(self.model.nnz().values())
            q = self.model.integer_weights()     # the gates' integers: do they still move?
            row["zeta_q"], row["nu_q"] = int(q["zeta"][0]), int(q["nu"][0])
        return row

    def fit(self, progress=print):
        cfg = self.config
        # choose among the epochs of the last phase: the model that will be shipped as is
        select_phase = phase_of(total_epochs(cfg) - 1, cfg)
        selector = "val_int" if select_phase == "quant" else "val_float"
        saved = self.epoch if (self.run_dir / "checkpoint.pt").exists() else None
        spent = []  # seconds of this process's epochs: the ETA
        try:
            while self.epoch < total_epochs(cfg):
                t0 = time.perf_counter()
                row = self.run_epoch()
                row["seconds"] = round(time.perf_counter() - t0, 1)
                # the epoch's end: everything below only reads it, then saves it atomically
                history = self.history + [row]
                best = self.best
                if row["phase"] == select_phase and (
                        best is None or row[selector] > best["row"][selector]):
                    best = {"row": row, "model": {k: v.detach().cpu().clone() for k, v in
                                                  self.model.state_dict().items()},
                            "exponents": getattr(self.model, "exponents", None)}
                with ctrl_c_deferred():      # the checkpoint and its metrics: both or neither
                    self.epoch, self.best, self.history = self.epoch + 1, best, history
                    self.save_checkpoint()
                    saved = self.epoch
                    self.write_metrics()
                spent.append(row["seconds"])
                eta = np.mean(spent[-5:]) * (total_epochs(cfg) - self.epoch)
                progress("  ".join(f"{k} {v}" for k, v in row.items())
                         + f"  eta {int(eta // 60)}m{int(eta % 60):02d}s")
        except KeyboardInterrupt:
            # the checkpoint on disk is the last finished epoch's; a half epoch is not saved
            # (resuming from it would not give the model of an uninterrupted run)
            if saved is None:
                raise Interrupted(f"in epoch 1, before any checkpoint: nothing to resume in "
                                  f"{self.run_dir}") from None
            raise Interrupted(f"the checkpoint of epoch {saved} is kept in {self.run_dir}: "
                              "continue with --resume") from None
        with ctrl_c_deferred():
            self.write_metrics()
            self.plot()
        return self.best

    def write_metrics(self):
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        with atomic_open(self.run_dir / "metrics.csv", "w") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(self.history)

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        ep = [r["epoch"] for r in self.history]
        a1.plot(ep, [r["loss"] for r in self.history])
        a1.set(xlabel="epoch", ylabel="training loss", title="loss")
        for key in ("val_float", "val_int"):
            pts = [(r["epoch"], r[key]) for r in self.history if key in r]
            if pts:
                a2.plot(*zip(*pts), label=key)
        for e, r in zip(ep, self.history):
            if e > 1 and r["phase"] != self.history[e - 2]["phase"]:
                a2.axvline(e - 0.5, color="grey", lw=0.5)
                a2.text(e, 0.02, r["phase"], fontsize=7, color="grey")
        a2.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1), title="accuracy")
        if a2.get_legend_handles_labels()[0]:
            a2.legend()
        fig.tight_layout()
        with atomic_path(self.run_dir / "curves.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)


def load_run_model(folder: str, key: str) -> dict:
    """The best model's state of a finished run folder."""
    path = Path(folder) / "best.pt"
    if not path.exists():
        raise KwsError(f"{key}: no finished run at {folder} (train it first)")
    try:
        return torch.load(path, weights_only=False, map_location="cpu")["model"]
    except Exception as e:  # torch raises many kinds for a damaged file
        raise KwsError(f"{key}: {path} is damaged ({_first_line(e)}): train that run "
                       "again") from None


def load_state(model, state: dict, key: str) -> None:
    """Load a run's weights into a model; another shape is a one-line error naming `key`."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise KwsError(f"{key}: that run's model does not fit this config's "
                       f"({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def same_features(run_config: Config, config: Config, folder, key: str) -> None:
    """A teacher or a starting point hears the student's features, so they must be its own."""
    if run_config.features != config.features:
        theirs = dataclasses.asdict(run_config.features)
        ours = dataclasses.asdict(config.features)
        diff = ", ".join(f"{k} {theirs[k]} (this config: {ours[k]})"
                         for k in ours if theirs[k] != ours[k])
        raise KwsError(f"{key}: {folder} was trained on other features: {diff}")


def load_teachers(config: Config) -> list:
    """The float teachers of `train.teacher`: one finished run folder, or several (their
    softened outputs are averaged). Any architecture the trainer builds can teach."""
    from kws.config import load_config

    folders = config.train.teacher
    folders = [folders] if isinstance(folders, str) else list(folders)
    if not any(folders):
        raise KwsError("train.distill_weight > 0 needs train.teacher (a run folder)")
    out = []
    for folder in folders:
        tconf = load_config(Path(folder) / "config.yaml")
        same_features(tconf, config, folder, "train.teacher")
        teacher = build_model(tconf, len(config.data.vocabulary().classes))
        load_state(teacher, load_run_model(folder, "train.teacher"), "train.teacher")
        out.append(teacher.eval())
    return out


def train(config: Config, run_dir: Path, resume: bool = False, progress=print) -> dict:
    """Train; return {"best": row, "run_dir": ..., "data": TrainingData, "model": ...}."""
    run_dir = Path(run_dir)
    if total_epochs(config) == 0:
        raise KwsError("no epochs to train: set train.epochs_dense (and the other phases)")
    if (run_dir / "checkpoint.pt").exists() and not resume:
        raise KwsError(f"{run_dir} already holds a run: pass --resume to continue it, or "
                       "choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(run_dir / "config.yaml", "w") as f:
        yaml.safe_dump(json.loads(json.dumps(config_to_dict(config))), f, sort_keys=False)
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and deterministic
    data = TrainingData(config, resolve_data(config))
    if data.bad:
        progress(f"skipped {len(data.bad)} unreadable audio file(s); the first: {data.bad[0][1]}")
    for w in data.warnings:
        progress(f"warning: {w}")
    trainer = Trainer(config, run_dir, data)
    if resume and trainer.resume():
        progress(f"resumed {run_dir} at epoch {trainer.epoch}")
    best = trainer.fit(progress)
    trainer.model.to("cpu")      # shipping and evaluation run on the CPU
    trainer.model.load_state_dict(best["model"])
    if best["exponents"] is not None:
        trainer.model.exponents = best["exponents"]
    with atomic_path(run_dir / "best.pt") as tmp:
        torch.save({"model": best["model"], "exponents": best["exponents"],
                    "row": best["row"]}, tmp)
    return {"best": best["row"], "run_dir": run_dir, "data": data, "model": trainer.model,
            "history": trainer.history}


def replace(config: Config, **sections) -> Config:
    """config with some fields of some sections replaced: replace(c, train={"seed": 1})."""
    return dataclasses.replace(config, **{
        k: dataclasses.replace(getattr(config, k), **v) for k, v in sections.items()})
