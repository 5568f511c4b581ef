"""``cgnbench fetch``: weights and datasets downloaded ahead of (offline) runs."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.markup import escape
from rich.table import Table

from ..errors import CGNBenchError, ConfigError
from ..fetching import cached_items, expand_names, fetch, item_name
from ..runner import Runner, RunRequest
from .app import App
from .group import cli
from .running import merge_overrides


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


@cli.command("fetch")
@click.argument("names", nargs=-1)
@click.option(
    "--for",
    "for_run",
    is_flag=True,
    help="Fetch everything the run given by -g/-b/-c/--set needs.",
)
@click.option("-g", "--generator", help="With --for: the run's generator.")
@click.option("-b", "--benchmark", help="With --for: the run's benchmark.")
@click.option("-c", "--classifier", help="With --for: the run's classifier.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="With --for: the run's overrides (e.g. --set generator.weights=...).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Local data root: copies found there are used instead of downloading.",
)
@click.option("--list", "show_list", is_flag=True, help="Show what the cache holds.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="json: what was fetched (or the cache, with --list) as a list of objects.",
)
@click.pass_obj
def fetch_command(
    app: App, names, for_run, generator, benchmark, classifier, sets, data_dir, show_list, fmt
) -> None:
    """Download registered weights and datasets (NAME: see `cgnbench list weights` and
    `cgnbench list datasets`; wildcards allowed), or all a run needs (--for), into the cache
    under $CGNBENCH_HOME. Compute nodes without network then run with `cgnbench run
    --offline`. Files are checked against their checksums; interrupted downloads resume."""
    paths = app.paths(data_dir)
    if show_list:
        _show_cache(app, paths.cache, fmt)
        return
    if for_run and names:
        raise ConfigError("give NAMEs or --for with -g/-b, not both")
    if not for_run and not names:
        raise ConfigError("name what to fetch (e.g. `cgnbench fetch in9 biggan.deep-256`), "
                          "or use --for -g GENERATOR -b BENCHMARK, or --list")  # fmt: skip
    registries = app.plugins.registries
    prefetch = []
    if for_run:
        if not generator or not benchmark:
            raise ConfigError("fetch --for needs -g GENERATOR and -b BENCHMARK")
        request = RunRequest(
            generator=generator,
            benchmark=benchmark,
            classifier=classifier,
            overrides=merge_overrides({}, sets),
            device="cpu",
        )
        assembly = Runner(app.plugins, app.store, paths, app.progress).assemble(request)
        wanted = []
        for component in assembly.components():
            wanted.extend(component.requirements(assembly.task))
            prefetch.append(component)
        names = tuple(dict.fromkeys(wanted))  # registered names and weights URLs
    specs = expand_names(names, registries)

    def announce(spec) -> None:
        app.progress.log(f"fetching {item_name(spec)} ...")

    done, failed = fetch(specs, data_dir=paths.data, cache_dir=paths.cache, on_item=announce)
    if for_run:
        for component in prefetch:
            try:
                component.prefetch(assembly.task)
            except CGNBenchError as exc:
                failed.append((f"{component.kind} {component.name}", str(exc)))
    if fmt == "json":
        click.echo(_json(done))
    elif done:
        table = Table(title="fetched", title_justify="left")
        for column in ("name", "kind", "size", "sha256", "where", "path"):
            table.add_column(column, overflow="fold")
        for item in done:
            table.add_row(
                item.name, item.kind, _size(item.size), item.sha256[:16] or "-", item.origin,
                escape(str(item.path)),
            )  # fmt: skip
        app.console.print(table)
    elif not failed:
        app.console.print("nothing to fetch: this run needs no registered files")
    for name, reason in failed:
        app.err_console.print(
            f"[red]{escape(name)}:[/] {escape(reason)}", highlight=False, soft_wrap=True
        )
    if failed:
        raise SystemExit(1)


def _json(items) -> str:
    return json.dumps(
        [{**dataclasses.asdict(item), "path": str(item.path)} for item in items], indent=2
    )


def _show_cache(app: App, cache, fmt: str) -> None:
    items = cached_items(cache)
    if fmt == "json":
        click.echo(_json(items))
        return
    if not items:
        app.console.print(f"the cache {cache} holds no fetched weights or datasets")
        return
    table = Table(title=f"cache {cache}", title_justify="left")
    for column in ("name", "kind", "files", "size", "sha256", "path"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            item.name, item.kind, str(item.files), _size(item.size), item.sha256 or "-",
            escape(str(item.path)),
        )  # fmt: skip
    app.console.print(table)
