"""Training: mask invariants, determinism, resume, shipping, the model folder's checks."""

import json

import numpy as np
import pytest
import torch

from kws.config import Config, ModelConfig, TrainConfig
from kws.errors import KwsError
from kws.training.model import FACTORS, FastGRNN
from kws.quant.modelfile import load_model
from kws.training.ship import ship
from kws.training.train import Trainer, TrainingData, train


def tiny_config(sc_mini, **train_overrides) -> Config:
    t = dict(data=str(sc_mini), fallback_data="", batch_size=16, epochs_dense=1,
             epochs_sparsify=1, epochs_sparse=1, epochs_quant=2, noise_prob=0.5)
    t.update(train_overrides)
    return Config(model=ModelConfig(hidden=8, rank_w=3, rank_u=2,
                                    density={"W1": 0.5, "W2": 0.75, "U1": 0.5, "U2": 0.5}),
                  train=TrainConfig(**t))


def test_low_rank_shapes():
    m = FastGRNN(32, 24, 6, 5, 12)
    assert m.W1.shape == (6, 32) and m.W2.shape == (24, 6)
    assert m.U1.shape == (5, 24) and m.U2.shape == (24, 5) and m.Wc.shape == (12, 24)


def test_nnz_equals_target_after_every_step(sc_mini, tmp_path, monkeypatch):
    config = tiny_config(sc_mini)
    trainer = Trainer(config, tmp_path, TrainingData(config, sc_mini, tmp_path / "cache"))
    target = {n: round(config.model.density.get(n, 1.0) * getattr(trainer.model, n).numel())
              for n in FACTORS}
    seen = []
    step = trainer.opt.step

    def checked_step(*a, **k):
        out = step(*a, **k)
        seen.append(trainer.epoch)
        return out

    monkeypatch.setattr(trainer.opt, "step", checked_step)
    nnz_after = []
    original_apply = trainer.model.apply_masks

    def apply_and_count():
        original_apply()
        if trainer.epoch >= 2:
            nnz_after.append(trainer.model.nnz())

    monkeypatch.setattr(trainer.model, "apply_masks", apply_and_count)
    for _ in range(2):          # dense, sparsify: thresholding reaches the target at its end
        trainer.run_epoch()
        trainer.epoch += 1
    assert trainer.model.nnz() == target
    for _ in range(3):          # sparse, quant, quant: the support is fixed, nnz exact each step
        trainer.run_epoch()
        trainer.epoch += 1
    assert len(nnz_after) == sum(1 for e in seen if e >= 2) > 0
    assert all(n == target for n in nnz_after)


def test_same_seed_same_model_and_resume_continues(sc_mini, tmp_path):
    config = tiny_config(sc_mini)
    a = train(config, tmp_path / "a", progress=lambda *_: None)
    b = train(config, tmp_path / "b", progress=lambda *_: None)
    ha = ship(a, config, "a", tmp_path / "ma")["hash"]
    assert ship(b, config, "b", tmp_path / "mb")["hash"] == ha

    # interrupt after 3 epochs (as Ctrl-C would, checkpoint kept), then --resume
    import kws.training.train as kt
    calls = {"n": 0}
    real = kt.Trainer.run_epoch

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self)

    kt.Trainer.run_epoch = interrupting
    try:
        with pytest.raises(KwsError, match="--resume"):
            train(config, tmp_path / "c", progress=lambda *_: None)
    finally:
        kt.Trainer.run_epoch = real
    with pytest.raises(KwsError, match="already holds a run"):
        train(config, tmp_path / "c", progress=lambda *_: None)
    c = train(config, tmp_path / "c", resume=True, progress=lambda *_: None)
    assert len(c["history"]) == 5
    assert ship(c, config, "c", tmp_path / "mc")["hash"] == ha
    run = tmp_path / "a"
    assert (run / "metrics.csv").exists() and (run / "curves.png").exists()
    assert (run / "config.yaml").exists()


