"""``cgnbench sweep``: many runs over a grid, resumable, or written out as job lines."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..checkpoint import atomic_write_text
from ..errors import CGNBenchError
from ..job_files import LAUNCHERS, Launch, job_line, slurm_script
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
    help="Write the grid points to this job file instead of running them (see --launcher).",
)
@click.option(
    "--launcher",
    type=click.Choice(LAUNCHERS),
    default="none",
    show_default=True,
    help="Job file format: none = one `cgnbench run` line per point; torchrun = one torchrun "
    "line per point; slurm = an sbatch array script (one task per point, srun + torchrun).",
)
@click.option("--nproc", type=int, default=1, show_default=True, help="Processes (GPUs) per node.")
@click.option("--nnodes", type=int, default=1, show_default=True, help="Nodes per job.")
@click.option(
    "--rdzv-endpoint",
    metavar="HOST:PORT",
    help="torchrun rendezvous for multi-node torchrun lines (Slurm scripts find their own).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Leave points whose run is already complete in the results store out of the job "
    "file. (Running here always skips them; an interrupted point resumes.)",
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
    launcher,
    nproc,
    nnodes,
    rdzv_endpoint,
    resume,
    quiet,
) -> None:
    """Run every combination of generators x classifiers x benchmarks x seeds x --grid
    values. Each point is an ordinary run: finished points are skipped, an interrupted one
    resumes, so rerunning the same sweep continues it. Every point is checked (names, config
    types) before the first one starts.

    With --emit-jobs the points are written for a scheduler instead: one `cgnbench run` or
    `torchrun` line per point, or a Slurm array script (--launcher). Every job is an ordinary
    run, idempotent by its identity; --resume leaves the finished ones out."""
    if quiet:
        app.quiet = True
    launch = Launch(
        launcher,
        nproc=nproc,
        nnodes=nnodes,
        rdzv_endpoint=rdzv_endpoint,
        gpus=device != "cpu",
    )
    if launcher != "none" and not emit_jobs:
        raise CGNBenchError(
            "--launcher writes a job file: add --emit-jobs FILE (to run here under torchrun, "
            "use `cgnbench run --launcher torchrun`)"
        )
    base = merge_overrides({}, sets)
    points = expand(generators, classifiers, benchmarks, seeds, parse_grid(grid_options))
    runner = Runner(app.plugins, app.store, app.paths(data_dir), app.progress)
    requests, run_ids = [], []
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
            run_ids.append(runner.plan(request).run_id)
        except CGNBenchError as exc:
            raise CGNBenchError(f"sweep point {point.command()}: {exc}") from exc
        requests.append(request)
    if emit_jobs:
        _write_jobs(app, emit_jobs, points, run_ids, launch, sets, mix, device, data_dir, resume)
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
    for point, request, planned_id in zip(points, requests, run_ids, strict=True):
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
            status, shown, run_id = f"failed: {exc}", "", planned_id
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


def _write_jobs(app, path, points, run_ids, launch, sets, mix, device, data_dir, resume):
    """Write the job file (atomically) for the points still to do (``run_ids``: the points'
    planned run identities)."""
    fixed = [arg for s in sets for arg in ("--set", s)] + ["--mix", mix, "--device", device]
    fixed += ["--data-dir", data_dir] if data_dir else []
    prefix = ["--results", str(app.paths().results)] if app.results else []
    jobs, skipped = [], 0
    for point, run_id in zip(points, run_ids, strict=True):
        record = app.store.get_run(run_id) if resume else None
        if record is not None and record.status == "complete":
            skipped += 1
            continue
        jobs.append((run_id, [*prefix, *point.run_args(fixed)]))
    if launch.launcher == "slurm":
        text = slurm_script([args for _, args in jobs], launch) if jobs else ""
    else:
        text = "".join(job_line(args, launch, run_id[:12]) + "\n" for run_id, args in jobs)
    atomic_write_text(text, Path(path))
    if not app.quiet:
        done = f" ({skipped} already complete, left out)" if skipped else ""
        kind = "an sbatch array script of" if launch.launcher == "slurm" else "job lines for"
        app.console.print(f"wrote {kind} {len(jobs)} runs to {path}{done}")
