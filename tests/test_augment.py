"""Training augmentations: shapes kept, seeded, class weights, and never at evaluation."""

import collections

import numpy as np
import pytest
import soundfile as sf
import torch

from kws.config import Config, ModelConfig, TrainConfig
from kws.errors import KwsError
from kws.training.train import (Augmenter, Trainer, TrainingData, reverberate, sampling_probs,
                                speed_perturb)


def config(sc_mini, tmp_path, **train):
    rir_dir = tmp_path / "rirs"
    rir_dir.mkdir(exist_ok=True)
    h = np.zeros(4000, np.float32)
    h[0], h[800], h[2400] = 1.0, 0.5, 0.25          # a direct sound and two echoes
    sf.write(rir_dir / "room.flac", np.pad(h, (100, 0)), 16000)
    t = dict(data=str(sc_mini), fallback_data="", batch_size=8, epochs_dense=1,
             epochs_sparsify=0, epochs_sparse=0, epochs_quant=0, speed=(0.85, 1.15),
             rir_prob=1.0, rir_dirs=(str(rir_dir),), class_balance=1.0)
    t.update(train)
    return Config(model=ModelConfig(hidden=8, rank_w=3, rank_u=2), train=TrainConfig(**t))


def test_speed_and_reverb_keep_shape_and_dtype(rng):
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    assert np.array_equal(speed_perturb(x, 1.0), x)
    fast, slow = speed_perturb(x, 1.15), speed_perturb(x, 0.85)
    assert fast.shape == slow.shape == x.shape and fast.dtype == np.float32
    assert np.count_nonzero(fast[:1000]) == 0 < np.count_nonzero(slow[:1000])  # shorter clip
    h = np.zeros(500)
    h[0], h[300] = 1.0, 0.5
    wet = reverberate(x, h)
    assert wet.shape == x.shape and wet.dtype == np.float32
    assert np.isclose(np.abs(wet).max(), np.abs(x).max(), rtol=1e-5)
    dry = x / np.abs(x).max()
    assert np.allclose(wet[300:] / np.abs(wet).max(),
                       (dry[300:] + 0.5 * dry[:-300]) / np.abs(dry + np.pad(dry, (300, 0))[:16000]
                                                           * 0.5).max(), atol=1e-5)


def test_augmenter_is_seeded_and_evaluation_is_clean(sc_mini, tmp_path):
    cfg = config(sc_mini, tmp_path)
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert len(data.rirs) == 1 and data.rirs[0][0] == pytest.approx(1 / np.sqrt(1.3125), rel=1e-4)
    aug = Augmenter(data, cfg)
    idx = np.arange(6)
    a = aug(idx, np.random.default_rng(5))
    b = aug(idx, np.random.default_rng(5))
    c = aug(idx, np.random.default_rng(6))
    assert a.shape == (6, cfg.features.n_frames, cfg.features.n_mels)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the validation features are the clean clips', normalised: no augmentation there
    from kws.frontend.cache import compute_features
    clean = compute_features(data.dataset.clips, data.dataset.root, cfg.features,
                             tmp_path / "cache", skip_bad=True)
    split = np.array([cl.split for cl in clean.clips])
    x_val, _ = data.eval_sets["validation"]
    assert np.array_equal(x_val, data.normalise(clean.features[split == "validation"]))


def test_class_weights_balance_the_classes(sc_mini, tmp_path):
    cfg = config(sc_mini, tmp_path)
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    w = data.class_weights(1.0).numpy()
    counts = np.bincount(data.labels, minlength=len(w))
    present = counts > 0
    assert np.allclose((w * counts)[present], (w * counts)[present][0])  # each class the same
    assert np.isclose((w * counts).sum(), counts.sum())                  # mean weight 1
    assert np.allclose(data.class_weights(0.0).numpy()[present], 1.0)
    trainer = Trainer(cfg, tmp_path / "run", data)
    assert torch.equal(trainer.class_weights, data.class_weights(1.0))


