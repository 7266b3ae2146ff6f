"""Keyword-free synthetic sentences: no keyword in the text, deterministic files, split by talker."""

import json

import numpy as np
import pytest
import soundfile as sf

from kws.data.dataset import negative_speaker, negative_split
from kws.data.sentences import FORBIDDEN, MANIFEST, make_sentences, sentence, words_of
from kws.data.tasks import WORDS_35
from kws.errors import KwsError


def test_sentences_never_say_a_speech_commands_word():
    rng = np.random.default_rng(0)
    texts = [sentence(rng) for _ in range(2000)]
    said = {w for t in texts for w in words_of(t)}
    assert not said & set(WORDS_35) and not said & FORBIDDEN
    assert {"two", "four", "no", "right"} <= FORBIDDEN    # and their homophones:
    assert {"to", "for", "know", "write"} <= FORBIDDEN
    assert len(set(texts)) > 1900                          # variety, not a handful of lines


def test_folder_is_deterministic_and_split_by_talker(tmp_path):
    a = make_sentences(tmp_path / "a", 0.5, seed=3, progress=lambda *_: None)
    b = make_sentences(tmp_path / "b", 0.5, seed=3, progress=lambda *_: None)
    files = sorted(p.name for p in a.glob("*.flac"))
    assert files == sorted(p.name for p in b.glob("*.flac")) and len(files) == 6
    for name in files:
        x, rate = sf.read(a / name, dtype="int16")
        assert rate == 16000 and x.ndim == 1 and len(x) > 15 * 16000
        assert np.array_equal(x, sf.read(b / name, dtype="int16")[0])
        assert np.abs(x).max() > 1000                     # speech, not silence
    talkers = {negative_speaker(a / n) for n in files}
    assert len(talkers) == 3 and all(t.startswith("sentences-") for t in talkers)
    for t in talkers:                                      # a talker's files stay together
        assert len({negative_split(a / n) for n in files if negative_speaker(a / n) == t}) == 1
    manifest = json.loads((a / MANIFEST).read_text())
    assert sorted(manifest["files"]) == files and manifest["seed"] == 3
    stamp = (a / files[0]).stat().st_mtime_ns
    make_sentences(a, 0.5, seed=3, progress=lambda *_: None)          # kept, not rewritten
    assert (a / files[0]).stat().st_mtime_ns == stamp
    with pytest.raises(KwsError, match="other sentences"):
        make_sentences(a, 0.5, seed=4, progress=lambda *_: None)
    c = make_sentences(tmp_path / "c", 0.5, seed=4, progress=lambda *_: None)
    assert sorted(p.name for p in c.glob("*.flac")) != files
