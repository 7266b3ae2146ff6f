"""The synthetic corpus: layout, names, format, splits, determinism, idempotence."""

import hashlib
import json
import multiprocessing
import os
import re
import signal
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kws.data import espeak
from kws.data.dataset import which_set as split_of_speaker
from kws.errors import KwsError
from kws.data.synth import (BABBLE_SENTENCES, KEYWORDS, OTHER_WORDS, WORDS, synthesize_corpus,
                       word_counts)

N_CLIPS = 120
NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")


def which_set(filename):
    """The split of a file under TensorFlow's rule (tested against golden values elsewhere)."""
    return split_of_speaker(re.sub(r"_nohash_.*$", "", os.path.basename(filename)))


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def clips(root: Path) -> list[Path]:
    return sorted(p for w in WORDS for p in (root / w).iterdir())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, synthesize_corpus(out, N_CLIPS, seed=0, workers=2, progress=False)


def test_layout_and_file_names(corpus):
    out, summary = corpus
    assert sorted(p.name for p in out.iterdir()) == sorted([*WORDS, "_background_noise_",
                                                            "corpus.json"])
    for word in WORDS:
        names = [p.name for p in (out / word).iterdir()]
        assert names and all(NAME.match(n) for n in names), word
        assert len(names) == summary["clips_per_word"][word]
    assert sum(summary["clips_per_word"].values()) == N_CLIPS == len(clips(out))
    assert summary["clips_per_class"]["_unknown_"] == sum(
        summary["clips_per_word"][w] for w in OTHER_WORDS)
    noises = sorted((out / "_background_noise_").iterdir())
    assert len(noises) == 6
    for path in noises:
        audio, rate = soundfile.read(path)
        assert rate == 16000 and len(audio) == 60 * 16000 and np.std(audio) > 0.01


def test_clip_format_and_not_silent(corpus):
    out, _ = corpus
    for path in clips(out):
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == \
                (1, 2, 16000, 16000), path
            samples = np.frombuffer(w.readframes(16000), "<i2")
        assert np.abs(samples).max() > 300, path


def test_every_split_has_speakers(corpus):
    out, summary = corpus
    speakers = {p.name.split("_nohash_")[0] for p in clips(out)}
    per_split = {s: sum(which_set(name) == s for name in speakers)
                 for s in ("training", "validation", "testing")}
    assert per_split == summary["speakers_per_split"]
    assert all(n >= 1 for n in per_split.values())
    assert len(speakers) == summary["speakers"]
    per_split = {s: sum(which_set(p.name) == s for p in clips(out)) for s in per_split}
    assert per_split == summary["clips_per_split"]


def test_byte_identical_with_any_number_of_workers(corpus, tmp_path):
    out, summary = corpus
    again = synthesize_corpus(tmp_path, N_CLIPS, seed=0, workers=1, progress=False)
    assert again == summary
    assert digests(tmp_path) == digests(out)


def test_complete_corpus_is_not_rebuilt(corpus):
    out, summary = corpus
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    start = time.monotonic()
    assert synthesize_corpus(out, N_CLIPS, seed=0, progress=False) == summary
    assert time.monotonic() - start < 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_rebuild_replaces_old_files_and_uses_given_noise(tmp_path):
    out, noise_dir = tmp_path / "out", tmp_path / "noise"
    synthesize_corpus(out, 40, seed=1, progress=False)
    noise_dir.mkdir()
    for name, rate in (("hiss", 8000), ("fan", 44100)):
        stereo = np.random.default_rng(0).uniform(-0.3, 0.3, (2 * rate, 2))
        soundfile.write(noise_dir / f"{name}.wav", stereo, rate)
    summary = synthesize_corpus(out, 30, seed=2, noise_dir=noise_dir, progress=False)
    assert len(clips(out)) == 30
    assert sorted(p.name for p in (out / "_background_noise_").iterdir()) == ["fan.wav",
                                                                               "hiss.wav"]
    assert summary["background_noise"] == ["fan", "hiss"]


def test_refuses_a_foreign_directory_and_too_few_clips(tmp_path):
    (tmp_path / "mine.txt").write_text("not a corpus")
    with pytest.raises(KwsError, match="not empty"):
        synthesize_corpus(tmp_path, N_CLIPS, progress=False)
    with pytest.raises(KwsError, match="at least"):
        synthesize_corpus(tmp_path / "new", len(WORDS) - 1, progress=False)


@pytest.mark.parametrize("n", [30, 31, 120, 7000, 12345])
def test_word_counts(n):
    counts = word_counts(n)
    assert sum(counts.values()) == n and min(counts.values()) >= 1
    assert len({counts[w] for w in KEYWORDS}) <= 2  # keywords balanced within one clip


def test_babble_says_no_corpus_word():
    homophones = {"know", "won", "to", "too", "for", "write", "ate", "free"}
    for sentence in BABBLE_SENTENCES:
        assert not set(re.findall(r"[a-z]+", sentence)) & (set(WORDS) | homophones), sentence


def test_espeak_output_does_not_depend_on_earlier_calls():
    first = espeak.synthesize("yes", "en-us", "Reed", rate=150, pitch=40, pitch_range=80, seed=3)
    espeak.synthesize("sheila", "en-gb-scotland", "caleb", rate=200, seed=9)
    again = espeak.synthesize("yes", "en-us", "Reed", rate=150, pitch=40, pitch_range=80, seed=3)
    assert first.dtype == np.float32 and 0.1 < np.abs(first).max() <= 1
    assert 0.2 * 16000 < len(first) < 16000
    assert np.array_equal(first, again)
    with pytest.raises(KwsError):
        espeak.Talker("en", "Demonic")


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="workers see the monkeypatch only when forked")
def test_a_crashing_worker_raises_instead_of_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr("kws.data.synth.render_clip",
                        lambda *args: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(KwsError, match="worker died"):
        synthesize_corpus(tmp_path, len(WORDS), progress=False)
    manifest = json.loads((tmp_path / "corpus.json").read_text())
    assert manifest["complete"] is False