def test_balanced_epochs_weigh_classes_and_words_alike():
    # class 0: one word over-supplied (as the extra folder's bed/cat/happy in unknown) and a
    # rare one; class 1: one word; class 2: a small class
    labels = np.array([0] * 10 + [1] * 6 + [2] * 2)
    words = np.array(["bed"] * 9 + ["tree"] + ["yes"] * 6 + ["off"] * 2, dtype=object)
    plain, half, equal = (sampling_probs(labels, words, b) for b in (0.0, 0.5, 1.0))
    assert np.allclose(plain, 1 / len(labels))                  # b = 0: the plain epoch
    assert np.allclose([equal[labels == c].sum() for c in range(3)], 1 / 3)  # b = 1: classes
    assert np.isclose(equal[words == "tree"].sum(), equal[words == "bed"].sum())  # and words
    assert np.isclose(equal[words == "tree"].sum(), 1 / 6)
    assert np.allclose(equal[words == "bed"], equal[words == "bed"][0])  # evenly in a word
    tree = words == "tree"
    assert plain[tree].sum() < half[tree].sum() < equal[tree].sum()
    for p in (plain, half, equal):
        assert np.isclose(p.sum(), 1.0) and (p > 0).all()
    with pytest.raises(KwsError, match="sample_balance"):
        TrainConfig(sample_balance=1.5)
    # a share: class 0 (the other words) weighs twice a class, its words still alike
    twice = sampling_probs(labels, words, 1.0, {0: 2.0})
    assert np.isclose(twice[labels == 0].sum(), 2 / 4) and np.isclose(twice[labels == 2].sum(), 1 / 4)
    assert np.isclose(twice[words == "tree"].sum(), twice[words == "bed"].sum())
    with pytest.raises(KwsError, match="other_share"):
        TrainConfig(other_share=0)


def test_trainer_draws_balanced_epochs(sc_mini, tmp_path):
    cfg = config(sc_mini, tmp_path, sample_balance=1.0, class_balance=0.0)
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert len(data.words) == len(data.labels)
    trainer = Trainer(cfg, tmp_path / "run", data)
    assert np.array_equal(trainer.sampling, sampling_probs(data.labels, data.words, 1.0))
    assert Trainer(config(sc_mini, tmp_path), tmp_path / "run2", data).sampling is None
    unknown = data.dataset.task.classes.index("_unknown_")
    shared = Trainer(config(sc_mini, tmp_path, sample_balance=1.0, other_share=2.0),
                     tmp_path / "run3", data).sampling
    assert np.isclose(shared[data.labels == unknown].sum(),
                      2 * trainer.sampling[data.labels == unknown].sum()
                      / (1 + trainer.sampling[data.labels == unknown].sum()))
    again = Trainer(cfg, tmp_path / "run", data)
    assert trainer.run_epoch()["loss"] == again.run_epoch()["loss"]  # seeded: the same epoch


def test_rir_settings_are_checked(tmp_path):
    with pytest.raises(KwsError, match="rir_dirs"):
        TrainConfig(rir_prob=0.5)
    with pytest.raises(KwsError, match="train.speed"):
        TrainConfig(speed=(1.2, 0.9))


def test_a_missing_augmentation_folder_is_a_warning(sc_mini, tmp_path):
    cfg = config(sc_mini, tmp_path, rir_dirs=(str(tmp_path / "gone"),),
                 noise_dirs=(str(tmp_path / "also_gone"),))
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert data.rirs == [] and len(data.warnings) == 2
    assert all("training without it" in w for w in data.warnings)


def test_negative_crops_are_unknown_seeded_and_from_the_training_side(sc_mini, tmp_path):
    from kws.data.dataset import negative_side

    neg = tmp_path / "neg"
    neg.mkdir()
    rng = np.random.default_rng(1)
    for spk in range(12):   # LibriSpeech-style names: the speaker is the first number
        sf.write(neg / f"{100 + spk}-7-0000.flac",
                 (rng.standard_normal(24000) * 0.1).astype(np.float32), 16000)
    sides = {f.name: negative_side(f) for f in neg.iterdir()}
    assert set(sides.values()) == {"training", "heldout"}
    assert negative_side(neg / "105-9-0001.flac") == sides["105-7-0000.flac"]  # by speaker
    cfg = config(sc_mini, tmp_path, negative_dirs=(str(neg),), negative_clips=20,
                 rir_prob=0.0, speed=(1.0, 1.0))
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    again = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert np.array_equal(data.audio, again.audio)
    crops, labels = data.audio[-20:], data.labels[-20:]
    assert (labels == data.dataset.task.classes.index("_unknown_")).all()
    assert len(data.labels) == len(data.audio)
    heldout = [sf.read(f, dtype="int16")[0] for f in sorted(neg.iterdir())
               if sides[f.name] == "heldout"]
    for c in crops:           # every crop is a stretch of a training-side recording
        assert not any(c.tobytes() in h.tobytes() for h in heldout)
    # in drawn epochs the crops take `negative_share` of `_unknown_`, its words the rest
    unknown = data.labels == data.dataset.task.classes.index("_unknown_")
    p = data.sampling_probs(1.0, 2.0, 0.25)
    plain = data.sampling_probs(1.0, 2.0)
    assert np.isclose(p[-20:].sum(), 0.25 * p[unknown].sum())
    assert np.isclose(p[unknown].sum(), plain[unknown].sum())   # the class keeps its mass
    assert np.allclose(p[~unknown], plain[~unknown]) and np.isclose(p.sum(), 1.0)
    with pytest.raises(KwsError, match="negative_share"):
        TrainConfig(negative_share=1.0)
    with pytest.raises(KwsError, match="negative_dirs"):
        TrainConfig(negative_clips=5)


