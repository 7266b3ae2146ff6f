import shutil

import pytest

from kws.config import DataConfig
from kws.dataset import (KEYWORDS, SILENCE, SPLITS, TASKS, UNKNOWN, format_stats, load_dataset,
                         speaker_of, speakers_by_split, which_set)
from kws.errors import KwsError


# Golden values: TensorFlow's which_set percentage for these names, computed by hand once
# (sha1 -> int % 2**27 * 100 / (2**27 - 1)).
GOLDEN_PCT = {"0a7c2a8d": 56.84, "c1d39ce8": 39.80, "1b4c9b89": 12.19, "eccbc87e": 16.24,
              "cfcd2084": 5.74, "6512bd43": 3.74}


def test_which_set_matches_tensorflow_rule():
    for name, pct in GOLDEN_PCT.items():
        want = "validation" if pct < 10 else "testing" if pct < 20 else "training"
        assert which_set(name) == want
    assert which_set("eccbc87e", val_pct=20) == "validation"  # 16.24 < 20
    assert which_set("0a7c2a8d", val_pct=40, test_pct=20) == "testing"  # 40 <= 56.84 < 60


def test_speaker_names():
    from pathlib import Path
    assert speaker_of(Path("yes/0a7c2a8d_nohash_3.wav")) == ("0a7c2a8d", None)
    assert speaker_of(Path("_unknown_/backward_0a7c2a8d_nohash_0.wav"), True) == \
        ("0a7c2a8d", "backward")


def test_list_files_decide_the_split(sc_mini):
    ds = load_dataset(sc_mini, DataConfig(unknown_pct=None, silence_pct=0))
    listed = {}
    for split, f in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        listed.update(dict.fromkeys((sc_mini / f).read_text().split(), split))
    for c in ds.clips:
        rel = f"{c.path.parent.name}/{c.path.name}"
        assert c.split == listed.get(rel, "training")
    assert "list files" in ds.split_source


def test_v2_12_classes_and_unknown_and_silence_crops(sc_mini):
    ds = load_dataset(sc_mini, DataConfig(unknown_pct=None, silence_pct=10))
    assert ds.task.classes == KEYWORDS + (SILENCE, UNKNOWN)
    words = {c.word for c in ds.clips}
    assert {"bed", "zero"} <= words  # non-keywords kept, labelled unknown
    assert set(ds.labels([c for c in ds.clips if c.word == "bed"])) == {11}
    crops = [c for c in ds.clips if c.word == SILENCE]
    assert crops and all(c.path.parent.name == "_background_noise_" for c in crops)
    # crops of each recording come from split-disjoint stretches of it
    for path in {c.path for c in crops}:
        spans = {s: [c.offset for c in crops if c.path == path and c.split == s] for s in SPLITS}
        if spans["training"] and spans["testing"]:
            assert max(spans["training"]) + 16000 <= min(spans["testing"])


def test_unknown_is_limited_per_split(sc_mini):
    ds = load_dataset(sc_mini, DataConfig(unknown_pct=10))
    for split in SPLITS:
        n_kw = sum(c.split == split and c.word in KEYWORDS for c in ds.clips)
        n_unk = sum(c.split == split and ds.task.label(c.word) == 11 for c in ds.clips)
        assert n_unk <= -(-n_kw * 10 // 100)


def test_35_word_task_drops_silence(sc_mini):
    ds = load_dataset(sc_mini, DataConfig(task="35"))
    assert len(ds.task.classes) == 35
    assert all(c.word != SILENCE for c in ds.clips)
    assert {c.word for c in ds.clips} == set(KEYWORDS) | {"bed", "zero"}


def make_test_set_layout(sc_mini, tmp_path):
    """The published test-set layout: keywords, _silence_/, _unknown_/<word>_<spk>_nohash_k."""
    root = tmp_path / "test_set"
    for w in KEYWORDS:
        shutil.copytree(sc_mini / w, root / w)
    (root / UNKNOWN).mkdir()
    for w in ("bed", "zero"):
        for f in (sc_mini / w).glob("*.wav"):
            shutil.copy(f, root / UNKNOWN / f"{w}_{f.name}")
    (root / SILENCE).mkdir()
    for i, f in enumerate((sc_mini / "yes").glob("*.wav")):
        shutil.copy(f, root / SILENCE / f"{1000 + i}.wav")
    return root


def test_test_set_layout_official_is_all_testing(sc_mini, tmp_path):
    root = make_test_set_layout(sc_mini, tmp_path)
    ds = load_dataset(root, DataConfig(split="official", unknown_pct=None))
    assert {c.split for c in ds.clips} == {"testing"}
    unk = [c for c in ds.clips if c.path.parent.name == UNKNOWN]
    assert {c.word for c in unk} == {"bed", "zero"}
    assert len([c for c in ds.clips if c.word == SILENCE]) == 3


def test_speakers_split_never_crosses_and_auto_uses_it_for_test_layout(sc_mini, tmp_path):
    root = make_test_set_layout(sc_mini, tmp_path)
    ds = load_dataset(root, DataConfig(val_pct=30, test_pct=30, unknown_pct=None))
    assert ds.split_source.startswith("speakers")
    by_split = speakers_by_split(ds.clips)
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not by_split.get(a, set()) & by_split.get(b, set())
    assert len(by_split) == 3


def test_stats_table(sc_mini):
    stats = load_dataset(sc_mini).stats()
    text = format_stats(stats)
    for cls in TASKS["v2-12"].classes:
        assert cls in text
    assert sum(stats["clips"].values()) == sum(sum(r.values()) for r in stats["counts"].values())


def test_missing_or_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(KwsError, match="no data folder"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KwsError, match="not a Speech Commands layout"):
        load_dataset(tmp_path / "empty")
