"""Device and precision choices live here, not in every plugin."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import CGNBenchError, ConfigError
from .hardware import bf16_is_fast

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a clear error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CGNBenchError(
                "--device cuda was requested but no CUDA device is available "
                "(use --device cpu or --device auto)"
            )
        return torch.device(choice)
    if choice == "cpu":
        return torch.device("cpu")
    raise CGNBenchError(f"unknown device {choice!r}; use one of {', '.join(DEVICE_CHOICES)}")


def resolve_precision(choice: str, device: torch.device) -> str:
    """The precision a run uses. ``auto`` is the policy: bf16 autocast where the hardware
    multiplies bf16 natively (CUDA GPUs with bf16, CPUs with AMX or AVX-512 BF16), fp32
    elsewhere (on AVX2-only CPUs bf16 is emulated and many times slower). fp16 needs CUDA.
    The resolved value, not ``auto``, goes into a run's identity."""
    if choice not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {choice!r}; use {', '.join(PRECISION_CHOICES)}")
    if choice == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if choice == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; use bf16 or auto on the CPU")
    return choice


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for ``precision`` in (bf16, fp16) on the given device, else a no-op."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    if device.type == "cpu" and dtype is torch.float16:
        raise CGNBenchError("fp16 autocast is only supported on CUDA; use bf16 on the CPU")
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
