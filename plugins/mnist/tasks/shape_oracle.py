"""A digit-shape oracle: a small CNN trained on binarised real MNIST digits.

It answers "does this binary shape look like digit k?", which measures whether a generator's
masks draw the digit they were asked for (the counterfactual-quality check of the issue
tracker and of generator-quality benchmarks). Digits are resized 28 -> 32 (nearest) and
thresholded at 0.1, as Double-colored MNIST builds its digits, then average-pooled to 16x16.
One epoch of Adam on 20,000 digits reaches ~97 % on binarised MNIST test digits.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_cgn.checkpoint import Checkpointer
from robustbench_cgn_plugins.mnist.tasks.source import MnistArrays

ORACLE_VERSION = 1


def binary_digits(images: Tensor) -> Tensor:
    """uint8 MNIST digits ``[N, 28, 28]`` -> {0, 1} float ``[N, 1, 32, 32]``."""
    x = images.reshape(-1, 1, 28, 28).float() / 255.0
    return (F.interpolate(x, size=32, mode="nearest") > 0.1).float()


class ShapeOracle(nn.Module):
    """``forward(shapes [N, 1, 32, 32] in {0, 1}) -> logits [N, 10]``."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 16, 10),
        )

    def forward(self, shapes: Tensor) -> Tensor:
        return self.net(F.avg_pool2d(shapes, 2))

    @torch.no_grad()
    def agreement(self, masks: Tensor, labels: Tensor, threshold: float = 0.5) -> Tensor:
        """Per-image ``1.0`` where the mask binarised at ``threshold`` reads as its label."""
        shapes = (masks.reshape(-1, 1, *masks.shape[-2:]) > threshold).float()
        return (self.eval()(shapes).argmax(1) == labels).float()


def cgn_mask_agreement(
    cgn: nn.Module, oracle: ShapeOracle, per_class: int = 100, seed: int = 1
) -> tuple[Tensor, Tensor]:
    """How often a CGN's masks read as their shape label: ``per_class`` masks of each digit
    (noise from ``seed``) -> (per-mask ``1.0``/``0.0``, labels). The zoo's quality gate and
    ``scripts/check_zoo_candidate.py`` both measure with this."""
    y = torch.arange(10).repeat(per_class)
    with torch.inference_mode():
        # a counterfactual's shape is its mask (textures do not touch it): f_shape only
        masks = cgn.mask(cgn.sample_noise(len(y), torch.Generator().manual_seed(seed)), y)
    return oracle.agreement(masks[:, :1], y), y


def train_shape_oracle(mnist: MnistArrays, n_train: int = 20_000, seed: int = 0) -> ShapeOracle:
    """One epoch of Adam (lr 2e-3, batch 64) on the first ``n_train`` training digits."""
    n = min(n_train, len(mnist.train_labels))
    x = binary_digits(mnist.train_images[:n])
    y = mnist.train_labels[:n].long()
    torch.manual_seed(seed)
    oracle = ShapeOracle()
    optimizer = torch.optim.Adam(oracle.parameters(), lr=2e-3)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for start in range(0, n, 64):
        batch = order[start : start + 64]
        loss = F.cross_entropy(oracle(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return oracle.eval()


def cached_shape_oracle(mnist: MnistArrays, cache_dir: Path, seed: int = 0) -> ShapeOracle:
    """The oracle for this MNIST source, trained once and kept in ``cache_dir``."""
    store = Checkpointer(Path(cache_dir) / "shape-oracle")
    name = f"v{ORACLE_VERSION}-{mnist.source}-s{seed}"
    state = store.load(name)
    oracle = ShapeOracle()
    if state is None:
        oracle = train_shape_oracle(mnist, seed=seed)
        store.save(name, {"model": oracle.state_dict()})
    else:
        oracle.load_state_dict(state["model"])
    return oracle.eval()
