"""kws/training/stability.py: the written rules that call a training run stalled."""

import math

from kws.training.stability import run_problems, size_problems
from kws.training.sweep import run_history, stall_problems


def history(accs, losses=None):
    losses = losses or [1.0] * len(accs)
    return [{"epoch": i + 1, "loss": l, "val_float": a, "val_int": a}
            for i, (a, l) in enumerate(zip(accs, losses))]


def test_a_healthy_run_has_no_problem():
    assert run_problems(history([0.3, 0.6, 0.8, 0.85, 0.84]), 12) == []
    assert run_problems(history([0.3, 0.6, 0.8, 0.72]), 12) == []      # 8 points: within rule


def test_nan_loss_collapse_and_chance_are_problems():
    p = run_problems(history([0.3, 0.5, 0.6], [1.0, math.nan, 2.0]), 12)
    assert len(p) == 1 and "nan at epoch 2" in p[0]
    p = run_problems(history([0.3, 0.8, 0.85, 0.6]), 12)
    assert len(p) == 1 and "from 0.850 to 0.600" in p[0]
    p = run_problems(history([0.08, 0.1, 0.12]), 12)              # never above 2x chance
    assert len(p) == 1 and "never passed 0.120" in p[0]
    assert run_problems([], 12) == ["no epoch was trained"]


def test_a_larger_model_far_below_a_smaller_one_is_flagged():
    rows = [{"name": "s1k", "bytes": 983, "int_mean": 0.80},
            {"name": "s5k", "bytes": 5495, "int_mean": 0.46},           # the stalled 5.5 KB
            {"name": "s2k", "bytes": 1943, "int_mean": 0.78},           # 2 points: not flagged
            {"name": "s512", "bytes": 507, "int_mean": 0.62}]
    p = size_problems(rows, "int_mean")
    assert len(p) == 1 and p[0].startswith("s5k (5495 B)") and "s1k" in p[0]
    assert stall_problems(rows, sizes=False) == []                     # a lever sweep: no check
    assert stall_problems(rows, sizes=True) == p
    rows[0]["problems"] = ["fold 2: the loss became nan at epoch 7"]
    assert stall_problems(rows)[0] == "s1k: fold 2: the loss became nan at epoch 7"


def test_history_is_read_back_from_the_metrics_file(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,phase,loss,lr,val_float,val_int,nnz,seconds\n"
        "1,dense,2.0,0.01,0.40,0.41,912,2.0\n2,dense,nan,0.01,0.10,0.10,912,2.0\n")
    h = run_history(tmp_path)
    assert [r["epoch"] for r in h] == ["1", "2"]
    p = run_problems(h, 12)
    assert any("nan at epoch 2" in x for x in p) and any("from 0.410 to 0.100" in x for x in p)
    assert run_history(tmp_path / "none") == []
