"""Safe extraction of release archives (tar in any compression, zip).

:func:`safe_extract` refuses members that would land outside the destination: absolute paths,
``..`` components, links pointing out (alone or through a chain of links, whatever their
order), device files and FIFOs. It extracts into a fresh staging folder, checks the finished
tree, and only then moves it into place: a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from robustbench_cgn.errors import CGNBenchError, DataNotFoundError

__all__ = ["UnsafeArchiveError", "safe_extract"]


class UnsafeArchiveError(CGNBenchError):
    """An archive member would be written outside the extraction folder."""


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a tar (any compression) or zip ``archive`` into ``dest``; return the paths written.

    Each member is checked as it is written (absolute names, ``..`` components, links whose
    target resolves outside, device/FIFO members) and the finished tree once more, so that a
    link that only points out once a later link exists (``d -> x/..`` then ``x -> .``) is
    found too; any of these raise :class:`UnsafeArchiveError` and leave ``dest`` as it was.
    Tar members also go through :mod:`tarfile`'s ``"data"`` filter (no setuid bits). Entries
    already in ``dest`` under a member's name are replaced (a re-extraction).
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataNotFoundError(f"archive {archive} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    with open(archive, "rb") as f:
        head = f.read(4)
    is_zip = head in (b"PK\x03\x04", b"PK\x05\x06")  # local file header / empty zip
    if not is_zip and not tarfile.is_tarfile(archive):
        raise CGNBenchError(f"{archive} is neither a tar nor a zip archive")
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        root = staging.resolve()
        written = (_extract_zip if is_zip else _extract_tar)(archive, root)
        _check_tree(archive, root)
        _merge(root, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / path.relative_to(root) for path in written]


def _check_tree(archive: Path, root: Path) -> None:
    """Every link of the finished tree resolves inside ``root``."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(root, path):
                member = os.path.relpath(path, root)
                raise UnsafeArchiveError(
                    f"{archive}: link {member!r} -> {os.readlink(path)!r} points outside the "
                    "extraction folder once the archive's other links exist"
                )


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s entries into ``dst``: real folders merge, anything else replaces."""
    for child in sorted(src.iterdir()):
        target = dst / child.name
        both_dirs = child.is_dir() and not child.is_symlink()
        both_dirs = both_dirs and target.is_dir() and not target.is_symlink()
        if both_dirs:
            _merge(child, target)
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.replace(child, target)


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
