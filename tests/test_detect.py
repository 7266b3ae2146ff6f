"""The integer detector: Python (kws.detect.detector, kws.detect.posterior) against the float
one it replaced, and the C detector (firmware/kernel/kws_detect.c, compiled on the host)
against golden vectors from the Python one, bit for bit."""

import math
import shutil
import subprocess
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from kws.detect.detector import (NEVER, NONE, Detector, DetectorSettings, hash_of,
                                 load_settings, q15_threshold, save_settings, settings_hash)
from kws.detect.posterior import Posterior, exp2_table, float_posteriors
from kws.paths import firmware_module
from kws.targets.avr.simboard import REPO

KERNEL = REPO / "firmware" / "kernel"
TESTS = REPO / "firmware" / "tests"
CFLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SC_MINI = REPO / "tests" / "fixtures" / "sc_mini"
CLASSES = ["yes", "no", "_silence_", "_unknown_"]

golden = firmware_module("tests/golden_detect.py")


# --- Python: integer against float ---------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_stream():
    """The int16-state model shipped when the integer detector replaced the float one
    (models/default_int16) listening to the test clips, one after another with noise between
    them: pooled scores, window end times, detector arguments. (The integer softmax is within
    ~9 Q15 steps of the float one, so another model's stream may hold a window that close to
    a threshold: models/default has one at 0.7.)"""
    from kws.checks.streameval import stream_scores
    from kws.data.audio import load_audio
    from kws.detect.windows import Schedule
    from kws.quant.modelfile import load_model

    model = load_model(REPO / "models" / "default_int16")
    rng = np.random.default_rng(0)
    parts = []
    for clip in sorted(SC_MINI.glob("[a-z]*/*.wav")):
        parts += [load_audio(clip, 16000, 16000),
                  rng.normal(0, 0.003, int(rng.uniform(0.2, 1.5) * 16000)).astype(np.float32)]
    schedule = Schedule.for_model(model, 2)
    pooled, times = stream_scores(model, np.concatenate(parts), schedule)
    return model, pooled, times, Detector.args_for(model, schedule)


def float_detections(args, post, times, threshold, smooth, refractory_s=1.0):
    """The float detector the integer one replaced (mean posterior >= threshold, best keyword,
    refractory period in windows)."""
    keywords = Detector(**args).keywords
    refractory = round(refractory_s / args["stride_s"])
    recent, last, out = deque(maxlen=smooth), -10 ** 9, []
    for n, (p, t) in enumerate(zip(post, times), 1):
        recent.append(p)
        s = np.mean(recent, axis=0)
        best = max(keywords, key=lambda i: s[i])
        if s[best] >= threshold and n - last >= refractory:
            last = n
            out.append((round(t, 3), args["classes"][best]))
    return out


def test_integer_posteriors_are_within_a_few_q15_steps_of_the_float_softmax(shipped_stream):
    model, pooled, times, args = shipped_stream
    q = Detector(**args).posterior(pooled)
    f = float_posteriors(pooled, args["scale"])
    assert len(pooled) > 100 and q.min() >= 0 and q.max() <= 32768
    assert np.abs(q / 32768 - f).max() < 12 / 32768          # measured: 8.8 steps
    assert np.abs(q.sum(axis=1) - 32768).max() <= len(model.classes) // 2 + 1
    # the top class: e = 32768, so its posterior is 1 / (sum of e) rounded
    assert (q.argmax(axis=1) == pooled.argmax(axis=1)).all()


@pytest.mark.parametrize("smooth", [1, 2, 3])
def test_integer_detector_decides_as_the_float_one_did(shipped_stream, smooth):
    """Same detections, at every threshold from 0.3 to the shipped 0.985, on the shipped
    model's stream of the test clips."""
    model, pooled, times, args = shipped_stream
    f = float_posteriors(pooled, args["scale"])
    total = 0
    for th in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.985):
        det = Detector(**args, threshold=th, smooth=smooth)
        mine = [(d.time_s, d.word) for p, t in zip(pooled, times) if (d := det.push(p, t))]
        assert mine == float_detections(args, f, times, th, smooth), th
        total += len(mine)
    assert total > 50


