"""The zoo quality gate, measured on training checkpoints before one is exported.

    python scripts/check_zoo_candidate.py --data-dir ../shared/data RUN/checkpoints/ckpt_*.pt

prints, per checkpoint, how often a CGN's masks (100 per class) or a DCGAN's samples (1,000,
their digit region read from the pixels) read as their digit, with the same oracle, seeds,
readings and gates as ``tests/plugins/mnist/test_mnist_cf_quality.py`` (the gates are
``zoo.CGN_GATE`` and ``zoo.DCGAN_GATES``), so the number reported for a shipped entry is the
one the test measures. Then ``scripts/export_zoo_entry.py CKPT NAME`` ships the chosen one.
W-MNIST DCGANs need the texture files (``--textures-dir``, default ``DATA/wmnist_textures``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.digit_regions import dcgan_sample_agreement, reading_histograms
from robustbench_cgn_plugins.mnist.tasks.shape_oracle import cgn_mask_agreement, train_shape_oracle
from robustbench_cgn_plugins.mnist.tasks.source import resolve_mnist
from robustbench_cgn_plugins.mnist.training import (
    export_generator_weights,
    load_checkpoint,
    load_dcgan_generator,
)
from robustbench_cgn_plugins.mnist.zoo import CGN_GATE, DCGAN_GATES, ZOO_TAG_OF_TASK


def measure(checkpoint: Path, oracle, textures_dir: Path, tmp: Path) -> tuple[torch.Tensor, ...]:
    """(per-item agreement, labels, gate) of one training checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    weights = export_generator_weights(ckpt, tmp / f"{checkpoint.stem}.pth")
    if ckpt["config"]["model"] == "cgn":
        return (*cgn_mask_agreement(load_cgn_checkpoint(weights), oracle), CGN_GATE)
    benchmark = ZOO_TAG_OF_TASK[f"{ckpt['config']['variant']}-mnist"]
    hists = reading_histograms(benchmark, textures_dir)
    correct, labels = dcgan_sample_agreement(load_dcgan_generator(weights), oracle, hists)
    return correct, labels, DCGAN_GATES[benchmark]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding MNIST/raw")
    parser.add_argument("--textures-dir", type=Path, help="W-MNIST textures (object/, background/)")
    args = parser.parse_args()
    textures_dir = args.textures_dir or args.data_dir / "wmnist_textures"
    torch.set_num_threads(1)  # as the test's oracle fixture
    oracle = train_shape_oracle(resolve_mnist(args.data_dir, None))
    with tempfile.TemporaryDirectory() as tmp:
        for checkpoint in args.checkpoints:
            correct, y, gate = measure(checkpoint, oracle, textures_dir, Path(tmp))
            per_class = [round(correct[y == k].mean().item(), 2) for k in range(10)]
            verdict = "passes" if correct.mean() >= gate else "fails"
            print(f"{checkpoint}: {correct.mean():.1%} {per_class} ({verdict} the {gate:.0%} gate)")


if __name__ == "__main__":
    main()
