"""``cgnbench fetch``: download registered weights and datasets ahead of a run, and list what
the cache holds. Compute nodes of clusters are often offline: fetch on a login node, then
``cgnbench run --offline`` on the node never touches the network."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .artifacts import DatasetSpec, WeightsSpec
from .data.digests import cached_sha256
from .errors import CGNBenchError, DataNotFoundError, UnknownNameError
from .registry import Registries
from .resolver import (
    URL_SCHEMES,
    dataset_folder,
    iter_files,
    resolve_dataset,
    resolve_spec,
    resolve_weights,
)

__all__ = [
    "CachedItem",
    "Fetchable",
    "Fetched",
    "cached_items",
    "expand_names",
    "fetch",
    "fetch_one",
    "item_name",
]

#: A registered weights file or dataset, or the URL of a weights file.
Fetchable = WeightsSpec | DatasetSpec | str


@dataclass(frozen=True)
class Fetched:
    """One fetched item: where it is, how big, its sha256 (weights) and how it was found."""

    name: str
    kind: str  # "weights" | "dataset"
    path: Path
    size: int
    sha256: str
    origin: str


@dataclass(frozen=True)
class CachedItem:
    """What ``fetch --list`` shows for one folder of the cache."""

    name: str
    kind: str
    files: int
    size: int
    sha256: str  # a weights file's, or the archive sums a dataset recorded
    path: Path


def item_name(item: Fetchable) -> str:
    return item if isinstance(item, str) else item.name


def expand_names(names: Iterable[str], registries: Registries) -> list[Fetchable]:
    """Registered weights and datasets by name (wildcards allowed) and weights URLs, in the
    order given. An unknown name is one :class:`UnknownNameError` with close matches."""
    weights = {entry.name: entry.spec for entry in registries.weights}
    datasets = {entry.name: entry.spec for entry in registries.datasets}
    known = {**weights, **datasets}
    out: list[Fetchable] = []
    for name in names:
        if name.startswith(URL_SCHEMES):
            out.append(name)
            continue
        matched = sorted(n for n in known if fnmatch.fnmatchcase(n, name))
        if not matched:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            raise UnknownNameError("weights or dataset", name, close, sorted(known))
        out.extend(known[n] for n in matched if known[n] not in out)
    return out


def fetch_one(
    spec: Fetchable,
    *,
    data_dir: Path | None,
    cache_dir: Path,
) -> Fetched:
    """Make one item local (found, cached or downloaded) and describe it."""
    if isinstance(spec, str):  # a URL, as `weights=URL` would fetch it at run time
        resolved = resolve_weights(spec, cache_dir=cache_dir)
        size = resolved.path.stat().st_size
        return Fetched(spec, "weights", resolved.path, size, resolved.sha256, resolved.origin)
    if isinstance(spec, WeightsSpec):
        resolved = resolve_spec(spec, data_dir=data_dir, cache_dir=cache_dir)
        size = resolved.path.stat().st_size
        return Fetched(spec.name, "weights", resolved.path, size, resolved.sha256, resolved.origin)
    if not spec.downloadable and spec.hf_repo:
        return _fetch_hf(spec)
    before = dataset_folder(spec, cache_dir)
    fresh = not before.exists()
    folder = resolve_dataset(spec, data_dir=data_dir, cache_dir=cache_dir)
    origin = "data-dir" if folder != before else ("download" if fresh else "cache")
    files = list(iter_files(folder))
    return Fetched(spec.name, "dataset", folder, sum(f.stat().st_size for f in files), "", origin)


def _fetch_hf(spec: DatasetSpec) -> Fetched:
    """A ``datasets`` repository: downloaded into the Hugging Face cache by ``datasets``."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise CGNBenchError(f"{spec.name}: the datasets library is missing ({exc})") from None
    try:
        loaded = datasets.load_dataset(spec.hf_repo)
    except Exception as exc:  # hub and builder errors come in many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataNotFoundError(
            f"{spec.name}: could not fetch the datasets repository {spec.hf_repo} ({first}). "
            f"{spec.how_to_obtain}"
        ) from None
    files = {f["filename"] for split in loaded.values() for f in split.cache_files}
    paths = [Path(f) for f in files]
    size = sum(p.stat().st_size for p in paths if p.is_file())
    folder = paths[0].parent if paths else Path(os.devnull)
    return Fetched(spec.name, "dataset", folder, size, "", f"hf:{spec.hf_repo}")


def fetch(
    specs: Iterable[Fetchable],
    *,
    data_dir: Path | None,
    cache_dir: Path,
    on_item: Callable[[Fetchable], None] | None = None,
) -> tuple[list[Fetched], list[tuple[str, str]]]:
    """Fetch every item; returns what worked and ``(name, one-line reason)`` for what did not
    (one failure does not stop the others)."""
    done: list[Fetched] = []
    failed: list[tuple[str, str]] = []
    for spec in specs:
        if on_item is not None:
            on_item(spec)
        try:
            done.append(fetch_one(spec, data_dir=data_dir, cache_dir=cache_dir))
        except CGNBenchError as exc:
            failed.append((item_name(spec), str(exc)))
    return done, failed


def cached_items(cache_dir: Path) -> list[CachedItem]:
    """Everything under ``<cache>/weights/*`` and ``<cache>/datasets/*`` (plus MNIST and the
    W-MNIST textures, which keep torchvision's / their own layout)."""
    items: list[CachedItem] = []
    for kind, base in (("weights", cache_dir / "weights"), ("dataset", cache_dir / "datasets")):
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if kind == "weights" and folder.name == "url":
                items.extend(
                    _item(f"url:{sub.name}", kind, sub) for sub in sorted(folder.iterdir())
                )
            else:
                items.append(_item(folder.name, kind, folder))
    for name, rel in (("mnist", "MNIST/raw"), ("wmnist-textures", "wmnist_textures")):
        if (cache_dir / rel).is_dir():
            items.append(_item(name, "dataset", cache_dir / rel))
    return [item for item in items if item.files]


def _item(name: str, kind: str, folder: Path) -> CachedItem:
    files = list(iter_files(folder))
    sums = folder / "SHA256SUMS"
    if kind == "weights":
        weights = [f for f in files if f.suffix not in (".json", ".bad")]
        sha = cached_sha256(weights[0]) if len(weights) == 1 else ""
    else:
        sha = sums.read_text().split()[0] if sums.is_file() and sums.read_text().strip() else ""
    size = sum(f.stat().st_size for f in files)
    return CachedItem(name, kind, len(files), size, sha, folder)
