"""Where an ImageNet benchmark's images come from: a local folder in the release layout, a
Hugging Face ``datasets`` repository, or the release archive downloaded with its checksum.

A benchmark's ``source`` option selects one:

* ``auto`` (default): ``<data-dir>/<folder>`` for each of the dataset's usual folder names,
  then a copy downloaded earlier into ``<cache>/datasets/<name>``; otherwise a one-line
  :class:`~robustbench_cgn.errors.DataNotFoundError` that says what to download and where to
  put it (nothing is fetched implicitly: these archives are gigabytes);
* a path: that folder (the release's top folder, e.g. ``.../imagenet-a``);
* ``download``: fetch the release archive into the cache, verify its checksum, extract it
  safely (:func:`~robustbench_cgn.data.download.safe_extract`);
* ``hf:<repo id>[@<split>]``: a ``datasets`` repository (hub id or local folder) with an image
  column and a label column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn.artifacts import DatasetSpec, RemoteFile
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn.resolver import dataset_folder, resolve_dataset

HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ReleaseArchive:
    """A dataset's release archive: where it lives, its checksum, what it unpacks to."""

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    extracts_to: str = ""  # the top folder inside the archive
    size: str = ""  # for messages, e.g. "680 MB"


@dataclass(frozen=True)
class ImageSourceSpec:
    """How to find one dataset; ``is_release`` checks a candidate folder's layout."""

    name: str
    folder_names: tuple[str, ...]
    is_release: Callable[[Path], bool]
    how_to_obtain: str
    archive: ReleaseArchive | None = None
    hf_repo: str | None = None
    description: str = ""
    license: str = ""
    citation: str = ""

    @property
    def dataset(self) -> DatasetSpec:
        """The fetchable dataset (``cgnbench fetch <name>``): the release archive, extracted
        into ``<cache>/datasets/<name>``; found under ``--data-dir`` by its folder names."""
        archive = self.archive
        files = ()
        if archive is not None:
            remote = RemoteFile(archive.filename, (archive.url,), archive.sha256, archive.md5)
            files = (remote,)
        return DatasetSpec(
            self.name,
            self.description,
            self.how_to_obtain,
            files=files,
            extract=True,
            extracts_to=archive.extracts_to if archive is not None else "",
            local=self.folder_names,
            license=self.license,
            citation=self.citation,
            is_complete=self.is_release,
            hf_repo=self.hf_repo or "",
            approx_size=archive.size if archive is not None else "",
        )


@dataclass(frozen=True)
class LocatedSource:
    """A resolved source: ``folder`` for local data, or ``hf_repo`` (+ ``hf_split``)."""

    kind: str  # "folder" | "hf"
    folder: Path | None = None
    hf_repo: str | None = None
    hf_split: str = "train"

    def describe(self) -> str:
        return str(self.folder) if self.kind == "folder" else f"hf:{self.hf_repo}@{self.hf_split}"


def locate(
    spec: ImageSourceSpec, source: str, data_dir: Path | None, cache_dir: Path
) -> LocatedSource:
    """Resolve a benchmark's ``source`` option (see the module docstring)."""
    if source.startswith(HF_PREFIX):
        repo, _, split = source[len(HF_PREFIX) :].partition("@")
        if not repo:
            raise CGNBenchError(f"{spec.name}: give a repository after 'hf:' (e.g. hf:user/repo)")
        return LocatedSource("hf", hf_repo=repo, hf_split=split or "train")
    if source == "download":
        return LocatedSource("folder", folder=download_release(spec, cache_dir))
    if source != "auto":
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(f"{spec.name}: {folder} is not a folder. {spec.how_to_obtain}")
        if not spec.is_release(folder):
            raise DataNotFoundError(
                f"{spec.name}: {folder} does not have the release layout. {spec.how_to_obtain}"
            )
        return LocatedSource("folder", folder=folder)
    candidates = [data_dir / name for name in spec.folder_names] if data_dir else []
    if spec.archive is not None:
        candidates.append(dataset_folder(spec.dataset, cache_dir))
    for folder in candidates:
        if folder.is_dir() and spec.is_release(folder):
            return LocatedSource("folder", folder=folder)
    looked = ", ".join(str(c) for c in candidates) or "(no --data-dir given)"
    hint = spec.how_to_obtain
    if spec.archive is not None:
        hint += (
            f" Or let cgnbench fetch it: `cgnbench fetch {spec.name}` "
            f"({spec.archive.url}, {spec.archive.size or 'large'})."
        )
    raise DataNotFoundError(f"{spec.name} not found (looked in: {looked}). {hint}")


def download_release(spec: ImageSourceSpec, cache_dir: Path) -> Path:
    """Download, verify and extract the release archive (once) into
    ``<cache>/datasets/<name>``; returns its top folder."""
    if spec.archive is None:
        raise DataNotFoundError(
            f"{spec.name} has no downloadable release archive. {spec.how_to_obtain}"
        )
    return resolve_dataset(spec.dataset, data_dir=None, cache_dir=cache_dir)


def hf_image_reader(
    repo: str,
    split: str,
    image_column: str = "image",
    label_column: str = "label",
) -> tuple[Callable[[int], torch.Tensor], list[int | str], int]:
    """``(reader, labels, n)`` of a ``datasets`` repository: the reader returns item ``i``'s
    encoded image bytes as a uint8 tensor (decoded by torchvision in the workers, not PIL)."""
    import datasets

    try:
        data = datasets.load_dataset(repo, split=split)
    except Exception as exc:  # datasets raises many types (offline, missing repo, bad split)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataNotFoundError(
            f"could not load the datasets repository {repo!r} (split {split!r}): {first}. "
            "Offline, pass a local copy: hf:/path/to/repo (a folder of parquet files)."
        ) from None
    for column in (image_column, label_column):
        if column not in data.column_names:
            raise CGNBenchError(
                f"datasets repository {repo!r} has no column {column!r} "
                f"(columns: {', '.join(data.column_names)})"
            )
    labels = list(data[label_column])
    data = data.cast_column(image_column, datasets.Image(decode=False))
    return _HFReader(data, image_column), labels, len(labels)


class _HFReader:
    """Picklable reader of encoded images (DataLoader workers get a copy)."""

    def __init__(self, data, column: str):
        self.data, self.column = data, column

    def __call__(self, index: int) -> torch.Tensor:
        item = self.data[index][self.column]
        payload = item.get("bytes")
        if payload is None and item.get("path"):
            payload = Path(item["path"]).read_bytes()
        if not payload:
            raise CGNBenchError(f"item {index} has no image bytes")
        return torch.frombuffer(bytearray(payload), dtype=torch.uint8)


def wnid_folders(folder: Path) -> list[Path]:
    """Class folders named by WNID (``n01440764``), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("n") and p.name[1:].isdigit()
    )


def has_wnid_folders(minimum: int) -> Callable[[Path], bool]:
    def check(folder: Path) -> bool:
        return len(wnid_folders(folder)) >= minimum

    return check


def missing_wnids(folder: Path, expected: Sequence[str]) -> list[str]:
    present = {p.name for p in wnid_folders(folder)}
    return [w for w in expected if w not in present]
