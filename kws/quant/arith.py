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

The second arithmetic: int8 state (`model.state_bits: 8`)
---------------------------------------------------------
The one above is `state_bits = 16`. With `state_bits = 8` every vector that meets a weight is
int8, so every product is int8 x int8 (one `muls` on AVR) and every row sum fits 24 bits:

    x        int8    Q = QX
    t        int8    Q = QT8 = 4     tw = W1 x and tu = U1 h (+-8)
    h        int8    Q = QS8 = 6     hidden state (+-2)
    z        uint8   Q = QG8 = 7     in [0, ONE8], ONE8 = 2**7 = 128
    c        int8    Q = QG8         in [-ONE8, ONE8 - 1]
    g        uint8   Q = QG8         in [0, 254]
    ZETA, NU uint8   Q = QG8         sigmoid(zeta), sigmoid(nu), at most 127
    weights  int8    Q = e; W2 and U2 share ONE exponent e_R (quantised as one matrix [W2 U2])
    scores   int32   Q = e_Wc + QS8

    tw   = sat8(rshift_round(W1 . x, e_W1 + QX - QT8))
    tu   = sat8(rshift_round(U1 . h, e_U1 + QS8 - QT8))
    pre  = rshift_round(W2 . tw + U2 . tu, e_R + QT8 - QG8)     one sum, one rounding
    z    = clamp((pre + bz' + ONE8) >> 1, 0, ONE8)
    c    = clamp(pre + bc', -ONE8, ONE8 - 1)
    g    = rshift_round(ZETA * (ONE8 - z), QG8) + NU
    h'   = sat8(rshift_round(2 z h + g c, 8))                   (z h is Q13, g c Q14 -> Q6)
    out  = W_c . h' + b_c'

with b' = rshift_round(b, e_b - Q) as above (Q = QG8 for bz, bc; e_Wc + QS8 for bcls). Every
row sum is at most 255 * 127 * 128 < 2**23 in magnitude (rows of at most 255), 2 z h + g c at
most 65,280: the device sums in 24 bits where it can; the proof is the same function.
"""

from __future__ import annotations

import numpy as np

QA = 11            # fractional bits of the low-rank intermediates
QH = 14            # fractional bits of the hidden state and gates
ONE = 1 << QH
INT8 = (-128, 127)
STATE_BITS = (16, 8)  # the two arithmetics (model.state_bits)
QT8 = 4            # state_bits 8: fractional bits of the int8 low-rank intermediates
QS8 = 6            # ... of the int8 hidden state
QG8 = 7            # ... of pre, the gates z, c, g and ZETA, NU
ONE8 = 1 << QG8
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
