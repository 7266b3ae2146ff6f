"""Odd and bad audio: each case converts as documented or fails naming the file."""

import wave

import numpy as np
import pytest
import soundfile as sf

from kws.data.audio import BadAudio, load_audio

SR = 16000


def tone(n=SR, sr=SR, amp=0.5):
    return (amp * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)


def test_plain_16bit_round_trip(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, tone(), SR, subtype="PCM_16")
    x = load_audio(p)
    assert x.dtype == np.float32 and x.shape == (SR,)
    assert np.abs(x - tone()).max() < 1e-4


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1e-2), ("PCM_24", 1e-6), ("PCM_32", 1e-6),
                                         ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_sample_formats_are_scaled_to_unit_range(tmp_path, subtype, tol):
    p = tmp_path / "a.wav"
    sf.write(p, tone(), SR, subtype=subtype)
    assert np.abs(load_audio(p) - tone()).max() < tol


def test_stereo_is_averaged(tmp_path):
    p = tmp_path / "st.wav"
    left, right = tone(), np.zeros(SR, np.float32)
    sf.write(p, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled(tmp_path, rate):
    p = tmp_path / "r.wav"
    sf.write(p, tone(rate, rate), rate, subtype="FLOAT")
    x = load_audio(p)
    assert x.shape == (SR,)
    # the 440 Hz tone survives resampling: compare away from the edges
    np.testing.assert_allclose(x[1000:15000], tone()[1000:15000], atol=2e-2)


def test_short_clip_is_padded_at_the_end(tmp_path):
    p = tmp_path / "s.wav"
    sf.write(p, tone(5000), SR, subtype="FLOAT")
    x = load_audio(p)
    assert x.shape == (SR,)
    np.testing.assert_allclose(x[:5000], tone(5000), atol=1e-7)
    assert not x[5000:].any()


def test_long_clip_keeps_its_first_second(tmp_path):
    p = tmp_path / "l.wav"
    long = np.concatenate([tone(), np.full(SR, 0.25, np.float32)])
    sf.write(p, long, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), tone(), atol=1e-7)
    np.testing.assert_allclose(load_audio(p, offset=SR), np.full(SR, 0.25), atol=1e-7)


def test_wav_extensible_header_is_read(tmp_path):
    p = tmp_path / "ext.wav"
    sf.write(p, tone(), SR, subtype="PCM_16", format="WAVEX")
    assert np.abs(load_audio(p) - tone()).max() < 1e-4


def test_clipping_float_wav_is_clamped(tmp_path):
    p = tmp_path / "hot.wav"
    sf.write(p, 3 * tone(), SR, subtype="FLOAT")
    assert np.abs(load_audio(p)).max() <= 1.0


def _bad(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def _wav_bytes(tmp_path):
    p = tmp_path / "ok.wav"
    sf.write(p, tone(), SR, subtype="PCM_16")
    return p.read_bytes()


@pytest.mark.parametrize("case,expect", [
    ("empty", "empty file"),
    ("text", "not a WAV file"),
    ("truncated", "truncated WAV"),
    ("header-only", "WAV without a data chunk"),
    ("no-samples", "holds no samples"),
    ("nan", "NaN"),
    ("bad-fmt", "unreadable audio"),
])
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, case, expect):
    good = _wav_bytes(tmp_path)
    if case == "empty":
        p = _bad(tmp_path, "x.wav", b"")
    elif case == "text":
        p = _bad(tmp_path, "x.wav", b"this is not audio\n" * 50)
    elif case == "truncated":
        p = _bad(tmp_path, "x.wav", good[: len(good) // 2])
    elif case == "header-only":
        p = _bad(tmp_path, "x.wav", good[:36])
    elif case == "no-samples":
        p = tmp_path / "x.wav"
        with wave.open(str(p), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR)
    elif case == "nan":
        p = tmp_path / "x.wav"
        sf.write(p, np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    elif case == "bad-fmt":  # a fmt chunk with an unknown codec tag
        p = _bad(tmp_path, "x.wav", good[:20] + b"\x55\x77" + good[22:])
    with pytest.raises(BadAudio) as e:
        load_audio(p)
    assert expect in str(e.value) and str(p) in str(e.value)
    assert "\n" not in str(e.value)
