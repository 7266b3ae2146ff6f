"""Atomic writes and a held-back Ctrl-C: a killed run leaves the old file or the new one."""

import os
import signal

import pytest

from kws.atomic import atomic_open, ctrl_c_deferred


def test_an_exception_inside_the_block_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("new")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_ctrl_c_inside_a_deferred_block_lands_after_the_files_are_written(tmp_path):
    written = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred():
            for name in ("checkpoint", "metrics"):
                with atomic_open(tmp_path / name) as f:
                    os.kill(os.getpid(), signal.SIGINT)   # arrives in the middle of a write
                    f.write(name)
                written.append(name)
    assert written == ["checkpoint", "metrics"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "metrics"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back


def test_a_block_without_ctrl_c_raises_nothing(tmp_path):
    with ctrl_c_deferred():
        (tmp_path / "x").write_text("x")
    assert (tmp_path / "x").read_text() == "x"
