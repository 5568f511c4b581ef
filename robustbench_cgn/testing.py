"""Testing helpers for plugin authors, in the spirit of pytest's ``pytester``.

Your components go through the real plugin manager and the real runner, with a results store,
run folders and caches in a temporary home, and plugin problems raised (strict mode) instead of
warned about. Enable the fixture in your ``conftest.py``::

    pytest_plugins = ["robustbench_cgn.testing"]

and use it::

    import my_plugin

    def test_my_generator_end_to_end(cgnbench):
        cgnbench.load(my_plugin)
        outcome = cgnbench.run("my-generator", "c-mnist", overrides={"classifier": {"epochs": 1}})
        assert outcome.status == "complete"
        assert 0 <= cgnbench.metrics(outcome)["test_acc"] <= 100

Outside pytest, :class:`PluginTester` works the same with a folder of your choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .plugin_manager import PluginSystem, load_plugins
from .runner import Runner, RunOutcome, RunRequest
from .settings import HOME_ENV, resolve_paths
from .store import ResultsStore

__all__ = ["PluginTester", "cgnbench"]


class PluginTester:
    """Runs components of the given plugins (and the built-ins) in ``home``.

    ``plugins`` are modules or ``(name, module_or_object)`` pairs, as entry points would load
    them. ``builtins=False`` leaves the built-in generators, classifiers and benchmarks out;
    ``strict=False`` turns plugin problems back into warnings.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        plugins: tuple[Any, ...] = (),
        *,
        builtins: bool = True,
        strict: bool = True,
        data_dir: str | os.PathLike[str] | None = None,
    ):
        self.home = Path(home)
        self.builtins, self.strict, self.data_dir = builtins, strict, data_dir
        self._plugins: list[tuple[str, Any]] = []
        self._system: PluginSystem | None = None
        self._store: ResultsStore | None = None
        self.load(*plugins)

    def load(self, *plugins: Any) -> PluginTester:
        """Add plugins (before the first :meth:`run`)."""
        for plugin in plugins:
            name, obj = plugin if isinstance(plugin, tuple) else (_plugin_name(plugin), plugin)
            self._plugins.append((name, obj))
        self._system = None
        return self

    @property
    def system(self) -> PluginSystem:
        """The plugin manager and registries (built on first use)."""
        if self._system is None:
            self._system = load_plugins(
                autoload=False,
                builtins=self.builtins,
                extra_plugins=self._plugins,
                strict=self.strict,
            )
        return self._system

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._store = ResultsStore(self.home / "results.sqlite")
        return self._store

    def run(
        self,
        generator: str,
        benchmark: str,
        classifier: str | None = None,
        *,
        seed: int = 0,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        mix: str = "generated",
        device: str = "cpu",
    ) -> RunOutcome:
        """One run, exactly as ``cgnbench run`` does it (identity, store, resume)."""
        request = RunRequest(
            generator=generator,
            benchmark=benchmark,
            classifier=classifier,
            seed=seed,
            mix=mix,
            overrides={k: dict(v) for k, v in (overrides or {}).items()},
            device=device,
        )
        with _home(self.home):
            runner = Runner(self.system, self.store, resolve_paths(self.home, self.data_dir))
            return runner.run(request)

    @staticmethod
    def metrics(outcome: RunOutcome) -> dict[str, float]:
        """``{name: value}`` of a run's overall metrics (``{name[key]: value}`` for keyed ones)."""
        return {m.name + (f"[{m.key}]" if m.key else ""): m.value for m in outcome.metrics}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@contextmanager
def _home(home: Path) -> Iterator[None]:
    """``CGNBENCH_HOME`` pointed at ``home`` while a run resolves its caches."""
    before = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = before


def _plugin_name(plugin: Any) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return getattr(plugin, "__name__", type(plugin).__name__)


@pytest.fixture
def cgnbench(tmp_path: Path) -> Iterator[PluginTester]:
    """A :class:`PluginTester` in a fresh temporary home (built-ins loaded, strict)."""
    tester = PluginTester(tmp_path / "cgnbench_home")
    yield tester
    tester.close()
