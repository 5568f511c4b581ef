"""The CLI's shared state: plugins, store and console, created lazily per invocation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

from rich.console import Console

from ..leaderboard import MainMetric
from ..plugin_manager import PluginSystem, PluginWarning, load_plugins
from ..progress import ProgressReporter
from ..settings import Paths, resolve_paths
from ..store import ResultsStore


@dataclass
class App:
    results: str | None = None
    quiet: bool = False
    blocked: tuple[str, ...] = ()
    autoload: bool | None = None
    strict: bool | None = None
    argv: tuple[str, ...] | None = None  # the invocation (`run --launcher` reruns it)
    console: Console = field(default_factory=Console)
    err_console: Console = field(default_factory=lambda: Console(stderr=True))

    @cached_property
    def plugins(self) -> PluginSystem:
        """Load plugins once; broken ones are reported as one warning line each."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            system = load_plugins(autoload=self.autoload, blocked=self.blocked, strict=self.strict)
        for problem in system.problems:
            self.err_console.print(
                f"[yellow]warning:[/] plugin [bold]{problem.plugin}[/]: {problem.message}",
                highlight=False,
            )
        return system

    def paths(self, data_dir: str | None = None) -> Paths:
        return resolve_paths(self.results, data_dir)

    @cached_property
    def store(self) -> ResultsStore:
        return ResultsStore(self.paths().results)

    @cached_property
    def progress(self) -> ProgressReporter:
        return ProgressReporter(self.err_console, quiet=self.quiet)

    def main_metrics(self) -> dict[str, MainMetric]:
        metrics = {}
        for entry in self.plugins.registries.benchmarks:
            spec = entry.cls.main_metric()
            if spec is not None:
                metrics[entry.name] = MainMetric(spec.name, spec.higher_is_better)
        return metrics

    def benchmark_titles(self) -> dict[str, str]:
        titles = {}
        for entry in self.plugins.registries.benchmarks:
            spec = entry.cls.main_metric()
            main = f" — sorted by {spec.name} ({spec.protocol or 'see docs'})" if spec else ""
            titles[entry.name] = f"{entry.name}{main}"
        return titles