def test_mixup_blends_pairs_keeps_shapes_is_seeded_and_is_off_at_zero():
    from kws.training.train import mixup

    x = torch.randn(6, 49, 32)
    y = torch.arange(6)
    same = mixup(x, y, 0.0, np.random.default_rng(0))
    assert same[0] is x and same[1] is y and same[2] == 1.0         # off: the batch itself
    xm, ym, lam = mixup(x, y, 0.4, np.random.default_rng(3))
    xm2, ym2, lam2 = mixup(x, y, 0.4, np.random.default_rng(3))
    assert xm.shape == x.shape and torch.equal(xm, xm2) and torch.equal(ym, ym2) and lam == lam2
    assert 0 < lam < 1 and sorted(ym.tolist()) == list(range(6))  # partners: a permutation
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[ym])   # each row with its partner
    assert mixup(x[:1], y[:1], 0.4, np.random.default_rng(0))[2] == 1.0   # nobody to mix with


def test_mixup_trains_and_a_negative_alpha_is_refused(sc_mini, tmp_path):
    """A run with mixup trains to finite losses (mixup lives in the training step only)."""
    from kws.training.train import train

    cfg = config(sc_mini, tmp_path, mixup_alpha=0.4, speed=(1.0, 1.0), rir_prob=0.0,
                 rir_dirs=())
    run = train(cfg, tmp_path / "run", progress=lambda *_: None)
    assert np.isfinite(run["history"][-1]["loss"])
    with pytest.raises(KwsError, match="mixup_alpha"):
        TrainConfig(mixup_alpha=-1.0)


def test_a_word_prior_shares_out_a_class_by_its_weights():
    labels = np.array([0] * 10 + [1] * 6)
    words = np.array(["bed"] * 6 + ["nine"] * 2 + ["crops"] * 2 + ["yes"] * 6, dtype=object)
    # nine three times as common as bed in the reference; the crops are not in it
    p = sampling_probs(labels, words, 1.0, None, {"bed": 1.0, "nine": 3.0, "yes": 5.0})
    assert np.isclose(p[labels == 0].sum(), 0.5) and np.isclose(p[labels == 1].sum(), 0.5)
    assert np.isclose(p[words == "crops"].sum(), 0.5 / 3)          # keeps its equal share
    assert np.isclose(p[words == "nine"].sum(), 3 * p[words == "bed"].sum())
    assert np.isclose(p[words == "nine"].sum() + p[words == "bed"].sum(), 0.5 * 2 / 3)
    assert np.allclose(p[words == "nine"], p[words == "nine"][0])  # evenly within a word
    assert np.array_equal(sampling_probs(labels, words, 1.0, None, {}),
                          sampling_probs(labels, words, 1.0))
    with pytest.raises(KwsError, match="word_prior"):
        TrainConfig(word_prior="uniform")


def test_the_first_folder_prior_counts_its_training_clips(sc_mini, tmp_path):
    cfg = config(sc_mini, tmp_path, sample_balance=1.0, word_prior="first_folder")
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    train_words = [c.word for c in data.dataset.split("training")]
    assert data.first_folder_words == collections.Counter(train_words)
    trainer = Trainer(cfg, tmp_path / "run", data)
    assert np.array_equal(trainer.sampling, sampling_probs(data.labels, data.words, 1.0, {},
                                                           dict(data.first_folder_words)))
