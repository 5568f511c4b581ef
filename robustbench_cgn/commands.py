"""The public API for the commands plugins add through ``register_commands`` (``train-generator``,
``train-cgn-imagenet``, ...), without click: :func:`command`, :func:`option`, :func:`argument`,
:func:`pass_app` and the parameter types :class:`Choice`, :class:`IntRange`, :class:`PathType`
declare a command (the CLI builds the click command from it); :func:`comma_floats` parses
comma-separated numbers; :func:`run_with_progress` runs a resumable trainer under a progress bar
that shows its losses. Plugins import these, never ``robustbench_cgn.cli`` or click."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from robustbench_cgn.errors import ConfigError
from robustbench_cgn.progress import ProgressReporter

__all__ = [
    "BadParameter",
    "Choice",
    "CommandSpec",
    "IntRange",
    "Param",
    "PathType",
    "ResumableTrainer",
    "argument",
    "comma_floats",
    "command",
    "option",
    "pass_app",
    "run_with_progress",
    "speed_text",
]


class ResumableTrainer(Protocol):
    """What :func:`run_with_progress` uses of a trainer."""

    resumed_from: Path | None
    iteration: int
    on_step: Callable[[int, dict[str, float]], None] | None

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...


def comma_floats(_ctx: Any, param: Any, text: str | None) -> tuple[float, ...] | None:
    """Option callback: ``"1,2.5"`` -> ``(1.0, 2.5)``; ``None`` stays ``None`` (the default)."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        name = getattr(param, "name", None) or "value"
        raise ConfigError(
            f"--{name.replace('_', '-')}: expected comma-separated numbers, got {text!r}"
        ) from None


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


# ---------------------------------------------------------------------------------------------
# Declaring commands without click: plugins describe a command, the CLI builds it.


@dataclass(frozen=True)
class Choice:
    """A parameter type: one of ``choices``."""

    choices: tuple[str, ...]


@dataclass(frozen=True)
class IntRange:
    """A parameter type: an integer within ``[min, max]`` (``None``: unbounded)."""

    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class PathType:
    """A parameter type: a filesystem path (``exists``: must exist; file/dir allowed or not)."""

    exists: bool = False
    file_okay: bool = True
    dir_okay: bool = True


@dataclass(frozen=True)
class Param:
    """One ``option`` or ``argument`` of a command, with click-compatible settings
    (``type``, ``default``, ``required``, ``help``, ``is_flag``, ``multiple``, ``nargs``,
    ``callback(ctx, param, value)``, ``show_default``, ``metavar``)."""

    kind: str  # "option" | "argument"
    decls: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class CommandSpec:
    """A command a plugin adds: ``run(**params)``, or ``run(app, **params)`` with
    ``pass_app`` (``app``: the CLI's shared state: ``plugins``, ``store``, ``console``,
    ``paths(data_dir)``, ``progress``)."""

    name: str
    run: Callable[..., Any]
    params: list[Param]
    help: str = ""
    pass_app: bool = False


class BadParameter(ConfigError):
    """A command parameter that parsed but makes no sense: one line naming the option."""

    def __init__(self, message: str, param_hint: str = ""):
        super().__init__(f"{param_hint}: {message}" if param_hint else message)


_PARAMS = "__cgnbench_params__"


def option(*decls: str, **settings: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an option, as ``click.option`` does (same decorator order and settings)."""
    return _param("option", decls, settings)


def argument(*decls: str, **settings: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a positional argument, as ``click.argument`` does."""
    return _param("argument", decls, settings)


def _param(kind: str, decls: tuple[str, ...], settings: dict[str, Any]):
    def add(function: Any) -> Any:
        if isinstance(function, CommandSpec):
            raise TypeError("put @option/@argument below @command")
        params = function.__dict__.setdefault(_PARAMS, [])
        params.insert(0, Param(kind, decls, settings))  # decorators apply bottom-up
        return function

    return add


def pass_app(function: Callable[..., Any]) -> Callable[..., Any]:
    """The command receives the CLI's shared state as its first argument."""
    function.__dict__["__cgnbench_pass_app__"] = True
    return function


def command(name: str) -> Callable[[Callable[..., Any]], CommandSpec]:
    """Turn a function with ``@option``/``@argument`` declarations into a :class:`CommandSpec`
    (its docstring is the help); add it in ``register_commands`` with ``cli.add_command``."""

    def build(function: Callable[..., Any]) -> CommandSpec:
        return CommandSpec(
            name=name,
            run=function,
            params=list(function.__dict__.get(_PARAMS, [])),
            help=function.__doc__ or "",
            pass_app=bool(function.__dict__.get("__cgnbench_pass_app__")),
        )

    return build
