"""Discover plugins through entry points and build the registries from their hooks.

Modelled on pytest/tox: built-ins and third-party plugins come through the same
``cgnbench`` entry-point group; ``CGNBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` turns discovery of
third-party plugins off (the built-ins, this distribution's own entry points, stay, as pytest
keeps its core plugins; then only plugins passed explicitly are added);
``CGNBENCH_PLUGINS=pkg.module,other`` loads plugin modules by import path in addition (as
``PYTEST_PLUGINS`` does; a module already loaded through its entry point is not loaded twice);
``CGNBENCH_BLOCK_PLUGINS=a,b`` (or the CLI's ``--block``) blocks plugins by entry-point name.
A plugin that fails to import, raises in a hook or registers a clashing name is reported as a
warning naming it, and listed with its problem by ``cgnbench plugins``; the rest keep working.
``CGNBENCH_STRICT_PLUGINS=1`` (or ``--strict-plugins``) makes every such problem an error that
carries the plugin's own traceback, for plugin authors' CI.
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
from .settings import env_flag

ENTRY_POINT_GROUP = "cgnbench"
BUILTIN_DISTRIBUTION = "cgnbench"
DISABLE_AUTOLOAD_ENV = "CGNBENCH_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "CGNBENCH_STRICT_PLUGINS"
BLOCK_ENV = "CGNBENCH_BLOCK_PLUGINS"
PLUGINS_ENV = "CGNBENCH_PLUGINS"

# hook name -> attribute of Registries it fills
REGISTRY_HOOKS = {
    "register_generators": "generators",
    "register_classifiers": "classifiers",
    "register_benchmarks": "benchmarks",
    "register_weights": "weights",
    "register_tasks": "tasks",
    "register_datasets": "datasets",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or used; the harness goes on without it."""


class PluginError(RuntimeError):
    """A plugin problem in strict mode. Not a :class:`CGNBenchError` on purpose: the CLI shows
    its traceback (the plugin's own error is chained as its cause)."""


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
    strict: bool = False
    failed: list[PluginInfo] = field(default_factory=list)  # could not be loaded at all

    def add_commands(self, cli: Any) -> None:
        """Let plugins add CLI commands (the ``register_commands`` hook)."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a broken plugin must not take the CLI down
                self._problem(impl.plugin_name, f"register_commands failed: {exc!r}", exc)

    def problems_of(self, plugin: str) -> list[str]:
        return [p.message for p in self.problems if p.plugin == plugin]

    def _problem(self, plugin: str, message: str, cause: BaseException | None = None) -> None:
        if self.strict:
            raise PluginError(f"cgnbench plugin {plugin!r}: {message}") from cause
        self.problems.append(PluginProblem(plugin, message))
        warnings.warn(f"cgnbench plugin {plugin!r}: {message}", PluginWarning, stacklevel=3)


def autoload_enabled() -> bool:
    return not env_flag(DISABLE_AUTOLOAD_ENV)


def strict_from_env() -> bool:
    return env_flag(STRICT_ENV)


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
    builtins: bool = True,
    strict: bool | None = None,
) -> PluginSystem:
    """Create the plugin manager, load plugins and fill the registries.

    ``autoload`` (default: not ``$CGNBENCH_DISABLE_PLUGIN_AUTOLOAD``) discovers third-party
    entry points; ``builtins`` loads this distribution's own (``False`` isolates a test from
    them); ``strict`` (default ``$CGNBENCH_STRICT_PLUGINS``) raises :class:`PluginError` on the
    first plugin problem. ``extra_plugins`` are ``(name, module_or_object)`` pairs registered
    directly (tests' fixture plugins); ``entry_points`` replaces entry-point discovery.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    autoload = autoload_enabled() if autoload is None else autoload
    strict = strict_from_env() if strict is None else strict
    blocked_names = list(dict.fromkeys([*blocked, *blocked_from_env()]))
    for name in blocked_names:
        manager.set_blocked(name)
    system = PluginSystem(manager, Registries(), [], [], blocked_names, autoload, strict)

    if autoload or builtins:
        found = (
            entry_points()
            if entry_points is not None
            else metadata.entry_points(group=ENTRY_POINT_GROUP)
        )
        # Built-ins first, then the rest by name: on a name clash the first one wins.
        for entry_point in sorted(found, key=_load_order):
            wanted = builtins if _is_builtin(entry_point) else autoload
            if wanted:
                _load_entry_point(system, entry_point)
    for module_name in plugins_from_env():
        if system.manager.is_blocked(module_name) or system.manager.has_plugin(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            system.failed.append(PluginInfo(module_name, module_name, source=f"${PLUGINS_ENV}"))
            system._problem(module_name, f"failed to import (from ${PLUGINS_ENV}): {exc!r}", exc)
            continue
        if system.manager.is_registered(module):
            continue  # installed and already loaded through its entry point
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


def _is_builtin(entry_point: metadata.EntryPoint) -> bool:
    return getattr(getattr(entry_point, "dist", None), "name", None) == BUILTIN_DISTRIBUTION


def _load_order(entry_point: metadata.EntryPoint) -> tuple[int, str]:
    return (0 if _is_builtin(entry_point) else 1, entry_point.name)


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
        system.failed.append(info)
        system._problem(name, f"failed to import {entry_point.value!r}: {exc!r}", exc)
        return
    _register(system, name, plugin, info)


def _register(system: PluginSystem, name: str, plugin: Any, info: PluginInfo) -> None:
    try:
        system.manager.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        system.failed.append(info)
        system._problem(name, f"could not be registered: {exc}", exc)
        return
    callers = system.manager.get_hookcallers(plugin) or []
    unknown = sorted(caller.name for caller in callers if not caller.has_spec())
    if unknown:
        system.manager.unregister(plugin, name=name)
        system.failed.append(info)
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
        except PluginError:
            raise
        except Exception as exc:
            registry.remove_plugin(impl.plugin_name)
            system._problem(impl.plugin_name, f"{hook_name} failed: {exc!r}", exc)


class _WarningView(PluginRegistryView):
    """A registry view that turns a clashing or invalid entry into a warning, not a crash."""

    def __init__(self, registry: Any, plugin: str, system: PluginSystem):
        super().__init__(registry, plugin)
        self._system = system

    def add(self, item: Any) -> Any:
        try:
            return super().add(item)
        except RegistrationError as exc:
            self._system._problem(self._plugin, str(exc), exc)
            return item

    def add_preset(self, family: Any, name: str, **attributes: Any) -> Any:
        try:
            return super().add_preset(family, name, **attributes)
        except RegistrationError as exc:
            self._system._problem(self._plugin, str(exc), exc)
            return family


def _module_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", type(plugin).__name__)
