"""What the ImageNet benchmarks share: the task, source resolution, batched prediction and
per-head reporting.

Each benchmark names an
:class:`~robustbench_cgn_plugins.imagenet.tasks.image_sources.ImageSourceSpec`; its ``source``
option picks a local release folder, a ``datasets`` repository or the downloaded archive. The
images are decoded and sized as the classifier's ``input_config()`` asks.
Multi-head classifiers (the CGN ensemble) are scored per head: the main head ``""`` under the
empty key, the others under ``head=<name>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from robustbench_cgn import Benchmark, Classifier, RunContext, Task, bounded
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK, InputConfig
from robustbench_cgn_plugins.imagenet.tasks.image_files import (
    IMAGE_SUFFIXES,
    ImageDataset,
    ImagePredictions,
    Preprocess,
    list_images,
    predict_images,
)
from robustbench_cgn_plugins.imagenet.tasks.image_sources import (
    ImageSourceSpec,
    LocatedSource,
    hf_image_reader,
    locate,
)

MAIN_HEAD = ""


def head_key(head: str, key: str = "") -> str:
    """Metric key of a head (``""`` for the main head) and an optional sub-key."""
    parts = ([f"head={head}"] if head != MAIN_HEAD else []) + ([key] if key else [])
    return "/".join(parts)


def input_config_of(classifier: Classifier) -> InputConfig:
    config = getattr(classifier, "input_config", None)
    return config() if callable(config) else InputConfig()


def count_images(folder: Path) -> int:
    """Image files under ``folder`` (fast: names only, no sorting, no stat of each file)."""
    return sum(
        name.lower().endswith(IMAGE_SUFFIXES) for _, _, files in os.walk(folder) for name in files
    )


@dataclass
class LabelledImages:
    """A benchmark's evaluation items: a dataset plus per-item targets and names."""

    dataset: ImageDataset
    targets: list
    names: list[str]
    source: str


class ImageNetBenchmark(Benchmark):
    """Base of the benchmarks over ImageNet-classifier predictions (not registered itself)."""

    task: ClassVar[Task] = IMAGENET_TASK
    default_classifier = "mobilenet_v2-coral"
    source_spec: ClassVar[ImageSourceSpec]
    preprocessing: ClassVar[str] = "resize-crop"

    @dataclass(frozen=True)
    class Config:
        source: str = "auto"
        batch_size: int = bounded(64, min=1, max=4096)

        def __post_init__(self):
            if self.batch_size < 1:
                raise ValueError("batch_size must be >= 1")

    def located(self, ctx: RunContext) -> LocatedSource:
        cached = getattr(self, "_located", None)
        if cached is None:
            cached = locate(self.source_spec, self.config.source, ctx.data_dir, ctx.cache_dir)
            self._located = cached
        return cached

    def identity(self, task: Task, ctx: RunContext) -> dict:
        located = self.located(ctx)
        if located.kind == "hf":
            label = f"{self.source_spec.name}[hf:{located.hf_repo}@{located.hf_split}]"
        else:
            label = f"{self.source_spec.name}[{count_images(located.folder)} images]"
        return {"source": label}

    def preprocess_for(self, classifier: Classifier) -> Preprocess:
        return Preprocess(input_config_of(classifier), self.preprocessing)

    def folder_items(self, folder: Path) -> tuple[list[Path], list]:
        """``(paths, targets)`` of a release folder; benchmarks override for their layout."""
        raise NotImplementedError

    def hf_target(self, label) -> object:
        """A ``datasets`` label as this benchmark's target (default: as is)."""
        return label

    def items(self, classifier: Classifier, ctx: RunContext) -> LabelledImages:
        located, preprocess = self.located(ctx), self.preprocess_for(classifier)
        if located.kind == "hf":
            reader, labels, n = hf_image_reader(located.hf_repo, located.hf_split)
            names = [f"{located.hf_repo}#{i}" for i in range(n)]
            dataset = ImageDataset(reader, preprocess, n=n, names=names)
            return LabelledImages(
                dataset, [self.hf_target(x) for x in labels], names, located.describe()
            )
        paths, targets = self.folder_items(located.folder)
        names = [str(p.relative_to(located.folder)) for p in paths]
        return LabelledImages(
            ImageDataset(paths, preprocess, names=names), targets, names, located.describe()
        )

    def predict(
        self, classifier: Classifier, data: LabelledImages, ctx: RunContext, what: str
    ) -> ImagePredictions:
        predictions = predict_images(
            classifier,
            data.dataset,
            ctx,
            batch_size=self.config.batch_size,
            description=f"{self.name}: {what}",
        )
        if predictions.failures:
            ctx.log(f"{self.name}: skipped {len(predictions.failures)} unreadable image(s)")
        return predictions

    def common_extra(self, data: LabelledImages, predictions: ImagePredictions) -> dict:
        return {
            "preprocessing": data.dataset.preprocess.describe(),
            "data": data.source,
            "skipped": [data.names[i] for i, _ in predictions.failures][:50],
            "n_skipped": len(predictions.failures),
        }


def image_files_by_folder(folder: Path, folders: list[Path]) -> tuple[list[Path], list[int]]:
    """All images of each class folder, with the folder's position as target."""
    paths: list[Path] = []
    targets: list[int] = []
    for position, class_folder in enumerate(folders):
        files = list_images(class_folder)
        paths.extend(files)
        targets.extend([position] * len(files))
    return paths, targets
