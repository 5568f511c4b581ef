"""The ``cgn`` generator on MNIST: counterfactual training data from trained CGN weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import Generator, RunContext, Task, TrainingSet, bounded
from robustbench_cgn.resolver import ResolvedFile

from .cgn_model import load_cgn_checkpoint
from .counterfactuals import quantize_images, write_counterfactuals
from .galleries import save_independence_grid, save_mechanism_gallery
from .generated_sets import cached_image_set
from .generator_training import MnistTraining, train_mnist_generator
from .tasks import MNIST_TASK_NAMES
from .zoo import ZOO_TAG_OF_TASK, resolve_weights, training_record


class CGNGenerator(Generator):
    """Counterfactuals from a CGN: ``n_counterfactuals`` images, ``no_cfs`` per sampled mask,
    labelled with the shape label (what the reference trains on).

    ``weights`` is ``auto`` (the zoo entry for the task, e.g. ``cgn.c-mnist``), a zoo name,
    or a checkpoint file such as the authors' ``cgn_colored_MNIST.pth``. The default is 5 x 10^4
    images (the reference ``generate_data.py`` default size) with 10 counterfactuals per mask,
    so that the README's main job trains the CNN for its 10 epochs in a few minutes on two CPU
    cores; the paper README's setting is ``--set generator.n_counterfactuals=1e5`` and the
    reproduction's largest ``1e6``. Generated sets are cached by
    (weights hash, n, no_cfs, seed) and reused across runs.
    """

    name = "cgn"
    description = "CGN counterfactuals (shape, texture, background sampled independently)"
    version = "0.1.0"
    tasks = MNIST_TASK_NAMES

    @dataclass(frozen=True)
    class Config:
        weights: str = "auto"
        n_counterfactuals: int = bounded(50_000, min=1, max=10**8)
        no_cfs: int = bounded(10, min=1, max=10_000)
        mask_activation: Literal["clamp", "sigmoid"] = "clamp"
        batch_size: int = bounded(500, min=1, max=65_536)

        def __post_init__(self):
            if self.n_counterfactuals < 1 or self.no_cfs < 1 or self.batch_size < 1:
                raise ValueError("n_counterfactuals, no_cfs and batch_size must be >= 1")

    Training = MnistTraining  # `cgnbench train-generator -g cgn --task <mnist task>`

    def train(self, task: Task, ctx: RunContext, options: MnistTraining) -> Path:
        return train_mnist_generator("cgn", task, ctx, options)

    def weights_file(self, task: Task, ctx: RunContext | None = None) -> ResolvedFile:
        """The weights, resolved once per process (path, sha256, label)."""
        data_dir = ctx.data_dir if ctx is not None else None
        return resolve_weights(self.config.weights, "cgn", task.name, data_dir=data_dir)

    def requirements(self, task: Task) -> list[str]:
        weights = self.config.weights
        return (
            [f"cgn.{ZOO_TAG_OF_TASK[task.name]}"]
            if weights == "auto"
            else super().requirements(task)
        )

    def identity(self, task: Task, ctx: RunContext) -> dict:
        weights = self.weights_file(task, ctx)
        identity = {"weights": weights.label, "weights_sha256": weights.sha256}
        trained = training_record(weights.path)
        if trained:  # weights from `cgnbench train-generator`: the losses become row labels
            identity["trained"] = trained
        return identity

    def sample_with_masks(self, task: Task, ctx: RunContext, n: int):
        """``n`` counterfactuals with their masks (same sampling as the training data:
        shape, texture and background labels drawn independently)."""
        path = self.weights_file(task, ctx).path
        cgn = load_cgn_checkpoint(path, mask_activation=self.config.mask_activation)
        g = torch.Generator().manual_seed(ctx.seed)
        images, labels, masks = [], [], []
        with torch.no_grad():
            for start in range(0, n, self.config.batch_size):
                y = torch.randint(
                    task.num_classes, (min(self.config.batch_size, n - start),), generator=g
                )
                out = cgn.eval()(y, counterfactual=True, generator=g)
                images.append(quantize_images(out.x))
                labels.append(y)
                masks.append(out.mask[:, 0])
        return torch.cat(images), torch.cat(labels), torch.cat(masks)

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        config = self.config
        weights = self.weights_file(task, ctx)
        label, path, digest = weights.label, weights.path, weights.sha256
        key = (
            f"{digest[:16]}-{config.mask_activation}-n{config.n_counterfactuals}"
            f"-k{config.no_cfs}-s{ctx.seed}"
        )
        if ctx.precision != "fp32":  # the run's --precision: bf16 sets are other images
            key += f"-{ctx.precision}"

        def write(folder, advance):
            cgn = load_cgn_checkpoint(path, mask_activation=config.mask_activation)
            write_counterfactuals(
                cgn,
                folder,
                config.n_counterfactuals,
                no_cfs=config.no_cfs,
                seed=ctx.seed,
                batch_size=config.batch_size,
                weights_path=path,
                extra_meta={"weights": label},
                overwrite=True,
                on_progress=advance,
                precision=ctx.precision,
            )

        data = cached_image_set(
            ctx, key, config.n_counterfactuals, "generating counterfactuals", write
        )
        if ctx.is_main:
            cgn = load_cgn_checkpoint(path, mask_activation=config.mask_activation)
            save_mechanism_gallery(cgn, ctx.artifacts_dir / "cgn_mechanisms.png", seed=ctx.seed)
            save_independence_grid(cgn, ctx.artifacts_dir / "cgn_counterfactual_grid.png", ctx.seed)
        provenance = {
            "source": "cgn-counterfactuals",
            **weights.provenance(),
            "folder": str(data.folder),
            **{k: data.meta[k] for k in ("n", "no_cfs", "seed", "engine")},
            "precision": data.meta.get("precision", "fp32"),
        }
        return TrainingSet(TensorDataset(data.images, data.labels), task.num_classes, provenance)
