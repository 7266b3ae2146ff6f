"""The shipped model folder: `models/<name>/model.json` (+ `float_weights.npz`).

`model.json` is the one file later stages read (export, firmware, board, evaluation):

    format, version       "kws-model", FORMAT_VERSION
    name, classes         class names in score order
    features              the FeatureConfig the model was trained with
    normalisation         per-mel-bin mean and std (host side: folded into input quantisation)
    model                 architecture: n_in, hidden, rank_w, rank_u, n_classes, weight_bits, qx
    pool_frames           the clip decision: mean of the last N frames' scores
    integer               exponents, zeta, nu, formats and the integer arrays (lists)
    bytes                 total and per array: exactly what the firmware stores
    hash                  sha256 of the canonical `integer` section; the board reports it
    metrics, training     accuracies and where the model came from (informational)

`float_weights.npz` holds the float parameters. Writes are atomic; a truncated, tampered,
foreign or older-format file is a clear `KwsError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kws.atomic import atomic_open
from kws.config import FeatureConfig
from kws.errors import KwsError
from kws.intmodel import IntModel

FORMAT = "kws-model"
FORMAT_VERSION = 1


def integer_section(im: IntModel) -> dict:
    return {"qx": im.qx, "weight_bits": im.weight_bits, "exponents": im.exponents,
            "zeta": im.zeta, "nu": im.nu, "formats": im.formats,
            "arrays": {k: v.tolist() for k, v in im.arrays.items()}}


def model_hash(integer: dict) -> str:
    blob = json.dumps(integer, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class ShippedModel:
    """A loaded model folder: the integer model plus everything the host needs around it."""

    def __init__(self, doc: dict, folder: Path | None = None):
        self.doc, self.folder = doc, folder
        arch, integer = doc["model"], doc["integer"]
        self.int_model = IntModel(
            n_in=arch["n_in"], hidden=arch["hidden"], rank_w=arch["rank_w"],
            rank_u=arch["rank_u"], n_classes=arch["n_classes"], qx=integer["qx"],
            weight_bits=integer["weight_bits"],
            arrays={k: np.array(v, np.int64) for k, v in integer["arrays"].items()},
            exponents=integer["exponents"], zeta=integer["zeta"], nu=integer["nu"],
            formats=integer["formats"])
        self.features = FeatureConfig(**doc["features"])
        self.classes: list[str] = doc["classes"]
        self.mean = np.array(doc["normalisation"]["mean"], np.float32)
        self.std = np.array(doc["normalisation"]["std"], np.float32)
        self.pool_frames: int = doc["pool_frames"]
        self.hash: str = doc["hash"]
        self.name: str = doc["name"]

    @property
    def n_bytes(self) -> int:
        return self.doc["bytes"]["total"]

    def quantize(self, features: np.ndarray) -> np.ndarray:
        from kws.intmodel import quantize_features
        return quantize_features(features, self.mean, self.std, self.int_model.qx)

    def float_weights(self) -> dict[str, np.ndarray]:
        path = self.folder / "float_weights.npz"
        try:
            with np.load(path) as z:
                return dict(z)
        except (OSError, ValueError) as e:
            raise KwsError(f"{path}: cannot read float weights ({e})") from None


def save_model(folder: Path, name: str, im: IntModel, features: FeatureConfig,
               classes: list[str], mean: np.ndarray, std: np.ndarray, pool_frames: int,
               float_weights: dict[str, np.ndarray], metrics: dict, training: dict) -> dict:
    import dataclasses

    im.check_no_overflow()
    integer = integer_section(im)
    doc = {
        "format": FORMAT, "version": FORMAT_VERSION, "name": name, "classes": list(classes),
        "features": dataclasses.asdict(features),
        "normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "model": {"arch": "fastgrnn", "n_in": im.n_in, "hidden": im.hidden,
                  "rank_w": im.rank_w, "rank_u": im.rank_u, "n_classes": im.n_classes,
                  "weight_bits": im.weight_bits, "qx": im.qx},
        "pool_frames": pool_frames,
        "integer": integer,
        "bytes": {"total": im.n_bytes(), "per_array": im.storage()},
        "hash": model_hash(integer),
        "metrics": metrics, "training": training,
    }
    folder = Path(folder)
    with atomic_open(folder / "float_weights.npz", "wb") as f:
        np.savez(f, **float_weights)
    with atomic_open(folder / "model.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return doc


def load_model(folder: str | Path) -> ShippedModel:
    """Read and check a model folder (or its model.json)."""
    folder = Path(folder)
    path = folder if folder.suffix == ".json" else folder / "model.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise KwsError(f"no model at {path} (train one with `kws train`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KwsError(f"{path}: not a readable model file, truncated? ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KwsError(f"{path}: not a kws model file")
    if doc.get("version") != FORMAT_VERSION:
        raise KwsError(f"{path}: model format version {doc.get('version')}, this kws reads "
                       f"version {FORMAT_VERSION}: retrain or export it again")
    try:
        if model_hash(doc["integer"]) != doc["hash"]:
            raise KwsError(f"{path}: content hash mismatch: the file was changed or damaged")
        model = ShippedModel(doc, path.parent)
    except KwsError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise KwsError(f"{path}: incomplete model file (missing or bad {e})") from None
    if model.int_model.n_bytes() != doc["bytes"]["total"]:
        raise KwsError(f"{path}: byte count {doc['bytes']['total']} does not match its arrays")
    return model
