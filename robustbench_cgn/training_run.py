"""The run folder of a resumable trainer: its ``train_log.jsonl`` and its ``checkpoints/``.

A trainer (the MNIST CGN/DCGAN one, the ImageNet CGN one) owns one folder and is restarted by
rerunning the same command; it then continues from its newest readable checkpoint. The layout
is part of what the trainers promise (runs in progress resume with newer code), so it is fixed
here:

* ``checkpoints/ckpt_<iteration:08d>.pt``: written atomically (temporary file, then rename),
  the newest ``keep`` kept. The iteration is in the name so the newest can be found without
  opening any file.
* ``train_log.jsonl``: one JSON record a line, each with the ``iteration`` it was written at
  (records without one count as iteration 0). Losses go in as means over a window of
  iterations, not per iteration, so the log stays small over a million iterations.

What goes *into* a checkpoint, and whether it matches the run, is the trainer's business; this
module only names, finds, prunes and logs.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_torch_save, atomic_write_text
from .errors import CGNBenchError, DataNotFoundError
from .provenance import jsonable

__all__ = [
    "CHECKPOINT_DIR",
    "LOG_FILE",
    "TrainingLog",
    "checkpoint_files",
    "checkpoint_path",
    "latest_checkpoint",
    "latest_loadable_checkpoint",
    "prune_checkpoints",
    "read_checkpoint",
    "write_checkpoint",
]

LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"

# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(run_dir: str | PathLike[str], iteration: int) -> Path:
    """``run_dir/checkpoints/ckpt_<iteration:08d>.pt`` (zero-padded: names sort like numbers)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt_{iteration:08d}.pt"


