"""A training's ``train_log.jsonl``: one JSON record a line, each with the ``iteration`` it was
written at (records without one count as iteration 0). Losses go in as means over a window of
iterations, not per iteration, so the log stays small over a million iterations. A resumed
training drops what the killed one logged after its checkpoint (:meth:`TrainingLog.truncate_after`).

The layout is part of what the trainers promise (runs in progress resume with newer code).
Checkpoints are :mod:`robustbench_cgn.checkpoint`'s; the loop is :mod:`robustbench_cgn.trainer`'s.
"""

from __future__ import annotations

import json
import platform
import time
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write_text
from .provenance import jsonable

__all__ = ["LOG_FILE", "TrainingLog", "environment_record"]

LOG_FILE = "train_log.jsonl"

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
