"""``cgnbench leaderboard`` and ``cgnbench export``."""

from __future__ import annotations

import click

from ..leaderboard import build_leaderboard
from ..references import load_references
from ..render import FORMATS, rich_tables, to_csv, to_json, to_markdown
from .app import App
from .group import cli


def _write(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)


@cli.command("leaderboard")
@click.option("-b", "--benchmark", help="Only this benchmark.")
@click.option(
    "-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option("--no-references", is_flag=True, help="Hide the published reference rows.")
@click.option(
    "--only-measured-benchmarks/--all-benchmarks",
    default=True,
    show_default=True,
    help="Show references only for benchmarks that have measured runs.",
)
@click.pass_obj
def leaderboard_command(
    app: App, benchmark, fmt, output, no_references, only_measured_benchmarks
) -> None:
    """Runs aggregated over seeds (mean ± standard error), sorted by each benchmark's main
    metric, with published reference rows marked as such."""
    store = app.store
    if benchmark is not None and benchmark not in app.plugins.registries.benchmarks:
        app.plugins.registries.benchmarks.get(benchmark)  # raises with close matches
    metrics = store.metrics_frame(benchmark=benchmark)
    specs = {record.run_id: record.spec for record in store.list_runs(benchmark)}
    references = None if no_references else load_references()
    if references is not None and only_measured_benchmarks and benchmark is None:
        references = references[references["benchmark"].isin(set(metrics["benchmark"]))]
    board = build_leaderboard(metrics, specs, references, app.main_metrics(), benchmark=benchmark)
    if board.empty:
        app.err_console.print("no results yet: run `cgnbench run --generator G --benchmark B`")
        if fmt == "table":
            return
    if fmt == "table":
        for table in rich_tables(board, app.benchmark_titles()):
            app.console.print(table)
        return
    text = {"csv": to_csv, "json": to_json}.get(fmt)
    _write(text(board) if text else to_markdown(board, app.benchmark_titles()), output)
    if output and not app.quiet:
        app.err_console.print(f"wrote {len(board)} rows to {output}")


@cli.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="CSV file (default stdout).")
@click.option("--include-incomplete", is_flag=True, help="Also metrics of unfinished runs.")
@click.pass_obj
def export_command(app: App, output, include_incomplete) -> None:
    """Every recorded metric (all keys, heads and classes) with its run's provenance, as CSV."""
    store = app.store
    frame = store.metrics_frame(complete_only=not include_incomplete)
    records = {record.run_id: record for record in store.list_runs()}
    for column, getter in {
        "git_commit": lambda r: r.provenance.get("git_commit"),
        "device": lambda r: r.provenance.get("device"),
        "torch": lambda r: r.provenance.get("packages", {}).get("torch"),
        "cgnbench": lambda r: r.provenance.get("packages", {}).get("cgnbench"),
        "hostname": lambda r: r.provenance.get("hostname"),
    }.items():
        frame[column] = frame["run_id"].map(lambda run_id, g=getter: g(records[run_id]))
    _write(frame.to_csv(index=False), output)
    if output and not app.quiet:
        app.err_console.print(f"wrote {len(frame)} metric rows to {output}")
