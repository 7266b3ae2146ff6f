import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SC_MINI = FIXTURES / "sc_mini"


@pytest.fixture
def sc_mini(tmp_path) -> Path:
    """A private copy of the real mini corpus (full-archive layout with list files)."""
    dst = tmp_path / "sc_mini"
    shutil.copytree(SC_MINI, dst)
    return dst


@pytest.fixture
def rng():
    return np.random.default_rng(0)
