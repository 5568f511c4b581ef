"""Tasks by name: the public way for plugins and scripts to find a task and load its data.

Inside a run, pass the run's context (``get_task("colored-mnist", ctx)``): the task comes from
the run's own plugins. Outside one, the installed plugins are loaded once and asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .components import Task
    from .context import RunContext

__all__ = ["get_task"]

_installed: Any = None  # the task registry of the installed plugins, loaded on first use


def get_task(name: str, ctx: RunContext | None = None) -> Task:
    """The registered task ``name``; an unknown name is a one-line error with close matches."""
    registry = getattr(ctx, "tasks", None)
    if registry is None:
        registry = _installed_tasks()
    return registry.get(name).task


def _installed_tasks() -> Any:
    global _installed
    if _installed is None:
        from .plugin_manager import load_plugins

        _installed = load_plugins().registries.tasks
    return _installed
