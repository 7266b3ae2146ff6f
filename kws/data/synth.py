"""An offline, synthetic Speech-Commands-like corpus spoken by eSpeak NG.

The layout is the full archive's: one folder per word (the ten keywords and twenty other
words, which the 12-class task folds into `_unknown_`), `_background_noise_/` with six 60 s
noise recordings, and no `validation_list.txt` / `testing_list.txt`: readers split by
TensorFlow's hash rule on the speaker part of `<speaker>_nohash_<k>.wav`.

A "speaker" is one fixed set of voice parameters (accent, eSpeak variant, rate, pitch,
formant scale, microphone response, room, level); its id is the SHA-1 of that set. Speakers
are drawn until each split holds its share, so validation and testing are never empty. Each
clip is the word spoken with a little prosody jitter, shifted in the 1 s window, reverberated,
and mixed with background noise at 0-30 dB SNR.

Each speaker's clips are spoken in a fixed order by one freshly loaded eSpeak talker, and each
clip's randomness is seeded by (seed, speaker, word, k): the corpus is byte-identical run to
run, whatever the number of workers. `corpus.json`, written last, marks a complete corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
from tqdm import tqdm

from kws.data import espeak
from kws.atomic import atomic_open, atomic_path
from kws.data.dataset import which_set
from kws.data.tasks import KEYWORDS
from kws.errors import KwsError

VERSION = 1
SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
OTHER_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)
WORDS = KEYWORDS + OTHER_WORDS
OTHER_WORD_WEIGHT = 0.1  # clips of each other word per clip of a keyword
ACCENTS = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)
ENDINGS = ("", ".", "!", "?")  # punctuation changes eSpeak's intonation
CLIPS_PER_SPEAKER = 30
MIN_SPEAKERS = 10
SPLITS = ("training", "validation", "testing")
SPLIT_SHARE = {"validation": 0.1, "testing": 0.1}
NOISE_SECONDS = 60
NOISE_RMS = 0.1
BACKGROUND = "_background_noise_"
MANIFEST = "corpus.json"
BABBLE_SENTENCES = (  # no corpus word, nor a homophone of one
    "please close the window, a storm is coming",
    "the market sells fresh bread every morning",
    "my brother painted the kitchen last week",
    "we walked along the river until sunset",
    "the meeting was moved, it starts at noon",
    "she bought a ticket and missed the late train",
    "the children played football in the park",
    "a cold wind blew across the empty field",
)
_BABBLE_TALKERS = 6


@dataclass(frozen=True)
class Speaker:
    """One synthetic talker: voice, prosody, vocal tract, microphone, room and level."""

    accent: str
    variant: str  # eSpeak variant, "" for the accent's own voice
    rate: int  # words per minute
    pitch: int  # 0-100
    pitch_range: int  # 0-100
    formant_scale: float  # resampling factor: > 1 raises formants and pitch, speeds up
    tilt_db: float  # microphone tilt per octave around 1 kHz
    peak_hz: float  # centre of one broad microphone EQ band
    peak_db: float
    low_hz: float  # microphone high-pass corner
    high_hz: float  # microphone low-pass corner
    rt60: float  # room reverberation time, s
    level_db: float  # speech RMS level, dBFS

    @property
    def name(self) -> str:
        """The speaker id used in file names: SHA-1 of the parameters, 8 hex digits."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:8]


def _draw_speaker(rng: np.random.Generator, variants: list[str]) -> Speaker:
    """A random speaker; the ranges are wide enough to make the corpus hard."""
    def uniform(low, high, digits=2):
        return round(float(rng.uniform(low, high)), digits)

    return Speaker(
        accent=ACCENTS[rng.integers(len(ACCENTS))],
        variant=variants[rng.integers(len(variants))],
        rate=int(rng.integers(110, 231)),
        pitch=int(rng.integers(5, 96)),
        pitch_range=int(rng.integers(10, 101)),
        formant_scale=uniform(0.87, 1.15, 3),
        tilt_db=uniform(-3, 2),
        peak_hz=round(float(np.exp(rng.uniform(np.log(300), np.log(4000)))), 1),
        peak_db=uniform(-8, 8),
        low_hz=uniform(40, 300, 1),
        high_hz=uniform(3400, 8000, 1),
        rt60=uniform(0.1, 0.8, 3),
        level_db=uniform(-32, -18),
    )


