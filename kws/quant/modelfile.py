"""The shipped model folder: `models/<name>/model.json` (+ `float_weights.npz`).

`model.json` is the one file later stages read (export, firmware, board, evaluation):

    format, version       "kws-model", FORMAT_VERSION
    name, classes         class names in score order
    features              the FeatureConfig the model was trained with
    normalisation         per-mel-bin mean and std (host side: folded into input quantisation)
    model                 architecture: n_in, hidden, rank_w, rank_u, n_classes, weight_bits, qx,
                          state_bits (version 2: the arithmetic, 16 or 8, kws.quant.arith)
    pool_frames           the clip decision: mean of the last N frames' scores
    integer               exponents, zeta, nu, formats and the integer arrays (lists); with
                          state_bits 8 also `state_bits: 8` (so the hash covers the arithmetic)
    bytes                 total and per array: exactly what the firmware stores
    hash                  sha256 of the canonical `integer` section; the board reports it
    float_weights_sha256  sha256 of float_weights.npz (absent in older folders: not checked)
    metrics, training     accuracies and where the model came from (informational)

Versions: 1 (int16 state only, no state_bits) is still read, as state_bits 16, bit-exact and
with its hash unchanged; 2 says the arithmetic in `model.state_bits`. A 16-bit model's integer
section (and hash) is the same in both versions.

`float_weights.npz` holds the float parameters. Writes are atomic (the weights first, then
model.json, which names the weights' hash: a folder left between the two is caught); a
truncated, tampered, foreign or older-format file is a one-line `KwsError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from kws.atomic import atomic_open
from kws.config import FeatureConfig
from kws.errors import KwsError
from kws.quant.intmodel import IntModel

FORMAT = "kws-model"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)   # 1: before the int8-state arithmetic (always state_bits 16)


def integer_section(im: IntModel) -> dict:
    out = {"qx": im.qx, "weight_bits": im.weight_bits, "exponents": im.exponents,
           "zeta": im.zeta, "nu": im.nu, "formats": im.formats,
           "arrays": {k: v.tolist() for k, v in im.arrays.items()}}
    if im.state_bits != 16:   # absent = 16: the hash of every int16-state model is unchanged
        out["state_bits"] = im.state_bits
    return out


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
            formats=integer["formats"], state_bits=integer.get("state_bits", 16))
        if arch.get("state_bits", 16) != self.int_model.state_bits:
            raise KwsError(f"model.state_bits {arch.get('state_bits', 16)} but the integer "
                           f"section's is {self.int_model.state_bits}")
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
        from kws.quant.intmodel import quantize_features
        return quantize_features(features, self.mean, self.std, self.int_model.qx)

    def float_weights(self) -> dict[str, np.ndarray]:
        """The float parameters, checked against model.json (hash, names and shapes)."""
        path = self.folder / "float_weights.npz"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KwsError(f"{path}: missing: the model folder is incomplete (copy the whole "
                           "folder, or ship the model again)") from None
        except OSError as e:
            raise KwsError(f"{path}: cannot read float weights ({e.strerror})") from None
        expected = self.doc.get("float_weights_sha256")
        if expected and (actual := hashlib.sha256(blob).hexdigest()) != expected:
            raise KwsError(f"{path}: content hash mismatch: model.json says {expected[:16]}, the "
                           f"file hashes to {actual[:16]}: changed, damaged or from another model")
        try:
            with np.load(io.BytesIO(blob)) as z:
                weights = dict(z)
        except Exception as e:  # zipfile, pickle and format errors of a damaged .npz
            raise KwsError(f"{path}: not a readable .npz, truncated? ({_first_line(e)})") from None
        for name, values in self.doc["integer"]["arrays"].items():
            want = np.shape(values)
            if name not in weights:
                raise KwsError(f"{path}: no float weights for {name}")
            if weights[name].shape != want:
                raise KwsError(f"{path}: {name} has shape {weights[name].shape}, model.json "
                               f"says {want}")
        return weights


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
                  "weight_bits": im.weight_bits, "qx": im.qx, "state_bits": im.state_bits},
        "pool_frames": pool_frames,
        "integer": integer,
        "bytes": {"total": im.n_bytes(), "per_array": im.storage()},
        "hash": model_hash(integer),
        "metrics": metrics, "training": training,
    }
    buf = io.BytesIO()
    np.savez(buf, **float_weights)
    doc["float_weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    folder = Path(folder)
    with atomic_open(folder / "float_weights.npz", "wb") as f:
        f.write(buf.getvalue())
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
    except IsADirectoryError:
        raise KwsError(f"no model at {path} (a folder, not a model.json)") from None
    except OSError as e:
        raise KwsError(f"{path}: cannot read the model file ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KwsError(f"{path}: not a readable model file, truncated? ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        what = f"format {doc.get('format')!r}" if isinstance(doc, dict) and "format" in doc \
            else f"a JSON {type(doc).__name__} without a format field"
        raise KwsError(f"{path}: not a kws model file ({what}, expected {FORMAT!r})")
    if doc.get("version") not in READ_VERSIONS:
        raise KwsError(f"{path}: model format version {doc.get('version')}, this kws reads "
                       f"versions {', '.join(map(str, READ_VERSIONS))}: retrain or export it again")
    if doc.get("version") == 1 and doc.get("model", {}).get("state_bits", 16) != 16:
        raise KwsError(f"{path}: model format version 1 has int16 state only")
    try:
        stored, actual = doc["hash"], model_hash(doc["integer"])
        if actual != stored:
            raise KwsError(f"{path}: content hash mismatch: the file says {str(stored)[:16]}, its "
                           f"integer model hashes to {actual[:16]}: changed or damaged")
        model = ShippedModel(doc, path.parent)
        if model.int_model.n_bytes() != doc["bytes"]["total"]:
            raise KwsError(f"byte count {doc['bytes']['total']} does not match its arrays")
    except KwsError as e:
        raise KwsError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KwsError(f"{path}: incomplete model file (missing or bad {e})") from None
    return model


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
