"""``cgnbench report``: one shareable HTML file for some runs."""

from __future__ import annotations

import click

from ..errors import CGNBenchError
from ..references import load_references
from ..report import build_report
from .app import App
from .group import cli


@cli.command("report")
@click.argument("run_ids", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="cgnbench-report.html",
    show_default=True,
    help="HTML file to write.",
)
@click.option("--per-class", is_flag=True, help="Also list per-class / per-head metrics.")
@click.option("--no-references", is_flag=True, help="Leave out the published reference rows.")
@click.pass_obj
def report_command(app: App, run_ids, output, per_class, no_references) -> None:
    """A self-contained HTML report of RUN_IDS (unique prefixes are enough): leaderboard rows
    with the published references, metrics, figures (side by side where runs share them) and
    provenance."""
    records = []
    for run_id in run_ids:
        matches = app.store.find_runs(run_id)
        if len(matches) != 1:
            problem = "no run" if not matches else "more than one run"
            raise CGNBenchError(f"{problem} matches {run_id!r} in {app.store.path}")
        records.append(matches[0])
    text = build_report(
        records,
        app.store.metrics_frame(complete_only=False),
        None if no_references else load_references(),
        app.main_metrics(),
        per_class=per_class,
    )
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    if not app.quiet:
        app.console.print(f"wrote {output} ({len(records)} runs)")
