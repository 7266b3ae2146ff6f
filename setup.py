"""The firmware sources ship as package data: a non-editable build copies firmware/ into the
package as kws/_firmware (kws.paths finds it there when kws runs outside a checkout).
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "*.a", "*.elf", "*.hex")


class BuildPyWithFirmware(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):   # a checkout uses its own firmware/
            return
        dst = Path(self.build_lib) / "kws" / "_firmware"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(HERE / "firmware", dst, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithFirmware})
