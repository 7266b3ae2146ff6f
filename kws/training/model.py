"""FastGRNN (Kusupati et al., NeurIPS 2018) with low-rank, sparse, quantisation-aware weights.

    pre = W x_t + U h_{t-1},   W = W2 W1,  U = U2 U1   (low rank)
    z   = quantSigm(pre + b_z),  c = quantTanh(pre + b_c)
    h_t = z * h_{t-1} + (sigmoid(zeta) (1 - z) + sigmoid(nu)) * c
    scores_t = W_c h_t + b_c

The same module runs in two modes:

- float (`quant=False`): ordinary float32 training on normalised features;
- integer (`quant=True`): the exact integer arithmetic of `kws.quant.arith` (`state_bits` 16
  or 8: the two arithmetics written there), carried in float64
  (every value is an integer, every product and sum exact) with straight-through gradients
  for rounding. Its scores equal `kws.quant.intmodel.IntModel.run` bit for bit.

Sparsity: each factor has a 0/1 mask buffer applied in every forward pass and to the weights
after every optimiser step (`apply_masks`), so the number of non-zeros is exact at all times.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kws.quant.arith import INT8, INT16, ONE, ONE8, QA, QG8, QH, QS8, QT8, weight_exponent

FACTORS = ("W1", "W2", "U1", "U2", "Wc")  # the matrices that can be sparsified
WEIGHT_BITS_RANGE = {8: 127, 4: 7}


# --- straight-through integer helpers (torch, float64) --------------------------------------

def ste(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """`rounded` in the forward pass, the gradient of `x` in the backward pass."""
    return x + (rounded - x).detach()


def rshift_round(v: torch.Tensor, s: int) -> torch.Tensor:
    """kws.quant.arith.rshift_round on integer-valued float64 tensors, exact, with STE gradient."""
    scaled = v * 2.0 ** -s
    if s <= 0:
        return scaled
    return ste(scaled, torch.floor(scaled + 0.5))


def sat(v: torch.Tensor, lo_hi: tuple[int, int]) -> torch.Tensor:
    return torch.clamp(v, lo_hi[0], lo_hi[1])


def quantize_weight(w: torch.Tensor, bits: int, exponent: int | None = None):
    """(integer-valued tensor with STE, exponent): w ~ w_int * 2**-exponent."""
    top = WEIGHT_BITS_RANGE[bits]
    if exponent is None:
        exponent = weight_exponent(float(w.detach().abs().max()), bits)
    scaled = w.double() * 2.0 ** exponent
    return ste(scaled, torch.clamp(torch.floor(scaled + 0.5), -top, top)), exponent


def scale_exponent(w: torch.Tensor, bits: int, rule: str = "max") -> int:
    """The power-of-two exponent of a weight matrix: `max`, the largest that keeps every
    weight in range (weight_exponent); `mse`, that or up to two steps finer, whichever gives
    the least squared error with the largest weights clipped (at 4 bits a few outliers
    otherwise leave most weights on two or three levels)."""
    e = weight_exponent(float(w.abs().max()), bits)
    if rule == "max":
        return e
    top, w = WEIGHT_BITS_RANGE[bits], w.double()

    def error(k):
        q = torch.clamp(torch.floor(w * 2.0 ** k + 0.5), -top, top) * 2.0 ** -k
        return float(((w - q) ** 2).sum())
    return min((e, e + 1, e + 2), key=error)


def quantize_input(x: torch.Tensor, qx: int) -> torch.Tensor:
    """Normalised float features -> int8 values (as float64), as the host sends them."""
    scaled = x.double() * 2.0 ** qx
    return ste(scaled, sat(torch.floor(scaled + 0.5), INT8))


def quant_sigm(v):
    return torch.clamp((v + 1) / 2, 0, 1)


def quant_tanh(v):
    return torch.clamp(v, -1, 1)


# --- the model --------------------------------------------------------------------------------

class FastGRNN(nn.Module):
    def __init__(self, n_in: int, hidden: int, rank_w: int, rank_u: int, n_classes: int,
                 weight_bits: int = 8, qx: int = 5, state_bits: int = 16,
                 weight_scale: str = "max"):
        super().__init__()
        self.n_in, self.hidden, self.n_classes = n_in, hidden, n_classes
        self.weight_bits, self.qx, self.state_bits = weight_bits, qx, state_bits
        self.weight_scale = weight_scale   # how a matrix's exponent is chosen (scale_exponent)
        self.W1 = nn.Parameter(torch.randn(rank_w, n_in) / math.sqrt(n_in))
        self.W2 = nn.Parameter(torch.randn(hidden, rank_w) / math.sqrt(rank_w))
        self.U1 = nn.Parameter(torch.randn(rank_u, hidden) / math.sqrt(hidden))
        self.U2 = nn.Parameter(torch.randn(hidden, rank_u) / math.sqrt(rank_u))
        self.bz = nn.Parameter(torch.ones(hidden))
        self.bc = nn.Parameter(torch.ones(hidden))
        self.zeta = nn.Parameter(torch.tensor(1.0))   # paper's init, before the sigmoid
        self.nu = nn.Parameter(torch.tensor(-4.0))
        self.Wc = nn.Parameter(torch.randn(n_classes, hidden) / math.sqrt(hidden))
        self.bcls = nn.Parameter(torch.zeros(n_classes))
        for name in FACTORS:
            self.register_buffer(f"mask_{name}", torch.ones_like(getattr(self, name)))
        self.exponents: dict[str, int] | None = None  # frozen for the last QAT epochs
        self.smooth = False  # float mode with sigmoid/tanh instead of quantSigm/quantTanh

    # sparsity ----------------------------------------------------------------------------------
    def masked(self, name: str) -> torch.Tensor:
        return getattr(self, name) * getattr(self, f"mask_{name}")

    @torch.no_grad()
    def apply_masks(self):
        for name in FACTORS:
            getattr(self, name).mul_(getattr(self, f"mask_{name}"))

    @torch.no_grad()
    def hard_threshold(self, density: dict[str, float]):
        """Keep the largest-magnitude `density[name]` fraction of each factor (IHT step)."""
        for name in FACTORS:
            w = getattr(self, name)
            k = max(1, round(density.get(name, 1.0) * w.numel()))
            mask = torch.zeros(w.numel(), device=w.device)
            mask[w.detach().abs().flatten().argsort(descending=True, stable=True)[:k]] = 1
            getattr(self, f"mask_{name}").copy_(mask.view_as(w))
        self.apply_masks()

    def nnz(self) -> dict[str, int]:
        return {n: int((getattr(self, n) * getattr(self, f"mask_{n}") != 0).sum())
                for n in FACTORS}

    # forward -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, quant: bool = False) -> torch.Tensor:
        """Scores for every frame, [B, T, classes]. `x`: normalised features [B, T, n_in].

        With `quant`, the integer scores (see `forward_int`) in real units.
        """
        if not quant:
            return self._forward_float(x)
        scores = self.forward_int(quantize_input(x, self.qx))
        qs = QH if self.state_bits == 16 else QS8
        return (scores * 2.0 ** -(self.integer_weights()["Wc"][1] + qs)).float()

    def forward_int(self, xq: torch.Tensor) -> torch.Tensor:
        """Integer scores (float64 holding int32 values) for int8-valued inputs [B, T, n_in]."""
        if self.state_bits == 8:
            return self._forward_int8(xq.double())
        return self._forward_int(xq.double())

    def _forward_float(self, x):
        W = self.masked("W2") @ self.masked("W1")
        U = self.masked("U2") @ self.masked("U1")
        wx = x @ W.T                                           # all frames at once
        h = x.new_zeros(x.shape[0], self.hidden)
        zeta, nu = torch.sigmoid(self.zeta), torch.sigmoid(self.nu)
        hs = []
        for t in range(x.shape[1]):
            pre = wx[:, t] + h @ U.T
            if self.smooth:
                z, c = torch.sigmoid(pre + self.bz), torch.tanh(pre + self.bc)
            else:
                z, c = quant_sigm(pre + self.bz), quant_tanh(pre + self.bc)
            h = z * h + (zeta * (1 - z) + nu) * c
            hs.append(h)
        return torch.stack(hs, 1) @ self.masked("Wc").T + self.bcls

    def load_float_weights(self, state: dict):
        """Load a state dict; masks it lacks (older models) are all ones, as they were."""
        missing = self.load_state_dict(state, strict=False).missing_keys
        if any(not k.startswith("mask_") for k in missing):
            raise KeyError(f"missing weights {missing}")

    def integer_weights(self) -> dict[str, tuple[torch.Tensor, int]]:
        """Every stored array as (integer-valued float64 tensor with STE, exponent)."""
        frozen = self.exponents or {}
        out = {}
        shared = {}
        if self.state_bits == 8:  # W2 and U2 share one exponent: one sum W2 tw + U2 tu
            both = torch.cat([self.masked(n).detach().flatten() for n in ("W2", "U2")])
            e = scale_exponent(both, self.weight_bits, self.weight_scale)
            shared = {"W2": e, "U2": e}
        for name in FACTORS:
            e = frozen.get(name, shared.get(name))
            if e is None:
                e = scale_exponent(self.masked(name).detach(), self.weight_bits,
                                   self.weight_scale)
            out[name] = quantize_weight(self.masked(name), self.weight_bits, e)
        for name in ("bz", "bc", "bcls"):  # biases are int8 whatever the weight width
            out[name] = quantize_weight(getattr(self, name), 8, frozen.get(name))
        for name in ("zeta", "nu"):        # sigmoid(.) in Q14 (state_bits 8: Q7, at most 127)
            if self.state_bits == 8:
                s = torch.sigmoid(getattr(self, name)).double() * ONE8
                out[name] = (ste(s, torch.clamp(torch.floor(s + 0.5), 0, ONE8 - 1)), QG8)
            else:
                s = torch.sigmoid(getattr(self, name)).double() * ONE
                out[name] = (ste(s, torch.floor(s + 0.5)), QH)
        return out

    def gate_candidates(self) -> list[dict[str, int]]:
        """The integer sigmoid(zeta), sigmoid(nu) that rounding could give: each one's two
        neighbouring integers (within the arithmetic's range), every combination."""
        one, top = (ONE8, ONE8 - 1) if self.state_bits == 8 else (ONE, ONE)
        near = {}
        for name in ("zeta", "nu"):
            s = float(torch.sigmoid(getattr(self, name).detach().double())) * one
            near[name] = sorted({min(max(math.floor(s), 0), top), min(max(math.ceil(s), 0), top)})
        return [{"zeta": z, "nu": n} for z in near["zeta"] for n in near["nu"]]

    def fix_gates(self, values: dict[str, int]):
        """sigmoid(zeta), sigmoid(nu) at these integers (the middle of their rounding bins),
        no longer trained: a straight-through gradient makes a scalar that sits near a rounding
        edge flip between two integers epoch after epoch, and with it the whole integer model
        (nu at 1/128 against 2/128: 8 to 12 points of validation accuracy)."""
        one = ONE8 if self.state_bits == 8 else ONE
        for name, v in values.items():
            p = min(max(v, 0.25), one - 0.25) / one    # 0 and ONE: inside the bin, short of it
            with torch.no_grad():
                getattr(self, name).fill_(math.log(p / (1 - p)))
        self.freeze_gates()

    def freeze_gates(self):
        for name in ("zeta", "nu"):
            getattr(self, name).requires_grad_(False)

    def freeze_exponents(self):
        self.exponents = {k: e for k, (_, e) in self.integer_weights().items()}

    def _forward_int(self, xq):
        q = self.integer_weights()
        (W1, e1), (W2, e2), (U1, eu1), (U2, eu2), (Wc, ec) = (
            q[n] for n in ("W1", "W2", "U1", "U2", "Wc"))
        bz = rshift_round(q["bz"][0], q["bz"][1] - QH)
        bc = rshift_round(q["bc"][0], q["bc"][1] - QH)
        bcls = rshift_round(q["bcls"][0], q["bcls"][1] - (ec + QH))
        zeta, nu = q["zeta"][0], q["nu"][0]
        tw_all = sat(rshift_round(xq @ W1.T, e1 + self.qx - QA), INT16)
        pw_all = rshift_round(tw_all @ W2.T, e2 + QA - QH)
        h = xq.new_zeros(xq.shape[0], self.hidden)
        hs = []
        for t in range(xq.shape[1]):
            tu = sat(rshift_round(h @ U1.T, eu1 + QH - QA), INT16)
            pre = pw_all[:, t] + rshift_round(tu @ U2.T, eu2 + QA - QH)
            z = torch.clamp(ste((pre + bz + ONE) / 2, torch.floor((pre + bz + ONE) / 2)), 0, ONE)
            c = torch.clamp(pre + bc, -ONE, ONE)
            g = rshift_round(zeta * (ONE - z), QH) + nu
            h = sat(rshift_round(z * h + g * c, QH), INT16)
            hs.append(h)
        return torch.stack(hs, 1) @ Wc.T + bcls

    def _forward_int8(self, xq):
        """state_bits 8: kws.quant.arith's second arithmetic (IntModel._run8), exactly."""
        q = self.integer_weights()
        (W1, e1), (W2, e2), (U1, eu1), (U2, eu2), (Wc, ec) = (
            q[n] for n in ("W1", "W2", "U1", "U2", "Wc"))
        assert e2 == eu2
        bz = rshift_round(q["bz"][0], q["bz"][1] - QG8)
        bc = rshift_round(q["bc"][0], q["bc"][1] - QG8)
        bcls = rshift_round(q["bcls"][0], q["bcls"][1] - (ec + QS8))
        zeta, nu = q["zeta"][0], q["nu"][0]
        tw_all = sat(rshift_round(xq @ W1.T, e1 + self.qx - QT8), INT8)
        pw_all = tw_all @ W2.T
        h = xq.new_zeros(xq.shape[0], self.hidden)
        hs = []
        for t in range(xq.shape[1]):
            tu = sat(rshift_round(h @ U1.T, eu1 + QS8 - QT8), INT8)
            pre = rshift_round(pw_all[:, t] + tu @ U2.T, e2 + QT8 - QG8)
            zz = (pre + bz + ONE8) / 2
            z = torch.clamp(ste(zz, torch.floor(zz)), 0, ONE8)
            c = torch.clamp(pre + bc, -ONE8, ONE8 - 1)
            g = rshift_round(zeta * (ONE8 - z), QG8) + nu
            h = sat(rshift_round(2 * z * h + g * c, 8), INT8)
            hs.append(h)
        return torch.stack(hs, 1) @ Wc.T + bcls

    def describe(self) -> dict:
        d = {"arch": "fastgrnn", "n_in": self.n_in, "hidden": self.hidden,
             "rank_w": self.W1.shape[0], "rank_u": self.U1.shape[0],
             "n_classes": self.n_classes, "weight_bits": self.weight_bits, "qx": self.qx}
        if self.state_bits != 16:  # absent: 16 (older models)
            d["state_bits"] = self.state_bits
        return d


class GRUBaseline(nn.Module):
    """A plain float GRU with the same interface, for comparison and as a distillation teacher."""

    def __init__(self, n_in: int, hidden: int, n_classes: int, layers: int = 1):
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, quant: bool = False) -> torch.Tensor:
        if quant:
            raise ValueError("the GRU baseline is float only")
        return self.out(self.gru(x)[0])