def choose_speakers(n_speakers: int, seed: int) -> list[Speaker]:
    """Draw distinct speakers until each split holds its share (at least one each)."""
    rng = np.random.default_rng([seed, 1])
    variants = ["", *espeak.variants()]
    quota = {split: max(1, round(share * n_speakers)) for split, share in SPLIT_SHARE.items()}
    quota["training"] = n_speakers - sum(quota.values())
    if quota["training"] < 1:
        raise KwsError(f"need at least 3 speakers, got {n_speakers}")
    speakers: dict[str, Speaker] = {}
    while len(speakers) < n_speakers:
        speaker = _draw_speaker(rng, variants)
        split = which_set(speaker.name)  # the speaker id is what the rule hashes
        if quota[split] > 0 and speaker.name not in speakers:
            quota[split] -= 1
            speakers[speaker.name] = speaker
    return list(speakers.values())


def word_counts(n_clips: int) -> dict[str, int]:
    """Clips per word: one each, the rest shared by weight (largest remainders)."""
    if n_clips < len(WORDS):
        raise KwsError(f"need at least {len(WORDS)} clips (one per word), got {n_clips}")
    weights = np.array([1.0 if w in KEYWORDS else OTHER_WORD_WEIGHT for w in WORDS])
    share = (n_clips - len(WORDS)) * weights / weights.sum()
    counts = np.floor(share).astype(int)
    left = n_clips - len(WORDS) - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return {w: 1 + int(c) for w, c in zip(WORDS, counts)}


def _plan(counts: dict[str, int], n_speakers: int) -> list[list[tuple[str, int]]]:
    """Deal clips to speakers round robin; per speaker a list of (word, repetition k)."""
    plan: list[list[tuple[str, int]]] = [[] for _ in range(n_speakers)]
    dealt = 0
    for word, n in counts.items():
        for _ in range(n):
            clips = plan[dealt % n_speakers]
            clips.append((word, sum(w == word for w, _ in clips)))
            dealt += 1
    return plan


# --- audio helpers ---------------------------------------------------------------------------

def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """Write 16 kHz mono int16 PCM through a temporary file, so no half file is ever left."""
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(samples.astype("<i2").tobytes())


def _trim(x: np.ndarray, floor_db: float = -45) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than `floor_db` below the loudest."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = np.sqrt(np.mean(frames**2, axis=1))
    active = np.flatnonzero(level > level.max() * 10 ** (floor_db / 20))
    return x[active[0] * 160 : (active[-1] + 1) * 160]


def _microphone(freqs: np.ndarray, s: Speaker) -> np.ndarray:
    """The speaker's microphone magnitude response: tilt, one EQ band, band limits."""
    f = np.maximum(freqs, 1.0)
    band = np.exp(-0.5 * (np.log2(f / s.peak_hz) / 0.7) ** 2)
    db = s.tilt_db * np.log2(f / 1000) + s.peak_db * band
    return 10 ** (db / 20) / np.sqrt((1 + (s.low_hz / f) ** 4) * (1 + (f / s.high_hz) ** 8))


