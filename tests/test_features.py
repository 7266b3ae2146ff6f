import librosa
import numpy as np
import pytest

from kws.data.audio import load_audio
from kws.config import FeatureConfig
from kws.frontend.features import BATCH_TOLERANCE, hann, log_mel, log_mel_batch, mel_matrix, norm_stats

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
    f = log_mel(np.zeros(16000, np.float32))
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
        np.testing.assert_allclose(log_mel(audio), ref, atol=1e-4)


def test_batched_torch_path_within_stated_tolerance(clips):
    ref = np.stack([log_mel(a) for a in clips])
    fast = log_mel_batch(clips, batch_size=7)  # several batches, a ragged last one
    assert fast.shape == ref.shape
    assert np.abs(fast - ref).max() <= BATCH_TOLERANCE


def test_reference_frames_are_independent_windows():
    """Frame t only sees samples [t*hop, t*hop + win): change one sample, count frames."""
    a = np.zeros(16000, np.float32)
    b = a.copy()
    b[5000] = 0.5
    changed = np.any(log_mel(a) != log_mel(b), axis=1).nonzero()[0]
    expect = [t for t in range(98) if t * 160 <= 5000 < t * 160 + 400]
    assert list(changed) == expect


def test_norm_stats_are_per_bin():
    f = np.random.default_rng(1).normal(3.0, 2.0, (50, 98, 32)).astype(np.float32)
    f[..., 0] += 10
    mean, std = norm_stats(f)
    assert mean.shape == std.shape == (32,)
    assert abs(mean[0] - 13) < 0.1 and abs(mean[1] - 3) < 0.1 and abs(std[5] - 2) < 0.1
