"""Commands that plugins declare with :mod:`robustbench_cgn.commands` become click commands
here: the only place that translates them (plugins never import click)."""

from __future__ import annotations

import inspect
from typing import Any

import click

from ..commands import Choice, CommandSpec, IntRange, PathType

__all__ = ["CommandAdder", "to_click"]


def _click_type(kind: Any) -> Any:
    if isinstance(kind, Choice):
        return click.Choice(list(kind.choices))
    if isinstance(kind, IntRange):
        return click.IntRange(min=kind.min, max=kind.max)
    if isinstance(kind, PathType):
        return click.Path(exists=kind.exists, file_okay=kind.file_okay, dir_okay=kind.dir_okay)
    return kind


def to_click(spec: CommandSpec) -> click.Command:
    params: list[click.Parameter] = []
    for param in spec.params:
        settings = dict(param.settings)
        if "type" in settings:
            settings["type"] = _click_type(settings["type"])
        make = click.Option if param.kind == "option" else click.Argument
        params.append(make(list(param.decls), **settings))
    callback = click.pass_obj(spec.run) if spec.pass_app else spec.run
    help_text = inspect.cleandoc(spec.help)
    return click.Command(spec.name, callback=callback, params=params, help=help_text)


class CommandAdder:
    """What ``register_commands(cli)`` receives: ``cli.add_command(spec)`` adds a declared
    command (a click command from an older plugin is accepted as it is)."""

    def __init__(self, group: click.Group):
        self._group = group

    def add_command(self, command: CommandSpec | click.Command) -> None:
        self._group.add_command(to_click(command) if isinstance(command, CommandSpec) else command)
