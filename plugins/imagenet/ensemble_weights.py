"""Weights of the CGN ensemble: the pretrained ResNet-50 backbone file (found, never
downloaded at run time) and trained ensemble checkpoints, loaded strictly and ``weights_only``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from robustbench_cgn.checkpoint import load_state_dict_file
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError

from .ensemble_model import InvariantEnsemble

RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision's ResNet50_Weights.IMAGENET1K_V1
RESNET50_URL = f"https://download.pytorch.org/models/{RESNET50_FILE}"
WEIGHTS_ENV = "CGNBENCH_RESNET50_WEIGHTS"


def resolve_backbone_weights(setting: str) -> Path | None:
    """The ResNet-50 state-dict file for ``backbone_weights``, ``None`` for ``random``.

    ``auto`` looks at ``$CGNBENCH_RESNET50_WEIGHTS``, then torchvision's own download cache
    (``<torch hub dir>/checkpoints``). Nothing is downloaded: runs must not depend on network
    access, so a missing file is a one-line instruction instead.
    """
    if setting == "random":
        return None
    if setting != "auto":
        path = Path(setting).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"backbone_weights file {path} does not exist")
        return path
    from_env = os.environ.get(WEIGHTS_ENV, "").strip()
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{WEIGHTS_ENV}={from_env} does not exist")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RESNET50_FILE
    if cached.is_file():
        return cached
    raise DataNotFoundError(
        f"ImageNet ResNet-50 weights not found: download {RESNET50_URL} to {cached} "
        f"(or set {WEIGHTS_ENV} or backbone_weights=<file>; backbone_weights=random trains "
        "from scratch)"
    )


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


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """sha256 of a weights file, computed once per process (it is asked for per run)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
