"""The integer model: the arrays the firmware stores, the NumPy reference that runs them bit for
bit as the C kernel does (see `kws.quant.arith`), and an honest count of their bytes.

`IntModel.run` is the oracle for the C kernel and for the board: same rounding, same shifts,
same saturation, vectorised over a batch of clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kws.quant.arith import INT32, ONE, ONE8, QA, QG8, QH, QS8, QT8, STATE_BITS, rshift_round, sat
from kws.errors import KwsError

MATRICES = ("W1", "W2", "U1", "U2", "Wc")
BIASES = ("bz", "bc", "bcls")


@dataclass
class IntModel:
    """Integer arrays with their power-of-two exponents: value = int * 2**-exponent."""

    n_in: int
    hidden: int
    rank_w: int
    rank_u: int
    n_classes: int
    qx: int
    weight_bits: int
    arrays: dict[str, np.ndarray]          # MATRICES + BIASES, int64 values
    exponents: dict[str, int]              # same keys
    zeta: int                              # sigmoid(zeta) in Q14 (state_bits 8: Q7)
    nu: int                                # sigmoid(nu) in Q14 (state_bits 8: Q7)
    formats: dict[str, str] = field(default_factory=dict)  # matrix -> "dense" | "sparse"
    state_bits: int = 16                   # the arithmetic (kws.quant.arith): 16 or 8

    def __post_init__(self):
        shapes = {"W1": (self.rank_w, self.n_in), "W2": (self.hidden, self.rank_w),
                  "U1": (self.rank_u, self.hidden), "U2": (self.hidden, self.rank_u),
                  "Wc": (self.n_classes, self.hidden), "bz": (self.hidden,),
                  "bc": (self.hidden,), "bcls": (self.n_classes,)}
        top = {8: 127, 4: 7}[self.weight_bits]
        for name, shape in shapes.items():
            a = np.asarray(self.arrays.get(name))
            if a.shape != shape:
                raise KwsError(f"integer model: {name} has shape {a.shape}, expected {shape}")
            limit = top if name in MATRICES else 127
            if np.abs(a).max(initial=0) > limit:
                raise KwsError(f"integer model: {name} exceeds +-{limit}")
            self.arrays[name] = a.astype(np.int64)
        if not self.formats:
            self.formats = {m: best_format(self.arrays[m], self.weight_bits) for m in MATRICES}
        if self.state_bits not in STATE_BITS:
            raise KwsError(f"integer model: state_bits {self.state_bits}, expected 16 or 8")
        top = (1 << QH) if self.state_bits == 16 else ONE8 - 1
        for k in ("zeta", "nu"):
            if not 0 <= getattr(self, k) <= top:
                raise KwsError(f"integer model: {k} {getattr(self, k)} outside [0, {top}]")
        if self.state_bits == 8 and self.exponents["W2"] != self.exponents["U2"]:
            raise KwsError("integer model: state_bits 8 needs one exponent for W2 and U2, "
                           f"not {self.exponents['W2']} and {self.exponents['U2']}")

    # --- the reference --------------------------------------------------------------------------
    def shifts(self) -> dict[str, int]:
        """Every right shift of the step, from the exponents (see kws.quant.arith)."""
        e = self.exponents
        if self.state_bits == 8:
            return {
                "tw": e["W1"] + self.qx - QT8, "tu": e["U1"] + QS8 - QT8,
                "pw": e["W2"] + QT8 - QG8, "pu": e["U2"] + QT8 - QG8,
                "bz": e["bz"] - QG8, "bc": e["bc"] - QG8, "bcls": e["bcls"] - (e["Wc"] + QS8),
            }
        return {
            "tw": e["W1"] + self.qx - QA, "tu": e["U1"] + QH - QA,
            "pw": e["W2"] + QA - QH, "pu": e["U2"] + QA - QH,
            "bz": e["bz"] - QH, "bc": e["bc"] - QH, "bcls": e["bcls"] - (e["Wc"] + QH),
        }

    def score_q(self) -> int:
        """Fractional bits of the scores: int / 2**score_q() is the real score."""
        return self.exponents["Wc"] + (QH if self.state_bits == 16 else QS8)

    def run(self, x: np.ndarray, h0: np.ndarray | None = None, return_state: bool = False):
        """Scores [B, T, classes] (int64, int32 range) for int8 inputs x [B, T, n_in]."""
        x = np.asarray(x, dtype=np.int64)
        if x.ndim == 2:
            x = x[None]
        if self.state_bits == 8:
            return self._run8(x, h0, return_state)
        a, s = self.arrays, self.shifts()
        bz, bc = rshift_round(a["bz"], s["bz"]), rshift_round(a["bc"], s["bc"])
        bcls = rshift_round(a["bcls"], s["bcls"])
        tw = sat(rshift_round(x @ a["W1"].T, s["tw"]), 16)
        pw = rshift_round(tw @ a["W2"].T, s["pw"])
        h = np.zeros((x.shape[0], self.hidden), np.int64) if h0 is None else np.array(h0)
        scores = np.empty((x.shape[0], x.shape[1], self.n_classes), np.int64)
        states = np.empty((x.shape[0], x.shape[1], self.hidden), np.int64)
        for t in range(x.shape[1]):
            tu = sat(rshift_round(h @ a["U1"].T, s["tu"]), 16)
            pre = pw[:, t] + rshift_round(tu @ a["U2"].T, s["pu"])
            z = np.clip((pre + bz + ONE) >> 1, 0, ONE)
            c = np.clip(pre + bc, -ONE, ONE)
            g = rshift_round(self.zeta * (ONE - z), QH) + self.nu
            h = sat(rshift_round(z * h + g * c, QH), 16)
            states[:, t] = h
            scores[:, t] = h @ a["Wc"].T + bcls
        return (scores, states) if return_state else scores

    def _run8(self, x, h0, return_state):
        """state_bits 8 (kws.quant.arith, the second arithmetic)."""
        a, s = self.arrays, self.shifts()
        bz, bc = rshift_round(a["bz"], s["bz"]), rshift_round(a["bc"], s["bc"])
        bcls = rshift_round(a["bcls"], s["bcls"])
        tw = sat(rshift_round(x @ a["W1"].T, s["tw"]), 8)
        pw = tw @ a["W2"].T                                    # summed before the rounding
        h = np.zeros((x.shape[0], self.hidden), np.int64) if h0 is None else np.array(h0)
        scores = np.empty((x.shape[0], x.shape[1], self.n_classes), np.int64)
        states = np.empty((x.shape[0], x.shape[1], self.hidden), np.int64)
        for t in range(x.shape[1]):
            tu = sat(rshift_round(h @ a["U1"].T, s["tu"]), 8)
            pre = rshift_round(pw[:, t] + tu @ a["U2"].T, s["pw"])
            z = np.clip((pre + bz + ONE8) >> 1, 0, ONE8)
            c = np.clip(pre + bc, -ONE8, ONE8 - 1)
            g = rshift_round(self.zeta * (ONE8 - z), QG8) + self.nu
            h = sat(rshift_round(2 * z * h + g * c, 8), 8)
            states[:, t] = h
            scores[:, t] = h @ a["Wc"].T + bcls
        return (scores, states) if return_state else scores

    # --- safety ---------------------------------------------------------------------------------
    def check_no_overflow(self):
        """Prove from the weights that every 32-bit accumulator stays in range for any input."""
        if self.state_bits == 8:
            return self._check_no_overflow8()
        a, s = self.arrays, self.shifts()
        row = {m: int(np.abs(a[m]).sum(axis=1).max(initial=0)) for m in MATRICES}

        def shifted(bound: int, shift: int) -> int:  # worst case of rshift_round(+-bound)
            return bound << -shift if shift <= 0 else (bound >> shift) + 1

        bias = {b: shifted(127, s[b]) for b in BIASES}
        bounds = {
            "W1 . x": row["W1"] * 128,
            "U1 . h": row["U1"] * 32768,
            "W2 . tw": row["W2"] * 32768,
            "U2 . tu": row["U2"] * 32768,
            "pre + bias": shifted(row["W2"] * 32768, s["pw"]) + shifted(row["U2"] * 32768, s["pu"])
            + max(bias["bz"], bias["bc"]) + ONE,
            "z h + g c": ONE * 32768 + 2 * ONE * ONE,
            "Wc . h + bcls": row["Wc"] * 32768 + bias["bcls"],
        }
        for what, bound in bounds.items():
            if bound > INT32[1]:
                raise KwsError(f"integer model could overflow int32 in {what} (bound {bound})")

    def _check_no_overflow8(self):
        """state_bits 8: every vector is int8 (|v| <= 128); the same bounds, in int32. The
        row sums also stay inside 24 bits (what the AVR kernel sums in) when rows are at most
        255 long; kws_model.c checks its own cases at compile time."""
        a, s = self.arrays, self.shifts()
        row = {m: int(np.abs(a[m]).sum(axis=1).max(initial=0)) for m in MATRICES}
        rec = int((np.abs(a["W2"]).sum(axis=1) + np.abs(a["U2"]).sum(axis=1)).max(initial=0))

        def shifted(bound: int, shift: int) -> int:  # worst case of rshift_round(+-bound)
            return bound << -shift if shift <= 0 else (bound >> shift) + 1

        bias = {b: shifted(127, s[b]) for b in BIASES}
        bounds = {
            "W1 . x": row["W1"] * 128,
            "U1 . h": row["U1"] * 128,
            "W2 . tw + U2 . tu": rec * 128,
            "pre + bias": shifted(rec * 128, s["pw"]) + max(bias["bz"], bias["bc"]) + ONE8,
            "2 z h + g c": 2 * ONE8 * 128 + 254 * 128,
            "Wc . h + bcls": row["Wc"] * 128 + bias["bcls"],
        }
        for what, bound in bounds.items():
            if bound > INT32[1]:
                raise KwsError(f"integer model could overflow int32 in {what} (bound {bound})")

    # --- bytes ----------------------------------------------------------------------------------
    def storage(self) -> dict[str, int]:
        """Bytes of every array the firmware stores (see `firmware_arrays`)."""
        return {name: arr.nbytes for name, arr in self.firmware_arrays().items()}

    def n_bytes(self) -> int:
        return sum(self.storage().values())

    def firmware_arrays(self) -> dict[str, np.ndarray]:
        """The exact byte arrays the firmware stores, in storage order.

        Matrices: values row-major, int8, or int4 packed two per byte (low nibble first);
        a `sparse` matrix stores a row-major bitmask (1 bit per entry, LSB first) and only
        its non-zero values. Biases: int8. `params`: the exponents' shifts and zeta, nu.
        """
        out = {}
        for m in MATRICES:
            w = self.arrays[m]
            if self.formats[m] == "sparse":
                out[f"{m}_mask"] = np.packbits((w != 0).flatten(), bitorder="little")
                values = w.flatten()[w.flatten() != 0]
            else:
                values = w.flatten()
            out[m] = pack_values(values, self.weight_bits)
        for b in BIASES:
            out[b] = self.arrays[b].astype(np.int8).view(np.uint8)
        s = self.shifts()
        params = [s[k] for k in ("tw", "tu", "pw", "pu", "bz", "bc", "bcls")]
        out["params"] = np.concatenate([
            np.array(params, np.int8).view(np.uint8),
            np.array([self.zeta, self.nu], "<i2" if self.state_bits == 16 else np.uint8)
            .view(np.uint8)])
        return out

    def macs_per_frame(self) -> int:
        nz = {m: int((self.arrays[m] != 0).sum()) for m in MATRICES}
        return sum(nz.values())


def pack_values(values: np.ndarray, bits: int) -> np.ndarray:
    v = np.asarray(values, np.int64)
    if bits == 8:
        return v.astype(np.int8).view(np.uint8)
    nib = (v & 0xF).astype(np.uint8)
    if len(nib) % 2:
        nib = np.concatenate([nib, np.zeros(1, np.uint8)])
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def best_format(w: np.ndarray, bits: int) -> str:
    """`sparse` (bitmask + non-zero values) when it takes fewer bytes than `dense`."""
    dense = len(pack_values(w.flatten(), bits))
    sparse = -(-w.size // 8) + len(pack_values(w.flatten()[w.flatten() != 0], bits))
    return "sparse" if sparse < dense else "dense"


def from_torch(model) -> IntModel:
    """The integer model a trained `kws.training.model.FastGRNN` runs in its quant mode."""
    q = model.integer_weights()
    arrays = {k: q[k][0].detach().cpu().numpy().round().astype(np.int64)
              for k in MATRICES + BIASES}
    exps = {k: int(q[k][1]) for k in MATRICES + BIASES}
    d = model.describe()
    return IntModel(n_in=d["n_in"], hidden=d["hidden"], rank_w=d["rank_w"],
                    rank_u=d["rank_u"], n_classes=d["n_classes"], qx=d["qx"],
                    weight_bits=d["weight_bits"], arrays=arrays, exponents=exps,
                    zeta=int(round(float(q["zeta"][0].detach()))),
                    nu=int(round(float(q["nu"][0].detach()))),
                    state_bits=d.get("state_bits", 16))


def quantize_features(features: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      qx: int) -> np.ndarray:
    """Log-mel features -> the int8 frames the board receives: per-bin normalisation folded
    into the input quantisation. Same float32 normalisation and rounding as the torch path."""
    norm = (np.asarray(features, np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    return np.clip(np.floor(norm.astype(np.float64) * 2.0 ** qx + 0.5), -128, 127).astype(np.int64)
