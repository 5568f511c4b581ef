"""Image folders the CGN invariant ensemble trains on: counterfactual and real ImageNet.

Counterfactual dataset layout (written by the ``cgn-imagenet`` generator, read here)::

    <root>/labels.csv          header ``path,shape,texture,background``
    <root>/<path>              the images (JPEG or PNG), any sub-folders

Each ``labels.csv`` row names one image by its ``path`` relative to ``<root>`` (``/``
separators) and the three ImageNet-1k class indices (0..999, timm / torchvision order = the
sorted WNIDs) its shape, texture and background were generated from. Extra columns are
ignored, so a generator may add its own (e.g. the truncation value or the noise seed).

Real ImageNet training data uses the standard ImageFolder layout ``<root>/<wnid>/*.JPEG``; a
subset of the 1000 classes (ImageNet-mini, a few classes in tests) is fine, and labels are
always indices among all 1000 sorted WNIDs, so they match the 1000-way heads.

Both datasets decode with :func:`torchvision.io.decode_image` (tensors, no PIL), apply an
optional ``torchvision.transforms.v2`` transform to the ``uint8`` image (cheaper than on
floats) and yield float ``[3, H, W]`` images in ``[0, 1]``. Problems with the data are found
when the dataset is created, not halfway through an epoch, and reported as one line.
"""

from __future__ import annotations

import copy
import csv
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn_plugins.imagenet.tasks.class_maps import imagenet_wnids
from robustbench_cgn_plugins.imagenet.tasks.image_files import decode_rgb

LABELS_FILE = "labels.csv"
COLUMNS = ("path", "shape", "texture", "background")
NUM_CLASSES = 1000
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

Transform = Callable[[torch.Tensor], torch.Tensor]


def train_transform(size: int) -> Transform:
    """The paper's training augmentation: RandomResizedCrop(size) + horizontal flip."""
    from torchvision.transforms import v2  # lazy: importing torchvision costs ~1 s at start-up

    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def eval_transform(size: int, crop_pct: float = 0.875) -> Transform:
    """Resize the short side to ``round(size / crop_pct)`` and centre-crop ``size``
    (224 / 0.875 = the reference's Resize(256) + CenterCrop(224))."""
    from torchvision.transforms import v2  # lazy: importing torchvision costs ~1 s at start-up

    return v2.Compose([v2.Resize(int(round(size / crop_pct)), antialias=True), v2.CenterCrop(size)])


def load_image(path: str | os.PathLike, transform: Transform | None) -> torch.Tensor:
    """Decode an image file to RGB, transform it as ``uint8`` and return float in [0, 1]."""
    try:
        image = decode_rgb(path)
    except (RuntimeError, OSError, ValueError) as exc:
        raise CGNBenchError(f"cannot decode image {path}: {exc}") from None
    if transform is not None:
        image = transform(image)
    if image.dtype == torch.uint8:
        return image.float().div_(255)
    return image.float()


class _ImageFiles(Dataset):
    """Shared machinery: file paths (a NumPy string array, so forked DataLoader workers do not
    copy a list of a million Python strings on access) and a per-item label."""

    counterfactual: ClassVar[bool]

    root: Path
    transform: Transform | None
    _paths: np.ndarray

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def paths(self) -> list[str]:
        """Image paths relative to ``root``."""
        return [str(p) for p in self._paths]

    def with_transform(self, transform: Transform | None) -> _ImageFiles:
        """The same images with another transform (the file index is shared, not re-read)."""
        clone = copy.copy(self)
        clone.transform = transform
        return clone

    def _load(self, index: int) -> torch.Tensor:
        return load_image(self.root / str(self._paths[index]), self.transform)


class CounterfactualImageFolder(_ImageFiles):
    """A counterfactual ImageNet dataset in the ``labels.csv`` layout (module docstring).

    Yields ``(image float [3, H, W] in [0, 1], LongTensor([shape, texture, background]))``.
    ``counterfactual = True`` tells the invariant ensemble to train each head on its own label.
    """

    counterfactual: ClassVar[bool] = True

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None):
        self.root = Path(root).expanduser()
        self.transform = transform
        paths, labels = read_labels(self.root)
        self._paths = np.array(paths)
        self.labels = torch.tensor(labels, dtype=torch.long).view(-1, 3)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._load(index), self.labels[index].clone()


