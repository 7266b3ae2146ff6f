"""Golden vectors for the host C test of the kernel (firmware/tests/test_kernel.c).

For each case, a folder with the model's generated `model_data.h` (kws.codegen.export.model_header)
and `golden.bin`: the inputs and the integer reference's outputs (`IntModel.run`: every
frame's state and scores). The host-compiled kernel must reproduce every value.

    .venv/bin/python firmware/tests/golden.py OUT_DIR     # writes OUT_DIR/<case>/ per case

Cases: random models int8 and int4, dense and sparse (all five matrices, odd ranks so int4
nibbles and mask bits cross row boundaries), one with large weights whose shifts are left
shifts (tw, tu, h saturate: checked by `saturation`), a tiny one, dense int8 ones with odd
shapes, and every shipped model in models/ (if any). Inputs mix uniform int8, the extremes
-128/127 and silence.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kws.quant.arith import rshift_round, sat  # noqa: E402
from kws.codegen.export import model_header  # noqa: E402
from kws.quant.intmodel import IntModel, from_torch  # noqa: E402


def random_model(seed: int, bits: int = 8, hidden: int = 24, rank_w: int = 6, rank_u: int = 6,
                 n_classes: int = 12, density: dict | None = None, scale: float = 0.5,
                 n_in: int = 32, state_bits: int = 16) -> IntModel:
    import torch

    from kws.training.model import FastGRNN

    torch.manual_seed(seed)
    m = FastGRNN(n_in, hidden, rank_w, rank_u, n_classes, weight_bits=bits,
                 state_bits=state_bits)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * scale)
    if density:
        m.hard_threshold(density)
    return from_torch(m)


def big_model(seed: int, bits: int = 8, state_bits: int = 16) -> IntModel:
    """Full-range weights with small exponents, still provably inside the accumulators.
    int16 state: tw, tu use left shifts and saturate, h saturates, biases are shifted far
    left. int8 state: tw, tu and h saturate, tw's shift is a left shift, the gates clamp;
    ZETA = NU = 127 (g up to 254)."""
    rng = np.random.default_rng(seed)
    top = 127 if bits == 8 else 7
    n_in, hidden, rank_w, rank_u, n_classes = 32, 24, 6, 6, 12
    shapes = {"W1": (rank_w, n_in), "W2": (hidden, rank_w), "U1": (rank_u, hidden),
              "U2": (hidden, rank_u), "Wc": (n_classes, hidden), "bz": (hidden,),
              "bc": (hidden,), "bcls": (n_classes,)}
    arrays = {k: rng.integers(-top if k[0] in "WU" else -127, (top if k[0] in "WU" else 127) + 1,
                              s) for k, s in shapes.items()}
    if state_bits == 8:
        exps = {"W1": -2, "W2": 4, "U1": 1, "U2": 4, "Wc": 0, "bz": 1, "bc": 9, "bcls": 0}
        gates = dict(zeta=127, nu=127, state_bits=8)
    else:
        exps = {"W1": 2, "W2": 4, "U1": 3, "U2": 4, "Wc": 0, "bz": 1, "bc": 2, "bcls": 0}
        gates = dict(zeta=16384, nu=16384)
    im = IntModel(n_in, hidden, rank_w, rank_u, n_classes, 5, bits, arrays, exps, **gates)
    im.check_no_overflow()
    return im


def tiny_model(seed: int) -> IntModel:
    rng = np.random.default_rng(seed)
    shapes = {"W1": (1, 3), "W2": (1, 1), "U1": (1, 1), "U2": (1, 1), "Wc": (1, 1),
              "bz": (1,), "bc": (1,), "bcls": (1,)}
    arrays = {k: rng.integers(-127, 128, s) for k, s in shapes.items()}
    return IntModel(3, 1, 1, 1, 1, 5, 8, arrays, dict.fromkeys(shapes, 7), 9000, 300)


def inputs(seed: int, n_in: int, n_seq: int = 3, n_frames: int = 60) -> np.ndarray:
    """int8 frames: uniform, runs at the extremes -128 / 127, and zeros."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n_seq, n_frames, n_in))
    x[:, 10:20] = rng.choice([-128, 127], (n_seq, 10, n_in))
    x[:, 20:25] = 127
    x[:, 25:30] = -128
    x[:, 30:35] = 0
    x[:, 35:] = np.clip(np.round(rng.normal(0, 40, (n_seq, n_frames - 35, n_in))), -128, 127)
    return x


