"""The Cortex-M target: the kernel cross-compiled for M0+/M3/M4 (plain C99, the right
architecture; SMLAD on the M4 only), the kernel's golden vectors run on QEMU's Cortex-M
machines (the M4 on its DSP path, ACLE or inline asm, and with KWS_NO_DSP on the portable
C), the protocol firmware on a simulated board through `kws verify` (0 mismatched frames),
instruction counts that do not depend on QEMU's time base, the model bytes in the ELF, and
the errors for profiles without a port and for a model or firmware too big for a board (the
real boards' builds and uploaders: tests/test_arm_boards.py)."""

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest

from kws.checks.verify import format_summary, verify
from kws.codegen.export import export
from kws.errors import KwsError
from kws.link.board import Board
from kws.paths import FIRMWARE, firmware_module
from kws.targets import board_profiles, target_for
from kws.targets.arm import profiles as arm_profiles
from kws.targets.arm.qemuboard import QEMU, QemuBoard
from kws.targets.arm.target import ArmTarget, make_args, profile, run_make
from kws.targets.build import build, sim_firmware
from test_verify import SC_MINI, make_model

golden = firmware_module("tests/golden.py")
KERNEL = FIRMWARE / "kernel"
PORT = FIRMWARE / "ports" / "arm"
# -mcpu -> what readelf -A reports as Tag_CPU_arch
CORES = {"cortex-m0": "v6S-M", "cortex-m0plus": "v6S-M", "cortex-m3": "v7", "cortex-m4": "v7E-M"}

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (make setup)")
needs_qemu = pytest.mark.skipif(shutil.which(QEMU) is None,
                                reason="qemu-system-arm not installed (make setup)")


def cpu_arch(obj) -> str:
    r = subprocess.run(["arm-none-eabi-readelf", "-A", str(obj)], capture_output=True,
                       text=True, check=True)
    return next(ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines()
                if "Tag_CPU_arch:" in ln)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("arm-golden")
    out = {}
    for name, im, x in golden.cases():
        if name in ("dense8", "sparse4", "big8", "mixed4", "odd8", "s8dense8", "s8big8",
                    "s8mixed8", "s8odd8", "shipped-default", "shipped-default_int16"):
            golden.write_case(root / name, im, x, name)
            out[name] = root / name
    return out


# --- profiles ---------------------------------------------------------------------------------

def test_arm_profiles_are_board_choices():
    names = board_profiles()
    for p in ("mps2-an386", "mps2-an385", "mps2-m0plus", "nano33ble", "uno-r4", "pico"):
        assert p in names
        assert isinstance(target_for(p), ArmTarget)
    assert names[0] == "uno" and target_for("sim").name == "avr"   # the default stays AVR
    assert target_for("pico").profile_info("pico") == (115200, 125_000_000)
    boards = arm_profiles.PROFILES
    assert (boards["nano33ble"].cpu, boards["uno-r4"].cpu, boards["pico"].cpu) == \
        ("cortex-m4", "cortex-m4", "cortex-m0plus")
    assert boards["uno-r4"].ram == 32 * 1024 and boards["pico"].led == "GP25"
    assert all(p.machine for p in boards.values())              # every profile has a port
    real = {n for n, p in boards.items() if p.qemu is None}      # built and flashed, not run
    assert real == {"nano33ble", "uno-r4", "pico"}
    assert all(boards[n].uploader for n in real)


# --- the kernel, cross-compiled ---------------------------------------------------------------

@needs_gcc
@pytest.mark.parametrize("cpu", sorted(CORES))
def test_kernel_cross_compiles_for_cortex_m(cpu, cases, tmp_path):
    obj = tmp_path / f"kws_model-{cpu}.o"
    r = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99",
                        "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{cases['sparse4']}",
                        f"-I{KERNEL}", "-c", str(KERNEL / "kws_model.c"), "-o", str(obj)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert cpu_arch(obj) == CORES[cpu]


def smlad_count(elf) -> int:
    """How many SMLAD instructions the disassembly of `elf` (or an object) holds."""
    r = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True,
                       text=True, check=True)
    return sum(1 for ln in r.stdout.splitlines() if "\tsmlad\t" in ln)