def test_q15_threshold_is_exactly_the_float_comparison():
    for th in (0.0, 0.3, 0.5, 0.7, 0.985, 0.99999, 1.0):
        t = q15_threshold(th)
        for p in range(max(t - 3, 0), min(t + 3, 32769)):
            assert (p >= t) == (p / 32768 >= th), (th, p)
    assert q15_threshold(1.5) == NEVER and q15_threshold(-1) == 0


def test_softmax_constants_keep_the_product_in_31_bits_and_the_table_exact():
    t = exp2_table(8)
    assert len(t) == 256 and t[0] == 32768 and t[128] == round(32768 / math.sqrt(2))
    for scale in (1e-9, 2.0 ** -19 / 5, 1e-3, 1.0, 10.0):
        p = Posterior.for_scale(scale)
        assert p.clamp * p.mult + (1 << (p.shift_s - 1)) < 1 << 31
        assert (1 << 15) <= p.mult or p.shift_r == 0
        # a gap just inside the clamp is worth e > 0 only if it is below 16 octaves
        d = np.array([[0, -(p.clamp << p.shift_r)], [0, -((p.clamp + 1) << p.shift_r)]])
        e = p.exps(d)
        assert e[0, 0] == e[1, 0] == 32768 and e[1, 1] == 0
        assert e[0, 1] in (0, 1)                 # 15 octaves down: 32768 >> 15 at most


def test_smoothing_thresholds_per_keyword_and_the_refractory_period():
    # scale 1: pooled scores are logits in nats; a window every 0.5 s
    d = Detector(CLASSES, 1.0, 1.0, 0.5, smooth=2, threshold=0.9, refractory_s=1.0,
                 thresholds={"no": 0.4})
    yes, no, quiet = np.array([9, 0, 0, 0]), np.array([0, 1, 0, 0]), np.array([0, 0, 9, 0])
    fired = []
    for i, s in enumerate([quiet, yes, yes, yes, no, no, no, no, quiet, quiet]):
        r = d.push(s, i * 0.5)
        fired.append(r.word if r else None)
        if i == 2:
            assert d.last.windows == 2 and d.last.led == 1 and d.last.fired == 0
    # "yes" fires when both windows of the mean are "yes" (0.9 needs both), then 2 windows of
    # refractory period; "no" (its own threshold 0.4; posterior 0.475) fires once the mean
    # of two "no" windows holds it, although it never reaches 0.9, and again 2 windows later
    assert fired == [None, None, "yes", None, None, "no", None, "no", None, None], fired
    assert d.last.fired == NONE and d.last.led == 0 and d.last.best == 0
    with pytest.raises(Exception, match="not keywords"):
        Detector(CLASSES, 1.0, 1.0, 0.5, thresholds={"_silence_": 0.5})


def test_per_keyword_thresholds_are_stored_hashed_and_absent_from_old_files(tmp_path):
    shipped = REPO / "models" / "default"
    before = settings_hash(shipped)
    s = load_settings(shipped)
    assert s.thresholds == {} and hash_of(s) == before
    save_settings(tmp_path, DetectorSettings(**{**s.__dict__, "thresholds": {"yes": 0.5}}))
    assert load_settings(tmp_path).thresholds == {"yes": 0.5}
    assert settings_hash(tmp_path) != before
    save_settings(tmp_path, s)
    assert "thresholds" not in (tmp_path / "detector.json").read_text()
    assert settings_hash(tmp_path) == before


# --- C: the detector against the Python one --------------------------------------------------

@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden_detect")
    out = []
    for name, det, pooled in golden.cases():
        golden.write_case(root / name, det, pooled, name)
        out.append((name, det, pooled, root / name))
    return out


