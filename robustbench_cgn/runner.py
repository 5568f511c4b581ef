"""Resolve a run request, skip finished work, resume unfinished work, record results.

The runner is the only place that writes to the results store during a run: every metric is
committed as soon as a benchmark yields it, so an interruption keeps what was measured and
the next attempt (same run identity) continues in the same working folder.

Under torchrun every process runs the same plan (generation, training with DDP, sharded
evaluation); rank 0 alone reads and writes the store and the run folder and shares its
decisions (skip, resume, metrics already recorded) with the other ranks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .components import (
    Benchmark,
    Classifier,
    Generator,
    MetricResult,
    Task,
    TrainingSet,
    concat_training_sets,
)
from .config import build_config, config_as_dict
from .context import RunContext, seed_everything
from .contracts import check_metric_value, check_training_set
from .device import resolve_device, resolve_precision
from .distributed import Distributed, current
from .errors import CGNBenchError, ConfigError, IncompatibleError
from .identity import RunSpec
from .plugin_manager import PluginSystem
from .progress import ProgressReporter
from .provenance import collect
from .registry import Entry
from .settings import Paths
from .store import ResultsStore, RunRecord

MIX_CHOICES = ("generated", "original+generated")
NO_CLASSIFIER = "-"  # the classifier column of runs whose benchmark scores the generator
ORIGINAL_GENERATOR = "original"


@dataclass
class RunRequest:
    """A user's request, as names and raw overrides (``--set`` strings or TOML values)."""

    generator: str
    benchmark: str
    classifier: str | None = None
    seed: int = 0
    mix: str = "generated"
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"
    num_workers: int = 0
    force: bool = False


@dataclass
class Assembly:
    """A request's components, configured but not yet identified (:meth:`Runner.assemble`)."""

    task: Task
    generator_entry: Entry
    classifier_entry: Entry | None
    benchmark_entry: Entry
    generator: Generator
    classifier: Classifier | None
    benchmark: Benchmark
    context: RunContext

    def components(self) -> list[Generator | Classifier | Benchmark]:
        return [c for c in (self.generator, self.classifier, self.benchmark) if c is not None]


@dataclass
class PlannedRun:
    spec: RunSpec
    generator: Generator
    classifier: Classifier | None
    benchmark: Benchmark
    context: RunContext

    @property
    def run_id(self) -> str:
        return self.spec.run_id


@dataclass
class RunOutcome:
    run_id: str
    status: str  # "complete" | "skipped"
    resumed: bool
    record: RunRecord
    metrics: list[MetricResult]


