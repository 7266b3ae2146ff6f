"""The real Cortex-M boards (Nano 33 BLE: nRF52840, Uno R4: RA4M1, Pico: RP2040): no simulator
runs them, so their firmware is checked structurally: built with models/default (the sketch
folder of `kws export` beside it), the vector table where the bootloader (or the Pico's boot2)
jumps, a stack pointer in RAM, a Thumb reset vector in flash, the core's architecture; the
Pico's boot2 (256 bytes, the bootrom's CRC) and .uf2; the uploader command lines (fake
uploaders on PATH record their argv) and the errors when an uploader is missing; a firmware
too big for a real board's flash or RAM."""

import dataclasses
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kws.errors import KwsError
from kws.paths import REPO
from kws.targets import target_for
from kws.targets.arm import profiles as arm_profiles
from kws.targets.arm import drive as arm_drive
from kws.targets.arm import upload as arm_upload
from kws.targets.arm.boot2 import boot2_block, boot2_ok, crc32_mpeg2
from kws.targets.arm.target import ArmTarget
from kws.targets.arm.uf2 import RP2040_FAMILY, read_uf2
from kws.targets.build import build
from test_arm import CORES, cpu_arch

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (make setup)")
MODEL = REPO / "models" / "default"
# board -> (vector table address, flash region [start, end), RAM size)
LAYOUT = {"nano33ble": (0x10000, (0x10000, 0x100000), 256 << 10),
          "uno-r4": (0x4000, (0x4000, 0x40000), 32 << 10),
          "pico": (0x10000100, (0x10000100, 0x10200000), 264 << 10)}


def ihex_min_address(text: str) -> int:
    """The lowest data address of an Intel HEX file (records 00, 02, 04)."""
    base, low = 0, None
    for line in text.split():
        n, addr, kind = int(line[1:3], 16), int(line[3:7], 16), int(line[7:9], 16)
        if kind == 4:
            base = int(line[9:13], 16) << 16
        elif kind == 2:
            base = int(line[9:13], 16) << 4
        elif kind == 0 and n:
            low = base + addr if low is None else min(low, base + addr)
    return low