@needs_gcc
@pytest.mark.parametrize("cpu,flags,dsp", [("cortex-m4", [], True),
                                           ("cortex-m4", ["-DKWS_DSP_ASM"], True),
                                           ("cortex-m4", ["-DKWS_NO_DSP"], False),
                                           ("cortex-m3", [], False),
                                           ("cortex-m0plus", [], False)])
def test_the_dsp_path_is_compiled_for_the_m4_only(cpu, flags, dsp, cases, tmp_path):
    """Dense int8 rows use SXTB16 + SMLAD where the core has the DSP extension (the M4 of
    mps2-an386), in both arithmetics; the M3 and M0+ (and -DKWS_NO_DSP) get the portable C,
    and int4 weights stay on it everywhere."""
    for name in ("dense8", "s8dense8", "sparse4"):
        obj = tmp_path / f"{name}.o"
        r = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99",
                            "-Wall", "-Wextra", "-Werror", "-pedantic", *flags,
                            f"-I{cases[name]}", f"-I{KERNEL}", "-c",
                            str(KERNEL / "kws_model.c"), "-o", str(obj)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (smlad_count(obj) > 0) == (dsp and name != "sparse4"), (name, cpu, flags)


def golden_elf(case_dir, cpu, out, *flags):
    """firmware/tests/test_kernel.c for a Cortex-M, run by QEMU with semihosting (startup.c)."""
    r = subprocess.run(
        ["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99", "-Wall", "-Wextra",
         "-Werror", "-DKWS_MACHINE_MPS2", "-DKWS_SEMIHOSTING", "-DKWS_SEMIHOSTING_STDIO", *flags,
         f"-I{case_dir}", f"-I{KERNEL}", f"-I{PORT}", str(FIRMWARE / "tests" / "test_kernel.c"),
         str(KERNEL / "kws_model.c"), str(PORT / "startup.c"), "-nostartfiles",
         "--specs=rdimon.specs", f"-L{PORT / 'ld'}", "-Tmps2.ld",
         "-Wl,--defsym=_stack_size=16384", "-Wl,--gc-sections", "-o", str(out)],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def run_semihosted(elf, machine, *args):
    cmd = [QEMU, "-M", machine, "-display", "none", "-monitor", "none", "-serial", "none",
           "-semihosting-config", ",".join(["enable=on,target=native", f"arg={elf}",
                                            *(f"arg={a}" for a in args)]),
           "-kernel", str(elf)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@needs_gcc
@needs_qemu
@pytest.mark.parametrize("cpu,machine,flags", [("cortex-m4", "mps2-an386", ()),
                                               ("cortex-m4", "mps2-an386", ("-DKWS_DSP_ASM",)),
                                               ("cortex-m4", "mps2-an386", ("-DKWS_NO_DSP",)),
                                               ("cortex-m3", "mps2-an385", ()),
                                               ("cortex-m0plus", "mps2-an385", ())])
def test_golden_vectors_in_qemu(cpu, machine, flags, cases, tmp_path):
    for name, case_dir in cases.items():
        elf = golden_elf(case_dir, cpu, tmp_path / f"{name}.elf", *flags)
        r = run_semihosted(elf, machine, case_dir / "golden.bin")
        assert r.returncode == 0 and r.stdout.startswith("ok:"), (name, r.stdout, r.stderr)
    # and the test fails on a wrong value
    data = bytearray((cases["dense8"] / "golden.bin").read_bytes())
    data[-3] ^= 1
    (tmp_path / "bad.bin").write_bytes(bytes(data))
    elf = golden_elf(cases["dense8"], cpu, tmp_path / "dense8.elf", *flags)
    r = run_semihosted(elf, machine, tmp_path / "bad.bin")
    assert r.returncode != 0 and "MISMATCH" in r.stdout


# --- the protocol firmware on a simulated board -----------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("arm-model") / "model")


@needs_gcc
@needs_qemu
@pytest.mark.parametrize("prof", ["mps2-an386", "mps2-m0plus", "microbit"])
def test_verify_on_simulated_cortex_m(prof, model, tmp_path):
    fw = sim_firmware(model, out_dir=tmp_path / "fw", profile=prof)
    assert fw.counter == "instructions" and fw.f_cpu == profile(prof).f_cpu
    assert cpu_arch(fw.elf) == CORES[profile(prof).cpu]
    assert (smlad_count(fw.elf) > 0) == (profile(prof).cpu == "cortex-m4")   # the DSP path
    r = verify(model, SC_MINI, board="sim", boards=2, split="testing", fw=fw, profile=prof)
    text = format_summary(r)
    print("\n" + text)
    assert r["complete"] and r["error"] is None
    assert r["clips"] == r["clips_planned"] >= 10 and r["frames"] == 49 * r["clips"]
    assert r["mismatched_frames"] == 0 and r["device_accuracy"] == r["reference_accuracy"]
    assert r["counter"] == "instructions" and "instructions per frame (exact" in text
    c = r["cycles_per_frame"]
    assert 3_000 < c["min"] <= c["median"] <= c["max"] < 1.05 * c["min"]
    assert 0 < r["stack_peak"] < 1024
    size = r["firmware"]    # the build a user makes (kws build), not the simulator's
    assert size["board"] == prof and 2_000 < size["flash"] < 16_000 and size["ram"] < 2_048


@needs_gcc
@needs_qemu
def test_first_request_after_start_is_answered_at_once(model, tmp_path):
    """QEMU's own -serial pty holds input back up to 1 s until it notices a reader (the first
    request then times out and is resent); the socket + pty bridge starts the machine only
    once the host is connected."""
    fw = sim_firmware(model, out_dir=tmp_path / "fw", profile="mps2-an385")
    for _ in range(2):
        with target_for("mps2-an385").simulate(fw) as qb:
            with Board(qb.port, fw.baud, timeout=5) as b:
                b.open(model)
                assert b.identity.matches(model.hash)
                assert b.resends == 0 and b.timeouts == 0
            qb.check()


@needs_gcc
@needs_qemu
def test_instruction_counts_do_not_depend_on_the_time_base(model, tmp_path):
    """-icount shift=S: 2^S ns per instruction; the timer runs at 25 MHz, so S = 8 gives 6.4
    ticks per instruction and S = 10 gives 25.6: equal counts mean they are exact. (QEMU's
    timer reads can be one tick off; at S = 6, 1.6 ticks per instruction, that can move a
    count by one, so the shipped S = 10 keeps a wide margin.)"""
    sketch = export(model, tmp_path / "src", template=None, baud=1_000_000, budget=None)
    x = np.random.default_rng(3).integers(-128, 128, (12, model.int_model.n_in))
    counts = {}
    for shift in (8, 10):
        out = tmp_path / f"shift{shift}"
        args = [a for a in make_args(profile("mps2-an386"), sim=True)
                if not a.startswith("ICOUNT_SHIFT=")]
        run_make([f"SKETCH={sketch}", f"BUILD={out}", *args, f"ICOUNT_SHIFT={shift}", "all"],
                 "shift test")
        with QemuBoard(out / "kws_sketch.elf", "mps2-an386", icount_shift=shift) as qb:
            with Board(qb.port, 1_000_000, timeout=5) as b:
                b.open(model)
                b.reset()
                counts[shift] = [int(b.infer(f).cycles[0]) for f in x]
    assert counts[8] == counts[10] and min(counts[8]) > 1000


@needs_gcc
@needs_qemu
def test_two_machines_two_timers_one_count(model, tmp_path):
    """ARMv6-M code counted on the MPS2 AN385 (CMSDK timer, 25 MHz) and on the micro:bit's
    nRF51 (a Cortex-M0; TIMER0, 16 MHz): the same instructions per frame."""
    x = np.random.default_rng(4).integers(-128, 128, (12, model.int_model.n_in))
    counts = {}
    for prof in ("mps2-m0plus", "microbit"):
        fw = sim_firmware(model, out_dir=tmp_path / prof, profile=prof)
        with target_for(prof).simulate(fw) as qb:
            with Board(qb.port, fw.baud, timeout=5) as b:
                b.open(model)
                b.reset()
                counts[prof] = [int(b.infer(f).cycles[0]) for f in x]
    assert counts["mps2-m0plus"] == counts["microbit"]


def elf_symbol_offset(elf, name: str) -> int:
    """The file offset of symbol `name`'s first byte in a 32-bit little-endian ELF."""
    import struct

    data = elf.read_bytes()
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    sections = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize)
                for i in range(shnum)]
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    addr = next(int(line.split()[0], 16) for line in nm.splitlines()
                if line.split()[-1] == name)
    for _, kind, _, sh_addr, sh_offset, size, *_ in sections:
        if kind == 1 and sh_addr <= addr < sh_addr + size:      # PROGBITS holding it
            return sh_offset + addr - sh_addr
    raise AssertionError(f"{name} is in no PROGBITS section")


