"""Targets: the board families kws builds for (kws.targets.base.Target), by board profile.

    target_for("uno")        -> the AVR target
    board_profiles()         -> every profile, the CLI's --board choices

AVR (kws.targets.avr) is the first, Arm Cortex-M (kws.targets.arm) the second; a new family is one subpackage here and one line in
TARGETS (docs/ARCHITECTURE.md, "How to add a target").
"""

from __future__ import annotations

from importlib import import_module

from kws.errors import KwsError
from kws.targets.base import Firmware, Target

__all__ = ["Firmware", "Target", "TARGETS", "all_targets", "board_profiles", "target_for"]

# name -> "module:class" (imported when first asked for)
TARGETS = {"avr": "kws.targets.avr.target:AvrTarget",
           "arm": "kws.targets.arm.target:ArmTarget"}
_loaded: dict[str, Target] = {}


def all_targets() -> list[Target]:
    for name, where in TARGETS.items():
        if name not in _loaded:
            module, cls = where.split(":")
            _loaded[name] = getattr(import_module(module), cls)()
    return [_loaded[n] for n in TARGETS]


def board_profiles() -> list[str]:
    """Every board profile of every target, in order (the first is the default)."""
    return [p for t in all_targets() for p in t.profiles]


def target_for(profile: str) -> Target:
    """The target that owns a board profile ("sim" is the default target's simulator)."""
    for t in all_targets():
        if profile in t.profiles or (profile == "sim" and t.sim_profile):
            return t
    raise KwsError(f"unknown board profile {profile!r}; one of: {', '.join(board_profiles())}")
