"""Quality: the authors' CGNs draw the digit they are asked for.

A small CNN is trained for one epoch on binarised real MNIST digits (resized 28 -> 32 nearest and
thresholded at 0.1, as Double-colored MNIST builds its digits); the binarised masks (threshold
0.5) of each released checkpoint must then be recognised as their shape label >= 85 % of the
time (measured ~90-95 %). This checks the architecture, the weight loading and the mask path
together: a wrong layer order, BN statistics or clamp would produce unreadable shapes.
The same oracle gates the shipped zoo entries: CGN masks directly, DCGAN samples through the
digit region read back from their pixels (:mod:`robustbench_cgn_plugins.mnist.digit_regions`,
itself checked on real variant images here).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.digit_regions import (
    dcgan_sample_agreement,
    digit_region,
    reading_histograms,
)
from robustbench_cgn_plugins.mnist.tasks.shape_oracle import (
    binary_digits,
    cgn_mask_agreement,
    train_shape_oracle,
)
from robustbench_cgn_plugins.mnist.tasks.source import resolve_mnist
from robustbench_cgn_plugins.mnist.tasks.variants import build_variant
from robustbench_cgn_plugins.mnist.zoo import CGN_GATE


def _check_masks(cgn, oracle, name):
    correct, y = cgn_mask_agreement(cgn, oracle)
    acc = correct.mean().item()
    per_class = [round(correct[y == k].mean().item(), 2) for k in range(10)]
    print(f"{name}: shapes recognised as their label: {acc:.1%} (per class {per_class})")
    assert acc >= CGN_GATE, f"{name}: shapes recognised {acc:.1%} (per class {per_class})"


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


def _reading(shared_data, benchmark):
    return reading_histograms(benchmark, shared_data / "wmnist_textures")


@pytest.mark.parametrize(
    "variant, benchmark",
    [("colored", "c-mnist"), ("double-colored", "dc-mnist"), ("wildlife", "w-mnist")],
)
def test_digit_regions_read_from_real_images_are_their_digit(
    shared_data, digit_classifier, variant, benchmark
):
    """The pixel readings that gate the DCGANs below, checked on real variant images."""
    mnist = resolve_mnist(shared_data, None)
    # the first 2,400 digits give >= 2,000 training images of every variant
    mnist = dataclasses.replace(
        mnist, train_images=mnist.train_images[:2400], train_labels=mnist.train_labels[:2400]
    )
    data = build_variant(variant, "train", mnist, 0, textures_dir=shared_data / "wmnist_textures")
    images, labels, masks = data.images[:2000], data.labels[:2000], data.masks[:2000]
    regions = digit_region(images, labels, _reading(shared_data, benchmark))
    truth = masks[:, None].float()
    iou = (regions * truth).sum((1, 2, 3)) / ((regions + truth) > 0).sum((1, 2, 3))
    read = digit_classifier.agreement(regions, labels).mean().item()
    print(f"{variant}: region IoU {iou.mean():.2f}, read as the label {read:.1%}")
    assert iou.mean() >= 0.75 and read >= 0.88


@pytest.mark.parametrize("benchmark", ["c-mnist", "dc-mnist", "w-mnist"])
def test_an_untrained_dcgan_fails_the_gate(shared_data, digit_classifier, benchmark):
    """The DCGAN gates can fail: a randomly initialised generator reads far below them."""
    from robustbench_cgn_plugins.mnist.dcgan_model import DCGANGenerator
    from robustbench_cgn_plugins.mnist.zoo import DCGAN_GATES

    torch.manual_seed(0)
    hists = _reading(shared_data, benchmark)
    correct, _ = dcgan_sample_agreement(DCGANGenerator(), digit_classifier, hists, n=500)
    print(f"untrained DCGAN, {benchmark} reading: {correct.mean():.1%}")
    assert correct.mean() < DCGAN_GATES[benchmark] / 2


def _shipped(component):
    from robustbench_cgn_plugins.mnist import zoo

    return [spec.name for spec in zoo.shipped_weights() if spec.name.startswith(component + ".")]


@pytest.mark.parametrize(
    "name", _shipped("dcgan") or [pytest.param(None, marks=pytest.mark.skip(reason="none shipped"))]
)
def test_shipped_dcgan_samples_show_their_digit(shared_data, digit_classifier, name):
    from robustbench_cgn_plugins.mnist import zoo
    from robustbench_cgn_plugins.mnist.training import load_dcgan_generator

    path = zoo.resolve_weights(name, "dcgan", "").path
    benchmark = name.split(".", 1)[1]
    hists = _reading(shared_data, benchmark)
    correct, labels = dcgan_sample_agreement(load_dcgan_generator(path), digit_classifier, hists)
    per_class = [round(correct[labels == k].mean().item(), 2) for k in range(10)]
    print(f"{name}: samples recognised as their label: {correct.mean():.1%} ({per_class})")
    gate = zoo.DCGAN_GATES[benchmark]
    assert correct.mean() >= gate, f"{name}: {correct.mean():.1%} (per class {per_class})"


@pytest.mark.parametrize(
    "name",
    _shipped("cgn") or [pytest.param(None, marks=pytest.mark.skip(reason="no CGN zoo entry yet"))],
)
def test_shipped_cgn_masks_are_their_digit(digit_classifier, name):
    from robustbench_cgn_plugins.mnist import zoo

    path = zoo.resolve_weights(name, "cgn", "").path
    _check_masks(load_cgn_checkpoint(path), digit_classifier, name)
