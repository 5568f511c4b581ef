"""Generator training as a run: ``cgnbench train-generator -g NAME --task TASK``.

A generator that declares a ``Training`` options dataclass (the trainable-generator contract of
:class:`~robustbench_cgn.components.Generator`) is trained here the way a benchmark run is run:
the options are type- and range-checked before anything starts; the training has an identity
(generator and version, the options that define the result, the task and the data it reads,
the seed), a run folder under ``runs/<id>/`` that a killed attempt resumes from, and a record
in the results store with its provenance and the exported weights file. Training an identity
that has finished does nothing; ``--set generator.weights=run:<id>`` then uses its weights
(:mod:`robustbench_cgn.resolver`).

In the store a training is a run whose ``benchmark`` is ``train:<task>`` and whose classifier
is ``-``; it records no metrics, so leaderboards do not show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .components import Generator, Task
from .config import build_config, config_as_dict, identity_options
from .context import RunContext
from .data.digests import cached_sha256
from .device import resolve_device
from .errors import ConfigError, IncompatibleError
from .identity import run_identity
from .plugin_manager import PluginSystem
from .progress import ProgressReporter
from .provenance import collect
from .registry import Entry
from .settings import Paths
from .store import ResultsStore

__all__ = [
    "TRAINING_BENCHMARK_PREFIX",
    "GeneratorTraining",
    "TrainOutcome",
    "TrainRequest",
    "run_trainer",
]

TRAINING_BENCHMARK_PREFIX = "train:"


@dataclass(frozen=True)
class TrainRequest:
    generator: str
    task: str
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    force: bool = False


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    status: str  # "trained" | "resumed" | "already trained"
    weights: Path
    generator: str


class GeneratorTraining:
    """Plans and runs generator trainings against one store and one set of paths."""

    def __init__(
        self,
        plugins: PluginSystem,
        store: ResultsStore,
        paths: Paths,
        progress: ProgressReporter | None = None,
    ):
        self.plugins, self.store, self.paths = plugins, store, paths
        self.progress = progress or ProgressReporter(quiet=True)

    def _generator(self, name: str, task: Task) -> Entry:
        registry = self.plugins.registries.generators
        entry = registry.get(name)
        if not entry.cls.supports(task):
            stand_ins = [e for e in registry if e.cls.implements == name and e.cls.supports(task)]
            if len(stand_ins) != 1:
                raise IncompatibleError(
                    f"generator {name!r} does not support task {task.name!r} (it supports: "
                    f"{', '.join(entry.cls.tasks)})"
                )
            entry = stand_ins[0]
        if entry.cls.Training is None:
            trainable = sorted(e.name for e in registry if e.cls.Training is not None)
            raise IncompatibleError(
                f"generator {entry.name!r} cannot be trained by cgnbench; trainable: "
                f"{', '.join(trainable) or 'none'}"
            )
        return entry

    def plan(self, request: TrainRequest) -> tuple[Entry, Generator, Task, Any, dict, RunContext]:
        """Names, options and identity, checked; nothing read beyond the task's data identity."""
        task = self.plugins.registries.tasks.get(request.task).task
        entry = self._generator(request.generator, task)
        owner = f"generator {entry.name!r} training"
        options = build_config(entry.cls.Training, dict(request.options), owner=owner)
        generator = entry.cls(build_config(entry.cls.Config, {}, owner=f"generator {entry.name!r}"))
        ctx = RunContext(
            run_id="",
            seed=request.seed,
            device=resolve_device(request.device),
            workdir=self.paths.runs / "pending",
            cache_dir=self.paths.cache,
            data_dir=self.paths.data,
            progress=self.progress,
            task=task,
            tasks=self.plugins.registries.tasks,
        )
        spec = {
            "kind": "generator-training",
            "generator": {"name": entry.name, "version": entry.version},
            "training": identity_options(options),
            "task": {"name": task.name, "data": task.identity(ctx)},
            "seed": request.seed,
        }
        ctx.run_id = run_identity(spec)
        ctx.workdir = self.paths.run_dir(ctx.run_id)
        return entry, generator, task, options, spec, ctx

    def train(self, request: TrainRequest) -> TrainOutcome:
        entry, generator, task, options, spec, ctx = self.plan(request)
        run_id = ctx.run_id
        existing = self.store.get_run(run_id)
        if existing is not None and existing.status == "complete" and not request.force:
            return TrainOutcome(run_id, "already trained", _weights_of(existing), entry.name)
        task.check_data(ctx)
        provenance = collect(ctx.device, {p.name: p.version for p in self.plugins.plugins})
        provenance["options"] = config_as_dict(options)  # bookkeeping included
        claimed = self.store.start_run(
            run_id,
            generator=entry.name,
            classifier="-",
            benchmark=TRAINING_BENCHMARK_PREFIX + task.name,
            mix="-",
            seed=request.seed,
            data_source=str(spec["task"]["data"].get("source", task.name)),
            spec=spec,
            provenance=provenance,
            workdir=str(ctx.workdir),
            fresh=request.force,
            unless_complete=not request.force,
        )
        if claimed.status == "complete":
            return TrainOutcome(run_id, "already trained", _weights_of(claimed), entry.name)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            weights = Path(generator.train(task, ctx, options))
        except BaseException as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            self.store.finish_run(
                run_id,
                status="incomplete",
                wall_time_s=time.perf_counter() - started,
                error=reason,
            )
            raise
        provenance.update(weights_file=str(weights), weights_sha256=cached_sha256(weights))
        self.store.finish_run(
            run_id,
            status="complete",
            wall_time_s=time.perf_counter() - started,
            provenance=provenance,
        )
        status = "resumed" if existing is not None else "trained"
        return TrainOutcome(run_id, status, weights, entry.name)


def run_trainer(
    trainer: Any,
    ctx: RunContext,
    description: str,
    status: Callable[[dict[str, float]], str],
) -> dict[str, Any]:
    """``trainer.run()`` under the run's progress bar (starting at the trainer's iteration,
    showing ``status(losses)``), after saying that a killed attempt is being resumed; returns
    the trainer's summary. For the domains' resumable trainers (``iteration``,
    ``resumed_from``, ``on_step``, ``config.iterations``, ``run()``)."""
    if getattr(trainer, "resumed_from", None) is not None:
        ctx.log(f"resuming from {trainer.resumed_from} (iteration {trainer.iteration})")
    total = trainer.config.iterations
    with ctx.progress.task(description, total=total, completed=trainer.iteration) as bar:
        trainer.on_step = lambda iteration, losses: bar.update_to(iteration, status=status(losses))
        return trainer.run()


def _weights_of(record) -> Path:
    path = record.provenance.get("weights_file")
    if not path or not Path(path).is_file():
        raise ConfigError(
            f"training {record.run_id} is complete but its weights file {path} is gone; "
            "train again with --force"
        )
    return Path(path)
