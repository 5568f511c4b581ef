"""The loop every resumable generator training shares.

A domain's trainer (the MNIST CGN/DCGAN one, the ImageNet CGN one) subclasses
:class:`Trainer` and supplies what differs: one iteration (:meth:`Trainer.train_step`), what a
checkpoint holds (:meth:`~Trainer.state` / :meth:`~Trainer.load_state`), its samples and the
extra fields of its log and summary. The loop, the run folder's checkpoints
(:class:`~robustbench_cgn.checkpoint.Checkpointer`, numbered), the log
(:class:`~robustbench_cgn.training_log.TrainingLog`), resuming from the newest readable
checkpoint and refusing one written under another configuration live here once.

The configuration object is the domain's; the loop reads ``iterations``,
``checkpoint_every``, ``sample_every``, ``log_every`` and ``keep_checkpoints`` from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

from .checkpoint import Checkpointer, read_checkpoint
from .errors import ConfigError
from .training_log import TrainingLog

__all__ = ["OnStep", "Trainer", "config_difference"]

OnStep = Callable[[int, dict[str, float]], None]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def config_difference(
    theirs: Mapping[str, Any], mine: Mapping[str, Any], ignore: Iterable[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """``{key: (theirs, mine)}`` for the keys of ``mine`` whose values differ (tuples and lists
    compare equal), leaving out ``ignore`` (bookkeeping that may change on a resume)."""
    skip = set(ignore)
    return {
        key: (theirs.get(key), value)
        for key, value in mine.items()
        if key not in skip and _plain(theirs.get(key)) != _plain(value)
    }


class Trainer:
    """One resumable training in ``out_dir``; see the module docstring.

    Subclasses set :attr:`checkpoint_format` (the ``format`` entry their checkpoints carry) and
    :attr:`bookkeeping` (configuration keys a resumed run may change), build their models and
    then call :meth:`resume`.
    """

    checkpoint_format: ClassVar[str]
    checkpoint_what: ClassVar[str] = "training checkpoint"
    bookkeeping: ClassVar[frozenset[str]] = frozenset()

    config: Any

    def __init__(self, out_dir: str | PathLike[str], *, on_step: OnStep | None = None):
        self.out_dir = Path(out_dir)
        self.on_step = on_step
        self.iteration = 0
        self.checkpoints = Checkpointer.of_run(self.out_dir)
        self.log = TrainingLog(self.out_dir, self.config.log_every)
        self.resumed_from: Path | None = None
        self._resume_logged = False

    # -- what a domain supplies --

    def train_step(self) -> dict[str, float]:
        """One iteration (``self.iteration`` advanced by one); the losses to log."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """The checkpoint dictionary (with ``format`` = :attr:`checkpoint_format`)."""
        raise NotImplementedError

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint (already checked by :meth:`check_resumable`)."""
        raise NotImplementedError

    def sample(self, label: str, *, final: bool) -> dict[str, Any]:
        """Write samples during (``final=False``) or after training; returns what to report."""
        return {}

    def start_record(self) -> dict[str, Any]:
        """Extra fields of the log's ``start`` record (configuration, input files, command)."""
        return {}

    def log_fields(self) -> dict[str, Any]:
        """Extra fields of each ``losses`` record (e.g. the episode)."""
        return {}

    def summary_fields(self, samples: dict[str, Any] | None) -> dict[str, Any]:
        """Extra fields of :meth:`run`'s summary, given the final :meth:`sample`'s report
        (``None`` when the call trained nothing and final samples were not redrawn)."""
        return {}

    def final_samples_when_idle(self) -> bool:
        """Whether :meth:`run` draws the final samples even when it trained nothing."""
        return False

    def target_iterations(self, iterations: int | None) -> int:
        """The iteration :meth:`run` trains until."""
        return int(self.config.iterations if iterations is None else iterations)

    # -- checkpoints --

    def read(self, path: str | PathLike[str]) -> dict[str, Any]:
        """A checkpoint of this trainer's format (read safely; see :func:`read_checkpoint`)."""
        return read_checkpoint(path, self.checkpoint_format, self.checkpoint_what)

    def check_resumable(self, theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> None:
        """Refuse a checkpoint trained under another configuration (bookkeeping aside)."""
        diff = config_difference(theirs, mine, self.bookkeeping)
        if diff:
            raise ConfigError(
                f"the checkpoint in {self.out_dir} was trained with a different configuration "
                f"(checkpoint vs now): {diff}; use another --out folder"
            )

    def resume(self, enabled: bool = True) -> None:
        """Continue from the newest readable checkpoint in the run folder, if any."""
        if not enabled:
            return
        path = self.checkpoints.latest_loadable(self.read, stacklevel=4)
        if path is not None:
            self.load_state(self.read(path))
            self.resumed_from = path

    def save_checkpoint(self) -> Path:
        """``checkpoints/ckpt_<iteration>.pt``, then keep the newest ``keep_checkpoints``."""
        return self.checkpoints.save_iteration(
            self.iteration, self.state(), self.config.keep_checkpoints
        )

    # -- the loop --

    def run(self, iterations: int | None = None, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``iterations`` (default: the configuration's) are done, or for at most
        ``stop_after`` iterations in this call; log, sample and checkpoint on the way and
        checkpoint at the end. Returns a summary."""
        target = self.target_iterations(iterations)
        if stop_after is not None:
            target = min(target, self.iteration + int(stop_after))
        cfg = self.config
        if self.resumed_from is not None and not self._resume_logged:
            self._resume_logged = True
            self.log.truncate_after(self.iteration)
            self.log.write(
                {
                    "event": "resume",
                    "iteration": self.iteration,
                    "checkpoint": str(self.resumed_from),
                }
            )
        elif self.iteration == 0:
            self.log.write({"event": "start", "iteration": 0, **self.start_record()})
        start, t0 = self.iteration, self.log.start_window()
        while self.iteration < target:
            losses = self.train_step()
            it = self.iteration
            if self.on_step is not None:
                self.on_step(it, losses)
            self.log.add_losses(it, losses, **self.log_fields())
            if it % cfg.sample_every == 0 and it != target:
                self.sample(f"it{it:08d}", final=False)
            if it % cfg.checkpoint_every == 0 and it != target:
                self.save_checkpoint()
        seconds = time.perf_counter() - t0
        self.log.flush_losses(self.iteration, **self.log_fields())
        done = self.iteration - start
        samples = None
        if done or self.final_samples_when_idle():
            samples = self.sample(f"it{self.iteration:08d}_final", final=True)
        checkpoint = self.save_checkpoint()
        return {
            "iteration": self.iteration,
            "iterations_run": done,
            "finished": self.iteration >= int(cfg.iterations),
            "seconds": seconds,
            "seconds_per_iteration": seconds / done if done else None,
            "checkpoint": str(checkpoint),
            **self.summary_fields(samples),
        }
