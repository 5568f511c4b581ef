"""The ``cgn-imagenet`` generator: counterfactual ImageNet training data from a trained CGN.

``generate`` writes (or reuses) a counterfactual dataset in the shared cache, keyed by
everything that determines its pixels (weights hash, n, mode, classes, seed, truncation, image
format), and returns it as a :class:`~robustbench_cgn_plugins.imagenet.counterfactual_folder.
CounterfactualImageFolder` (``counterfactual = True``), which the ``cgn-ensemble`` classifier
trains its three heads on. An interrupted generation resumes where it stopped (see
:mod:`.generation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn import ConfigError, Generator, RunContext, Task, TrainingSet, bounded
from robustbench_cgn_plugins.imagenet.counterfactual_folder import CounterfactualImageFolder
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK

from .cgn_model import ARCHITECTURES, U2NET_VARIANTS, ImageNetCGN
from .generation import (
    MODES,
    counterfactual_inputs,
    dataset_status,
    quantize,
    write_counterfactual_dataset,
)
from .generator_training import ImageNetTraining, train_imagenet_cgn
from .weights import AUTHORS_WEIGHTS, load_cgn_weights, random_cgn, resolve_cgn_file

RANDOM = "random"


class CGNImageNetGenerator(Generator):
    """Counterfactual ImageNet images from an ImageNet CGN.

    ``weights``: a ``cgn_imagenet.pth`` exported by ``cgnbench train-cgn-imagenet`` (its JSON
    sidecar gives the architecture), the authors' ``cgn.pth``, empty for
    ``$CGNBENCH_CGN_IMAGENET_WEIGHTS``, or ``random`` (a seeded random CGN of ``architecture``
    with the ``u2net_variant`` U2-Net: plumbing tests only). ``mode``: ``random`` (independent
    shape/texture/background classes, the reference's), ``fixed`` (``classes`` = shape,
    texture, background) or ``shared`` (one class for all three). ``truncation`` 1.0 is the
    reference's ``generate_data.py`` default. Images are JPEG (``quality``) or PNG at the
    CGN's resolution (256 px for the paper's); the classifier resizes them.
    """

    name = "cgn-imagenet"
    description = "ImageNet CGN counterfactuals (BigGAN-deep mechanisms, U2-Net masks)"
    version = "0.1.0"
    tasks = (IMAGENET_TASK.name,)
    implements = "cgn"  # `--generator cgn` on an ImageNet benchmark runs this one
    default_classifier = "cgn-ensemble"

    @dataclass(frozen=True)
    class Config:
        weights: str = "auto"
        n_counterfactuals: int = bounded(10_000, min=1, max=10**8)
        mode: str = "random"
        classes: tuple[int, ...] = ()
        truncation: float = bounded(1.0, above=0.0, max=1.0)
        batch_size: int = bounded(16, min=1, max=4096)
        image_format: str = "jpg"
        quality: int = bounded(95, min=1, max=100)
        architecture: str = "deep_256"
        u2net_variant: str = "full"

        def __post_init__(self):
            if self.n_counterfactuals < 1 or self.batch_size < 1:
                raise ValueError("n_counterfactuals and batch_size must be >= 1")
            if self.mode not in MODES:
                raise ValueError(f"mode must be one of {MODES}")
            if self.mode == "fixed" and len(self.classes) != 3:
                raise ValueError("mode=fixed needs classes=(shape, texture, background)")
            if not 0.0 < self.truncation <= 1.0:
                raise ValueError("truncation must lie in (0, 1]")
            if self.image_format not in ("jpg", "png"):
                raise ValueError("image_format must be jpg or png")
            if self.architecture not in ARCHITECTURES:
                raise ValueError(f"architecture must be one of {ARCHITECTURES}")
            if self.u2net_variant not in U2NET_VARIANTS:
                raise ValueError(f"u2net_variant must be one of {U2NET_VARIANTS}")

    Training = ImageNetTraining  # `cgnbench train-generator -g cgn --task imagenet`

    def train(self, task: Task, ctx: RunContext, options: ImageNetTraining) -> Path:
        return train_imagenet_cgn(task, ctx, options)

    # -- weights --

    def _weights_id(self, ctx: RunContext) -> tuple[str, str]:
        """``(label, id)``: the file and its sha256, or the random CGN's description."""
        config = self.config
        if config.weights.strip() == RANDOM:
            label = f"random:{config.architecture}:{config.u2net_variant}"
            return label, label
        resolved = resolve_cgn_file(config.weights, data_dir=ctx.data_dir, cache_dir=ctx.cache_dir)
        return resolved.label, resolved.sha256

    def load_cgn(self, ctx: RunContext) -> ImageNetCGN:
        config = self.config
        if config.weights.strip() == RANDOM:
            return random_cgn(config.architecture, config.u2net_variant).to(ctx.device)
        cgn, _ = load_cgn_weights(
            config.weights, device=ctx.device, data_dir=ctx.data_dir, cache_dir=ctx.cache_dir
        )
        return cgn

    def requirements(self, task: Task) -> list[str]:
        weights = self.config.weights.strip()
        if weights in ("", "auto"):
            return [AUTHORS_WEIGHTS.name]
        return [] if weights == RANDOM else super().requirements(task)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        label, digest = self._weights_id(ctx)
        return {"weights": label, "weights_sha256": digest}

    # -- data --

    def _cache_key(self, digest: str, seed: int) -> str:
        c = self.config
        classes = "-" + "_".join(map(str, c.classes)) if c.mode == "fixed" else ""
        fmt = f"jpg{c.quality}" if c.image_format == "jpg" else "png"
        safe = digest.replace(":", "_")[:40]
        return f"{safe}-{c.mode}{classes}-n{c.n_counterfactuals}-s{seed}-t{c.truncation:g}-{fmt}"

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        config = self.config
        label, digest = self._weights_id(ctx)
        folder = ctx.cache_dir / "cgn-imagenet" / self._cache_key(digest, ctx.seed)
        status = dataset_status(folder)
        complete = bool(status and status.get("complete"))
        if not (complete and status.get("n") == config.n_counterfactuals):  # type: ignore[union-attr]
            cgn = self.load_cgn(ctx)
            precision = ctx.precision if ctx.device.type == "cuda" else "fp32"
            with ctx.progress.task(
                "generating ImageNet counterfactuals", total=config.n_counterfactuals
            ) as bar:
                write_counterfactual_dataset(
                    cgn,
                    folder,
                    config.n_counterfactuals,
                    mode=config.mode,
                    classes=config.classes or None,
                    seed=ctx.seed,
                    truncation=config.truncation,
                    batch_size=config.batch_size,
                    image_format=config.image_format,
                    quality=config.quality,
                    precision=precision,
                    weights_id=digest,
                    on_progress=bar.update_to,
                )
            del cgn
        dataset = CounterfactualImageFolder(folder)
        provenance = {
            "source": "cgn-imagenet-counterfactuals",
            "weights": label,
            "weights_sha256": digest,
            "folder": str(folder),
            "n": len(dataset),
            "mode": config.mode,
            "classes": list(config.classes) or None,
            "seed": ctx.seed,
            "truncation": config.truncation,
            "image_format": config.image_format,
        }
        return TrainingSet(dataset, task.num_classes, provenance)

    def sample_with_masks(self, task: Task, ctx: RunContext, n: int):
        """``n`` counterfactuals (this config's mode) with their masks: uint8 images, the
        shape labels and masks ``[n, H, W]``."""
        config = self.config
        if n < 1:
            raise ConfigError("n must be >= 1")
        cgn = self.load_cgn(ctx)
        images, labels, masks = [], [], []
        with torch.no_grad():
            for start in range(0, n, config.batch_size):
                stop = min(start + config.batch_size, n)
                y, u = counterfactual_inputs(
                    start,
                    stop,
                    mode=config.mode,
                    seed=ctx.seed,
                    z_dim=cgn.z_dim,
                    truncation=config.truncation,
                    classes=config.classes or None,
                )
                y_dev = y.to(ctx.device)
                out = cgn(
                    u.to(ctx.device),
                    y_dev[:, 0],
                    y_dev[:, 1],
                    y_dev[:, 2],
                    truncation=config.truncation,
                    ground_truth=False,
                )
                images.append(quantize(out.x_gen))
                labels.append(y[:, 0].clone())
                masks.append(out.mask[:, 0].float().cpu())
        return torch.cat(images), torch.cat(labels), torch.cat(masks)
