"""The ``cgnbench`` command group and its error handling."""

from __future__ import annotations

import os
import sys
import warnings

import click

from ..distributed import environment
from ..errors import CGNBenchError
from ..plugin_manager import load_plugins
from ..settings import RESULTS_ENV
from .app import App
from .plugin_commands import CommandAdder


class PluginCommandGroup(click.Group):
    """A click group that also offers the commands plugins add via ``register_commands``."""

    _plugins_loaded = False

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        app = ctx.obj if isinstance(ctx.obj, App) else None
        system = app.plugins if app is not None else load_plugins()
        system.add_commands(CommandAdder(self))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, name)
        return command


@click.group(cls=PluginCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--results",
    type=click.Path(dir_okay=True, file_okay=True),
    envvar="CGNBENCH_RESULTS",
    help="Results database file (.sqlite) or folder. Default: $CGNBENCH_HOME/results.sqlite, "
    "else the user data dir.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or chatter (for scripts).")
@click.option(
    "--block",
    "blocked",
    multiple=True,
    metavar="PLUGIN",
    help="Do not load this plugin (entry-point name); repeatable. Also $CGNBENCH_BLOCK_PLUGINS.",
)
@click.option(
    "--no-autoload",
    is_flag=True,
    help="Do not discover third-party plugins through entry points; the built-ins stay "
    "(same as CGNBENCH_DISABLE_PLUGIN_AUTOLOAD=1).",
)
@click.option(
    "--strict-plugins",
    is_flag=True,
    help="Every plugin problem is an error with its traceback, not a warning "
    "(for plugin authors' CI; same as CGNBENCH_STRICT_PLUGINS=1).",
)
@click.version_option(package_name="cgnbench")
@click.pass_context
def cli(ctx: click.Context, results, quiet, blocked, no_autoload, strict_plugins) -> None:
    """cgnbench: out-of-distribution robustness benchmarks for counterfactual data.

    A run trains a CLASSIFIER on the data of a GENERATOR (original data, CGN
    counterfactuals, DCGAN samples, ...) and scores it on a BENCHMARK. Results go to
    a SQLite store; leaderboards aggregate them over seeds beside published numbers.

    \b
    Typical use:
      cgnbench list                                   # what is installed
      cgnbench run --generator cgn --benchmark c-mnist
      cgnbench leaderboard --format csv -o lb.csv
    """
    if results:  # `weights=run:<id>` is looked up in this store (robustbench_cgn.resolver)
        os.environ[RESULTS_ENV] = str(results)
    ctx.obj = App(
        results=results,
        quiet=quiet,
        blocked=tuple(blocked),
        autoload=False if no_autoload else None,
        strict=True if strict_plugins else None,
        argv=_invocation_args,
    )


_invocation_args: tuple[str, ...] | None = None  # set by main()


def _rank_prefix() -> str:
    """``[rank N] `` in the processes of a torchrun launch (each may report its error)."""
    found = environment()
    return f"[rank {found[0]}] " if found is not None and found[1] > 1 else ""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one red line and exit code 2."""
    from . import (  # noqa: F401  (register commands)
        fetching,
        listing,
        reporting,
        results,
        running,
        selfcheck,
        sweeping,
        training,
    )

    global _invocation_args
    warnings.filterwarnings("default", module="robustbench_cgn")
    args = list(sys.argv[1:] if argv is None else argv)
    _invocation_args = tuple(args)
    try:
        cli.main(args=args, prog_name="cgnbench", standalone_mode=False)
    except CGNBenchError as exc:
        click.secho(f"{_rank_prefix()}error: {exc}", fg="red", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.secho("interrupted; rerun the same command to resume", fg="yellow", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.secho("interrupted; rerun the same command to resume", fg="yellow", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