def shipped_models() -> list[tuple[str, IntModel]]:
    from kws.quant.modelfile import load_model

    out = []
    for f in sorted((REPO / "models").glob("*/model.json")):
        out.append((f"shipped-{f.parent.name}", load_model(f.parent).int_model))
    return out


def cases() -> list[tuple[str, IntModel, np.ndarray]]:
    all_sparse = dict.fromkeys(("W1", "W2", "U1", "U2"), 0.25)
    out = [
        ("dense8", random_model(0, 8)),
        ("dense4", random_model(1, 4)),
        ("sparse8", random_model(2, 8, hidden=17, rank_w=5, rank_u=3, density=all_sparse)),
        ("sparse4", random_model(3, 4, hidden=17, rank_w=5, rank_u=3, n_classes=7,
                                 density=all_sparse)),
        ("mixed4", random_model(4, 4, hidden=13, rank_w=3, rank_u=5, n_classes=5,
                                density={"W1": 0.3, "U2": 0.4})),
        ("big8", big_model(5, 8)),
        ("big4", big_model(6, 4)),
        ("tiny", tiny_model(7)),
        # the int8-state arithmetic (state_bits 8)
        ("s8dense8", random_model(8, 8, state_bits=8)),
        ("s8sparse4", random_model(9, 4, hidden=17, rank_w=5, rank_u=3, n_classes=7,
                                   density=all_sparse, state_bits=8)),
        ("s8mixed8", random_model(10, 8, hidden=13, rank_w=4, rank_u=5, n_classes=5,
                                  density={"W1": 0.3, "U2": 0.4, "Wc": 0.5}, state_bits=8)),
        ("s8big8", big_model(11, 8, state_bits=8)),
        ("s8big4", big_model(12, 4, state_bits=8)),
        # dense int8 with rows that are not whole words and odd row counts (the Cortex-M DSP
        # path's tails: cols % 4 = 1, 2, 3; rows in pairs plus one)
        ("odd8", random_model(13, 8, hidden=13, rank_w=5, rank_u=7, n_classes=5, n_in=30)),
        ("s8odd8", random_model(14, 8, hidden=13, rank_w=5, rank_u=7, n_classes=5, n_in=31,
                                state_bits=8)),
    ]
    # Wc is not sparsified by training; force one case to store it sparse
    im = out[2][1]
    wc = im.arrays["Wc"].copy()
    wc[np.abs(wc) < np.percentile(np.abs(wc), 80)] = 0
    im.arrays["Wc"] = wc
    im.formats["Wc"] = "sparse"
    out += shipped_models()
    return [(name, im, inputs(i, im.n_in)) for i, (name, im) in enumerate(out)]


def saturation(im: IntModel, x: np.ndarray) -> dict[str, bool]:
    """Which saturations the inputs reach: tw, tu and h (int16, or int8 with state_bits 8)."""
    a, s = im.arrays, im.shifts()
    raw_tw = rshift_round(x @ a["W1"].T, s["tw"])
    _, h = im.run(x, return_state=True)
    h_prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], 1)
    raw_tu = rshift_round(h_prev @ a["U1"].T, s["tu"])
    bits = im.state_bits
    lim = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return {"tw": bool((raw_tw != sat(raw_tw, bits)).any()),
            "tu": bool((raw_tu != sat(raw_tu, bits)).any()),
            "h": bool(np.isin(h, lim).any())}


def write_case(folder: Path, im: IntModel, x: np.ndarray, name: str = "case") -> Path:
    """model_data.h + golden.bin for one model and inputs [n_seq, n_frames, n_in]."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_data.h").write_text(model_header(im, name=name, model_hash="golden"))
    x = np.asarray(x, np.int64)
    scores, states = im.run(x, return_state=True)
    assert scores.min() >= -(1 << 31) and scores.max() < (1 << 31)
    with open(folder / "golden.bin", "wb") as f:
        f.write(b"KWSG" + struct.pack("<5i", im.n_in, im.hidden, im.n_classes, *x.shape[:2]))
        for b in range(x.shape[0]):
            f.write(x[b].astype("<i1").tobytes())
            f.write(states[b].astype("<i2").tobytes())
            f.write(scores[b].astype("<i4").tobytes())
    return folder / "golden.bin"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: golden.py OUT_DIR", file=sys.stderr)
        return 2
    for name, im, x in cases():
        write_case(Path(argv[0]) / name, im, x, name)
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
