"""``cgnbench sweep``: many runs over a grid, resumable, or written out as job lines."""

from __future__ import annotations

import click
from rich.table import Table

from ..errors import CGNBenchError
from ..render import format_value
from ..runner import MIX_CHOICES, Runner, RunRequest
from ..sweep import expand, parse_grid
from .app import App
from .group import cli
from .running import merge_overrides, warnings_once


@cli.command("sweep")
@click.option("-g", "--generator", "generators", multiple=True, required=True)
@click.option("-b", "--benchmark", "benchmarks", multiple=True, required=True)
@click.option("-c", "--classifier", "classifiers", multiple=True)
@click.option("-s", "--seed", "seeds", type=int, multiple=True, help="Repeatable; default 0.")
@click.option(
    "--grid",
    "grid_options",
    multiple=True,
    metavar="SECTION.KEY=V1,V2,...",
    help="A swept setting, e.g. --grid generator.no_cfs=1,5,10,20; repeatable (product).",
)
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Fixed setting.")
@click.option("--mix", type=click.Choice(MIX_CHOICES), default="generated", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--emit-jobs",
    type=click.Path(dir_okay=False),
    help="Write one `cgnbench run` command per grid point to this file instead of running.",
)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def sweep_command(
    app: App,
    generators,
    benchmarks,
    classifiers,
    seeds,
    grid_options,
    sets,
    mix,
    device,
    data_dir,
    emit_jobs,
    quiet,
) -> None:
    """Run every combination of generators x classifiers x benchmarks x seeds x --grid
    values. Each point is an ordinary run: finished points are skipped, an interrupted one
    resumes, so rerunning the same sweep continues it. Every point is checked (names, config
    types) before the first one starts."""
    if quiet:
        app.quiet = True
    base = merge_overrides({}, sets)
    points = expand(generators, classifiers, benchmarks, seeds, parse_grid(grid_options))
    runner = Runner(app.plugins, app.store, app.paths(data_dir), app.progress)
    requests = []
    for point in points:
        request = RunRequest(
            generator=point.generator,
            benchmark=point.benchmark,
            classifier=point.classifier,
            seed=point.seed,
            mix=mix,
            device=device,
            overrides=point.overrides(base),
        )
        try:
            runner.plan(request)
        except CGNBenchError as exc:
            raise CGNBenchError(f"sweep point {point.command()}: {exc}") from exc
        requests.append(request)
    if emit_jobs:
        fixed = [arg for s in sets for arg in ("--set", s)] + ["--mix", mix, "--device", device]
        fixed += ["--data-dir", data_dir] if data_dir else []
        with open(emit_jobs, "w", encoding="utf-8") as handle:
            for point in points:
                handle.write(point.command(fixed) + "\n")
        if not app.quiet:
            app.console.print(f"wrote {len(points)} job lines to {emit_jobs}")
        return
    keys = list(points[0].settings) if points else []
    varying = [
        (label, attr)
        for label, attr in (
            ("generator", "generator"),
            ("benchmark", "benchmark"),
            ("seed", "seed"),
        )
        if len({getattr(p, attr) for p in points}) > 1
    ]
    summary = Table(title=f"sweep: {len(points)} runs", title_justify="left")
    for column in ("run", *[label for label, _ in varying], *[k.split(".", 1)[1] for k in keys]):
        summary.add_column(column)
    summary.add_column("status")
    summary.add_column("main metric")
    failed = 0
    main_metrics = app.main_metrics()
    for point, request in zip(points, requests, strict=True):
        try:
            with warnings_once(app):
                outcome = runner.run(request)
            status = "skipped" if outcome.status == "skipped" else outcome.status
            frame = app.store.metrics_frame().query("run_id == @outcome.run_id and key == ''")
            main = main_metrics.get(point.benchmark)
            values = {row.metric: row.value for row in frame.itertuples()}
            shown = (
                f"{main.name} {format_value(values[main.name])}"
                if main and main.name in values
                else ""
            )
            run_id = outcome.run_id
        except CGNBenchError as exc:  # one bad point does not stop the others
            failed += 1
            status, shown, run_id = f"failed: {exc}", "", runner.plan(request).run_id
        summary.add_row(
            run_id[:8],
            *[str(getattr(point, attr)) for _, attr in varying],
            *[point.settings[k] for k in keys],
            status,
            shown,
        )
    app.console.print(summary)
    if failed:
        raise CGNBenchError(f"{failed} of {len(points)} sweep runs failed; rerun to retry them")
