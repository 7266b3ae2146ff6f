"""Where things are: the firmware sources and the build folder.

From a checkout, the firmware is the repository's firmware/ folder and builds go to its
build/. From an installed package (`pip install .`), the firmware is the copy shipped as
package data (kws/_firmware) and builds go to $KWS_BUILD_DIR, else ~/.cache/kws/build.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent        # the checkout, when kws runs from one
IN_CHECKOUT = (REPO / "firmware").is_dir() and (REPO / "pyproject.toml").is_file()
FIRMWARE = REPO / "firmware" if IN_CHECKOUT else PACKAGE / "_firmware"


def _build_dir() -> Path:
    if os.environ.get("KWS_BUILD_DIR"):
        return Path(os.environ["KWS_BUILD_DIR"]).resolve()
    if IN_CHECKOUT:
        return REPO / "build"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "kws" / "build"


BUILD = _build_dir()


def firmware_module(relative: str):
    """A Python helper of the firmware tree (e.g. "tests/golden.py", the kernel's golden
    vectors), imported once under the name kws_<stem>."""
    import importlib.util
    import sys

    name = "kws_" + Path(relative).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIRMWARE / relative)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
