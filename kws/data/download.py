"""Download, verify and safely extract the Google Speech Commands archives.

The one entry point is `download()`. It resumes an interrupted download (HTTP Range),
checks the archive's size and SHA-256 against `ARCHIVES`, and extracts it into a temp
folder beside the target that is renamed into place only when complete, so a crash
never leaves a half-extracted dataset. Every user-facing failure is a `KwsError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from kws.errors import KwsError

MARKER = ".kws-complete"  # written inside the extracted folder, as the very last step
TIMEOUT_S = 30
CHUNK = 1 << 16


@dataclass(frozen=True)
class Archive:
    """One published archive: where it lives, what it must hash to, where it unpacks."""

    url: str
    size: int  # bytes
    sha256: str  # lowercase hex
    folder: str  # name of the extracted folder under `dest`

    @property
    def filename(self) -> str:
        """The archive's file name, e.g. 'speech_commands_v0.02.tar.gz'."""
        return PurePosixPath(urlsplit(self.url).path).name


# Sizes and SHA-256 sums as published by others (not computed here):
# - v0.02 and test-v0.02: tensorflow/datasets,
#   tensorflow_datasets/url_checksums/speech_commands.txt (url, size, sha256).
# - v0.01 sha256: torchaudio's `_CHECKSUMS` in torchaudio/datasets/speechcommands.py
#   (pytorch/audio; same table also gives the v0.02 sha256 above, which agrees with TFDS).
# - v0.01 size: 1488293908 bytes, as logged by TensorFlow's speech_commands/train.py
#   ("Successfully downloaded speech_commands_v0.01.tar.gz (1488293908 bytes)").
# The Speech Commands archives are CC BY 4.0 (Pete Warden, arXiv:1804.03209).
ARCHIVES: dict[str, Archive] = {
    "v0.02": Archive(
        url="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        size=2428923189,
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        folder="speech_commands_v0.02",
    ),
    "v0.01": Archive(
        url="http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        size=1488293908,
        sha256="743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        folder="speech_commands_v0.01",
    ),
    "test-v0.02": Archive(
        url="http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        size=112563277,
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        folder="speech_commands_test_set_v0.02",
    ),
}


def download(
    version: str,
    dest: Path,
    url: str | None = None,
    expected: Archive | None = None,
    progress: bool = True,
) -> Path:
    """Make sure `dest/<folder>` holds the extracted archive for `version`; return it.

    `url` overrides where the bytes come from (a mirror); `expected` overrides the table
    entry (tests, custom archives). An archive already at `dest/<archive name>` is
    verified and used without touching the network. Raises `KwsError` on any failure.
    """
    archive = expected or _lookup(version)
    dest = Path(dest)
    target = dest / archive.folder
    if (target / MARKER).is_file():
        return target
    if target.exists():
        raise KwsError(
            f"{target} exists but is not a complete extraction (no {MARKER}); "
            "remove it and run again"
        )
    dest.mkdir(parents=True, exist_ok=True)

    local = dest / archive.filename
    if local.exists():
        problem = _verify(local, archive)
        if problem:
            raise KwsError(f"{local} is not the expected archive ({problem}); delete it and run again")
    else:
        part = dest / (archive.filename + ".part")
        _fetch(url or archive.url, part, archive, local, progress)
        problem = _verify(part, archive)
        if problem:
            part.unlink(missing_ok=True)
            raise KwsError(f"downloaded {archive.filename} is corrupt ({problem}); deleted it, run again")
        os.replace(part, local)

    _extract(local, target, archive, progress)
    return target


def _lookup(version: str) -> Archive:
    """The table entry for `version`, or a KwsError listing the valid ones."""
    try:
        return ARCHIVES[version]
    except KeyError:
        raise KwsError(f"unknown Speech Commands version {version!r}; choose one of {', '.join(ARCHIVES)}") from None


def _verify(path: Path, archive: Archive) -> str | None:
    """Return None if `path` has the expected size and SHA-256, else what is wrong."""
    size = path.stat().st_size
    if size != archive.size:
        return f"expected {archive.size} bytes, got {size}"
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != archive.sha256.lower():
        return f"expected sha256 {archive.sha256}, got {digest}"
    return None