class Runner:
    def __init__(
        self,
        plugins: PluginSystem,
        store: ResultsStore | None,
        paths: Paths,
        progress: ProgressReporter | None = None,
        distributed: Distributed | None = None,
    ):
        """``store`` may be ``None`` on ranks other than 0 (they never touch it);
        ``distributed`` defaults to the process's (:func:`~robustbench_cgn.distributed.current`).
        """
        self.plugins = plugins
        self.store = store
        self.paths = paths
        self.progress = progress or ProgressReporter(quiet=True)
        self.distributed = distributed or current()
        if self.distributed.is_main and store is None:
            raise ValueError("the main process needs a results store")

    # -- planning ----------------------------------------------------------------------------
    def assemble(self, request: RunRequest) -> Assembly:
        """Resolve names and configs into components (no identity, nothing read or fetched):
        what :meth:`plan` and ``cgnbench fetch --for`` start from."""
        registries = self.plugins.registries
        if request.mix not in MIX_CHOICES:
            raise ConfigError(f"unknown mix {request.mix!r}; use one of {', '.join(MIX_CHOICES)}")
        device = self.distributed.local_device(resolve_device(request.device))
        precision = resolve_precision(request.precision, device)
        benchmark_entry = registries.benchmarks.get(request.benchmark)
        task = benchmark_entry.cls.task
        generator_entry = self._generator_for(request.generator, task)
        if benchmark_entry.cls.trains_classifier:
            classifier_name = (
                request.classifier
                or self._preferred_classifier(generator_entry, task)
                or benchmark_entry.cls.default_classifier
            )
            if classifier_name is None:
                raise ConfigError(
                    f"benchmark {request.benchmark!r} has no default classifier; pass --classifier"
                )
            classifier_entry = registries.classifiers.get(classifier_name)
        elif request.mix != "generated":
            raise ConfigError(
                f"benchmark {request.benchmark!r} scores the generator itself; --mix does not apply"
            )
        elif request.classifier:
            raise ConfigError(
                f"benchmark {request.benchmark!r} scores the generator itself and trains no "
                "classifier; drop --classifier"
            )
        else:
            classifier_entry = None
        for entry in (generator_entry, classifier_entry):
            if entry is None:
                continue
            if not entry.cls.supports(task):
                raise IncompatibleError(
                    f"{entry.cls.kind} {entry.name!r} does not support task {task.name!r} of "
                    f"benchmark {request.benchmark!r} (it supports: {', '.join(entry.cls.tasks)})"
                )
        if request.mix != "generated" and request.generator == ORIGINAL_GENERATOR:
            raise ConfigError("mix 'original+generated' needs a generator other than 'original'")

        overrides = request.overrides
        generator = generator_entry.cls(
            build_config(
                generator_entry.cls.Config,
                {**generator_entry.config_overrides(), **overrides.get("generator", {})},
                owner=f"generator {generator_entry.name!r}",
            )
        )
        classifier = None
        if classifier_entry is not None:
            classifier = classifier_entry.cls(
                build_config(
                    classifier_entry.cls.Config,
                    {**classifier_entry.config_overrides(), **overrides.get("classifier", {})},
                    owner=f"classifier {classifier_entry.name!r}",
                )
            )
        elif overrides.get("classifier"):
            raise ConfigError(f"benchmark {request.benchmark!r} trains no classifier to configure")
        benchmark = benchmark_entry.cls(
            build_config(
                benchmark_entry.cls.Config,
                {**benchmark_entry.config_overrides(), **overrides.get("benchmark", {})},
                owner=f"benchmark {benchmark_entry.name!r}",
            )
        )
        context = RunContext(
            run_id="",
            seed=request.seed,
            device=device,
            workdir=self.paths.runs / "pending",
            cache_dir=self.paths.cache,
            data_dir=self.paths.data,
            precision=precision,
            num_workers=request.num_workers,
            progress=self.progress,
            distributed=self.distributed,
            task=task,
            tasks=self.plugins.registries.tasks,
        )
        return Assembly(
            task, generator_entry, classifier_entry, benchmark_entry,
            generator, classifier, benchmark, context,
        )  # fmt: skip

    def plan(self, request: RunRequest) -> PlannedRun:
        """Resolve names, configs and identity without running anything."""
        assembly = self.assemble(request)
        task, context = assembly.task, assembly.context
        generator_entry, generator = assembly.generator_entry, assembly.generator
        classifier_entry, classifier = assembly.classifier_entry, assembly.classifier
        benchmark_entry, benchmark = assembly.benchmark_entry, assembly.benchmark
        generator_identity = generator.identity(task, context)
        if request.mix == "original+generated":
            generator_identity = {
                **generator_identity,
                "original": self._original().identity(task, context),
            }
        spec = RunSpec(
            generator=generator_entry.name,
            generator_version=generator_entry.version,
            generator_config=config_as_dict(generator.config),
            generator_identity=generator_identity,
            classifier=classifier_entry.name if classifier_entry else NO_CLASSIFIER,
            classifier_version=classifier_entry.version if classifier_entry else "",
            classifier_config=config_as_dict(classifier.config) if classifier else {},
            classifier_identity=classifier.identity(task, context) if classifier else {},
            benchmark=benchmark_entry.name,
            benchmark_version=benchmark_entry.version,
            benchmark_config=config_as_dict(benchmark.config),
            benchmark_identity=benchmark.identity(task, context),
            mix=request.mix,
            seed=request.seed,
            precision=context.precision,
        )
        context.run_id = spec.run_id
        context.workdir = self.paths.run_dir(spec.run_id)
        context.checkpoint_dir = self.paths.runs / "trained" / spec.training_id(task.name)
        return PlannedRun(spec, generator, classifier, benchmark, context)

    def _generator_for(self, name: str, task: Task) -> Entry:
        """The generator ``name``, or the one that implements it for ``task`` (``cgn`` on an
        ImageNet benchmark is ``cgn-imagenet``)."""
        registry = self.plugins.registries.generators
        entry = registry.get(name)
        if entry.cls.supports(task):
            return entry
        stand_ins = [e for e in registry if e.cls.implements == name and e.cls.supports(task)]
        if len(stand_ins) == 1:
            self.progress.log(f"generator {name!r} on task {task.name!r}: {stand_ins[0].name}")
            return stand_ins[0]
        return entry  # unsupported: reported by plan() with the tasks it does support

    def _preferred_classifier(self, generator: Entry, task: Task) -> str | None:
        name = generator.cls.default_classifier
        classifiers = self.plugins.registries.classifiers
        if name and name in classifiers and classifiers.get(name).cls.supports(task):
            return name
        return None

    def _original(self) -> Generator:
        entry = self.plugins.registries.generators.get(ORIGINAL_GENERATOR)
        return entry.cls(build_config(entry.cls.Config, {}, owner="generator 'original'"))

    # -- running -----------------------------------------------------------------------------
    def run(self, request: RunRequest) -> RunOutcome:
        planned = self.plan(request)
        run_id, ctx, dist = planned.run_id, planned.context, self.distributed
        start = dist.on_main(self._start, planned, request)
        if start.skipped is not None:
            return RunOutcome(run_id, "skipped", False, start.skipped, [])
        ctx.recorded_metrics = start.recorded_metrics
        if start.resumed:
            ctx.log(f"resuming run {run_id} ({len(ctx.recorded_metrics)} metrics already recorded)")
        provenance = start.provenance
        started = time.perf_counter()
        try:
            metrics, data_provenance = self._execute(planned, request)
        except BaseException as exc:
            if dist.is_main:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else repr(exc)
                self._store().finish_run(
                    run_id,
                    status="incomplete",
                    wall_time_s=time.perf_counter() - started,
                    error=reason,
                )
            raise
        provenance["training_data"] = data_provenance
        record = dist.on_main(self._finish, run_id, time.perf_counter() - started, provenance)
        return RunOutcome(run_id, "complete", start.resumed, record, metrics)

    def _store(self) -> ResultsStore:
        assert self.store is not None, "only the main process writes the results store"
        return self.store

    def _start(self, planned: PlannedRun, request: RunRequest) -> _Start:
        """Rank 0: skip a finished run, refuse a live one, else (re)start its record."""
        store, run_id, ctx = self._store(), planned.run_id, planned.context
        existing = store.get_run(run_id)
        if existing is not None and existing.status == "complete" and not request.force:
            return _Start(skipped=existing)
        planned.benchmark.task.check_data(ctx)  # missing data: one line, nothing stored
        resumed = existing is not None and not request.force
        spec = planned.spec
        provenance = collect(ctx.device, {p.name: p.version for p in self.plugins.plugins})
        provenance["precision"] = ctx.precision
        provenance["checkpoint_dir"] = str(ctx.checkpoints.folder)
        if self.distributed.enabled:
            provenance["distributed"] = self.distributed.describe()
        claimed = store.start_run(
            run_id,
            generator=spec.generator,
            classifier=spec.classifier,
            benchmark=spec.benchmark,
            mix=spec.mix,
            seed=spec.seed,
            data_source=spec.data_source,
            spec=spec.as_dict(),
            provenance=provenance,
            workdir=str(ctx.workdir),
            fresh=request.force,
            unless_complete=not request.force,
        )
        if claimed.status == "complete":  # finished by another process since the check above
            return _Start(skipped=claimed)
        if request.force:  # only once the run is ours: another process may be using them
            for folder in (ctx.workdir, ctx.checkpoint_dir):
                if folder is not None and folder.exists():
                    shutil.rmtree(folder)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        return _Start(
            resumed=resumed,
            recorded_metrics=store.recorded_metric_keys(run_id),
            provenance=provenance,
        )

    def _finish(self, run_id: str, wall_time_s: float, provenance: dict[str, Any]) -> RunRecord:
        store = self._store()
        store.finish_run(run_id, status="complete", wall_time_s=wall_time_s, provenance=provenance)
        record = store.get_run(run_id)
        assert record is not None
        return record

    def _execute(
        self, planned: PlannedRun, request: RunRequest
    ) -> tuple[list[MetricResult], dict[str, Any] | None]:
        ctx, task = planned.context, planned.benchmark.task
        seed_everything(ctx.seed)
        ctx.source_generator = planned.generator
        dist = self.distributed
        if planned.classifier is None:  # the benchmark scores the generator itself
            return self._evaluate(planned, None), None
        with dist.main_first():  # rank 0 fills the caches (generated sets), the others read them
            train_set = planned.generator.generate(task, ctx)
        if train_set is not None:
            check_training_set(train_set, task, planned.spec.generator)
        if request.mix == "original+generated":
            with dist.main_first():
                original = self._original().generate(task, ctx)
            if train_set is None or original is None:
                raise IncompatibleError("mix 'original+generated' needs data from both generators")
            check_training_set(original, task, "original")
            train_set = concat_training_sets(original, train_set)
        _check_training_set(train_set, task.num_classes)
        ctx.train_set = train_set
        with dist.main_first():  # e.g. weights converted once into the cache
            planned.classifier.build(task, ctx)
        if train_set is not None:
            planned.classifier.fit(train_set, ctx)
            dist.sync_module(getattr(planned.classifier, "model", None))  # one model scores
        provenance = None if train_set is None else train_set.provenance
        return self._evaluate(planned, planned.classifier), provenance

    def _evaluate(self, planned: PlannedRun, classifier: Classifier | None) -> list[MetricResult]:
        """Run the benchmark, recording each metric as it is yielded."""
        ctx = planned.context
        specs = {spec.name: spec for spec in planned.benchmark.metrics}
        collected: list[MetricResult] = []
        last = time.perf_counter()
        for result in planned.benchmark.evaluate(classifier, ctx):
            spec = specs.get(result.name)
            if spec is None:
                raise CGNBenchError(
                    f"benchmark {planned.spec.benchmark!r} yielded undeclared metric "
                    f"{result.name!r} (declared: {', '.join(specs)})"
                )
            check_metric_value(result.name, result.key, result.value, planned.spec.benchmark)
            now = time.perf_counter()
            if ctx.is_main:
                self._store().record_metric(
                    ctx.run_id,
                    result,
                    higher_is_better=spec.higher_is_better,
                    main=spec.main,
                    wall_time_s=now - last,
                )
            last = now
            collected.append(result)
        return collected


@dataclass
class _Start:
    """What rank 0 found when starting a run, shared with the other ranks."""

    skipped: RunRecord | None = None
    resumed: bool = False
    recorded_metrics: set[tuple[str, str]] = field(default_factory=set)
    provenance: dict[str, Any] = field(default_factory=dict)


def _check_training_set(train_set: TrainingSet | None, num_classes: int) -> None:
    if train_set is None:
        return
    if train_set.num_classes != num_classes:
        raise IncompatibleError(
            f"the training set has {train_set.num_classes} classes but the task needs {num_classes}"
        )
    if len(train_set) == 0:
        raise IncompatibleError("the generator produced an empty training set")
