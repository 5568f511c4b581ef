"""Typed registries of components and named weights, in the spirit of timm's model registry.

Plugins add entries inside their ``register_*`` hooks; the harness looks entries up by name,
lists them with shell-style wildcards (``cgn*``) and suggests close matches for typos.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .artifacts import DatasetSpec, WeightsSpec
from .components import Benchmark, Classifier, Component, Generator, Task
from .errors import UnknownNameError

C = TypeVar("C", bound=Component)


class RegistrationError(ValueError):
    """A plugin tried to register an invalid or clashing entry."""


@dataclass(frozen=True)
class Entry(Generic[C]):
    """A registered component class and the plugin that provided it."""

    name: str
    cls: type[C]
    plugin: str
    argument: str = ""  # the ``<value>`` of a ``base:<value>`` name (e.g. timm:resnet50)

    def config_overrides(self) -> dict[str, Any]:
        """The config the name itself sets: ``timm:resnet50`` -> ``{"model": "resnet50"}``."""
        field_name = getattr(self.cls, "name_argument", None)
        return {field_name: self.argument} if self.argument and field_name else {}

    @property
    def description(self) -> str:
        return self.cls.description

    @property
    def version(self) -> str:
        return self.cls.version

    def defaults(self) -> dict[str, Any]:
        return self.cls.defaults()


class Registry(Generic[C]):
    """Components of one kind (generators, classifiers or benchmarks), keyed by name."""

    def __init__(self, kind: str, base: type[C]):
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[C]] = {}

    def add(self, cls: type[C], *, plugin: str = "<direct>") -> type[C]:
        """Register a component class; returns it, so this also works as a decorator."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise RegistrationError(
                f"{self.kind} registry accepts subclasses of {self.base.__name__}, got {cls!r}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise RegistrationError(f"{cls.__name__} needs a non-empty `name` without spaces")
        existing = self._entries.get(name)
        if existing is not None:
            raise RegistrationError(
                f"{self.kind} {name!r} from plugin {plugin!r} clashes with the one "
                f"registered by plugin {existing.plugin!r}"
            )
        self._entries[name] = Entry(name=name, cls=cls, plugin=plugin)
        return cls

    def add_preset(
        self,
        family: type[C],
        name: str,
        *,
        plugin: str = "<direct>",
        description: str | None = None,
        **attributes: Any,
    ) -> type[C]:
        """Register ``name`` as a preset of the component class ``family``: the same class
        with the given class attributes (e.g. ``task=...``, ``datasets=...``) instead of a
        subclass written only to name a variant (``c-mnist``, ``dc-mnist``, ``w-mnist`` are
        presets of one benchmark family)."""
        if not (isinstance(family, type) and issubclass(family, self.base)):
            raise RegistrationError(f"preset {name!r}: {family!r} is not a {self.base.__name__}")
        declared = {n for k in family.__mro__ for n in getattr(k, "__annotations__", {})}
        unknown = sorted(a for a in attributes if not hasattr(family, a) and a not in declared)
        if unknown:
            raise RegistrationError(
                f"preset {name!r} sets {', '.join(unknown)}, which {family.__name__} does not have"
            )
        namespace = {
            "__module__": family.__module__,
            "__qualname__": f"{family.__qualname__}[{name}]",
            "__doc__": family.__doc__,
            "name": name,
            "description": description if description is not None else family.description,
            "preset_of": family.__name__,
            **attributes,
        }
        return self.add(type(f"{family.__name__}[{name}]", (family,), namespace), plugin=plugin)

    def get(self, name: str) -> Entry[C]:
        """The entry of ``name``; ``base:<value>`` resolves to ``base`` when that component
        declares a ``name_argument`` (the config field the value sets)."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        base, sep, argument = name.partition(":")
        parametrised = self._entries.get(base) if sep else None
        if parametrised is not None and getattr(parametrised.cls, "name_argument", None):
            if not argument:
                raise UnknownNameError(self.kind, name, [f"{base}:<name>"], sorted(self._entries))
            return Entry(name, parametrised.cls, parametrised.plugin, argument)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                self.kind, name, self.close_matches(name), sorted(self._entries)
            ) from None

    def close_matches(self, name: str) -> list[str]:
        names = sorted(self._entries)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        prefixed = [n for n in names if n.startswith(name) or name.startswith(n)]
        return list(dict.fromkeys(close + prefixed))[:5]

    def list(self, pattern: str = "*") -> list[Entry[C]]:
        """Entries whose name matches the shell-style ``pattern``, sorted by name."""
        return [self._entries[n] for n in sorted(self._entries) if fnmatch.fnmatchcase(n, pattern)]

    def names(self, pattern: str = "*") -> list[str]:
        return [entry.name for entry in self.list(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[C]]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)

    def remove_plugin(self, plugin: str) -> None:
        """Drop every entry a plugin added (used when its hook fails half-way)."""
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    spec: WeightsSpec
    plugin: str


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    spec: DatasetSpec
    plugin: str


@dataclass(frozen=True)
class TaskEntry:
    name: str
    task: Task
    plugin: str

    @property
    def description(self) -> str:
        return self.task.description


class _NamedItems:
    """Plain named items (not component classes) registered by plugins, with wildcards."""

    kind = "item"

    def __init__(self) -> None:
        self._entries: dict[str, Any] = {}

    def _add(self, name: str, entry: Any, plugin: str) -> None:
        existing = self._entries.get(name)
        if existing is not None:
            raise RegistrationError(
                f"{self.kind} {name!r} from plugin {plugin!r} clashes with the one "
                f"registered by plugin {existing.plugin!r}"
            )
        self._entries[name] = entry

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            names = sorted(self._entries)
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
            raise UnknownNameError(self.kind, name, close, names) from None

    def list(self, pattern: str = "*") -> list[Any]:
        return [self._entries[n] for n in sorted(self._entries) if fnmatch.fnmatchcase(n, pattern)]

    def names(self, pattern: str = "*") -> list[str]:
        return [entry.name for entry in self.list(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Any]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)

    def remove_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]


class WeightsRegistry(_NamedItems):
    """Named weights of every component, listable with wildcards."""

    kind = "weights"

    def add(self, spec: WeightsSpec, *, plugin: str = "<direct>") -> WeightsSpec:
        if "." not in spec.name:
            raise RegistrationError(f"weights name {spec.name!r} must look like component.tag")
        self._add(spec.name, WeightsEntry(spec.name, spec, plugin), plugin)
        return spec


class DatasetRegistry(_NamedItems):
    """Datasets that ``cgnbench fetch`` can download (:class:`~.artifacts.DatasetSpec`)."""

    kind = "dataset"

    def add(self, spec: DatasetSpec, *, plugin: str = "<direct>") -> DatasetSpec:
        if not isinstance(spec, DatasetSpec):
            raise RegistrationError(f"dataset registry accepts DatasetSpec objects, got {spec!r}")
        self._add(spec.name, DatasetEntry(spec.name, spec, plugin), plugin)
        return spec


class TaskRegistry(_NamedItems):
    """The tasks the domains declare (``register_tasks``): what benchmarks pose, with their
    classes, image contract, splits and loaders (:class:`~robustbench_cgn.components.Task`)."""

    kind = "task"

    def add(self, task: Task, *, plugin: str = "<direct>") -> Task:
        if not isinstance(task, Task):
            raise RegistrationError(f"task registry accepts Task objects, got {task!r}")
        if not task.name or any(c.isspace() for c in task.name):
            raise RegistrationError(f"task {task!r} needs a non-empty name without spaces")
        self._add(task.name, TaskEntry(task.name, task, plugin), plugin)
        return task


class PluginRegistryView:
    """What a plugin's hook receives: ``registry.add(...)`` records the plugin's name.

    It forwards to the real registry so that every entry knows which plugin provided it.
    """

    def __init__(self, registry: Any, plugin: str):
        self._registry = registry
        self._plugin = plugin

    def add(self, item: Any) -> Any:
        return self._registry.add(item, plugin=self._plugin)

    def add_preset(self, family: Any, name: str, **attributes: Any) -> Any:
        return self._registry.add_preset(family, name, plugin=self._plugin, **attributes)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._registry, attr)


@dataclass
class Registries:
    """All registries of one plugin manager."""

    generators: Registry[Generator] = field(
        default_factory=lambda: Registry("generator", Generator)
    )
    classifiers: Registry[Classifier] = field(
        default_factory=lambda: Registry("classifier", Classifier)
    )
    benchmarks: Registry[Benchmark] = field(
        default_factory=lambda: Registry("benchmark", Benchmark)
    )
    weights: WeightsRegistry = field(default_factory=WeightsRegistry)
    tasks: TaskRegistry = field(default_factory=TaskRegistry)
    datasets: DatasetRegistry = field(default_factory=DatasetRegistry)

    def by_kind(
        self, kind: str
    ) -> Registry[Any] | WeightsRegistry | TaskRegistry | DatasetRegistry:
        mapping = {
            "generator": self.generators,
            "generators": self.generators,
            "classifier": self.classifiers,
            "classifiers": self.classifiers,
            "benchmark": self.benchmarks,
            "benchmarks": self.benchmarks,
            "weights": self.weights,
            "task": self.tasks,
            "tasks": self.tasks,
            "dataset": self.datasets,
            "datasets": self.datasets,
        }
        return mapping[kind]
