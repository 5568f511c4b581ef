"""Discover plugins through entry points and build the registries from their hooks.

Modelled on pytest/tox: built-ins and third-party plugins come through the same
``cgnbench`` entry-point group; ``CGNBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` turns discovery off
(then only plugins passed explicitly are used); ``CGNBENCH_PLUGINS=pkg.module,other`` loads
plugin modules by import path in addition (as ``PYTEST_PLUGINS`` does);
``CGNBENCH_BLOCK_PLUGINS=a,b`` (or the CLI's ``--block``) blocks plugins by entry-point name.
A plugin that fails to import, raises in a hook or registers a clashing name is reported as a
warning naming it; the rest keep working.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .registry import PluginRegistryView, RegistrationError, Registries

ENTRY_POINT_GROUP = "cgnbench"
DISABLE_AUTOLOAD_ENV = "CGNBENCH_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "CGNBENCH_BLOCK_PLUGINS"
PLUGINS_ENV = "CGNBENCH_PLUGINS"

# hook name -> attribute of Registries it fills
REGISTRY_HOOKS = {
    "register_generators": "generators",
    "register_classifiers": "classifiers",
    "register_benchmarks": "benchmarks",
    "register_weights": "weights",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or used; the harness goes on without it."""


@dataclass
class PluginInfo:
    """What ``cgnbench plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    source: str = "entry point"


@dataclass
class PluginProblem:
    plugin: str
    message: str


@dataclass
class PluginSystem:
    """The plugin manager, its plugins and the registries they filled."""

    manager: pluggy.PluginManager
    registries: Registries
    plugins: list[PluginInfo]
    problems: list[PluginProblem]
    blocked: list[str]
    autoload: bool

    def add_commands(self, cli: Any) -> None:
        """Let plugins add CLI commands (the ``register_commands`` hook)."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a broken plugin must not take the CLI down
                self._problem(impl.plugin_name, f"register_commands failed: {exc!r}")

    def _problem(self, plugin: str, message: str) -> None:
        self.problems.append(PluginProblem(plugin, message))
        warnings.warn(f"cgnbench plugin {plugin!r}: {message}", PluginWarning, stacklevel=3)


def autoload_enabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}


def blocked_from_env() -> list[str]:
    return [name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()]


def plugins_from_env() -> list[str]:
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def load_plugins(
    *,
    autoload: bool | None = None,
    blocked: Sequence[str] = (),
    extra_plugins: Iterable[tuple[str, Any]] = (),
    entry_points: Callable[[], Iterable[metadata.EntryPoint]] | None = None,
) -> PluginSystem:
    """Create the plugin manager, load plugins and fill the registries.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered directly (tests'
    fixture plugins); ``entry_points`` replaces entry-point discovery (for tests).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    autoload = autoload_enabled() if autoload is None else autoload
    blocked_names = list(dict.fromkeys([*blocked, *blocked_from_env()]))
    for name in blocked_names:
        manager.set_blocked(name)
    system = PluginSystem(manager, Registries(), [], [], blocked_names, autoload)

    if autoload:
        found = (
            entry_points()
            if entry_points is not None
            else metadata.entry_points(group=ENTRY_POINT_GROUP)
        )
        # Built-ins first, then the rest by name: on a name clash the first one wins.
        for entry_point in sorted(found, key=_load_order):
            _load_entry_point(system, entry_point)
    for module_name in plugins_from_env():
        if system.manager.is_blocked(module_name) or system.manager.has_plugin(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            system._problem(module_name, f"failed to import (from ${PLUGINS_ENV}): {exc!r}")
            continue
        _register(
            system,
            module_name,
            module,
            PluginInfo(module_name, module_name, source=f"${PLUGINS_ENV}"),
        )
    for name, plugin in extra_plugins:
        if manager.is_blocked(name) or manager.get_plugin(name) is plugin:
            continue
        _register(system, name, plugin, PluginInfo(name, _module_name(plugin), source="direct"))

    for hook_name, attribute in REGISTRY_HOOKS.items():
        _fill_registry(system, hook_name, getattr(system.registries, attribute))
    return system


def _load_order(entry_point: metadata.EntryPoint) -> tuple[int, str]:
    dist = getattr(getattr(entry_point, "dist", None), "name", None)
    return (0 if dist == "cgnbench" else 1, entry_point.name)


def _load_entry_point(system: PluginSystem, entry_point: metadata.EntryPoint) -> None:
    name = entry_point.name
    if system.manager.is_blocked(name) or system.manager.has_plugin(name):
        return
    dist = getattr(entry_point, "dist", None)
    info = PluginInfo(
        name=name,
        module=entry_point.value,
        distribution=getattr(dist, "name", None),
        version=getattr(dist, "version", None),
    )
    try:
        plugin = entry_point.load()
    except Exception as exc:  # any import-time error of a third-party plugin
        system._problem(name, f"failed to import {entry_point.value!r}: {exc!r}")
        return
    _register(system, name, plugin, info)


def _register(system: PluginSystem, name: str, plugin: Any, info: PluginInfo) -> None:
    try:
        system.manager.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        system._problem(name, f"could not be registered: {exc}")
        return
    callers = system.manager.get_hookcallers(plugin) or []
    unknown = sorted(caller.name for caller in callers if not caller.has_spec())
    if unknown:
        system.manager.unregister(plugin, name=name)
        known = ", ".join(sorted(REGISTRY_HOOKS) + ["register_commands"])
        system._problem(name, f"implements unknown hook(s) {unknown}; known hooks: {known}")
        return
    info.hooks = sorted(caller.name for caller in callers)
    if info.version is None:
        info.version = getattr(plugin, "__version__", None)
    system.plugins.append(info)


def _fill_registry(system: PluginSystem, hook_name: str, registry: Any) -> None:
    caller = getattr(system.manager.hook, hook_name)
    for impl in caller.get_hookimpls():  # in load order
        view = _WarningView(registry, impl.plugin_name, system)
        try:
            impl.function(registry=view)
        except Exception as exc:
            registry.remove_plugin(impl.plugin_name)
            system._problem(impl.plugin_name, f"{hook_name} failed: {exc!r}")


class _WarningView(PluginRegistryView):
    """A registry view that turns a clashing or invalid entry into a warning, not a crash."""

    def __init__(self, registry: Any, plugin: str, system: PluginSystem):
        super().__init__(registry, plugin)
        self._system = system

    def add(self, item: Any) -> Any:
        try:
            return super().add(item)
        except RegistrationError as exc:
            self._system._problem(self._plugin, str(exc))
            return item


def _module_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", type(plugin).__name__)
