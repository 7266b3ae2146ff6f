"""Hostile files and settings through the real command line: each is one clear line on stderr
(naming the file, the key or the amount), a non-zero exit, no traceback, and nothing
half-written left behind. Ctrl-C during training keeps a checkpoint that --resume continues.

Most cases run `kws.cli.main` in this process (an exception escaping main fails the test just
as a traceback would); the Ctrl-C case runs `python -m kws train` as a real subprocess.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kws.cli import main
from kws.config import FeatureConfig
from kws.data.dataset import TASKS
from kws.quant.intmodel import from_torch
from kws.training.model import FastGRNN
from kws.quant.modelfile import load_model, save_model

FEATURES = FeatureConfig(hop_length=320)   # half the frames of the default: faster tests


# --- helpers -------------------------------------------------------------------------------------

def kws(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *names: str) -> str:
    """Assert a failed run printed exactly one clear error line naming `names`."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kws: error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Temp files of an interrupted atomic write."""
    return [p for p in Path(folder).rglob("*.tmp")]


def make_model(folder: Path, hidden: int = 8, rank_w: int = 3, rank_u: int = 2) -> dict:
    """A model folder of an untrained FastGRNN: enough for every file check, no training."""
    torch.manual_seed(0)
    classes = list(TASKS["v2-12"].classes)
    net = FastGRNN(FEATURES.n_mels, hidden, rank_w, rank_u, len(classes))
    return save_model(folder, "tiny", from_torch(net), FEATURES, classes,
                      np.zeros(FEATURES.n_mels, np.float32), np.ones(FEATURES.n_mels, np.float32),
                      1, {k: v.detach().numpy() for k, v in net.state_dict().items()}, {}, {})