def symbol(elf, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return next(int(ln.split()[0], 16) for ln in out.splitlines() if ln.split()[-1] == name)


def sections(elf) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    return {f[0]: (int(f[2]), int(f[1])) for f in (ln.split() for ln in out.splitlines())
            if len(f) == 3 and f[0].startswith(".") and f[1].isdigit()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (make setup)")
    root = tmp_path_factory.mktemp("arm-boards")
    return {b: build(MODEL, b, root, budget=None) for b in LAYOUT}


# --- the images -------------------------------------------------------------------------------

@needs_gcc
@pytest.mark.parametrize("board", sorted(LAYOUT))
def test_real_board_image_starts_where_its_bootloader_jumps(board, built):
    fw, p = built[board], arm_profiles.PROFILES[board]
    vectors, (flash_lo, flash_hi), ram = LAYOUT[board]
    assert fw.board == board and fw.counter == "cycles" and fw.f_cpu == p.f_cpu
    assert symbol(fw.elf, "arm_vectors") == vectors
    assert cpu_arch(fw.elf) == CORES[p.cpu]
    image = fw.elf.with_suffix(".bin").read_bytes()
    assert ihex_min_address(fw.hex.read_text()) == p.flash_base    # where the .hex/.bin load
    at = vectors - p.flash_base                                       # the table in the .bin
    sp, reset, nmi = struct.unpack_from("<3I", image, at)
    assert 0x20000000 < sp <= 0x20000000 + ram and sp % 8 == 0
    assert reset & 1 and flash_lo <= reset - 1 < flash_lo + len(image) <= flash_hi
    assert reset - 1 == symbol(fw.elf, "Reset_Handler")
    assert nmi & 1 and flash_lo <= nmi - 1 < flash_hi
    # the whole image is in the board's flash region and the size report counts it
    for name, (addr, size) in sections(fw.elf).items():
        if name in (".text", ".ARM.exidx"):
            assert flash_lo <= addr and addr + size <= flash_hi, name
    assert 2_000 < fw.flash < 16_000 and fw.ram < 2_048
    assert (fw.flash_max, fw.ram_max) == (p.flash, p.ram)
    sketch = fw.elf.parent.parent / "src" / "kws_sketch"        # kws export's folder
    assert (sketch / "kws_sketch.ino").is_file() and (sketch / "model_data.h").is_file()


# --- the Pico's boot2 and .uf2 ----------------------------------------------------------------

def test_boot2_crc_on_known_vectors():
    # by hand: init 0xFFFFFFFF ^ (0xFF << 24) = 0x00FFFFFF; its top bit stays 0 for all 8
    # shifts, so no polynomial is XORed in: 0x00FFFFFF << 8 = 0xFFFFFF00
    assert crc32_mpeg2(b"\xff") == 0xFFFFFF00
    assert crc32_mpeg2(b"") == 0xFFFFFFFF
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7      # the CRC-32/MPEG-2 check value
    block = boot2_block(b"\x01\x02\x03")
    assert len(block) == 256 and block[3:252] == bytes(249) and boot2_ok(block)
    assert block[252:] == struct.pack("<I", crc32_mpeg2(block[:252]))
    assert not boot2_ok(block[:100] + b"\x55" + block[101:])
    with pytest.raises(ValueError, match="253 bytes, at most 252"):
        boot2_block(bytes(253))


@needs_gcc
def test_pico_boot2_and_uf2(built):
    fw = built["pico"]
    image = fw.elf.with_suffix(".bin").read_bytes()
    assert sections(fw.elf)[".boot2"] == (0x10000000, 256)
    assert boot2_ok(image[:256])                             # what the bootrom checks
    assert symbol(fw.elf, "kws_rp2040_boot2") == 0x10000000
    # the bootrom runs it from its first byte at 0x20041F00: the entry is there, and it sets
    # up the 03h XIP read (SPI_CTRLR0 = 0x03000218 at 0x180000F4), then VTOR = 0x10000100
    boot2_elf = fw.elf.parent / "boot2" / "boot2.elf"
    assert symbol(boot2_elf, "rp2040_boot2") == 0x20041F00
    for word in (0x180000F4, 0x03000218, 0xE000ED08, 0x10000100):
        assert struct.pack("<I", word) in image[:252], hex(word)
    blocks = read_uf2(fw.elf.with_suffix(".uf2").read_bytes())
    assert [a for a, _, _ in blocks] == [0x10000000 + 256 * i for i in range(len(blocks))]
    assert all(f == RP2040_FAMILY and len(d) == 256 for _, d, f in blocks)
    data = b"".join(d for _, d, _ in blocks)
    assert data[:len(image)] == image and not any(data[len(image):])
    assert len(blocks) == (len(image) + 255) // 256


# --- too big ----------------------------------------------------------------------------------

@needs_gcc
def test_real_board_refuses_firmware_over_its_flash_or_ram(tmp_path, monkeypatch):
    """The real machines' link (ld/ra4m1.ld, ld/nrf52.ld) with smaller limits in the profile:
    arm.mk's size check refuses it, kws build says by how much."""
    small = {"r4-small-ram": dataclasses.replace(arm_profiles.PROFILES["uno-r4"],
                                                 name="r4-small-ram", ram=8_192),
             "ble-small-flash": dataclasses.replace(arm_profiles.PROFILES["nano33ble"],
                                                    name="ble-small-flash", flash=4_000)}
    for name, p in small.items():
        monkeypatch.setitem(arm_profiles.PROFILES, name, p)
    monkeypatch.setattr(ArmTarget, "profiles", (*ArmTarget.profiles, *small))
    with pytest.raises(KwsError, match=r"r4-small-ram.*RAM \(static \+ stack\) over by \d+"):
        build(MODEL, "r4-small-ram", tmp_path / "r", budget=None)
    with pytest.raises(KwsError, match=r"ble-small-flash .*does not fit the flash: over by "
                                       r"\d+ bytes"):
        build(MODEL, "ble-small-flash", tmp_path / "f", budget=None)


# --- uploaders --------------------------------------------------------------------------------

@pytest.fixture
def fw_files(tmp_path):
    d = tmp_path / "fw"
    d.mkdir()
    for ext in (".hex", ".bin", ".uf2"):
        (d / f"kws_sketch{ext}").write_bytes(b"\0" * 512)
    return d / "kws_sketch.hex"


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A PATH holding only fake uploaders, each recording its argv (one per line) to
    <name>.argv (the last call's), printing `out`, exiting with `rc`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))

    def add(name: str, rc: int = 0, out: str = "") -> Path:
        log = tmp_path / f"{name}.argv"
        script = bindir / name
        script.write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > {log}\n"
                          f"echo '{out}'\necho 'pretend failure' >&2\nexit {rc}\n")
        script.chmod(0o755)
        return log
    return add


def argv(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_nano33ble_is_flashed_by_bossac(fw_files, tools, tmp_path):
    log = tools("bossac")
    port = str(tmp_path / "ttyACM9")     # no such port: the 1200-baud touch is skipped
    cmd = target_for("nano33ble").flash(fw_files, "nano33ble", port)
    bin_path = str(fw_files.with_suffix(".bin"))
    assert argv(log) == [f"--port={port}", "-U", "-i", "-e", "-w", bin_path, "-R"]
    assert cmd == ["bossac", *argv(log)]


def test_uno_r4_minima_by_dfu_util_and_wifi_by_bossac(fw_files, tools, tmp_path, monkeypatch):
    bin_path = str(fw_files.with_suffix(".bin"))
    # the Arduino core's dfu-util (its help lists -Q): the core's command line
    dfu = tools("dfu-util", out="  -Q --quit-after-download (hypothetical help text)")
    target_for("uno-r4").flash(fw_files, "uno-r4", str(tmp_path / "ttyACM9"))
    assert argv(dfu) == ["--device", "0x2341:0x0069,:0x0369", "-D", bin_path, "-a0", "-Q"]
    dfu = tools("dfu-util", out="  -R --reset   Issue USB reset signalling once finished")
    target_for("uno-r4").flash(fw_files, "uno-r4", str(tmp_path / "ttyACM9"))
    assert argv(dfu) == ["--device", "0x2341:0x0069,:0x0369", "-D", bin_path, "-a0", "-R"]
    bossac = tools("bossac")
    monkeypatch.setattr(arm_upload, "_usb_pid", lambda port: arm_upload.R4_WIFI_PID)
    port = str(tmp_path / "ttyACM8")
    target_for("uno-r4").flash(fw_files, "uno-r4", port)
    assert argv(bossac) == [f"--port={port}", "-U", "-e", "-w", bin_path, "-R"]


def test_pico_by_picotool_else_its_drive(fw_files, tools, tmp_path):
    uf2 = fw_files.with_suffix(".uf2")
    log = tools("picotool")
    assert target_for("pico").flash(fw_files, "pico") == ["picotool", "load", "-x", str(uf2)]
    assert argv(log) == ["load", "-x", str(uf2)]
    os.remove(tmp_path / "bin" / "picotool")
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    assert target_for("pico").flash(fw_files, "pico", str(drive)) == ["cp", str(uf2),
                                                                      f"{drive}/"]
    assert (drive / "kws_sketch.uf2").read_bytes() == uf2.read_bytes()


def test_missing_uploaders_say_what_to_install_and_run(fw_files, tools, tmp_path, monkeypatch):
    monkeypatch.setattr(arm_upload, "_find_port", lambda port, required: port)
    bin_path, uf2 = fw_files.with_suffix(".bin"), fw_files.with_suffix(".uf2")
    with pytest.raises(KwsError, match="needs bossac.*Arduino's fork of BOSSA.*arduino:mbed_nano"
                                       rf".*run: bossac --port=/dev/ttyACM0 -U -i -e -w "
                                       rf"{bin_path} -R$"):
        target_for("nano33ble").flash(fw_files, "nano33ble", None)
    with pytest.raises(KwsError, match=r"needs dfu-util.*apt install dfu-util.*double-tap reset"
                                       r".*run: dfu-util --device 0x2341:0x0069,:0x0369 -D "
                                       rf"{bin_path} -a0 -R$"):
        target_for("uno-r4").flash(fw_files, "uno-r4", None)
    monkeypatch.setattr(arm_drive, "find_drive", lambda label: None)   # none mounted here
    with pytest.raises(KwsError, match=rf"hold BOOTSEL .*cp {uf2} /media/\$USER/RPI-RP2/.*"
                                       rf"apt install picotool.*picotool load -x {uf2}$"):
        target_for("pico").flash(fw_files, "pico", None)
    # an uploader that fails, and a firmware not built
    tools("picotool", rc=1)
    with pytest.raises(KwsError, match="(?s)picotool failed .*pretend failure"):
        target_for("pico").flash(fw_files, "pico", None)
    with pytest.raises(KwsError, match=r"no firmware .*missing\.bin: build it first \(kws build "
                                       r"--board nano33ble\)"):
        target_for("nano33ble").flash(tmp_path / "missing.hex", "nano33ble", "/dev/null")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="make setup")
def test_a_board_without_model_gets_its_profile_s_default(tmp_path, capsys, monkeypatch):
    """`kws build --board pico` (no --model): the 5.5 KB model and its budget; an AVR board:
    the 1 KB default; a model named on the command line wins and keeps the 1 KB budget."""
    from kws.cli import main
    from kws.quant.modelfile import load_model

    monkeypatch.chdir(REPO)
    assert target_for("uno").default_model("uno") == ("models/default", 1024)
    assert target_for("mps2-an386").default_model("mps2-an386") == ("models/default", 1024)
    assert main(["build", "--board", "pico", "--out", str(tmp_path / "fw")]) == 0
    out = capsys.readouterr()
    assert "models/default_5k (the pico profile's default" in out.err
    h = load_model(REPO / "models" / "default_5k").hash
    assert h[:16] in (tmp_path / "fw" / "src" / "kws_sketch" / "model_data.h").read_text()
    assert main(["build", "--board", "pico", "--model", "models/default_5k",
                 "--out", str(tmp_path / "fw2")]) != 0          # over the 1 KB budget
    assert "1024" in capsys.readouterr().err