def _fetch(url: str, part: Path, archive: Archive, local: Path, progress: bool) -> None:
    """Download `url` into `part`, resuming from what `part` already holds.

    Leaves a (possibly short) `part` behind on interruption so the next call resumes.
    """
    have = part.stat().st_size if part.exists() else 0
    if have > archive.size:  # cannot be a prefix of the archive: start over
        part.unlink()
        have = 0
    if have == archive.size:  # already complete; the caller verifies it
        return

    headers = {"User-Agent": "kws-download/1"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: treat as complete, verify decides
            return
        raise KwsError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except OSError as e:  # URLError, timeouts, refused connections, DNS failures
        raise _unreachable(url, e, local) from None

    with response:
        if have and response.status != 206:  # server ignored Range: restart from zero
            have = 0
        if have and not _range_starts_at(response.headers.get("Content-Range", ""), have):
            part.unlink(missing_ok=True)
            raise KwsError(f"server resumed {archive.filename} at the wrong offset; deleted the partial file, run again")
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if length is not None and have + length != archive.size:
            part.unlink(missing_ok=True)
            raise KwsError(
                f"server offers {have + length} bytes for {archive.filename}, expected {archive.size}; "
                "wrong file or URL?"
            )
        got = 0
        bar = tqdm(
            total=archive.size, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=archive.filename, disable=not progress,
        )
        try:
            with bar, open(part, "ab" if have else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        except (OSError, EOFError) as e:  # includes timeouts, resets, http.client.IncompleteRead
            raise _interrupted(archive, part, e) from None
        if length is not None and got < length:
            raise _interrupted(archive, part, "connection closed early")


def _range_starts_at(content_range: str, offset: int) -> bool:
    """True if a Content-Range header like 'bytes 100-199/200' starts at `offset`."""
    m = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return m is None or int(m.group(1)) == offset  # missing header: trust the 206


def _unreachable(url: str, error: OSError, local: Path) -> KwsError:
    """The one-line error for a host that cannot be reached."""
    host = urlsplit(url).hostname or url
    reason = getattr(error, "reason", None) or error
    return KwsError(
        f"cannot reach {host} ({reason}): are you offline? "
        f"Put the archive at {local} or pass --dest"
    )


def _interrupted(archive: Archive, part: Path, why: object) -> KwsError:
    """The one-line error for a download cut short; the .part file stays for resuming."""
    size = part.stat().st_size if part.exists() else 0
    return KwsError(
        f"download of {archive.filename} interrupted at {size} of {archive.size} bytes ({why}); "
        "run again to resume"
    )


def _check_member(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """Extraction filter: refuse absolute or escaping names, then apply tarfile's data filter.

    `tarfile.data_filter` already refuses links pointing outside, devices and FIFOs, but it
    silently strips a leading '/', so absolute names are refused here explicitly.
    """
    name = member.name
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or re.match(r"[A-Za-z]:", name):
        raise KwsError(f"refusing to extract absolute path {name!r} from the archive")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise KwsError(f"refusing to extract {name!r}: it escapes the target folder")
    return tarfile.data_filter(member, path)


def _extract(archive_path: Path, target: Path, archive: Archive, progress: bool) -> None:
    """Extract `archive_path` into a temp folder beside `target`, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with tarfile.open(archive_path, "r:*") as tar, tqdm(
            unit=" files", desc=f"extracting {archive_path.name}", disable=not progress
        ) as bar:
            def members():
                for member in tar:
                    yield member
                    bar.update(1)

            tar.extractall(tmp, members=members(), filter=_check_member)
        (tmp / MARKER).write_text(f"{archive.sha256}  {archive.filename}\n")
        os.replace(tmp, target)
    except tarfile.FilterError as e:
        raise KwsError(f"refusing to extract {archive_path.name}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise KwsError(f"cannot extract {archive_path}: {e}") from None
    except OSError as e:
        raise KwsError(f"cannot extract {archive_path} into {target.parent}: {e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
