"""Speak words with eSpeak NG: a small ctypes binding to libespeak-ng.

The library and its voice data come from the PyPI wheel `espeakng-loader`. Where that wheel
does not exist (Linux aarch64), the `espeak-ng` program (Debian package `espeak-ng`) is run
instead, one process per utterance.

eSpeak keeps synthesis state in static variables (pitch phase, flutter, filters) that
`espeak_Terminate` / `espeak_Initialize` do not reset, so its audio depends on earlier calls
in the same process, even when seeded. A `Talker` therefore unloads and reloads the library
when it opens: the audio of its utterances depends only on the voice and on the sequence of
`speak` calls, never on what the process did before. `synthesize` uses a talker per call.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soxr

from kws.errors import KwsError

SAMPLE_RATE = 16000
EXCLUDED_VARIANTS = frozenset({"Demonic", "rob"})  # segfault at wide pitch ranges

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Library:
    """libespeak-ng through ctypes; `open` loads a fresh copy of its state, `close` unloads."""

    def __init__(self, library_path: str, data_path: str):
        self.library_path = library_path
        self.data_path = Path(data_path)
        self.sample_rate = 22050  # set again by every initialisation
        self._lib: ctypes.CDLL | None = None
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds a pointer
        # Klatt voices draw breath noise from libc's rand(), whose state no reload resets.
        self._srand = ctypes.CDLL(None).srand if os.name == "posix" else None

    def _collect(self, wav, n, _events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        return 0  # 0 = continue synthesis

    def open(self, voice: str) -> None:
        """Load the library afresh (one talker at a time: copies would share state)."""
        if self._lib is not None:
            raise RuntimeError("only one eSpeak talker can be open per process")
        lib = ctypes.CDLL(self.library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib = lib
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            self.close()
            raise KwsError(f"libespeak-ng failed to initialise with data at {self.data_path}")
        self.sample_rate = rate
        lib.espeak_SetSynthCallback(self._callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            self.close()
            raise KwsError(f"eSpeak NG has no voice {voice!r}")

    def speak(self, text: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        """Synthesise `text` with the open voice; return int16 samples at `sample_rate`."""
        lib = self._lib
        for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            lib.espeak_SetParameter(parameter, value, 0)
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        if self._srand is not None:
            self._srand(ctypes.c_uint(seed))
        self._chunks = []
        data = text.encode()
        status = lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != 0:
            raise KwsError(f"eSpeak NG failed to speak {text!r} (error {status})")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def close(self) -> None:
        """Terminate and unload, so that the next `open` starts from clean static data."""
        self._lib.espeak_Terminate()
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")
        unload(self._lib._handle)
        self._lib = None


class _Program:
    """The `espeak-ng` program, one process (so a fresh state) per utterance."""

    def __init__(self, program: str):
        self._program = program
        version = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"Data at:\s*(\S+)", version)
        if not match:
            raise KwsError(f"cannot find the voice data of {program}: {version.strip()!r}")
        self.data_path = Path(match.group(1))
        self.sample_rate = 22050  # replaced by the rate in each WAV header
        self._voice = ""

    def open(self, voice: str) -> None:
        self._voice = voice

    def speak(self, text: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        """Synthesise `text`; the program has no pitch-range option, so SSML sets it. A fresh
        process always starts from the same random state, so `seed` is not needed."""
        ssml = f'<speak><prosody range="{2 * pitch_range}%">{escape(text)}</prosody></speak>'
        result = subprocess.run(
            [self._program, "--stdout", "-m", "-v", self._voice, "-s", str(rate),
             "-p", str(pitch), ssml],
            capture_output=True,
        )
        if result.returncode != 0:
            raise KwsError(f"espeak-ng failed on {text!r}: {result.stderr.decode().strip()}")
        wav = result.stdout
        # The streamed header's sizes are placeholders: read the rate, take all after "data".
        self.sample_rate = int.from_bytes(wav[24:28], "little")
        start = wav.index(b"data") + 8
        return np.frombuffer(wav[start : len(wav) - (len(wav) - start) % 2], "<i2").copy()

    def close(self) -> None:
        self._voice = ""


@cache
def _engine() -> _Library | _Program:
    """This process's engine: the wheel's library, else the `espeak-ng` program."""
    try:
        import espeakng_loader
    except ImportError:
        program = shutil.which("espeak-ng")
        if program is None:
            raise KwsError(
                "eSpeak NG is not available: `pip install espeakng-loader`, "
                "or on Linux aarch64 `apt install espeak-ng`"
            ) from None
        return _Program(program)
    return _Library(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())


def variants() -> list[str]:
    """Voice variants usable for synthesis (from `espeak-ng-data/voices/!v`), sorted."""
    names = os.listdir(_engine().data_path / "voices" / "!v")
    return sorted(n for n in names if n not in EXCLUDED_VARIANTS)


class Talker:
    """One eSpeak voice speaking a sequence of utterances; use as a context manager.

    `voice` is a language such as "en-us"; `variant` a name from `variants()` (None or ""
    for the language's own voice). Only one talker can be open at a time in a process.
    """

    def __init__(self, voice: str = "en", variant: str | None = None):
        if variant in EXCLUDED_VARIANTS:
            raise KwsError(f"eSpeak NG variant {variant!r} is excluded: it crashes the library")
        self.name = f"{voice}+{variant}" if variant else voice
        self._engine = _engine()

    def __enter__(self) -> Talker:
        self._engine.open(self.name)
        return self

    def __exit__(self, *exc) -> None:
        self._engine.close()

    def speak(self, text: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
              seed: int = 0) -> tuple[np.ndarray, int]:
        """Speak `text`; return (int16 samples, sample rate) as eSpeak produced them.

        `rate` is in words per minute (80-450); `pitch` and `pitch_range` are 0-100 (50 is
        the voice's own); `seed` seeds eSpeak's noise generators (its own and libc's).
        """
        samples = self._engine.speak(text, int(rate), int(pitch), int(pitch_range), int(seed))
        return samples, self._engine.sample_rate


def synthesize(text: str, voice: str = "en", variant: str | None = None, rate: int = 175,
               pitch: int = 50, pitch_range: int = 50, seed: int = 0) -> np.ndarray:
    """Speak `text` with a fresh engine; return float32 samples in [-1, 1] at 16 kHz.

    The audio depends on the arguments alone (see `Talker.speak` for their meaning).
    """
    with Talker(voice, variant) as talker:
        samples, rate_in = talker.speak(text, rate, pitch, pitch_range, seed)
    return soxr.resample(samples.astype(np.float32) / 32768.0, rate_in, SAMPLE_RATE)
