"""The firmware: the C kernel against the integer reference (host, golden vectors), the
generated sketch (kws.codegen.export), its AVR build (model bytes in the ELF) and the protocol
firmware on the simulated board (scores bit for bit over the serial protocol, cycles per
frame from Timer1 against the simulator's GPIOR0 stamps, stack)."""

import shutil
import subprocess
import sys

from dataclasses import dataclass

import numpy as np
import pytest

from kws.link.board import Board
from kws.paths import firmware_module
from kws.config import FeatureConfig
from kws.errors import KwsError
from kws.codegen.export import (KERNEL_FILES, PROTO_FILES, check_budget, clip_frames, export,
                                hash_bytes, model_header)
from kws.targets.avr.target import model_symbol_sizes
from kws.quant.modelfile import load_model, save_model
from kws.targets.avr.simboard import REPO, SimBoard, ensure_built

KERNEL = REPO / "firmware" / "kernel"
TESTS = REPO / "firmware" / "tests"
CLIPS = sorted((REPO / "tests" / "fixtures" / "sc_mini").glob("*/*.wav"))
CFLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic"]

# Cycles per kws_step() of the hidden-24 / rank-6/6 / int8 dense model (912 MACs) on the
# simulated ATmega328P. The target (20,000) is tracked by `make bench`, not here.
CYCLES_MAX = 28_000  # a regression bound on a deterministic count; the target lives in make bench

needs_avr = pytest.mark.skipif(shutil.which("avr-gcc") is None, reason="avr-gcc not installed")


golden = firmware_module("tests/golden.py")


def sanitize_flags():
    """-fsanitize=undefined where this gcc can link it (catches signed overflow, bad shifts)."""
    probe = subprocess.run(["gcc", "-fsanitize=undefined", "-x", "c", "-", "-o", "/dev/null"],
                           input="int main(void){return 0;}", capture_output=True, text=True)
    return ["-fsanitize=undefined", "-fno-sanitize-recover=all"] if probe.returncode == 0 else []


