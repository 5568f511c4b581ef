"""Atomic, resumable checkpoints of a run's state (tensors and plain data only): the one
checkpoint mechanism of the harness, for classifier training (``ctx.checkpoints``) and for
generator training (:class:`~robustbench_cgn.trainer.Trainer`) alike.

Saves go to a temporary file that is renamed into place, so a kill mid-save leaves the
previous checkpoint intact. Loading always uses ``weights_only=True``: a checkpoint cannot
execute code.

A :class:`Checkpointer` owns one folder (a run's ``checkpoints/``) and holds two kinds:

* named ones (``<name>.pt``), overwritten in place: a classifier's last epoch;
* numbered ones (``ckpt_<iteration:08d>.pt``), the newest ``keep`` kept: a long training's.
  The iteration is in the name so the newest is found without opening any file; when the
  newest does not load (torn by a full disk) the next older one is used.

With several processes (``torchrun``) a checkpointer given the run's ``distributed`` saves on
rank 0 only and loads on rank 0, broadcasting the state to the other ranks (their nodes need
not see rank 0's files).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import CGNBenchError, DataNotFoundError

if TYPE_CHECKING:
    from .distributed import Distributed


CHECKPOINT_DIR = "checkpoints"  # a run folder's checkpoints (``ctx.checkpoints``, trainers)


class Checkpointer:
    """Named and numbered checkpoints inside one folder (module docstring)."""

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

    # -- numbered checkpoints (a training's, one per saved iteration) --

    @classmethod
    def of_run(cls, run_dir: str | os.PathLike[str]) -> Checkpointer:
        """The checkpointer of a run folder (``run_dir/checkpoints``)."""
        return cls(Path(run_dir) / CHECKPOINT_DIR)

    def iteration_path(self, iteration: int) -> Path:
        """``ckpt_<iteration:08d>.pt`` (zero-padded: names sort like numbers)."""
        return self.path(f"ckpt_{iteration:08d}")

    def numbered(self) -> list[tuple[int, Path]]:
        """``(iteration, path)`` of every ``ckpt_<iteration>.pt``, oldest first (by the iteration
        in the name, not by file time). Names without a number after ``ckpt_`` are skipped; so
        are the atomic writer's temporary files (they do not end in ``.pt``)."""
        found = []
        for path in self.folder.glob("ckpt_*.pt"):
            try:
                found.append((int(path.stem.removeprefix("ckpt_")), path))
            except ValueError:
                continue
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest numbered checkpoint, or ``None`` when there is none."""
        found = self.numbered()
        return found[-1][1] if found else None

    def prune(self, keep: int, *, spare: Path | None = None) -> list[Path]:
        """Delete all but the newest ``keep`` numbered checkpoints; returns the deleted paths.

        ``spare`` is never deleted: a checkpoint just written at an iteration *below* others in
        the folder (a run that resumed from an older checkpoint because the newer ones do not
        load) would otherwise be the first to go, leaving only the unreadable ones.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, not {keep}")
        removed = []
        for _, old in self.numbered()[:-keep]:
            if old != spare:
                old.unlink(missing_ok=True)
                removed.append(old)
        return removed

    def save_iteration(self, iteration: int, state: dict[str, Any], keep: int) -> Path:
        """Write ``state`` as the checkpoint of ``iteration``, then prune to the newest ``keep``,
        sparing the one just written. Returns its path."""
        path = self.save(f"ckpt_{iteration:08d}", state)
        if self.distributed is None or self.distributed.is_main:
            self.prune(keep, spare=path)
        return path

    def latest_loadable(self, load: Callable[[Path], Any], *, stacklevel: int = 3) -> Path | None:
        """The newest numbered checkpoint that ``load`` reads without a
        :class:`~robustbench_cgn.errors.CGNBenchError`.

        Older ones are tried (with a warning per unreadable one) only when a newer one is
        unreadable. ``None`` when there are none; an error when there are some but none loads
        (resuming from scratch would silently throw the run away). ``stacklevel`` is the
        warning's, counted from this method.
        """
        errors = []
        for _, path in reversed(self.numbered()):
            try:
                load(path)
            except CGNBenchError as exc:
                errors.append(str(exc))
                warnings.warn(
                    f"skipping unreadable checkpoint {path}: {exc}", stacklevel=stacklevel
                )
                continue
            return path
        if errors:
            raise CGNBenchError(
                f"{self.folder.parent} has checkpoints but none can be read ({errors[0]}); "
                "move them away to start afresh"
            )
        return None


def read_checkpoint(
    path: str | os.PathLike[str], expected_format: str, what: str = "training checkpoint"
) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)`` onto the CPU, whose ``format``
    entry is ``expected_format``.

    A missing file is a :class:`DataNotFoundError`; an unreadable one (torn, not a torch file)
    or one of another format a :class:`CGNBenchError`, which
    :meth:`Checkpointer.latest_loadable` takes as "try the next older one". ``what`` names the
    checkpoint in the messages.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} not found: {path}")
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CGNBenchError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != expected_format:
        raise CGNBenchError(f"{path} is not a {expected_format} checkpoint")
    return ckpt


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