def checkpoint_files(run_dir: str | PathLike[str]) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every ``ckpt_<iteration>.pt`` in ``run_dir/checkpoints``, oldest
    first (by the iteration in the name, not by file time). Names without a number after
    ``ckpt_`` are not checkpoints and are skipped; so are the atomic writer's temporary files
    (they do not end in ``.pt``)."""
    found = []
    for path in (Path(run_dir) / CHECKPOINT_DIR).glob("ckpt_*.pt"):
        try:
            found.append((int(path.stem.removeprefix("ckpt_")), path))
        except ValueError:
            continue
    return sorted(found)


def latest_checkpoint(run_dir: str | PathLike[str]) -> Path | None:
    """The newest ``run_dir/checkpoints/ckpt_<iteration>.pt``, or ``None`` when there is none."""
    found = checkpoint_files(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(
    run_dir: str | PathLike[str], keep: int, *, spare: Path | None = None
) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; returns the deleted paths.

    ``spare`` is never deleted: a checkpoint just written at an iteration *below* others in the
    folder (a run that resumed from an older checkpoint because the newer ones do not load)
    would otherwise be the first to go, leaving only the unreadable ones.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, not {keep}")
    removed = []
    for _, old in checkpoint_files(run_dir)[:-keep]:
        if old != spare:
            old.unlink(missing_ok=True)
            removed.append(old)
    return removed


def write_checkpoint(
    run_dir: str | PathLike[str], iteration: int, state: dict[str, Any], keep: int
) -> Path:
    """Write ``state`` as the checkpoint of ``iteration`` (atomically: a kill mid-save leaves the
    previous checkpoints intact), then prune to the newest ``keep``, sparing the one just
    written. Returns its path."""
    path = checkpoint_path(run_dir, iteration)
    atomic_torch_save(state, path)
    prune_checkpoints(run_dir, keep, spare=path)
    return path


def read_checkpoint(
    path: str | PathLike[str], expected_format: str, what: str = "training checkpoint"
) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)`` (tensors and plain data: a
    checkpoint cannot run code) onto the CPU, whose ``format`` entry is ``expected_format``.

    A missing file is a :class:`DataNotFoundError`; an unreadable one (torn, not a torch file)
    or one of another format a :class:`CGNBenchError`, which
    :func:`latest_loadable_checkpoint` takes as "try the next older one". ``what`` names the
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


def latest_loadable_checkpoint(
    run_dir: str | PathLike[str], load: Callable[[Path], Any], *, stacklevel: int = 3
) -> Path | None:
    """The newest checkpoint that ``load`` reads without a :class:`CGNBenchError`.

    Older checkpoints are tried (with a warning per unreadable one) only when a newer one is
    unreadable, e.g. torn by a full disk. ``None`` when there are no checkpoints; an error when
    there are some but none loads (resuming from scratch would silently throw the run away).
    ``stacklevel`` is the warning's, counted from this function (3: the caller's caller, the
    code that built the trainer).
    """
    errors = []
    for _, path in reversed(checkpoint_files(run_dir)):
        try:
            load(path)
        except CGNBenchError as exc:
            errors.append(str(exc))
            warnings.warn(f"skipping unreadable checkpoint {path}: {exc}", stacklevel=stacklevel)
            continue
        return path
    if errors:
        raise CGNBenchError(
            f"{Path(run_dir)} has checkpoints but none can be read ({errors[0]}); "
            "move them away to start afresh"
        )
    return None


# ------------------------------------------------------------------------------------- log


class TrainingLog:
    """``run_dir/train_log.jsonl`` and the window of per-iteration losses not yet written.

    Args:
        run_dir: the run folder (created on the first write).
        log_every: :meth:`add_losses` writes the window's means when the iteration is a
            multiple of this.
    """

    def __init__(self, run_dir: str | PathLike[str], log_every: int):
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, not {log_every}")
        self.path = Path(run_dir) / LOG_FILE
        self.log_every = log_every
        self._window: dict[str, list[float]] = {}
        self._window_start = time.perf_counter()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (made JSON-safe with :func:`~.provenance.jsonable`) as a line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(jsonable(record)) + "\n")

    def truncate_after(self, iteration: int) -> None:
        """Drop the records written after ``iteration``, and any line that is not JSON.

        A resumed run restarts at its checkpoint's iteration, so what the killed run logged
        after that checkpoint would otherwise appear twice (once from the lost work, once from
        the redone one); a kill mid-write leaves a torn last line. The file is rewritten
        atomically; nothing happens when it does not exist.
        """
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("iteration", 0) <= iteration:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a torn last line
        atomic_write_text("".join(line + "\n" for line in keep), self.path)

    # -- the loss window --

    @property
    def pending(self) -> int:
        """Iterations in the window (added, not yet written)."""
        return len(next(iter(self._window.values()), []))

    def start_window(self, now: float | None = None) -> float:
        """Start timing the window at ``now`` (default: the current ``perf_counter``), e.g. when
        the training loop starts, so set-up time does not count as training time. Returns it."""
        self._window_start = time.perf_counter() if now is None else now
        return self._window_start

    def add_losses(self, iteration: int, losses: dict[str, float], **extra: Any) -> None:
        """Add one iteration's losses to the window; at a multiple of ``log_every`` write the
        window (:meth:`flush_losses` with ``extra``)."""
        for key, value in losses.items():
            self._window.setdefault(key, []).append(value)
        if iteration % self.log_every == 0:
            self.flush_losses(iteration, **extra)

    def flush_losses(self, iteration: int, **extra: Any) -> dict[str, Any] | None:
        """Write the window as one ``losses`` record and start a new one; nothing when empty.

        The record: ``event``, ``iteration``, the ``extra`` fields (e.g. ``episode``), ``n``
        (iterations in the window), ``losses`` (the mean of each loss over them) and
        ``seconds_per_iteration`` (wall time since the window started, over ``n``). Returns it.
        """
        if not self._window:
            return None
        now = time.perf_counter()
        n = self.pending
        record = {
            "event": "losses",
            "iteration": iteration,
            **extra,
            "n": n,
            "losses": {k: sum(v) / len(v) for k, v in self._window.items()},
            "seconds_per_iteration": (now - self._window_start) / n,
        }
        self.write(record)
        self._window, self._window_start = {}, now
        return record


def environment_record(device: object) -> dict[str, object]:
    """What a checkpoint records of the software it was written with (a resumed run on other
    threads or another device is not bit-identical, so this is kept beside the state). The
    light counterpart of :func:`~robustbench_cgn.provenance.collect`, which runs record."""
    return {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
