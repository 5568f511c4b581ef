"""Generator quality on the MNIST variants, for any generator (no classifier is trained).

Metrics on ``n_samples`` samples of the generator (``Generator.sample_with_masks``):

* ``mask_mean``: mean mask value, i.e. the fraction of the image given to the foreground
  (real digits: ~0.15-0.2; near 0 or 1 means mask collapse), std over images in ``extra``;
* ``mask_entropy_bits``: mean binary entropy of the mask pixels (0 = perfectly binary);
* ``collapsed_classes``: number of classes whose masks collapsed (all background, all
  foreground, or constant; thresholds in ``extra``);
* ``shape_agreement``: % of masks, binarised at 0.5, that a CNN trained on binarised real
  MNIST digits reads as the requested shape label.

* ``fid``, ``inception_score`` (``--set benchmark.fid=true``): FID between the samples and as
  many real training images, and IS, when ``cgnbench[fid]`` is installed and the Inception
  weights are local.

Generators without masks (e.g. ``dcgan``) get FID/IS on their images (the only metrics that
apply to them); without ``fid`` the run says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from robustbench_cgn import Benchmark, MetricResult, MetricSpec, RunContext, Task, bounded
from robustbench_cgn.data.batching import IndexedTensors
from robustbench_cgn.errors import IncompatibleError
from robustbench_cgn.explain.fid import frechet_inception_distance, inception_score
from robustbench_cgn_plugins.mnist.tasks import TASKS, mnist_for, variant_split
from robustbench_cgn_plugins.mnist.tasks.mask_collapse import collapse_from_masks
from robustbench_cgn_plugins.mnist.tasks.shape_oracle import cached_shape_oracle

from .mnist_ood import MNIST_DATASET, WILDLIFE_DATASETS

PROTOCOL = "generator-quality: n samples of the generator, masks binarised at 0.5 for agreement"
FID_PROTOCOL = "FID (torchmetrics, torch-fidelity InceptionV3 pool3) vs n real training images"


class MnistGeneratorQuality(Benchmark):
    """Shared logic (not registered itself)."""

    trains_classifier = False
    version = "0.1.0"
    metrics = (
        MetricSpec("shape_agreement", True, PROTOCOL, "% masks read as their label", main=True),
        MetricSpec("mask_mean", True, PROTOCOL, "mean mask value (foreground fraction)"),
        MetricSpec("mask_entropy_bits", False, PROTOCOL, "mean binary entropy of mask pixels"),
        MetricSpec("collapsed_classes", False, PROTOCOL, "classes with collapsed masks"),
        MetricSpec("fid", False, FID_PROTOCOL, "FID to the variant's real training images"),
        MetricSpec("inception_score", True, FID_PROTOCOL, "Inception Score (10 splits)"),
    )
    datasets = (MNIST_DATASET,)

    @dataclass(frozen=True)
    class Config:
        n_samples: int = bounded(5_000, min=10, max=10**6)
        fid: bool = False  # needs the optional extra cgnbench[fid] and local Inception weights
        fid_weights: str = ""

        def __post_init__(self):
            if self.n_samples < 10:
                raise ValueError("n_samples must be >= 10")

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return {"source": mnist_for(ctx).source}

    def evaluate(self, classifier, ctx: RunContext) -> Iterator[MetricResult]:
        generator = ctx.source_generator
        sample = generator.sample_with_masks(self.task, ctx, self.config.n_samples)
        if sample is None and not self.config.fid:
            raise IncompatibleError(
                f"generator {generator.name!r} produces no object masks, so only FID/IS apply "
                "to it: add --set benchmark.fid=true (needs cgnbench[fid] and the Inception "
                "weights)"
            )
        if sample is None:  # images only: the first n of its training data
            train = IndexedTensors.from_dataset(generator.generate(self.task, ctx).dataset)
            count = min(self.config.n_samples, len(train))
            images, _ = train.gather(torch.arange(count))
            yield from self._inception_metrics(images, ctx)
            return
        images, labels, masks = sample
        if self.config.fid:
            yield from self._inception_metrics(images, ctx)
        yield from self._mask_metrics(labels, masks, ctx)

    def _inception_metrics(self, images, ctx: RunContext) -> Iterator[MetricResult]:
        real = variant_split(self.task, "train", ctx, seed=ctx.seed).images[: len(images)]
        weights = self.config.fid_weights or None
        fid = frechet_inception_distance(real, images, weights)
        yield MetricResult("fid", fid, n=len(images), protocol=FID_PROTOCOL)
        mean, std = inception_score(images, weights)
        yield MetricResult(
            "inception_score", mean, n=len(images), protocol=FID_PROTOCOL, extra={"std": std}
        )

    def _mask_metrics(self, labels, masks, ctx: RunContext) -> Iterator[MetricResult]:
        n = len(labels)
        m = masks.float().clamp(0, 1)
        per_image = m.flatten(1).mean(1)
        yield MetricResult(
            "mask_mean", per_image.mean().item(), n=n, protocol=PROTOCOL,
            extra={"std": per_image.std().item()},
        )  # fmt: skip
        p = m.clamp(1e-6, 1 - 1e-6)
        entropy = -(p * p.log2() + (1 - p) * (1 - p).log2())
        yield MetricResult("mask_entropy_bits", entropy.mean().item(), n=n, protocol=PROTOCOL)
        collapse = collapse_from_masks(m[:, None], labels, self.task.num_classes)
        yield MetricResult(
            "collapsed_classes",
            float(len(collapse["collapsed_classes"])),
            n=n,
            protocol=PROTOCOL,
            extra=collapse,
        )
        oracle = cached_shape_oracle(mnist_for(ctx), ctx.cache_dir)
        correct = oracle.agreement(m, labels)
        yield MetricResult("shape_agreement", 100 * correct.mean().item(), n=n, protocol=PROTOCOL)
        for digit in range(self.task.num_classes):
            chosen = labels == digit
            if chosen.any():
                yield MetricResult(
                    "shape_agreement",
                    100 * correct[chosen].mean().item(),
                    n=int(chosen.sum()),
                    protocol=PROTOCOL,
                    key=f"class{digit}",
                )


#: name -> class attributes of each registered preset of :class:`MnistGeneratorQuality`
QUALITY_PRESETS = {
    "gen-quality-c-mnist": {
        "task": TASKS["colored"],
        "description": "generator quality (masks, shape agreement) on Colored MNIST",
    },
    "gen-quality-dc-mnist": {
        "task": TASKS["double-colored"],
        "description": "generator quality (masks, shape agreement) on Double-colored MNIST",
    },
    "gen-quality-w-mnist": {
        "task": TASKS["wildlife"],
        "description": "generator quality (masks, shape agreement) on Wildlife MNIST",
        "datasets": WILDLIFE_DATASETS,
    },
}
