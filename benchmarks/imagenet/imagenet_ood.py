"""ImageNet-A, ImageNet-R, ImageNet-Sketch and Stylized-ImageNet: top-1 / top-5 of a 1000-way
ImageNet classifier on shifted images (metrics.md).

* ImageNet-A / -R (200 classes): protocol ``masked`` (default; argmax over the 200 classes'
  logits, the datasets' own evaluation code) or ``full`` (argmax over all 1000, which must be
  the true class).
* ImageNet-Sketch and Stylized-ImageNet: plain 1000-way top-k; N is the number of images
  actually evaluated (Sketch has 50,889, not 50,000).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from robustbench_cgn import Classifier, MetricResult, MetricSpec, RunContext, bounded
from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn_plugins.imagenet.tasks.class_maps import (
    imagenet_index,
    imagenet_wnids,
    subset_classes,
)
from robustbench_cgn_plugins.imagenet.tasks.image_sources import (
    ImageSourceSpec,
    ReleaseArchive,
    has_wnid_folders,
    missing_wnids,
    wnid_folders,
)
from robustbench_cgn_plugins.imagenet.tasks.metrics import (
    IN_A_PROTOCOLS,
    subset_correct,
    topk_correct,
)

from .imagenet_common import ImageNetBenchmark, head_key, image_files_by_folder

TOP1 = "top1"
TOP5 = "top5"


def _spec(name: str, folders: tuple[str, ...], minimum: int, how: str, **kw) -> ImageSourceSpec:
    return ImageSourceSpec(name, folders, has_wnid_folders(minimum), how, **kw)


IMAGENET_A = _spec(
    "imagenet-a",
    ("imagenet-a", "in-a", "imagenet_a"),
    200,
    "Download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar (md5 "
    "c3e55429088dc681f30d81f4726b6595) and extract it into <data-dir> (-> <data-dir>/"
    "imagenet-a/<wnid>/*.jpg), or pass --set benchmark.source=PATH.",
    archive=ReleaseArchive(
        "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
        "imagenet-a.tar",
        md5="c3e55429088dc681f30d81f4726b6595",
        extracts_to="imagenet-a",
        size="680 MB",
    ),
    description="ImageNet-A: 7,500 natural adversarial examples, 200 WNID folders",
    license="MIT (hendrycks/natural-adv-examples)",
    citation="Hendrycks et al., Natural Adversarial Examples, CVPR 2021",
)
IMAGENET_R = _spec(
    "imagenet-r",
    ("imagenet-r", "in-r", "imagenet_r"),
    200,
    "Download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar (md5 "
    "a61312130a589d0ca1a8fca1f2bd3337) and extract it into <data-dir>, or pass "
    "--set benchmark.source=PATH.",
    archive=ReleaseArchive(
        "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
        "imagenet-r.tar",
        md5="a61312130a589d0ca1a8fca1f2bd3337",
        extracts_to="imagenet-r",
        size="2.1 GB",
    ),
    description="ImageNet-R: 30,000 renditions, 200 WNID folders",
    license="MIT (hendrycks/imagenet-r)",
    citation="Hendrycks et al., The Many Faces of Robustness, ICCV 2021",
)
IMAGENET_SKETCH = _spec(
    "imagenet-sketch",
    ("sketch", "imagenet-sketch", "in-sketch", "ImageNet-Sketch/sketch"),
    1000,
    "Get ImageNet-Sketch (https://github.com/HaohanWang/ImageNet-Sketch, ImageNet-Sketch.zip, "
    "7.8 GB) and extract it so that <data-dir>/sketch/<wnid>/*.JPEG exists, or use the "
    "datasets repository: --set benchmark.source=hf:songweig/imagenet_sketch@train.",
    hf_repo="songweig/imagenet_sketch",
    description="ImageNet-Sketch: 50,889 sketches, 1000 WNID folders",
    license="MIT (HaohanWang/ImageNet-Sketch)",
    citation="Wang et al., Learning Robust Global Representations, NeurIPS 2019",
)
STYLIZED_IMAGENET = _spec(
    "stylized-imagenet",
    ("stylized-imagenet", "stylized_imagenet", "sin", "stylized-imagenet/val"),
    1000,
    "Stylized-ImageNet cannot be redistributed: generate the validation set with "
    "https://github.com/rgeirhos/Stylized-ImageNet (stylize the 50,000 ImageNet val images) "
    "into <data-dir>/stylized-imagenet/<wnid>/*.JPEG, or pass --set benchmark.source=PATH.",
    description="Stylized-ImageNet val: 50,000 stylized images (built locally, not downloadable)",
    citation="Geirhos et al., ImageNet-trained CNNs are biased towards texture, ICLR 2019",
)


class TopKBenchmark(ImageNetBenchmark):
    """Plain 1000-way top-1 / top-5 on a WNID-folder dataset (Sketch, Stylized-ImageNet)."""

    metrics = (
        MetricSpec(TOP1, True, "1000-way top-1 (%)", "top-1 accuracy (%)", main=True),
        MetricSpec(TOP5, True, "1000-way top-5 (%)", "top-5 accuracy (%)"),
    )

    def folder_items(self, folder: Path) -> tuple[list[Path], list[int]]:
        folder = folder / "val" if (folder / "val").is_dir() else folder
        missing = missing_wnids(folder, imagenet_wnids())
        if missing:
            raise DataNotFoundError(
                f"{self.name}: {folder} lacks {len(missing)} of the 1000 class folders "
                f"(e.g. {', '.join(missing[:3])}). {self.source_spec.how_to_obtain}"
            )
        folders = wnid_folders(folder)
        paths, positions = image_files_by_folder(folder, folders)
        index = imagenet_index()
        return paths, [index[folders[k].name] for k in positions]

    def hf_target(self, label) -> int:
        return imagenet_index()[label] if isinstance(label, str) else int(label)

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        if (TOP1, "") in ctx.recorded_metrics:
            return
        data = self.items(classifier, ctx)
        predictions = self.predict(classifier, data, ctx, "1000-way")
        targets = torch.as_tensor(data.targets)[predictions.indices]
        extra = self.common_extra(data, predictions)
        for head, logits in predictions.logits.items():
            for metric, k in ((TOP1, 1), (TOP5, 5)):
                correct, n = topk_correct(logits, targets, k)
                yield MetricResult(
                    metric, 100 * correct / n, n, self.metrics[0].protocol, head_key(head), extra
                )


class ImageNetSketch(TopKBenchmark):
    name = "imagenet-sketch"
    description = "ImageNet-Sketch (Wang et al. 2019): 1000-way top-1/top-5 on sketches"
    source_spec = IMAGENET_SKETCH
    datasets = (IMAGENET_SKETCH.dataset,)


class StylizedImageNet(TopKBenchmark):
    name = "stylized-imagenet"
    description = "Stylized-ImageNet val (Geirhos et al. 2019): 1000-way top-1/top-5"
    source_spec = STYLIZED_IMAGENET
    datasets = (STYLIZED_IMAGENET.dataset,)


class SubsetBenchmark(ImageNetBenchmark):
    """ImageNet-A / -R: 200 classes of ImageNet, masked (default) or full-1000 protocol."""

    subset: ClassVar[str]

    @dataclass(frozen=True)
    class Config:
        source: str = "auto"
        batch_size: int = bounded(64, min=1, max=4096)
        protocol: str = "masked"

        def __post_init__(self):
            if self.batch_size < 1:
                raise ValueError("batch_size must be >= 1")
            if self.protocol not in IN_A_PROTOCOLS:
                raise ValueError(f"protocol must be one of {', '.join(IN_A_PROTOCOLS)}")

    def protocol_name(self) -> str:
        if self.config.protocol == "masked":
            return f"{self.subset} masked-200: argmax over its 200 classes' logits"
        return f"{self.subset} full-1000: argmax over all 1000 logits"

    def folder_items(self, folder: Path) -> tuple[list[Path], list[int]]:
        wnids, _ = subset_classes(self.subset)
        missing = missing_wnids(folder, wnids)
        if missing:
            raise DataNotFoundError(
                f"{self.name}: {folder} lacks {len(missing)} of its 200 class folders "
                f"(e.g. {', '.join(missing[:3])}). {self.source_spec.how_to_obtain}"
            )
        return image_files_by_folder(folder, [folder / w for w in wnids])

    def hf_target(self, label) -> int:
        wnids, _ = subset_classes(self.subset)
        return wnids.index(label) if isinstance(label, str) else int(label)

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        if (TOP1, "") in ctx.recorded_metrics:
            return
        _, indices = subset_classes(self.subset)
        data = self.items(classifier, ctx)
        predictions = self.predict(classifier, data, ctx, self.config.protocol)
        targets = torch.as_tensor(data.targets)[predictions.indices]
        extra = self.common_extra(data, predictions)
        protocol = self.protocol_name()
        for head, logits in predictions.logits.items():
            correct, n = subset_correct(logits, targets, indices, self.config.protocol)
            yield MetricResult(TOP1, 100 * correct / n, n, protocol, head_key(head), extra)
            restricted = logits[:, list(indices)] if self.config.protocol == "masked" else None
            if restricted is not None:
                correct5, _ = topk_correct(restricted, targets, 5)
            else:
                correct5, _ = topk_correct(logits, torch.as_tensor(indices)[targets], 5)
            yield MetricResult(TOP5, 100 * correct5 / n, n, protocol, head_key(head), extra)


def subset_metrics(subset: str) -> tuple[MetricSpec, ...]:
    return (
        MetricSpec(TOP1, True, f"{subset} masked-200 (default) or full-1000", "top-1 (%)", True),
        MetricSpec(TOP5, True, "same protocol, top-5", "top-5 (%)"),
    )


class ImageNetA(SubsetBenchmark):
    name = "imagenet-a"
    description = "ImageNet-A (Hendrycks et al. 2021): natural adversarial examples, 200 classes"
    subset = "imagenet-a"
    source_spec = IMAGENET_A
    metrics = subset_metrics("imagenet-a")
    datasets = (IMAGENET_A.dataset,)


class ImageNetR(SubsetBenchmark):
    name = "imagenet-r"
    description = "ImageNet-R (Hendrycks et al. 2021): renditions, 200 classes"
    subset = "imagenet-r"
    source_spec = IMAGENET_R
    metrics = subset_metrics("imagenet-r")
    datasets = (IMAGENET_R.dataset,)


IMAGENET_OOD_BENCHMARKS = (ImageNetA, ImageNetR, ImageNetSketch, StylizedImageNet)
