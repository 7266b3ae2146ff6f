"""Stream cuts: a training clip as a window of a stream would see it.

On the board a window of one clip's length ends every `stride` frames, wherever the words are:
a window may hold a whole keyword, part of one, or the end of one and the start of the next
word. A clip of the data set is centred on its word. A stream cut places the keyword clip
between two neighbours (clips of the other class: unknown words, keyword-free speech, silence)
and takes the window at an offset drawn so that every overlap, from all of the word to almost
none of it, occurs. The label follows the rule below.

The rule (on the voiced span of the keyword clip: the 10 ms frames within 30 dB of its loudest,
kws.data.streamgen.voiced_span):

    kept >= keep[1]              the keyword            (the window holds the word)
    kept <  keep[0]              the other class        (too little of it to be the word)
    keep[0] <= kept < keep[1]    not trained on         (ambiguous: neither answer is taught)

where kept is the fraction of the voiced span inside the window (train.cut_keep, default
0.5 and 0.9).
"""

from __future__ import annotations

import numpy as np

IGNORE = -100   # F.cross_entropy's ignore_index: the window teaches nothing


def cut_label(kept: float, label: int, other: int, keep: tuple[float, float]) -> int:
    """The class of a window that holds `kept` of the voiced span of a `label` keyword."""
    if kept >= keep[1]:
        return label
    if kept < keep[0]:
        return other
    return IGNORE


def cut_window(clip: np.ndarray, before: np.ndarray, after: np.ndarray, offset: int,
               voiced: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(window, kept): the window of len(clip) samples starting `offset` samples after the
    clip's start, in the stream `before + clip + after` (each as long as the clip), and the
    fraction of the clip's voiced span [voiced[0], voiced[1]) inside it."""
    n = len(clip)
    if not -n <= offset <= n or len(before) != n or len(after) != n:
        raise ValueError("offset within one clip length, neighbours as long as the clip")
    stream = np.concatenate([before, clip, after])
    window = stream[n + offset:2 * n + offset]
    v0, v1 = voiced
    inside = max(0, min(v1, offset + n) - max(v0, offset))
    return window, inside / max(v1 - v0, 1)


def draw_offset(voiced: tuple[int, int], n: int, rng: np.random.Generator) -> int:
    """An offset at which the window holds all of the voiced span, part of it or almost none:
    uniform over [v1 - n - L, v0 + L] (L the span's length), within one clip length."""
    v0, v1 = voiced
    span = v1 - v0
    lo, hi = max(-n, v1 - n - span), min(n, v0 + span)
    return int(rng.integers(lo, hi + 1)) if lo <= hi else 0
