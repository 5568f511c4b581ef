"""GradCAM-vs-mask IoU on natural images: where an ImageNet classifier looks, against the
object's segmentation mask (the reproduction's explainability measure, metrics.md).

Data: a folder with ``masks.csv`` (columns ``image,mask,object_values``: image and mask paths
relative to the folder, and the mask values that mark the object, ``;``-separated). With
``source=auto`` the Google Coral test images in ``<data-dir>/coral`` are used through a built-in
manifest: a bird (Open Images, mask value 3) and a dog (Oxford-IIIT Pet trimap: 0 = pet,
2 = its border, 1 = background). Each image is resized to the classifier's input size (no
crop, so the mask stays aligned), the CAM of the predicted class at the classifier's
``gradcam_target`` layer is min-max normalised, binarised at ``threshold`` and compared with the
mask resized the same way (nearest).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from robustbench_cgn import (
    Benchmark,
    Classifier,
    DatasetSpec,
    IncompatibleError,
    MetricResult,
    MetricSpec,
    RunContext,
    Task,
    bounded,
)
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn.explain import batched_cams, mask_iou
from robustbench_cgn.figures import save_cam_overlays
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet.tasks.class_maps import imagenet_names
from robustbench_cgn_plugins.imagenet.tasks.image_files import decode_rgb

from .imagenet_common import input_config_of

MANIFEST = "masks.csv"
CORAL_FOLDER = "coral"
CORAL_MANIFEST = (
    ("bird_segmentation.png", "bird_segmentation_mask.png", (3,)),
    ("dog_segmentation_256.png", "dog_segmentation_mask_256.png", (0, 2)),
)
HOW_TO_OBTAIN = (
    "pass --set benchmark.source=FOLDER with a masks.csv (image,mask,object_values), or "
    "--data-dir with coral/ (google-coral/test_data: bird_segmentation*.png, "
    "dog_segmentation*_256.png)"
)


@dataclass(frozen=True)
class MaskedImage:
    image: Path
    mask: Path
    object_values: tuple[int, ...]


def read_manifest(folder: Path) -> list[MaskedImage]:
    """The ``masks.csv`` of ``folder`` (or the Coral manifest for the Coral folder)."""
    path = folder / MANIFEST
    if not path.is_file():
        if all((folder / image).is_file() for image, _, _ in CORAL_MANIFEST):
            return [MaskedImage(folder / i, folder / m, v) for i, m, v in CORAL_MANIFEST]
        raise DataNotFoundError(f"gradcam-iou-imagenet: no {MANIFEST} in {folder}. {HOW_TO_OBTAIN}")
    items = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values = tuple(int(v) for v in row["object_values"].split(";") if v.strip())
                item = MaskedImage(folder / row["image"], folder / row["mask"], values)
            except (KeyError, ValueError, TypeError):
                raise DataNotFoundError(
                    f"{path}: rows need image,mask,object_values (integers separated by ';')"
                ) from None
            for file in (item.image, item.mask):
                if not file.is_file():
                    raise DataNotFoundError(f"{path}: {file} does not exist")
            items.append(item)
    if not items:
        raise DataNotFoundError(f"{path} lists no images")
    return items


def load_pair(item: MaskedImage, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image float [3, size, size] in [0, 1], object mask bool [size, size])``."""
    image = decode_rgb(item.image).float().div(255).unsqueeze(0)
    image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    raw = decode_rgb(item.mask)[0]  # a palette / grey mask: every channel holds the value
    obj = torch.zeros_like(raw, dtype=torch.bool)
    for value in item.object_values:
        obj |= raw == value
    mask = F.interpolate(obj[None, None].float(), size=(size, size), mode="nearest")[0, 0] > 0
    return image[0].clamp(0, 1), mask


class NaturalImageGradCamIoU(Benchmark):
    name = "gradcam-iou-imagenet"
    description = "GradCAM-vs-mask IoU of an ImageNet classifier on natural images with masks"
    task: Task = IMAGENET_TASK
    default_classifier = "mobilenet_v2-coral"
    metrics = (
        MetricSpec("fg_iou", True, "gradcam-iou", "IoU of attended pixels with the object", True),
        MetricSpec("mean_iou", True, "gradcam-iou", "mean of object and background IoU"),
    )
    datasets = (DatasetSpec("masked-images", "natural images with object masks", HOW_TO_OBTAIN),)

    @dataclass(frozen=True)
    class Config:
        source: str = "auto"
        threshold: float = bounded(0.5, above=0.0, below=1.0)

        def __post_init__(self):
            if not 0.0 < self.threshold < 1.0:
                raise ValueError("threshold must be in (0, 1)")

    def folder(self, ctx: RunContext) -> Path:
        if self.config.source != "auto":
            return Path(self.config.source).expanduser()
        if ctx.data_dir is None:
            raise DataNotFoundError(f"gradcam-iou-imagenet: no --data-dir given. {HOW_TO_OBTAIN}")
        return ctx.data_dir / CORAL_FOLDER

    def identity(self, task: Task, ctx: RunContext) -> dict:
        items = read_manifest(self.folder(ctx))
        digest = sha256_file if len(items) <= 16 else (lambda p: p.name)
        return {"source": f"masked-images[{len(items)}]", "files": [digest(i.image) for i in items]}

    def protocol(self) -> str:
        return (
            "gradcam-iou-imagenet: predicted class, gradcam_target layer, min-max per image, "
            f"resize to input size (no crop), threshold {self.config.threshold}"
        )

    def evaluate(self, classifier: Classifier, ctx: RunContext) -> Iterator[MetricResult]:
        target = classifier.gradcam_target()
        if target is None:
            raise IncompatibleError(
                f"classifier {classifier.name!r} exposes no GradCAM layer (gradcam_target)"
            )
        model, layer = target
        items = read_manifest(self.folder(ctx))
        size = input_config_of(classifier).size
        pairs = [load_pair(item, size) for item in items]
        images = torch.stack([image for image, _ in pairs])
        masks = torch.stack([mask for _, mask in pairs])
        prepared = classifier.prepare(images.to(ctx.device))
        with torch.no_grad():
            predicted = model(prepared).argmax(1).cpu()
        cams = torch.cat(list(batched_cams(model, layer, [(prepared, predicted)])))
        iou = mask_iou(cams, masks, self.config.threshold)
        names = imagenet_names()
        captions = [names[int(p)][:16] for p in predicted]
        if ctx.is_main:
            save_cam_overlays(
                ctx.artifacts_dir / "gradcam_overlays.png",
                images,
                cams,
                masks.float(),
                captions,
                f"{self.name}: GradCAM of the predicted class",
            )
        protocol = self.protocol()
        for metric, values in (("fg_iou", iou.foreground), ("mean_iou", iou.mean)):
            extra = {"std": float(values.std()) if len(values) > 1 else 0.0}
            yield MetricResult(metric, float(values.mean()), len(values), protocol, extra=extra)
            for item, value, p in zip(items, values.tolist(), predicted.tolist(), strict=True):
                yield MetricResult(
                    metric,
                    value,
                    1,
                    protocol,
                    key=f"image={item.image.name}",
                    extra={"predicted": names[p]},
                )


GRADCAM_NATURAL_BENCHMARKS = (NaturalImageGradCamIoU,)
