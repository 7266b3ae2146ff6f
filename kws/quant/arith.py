"""The integer arithmetic of the on-device model, written down once.

Every number on the device is an integer `v` standing for the real value `v / 2**q`; `q` is
its number of fractional bits ("Q format"). The formats are fixed per model:

    x        int8    Q = QX (stored in the model; 5 by default: features within +-4 std)
    t        int16   Q = QA = 11   the low-rank intermediates W1 x and U1 h
    h, z, c  int16   Q = QH = 14   hidden state and gates; ONE = 2**14 stands for 1.0
    weights  int8    Q = e, one power-of-two exponent per matrix or bias vector
    scores   int32   Q = e_Wc + QH

Two primitive operations, identical in NumPy, torch and C:

    rshift_round(v, s) = (v + 2**(s-1)) >> s   for s > 0  (round half up; >> is arithmetic)
                       = v << -s               for s <= 0
    sat(v, bits)       = clamp(v, -2**(bits-1), 2**(bits-1) - 1)

One FastGRNN step (`pre` is shared by both gates, as in the paper):

    tw   = sat16(rshift_round(W1 . x, e_W1 + QX - QA))
    tu   = sat16(rshift_round(U1 . h, e_U1 + QH - QA))
    pre  = rshift_round(W2 . tw, e_W2 + QA - QH) + rshift_round(U2 . tu, e_U2 + QA - QH)
    z    = clamp((pre + bz' + ONE) >> 1, 0, ONE)          quantSigm(v) = clip((v + 1) / 2, 0, 1)
    c    = clamp(pre + bc', -ONE, ONE)                    quantTanh(v) = clip(v, -1, 1)
    g    = rshift_round(ZETA * (ONE - z), QH) + NU        sigmoid(zeta)(1 - z) + sigmoid(nu)
    h'   = sat16(rshift_round(z * h + g * c, QH))
    out  = W_c . h' + b_c'

where `b'` is a bias brought to the Q of what it is added to: rshift_round(b, e_b - Q).
Accumulators are 32-bit; `kws.quant.intmodel.check_no_overflow` proves from the weights that no
intermediate can leave int32 before a model is exported.
"""

from __future__ import annotations

import numpy as np

QA = 11            # fractional bits of the low-rank intermediates
QH = 14            # fractional bits of the hidden state and gates
ONE = 1 << QH
INT8 = (-128, 127)
INT16 = (-32768, 32767)
INT32 = (-(1 << 31), (1 << 31) - 1)


def rshift_round(v, s: int):
    """Multiply integer array `v` by 2**-s, rounding half up (NumPy int64)."""
    v = np.asarray(v, dtype=np.int64)
    if s <= 0:
        return v << -s
    return (v + (1 << (s - 1))) >> s


def sat(v, bits: int):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(v, lo, hi)


def weight_exponent(max_abs: float, bits: int = 8) -> int:
    """Largest power-of-two exponent e with round(max_abs * 2**e) inside the signed range."""
    top = (1 << (bits - 1)) - 1
    if max_abs <= 0:
        return 0
    return int(np.floor(np.log2(top / max_abs)))
