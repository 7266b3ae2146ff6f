import os

import numpy as np
import pytest

from kws.data.audio import BadAudio
from kws.frontend.cache import compute_features
from kws.config import DataConfig, FeatureConfig
from kws.data.dataset import load_dataset
from kws.frontend.features import clip_features
from kws.data.audio import load_audio


def dataset(root):
    return load_dataset(root, DataConfig(unknown_pct=None))


def test_features_are_cached_and_reread(sc_mini, tmp_path):
    ds = dataset(sc_mini)
    first = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path / "cache", progress=False)
    assert not first.from_cache and first.cache_file.exists()
    again = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path / "cache", progress=False)
    assert again.from_cache and again.cache_file == first.cache_file
    np.testing.assert_array_equal(first.features, again.features)
    assert again.clips == first.clips
    c = first.clips[3]
    ref = clip_features(load_audio(c.path, offset=c.offset))
    assert np.abs(first.features[3] - ref).max() < 2e-3
    assert not list((tmp_path / "cache").glob("*.tmp"))  # nothing half-written left behind


def test_key_changes_with_config_and_file_list(sc_mini, tmp_path):
    ds = dataset(sc_mini)
    base = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    other_cfg = compute_features(ds.clips, ds.root, FeatureConfig(n_mels=20), tmp_path,
                                 progress=False)
    assert other_cfg.cache_file != base.cache_file and other_cfg.features.shape[-1] == 20
    fewer = compute_features(ds.clips[1:], ds.root, FeatureConfig(), tmp_path, progress=False)
    assert fewer.cache_file != base.cache_file
    f = ds.clips[0].path
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # touched file
    touched = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    assert touched.cache_file != base.cache_file and not touched.from_cache


def test_log_mel_caches_from_before_pcen_are_still_read(sc_mini, tmp_path):
    """A log-mel cache written before the front end could be PCEN recorded only the log-mel
    fields; it is still the same key and still read. A PCEN config has its own key."""
    import json
    ds = dataset(sc_mini)
    base = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    with np.load(base.cache_file) as z:
        stored = json.loads(str(z["config"]))
    assert "frontend" not in stored and not any(k.startswith("pcen_") for k in stored)
    assert compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path,
                            progress=False).from_cache
    pcen = compute_features(ds.clips, ds.root, FeatureConfig(frontend="pcen"), tmp_path,
                            progress=False)
    assert pcen.cache_file != base.cache_file and not pcen.from_cache
    assert not np.allclose(pcen.features, base.features)


def test_bad_file_fails_or_is_skipped_and_counted(sc_mini, tmp_path):
    bad = sc_mini / "yes" / "deadbeef_nohash_0.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    ds = dataset(sc_mini)
    with pytest.raises(BadAudio, match="deadbeef_nohash_0.wav.*--skip-bad"):
        compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    assert not list(tmp_path.glob("features-*"))
    fs = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, skip_bad=True,
                          progress=False)
    assert len(fs.bad) == 1 and "deadbeef" in fs.bad[0][0]
    assert len(fs.clips) == len(ds.clips) - 1 == len(fs.features)
    again = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, skip_bad=True,
                             progress=False)
    assert again.from_cache and again.bad == fs.bad


def test_skip_bad_shares_the_cache_unless_a_file_was_skipped(sc_mini, tmp_path):
    ds = dataset(sc_mini)
    strict = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    lenient = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, skip_bad=True,
                               progress=False)
    assert lenient.from_cache and lenient.cache_file == strict.cache_file
    # a cache that had to skip a file still refuses a caller that may not skip
    bad = sc_mini / "yes" / "deadbeef_nohash_0.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    ds = dataset(sc_mini)
    skipped = compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, skip_bad=True,
                               progress=False)
    assert len(skipped.bad) == 1 and len(list(tmp_path.glob("features-*"))) == 2
    with pytest.raises(BadAudio, match="deadbeef_nohash_0.wav.*--skip-bad"):
        compute_features(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)


def test_training_audio_cache_is_exact_memory_mapped_and_checks_bad_files(sc_mini, tmp_path):
    from kws.frontend.cache import cached_audio, load_clip_audio, to_float

    ds = dataset(sc_mini)
    ref, ref_kept, _ = load_clip_audio(ds.clips, FeatureConfig(), progress=False)
    pcm, kept, bad = cached_audio(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    assert isinstance(pcm, np.memmap) and pcm.dtype == np.int16 and not bad
    assert kept == ref_kept and np.array_equal(to_float(pcm), ref)   # 16-bit audio: exact
    again, kept2, _ = cached_audio(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    assert kept2 == kept and np.array_equal(again, pcm)
    # a bad file: skipped and listed (and an error for a caller that may not skip)
    (sc_mini / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF....WAVEjunk")
    ds = dataset(sc_mini)
    pcm, kept, bad = cached_audio(ds.clips, ds.root, FeatureConfig(), tmp_path, progress=False)
    assert len(bad) == 1 and len(kept) == len(ds.clips) - 1 == len(pcm)
    with pytest.raises(BadAudio, match="deadbeef"):
        cached_audio(ds.clips, ds.root, FeatureConfig(), tmp_path, skip_bad=False,
                     progress=False)
    # a damaged cache file is read again, not used
    pcm = np.array(pcm)              # (the test damages the file in place, under the map)
    npy = next(p for p in tmp_path.glob("audio-*.npy") if p.stat().st_mtime_ns ==
               max(q.stat().st_mtime_ns for q in tmp_path.glob("audio-*.npy")))
    npy.write_bytes(b"garbage")
    fixed, kept3, _ = cached_audio(ds.clips, ds.root, FeatureConfig(), tmp_path,
                                   progress=False)
    assert kept3 == kept and np.array_equal(fixed, pcm)


def test_features_in_chunks_equal_one_batch(sc_mini, tmp_path, monkeypatch):
    from kws.frontend import cache
    from kws.frontend.cache import load_clip_audio
    from kws.frontend.features import features_batch

    ds = dataset(sc_mini)
    (sc_mini / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF....WAVEjunk")
    ds = dataset(sc_mini)
    monkeypatch.setattr(cache, "CHUNK", 5)
    fs = compute_features(ds.clips, ds.root, FeatureConfig(), None, skip_bad=True,
                          progress=False)
    audio, kept, bad = load_clip_audio(ds.clips, FeatureConfig(), skip_bad=True, progress=False)
    assert fs.clips == kept and len(fs.bad) == len(bad) == 1
    assert np.array_equal(fs.features, features_batch(audio, FeatureConfig()))
