"""Run a classifier over a dataset in batches: one place for device, precision and progress."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from .components import Classifier
from .context import RunContext
from .device import autocast


@dataclass
class Predictions:
    """Logits per head (on the CPU, float32) and the targets, in dataset order."""

    logits: dict[str, torch.Tensor]
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@torch.inference_mode()
def predict_dataset(
    classifier: Classifier,
    dataset: Dataset,
    ctx: RunContext,
    *,
    batch_size: int = 256,
    description: str = "evaluating",
) -> Predictions:
    """Predict every item of ``dataset`` (yielding ``(image, target)``) in order."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=ctx.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    per_head: dict[str, list[torch.Tensor]] = {}
    targets: list[torch.Tensor] = []
    for images, batch_targets in ctx.progress.track(loader, description=description):
        images = classifier.prepare(images.to(ctx.device, non_blocking=True))
        with autocast(ctx.device, ctx.precision):
            outputs = classifier.predict(images)
        for head, logits in outputs.items():
            per_head.setdefault(head, []).append(logits.float().cpu())
        targets.append(torch.as_tensor(batch_targets).cpu())
    return Predictions(
        logits={head: torch.cat(chunks) for head, chunks in per_head.items()},
        targets=torch.cat(targets) if targets else torch.empty(0, dtype=torch.long),
    )


def accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in [0, 1] over all rows (the denominator is the true N)."""
    if len(targets) == 0:
        return float("nan")
    topk = logits.topk(k, dim=1).indices
    return (topk == targets.view(-1, 1)).any(dim=1).float().mean().item()
