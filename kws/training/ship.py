"""Turn a finished training run into the shipped model folder, refusing one over budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kws.config import Config
from kws.errors import KwsError
from kws.quant.intmodel import from_torch, quantize_features
from kws.quant.modelfile import save_model
from kws.training.train import accuracy


def int_accuracy(im, x_norm: np.ndarray, y: np.ndarray, mean, std, pool: int) -> float:
    """Accuracy of the NumPy integer reference on normalised features."""
    if len(y) == 0:
        return float("nan")
    xq = quantize_features(x_norm, np.zeros_like(mean), np.ones_like(std), im.qx)
    scores = im.run(xq)
    return float((scores[:, -pool:].mean(1).argmax(1) == y).mean())


def ship(result: dict, config: Config, name: str, out: Path) -> dict:
    """Write models/<name>/ from `kws.training.train.train`'s result; return the model document."""
    model, data = result["model"], result["data"]
    if config.model.arch != "fastgrnn":
        raise KwsError("only a FastGRNN can be shipped (the GRU is a float baseline)")
    im = from_torch(model)
    n_bytes = im.n_bytes()
    if n_bytes > config.model.budget_bytes:
        budget = config.model.budget_bytes
        raise KwsError(f"model is {n_bytes} bytes, over its budget of {budget} by "
                       f"{n_bytes - budget} bytes (model.budget_bytes): not shipped (lower "
                       "model.hidden / ranks / density, or use 4-bit weights)")
    pool = config.model.pool_frames
    metrics = {"val_int_checkpoint": result["best"].get("val_int")}
    for split, (x, y) in data.eval_sets.items():
        metrics[f"{split}_float"] = accuracy(model, x, y, pool, quant=False)
        metrics[f"{split}_int"] = int_accuracy(im, x, y, data.mean, data.std, pool)
    roots = [str(r) for r in data.dataset.roots]
    training = {"run_dir": str(result["run_dir"]), "data": roots[0] if len(roots) == 1 else roots,
                "data_config": dataclasses.asdict(config.data),
                "split": data.dataset.split_source, "epochs": len(result["history"]),
                "best_epoch": result["best"]["epoch"],
                "negative_dirs": list(config.train.negative_dirs)
                if config.train.negative_clips else [],
                "hard_negative_dirs": list(config.train.hard_negative_dirs)}
    # the normalisation folded into the integer input is the training split's per-bin stats
    return save_model(out, name, im, config.features, list(data.dataset.task.classes),
                      data.mean, data.std, pool,
                      {k: v.detach().numpy() for k, v in model.state_dict().items()},
                      metrics, training)
