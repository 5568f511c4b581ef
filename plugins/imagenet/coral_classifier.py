"""The ``mobilenet_v2-coral`` classifier: Google Coral's ImageNet MobileNetV2, dequantized.

No float ImageNet weights for torchvision or timm can be had offline here; the one pretrained
ImageNet classifier that can is the uint8-quantized ``mobilenet_v2_1.0_224_quant.tflite`` from
google-coral/test_data. This classifier reads that file, dequantizes its weights and converts
the graph into an ordinary PyTorch MobileNetV2 (:mod:`.coral_mobilenet`), so it runs (and
back-propagates, for GradCAM) like any other module, on any device. Dequantized to float it
scores about 87 % top-1 on the 1,000 ImageNet sample images of the shared data
(``scripts/validate_coral_mobilenet.py``).

Weights (``weights=auto``) are the registered ``mobilenet_v2.coral``, looked up in this
order: the file named by ``CGNBENCH_CORAL_TFLITE``, ``<data dir>/coral/<the .tflite>``, the
cache, then a download (checked against its sha256); ``weights`` may also be a path or URL.
The converted float state dict is cached under ``<cache>/converted`` by the file's hash, so the
conversion runs once per weights file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn import RunContext, Task
from robustbench_cgn.artifacts import WeightsSpec
from robustbench_cgn.checkpoint import atomic_torch_save
from robustbench_cgn.data.download import cached_sha256
from robustbench_cgn.errors import DataNotFoundError
from robustbench_cgn.resolver import URL_SCHEMES, ResolvedFile, resolve_spec, resolve_weights
from robustbench_cgn_plugins.imagenet.tasks import ImageNetClassifier, InputConfig

from .coral_mobilenet import (
    CONVERTER_VERSION,
    CoralMobileNetV2,
    build_mobilenet_v2,
    convert_mobilenet_v2,
)
from .tflite_import import read_tflite

TFLITE_ENV = "CGNBENCH_CORAL_TFLITE"
TFLITE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
TFLITE_SHA256 = "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
TFLITE_URLS = (
    f"https://github.com/google-coral/test_data/raw/master/{TFLITE_NAME}",
    f"https://raw.githubusercontent.com/google-coral/test_data/master/{TFLITE_NAME}",
)
# x / 127.5 - 1 on 0..255 pixels is (x01 - 0.5) / 0.5 on the [0, 1] images benchmarks deliver.
CORAL_INPUT = InputConfig(
    size=224,
    crop_pct=0.875,
    interpolation="bilinear",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)

#: The Coral release file, registered as ``mobilenet_v2.coral``.
CORAL_WEIGHTS = WeightsSpec(
    "mobilenet_v2.coral",
    filename=TFLITE_NAME,
    urls=TFLITE_URLS,
    sha256=TFLITE_SHA256,
    size=3_610_798,
    description="Google Coral's uint8 ImageNet MobileNetV2 (TFLite), dequantized to float",
    tags=("imagenet", "classifier"),
    license="Apache-2.0 (google-coral/test_data)",
    citation="Sandler et al., MobileNetV2, CVPR 2018",
    local=(f"coral/{TFLITE_NAME}",),
    env=TFLITE_ENV,
    task="imagenet",
)


def tflite_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered for the process as long as the file is unchanged."""
    return cached_sha256(path)


def _resolve(weights: str, ctx: RunContext, download: bool) -> ResolvedFile:
    if weights == "auto":
        return resolve_spec(
            CORAL_WEIGHTS, data_dir=ctx.data_dir, cache_dir=ctx.cache_dir, download=download
        )
    path = Path(weights).expanduser()
    if not weights.startswith(URL_SCHEMES) and not path.is_file():
        raise DataNotFoundError(
            f"mobilenet_v2-coral weights {weights!r} is not a file (pass a .tflite "
            f"MobileNetV2 such as {TFLITE_NAME}, or 'auto')"
        )
    return resolve_weights(weights, cache_dir=ctx.cache_dir, what="mobilenet_v2-coral weights")


def resolve_tflite(weights: str, ctx: RunContext) -> Path:
    """``auto`` / a path / a URL -> a local ``.tflite`` file, downloading the release if need
    be (``auto``: ``$CGNBENCH_CORAL_TFLITE``, ``<data dir>/coral/``, the cache, a download)."""
    return _resolve(weights, ctx, download=True).path


def load_converted(path: Path, cache_dir: Path | None) -> CoralMobileNetV2:
    """The float module for the ``.tflite`` at ``path``, converting it once per file hash.

    The cache holds ``{"converter", "arch", "state_dict"}`` (plain data and tensors, loaded
    with ``weights_only=True``); an entry from another converter version is converted again.
    """
    digest = tflite_sha256(path)
    cached = Path(cache_dir) / "converted" / f"{digest[:16]}.pt" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            entry = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # damaged or foreign file: convert again below
            entry = None
        if (
            isinstance(entry, dict)
            and entry.get("converter") == CONVERTER_VERSION
            and entry.get("tflite_sha256") == digest
        ):
            return build_mobilenet_v2(entry["arch"], entry["state_dict"])
    arch, state = convert_mobilenet_v2(read_tflite(path), where=str(path))
    model = build_mobilenet_v2(arch, state)
    if cached is not None:
        # a read-only cache only costs a re-conversion (a fraction of a second) next time
        with contextlib.suppress(OSError):
            atomic_torch_save(
                {
                    "converter": CONVERTER_VERSION,
                    "tflite_sha256": digest,
                    "arch": arch,
                    "state_dict": state,
                },
                cached,
            )
    return model


class MobileNetV2Coral(ImageNetClassifier):
    """MobileNetV2 1.0/224 from the Coral TFLite release, dequantized to a float PyTorch model.

    Inputs are ``x / 127.5 - 1`` (mean = std = 0.5 on ``[0, 1]`` images), resized to 256 and
    centre-cropped to 224 with bilinear interpolation, as the TF-slim model was evaluated.
    Outputs are the 1000 ImageNet classes in sorted-WNID order (the file's background output 0
    is dropped). The weights are pretrained and fixed: ``fit`` refuses to train.
    """

    name = "mobilenet_v2-coral"
    description = "ImageNet MobileNetV2 (Google Coral TFLite release, dequantized to float)"
    version = "0.1.0"

    @dataclass(frozen=True)
    class Config:
        weights: str = "auto"
        channels_last: bool = True  # ~2x faster on CPU: scripts/validate_coral_mobilenet.py

        def __post_init__(self):
            if not self.weights:
                raise ValueError("weights must be 'auto' or a .tflite file path")

    def requirements(self, task: Task) -> list[str]:
        auto = self.config.weights == "auto"
        return [CORAL_WEIGHTS.name] if auto else super().requirements(task)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        """The hash of the ``.tflite`` file (the pinned release hash when ``auto`` would
        download it): runs on other weights are other runs."""
        try:
            digest = _resolve(self.config.weights, ctx, download=False).sha256
        except DataNotFoundError:
            if self.config.weights != "auto":
                raise
            digest = TFLITE_SHA256  # not fetched yet: the file auto will download
        return {"weights_sha256": digest}

    def input_config(self) -> InputConfig:
        return CORAL_INPUT

    def build(self, task: Task, ctx: RunContext) -> None:
        path = resolve_tflite(self.config.weights, ctx)
        model = load_converted(path, ctx.cache_dir).to(ctx.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.weights_path = path

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model.embed(images)

    def gradcam_target(self, head: str = "") -> tuple[torch.nn.Module, torch.nn.Module]:
        return self.model, self.model.last_conv
