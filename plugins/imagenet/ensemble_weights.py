"""Weights of the CGN ensemble: the pretrained ResNet-50 backbone file (``resnet50.tv-in1k``)
and trained ensemble checkpoints, loaded strictly and ``weights_only``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from robustbench_cgn.artifacts import WeightsSpec
from robustbench_cgn.checkpoint import load_state_dict_file
from robustbench_cgn.data.download import cached_sha256
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn.resolver import (
    URL_SCHEMES,
    override,
    resolve_spec,
    resolve_weights,
    torch_hub_path,
)

from .ensemble_model import InvariantEnsemble

RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V1
RESNET50_URL = f"https://download.pytorch.org/models/{RESNET50_FILE}"
WEIGHTS_ENV = "CGNBENCH_RESNET50_WEIGHTS"


#: torchvision's ImageNet ResNet-50 (the CGN ensemble's backbone), ``resnet50.tv-in1k``.
RESNET50_WEIGHTS = WeightsSpec(
    "resnet50.tv-in1k",
    filename=RESNET50_FILE,
    urls=(RESNET50_URL,),
    sha256="0676ba61",  # torchvision publishes the sha256 prefix in the file name
    size=102_530_333,
    description="torchvision ResNet-50 IMAGENET1K_V1 (backbone of the CGN ensemble)",
    tags=("imagenet", "backbone"),
    license="BSD-3-Clause (torchvision)",
    citation="He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
    local=(f"resnet50/{RESNET50_FILE}",),
    env=WEIGHTS_ENV,
    task="imagenet",
    torch_hub=True,
)


def resolve_backbone_weights(setting: str) -> Path | None:
    """The ResNet-50 state-dict file for ``backbone_weights``, ``None`` for ``random``.

    ``auto``: ``$CGNBENCH_RESNET50_WEIGHTS``, torchvision's own download cache
    (``<torch hub dir>/checkpoints``), then the registered ``resnet50.tv-in1k`` (data dir,
    cache, a download); a path or URL is taken as given.
    """
    if setting == "random":
        return None
    if setting != "auto":
        path = Path(setting).expanduser()
        if not setting.startswith(URL_SCHEMES) and not path.is_file():
            raise DataNotFoundError(f"backbone_weights file {path} does not exist")
        return resolve_weights(setting, what="backbone_weights").path
    try:
        return resolve_spec(RESNET50_WEIGHTS).path
    except DataNotFoundError as exc:
        if override(RESNET50_WEIGHTS) is not None:
            raise
        raise DataNotFoundError(
            f"ImageNet ResNet-50 weights not found: `cgnbench fetch {RESNET50_WEIGHTS.name}` "
            f"downloads {RESNET50_URL} (or put it at {torch_hub_path(RESNET50_WEIGHTS)}, set "
            f"{WEIGHTS_ENV} or "
            f"backbone_weights=<file>; backbone_weights=random trains from scratch) ({exc})"
        ) from None


def load_backbone(backbone: nn.Module, path: Path) -> None:
    """Load a torchvision (or timm: same names) ResNet-50 state dict; ``fc`` is dropped."""
    state = load_state_dict_file(path)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CGNBenchError(f"{path} is not a ResNet-50 state dict ({reason})") from None


def load_ensemble(model: InvariantEnsemble, path: Path) -> None:
    """Load a trained ensemble: a ``cgn-ensemble`` training checkpoint or its ``model``."""
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CGNBenchError(f"{path} is not a cgn-ensemble checkpoint ({reason})") from None


def file_sha256(path: Path) -> str:
    """sha256 of a weights file, computed once per process (it is asked for per run)."""
    return cached_sha256(path)
