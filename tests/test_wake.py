"""The wake-word task: one or more words against everything else (data.task: wake)."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from kws.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from kws.data.dataset import load_dataset, negative_side, negative_split
from kws.data.tasks import OTHER, TASKS, keyword_words, make_task, task_of_classes
from kws.errors import KwsError


def test_a_wake_task_labels_its_words_and_puts_everything_else_in_background():
    task = make_task("wake", ["stop"])
    assert task.classes == ("stop", OTHER) and keyword_words(task.classes) == ["stop"]
    assert task.label("stop") == 0
    for other in ("go", "marvin", "_silence_", "_unknown_"):   # keywords of v2-12 too
        assert task.label(other) == 1, other
    assert task.label("_background_noise_") is None             # recordings, not clips
    two = make_task("wake", ["marvin", "sheila"])
    assert two.classes == ("marvin", "sheila", OTHER) and two.label("sheila") == 1


def test_the_benchmark_tasks_label_as_before():
    v2 = TASKS["v2-12"]
    assert v2.label("_silence_") == 10 and v2.label("bed") == 11 and v2.label("go") == 9
    assert TASKS["35"].label("_silence_") is None and TASKS["35"].label("bed") is not None
    assert keyword_words(v2.classes) == list(v2.classes[:10])


@pytest.mark.parametrize("task, words, message", [
    ("wake", [], "needs data.keywords"),
    ("wake", ["stopp"], "stopp"),
    ("wake", ["stop", "stop"], "twice"),
    ("v2-12", ["stop"], "is for data.task: wake"),
    ("wakeword", [], "must be one of"),
])
def test_a_wrong_task_or_word_list_is_an_error_that_names_it(task, words, message):
    with pytest.raises(KwsError, match=message):
        DataConfig(task=task, keywords=tuple(words))


def test_a_model_file_s_classes_give_back_its_task():
    assert task_of_classes(TASKS["v2-12"].classes) is TASKS["v2-12"]
    assert task_of_classes(["go", OTHER]) == make_task("wake", ["go"])
    with pytest.raises(ValueError, match="not those of any task"):
        task_of_classes(["go", "no"])


def test_the_wake_config_file_is_read_strictly(tmp_path):
    cfg = load_config("configs/wake_stop.yaml")
    assert cfg.data.vocabulary().classes == ("stop", OTHER)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  task: wake\n  keywords: [stop, halt]\n")
    with pytest.raises(KwsError, match="halt"):
        load_config(bad)


def test_a_wake_data_set_has_the_word_and_a_background_of_every_other_clip(sc_mini):
    v2 = load_dataset(sc_mini, DataConfig(unknown_pct=None))
    wake = load_dataset(sc_mini, DataConfig(task="wake", keywords=("stop",), unknown_pct=None))
    assert wake.task.classes == ("stop", OTHER)
    labels = wake.labels(wake.clips)
    assert set(labels) == {0, 1}
    assert sum(1 for c in wake.clips if c.word == "stop") == int((labels == 0).sum())
    # the same clips as the 12-class task (silence crops included), only labelled otherwise
    assert sorted((str(c.path), c.offset) for c in wake.clips) == \
        sorted((str(c.path), c.offset) for c in v2.clips)
    assert any(c.word == "_silence_" for c in wake.clips)


def test_wake_training_data_labels_keyword_free_crops_as_background(sc_mini, tmp_path):
    from kws.training.train import TrainingData

    neg = tmp_path / "neg"
    neg.mkdir()
    rng = np.random.default_rng(2)
    for spk in range(8):
        sf.write(neg / f"{200 + spk}-1-0000.flac",
                 (rng.standard_normal(20000) * 0.1).astype(np.float32), 16000)
    cfg = Config(data=DataConfig(task="wake", keywords=("go",)),
                 model=ModelConfig(hidden=8, rank_w=3, rank_u=2),
                 train=TrainConfig(data=str(sc_mini), fallback_data="", batch_size=8,
                                   epochs_dense=1, epochs_quant=0, negative_dirs=(str(neg),),
                                   negative_clips=6))
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert (data.labels[-6:] == 1).all() and (data.labels == 0).any()


def test_negative_splits_halve_the_held_out_side_by_speaker(tmp_path):
    names = [f"{300 + s}-{c}-0000.flac" for s in range(60) for c in (1, 2)] + \
            [f"computer_{k}.flac" for k in range(60)]
    splits = {n: negative_split(tmp_path / n) for n in names}
    assert set(splits.values()) == {"training", "validation", "testing"}
    for n in names:   # held out = validation + testing, training unchanged
        assert (splits[n] == "training") == (negative_side(tmp_path / n) == "training")
    for s in range(60):   # one speaker, one split
        assert splits[f"{300 + s}-1-0000.flac"] == splits[f"{300 + s}-2-0000.flac"]
    counts = {v: list(splits.values()).count(v) for v in set(splits.values())}
    assert counts["validation"] > 20 and counts["testing"] > 20


# --- stream cuts: the window-labelling rule -------------------------------------------------

def _word_clip(n=16000, on=(6000, 10000)):
    clip = np.zeros(n, np.float32)
    clip[on[0]:on[1]] = np.sin(np.arange(on[1] - on[0]) * 0.3) * 0.5
    return clip


@pytest.mark.parametrize("offset, kept", [
    (0, 1.0),            # the clip itself: all of the word
    (-6000, 1.0),        # the word at the end of the window, whole
    (8000, 0.5),         # the window starts half-way through the word
    (-8000, 0.5),        # the window ends half-way through it
    (10000, 0.0),        # the word is over before the window starts
    (-16000, 0.0),       # the window is all of the neighbour before
])
def test_a_cut_window_keeps_the_fraction_of_the_voiced_span_it_holds(offset, kept):
    from kws.training.cuts import cut_window

    clip = _word_clip()
    before, after = np.full(16000, 0.01, np.float32), np.full(16000, -0.01, np.float32)
    window, got = cut_window(clip, before, after, offset, (6000, 10000))
    assert got == pytest.approx(kept)
    assert len(window) == 16000
    stream = np.concatenate([before, clip, after])
    assert np.array_equal(window, stream[16000 + offset:32000 + offset])


@pytest.mark.parametrize("kept, expected", [
    (1.0, 3), (0.9, 3), (0.89, -100), (0.5, -100), (0.49, 11), (0.0, 11)])
def test_the_labelling_rule_keyword_other_or_not_taught(kept, expected):
    from kws.training.cuts import cut_label

    assert cut_label(kept, 3, 11, (0.5, 0.9)) == expected


def test_drawn_offsets_cover_whole_partial_and_missing_words():
    from kws.training.cuts import cut_window, draw_offset

    rng = np.random.default_rng(0)
    clip = _word_clip()
    kept = [cut_window(clip, clip * 0, clip * 0, draw_offset((6000, 10000), 16000, rng),
                       (6000, 10000))[1] for _ in range(2000)]
    kept = np.array(kept)
    assert (kept == 1.0).mean() > 0.3 and ((kept > 0) & (kept < 1)).mean() > 0.3
    assert (kept < 0.1).mean() > 0.02


def test_a_stream_cut_batch_relabels_cut_keyword_clips(sc_mini, tmp_path):
    from kws.training.train import Augmenter, TrainingData

    cfg = Config(model=ModelConfig(hidden=8, rank_w=3, rank_u=2),
                 train=TrainConfig(data=str(sc_mini), fallback_data="", batch_size=8,
                                   epochs_dense=1, epochs_quant=0, cut_prob=1.0,
                                   noise_prob=0.0))
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    aug = Augmenter(data, cfg)
    idx = np.arange(len(data.labels))
    x, y = aug.batch(idx, np.random.default_rng(1))
    x2, y2 = aug.batch(idx, np.random.default_rng(1))
    assert torch_equal(x, x2) and np.array_equal(y, y2)          # seeded
    words = np.isin(data.labels, list(aug.words))
    assert np.array_equal(y[~words], data.labels[~words])        # only keywords are cut
    other = data.dataset.task.classes.index("_unknown_")
    changed = y[words] != data.labels[words]
    assert changed.any() and set(y[words][changed]) <= {other, -100}
    assert (y[words] == data.labels[words]).any()                # whole words keep theirs
    with pytest.raises(KwsError, match="cut_keep"):
        TrainConfig(cut_keep=(0.9, 0.5))


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_a_wake_model_trains_ships_and_listens_with_negatives_end_to_end(sc_mini, tmp_path,
                                                                          capsys):
    """kws train with --task wake --keywords, then kws eval --stream --negatives: the model
    has two classes, the stream's keywords are that word only, the threshold is chosen with
    the validation speakers of the keyword-free audio and stored."""
    import json

    from kws.cli import main
    from kws.data.audio import load_audio
    from tests.test_hostile import tiny_config_text

    rng = np.random.default_rng(3)                # a noise bed long enough for 10 % stretches
    sf.write(sc_mini / "_background_noise_" / "hum.flac",
             (rng.standard_normal(16000 * 30) * 0.02).astype(np.float32), 16000)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(sc_mini))
    model = tmp_path / "m"
    assert main(["train", "--config", str(cfg), "--task", "wake", "--keywords", "go",
                 "--run-dir", str(tmp_path / "run"), "--out", str(model)]) == 0
    doc = json.loads((model / "model.json").read_text())
    assert doc["classes"] == ["go", "_background_"]
    neg = tmp_path / "neg"
    neg.mkdir()
    words = [load_audio(f) for w in ("yes", "no", "left") for f in sorted((sc_mini / w).glob("*.wav"))]
    for spk in range(16):           # enough speakers for a validation and a testing quarter
        sf.write(neg / f"{500 + spk}-1-0000.flac", np.concatenate(words[spk % len(words):][:2]), 16000)
    capsys.readouterr()
    assert main(["eval", "--model", str(model), "--data", str(sc_mini), "--stream",
                 "--hours", "0.01", "--negatives", str(neg), "--out", str(tmp_path / "rep"),
                 "--instances", "1,2", "--smooth", "1,2", "--per-keyword",
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "keyword-free audio" in out and "testing speakers" in out
    settings = json.loads((model / "detector.json").read_text())
    assert "keyword-free audio" in settings["chosen_by"]
    assert "chosen on the validation speakers among" in out
    # one keyword: a threshold "per keyword" is the single threshold, and the simpler wins
    assert "per keyword" in out and "thresholds" not in settings
    assert settings["instances"] in (1, 2) and settings["smooth_windows"] in (1, 2)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["negatives"]["side"] == "testing"
    assert set(report["negatives"]["at_stored_threshold"]["per_keyword"]) == {"go"}
    # without --stream or --instances/--smooth: false accepts the way the model listens
    from kws.detect.detector import DetectorSettings, save_settings
    settings = dict(settings, instances=1, smooth_windows=3)     # not the defaults (2, 1)
    save_settings(model, DetectorSettings(threshold=settings["threshold"], instances=1,
                                          smooth_windows=3))
    assert main(["eval", "--model", str(model), "--data", str(sc_mini), "--negatives", str(neg),
                 "--out", str(tmp_path / "rep2"), "--json", str(tmp_path / "r2.json")]) == 0
    again = json.loads((tmp_path / "r2.json").read_text())["negatives"]
    assert (again["instances"], again["smooth"]) == (settings["instances"],
                                                     settings["smooth_windows"])