@needs_gcc
@needs_qemu
def test_a_damaged_parameter_block_is_reported_at_O2(model, tmp_path):
    """The board compares its stored parameter block with the compiled constants; the stored
    bytes are read as stored (KWS_READ_U8_STORED), so gcc -O2 cannot fold the check away and
    a damaged byte in flash is caught when the host connects."""
    fw = sim_firmware(model, out_dir=tmp_path / "fw", profile="mps2-an386")
    bad = tmp_path / "bad.elf"
    image = bytearray(fw.elf.read_bytes())
    image[elf_symbol_offset(fw.elf, "kws_params") + 1] ^= 0x01      # shift of tu
    bad.write_bytes(bytes(image))
    with QemuBoard(fw.elf, "mps2-an386") as qb:                       # the intact image
        with Board(qb.port, fw.baud, timeout=5) as b:
            b.open(model)
    with QemuBoard(bad, "mps2-an386") as qb:
        with Board(qb.port, fw.baud, timeout=5) as b:
            with pytest.raises(KwsError, match=r"parameter block .* \(byte 1\)"):
                b.open(model)


@needs_gcc
def test_elf_model_symbols_are_the_python_byte_count(model, tmp_path):
    fw = build(model, "mps2-an385", tmp_path, budget=None)
    sizes = ArmTarget().symbol_sizes(fw.elf)
    im = model.int_model
    assert sizes == {f"kws_{k}": v for k, v in im.storage().items() if v}
    assert sum(sizes.values()) == im.n_bytes()
    ino = fw.elf.parent.parent / "src" / "kws_sketch" / "kws_sketch.ino"   # for the IDE
    assert ino.read_text() == (PORT / "arduino" / "template.ino").read_text()
    assert fw.hex.is_file() and fw.elf.with_suffix(".bin").is_file()


