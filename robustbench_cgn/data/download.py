"""Checksums, downloads and archive extraction shared by every data source.

* :func:`sha256_file`, :func:`md5_file` hash a file in 1 MiB chunks.
* :func:`verify_file` raises :class:`~robustbench_cgn.errors.ChecksumError` on a mismatch.
* :func:`fetch_file` downloads with :mod:`urllib` (any scheme it knows, ``file://`` included)
  into a temporary file next to ``dest``, verifies it and only then renames it into place, so an
  interrupted download never leaves a half-written file under the final name. Every failure a
  user can fix (offline, HTTP error, bad checksum) becomes a one-line
  :class:`~robustbench_cgn.errors.CGNBenchError` that names the URL, the file and where to put it.
* ``CGNBENCH_OFFLINE=1`` (:func:`offline`) makes :func:`fetch_file` refuse to touch the network:
  a file that is not already in place is a one-line :class:`DataNotFoundError` naming its URL.
  The test suite sets it, so no test reaches the internet by accident.
* :func:`safe_extract` unpacks tar/zip archives and refuses members that would land outside the
  destination (absolute paths, ``..``, links pointing out, device files).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from robustbench_cgn.errors import CGNBenchError, ChecksumError, DataNotFoundError

__all__ = [
    "UnsafeArchiveError",
    "OFFLINE_ENV",
    "fetch_file",
    "md5_file",
    "offline",
    "safe_extract",
    "sha256_file",
    "verify_file",
]

_CHUNK = 1 << 20
OFFLINE_ENV = "CGNBENCH_OFFLINE"
_USER_AGENT = "cgnbench (+https://pypi.org/project/cgnbench)"


def offline() -> bool:
    """Whether ``CGNBENCH_OFFLINE`` forbids downloads (``1``/``true``/``yes``)."""
    from robustbench_cgn.settings import env_flag

    return env_flag(OFFLINE_ENV)


class UnsafeArchiveError(CGNBenchError):
    """An archive member would be written outside the extraction folder."""


def _hash_file(path: str | os.PathLike, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    return _hash_file(path, "sha256")


def md5_file(path: str | os.PathLike) -> str:
    """Hex md5 of a file's bytes (only for matching published md5 sums, not for security)."""
    return _hash_file(path, "md5")


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> None:
    """Check ``path`` against the given checksums (either, both or none).

    Raises :class:`DataNotFoundError` if the file is missing and :class:`ChecksumError` naming
    the file, the expected and the actual digest on a mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = _hash_file(path, algo)
        if actual.lower() != expected.lower():
            raise ChecksumError(
                f"{path}: {algo} is {actual}, expected {expected.lower()} "
                "(corrupt or wrong file: delete it and fetch it again)"
            )


def fetch_file(
    url: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 30.0,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    ``url`` may be a list of mirrors, tried in order. The download goes to a temporary file in
    ``dest``'s folder, is verified against ``sha256``/``md5`` and is then atomically renamed.
    A present ``dest`` whose checksum does not match is replaced by a fresh download.

    Raises :class:`DataNotFoundError` when no mirror could be downloaded (offline, HTTP error,
    timeout...): the message names the URLs that failed, the file name and the path to place it
    at, plus ``hint``. Raises :class:`ChecksumError` when a download completes with the wrong
    checksum (nothing is left at ``dest`` then).
    """
    dest = Path(dest)
    urls = [url] if isinstance(url, str) else list(url)
    if dest.is_file():
        try:
            verify_file(dest, sha256=sha256, md5=md5)
            return dest
        except ChecksumError:
            pass  # stale or corrupt: download again below
    if offline():
        raise DataNotFoundError(
            f"{dest.name} is not at {dest} and downloads are off ({OFFLINE_ENV}=1): fetch it from "
            f"{urls[0]} or unset {OFFLINE_ENV}" + (f"; {hint}" if hint else "")
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataNotFoundError(f"cannot create {dest.parent} to download {dest.name}: {e}") from e

    failures: list[str] = []
    bad_sums: list[str] = []
    for u in urls:
        try:
            tmp = _download_to_temp(u, dest, timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            failures.append(f"{u} ({_reason(e)})")
            continue
        try:
            verify_file(tmp, sha256=sha256, md5=md5)
            os.replace(tmp, dest)
        except ChecksumError as e:
            bad_sums.append(f"{u}: {e}")
            continue  # a broken mirror (or a captive portal page): try the next one
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    if bad_sums:
        raise ChecksumError(
            f"downloaded {dest.name} but its checksum is wrong: {'; '.join(bad_sums)}"
        )
    msg = (
        f"could not download {dest.name}: tried {'; '.join(failures)}. "
        f"Download it elsewhere and place it at {dest}"
    )
    raise DataNotFoundError(msg + (f" ({hint})" if hint else ""))


def _download_to_temp(url: str, dest: Path, timeout: float) -> Path:
    """Stream ``url`` into a fresh temp file next to ``dest``; return its path."""
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------------------------------
# archives


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a tar (any compression) or zip ``archive`` into ``dest``; return the paths written.

    Each member is checked just before it is written: absolute names, ``..`` components,
    symlinks/hardlinks whose target resolves outside ``dest`` and device/FIFO members raise
    :class:`UnsafeArchiveError`. Paths are resolved against what is already on disk, so a chain
    of in-archive links cannot be used to step out either. Members before a refused one may
    already have been extracted (always inside ``dest``). Tar members also go through
    :mod:`tarfile`'s ``"data"`` filter (no setuid bits, no absolute links).
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataNotFoundError(f"archive {archive} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with open(archive, "rb") as f:
        head = f.read(4)
    if head in (b"PK\x03\x04", b"PK\x05\x06"):  # local file header / empty zip
        return _extract_zip(archive, root)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, root)
    raise CGNBenchError(f"{archive} is neither a tar nor a zip archive")


def _inside(root: Path, path: str | os.PathLike) -> bool:
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def _check_name(archive: Path, root: Path, name: str) -> Path:
    norm = posixpath.normpath(name.replace("\\", "/"))
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")
        or norm == ".."
        or norm.startswith("../")
        or ".." in name.replace("\\", "/").split("/")
    ):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r} (absolute path or '..')")
    target = root / norm
    if not _inside(root, target):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {root}")
    return target