@pytest.fixture
def model(tmp_path) -> Path:
    make_model(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """Run in tmp_path: the default data/cache and runs/ folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_config_text(data: Path, epochs_quant: int = 1, batch_size: int = 4) -> str:
    return (f"features: {{hop_length: 320}}\n"
            f"model: {{hidden: 8, rank_w: 3, rank_u: 2, pool_frames: 1}}\n"
            f"train: {{data: '{data}', fallback_data: '', batch_size: {batch_size},"
            f" epochs_dense: 1, epochs_sparsify: 0, epochs_sparse: 0,"
            f" epochs_quant: {epochs_quant}, noise_prob: 0.5, init_from: '', teacher: ''}}\n")


# --- the model folder -----------------------------------------------------------------------------

def test_truncated_model_json(capsys, work, model):
    path = model / "model.json"
    path.write_text(path.read_text()[:1000])
    for cmd in (["export", "--model", model, "--out", work / "sketch"],
                ["eval", "--model", model, "--data", work, "--json", work / "r.json"]):
        line = one_line_error(*kws(capsys, *cmd)[::2], path, "truncated")
        assert "not a readable model file" in line
    assert not (work / "sketch").exists() and not (work / "r.json").exists()


def test_tampered_model_json_names_both_hashes(capsys, work, model):
    path = model / "model.json"
    doc = json.loads(path.read_text())
    stored = doc["hash"]
    doc["integer"]["arrays"]["W1"][0][0] += 1          # one weight changed, hash left as was
    path.write_text(json.dumps(doc))
    from kws.quant.modelfile import model_hash
    actual = model_hash(doc["integer"])
    code, _, err = kws(capsys, "export", "--model", model, "--out", work / "sketch")
    one_line_error(code, err, path, "hash mismatch", stored[:16], actual[:16])
    assert not (work / "sketch").exists()


@pytest.mark.parametrize("damage,expect", [
    ("missing", "float_weights.npz: missing"),
    ("truncated", "float_weights.npz: content hash mismatch"),
    ("tampered", "float_weights.npz: content hash mismatch"),
    ("truncated-unhashed", "float_weights.npz: not a readable .npz"),
    ("wrong-shape-unhashed", "model.json says"),
])
def test_float_weights_missing_or_damaged(capsys, work, model, sc_mini, damage, expect):
    npz = model / "float_weights.npz"
    if damage == "missing":
        npz.unlink()
    elif damage.startswith("truncated"):
        npz.write_bytes(npz.read_bytes()[:300])
    else:
        with np.load(npz) as z:
            weights = dict(z)
        if damage == "tampered":
            weights["W1"] = weights["W1"] + 0.5
        else:
            weights["W1"] = weights["W1"][:, :5]
        np.savez(npz, **weights)
    if damage.endswith("unhashed"):    # a folder of an older kws: no float_weights_sha256
        doc = json.loads((model / "model.json").read_text())
        del doc["float_weights_sha256"]
        (model / "model.json").write_text(json.dumps(doc))
    code, _, err = kws(capsys, "eval", "--model", model, "--data", sc_mini, "--split", "all",
                       "--json", work / "r.json")
    line = one_line_error(code, err, expect)
    if damage == "tampered":
        assert line.count("hashes to") == 1 and "model.json says" in line
    assert not (work / "r.json").exists() and not leftovers(work)


@pytest.mark.parametrize("doc,expect", [
    ({"format": "onnx", "version": 1}, "not a kws model file (format 'onnx'"),
    ([1, 2, 3], "not a kws model file (a JSON list"),
    ("version 99", "model format version 99"),
    ("no integer section", "incomplete model file"),
])
def test_model_json_of_another_format_or_version(capsys, work, model, doc, expect):
    path = model / "model.json"
    if doc == "version 99":
        doc = dict(json.loads(path.read_text()), version=99)
    elif doc == "no integer section":
        doc = json.loads(path.read_text())
        del doc["integer"]
    path.write_text(json.dumps(doc))
    code, _, err = kws(capsys, "export", "--model", model, "--out", work / "sketch")
    one_line_error(code, err, path, expect)
    assert not (work / "sketch").exists()


def test_no_model_folder(capsys, work):
    code, _, err = kws(capsys, "export", "--model", work / "nowhere", "--out", work / "sketch")
    one_line_error(code, err, "no model at", "nowhere")


# --- budgets --------------------------------------------------------------------------------------

def test_export_over_the_model_budget_says_by_how_much(capsys, work, model):
    n = load_model(model).int_model.n_bytes()
    code, _, err = kws(capsys, "export", "--model", model, "--out", work / "sketch",
                       "--budget", 100)
    one_line_error(code, err, f"is {n} bytes", "budget of 100", f"by {n - 100} bytes")
    assert not (work / "sketch").exists()
    big = work / "big"
    n = make_model(big, hidden=40, rank_w=16, rank_u=16)["bytes"]["total"]
    assert n > 1024
    code, _, err = kws(capsys, "export", "--model", big, "--out", work / "sketch")
    one_line_error(code, err, f"is {n} bytes", "budget of 1024", f"by {n - 1024} bytes")
    assert not (work / "sketch").exists()


def test_train_refuses_to_ship_over_the_config_budget(capsys, work, sc_mini):
    cfg = work / "tiny.yaml"
    cfg.write_text(tiny_config_text(sc_mini).replace("pool_frames: 1", "pool_frames: 1, "
                                                                        "budget_bytes: 100"))
    code, out, err = kws(capsys, "train", "--config", cfg, "--run-dir", work / "run",
                         "--out", work / "m")
    line = one_line_error(code, err, "over its budget of 100 by", "not shipped")
    n = int(line.split(" is ")[1].split()[0])
    assert f"over its budget of 100 by {n - 100} bytes" in line
    assert not (work / "m").exists() and not leftovers(work)


def test_unwritable_output_is_one_line(capsys, work, model):
    (work / "afile").write_text("")
    code, _, err = kws(capsys, "export", "--model", model, "--out", work / "afile" / "sketch")
    one_line_error(code, err, "afile")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make (firmware/ports/avr/avr.mk)")
def test_build_of_a_model_over_the_boards_flash(capsys, work):
    big = work / "big"
    n = make_model(big, hidden=200, rank_w=32, rank_u=200)["bytes"]["total"]
    flash = 32256                                  # firmware/ports/avr/avr.mk uno_FLASH
    code, _, err = kws(capsys, "build", "--model", big, "--out", work / "fw",
                       "--budget", 10 ** 6)
    one_line_error(code, err, f"is {n} bytes", f"flash for sketches ({flash} bytes)",
                   f"by {n - flash} bytes")
    assert not (work / "fw").exists()


def test_build_whose_firmware_overflows_flash_removes_the_hex(capsys, work, model, monkeypatch):
    """A firmware that links but is over the board's flash: the size report decides."""
    from kws.targets.avr import simboard
    from kws.targets.base import Firmware

    monkeypatch.setattr("kws.targets.build.board_flash", lambda board: 32256)

    def fake_build(sketch, build, board="uno", sim=True):
        Path(build).mkdir(parents=True)
        (Path(build) / "kws_sketch.hex").write_text(":00000001FF\n")
        return Firmware(elf=Path(build) / "kws_sketch.elf", hex=Path(build) / "kws_sketch.hex",
                        sim=None, board=board, baud=115200, f_cpu=16_000_000, flash=32300,
                        flash_max=32256, ram=900, ram_max=2048)

    monkeypatch.setattr(simboard, "ensure_built", fake_build)
    code, _, err = kws(capsys, "build", "--model", model, "--out", work / "fw")
    one_line_error(code, err, "32300 bytes of flash", "has 32256", "over by 44 bytes")
    assert not list((work / "fw").rglob("*.hex"))


# --- YAML configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,names", [
    ("model:\n  hiden: 8\n", ["'model.hiden'", "section 'model'"]),
    ("modle:\n  hidden: 8\n", ["section 'modle'", "sections: data, features, model, train"]),
    ("train:\n  epochs_dense: ten\n", ["'train.epochs_dense'", "expected int", "'ten'"]),
    ("train:\n  lr: fast\n", ["'train.lr'", "expected float"]),
    ("train:\n  snr_db: [0, 10, 20]\n", ["'train.snr_db'", "list of 2 float"]),
    ("model: 8\n", ["section 'model'", "expected a mapping"]),
    ("- features\n- model\n", ["must be a mapping", "not a list"]),
    ("model:\n  hidden: [8\n", ["not valid YAML", "line 3"]),
    ("model:\n  hidden: 8\n  hidden: 9\n", ["'hidden' given twice", "line 3"]),
    ("train:\n  batch_size: 0\n", ["train.batch_size must be > 0"]),
    (b"\xff\xfe\x00binary", ["not a text file"]),
])
def test_bad_config_names_the_key(capsys, work, sc_mini, text, names):
    cfg = work / "bad.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = kws(capsys, "train", "--config", cfg, "--run-dir", work / "run",
                       "--out", work / "m")
    one_line_error(code, err, cfg, *names)
    assert not (work / "run").exists() and not (work / "m").exists()
    code, _, err = kws(capsys, "features", "--data", sc_mini, "--config", cfg,
                       "--cache-dir", work / "cache")
    one_line_error(code, err, cfg, *names)
    assert not (work / "cache").exists()


