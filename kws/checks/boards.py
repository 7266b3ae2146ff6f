"""Boards for a check: simulated ones running the model's firmware (built here, by its target,
when not given) or real ones on serial ports. kws.link talks to them; kws.targets builds.

    with open_boards("sim", model, n=2) as boards: ...            # firmware built first
    with open_boards("/dev/ttyACM0", model, profile="uno") as boards: ...
"""

from __future__ import annotations

from kws.link import board as link


def open_boards(spec: str, model, n: int = 1, *, baud: int | None = None,
                timeout: float | None = None, retries: int = 4, fw=None, build_dir=None,
                max_frames: int = 1, faults=None, fault_seed=0, cut_after: int | None = None,
                cut: str = "silent", profile: str = "uno") -> link.BoardSet:
    """kws.link.board.open_boards, with the simulated boards' firmware built first for a
    board `profile` (kws.targets.build.simulation) unless `fw` is given."""
    from kws.targets import target_for

    sim = None
    if spec == "sim":
        from kws.targets.build import simulation

        sim = simulation(model, fw, baud=baud, out_dir=build_dir, max_frames=max_frames,
                         profile=profile)
    return link.open_boards(spec, model, n, baud=baud, timeout=timeout, retries=retries,
                            sim=sim, faults=faults, fault_seed=fault_seed, cut_after=cut_after,
                            cut=cut, device_boot_wait=target_for(profile).boot_wait)
