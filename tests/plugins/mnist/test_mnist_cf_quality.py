"""Quality: the authors' CGNs draw the digit they are asked for.

A small CNN is trained for one epoch on binarised real MNIST digits (resized 28 -> 32 nearest and
thresholded at 0.1, as Double-colored MNIST builds its digits); the binarised masks (threshold
0.5) of each released checkpoint must then be recognised as their shape label >= 85 % of the
time (measured ~90-95 %). This checks the architecture, the weight loading and the mask path
together: a wrong layer order, BN statistics or clamp would produce unreadable shapes.
"""

from __future__ import annotations

import pytest
import torch

from robustbench_cgn.data.mnist import resolve_mnist
from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.shape_oracle import (
    binary_digits,
    cgn_mask_agreement,
    train_shape_oracle,
)


def _check_masks(cgn, oracle, name):
    correct, y = cgn_mask_agreement(cgn, oracle)
    acc = correct.mean().item()
    per_class = [round(correct[y == k].mean().item(), 2) for k in range(10)]
    print(f"{name}: shapes recognised as their label: {acc:.1%} (per class {per_class})")
    assert acc >= 0.85, f"{name}: shapes recognised {acc:.1%} (per class {per_class})"


@pytest.fixture(scope="module")
def digit_classifier(shared_data):
    mnist = resolve_mnist(shared_data, None)
    threads = torch.get_num_threads()
    # one thread: tiny ops, and immune to OpenMP spin-waits when other processes share the CPU
    torch.set_num_threads(1)
    try:
        oracle = train_shape_oracle(mnist)
        agreement = oracle.agreement(
            binary_digits(mnist.test_images[:2000]), mnist.test_labels[:2000]
        )
    finally:
        torch.set_num_threads(threads)
    assert agreement.mean() >= 0.93, f"the oracle itself is too weak ({agreement.mean():.1%})"
    return oracle


@pytest.mark.parametrize("name", ["colored", "double_colored", "wildlife"])
def test_counterfactual_shapes_are_their_digit(shared_data, digit_classifier, name):
    cgn = load_cgn_checkpoint(shared_data / "cgn_mnist_weights" / f"cgn_{name}_MNIST.pth")
    _check_masks(cgn, digit_classifier, name)


def _shipped(component):
    from robustbench_cgn_plugins.mnist import zoo

    return [spec.name for spec in zoo.shipped_weights() if spec.name.startswith(component + ".")]


def _digit_region(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, 32, 32]`` -> {0, 1} ``[N, 1, 32, 32]``: pixels far (in RGB) from the
    image's background colour, taken as the median of its border (C/DC-MNIST backgrounds are
    one colour; W-MNIST's are textures, so this reading does not apply there)."""
    x = images.float() / 255
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    return ((x - background).norm(dim=1, keepdim=True) > 0.35).float()


@pytest.mark.parametrize(
    "name", _shipped("dcgan") or [pytest.param(None, marks=pytest.mark.skip(reason="none shipped"))]
)
def test_shipped_dcgan_samples_show_their_digit(digit_classifier, name):
    from robustbench_cgn_plugins.mnist import zoo
    from robustbench_cgn_plugins.mnist.training import load_dcgan_generator, sample_dcgan

    _, path = zoo.resolve_weights(name, "dcgan", "")
    if name.endswith("w-mnist"):
        pytest.skip("W-MNIST backgrounds are textures: no colour threshold isolates the digit")
    gen = load_dcgan_generator(path)
    images, labels = map(torch.cat, zip(*sample_dcgan(gen, 1000, seed=1), strict=True))
    correct = digit_classifier.agreement(_digit_region(images), labels)
    per_class = [round(correct[labels == k].mean().item(), 2) for k in range(10)]
    print(f"{name}: samples recognised as their label: {correct.mean():.1%} ({per_class})")
    assert correct.mean() >= 0.85, f"{name}: {correct.mean():.1%} (per class {per_class})"


@pytest.mark.parametrize(
    "name",
    _shipped("cgn") or [pytest.param(None, marks=pytest.mark.skip(reason="no CGN zoo entry yet"))],
)
def test_shipped_cgn_masks_are_their_digit(digit_classifier, name):
    from robustbench_cgn_plugins.mnist import zoo

    _, path = zoo.resolve_weights(name, "cgn", "")
    _check_masks(load_cgn_checkpoint(path), digit_classifier, name)
