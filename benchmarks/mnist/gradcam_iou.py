"""GradCAM-vs-mask IoU on the MNIST variants (the reproduction's explainability measure).

Each OOD test image is paired with the binarised digit mask of that very image (the
reproduction took masks from the MNIST *test* split by index while DC/W-MNIST test images come
from MNIST train[50000:], so its pairs did not match). The CAM of the predicted class (or the
true class) at the classifier's last conv layer is min-max normalised per image, resized to
32x32 (bilinear), binarised at ``threshold``, and compared with the mask: ``fg_iou`` is the IoU
of the digit pixels, ``mean_iou`` the mean of the digit and background IoUs. Values are the
mean over the test images (std in ``extra``), overall and per true class. The benchmarks share
their task with ``c-mnist``/``dc-mnist``/``w-mnist``, so a classifier trained for one is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from robustbench_cgn import (
    Benchmark,
    Classifier,
    IncompatibleError,
    MetricResult,
    MetricSpec,
    RunContext,
    Task,
    bounded,
)
from robustbench_cgn.explain import batched_cams, mask_iou
from robustbench_cgn.figures import save_cam_overlays, save_tsne, to_unit, tsne_embedding
from robustbench_cgn_plugins.mnist.tasks import TASKS, variant_split

from .mnist_ood import MNIST_DATASET, WILDLIFE_DATASETS


def protocol(config) -> str:
    return (
        f"gradcam-iou: {config.cam_class} class, last conv layer, min-max per image, bilinear "
        f"to 32x32, threshold {config.threshold}, mask of the same image"
    )


class MnistGradCamIoU(Benchmark):
    """Shared logic of the three variants (not registered itself)."""

    default_classifier = "mnist-cnn"
    version = "0.1.0"
    metrics = (
        MetricSpec(
            "fg_iou", True, "gradcam-iou", "IoU of attended pixels with the digit", main=True
        ),
        MetricSpec("mean_iou", True, "gradcam-iou", "mean of digit and background IoU"),
        MetricSpec("test_acc", True, "gradcam-iou", "accuracy (%) on the explained images"),
    )
    datasets = (MNIST_DATASET,)

    @dataclass(frozen=True)
    class Config:
        threshold: float = bounded(0.5, above=0.0, below=1.0)
        cam_class: Literal["predicted", "true"] = "predicted"
        n_images: int = bounded(10_000, min=1, max=10**6)
        test_seed: int = bounded(0, min=0, max=2**31 - 1)
        batch_size: int = bounded(500, min=1, max=65_536)
        figures: bool = True  # GradCAM overlays and a t-SNE of penultimate features
        overlay_n: int = bounded(12, min=0, max=1_000)
        tsne_n: int = bounded(2_000, min=0, max=100_000)

        def __post_init__(self):
            if not 0.0 < self.threshold < 1.0:
                raise ValueError("threshold must be in (0, 1)")
            if self.n_images < 1 or self.batch_size < 1:
                raise ValueError("n_images and batch_size must be >= 1")

    def identity(self, task: Task, ctx: RunContext) -> dict:
        # the task's data identity: the MNIST source and, where it is above 1, the version of
        # the variant's build rules (the test split changes with them)
        return {**task.identity(ctx), "test_seed": self.config.test_seed}

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        target = classifier.gradcam_target()
        if target is None:
            raise IncompatibleError(
                f"classifier {classifier.name!r} exposes no GradCAM layer (gradcam_target)"
            )
        model, layer = target
        config = self.config
        test = variant_split(self.task, "test", ctx, seed=config.test_seed)
        n = min(config.n_images, len(test.labels))
        images, labels, masks = test.images[:n], test.labels[:n], test.masks[:n]
        predicted = torch.empty(n, dtype=torch.long)

        classes = predicted if config.cam_class == "predicted" else labels
        model.eval()

        def batches():
            for start in range(0, n, config.batch_size):
                stop = min(start + config.batch_size, n)
                x = classifier.prepare(images[start:stop].to(ctx.device))
                with torch.no_grad():
                    predicted[start:stop] = model(x).argmax(1).cpu()
                yield x, classes[start:stop]

        fg, mean = torch.empty(n), torch.empty(n)
        done = 0
        with ctx.progress.task(f"{self.name}: GradCAM", total=n) as bar:
            for cams in batched_cams(model, layer, batches()):
                stop = done + len(cams)
                if done == 0 and config.figures and ctx.is_main:
                    self._save_overlays(test, cams, predicted, ctx)
                iou = mask_iou(cams, masks[done:stop], config.threshold)
                fg[done:stop], mean[done:stop] = iou.foreground, iou.mean
                done = stop
                bar.update(len(cams))
        proto = protocol(config)
        for name, values in (("fg_iou", fg), ("mean_iou", mean)):
            yield _summary(name, values, proto, "")
            for digit in range(self.task.num_classes):
                chosen = labels == digit
                yield _summary(name, values[chosen], proto, f"class{digit}")
        accuracy = 100.0 * (predicted == labels).float().mean().item()
        yield MetricResult("test_acc", accuracy, n=n, protocol=proto)
        if config.figures and ctx.is_main:
            self._save_tsne(classifier, test, ctx)

    def _save_overlays(self, test, cams, predicted, ctx: RunContext) -> None:
        k = min(self.config.overlay_n, len(cams))
        captions = [f"y={int(test.labels[i])} p={int(predicted[i])}" for i in range(k)]
        save_cam_overlays(
            ctx.artifacts_dir / "gradcam_overlays.png",
            to_unit(test.images[:k]),
            cams[:k],
            test.masks[:k],
            captions,
            f"{self.name}: GradCAM of the {self.config.cam_class} class (first {k} test images)",
        )

    def _save_tsne(self, classifier: Classifier, test, ctx: RunContext) -> None:
        k = min(self.config.tsne_n, len(test.labels))
        features = []
        with torch.no_grad():
            for start in range(0, k, self.config.batch_size):
                x = classifier.prepare(test.images[start : min(start + self.config.batch_size, k)])
                out = classifier.embed(x.to(ctx.device))
                if out is None:
                    return
                features.append(out.cpu())
        embedding = tsne_embedding(torch.cat(features), seed=ctx.seed)
        colourings = [
            ("digit label", test.labels[:k]),
            ("foreground colour/texture class", test.fg_ids[:k]),
            ("background colour/texture class", test.bg_ids[:k]),
        ]
        save_tsne(
            ctx.artifacts_dir / "tsne.png",
            embedding,
            [(name, ids) for name, ids in colourings if bool((ids >= 0).all())],
            f"{self.name}: t-SNE of penultimate features, {k} OOD test images",
        )


def _summary(name: str, values: torch.Tensor, proto: str, key: str) -> MetricResult:
    std = values.std().item() if len(values) > 1 else 0.0
    return MetricResult(
        name, values.mean().item(), n=len(values), protocol=proto, key=key, extra={"std": std}
    )


#: name -> class attributes of each registered preset of :class:`MnistGradCamIoU`
GRADCAM_PRESETS = {
    "gradcam-iou-c-mnist": {
        "task": TASKS["colored"],
        "description": "GradCAM-vs-digit-mask IoU on the Colored MNIST OOD test split",
    },
    "gradcam-iou-dc-mnist": {
        "task": TASKS["double-colored"],
        "description": "GradCAM-vs-digit-mask IoU on the Double-colored MNIST OOD test split",
    },
    "gradcam-iou-w-mnist": {
        "task": TASKS["wildlife"],
        "description": "GradCAM-vs-digit-mask IoU on the Wildlife MNIST OOD test split",
        "datasets": WILDLIFE_DATASETS,
    },
}