def test_missing_config_file(capsys, work):
    code, _, err = kws(capsys, "train", "--config", work / "nope.yaml")
    one_line_error(code, err, "cannot read config", "nope.yaml")


# --- audio and data folders -----------------------------------------------------------------------

def wav_bytes(samples: np.ndarray, fmt: int = 1, bits: int = 16, data_size: int | None = None):
    """A mono 16 kHz WAV file's bytes; `data_size` overrides the data chunk's stated size."""
    data = samples.tobytes()
    size = len(data) if data_size is None else data_size
    fmt_chunk = struct.pack("<HHIIHH", fmt, 1, 16000, 16000 * bits // 8, bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", 16) + fmt_chunk
            + b"data" + struct.pack("<I", size) + data)


BAD_WAVS = {
    "empty": (b"", "empty file"),
    "not-wav": (b"ID3\x03\x00" + bytes(200), "not a WAV file"),
    "truncated": (wav_bytes(np.zeros(8000, np.int16), data_size=32000), "truncated WAV"),
    "nan": (wav_bytes(np.full(1600, np.nan, np.float32), fmt=3, bits=32), "NaN or infinite"),
}


@pytest.mark.parametrize("kind", BAD_WAVS)
def test_corrupt_wav_in_features_names_the_file_or_is_skipped(capsys, work, sc_mini, kind):
    blob, reason = BAD_WAVS[kind]
    bad = sc_mini / "yes" / "0badf00d_nohash_0.wav"
    bad.write_bytes(blob)
    cache = work / "cache"
    code, _, err = kws(capsys, "features", "--data", sc_mini, "--cache-dir", cache)
    one_line_error(code, err, bad, reason, "--skip-bad")
    assert not list(cache.glob("*")) if cache.exists() else True
    code, out, err = kws(capsys, "features", "--data", sc_mini, "--cache-dir", cache,
                         "--skip-bad")
    assert code == 0 and "Traceback" not in err, err
    assert "skipped 1 bad file" in out and str(bad) in out