def compile_kernel_test(case_dir, out, cc="gcc", extra=()):
    cmd = [cc, *CFLAGS, *extra, f"-I{case_dir}", f"-I{KERNEL}", str(TESTS / "test_kernel.c"),
           str(KERNEL / "kws_model.c"), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


# --- host: golden vectors --------------------------------------------------------------------

@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    out = []
    for name, im, x in golden.cases():
        golden.write_case(root / name, im, x, name)
        out.append((name, im, x, root / name))
    return out


def test_golden_cases_cover_formats_and_saturation(cases):
    names = {c[0] for c in cases}
    assert {"dense8", "dense4", "sparse8", "sparse4", "mixed4", "big8", "big4", "tiny"} <= names
    by = {c[0]: c for c in cases}
    fmts = {(im.weight_bits, f) for _, im, _, _ in cases for f in im.formats.values()}
    assert fmts == {(8, "dense"), (8, "sparse"), (4, "dense"), (4, "sparse")}
    assert by["sparse8"][1].formats == dict.fromkeys(("W1", "W2", "U1", "U2", "Wc"), "sparse")
    # the big model: left shifts, and every int16 saturation happens
    im, x = by["big8"][1], by["big8"][2]
    assert im.shifts()["tw"] < 0 and golden.saturation(im, x) == {"tw": True, "tu": True, "h": True}
    assert x.min() == -128 and x.max() == 127
    # the int8-state arithmetic: its own cases, the big one saturating tw, tu and h (int8)
    assert {"s8dense8", "s8sparse4", "s8mixed8", "s8big8", "s8big4"} <= names
    im, x = by["s8big8"][1], by["s8big8"][2]
    assert im.state_bits == 8 and im.shifts()["tw"] < 0
    assert golden.saturation(im, x) == {"tw": True, "tu": True, "h": True}


def test_kernel_matches_reference_bit_for_bit(cases, tmp_path):
    san = sanitize_flags()
    for name, im, x, case_dir in cases:
        exe = compile_kernel_test(case_dir, tmp_path / f"t_{name}", extra=san)
        r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
        assert r.stdout.startswith("ok: 3 sequences x 60 frames"), r.stdout


def test_kernel_test_catches_a_wrong_value(cases, tmp_path):
    name, im, x, case_dir = cases[0]
    bad = tmp_path / "bad.bin"
    data = bytearray((case_dir / "golden.bin").read_bytes())
    data[-1] ^= 0x01  # the last score of the last frame
    bad.write_bytes(bytes(data))
    exe = compile_kernel_test(case_dir, tmp_path / "t")
    r = subprocess.run([str(exe), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH seq 2 frame 59: score[11]" in r.stdout


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_kernel_is_portable_c99(cases, tmp_path):
    """clang too, and a model whose shifts differ from the one kws_params holds is caught."""
    name, im, x, case_dir = next(c for c in cases if c[0] == "sparse4")
    exe = compile_kernel_test(case_dir, tmp_path / "t", cc="clang")
    r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    hdr = (case_dir / "model_data.h").read_text()
    other = tmp_path / "other"
    other.mkdir()
    shift = f"#define KWS_SHIFT_TU ({im.shifts()['tu']})"
    assert shift in hdr
    wrong = f"#define KWS_SHIFT_TU ({im.shifts()['tu'] + 1})"
    (other / "model_data.h").write_text(hdr.replace(shift, wrong))
    exe = compile_kernel_test(other, tmp_path / "t2")
    r = subprocess.run([str(exe), str(case_dir / "golden.bin")], capture_output=True, text=True)
    assert r.returncode == 1 and "kws_params byte 1 differs" in r.stderr


# --- export ----------------------------------------------------------------------------------

def make_model_folder(path, im, name="test", mean=None, std=None):
    save_model(path, name, im, FeatureConfig(), [f"word{i}" for i in range(im.n_classes)],
               np.zeros(32) if mean is None else mean, np.ones(32) if std is None else std, 1,
               {}, {}, {})
    return path


def test_export_writes_an_arduino_sketch_folder(tmp_path):
    im = golden.random_model(0)
    folder = make_model_folder(tmp_path / "m", im)
    model = load_model(folder)
    sketch = export(folder, tmp_path / "out", "my_kws", baud=1_000_000)
    assert sketch == tmp_path / "out" / "my_kws"
    names = {p.name for p in sketch.iterdir()}
    assert names == {"my_kws.ino", "model_data.h", "kws_config.h", *KERNEL_FILES, *PROTO_FILES}
    for f in KERNEL_FILES:  # copies of the kernel and of the protocol
        assert (sketch / f).read_text() == (KERNEL / f).read_text()
    for f in PROTO_FILES:
        assert (sketch / f).read_text() == (REPO / "firmware" / "protocol" / f).read_text()
    h = (sketch / "model_data.h").read_text()
    assert f'#define KWS_MODEL_HASH "{model.hash}"' in h
    raw = bytes.fromhex(model.hash[:32])
    assert "#define KWS_MODEL_HASH_BYTES { " + ", ".join(f"0x{b:02x}" for b in raw) + " }" in h
    assert f"#define KWS_MODEL_BYTES {im.n_bytes()}" in h
    assert '#define KWS_CLASS_NAMES { "word0", "word1",' in h
    assert "#define KWS_FEATURE_HOP_LENGTH 160" in h and "#define KWS_FRAMES_PER_CLIP 98" in h
    for k, v in im.shifts().items():
        assert f"#define KWS_SHIFT_{k.upper()} ({v})" in h
    c = (sketch / "kws_config.h").read_text()
    assert "#define KWS_CONFIG_BAUD 1000000UL" in c and "#define KWS_PROTO_MAX_FRAMES 1" in c
    # again, under another name, at the board profile's baud: one .ino per folder
    export(folder, tmp_path / "out", "my_kws")
    assert "KWS_CONFIG_BAUD" not in (sketch / "kws_config.h").read_text()
    assert hash_bytes("golden") == bytes(16)


def test_export_refuses_a_model_over_budget(tmp_path):
    im = golden.random_model(0)  # 983 bytes
    folder = make_model_folder(tmp_path / "m", im)
    with pytest.raises(KwsError, match="983 bytes, over the budget of 900 by 83 bytes"):
        export(folder, tmp_path / "out", budget=900)
    check_budget(im, 983)
    check_budget(im, None)
    assert not (tmp_path / "out").exists()


def test_export_refuses_bad_input(tmp_path):
    folder = make_model_folder(tmp_path / "m", golden.random_model(0))
    with pytest.raises(KwsError, match="bad sketch name"):
        export(folder, tmp_path / "out", "my sketch")
    with pytest.raises(TypeError, match="frames"):   # no test frames in flash: `kws verify`
        export(folder, tmp_path / "out", frames=np.zeros((2, 3, 32)))
    with pytest.raises(KwsError, match="baud 12: expected 300"):
        export(folder, tmp_path / "out", baud=12)
    with pytest.raises(KwsError, match="frames per request 0"):
        export(folder, tmp_path / "out", max_frames=0)
    with pytest.raises(KwsError, match="no model at"):
        export(tmp_path / "nope", tmp_path / "out")


def test_empty_sparse_matrix_is_not_an_empty_c_array():
    im = golden.random_model(0, density={"W1": 0.3})
    im.arrays["W1"][:] = 0
    im.formats["W1"] = "sparse"
    assert im.storage()["W1"] == 0
    h = model_header(im)
    assert "#define kws_W1 kws_params" in h and "kws_W1[" not in h


# --- AVR: build, bytes, the simulated board --------------------------------------------------

def clip_model(tmp_path, im, name="clips"):
    """A model folder whose normalisation is the fixture clips' own, and 3 clips' frames."""
    from kws.data.audio import load_audio
    from kws.frontend.features import clip_features

    feats = np.stack([clip_features(load_audio(p)) for p in CLIPS])
    mean, std = feats.reshape(-1, 32).mean(0), feats.reshape(-1, 32).std(0) + 1e-3
    folder = make_model_folder(tmp_path / name, im, name, mean, std)
    model = load_model(folder)
    return model, clip_frames(model, CLIPS[:3])


@dataclass
class Run:
    """What the protocol firmware returned for frames [clips, frames, n_in] (each clip after
    a RESET): scores, Timer1 cycles per frame (INFER replies), the simulator's GPIOR0 stamp
    differences around the same kws_step() calls, IDENTIFY and the final STATS."""

    scores: np.ndarray
    cycles: list
    gpior_cycles: list
    identity: object
    stats: object

    def cycle_stats(self) -> dict:
        c = np.asarray(self.cycles)
        return {"min": int(c.min()), "median": float(np.median(c)), "max": int(c.max())}


def stream(fw, frames, n_classes) -> Run:
    """Frames through the protocol firmware on a simulated board, one INFER per frame."""
    scores = np.zeros((*frames.shape[:2], n_classes), np.int64)
    cycles = []
    with SimBoard(fw.elf, freq=fw.f_cpu) as sim:
        with Board(sim.port, fw.baud, timeout=10) as board:
            board.open()
            for c in range(frames.shape[0]):
                board.reset()
                for t in range(frames.shape[1]):
                    r = board.infer(frames[c, t])
                    scores[c, t] = r.scores[0]
                    cycles.append(int(r.cycles[0]))
            stats = board.stats()
        sim.check()
        ready = sim.stamps("GPIOR1")[0].cycle   # the boot-time calibration stamps come first
        st = [s for s in sim.stamps("GPIOR0") if s.cycle > ready]
    # stamped at the start of each `out`: the difference includes that one cycle
    gpior = [b.cycle - a.cycle - 1 for a, b in zip(st[::2], st[1::2])
             if (a.value, b.value) == (1, 2)]
    return Run(scores, cycles, gpior, board.identity, stats)


def build_and_run(model, frames, build, board="uno", cppflags=None):
    sketch = export(model, build / "src")
    if cppflags:  # avr.mk's EXTRA_CPPFLAGS, for the C-path build
        fw = ensure_built(sketch, build / "b", board=board)  # sim bridge + sizes
        r = subprocess.run(["make", "-s", "-f", str(REPO / "firmware" / "ports" / "avr" / "avr.mk"),
                            f"SKETCH={sketch}", f"BUILD={build / 'b'}", f"BOARD={board}",
                            f"EXTRA_CPPFLAGS={cppflags}", "all"],
                           cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    else:
        fw = ensure_built(sketch, build / "b", board=board)
    return fw, stream(fw, frames, model.int_model.n_classes)


def reference_run(tmp, state_bits: int):
    """The reference model (hidden 24, ranks 6/6, int8 weights, dense) in one arithmetic on
    the simulated Uno: 3 real clips + extremes."""
    model, frames = clip_model(tmp, golden.random_model(0, state_bits=state_bits))
    extremes = golden.inputs(9, 32, n_seq=1, n_frames=frames.shape[1])
    frames = np.concatenate([frames, extremes])
    fw, result = build_and_run(model, frames, tmp)
    return model, frames, fw, result


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    """The reference model, int16 state."""
    return reference_run(tmp_path_factory.mktemp("avr-dense"), 16)


@needs_avr
def test_elf_model_symbols_are_exactly_the_python_byte_count(dense_run):
    model, _, fw, _ = dense_run
    im = model.int_model
    sizes = model_symbol_sizes(fw.elf)
    assert sizes == {f"kws_{k}": v for k, v in im.storage().items() if v}
    assert sum(sizes.values()) == im.n_bytes() == 983


@needs_avr
def test_board_scores_equal_the_reference_bit_for_bit(dense_run):
    model, frames, fw, result = dense_run
    assert frames.shape == (4, 98, 32) and (frames == -128).any() and (frames == 127).any()
    np.testing.assert_array_equal(result.scores, model.int_model.run(frames))
    ident = result.identity
    assert ident.params_check == 0 and ident.matches(model.hash)
    assert (ident.model_bytes, ident.n_in, ident.hidden, ident.n_classes) == (983, 32, 24, 12)
    assert (ident.f_cpu, ident.baud) == (fw.f_cpu, fw.baud) == (16_000_000, 115200)
    assert ident.classes == model.classes
    assert result.stats.inferences == frames.shape[0] * frames.shape[1]
    assert result.stats.crc_errors == result.stats.bad_frames == result.stats.duplicates == 0


@needs_avr
def test_cycles_per_frame_and_memory(dense_run):
    model, frames, fw, result = dense_run
    c = result.cycle_stats()
    macs = 912  # executed: the matrices are dense (model.int_model.macs_per_frame() non-zeros)
    stack = result.stats.stack_peak
    print(f"\nuno, h24 r6/6 int8 dense ({macs} MACs): cycles/frame min {c['min']} median "
          f"{c['median']:.0f} max {c['max']} ({c['median'] / macs:.1f}/MAC); flash {fw.flash} B, "
          f"static RAM {fw.ram} B, peak stack {stack} B")
    assert len(result.cycles) == frames.shape[0] * frames.shape[1]
    assert c["max"] <= CYCLES_MAX
    assert c["max"] - c["min"] < 0.02 * c["max"]  # data-dependent branches only
    # Timer1 (device-side, what INFER and STATS report) against the simulator's stamps: the
    # same calls, a constant offset (the instructions of the measurement itself)
    assert len(result.gpior_cycles) == len(result.cycles)
    offset = set(np.array(result.gpior_cycles) - np.array(result.cycles))
    assert len(offset) == 1 and 0 < offset.pop() < 40
    assert result.stats.last_cycles == result.cycles[-1]
    assert 0 < stack and fw.ram + stack <= 1024
    assert fw.flash < 12 * 1024  # kernel, protocol, Arduino core (Serial)


@needs_avr
def test_assembly_and_c_paths_agree(dense_run, tmp_path):
    """The same firmware with -DKWS_NO_ASM (the portable C loops) gives the same scores."""
    model, frames, _, fast = dense_run
    _, slow = build_and_run(model, frames[:2, :30], tmp_path, cppflags="-DKWS_NO_ASM")
    np.testing.assert_array_equal(slow.scores, fast.scores[:2, :30])
    assert np.median(slow.cycles) > 1.5 * np.median(fast.cycles)


@needs_avr
def test_sparse_int4_and_saturating_models_on_the_board(tmp_path):
    by = {name: (im, x) for name, im, x in golden.cases() if not name.startswith("shipped")}
    for name in ("sparse4", "big8"):
        im, x = by[name]
        folder = make_model_folder(tmp_path / name, im, name)
        model = load_model(folder)
        _, result = build_and_run(model, x[:2, :40], tmp_path / f"b-{name}")
        np.testing.assert_array_equal(result.scores, im.run(x[:2, :40]), err_msg=name)


@needs_avr
def test_pro_mini_8mhz_build_runs(dense_run, tmp_path):
    model, frames, uno_fw, uno = dense_run
    fw, result = build_and_run(model, frames[:1, :20], tmp_path, board="pro-mini-8")
    assert (fw.f_cpu, fw.baud) == (8_000_000, 57600)
    assert (result.identity.f_cpu, result.identity.baud) == (8_000_000, 57600)
    np.testing.assert_array_equal(result.scores, uno.scores[:1, :20])
    assert result.cycles == uno.cycles[:20]  # same code, same cycles; half the clock


# --- make flash --------------------------------------------------------------------------------

class FakePort:
    def __init__(self, device, vid=None, pid=None, description="n/a"):
        self.device, self.vid, self.pid, self.description = device, vid, pid, description


def test_avrdude_command_per_board(tmp_path):
    from kws.targets.avr.flash import avrdude_command

    cmd = avrdude_command("fw.hex", "/dev/ttyACM0", "uno")
    assert cmd == ["avrdude", "-C", "/etc/avrdude.conf", "-p", "atmega328p", "-c", "arduino",
                   "-P", "/dev/ttyACM0", "-b", "115200", "-D", "-U", "flash:w:fw.hex:i"]
    for board, baud in [("nano", "115200"), ("nano-old", "57600"), ("pro-mini-16", "57600"),
                        ("pro-mini-8", "57600")]:
        assert avrdude_command("x.hex", "P", board)[10] == baud


def test_find_port_by_usb_ids():
    from kws.targets.avr.flash import find_port

    uno = FakePort("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno")
    clone = FakePort("/dev/ttyUSB0", 0x1A86, 0x7523, "USB2.0-Serial")
    other = FakePort("/dev/ttyS0")
    assert find_port([other, uno]) == "/dev/ttyACM0"
    assert find_port([clone]) == "/dev/ttyUSB0"
    with pytest.raises(KwsError, match="no Arduino found.*ttyS0.*PORT=.*BOARD=sim"):
        find_port([other])
    with pytest.raises(KwsError, match="several boards found.*ttyACM0.*ttyUSB0"):
        find_port([uno, clone])


def test_flash_dry_run_and_missing_hex(tmp_path):
    from kws.targets.avr.flash import flash

    hexfile = tmp_path / "a.hex"
    hexfile.write_text(":00000001FF\n")
    assert flash(hexfile, "nano-old", port="/dev/ttyUSB3", dry_run=True)[7:11] == \
        ["-P", "/dev/ttyUSB3", "-b", "57600"]
    with pytest.raises(KwsError, match="build the firmware first"):
        flash(tmp_path / "none.hex", port="/dev/ttyUSB3")


# --- AVR: the assembly fast paths of kws_model.c on random and saturating models -------------

def _exp_model(seed, exps, zeta, nu, hidden=24, rank_w=6, rank_u=6, n_classes=12):
    """A dense int8 model with full-range random weights and chosen exponents (shifts):
    tw = eW1 - 6, tu = eU1 + 3, pw = eW2 - 3, pu = eU2 - 3, bz/bc = e - 14,
    bcls = e_bcls - e_Wc - 14."""
    from kws.quant.intmodel import IntModel

    rng = np.random.default_rng(seed)
    shapes = {"W1": (rank_w, 32), "W2": (hidden, rank_w), "U1": (rank_u, hidden),
              "U2": (hidden, rank_u), "Wc": (n_classes, hidden), "bz": (hidden,),
              "bc": (hidden,), "bcls": (n_classes,)}
    arrays = {k: rng.integers(-127, 128, s) for k, s in shapes.items()}
    im = IntModel(32, hidden, rank_w, rank_u, n_classes, 5, 8, arrays, dict(exps),
                  zeta=zeta, nu=nu)
    im.check_no_overflow()
    assert all(f == "dense" for f in im.formats.values())
    return im


def _fits24(im):
    """kws_model.c's KWS_REC_FITS24: pre + ONE + any bias fits 24 bits for every input."""
    s = im.shifts()
    bias = max(64 if s[b] > 0 else 127 << -s[b] for b in ("bz", "bc"))
    return ((im.rank_w * 127 * 32768 >> s["pw"]) + (im.rank_u * 127 * 32768 >> s["pu"])
            + 16386 + bias) < 1 << 23


def _pre_plus_one(im, x):
    """pre + ONE of every unit and frame (what the gate's saturation to +-2^22 sees)."""
    from kws.quant.arith import rshift_round, sat

    a, s = im.arrays, im.shifts()
    _, h = im.run(x, return_state=True)
    h_prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], 1)
    tw = sat(rshift_round(x @ a["W1"].T, s["tw"]), 16)
    tu = sat(rshift_round(h_prev @ a["U1"].T, s["tu"]), 16)
    return rshift_round(tw @ a["W2"].T, s["pw"]) + rshift_round(tu @ a["U2"].T, s["pu"]) + 16384


# name: (exponents, zeta, nu, shape) chosen to take every branch of the AVR kernels
FAST_PATH_MODELS = {
    # pre + bias fits 24 bits; PW 4 < PU 6 (pass A masks, then shifts left); TW 2, TU 9;
    # bz -9 (the shipped model's), bc +3 (a rounded right shift), bcls -12 (byte 1)
    "fits24": ({"W1": 8, "U1": 6, "W2": 7, "U2": 9, "Wc": 4, "bz": 5, "bc": 17, "bcls": 6},
               12000, 500, {}),
    # pre saturated to +-2^22 by pass B; PW = PU = 1; TW 0 and TU 5 saturate in the kernels;
    # bz -15, bc -3, bcls +8 (rounds to 0); ZETA = ONE (g's other formula), g up to 2 ONE
    "saturating": ({"W1": 6, "U1": 2, "W2": 4, "U2": 4, "Wc": 0, "bz": -1, "bc": 11,
                    "bcls": 22}, 16384, 16384, {}),
    # odd sizes (rows left to the row kernels, no 2-row unroll); PW 7 > PU 1; TW 9, TU 12
    # (byte shifts); bz +5, bc -11, bcls -3
    "odd": ({"W1": 15, "U1": 9, "W2": 10, "U2": 4, "Wc": 3, "bz": 19, "bc": 3, "bcls": 14},
            5000, 9000, {"hidden": 21, "rank_w": 4, "rank_u": 5, "n_classes": 7}),
}


@needs_avr
@pytest.mark.parametrize("name", list(FAST_PATH_MODELS))
def test_fast_paths_on_the_board(name, tmp_path):
    """The assembly of the dense int8 step (blocked rows, the W2 / U2 passes with unsigned
    weights, the gates) against the reference, on models whose shifts reach every case."""
    exps, zeta, nu, shape = FAST_PATH_MODELS[name]
    im = _exp_model(11, exps, zeta, nu, **shape)
    x = golden.inputs(12, 32, n_seq=2, n_frames=40)
    sh = im.shifts()
    assert 1 <= sh["pw"] <= 7 and 1 <= sh["pu"] <= 7 and 0 <= sh["tw"] <= 15
    assert 0 <= sh["tu"] <= 15 and sh["bz"] >= -15 and sh["bc"] >= -15 and sh["bcls"] >= -15
    assert _fits24(im) == (name == "fits24")
    p = np.abs(_pre_plus_one(im, x))
    if name == "saturating":
        assert golden.saturation(im, x) == {"tw": True, "tu": True, "h": True}
        assert p.max() >= 1 << 22 and im.zeta == 16384
    else:
        assert p.max() < 1 << 22
    folder = make_model_folder(tmp_path / name, im, name)
    model = load_model(folder)
    _, result = build_and_run(model, x, tmp_path / f"b-{name}")
    np.testing.assert_array_equal(result.scores, im.run(x), err_msg=name)
    if not shape:  # hidden 24, ranks 6/6: the fast path's speed, not the C fallback's
        assert max(result.cycles) < 21_000


@needs_avr
def test_dense_int8_step_is_under_20k_cycles(dense_run):
    _, _, _, result = dense_run
    assert result.cycle_stats()["max"] <= 20_000


# --- AVR: the int8-state arithmetic (model.state_bits 8) ---------------------------------------

# Cycles per kws_step() of the same shape in the int8-state arithmetic (measured 11,760;
# issue 15 asks <= 12,000, goal 8,000). A regression bound on a deterministic count.
CYCLES8_MAX = 12_000


@pytest.fixture(scope="module")
def dense8_run(tmp_path_factory):
    """The reference model, int8 state."""
    return reference_run(tmp_path_factory.mktemp("avr-dense8"), 8)


@needs_avr
def test_int8_state_board_is_bit_exact_and_fast(dense8_run):
    model, frames, fw, result = dense8_run
    im = model.int_model
    assert im.state_bits == 8
    np.testing.assert_array_equal(result.scores, im.run(frames))
    sizes = model_symbol_sizes(fw.elf)
    assert sizes == {f"kws_{k}": v for k, v in im.storage().items() if v}
    assert sum(sizes.values()) == im.n_bytes() == 981   # params: 9 bytes, not 11
    assert result.identity.params_check == 0 and result.identity.matches(model.hash)
    c = result.cycle_stats()
    stack = result.stats.stack_peak
    print(f"\nuno, h24 r6/6 int8 dense, int8 state (912 MACs): cycles/frame min {c['min']} "
          f"median {c['median']:.0f} max {c['max']} ({c['median'] / 912:.1f}/MAC); flash "
          f"{fw.flash} B, static RAM {fw.ram} B, peak stack {stack} B")
    assert c["max"] <= CYCLES8_MAX
    assert c["max"] - c["min"] < 0.02 * c["max"]
    assert 0 < stack and fw.ram + stack <= 1024


@needs_avr
def test_int8_state_assembly_and_c_paths_agree(dense8_run, tmp_path):
    model, frames, _, fast = dense8_run
    _, slow = build_and_run(model, frames[:2, :30], tmp_path, cppflags="-DKWS_NO_ASM")
    np.testing.assert_array_equal(slow.scores, fast.scores[:2, :30])
    assert np.median(slow.cycles) > 1.5 * np.median(fast.cycles)


def _exp_model8(seed, exps, zeta, nu, hidden=24, rank_w=6, rank_u=6, n_classes=12):
    """A dense int8-state model with full-range random weights and chosen exponents:
    tw = eW1 + 1, tu = eU1 + 2, pw = pu = eR - 3 (eR = eW2 = eU2), bz/bc = e - 7,
    bcls = e_bcls - e_Wc - 6."""
    from kws.quant.intmodel import IntModel

    rng = np.random.default_rng(seed)
    shapes = {"W1": (rank_w, 32), "W2": (hidden, rank_w), "U1": (rank_u, hidden),
              "U2": (hidden, rank_u), "Wc": (n_classes, hidden), "bz": (hidden,),
              "bc": (hidden,), "bcls": (n_classes,)}
    arrays = {k: rng.integers(-127, 128, s) for k, s in shapes.items()}
    im = IntModel(32, hidden, rank_w, rank_u, n_classes, 5, 8, arrays, dict(exps),
                  zeta=zeta, nu=nu, state_bits=8)
    im.check_no_overflow()
    assert all(f == "dense" for f in im.formats.values())
    return im


def _branches8(im, x):
    """Which cases of the int8-state step the inputs reach (kws.quant.arith, state_bits 8):
    tw / tu saturated high and low, zz below 0 / in [0, 255] / above, c saturated high and
    low, 2 z h + g c + 128 outside int16 (the gate's overflow branch) either way."""
    from kws.quant.arith import rshift_round

    a, s = im.arrays, im.shifts()
    _, h = im.run(x, return_state=True)
    hp = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], 1)
    tw_raw = rshift_round(x @ a["W1"].T, s["tw"])
    tu_raw = rshift_round(hp @ a["U1"].T, s["tu"])
    tw, tu = np.clip(tw_raw, -128, 127), np.clip(tu_raw, -128, 127)
    pre = rshift_round(tw @ a["W2"].T + tu @ a["U2"].T, s["pw"])
    zz = pre + rshift_round(a["bz"], s["bz"]) + 128
    cc = pre + rshift_round(a["bc"], s["bc"])
    z = np.clip(zz >> 1, 0, 128)
    c = np.clip(cc, -128, 127)
    g = rshift_round(im.zeta * (128 - z), 7) + im.nu
    S = 2 * z * hp + g * c + 128
    return {"tw+": (tw_raw > 127).any(), "tw-": (tw_raw < -128).any(),
            "tu+": (tu_raw > 127).any(), "tu-": (tu_raw < -128).any(),
            "z0": (zz < 0).any(), "zmid": ((zz >= 0) & (zz < 256)).any(), "z1": (zz >= 256).any(),
            "c+": (cc > 127).any(), "c-": (cc < -128).any(), "cmid": (cc == c).any(),
            "S+": (S >= 32768).any(), "S-": (S < -32768).any()}