@needs_gcc
@needs_qemu
def test_arduino_sketch_for_arm_boards_runs_on_the_simulated_board(model, tmp_path):
    """The .ino the IDE gets for the Nano 33 BLE / Uno R4 / Pico (Arduino API only), built on
    the MPS2 board's minimal Arduino API (arm.mk ARDUINO=1): bit-exact over the protocol."""
    sketch = export(model, tmp_path / "src", baud=1_000_000, budget=None,
                    template=ArmTarget.sketch_template)
    out = tmp_path / "b"
    run_make([f"SKETCH={sketch}", f"BUILD={out}", *make_args(profile("mps2-an386"), sim=True),
              "ARDUINO=1", "all"], "the Arduino sketch")
    x = golden.inputs(5, model.int_model.n_in, n_seq=2, n_frames=40)
    got = np.zeros((*x.shape[:2], model.int_model.n_classes), np.int64)
    with QemuBoard(out / "kws_sketch.elf", "mps2-an386") as qb:
        with Board(qb.port, 1_000_000, timeout=5) as b:
            b.open(model)
            for c in range(x.shape[0]):
                b.reset()
                for t in range(x.shape[1]):
                    r = b.infer(x[c, t])
                    got[c, t] = r.scores[0]
                    assert r.cycles[0] > 0     # micros(): QEMU has no DWT cycle counter
            caps = b.identity.caps
            assert b.stats().inferences == x.shape[0] * x.shape[1]
        qb.check()
    np.testing.assert_array_equal(got, model.int_model.run(x))
    assert caps & 0x01 and not caps & 0x04      # a timer; no stack figure


# --- errors -----------------------------------------------------------------------------------

def test_real_arm_boards_say_what_is_missing(model, tmp_path):
    """The real boards are built (tests/test_arm_boards.py) but not simulated; a profile with
    no port says what is missing, and the simulated boards cannot be flashed."""
    with pytest.raises(KwsError, match="pico has no simulator .*mps2-m0plus runs cortex-m0plus"):
        sim_firmware(model, out_dir=tmp_path / "sim", profile="pico")
    bare = dataclasses.replace(arm_profiles.PROFILES["uno-r4"], machine=None)
    with pytest.raises(KwsError, match="uno-r4 .*not supported yet.*board_<machine>.c.*"
                                       "Arduino IDE with Arduino UNO R4 Boards"):
        make_args(bare, sketch=tmp_path / "kws_sketch")
    with pytest.raises(KwsError, match="simulated Arm boards cannot be flashed"):
        target_for("mps2-an386").flash(tmp_path / "x.hex", "sim")


