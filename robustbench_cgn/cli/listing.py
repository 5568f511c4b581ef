"""``cgnbench list`` and ``cgnbench plugins``: what is installed."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from ..provenance import jsonable
from .app import App
from .group import cli

KINDS = ("tasks", "generators", "classifiers", "benchmarks", "weights", "datasets")


def _defaults_text(defaults: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in defaults.items()) or "-"


@cli.command("list")
@click.argument("kind_or_pattern", required=False, metavar="[KIND]")
@click.argument("pattern", required=False, metavar="[PATTERN]")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(("table", "plain", "json")),
    default="table",
    show_default=True,
    help="plain: one 'kind<TAB>name<TAB>description' line per entry (for pipes); json: all fields.",
)
@click.pass_obj
def list_command(app: App, kind_or_pattern: str | None, pattern: str | None, fmt: str) -> None:
    """List registered components: all KINDs (tasks, generators, classifiers, benchmarks,
    weights, datasets) or one, optionally filtered by a wildcard PATTERN (e.g.
    `cgnbench list 'cgn*'`, `cgnbench list benchmarks 'gradcam*'`). Names are never cut."""
    kind = kind_or_pattern if kind_or_pattern in KINDS else None
    if kind is None and kind_or_pattern is not None:
        if pattern is not None:
            raise click.BadParameter(
                f"{kind_or_pattern!r} is not a kind; kinds: {', '.join(KINDS)}",
                param_hint="KIND",
            )
        pattern = kind_or_pattern
    pattern = pattern or "*"
    listed = {current: _entries(app, current, pattern) for current in ([kind] if kind else KINDS)}
    if fmt == "json":
        click.echo(json.dumps(listed, indent=2))
        return
    if fmt == "plain":
        for current, entries in listed.items():
            for entry in entries:
                click.echo(f"{current}\t{entry['name']}\t{entry['description']}")
        return
    for current, entries in listed.items():
        if (
            kind is None
            and not entries
            and (current in ("weights", "tasks", "datasets") or pattern != "*")
        ):
            continue  # all kinds asked: show only those with entries
        table = Table(title=f"{current} ({len(entries)})", title_justify="left")
        longest = max((len(entry["name"]) for entry in entries), default=4)
        table.add_column("name", no_wrap=True, min_width=longest)
        columns = {
            "weights": ("description", "size", "license", "plugin"),
            "datasets": ("description", "size", "source", "plugin"),
            "tasks": ("description", "classes", "input", "splits", "plugin"),
        }.get(current, ("description", "version", "plugin", "defaults"))
        for column in columns:  # names (entries and plugins) are never cut or wrapped
            table.add_column(column, overflow="fold", no_wrap=column == "plugin")
        for entry in entries:
            table.add_row(entry["name"], *(_cell(entry[column]) for column in columns))
        app.console.print(table)


def _cell(value) -> str:
    if isinstance(value, dict):
        return _defaults_text(value)
    if isinstance(value, list):
        return ", ".join(value)
    return "-" if value is None else str(value)


def _entries(app: App, kind: str, pattern: str) -> list[dict]:
    """One dict per registered entry of ``kind`` matching ``pattern`` (what every format shows)."""
    rows = []
    for entry in app.plugins.registries.by_kind(kind).list(pattern):
        if kind == "tasks":
            task = entry.task
            shape = "x".join(str(d) for d in task.input_shape)
            if not task.exact_size:
                shape = f"{task.input_shape[0]}xHxW"
            value = f"uint8, or float in {list(task.value_range)}" if task.value_range else "any"
            rows.append(
                {
                    "name": entry.name,
                    "description": task.description,
                    "classes": task.num_classes,
                    "input": f"{shape} ({value})",
                    "splits": list(task.splits),
                    "plugin": entry.plugin,
                }
            )
            continue
        if kind == "weights":
            spec = entry.spec
            rows.append(
                {
                    "name": entry.name,
                    "description": spec.description,
                    "size": spec.size,
                    "source": spec.urls[0] if spec.urls else (spec.source or "local only"),
                    "sha256": spec.sha256 or "",
                    "checksum": _checksum([spec]),
                    "license": spec.license,
                    "plugin": entry.plugin,
                }
            )
            continue
        if kind == "datasets":
            spec = entry.spec
            rows.append(
                {
                    "name": entry.name,
                    "description": spec.description,
                    "size": spec.size or spec.approx_size or None,
                    "checksum": _checksum(spec.files) if spec.files else "-",
                    "source": (spec.files[0].urls[0] if spec.downloadable
                               else f"hf:{spec.hf_repo}" if spec.hf_repo else "local only"),
                    "license": spec.license,
                    "plugin": entry.plugin,
                }
            )  # fmt: skip
            continue
        description = entry.description
        if kind == "generators" and getattr(entry.cls, "Training", None) is not None:
            description += " [trainable: cgnbench train-generator]"
        if kind == "benchmarks":
            main = entry.cls.main_metric()
            main_name = main.name if main else "-"
            description += f" [task {entry.cls.task.name}; main metric {main_name}]"
        rows.append(
            {
                "name": entry.name,
                "description": description,
                "version": entry.version,
                "plugin": entry.plugin,
                "defaults": jsonable(entry.defaults()),
            }
        )
    return rows


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins_command(app: App, as_json: bool) -> None:
    """Show plugins: name, distribution, version, implemented hooks, and each one's problems
    (plugins that failed to load are listed too, with why)."""
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
                "loaded": loaded,
                "problems": system.problems_of(info.name),
            }
            for infos, loaded in ((system.plugins, True), (system.failed, False))
            for info in infos
        ],
        "problems": [{"plugin": p.plugin, "message": p.message} for p in system.problems],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"plugins (autoload {'on' if system.autoload else 'off'})", title_justify="left"
    )
    for column in ("name", "module", "distribution", "version", "hooks", "status"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for info in data["plugins"]:
        problems = "; ".join(info["problems"])
        status = ("ok" if info["loaded"] else "not loaded") + (f": {problems}" if problems else "")
        table.add_row(
            info["name"],
            info["module"],
            info["distribution"] or "-",
            info["version"] or "-",
            ", ".join(info["hooks"]),
            Text(status, style="" if info["loaded"] and not problems else "red"),
        )
    app.console.print(table)
    if system.blocked:
        app.console.print(f"blocked: {', '.join(system.blocked)}")


def _checksum(files) -> str:
    """How a download is checked: the pinned digest (shortened), or that none is published
    (the sha256 of the first download is then recorded and shown by `fetch --list`)."""
    if len(files) > 1:
        kinds = {"sha256" if f.sha256 else "md5" if f.md5 else "" for f in files}
        return f"{kinds.pop()} per file ({len(files)} files)" if "" not in kinds else "partly"
    (file,) = files
    if file.sha256:
        return f"sha256 {file.sha256[:16]}" + ("" if len(file.sha256) < 64 else "...")
    if file.md5:
        return f"md5 {file.md5}"
    return "none published (recorded at first fetch)"