# name: (exponents, zeta, nu, shape, the branches the inputs must reach) chosen so that the
# int8-state assembly (kws_rec8_asm, the sat8 and bias modes of the 3-row kernel) and its
# C remainders take every branch; "slow" is outside the fast path (PW = 0: the C gates)
FAST_PATH_MODELS8 = {
    # PW 1; tw shift 9 (>= 8: bytes), tu 5; bz -7, bc +2, bcls -6; ZETA = NU = 127: the
    # state saturates, the gate's 16-bit sum overflows both ways
    "s8sat": ({"W1": 8, "U1": 3, "W2": 4, "U2": 4, "Wc": 0, "bz": 0, "bc": 9, "bcls": 0},
              127, 127, {}, {"tw+", "tw-", "tu+", "tu-", "z0", "z1", "c+", "c-", "S+", "S-"}),
    # PW 7; tw shift 4, tu 9; bz +3, bc -6, bcls +5 (rounds); 11 classes (3 blocks + 2 rows)
    "s8mid": ({"W1": 3, "U1": 7, "W2": 10, "U2": 10, "Wc": 3, "bz": 10, "bc": 1, "bcls": 14},
              90, 5, {"n_classes": 11}, {"zmid", "cmid", "z0", "z1"}),
    # odd sizes: the row kernels for U1 and Wc, 1 + 3 rows of W1, ranks 4/5 in the gate loop
    "s8odd": ({"W1": 6, "U1": 5, "W2": 6, "U2": 6, "Wc": 2, "bz": 5, "bc": 6, "bcls": 9},
              60, 20, {"hidden": 21, "rank_w": 4, "rank_u": 5, "n_classes": 7}, {"zmid"}),
    # PW 0: the C gates on AVR (no fast path), bias shift -8
    "s8slow": ({"W1": 6, "U1": 5, "W2": 3, "U2": 3, "Wc": 2, "bz": -1, "bc": 6, "bcls": 9},
               100, 10, {}, {"zmid"}),
}


