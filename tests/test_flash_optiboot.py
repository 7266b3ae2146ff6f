"""`make flash` without hardware: the real avrdude writes the real kws sketch (built for the
shipped model) through the real optiboot running on the simulated Uno (kws-sim --boot),
reads it back to verify it, optiboot's watchdog reset starts the sketch, and the sketch
answers IDENTIFY with the shipped model's hash.

About 10 s on the project machine: the sketch build ~1.5 s, then three avrdude runs of 2-3 s
each, in real time (the simulator runs optiboot at the wall clock's pace: its watchdog
timeouts and avrdude's serial timeouts must agree). Writing and verifying the ~9 KB sketch at
115200 baud takes avrdude ~2.7 s, about what a real Uno takes.
"""

import shutil
import subprocess
import time

import numpy as np
import pytest

from kws.link.board import Board
from kws.errors import KwsError
from kws.targets.avr.flash import avrdude_command, avrdude_counts, flash, flash_sim
from kws.targets.avr.simboard import (DEBIAN_OPTIBOOT_DIR, DEBIAN_OPTIBOOT_HEX, REPO, UNO_BOOT_START,
                          SimBoard, bootloader_problem, ensure_built, hex_image, optiboot_hex,
                          read_ihex)

MODEL = REPO / "models" / "default"

