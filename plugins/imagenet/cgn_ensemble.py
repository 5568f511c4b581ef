"""The ``cgn-ensemble`` classifier: the CGN paper's invariant ensemble on ImageNet.

A pretrained ResNet-50 backbone feeds three fresh 1000-way linear heads, one per factor of
variation a CGN controls: shape, texture and background (cgn-reference.md, "Invariant
ensemble"). On real images the *mean* of the three heads' logits is trained on the true
class; on counterfactual images (whose shape, texture and background come from different
classes) each head is trained on the class of its own factor, so it learns to rely on that
factor alone. Outputs, all 1000-way logits:

* ``""`` - mean of the three heads (the ensemble's main output, what top-1 is reported on),
* ``"shape"``, ``"texture"``, ``"background"`` - the single heads (per-head shape bias),
* ``"shape+texture"`` - mean of shape and texture (the paper's IN-9 numbers use it: the
  background head is, by design, the one that should *not* decide those).

Training follows the reference: SGD (momentum 0.9, weight decay 1e-4), lr 1e-3 decayed x0.1
every 15 of 45 epochs, batch 32 real + ``cf_ratio`` x 32 counterfactual images per step, and
BatchNorm in eval mode throughout: the pretrained running statistics stay frozen (they are
ImageNet's; re-estimating them on batches that are half counterfactual would shift them).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from robustbench_cgn import (
    CGNBenchError,
    ConfigError,
    DataNotFoundError,
    IncompatibleError,
    RunContext,
    Task,
    TrainingSet,
    bounded,
)
from robustbench_cgn.device import autocast
from robustbench_cgn.figures import save_training_curves
from robustbench_cgn.oom import BatchHalving
from robustbench_cgn_plugins.imagenet.tasks import ImageNetClassifier, InputConfig

from .counterfactual_folder import RealImageFolder, train_transform
from .ensemble_model import (
    HEADS,
    OUTPUTS,
    HeadLogits,
    InvariantEnsemble,
    cf_loss,
    freeze_batchnorm,
    real_loss,
)
from .ensemble_weights import (
    RESNET50_WEIGHTS,
    file_sha256,
    load_backbone,
    load_ensemble,
    resolve_backbone_weights,
)

CHECKPOINT = "cgn-ensemble"


class CGNEnsemble(ImageNetClassifier):
    """The CGN invariant ensemble (shape / texture / background heads on a ResNet-50).

    Trains on the generator's counterfactual images (a dataset with ``counterfactual =
    True``, e.g. :class:`~.counterfactual_folder.CounterfactualImageFolder`) plus real
    ImageNet images (the real part of an "original + generated" mix, or ``real_data``).
    Datasets that offer ``with_transform`` get the training augmentation at ``image_size``;
    others must deliver ``[3, H, W]`` images (uint8 or float in [0, 1]; other sizes are
    resized per batch).

    ``freeze_bn`` (default, as in the paper) keeps BatchNorm in eval mode. Turn it off only
    with ``backbone_weights=random``: an untrained ResNet-50 normalised with its initial
    running statistics (mean 0, variance 1) blows activations up by many orders of
    magnitude, so from-scratch training needs BatchNorm in training mode.

    An epoch is one pass over the real images (or over the counterfactuals with
    ``cf_only``); the counterfactual batches are drawn from a fresh permutation each epoch,
    cycling when there are fewer counterfactuals than an epoch needs. Data order and
    augmentation are drawn from ``(seed, epoch)``, so training resumed from the per-epoch
    checkpoint ends with the same weights as an uninterrupted one (same device and threads).
    """

    name = "cgn-ensemble"
    description = "CGN invariant ensemble: ResNet-50 + shape/texture/background heads (ImageNet)"
    version = "0.1.0"

    @dataclass(frozen=True)
    class Config:
        backbone_weights: str = "auto"
        weights: str = ""
        real_data: str = ""
        cf_only: bool = False
        cf_ratio: float = bounded(1.0, min=0.0, max=100.0)
        batch_size: int = bounded(32, min=1, max=4096)
        epochs: int = bounded(45, min=1, max=10_000)
        lr: float = bounded(1e-3, above=0.0, max=10.0)
        momentum: float = bounded(0.9, min=0.0, below=1.0)
        weight_decay: float = bounded(1e-4, min=0.0, max=1.0)
        lr_step_epochs: int = bounded(15, min=1, max=10_000)
        lr_gamma: float = bounded(0.1, above=0.0, max=1.0)
        image_size: int = bounded(224, min=32, max=1024)
        channels_last: bool = False
        freeze_bn: bool = True
        max_steps_per_epoch: int = bounded(0, min=0, max=10**9)  # 0: full epochs

        def __post_init__(self):
            if self.batch_size < 1 or self.epochs < 1 or self.lr_step_epochs < 1:
                raise ValueError("batch_size, epochs and lr_step_epochs must be >= 1")
            if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
                raise ValueError("lr must be positive, momentum and weight_decay >= 0")
            if not 0 < self.lr_gamma <= 1:
                raise ValueError("lr_gamma must be in (0, 1]")
            if self.cf_ratio < 0:
                raise ValueError("cf_ratio must be >= 0")
            if self.cf_only and self.cf_ratio == 0:
                raise ValueError("cf_only needs cf_ratio > 0 (it trains on counterfactuals only)")
            if self.image_size < 32:
                raise ValueError("image_size must be >= 32 (ResNet-50 downsamples 32x)")
            if self.max_steps_per_epoch < 0:
                raise ValueError("max_steps_per_epoch must be >= 0 (0 = full epochs)")
            if not self.backbone_weights:
                raise ValueError("backbone_weights must be auto, random or a file")

    # ---------------------------------------------------------------- build / identity

    def input_config(self) -> InputConfig:
        return InputConfig(size=self.config.image_size)

    def requirements(self, task: Task) -> list[str]:
        if self.config.weights:  # a trained ensemble: nothing else is read
            return super().requirements(task)
        backbone = self.config.backbone_weights
        return [RESNET50_WEIGHTS.name] if backbone == "auto" else []

    def identity(self, task: Task, ctx: RunContext) -> dict[str, Any]:
        if self.config.weights:
            return {"weights_sha256": file_sha256(self._weights_path())}
        backbone = resolve_backbone_weights(self.config.backbone_weights)
        return {"backbone_sha256": "random" if backbone is None else file_sha256(backbone)}

    def build(self, task: Task, ctx: RunContext) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)  # the fresh heads' (and a random backbone's) init
            model = InvariantEnsemble(task.num_classes)
        if self.config.weights:
            load_ensemble(model, self._weights_path())
        else:
            backbone = resolve_backbone_weights(self.config.backbone_weights)
            if backbone is not None:
                load_backbone(model.backbone, backbone)
        model = model.to(ctx.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.device = ctx.device

    def _weights_path(self) -> Path:
        path = Path(self.config.weights).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"cgn-ensemble weights file {path} does not exist")
        return path

    # ---------------------------------------------------------------- inference

    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        self.model.eval()
        return self.model(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model.features(images)

    def gradcam_target(self, head: str = "") -> tuple[nn.Module, nn.Module]:
        if head not in OUTPUTS:
            raise CGNBenchError(
                f"cgn-ensemble has no head {head!r}; heads: {', '.join(map(repr, OUTPUTS))}"
            )
        return HeadLogits(self.model, head), self.model.backbone.layer4

    # ---------------------------------------------------------------- training

    def fit(self, train_set: TrainingSet, ctx: RunContext) -> None:
        config = self.config
        if config.weights:
            raise IncompatibleError(
                f"cgn-ensemble was given trained weights ({config.weights}) and is evaluated as "
                "is; use --generator pretrained, or clear weights to train"
            )
        real, counterfactual = self._training_data(train_set, ctx)
        cf_batch = (
            max(1, round(config.cf_ratio * config.batch_size)) if counterfactual is not None else 0
        )
        if real is not None:
            steps = math.ceil(len(real) / config.batch_size)  # type: ignore[arg-type]
        else:
            steps = math.ceil(len(counterfactual) / cf_batch)  # type: ignore[arg-type]
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)

        optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
        )
        scaler = torch.amp.GradScaler(
            ctx.device.type, enabled=ctx.precision == "fp16" and ctx.device.type == "cuda"
        )
        history: list[dict] = []
        start_epoch = 0
        state = ctx.checkpoints.load(CHECKPOINT)
        if state is not None:
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            ctx.log(f"cgn-ensemble: resuming after epoch {start_epoch}/{config.epochs}")

        ctx.distributed.sync_module(self.model)  # every rank starts from rank 0's weights
        self._halving = BatchHalving(ctx.device)  # out of memory: steps in smaller chunks
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            stats = self._train_epoch(
                epoch, real, counterfactual, steps, cf_batch, optimizer, scaler, ctx
            )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            seconds = time.perf_counter() - started
            history.append(
                {"epoch": epoch + 1, "lr": lr, **stats, "images_per_s": stats["images"] / seconds}
            )
            ctx.checkpoints.save(
                CHECKPOINT,
                {
                    "model": self.model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "history": json.dumps(history),
                },
            )
        self.history = history
        self.model.eval()
        if history and ctx.is_main:
            (ctx.artifacts_dir / "training_history.json").write_text(json.dumps(history, indent=2))
            save_training_curves(
                ctx.artifacts_dir / "training_curves.png",
                history,
                f"cgn-ensemble on {train_set.provenance.get('source', 'counterfactual data')}",
            )

    def _train_epoch(
        self,
        epoch: int,
        real: Dataset | None,
        counterfactual: Dataset | None,
        steps: int,
        cf_batch: int,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ctx: RunContext,
    ) -> dict[str, float]:
        """One epoch; returns its mean losses and training accuracies (%)."""
        config = self.config
        dist = ctx.distributed
        order = ctx.generator(offset=10_000 + epoch)
        real_chunks: list[torch.Tensor] | None = None
        cf_chunks: list[torch.Tensor] | None = None
        if real is not None:
            permutation = torch.randperm(len(real), generator=order)  # type: ignore[arg-type]
            real_chunks = list(permutation.split(config.batch_size)[:steps])
        if counterfactual is not None:
            indices = _cycled_permutation(len(counterfactual), steps * cf_batch, order)  # type: ignore[arg-type]
            cf_chunks = list(indices.split(cf_batch))
        augmentation_seed = int(torch.randint(2**62, (1,), generator=order))
        # under torchrun every rank draws the same global batches and trains on its part
        real_batches = _local_parts(real_chunks, dist)
        counterfactual_batches = _local_parts(cf_chunks, dist)
        real = None if real is None else _PositionSeeded(real, augmentation_seed + 1)
        if counterfactual is not None:
            counterfactual = _PositionSeeded(counterfactual, augmentation_seed + 2)

        totals = dict.fromkeys(("real_loss", "real_correct", "real_n", "cf_loss", "cf_n"), 0.0)
        cf_correct = dict.fromkeys(HEADS, 0)
        self.model.train()
        if config.freeze_bn:
            freeze_batchnorm(self.model)
        # Each item's augmentation is drawn from a seed of (epoch, its position in the
        # epoch's stream) by _PositionSeeded: the same whatever the workers and whichever rank
        # loads it; the loaders' generators only fix the workers' base seeds.
        real_loader = self._loader(real, real_batches, ctx, augmentation_seed + 1)
        cf_loader = self._loader(counterfactual, counterfactual_batches, ctx, augmentation_seed + 2)
        with ctx.progress.task(
            f"cgn-ensemble epoch {epoch + 1}/{config.epochs}", total=steps
        ) as bar:
            for step, (real_item, cf_item) in enumerate(zip(real_loader, cf_loader, strict=False)):
                parts = []
                if real_item is not None:
                    labels = torch.as_tensor(real_item[1]).view(-1)
                    parts.append(("real", real_item[0], labels, len(real_chunks[step])))  # type: ignore[index]
                if cf_item is not None:
                    labels = torch.as_tensor(cf_item[1]).view(-1, 3)
                    parts.append(("cf", cf_item[0], labels, len(cf_chunks[step])))  # type: ignore[index]
                largest = max((len(part[2]) for part in parts), default=1)
                step_totals, step_correct = self._halving.run(
                    partial(self._accumulate, parts, optimizer=optimizer, scaler=scaler, ctx=ctx),
                    largest,
                )
                for key, value in step_totals.items():
                    totals[key] += value
                for head, value in step_correct.items():
                    cf_correct[head] += value
                dist.average_gradients(self.model)
                scaler.step(optimizer)
                scaler.update()
                if step % 20 == 0 or step == steps - 1:
                    bar.update(0, status=_status(totals))
                bar.update(1)
        if dist.enabled:  # every rank reports the statistics of the global batches
            keys = list(totals)
            summed = dist.sum_over_ranks(*[totals[k] for k in keys], *cf_correct.values())
            totals = dict(zip(keys, summed[: len(keys)], strict=True))
            cf_correct = dict(zip(cf_correct, summed[len(keys) :], strict=True))
        return _epoch_stats(totals, cf_correct)

    def _accumulate(
        self,
        parts: list[tuple[str, torch.Tensor, torch.Tensor, int]],
        chunk: int,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ctx: RunContext,
    ) -> tuple[dict[str, float], dict[str, int]]:
        """The gradients of one training step (real and counterfactual parts), in chunks of
        ``chunk`` images; returns the step's loss/accuracy sums. Starts by zeroing the
        gradients, so an out-of-memory retry (:class:`~robustbench_cgn.oom.BatchHalving`)
        redoes the step from scratch."""
        dist = ctx.distributed
        optimizer.zero_grad(set_to_none=True)
        totals = dict.fromkeys(("real_loss", "real_correct", "real_n", "cf_loss", "cf_n"), 0.0)
        correct = dict.fromkeys(HEADS, 0)
        for kind, batch_images, batch_labels, global_n in parts:
            for start in range(0, len(batch_labels), chunk):
                images = self._model_input(batch_images[start : start + chunk], ctx)
                labels = batch_labels[start : start + chunk].to(ctx.device)
                with autocast(ctx.device, ctx.precision):
                    outputs = self.model(images)
                loss = (real_loss if kind == "real" else cf_loss)(outputs, labels)
                scaler.scale(dist.scaled_mean(loss, len(labels), global_n)).backward()
                totals[f"{kind}_loss"] += loss.item() * len(labels)
                totals[f"{kind}_n"] += len(labels)
                if kind == "real":
                    totals["real_correct"] += int((outputs[""].argmax(1) == labels).sum())
                else:
                    for column, head in enumerate(HEADS):
                        correct[head] += int((outputs[head].argmax(1) == labels[:, column]).sum())
        return totals, correct

    def _loader(
        self,
        dataset: Dataset | None,
        batches: list[list[tuple[int, int]]] | None,
        ctx: RunContext,
        seed: int,
    ) -> Iterable:
        """The batches in order; ``None`` for an empty one (a rank's part of a global batch
        smaller than the number of ranks)."""
        if dataset is None or batches is None:
            return repeat(None)
        loader = DataLoader(
            dataset,
            batch_sampler=[batch for batch in batches if batch],
            num_workers=ctx.num_workers,
            pin_memory=ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),  # the workers' seeds
        )
        return _with_gaps(loader, batches)

    def _model_input(self, images: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        images = images.to(ctx.device, non_blocking=True)
        images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        size = self.config.image_size
        if tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return self.prepare(images)

    def _training_data(
        self, train_set: TrainingSet, ctx: RunContext
    ) -> tuple[Dataset | None, Dataset | None]:
        """``(real, counterfactual)`` datasets with the training augmentation."""
        config = self.config
        cf_parts, real_parts = split_parts(train_set.dataset)
        if config.cf_ratio == 0:
            cf_parts = []
        elif not cf_parts:
            raise IncompatibleError(
                "cgn-ensemble trains its heads on counterfactual images, but the training set "
                "has none (a dataset with counterfactual = True, e.g. from cgn-imagenet); set "
                "cf_ratio=0 to train on real images only"
            )
        if config.cf_only:
            if real_parts:
                ctx.log("cgn-ensemble: cf_only, ignoring the real part of the training set")
            real_parts = []
        elif config.real_data:
            if real_parts:
                raise ConfigError(
                    "cgn-ensemble got real images twice: from the training set mix and from "
                    f"real_data={config.real_data}; drop one of them"
                )
            real_parts = [RealImageFolder(self._real_root(ctx))]
        elif not real_parts:
            raise ConfigError(
                "cgn-ensemble needs real ImageNet images for its real batches: set "
                "real_data=<ImageNet train folder> (<root>/<wnid>/*.JPEG), mix in the original "
                "data, or set cf_only=true"
            )
        transform = train_transform(config.image_size)
        real = _concat([_with_transform(part, transform) for part in real_parts])
        counterfactual = _concat([_with_transform(part, transform) for part in cf_parts])
        return real, counterfactual

    def _real_root(self, ctx: RunContext) -> Path:
        """``real_data`` as given, or relative to the data dir when it exists there."""
        path = Path(self.config.real_data).expanduser()
        relative = not path.is_absolute() and not path.exists()
        if relative and ctx.data_dir is not None and (ctx.data_dir / path).exists():
            return ctx.data_dir / path
        return path


def split_parts(dataset: Dataset) -> tuple[list[Dataset], list[Dataset]]:
    """``(counterfactual parts, real parts)`` of a dataset, unpacking ConcatDatasets."""
    if isinstance(dataset, ConcatDataset):
        counterfactual: list[Dataset] = []
        real: list[Dataset] = []
        for part in dataset.datasets:
            cf_parts, real_parts = split_parts(part)
            counterfactual += cf_parts
            real += real_parts
        return counterfactual, real
    if len(dataset) == 0:  # type: ignore[arg-type]
        return [], []
    if is_counterfactual(dataset):
        return [dataset], []
    return [], [dataset]


def is_counterfactual(dataset: Dataset) -> bool:
    if isinstance(dataset, Subset):
        return is_counterfactual(dataset.dataset)
    return bool(getattr(dataset, "counterfactual", False))


def _with_transform(dataset: Dataset, transform) -> Dataset:
    if isinstance(dataset, Subset):
        return Subset(_with_transform(dataset.dataset, transform), dataset.indices)
    if hasattr(dataset, "with_transform"):
        return dataset.with_transform(transform)
    return dataset


def _concat(parts: list[Dataset]) -> Dataset | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _cycled_permutation(n: int, total: int, generator: torch.Generator) -> torch.Tensor:
    """``total`` indices from fresh permutations of ``range(n)``, one after the other."""
    chunks, drawn = [], 0
    while drawn < total:
        chunks.append(torch.randperm(n, generator=generator))
        drawn += n
    return torch.cat(chunks)[:total]


def _status(totals: dict[str, float]) -> str:
    parts = []
    if totals["real_n"]:
        parts.append(f"real {totals['real_loss'] / totals['real_n']:.3f}")
    if totals["cf_n"]:
        parts.append(f"cf {totals['cf_loss'] / totals['cf_n']:.3f}")
    return "loss " + " ".join(parts)


def _epoch_stats(totals: dict[str, float], cf_correct: dict[str, int]) -> dict[str, float]:
    real_n, cf_n = totals["real_n"], totals["cf_n"]
    stats: dict[str, float] = {"images": real_n + cf_n}
    loss = 0.0
    if real_n:
        stats["loss_real"] = totals["real_loss"] / real_n
        stats["acc_real"] = 100.0 * totals["real_correct"] / real_n
        loss += stats["loss_real"]
    if cf_n:
        stats["loss_cf"] = totals["cf_loss"] / cf_n
        for head in HEADS:
            stats[f"acc_{head}_cf"] = 100.0 * cf_correct[head] / cf_n
        loss += stats["loss_cf"]
    stats["loss"] = loss  # the per-step objective: real CE + the three counterfactual CEs
    stats["train_acc"] = stats["acc_real"] if real_n else stats["acc_shape_cf"]
    return stats


def _local_parts(chunks: list[torch.Tensor] | None, dist) -> list[list[tuple[int, int]]] | None:
    """This rank's part of every global batch (all of it in one process), as
    ``(dataset index, position in the epoch)`` pairs."""
    if chunks is None:
        return None
    parts, offset = [], 0
    for chunk in chunks:
        mine = dist.shard_batch(torch.arange(len(chunk))).tolist()
        parts.append([(int(chunk[j]), offset + j) for j in mine])
        offset += len(chunk)
    return parts


class _PositionSeeded(Dataset):
    """``dataset[index]`` with the global RNG seeded by ``(seed, position)`` while the item
    (and its random augmentation) is made; keys are ``(index, position)`` pairs."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, position = key
        with torch.random.fork_rng(devices=[]):  # only the CPU generator is reseeded
            torch.random.default_generator.manual_seed((self.seed * 1_000_003 + position) % 2**63)
            return self.dataset[index]


def _with_gaps(loader: Iterable, batches: list[list[tuple[int, int]]]) -> Iterator:
    """``loader``'s batches with ``None`` where ``batches`` has an empty one."""
    items = iter(loader)
    for batch in batches:
        yield next(items) if batch else None
