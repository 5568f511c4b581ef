"""``timm:<name>``: any timm ImageNet model by name, with its own data config.

Weights (``weights`` option):

* ``auto``: timm's pretrained weights (``pretrained_tag`` picks a tag such as ``a1_in1k``),
  from the Hugging Face cache when present; offline without a cached copy the run stops with
  a one-line error naming the hub repository and the ``weights=FILE`` alternative;
* a file: a state dict (``.safetensors`` or ``.pth``/``.bin``, loaded ``weights_only``) in the
  model's own key layout, loaded strictly (a wrong architecture names the differing keys);
* ``none``: random initialisation, explicitly (tests, from-scratch training).

The preprocessing (input size, crop_pct, interpolation, mean/std) comes from the model's
pretrained config, the way timm's own ``resolve_data_config`` reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from robustbench_cgn import RunContext, Task
from robustbench_cgn.checkpoint import load_state_dict_file
from robustbench_cgn.data.download import offline, sha256_file
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError, IncompatibleError
from robustbench_cgn.settings import env_flag
from robustbench_cgn_plugins.imagenet.tasks import ImageNetClassifier, InputConfig

WEIGHT_CHOICES = ("auto", "none")


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error listing differing keys."""
    expected, given = set(model.state_dict()), set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise IncompatibleError(
            f"{source} does not fit the model: {len(missing)} missing keys "
            f"(e.g. {', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected "
            f"(e.g. {', '.join(unexpected[:3]) or '-'})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        shapes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise IncompatibleError(f"{source}: {shapes[0] if shapes else exc}") from None


class TimmClassifier(ImageNetClassifier):
    name = "timm"
    description = "any timm ImageNet model: timm:<model name> (e.g. timm:resnet50)"
    version = "0.1.0"
    name_argument = "model"

    @dataclass(frozen=True)
    class Config:
        model: str = "resnet50"
        pretrained_tag: str = ""
        weights: str = "auto"
        channels_last: bool = False

    @cached_property
    def _pretrained_cfg(self) -> dict:
        import timm

        if not timm.is_model(self.config.model):
            close = timm.list_models(f"*{self.config.model}*")[:5]
            raise CGNBenchError(
                f"timm has no model {self.config.model!r}"
                + (f" (close: {', '.join(close)})" if close else "")
            )
        name = self.config.model
        if self.config.pretrained_tag:
            name = f"{name}.{self.config.pretrained_tag}"
        cfg = timm.models.get_pretrained_cfg(name)
        return cfg.to_dict() if cfg is not None else {}

    def input_config(self) -> InputConfig:
        cfg = self._pretrained_cfg
        size = int(cfg.get("test_input_size", cfg.get("input_size", (3, 224, 224)))[-1])
        return InputConfig(
            size=size,
            crop_pct=float(cfg.get("test_crop_pct", cfg.get("crop_pct", 0.875))),
            interpolation=cfg.get("interpolation", "bilinear")
            if cfg.get("interpolation") in ("bilinear", "bicubic", "nearest")
            else "bilinear",
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        )

    def identity(self, task: Task, ctx: RunContext) -> dict:
        weights = self.config.weights
        if weights in WEIGHT_CHOICES:
            return {"weights": weights, "hf_hub_id": self._pretrained_cfg.get("hf_hub_id", "")}
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"timm weights file {path} does not exist")
        return {"weights_sha256": sha256_file(path)}

    def prefetch(self, task: Task) -> None:
        """timm's pretrained weights into the Hugging Face hub cache (``weights=auto``)."""
        if self.config.weights == "auto":
            self._create(pretrained=True)

    def _create(self, pretrained: bool):
        import timm

        name = self.config.model
        if self.config.pretrained_tag:
            name = f"{name}.{self.config.pretrained_tag}"
        if not pretrained:
            return timm.create_model(name, pretrained=False, num_classes=1000)
        try:
            with _hub_offline_when_asked():
                return timm.create_model(name, pretrained=True, num_classes=1000)
        except Exception as exc:  # hub errors come in many types
            hub = self._pretrained_cfg.get("hf_hub_id") or name
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataNotFoundError(
                f"could not get timm's pretrained weights for {name} ({first}). Offline: "
                f"`cgnbench fetch --for -c timm:{self.config.model} -b <benchmark>` on a "
                f"connected machine fills the Hugging Face cache (https://huggingface.co/{hub}), "
                "or pass --set classifier.weights=FILE"
            ) from None

    def build(self, task: Task, ctx: RunContext) -> None:
        self._pretrained_cfg  # noqa: B018 - unknown model names fail here, clearly
        weights = self.config.weights
        if weights == "auto":
            model = self._create(pretrained=True)
        else:
            model = self._create(pretrained=False)
            if weights != "none":
                path = Path(weights).expanduser()
                load_strict(model, load_state_dict_file(path), str(path))
        model.eval().to(ctx.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


@contextlib.contextmanager
def _hub_offline_when_asked() -> Iterator[None]:
    """Cache-only Hugging Face hub access under ``CGNBENCH_OFFLINE`` or ``HF_HUB_OFFLINE``.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is first imported; a variable set
    later (or ours) would otherwise be ignored and a missing file would wait on network
    time-outs instead of failing at once.
    """
    if not (offline() or env_flag("HF_HUB_OFFLINE")):
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
