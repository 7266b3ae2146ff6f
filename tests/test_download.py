"""Tests for kws.data.download against a local HTTP server: no internet needed."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kws.data.download import ARCHIVES, MARKER, Archive, download
from kws.errors import KwsError

NAME = "fake_sc.tar.gz"


def make_tar(members: dict[str, bytes]) -> bytes:
    """A gzipped tar holding `members` (name -> content), laid out like Speech Commands."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fake_wav(seed: int, n: int = 4000) -> bytes:
    """Not a real wav, just incompressible bytes so the archive is tens of KB."""
    return b"RIFF" + b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(n // 32))


FILES = {f"./{word}/{i:08x}_nohash_0.wav": fake_wav(k * 10 + i)
         for k, word in enumerate(["yes", "no", "up"]) for i in range(3)}
FILES["./testing_list.txt"] = b"yes/00000000_nohash_0.wav\n"


def archive_for(data: bytes, url: str, folder: str = "fake_sc") -> Archive:
    return Archive(url=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(), folder=folder)


class Server:
    """A tiny file server with Range support that can cut the connection after N bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.cut_after: int | None = None  # close the connection after this many body bytes
        self.ignore_range = False  # answer 200 with the whole file even when asked for a range
        self.status: int | None = None  # force this error status
        self.ranges: list[str | None] = []
        self.served = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if server.status:
                    self.send_error(server.status)
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(server.data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body = body[: server.cut_after]
                    server.cut_after = None  # only cut once
                self.wfile.write(body)
                server.served += len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{NAME}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def data() -> bytes:
    return make_tar(FILES)


@pytest.fixture
def server(data):
    s = Server(data)
    yield s
    s.close()


@pytest.fixture
def closed_url() -> str:
    """A URL on a local port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{NAME}"


def assert_extracted(folder: Path):
    assert (folder / MARKER).is_file()
    for name, content in FILES.items():
        assert (folder / name).read_bytes() == content


def leftovers(dest: Path) -> list[str]:
    """Temp folders or .part files left in dest."""
    return sorted(p.name for p in dest.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))


def test_full_download_extracts_and_verifies(tmp_path, server, data, capsys):
    dest = tmp_path / "data"
    out = download("v0.02", dest, expected=archive_for(data, server.url))
    assert out == dest / "fake_sc"
    assert_extracted(out)
    assert (dest / NAME).read_bytes() == data  # archive kept, .part renamed
    assert leftovers(dest) == []
    assert server.ranges == [None]
    err = capsys.readouterr().err
    assert NAME in err and "B/s" in err  # the tqdm byte progress bar


def test_second_call_is_idempotent_and_offline(tmp_path, server, data, closed_url):
    dest = tmp_path / "data"
    expected = archive_for(data, server.url)
    first = download("v0.02", dest, expected=expected, progress=False)
    again = download("v0.02", dest, url=closed_url, expected=expected, progress=False)
    assert again == first
    assert len(server.ranges) == 1


def test_resume_after_cut(tmp_path, server, data):
    dest = tmp_path / "data"
    expected = archive_for(data, server.url)
    server.cut_after = len(data) // 2
    with pytest.raises(KwsError, match="interrupted.*run again to resume"):
        download("v0.02", dest, expected=expected, progress=False)
    part = dest / (NAME + ".part")
    assert part.stat().st_size == len(data) // 2
    assert not (dest / "fake_sc").exists()

    out = download("v0.02", dest, expected=expected, progress=False)
    assert_extracted(out)
    assert server.ranges == [None, f"bytes={len(data) // 2}-"]
    assert server.served < 2 * len(data)
    assert not part.exists()


def test_server_ignoring_range_restarts(tmp_path, server, data):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(b"garbage that must not be kept")
    server.ignore_range = True
    out = download("v0.02", dest, expected=archive_for(data, server.url), progress=False)
    assert_extracted(out)
    assert server.ranges[0].startswith("bytes=")


def test_416_with_bad_part_is_rejected_and_cleaned(tmp_path, server, data):
    dest = tmp_path / "data"
    dest.mkdir()
    part = dest / (NAME + ".part")
    part.write_bytes(data[:100])
    server.status = 416
    with pytest.raises(KwsError, match=f"expected {len(data)} bytes, got 100"):
        download("v0.02", dest, expected=archive_for(data, server.url), progress=False)
    assert not part.exists()