def test_no_readable_clip_at_all_is_an_error_even_with_skip_bad(capsys, work, model):
    data = work / "junk"
    for word in ("yes", "no"):
        (data / word).mkdir(parents=True)
        for i in range(3):
            (data / word / f"{word}{i}_nohash_0.wav").write_bytes(BAD_WAVS["not-wav"][0])
    code, _, err = kws(capsys, "features", "--data", data, "--cache-dir", work / "cache",
                       "--skip-bad")
    one_line_error(code, err, "none of the", "audio files could be read", "not a WAV file")
    assert not (work / "cache").exists() or not list((work / "cache").iterdir())
    code, _, err = kws(capsys, "eval", "--model", model, "--data", data, "--split", "all",
                       "--skip-bad", "--json", work / "r.json")
    one_line_error(code, err, "none of the", "audio files could be read")
    assert not (work / "r.json").exists()


def test_corrupt_wav_in_eval_names_the_file_or_is_skipped(capsys, work, model, sc_mini):
    bad = sc_mini / "no" / "0badf00d_nohash_0.wav"
    bad.write_bytes(BAD_WAVS["truncated"][0])
    code, _, err = kws(capsys, "eval", "--model", model, "--data", sc_mini, "--split", "all",
                       "--json", work / "r.json")
    one_line_error(code, err, bad, "truncated WAV", "--skip-bad")
    assert not (work / "r.json").exists()
    code, out, err = kws(capsys, "eval", "--model", model, "--data", sc_mini, "--split", "all",
                         "--json", work / "r.json", "--skip-bad")
    assert code == 0 and "Traceback" not in err, err
    assert "1 bad skipped" in out
    assert json.loads((work / "r.json").read_text())["skipped_bad"] == 1
    assert not leftovers(work)


@pytest.mark.parametrize("folder,expect", [("missing", "no data folder at"),
                                           ("empty", "no word folders with audio files")])
def test_empty_or_missing_data_folder(capsys, work, model, folder, expect):
    data = work / folder
    if folder == "empty":
        (data / "yes").mkdir(parents=True)          # a word folder, but no clips in it
    code, _, err = kws(capsys, "features", "--data", data, "--cache-dir", work / "cache")
    one_line_error(code, err, expect, data)
    code, _, err = kws(capsys, "eval", "--model", model, "--data", data)
    one_line_error(code, err, expect, data)
    code, _, err = kws(capsys, "data", "stats", "--data", data)
    one_line_error(code, err, expect, data)