def _check_link(archive: Path, root: Path, name: str, link: str, hard: bool) -> None:
    if link.startswith(("/", "\\")):
        raise UnsafeArchiveError(f"{archive}: link {name!r} points to absolute path {link!r}")
    base = root if hard else (root / posixpath.normpath(name)).parent
    if not _inside(root, base / link):
        raise UnsafeArchiveError(f"{archive}: link {name!r} -> {link!r} points outside {root}")


def _extract_tar(archive: Path, root: Path) -> list[Path]:
    written: list[Path] = []
    try:
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                target = _check_name(archive, root, m.name)
                if m.issym() or m.islnk():
                    _check_link(archive, root, m.name, m.linkname, hard=m.islnk())
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(
                        f"{archive}: refusing special member {m.name!r} (device, FIFO...)"
                    )
                # extract one by one so the realpath checks above see earlier links on disk
                if hasattr(tarfile, "data_filter"):
                    tf.extract(m, root, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extract(m, root)
                written.append(target)
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"{archive}: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise CGNBenchError(f"{archive} is a damaged tar archive: {e}") from None
    return written


def _extract_zip(archive: Path, root: Path) -> list[Path]:
    written: list[Path] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = _check_name(archive, root, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    # zipfile writes links as plain files holding the target: still refuse
                    # those that point out, they would become real links for other unzippers.
                    link = zf.read(info).decode("utf-8", "replace")
                    _check_link(archive, root, info.filename, link, hard=False)
                zf.extract(info, root)
                written.append(target)
    except (zipfile.BadZipFile, EOFError) as e:
        raise CGNBenchError(f"{archive} is a damaged zip archive: {e}") from None
    return written
