"""Loading a trained ImageNet CGN for generation: this project's export or the authors' release.

Two kinds of file are understood:

* ``cgn_imagenet.pth`` + ``cgn_imagenet.json`` written by ``cgnbench train-cgn-imagenet``
  (:func:`~.training.export_cgn_weights`): the sidecar names the architecture, the U2-Net
  variant and input convention and the truncation the CGN was trained with;
* the authors' ``cgn.pth`` (their ``CGN.state_dict()``: ``biggan_GT.*``, ``f_shape.*``,
  ``f_text.*``, ``f_bg.*``, ``u2net.*``, possibly behind ``module.``) without a sidecar: taken
  to be BigGAN-deep-256 with the full U2-Net, fed raw images, ``align_corners=True``.

Either way the file is read with ``torch.load(weights_only=True)`` and every sub-network in it
must fit exactly. ``random`` builds a seeded random CGN of a given architecture instead (tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from robustbench_cgn.artifacts import WeightsSpec
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError, IncompatibleError
from robustbench_cgn.resolver import ResolvedFile, resolve_weights
from robustbench_cgn.weights_file import load_weights_file

from .cgn_model import ImageNetCGN, build_imagenet_cgn, load_cgn_state

__all__ = [
    "AUTHORS_RELEASE",
    "AUTHORS_WEIGHTS",
    "CGN_IMAGENET_WEIGHTS",
    "resolve_cgn_file",
    "WEIGHTS_ENV",
    "load_cgn_weights",
    "random_cgn",
    "resolve_cgn_weights",
]

WEIGHTS_ENV = "CGNBENCH_CGN_IMAGENET_WEIGHTS"
#: What a sidecar-less file (the authors' ``cgn.pth``) is taken to be.
AUTHORS_RELEASE: dict[str, Any] = {
    "format": "authors-release",
    "architecture": "deep_256",
    "u2net_variant": "full",
    "u2net_input": "cgn",
    "u2net_align_corners": True,
    "truncation": 1.0,
}
REQUIRED = {"f_shape", "f_text", "f_bg", "u2net"}
#: The CGN authors' trained ImageNet CGN (``scripts/download_weights.sh`` of their repository).
AUTHORS_WEIGHTS = WeightsSpec(
    "cgn-imagenet.authors",
    filename="cgn.pth",
    urls=("gdrive:12yVFHPUjKmUFGnO2D4xVlTSpF8CUj136",),
    description="the CGN authors' ImageNet CGN (BigGAN-deep-256 mechanisms + U2-Net)",
    tags=("imagenet", "cgn-imagenet"),
    license="MIT (autonomousvision/counterfactual_generative_networks)",
    citation="Sauer & Geiger, Counterfactual Generative Networks, ICLR 2021",
    local=("cgn_imagenet/cgn.pth",),
    env=WEIGHTS_ENV,
    task="imagenet",
)
CGN_IMAGENET_WEIGHTS = {AUTHORS_WEIGHTS.name: AUTHORS_WEIGHTS}


def resolve_cgn_file(
    weights: str | os.PathLike[str] | None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ResolvedFile:
    """``weights``: ``auto``/empty (the authors' ``cgn-imagenet.authors``: override
    ``$CGNBENCH_CGN_IMAGENET_WEIGHTS``, ``<data-dir>/cgn_imagenet/cgn.pth``, the cache, a
    download), a registered name, a URL or a file; a one-line error when none is found."""
    text = "" if weights is None else str(weights).strip()
    try:
        return resolve_weights(
            text or "auto",
            default=AUTHORS_WEIGHTS.name,
            specs=CGN_IMAGENET_WEIGHTS,
            data_dir=data_dir,
            cache_dir=cache_dir,
            what="ImageNet CGN weights",
        )
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"cgn-imagenet needs trained CGN weights: {str(exc).rstrip('.')}. "
            f"`cgnbench fetch {AUTHORS_WEIGHTS.name}` gets the authors' cgn.pth, "
            "`cgnbench train-cgn-imagenet` trains one, weights=<file or URL> uses another "
            "(weights=random for a smoke test)"
        ) from None


def resolve_cgn_weights(weights: str | os.PathLike[str] | None) -> Path:
    """The local file of :func:`resolve_cgn_file`."""
    return resolve_cgn_file(weights).path


def random_cgn(
    architecture: str = "deep_256", u2net_variant: str = "full", seed: int = 0
) -> ImageNetCGN:
    """A seeded random CGN (nothing read), in eval mode."""
    cgn = build_imagenet_cgn(
        architecture, random_weights=True, u2net_variant=u2net_variant, seed=seed
    )
    return cgn.eval()


def load_cgn_weights(
    weights: str | os.PathLike[str] | None,
    *,
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[ImageNetCGN, dict[str, Any]]:
    """The CGN in ``weights`` (module docstring), in eval mode on ``device``, and its metadata
    (the sidecar, or :data:`AUTHORS_RELEASE`, plus ``weights_sha256``)."""
    resolved = resolve_cgn_file(weights, data_dir=data_dir, cache_dir=cache_dir)
    path = resolved.path
    sidecar = path.with_suffix(".json")
    meta: dict[str, Any] = dict(AUTHORS_RELEASE)
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CGNBenchError(f"cannot read {sidecar}: {exc}") from None
    cgn = build_imagenet_cgn(
        meta.get("architecture", "deep_256"),
        random_weights=True,
        u2net_variant=meta.get("u2net_variant", "full"),
        u2net_align_corners=bool(meta.get("u2net_align_corners", True)),
        u2net_input=meta.get("u2net_input", "cgn"),
        truncation=float(meta.get("truncation", 1.0)),
    )
    state = load_weights_file(path, "ImageNet CGN weights")
    if not isinstance(state, dict):
        raise IncompatibleError(f"{path} is not a state dict")
    loaded = load_cgn_state(cgn, state, source=str(path))
    if not loaded >= REQUIRED:
        raise IncompatibleError(
            f"{path} lacks {sorted(REQUIRED - loaded)} (an ImageNet CGN needs f_shape, f_text, "
            "f_bg and u2net)"
        )
    meta = {**meta, "weights_path": str(path), "weights_sha256": resolved.sha256}
    meta["has_biggan_gt"] = "biggan_gt" in loaded
    return cgn.to(device).eval(), meta
