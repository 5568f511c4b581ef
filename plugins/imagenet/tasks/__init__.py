"""The ImageNet task and the contract between ImageNet benchmarks and classifiers.

Every ImageNet benchmark (cue-conflict, IN-9, ImageNet-A, -Sketch, Stylized-ImageNet) scores
1000-way classifiers on the one task :data:`IMAGENET_TASK`. The division of labour:

* the benchmark decodes its images and resizes / centre-crops them as the classifier's
  :class:`InputConfig` asks (``size``, ``crop_pct``, ``interpolation``), delivering float
  tensors ``[B, 3, size, size]`` in ``[0, 1]`` (RGB);
* the classifier's ``prepare`` turns those into model input (its own ``mean``/``std`` or value
  range, dtype, ``channels_last``) and ``predict`` returns 1000-way logits per head, indexed
  like ``timm``'s ImageNet classes (the sorted WNIDs).

:class:`ImageNetClassifier` implements that contract for single-network classifiers; plugins
subclass it and provide ``build`` (and ``fit`` if they can be trained).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from robustbench_cgn.components import Classifier, Task, TrainingSet
from robustbench_cgn.context import RunContext
from robustbench_cgn.errors import IncompatibleError

IMAGENET_TASK = Task(
    name="imagenet",
    num_classes=1000,
    input_shape=(3, 224, 224),
    family="imagenet",
    description="ImageNet-1k classification (1000 classes, timm / torchvision class order)",
    value_range=(0.0, 1.0),  # float images in [0, 1]; each classifier normalises its own way
    exact_size=False,  # sized by the classifier's input config
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class InputConfig:
    """How a classifier wants its images: the timm ``data_config`` fields that matter here.

    Images are resized so the short side is ``round(size / crop_pct)`` and centre-cropped to
    ``size``; ``mean``/``std`` are applied by the classifier's ``prepare`` to ``[0, 1]`` input.
    """

    size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input size must be >= 8, got {self.size}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )

    @property
    def resize_to(self) -> int:
        """The short side before centre-cropping (224 / 0.875 = 256)."""
        return int(round(self.size / self.crop_pct))

    def as_dict(self) -> dict:
        return {
            "size": self.size,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def normalize(images: torch.Tensor, config: InputConfig) -> torch.Tensor:
    """``(images - mean) / std`` channel-wise, for ``[B, 3, H, W]`` input in ``[0, 1]``."""
    mean = torch.tensor(config.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


class ImageNetClassifier(Classifier):
    """A single network with 1000 ImageNet outputs (head ``""``).

    Subclasses set ``self.model`` in ``build`` and may override :meth:`input_config` and
    :meth:`prepare`. ``channels_last`` (a config field, when present) is honoured by
    :meth:`prepare` and should be applied to the model in ``build`` as well.
    """

    tasks: ClassVar[tuple[str, ...]] = (IMAGENET_TASK.name,)
    model: torch.nn.Module

    def input_config(self) -> InputConfig:
        """The preprocessing this classifier's weights expect."""
        return InputConfig()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = normalize(images.float(), self.input_config())
        if getattr(self.config, "channels_last", False):
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return {"": self.model(images)}

    def fit(self, train_set: TrainingSet, ctx: RunContext) -> None:
        raise IncompatibleError(
            f"classifier {self.name!r} is evaluated with its pretrained weights and cannot be "
            "trained on generated data; use --generator pretrained (or the cgn-ensemble "
            "classifier to train on counterfactuals)"
        )
