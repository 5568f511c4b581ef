"""Downloads over real HTTP: a server on 127.0.0.1 (``tests/release_server.py``) serves files the
way their hosts do (byte ranges, 404s, slow transfers, Google Drive's confirmation page)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_cgn import resolver
from robustbench_cgn.artifacts import WeightsSpec
from robustbench_cgn.data import download
from robustbench_cgn.data.download import fetch_file
from robustbench_cgn.errors import ChecksumError, DataNotFoundError

FETCH_SCRIPT = (
    "import sys; from robustbench_cgn.data.download import fetch_file; "
    "fetch_file(sys.argv[1], sys.argv[2], sha256=sys.argv[3] or None, progress=False)"
)


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed) % 251 for i in range(n))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_fetch(url: str, dest: Path, sha256: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", FETCH_SCRIPT, url, str(dest), sha256],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _fresh_resolver():
    resolver._RESOLVED.clear()
    yield
    resolver._RESOLVED.clear()


def test_download_is_verified_renamed_and_not_repeated(release_server, tmp_path):
    data = payload(300_000)
    url = release_server.add("files/model.pth", data)
    dest = tmp_path / "cache" / "model.pth"
    assert fetch_file(url, dest, sha256=sha(data), size=len(data)) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("model.pth.part").exists()
    fetch_file(url, dest, sha256=sha(data))  # present and verified: no second request
    assert len(release_server.requests_for("files/model.pth")) == 1


def test_resume_after_a_killed_transfer_sends_only_the_rest(release_server, tmp_path):
    data = payload(2_000_000, seed=1)
    url = release_server.add("big.bin", data, delay_per_chunk=0.002)
    dest = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"
    proc = start_fetch(url, dest)
    wait_for(lambda: part.is_file() and part.stat().st_size >= 200_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    have = part.stat().st_size
    assert 0 < have < len(data) and not dest.exists()

    release_server.files["/big.bin"].delay_per_chunk = 0.0
    fetch_file(url, dest, sha256=sha(data), progress=False)
    assert dest.read_bytes() == data
    first, second = release_server.requests_for("big.bin")
    assert first.range is None and first.status == 200 and first.sent < len(data)
    assert second.range == f"bytes={have}-" and second.status == 206
    assert second.sent == len(data) - have


def test_a_server_without_ranges_restarts_the_part(release_server, tmp_path):
    data = payload(50_000, seed=2)
    url = release_server.add("norange.bin", data)
    release_server.files["/norange.bin"].ranges = False
    dest = tmp_path / "norange.bin"
    dest.with_name("norange.bin.part").write_bytes(b"stale bytes of another file")
    fetch_file(url, dest, sha256=sha(data))
    assert dest.read_bytes() == data


def test_checksum_mismatch_is_set_aside_and_the_next_mirror_tried(release_server, tmp_path):
    good, bad = payload(10_000, seed=3), payload(10_000, seed=4)
    broken = release_server.add("broken/w.pth", bad)
    mirror = release_server.add("mirror/w.pth", good)
    dest = tmp_path / "w.pth"
    fetch_file([broken, mirror], dest, sha256=sha(good))
    assert dest.read_bytes() == good
    assert dest.with_name("w.pth.bad").read_bytes() == bad  # kept, never used

    other = tmp_path / "only_bad" / "w.pth"
    with pytest.raises(ChecksumError, match="checksum is wrong") as info:
        fetch_file(broken, other, sha256=sha(good), hint="run `cgnbench fetch w`")
    assert "\n" not in str(info.value) and "w.pth.bad" in str(info.value)
    assert not other.exists() and other.with_name("w.pth.bad").is_file()


def test_a_404_falls_back_to_the_spec_mirrors_through_the_resolver(
    release_server, tmp_path, monkeypatch
):
    data = payload(20_000, seed=5)
    release_server.add("mirror2/tiny.pth", data)
    spec = WeightsSpec(
        "tiny.test",
        filename="tiny.pth",
        sha256=sha(data),
        urls=(release_server.url("gone/tiny.pth"), release_server.url("mirror2/tiny.pth")),
    )
    # an institute mirror (CGNBENCH_MIRROR) is tried first; it lacks the file (404) too
    monkeypatch.setenv("CGNBENCH_MIRROR", release_server.url("institute"))
    got = resolver.resolve_spec(spec, cache_dir=tmp_path)
    assert got.path == tmp_path / "weights" / "tiny.test" / "tiny.pth"
    assert got.sha256 == sha(data) and got.label == "tiny.test"
    statuses = [(r.path, r.status) for r in release_server.log]
    assert statuses == [
        ("/institute/tiny.test/tiny.pth", 404),
        ("/gone/tiny.pth", 404),
        ("/mirror2/tiny.pth", 200),
    ]


def test_google_drive_confirmation_page_is_followed(release_server, tmp_path, monkeypatch):
    data = payload(40_000, seed=6)
    release_server.add_drive("1AbC-d_E", data)
    monkeypatch.setattr(download, "_DRIVE", release_server.url("uc?export=download&id="))
    dest = tmp_path / "cgn.pth"
    fetch_file("gdrive:1AbC-d_E", dest, sha256=sha(data))
    assert dest.read_bytes() == data
    assert [r.path.split("?")[0] for r in release_server.log] == ["/uc", "/download"]

    # an HTML page that is not a confirmation (a quota or login page) is refused
    release_server.add("quota.pth", b"<html><body>Quota exceeded</body></html>",
                       content_type="text/html")  # fmt: skip
    with pytest.raises(DataNotFoundError, match="HTML page instead of the file"):
        fetch_file(release_server.url("quota.pth"), tmp_path / "quota.pth")


def test_two_processes_fetching_one_file_download_it_once(release_server, tmp_path):
    data = payload(600_000, seed=7)
    url = release_server.add("shared.bin", data, delay_per_chunk=0.001)
    dest = tmp_path / "shared.bin"
    procs = [start_fetch(url, dest, sha(data)) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert dest.read_bytes() == data
    gets = release_server.requests_for("shared.bin")
    assert len(gets) == 1 and gets[0].sent == len(data)


def test_offline_a_missing_file_is_one_line_with_url_and_fetch_command(
    release_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("CGNBENCH_OFFLINE", "1")
    url = release_server.add("w.pth", b"x")
    with pytest.raises(DataNotFoundError) as info:
        fetch_file(url, tmp_path / "w.pth", hint="run `cgnbench fetch w.x` where it is online")
    message = str(info.value)
    assert "\n" not in message and "w.pth" in message and url in message
    assert "cgnbench fetch w.x" in message
    assert release_server.log == []  # the network was not touched
