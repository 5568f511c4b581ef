"""``cgnbench list`` and ``cgnbench plugins``: what is installed."""

from __future__ import annotations

import json

import click
from rich.table import Table

from .app import App
from .group import cli

KINDS = ("generators", "classifiers", "benchmarks", "weights")


def _defaults_text(defaults: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in defaults.items()) or "-"


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.argument("pattern", required=False, default="*")
@click.pass_obj
def list_command(app: App, kind: str | None, pattern: str) -> None:
    """List registered components, optionally filtered by a wildcard PATTERN (e.g. 'cgn*')."""
    registries = app.plugins.registries
    for current in [kind] if kind else KINDS:
        registry = registries.by_kind(current)
        entries = registry.list(pattern)
        if kind is None and current == "weights" and not entries:
            continue
        table = Table(title=f"{current} ({len(entries)})", title_justify="left")
        if current == "weights":
            for column in ("name", "description", "tags", "plugin"):
                table.add_column(column)
            for entry in entries:
                table.add_row(
                    entry.name, entry.spec.description, ", ".join(entry.spec.tags), entry.plugin
                )
        else:
            for column in ("name", "description", "version", "plugin", "defaults"):
                table.add_column(column, overflow="fold")
            for entry in entries:
                extra = ""
                if current == "benchmarks":
                    main = entry.cls.main_metric()
                    extra = (
                        f" [task {entry.cls.task.name}; main metric {main.name if main else '-'}]"
                    )
                table.add_row(
                    entry.name,
                    entry.description + extra,
                    entry.version,
                    entry.plugin,
                    _defaults_text(entry.defaults()),
                )
        app.console.print(table)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins_command(app: App, as_json: bool) -> None:
    """Show loaded plugins: name, distribution, version, implemented hooks, problems."""
    system = app.plugins
    data = {
        "autoload": system.autoload,
        "blocked": system.blocked,
        "plugins": [
            {
                "name": info.name,
                "module": info.module,
                "distribution": info.distribution,
                "version": info.version,
                "hooks": info.hooks,
                "source": info.source,
            }
            for info in system.plugins
        ],
        "problems": [{"plugin": p.plugin, "message": p.message} for p in system.problems],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"plugins (autoload {'on' if system.autoload else 'off'})", title_justify="left"
    )
    for column in ("name", "module", "distribution", "version", "hooks"):
        table.add_column(column, overflow="fold")
    for info in data["plugins"]:
        table.add_row(
            info["name"],
            info["module"],
            info["distribution"] or "-",
            info["version"] or "-",
            ", ".join(info["hooks"]),
        )
    app.console.print(table)
    if system.blocked:
        app.console.print(f"blocked: {', '.join(system.blocked)}")
