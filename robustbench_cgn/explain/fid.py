"""FID and Inception Score through torchmetrics (torch-fidelity's InceptionV3), only from
local weights.

The feature weights (``weights-inception-2015-12-05-6726825d.pth``, torch-fidelity's
conversion of the TF Inception) are the registered ``inception.fid``: cgnbench resolves and
downloads them itself (checksum, cache, ``cgnbench fetch``) instead of letting those libraries
download implicitly, and checks the file loads with ``weights_only=True`` (the library itself
unpickles freely).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from ..artifacts import WeightsSpec
from ..errors import CGNBenchError, DataNotFoundError
from ..resolver import resolve_spec, resolve_weights, torch_hub_path
from ..weights_file import load_weights_file

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)


#: torch-fidelity's conversion of the TF Inception (what torchmetrics' FID/IS load).
INCEPTION_WEIGHTS = WeightsSpec(
    "inception.fid",
    filename=INCEPTION_FILE,
    urls=(INCEPTION_URL,),
    sha256="6726825d",  # the hub-style file name carries the sha256 prefix
    size=95_628_359,
    description="InceptionV3 feature extractor for FID / IS (torch-fidelity conversion)",
    tags=("metrics",),
    license="Apache-2.0 (torch-fidelity; TF Inception weights)",
    citation="Heusel et al., GANs Trained by a Two Time-Scale Update Rule, NeurIPS 2017",
    env="CGNBENCH_INCEPTION_WEIGHTS",
    torch_hub=True,
)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The Inception weights file: ``path``, else the registered ``inception.fid``
    (``$CGNBENCH_INCEPTION_WEIGHTS``, torch hub's checkpoint cache, the cgnbench cache, a
    download); otherwise :class:`DataNotFoundError` saying how to get it."""
    if path not in (None, ""):
        return resolve_weights(str(path), what="Inception weights").path
    try:
        return resolve_spec(INCEPTION_WEIGHTS).path
    except DataNotFoundError as exc:
        hub = torch_hub_path(INCEPTION_WEIGHTS)
        raise DataNotFoundError(
            f"FID and the Inception Score need the Inception weights {INCEPTION_FILE}: "
            f"`cgnbench fetch inception.fid` downloads {INCEPTION_URL} (or set "
            f"CGNBENCH_INCEPTION_WEIGHTS to a copy, or put it in {hub.parent}) ({exc})"
        ) from None


def _checked_weights(weights: str | os.PathLike | None) -> Path:
    file = find_inception_weights(weights)
    load_weights_file(file, "Inception weights")
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
