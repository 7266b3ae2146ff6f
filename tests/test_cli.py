"""The command line as a user meets it: help everywhere, one-line errors, real runs."""

import subprocess
import sys

import pytest

from kws.cli import build_parser

SUBCOMMANDS = [["data"], ["data", "download"], ["data", "stats"], ["data", "synth"],
               ["features"], ["train"], ["eval"], ["sweep"], ["export"], ["build"], ["flash"], ["verify"], ["stream"], ["bench"]]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kws", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*words, "--help"])
    assert e.value.code == 0


def test_help_lists_no_placeholder_commands():
    out = run("--help").stdout
    for name in ("data", "features", "bench"):
        assert name in out


def test_missing_data_is_one_line_without_traceback(tmp_path):
    r = run("data", "stats", "--data", str(tmp_path / "missing"))
    assert r.returncode == 1
    assert r.stderr.strip().startswith("kws: error: no data folder")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_config_names_the_key(tmp_path, sc_mini):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("features:\n  n_mels: 32\n  hop: 10\n")
    r = run("features", "--data", str(sc_mini), "--config", str(cfg))
    assert r.returncode == 1 and "features.hop" in r.stderr and "Traceback" not in r.stderr


def test_stats_and_features_on_real_clips(sc_mini, tmp_path):
    r = run("data", "stats", "--data", str(sc_mini))
    assert r.returncode == 0, r.stderr
    assert "_silence_" in r.stdout and "speakers" in r.stdout
    r = run("features", "--data", str(sc_mini), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    from kws.config import load_config
    n_frames = load_config("configs/default.yaml").features.n_frames
    assert f", {n_frames}, 32)" in r.stdout
    assert list((tmp_path / "c").glob("features-*.npz"))


def test_corrupt_wav_fails_clearly_or_is_skipped(sc_mini, tmp_path):
    (sc_mini / "no" / "0badf00d_nohash_0.wav").write_bytes(b"")
    r = run("features", "--data", str(sc_mini), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 1 and "0badf00d_nohash_0.wav: empty file" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("features", "--data", str(sc_mini), "--cache-dir", str(tmp_path / "c"),
            "--skip-bad")
    assert r.returncode == 0 and "skipped 1 bad file" in r.stdout



def test_speaker_interval_on_a_hand_made_case():
    import numpy as np

    from kws.checks.evaluate import speaker_interval

    # one speaker: every resample is that speaker, so the interval is the point
    assert speaker_interval(np.array([1, 0, 1, 1]), ["a"] * 4) == (0.75, 0.75)
    # two speakers, all right and all wrong, 2 clips each: resamples are 0, 0.5 or 1
    lo, hi = speaker_interval(np.array([1, 1, 0, 0]), ["a", "a", "b", "b"])
    assert (lo, hi) == (0.0, 1.0)
    # seeded, and wider for speakers than for the same number of independent clips
    correct = np.array([1] * 40 + [0] * 40)
    by_speaker = speaker_interval(correct, [f"s{i // 20}" for i in range(80)])
    by_clip = speaker_interval(correct, [f"c{i}" for i in range(80)])
    assert by_speaker == speaker_interval(correct, [f"s{i // 20}" for i in range(80)])
    assert by_speaker[1] - by_speaker[0] > by_clip[1] - by_clip[0]
    assert by_clip[0] < 0.5 < by_clip[1]


@pytest.mark.parametrize("command", ["eval", "stats", "train"])
def test_data_and_task_options_keep_every_value(command):
    """--data twice is two folders (eval once kept only the last); --task/--keywords reach
    the config of train and of the data commands (eval takes the model's task)."""
    from pathlib import Path

    from kws.cli import _overridden
    from kws.config import Config

    words = ["data", "stats"] if command == "stats" else [command]
    extra = ["--model", "m"] if command == "eval" else []
    data = [] if command == "train" else ["--data", "a", "--data", "b"]
    task = [] if command == "eval" else ["--task", "wake", "--keywords", "stop, go"]
    args = build_parser().parse_args(words + extra + data + task)
    if data:
        assert args.data == [Path("a"), Path("b")]
    if task:
        cfg = _overridden(Config(), args)
        assert cfg.data.task == "wake" and cfg.data.keywords == ("stop", "go")
