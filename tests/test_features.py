import librosa
import numpy as np
import pytest

from kws.data.audio import load_audio
from kws.config import FeatureConfig
from kws.frontend.features import (BATCH_TOLERANCE, clip_features, features_batch, hann,
                                  mel_matrix, norm_stats, pcen, pcen_smoothing)

CFG = FeatureConfig()


@pytest.fixture(scope="module")
def clips():
    """Real speech, noise, silence, a quiet tone and a full-scale square wave."""
    from tests.conftest import SC_MINI
    real = [load_audio(p) for p in sorted(SC_MINI.glob("*/*.wav"))[:24]]
    t = np.arange(16000) / 16000
    extra = [np.zeros(16000), 1e-4 * np.sin(2 * np.pi * 300 * t), np.sign(np.sin(2 * np.pi * 50 * t)),
             np.random.default_rng(0).uniform(-1, 1, 16000)]
    return np.stack(real + extra).astype(np.float32)


def test_shape_and_dtype():
    f = clip_features(np.zeros(16000, np.float32))
    assert f.shape == (98, 32) and f.dtype == np.float32
    assert np.all(f == np.float32(np.log(CFG.log_floor)))  # silence sits on the floor


def test_mel_matrix_equals_librosa_htk_without_norm():
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=32, fmin=CFG.fmin, fmax=CFG.fmax,
                              htk=True, norm=None)
    np.testing.assert_allclose(mel_matrix(CFG), ref, atol=1e-6)


def test_periodic_hann_equals_scipy_fftbins():
    from scipy.signal import get_window
    np.testing.assert_allclose(hann(400), get_window("hann", 400, fftbins=True), atol=1e-12)


def test_reference_equals_librosa_melspectrogram(clips):
    # librosa frames n_fft samples with the window centred: pad by the same margin
    margin = (CFG.n_fft - CFG.win_length) // 2
    for audio in clips[:6]:
        mel = librosa.feature.melspectrogram(
            y=np.pad(audio, margin), sr=16000, n_fft=512, hop_length=160, win_length=400,
            window="hann", center=False, power=2.0, n_mels=32, fmin=CFG.fmin, fmax=CFG.fmax,
            htk=True, norm=None)
        ref = np.log(np.maximum(mel, CFG.log_floor)).T
        np.testing.assert_allclose(clip_features(audio), ref, atol=1e-4)


def test_batched_torch_path_within_stated_tolerance(clips):
    ref = np.stack([clip_features(a) for a in clips])
    fast = features_batch(clips, batch_size=7)  # several batches, a ragged last one
    assert fast.shape == ref.shape
    assert np.abs(fast - ref).max() <= BATCH_TOLERANCE


def test_reference_frames_are_independent_windows():
    """Frame t only sees samples [t*hop, t*hop + win): change one sample, count frames."""
    a = np.zeros(16000, np.float32)
    b = a.copy()
    b[5000] = 0.5
    changed = np.any(clip_features(a) != clip_features(b), axis=1).nonzero()[0]
    expect = [t for t in range(98) if t * 160 <= 5000 < t * 160 + 400]
    assert list(changed) == expect


def test_norm_stats_are_per_bin():
    f = np.random.default_rng(1).normal(3.0, 2.0, (50, 98, 32)).astype(np.float32)
    f[..., 0] += 10
    mean, std = norm_stats(f)
    assert mean.shape == std.shape == (32,)
    assert abs(mean[0] - 13) < 0.1 and abs(mean[1] - 3) < 0.1 and abs(std[5] - 2) < 0.1


PCEN = FeatureConfig(frontend="pcen")


def test_pcen_batched_path_within_stated_tolerance(clips):
    ref = np.stack([clip_features(a, PCEN) for a in clips])
    fast = features_batch(clips, PCEN, batch_size=7)
    assert fast.shape == ref.shape and np.isfinite(ref).all()
    assert np.abs(fast - ref).max() <= BATCH_TOLERANCE
    assert not np.allclose(ref, np.stack([clip_features(a) for a in clips]), atol=0.1)


def test_pcen_of_a_steady_power_is_its_fixed_point():
    """A constant power E keeps the smoother at E: every frame is (E/(eps+E)^a + d)^r - d^r."""
    e = np.full((20, 3), 0.5)
    out, state = pcen(e, PCEN)
    want = (0.5 / (PCEN.pcen_eps + 0.5) ** PCEN.pcen_gain + PCEN.pcen_bias) ** PCEN.pcen_power \
        - PCEN.pcen_bias ** PCEN.pcen_power
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_allclose(state, 0.5)


def test_pcen_smoother_follows_a_step_at_the_time_constant():
    """After a step the smoothed power closes (1 - s) of its gap per frame, and s matches
    librosa's rule for the same time constant."""
    s = pcen_smoothing(PCEN)
    t = PCEN.pcen_time_s * PCEN.sample_rate / PCEN.hop_length
    assert s == pytest.approx((np.sqrt(1 + 4 * t * t) - 1) / (2 * t * t))
    power = np.concatenate([np.full((1, 1), 1.0), np.full((10, 1), 2.0)])
    _, m = pcen(power, PCEN)
    assert m[0] == pytest.approx(2.0 - (1 - s) ** 10)


def test_pcen_carries_its_state_between_calls(clips):
    windows = np.stack([clips[0][i * 160:i * 160 + 400] for i in range(98)])
    from kws.frontend.features import frame_features
    whole, _ = frame_features(windows, PCEN)
    first, state = frame_features(windows[:40], PCEN)
    rest, _ = frame_features(windows[40:], PCEN, state)
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)
    fresh, _ = frame_features(windows[40:], PCEN)       # a new stream starts over
    assert not np.array_equal(fresh, rest)


def test_pcen_dulls_a_gain_change_that_log_mel_passes_on(clips):
    """20 dB louder speech: log-mel moves by about its own spread in every audible bin; PCEN,
    which divides by the smoothed power, by a fifth of that or less (relative to its spread)."""
    for speech in clips[2:6].astype(np.float64):          # after the two noise recordings
        def moved(cfg):
            quiet = clip_features(speech, cfg)
            return np.abs(clip_features(10 * speech, cfg) - quiet).mean() / quiet.std()
        assert moved(PCEN) < 0.2 * moved(CFG)


def test_frontend_is_checked_and_log_mel_keys_ignore_pcen_fields():
    from kws.errors import KwsError
    with pytest.raises(KwsError, match="frontend"):
        FeatureConfig(frontend="mfcc")
    with pytest.raises(KwsError, match="pcen"):
        FeatureConfig(frontend="pcen", pcen_power=0.0)
    assert FeatureConfig(pcen_bias=5.0).digest() == FeatureConfig().digest()
    assert PCEN.digest() != FeatureConfig().digest()
    assert FeatureConfig(frontend="pcen", pcen_bias=5.0).digest() != PCEN.digest()
