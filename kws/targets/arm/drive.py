"""Flashing by a file copy: boards whose USB interface shows a drive (the BBC micro:bit's
DAPLink "MICROBIT", the Pico's bootloader "RPI-RP2") take a firmware file copied onto it.

    copy_to_drive("fw.hex", "MICROBIT")            # the mounted drive, found
    copy_to_drive("fw.hex", "MICROBIT", "/media/me/MICROBIT")
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from kws.errors import KwsError

MOUNT_GLOBS = ("/media/*/{}", "/run/media/*/{}", "/media/{}", "/mnt/{}", "/Volumes/{}")


def find_drive(label: str) -> Path | None:
    for pattern in MOUNT_GLOBS:
        for d in sorted(glob.glob(pattern.format(label))):
            if os.path.isdir(d):
                return Path(d)
    return None


def copy_to_drive(firmware: str | os.PathLike, label: str, drive=None) -> list[str]:
    """Copy `firmware` onto the board's drive (`drive`, else the one mounted as `label`);
    returns the command that does the same."""
    firmware = Path(firmware)
    if not firmware.is_file():
        raise KwsError(f"no firmware {firmware}: build it first (kws build)")
    target = Path(drive) if drive else find_drive(label)
    if target is None:
        raise KwsError(f"no {label} drive is mounted: plug the board in (it shows a drive "
                       f"named {label}) and run `cp {firmware} /media/$USER/{label}/`, or "
                       f"give the drive with --port")
    if not target.is_dir():
        raise KwsError(f"{target} is not a folder: --port takes the mounted {label} drive")
    shutil.copyfile(firmware, target / firmware.name)
    return ["cp", str(firmware), str(target) + "/"]
