"""Fixtures for the ImageNet benchmarks: images whose colour encodes an ImageNet class, and a
classifier that reads it back, so benchmark tests know every prediction exactly.

A class index ``k`` (0..999) is painted as the solid colour ``(k // 100, k // 10 % 10, k % 10)
x 20``; resizing and cropping a solid image keeps its colour, so :class:`ColourCodeClassifier`
predicts exactly the painted class (logit 10 there, about 0 elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import encode_png

from robustbench_cgn import RunContext, Task
from robustbench_cgn.progress import ProgressReporter
from robustbench_cgn_plugins.imagenet.tasks import ImageNetClassifier, InputConfig

STEP = 20


def colour_of(index: int) -> tuple[int, int, int]:
    return (index // 100 * STEP, index // 10 % 10 * STEP, index % 10 * STEP)


def png_bytes(index: int, size: int = 40) -> bytes:
    image = torch.tensor(colour_of(index), dtype=torch.uint8).view(3, 1, 1).expand(3, size, size)
    return encode_png(image.contiguous()).numpy().tobytes()


def write_coded_image(path: Path, index: int, size: int = 40) -> Path:
    """A PNG-encoded image (whatever the file suffix: decoders sniff the content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(index, size))
    return path


class ColourCodeClassifier(ImageNetClassifier):
    """Predicts the class painted into the image (see the module docstring); an optional
    second head ``flipped`` predicts ``999 - k`` so per-head reporting can be checked."""

    name = "colour-code"

    def __init__(self, config=None, size: int = 32, two_heads: bool = False):
        super().__init__(config)
        self.size, self.two_heads = size, two_heads

    def input_config(self) -> InputConfig:
        return InputConfig(size=self.size, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))

    def build(self, task: Task, ctx: RunContext) -> None:
        self.model = torch.nn.Identity()

    def predict(self, images: torch.Tensor):
        rgb = (images[:, :, images.shape[2] // 2, images.shape[3] // 2] * 255 / STEP).round().long()
        index = rgb[:, 0] * 100 + rgb[:, 1] * 10 + rgb[:, 2]
        heads = {"": index}
        if self.two_heads:
            heads["flipped"] = 999 - index
        # a tiny descending ramp breaks the ties among the other 999 classes: top-5 is the
        # painted class plus classes 0..3
        ramp = -torch.arange(1000, dtype=torch.float32) * 1e-4
        return {
            head: torch.nn.functional.one_hot(k, 1000).float() * 10 + ramp
            for head, k in heads.items()
        }


def make_context(tmp_path: Path, data_dir: Path | None = None) -> RunContext:
    """A CPU context writing under ``tmp_path`` (shared by the ImageNet tests)."""
    return RunContext(
        run_id="test",
        seed=0,
        device=torch.device("cpu"),
        workdir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        data_dir=data_dir,
        progress=ProgressReporter(quiet=True),
        num_workers=0,
    )
