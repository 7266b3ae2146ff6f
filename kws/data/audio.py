"""Read one audio clip as the model sees it: 16 kHz mono float32 in [-1, 1], fixed length.

Conversions, applied in this order, so odd files still give the same kind of array:

- any WAV sample format libsndfile reads (8-bit unsigned, 16/24/32-bit PCM, 32/64-bit float)
  is scaled to float in [-1, 1];
- more than one channel is down-mixed by averaging the channels;
- another sample rate is resampled to the target rate (soxr, high quality, through librosa);
- a clip shorter than `n_samples` is padded with zeros at the end, a longer one keeps its
  first `n_samples` (Speech Commands' own rule).

WAV is the Speech Commands format; FLAC (and the other formats libsndfile reads) is read the
same way, for data sets stored compressed.

Files that are not audio at all get a `BadAudio` error naming the file: empty files, files that
are not WAV, WAVs whose data chunk is shorter than its header says (truncated), WAVs with no
samples, and float WAVs holding NaN or infinity.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from kws.errors import KwsError


AUDIO_SUFFIXES = (".wav", ".flac")


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def audio_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The WAV and FLAC files in `folder` (and its subfolders if `recursive`), sorted."""
    found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in found if is_audio(p))


class BadAudio(KwsError):
    """A file that cannot be used as an audio clip; the message names the file."""


def check_wav_structure(path: Path) -> None:
    """Walk the RIFF chunks and refuse a WAV whose data chunk is cut short.

    libsndfile quietly reads whatever part of a truncated file is there; a clip cut in half
    should not train a model as if it were whole.
    """
    size = path.stat().st_size
    if size == 0:
        raise BadAudio(f"{path}: empty file")
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise BadAudio(f"{path}: not a WAV file (no RIFF/WAVE header)")
        if head[:4] == b"RF64":
            return  # sizes live in the ds64 chunk; libsndfile checks those itself
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size not in (0, 0xFFFFFFFF) and pos + 8 + chunk_size > size:
                    raise BadAudio(
                        f"{path}: truncated WAV (data chunk says {chunk_size} bytes, "
                        f"file holds {size - pos - 8})")
                return
            pos += 8 + chunk_size + (chunk_size & 1)
    raise BadAudio(f"{path}: WAV without a data chunk")


def check_structure(path: Path) -> None:
    """A WAV's chunks are checked (`check_wav_structure`); other formats only for emptiness
    (libsndfile checks FLAC's own frame CRCs and refuses a cut-short stream itself)."""
    if path.suffix.lower() == ".wav":
        check_wav_structure(path)
    elif path.stat().st_size == 0:
        raise BadAudio(f"{path}: empty file")


def load_audio(path: str | os.PathLike, sample_rate: int = 16000,
               n_samples: int | None = 16000, offset: int = 0) -> np.ndarray:
    """Load `path` as mono float32 at `sample_rate`, padded or cropped to `n_samples`.

    `offset` (in samples at the target rate) selects where the window starts, for crops of
    long recordings such as background noise. `n_samples=None` returns the whole recording.
    """
    path = Path(path)
    try:
        check_structure(path)
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except BadAudio:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise BadAudio(f"{path}: unreadable audio ({_first_line(e)})") from None
    if data.shape[0] == 0:
        raise BadAudio(f"{path}: WAV holds no samples")
    if not np.isfinite(data).all():
        raise BadAudio(f"{path}: float WAV holds NaN or infinite samples")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        import librosa  # imported lazily: it is slow to import and rarely needed

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)
    if n_samples is None:
        return audio[offset:]
    return fit_length(audio[offset:offset + n_samples], n_samples)


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Pad with zeros at the end, or crop, to exactly `n_samples`."""
    if len(audio) >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))


def audio_length(path: str | os.PathLike, sample_rate: int = 16000) -> int:
    """Length in samples at `sample_rate`, without decoding the data."""
    path = Path(path)
    check_structure(path)
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError) as e:
        raise BadAudio(f"{path}: unreadable audio ({_first_line(e)})") from None
    return int(info.frames * sample_rate // info.samplerate)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM, atomically."""
    from kws.atomic import atomic_path

    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm, sample_rate, subtype="PCM_16", format="WAV")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