class RealImageFolder(_ImageFiles):
    """Real ImageNet training images in the ImageFolder layout ``<root>/<wnid>/*.JPEG``.

    Yields ``(image float [3, H, W] in [0, 1], class index)`` where the index is the WNID's
    position among the 1000 sorted ImageNet-1k WNIDs (not among the folders present).
    """

    counterfactual: ClassVar[bool] = False

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None):
        self.root = Path(root).expanduser()
        self.transform = transform
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"ImageNet training folder {self.root} does not exist "
                "(expected the ImageFolder layout <root>/<wnid>/*.JPEG)"
            )
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        folders = sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir() and not entry.name.startswith(".")
        )
        unknown = [name for name in folders if name not in index]
        if unknown:
            raise CGNBenchError(
                f"{self.root}: folder {unknown[0]!r} is not an ImageNet-1k WNID "
                f"({len(unknown)} such folders; expected <root>/<wnid>/*.JPEG, e.g. n01440764)"
            )
        paths: list[str] = []
        targets: list[int] = []
        for wnid in folders:
            for current, _dirs, files in os.walk(self.root / wnid, followlinks=True):
                relative = Path(current).relative_to(self.root).as_posix()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                        paths.append(f"{relative}/{name}")
                        targets.append(index[wnid])
        if not paths:
            raise DataNotFoundError(
                f"ImageNet training folder {self.root} holds no images "
                "(expected the ImageFolder layout <root>/<wnid>/*.JPEG)"
            )
        self.classes = folders
        self._paths = np.array(paths)
        self.targets = torch.tensor(targets, dtype=torch.long)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._load(index), int(self.targets[index])


def read_labels(root: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Parse and check ``<root>/labels.csv``: columns, class ranges, paths inside ``root``
    and that every listed image exists. Any problem is one line naming the file and row."""
    if not root.is_dir():
        raise DataNotFoundError(f"counterfactual dataset folder {root} does not exist")
    labels_file = root / LABELS_FILE
    if not labels_file.is_file():
        raise DataNotFoundError(
            f"counterfactual dataset folder {root} has no {LABELS_FILE} "
            f"(expected a header {','.join(COLUMNS)})"
        )
    paths: list[str] = []
    labels: list[tuple[int, int, int]] = []
    with open(labels_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [column for column in COLUMNS if column not in header]
        if missing:
            raise CGNBenchError(
                f"{labels_file}: missing column(s) {', '.join(missing)} "
                f"(the header must contain {','.join(COLUMNS)})"
            )
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            paths.append(_checked_path(labels_file, line, row["path"]))
            labels.append(
                tuple(_checked_class(labels_file, line, c, row[c]) for c in COLUMNS[1:])  # type: ignore[misc]
            )
    if not paths:
        raise DataNotFoundError(f"{labels_file} lists no images")
    _check_files_exist(root, labels_file, paths)
    return paths, labels


def _checked_path(labels_file: Path, line: int, raw: str | None) -> str:
    path = (raw or "").strip()
    normalized = posixpath.normpath(path) if path else ""
    if not normalized or normalized.startswith(("/", "../")) or normalized == "..":
        raise CGNBenchError(
            f"{labels_file} line {line}: path {path!r} must be a file path relative to the folder"
        )
    return normalized


def _checked_class(labels_file: Path, line: int, column: str, raw: str | None) -> int:
    try:
        value = int((raw or "").strip())
    except ValueError:
        raise CGNBenchError(
            f"{labels_file} line {line}: {column} class {raw!r} is not an integer"
        ) from None
    if not 0 <= value < NUM_CLASSES:
        raise CGNBenchError(
            f"{labels_file} line {line}: {column} class {value} is out of range "
            f"0..{NUM_CLASSES - 1}"
        )
    return value


def _check_files_exist(root: Path, labels_file: Path, paths: list[str]) -> None:
    """One directory walk (names only, no stat per image) instead of a million ``exists``."""
    present: set[str] = set()
    for current, _dirs, files in os.walk(root, followlinks=True):
        relative = Path(current).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        present.update(prefix + name for name in files)
    missing = [(line, path) for line, path in enumerate(paths, start=2) if path not in present]
    if missing:
        line, path = missing[0]
        more = f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise DataNotFoundError(
            f"{labels_file} line {line}: image {path} does not exist under {root}{more}"
        )
