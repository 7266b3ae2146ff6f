"""The integer posterior of a window: softmax of its pooled scores in Q15 (32768 = 1.0), by
integer arithmetic only. firmware/kernel/kws_detect.c does the very same operations with the
constants `Posterior.constants()` writes into the sketch's kws_config.h, so the board and
Python get the same posteriors bit for bit.

    post = Posterior.for_scale(scale)    # pooled * scale = logits (nats)
    p = post(pooled)                      # [..., classes] int64 in 0 .. 32768

For each class, d = max(pooled) - pooled (0 .. 2^32 - 1: a uint32 on the device). Its logit
gap in log2 units is taken as v / 2^F, with

    v = ((d >> R) * M + 2^(S-1)) >> S        M = round(2^(F+S+R) * scale / ln 2)

(R drops the bits of d far below the table's step, so that M keeps 15-16 significant bits; S
keeps (d >> R) * M + 2^(S-1) below 2^31 for every d >> R up to CLAMP). Then

    e = EXP2[v mod 2^F] >> (v div 2^F)       EXP2[k] = round(2^15 * 2^(-k / 2^F))

and e = 0 when d >> R > CLAMP (a gap of 16 log2 units or more, where the shift would leave 0
anyway). The top class has d = 0, so e = 32768 and the sum of e is at least 32768. The
posterior is p = (e * 2^15 + sum / 2) div sum (rounded to nearest; sum / 2 truncated).

Rounding, against the float softmax (`float_posteriors`): the gap is rounded to a multiple of
2^-F log2 units (F = 8: each e is within 2^(1/512) - 1 = 0.14 % of exp(-gap), plus the table's
own rounding of half a Q15 step), the bits of d dropped by R move it by at most 2^R * scale
(< 2^-12 log2 units), classes 16 log2 units (11.1 nats) or more below the top count as 0 (the
float posterior of such a class is below 1.6e-5, half a Q15 step), and p is rounded to Q15.
On the shipped model's streams the two differ by a few Q15 steps at most (tests/test_detect.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kws.errors import KwsError

Q = 15                  # posteriors and table entries are Q15
ONE = 1 << Q
FRAC_BITS = 8           # F: 2^F table entries (uint16) per octave
GAP_LOG2 = 4            # a gap of 2^4 = 16 octaves or more: e = 0 (e >> 16)
GAP_OCTAVES = 1 << GAP_LOG2
PRODUCT_BITS = 31       # (d >> R) * M + 2^(S-1) < 2^31


def exp2_table(frac_bits: int = FRAC_BITS) -> np.ndarray:
    """EXP2[k] = round(2^15 * 2^(-k / 2^F)), k = 0 .. 2^F - 1 (uint16 values)."""
    n = 1 << frac_bits
    return np.array([round(ONE * 2.0 ** (-k / n)) for k in range(n)], np.int64)


@dataclass(frozen=True)
class Posterior:
    shift_r: int         # R
    mult: int            # M
    shift_s: int         # S
    clamp: int           # largest d >> R with a non-zero e
    frac_bits: int = FRAC_BITS

    @classmethod
    def for_scale(cls, scale: float, frac_bits: int = FRAC_BITS) -> "Posterior":
        """The constants for pooled scores whose logits are pooled * scale (nats)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise KwsError(f"posterior scale {scale}: expected a positive number")
        s = PRODUCT_BITS - GAP_LOG2 - frac_bits      # 2^(F+4+S) = 2^31
        m0 = 2.0 ** (frac_bits + s) * scale / math.log(2)
        r = 0
        while r < 31 and round(m0 * 2.0 ** r) < 1 << 15:
            r += 1
        mult = round(m0 * 2.0 ** r)
        if not 1 <= mult < 1 << 32:
            raise KwsError(f"posterior scale {scale}: no 32-bit multiplier for it")
        clamp = ((GAP_OCTAVES << frac_bits << s) - (1 << (s - 1)) - 1) // mult
        if clamp < 1:
            raise KwsError(f"posterior scale {scale} is too large for the integer softmax")
        post = cls(r, mult, s, clamp, frac_bits)
        assert clamp * mult + (1 << (s - 1)) < 1 << PRODUCT_BITS
        return post

    @property
    def table(self) -> np.ndarray:
        return exp2_table(self.frac_bits)

    def exps(self, pooled) -> np.ndarray:
        """e for every class [..., classes] (int64, 0 .. 32768)."""
        x = np.asarray(pooled, np.int64)
        d = x.max(axis=-1, keepdims=True) - x
        dr = d >> self.shift_r
        inside = dr <= self.clamp
        v = (np.where(inside, dr, 0) * self.mult + (1 << (self.shift_s - 1))) >> self.shift_s
        mask = (1 << self.frac_bits) - 1
        e = self.table[v & mask] >> (v >> self.frac_bits)
        return np.where(inside, e, 0)

    def __call__(self, pooled) -> np.ndarray:
        """Q15 posteriors [..., classes] (int64)."""
        e = self.exps(pooled)
        total = e.sum(axis=-1, keepdims=True)
        return (e * ONE + total // 2) // total

    def constants(self) -> dict[str, int | str]:
        """The values kws_detect.c is compiled with (kws_config.h)."""
        return {"KWS_DET_EXP2_BITS": self.frac_bits,
                "KWS_DET_EXP2_TABLE": "{ " + ", ".join(str(int(t)) for t in self.table) + " }",
                "KWS_DET_SHIFT_R": self.shift_r, "KWS_DET_MULT": f"{self.mult}UL",
                "KWS_DET_SHIFT_S": self.shift_s, "KWS_DET_CLAMP": f"{self.clamp}UL"}


def float_posteriors(pooled, scale: float) -> np.ndarray:
    """The float softmax of pooled * scale [..., classes] (what the integer one approximates)."""
    logits = np.asarray(pooled, np.float64) * scale
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)
