"""The zoo quality gate, measured on training checkpoints before one is exported.

    python scripts/check_zoo_candidate.py --data-dir ../shared/data RUN/checkpoints/ckpt_*.pt

prints, per checkpoint, how often its masks read as their digit (100 per class) with the same
oracle, seed and threshold as ``test_mnist_cf_quality.py::test_shipped_cgn_masks_are_their_digit``
(gate 85 %), so the number reported for a shipped entry is the one the test measures.
Then ``scripts/export_zoo_entry.py CKPT NAME`` ships the chosen one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from robustbench_cgn.data.mnist import resolve_mnist
from robustbench_cgn_plugins.mnist.cgn_model import load_cgn_checkpoint
from robustbench_cgn_plugins.mnist.shape_oracle import cgn_mask_agreement, train_shape_oracle
from robustbench_cgn_plugins.mnist.training import export_generator_weights

GATE = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the test's oracle fixture
    oracle = train_shape_oracle(resolve_mnist(args.data_dir, None))
    with tempfile.TemporaryDirectory() as tmp:
        for checkpoint in args.checkpoints:
            weights = Path(tmp) / f"{checkpoint.stem}.pth"
            export_generator_weights(checkpoint, weights)
            correct, y = cgn_mask_agreement(load_cgn_checkpoint(weights), oracle)
            per_class = [round(correct[y == k].mean().item(), 2) for k in range(10)]
            verdict = "passes" if correct.mean() >= GATE else "fails"
            print(f"{checkpoint}: {correct.mean():.1%} {per_class} ({verdict} the gate)")


if __name__ == "__main__":
    main()
