"""The ``mobilenet_v2-coral`` classifier: Google Coral's ImageNet MobileNetV2, dequantized.

No float ImageNet weights for torchvision or timm can be had offline here; the one pretrained
ImageNet classifier that can is the uint8-quantized ``mobilenet_v2_1.0_224_quant.tflite`` from
google-coral/test_data. This classifier reads that file, dequantizes its weights and converts
the graph into an ordinary PyTorch MobileNetV2 (:mod:`.coral_mobilenet`), so it runs (and
back-propagates, for GradCAM) like any other module, on any device. Dequantized to float it
scores about 87 % top-1 on the 1,000 ImageNet sample images of the shared data
(``scripts/validate_coral_mobilenet.py``).

Weights (``weights=auto``) are looked up in this order: the file named by
``CGNBENCH_CORAL_TFLITE``, ``<data dir>/coral/mobilenet_v2_1.0_224_quant.tflite``, then a
download (checked against its sha256) into ``<cache>/downloads``; ``weights`` may also be a
path. The converted float state dict is cached under ``<cache>/converted`` by the file's hash,
so the conversion runs once per weights file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_cgn import RunContext, Task
from robustbench_cgn.checkpoint import atomic_torch_save
from robustbench_cgn.data.download import fetch_file, sha256_file
from robustbench_cgn.errors import ChecksumError, DataNotFoundError
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

# (resolved path, size, mtime_ns) -> sha256: identity() is called for every planned run.
_HASHES: dict[tuple[str, int, int], str] = {}


def tflite_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered for the process as long as the file is unchanged."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def _local_tflite(weights: str, ctx: RunContext) -> Path | None:
    """The file ``weights`` names without downloading anything, or ``None`` when ``auto``
    has to download. Missing explicit files are errors."""
    if weights != "auto":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataNotFoundError(
                f"mobilenet_v2-coral weights {weights!r} is not a file (pass a .tflite "
                f"MobileNetV2 such as {TFLITE_NAME}, or 'auto')"
            )
        return path
    env = os.environ.get(TFLITE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{TFLITE_ENV}={env} does not name an existing file")
        return path
    if ctx.data_dir is not None:
        path = Path(ctx.data_dir) / "coral" / TFLITE_NAME
        if path.is_file():
            digest = tflite_sha256(path)
            if digest != TFLITE_SHA256:  # the release file, not a lookalike
                raise ChecksumError(
                    f"{path}: sha256 is {digest}, expected {TFLITE_SHA256} (not the Coral "
                    f"release {TFLITE_NAME}: replace it, or pass it as weights=PATH)"
                )
            return path
    return None


def resolve_tflite(weights: str, ctx: RunContext) -> Path:
    """``auto`` / a path -> a local ``.tflite`` file, downloading the release if need be."""
    path = _local_tflite(weights, ctx)
    if path is not None:
        return path
    return fetch_file(
        TFLITE_URLS,
        Path(ctx.cache_dir) / "downloads" / TFLITE_NAME,
        sha256=TFLITE_SHA256,
        hint=f"or set {TFLITE_ENV}, or put it under <data dir>/coral/",
    )


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

    def identity(self, task: Task, ctx: RunContext) -> dict:
        """The hash of the ``.tflite`` file (the pinned release hash when ``auto`` would
        download it): runs on other weights are other runs."""
        path = _local_tflite(self.config.weights, ctx)
        digest = tflite_sha256(path) if path is not None else TFLITE_SHA256
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
