"""Did a training run stall? Checks on a run's history and on a sweep's sizes.

FastGRNN's promise is stable training at every size. Two ways a run can break it, each with
one written rule:

- **In a run** (`run_problems`, on the metrics of every epoch): the loss turns NaN or
  infinite; or the validation accuracy ends more than `COLLAPSE` below the best it reached
  (training fell apart and did not recover); or it never rises to twice chance.
- **Across sizes** (`size_problems`, on the rows of one sweep, same recipe at several
  budgets): a model more than `SIZE_DROP` below a smaller model of the sweep. A larger model
  holds the smaller one's capacity, so that is a training failure, not a property of the size
  (the accuracy issue's 5.5 KB run at 46 % validation beside the 1 KB one at 86 %).

`kws sweep` prints every problem and exits non-zero when there is one.
"""

from __future__ import annotations

import math

COLLAPSE = 0.10    # validation accuracy lost from its best by the end of the run
SIZE_DROP = 0.05   # accuracy below a smaller model of the same sweep


def run_problems(history: list[dict], n_classes: int) -> list[str]:
    """What went wrong in one run, from its per-epoch rows (`epoch`, `loss`, `val_float`,
    optionally `val_int`); empty when nothing did."""
    if not history:
        return ["no epoch was trained"]
    out = []
    bad = next((r for r in history if not math.isfinite(float(r["loss"]))), None)
    if bad is not None:
        out.append(f"the loss became {bad['loss']} at epoch {bad['epoch']}")
    key = "val_int" if "val_int" in history[-1] else "val_float"
    acc = [float(r[key]) for r in history if r.get(key) not in (None, "")]
    if not acc:
        return out + ["no validation accuracy was recorded"]
    best, last = max(acc), acc[-1]
    if best - last > COLLAPSE:
        out.append(f"validation accuracy fell from {best:.3f} to {last:.3f} by the last epoch")
    if best < 2 / n_classes:
        out.append(f"validation accuracy never passed {best:.3f} (chance is {1 / n_classes:.3f})")
    return out


def size_problems(rows: list[dict], key: str) -> list[str]:
    """Rows (`name`, `bytes`, `key`) of one recipe at several sizes: every model more than
    SIZE_DROP below a smaller one."""
    out = []
    for r in rows:
        smaller = [s for s in rows if s["bytes"] < r["bytes"]]
        if smaller:
            s = max(smaller, key=lambda s: s[key])
            if s[key] - r[key] > SIZE_DROP:
                out.append(f"{r['name']} ({r['bytes']} B) scores {r[key]:.3f}, "
                           f"{s[key] - r[key]:.3f} below the smaller {s['name']} "
                           f"({s['bytes']} B, {s[key]:.3f}): a stalled run?")
    return out