def _room(speech: np.ndarray, s: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (direct path + exponential noise tail) and
    the microphone response, in one FFT; the result keeps the reverberation tail."""
    rt60 = s.rt60 * rng.uniform(0.8, 1.25)
    t = np.arange(1, int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-np.log(1000) * t / rt60)  # -60 dB at rt60
    direct_to_reverb_db = rng.uniform(0, 20)
    tail *= 10 ** (-direct_to_reverb_db / 20) / np.sqrt(np.sum(tail**2))
    rir = np.concatenate([[1.0], tail])
    n = len(speech) + len(rir) - 1
    nfft = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(speech, nfft) * np.fft.rfft(rir, nfft)
    spectrum *= _microphone(np.fft.rfftfreq(nfft, 1 / SAMPLE_RATE), s)
    return np.fft.irfft(spectrum, nfft)[:n]


def render_clip(word: str, s: Speaker, talker: espeak.Talker, rng: np.random.Generator,
                noises: list[np.ndarray]) -> np.ndarray:
    """One 1 s int16 clip of `s` (voiced by `talker`) saying `word`, placed in the window,
    reverberated and mixed with one of `noises`."""
    samples, native_rate = talker.speak(
        word + ENDINGS[rng.integers(len(ENDINGS))],
        rate=round(s.rate * rng.uniform(0.9, 1.1)),
        pitch=int(np.clip(s.pitch + rng.integers(-6, 7), 0, 100)),
        pitch_range=s.pitch_range, seed=int(rng.integers(2**31)),
    )
    if not np.any(samples):
        raise KwsError(f"eSpeak NG produced silence for {word!r} with {s}")
    speech = soxr.resample(samples / 32768.0, native_rate * s.formant_scale, SAMPLE_RATE)
    speech = _trim(speech)
    if len(speech) > CLIP_SAMPLES:  # a slow, long word: keep a random 1 s of it
        start = rng.integers(len(speech) - CLIP_SAMPLES + 1)
        speech = speech[start : start + CLIP_SAMPLES]
    wet = _room(speech, s, rng)
    level = 10 ** ((s.level_db + rng.uniform(-4, 4)) / 20)
    wet *= level / _rms(wet[: len(speech)])
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(CLIP_SAMPLES - len(speech) + 1))
    m = min(len(wet), CLIP_SAMPLES - offset)
    clip[offset : offset + m] = wet[:m]
    noise = noises[rng.integers(len(noises))]
    start = rng.integers(len(noise) - CLIP_SAMPLES + 1)
    segment = noise[start : start + CLIP_SAMPLES]
    clip += segment * (level / 10 ** (rng.uniform(0, 30) / 20) / _rms(segment))
    return _to_int16(clip * min(1.0, 0.99 / np.abs(clip).max()))


# --- background noise ------------------------------------------------------------------------

def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ f**exponent (flat below 20 Hz, no DC)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    spectrum *= f ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with decaying harmonics, a slow wobble, a little pink noise."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = (50.0, 60.0)[rng.integers(2)] + rng.uniform(-0.2, 0.2)
    hum = sum(rng.uniform(0.3, 1) / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
              for h in range(1, 13))
    hum *= 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    floor = _coloured(rng, n, -1)
    return hum / _rms(hum) + 0.05 * floor / _rms(floor)


def _running_tap(rng: np.random.Generator, n: int) -> np.ndarray:
    """Running water: noise band-passed around 1-3 kHz, amplitude-modulated by a gurgle."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
    spectrum *= np.exp(-0.5 * (np.log2(f / rng.uniform(1000, 3000)) / 1.2) ** 2)
    water = np.fft.irfft(spectrum, n)
    gurgle = _coloured(rng, n, -4)
    return water * (1 + 0.6 * gurgle / np.abs(gurgle).max())


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Several synthetic talkers reading sentences at once, with pauses."""
    variants = ["", *espeak.variants()]
    mix = np.zeros(n)
    for _ in range(_BABBLE_TALKERS):
        s = _draw_speaker(rng, variants)
        with espeak.Talker(s.accent, s.variant) as talker:
            spoken = [talker.speak(text, s.rate, s.pitch, s.pitch_range, seed=i)
                      for i, text in enumerate(BABBLE_SENTENCES)]
        sentences = [soxr.resample(a / 32768.0, rate, SAMPLE_RATE) for a, rate in spoken]
        stream, at = np.zeros(n), int(rng.integers(SAMPLE_RATE))
        while at < n:
            sentence = sentences[rng.integers(len(sentences))]
            piece = sentence[: n - at] / _rms(sentence)
            stream[at : at + len(piece)] += piece
            at += len(piece) + int(rng.uniform(0.1, 0.8) * SAMPLE_RATE)
        mix += stream * rng.uniform(0.5, 1.0)
    return mix


def synthetic_noises(seed: int) -> dict[str, np.ndarray]:
    """Six 60 s background recordings, deterministic from `seed`, each at RMS `NOISE_RMS`."""
    n = NOISE_SECONDS * SAMPLE_RATE
    makers = {
        "white_noise": lambda rng: rng.standard_normal(n),
        "pink_noise": lambda rng: _coloured(rng, n, -1),
        "brown_noise": lambda rng: _coloured(rng, n, -2),
        "mains_hum": lambda rng: _hum(rng, n),
        "babble": lambda rng: _babble(rng, n),
        "running_tap": lambda rng: _running_tap(rng, n),
    }
    noises = {}
    for i, (name, make) in enumerate(makers.items()):
        x = make(np.random.default_rng([seed, 2, i]))
        noises[name] = np.clip(x * (NOISE_RMS / _rms(x)), -1, 1)
    return noises


def _read_noises(noise_dir: Path) -> dict[str, np.ndarray]:
    """The WAV recordings in `noise_dir` as 16 kHz mono float arrays (at least 1 s each)."""
    noises = {}
    for path in sorted(noise_dir.glob("*.wav")):
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE)
        if len(audio) < CLIP_SAMPLES or not np.any(audio):
            raise KwsError(f"background noise {path} is shorter than 1 s or silent")
        noises[path.stem] = audio
    if not noises:
        raise KwsError(f"no .wav background noise recordings in {noise_dir}")
    return noises


# --- workers ---------------------------------------------------------------------------------

_worker_noises: list[np.ndarray] = []


def _load_noises(paths: list[str]) -> None:
    """Worker initialiser: read the background recordings once per process."""
    _worker_noises[:] = [soundfile.read(p, dtype="float64")[0] for p in paths]


def _render_speaker(out_dir: str, speaker: Speaker, clips: list[tuple[str, int]],
                    seed: int) -> int:
    """Render and write all clips of one speaker, in order, with one talker; return how many."""
    with espeak.Talker(speaker.accent, speaker.variant) as talker:
        for word, k in clips:
            rng = np.random.default_rng([seed, 3, int(speaker.name, 16), WORDS.index(word), k])
            audio = render_clip(word, speaker, talker, rng, _worker_noises)
            _write_wav(Path(out_dir, word, f"{speaker.name}_nohash_{k}.wav"), audio)
    return len(clips)


# --- the corpus ------------------------------------------------------------------------------

def _render_all(out: Path, speakers: list[Speaker], plan: list[list[tuple[str, int]]],
                seed: int, noise_paths: list[Path], workers: int, progress: bool) -> None:
    """Render every speaker's clips in worker processes, one task per speaker.

    `ProcessPoolExecutor`, not `multiprocessing.Pool`: a worker killed by a crash in eSpeak
    raises here instead of hanging. On any error, tasks not yet started are cancelled.
    """
    try:
        with ProcessPoolExecutor(workers, initializer=_load_noises,
                                 initargs=([str(p) for p in noise_paths],)) as pool, \
                tqdm(total=sum(map(len, plan)), unit="clip", desc="synthesising",
                     disable=not progress) as bar:
            futures = [pool.submit(_render_speaker, str(out), s, clips, seed)
                       for s, clips in zip(speakers, plan)]
            try:
                for future in as_completed(futures):
                    bar.update(future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    except BrokenProcessPool as e:
        raise KwsError("a synthesis worker died (did eSpeak NG crash?); "
                       "try another --seed") from e


def _read_manifest(out_dir: Path) -> dict | None:
    """The corpus manifest, None for a new or empty directory; refuse any other directory."""
    manifest = out_dir / MANIFEST
    if manifest.exists():
        return json.loads(manifest.read_text())
    if out_dir.exists() and any(out_dir.iterdir()):
        raise KwsError(f"{out_dir} is not empty and holds no synthetic corpus; "
                       "choose a new or empty directory")
    return None


def _prune(out_dir: Path, expected: set[Path]) -> None:
    """Delete files in the corpus folders that this corpus did not write (older runs)."""
    for folder in (*WORDS, BACKGROUND):
        for path in (out_dir / folder).iterdir():
            if path not in expected:
                path.unlink()


def synthesize_corpus(out_dir: str | os.PathLike, n_clips: int, seed: int = 0,
                      workers: int = 2, noise_dir: str | os.PathLike | None = None,
                      progress: bool = True) -> dict:
    """Write a synthetic Speech Commands corpus of `n_clips` 1 s clips to `out_dir`.

    `noise_dir` replaces the six synthetic background recordings by the WAV files in it
    (e.g. the real `_background_noise_`). Returns a summary (clips per class and word,
    speakers per split); if `out_dir` already holds the same complete corpus, returns at once.
    """
    if workers < 1 or seed < 0:
        raise KwsError(f"need workers >= 1 and seed >= 0, got {workers} and {seed}")
    out = Path(out_dir)
    counts = word_counts(n_clips)
    noises = _read_noises(Path(noise_dir)) if noise_dir else None
    noise_key = "synthetic" if noises is None else hashlib.sha1(
        b"".join(name.encode() + _to_int16(x).tobytes() for name, x in noises.items())
    ).hexdigest()
    key = {"version": VERSION, "clips": n_clips, "seed": seed, "noise": noise_key}
    manifest = _read_manifest(out)
    if manifest and manifest["complete"] and {k: manifest.get(k) for k in key} == key:
        return manifest["summary"]
    with atomic_open(out / MANIFEST) as f:
        json.dump({"complete": False, **key}, f)

    noises = noises or synthetic_noises(seed)
    noise_paths = [out / BACKGROUND / f"{name}.wav" for name in noises]
    for path, audio in zip(noise_paths, noises.values()):
        _write_wav(path, _to_int16(audio))

    speakers = choose_speakers(max(MIN_SPEAKERS, round(n_clips / CLIPS_PER_SPEAKER)), seed)
    plan = _plan(counts, len(speakers))
    _render_all(out, speakers, plan, seed, noise_paths, workers, progress)
    _prune(out, {out / w / f"{s.name}_nohash_{k}.wav" for s, clips in zip(speakers, plan)
                 for w, k in clips} | set(noise_paths))
    splits = [which_set(s.name) for s in speakers]
    summary = {
        **key,
        "clips_per_class": {**{w: counts[w] for w in KEYWORDS},
                            "_unknown_": sum(counts[w] for w in OTHER_WORDS)},
        "clips_per_word": counts,
        "speakers": len(speakers),
        "speakers_per_split": {p: splits.count(p) for p in SPLITS},
        "clips_per_split": {p: sum(len(c) for c, q in zip(plan, splits) if q == p)
                            for p in SPLITS},
        "background_noise": sorted(noises),
    }
    with atomic_open(out / MANIFEST) as f:
        json.dump({"complete": True, **key, "summary": summary}, f, indent=1)
    return summary
