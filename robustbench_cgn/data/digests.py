"""File checksums: plain hashing, verification, and a per-process memo so that a weights file
is hashed once per run however many components ask for its identity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from robustbench_cgn.errors import ChecksumError, DataNotFoundError

__all__ = ["cached_sha256", "md5_file", "sha256_file", "verify_file"]

_CHUNK = 1 << 20
#: (resolved path, size, mtime_ns) -> sha256; a changed file gets a new key.
_SHA256: dict[tuple[str, int, int], str] = {}


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


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of ``path``, computed once per process while its size and mtime are unchanged."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        _SHA256[key] = sha256_file(path)
    return _SHA256[key]


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> None:
    """Check ``path`` against the given checksums (either, both or none). A shorter hex string
    is a prefix (torch hub names files ``<name>-<first 8 hex of sha256>.pth``; that is all
    some publishers give).

    Raises :class:`DataNotFoundError` if the file is missing and :class:`ChecksumError` naming
    the file, the expected and the actual digest on a mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = cached_sha256(path) if algo == "sha256" else _hash_file(path, algo)
        if len(expected) < 8 or not actual.lower().startswith(expected.lower()):
            raise ChecksumError(
                f"{path}: {algo} is {actual}, expected {expected.lower()} "
                "(corrupt or wrong file: delete it and fetch it again)"
            )
