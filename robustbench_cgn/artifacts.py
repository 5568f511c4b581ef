"""What a weights file or a dataset is, where it comes from, and under which terms.

Plugins declare :class:`WeightsSpec` (``<component>.<tag>``, e.g. ``cgn.c-mnist``,
``biggan.deep-256``) and :class:`DatasetSpec` (``in9``, ``mnist``, ...) in their
``register_weights`` / ``register_datasets`` hooks; :mod:`robustbench_cgn.resolver` turns a
spec into a local, verified file, and ``cgnbench fetch`` downloads them ahead of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DatasetSpec", "RemoteFile", "WeightsSpec"]


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: ``path`` relative to its spec's folder, ``urls`` (primary, then
    mirrors; ``gdrive:<id>`` for Google Drive), checksums and size in bytes (when known)."""

    path: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """Named pretrained weights, ``<component>.<tag>`` (e.g. ``cgn.c-mnist``).

    Where a copy is looked for, in order (:func:`robustbench_cgn.resolver.resolve_spec`): the
    ``CGNBENCH_WEIGHTS`` override (or the legacy variable ``env``); ``source`` when it is a
    package resource (``package:<module>/<path>``, weights shipped in a wheel); ``local``
    paths under the user's ``--data-dir``; torch hub's checkpoint folder when ``torch_hub``
    (files torchvision and torch-fidelity download there themselves); the cache; else a
    download from ``urls`` into the cache, checked against ``sha256`` (``md5`` where only that
    is published). ``companions`` are fetched beside it (e.g. BigGAN's ``config.json``).

    ``preprocessing`` is the input convention the weights were trained with and travels with
    them, as in timm's pretrained configs; ``config`` holds the component config they need;
    ``task`` is the task they were trained for (empty: any).
    """

    name: str
    source: str = ""
    sha256: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    preprocessing: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    filename: str = ""
    size: int | None = None
    md5: str | None = None
    license: str = ""
    citation: str = ""
    local: tuple[str, ...] = ()
    env: str = ""
    companions: tuple[RemoteFile, ...] = ()
    task: str = ""
    torch_hub: bool = False

    @property
    def component(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else ""

    @property
    def file_name(self) -> str:
        """The file's name on disk (``filename``, else the last part of the first URL or of
        the package source, else ``<name>.pth``)."""
        if self.filename:
            return self.filename
        for where in (*self.urls, self.source):
            if where and not where.startswith("gdrive:"):
                tail = where.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
                if tail:
                    return tail
        return f"{self.name}.pth"

    @property
    def downloadable(self) -> bool:
        return bool(self.urls)

    def remote(self) -> RemoteFile:
        """The main file as a :class:`RemoteFile`."""
        return RemoteFile(self.file_name, self.urls, self.sha256, self.md5, self.size)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a benchmark needs and how a user obtains it; when it can be fetched, its
    ``files`` (archives when ``extract``), the folder a release archive unpacks to
    (``extracts_to``), where a user's copy may already be (``local``: folder names under
    ``--data-dir``) and ``is_complete`` (does a folder hold the release?). Downloads land in
    ``<cache>/<into>`` (default ``datasets/<name>``). ``env``: a legacy environment variable
    naming a user's folder (read only by :mod:`robustbench_cgn.resolver`)."""

    name: str
    description: str = ""
    how_to_obtain: str = ""
    files: tuple[RemoteFile, ...] = ()
    extract: bool = False
    extracts_to: str = ""
    local: tuple[str, ...] = ()
    into: str = ""
    license: str = ""
    citation: str = ""
    is_complete: Callable[[Path], bool] | None = None
    hf_repo: str = ""  # a ``datasets`` repository that serves it instead of files
    env: str = ""
    approx_size: str = ""  # e.g. "1.6 GB", where the files' exact sizes are not pinned

    @property
    def cache_subdir(self) -> str:
        return self.into or f"datasets/{self.name}"

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        if not sizes or any(s is None for s in sizes):
            return None
        return sum(s for s in sizes if s is not None)

    @property
    def downloadable(self) -> bool:
        return bool(self.files) and all(f.urls for f in self.files)
