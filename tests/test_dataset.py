import shutil
from pathlib import Path

import pytest

from kws.config import DataConfig
from kws.data.dataset import (KEYWORDS, SILENCE, SPLITS, TASKS, UNKNOWN, format_stats, load_dataset,
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


def _as_flac_folder(sc_mini, tmp_path, words=("yes", "no", "bed")):
    """A second folder in the full-archive layout, FLAC, with the same speakers renamed."""
    import soundfile as sf

    root = tmp_path / "extra"
    for w in words:
        (root / w).mkdir(parents=True)
        for f in sorted((sc_mini / w).glob("*.wav")):
            data, rate = sf.read(f, dtype="int16")
            sf.write(root / w / f"x{f.stem}.flac", data, rate, format="FLAC")
    return root


def test_several_folders_one_split_flac_read(sc_mini, tmp_path):
    from kws.data.audio import load_audio

    extra = _as_flac_folder(sc_mini, tmp_path)
    ds = load_dataset([sc_mini, extra], DataConfig(split="speakers", unknown_pct=None,
                                                   silence_pct=0))
    flac = [c for c in ds.clips if c.path.suffix == ".flac"]
    assert flac and len(ds.from_root(ds.clips, extra)) == len(flac)
    assert len(ds.from_root(ds.clips, sc_mini)) == len(ds.clips) - len(flac)
    assert load_audio(flac[0].path).shape == (16000,)
    # a speaker never crosses splits, across folders too
    seen = {}
    for c in ds.clips:
        assert seen.setdefault(c.speaker, c.split) == c.split
    alone = load_dataset(sc_mini, DataConfig(split="speakers", unknown_pct=None, silence_pct=0))
    assert {(c.path, c.split) for c in alone.clips} <= {(c.path, c.split) for c in ds.clips}


def test_folds_are_speaker_disjoint_deterministic_and_cover_every_speaker(tmp_path):
    import numpy as np
    import soundfile as sf

    root = tmp_path / "many"
    for w in ("yes", "no"):
        (root / w).mkdir(parents=True)
        for k in range(60):
            sf.write(root / w / f"{k:08x}_nohash_0.wav", np.zeros(1600, np.int16), 16000)
    base = DataConfig(split="speakers", val_pct=10, test_pct=20, unknown_pct=None)
    held_out = {c.speaker for c in load_dataset(root, base).split("testing")}
    scored = []
    for fold in range(5):
        cfg = DataConfig(**{**base.__dict__, "folds": 5, "fold": fold})
        ds, again = load_dataset(root, cfg), load_dataset(root, cfg)
        assert [(c.path, c.split) for c in ds.clips] == [(c.path, c.split) for c in again.clips]
        by_split = speakers_by_split(ds.clips)
        assert not by_split["testing"] & (by_split.get("training", set())
                                          | by_split.get("validation", set()))
        assert not by_split["testing"] & held_out          # the final test is never touched
        scored.append(by_split["testing"])
    assert sum(len(s) for s in scored) == len(set().union(*scored)) == 60 - len(held_out)
    with pytest.raises(KwsError, match="data.folds"):
        DataConfig(folds=5, fold=5)


def test_find_data_order(tmp_path, monkeypatch):
    from kws.data import dataset as dsmod
    from kws.data.dataset import find_data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dsmod, "DEV_CLIPS", str(tmp_path / "dev"))
    with pytest.raises(KwsError, match="kws data download"):
        find_data()
    (tmp_path / "synth").mkdir()
    assert find_data(fallback="synth") == [Path("synth")]
    (tmp_path / "dev").mkdir()
    assert find_data(fallback="synth") == [tmp_path / "dev"]
    archive = tmp_path / "data" / "speech_commands_v0.02"
    archive.mkdir(parents=True)
    assert find_data() == [tmp_path / "dev"]            # not complete: no marker yet
    (archive / ".kws-complete").touch()
    assert find_data() == [Path("data/speech_commands_v0.02")]
    assert find_data(configured=["dev", "synth"]) == [Path("dev"), Path("synth")]
    assert find_data(configured=["dev", "nope"]) == [Path("data/speech_commands_v0.02")]
    assert find_data(given=[Path("synth")]) == [Path("synth")]
    with pytest.raises(KwsError, match="no data folder at nope"):
        find_data(given=[Path("nope")])