pytestmark = [
    pytest.mark.skipif(shutil.which("avr-gcc") is None, reason="avr-gcc not installed"),
    pytest.mark.skipif(shutil.which("avrdude") is None, reason="avrdude not installed"),
    pytest.mark.skipif(not (DEBIAN_OPTIBOOT_DIR / "optiboot.c").is_file(),
                       reason="arduino-core-avr (optiboot) not installed"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The protocol sketch for models/default, as `kws build --board uno` makes it."""
    from kws.targets.build import build
    from kws.quant.modelfile import load_model

    model = load_model(MODEL)
    fw = build(model, "uno", tmp_path_factory.mktemp("fw"), sim=True)
    return model, fw


@pytest.fixture(scope="module")
def boot():
    return optiboot_hex()


def test_optiboot_hex_fits_the_boot_section(boot):
    assert bootloader_problem(boot) is None
    image = hex_image(boot)
    assert min(a for a, _ in read_ihex(boot)) == UNO_BOOT_START == 0x7E00
    assert image[:UNO_BOOT_START] == b"\xff" * UNO_BOOT_START
    assert image[0x7FFE:0x8000] == bytes([4, 4])          # optiboot version 4.4
    # Debian's own hex is used when it fits; the one arduino-core-avr 1.8.7 ships does not
    # (532 bytes of code from 0x7E00: past the end of the flash), and then the same source
    # is built (firmware/ports/avr/sim/Makefile, target optiboot).
    problem = bootloader_problem(DEBIAN_OPTIBOOT_HEX) if DEBIAN_OPTIBOOT_HEX.is_file() else "-"
    assert (boot == DEBIAN_OPTIBOOT_HEX) == (problem is None)


def test_simulator_refuses_a_bootloader_outside_the_flash(app, tmp_path):
    # (`app` builds the simulator too)
    bad = tmp_path / "bad.hex"
    bad.write_text(":020000040000FA\n:04801000FF270994A9\n:00000001FF\n")   # data at 0x8010
    assert "outside the flash" in bootloader_problem(bad)
    with pytest.raises(KwsError, match="simulator failed to start.*outside the flash"):
        SimBoard(None, boot=bad).start()
    with pytest.raises(KwsError, match="needs a firmware, a bootloader"):
        SimBoard(None)


def test_avrdude_flashes_the_sketch_through_optiboot(app, boot, tmp_path):
    model, fw = app
    dump = tmp_path / "flash.bin"
    t0 = time.monotonic()
    with flash_sim(fw.hex, boot=boot, dump_flash=dump) as done:
        # the same avrdude command as for a real Uno, verification on (no -V)
        assert done.cmd == avrdude_command(fw.hex, done.sim.port, "uno")
        assert "-V" not in done.cmd and "115200" in done.cmd
        out = done.output
        assert "device signature = 0x1e950f" in out
        assert done.written == done.verified == fw.flash, out
        assert "flash verified" in out and "mismatch" not in out
        # optiboot left through its watchdog (WDRF) and jumped to the sketch at 0
        log = done.sim.log()
        assert done.sim.resets() == 1 and "reset (watchdog, MCUSR 0x08)" in log, log
        assert done.sim.app_starts() == 1 and "application started (PC 0x0000)" in log, log
        # the sketch answers: IDENTIFY with the shipped model (Board.open checks the hash,
        # shape and parameter block), then one frame through the network
        with Board(done.sim.port, fw.baud, timeout=1.0, owner=done.sim) as board:
            board.open(model)
            ident = board.identity
            assert ident.matches(model.hash) and ident.hash_prefix
            assert ident.f_cpu == 16_000_000
            r = board.infer(np.zeros(ident.n_in, dtype=np.int8), reset=True)
            assert r.scores.shape == (1, ident.n_classes)
    elapsed = time.monotonic() - t0
    assert elapsed < 60, elapsed
    # what optiboot wrote with SPM is the sketch, byte for byte; the bootloader is intact
    flash_now = dump.read_bytes()
    app_image, boot_image = hex_image(fw.hex), hex_image(boot)
    assert len(flash_now) == 0x8000
    assert flash_now[:fw.flash] == app_image[:fw.flash]
    assert flash_now[UNO_BOOT_START:] == boot_image[UNO_BOOT_START:]
    # and nothing else: the rest of the application section is still erased
    assert flash_now == app_image[:UNO_BOOT_START] + boot_image[UNO_BOOT_START:]
    print(f"\nflash through optiboot: {done.written} bytes written and verified, avrdude "
          f"{done.seconds:.1f} s, with the handshake {elapsed:.1f} s")


def test_avrdude_verification_sees_other_flash_contents(app, boot):
    # A board flashed before (the sketch loaded with the bootloader), reset into optiboot:
    # avrdude's read-back must find that the echo example is not what is in the flash.
    model, fw = app
    other = ensure_built(REPO / "firmware" / "ports" / "avr" / "examples" / "echo", fw.hex.parent.parent / "echo",
                         board="uno", sim=False)
    with SimBoard(fw.elf, boot=boot, wait_input=True) as sim:
        cmd = avrdude_command(other.hex, sim.port, "uno")
        cmd[-1] = cmd[-1].replace("flash:w:", "flash:v:")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "verification mismatch" in r.stderr, r.stderr
        assert "bytes of flash written" not in r.stderr
        sim.wait_app()      # optiboot still leaves through its watchdog: the sketch runs
        with Board(sim.port, fw.baud, timeout=1.0) as board:
            assert board.open(model).identity.matches(model.hash)


def test_kws_flash_board_sim(app):
    # `kws flash --board sim`: the user flow of a real board, with the IDENTIFY check
    model, fw = app
    cmd = flash(fw.hex, "sim")
    assert cmd[:8] == ["avrdude", "-C", "/etc/avrdude.conf", "-p", "atmega328p", "-c",
                       "arduino", "-P"]
    assert cmd[9:] == ["-b", "115200", "-D", "-U", f"flash:w:{fw.hex}:i"]
    assert flash(fw.hex, "sim", dry_run=True)[8] == "<simulator pty>"
    with pytest.raises(KwsError, match="no port to choose"):
        flash(fw.hex, "sim", port="/dev/ttyACM0")


def test_avrdude_counts():
    out = ("avrdude: 8414 bytes of flash written\n"
           "avrdude: verifying flash memory against x.hex\n"
           "avrdude: 8414 bytes of flash verified\n")
    assert avrdude_counts(out) == {"written": 8414, "verified": 8414}
    assert avrdude_counts("nothing") == {}
