"""`kws mine`: hard negatives from the training speakers of keyword-free audio."""

import json

import numpy as np
import pytest
import soundfile as sf

from kws.checks.mine import MANIFEST, mine
from kws.checks.streameval import negative_audio
from kws.frontend.cache import to_pcm
from kws.data.audio import load_audio
from kws.data.dataset import negative_split
from kws.quant.modelfile import load_model
from tests.conftest import SC_MINI

SR = 16000


@pytest.fixture
def negatives(tmp_path):
    """Keyword audio posing as keyword-free speech (so the model has something to score),
    under LibriSpeech-style names: 12 speakers, both sides of the split."""
    folder = tmp_path / "neg"
    folder.mkdir()
    words = [load_audio(f) for w in ("yes", "no", "left", "stop", "go")
             for f in sorted((SC_MINI / w).glob("*.wav"))]
    for spk in range(12):
        sf.write(folder / f"{400 + spk}-1-0000.flac", np.concatenate(words[spk::12])[:SR * 3], SR)
    return folder


def test_mined_windows_are_the_highest_scoring_non_overlapping_training_side_ones(
        negatives, tmp_path):
    model = load_model("models/default")
    doc = mine(model, [negatives], tmp_path / "m1", windows=8, min_score=0.05,
               progress=lambda s: None)
    clips = doc["clips"]
    assert 0 < len(clips) <= 8 and doc["side"] == "training"
    assert all(negative_split(c["source"]) == "training" for c in clips)
    assert any(negative_split(f) != "training" for f in negatives.iterdir())  # some left out
    scores = [c["score"] for c in clips]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.05
    audio, files, starts = negative_audio([negatives], SR, "training")
    for c in clips:           # the clip is that stretch of the recordings, one clip long
        got, rate = sf.read(tmp_path / "m1" / c["file"], dtype="int16")
        at = c["stream_sample"]
        assert rate == SR and np.array_equal(got, to_pcm(audio[at:at + SR]))
        k = files.index(next(f for f in files if str(f) == c["source"]))
        assert starts[k] <= at < (starts[k + 1] if k + 1 < len(files) else len(audio))
    by_source = {}
    for c in clips:
        by_source.setdefault(c["source"], []).append(c["start_s"])
    for starts in by_source.values():   # no two windows of one recording overlap
        starts.sort()
        assert all(b - a >= 1.0 for a, b in zip(starts, starts[1:]))


def test_mining_is_deterministic_and_a_finished_folder_is_kept(negatives, tmp_path):
    model = load_model("models/default")
    quiet = dict(progress=lambda s: None, min_score=0.05)
    a = mine(model, [negatives], tmp_path / "a", windows=5, **quiet)
    b = mine(model, [negatives], tmp_path / "b", windows=5, **quiet)
    assert [c["score"] for c in a["clips"]] == [c["score"] for c in b["clips"]]
    for c in a["clips"]:
        assert (tmp_path / "a" / c["file"]).read_bytes() == (tmp_path / "b" / c["file"]).read_bytes()
    stamp = (tmp_path / "a" / MANIFEST).stat().st_mtime_ns
    said = []
    again = mine(model, [negatives], tmp_path / "a", windows=5, min_score=0.05,
                 progress=said.append)
    assert again == json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert (tmp_path / "a" / MANIFEST).stat().st_mtime_ns == stamp and "already" in said[0]
    fewer = mine(model, [negatives], tmp_path / "a", windows=2, **quiet)   # other settings
    assert len(fewer["clips"]) == min(2, len(a["clips"]))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == \
        sorted([MANIFEST] + [c["file"] for c in fewer["clips"]])
    assert not (tmp_path / "a.partial").exists()


def test_training_reads_mined_clips_as_the_other_class(negatives, tmp_path, sc_mini):
    from kws.config import Config, ModelConfig, TrainConfig
    from kws.training.train import TrainingData

    mine(load_model("models/default"), [negatives], tmp_path / "m", windows=4, min_score=0.0,
         progress=lambda s: None)
    cfg = Config(model=ModelConfig(hidden=8, rank_w=3, rank_u=2),
                 train=TrainConfig(data=str(sc_mini), fallback_data="", batch_size=8,
                                   epochs_dense=1, epochs_quant=0,
                                   hard_negative_dirs=(str(tmp_path / "m"),)))
    plain = TrainingData(Config(model=cfg.model, train=TrainConfig(
        data=str(sc_mini), fallback_data="", batch_size=8)), sc_mini, tmp_path / "cache")
    data = TrainingData(cfg, sc_mini, tmp_path / "cache")
    assert len(data.audio) == len(plain.audio) + 4
    assert (data.labels[-4:] == data.dataset.task.classes.index("_unknown_")).all()
