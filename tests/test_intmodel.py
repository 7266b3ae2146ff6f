"""The NumPy integer reference against the torch integer mode, and the byte count by hand."""

import numpy as np
import pytest
import torch

from kws.quant.arith import rshift_round
from kws.errors import KwsError
from kws.quant.intmodel import IntModel, from_torch, pack_values, quantize_features
from kws.training.model import FastGRNN


def random_model(seed, bits=8, hidden=16, rank_w=5, rank_u=4, density=None, state_bits=16):
    torch.manual_seed(seed)
    m = FastGRNN(32, hidden, rank_w, rank_u, 12, weight_bits=bits, state_bits=state_bits)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    if density:
        m.hard_threshold(density)
    return m


def test_rshift_round_is_round_half_up():
    v = np.array([5, 6, 7, -5, -6, -7, 4, -4])
    assert list(rshift_round(v, 2)) == [1, 2, 2, -1, -1, -2, 1, -1]
    assert list(rshift_round(v, -2)) == list(v * 4)


@pytest.mark.parametrize("seed,bits,density", [(0, 8, None), (1, 4, None),
                                               (2, 8, {"W1": 0.3, "U2": 0.5}), (3, 4, {"W2": 0.2})])
def test_numpy_reference_equals_torch_integer_mode_bit_for_bit(seed, bits, density):
    m = random_model(seed, bits, density=density)
    x = torch.randn(6, 40, 32) * 1.5  # includes inputs that saturate int8
    im = from_torch(m)
    xq = quantize_features(x.numpy(), np.zeros(32), np.ones(32), m.qx)
    with torch.no_grad():
        torch_scores = m.forward_int(torch.from_numpy(xq)).numpy()
        real = m(x, quant=True).numpy()
    np.testing.assert_allclose(real, torch_scores / 2.0 ** (im.exponents["Wc"] + 14), rtol=1e-6)
    assert np.abs(xq).max() == 128 or np.abs(xq).max() == 127
    np.testing.assert_array_equal(im.run(xq), torch_scores.astype(np.int64))


@pytest.mark.parametrize("seed,bits,density,scale", [
    (0, 8, None, 1.5), (1, 4, None, 1.5), (2, 8, {"W1": 0.3, "U2": 0.5}, 1.5),
    (3, 8, None, 6.0), (4, 4, {"W2": 0.2}, 0.3)])
def test_int8_state_reference_equals_torch_integer_mode_bit_for_bit(seed, bits, density, scale):
    """state_bits 8: IntModel._run8 == FastGRNN._forward_int8, exactly (W2 and U2 sharing one
    exponent); the C kernel's golden cases add saturating models (firmware/tests/golden.py)."""
    m = random_model(seed, bits, density=density, state_bits=8)
    x = torch.randn(6, 40, 32) * scale
    im = from_torch(m)
    assert im.state_bits == 8 and im.exponents["W2"] == im.exponents["U2"]
    assert 0 <= im.zeta <= 127 and 0 <= im.nu <= 127
    xq = quantize_features(x.numpy(), np.zeros(32), np.ones(32), m.qx)
    with torch.no_grad():
        torch_scores = m.forward_int(torch.from_numpy(xq)).numpy()
        real = m(x, quant=True).numpy()
    np.testing.assert_allclose(real, torch_scores / 2.0 ** (im.exponents["Wc"] + 6), rtol=1e-6)
    scores, h = im.run(xq, return_state=True)
    np.testing.assert_array_equal(scores, torch_scores.astype(np.int64))
    assert h.min() >= -128 and h.max() <= 127
    # the 16-bit arithmetic of the same weights is another function
    im16 = from_torch(random_model(seed, bits, density=density))
    assert not np.array_equal(im16.run(xq), scores)


def test_int8_state_overflow_proof_and_refusals():
    im = from_torch(random_model(6, state_bits=8))
    im.check_no_overflow()
    args = (32, 16, 5, 4, 12, 5, 8)
    exps = dict(im.exponents, bcls=im.exponents["Wc"] + 6 + 1 - 30)  # bcls' = b << 29
    with pytest.raises(KwsError, match="overflow int32 in Wc . h \\+ bcls"):
        IntModel(*args, dict(im.arrays), exps, im.zeta, im.nu, state_bits=8).check_no_overflow()
    exps = dict(im.exponents, bz=7 - 28)                            # bz' = b << 28
    with pytest.raises(KwsError, match="overflow int32 in pre \\+ bias"):
        IntModel(*args, dict(im.arrays), exps, im.zeta, im.nu, state_bits=8).check_no_overflow()
    with pytest.raises(KwsError, match="one exponent for W2 and U2"):
        IntModel(*args, dict(im.arrays), dict(im.exponents, U2=im.exponents["W2"] + 1),
                 im.zeta, im.nu, state_bits=8)
    with pytest.raises(KwsError, match="zeta 128 outside"):
        IntModel(*args, dict(im.arrays), im.exponents, 128, im.nu, state_bits=8)
    with pytest.raises(KwsError, match="state_bits 12"):
        IntModel(*args, dict(im.arrays), im.exponents, im.zeta, im.nu, state_bits=12)
    # 9 bytes of params (7 shifts, zeta and nu one byte each) instead of 11
    im16 = IntModel(*args, dict(im.arrays), im.exponents, im.zeta, im.nu)
    assert im.storage()["params"] == 9 and im16.storage()["params"] == 11


