"""What a built ELF holds, read with a toolchain's nm: the sizes of the model's data symbols
(the names IntModel.firmware_arrays uses, prefixed kws_). Every target's symbol_sizes()."""

from __future__ import annotations

import os
import subprocess

from kws.errors import KwsError


def model_symbol_sizes(elf: str | os.PathLike, nm: str, package: str) -> dict[str, int]:
    """Sizes of kws_W1, kws_W1_mask, ..., kws_params in an ELF, from `<nm> --size-sort -S`;
    `package`: what to install when `nm` is missing."""
    from kws.quant.intmodel import BIASES, MATRICES

    try:
        r = subprocess.run([nm, "--size-sort", "-S", str(elf)], capture_output=True, text=True)
    except FileNotFoundError as e:
        raise KwsError(f"{nm} is missing: install {package} (make setup)") from e
    if r.returncode != 0:
        raise KwsError(f"{nm} {elf}: {r.stderr.strip()}")
    names = {f"kws_{m}" for m in MATRICES} | {f"kws_{m}_mask" for m in MATRICES} \
        | {f"kws_{b}" for b in BIASES} | {"kws_params"}
    sizes = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names and parts[2] in "rRdDtT":
            sizes[parts[3]] = int(parts[1], 16)
    return sizes
