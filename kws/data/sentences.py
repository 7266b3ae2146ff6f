"""Keyword-free running speech, spoken by synthetic talkers: negative audio for false accepts.

A wake-word user counts false accepts per hour of speech that holds no keyword. The real
keyword-free audio a project has is short (an hour or so), too little to choose a threshold
at 2 per hour. This module makes more: English sentences from a small grammar whose words are
never a Speech Commands word nor a homophone of one (`FORBIDDEN`), read by eSpeak NG talkers
drawn as the synthetic corpus draws them (accent, variant, rate, pitch, formants, microphone,
room, level; `kws.data.synth.Speaker`).

Each file is one talker reading a few sentences with pauses, like a read-speech recording:
`sent-<speaker>-<k>.flac` (16 kHz mono 16-bit). `kws.data.dataset.negative_speaker` reads the
speaker from that name, so the files split by talker into training / validation / testing
sides like every other negative (`negative_split`): mining and crops use the training side,
thresholds the validation side, the reported false accepts the testing side.

The folder is a function of (minutes, seed): each talker's files come from one freshly loaded
eSpeak talker seeded by (seed, talker). `sentences.json`, written last, marks a complete
folder; asking again for the same folder keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
import soxr

from kws.atomic import atomic_open, atomic_path
from kws.data import espeak
from kws.data.tasks import WORDS_35
from kws.errors import KwsError

VERSION = 1
SAMPLE_RATE = 16000
MANIFEST = "sentences.json"
SECONDS_PER_FILE = 20.0   # a few sentences each, like a read-speech recording
FILES_PER_TALKER = 2

# Words that sound like, or close to, a Speech Commands word (to/two, for/four, know/no,
# write/right, of/off, top/stop, ...): a false accept on them is no sign of a poor detector.
HOMOPHONES = frozenset({"to", "too", "for", "fore", "won", "ate", "know", "write", "rite",
                        "wright", "tree's", "bid", "dawn", "hop", "top", "of", "own", "gone",
                        "wet", "yet", "lift", "light", "shop", "cap", "hat"})
FORBIDDEN = frozenset(WORDS_35) | HOMOPHONES

_DET = ("the", "a", "this", "that", "every", "some", "her", "his", "their", "my", "our")
_ADJ = ("quiet", "bright", "small", "heavy", "green", "narrow", "warm", "careful", "empty",
        "ancient", "sudden", "gentle", "broken", "golden", "patient", "famous", "strange",
        "little", "silver", "busy", "early", "hidden", "simple", "foreign", "pale")
_NOUN = ("garden", "teacher", "window", "river", "letter", "market", "doctor", "kitchen",
         "mountain", "village", "picture", "captain", "farmer", "bottle", "question", "story",
         "winter", "morning", "station", "island", "engine", "basket", "neighbour", "candle",
         "forest", "blanket", "library", "pocket", "sister", "stranger", "painter", "bridge",
         "harbour", "meadow", "journey", "ribbon", "machine", "orchard", "student", "table")
_VERB = ("carried", "painted", "opened", "followed", "remembered", "watched", "answered",
         "finished", "visited", "cleaned", "borrowed", "described", "noticed", "repaired",
         "wanted", "explained", "collected", "admired", "delivered", "ignored", "measured",
         "promised", "imagined", "discovered", "shared")
_PREP = ("in", "near", "behind", "across", "beside", "under", "after", "before", "with",
         "without", "through", "beyond", "along", "around", "inside")
_ADV = ("slowly", "quickly", "again", "yesterday", "carefully", "quietly", "together",
        "sometimes", "finally", "almost", "already", "perhaps", "really", "later")
_PATTERNS = (
    "{D} {A} {N} {V} {D} {N} {P} {D} {N}",
    "{D} {N} {V} {D} {A} {N} {Av}",
    "{Av} {D} {N} {V} {D} {N}",
    "{D} {A} {N} and {D} {N} {V} {D} {A} {N}",
    "did {D} {N} see {D} {A} {N} {P} {D} {N}",
    "{D} {N} {P} {D} {N} {V} {D} {N} {Av}",
    "when {D} {N} {V} {D} {N}, {D} {A} {N} {V} {D} {N}",
)
assert not FORBIDDEN & {w for ws in (_DET, _ADJ, _NOUN, _VERB, _PREP, _ADV) for w in ws}


def sentence(rng: np.random.Generator) -> str:
    """One keyword-free sentence from the grammar (no word of `FORBIDDEN`)."""
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    pattern = _PATTERNS[rng.integers(len(_PATTERNS))]
    text = pattern.format_map(_Draw(pick))
    return text[0].upper() + text[1:] + (".", "!", "?", ".")[rng.integers(4)]


class _Draw(dict):
    """format_map source: every {D}/{A}/{N}/{V}/{P}/{Av} is drawn anew."""

    def __init__(self, pick):
        super().__init__()
        self.pick = pick

    def __missing__(self, key):
        return self.pick({"D": _DET, "A": _ADJ, "N": _NOUN, "V": _VERB, "P": _PREP,
                          "Av": _ADV}[key])


def words_of(text: str) -> list[str]:
    return [w.strip(",.!?").lower() for w in text.split()]


def _reading(talker: espeak.Talker, speaker, rng: np.random.Generator) -> np.ndarray:
    """`speaker` reading sentences with pauses for about SECONDS_PER_FILE (float, 16 kHz)."""
    from kws.data.synth import _rms, _room, _trim

    pieces, total = [], 0
    while total < SECONDS_PER_FILE * SAMPLE_RATE:
        text = sentence(rng)                      # drawn in this order: the folder's bytes
        rate_wpm = round(speaker.rate * rng.uniform(0.9, 1.1))
        pitch = int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 100))
        samples, rate = talker.speak(text, rate=rate_wpm, pitch=pitch,
                                     pitch_range=speaker.pitch_range,
                                     seed=int(rng.integers(2**31)))
        if not np.any(samples):
            raise KwsError(f"eSpeak NG produced silence for a sentence with {speaker}")
        speech = _trim(soxr.resample(samples / 32768.0, rate * speaker.formant_scale,
                                     SAMPLE_RATE))
        pause = np.zeros(int(rng.uniform(0.2, 0.9) * SAMPLE_RATE))
        pieces += [speech, pause]
        total += len(speech) + len(pause)
    wet = _room(np.concatenate(pieces), speaker, rng)
    wet *= 10 ** (speaker.level_db / 20) / max(_rms(wet), 1e-9)
    return wet * min(1.0, 0.99 / max(float(np.abs(wet).max()), 1e-9))


def make_sentences(out: Path, minutes: float, seed: int = 0, progress=print) -> Path:
    """Write about `minutes` of keyword-free synthetic speech to `out` (module docstring)."""
    from kws.data.synth import _draw_speaker

    out = Path(out)
    if minutes <= 0:
        raise KwsError(f"--minutes must be > 0, not {minutes}")
    talkers = max(3, round(minutes * 60 / (SECONDS_PER_FILE * FILES_PER_TALKER)))
    key = {"version": VERSION, "minutes": minutes, "seed": seed, "talkers": talkers}
    manifest = out / MANIFEST
    if manifest.exists():
        try:
            if {k: json.loads(manifest.read_text()).get(k) for k in key} == key:
                progress(f"{out}: already holds these sentences (kept)")
                return out
        except json.JSONDecodeError:
            pass
        raise KwsError(f"{out} holds other sentences (see {manifest}): choose another --out "
                       "or delete it")
    out.mkdir(parents=True, exist_ok=True)
    variants = ["", *espeak.variants()]
    files, seconds = [], 0.0
    for t in range(talkers):
        rng = np.random.default_rng([seed, t])
        speaker = _draw_speaker(rng, variants)
        with espeak.Talker(speaker.accent, speaker.variant) as talker:
            for k in range(FILES_PER_TALKER):
                name = f"sent-{speaker.name}-{k}.flac"
                audio = _reading(talker, speaker, rng)
                with atomic_path(out / name) as tmp:
                    soundfile.write(tmp, np.round(audio * 32767).astype(np.int16), SAMPLE_RATE,
                                    format="FLAC", subtype="PCM_16")
                files.append(name)
                seconds += len(audio) / SAMPLE_RATE
        progress(f"talker {t + 1}/{talkers}: {seconds / 60:.1f} min")
    with atomic_open(manifest, "w") as f:
        json.dump({**key, "files": files, "seconds": round(seconds, 1)}, f, indent=1)
    return out
