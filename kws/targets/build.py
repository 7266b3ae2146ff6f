"""Firmware for a model: the sketch kws.codegen writes, compiled by the board's target.

    fw = build("models/default", "uno")             # build/fw/kws_sketch-uno/kws_sketch.hex
    sim = simulation(model)                         # firmware for simulated boards, built
    with kws.link.board.open_boards("sim", model, 2, sim=sim) as boards: ...

Everything here goes through the Target interface (kws.targets.base); nothing names a
toolchain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


from kws.codegen.export import DEFAULT_BUDGET, DEFAULT_SKETCH, _load, export
from kws.errors import KwsError
from kws.paths import BUILD
from kws.targets import target_for
from kws.targets.base import Firmware, Target

SIM_BAUD = 1_000_000  # the simulated board's link: exact at 16 MHz (U2X, UBRR 1)


def build(model_folder, board: str = "uno", out_dir=None, sketch_name: str = DEFAULT_SKETCH, *,
          budget: int | None = DEFAULT_BUDGET,
          sim: bool = False, baud: int | None = None, max_frames: int = 1):
    """Export and compile for a board profile (by its target; AVR: firmware/ports/avr/avr.mk);
    return the kws.targets.base.Firmware (.elf, .hex, flash and RAM use; .baud is the
    sketch's serial speed).
    Sketch: `out_dir/src/<sketch>/`, build folder: `out_dir/<sketch>-<board>/` (default
    out_dir: build/fw). `baud`, `max_frames`: see export()."""
    target = target_for(board)
    model = _load(model_folder)
    flash_max = board_flash(board)
    n = model.int_model.n_bytes()
    if n > flash_max:   # avr-gcc fails on such arrays with obscure messages: say it plainly
        raise KwsError(f"model {model.name!r} is {n} bytes, more than the {board}'s whole "
                       f"flash for sketches ({flash_max} bytes) by {n - flash_max} bytes")
    out_dir = Path(out_dir) if out_dir else BUILD / "fw"
    sketch = export(model, out_dir / "src", sketch_name, budget=budget,
                    baud=baud, max_frames=max_frames, template=target.sketch_template)
    try:
        fw = target.compile(sketch, out_dir / f"{sketch_name}-{board}", board, sim=sim)
    except KwsError as e:
        over = target.explain_build_error(str(e))
        if over:
            raise KwsError(f"the firmware for {board} with model {model.name!r} ({n} bytes) "
                           f"does not fit the flash: over by {over} bytes") from None
        raise
    check_firmware_fits(fw, board)
    return dataclasses.replace(fw, baud=int(baud)) if baud is not None else fw


def board_flash(board: str) -> int:
    """Flash bytes a sketch may use on a board profile (its target's; AVR: avr.mk FLASH_MAX)."""
    return target_for(board).flash_max(board)


def check_firmware_fits(fw, board: str) -> None:
    """Refuse a built firmware over the board's flash or RAM; its .hex is removed, so
    `kws flash` cannot upload it."""
    for what, used, limit in (("flash", fw.flash, fw.flash_max), ("RAM", fw.ram, fw.ram_max)):
        if used > limit:
            Path(fw.hex).unlink(missing_ok=True)
            raise KwsError(f"the firmware for {board} needs {used} bytes of {what}, the board "
                           f"has {limit}: over by {used - limit} bytes")


def firmware_size(model, board: str = "uno", fw=None) -> dict:
    """Flash and static RAM of the firmware `kws build --board <board>` makes for `model` (the
    one a user flashes): the one figure that `kws build`, `kws verify`, `kws eval --board`,
    `kws bench` and the demo print. A simulated board runs a build at a faster baud whose code
    differs by a few bytes; its size is never reported. `fw`: that build, when already made
    (`kws build`), else it is made in build/size/ (make keeps it while it is up to date)."""
    if fw is None:
        model = _load(model)
        fw = build(model, board, BUILD / "size" / f"{model.hash[:16]}-{board}",
                   budget=None)
    return {"board": board, "flash": fw.flash, "flash_max": fw.flash_max,
            "ram": fw.ram, "ram_max": fw.ram_max}


def format_size(size: dict) -> str:
    """`firmware_size` in one line."""
    return (f"flash {size['flash']:,} / {size['flash_max']:,} bytes, static RAM "
            f"{size['ram']:,} / {size['ram_max']:,} bytes"
            + (f" ({size['board']} build)" if size.get("board") else ""))




# --- simulated boards ------------------------------------------------------------------------

def sim_firmware(model, *, baud: int = SIM_BAUD, out_dir=None, max_frames: int = 1,
                 profile: str = "uno") -> Firmware:
    """The protocol firmware for `model`, built for a simulated board `profile` (its F_CPU;
    firmware/ports/avr/avr.mk) at `baud`."""
    if out_dir is None:   # one folder per model and listening settings (they are compiled in)
        from kws.detect.detector import settings_hash

        out_dir = BUILD / "sim-fw" / (f"{model.hash[:16]}-{settings_hash(model)[:8]}-{profile}-"
                                      f"{baud}-{max_frames}")
    return build(model, profile, out_dir, sim=True, baud=baud, max_frames=max_frames,
                 budget=None)


@dataclass(frozen=True)
class Simulation:
    """Simulated boards running one built firmware: what kws.link.board.open_boards is given
    for `--board sim` (it calls start() once per board and talks to the handle's .port)."""

    firmware: Firmware
    target: Target

    @property
    def baud(self) -> int:
        return self.firmware.baud

    def start(self):
        return self.target.simulate(self.firmware)


def simulation(model, fw: Firmware | None = None, *, baud: int | None = None, out_dir=None,
               max_frames: int = 1, profile: str = "uno") -> Simulation:
    """Simulated boards of a board `profile` running `fw`, or the firmware for `model` built
    first (sim_firmware)."""
    if fw is None:
        fw = sim_firmware(model, baud=baud or SIM_BAUD, out_dir=out_dir, max_frames=max_frames,
                          profile=profile)
    return Simulation(fw, target_for(fw.board))
