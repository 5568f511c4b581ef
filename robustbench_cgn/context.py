"""What a component gets to work with during a run."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import Checkpointer
from .components import TrainingSet
from .distributed import Distributed, current
from .progress import ProgressReporter


@dataclass
class RunContext:
    """Everything environment-specific, handed to generators, classifiers and benchmarks.

    ``workdir`` belongs to this run (figures, logs); it survives an interruption so the next
    attempt resumes. ``checkpoint_dir`` holds the classifier's training checkpoints; the runner
    points it at a folder keyed by the training identity, so benchmarks on the same task reuse
    a finished training instead of repeating it. ``cache_dir`` is shared between runs (built
    datasets, downloads). ``data_dir`` is the user's local data root (``--data-dir`` /
    ``CGNBENCH_DATA``).

    ``distributed`` says which of the run's processes this is (``torchrun``; one process
    otherwise): only the main one (``is_main``) writes files that outlive the run.
    """

    run_id: str
    seed: int
    device: torch.device
    workdir: Path
    cache_dir: Path
    data_dir: Path | None = None
    precision: str = "fp32"
    num_workers: int = 0
    progress: ProgressReporter = field(default_factory=lambda: ProgressReporter(quiet=True))
    recorded_metrics: set[tuple[str, str]] = field(default_factory=set)
    train_set: TrainingSet | None = None  # what the classifier was trained on (set by the runner)
    checkpoint_dir: Path | None = None  # default: <workdir>/checkpoints
    source_generator: Any = None  # the run's Generator (set by the runner; quality benchmarks)
    task: Any = None  # the benchmark's Task (set by the runner; logits are checked against it)
    tasks: Any = None  # the registered tasks (set by the runner; see robustbench_cgn.get_task)
    distributed: Distributed = field(default_factory=current)

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (always, unless under torchrun, where
        rank 0 does): skip figures and other outputs when it is not."""
        return self.distributed.is_main

    @property
    def checkpoints(self) -> Checkpointer:
        """Saved by the main process only; loaded by it and broadcast to the others."""
        folder = self.checkpoint_dir or self.workdir / "checkpoints"
        return Checkpointer(folder, distributed=self.distributed)

    @property
    def artifacts_dir(self) -> Path:
        """Where figures and other outputs of this run go (listed by ``cgnbench show``). In
        a process other than the main one, a private temporary folder that is thrown away."""
        if not self.is_main:
            return self.distributed.scratch_dir("artifacts")
        path = self.workdir / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def generator(self, offset: int = 0) -> torch.Generator:
        """A torch RNG seeded from the run seed (``offset`` separates independent streams)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def log(self, message: str) -> None:
        self.progress.log(message)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of values (stable across runs and platforms)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
