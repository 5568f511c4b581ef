"""Out-of-memory fallback: halve the batch and retry, with a warning.

A loader hands the model whole batches; when a batch does not fit in the accelerator's
memory, :class:`BatchHalving` redoes it in chunks of half the size (then a quarter, ...) and
keeps the smaller size for the batches that follow, so one OOM costs one retry, not one per
batch. Inference (:class:`ChunkedPredictor`): the model is in eval mode, so chunking changes
which images share a forward pass and nothing else (values up to float rounding of batched
kernels). Training: the step accumulates the gradients of the chunks, each chunk's mean loss
weighted by its share of the batch, which is the batch's gradient when no layer mixes the
images of a batch (frozen BatchNorm, as ``cgn-ensemble`` trains by default).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch

from .errors import CGNBenchError

Predict = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
T = TypeVar("T")


def _runtime_warning(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS/CPU allocator failures (``torch.OutOfMemoryError`` or the older RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchHalving:
    """Run ``work(chunk_size)`` over a batch of ``n``; after an out-of-memory error, empty the
    device cache, halve the chunk size, warn once per reduction and run ``work`` again from
    the start (it must redo the whole batch: e.g. zero the gradients first). The reduced size
    is kept for the following batches.

    Args:
        device: where the work runs (its cache is emptied before a retry).
        warn: called with a one-line message per reduction (default: a ``RuntimeWarning``,
            which the CLI prints as one yellow line).
    """

    def __init__(self, device: torch.device, warn: Callable[[str], None] | None = None):
        self.device = device
        self.warn = warn or _runtime_warning
        self.chunk: int | None = None  # None: whole batches

    def run(self, work: Callable[[int], T], n: int) -> T:
        while True:
            size = n if self.chunk is None else max(1, min(self.chunk, n))
            try:
                return work(size)
            except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM
                if not is_out_of_memory(exc):
                    raise
                if size <= 1:
                    raise CGNBenchError(
                        f"out of memory on {self.device} even with one image per batch; "
                        "free the device, use a smaller model or run with --device cpu"
                    ) from None
                release_cached_memory(self.device)
                self.chunk = max(1, size // 2)
                self.warn(
                    f"out of memory on {self.device} at batch {size}; retrying with batches "
                    f"of {self.chunk}"
                )


class ChunkedPredictor:
    """``predictor(images)`` = ``predict(images)``, split into chunks after an OOM.

    Args:
        predict: the model call on one batch (logits per head).
        device: where it runs.
        warn: see :class:`BatchHalving`.
    """

    def __init__(
        self,
        predict: Predict,
        device: torch.device,
        warn: Callable[[str], None] | None = None,
    ):
        self.predict = predict
        self.halving = BatchHalving(device, warn)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n = images.shape[0]

        def in_chunks(size: int) -> dict[str, torch.Tensor]:
            parts = [self.predict(images[i : i + size]) for i in range(0, n, size)]
            if len(parts) == 1:
                return dict(parts[0])
            return {head: torch.cat([p[head] for p in parts]) for head in parts[0]}

        return self.halving.run(in_chunks, n)
