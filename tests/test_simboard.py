"""The AVR build (firmware/ports/avr/avr.mk) and the simulated board (kws-sim + kws.targets.avr.simboard)."""

import os
import subprocess
import time

import pytest
import serial

from kws.errors import KwsError
from kws.targets.avr.simboard import REPO, SimBoard, board_info, elf_size, ensure_built

ECHO = REPO / "firmware" / "ports" / "avr" / "examples" / "echo"


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    return ensure_built(ECHO, tmp_path_factory.mktemp("echo"), board="uno")


def open_port(board, fw):
    return serial.Serial(board.port, fw.baud, timeout=5)


def test_build_reports_sizes(fw):
    assert fw.elf.is_file() and fw.hex.is_file() and fw.sim.is_file()
    assert (fw.baud, fw.f_cpu) == (115200, 16_000_000)
    assert 0 < fw.flash < fw.flash_max == 32256
    assert 0 < fw.ram < fw.ram_max == 2048
    assert elf_size(fw.elf) == {"flash": fw.flash, "ram": fw.ram}


def test_board_profiles():
    assert board_info("pro-mini-8") == (57600, 8_000_000)
    assert board_info("nano-old") == (57600, 16_000_000)
    with pytest.raises(KwsError, match="unknown BOARD"):
        board_info("mega")


def test_echo_bytes_sent_at_startup(fw):
    # Written the moment the pty exists, while the firmware may still be booting.
    data = bytes(range(256))
    with SimBoard(fw.elf, freq=fw.f_cpu) as board:
        with open_port(board, fw) as port:
            port.write(data)
            got = port.read(len(data))
        board.check()
    assert got == bytes((b + 1) & 0xFF for b in data)


def test_bytes_before_rx_enabled_are_kept(fw):
    # --wait-input: the CPU starts only once our bytes are in the bridge, so all of them
    # arrive before Serial.begin() enables RX (GPIOR1 = 1), and more than the UART's 64-byte
    # fifo: the bridge must hold them and honour XON/XOFF.
    data = bytes(b for b in range(1, 256) if b != ord("T")) * 2
    with SimBoard(fw.elf, freq=fw.f_cpu, wait_input=True) as board:
        with open_port(board, fw) as port:
            port.write(data)
            got = port.read(len(data))
        host = board.stamps("HOST")
        ready = board.stamps("GPIOR1")
    assert got == bytes((b + 1) & 0xFF for b in data)
    assert host[0].cycle == 0 and ready and ready[0].cycle > 0


def test_gpior_cycle_stamps(fw):
    with SimBoard(fw.elf, freq=fw.f_cpu) as board:
        with open_port(board, fw) as port:
            for _ in range(3):
                port.write(b"T")
                assert port.read(1) == b"U"
        st = board.stamps("GPIOR0")
    assert [s.value for s in st] == [1, 2] * 3
    # stamped at the start of each OUT: 1 cycle for `out GPIOR0` + 1000 of delay
    assert [b.cycle - a.cycle for a, b in zip(st[::2], st[1::2])] == [1001] * 3
    assert st[0].cycle < st[2].cycle < st[4].cycle


def test_close_is_clean(fw):
    board = SimBoard(fw.elf, freq=fw.f_cpu).start()
    pid = board.proc.pid
    assert board.returncode is None
    assert board.close() == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie
    assert "kws-sim: signal after" in board.log()
    assert board.close() == 0  # idempotent


def test_bridge_exits_when_parent_pipe_closes(fw):
    with SimBoard(fw.elf, freq=fw.f_cpu) as board:
        board.proc.stdin.close()
        assert board.proc.wait(10) == 0


def test_missing_elf(tmp_path, fw):
    with pytest.raises(KwsError, match="not found"):
        SimBoard(tmp_path / "nope.elf").start()


def test_missing_bridge(tmp_path, fw):
    with pytest.raises(KwsError, match="make -f firmware/ports/avr/avr.mk sim"):
        SimBoard(fw.elf, sim=tmp_path / "kws-sim").start()


def test_crash_is_reported(tmp_path, fw):
    src = tmp_path / "crash.c"
    src.write_text('int main(void) { __asm__ volatile("jmp 0x7f00"); for (;;); }\n')
    elf = tmp_path / "crash.elf"
    subprocess.run(["avr-gcc", "-mmcu=atmega328p", "-Os", str(src), "-o", str(elf)], check=True)
    with SimBoard(elf) as board:
        deadline = time.monotonic() + 10
        while board.returncode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(KwsError, match="firmware crashed"):
            board.check()


def test_the_avr_targets_profiles_are_avr_mks_boards_and_the_clis_choices():
    import re

    from kws.cli import build_parser
    from kws.targets import board_profiles, target_for

    mk = (REPO / "firmware" / "ports" / "avr" / "avr.mk").read_text()
    boards = re.search(r"^BOARDS\s*:=\s*(.*)$", mk, re.M)[1].split()
    # the AVR boards first (the default is uno), then the other targets' (Arm)
    assert list(target_for("uno").profiles) == boards == board_profiles()[:len(boards)]
    build = build_parser()._subparsers._group_actions[0].choices["build"]
    assert [a for a in build._actions if a.dest == "board"][0].choices == board_profiles()