def test_shipping_refuses_a_model_over_budget(sc_mini, tmp_path):
    config = tiny_config(sc_mini, epochs_dense=1, epochs_sparsify=0, epochs_sparse=0,
                         epochs_quant=1)
    result = train(config, tmp_path / "r", progress=lambda *_: None)
    over = Config(model=ModelConfig(hidden=8, rank_w=3, rank_u=2, budget_bytes=100),
                  train=config.train)
    with pytest.raises(KwsError, match=r"over its budget of 100 by \d+"):
        ship(result, over, "x", tmp_path / "m")
    assert not (tmp_path / "m").exists()
    doc = ship(result, config, "ok", tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert model.n_bytes == doc["bytes"]["total"] == model.int_model.n_bytes()


@pytest.fixture
def shipped(sc_mini, tmp_path):
    config = tiny_config(sc_mini, epochs_dense=1, epochs_sparsify=0, epochs_sparse=0,
                         epochs_quant=1)
    ship(train(config, tmp_path / "r", progress=lambda *_: None), config, "m", tmp_path / "m")
    return tmp_path / "m"


def test_model_file_errors(shipped, tmp_path):
    path = shipped / "model.json"
    text = path.read_text()
    with pytest.raises(KwsError, match="no model at"):
        load_model(tmp_path / "nowhere")
    path.write_text(text[: len(text) // 2])
    with pytest.raises(KwsError, match="truncated"):
        load_model(shipped)
    doc = json.loads(text)
    doc["integer"]["arrays"]["W1"][0][0] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(KwsError, match="hash mismatch"):
        load_model(shipped)
    doc = json.loads(text)
    doc["version"] = 0
    path.write_text(json.dumps(doc))
    with pytest.raises(KwsError, match="format version 0"):
        load_model(shipped)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(KwsError, match="not a kws model"):
        load_model(shipped)


def test_eval_reports_the_agreed_keys(shipped, sc_mini):
    from kws.checks.evaluate import evaluate
    r = evaluate(shipped, sc_mini, split="all")
    for key in ("n_clips", "accuracy_float", "accuracy_int", "model_bytes",
                "per_class_accuracy", "confusion_matrix"):
        assert key in r
    assert r["n_clips"] == np.sum(r["confusion_matrix"])
    assert 0 <= r["accuracy_int"] <= 1
    # the other class word by word adds up to its row of the confusion matrix
    k = r["classes"].index("_unknown_")
    row = r["confusion_matrix"][k]
    words = r["other_words"]
    assert set(words) == {"bed", "zero"}                  # sc_mini's two other words
    assert sum(w["clips"] for w in words.values()) == sum(row)
    assert sum(w["correct"] for w in words.values()) == row[k]
    for j, c in enumerate(r["classes"]):
        if j != k:
            assert sum(w["heard_as"].get(c, 0) for w in words.values()) == row[j]


def test_other_words_pool_and_print_worst_first():
    from types import SimpleNamespace

    from kws.checks.evaluate import format_other_words, other_words, pooled_other_words
    classes = ["_silence_", "_unknown_", "yes", "no"]
    clips = [SimpleNamespace(word=w) for w in ["nine", "nine", "nine", "bed", "yes", "x"]]
    y = np.array([1, 1, 1, 1, 2, 0])
    pred = np.array([3, 3, 1, 1, 2, 0])
    one = other_words(clips, y, pred, classes, "_unknown_")
    assert one == {"bed": {"clips": 1, "correct": 1, "heard_as": {}},
                   "nine": {"clips": 3, "correct": 1, "heard_as": {"no": 2}}}
    both = pooled_other_words([{"other_words": one}, {"other_words": one}, {}])
    assert both["nine"] == {"clips": 6, "correct": 2, "heard_as": {"no": 4}}
    lines = format_other_words(both)
    assert lines[0].split()[:3] == ["nine", "6", "0.33"] and "heard as no 4" in lines[0]
    assert other_words(clips, y, pred, classes, None) == {}


def test_an_ensemble_of_teachers_teaches_the_mean_of_their_softened_outputs(sc_mini, tmp_path):
    """train.teacher may list several run folders (of any architecture): the distillation
    target is the mean of their softened clip decisions; one folder is one teacher."""
    from kws.training.train import distill_target, load_teachers

    plain = tiny_config(sc_mini, epochs_sparsify=0, epochs_sparse=0, epochs_quant=0)
    a = tmp_path / "a"
    train(plain, a, progress=lambda *_: None)
    b = tmp_path / "b"
    train(tiny_config(sc_mini, epochs_sparsify=0, epochs_sparse=0, epochs_quant=0, seed=1), b,
          progress=lambda *_: None)
    both = tiny_config(sc_mini, teacher=(str(a), str(b)), distill_weight=0.5)
    ta, tb = load_teachers(both)
    x = torch.randn(4, 20, 32)
    pa, pb = (torch.softmax(t(x)[:, -3:].mean(1) / 2.0, 1) for t in (ta, tb))
    assert not torch.allclose(pa, pb)                   # two different teachers ...
    torch.testing.assert_close(distill_target([ta, tb], x, 3, 2.0), (pa + pb) / 2)
    (one,) = load_teachers(tiny_config(sc_mini, teacher=str(a), distill_weight=0.5))
    torch.testing.assert_close(distill_target([one], x, 3, 2.0), pa)
    run = train(both, tmp_path / "student", progress=lambda *_: None)   # ... teach one student
    assert np.isfinite(run["history"][-1]["loss"])
    with pytest.raises(KwsError, match="needs train.teacher"):
        load_teachers(tiny_config(sc_mini, distill_weight=0.5))
    # a teacher or a starting point trained on other features is an error, not a silent mismatch
    from dataclasses import replace
    pcen = replace(both, features=replace(both.features, frontend="pcen"))
    with pytest.raises(KwsError, match="train.teacher: .* other features: frontend log_mel"):
        load_teachers(pcen)
    with pytest.raises(KwsError, match="train.init_from: .* other features: frontend log_mel"):
        train(replace(pcen, train=replace(pcen.train, teacher="", distill_weight=0.0,
                                          init_from=str(a))), tmp_path / "c",
              progress=lambda *_: None)


@pytest.mark.parametrize("state_bits", [8, 16])
def test_fixed_gates_are_the_chosen_integers_and_stop_training(state_bits):
    m = FastGRNN(10, 6, 2, 2, 3, state_bits=state_bits)
    one = 128 if state_bits == 8 else 16384
    with torch.no_grad():                      # sigmoid(nu) * ONE = 1.4995: the rounding edge
        m.nu.fill_(float(np.log(1.4995 / (one - 1.4995))))
        m.zeta.fill_(9.0)                      # near ONE (int8: capped at 127)
    cands = m.gate_candidates()
    assert {c["nu"] for c in cands} == {1, 2}
    s = one / (1 + np.exp(-9.0))
    assert {c["zeta"] for c in cands} == ({127} if state_bits == 8
                                          else {int(np.floor(s)), int(np.ceil(s))})
    for values in ({"zeta": cands[0]["zeta"], "nu": 2}, {"zeta": 0, "nu": 0},
                   {"zeta": one - 1 if state_bits == 8 else one, "nu": 1}):
        m.fix_gates(values)
        q = m.integer_weights()
        assert (int(q["zeta"][0]), int(q["nu"][0])) == (values["zeta"], values["nu"])
    assert not m.zeta.requires_grad and not m.nu.requires_grad
    m(torch.randn(2, 5, 10), quant=True).sum().backward()
    assert m.zeta.grad is None and m.nu.grad is None and m.W1.grad is not None


def test_gates_on_validation_fixes_the_best_and_keeps_them(sc_mini, tmp_path, monkeypatch):
    import kws.training.train as kt
    config = tiny_config(sc_mini, epochs_sparsify=0, epochs_sparse=0, epochs_quant=3,
                         gates_on_validation=True)
    trainer = Trainer(config, tmp_path, TrainingData(config, sc_mini, tmp_path / "cache"))
    with torch.no_grad():
        trainer.model.nu.fill_(float(np.log(1.4995 / (16384 - 1.4995))))
    scored = []

    def fake_accuracy(model, x, y, pool, quant, batch=512):   # validation prefers nu = 2
        nu = int(model.integer_weights()["nu"][0])
        scored.append(nu)
        return 0.9 if nu == 2 else 0.5

    trainer.run_epoch()                          # dense: nothing chosen, the gates train
    trainer.epoch += 1
    assert trainer.model.nu.requires_grad and not scored
    monkeypatch.setattr(kt, "accuracy", fake_accuracy)
    rows = []
    for _ in range(3):                           # quant: chosen once, at its first epoch
        rows.append(trainer.run_epoch())
        trainer.epoch += 1
    assert sorted(set(scored[:2])) == [1, 2]
    assert [r["nu_q"] for r in rows] == [2, 2, 2]
    assert not trainer.model.nu.requires_grad