@needs_avr
@pytest.mark.parametrize("name", list(FAST_PATH_MODELS8))
def test_int8_state_fast_paths_on_the_board(name, tmp_path):
    exps, zeta, nu, shape, reach = FAST_PATH_MODELS8[name]
    im = _exp_model8(13, exps, zeta, nu, **shape)
    x = golden.inputs(14, 32, n_seq=2, n_frames=40)
    got = {k for k, v in _branches8(im, x).items() if v}
    assert reach <= got, reach - got
    folder = make_model_folder(tmp_path / name, im, name)
    model = load_model(folder)
    _, result = build_and_run(model, x, tmp_path / f"b-{name}")
    np.testing.assert_array_equal(result.scores, im.run(x), err_msg=name)
    if name in ("s8sat", "s8mid"):   # the fast path of the shipped shape
        assert max(result.cycles) <= CYCLES8_MAX
    if name == "s8slow":
        assert min(result.cycles) > CYCLES8_MAX


def test_model_file_says_the_arithmetic_and_old_files_still_load(tmp_path):
    """Format version 2 names the arithmetic (model.state_bits, and the hashed integer section
    for int8 state); a version-1 file (int16 state, before it) loads unchanged, hash and
    scores; the generated header names the arithmetic the firmware is built for."""
    import json

    x = golden.inputs(3, 32, n_seq=1, n_frames=40)
    im8, im16 = golden.random_model(0, state_bits=8), golden.random_model(0)
    f8 = make_model_folder(tmp_path / "m8", im8)
    f16 = make_model_folder(tmp_path / "m16", im16)
    d8, d16 = (json.loads((f / "model.json").read_text()) for f in (f8, f16))
    assert d8["version"] == d16["version"] == 2
    assert d8["model"]["state_bits"] == d8["integer"]["state_bits"] == 8
    assert d16["model"]["state_bits"] == 16 and "state_bits" not in d16["integer"]
    m8 = load_model(f8)
    assert m8.int_model.state_bits == 8
    np.testing.assert_array_equal(m8.int_model.run(x), im8.run(x))
    assert "#define KWS_STATE_BITS 8" in model_header(m8.int_model)
    assert "#define KWS_STATE_BITS 16" in model_header(load_model(f16).int_model)
    # the same document as version 1 wrote it: no state_bits anywhere, the same hash
    old = dict(d16, version=1, model={k: v for k, v in d16["model"].items() if k != "state_bits"})
    (f16 / "model.json").write_text(json.dumps(old))
    m16 = load_model(f16)
    assert m16.hash == d16["hash"] and m16.int_model.state_bits == 16
    np.testing.assert_array_equal(m16.int_model.run(x), im16.run(x))
    shipped = REPO / "models" / "default" / "model.json"
    if shipped.exists() and json.loads(shipped.read_text())["version"] == 1:
        assert load_model(shipped.parent).int_model.state_bits == 16
    # a version-1 file cannot hold an int8-state model; the two sections must agree
    (f8 / "model.json").write_text(json.dumps(dict(d8, version=1)))
    with pytest.raises(KwsError, match="version 1 has int16 state only"):
        load_model(f8)
    (f8 / "model.json").write_text(json.dumps(dict(d8, model=dict(d8["model"], state_bits=16))))
    with pytest.raises(KwsError, match="model.state_bits 16 but the integer section's is 8"):
        load_model(f8)
    # the hash covers the arithmetic: the same arrays as int16 state are another model
    assert d8["hash"] != d16["hash"]


@needs_avr
def test_int8_state_hidden_state_in_infer_replies(dense8_run):
    """INFER with the HIDDEN flag: an int8-state board sends its int8 state as int16, equal to
    the reference's state (sign-extended)."""
    model, frames, fw, _ = dense8_run
    _, states = model.int_model.run(frames[:1, :12], return_state=True)
    with SimBoard(fw.elf, freq=fw.f_cpu) as sim:
        with Board(sim.port, fw.baud, timeout=10) as board:
            board.open()
            board.reset()
            for t in range(12):
                r = board.infer(frames[0, t], hidden=True)
                np.testing.assert_array_equal(r.hidden, states[0, t])
    assert states.min() < 0 < states.max()