@needs_gcc
def test_firmware_over_a_boards_flash_or_ram_is_refused(model, tmp_path, monkeypatch):
    base = arm_profiles.PROFILES["mps2-an385"]
    small = {"tiny-flash": dataclasses.replace(base, name="tiny-flash", flash=3_000),
             "tiny-ram": dataclasses.replace(base, name="tiny-ram", ram=4_096),
             "tiny-model": dataclasses.replace(base, name="tiny-model", flash=500)}
    for name, p in small.items():
        monkeypatch.setitem(arm_profiles.PROFILES, name, p)
    monkeypatch.setattr(ArmTarget, "profiles", (*ArmTarget.profiles, *small))
    with pytest.raises(KwsError, match=r"tiny-flash .*does not fit the flash: over by \d+ bytes"):
        build(model, "tiny-flash", tmp_path / "f", budget=None)
    with pytest.raises(KwsError, match=r"RAM \(static \+ stack\) over by \d+ bytes"):
        build(model, "tiny-ram", tmp_path / "r", budget=None)
    with pytest.raises(KwsError, match=r"more than the tiny-model's whole flash"):
        build(model, "tiny-model", tmp_path / "m", budget=None)


def test_microbit_is_flashed_by_copying_the_hex_to_its_drive(tmp_path):
    hex_path = tmp_path / "kws_sketch.hex"
    hex_path.write_text(":00000001FF\n")
    drive = tmp_path / "MICROBIT"
    drive.mkdir()
    cmd = target_for("microbit").flash(hex_path, "microbit", str(drive))
    assert cmd == ["cp", str(hex_path), f"{drive}/"]
    assert (drive / "kws_sketch.hex").read_text() == ":00000001FF\n"
    with pytest.raises(KwsError, match="not a folder"):
        target_for("microbit").flash(hex_path, "microbit", str(tmp_path / "nope"))
    with pytest.raises(KwsError, match="no firmware"):
        target_for("microbit").flash(tmp_path / "missing.hex", "microbit", str(drive))


# --- UF2 --------------------------------------------------------------------------------------

def test_uf2_writer_on_a_hand_made_case(tmp_path):
    from kws.targets.arm.uf2 import RP2040_FAMILY, read_uf2, write_uf2

    image = bytes(range(256)) + b"\xaa" * 44           # 300 bytes: two blocks
    write_uf2(image, tmp_path / "fw.uf2", 0x10000000, RP2040_FAMILY)
    data = (tmp_path / "fw.uf2").read_bytes()
    assert len(data) == 2 * 512
    # block 0's header, by hand: magics, flags (family id present), address, 256 bytes,
    # block 0 of 2, the RP2040 family; then the payload, zeros, the end magic
    assert data[:32] == bytes.fromhex("5546320a 57515d9e 00200000 00000010"
                                      "00010000 00000000 02000000 56ff8be4")
    assert data[32:288] == bytes(range(256)) and data[288:508] == bytes(220)
    assert data[508:512] == bytes.fromhex("306fb10a")
    assert data[512 + 12:512 + 16] == bytes.fromhex("00010010")          # 0x10000100
    assert data[512 + 20:512 + 24] == bytes.fromhex("01000000")          # block 1
    assert data[512 + 32:512 + 288] == b"\xaa" * 44 + bytes(212)         # padded to 256
    blocks = read_uf2(data)
    assert [(a, f) for a, _, f in blocks] == [(0x10000000, RP2040_FAMILY),
                                               (0x10000100, RP2040_FAMILY)]
    assert b"".join(p for _, p, _ in blocks)[:300] == image
    bad = bytearray(data)
    bad[512 + 508] ^= 1
    with pytest.raises(KwsError, match="block 1: bad magic"):
        read_uf2(bytes(bad))
    with pytest.raises(KwsError, match="numbered 0 of 2, expected 1 of 2"):
        read_uf2(data[:512] * 2)
    with pytest.raises(KwsError, match="not aligned"):
        write_uf2(image, tmp_path / "x.uf2", 0x10000010, RP2040_FAMILY)
