"""Quality: the authors' CGNs draw the digit they are asked for.

A small CNN is trained for one epoch on binarised real MNIST digits (resized 28 -> 32 nearest and
thresholded at 0.1, as Double-colored MNIST builds its digits); the binarised masks (threshold
0.5) of each released checkpoint must then be recognised as their shape label >= 85 % of the
time (measured ~90-95 %). This checks the architecture, the weight loading and the mask path
together: a wrong layer order, BN statistics or clamp would produce unreadable shapes.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint

N_TRAIN = 20_000
MASKS_PER_CLASS = 100


def read_idx(path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def binary_digits(raw: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> {0, 1} float [N, 1, 32, 32] (nearest resize, > 0.1)."""
    x = torch.from_numpy(raw.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return (F.interpolate(x, size=32, mode="nearest") > 0.1).float()


def small_cnn() -> nn.Sequential:
    # input is average-pooled once to 16x16 (done on the data, see below)
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16, 10),
    )


@pytest.fixture(scope="module")
def digit_classifier(shared_data):
    raw = shared_data / "MNIST" / "raw"
    images = read_idx(raw / "train-images-idx3-ubyte.gz", 16)[: N_TRAIN * 784]
    labels = torch.from_numpy(read_idx(raw / "train-labels-idx1-ubyte.gz", 8)[:N_TRAIN].copy())
    x = F.avg_pool2d(binary_digits(images), 2)
    threads = torch.get_num_threads()
    # one thread: tiny ops, and immune to OpenMP spin-waits when other processes share the CPU
    torch.set_num_threads(1)
    try:
        net = _train(x, labels)
    finally:
        torch.set_num_threads(threads)
    test_x = read_idx(raw / "t10k-images-idx3-ubyte.gz", 16)[: 2000 * 784]
    test_y = torch.from_numpy(read_idx(raw / "t10k-labels-idx1-ubyte.gz", 8)[:2000].copy())
    with torch.no_grad():
        acc = (net(F.avg_pool2d(binary_digits(test_x), 2)).argmax(1) == test_y).float().mean()
    assert acc >= 0.93, f"the helper digit classifier itself is too weak ({acc:.1%})"
    return net


def _train(x: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    net = small_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(0))
    for start in range(0, N_TRAIN, 64):
        idx = order[start : start + 64]
        loss = F.cross_entropy(net(x[idx]), labels[idx].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("name", ["colored", "double_colored", "wildlife"])
def test_counterfactual_shapes_are_their_digit(shared_data, digit_classifier, name):
    cgn = load_cgn_checkpoint(shared_data / "cgn_mnist_weights" / f"cgn_{name}_MNIST.pth")
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(10).repeat(MASKS_PER_CLASS)
    with torch.inference_mode():
        # a counterfactual's shape is its mask (textures do not touch it): f_shape only
        shapes = (cgn.mask(cgn.sample_noise(len(y), gen), y)[:, :1] > 0.5).float()
        pred = digit_classifier(F.avg_pool2d(shapes, 2)).argmax(1)
    acc = (pred == y).float().mean().item()
    per_class = [round((pred[y == k] == k).float().mean().item(), 2) for k in range(10)]
    print(f"{name}: shapes recognised as their label: {acc:.1%} (per class {per_class})")
    assert acc >= 0.85, f"{name}: shapes recognised {acc:.1%} (per class {per_class})"
