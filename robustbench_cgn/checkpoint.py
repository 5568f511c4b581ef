"""Atomic, resumable checkpoints of a run's state (tensors and plain data only).

Saves go to a temporary file that is renamed into place, so a kill mid-save leaves the
previous checkpoint intact. Loading always uses ``weights_only=True``: a checkpoint cannot
execute code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import CGNBenchError


class Checkpointer:
    """Named checkpoints inside one folder (a run's working directory)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def save(self, name: str, state: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(name)
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return target

    def load(self, name: str, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is no checkpoint of that name."""
        target = self.path(name)
        if not target.exists():
            return None
        try:
            return torch.load(target, map_location=map_location, weights_only=True)
        except Exception as exc:  # truncated file, foreign pickle...
            raise CGNBenchError(
                f"checkpoint {target} cannot be loaded ({exc.__class__.__name__}: {exc}); "
                "delete it or rerun with --force to start over"
            ) from None

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
