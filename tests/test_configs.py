"""Every config in configs/ loads: a key misspelt or a value of the wrong type in a
cross-validation or wake-word experiment is found here, not an hour into a sweep."""
from pathlib import Path

import pytest

from kws.config import load_config

CONFIGS = sorted(Path(__file__).resolve().parent.parent.glob("configs/**/*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) > 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p).split("configs/")[1])
def test_config_loads(path):
    config = load_config(path)
    if config.model.arch == "fastgrnn":
        assert config.model.rank_w <= config.model.hidden
        assert config.model.rank_u <= config.model.hidden
