"""Atomic, resumable checkpoints of a run's state (tensors and plain data only).

Saves go to a temporary file that is renamed into place, so a kill mid-save leaves the
previous checkpoint intact. Loading always uses ``weights_only=True``: a checkpoint cannot
execute code.

With several processes (``torchrun``) a checkpointer given the run's ``distributed`` saves on
rank 0 only and loads on rank 0, broadcasting the state to the other ranks (their nodes need
not see rank 0's files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import CGNBenchError

if TYPE_CHECKING:
    from .distributed import Distributed


class Checkpointer:
    """Named checkpoints inside one folder (a run's working directory)."""

    def __init__(self, folder: Path, distributed: Distributed | None = None):
        self.folder = Path(folder)
        self.distributed = distributed

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Write ``state`` (on the main process only when several processes run)."""
        target = self.path(name)
        if self.distributed is None or self.distributed.is_main:
            atomic_torch_save(state, target)
        return target

    def load(self, name: str, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is no checkpoint of that name. With several
        processes every rank must call it: rank 0 reads, the others receive its state."""
        if self.distributed is None or not self.distributed.enabled:
            return self._load(name, map_location)
        state = self.distributed.on_main(self._load, name, "cpu")
        if state is None or torch.device(map_location).type == "cpu":
            return state
        return _to_device(state, torch.device(map_location))

    def _load(self, name: str, map_location: str | torch.device) -> dict[str, Any] | None:
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
        if self.distributed is None or self.distributed.is_main:
            self.path(name).unlink(missing_ok=True)


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a weights file: ``.safetensors``, or a torch file read with
    ``weights_only=True`` (a ``state_dict`` / ``model`` / ``state_dict_ema`` entry is unwrapped,
    a DataParallel ``module.`` prefix dropped). Anything else is a one-line
    :class:`~robustbench_cgn.errors.CGNBenchError`; nothing is ever unpickled."""
    path = Path(path)
    if not path.is_file():
        raise CGNBenchError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickled code, not a weights file
        first = (str(exc).splitlines() or [""])[0]
        raise CGNBenchError(f"cannot load weights {path} ({type(exc).__name__}: {first})") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CGNBenchError(f"{path} does not hold a state dict of tensors")
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to a temporary file and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