def test_wrong_checksum_rejected(tmp_path, server, data):
    dest = tmp_path / "data"
    wrong = Archive(url=server.url, size=len(data), sha256="0" * 64, folder="fake_sc")
    with pytest.raises(KwsError) as info:
        download("v0.02", dest, expected=wrong, progress=False)
    msg = str(info.value)
    assert "0" * 64 in msg and hashlib.sha256(data).hexdigest() in msg
    assert not (dest / "fake_sc").exists()
    assert not (dest / NAME).exists()
    assert leftovers(dest) == []


def test_wrong_size_rejected_before_download(tmp_path, server, data):
    dest = tmp_path / "data"
    wrong = Archive(url=server.url, size=len(data) + 1, sha256="0" * 64, folder="fake_sc")
    with pytest.raises(KwsError, match=f"expected {len(data) + 1}"):
        download("v0.02", dest, expected=wrong, progress=False)
    assert leftovers(dest) == []


def test_http_404_is_clear(tmp_path, server, data):
    server.status = 404
    with pytest.raises(KwsError, match="HTTP 404"):
        download("v0.02", tmp_path, expected=archive_for(data, server.url), progress=False)


def test_local_archive_used_without_network(tmp_path, data, closed_url):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / NAME).write_bytes(data)
    out = download("v0.02", dest, url=closed_url, expected=archive_for(data, closed_url), progress=False)
    assert_extracted(out)


def test_corrupt_local_archive_rejected(tmp_path, data, closed_url):
    dest = tmp_path / "data"
    dest.mkdir()
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    (dest / NAME).write_bytes(bytes(corrupt))
    with pytest.raises(KwsError, match="not the expected archive"):
        download("v0.02", dest, expected=archive_for(data, closed_url), progress=False)
    assert not (dest / "fake_sc").exists()


def test_offline_gives_one_clear_line(tmp_path, data, closed_url):
    dest = tmp_path / "data"
    with pytest.raises(KwsError) as info:
        download("v0.02", dest, expected=archive_for(data, closed_url), progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("cannot reach 127.0.0.1")
    assert "offline" in msg and str(dest / NAME) in msg


def test_incomplete_folder_is_not_trusted(tmp_path, data, closed_url):
    (tmp_path / "fake_sc").mkdir()
    with pytest.raises(KwsError, match="not a complete extraction"):
        download("v0.02", tmp_path, expected=archive_for(data, closed_url), progress=False)


def evil_tar(kind: str, outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("./yes/ok.wav")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        if kind == "dotdot":
            info = tarfile.TarInfo("../evil")
        elif kind == "absolute":
            info = tarfile.TarInfo(str(outside / "abs_evil"))
        elif kind == "symlink":
            info = tarfile.TarInfo("./yes/link")
            info.type, info.linkname = tarfile.SYMTYPE, str(outside / "target")
        elif kind == "device":
            info = tarfile.TarInfo("./yes/dev")
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        info.size = 0 if kind in ("symlink", "device") else 4
        tar.addfile(info, io.BytesIO(b"evil") if info.size else None)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "device"])
def test_malicious_tar_rejected(tmp_path, kind, closed_url):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "data" / "sub"
    dest.mkdir(parents=True)
    bad = evil_tar(kind, outside)
    (dest / NAME).write_bytes(bad)
    with pytest.raises(KwsError, match="refusing"):
        download("v0.02", dest, expected=archive_for(bad, closed_url), progress=False)
    assert not (dest / "fake_sc").exists()
    assert leftovers(dest) == []
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "data" / "evil").exists()
    assert not (dest / "evil").exists()


def test_unknown_version(tmp_path):
    with pytest.raises(KwsError, match="v0.02"):
        download("v9", tmp_path)


def test_archives_table():
    assert set(ARCHIVES) == {"v0.02", "v0.01", "test-v0.02"}
    for version, archive in ARCHIVES.items():
        assert re.fullmatch(r"[0-9a-f]{64}", archive.sha256), version
        assert archive.size > 0, version
        assert archive.url.startswith("http://download.tensorflow.org/data/speech_commands_")
        assert archive.filename.endswith(".tar.gz")
        assert archive.folder == archive.filename.removesuffix(".tar.gz")
    assert len({a.sha256 for a in ARCHIVES.values()}) == 3
