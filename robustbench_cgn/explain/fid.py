"""FID and Inception Score through torchmetrics (torch-fidelity's InceptionV3), only from
local weights.

The feature weights (``weights-inception-2015-12-05-6726825d.pth``, torch-fidelity's
conversion of the TF Inception) are downloaded by those libraries on first use; cgnbench never
lets them download implicitly. It looks for the file in ``$CGNBENCH_INCEPTION_WEIGHTS``, the
given path, or torch hub's checkpoint cache, checks it loads with ``weights_only=True`` (the
library itself unpickles freely), and otherwise says exactly what to fetch and where.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CGNBenchError, DataNotFoundError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The local Inception weights file, or :class:`DataNotFoundError` saying how to get it."""
    candidates = [
        Path(p) for p in (path, os.environ.get("CGNBENCH_INCEPTION_WEIGHTS")) if p not in (None, "")
    ]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"FID and the Inception Score need the Inception weights {INCEPTION_FILE}: "
        f"download {INCEPTION_URL} "
        f"and set CGNBENCH_INCEPTION_WEIGHTS to it (or put it in {candidates[-1].parent})"
    )


def _checked_weights(weights: str | os.PathLike | None) -> Path:
    file = find_inception_weights(weights)
    try:
        torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CGNBenchError(f"{file} is not a plain tensor state dict: {exc}") from exc
    return file


def _missing_extra(exc: ImportError) -> CGNBenchError:
    return CGNBenchError(
        f"FID/IS need torchmetrics and torch-fidelity ({exc}): pip install 'cgnbench[fid]'"
    )


def frechet_inception_distance(
    real: Tensor, fake: Tensor, weights: str | os.PathLike | None = None, batch_size: int = 100
) -> float:
    """FID between two uint8 image sets ``[N, 3, H, W]`` (resized to 299 by the library)."""
    file = _checked_weights(weights)
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:  # the optional extra is missing
        raise _missing_extra(exc) from exc
    metric = FrechetInceptionDistance(feature_extractor_weights_path=str(file))
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start : start + batch_size], real=is_real)
    return float(metric.compute())


def inception_score(
    images: Tensor, weights: str | os.PathLike | None = None, batch_size: int = 100
) -> tuple[float, float]:
    """Inception Score (mean, std over 10 splits) of uint8 images ``[N, 3, H, W]``."""
    file = _checked_weights(weights)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.image.inception import InceptionScore
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    extractor = NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["logits_unbiased"],
        feature_extractor_weights_path=str(file),
    )
    metric = InceptionScore(feature=extractor)
    for start in range(0, len(images), batch_size):
        metric.update(images[start : start + batch_size])
    mean, std = metric.compute()
    return float(mean), float(std)
