"""Run a classifier over a dataset in batches: one place for device, precision, progress and,
under torchrun, sharding over the processes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .components import Classifier
from .context import RunContext
from .contracts import check_logits
from .device import autocast
from .errors import CGNBenchError
from .oom import ChunkedPredictor


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
    """Predict every item of ``dataset`` (yielding ``(image, target)``) in order.

    With several processes (``ctx.distributed``) each rank predicts its contiguous block of
    whole batches (:meth:`~robustbench_cgn.distributed.Distributed.shard_range`) and every rank
    gets all predictions back in dataset order: the same batches as in one process, so the
    same logits and metrics. Every rank must call it, with the same dataset."""
    dist = ctx.distributed
    if dist.enabled:
        check_same_length(ctx, len(dataset), description)  # type: ignore[arg-type]
        shard = dist.shard_range(len(dataset), batch_size)  # type: ignore[arg-type]
        dataset = Subset(dataset, shard)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=ctx.num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    per_head: dict[str, list[torch.Tensor]] = {}
    targets: list[torch.Tensor] = []
    predict = predictor(classifier, ctx)
    for images, batch_targets in ctx.progress.track(loader, description=description):
        outputs = predict(images.to(ctx.device, non_blocking=True))
        for head, logits in outputs.items():
            per_head.setdefault(head, []).append(logits.float().cpu())
        targets.append(torch.as_tensor(batch_targets).cpu())
    if dist.enabled:
        per_head, targets = merge_shards(dist.all_gather_object((per_head, targets)))
    return Predictions(
        logits={head: torch.cat(chunks) for head, chunks in per_head.items()},
        targets=torch.cat(targets) if targets else torch.empty(0, dtype=torch.long),
    )


def predictor(classifier: Classifier, ctx: RunContext) -> ChunkedPredictor:
    """``classifier.prepare`` + ``predict`` under the run's precision, on one batch on the
    run's device; an out-of-memory batch is retried in halves (:mod:`~robustbench_cgn.oom`)."""

    checked = ctx.task is None  # the first batch's logits are checked against the task

    def run(images: torch.Tensor):
        nonlocal checked
        images = classifier.prepare(images)
        with autocast(ctx.device, ctx.precision):
            outputs = classifier.predict(images)
        if not checked:
            name = getattr(classifier, "name", type(classifier).__name__)
            check_logits(outputs, len(images), ctx.task.num_classes, name)
            checked = True
        return outputs

    return ChunkedPredictor(run, ctx.device)


def check_same_length(ctx: RunContext, n: int, description: str) -> None:
    """Sharded evaluation needs the same dataset on every rank; say so if it is not."""
    lengths = ctx.distributed.all_gather_object(n)
    if len(set(lengths)) > 1:
        raise CGNBenchError(
            f"{description}: the ranks hold datasets of different lengths {lengths}; a "
            "benchmark must build the same evaluation data on every process"
        )


def merge_shards(
    shards: list[tuple[dict[str, list[torch.Tensor]], list[torch.Tensor]]],
) -> tuple[dict[str, list[torch.Tensor]], list[torch.Tensor]]:
    """Per-head chunks and target chunks of all ranks, in rank (= dataset) order."""
    per_head: dict[str, list[torch.Tensor]] = {}
    targets: list[torch.Tensor] = []
    for shard_heads, shard_targets in shards:
        for head, chunks in shard_heads.items():
            per_head.setdefault(head, []).extend(chunks)
        targets.extend(shard_targets)
    return per_head, targets


def accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in [0, 1] over all rows (the denominator is the true N)."""
    if len(targets) == 0:
        return float("nan")
    topk = logits.topk(k, dim=1).indices
    return (topk == targets.view(-1, 1)).any(dim=1).float().mean().item()