# --- the features cache ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "flipped-byte", "other-clips", "garbage"])
def test_damaged_features_cache_is_recomputed(capsys, work, sc_mini, damage):
    cache = work / "cache"
    args = ["features", "--data", sc_mini, "--cache-dir", cache]
    code, first, _ = kws(capsys, *args)
    assert code == 0
    (path,) = cache.glob("features-*.npz")
    good = path.read_bytes()
    with np.load(path) as z:
        features = z["features"]
    if damage == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "flipped-byte":                # inside the features array: the zip CRC
        blob = bytearray(good)
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
    elif damage == "other-clips":                 # a well-formed cache of something else
        with np.load(path) as z:
            d = dict(z)
        np.savez(path, **dict(d, features=d["features"][:-1], kept=d["kept"][:-1]))
    else:
        path.write_bytes(b"\x00" * 100)
    code, out, err = kws(capsys, *args)
    assert code == 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kws: warning: ") and str(path) in lines[0]
    assert "damaged feature cache" in lines[0] and "computing it again" in lines[0]
    assert "computed in" in out
    # the same numbers as the first run, and the cache file is whole again
    assert out.splitlines()[-1] == first.splitlines()[-1]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["features"], features)
    code, out, err = kws(capsys, *args)
    assert code == 0 and "read from cache" in out and not err


# --- training: damaged checkpoint, Ctrl-C ---------------------------------------------------------

@pytest.mark.parametrize("damage,expect", [
    ("garbage", "cannot resume from a damaged checkpoint"),
    ("truncated", "cannot resume from a damaged checkpoint"),
    ("foreign", "checkpoint does not fit this config's model"),
])
def test_damaged_checkpoint_on_resume(capsys, work, sc_mini, damage, expect):
    cfg = work / "tiny.yaml"
    cfg.write_text(tiny_config_text(sc_mini))
    run = work / "run"
    run.mkdir()
    ckpt = run / "checkpoint.pt"
    if damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint")
    else:
        torch.save({"epoch": 1, "model": {"W1": torch.zeros(2, 2)}, "opt": {}, "best": None,
                    "history": [{}], "exponents": None, "torch_rng": torch.get_rng_state()},
                   ckpt)
        if damage == "truncated":
            ckpt.write_bytes(ckpt.read_bytes()[:200])
    before = ckpt.read_bytes()
    code, _, err = kws(capsys, "train", "--config", cfg, "--run-dir", run, "--out", work / "m",
                       "--resume")
    one_line_error(code, err, ckpt, expect)
    assert ckpt.read_bytes() == before               # left as it was, for a look
    assert not (work / "m").exists() and not leftovers(work)


def _train(cfg: Path, run: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "kws", "train", "--config", str(cfg),
                             "--run-dir", str(run), "--out", str(out), *extra],
                            cwd=cfg.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_ctrl_c_keeps_a_checkpoint_that_resume_continues(tmp_path, sc_mini):
    cfg = tmp_path / "tiny.yaml"
    epochs = 1 + 16
    cfg.write_text(tiny_config_text(sc_mini, epochs_quant=epochs - 1, batch_size=2))
    reference = _train(cfg, tmp_path / "ref", tmp_path / "mref")   # uninterrupted, alongside
    proc = _train(cfg, tmp_path / "run", tmp_path / "m")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ckpt.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kws: interrupted: the checkpoint of epoch ")
    assert str(tmp_path / "run") in lines[0] and "--resume" in lines[0]
    saved = int(lines[0].split("epoch ")[1].split()[0])
    state = torch.load(ckpt, weights_only=False)          # intact, and the epoch it says
    assert state["epoch"] == saved == len(state["history"]) and 1 <= saved < epochs
    assert not (tmp_path / "m").exists() and not leftovers(tmp_path / "run")

    resumed = _train(cfg, tmp_path / "run", tmp_path / "m", "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed {tmp_path / 'run'} at epoch {saved}" in out
    assert f"epoch {epochs}  phase quant" in out
    out_ref, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref
    # the same model as the uninterrupted run, to the bit
    assert load_model(tmp_path / "m").hash == load_model(tmp_path / "mref").hash
    a = np.load(tmp_path / "m" / "float_weights.npz")
    b = np.load(tmp_path / "mref" / "float_weights.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
