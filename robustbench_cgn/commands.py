"""Helpers for the commands plugins add through ``register_commands`` (``train-generator``,
``train-cgn-imagenet``, ...): parsing comma-separated numbers, and running a resumable trainer
under a progress bar that shows its losses. Plugins import these, never ``robustbench_cgn.cli``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from robustbench_cgn.errors import ConfigError
from robustbench_cgn.progress import ProgressReporter

__all__ = ["ResumableTrainer", "comma_floats", "run_with_progress", "speed_text"]


class ResumableTrainer(Protocol):
    """What :func:`run_with_progress` uses of a trainer."""

    resumed_from: Path | None
    iteration: int
    on_step: Callable[[int, dict[str, float]], None] | None

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...


def comma_floats(_ctx: Any, _param: Any, text: str | None) -> tuple[float, ...] | None:
    """Option callback: ``"1,2.5"`` -> ``(1.0, 2.5)``; ``None`` stays ``None`` (the default)."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        name = getattr(_param, "name", None) or "value"
        raise ConfigError(f"--{name.replace('_', '-')}: expected comma-separated numbers, "
                          f"got {text!r}") from None


def run_with_progress(
    trainer: ResumableTrainer,
    console: Console,
    description: str,
    *,
    total: int | None,
    status: Callable[[dict[str, float]], str],
    **run_kwargs: Any,
) -> dict[str, Any]:
    """``trainer.run(**run_kwargs)`` under a progress bar; returns its summary.

    A resumed run is announced first (rerunning the command is how training resumes, so the
    user should see that it did). The bar starts at the trainer's iteration, not at 0, and
    shows ``status(losses)`` of the latest iteration.
    """
    if trainer.resumed_from is not None:
        console.print(f"resuming from {trainer.resumed_from} (iteration {trainer.iteration})")
    progress = ProgressReporter(console)
    with progress.task(description, total=total, completed=trainer.iteration) as bar:

        def on_step(iteration: int, losses: dict[str, float]) -> None:
            bar.update_to(iteration, status=status(losses))

        trainer.on_step = on_step
        return trainer.run(**run_kwargs)


def speed_text(summary: dict[str, Any]) -> str:
    """``", 0.123 s/iteration"`` from a run summary; empty when no iteration ran."""
    per_iteration = summary.get("seconds_per_iteration")
    return f", {per_iteration:.3f} s/iteration" if per_iteration else ""
