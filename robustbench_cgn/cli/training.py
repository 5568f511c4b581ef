"""``cgnbench train-generator``: train a generator as a run (:mod:`..generator_training`)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..config import parse_set_options
from ..data.download import go_offline
from ..device import DEVICE_CHOICES
from ..generator_training import GeneratorTraining, TrainRequest
from .app import App
from .group import cli
from .running import warnings_once


@cli.command("train-generator")
@click.option("-g", "--generator", required=True, help="A trainable generator (cgn, dcgan, ...).")
@click.option(
    "--task", "task", required=True, help="The task to train it for (`cgnbench list tasks`)."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A training option, e.g. --set iterations=2000 (`cgnbench list generators` shows the "
    "generator; a wrong key lists them all); repeatable.",
)
@click.option("-s", "--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Local data root.")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--offline", is_flag=True, help="Never touch the network (CGNBENCH_OFFLINE=1).")
@click.option("--force", is_flag=True, help="Train again even if this training finished.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (same as cgnbench -q).")
@click.pass_obj
def train_generator_command(
    app: App, generator, task, sets, seed, data_dir, device, offline, force, quiet
) -> None:
    """Train a generator for a task, as a run: checked options, an identity, a run folder a
    killed training resumes from, and a record in the results store. A training that finished
    is not repeated. Use the result with `--set generator.weights=run:<id>`."""
    if quiet:
        app.quiet = True
    if offline:
        go_offline()
    request = TrainRequest(
        generator=generator,
        task=task,
        options=parse_set_options(sets, ("training",), bare="training").get("training", {}),
        seed=seed,
        device=device,
        force=force,
    )
    trainer = GeneratorTraining(app.plugins, app.store, app.paths(data_dir), app.progress)
    with warnings_once(app):
        outcome = trainer.train(request)
    table = Table(title="generator training", title_justify="left")
    for column in ("run id", "generator", "status", "weights"):
        table.add_column(column, overflow="fold")
    table.add_row(outcome.run_id, outcome.generator, outcome.status, escape(str(outcome.weights)))
    app.console.print(table)
    app.console.print(
        f"use it: cgnbench run -g {outcome.generator} ... "
        f"--set generator.weights=run:{outcome.run_id}",
        highlight=False,
        soft_wrap=True,
    )
