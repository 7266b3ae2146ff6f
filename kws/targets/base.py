"""What a target (a family of boards) must provide: the interface every board family
implements, and the built firmware it hands on.

A target owns everything that depends on the chip and its toolchain: its board profiles, how
a generated sketch folder (kws.codegen) is compiled, the sizes of the model's symbols in the
binary, how a binary is flashed, how it is simulated, how long a real board needs after the
port opens, and how the firmware counts cycles. The rest of kws asks `kws.targets` for a
target by profile name and never names a toolchain. docs/ARCHITECTURE.md: how to add one.
"""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from kws.errors import KwsError
from kws.paths import REPO


def run_make(makefile: Path, args: list[str], what: str) -> str:
    """`make -s -f makefile args` from the checkout root: its stdout, or a KwsError naming
    `what` with the last lines of the build's output."""
    cmd = ["make", "--no-print-directory", "-s", "-f", str(makefile), *args]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise KwsError(f"cannot build {what}: `make` is not installed") from e
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise KwsError(f"building {what} failed ({' '.join(cmd)}):\n{tail}")
    return r.stdout


@dataclass(frozen=True)
class Firmware:
    """A built sketch and what the board profile says about it."""

    elf: Path
    hex: Path
    sim: Path | None
    board: str
    baud: int
    f_cpu: int
    flash: int        # bytes used (.text + .data)
    flash_max: int    # bytes available to the sketch on this board
    ram: int          # static RAM (.data + .bss + .noinit)
    ram_max: int
    counter: str = "cycles"   # what the board's per-frame figures count ("instructions": QEMU)


class Target(ABC):
    """A board family. Profiles are the board names a user types (`--board uno`)."""

    name: str                 # "avr"
    profiles: tuple[str, ...]  # the board profiles, the first is the default
    boot_wait: float          # seconds a real board needs after its port opens (a reset)
    cycle_counter: str        # what the firmware's cycle figures count (docs, reports)
    sim_profile: str | None = None   # the profile `--board sim` simulates (None: no simulator)
    # the port's main file, written into the sketch folder as <name>.ino by kws.codegen.export
    # (None: the port's build file brings its own main and the folder gets no .ino)
    sketch_template: Path | None = None

    @abstractmethod
    def profile_info(self, profile: str) -> tuple[int, int]:
        """(serial baud, CPU clock in Hz) of a board profile."""

    @abstractmethod
    def flash_max(self, profile: str) -> int:
        """Flash bytes a sketch may use on a board profile."""

    def default_model(self, profile: str) -> tuple[str, int]:
        """(model folder, byte budget) a board profile gets when no model is named."""
        return "models/default", 1024

    @abstractmethod
    def compile(self, sketch: Path, out: Path, profile: str, *, sim: bool = False) -> Firmware:
        """Compile a generated sketch folder into `out` (only what is stale); `sim`: also the
        simulator, so that the result can be simulated."""

    def explain_build_error(self, message: str) -> str | None:
        """The number of bytes by which a failed build overflowed the flash, if it says so."""
        return None

    @abstractmethod
    def symbol_sizes(self, elf: str | os.PathLike) -> dict[str, int]:
        """Sizes of the model's data symbols (kws_W1, ..., kws_params) in a built binary."""

    @abstractmethod
    def flash(self, hex_path: str | os.PathLike, profile: str, port: str | None = None) -> list[str]:
        """Upload a built binary to a board (profile "sim": a simulated one); the command run."""

    @abstractmethod
    def simulate(self, fw: Firmware):
        """Start a simulated board running `fw`: a started handle with .port (a pty path that
        kws.link opens like a serial port) and .close()."""