def compile_detect_test(case_dir: Path, out: Path, cc: str = "gcc", extra=()) -> Path:
    cmd = [cc, *CFLAGS, *extra, f"-I{case_dir}", f"-I{KERNEL}", str(TESTS / "test_detect.c"),
           str(KERNEL / "kws_detect.c"), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_golden_cases_cover_the_rules(cases):
    by = {c[0]: c for c in cases}
    assert set(by) == {"shipped", "smooth3", "smooth7", "scale1", "tinyscale", "nokeyword"}
    for name, det, pooled, _ in cases:
        post, decisions = golden.expected(det, pooled)
        fired = [d for d in decisions if d.fired != NONE]
        if name == "nokeyword":
            assert not fired and all(d.best == NONE for d in decisions)
            continue
        assert fired, name
        # the refractory period held back a keyword that reached its threshold
        held = [d for d in decisions if d.fired == NONE and d.best != NONE
                and d.best_sum >= det.q15[d.best] * d.windows]
        assert held or det.refractory <= 1, name     # 0 or 1 window holds nothing back
        assert pooled.min() == -(1 << 31) and pooled.max() == (1 << 31) - 1
    smooth3 = golden.expected(by["smooth3"][1], by["smooth3"][2])[1]
    # a per-keyword threshold fired a keyword that was not the best
    assert any(d.fired not in (NONE, d.best) for d in smooth3)
    assert {d.windows for d in smooth3} == {1, 2, 3}


def test_c_detector_matches_python_bit_for_bit(cases, tmp_path):
    from tests.test_firmware import sanitize_flags

    san = sanitize_flags()
    for name, det, pooled, case_dir in cases:
        exe = compile_detect_test(case_dir, tmp_path / f"t_{name}", extra=san)
        r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
        n = sum(1 for d in golden.expected(det, pooled)[1] if d.fired != NONE)
        assert r.stdout.startswith(f"ok: {len(pooled)} windows, {n} detections"), r.stdout


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_c_detector_is_portable_c99(cases, tmp_path):
    name, det, pooled, case_dir = next(c for c in cases if c[0] == "smooth3")
    exe = compile_detect_test(case_dir, tmp_path / "t", cc="clang")
    r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_c_detector_test_catches_a_wrong_value(cases, tmp_path):
    name, det, pooled, case_dir = next(c for c in cases if c[0] == "smooth3")
    exe = compile_detect_test(case_dir, tmp_path / "t")
    data = bytearray((case_dir / "golden.bin").read_bytes())
    c = len(det.classes)
    per = 6 * c + 12
    bad = tmp_path / "post.bin"
    at = 12 + 4 * c                      # window 0, posterior 0
    data[at] ^= 1
    bad.write_bytes(bytes(data))
    r = subprocess.run([str(exe), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH window 0: posterior[0]" in r.stdout, r.stdout
    data[at] ^= 1
    _, decisions = golden.expected(det, pooled)
    w = next(i for i, d in enumerate(decisions) if d.fired != NONE)
    data[12 + w * per + 6 * c] ^= 0xFF   # that window's fired class
    bad.write_bytes(bytes(data))
    r = subprocess.run([str(exe), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and f"MISMATCH window {w}: fired" in r.stdout, r.stdout


def test_c_detector_built_with_another_threshold_differs(cases, tmp_path):
    """The thresholds come from kws_config.h: a header with one threshold changed makes the
    C detector disagree with the golden decisions."""
    name, det, pooled, case_dir = next(c for c in cases if c[0] == "shipped")
    other = tmp_path / "other"
    shutil.copytree(case_dir, other)
    cfg = (other / "kws_config.h").read_text()
    t = q15_threshold(0.985)
    assert f"#define KWS_DET_THRESHOLDS {{ {t}, " in cfg
    (other / "kws_config.h").write_text(cfg.replace(f"#define KWS_DET_THRESHOLDS {{ {t}, ",
                                                    f"#define KWS_DET_THRESHOLDS {{ {t - 2000}, "))
    exe = compile_detect_test(other, tmp_path / "t")
    r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH window" in r.stdout, r.stdout


def test_a_threshold_from_the_command_line_is_every_keyword_s(tmp_path):
    """`kws stream --threshold T`: T for every keyword, detector.json's per-keyword ones too;
    without it the stored ones stay."""
    from kws.detect.detector import detector_for
    from kws.detect.windows import Schedule
    from kws.quant.modelfile import load_model

    folder = tmp_path / "m"
    shutil.copytree(REPO / "models" / "default", folder)
    save_settings(folder, DetectorSettings(threshold=0.9, thresholds={"go": 0.4}))
    model = load_model(folder)
    schedule = Schedule.for_model(model, 2)
    stored = detector_for(model, schedule)
    assert stored.thresholds["go"] == 0.4 and stored.thresholds["yes"] == 0.9
    given = detector_for(model, schedule, threshold=0.5)
    assert set(given.thresholds.values()) == {0.5} and len(given.thresholds) == 10
    assert given.q15[model.classes.index("go")] == q15_threshold(0.5)