@pytest.mark.parametrize("state_bits, mean_bound, max_bound", [(16, 0.005, 0.04),
                                                               (8, 0.03, 0.25)])
def test_integer_model_tracks_float_model(state_bits, mean_bound, max_bound):
    """Stated bounds: on a random model, float and integer scores (in real units) differ on
    average by at most 0.5 % of the score range and by 4 % at worst with the Q14 state; 3 %
    and 25 % with the coarser int8 state."""
    torch.manual_seed(4)
    m = FastGRNN(32, 16, 5, 4, 12, state_bits=state_bits)
    x = torch.randn(8, 60, 32)
    with torch.no_grad():
        f = m(x).numpy()
        q = m(x, quant=True).numpy()
    span = f.max() - f.min()
    assert np.abs(f - q).mean() <= mean_bound * span and np.abs(f - q).max() <= max_bound * span


def test_state_is_carried_and_batch_is_independent():
    im = from_torch(random_model(5))
    x = np.random.default_rng(0).integers(-128, 128, (3, 20, 32))
    full = im.run(x)
    one = im.run(x[1:2])
    np.testing.assert_array_equal(full[1:2], one)
    s1, h = im.run(x[:, :10], return_state=True)
    s2 = im.run(x[:, 10:], h0=h[:, -1])
    np.testing.assert_array_equal(np.concatenate([s1, s2], 1), full)


def test_byte_count_by_hand():
    """hidden 4, ranks 2/3, 5 inputs, 3 classes, int8, all dense:
    W1 10 + W2 8 + U1 12 + U2 12 + Wc 12 + bz 4 + bc 4 + bcls 3 + params (7 shifts + 2x2) 11."""
    rng = np.random.default_rng(0)
    shapes = {"W1": (2, 5), "W2": (4, 2), "U1": (3, 4), "U2": (4, 3), "Wc": (3, 4),
              "bz": (4,), "bc": (4,), "bcls": (3,)}
    arrays = {k: rng.integers(1, 100, s) for k, s in shapes.items()}
    im = IntModel(5, 4, 2, 3, 3, 5, 8, arrays, dict.fromkeys(shapes, 6), 9000, 300)
    assert im.n_bytes() == 10 + 8 + 12 + 12 + 12 + 4 + 4 + 3 + 11
    # a sparse W1 (3 of 10 non-zero): 2 mask bytes + 3 values, instead of 10
    arrays["W1"] = np.array([[0, 5, 0, 0, 0], [7, 0, 0, 0, -3]])
    im = IntModel(5, 4, 2, 3, 3, 5, 8, arrays, dict.fromkeys(shapes, 6), 9000, 300)
    assert im.formats["W1"] == "sparse" and im.storage()["W1_mask"] == 2
    assert im.n_bytes() == 76 - 10 + 2 + 3
    # int4 packs two values a byte (odd counts round up)
    arrays = {k: np.clip(v, -7, 7) for k, v in arrays.items()}
    im = IntModel(5, 4, 2, 3, 3, 5, 4, arrays, dict.fromkeys(shapes, 6), 9000, 300)
    assert im.storage()["W2"] == 4 and im.storage()["bz"] == 4
    # an odd count of int4 values packs into bytes, low nibble first, the last one padded
    packed = pack_values(np.array([1, -2, 3]), 4)
    assert packed.dtype == np.uint8 and list(packed) == [0xE1, 0x03]
    assert all(a.dtype == np.uint8 for a in im.firmware_arrays().values())


def test_bad_integer_models_are_refused():
    im = from_torch(random_model(6))
    arrays = dict(im.arrays, W1=im.arrays["W1"][:, :5])
    with pytest.raises(KwsError, match="W1 has shape"):
        IntModel(32, 16, 5, 4, 12, 5, 8, arrays, im.exponents, im.zeta, im.nu)
    exps = dict(im.exponents, W2=-6)  # a huge W2 scale: the bound check must object
    with pytest.raises(KwsError, match="overflow"):
        IntModel(32, 16, 5, 4, 12, 5, 8, dict(im.arrays), exps, im.zeta, im.nu).check_no_overflow()


def test_mse_weight_scale_clips_outliers_and_stays_bit_exact():
    from kws.training.model import scale_exponent

    w = torch.tensor([1.0] + [0.1, -0.12, 0.08, 0.11, -0.09] * 10)   # one outlier
    e_max = scale_exponent(w, 4, "max")
    assert e_max == 2                                    # 1.0 * 4 = 4 <= 7 < 8
    e_mse = scale_exponent(w, 4, "mse")
    assert e_mse in (e_max + 1, e_max + 2)               # finer: the outlier clips to 7
    assert scale_exponent(w, 8, "max") == 6              # 127 / 1.0 -> 2^6
    for rule in ("max", "mse"):
        m = random_model(5, 4)
        m.weight_scale = rule
        im = from_torch(m)
        xq = quantize_features(torch.randn(3, 20, 32).numpy(), np.zeros(32), np.ones(32), m.qx)
        with torch.no_grad():
            ref = m.forward_int(torch.from_numpy(xq)).numpy()
        np.testing.assert_array_equal(im.run(xq), ref.astype(np.int64))
    with pytest.raises(KwsError, match="weight_scale"):
        from kws.config import ModelConfig
        ModelConfig(weight_scale="minmax")
