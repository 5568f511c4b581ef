"""Checksums, downloads (file:// URLs, no network) and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from robustbench_cgn.data.download import (
    OFFLINE_ENV,
    UnsafeArchiveError,
    fetch_file,
    md5_file,
    offline,
    safe_extract,
    sha256_file,
    verify_file,
)
from robustbench_cgn.errors import CGNBenchError, ChecksumError, DataNotFoundError

PAYLOAD = b"cgnbench test payload\n" * 1000


@pytest.fixture(autouse=True)
def _all_tests_here_download(downloads_allowed):
    """These tests exercise the download code itself."""


@pytest.fixture
def src(tmp_path) -> Path:
    p = tmp_path / "src" / "payload.bin"
    p.parent.mkdir()
    p.write_bytes(PAYLOAD)
    return p


SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_hashes(src):
    assert sha256_file(src) == SHA
    assert md5_file(src) == MD5


def test_verify_file(src):
    verify_file(src)
    verify_file(src, sha256=SHA, md5=MD5.upper())
    with pytest.raises(ChecksumError, match="payload.bin: sha256 is"):
        verify_file(src, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="md5"):
        verify_file(src, md5="0" * 32)
    with pytest.raises(DataNotFoundError):
        verify_file(src.with_name("missing"), sha256=SHA)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_fetch_file_url(src, tmp_path):
    dest = tmp_path / "out" / "nested" / "payload.bin"
    got = fetch_file(src.as_uri(), dest, sha256=SHA, md5=MD5)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == []


def test_offline_refuses_to_download_but_serves_a_verified_copy(src, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    dest = tmp_path / "payload.bin"
    with pytest.raises(DataNotFoundError) as info:
        fetch_file(src.as_uri(), dest, sha256=SHA, hint="or pass --x")
    msg = str(info.value)
    assert "\n" not in msg and OFFLINE_ENV in msg and src.as_uri() in msg and str(dest) in msg
    assert msg.endswith("; or pass --x") and not dest.exists()
    dest.write_bytes(PAYLOAD)
    assert fetch_file(src.as_uri(), dest, sha256=SHA) == dest  # in place: no network needed
    monkeypatch.setenv(OFFLINE_ENV, "0")
    assert not offline()


def test_fetch_file_present_and_verified_is_not_downloaded(src, tmp_path):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(PAYLOAD)
    assert fetch_file("file:///nonexistent/payload.bin", dest, sha256=SHA) == dest


def test_fetch_file_replaces_corrupt_copy(src, tmp_path):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(b"corrupt")
    fetch_file(src.as_uri(), dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_file_bad_checksum_leaves_nothing(src, tmp_path):
    dest = tmp_path / "out" / "payload.bin"
    with pytest.raises(ChecksumError, match="checksum is wrong"):
        fetch_file(src.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_fetch_file_tries_mirrors(src, tmp_path):
    dest = tmp_path / "payload.bin"
    fetch_file([src.with_name("absent").as_uri(), src.as_uri()], dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "url", ["file:///nonexistent/dir/payload.bin", "http://cgnbench-test.invalid/payload.bin"]
)
def test_fetch_file_failure_message(tmp_path, url):
    dest = tmp_path / "data" / "payload.bin"
    with pytest.raises(DataNotFoundError) as info:
        fetch_file(url, dest, sha256=SHA, hint="or set CGNBENCH_DATA")
    msg = str(info.value)
    assert isinstance(info.value, CGNBenchError)
    assert url in msg and "payload.bin" in msg and str(dest) in msg
    assert "CGNBENCH_DATA" in msg
    assert not dest.exists() and _leftovers(dest.parent) == []


# ---------------------------------------------------------------------------------------------
# archives


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
            else:
                tf.addfile(m)
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def test_safe_extract_tar_and_zip(tmp_path):
    tar = _tar(
        tmp_path / "ok.tar.gz",
        [_dir("pkg"), ("pkg/a.txt", b"a"), _link("pkg/link", "a.txt"), ("pkg/sub/b.txt", b"b")],
    )
    out = tmp_path / "tar_out"
    written = safe_extract(tar, out)
    assert (out / "pkg" / "a.txt").read_bytes() == b"a"
    assert (out / "pkg" / "link").resolve() == (out / "pkg" / "a.txt").resolve()
    assert (out / "pkg" / "sub" / "b.txt").read_bytes() == b"b"
    assert len(written) == 4

    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("dir/c.txt", b"c")
    safe_extract(zpath, tmp_path / "zip_out")
    assert (tmp_path / "zip_out" / "dir" / "c.txt").read_bytes() == b"c"


@pytest.mark.parametrize(
    "members",
    [
        [("../evil.txt", b"x")],
        [("/abs_evil.txt", b"x")],
        [("ok/../../evil.txt", b"x")],
        [_link("evil", "/etc/passwd")],
        [_link("evil", "../outside")],
        [_link("evil", "../outside", kind=tarfile.LNKTYPE)],
        # each link alone stays inside; chained on disk the second points out
        [_dir("d"), _link("d/up", ".."), _link("esc", "d/up/..")],
        [_dir("d"), _link("d/up", ".."), ("d/up/../../evil.txt", b"x")],
        # issue 20: harmless when written, pointing out once a later link exists
        [_link("d", "x/.."), _link("x", ".")],
        [_dir("a"), _link("a/d", "x/../.."), _link("a/x", ".")],
    ],
    ids=[
        "dotdot",
        "absolute",
        "nested-dotdot",
        "symlink-abs",
        "symlink-up",
        "hardlink-up",
        "symlink-chain",
        "through-link",
        "link-chain-later-link",
        "link-chain-nested",
    ],  # fmt: skip
)
def test_safe_extract_refuses_escaping_tar(tmp_path, members):
    tar = _tar(tmp_path / "evil.tar.gz", members)
    out = tmp_path / "box" / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tar, out)
    assert isinstance(info.value, CGNBenchError)
    assert not (tmp_path / "box" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert list(out.iterdir()) == []  # a refused archive leaves nothing behind


def test_a_refused_release_writes_nothing_outside_its_cache(tmp_path, downloads_allowed):
    """The chain of issue 20: before the fix, resolve_dataset appended its SHA256SUMS line
    through the escaping link to a file outside the cache."""
    from robustbench_cgn.artifacts import DatasetSpec, RemoteFile
    from robustbench_cgn.resolver import resolve_dataset

    release = tmp_path / "release"
    release.mkdir()
    _tar(release / "evil.tar.gz", [_link("d", "x/.."), _link("x", "."), ("x/f.txt", b"f")])
    spec = DatasetSpec(
        "evil",
        files=(RemoteFile("evil.tar.gz", ((release / "evil.tar.gz").as_uri(),)),),
        extract=True,
    )
    cache = tmp_path / "home" / "cache"
    with pytest.raises(UnsafeArchiveError):
        resolve_dataset(spec, cache_dir=cache)
    folder = cache / "datasets" / "evil"
    left = sorted(p.name for p in folder.iterdir() if p.suffix != ".lock")
    assert left == ["evil.tar.gz"]  # the verified download only, nothing extracted
    assert list(tmp_path.rglob("SHA256SUMS")) == []


def test_safe_extract_refuses_device_member(tmp_path):
    dev = tarfile.TarInfo("null")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(UnsafeArchiveError, match="special"):
        safe_extract(_tar(tmp_path / "dev.tar", [dev]), tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.txt", "/evil.txt", "a/../../evil.txt"])
def test_safe_extract_refuses_escaping_zip(tmp_path, name):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zpath, tmp_path / "box" / "out")
    assert not (tmp_path / "box" / "evil.txt").exists()


def test_safe_extract_refuses_zip_symlink_out(tmp_path):
    zpath = tmp_path / "evil.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(zpath, tmp_path / "out")


def test_safe_extract_not_an_archive(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an archive at all" * 50)
    with pytest.raises(CGNBenchError, match="neither"):
        safe_extract(junk, tmp_path / "out")
    with pytest.raises(DataNotFoundError):
        safe_extract(tmp_path / "missing.tar", tmp_path / "out")
